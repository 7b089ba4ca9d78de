//! Building `StatementRecord` messages, the same way on the hub and in a node's mirror, so a
//! query answers identically wherever it is asked.

use prost::Message as _;
use rcpfed_proto::v1;

/// Stored fields of an accepted statement.
pub struct RecordParts<'a> {
    /// Issuing node.
    pub node_id: &'a str,
    /// Sequence number.
    pub seq: u64,
    /// Payload digest.
    pub digest: &'a [u8; 32],
    /// Feed index.
    pub feed_index: u64,
    /// Acceptance time, unix ms.
    pub accepted_at_ms: i64,
    /// Envelope bytes as received.
    pub envelope: &'a [u8],
    /// Receipt envelope bytes.
    pub receipt: &'a [u8],
}

/// The resource name of a statement.
pub fn statement_name(node_id: &str, seq: u64) -> String {
    format!("nodes/{node_id}/statements/{seq}")
}

/// Parses "nodes/{node_id}/statements/{seq}".
pub fn parse_statement_name(name: &str) -> Option<(String, u64)> {
    let rest = name.strip_prefix("nodes/")?;
    let (node, seq) = rest.split_once("/statements/")?;
    if !rcpfed_core::members::is_valid_member_id(node) {
        return None;
    }
    Some((node.to_string(), seq.parse().ok()?))
}

/// Builds the record. Stored bytes were verified on the way in, so a decoding failure here
/// means corruption; it yields an empty field rather than hiding the record.
pub fn statement_record(parts: RecordParts<'_>) -> v1::StatementRecord {
    let envelope = v1::Envelope::decode(parts.envelope).ok();
    let statement = envelope
        .as_ref()
        .and_then(|e| v1::Statement::decode(e.payload.as_slice()).ok());
    v1::StatementRecord {
        name: statement_name(parts.node_id, parts.seq),
        node_id: parts.node_id.to_string(),
        seq: parts.seq,
        digest: parts.digest.to_vec(),
        feed_index: parts.feed_index,
        accepted_at: Some(crate::timestamp_from_ms(parts.accepted_at_ms)),
        envelope,
        receipt: v1::Envelope::decode(parts.receipt).ok(),
        statement,
        log: None,
    }
}

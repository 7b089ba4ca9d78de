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

/// Parses "nodes/{node_id}/statements/{seq}". `node_id` is a member id or one of the hub's
/// document chains, "{hub_id}/catalogue" and "{hub_id}/coherence"; these contain a '/', so the
/// name is split at its last "/statements/".
pub fn parse_statement_name(name: &str) -> Option<(String, u64)> {
    use rcpfed_core::members::is_valid_member_id;
    let rest = name.strip_prefix("nodes/")?;
    let (node, seq) = rest.rsplit_once("/statements/")?;
    let valid = match node.split_once('/') {
        None => is_valid_member_id(node),
        Some((hub, _)) => {
            is_valid_member_id(hub)
                && (node == rcpfed_store::catalogue_chain(hub)
                    || node == rcpfed_store::coherence_chain(hub))
        }
    };
    if !valid {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_names_parse_for_members_and_hub_chains() {
        for (node, seq) in [
            ("colombo", 1),
            ("gfmd", 2),
            ("gfmd/catalogue", 1),
            ("gfmd/coherence", 17),
        ] {
            assert_eq!(
                parse_statement_name(&statement_name(node, seq)),
                Some((node.to_string(), seq)),
                "{node}#{seq}"
            );
        }
    }

    #[test]
    fn malformed_statement_names_are_refused() {
        for name in [
            "",
            "nodes/colombo",
            "nodes/colombo/statements/",
            "nodes/colombo/statements/x",
            "statements/colombo/1",
            "nodes//statements/1",
            "nodes/Colombo/statements/1",
            "nodes/gfmd/other/statements/1",
            "nodes/gfmd/catalogue/extra/statements/1",
            "nodes/colombo/statements/1/statements/2",
            "nodes//catalogue/statements/1",
        ] {
            assert_eq!(parse_statement_name(name), None, "{name:?}");
        }
    }
}

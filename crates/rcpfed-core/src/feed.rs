//! A feed entry and a log proof as the domain sees them: what the hub's feed and its answers to
//! a submission carry, converted once at the gRPC edge (`from_proto`), so that the mirror, the
//! outbox and the witness work on these types only.

use crate::envelope::SignedEnvelope;
use rcpfed_proto::v1 as pb;

/// The place of a leaf in the hub's log: an RFC 9162 inclusion proof against a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogProof {
    /// Index of the leaf (0-based): its feed index - 1.
    pub leaf_index: u64,
    /// Size of the tree the proof is for.
    pub tree_size: u64,
    /// The checkpoint of that size: a signed note, with any cosignature lines.
    pub checkpoint: String,
    /// The proof's hashes, nearest the leaf first, as received (their length is checked when
    /// the proof is verified).
    pub inclusion_proof: Vec<Vec<u8>>,
}

impl LogProof {
    /// From the wire form; every wire proof is representable, checks come later.
    pub fn from_proto(p: pb::LogProof) -> Self {
        LogProof {
            leaf_index: p.leaf_index,
            tree_size: p.tree_size,
            checkpoint: p.checkpoint,
            inclusion_proof: p.inclusion_proof,
        }
    }
}

/// One entry of the hub's federation feed.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEntry {
    /// Position in the feed (1-based).
    pub feed_index: u64,
    /// The entry's envelope as the hub stores it.
    pub envelope: SignedEnvelope,
    /// The hub's signed receipt for it.
    pub receipt: SignedEnvelope,
    /// Its inclusion proof against the latest checkpoint when it was sent, if any.
    pub log: Option<LogProof>,
}

impl FeedEntry {
    /// From the wire form; the envelope and the receipt are required, and the error says
    /// which is missing.
    pub fn from_proto(entry: pb::SubscribeFeedResponse) -> Result<Self, String> {
        Self::from_parts(entry.feed_index, entry.envelope, entry.receipt, entry.log)
    }

    /// From the wire parts of an entry wherever the hub lists them (a feed message, a
    /// statement record): the envelope and the receipt are required.
    pub fn from_parts(
        feed_index: u64,
        envelope: Option<pb::Envelope>,
        receipt: Option<pb::Envelope>,
        log: Option<pb::LogProof>,
    ) -> Result<Self, String> {
        let envelope = envelope.ok_or("feed entry has no envelope")?;
        let receipt = receipt.ok_or("feed entry has no receipt")?;
        Ok(FeedEntry {
            feed_index,
            envelope: SignedEnvelope::from_proto(envelope),
            receipt: SignedEnvelope::from_proto(receipt),
            log: log.map(LogProof::from_proto),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_without_its_envelope_or_receipt_is_refused_by_name() {
        let envelope = pb::Envelope {
            payload_type: "t".into(),
            payload: vec![1],
            signatures: Vec::new(),
        };
        let entry = |envelope, receipt| pb::SubscribeFeedResponse {
            feed_index: 7,
            envelope,
            receipt,
            log: None,
        };
        assert_eq!(
            FeedEntry::from_proto(entry(None, Some(envelope.clone()))),
            Err("feed entry has no envelope".to_string())
        );
        assert_eq!(
            FeedEntry::from_proto(entry(Some(envelope.clone()), None)),
            Err("feed entry has no receipt".to_string())
        );
        let whole = FeedEntry::from_proto(entry(Some(envelope.clone()), Some(envelope)))
            .expect("both envelopes are there");
        assert_eq!(whole.feed_index, 7);
        assert_eq!(whole.envelope.payload, vec![1]);
    }
}

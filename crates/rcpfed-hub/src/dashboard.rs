//! What the dashboard reads from the hub's store: the latest checkpoint with its cosignatures
//! and each witness's state, and the policy summary statements of the log.

use rcpfed_core::members::{Federation, Role};
use rcpfed_core::statement::DocumentKind;
use rcpfed_grpc::dashboard::{
    CheckpointView, CosignatureView, DashboardSource, LogView, PolicyStatement, WitnessView,
};
use rcpfed_store::{HubStore, StatementFilter, StoreError};
use std::sync::Arc;

/// The hub's [`DashboardSource`].
pub struct HubDashboard {
    store: Arc<dyn HubStore>,
    quorum: u32,
}

impl HubDashboard {
    /// Reads `store`; a checkpoint with `quorum` cosignatures is final.
    pub fn new(store: Arc<dyn HubStore>, quorum: u32) -> Self {
        HubDashboard { store, quorum }
    }
}

impl DashboardSource for HubDashboard {
    fn server_role(&self) -> &'static str {
        "hub"
    }

    fn log_view(&self, federation: &Federation) -> Result<LogView, StoreError> {
        let latest = self.store.latest_checkpoint()?;
        let final_checkpoint = self.store.latest_final_checkpoint(self.quorum)?;
        let latest_cosignatures = match &latest {
            Some(c) => self.store.cosignatures(c.size)?,
            None => Vec::new(),
        };
        let final_cosignatures = match (&final_checkpoint, &latest) {
            (Some(f), Some(l)) if f.size == l.size => latest_cosignatures.clone(),
            (Some(f), _) => self.store.cosignatures(f.size)?,
            (None, _) => Vec::new(),
        };
        let signed =
            |list: &[rcpfed_store::Cosignature], id: &str| list.iter().any(|c| c.witness_id == id);
        let witnesses = federation
            .members()
            .filter(|m| m.has_role(Role::Witness))
            .map(|m| {
                let (cosigned_size, state) = match (&latest, &final_checkpoint) {
                    (Some(l), _) if signed(&latest_cosignatures, &m.id) => (
                        Some(l.size),
                        format!("cosigned the latest checkpoint (tree size {})", l.size),
                    ),
                    (Some(l), Some(f)) if signed(&final_cosignatures, &m.id) => (
                        Some(f.size),
                        format!(
                            "cosigned the latest final checkpoint (tree size {}), not yet the latest ({})",
                            f.size, l.size
                        ),
                    ),
                    (None, _) => (None, "nothing to cosign: the log is empty".to_string()),
                    _ => (
                        None,
                        "has cosigned neither the latest checkpoint nor the latest final one"
                            .to_string(),
                    ),
                };
                WitnessView {
                    id: m.id.clone(),
                    cosigned_size,
                    state,
                }
            })
            .collect();
        Ok(LogView {
            viewpoint: "the hub's log: its latest checkpoint and the cosignatures it holds".into(),
            checkpoint: latest.map(|c| CheckpointView {
                size: c.size,
                root: c.root,
                created_at_ms: Some(c.created_at_ms),
                note: c.note,
            }),
            cosignatures: latest_cosignatures
                .into_iter()
                .map(|c| CosignatureView {
                    witness_id: c.witness_id,
                    timestamp: c.timestamp,
                })
                .collect(),
            quorum: self.quorum,
            final_size: final_checkpoint.map(|c| c.size),
            witnesses,
        })
    }

    fn policy_page(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<PolicyStatement>, bool), StoreError> {
        let filter = StatementFilter {
            kind: Some(DocumentKind::PolicySummary.as_str().to_string()),
            ..StatementFilter::default()
        };
        let (rows, more) = self
            .store
            .list_statements_within(&filter, after, limit, max_bytes)?;
        let page = rows
            .into_iter()
            .map(|s| PolicyStatement {
                node_id: s.node_id,
                document: s.document,
                revision: s.revision,
                feed_index: s.feed_index,
                digest: s.digest,
                accepted_at_ms: s.accepted_at_ms,
                envelope: s.envelope,
            })
            .collect();
        Ok((page, more))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rcpfed_core::keys::SecretKey;
    use rcpfed_store::conformance::{checkpoint, cosignature};

    /// Three witnesses and the hub (a reader only).
    fn federation() -> Federation {
        let mut text = String::from("federation_id = \"f\"\nhub_id = \"gfmd\"\n");
        for (i, (id, roles)) in [
            ("gfmd", "\"reader\""),
            ("abu-dhabi", "\"witness\""),
            ("colombo", "\"witness\""),
            ("midwa", "\"witness\""),
        ]
        .into_iter()
        .enumerate()
        {
            let key = SecretKey::from_seed(&[u8::try_from(i).unwrap() + 1; 32]);
            text.push_str(&format!(
                "[[members]]\nid = \"{id}\"\nname = \"{id}\"\nkind = \"x\"\nroles = [{roles}]\n\
                 spiffe_id = \"spiffe://f/node/{id}\"\n\
                 [[members.keys]]\nkey_id = \"{}\"\npublic_key = \"{}\"\n",
                key.key_id(),
                key.verify_key().to_base64()
            ));
        }
        Federation::from_toml(&text).expect("member file")
    }

    #[test]
    fn each_witness_is_shown_with_what_it_cosigned() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn HubStore> =
            Arc::new(rcpfed_store::SqliteHubStore::open(&dir.path().join("hub.db")).unwrap());
        let dashboard = HubDashboard::new(Arc::clone(&store), 2);
        let empty = dashboard.log_view(&federation()).unwrap();
        assert!(empty.checkpoint.is_none() && empty.final_size.is_none());
        assert!(
            empty
                .witnesses
                .iter()
                .all(|w| w.state.contains("log is empty"))
        );

        // Size 1 cosigned by two witnesses (final at quorum 2); size 2 by one so far.
        for size in [1, 2] {
            store
                .append(&[], &[], &[], &[], Some(&checkpoint(size, "c")))
                .unwrap();
        }
        for (size, witness) in [(1, "abu-dhabi"), (1, "colombo"), (2, "abu-dhabi")] {
            store
                .add_cosignature(&cosignature(size, witness, "s"))
                .unwrap();
        }
        let view = dashboard.log_view(&federation()).unwrap();
        assert_eq!(view.checkpoint.as_ref().map(|c| c.size), Some(2));
        assert_eq!(view.final_size, Some(1));
        assert_eq!(view.quorum, 2);
        let cosigned: Vec<_> = view
            .cosignatures
            .iter()
            .map(|c| c.witness_id.as_str())
            .collect();
        assert_eq!(cosigned, ["abu-dhabi"]);
        let states: Vec<_> = view
            .witnesses
            .iter()
            .map(|w| (w.id.as_str(), w.cosigned_size, w.state.as_str()))
            .collect();
        assert_eq!(
            states,
            [
                (
                    "abu-dhabi",
                    Some(2),
                    "cosigned the latest checkpoint (tree size 2)"
                ),
                (
                    "colombo",
                    Some(1),
                    "cosigned the latest final checkpoint (tree size 1), not yet the latest (2)"
                ),
                (
                    "midwa",
                    None,
                    "has cosigned neither the latest checkpoint nor the latest final one"
                ),
            ]
        );
    }
}

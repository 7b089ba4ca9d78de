//! What the dashboard reads from a node: the checkpoint this node trusts (its witness state)
//! and the policy summary statements of its verified mirror. Members, indicators and
//! coherence reports come from the same mirror through the shared dashboard code, so a node's
//! dashboard shows what its IndicatorService answers.

use rcpfed_core::members::{Federation, Role};
use rcpfed_core::statement::DocumentKind;
use rcpfed_grpc::dashboard::{
    CheckpointView, DashboardSource, LogView, PolicyStatement, WitnessView,
};
use rcpfed_store::{NodeStore, StoreError};
use std::sync::Arc;

/// A node's [`DashboardSource`].
pub struct NodeDashboard {
    store: Arc<dyn NodeStore>,
    node_id: String,
}

impl NodeDashboard {
    /// Reads the mirror and witness state of node `node_id` in `store`.
    pub fn new(store: Arc<dyn NodeStore>, node_id: impl Into<String>) -> Self {
        NodeDashboard {
            store,
            node_id: node_id.into(),
        }
    }
}

impl DashboardSource for NodeDashboard {
    fn server_role(&self) -> &'static str {
        "node"
    }

    fn server_id(&self) -> Option<&str> {
        Some(&self.node_id)
    }

    fn log_view(&self, federation: &Federation) -> Result<LogView, StoreError> {
        let trusted = self.store.trusted_checkpoint()?;
        let forks = self.store.forks()?;
        let (cosigned_size, state) = match (forks.first(), &trusted) {
            (Some(fork), _) => (
                None,
                format!(
                    "recorded {} fork(s) of the hub's log and stopped cosigning; the first: {}",
                    forks.len(),
                    fork.problem
                ),
            ),
            (None, Some(t)) => (
                Some(t.size),
                format!(
                    "trusts the checkpoint of tree size {}, verified along consistency proofs, and cosigns it",
                    t.size
                ),
            ),
            (None, None) => (None, "has verified no checkpoint yet".to_string()),
        };
        let witnesses = federation
            .member(&self.node_id)
            .filter(|m| m.has_role(Role::Witness))
            .map(|m| WitnessView {
                id: m.id.clone(),
                cosigned_size,
                state,
            })
            .into_iter()
            .collect();
        Ok(LogView {
            viewpoint: format!(
                "the checkpoint node {} trusts (the other witnesses' cosignatures are held by the hub)",
                self.node_id
            ),
            checkpoint: trusted.map(|t| CheckpointView {
                size: t.size,
                root: t.root,
                created_at_ms: None,
                note: t.note,
            }),
            cosignatures: Vec::new(),
            quorum: 0,
            final_size: None,
            witnesses,
        })
    }

    fn policy_page(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<PolicyStatement>, bool), StoreError> {
        let (rows, more) = self.store.mirror_list_kind(
            DocumentKind::PolicySummary.as_str(),
            after,
            limit,
            max_bytes,
        )?;
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
    use rcpfed_store::TrustedCheckpoint;

    fn federation() -> Federation {
        let key = SecretKey::from_seed(&[4; 32]);
        let text = format!(
            "federation_id = \"f\"\nhub_id = \"colombo\"\n\
             [[members]]\nid = \"colombo\"\nname = \"Colombo Process\"\nkind = \"RCP\"\n\
             roles = [\"witness\"]\nspiffe_id = \"spiffe://f/node/colombo\"\n\
             [[members.keys]]\nkey_id = \"{}\"\npublic_key = \"{}\"\n",
            key.key_id(),
            key.verify_key().to_base64()
        );
        Federation::from_toml(&text).expect("member file")
    }

    #[test]
    fn the_node_shows_the_checkpoint_it_trusts_and_a_fork_it_saw() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn NodeStore> =
            Arc::new(rcpfed_store::SqliteNodeStore::open(&dir.path().join("node.db")).unwrap());
        let dashboard = NodeDashboard::new(Arc::clone(&store), "colombo");
        let before = dashboard.log_view(&federation()).unwrap();
        assert!(before.checkpoint.is_none());
        assert_eq!(before.witnesses[0].state, "has verified no checkpoint yet");

        let note = "f/log\n4\nroot\n\n— hub sig\n";
        store
            .advance_trusted(
                0,
                &TrustedCheckpoint {
                    size: 4,
                    root: [7; 32],
                    note: note.into(),
                },
            )
            .unwrap();
        let trusting = dashboard.log_view(&federation()).unwrap();
        assert_eq!(trusting.checkpoint.as_ref().map(|c| c.size), Some(4));
        assert_eq!(
            trusting.checkpoint.as_ref().and_then(|c| c.created_at_ms),
            None
        );
        assert_eq!(trusting.witnesses[0].cosigned_size, Some(4));
        assert!(trusting.viewpoint.contains("colombo"));
        assert!(trusting.cosignatures.is_empty() && trusting.quorum == 0);

        store
            .record_fork(note, "f/log\n4\nother root\n", "two roots for size 4", 1)
            .unwrap();
        let forked = dashboard.log_view(&federation()).unwrap();
        assert_eq!(forked.witnesses[0].cosigned_size, None);
        assert_eq!(
            forked.witnesses[0].state,
            "recorded 1 fork(s) of the hub's log and stopped cosigning; the first: two roots for size 4"
        );
        assert_eq!(
            dashboard.policy_page(0, 10, usize::MAX).unwrap(),
            (Vec::new(), false)
        );
    }
}

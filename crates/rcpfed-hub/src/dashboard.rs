//! What the dashboard reads from the hub's store: the latest checkpoint with its cosignatures
//! and each witness's state, and the policy summary statements of the log.

use rcpfed_core::members::{Federation, Role};
use rcpfed_core::statement::DocumentKind;
use rcpfed_grpc::dashboard::{
    CheckpointView, CosignatureView, DashboardSource, LogView, PolicyStatement, WitnessView,
};
use rcpfed_store::{HubStore, StatementFilter, StoreError};
use std::sync::Arc;

/// Statements read per store call while listing policy summaries.
const PAGE: usize = 200;

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

    fn policy_statements(&self, limit: usize) -> Result<(Vec<PolicyStatement>, bool), StoreError> {
        let filter = StatementFilter {
            kind: Some(DocumentKind::PolicySummary.as_str().to_string()),
            ..StatementFilter::default()
        };
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            // One more than wanted tells whether the list is cut.
            let want = (limit + 1 - out.len()).min(PAGE);
            let page = self.store.list_statements(&filter, after, want)?;
            let done = page.len() < want;
            for s in page {
                after = s.feed_index;
                out.push(PolicyStatement {
                    node_id: s.node_id,
                    document: s.document,
                    revision: s.revision,
                    feed_index: s.feed_index,
                    digest: s.digest,
                    accepted_at_ms: s.accepted_at_ms,
                    envelope: s.envelope,
                });
            }
            if done || out.len() > limit {
                break;
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        Ok((out, more))
    }
}

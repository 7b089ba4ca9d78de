//! Per-member quotas shared by the hub's and the node's services: what each member holds of a
//! resource ([`PerMember`]), a unit given back when dropped ([`Held`]) or when the response
//! stream holding it ends ([`HeldStream`]), and the refusal of a member over a quota
//! ([`quota_status`]).

use crate::status::ERROR_DOMAIN;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// What `RetryInfo` suggests when a member is over a quota.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A status for a member over a quota: RESOURCE_EXHAUSTED, the reason, the limit and when to
/// retry.
pub fn quota_status(reason: &'static str, limit: usize, message: String) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(
        reason,
        ERROR_DOMAIN,
        HashMap::from([("limit".to_string(), limit.to_string())]),
    );
    details.set_retry_info(Some(RETRY_AFTER));
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// Counts what each member holds of one resource; a [`Held`] gives its unit back on drop.
#[derive(Clone, Default)]
pub struct PerMember {
    held: Arc<Mutex<HashMap<String, usize>>>,
}

impl PerMember {
    /// One more unit for `member`, or None when it already holds `limit`.
    pub fn try_take(&self, member: &str, limit: usize) -> Option<Held> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(member.to_string()).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(Held {
            owner: self.clone(),
            member: member.to_string(),
        })
    }
}

/// One unit of a per-member quota, given back when dropped.
pub struct Held {
    owner: PerMember,
    member: String,
}

/// A response stream that holds a unit of a quota for as long as the stream exists: what it
/// has queued for a client that reads nothing stays counted until the call ends.
pub struct HeldStream<S> {
    inner: S,
    _held: Held,
}

impl<S> HeldStream<S> {
    /// `inner`, holding `held` until it is dropped.
    pub fn new(inner: S, held: Held) -> Self {
        HeldStream { inner, _held: held }
    }
}

impl<S: tokio_stream::Stream + Unpin> tokio_stream::Stream for HeldStream<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.owner.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.member) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.member);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_gets_its_limit_and_no_more_and_units_come_back() {
        let quota = PerMember::default();
        let a = quota.try_take("colombo", 2);
        let b = quota.try_take("colombo", 2);
        assert!(a.is_some() && b.is_some());
        assert!(quota.try_take("colombo", 2).is_none());
        // Another member is not affected.
        assert!(quota.try_take("midwa", 2).is_some());
        drop(a);
        assert!(quota.try_take("colombo", 2).is_some());
    }

    #[test]
    fn a_quota_refusal_says_why_and_when_to_retry() {
        let status = quota_status("SNAPSHOT_SLOT_BUSY", 1, "busy".into());
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        assert_eq!(
            details.error_info().map(|i| i.reason.as_str()),
            Some("SNAPSHOT_SLOT_BUSY")
        );
        assert!(details.retry_info().is_some());
    }
}

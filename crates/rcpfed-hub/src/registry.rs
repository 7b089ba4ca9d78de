//! The membership registry in force at the hub.
//!
//! Registry versions are the hub's own statements: each is logged and fed like any statement,
//! in the hub member's chain (seq = registry version, prev_digest = the previous version's
//! payload digest). At start-up the hub verifies every stored version from the GFMD root keys;
//! a new version is accepted only through `PublishRegistry`, verified against the version in
//! force (threshold, version + 1, chained digest, not expired), then put in force atomically.

use crate::ingest::VerifiedStatement;
use rcpfed_core::Digest;
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::limits::MAX_PAGE_BYTES;
use rcpfed_core::members::KeyLifecycle;
use rcpfed_core::registry::{REGISTRY_PAYLOAD_TYPE, Registry, RootSet, verify_chain, verify_first};
use rcpfed_core::rejection::{Rejection, reasons};
use rcpfed_store::{FlagRecord, HubStore, StatementFilter, StoreError};
use time::OffsetDateTime;

/// Kind recorded for registry versions in the statements table.
pub const REGISTRY_KIND: &str = "registry";
/// Document name of registry versions.
pub const REGISTRY_DOCUMENT: &str = "registry";

/// A verified registry version and its envelope.
#[derive(Clone)]
pub struct RegistryState {
    /// The decoded version.
    pub registry: Registry,
    /// SHA-256 of its payload.
    pub digest: Digest,
    /// The envelope as published.
    pub envelope: SignedEnvelope,
    /// The version before it, whose keys its revocations are compared with when statements
    /// are flagged ([`flag_revoked`]); None for version 1.
    pub previous: Option<Registry>,
}

/// Verifies a chain, tolerating an expired last version at start-up: a hub must be able to
/// start to receive the version that replaces it. Returns the registry and whether it expired.
fn verify_chain_at_startup(
    trust: &RootSet,
    federation_id: &str,
    versions: &[SignedEnvelope],
) -> Result<(Registry, bool), Rejection> {
    match verify_chain(trust, federation_id, versions, OffsetDateTime::now_utc()) {
        Ok(r) => Ok((r, false)),
        Err(e) if e.reason == reasons::REGISTRY_EXPIRED => {
            verify_chain(trust, federation_id, versions, OffsetDateTime::UNIX_EPOCH)
                .map(|r| (r, true))
        }
        Err(e) => Err(e),
    }
}

/// The registry versions stored in the log, oldest first.
pub fn stored_versions(
    store: &dyn HubStore,
    hub_id: &str,
) -> Result<Vec<SignedEnvelope>, StoreError> {
    let filter = StatementFilter {
        node_id: Some(hub_id.to_string()),
        kind: Some(REGISTRY_KIND.to_string()),
        document: None,
    };
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        // Bounded by bytes too: a member's statements may each be 1 MiB.
        let (rows, _) = store.list_statements_within(&filter, after, 500, MAX_PAGE_BYTES)?;
        let Some(last) = rows.last() else { break };
        after = last.feed_index;
        for row in rows {
            out.push(SignedEnvelope::decode(&row.envelope).map_err(|e| {
                StoreError::Corrupt(format!("stored registry version does not decode: {e}"))
            })?);
        }
    }
    Ok(out)
}

/// What start-up found.
pub struct Loaded {
    /// The version in force.
    pub state: RegistryState,
    /// True when `state` is the configured first version, not yet in the log.
    pub needs_logging: bool,
}

/// Determines the registry in force: every version stored in the log, verified from the root
/// keys; or, on a new hub, the configured first version verified from the root keys.
pub fn load(
    store: &dyn HubStore,
    trust: &RootSet,
    federation_id: &str,
    initial: &SignedEnvelope,
) -> Result<Loaded, String> {
    let first = match verify_first(initial, trust, federation_id, OffsetDateTime::now_utc()) {
        Ok(r) => r,
        Err(e) if e.reason == reasons::REGISTRY_EXPIRED => {
            verify_first(initial, trust, federation_id, OffsetDateTime::UNIX_EPOCH)
                .map_err(|e| e.to_string())?
        }
        Err(e) => {
            return Err(format!(
                "the configured registry version 1 does not verify from the root keys: {e}"
            ));
        }
    };
    let versions = stored_versions(store, &first.hub_id).map_err(|e| e.to_string())?;
    if versions.is_empty() {
        return Ok(Loaded {
            state: RegistryState {
                registry: first,
                digest: initial.digest(),
                envelope: initial.clone(),
                previous: None,
            },
            needs_logging: true,
        });
    }
    let (registry, expired) =
        verify_chain_at_startup(trust, federation_id, &versions).map_err(|e| {
            format!("the registry versions in the log do not verify from the root keys: {e}")
        })?;
    if expired {
        tracing::error!(
            version = registry.version,
            "REGISTRY EXPIRED: the registry in force has expired; nodes will refuse it until the root key holders publish a new version"
        );
    }
    let envelope = versions.last().cloned().ok_or("no registry version")?;
    // The chain without its last version verifies too (it is a prefix of a verified chain).
    let previous = match versions.split_last() {
        Some((_, earlier)) if !earlier.is_empty() => Some(
            verify_chain_at_startup(trust, federation_id, earlier)
                .map_err(|e| format!("the registry version before the one in force: {e}"))?
                .0,
        ),
        _ => None,
    };
    Ok(Loaded {
        state: RegistryState {
            registry,
            digest: envelope.digest(),
            envelope,
            previous,
        },
        needs_logging: false,
    })
}

/// The statement that logs a registry version in the hub's chain.
pub fn as_statement(state: &RegistryState, previous: Option<Digest>) -> VerifiedStatement {
    VerifiedStatement {
        node_id: state.registry.hub_id.clone(),
        seq: state.registry.version,
        prev_digest: previous,
        digest: state.digest,
        payload_type: REGISTRY_PAYLOAD_TYPE.to_string(),
        kind: REGISTRY_KIND,
        document: REGISTRY_DOCUMENT.to_string(),
        revision: u32::try_from(state.registry.version).unwrap_or(u32::MAX),
        envelope: state.envelope.encode(),
        leaf_hash: state.envelope.leaf_hash(),
        snapshot: None,
        decoded: rcpfed_store::DecodedStatement::default(),
    }
}

/// Keys revoked by `next` from a moment earlier than `previous` said (or not revoked before).
fn newly_revoked(previous: &Registry, next: &Registry) -> Vec<(String, String, OffsetDateTime)> {
    let before = |key_id: &str| {
        previous
            .members
            .iter()
            .flat_map(|m| m.keys.iter())
            .find(|k| k.key.key_id == key_id)
            .and_then(|k| match k.status {
                KeyLifecycle::Revoked(at) => Some(at),
                _ => None,
            })
    };
    let mut out = Vec::new();
    for m in &next.members {
        for k in &m.keys {
            if let KeyLifecycle::Revoked(at) = k.status
                && before(&k.key.key_id).is_none_or(|earlier| at < earlier)
            {
                out.push((m.id.clone(), k.key.key_id.clone(), at));
            }
        }
    }
    out
}

/// Flags again what the version in force revokes, adding only the flags that are missing
/// (a flag is stored once): a hub stopped, or a store full, between logging a version and
/// flagging what it revokes would otherwise leave those statements unflagged for good. Run at
/// start-up and when the version in force is published again. Returns how many flags are new.
pub fn reflag_in_force(store: &dyn HubStore, state: &RegistryState) -> Result<u32, StoreError> {
    match &state.previous {
        Some(previous) => flag_revoked(store, previous, &state.registry),
        None => Ok(0),
    }
}

/// Flags every stored statement signed by a key `next` revokes, accepted at or after the
/// revocation moment. Returns how many flags are new.
pub fn flag_revoked(
    store: &dyn HubStore,
    previous: &Registry,
    next: &Registry,
) -> Result<u32, StoreError> {
    let mut flags = Vec::new();
    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    for (member, key_id, at) in newly_revoked(previous, next) {
        let at_ms = (at.unix_timestamp_nanos() / 1_000_000) as i64;
        let filter = StatementFilter {
            node_id: Some(member.clone()),
            kind: None,
            document: None,
        };
        let mut after = 0;
        loop {
            // Bounded by bytes too: a member's statements may each be 1 MiB.
            let (rows, _) = store.list_statements_within(&filter, after, 500, MAX_PAGE_BYTES)?;
            let Some(last) = rows.last() else { break };
            after = last.feed_index;
            for row in rows.iter().filter(|r| r.accepted_at_ms >= at_ms) {
                let signed_by_key = SignedEnvelope::decode(&row.envelope)
                    .map(|e| e.signatures.iter().any(|s| s.key_id == key_id))
                    .unwrap_or(false);
                if signed_by_key {
                    flags.push(FlagRecord {
                        node_id: row.node_id.clone(),
                        seq: row.seq,
                        reason: format!(
                            "signed with key {key_id}, which registry version {} revokes from {at}; the hub accepted it after that moment",
                            next.version
                        ),
                        key_id: key_id.clone(),
                        registry_version: next.version,
                        flagged_at_ms: now_ms,
                    });
                }
            }
        }
    }
    if flags.is_empty() {
        return Ok(0);
    }
    store.flag_statements(&flags)
}

//! The indicator catalogue in force at the hub.
//!
//! Catalogue versions are hub-issued documents, logged like registry versions: each is a DSSE
//! envelope signed by the hub member's statement signing key, in the chain
//! `{hub_id}/catalogue` (seq = version, prev_digest = the previous version's payload digest),
//! so it gets a receipt, a log leaf and a feed entry, and every node mirrors it. At start-up
//! the hub verifies every logged version as a chain with the hub member's keys, then logs the
//! configured catalogue as the next version only if its content differs from the latest: a
//! restart with the same file issues nothing.

use crate::HubBackend;
use crate::ingest::{Ingest, IngestError, IngestOutcome, VerifiedStatement};
use rcpfed_core::catalogue::{
    CATALOGUE_PAYLOAD_TYPE, Catalogue, SignedCatalogue, same_content, sign_catalogue,
    verify_catalogue,
};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::keys::{SecretKey, VerifyKey};
use rcpfed_store::{CATALOGUE_KIND, StatementFilter, catalogue_chain};
use std::sync::Arc;
use time::OffsetDateTime;

/// Document name of catalogue versions in the log.
pub const CATALOGUE_DOCUMENT: &str = "catalogue";

/// The catalogue in force, shared by the request handlers and the coherence task. It is
/// fixed while the hub runs: a new version is only logged at start-up ([`establish`]).
#[derive(Clone)]
pub struct SharedCatalogue(Arc<SignedCatalogue>);

impl SharedCatalogue {
    /// Puts `catalogue` in force (only once it is logged).
    pub fn new(catalogue: SignedCatalogue) -> Self {
        SharedCatalogue(Arc::new(catalogue))
    }

    /// The version in force; keep the `Arc` for the whole check.
    pub fn get(&self) -> Arc<SignedCatalogue> {
        Arc::clone(&self.0)
    }
}

/// Who issues catalogue versions.
pub struct Issuer {
    /// The federation.
    pub federation_id: String,
    /// The hub member id (its chain is `{hub_id}/catalogue`).
    pub hub_id: String,
    /// Every key of the hub member in the registry in force: older versions may be signed
    /// with a key since rotated.
    pub hub_keys: Vec<VerifyKey>,
    /// The hub's statement signing key.
    pub key: SecretKey,
}

/// Every logged catalogue version, verified as one chain from version 1; the latest, or None
/// when none is logged. The chain is short (one version per content change), so reading it
/// whole at start-up costs nothing.
pub fn load_chain(
    store: &dyn HubBackend,
    issuer: &Issuer,
) -> Result<Option<SignedCatalogue>, String> {
    let filter = StatementFilter {
        node_id: Some(catalogue_chain(&issuer.hub_id)),
        kind: Some(CATALOGUE_KIND.to_string()),
        document: None,
    };
    let mut latest: Option<SignedCatalogue> = None;
    let mut after = 0;
    loop {
        let (rows, _) = store
            .list_statements_within(&filter, after, 100, rcpfed_core::limits::MAX_PAGE_BYTES)
            .map_err(|e| format!("cannot read the logged catalogue versions: {e}"))?;
        let Some(last) = rows.last() else { break };
        after = last.feed_index;
        for row in rows {
            let envelope = SignedEnvelope::decode(&row.envelope).map_err(|e| {
                format!("logged catalogue version {} does not decode: {e}", row.seq)
            })?;
            let previous = latest.as_ref().map(|c| (c.version, c.digest));
            let verified =
                verify_catalogue(&envelope, &issuer.hub_keys, &issuer.federation_id, previous)
                    .map_err(|e| {
                        format!(
                            "logged catalogue version {} does not verify with the hub's keys: {e}",
                            row.seq
                        )
                    })?;
            latest = Some(verified);
        }
    }
    Ok(latest)
}

/// The next catalogue version for `configured`, if its content differs from `latest`:
/// signed, verified like any receiver would, and its log statement.
pub fn next_version(
    configured: &Catalogue,
    latest: Option<&SignedCatalogue>,
    issuer: &Issuer,
    now: OffsetDateTime,
) -> Result<Option<(SignedCatalogue, VerifiedStatement)>, String> {
    if let Some(latest) = latest
        && same_content(&latest.catalogue, configured)
    {
        return Ok(None);
    }
    let previous = latest.map(|c| (c.version, c.digest));
    let version = previous.map_or(1, |(v, _)| v + 1);
    let envelope = sign_catalogue(
        configured,
        &issuer.federation_id,
        version,
        now,
        previous.map(|p| p.1),
        &issuer.key,
    );
    // Sign nothing a node would refuse.
    let signed = verify_catalogue(&envelope, &issuer.hub_keys, &issuer.federation_id, previous)
        .map_err(|e| format!("catalogue version {version} does not verify after signing: {e}"))?;
    let statement = VerifiedStatement {
        node_id: catalogue_chain(&issuer.hub_id),
        seq: version,
        prev_digest: previous.map(|p| p.1),
        digest: signed.digest,
        payload_type: CATALOGUE_PAYLOAD_TYPE.to_string(),
        kind: CATALOGUE_KIND,
        document: CATALOGUE_DOCUMENT.to_string(),
        revision: u32::try_from(version).unwrap_or(u32::MAX),
        envelope: envelope.encode(),
        leaf_hash: envelope.leaf_hash(),
        snapshot: None,
        decoded: rcpfed_store::DecodedStatement::default(),
    };
    Ok(Some((signed, statement)))
}

/// Start-up: verifies the logged chain, logs `configured` as the next version when it says
/// something new, and returns the version in force.
pub async fn establish(
    store: Arc<dyn HubBackend>,
    ingest: &Ingest,
    issuer: Issuer,
    configured: Catalogue,
) -> Result<SignedCatalogue, String> {
    let (latest, next, issuer) = tokio::task::spawn_blocking(move || {
        let latest = load_chain(store.as_ref(), &issuer)?;
        let next = next_version(
            &configured,
            latest.as_ref(),
            &issuer,
            OffsetDateTime::now_utc(),
        )?;
        Ok::<_, String>((latest, next, issuer))
    })
    .await
    .map_err(|e| format!("catalogue loader panicked: {e}"))??;
    let Some((signed, statement)) = next else {
        return latest.ok_or_else(|| "no catalogue version is logged".to_string());
    };
    match ingest.submit(statement).await {
        Ok(IngestOutcome::Accepted { .. }) => {
            tracing::info!(
                version = signed.version,
                hub = %issuer.hub_id,
                "catalogue version logged"
            );
            Ok(signed)
        }
        Ok(IngestOutcome::Duplicate { .. }) => Ok(signed),
        Err(IngestError::Rejected(r)) => Err(format!(
            "cannot log catalogue version {}: {r}",
            signed.version
        )),
        Err(e) => Err(format!(
            "cannot log catalogue version {}: {e}",
            signed.version
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcpfed_core::catalogue::embedded_catalogue_toml;

    fn issuer() -> Issuer {
        let key = SecretKey::from_seed(&[7; 32]);
        Issuer {
            federation_id: "gfmd-test".into(),
            hub_id: "gfmd".into(),
            hub_keys: vec![key.verify_key().clone()],
            key,
        }
    }

    #[test]
    fn same_content_issues_nothing_and_a_change_issues_the_next_version() {
        let issuer = issuer();
        let cat = Catalogue::from_toml(embedded_catalogue_toml()).expect("shipped catalogue");
        let (v1, st1) = next_version(&cat, None, &issuer, OffsetDateTime::now_utc())
            .expect("signs")
            .expect("first version");
        assert_eq!(v1.version, 1);
        assert_eq!(st1.seq, 1);
        assert_eq!(st1.prev_digest, None);
        assert_eq!(st1.node_id, "gfmd/catalogue");
        assert_eq!(st1.kind, CATALOGUE_KIND);
        assert!(
            next_version(&cat, Some(&v1), &issuer, OffsetDateTime::now_utc())
                .expect("compares")
                .is_none()
        );
        let mut changed = cat.clone();
        changed.catalogue.name.push_str(" (revised)");
        let (v2, st2) = next_version(&changed, Some(&v1), &issuer, OffsetDateTime::now_utc())
            .expect("signs")
            .expect("second version");
        assert_eq!(v2.version, 2);
        assert_eq!(st2.prev_digest, Some(v1.digest));
        assert_eq!(st2.revision, 2);
    }
}

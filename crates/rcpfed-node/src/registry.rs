//! The registry version this node trusts.
//!
//! At start-up the node takes, in order: the last version it trusted (its cache, which holds
//! the chain of versions 1 … current and is verified again from `root-trust.toml`), the
//! configured version 1 verified from the root keys, or every version fetched from the hub and
//! verified as a chain from the root keys (a node that has only the root keys can bootstrap).
//! After that, new versions arrive through the feed like statements and are put in force only
//! if they verify against the version in force (threshold, version + 1, chained digest, not
//! expired). Each accepted version is written to the cache before it is used.

use rcpfed_core::Digest;
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::registry::{
    REGISTRY_PAYLOAD_TYPE, Registry, RootSet, decode_and_check, verify_chain, verify_first,
    verify_next, verify_root_signatures,
};
use rcpfed_core::rejection::{RejectClass, Rejection, reasons};
use rcpfed_grpc::failover::FailoverChannel as Channel;
use rcpfed_grpc::shared::SharedFederation;
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

struct InForce {
    registry: Registry,
    digest: Digest,
    /// Versions 1 … current, cached so the cache can be verified from the root keys.
    chain: Vec<SignedEnvelope>,
}

/// The registry in force at this node.
pub struct NodeRegistry {
    in_force: tokio::sync::Mutex<InForce>,
    shared: SharedFederation,
    cache: PathBuf,
}

/// First bytes of a cache file that holds the whole chain of registry versions.
const CHAIN_MAGIC: &[u8] = b"rcpfed-registry-chain-v1\n";

/// Writes the chain of versions in force (1 … current): write then rename, so a crash never
/// leaves half a registry behind.
fn write_cache(path: &Path, chain: &[SignedEnvelope]) -> std::io::Result<()> {
    let mut bytes = CHAIN_MAGIC.to_vec();
    for envelope in chain {
        let encoded = envelope.encode();
        let len = u32::try_from(encoded.len()).map_err(std::io::Error::other)?;
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&encoded);
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn split_chain(bytes: &[u8]) -> Option<Vec<SignedEnvelope>> {
    let mut rest = bytes.strip_prefix(CHAIN_MAGIC)?;
    let mut chain = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        if tail.len() < len {
            return None;
        }
        let (encoded, tail) = tail.split_at(len);
        chain.push(SignedEnvelope::decode(encoded).ok()?);
        rest = tail;
    }
    Some(chain)
}

/// The cached chain, if any, verified again from the root keys of `root-trust.toml` (never
/// from the roots the cache itself names: a cache that vouches for itself proves nothing). The
/// last version may have expired since; [`NodeRegistry::bootstrap`] says so loudly.
fn read_cache(
    path: &Path,
    trust: &RootSet,
    federation_id: &str,
) -> Result<Option<(Registry, Vec<SignedEnvelope>)>, String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(None);
    };
    let refused = |why: String| {
        format!(
            "registry cache {} refused: {why}; remove it to fetch the registry from the hub again",
            path.display()
        )
    };
    let chain = match split_chain(&bytes) {
        Some(chain) => chain,
        // A cache from before chains were kept: one envelope.
        None => vec![
            SignedEnvelope::decode(&bytes)
                .map_err(|e| refused(format!("not a registry chain or envelope: {e}")))?,
        ],
    };
    let (first, rest) = chain
        .split_first()
        .ok_or_else(|| refused("it holds no registry version".into()))?;
    let first_version = decode_and_check(&first.payload).map_err(|e| refused(e.to_string()))?;
    // Expiry is reported by the caller, not refused: judge each version within its validity.
    let within = |r: &Registry| r.expires_at - time::Duration::seconds(1);
    let mut registry = if first_version.version == 1 {
        verify_first(first, trust, federation_id, within(&first_version)).map_err(|e| {
            refused(format!(
                "it does not verify from the trusted root keys: {e}"
            ))
        })?
    } else {
        // A chain cached by an older node starts at the version it then trusted: accepted
        // only if the root keys of root-trust.toml sign it by their threshold.
        if first_version.federation_id != federation_id {
            return Err(refused(format!(
                "it is for federation {}",
                first_version.federation_id
            )));
        }
        let valid = verify_root_signatures(first, trust)
            .map_err(|e| refused(format!("not signed by the trusted root keys: {e}")))?;
        if valid < trust.threshold as usize {
            return Err(refused(format!(
                "{valid} valid signature(s) by the trusted root keys, {} needed",
                trust.threshold
            )));
        }
        first_version
    };
    let mut digest = first.digest();
    for envelope in rest {
        let next = decode_and_check(&envelope.payload).map_err(|e| refused(e.to_string()))?;
        registry = verify_next(&registry, &digest, envelope, within(&next))
            .map_err(|e| refused(format!("version {} does not follow: {e}", next.version)))?;
        digest = envelope.digest();
    }
    Ok(Some((registry, chain)))
}

async fn fetch_all(hub: &mut HubServiceClient<Channel>) -> Result<Vec<SignedEnvelope>, String> {
    let mut out = Vec::new();
    loop {
        let page = hub
            .list_registry_versions(v1::ListRegistryVersionsRequest {
                after_version: out.len() as u64,
                page_size: 1000,
            })
            .await
            .map_err(|s| format!("ListRegistryVersions: {}", s.message()))?
            .into_inner();
        if page.versions.is_empty() {
            return Ok(out);
        }
        out.extend(page.versions.into_iter().map(SignedEnvelope::from_proto));
    }
}

impl NodeRegistry {
    /// Determines the version in force at start-up (see the module documentation). Fetching
    /// from the hub retries until it succeeds or `shutdown` is cancelled.
    pub async fn bootstrap(
        trust: &RootSet,
        federation_id: &str,
        initial: Option<&SignedEnvelope>,
        cache: PathBuf,
        channel: Channel,
        call_timeout: std::time::Duration,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<(Self, Registry), String> {
        let now = OffsetDateTime::now_utc();
        let (registry, chain) = if let Some(found) = read_cache(&cache, trust, federation_id)? {
            found
        } else if let Some(initial) = initial {
            let registry = verify_first(initial, trust, federation_id, now).map_err(|e| {
                format!("the configured registry version 1 does not verify from the root keys: {e}")
            })?;
            (registry, vec![initial.clone()])
        } else {
            let mut hub = HubServiceClient::new(channel);
            let mut delay = std::time::Duration::from_millis(200);
            loop {
                let fetched = tokio::select! {
                    f = tokio::time::timeout(call_timeout, fetch_all(&mut hub)) => {
                        f.unwrap_or_else(|_| Err("the hub did not answer in time".into()))
                    }
                    () = shutdown.cancelled() => return Err("shut down before the registry was fetched".into()),
                };
                match fetched {
                    Ok(versions) if !versions.is_empty() => {
                        let registry = verify_chain(trust, federation_id, &versions, now)
                            .map_err(|e| format!("the hub's registry versions do not verify from the root keys: {e}"))?;
                        break (registry, versions);
                    }
                    Ok(_) => tracing::warn!("the hub has no registry version yet; retrying"),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot fetch the registry from the hub yet; retrying")
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return Err("shut down before the registry was fetched".into()),
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(10));
            }
        };
        if registry.expires_at <= now {
            // Freeze defence: an expired version is not trusted as current. The node still
            // starts (it must reach the hub to receive the next version through the feed),
            // but says so loudly.
            tracing::error!(
                version = registry.version,
                expired_at = %registry.expires_at,
                "REGISTRY EXPIRED: the registry version this node trusts has expired; waiting for a newer one from the hub"
            );
        }
        write_cache(&cache, &chain)
            .map_err(|e| format!("writing registry cache {}: {e}", cache.display()))?;
        let federation = registry.to_federation().map_err(|e| e.to_string())?;
        let digest = chain
            .last()
            .map(SignedEnvelope::digest)
            .ok_or("no registry version")?;
        let this = NodeRegistry {
            in_force: tokio::sync::Mutex::new(InForce {
                registry: registry.clone(),
                digest,
                chain,
            }),
            shared: SharedFederation::new(federation),
            cache,
        };
        Ok((this, registry))
    }

    /// The federation derived from the version in force, shared with every task.
    pub fn shared(&self) -> SharedFederation {
        self.shared.clone()
    }

    /// A registry version met in the feed, logged by the hub at `logged_at`. Versions up to
    /// the one in force are history; the next one is verified against the one in force and put
    /// in force. Expiry is judged at the moment the hub logged it, so a node that was offline
    /// can catch up through versions that have expired since (the log proves when each was
    /// current). Returns the decoded version.
    pub async fn observe(
        &self,
        envelope: &SignedEnvelope,
        logged_at: OffsetDateTime,
    ) -> Result<Registry, Rejection> {
        if envelope.payload_type != REGISTRY_PAYLOAD_TYPE {
            return Err(Rejection::new(
                RejectClass::Invalid,
                reasons::UNKNOWN_PAYLOAD_TYPE,
                "not a registry version",
            ));
        }
        let mut in_force = self.in_force.lock().await;
        if envelope.digest() == in_force.digest {
            return Ok(in_force.registry.clone());
        }
        let decoded = decode_and_check(&envelope.payload)?;
        if decoded.version <= in_force.registry.version {
            // History from before this node's version in force; it was logged and witnessed
            // like every entry.
            return Ok(decoded);
        }
        let next = verify_next(&in_force.registry, &in_force.digest, envelope, logged_at)?;
        if next.expires_at <= OffsetDateTime::now_utc() {
            tracing::warn!(
                version = next.version,
                "the registry version in force has expired; waiting for a newer one from the feed"
            );
        }
        let federation = next.to_federation()?;
        let mut chain = in_force.chain.clone();
        chain.push(envelope.clone());
        write_cache(&self.cache, &chain).map_err(|e| {
            Rejection::new(
                RejectClass::Precondition,
                reasons::REGISTRY_INVALID,
                format!("writing registry cache: {e}"),
            )
        })?;
        self.shared.set(federation);
        tracing::info!(version = next.version, "registry version in force");
        *in_force = InForce {
            registry: next.clone(),
            digest: envelope.digest(),
            chain,
        };
        Ok(next)
    }
}

//! What `rcpfed pki init` uses: the root keys and the first, threshold-signed registry version.

use super::files::{now_seconds, write_new};
use super::json::{describe, envelope_to_json};
use anyhow::{Context as _, Result, anyhow, bail};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::keys::{SecretKey, VerifyKey};
use rcpfed_core::members::FederationFile;
use rcpfed_core::registry::{
    KeyEntry, KeyLifecycle, REGISTRY_PAYLOAD_TYPE, Registry, RegistryMemberEntry, RootSet,
    add_root_signature, verify_first,
};
use std::path::Path;
use time::{Date, Duration, OffsetDateTime};
/// Creates `n` GFMD root keys under `<dir>/root/root-<i>.key` (mode 0600, refusing to
/// overwrite), writes `<dir>/root-trust.toml` (federation id, threshold, public keys) and
/// returns the root set with the secret keys.
pub fn create_root_keys(
    dir: &Path,
    federation_id: &str,
    n: usize,
    threshold: u32,
) -> Result<(RootSet, Vec<SecretKey>)> {
    use std::os::unix::fs::DirBuilderExt as _;
    if n == 0 || threshold == 0 || usize::try_from(threshold).map_or(true, |t| t > n) {
        bail!(
            "the root threshold must be between 1 and the number of root keys ({n}), not {threshold}"
        );
    }
    let secrets = (0..n)
        .map(|_| SecretKey::generate())
        .collect::<Result<Vec<_>, _>>()
        .context("generating root keys")?;
    let root = RootSet {
        keys: secrets
            .iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    k.verify_key().clone(),
                    format!("GFMD root key holder {} of {n}", i + 1),
                )
            })
            .collect(),
        threshold,
    };
    let trust = root.to_trust_file(federation_id);
    trust
        .to_root_set()
        .map_err(|e| anyhow!("the root set is not valid: {}", describe(&e)))?;
    let root_dir = dir.join("root");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&root_dir)
        .with_context(|| format!("cannot create {}", root_dir.display()))?;
    for (i, key) in secrets.iter().enumerate() {
        let path = root_dir.join(format!("root-{}.key", i + 1));
        write_new(&path, &key.to_file_text(), true)?;
    }
    let header = format!(
        "# Root keys of federation {federation_id}: {threshold} of {n} sign each registry version.\n\
         # A node started with only this file bootstraps from registry version 1.\n\n"
    );
    write_new(
        &dir.join("root-trust.toml"),
        &format!(
            "{header}{}",
            trust
                .to_toml()
                .context("cannot write the root trust file as TOML")?
        ),
        false,
    )?;
    Ok((root, secrets))
}

pub(super) fn member_from_file(
    m: &rcpfed_core::members::MemberFile,
    valid_from: OffsetDateTime,
) -> Result<RegistryMemberEntry> {
    let keys = m
        .keys
        .iter()
        .map(|k| {
            let key = VerifyKey::from_base64(&k.public_key)
                .with_context(|| format!("member {}: key {}", m.id, k.key_id))?;
            if key.key_id != k.key_id {
                bail!(
                    "member {}: key id {} does not match its public key (expected {})",
                    m.id,
                    k.key_id,
                    key.key_id
                );
            }
            Ok(KeyEntry {
                key,
                valid_from,
                status: KeyLifecycle::Active,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let date = |text: &str, what: &str| -> Result<Option<Date>> {
        if text.is_empty() {
            return Ok(None);
        }
        rcpfed_core::dates::parse_date(text)
            .map(Some)
            .ok_or_else(|| anyhow!("member {}: {what} {text:?} is not a YYYY-MM-DD date", m.id))
    };
    let states = m
        .states
        .iter()
        .map(|s| {
            Ok(rcpfed_core::members::Membership {
                iso3: s.iso3.clone(),
                since: date(&s.since, "since")?,
                until: date(&s.until, "until")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RegistryMemberEntry {
        id: m.id.clone(),
        name: m.name.clone(),
        kind: m.kind.clone(),
        roles: m.roles.clone(),
        spiffe_id: m.spiffe_id.clone(),
        keys,
        states,
    })
}

/// Registry version 1 for `federation` (every key active from one hour ago, expiring in
/// `valid_days`), checked but not signed.
pub fn first_version(
    federation: &FederationFile,
    root: &RootSet,
    now: OffsetDateTime,
    valid_days: u32,
) -> Result<Registry> {
    let valid_from = now - Duration::hours(1);
    let registry = Registry {
        federation_id: federation.federation_id.clone(),
        version: 1,
        issued_at: now,
        expires_at: now + Duration::days(i64::from(valid_days)),
        previous_digest: None,
        root: root.clone(),
        hub_id: federation.hub_id.clone(),
        members: federation
            .members
            .iter()
            .map(|m| member_from_file(m, valid_from))
            .collect::<Result<_>>()?,
    };
    registry
        .check()
        .map_err(|e| anyhow!("registry version 1 would not be valid: {}", describe(&e)))?;
    Ok(registry)
}

/// Signs `registry` with every key of `signers` (an unsigned envelope when there is none).
pub(super) fn sign_all(registry: &Registry, signers: &[SecretKey]) -> SignedEnvelope {
    let mut env = SignedEnvelope {
        payload_type: REGISTRY_PAYLOAD_TYPE.to_owned(),
        payload: registry.encode(),
        signatures: Vec::new(),
    };
    for key in signers {
        add_root_signature(&mut env, key);
    }
    env
}

/// Builds registry version 1 from the member file written by `pki init` (every key active from
/// now − 1 h; expires in `valid_days`), signs it with `signers` (at least the root threshold),
/// writes `<dir>/registry/registry.v1.json` and returns the envelope.
pub fn create_first_version(
    dir: &Path,
    federation: &FederationFile,
    root: &RootSet,
    signers: &[SecretKey],
    valid_days: u32,
) -> Result<SignedEnvelope> {
    let now = now_seconds();
    let registry = first_version(federation, root, now, valid_days)?;
    let env = sign_all(&registry, signers);
    verify_first(&env, root, &federation.federation_id, now)
        .map_err(|e| anyhow!("registry version 1 does not verify: {}", describe(&e)))?;
    let out_dir = dir.join("registry");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    write_new(
        &out_dir.join("registry.v1.json"),
        &envelope_to_json(&env),
        false,
    )?;
    Ok(env)
}

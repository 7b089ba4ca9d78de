//! The offline steps `draft`, `build` and `sign`.

use super::bootstrap::sign_all;
use super::draft_file::{DraftFile, format_date, parse_rfc3339, rfc3339};
use super::files::{load_secret_key, load_trust, write_new, write_replace};
use super::json::{describe, envelope_to_json, read_envelope, registry_of};
use super::{BuildArgs, DraftArgs, SignArgs};

use anyhow::{Context as _, Result, anyhow, bail};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::keys::{SecretKey, VerifyKey};
use rcpfed_core::registry::{
    KeyEntry, KeyLifecycle, Registry, RootSet, add_root_signature, verify_root_signatures,
};
use std::path::Path;
use time::{Duration, OffsetDateTime};
pub(super) fn find_key_mut<'a>(
    registry: &'a mut Registry,
    key_id: &str,
) -> Result<(&'a str, &'a mut KeyEntry)> {
    registry
        .members
        .iter_mut()
        .find_map(|m| {
            let id = m.id.as_str();
            m.keys
                .iter_mut()
                .find(|k| k.key.key_id == key_id)
                .map(|k| (id, k))
        })
        .ok_or_else(|| anyhow!("no member has key {key_id}"))
}

pub(super) fn parse_new_key(text: &str) -> Result<VerifyKey> {
    let path = Path::new(text);
    if path.is_file() {
        let content =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if let Ok(secret) = SecretKey::from_file_text(&content) {
            return Ok(secret.verify_key().clone());
        }
        return VerifyKey::from_base64(&content).map_err(|e| {
            anyhow!(
                "{} is neither a signing key file nor a base64 public key: {e}",
                path.display()
            )
        });
    }
    VerifyKey::from_base64(text).map_err(|e| {
        anyhow!("{text:?} is neither an existing key file nor a base64 public key: {e}")
    })
}

pub(super) fn root_summary(root: &RootSet) -> String {
    format!("{} of {} root keys", root.threshold, root.keys.len())
}

/// Applies the edits of `args` to the draft of the version after `current`; returns the
/// plain-words changes.
pub(super) fn apply_edits(
    next: &mut Registry,
    args: &DraftArgs,
    now: OffsetDateTime,
) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    if let Some(path) = &args.new_root {
        changes.push(replace_root(next, path)?);
    }
    for spec in &args.rotate_key {
        changes.push(rotate_key(next, spec, now)?);
    }
    for spec in &args.retire_key {
        changes.push(retire_key(next, spec, now)?);
    }
    for spec in &args.revoke_key {
        changes.push(revoke_key(next, spec)?);
    }
    for spec in &args.state_until {
        changes.push(end_state_membership(next, spec)?);
    }
    Ok(changes)
}

/// `--new-root`: the root key set of the trust file at `path` replaces the current one.
fn replace_root(next: &mut Registry, path: &Path) -> Result<String> {
    let (file, root) = load_trust(path)?;
    if file.federation_id != next.federation_id {
        bail!(
            "{} is for federation {:?}, not {:?}",
            path.display(),
            file.federation_id,
            next.federation_id
        );
    }
    let change = if root.same_trust(&next.root) {
        "the root keys stay the same (--new-root lists the current set)".to_string()
    } else {
        let old = &next.root;
        let added: Vec<&str> = root
            .keys
            .iter()
            .filter(|(k, _)| !old.keys.iter().any(|(o, _)| o.to_bytes() == k.to_bytes()))
            .map(|(k, _)| k.key_id.as_str())
            .collect();
        let removed: Vec<&str> = old
            .keys
            .iter()
            .filter(|(k, _)| !root.keys.iter().any(|(n, _)| n.to_bytes() == k.to_bytes()))
            .map(|(k, _)| k.key_id.as_str())
            .collect();
        format!(
            "the root keys change from {} to {}: added {}; removed {}. This version must be signed by {} of the current root keys AND {} of the new ones.",
            root_summary(old),
            root_summary(&root),
            if added.is_empty() {
                "none".into()
            } else {
                added.join(", ")
            },
            if removed.is_empty() {
                "none".into()
            } else {
                removed.join(", ")
            },
            old.threshold,
            root.threshold
        )
    };
    next.root = root;
    Ok(change)
}

/// `--rotate-key <member>=<key>`: the new key is active from `now`; the member's active
/// keys are retired at that moment.
fn rotate_key(next: &mut Registry, spec: &str, now: OffsetDateTime) -> Result<String> {
    let (member_id, key_text) = spec.split_once('=').ok_or_else(|| {
        anyhow!("--rotate-key {spec:?}: expected <member>=<key file or base64 public key>")
    })?;
    let key = parse_new_key(key_text)?;
    if next
        .members
        .iter()
        .flat_map(|m| &m.keys)
        .any(|k| k.key.to_bytes() == key.to_bytes())
    {
        bail!(
            "--rotate-key: key {} is already in the registry",
            key.key_id
        );
    }
    let member = next
        .members
        .iter_mut()
        .find(|m| m.id == member_id)
        .ok_or_else(|| anyhow!("--rotate-key: no member {member_id:?}"))?;
    let mut retired = Vec::new();
    for k in &mut member.keys {
        if k.status == KeyLifecycle::Active {
            k.status = KeyLifecycle::Retired(now);
            retired.push(k.key.key_id.clone());
        }
    }
    member.keys.push(KeyEntry {
        key: key.clone(),
        valid_from: now,
        status: KeyLifecycle::Active,
    });
    Ok(format!(
        "member {member_id} rotates its signing key: new key {} is active from {}{}",
        key.key_id,
        rfc3339(now),
        if retired.is_empty() {
            String::new()
        } else {
            format!(
                "; {} retired at the same moment (what it signed before still verifies)",
                retired.join(", ")
            )
        }
    ))
}

/// `--retire-key <key_id>[@<time>]`: an active key is retired (at `now` by default).
fn retire_key(next: &mut Registry, spec: &str, now: OffsetDateTime) -> Result<String> {
    let (key_id, at) = match spec.split_once('@') {
        Some((key_id, at)) => (
            key_id,
            parse_rfc3339(at).map_err(|e| anyhow!("--retire-key {spec:?}: {e}"))?,
        ),
        None => (spec, now),
    };
    let (member, entry) = find_key_mut(next, key_id)?;
    if entry.status != KeyLifecycle::Active {
        bail!(
            "--retire-key: key {key_id} of {member} is already {} at {}",
            entry.status.status_str(),
            entry.status.status_at().map(rfc3339).unwrap_or_default()
        );
    }
    entry.status = KeyLifecycle::Retired(at);
    Ok(format!(
        "key {key_id} of member {member} is retired at {}: statements it signed before still verify, later ones are refused (KEY_RETIRED)",
        rfc3339(at)
    ))
}

/// `--revoke-key <key_id>@<time>`: a key is revoked (from its retirement, if earlier).
fn revoke_key(next: &mut Registry, spec: &str) -> Result<String> {
    let (key_id, at) = spec
        .split_once('@')
        .ok_or_else(|| anyhow!("--revoke-key {spec:?}: expected <key_id>@<RFC 3339 time>"))?;
    let at = parse_rfc3339(at).map_err(|e| anyhow!("--revoke-key {spec:?}: {e}"))?;
    let (member, entry) = find_key_mut(next, key_id)?;
    let (at, note) = match entry.status {
        KeyLifecycle::Retired(retired) if retired < at => (
            retired,
            format!(
                " (it was retired at {}, so the revocation takes effect from then)",
                rfc3339(retired)
            ),
        ),
        KeyLifecycle::Revoked(_) => {
            bail!("--revoke-key: key {key_id} of {member} is already revoked")
        }
        _ => (at, String::new()),
    };
    entry.status = KeyLifecycle::Revoked(at);
    Ok(format!(
        "key {key_id} of member {member} is revoked at {}{note}: statements it signed from then on are refused (KEY_REVOKED) and the hub flags those it already accepted",
        rfc3339(at)
    ))
}

/// `--state-until <member>:<ISO3>=<date>`: a current member state stops belonging on `date`.
fn end_state_membership(next: &mut Registry, spec: &str) -> Result<String> {
    let parsed = spec
        .split_once(':')
        .and_then(|(m, rest)| rest.split_once('=').map(|(iso3, date)| (m, iso3, date)));
    let Some((member_id, iso3, date)) = parsed else {
        bail!("--state-until {spec:?}: expected <member>:<ISO3>=<YYYY-MM-DD>");
    };
    let until = rcpfed_core::dates::parse_date(date)
        .ok_or_else(|| anyhow!("--state-until {spec:?}: {date:?} is not a YYYY-MM-DD date"))?;
    let member = next
        .members
        .iter_mut()
        .find(|m| m.id == member_id)
        .ok_or_else(|| anyhow!("--state-until: no member {member_id:?}"))?;
    let state = member
        .states
        .iter_mut()
        .rev()
        .find(|s| s.iso3 == iso3 && s.until.is_none())
        .ok_or_else(|| {
            anyhow!("--state-until: {iso3} is not a current member state of {member_id}")
        })?;
    state.until = Some(until);
    Ok(format!(
        "{iso3} stops belonging to {member_id} on {} (its observations for periods from that day are refused)",
        format_date(until)
    ))
}

/// The draft of the version after the one in `from`, with the edits applied and checked.
pub(super) fn draft_registry(
    current_env: &SignedEnvelope,
    current: &Registry,
    args: &DraftArgs,
    now: OffsetDateTime,
) -> Result<(Registry, Vec<String>)> {
    let expires_at = now + Duration::days(i64::from(args.expires_days));
    let mut next = current.draft_next(current_env.digest(), now, expires_at);
    let changes = apply_edits(&mut next, args, now)?;
    next.check()
        .map_err(|e| anyhow!("the edited draft is not valid: {}", describe(&e)))?;
    Ok((next, changes))
}

pub(super) fn draft(args: &DraftArgs, now: OffsetDateTime) -> Result<Vec<String>> {
    let current_env = read_envelope(&args.from)?;
    let current = registry_of(&current_env, &args.from)?;
    let (next, changes) = draft_registry(&current_env, &current, args, now)?;
    write_new(
        &args.out,
        &DraftFile::from_registry(&next).to_toml()?,
        false,
    )?;
    let mut lines = vec![
        format!(
            "drafted registry version {} of {} in {}",
            next.version,
            next.federation_id,
            args.out.display()
        ),
        format!(
            "  follows version {} (sha-256 {}); signatures of {} were not checked here (use `rcpfed registry show`)",
            current.version,
            current_env.digest().to_hex(),
            args.from.display()
        ),
        format!(
            "  issued {}, expires {} ({} days)",
            rfc3339(next.issued_at),
            rfc3339(next.expires_at),
            args.expires_days
        ),
    ];
    if changes.is_empty() {
        lines.push("  no change to members, keys or root keys (a renewal)".into());
    }
    lines.extend(changes.into_iter().map(|c| format!("  - {c}")));
    lines.push(format!(
        "next: review and edit the draft, then `rcpfed registry build {} --out registry.v{}.json`",
        args.out.display(),
        next.version
    ));
    Ok(lines)
}

pub(super) fn build(args: &BuildArgs) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(&args.draft)
        .with_context(|| format!("reading draft {}", args.draft.display()))?;
    let draft = DraftFile::from_toml(&text).with_context(|| format!("{}", args.draft.display()))?;
    let registry = draft
        .to_registry()
        .and_then(|r| r.check().map(|()| r))
        .map_err(|e| anyhow!("{} is refused: {}", args.draft.display(), describe(&e)))?;
    let env = sign_all(&registry, &[]);
    write_new(&args.out, &envelope_to_json(&env), false)?;
    Ok(vec![
        format!(
            "built registry version {} (unsigned) in {}: payload sha-256 {}",
            registry.version,
            args.out.display(),
            env.digest().to_hex()
        ),
        format!(
            "next: {} must each run `rcpfed registry sign {} --key <root key>`{}",
            root_summary(&registry.root),
            args.out.display(),
            if registry.version > 1 {
                " (when the root keys change, the previous root's threshold signs too, with --allow-previous-root)"
            } else {
                ""
            }
        ),
    ])
}

/// Adds `key`'s signature to the registry version in `env`, refusing keys outside the
/// version's root set unless `allow_previous_root`. Returns the plain-words outcome.
pub(super) fn sign_envelope(
    env: &mut SignedEnvelope,
    key: &SecretKey,
    allow_previous_root: bool,
    path: &Path,
) -> Result<Vec<String>> {
    let registry = registry_of(env, path)?;
    let in_root = registry
        .root
        .keys
        .iter()
        .any(|(k, _)| k.to_bytes() == key.verify_key().to_bytes());
    let mut lines = Vec::new();
    if !in_root {
        if !allow_previous_root {
            bail!(
                "key {} is not one of the root keys of registry version {}; if it belongs to the previous root set (root rotation), pass --allow-previous-root",
                key.key_id(),
                registry.version
            );
        }
        lines.push(format!(
            "note: key {} is not in this version's root set; it counts only if it is in the previous version's root set",
            key.key_id()
        ));
    }
    add_root_signature(env, key);
    let valid = verify_root_signatures(env, &registry.root).unwrap_or(0);
    let others = env.signatures.len().saturating_sub(valid);
    lines.push(format!(
        "signed registry version {} with {}",
        registry.version,
        key.key_id()
    ));
    lines.push(format!(
        "signatures: {valid} (threshold {}){}",
        registry.root.threshold,
        if others > 0 {
            format!(", plus {others} by keys outside this version's root set")
        } else {
            String::new()
        }
    ));
    Ok(lines)
}

pub(super) fn sign(args: &SignArgs) -> Result<Vec<String>> {
    let mut env = read_envelope(&args.file)?;
    let key = load_secret_key(&args.key)?;
    let mut lines = sign_envelope(&mut env, &key, args.allow_previous_root, &args.file)?;
    let out = args.out.as_ref().unwrap_or(&args.file);
    if args.out.is_some() {
        write_new(out, &envelope_to_json(&env), false)?;
    } else {
        write_replace(out, &envelope_to_json(&env))?;
    }
    lines.push(format!("written to {}", out.display()));
    Ok(lines)
}

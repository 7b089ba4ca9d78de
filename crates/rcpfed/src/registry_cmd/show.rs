//! `show`: a version in plain words, verified as the hub and nodes will.

use super::ShowArgs;
use super::draft_file::{format_date, rfc3339};
use super::files::load_trust;
use super::json::{describe, read_envelope, registry_of};

use anyhow::Result;
use rcpfed_core::envelope::{SignedEnvelope, pae};
use rcpfed_core::registry::{
    KeyLifecycle, Registry, RootSet, verify_first, verify_next, verify_root_signatures,
};
use time::OffsetDateTime;
pub(super) fn describe_registry(
    r: &Registry,
    env: &SignedEnvelope,
    now: OffsetDateTime,
) -> Vec<String> {
    let mut lines = Vec::new();
    lines.push(format!(
        "registry version {} of federation {}",
        r.version, r.federation_id
    ));
    lines.push(format!("  payload sha-256 {}", env.digest().to_hex()));
    lines.push(format!("  issued  {}", rfc3339(r.issued_at)));
    let remaining = r.expires_at - now;
    lines.push(format!(
        "  expires {} ({})",
        rfc3339(r.expires_at),
        if remaining.is_positive() {
            format!("in {} days", remaining.whole_days())
        } else {
            format!("EXPIRED {} days ago", (-remaining).whole_days())
        }
    ));
    match r.previous_digest {
        Some(d) => lines.push(format!(
            "  follows version {} (sha-256 {})",
            r.version.saturating_sub(1),
            d.to_hex()
        )),
        None => lines.push("  first version".into()),
    }
    lines.push(format!(
        "root keys: {} of {} must sign the next version",
        r.root.threshold,
        r.root.keys.len()
    ));
    for (k, holder) in &r.root.keys {
        lines.push(format!("  {}  {holder}", k.key_id));
    }
    lines.push(format!("members: {} (hub {})", r.members.len(), r.hub_id));
    for m in &r.members {
        let roles: Vec<&str> = m.roles.iter().map(|r| r.as_str()).collect();
        lines.push(format!(
            "  {} ({}, {}): {}",
            m.id, m.kind, m.name, m.spiffe_id
        ));
        lines.push(format!(
            "    roles: {}",
            if roles.is_empty() {
                "none".into()
            } else {
                roles.join(", ")
            }
        ));
        for k in &m.keys {
            let status = match k.status {
                KeyLifecycle::Active => "active".to_owned(),
                KeyLifecycle::Retired(at) => format!("retired at {}", rfc3339(at)),
                KeyLifecycle::Revoked(at) => format!("REVOKED at {}", rfc3339(at)),
            };
            lines.push(format!(
                "    key {}: {status}, valid from {}",
                k.key.key_id,
                rfc3339(k.valid_from)
            ));
        }
        for s in &m.states {
            let period = match (s.since, s.until) {
                (Some(a), Some(b)) => format!("from {} until {}", format_date(a), format_date(b)),
                (Some(a), None) => format!("since {}", format_date(a)),
                (None, Some(b)) => format!("until {}", format_date(b)),
                (None, None) => "(no dates)".into(),
            };
            lines.push(format!("    state {} {period}", s.iso3));
        }
    }
    lines
}

pub(super) fn describe_signatures(env: &SignedEnvelope, roots: &[(&str, &RootSet)]) -> Vec<String> {
    let message = pae(&env.payload_type, &env.payload);
    let mut lines = vec![format!("signatures: {}", env.signatures.len())];
    for s in &env.signatures {
        let mut what = Vec::new();
        for (name, root) in roots {
            if let Some((k, holder)) = root.keys.iter().find(|(k, _)| k.key_id == s.key_id) {
                let ok = if k.verify_strict(&message, &s.sig) {
                    "valid"
                } else {
                    "DOES NOT VERIFY"
                };
                what.push(format!("{ok}, {name} root key ({holder})"));
            }
        }
        if what.is_empty() {
            what.push("not a root key".into());
        }
        lines.push(format!("  {}: {}", s.key_id, what.join("; ")));
    }
    lines
}

pub(super) fn threshold_line(env: &SignedEnvelope, name: &str, root: &RootSet) -> String {
    let valid = verify_root_signatures(env, root).unwrap_or(0);
    let met = usize::try_from(root.threshold).is_ok_and(|t| valid >= t);
    format!(
        "threshold of the {name} root set: {valid} valid of {} needed: {}",
        root.threshold,
        if met { "met" } else { "NOT met" }
    )
}

pub(super) fn show(args: &ShowArgs, now: OffsetDateTime) -> Result<(Vec<String>, bool)> {
    let env = read_envelope(&args.file)?;
    let registry = registry_of(&env, &args.file)?;
    let mut lines = describe_registry(&registry, &env, now);
    let verdict = if let Some(prev_path) = &args.previous {
        let prev_env = read_envelope(prev_path)?;
        let prev = registry_of(&prev_env, prev_path)?;
        let mut roots: Vec<(&str, &RootSet)> = vec![("current", &prev.root)];
        if !registry.root.same_trust(&prev.root) {
            roots.push(("new", &registry.root));
        }
        lines.extend(describe_signatures(&env, &roots));
        for (name, root) in &roots {
            lines.push(threshold_line(&env, name, root));
        }
        let result = verify_next(&prev, &prev_env.digest(), &env, now);
        Some((
            format!(
                "version {} (from {}, taken as trusted)",
                prev.version,
                prev_path.display()
            ),
            result,
        ))
    } else if let Some(trust_path) = &args.trust {
        let (file, root) = load_trust(trust_path)?;
        let mut roots: Vec<(&str, &RootSet)> = vec![("trusted", &root)];
        if !registry.root.same_trust(&root) {
            roots.push(("new", &registry.root));
        }
        lines.extend(describe_signatures(&env, &roots));
        for (name, r) in &roots {
            lines.push(threshold_line(&env, name, r));
        }
        let result = verify_first(&env, &root, &file.federation_id, now);
        Some((format!("the root keys in {}", trust_path.display()), result))
    } else {
        lines.extend(describe_signatures(
            &env,
            &[("this version's", &registry.root)],
        ));
        lines.push(threshold_line(&env, "this version's", &registry.root));
        lines.push(
            "not verified: pass --previous <registry.v(N-1).json>, or --trust <root-trust.toml> for version 1"
                .into(),
        );
        None
    };
    let ok = match verdict {
        None => true,
        Some((against, Ok(_))) => {
            lines.push(format!(
                "VERIFIED against {against}: threshold met, version and chain correct, every rule holds, not expired"
            ));
            true
        }
        Some((against, Err(e))) => {
            lines.push(format!("NOT VERIFIED against {against}: {}", describe(&e)));
            false
        }
    };
    Ok((lines, ok))
}

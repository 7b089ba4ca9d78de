#![allow(clippy::unwrap_used)]

use super::*;
use super::{bootstrap::*, draft_file::*, edit::*, files::*, json::*, show::*};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::keys::SecretKey;
use rcpfed_core::members::FederationFile;
use rcpfed_core::members::{KeyFile, MemberFile, MemberStateFile, Role};
use rcpfed_core::registry::{
    KeyLifecycle, REGISTRY_PAYLOAD_TYPE, decode_and_check, verify_first, verify_next,
};
use rcpfed_core::rejection::reasons;
use std::path::{Path, PathBuf};
use time::Duration;

fn key_file(k: &SecretKey) -> KeyFile {
    KeyFile {
        key_id: k.key_id().to_owned(),
        public_key: k.verify_key().to_base64(),
    }
}

/// A federation of a hub, one RCP with a member state, and an operator, with their keys.
fn federation() -> (FederationFile, Vec<SecretKey>) {
    let keys: Vec<SecretKey> = (0..2).map(|_| SecretKey::generate().unwrap()).collect();
    let file = FederationFile {
        federation_id: "rcpfed-test".into(),
        hub_id: "gfmd".into(),
        members: vec![
            MemberFile {
                id: "gfmd".into(),
                name: "Global Forum on Migration and Development".into(),
                kind: "hub".into(),
                roles: vec![Role::Reader, Role::Witness],
                spiffe_id: "spiffe://rcpfed-test/node/gfmd".into(),
                keys: vec![key_file(&keys[0])],
                states: vec![],
            },
            MemberFile {
                id: "rabat".into(),
                name: "Rabat Process".into(),
                kind: "RCP".into(),
                roles: vec![Role::Publisher, Role::Reader],
                spiffe_id: "spiffe://rcpfed-test/node/rabat".into(),
                keys: vec![key_file(&keys[1])],
                states: vec![
                    MemberStateFile {
                        iso3: "MLI".into(),
                        since: "2006-07-10".into(),
                        until: String::new(),
                    },
                    MemberStateFile {
                        iso3: "SEN".into(),
                        since: String::new(),
                        until: String::new(),
                    },
                ],
            },
            MemberFile {
                id: "operator".into(),
                name: "Operator".into(),
                kind: "operator".into(),
                roles: vec![Role::Admin, Role::Reader],
                spiffe_id: "spiffe://rcpfed-test/operator/operator".into(),
                keys: vec![],
                states: vec![],
            },
        ],
    };
    (file, keys)
}

fn draft_args(from: &Path, out: &Path) -> DraftArgs {
    DraftArgs {
        from: from.to_path_buf(),
        out: out.to_path_buf(),
        expires_days: 365,
        rotate_key: vec![],
        retire_key: vec![],
        revoke_key: vec![],
        state_until: vec![],
        new_root: None,
    }
}

fn key_path(dir: &Path, i: usize) -> PathBuf {
    dir.join("root").join(format!("root-{i}.key"))
}

fn read_env(path: &Path) -> SignedEnvelope {
    envelope_from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn envelope_json_round_trips_and_is_strict() {
    let key = SecretKey::generate().unwrap();
    let env = SignedEnvelope::sign(REGISTRY_PAYLOAD_TYPE, b"payload".to_vec(), &key);
    let json = envelope_to_json(&env);
    assert_eq!(envelope_from_json(&json).unwrap(), env);
    assert!(json.contains("\"payloadType\""));
    assert!(json.contains("\"keyid\""));
    // Unknown field, duplicate field, bad base64, empty payload.
    let extra = json.replacen("\"payload\"", "\"extra\": 1,\n  \"payload\"", 1);
    assert!(envelope_from_json(&extra).is_err());
    let dup = json.replacen("\"payload\"", "\"payloadType\": \"x\",\n  \"payload\"", 1);
    assert!(envelope_from_json(&dup).is_err());
    let bad = json.replacen(&B64.encode(b"payload"), "cGF5bG9hZA", 1);
    assert!(envelope_from_json(&bad).is_err());
    let empty = json.replacen(&B64.encode(b"payload"), "", 1);
    assert!(envelope_from_json(&empty).is_err());
}

#[test]
fn root_keys_are_private_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (root, secrets) = create_root_keys(dir.path(), "rcpfed-test", 3, 2).unwrap();
    assert_eq!(root.threshold, 2);
    assert_eq!(secrets.len(), 3);
    let mode = std::fs::metadata(key_path(dir.path(), 1))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (_, trusted) = load_trust(&dir.path().join("root-trust.toml")).unwrap();
    assert!(trusted.same_trust(&root));
    assert!(create_root_keys(dir.path(), "rcpfed-test", 3, 2).is_err());
    assert!(create_root_keys(dir.path(), "rcpfed-test", 2, 3).is_err());
}

#[test]
fn draft_round_trips_through_toml() {
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = create_root_keys(dir.path(), "rcpfed-test", 3, 2).unwrap();
    let (fed, _) = federation();
    let mut registry = first_version(&fed, &root, now_seconds(), 30).unwrap();
    registry.members[1].keys[0].status =
        KeyLifecycle::Revoked(registry.issued_at + Duration::minutes(5));
    let text = DraftFile::from_registry(&registry).to_toml().unwrap();
    let back = DraftFile::from_toml(&text).unwrap().to_registry().unwrap();
    assert_eq!(back, registry);
    let bad_role = text.replacen("\"publisher\"", "\"publishr\"", 1);
    let e = DraftFile::from_toml(&bad_role)
        .unwrap()
        .to_registry()
        .unwrap_err();
    assert_eq!(e.reason, reasons::UNKNOWN_ROLE);
}

#[test]
fn rotation_draft_build_sign_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, signers) = create_root_keys(d, "rcpfed-test", 3, 2).unwrap();
    let (fed, _) = federation();
    let v1_env = create_first_version(d, &fed, &root, &signers[..2], 365).unwrap();
    let v1_path = d.join("registry").join("registry.v1.json");
    assert_eq!(read_env(&v1_path), v1_env);
    let now = now_seconds();
    let v1 = verify_first(&v1_env, &root, "rcpfed-test", now).unwrap();
    let old_key = v1.member("rabat").unwrap().keys[0].key.key_id.clone();

    // Draft v2: rabat rotates to a new key file; MLI leaves on 2025-01-29.
    let new_key = SecretKey::generate().unwrap();
    let new_key_path = d.join("rabat-new.key");
    std::fs::write(&new_key_path, new_key.to_file_text()).unwrap();
    let draft_path = d.join("v2.toml");
    let mut args = draft_args(&v1_path, &draft_path);
    args.rotate_key = vec![format!("rabat={}", new_key_path.display())];
    args.state_until = vec!["rabat:MLI=2025-01-29".into()];
    let lines = draft(&args, now).unwrap();
    assert!(lines.iter().any(|l| l.contains("rotates its signing key")));

    // Build.
    let unsigned = d.join("registry.v2.json");
    build(&BuildArgs {
        draft: draft_path.clone(),
        out: unsigned.clone(),
    })
    .unwrap();
    let env = read_env(&unsigned);
    assert!(env.signatures.is_empty());
    let v2 = decode_and_check(&env.payload).unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.previous_digest, Some(v1_env.digest()));
    let rabat = v2.member("rabat").unwrap();
    assert_eq!(rabat.keys.len(), 2);
    assert_eq!(rabat.keys[0].key.key_id, old_key);
    assert_eq!(rabat.keys[0].status, KeyLifecycle::Retired(now));
    assert_eq!(rabat.keys[1].key.key_id, new_key.key_id());
    assert_eq!(rabat.keys[1].valid_from, now);
    assert!(rabat.states[0].until.is_some());

    // One signature: the threshold is not met.
    sign(&SignArgs {
        file: unsigned.clone(),
        key: key_path(d, 1),
        out: None,
        allow_previous_root: false,
    })
    .unwrap();
    let one = read_env(&unsigned);
    let e = verify_next(&v1, &v1_env.digest(), &one, now).unwrap_err();
    assert_eq!(e.reason, reasons::REGISTRY_THRESHOLD_NOT_MET);
    let (_, ok) = show(
        &ShowArgs {
            file: unsigned.clone(),
            previous: Some(v1_path.clone()),
            trust: None,
        },
        now,
    )
    .unwrap();
    assert!(!ok);

    // Second signature, into another file: verifies.
    let signed = d.join("registry.v2.signed.json");
    let lines = sign(&SignArgs {
        file: unsigned.clone(),
        key: key_path(d, 3),
        out: Some(signed.clone()),
        allow_previous_root: false,
    })
    .unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("signatures: 2 (threshold 2)"))
    );
    let two = read_env(&signed);
    let v2 = verify_next(&v1, &v1_env.digest(), &two, now).unwrap();
    assert_eq!(v2.version, 2);
    let (lines, ok) = show(
        &ShowArgs {
            file: signed.clone(),
            previous: Some(v1_path.clone()),
            trust: None,
        },
        now,
    )
    .unwrap();
    assert!(ok, "{}", lines.join("\n"));

    // A key outside the root set is refused.
    let stranger = d.join("stranger.key");
    std::fs::write(&stranger, SecretKey::generate().unwrap().to_file_text()).unwrap();
    assert!(
        sign(&SignArgs {
            file: signed.clone(),
            key: stranger,
            out: None,
            allow_previous_root: false,
        })
        .is_err()
    );

    // Version 1 verifies against the trust file.
    let (_, ok) = show(
        &ShowArgs {
            file: v1_path,
            previous: None,
            trust: Some(d.join("root-trust.toml")),
        },
        now,
    )
    .unwrap();
    assert!(ok);
}

#[test]
fn root_rotation_needs_old_and_new_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, signers) = create_root_keys(d, "rcpfed-test", 3, 2).unwrap();
    let new_dir = d.join("new");
    let (new_root, _) = create_root_keys(&new_dir, "rcpfed-test", 3, 2).unwrap();
    let (fed, _) = federation();
    let v1_env = create_first_version(d, &fed, &root, &signers[1..], 365).unwrap();
    let v1_path = d.join("registry").join("registry.v1.json");
    let now = now_seconds();
    let v1 = verify_first(&v1_env, &root, "rcpfed-test", now).unwrap();

    let draft_path = d.join("v2.toml");
    let mut args = draft_args(&v1_path, &draft_path);
    args.new_root = Some(new_dir.join("root-trust.toml"));
    args.revoke_key = vec![format!(
        "{}@{}",
        v1.member("gfmd").unwrap().keys[0].key.key_id,
        rfc3339(now)
    )];
    draft(&args, now).unwrap();
    let file = d.join("registry.v2.json");
    build(&BuildArgs {
        draft: draft_path,
        out: file.clone(),
    })
    .unwrap();
    let built = read_env(&file);
    assert!(
        decode_and_check(&built.payload)
            .unwrap()
            .root
            .same_trust(&new_root)
    );

    let sign_with = |key: PathBuf, allow: bool| {
        sign(&SignArgs {
            file: file.clone(),
            key,
            out: None,
            allow_previous_root: allow,
        })
    };
    // An old root key needs --allow-previous-root.
    assert!(sign_with(key_path(d, 1), false).is_err());
    sign_with(key_path(d, 1), true).unwrap();
    sign_with(key_path(d, 2), true).unwrap();
    // Old threshold only: the new root set has not accepted.
    let old_only = read_env(&file);
    let e = verify_next(&v1, &v1_env.digest(), &old_only, now).unwrap_err();
    assert_eq!(e.reason, reasons::REGISTRY_THRESHOLD_NOT_MET);
    sign_with(key_path(&new_dir, 1), false).unwrap();
    sign_with(key_path(&new_dir, 3), false).unwrap();
    let both = read_env(&file);
    let v2 = verify_next(&v1, &v1_env.digest(), &both, now).unwrap();
    assert!(v2.root.same_trust(&new_root));
    assert!(matches!(
        v2.member("gfmd").unwrap().keys[0].status,
        KeyLifecycle::Revoked(_)
    ));

    // New threshold only (no old signatures): refused.
    let mut new_only = both.clone();
    let old_ids: Vec<String> = root.keys.iter().map(|(k, _)| k.key_id.clone()).collect();
    new_only.signatures.retain(|s| !old_ids.contains(&s.key_id));
    let e = verify_next(&v1, &v1_env.digest(), &new_only, now).unwrap_err();
    assert_eq!(e.reason, reasons::REGISTRY_THRESHOLD_NOT_MET);
}

#[test]
fn build_refuses_invalid_drafts_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, signers) = create_root_keys(d, "rcpfed-test", 1, 1).unwrap();
    let (fed, _) = federation();
    create_first_version(d, &fed, &root, &signers, 365).unwrap();
    let v1_path = d.join("registry").join("registry.v1.json");
    let draft_path = d.join("v2.toml");
    draft(&draft_args(&v1_path, &draft_path), now_seconds()).unwrap();
    let text = std::fs::read_to_string(&draft_path).unwrap();
    // Make the rabat member keyless although it publishes.
    let mut draft_file = DraftFile::from_toml(&text).unwrap();
    draft_file.members[1].keys.clear();
    let bad = d.join("bad.toml");
    std::fs::write(&bad, draft_file.to_toml().unwrap()).unwrap();
    let e = build(&BuildArgs {
        draft: bad,
        out: d.join("bad.json"),
    })
    .unwrap_err();
    assert!(e.to_string().contains("MEMBER_WITHOUT_KEY"), "{e:#}");
    assert!(!d.join("bad.json").exists());
}

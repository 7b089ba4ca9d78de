//! The TUF-style membership registry: threshold signatures, the version chain (rollback,
//! gaps, forks, freeze), root rotation, semantic refusals, and the bridge to `Federation`.

#![allow(clippy::unwrap_used)]

use prost::Message as _;
use rcpfed_core::Digest;
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope};
use rcpfed_core::keys::{SecretKey, VerifyKey};
use rcpfed_core::members::{Federation, KeyState, Membership, Role};
use rcpfed_core::registry::{
    KeyEntry, KeyLifecycle, REGISTRY_PAYLOAD_TYPE, Registry, RegistryMemberEntry, RootSet,
    RootTrustFile, add_root_signature, decode_and_check, verify_chain, verify_first, verify_next,
    verify_root_signatures,
};
use rcpfed_core::rejection::{Rejection, reasons};
use rcpfed_proto::v1 as pb;
use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};

const FED: &str = "rcp-federation";
const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

/// Old root keys 1..=3, new root keys 11..=13, member keys 21.., outsiders 99.
fn roots(seeds: [u8; 3]) -> (Vec<SecretKey>, RootSet) {
    let keys: Vec<_> = seeds.iter().map(|s| key(*s)).collect();
    let set = RootSet {
        keys: keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.verify_key().clone(), format!("GFMD root {}", i + 1)))
            .collect(),
        threshold: 2,
    };
    (keys, set)
}

fn active(k: &SecretKey) -> KeyEntry {
    KeyEntry {
        key: k.verify_key().clone(),
        valid_from: datetime!(2025-01-01 00:00 UTC),
        status: KeyLifecycle::Active,
    }
}

fn member(id: &str, kind: &str, roles: &[Role], keys: Vec<KeyEntry>) -> RegistryMemberEntry {
    let spiffe = if kind == "operator" {
        format!("spiffe://{FED}/operator/{id}")
    } else {
        format!("spiffe://{FED}/node/{id}")
    };
    RegistryMemberEntry {
        id: id.into(),
        name: format!("{id} full name"),
        kind: kind.into(),
        roles: roles.to_vec(),
        spiffe_id: spiffe,
        keys,
        states: Vec::new(),
    }
}

fn v1(root: &RootSet) -> Registry {
    let mut colombo = member(
        "colombo",
        "RCP",
        &[Role::Publisher, Role::Reader, Role::Witness],
        vec![active(&key(21))],
    );
    colombo.states = vec![
        Membership {
            iso3: "LKA".into(),
            since: Some(date!(2003 - 04 - 01)),
            until: None,
        },
        Membership {
            iso3: "IND".into(),
            since: None,
            until: None,
        },
    ];
    let mut midwa = member(
        "midwa",
        "RCP",
        &[Role::Publisher, Role::Reader],
        vec![active(&key(22))],
    );
    midwa.states = vec![
        Membership {
            iso3: "BFA".into(),
            since: Some(date!(2001 - 01 - 01)),
            until: Some(date!(2025 - 01 - 29)),
        },
        Membership {
            iso3: "SEN".into(),
            since: Some(date!(2001 - 01 - 01)),
            until: None,
        },
    ];
    Registry {
        federation_id: FED.into(),
        version: 1,
        issued_at: T0,
        expires_at: T0 + Duration::days(365),
        previous_digest: None,
        root: root.clone(),
        hub_id: "gfmd".into(),
        members: vec![
            member(
                "gfmd",
                "hub",
                &[Role::Reader, Role::Admin],
                vec![active(&key(20))],
            ),
            colombo,
            midwa,
            member("alice", "operator", &[Role::Admin, Role::Reader], vec![]),
        ],
    }
}

fn signed(reg: &Registry, signers: &[&SecretKey]) -> SignedEnvelope {
    let mut env = SignedEnvelope {
        payload_type: REGISTRY_PAYLOAD_TYPE.into(),
        payload: reg.encode(),
        signatures: Vec::new(),
    };
    for k in signers {
        add_root_signature(&mut env, k);
    }
    env
}

fn next(prev: &Registry, prev_env: &SignedEnvelope) -> Registry {
    prev.draft_next(
        prev_env.digest(),
        prev.issued_at + Duration::days(1),
        prev.issued_at + Duration::days(366),
    )
}

fn reason<T: std::fmt::Debug>(r: Result<T, Rejection>) -> &'static str {
    r.err().map(|e| e.reason).unwrap_or("accepted")
}

fn now() -> OffsetDateTime {
    T0 + Duration::days(10)
}

#[test]
fn v1_verifies_from_the_root_trust_file() {
    let (k, root) = roots([1, 2, 3]);
    let trust = root.to_trust_file(FED);
    let text = trust.to_toml().unwrap();
    assert!(text.contains("threshold = 2"), "{text}");
    let loaded = RootTrustFile::from_toml(&text).unwrap();
    assert_eq!(loaded, trust);
    let anchor = loaded.to_root_set().unwrap();
    assert_eq!(anchor, root);

    let reg = v1(&root);
    let env = signed(&reg, &[&k[0], &k[2]]);
    let got = verify_first(&env, &anchor, FED, now()).unwrap();
    assert_eq!(got, reg);
    assert_eq!(verify_root_signatures(&env, &anchor), Ok(2));

    // Wire round trip.
    let decoded = decode_and_check(&env.payload).unwrap();
    assert_eq!(decoded, reg);
    assert_eq!(Registry::from_proto(reg.to_proto()).unwrap(), reg);

    // Another federation's anchor, or a version 1 signed by one root: refused.
    assert_eq!(
        reason(verify_first(&env, &anchor, "other-fed", now())),
        reasons::WRONG_FEDERATION
    );
    let one = signed(&reg, &[&k[1]]);
    assert_eq!(
        reason(verify_first(&one, &anchor, FED, now())),
        reasons::REGISTRY_THRESHOLD_NOT_MET
    );
    // Bootstrapping must start at version 1.
    let v2 = signed(&next(&reg, &env), &[&k[0], &k[1]]);
    assert_eq!(
        reason(verify_first(&v2, &anchor, FED, now())),
        reasons::REGISTRY_VERSION_GAP
    );
}

#[test]
fn trust_file_refusals() {
    let (_, root) = roots([1, 2, 3]);
    let mut trust = root.to_trust_file(FED);
    trust.threshold = 0;
    assert_eq!(reason(trust.to_root_set()), reasons::INVALID_ROOT);
    trust.threshold = 4;
    assert_eq!(reason(trust.to_root_set()), reasons::INVALID_ROOT);
    let mut dup = root.to_trust_file(FED);
    dup.keys[2] = dup.keys[0].clone();
    assert_eq!(reason(dup.to_root_set()), reasons::INVALID_ROOT);
    let mut wrong_id = root.to_trust_file(FED);
    wrong_id.keys[0].key_id = wrong_id.keys[1].key_id.clone();
    assert_eq!(reason(wrong_id.to_root_set()), reasons::INVALID_ROOT);
    assert_eq!(
        reason(RootTrustFile::from_toml("threshold = \"two\"")),
        reasons::INVALID_ROOT
    );
}

#[test]
fn threshold_counts_distinct_root_keys_only() {
    let (k, root) = roots([1, 2, 3]);
    let reg1 = v1(&root);
    let env1 = signed(&reg1, &[&k[0], &k[1]]);
    let cur = verify_first(&env1, &root, FED, now()).unwrap();
    let reg2 = next(&cur, &env1);

    // 2 of 3: accepted.
    let ok = signed(&reg2, &[&k[1], &k[2]]);
    assert_eq!(verify_next(&cur, &env1.digest(), &ok, now()).unwrap(), reg2);

    // 1 of 3: refused, with the counts in the message.
    let one = signed(&reg2, &[&k[2]]);
    let err = verify_next(&cur, &env1.digest(), &one, now()).unwrap_err();
    assert_eq!(err.reason, reasons::REGISTRY_THRESHOLD_NOT_MET);
    assert!(err.message.contains("1 valid signature"), "{}", err.message);
    assert!(err.message.contains("2 of its 3"), "{}", err.message);

    // The same root key twice counts once.
    let mut twice = one.clone();
    twice.signatures.push(twice.signatures[0].clone());
    assert_eq!(verify_root_signatures(&twice, &root), Ok(1));
    assert_eq!(
        reason(verify_next(&cur, &env1.digest(), &twice, now())),
        reasons::REGISTRY_THRESHOLD_NOT_MET
    );

    // A signature by a non-root key (even a member's signing key) is not counted.
    let outsider = signed(&reg2, &[&k[0], &key(99)]);
    assert_eq!(verify_root_signatures(&outsider, &root), Ok(1));
    assert_eq!(
        reason(verify_next(&cur, &env1.digest(), &outsider, now())),
        reasons::REGISTRY_THRESHOLD_NOT_MET
    );
    let member_key = signed(&reg2, &[&key(21), &key(99)]);
    let err = verify_next(&cur, &env1.digest(), &member_key, now()).unwrap_err();
    assert_eq!(err.reason, reasons::REGISTRY_THRESHOLD_NOT_MET);
    assert!(
        err.message
            .contains("signed by keys that are not root keys"),
        "{}",
        err.message
    );

    // A root key id with a signature by another key: not counted.
    let mut forged = signed(&reg2, &[&key(99)]);
    forged.signatures[0].key_id = k[0].key_id().to_owned();
    add_root_signature(&mut forged, &k[1]);
    assert_eq!(verify_root_signatures(&forged, &root), Ok(1));

    // No signature at all.
    let none = signed(&reg2, &[]);
    assert_eq!(
        reason(verify_next(&cur, &env1.digest(), &none, now())),
        reasons::MISSING_SIGNATURE
    );
}

#[test]
fn tampering_a_payload_byte_breaks_the_threshold() {
    let (k, root) = roots([1, 2, 3]);
    let reg = v1(&root);
    let env = signed(&reg, &[&k[0], &k[1], &k[2]]);
    for i in [0, env.payload.len() / 2, env.payload.len() - 1] {
        let mut bad = env.clone();
        bad.payload[i] ^= 0x01;
        let err = verify_first(&bad, &root, FED, now()).unwrap_err();
        assert_eq!(err.reason, reasons::REGISTRY_THRESHOLD_NOT_MET, "byte {i}");
        assert!(err.message.contains("verifies"), "{}", err.message);
    }
    let mut retyped = env.clone();
    retyped.payload_type = STATEMENT_PAYLOAD_TYPE.into();
    assert_eq!(
        reason(verify_first(&retyped, &root, FED, now())),
        reasons::UNKNOWN_PAYLOAD_TYPE
    );
}

#[test]
fn rollback_gap_and_fork_are_refused() {
    let (k, root) = roots([1, 2, 3]);
    let reg1 = v1(&root);
    let env1 = signed(&reg1, &[&k[0], &k[1]]);
    let reg2 = next(&reg1, &env1);
    let env2 = signed(&reg2, &[&k[0], &k[1]]);
    let cur2 = verify_next(&reg1, &env1.digest(), &env2, now()).unwrap();
    let d2 = env2.digest();

    // Rollback: version 1 again, or version 2 again, after version 2.
    assert_eq!(
        reason(verify_next(&cur2, &d2, &env1, now())),
        reasons::REGISTRY_ROLLBACK
    );
    assert_eq!(
        reason(verify_next(&cur2, &d2, &env2, now())),
        reasons::REGISTRY_ROLLBACK
    );

    // Gap: version 4 after version 2 (fast-forward).
    let reg3 = next(&reg2, &env2);
    let env3 = signed(&reg3, &[&k[0], &k[1]]);
    let reg4 = next(&reg3, &env3);
    let env4 = signed(&reg4, &[&k[0], &k[1]]);
    assert_eq!(
        reason(verify_next(&cur2, &d2, &env4, now())),
        reasons::REGISTRY_VERSION_GAP
    );
    let mut huge = reg3.clone();
    huge.version = u64::MAX;
    let env_huge = signed(&huge, &[&k[0], &k[1]]);
    assert_eq!(
        reason(verify_next(&cur2, &d2, &env_huge, now())),
        reasons::REGISTRY_VERSION_GAP
    );

    // Fork: a second version 2 (different content), then a version 3 built on it, offered to
    // a verifier that trusts the first version 2 (mix-and-match).
    let mut reg2b = reg2.clone();
    reg2b.members.retain(|m| m.id != "midwa");
    let env2b = signed(&reg2b, &[&k[1], &k[2]]);
    assert!(verify_next(&reg1, &env1.digest(), &env2b, now()).is_ok());
    let reg3b = next(&reg2b, &env2b);
    let env3b = signed(&reg3b, &[&k[0], &k[2]]);
    let err = verify_next(&cur2, &d2, &env3b, now()).unwrap_err();
    assert_eq!(err.reason, reasons::REGISTRY_CHAIN_MISMATCH);
    assert!(err.message.contains(&d2.to_hex()), "{}", err.message);

    // A version 3 whose previous_digest is garbage: mismatch too.
    let mut reg3c = reg3.clone();
    reg3c.previous_digest = Some(Digest::of(b"something else"));
    let env3c = signed(&reg3c, &[&k[0], &k[2]]);
    assert_eq!(
        reason(verify_next(&cur2, &d2, &env3c, now())),
        reasons::REGISTRY_CHAIN_MISMATCH
    );

    // The honest version 3: accepted.
    assert!(verify_next(&cur2, &d2, &env3, now()).is_ok());

    // Another federation's version 3, signed by the same roots: refused.
    let mut other = reg3.clone();
    other.federation_id = "other-fed".into();
    let env_other = signed(&other, &[&k[0], &k[2]]);
    assert_eq!(
        reason(verify_next(&cur2, &d2, &env_other, now())),
        reasons::WRONG_FEDERATION
    );
}

#[test]
fn freeze_is_refused_but_expired_intermediates_are_fine() {
    let (k, root) = roots([1, 2, 3]);
    let mut reg1 = v1(&root);
    reg1.expires_at = T0 + Duration::days(30);
    let env1 = signed(&reg1, &[&k[0], &k[1]]);
    let later = T0 + Duration::days(100);

    // Version 1 is the latest and expired.
    assert_eq!(
        reason(verify_first(&env1, &root, FED, later)),
        reasons::REGISTRY_EXPIRED
    );
    assert_eq!(
        reason(verify_chain(&root, FED, std::slice::from_ref(&env1), later)),
        reasons::REGISTRY_EXPIRED
    );
    // Exactly at expiry: expired.
    assert_eq!(
        reason(verify_first(&env1, &root, FED, reg1.expires_at)),
        reasons::REGISTRY_EXPIRED
    );

    // Version 2, fresh: the chain verifies through the expired version 1.
    let reg2 = reg1.draft_next(
        env1.digest(),
        T0 + Duration::days(90),
        later + Duration::days(30),
    );
    let env2 = signed(&reg2, &[&k[1], &k[2]]);
    let got = verify_chain(&root, FED, &[env1.clone(), env2.clone()], later).unwrap();
    assert_eq!(got, reg2);

    // Version 3, itself expired, is refused as the latest.
    let reg3 = reg2.draft_next(
        env2.digest(),
        T0 + Duration::days(91),
        T0 + Duration::days(95),
    );
    let env3 = signed(&reg3, &[&k[1], &k[2]]);
    assert_eq!(
        reason(verify_next(&reg2, &env2.digest(), &env3, later)),
        reasons::REGISTRY_EXPIRED
    );
    let err = verify_chain(&root, FED, &[env1, env2, env3], later).unwrap_err();
    assert_eq!(err.reason, reasons::REGISTRY_EXPIRED);
    assert!(err.metadata.contains(&("version_index".into(), "2".into())));

    assert_eq!(
        reason(verify_chain(&root, FED, &[], later)),
        reasons::REGISTRY_INVALID
    );
}

#[test]
fn root_rotation_needs_old_and_new_thresholds() {
    let (old, old_root) = roots([1, 2, 3]);
    let (new, new_root) = roots([11, 12, 13]);
    let reg1 = v1(&old_root);
    let env1 = signed(&reg1, &[&old[0], &old[1]]);
    let reg2 = next(&reg1, &env1);
    let env2 = signed(&reg2, &[&old[0], &old[2]]);
    let cur2 = verify_next(&reg1, &env1.digest(), &env2, now()).unwrap();

    let mut reg3 = next(&cur2, &env2);
    reg3.root = new_root.clone();

    // Only the old threshold: refused, naming the new set.
    let old_only = signed(&reg3, &[&old[0], &old[1]]);
    let err = verify_next(&cur2, &env2.digest(), &old_only, now()).unwrap_err();
    assert_eq!(err.reason, reasons::REGISTRY_THRESHOLD_NOT_MET);
    assert!(err.message.contains("new root set"), "{}", err.message);
    assert!(err.metadata.contains(&("root_set".into(), "new".into())));

    // Only the new threshold: refused, naming the current set.
    let new_only = signed(&reg3, &[&new[0], &new[1]]);
    let err = verify_next(&cur2, &env2.digest(), &new_only, now()).unwrap_err();
    assert_eq!(err.reason, reasons::REGISTRY_THRESHOLD_NOT_MET);
    assert!(err.message.contains("current root set"), "{}", err.message);

    // Old and new thresholds: accepted.
    let env3 = signed(&reg3, &[&old[0], &old[1], &new[1], &new[2]]);
    let cur3 = verify_next(&cur2, &env2.digest(), &env3, now()).unwrap();
    assert_eq!(cur3.root, new_root);

    // Version 4 needs the new root keys; the old ones no longer suffice.
    let reg4 = next(&cur3, &env3);
    let by_old = signed(&reg4, &[&old[0], &old[1], &old[2]]);
    let err = verify_next(&cur3, &env3.digest(), &by_old, now()).unwrap_err();
    assert_eq!(err.reason, reasons::REGISTRY_THRESHOLD_NOT_MET);
    assert!(err.message.contains("not root keys"), "{}", err.message);
    let by_new = signed(&reg4, &[&new[0], &new[2]]);
    let cur4 = verify_next(&cur3, &env3.digest(), &by_new, now()).unwrap();
    assert_eq!(cur4.version, 4);

    // A node that bootstraps from the OLD root keys walks the whole chain.
    let chain = [env1, env2, env3, by_new];
    assert_eq!(verify_chain(&old_root, FED, &chain, now()).unwrap(), cur4);
    // From the new root keys alone it cannot start at version 1 (signed by the old ones).
    assert_eq!(
        reason(verify_chain(&new_root, FED, &chain, now())),
        reasons::REGISTRY_THRESHOLD_NOT_MET
    );

    // A changed threshold alone is a root change too: 2 of 3 -> 3 of 3 needs 3 signatures.
    let mut reg5 = next(&cur4, &chain[3]);
    reg5.root.threshold = 3;
    let two = signed(&reg5, &[&new[0], &new[1]]);
    assert_eq!(
        reason(verify_next(&cur4, &chain[3].digest(), &two, now())),
        reasons::REGISTRY_THRESHOLD_NOT_MET
    );
    let three = signed(&reg5, &[&new[0], &new[1], &new[2]]);
    assert!(verify_next(&cur4, &chain[3].digest(), &three, now()).is_ok());
}

/// `decode_and_check` of `reg` (encoded), its reason and the first violation's field.
fn refusal(reg: &Registry) -> (&'static str, String) {
    match decode_and_check(&reg.encode()) {
        Ok(_) => ("accepted", String::new()),
        Err(e) => (
            e.reason,
            e.violations
                .first()
                .map(|v| v.field.clone())
                .unwrap_or_default(),
        ),
    }
}

fn refusal_proto(doc: pb::RegistryDocument) -> (&'static str, String) {
    match decode_and_check(&doc.encode_to_vec()) {
        Ok(_) => ("accepted", String::new()),
        Err(e) => (
            e.reason,
            e.violations
                .first()
                .map(|v| v.field.clone())
                .unwrap_or_default(),
        ),
    }
}

#[test]
fn semantic_refusals_each_have_their_reason() {
    let (k, root) = roots([1, 2, 3]);
    let base = v1(&root);
    assert_eq!(refusal(&base).0, "accepted");

    // A key listed twice: within a member, across members, and a root key as a member key.
    let mut r = base.clone();
    let dup = r.members[1].keys[0].clone();
    r.members[1].keys.push(dup);
    assert_eq!(
        refusal(&r),
        (reasons::DUPLICATE_KEY_ID, "members[1].keys[1]".into())
    );
    let mut r = base.clone();
    r.members[2].keys = r.members[1].keys.clone();
    assert_eq!(
        refusal(&r),
        (reasons::DUPLICATE_KEY_ID, "members[2].keys[0]".into())
    );
    let mut r = base.clone();
    r.members[2].keys.push(active(&k[0]));
    r.members[2].keys[0].status = KeyLifecycle::Retired(T0);
    r.members[2].keys[1].valid_from = T0;
    assert_eq!(
        refusal(&r),
        (reasons::DUPLICATE_KEY_ID, "members[2].keys[1]".into())
    );

    // Overlapping windows: two active keys; a retired key whose window runs past the new
    // key's start. Adjacent windows (retired at T, next valid from T) are fine.
    let mut r = base.clone();
    r.members[1].keys.push(active(&key(31)));
    assert_eq!(
        refusal(&r),
        (
            reasons::OVERLAPPING_KEY_WINDOWS,
            "members[1].keys[1]".into()
        )
    );
    let mut r = base.clone();
    r.members[1].keys[0].status = KeyLifecycle::Retired(T0 + Duration::hours(1));
    let mut newer = active(&key(31));
    newer.valid_from = T0;
    r.members[1].keys.push(newer.clone());
    assert_eq!(refusal(&r).0, reasons::OVERLAPPING_KEY_WINDOWS);
    r.members[1].keys[0].status = KeyLifecycle::Retired(T0);
    assert_eq!(refusal(&r).0, "accepted");
    r.members[1].keys[0].status = KeyLifecycle::Revoked(T0 - Duration::days(1));
    assert_eq!(refusal(&r).0, "accepted");
    // Retired before it was valid: generic.
    r.members[1].keys[0].status = KeyLifecycle::Retired(datetime!(2024-01-01 00:00 UTC));
    assert_eq!(
        refusal(&r),
        (
            reasons::REGISTRY_INVALID,
            "members[1].keys[0].status_at".into()
        )
    );

    // A publisher, or a witness, without a key.
    let mut r = base.clone();
    r.members[2].keys.clear();
    assert_eq!(
        refusal(&r),
        (reasons::MEMBER_WITHOUT_KEY, "members[2].keys".into())
    );
    let mut r = base.clone();
    r.members[3].roles.push(Role::Witness);
    assert_eq!(
        refusal(&r),
        (reasons::MEMBER_WITHOUT_KEY, "members[3].keys".into())
    );

    // Malformed ISO codes.
    for bad in ["XXX", "lka", "LK", "XKX", ""] {
        let mut r = base.clone();
        r.members[1].states[0].iso3 = bad.into();
        assert_eq!(
            refusal(&r),
            (
                reasons::INVALID_COUNTRY_CODE,
                "members[1].states[0].iso3".into()
            ),
            "{bad}"
        );
    }

    // Root: threshold 0, too large, a key listed twice.
    let mut r = base.clone();
    r.root.threshold = 0;
    assert_eq!(
        refusal(&r),
        (reasons::INVALID_ROOT, "root.threshold".into())
    );
    r.root.threshold = 4;
    assert_eq!(
        refusal(&r),
        (reasons::INVALID_ROOT, "root.threshold".into())
    );
    let mut r = base.clone();
    r.root.keys[2] = r.root.keys[0].clone();
    assert_eq!(refusal(&r), (reasons::INVALID_ROOT, "root.keys[2]".into()));
    let mut r = base.clone();
    r.root.keys.clear();
    assert_eq!(refusal(&r).0, reasons::INVALID_ROOT);

    // Generic rules.
    let generic = |f: &dyn Fn(&mut Registry), field: &str| {
        let mut r = base.clone();
        f(&mut r);
        assert_eq!(refusal(&r), (reasons::REGISTRY_INVALID, field.to_owned()));
    };
    generic(&|r| r.hub_id = "nobody".into(), "hub_id");
    generic(
        &|r| r.members[1].spiffe_id = "spiffe://other-fed/node/colombo".into(),
        "members[1].spiffe_id",
    );
    generic(
        &|r| r.members[2].spiffe_id = r.members[1].spiffe_id.clone(),
        "members[2].spiffe_id",
    );
    generic(&|r| r.members[1].id = "Colombo".into(), "members[1].id");
    generic(&|r| r.members[2].id = "colombo".into(), "members[2].id");
    generic(
        &|r| r.members[1].roles.push(Role::Reader),
        "members[1].roles[3]",
    );
    generic(&|r| r.expires_at = r.issued_at, "expires_at");
    generic(&|r| r.version = 0, "version");
    generic(
        &|r| r.previous_digest = Some(Digest::of(b"x")),
        "previous_digest",
    );
    generic(&|r| r.version = 2, "previous_digest");
    generic(&|r| r.federation_id = "Bad Fed".into(), "federation_id");
    generic(
        &|r| r.members[2].states[0].until = Some(date!(2000 - 01 - 01)),
        "members[2].states[0].until",
    );
    let mut r = base.clone();
    r.members[1].keys.clear();
    r.members[1].states[0].iso3 = "XXX".into();
    let err = decode_and_check(&r.encode()).unwrap_err();
    assert_eq!(err.violations.len(), 2, "{err:?}");
    assert!(
        err.message.contains("and 1 more problem"),
        "{}",
        err.message
    );
}

#[test]
fn structural_refusals_name_the_field() {
    let (_, root) = roots([1, 2, 3]);
    let base = v1(&root).to_proto();

    let mut doc = base.clone();
    doc.members[1].roles.push("superuser".into());
    assert_eq!(
        refusal_proto(doc),
        (reasons::UNKNOWN_ROLE, "members[1].roles[3]".into())
    );
    let mut doc = base.clone();
    doc.members[1].roles[0] = "Publisher".into();
    assert_eq!(refusal_proto(doc).0, reasons::UNKNOWN_ROLE);

    let mut doc = base.clone();
    doc.members[2].keys[0].status = 0;
    assert_eq!(
        refusal_proto(doc),
        (
            reasons::VALIDATION_FAILED,
            "members[2].keys[0].status".into()
        )
    );
    let mut doc = base.clone();
    doc.members[2].keys[0].status = 9;
    assert_eq!(refusal_proto(doc).0, reasons::VALIDATION_FAILED);
    let mut doc = base.clone();
    doc.members[2].keys[0].status = pb::KeyStatus::Retired as i32;
    assert_eq!(
        refusal_proto(doc),
        (
            reasons::VALIDATION_FAILED,
            "members[2].keys[0].status_at".into()
        )
    );
    let mut doc = base.clone();
    doc.members[2].keys[0].valid_from = None;
    assert_eq!(
        refusal_proto(doc),
        (
            reasons::VALIDATION_FAILED,
            "members[2].keys[0].valid_from".into()
        )
    );
    let mut doc = base.clone();
    doc.members[2].keys[0].key_id = "ed25519:0000000000000000".into();
    assert_eq!(
        refusal_proto(doc),
        (
            reasons::VALIDATION_FAILED,
            "members[2].keys[0].key_id".into()
        )
    );
    let mut doc = base.clone();
    doc.members[2].keys[0].public_key = vec![1; 31];
    assert_eq!(
        refusal_proto(doc),
        (
            reasons::VALIDATION_FAILED,
            "members[2].keys[0].public_key".into()
        )
    );
    let mut doc = base.clone();
    doc.issued_at = None;
    assert_eq!(
        refusal_proto(doc),
        (reasons::VALIDATION_FAILED, "issued_at".into())
    );
    let mut doc = base.clone();
    doc.previous_digest = vec![0; 31];
    assert_eq!(
        refusal_proto(doc),
        (reasons::VALIDATION_FAILED, "previous_digest".into())
    );
    let mut doc = base.clone();
    doc.members[1].states[0].since = "2003-4-1".into();
    assert_eq!(
        refusal_proto(doc),
        (
            reasons::VALIDATION_FAILED,
            "members[1].states[0].since".into()
        )
    );

    // Weak (small-order) root key, mislabelled root key, no root at all.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut doc = base.clone();
    if let Some(r) = doc.root.as_mut() {
        r.keys[1].public_key = identity.to_vec();
    }
    assert_eq!(
        refusal_proto(doc),
        (reasons::INVALID_ROOT, "root.keys[1].public_key".into())
    );
    assert!(VerifyKey::from_bytes(&identity).is_err());
    let mut doc = base.clone();
    if let Some(r) = doc.root.as_mut() {
        r.keys[0].key_id = "ed25519:0000000000000000".into();
    }
    assert_eq!(
        refusal_proto(doc),
        (reasons::INVALID_ROOT, "root.keys[0].key_id".into())
    );
    let mut doc = base.clone();
    doc.root = None;
    assert_eq!(refusal_proto(doc), (reasons::INVALID_ROOT, "root".into()));

    assert_eq!(
        reason(decode_and_check(&[0xff, 0xff, 0xff])),
        reasons::PAYLOAD_MALFORMED
    );
}

#[test]
fn semantic_refusals_come_through_verification_too() {
    let (k, root) = roots([1, 2, 3]);
    let reg1 = v1(&root);
    let env1 = signed(&reg1, &[&k[0], &k[1]]);
    let mut reg2 = next(&reg1, &env1);
    let dup = reg2.members[1].keys[0].clone();
    reg2.members[2].keys.push(dup);
    let env2 = signed(&reg2, &[&k[0], &k[1]]);
    assert_eq!(
        reason(verify_next(&reg1, &env1.digest(), &env2, now())),
        reasons::DUPLICATE_KEY_ID
    );
    // Unsigned garbage is refused for its signatures before anything is decoded.
    let garbage = SignedEnvelope {
        payload_type: REGISTRY_PAYLOAD_TYPE.into(),
        payload: vec![0xff; 10],
        signatures: Vec::new(),
    };
    assert_eq!(
        reason(verify_next(&reg1, &env1.digest(), &garbage, now())),
        reasons::MISSING_SIGNATURE
    );
    let signed_garbage = {
        let mut g = garbage.clone();
        add_root_signature(&mut g, &k[0]);
        add_root_signature(&mut g, &k[1]);
        g
    };
    assert_eq!(
        reason(verify_next(&reg1, &env1.digest(), &signed_garbage, now())),
        reasons::PAYLOAD_MALFORMED
    );
}

#[test]
fn to_federation_keeps_roles_states_keys_and_lifecycles() {
    let (k, root) = roots([1, 2, 3]);
    let mut reg = v1(&root);
    let retire_at = datetime!(2026-03-01 12:00 UTC);
    let revoke_at = datetime!(2026-02-01 00:00 UTC);
    // Colombo rotates: key 21 retired at retire_at, key 31 valid from then.
    reg.members[1].keys[0].status = KeyLifecycle::Retired(retire_at);
    let mut k31 = active(&key(31));
    k31.valid_from = retire_at;
    reg.members[1].keys.push(k31);
    // MIDWA's key 22 is revoked.
    reg.members[2].keys[0].status = KeyLifecycle::Revoked(revoke_at);
    let env = signed(&reg, &[&k[0], &k[1]]);
    let reg = verify_first(&env, &root, FED, now()).unwrap();

    let fed = reg.to_federation().unwrap();
    assert_eq!(fed.registry_version(), 1);
    assert_eq!(fed.federation_id, FED);
    assert_eq!(fed.hub().map(|h| h.id.as_str()), Some("gfmd"));
    let colombo = fed.member("colombo").unwrap();
    assert!(colombo.has_role(Role::Publisher) && colombo.has_role(Role::Witness));
    assert!(!colombo.has_role(Role::Admin));
    assert_eq!(colombo.keys.len(), 2);
    assert!(colombo.has_state_during("LKA", date!(2024 - 01 - 01), date!(2024 - 12 - 31)));
    let midwa = fed.member("midwa").unwrap();
    assert!(midwa.has_state_during("BFA", date!(2024 - 01 - 01), date!(2024 - 12 - 31)));
    assert!(!midwa.has_state_during("BFA", date!(2025 - 01 - 01), date!(2025 - 12 - 31)));
    assert_eq!(
        fed.member_by_spiffe("spiffe://rcp-federation/operator/alice")
            .map(|m| m.id.as_str()),
        Some("alice")
    );
    let (owner, _) = fed.key_owner(key(31).key_id()).unwrap();
    assert_eq!(owner.id, "colombo");

    let old = key(21);
    let old_id = old.key_id();
    let before = retire_at - Duration::seconds(1);
    assert_eq!(fed.key_state(old_id, before), KeyState::Active);
    assert_eq!(
        fed.key_state(old_id, retire_at),
        KeyState::Retired { at: retire_at }
    );
    assert_eq!(
        fed.key_state(old_id, retire_at + Duration::days(1)),
        KeyState::Retired { at: retire_at }
    );
    assert_eq!(
        fed.key_state(old_id, datetime!(2024-06-01 00:00 UTC)),
        KeyState::NotYetValid
    );
    assert_eq!(
        fed.key_state(key(31).key_id(), before),
        KeyState::NotYetValid
    );
    assert_eq!(fed.key_state(key(31).key_id(), retire_at), KeyState::Active);
    assert_eq!(
        fed.key_state(key(22).key_id(), revoke_at),
        KeyState::Revoked { at: revoke_at }
    );
    assert_eq!(
        fed.key_state(key(22).key_id(), revoke_at - Duration::seconds(1)),
        KeyState::Active
    );
    assert_eq!(fed.key_state(key(99).key_id(), now()), KeyState::Unknown);
    // Root keys are not statement keys.
    assert_eq!(fed.key_state(k[0].key_id(), now()), KeyState::Unknown);

    // The member-file form keeps the lifecycle and version.
    let text = fed.to_toml().unwrap();
    assert!(text.contains("registry_version = 1"), "{text}");
    assert!(text.contains("status = \"retired\""), "{text}");
    assert!(
        text.contains("status_at = \"2026-03-01T12:00:00Z\""),
        "{text}"
    );
    let again = Federation::from_toml(&text).unwrap();
    assert_eq!(again.registry_version(), 1);
    assert_eq!(
        again.key_state(old_id, retire_at),
        KeyState::Retired { at: retire_at }
    );
    assert_eq!(again.key_state(old_id, before), KeyState::Active);
    assert_eq!(
        again.key_state(key(22).key_id(), revoke_at),
        KeyState::Revoked { at: revoke_at }
    );
    assert_eq!(again.to_toml().unwrap(), text);
}

#[test]
fn old_member_files_still_load_with_active_keys() {
    let k = key(21);
    let text = format!(
        r#"federation_id = "rcp-federation"
hub_id = "gfmd"

[[members]]
id = "gfmd"
name = "GFMD hub"
kind = "hub"
roles = ["reader", "admin"]
spiffe_id = "spiffe://rcp-federation/node/gfmd"

[[members]]
id = "colombo"
name = "Colombo Process"
kind = "RCP"
roles = ["publisher", "reader"]
spiffe_id = "spiffe://rcp-federation/node/colombo"

[[members.keys]]
key_id = "{}"
public_key = "{}"

[[members.states]]
iso3 = "LKA"
"#,
        k.key_id(),
        k.verify_key().to_base64()
    );
    let fed = Federation::from_toml(&text).unwrap();
    assert_eq!(fed.registry_version(), 0);
    for at in [
        datetime!(1990-01-01 00:00 UTC),
        now(),
        datetime!(2099-01-01 00:00 UTC),
    ] {
        assert_eq!(fed.key_state(k.key_id(), at), KeyState::Active);
    }
    assert_eq!(fed.key_state(key(22).key_id(), now()), KeyState::Unknown);
    let written = fed.to_toml().unwrap();
    assert!(!written.contains("status"), "{written}");
    assert!(!written.contains("registry_version"), "{written}");
    assert!(Federation::from_toml(&written).is_ok());

    // Lifecycle fields in a hand-written member file are checked.
    let with = |extra: &str| {
        text.replace(
            &format!("public_key = \"{}\"\n", k.verify_key().to_base64()),
            &format!("public_key = \"{}\"\n{extra}\n", k.verify_key().to_base64()),
        )
    };
    let retired = Federation::from_toml(&with(
        "status = \"retired\"\nstatus_at = \"2026-03-01T00:00:00Z\"",
    ))
    .unwrap();
    assert_eq!(
        retired.key_state(k.key_id(), datetime!(2026-03-02 00:00 UTC)),
        KeyState::Retired {
            at: datetime!(2026-03-01 00:00 UTC)
        }
    );
    for bad in [
        "status = \"retired\"",
        "status = \"lost\"",
        "status = \"active\"\nstatus_at = \"2026-03-01T00:00:00Z\"",
        "valid_from = \"yesterday\"",
        "status = \"revoked\"\nstatus_at = \"2026-03-01\"",
        "valid_from = \"2026-04-01T00:00:00Z\"\nstatus = \"revoked\"\nstatus_at = \"2026-03-01T00:00:00Z\"",
    ] {
        assert!(Federation::from_toml(&with(bad)).is_err(), "{bad}");
    }
}

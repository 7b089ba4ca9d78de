//! The Ed25519 acceptance vectors `proto/vectors/ed25519.json` (docs/spec/keys.md §3): the
//! committed file is exactly the generator's output, every vector gets its expected outcome and
//! reason from the real key check (`VerifyKey::from_bytes`, behind every registry, member file,
//! root trust file and note verifier key) and the real signature check (`VerifyKey::verify`), an
//! independent reference implementation of the written rule agrees on the vectors and on
//! combinations of their parts, and equation-only verifiers accept what the rule refuses.

#![allow(clippy::unwrap_used)]

#[path = "../examples/ed25519_vectors/generator.rs"]
mod generator;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity as _;
use ed25519_dalek::Verifier as _;
use proptest::prelude::*;
use prost::Message as _;
use rcpfed_core::keys::{KeyError, SecretKey, SignatureRefusal, VerifyKey, key_id_of};
use rcpfed_core::members::{Federation, Role};
use rcpfed_core::note::{parse_verifier_key, verifier_key_string};
use rcpfed_core::registry::{
    KeyEntry, KeyLifecycle, Registry, RegistryMemberEntry, RootSet, RootTrustFile, decode_and_check,
};
use rcpfed_core::rejection::reasons;
use sha2::{Digest as _, Sha512};
use std::collections::BTreeSet;
use time::macros::datetime;

const FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../proto/vectors/ed25519.json"
);

struct V {
    name: String,
    public_key: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
    reason: Option<String>,
    cofactorless: Option<bool>,
}

impl V {
    fn accepted(&self) -> bool {
        self.reason.is_none()
    }
    fn key_refusal(&self) -> bool {
        self.reason.as_deref().is_some_and(|r| r.starts_with("A_"))
    }
}

fn committed() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(FILE).unwrap()).unwrap()
}

fn vectors() -> Vec<V> {
    let file = committed();
    let list = file["vectors"].as_array().unwrap();
    list.iter()
        .map(|v| {
            let hex = |field: &str| hex::decode(v[field].as_str().unwrap()).unwrap();
            let expected = v["expected"].as_str().unwrap();
            let reason = v["reason"].as_str().map(str::to_string);
            assert_eq!(
                expected == "accept",
                reason.is_none(),
                "{}: expected {expected} with reason {reason:?}",
                v["name"]
            );
            V {
                name: v["name"].as_str().unwrap().to_string(),
                public_key: hex("public_key"),
                message: hex("message"),
                signature: hex("signature"),
                reason,
                cofactorless: v["cofactorless_equation"].as_bool(),
            }
        })
        .collect()
}

/// The outcome of rcpfed's real checks: None for accept, else the refusal code.
fn real_outcome(v: &V) -> Option<&'static str> {
    let key = match VerifyKey::from_bytes(&v.public_key) {
        Ok(key) => key,
        Err(e) => return Some(e.code()),
    };
    let verdict = key.verify(&v.message, &v.signature);
    assert_eq!(
        verdict.is_ok(),
        key.verify_strict(&v.message, &v.signature),
        "{}: verify and verify_strict agree",
        v.name
    );
    verdict.err().map(SignatureRefusal::code)
}

#[test]
fn committed_file_is_the_generator_output() {
    let text = std::fs::read_to_string(FILE).unwrap();
    assert!(
        text == generator::vectors_json(),
        "proto/vectors/ed25519.json differs from the generator's output; regenerate it with \
         `cargo run -p rcpfed-core --example ed25519_vectors > proto/vectors/ed25519.json`"
    );
}

#[test]
fn every_vector_gets_its_expected_outcome_and_reason() {
    let all = vectors();
    for v in &all {
        assert_eq!(
            real_outcome(v),
            v.reason.as_deref(),
            "{}: outcome (None = accept)",
            v.name
        );
        // Keys arrive as base64 in member and root trust files: the same outcome.
        let from_b64 = VerifyKey::from_base64(&B64.encode(&v.public_key)).map(|_| ());
        let from_raw = VerifyKey::from_bytes(&v.public_key).map(|_| ());
        assert_eq!(from_b64, from_raw, "{}", v.name);
    }
    // Every reason in the file's list has at least one vector, and the list is exactly the
    // codes rcpfed can report.
    let file = committed();
    let listed: Vec<&str> = file["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    let used: BTreeSet<&str> = all.iter().filter_map(|v| v.reason.as_deref()).collect();
    assert_eq!(listed.iter().copied().collect::<BTreeSet<_>>(), used);
    let codes: Vec<&str> = [
        KeyError::BadEncoding,
        KeyError::InvalidPublicKey,
        KeyError::NonCanonicalPublicKey,
        KeyError::WeakPublicKey,
        KeyError::MixedOrderPublicKey,
    ]
    .iter()
    .map(KeyError::code)
    .chain(
        [
            SignatureRefusal::Length,
            SignatureRefusal::SOutOfRange,
            SignatureRefusal::RNotAPoint,
            SignatureRefusal::RNonCanonical,
            SignatureRefusal::RSmallOrder,
            SignatureRefusal::Equation,
        ]
        .map(SignatureRefusal::code),
    )
    .collect();
    assert_eq!(listed, codes, "the reasons, in the order the checks apply");
    assert!(all.iter().filter(|v| v.accepted()).count() >= 2);
}

/// A small valid registry: one root key, the hub and one publisher.
fn registry() -> (Registry, SecretKey) {
    let root_key = SecretKey::from_seed(&[1; 32]);
    let member_key = SecretKey::from_seed(&[21; 32]);
    let entry = |id: &str, kind: &str, roles: Vec<Role>, key: &SecretKey| RegistryMemberEntry {
        id: id.into(),
        name: format!("{id} full name"),
        kind: kind.into(),
        roles,
        spiffe_id: format!("spiffe://rcp-federation/node/{id}"),
        keys: vec![KeyEntry {
            key: key.verify_key().clone(),
            valid_from: datetime!(2025-01-01 00:00 UTC),
            status: KeyLifecycle::Active,
        }],
        states: Vec::new(),
    };
    let reg = Registry {
        federation_id: "rcp-federation".into(),
        version: 1,
        issued_at: datetime!(2026-01-01 00:00 UTC),
        expires_at: datetime!(2027-01-01 00:00 UTC),
        previous_digest: None,
        root: RootSet {
            keys: vec![(root_key.verify_key().clone(), "GFMD root 1".into())],
            threshold: 1,
        },
        hub_id: "gfmd".into(),
        members: vec![
            entry(
                "gfmd",
                "hub",
                vec![Role::Reader, Role::Admin],
                &SecretKey::from_seed(&[20; 32]),
            ),
            entry(
                "colombo",
                "RCP",
                vec![Role::Publisher, Role::Reader],
                &member_key,
            ),
        ],
    };
    (reg, member_key)
}

/// Every place a public key enters the federation, with `public` in place of colombo's key
/// (registry member key, root key, root trust file, member file) or as a note verifier key.
/// Returns, per place, None if it accepts and else its reason and message.
fn places(public: &[u8]) -> Vec<(&'static str, Option<(String, String)>)> {
    let (reg, member_key) = registry();
    let id = key_id_of(&<[u8; 32]>::try_from(public).unwrap_or([0; 32]));
    let b64 = B64.encode(public);
    let old_b64 = member_key.verify_key().to_base64();
    let old_id = member_key.key_id().to_string();
    let mut out = Vec::new();

    let mut doc = reg.to_proto();
    doc.members[1].keys[0].public_key = public.to_vec();
    doc.members[1].keys[0].key_id = id.clone();
    let got = decode_and_check(&doc.encode_to_vec()).err().map(|e| {
        let v = e.violations.first().cloned().unwrap();
        assert_eq!(v.field, "members[1].keys[0].public_key");
        (v.reason.to_string(), v.description)
    });
    out.push(("registry member key", got));

    let mut doc = reg.to_proto();
    let root = doc.root.as_mut().unwrap();
    root.keys[0].public_key = public.to_vec();
    root.keys[0].key_id = id.clone();
    let got = decode_and_check(&doc.encode_to_vec()).err().map(|e| {
        let v = e.violations.first().cloned().unwrap();
        assert_eq!(v.field, "root.keys[0].public_key");
        (e.reason.to_string(), v.description)
    });
    out.push(("registry root key", got));

    let trust = reg.root.to_trust_file("rcp-federation").to_toml().unwrap();
    let root_b64 = reg.root.keys[0].0.to_base64();
    let root_id = reg.root.keys[0].0.key_id.clone();
    let trust = trust.replace(&root_b64, &b64).replace(&root_id, &id);
    let got = RootTrustFile::from_toml(&trust)
        .and_then(|t| t.to_root_set())
        .err()
        .map(|e| (e.reason.to_string(), e.message));
    out.push(("root trust file", got));

    let members = reg.to_federation().unwrap().to_toml().unwrap();
    assert!(members.contains(&old_b64) && members.contains(&old_id));
    let members = members.replace(&old_b64, &b64).replace(&old_id, &id);
    let got = Federation::from_toml(&members)
        .err()
        .map(|e| ("MEMBER_FILE_INVALID".to_string(), e.to_string()));
    out.push(("member file", got));

    let vkey = match <[u8; 32]>::try_from(public) {
        Ok(raw) => verifier_key_string("rcpfed.example/log", 1, &raw),
        Err(_) => format!(
            "rcpfed.example/log+00000000+{}",
            B64.encode([&[1u8][..], public].concat())
        ),
    };
    let got = parse_verifier_key(&vkey)
        .err()
        .map(|e| (e.reason.to_string(), e.message));
    out.push(("note verifier key", got));
    out
}

#[test]
fn refused_keys_are_refused_wherever_keys_enter_with_the_specific_reason() {
    let fresh = SecretKey::from_seed(&[99; 32]);
    for (place, got) in places(&fresh.verify_key().to_bytes()) {
        assert_eq!(got, None, "a valid key is accepted by the {place}");
    }
    let all = vectors();
    let mut checked = 0;
    for v in all.iter().filter(|v| v.key_refusal()) {
        let error = VerifyKey::from_bytes(&v.public_key).unwrap_err();
        let text = error.to_string();
        for (place, got) in places(&v.public_key) {
            let (reason, message) = got.unwrap_or_else(|| panic!("{}: {place} accepts", v.name));
            let want = match place {
                "registry member key" => reasons::INVALID_PUBLIC_KEY,
                "registry root key" | "root trust file" => reasons::INVALID_ROOT,
                "member file" => "MEMBER_FILE_INVALID",
                _ => reasons::BAD_VERIFIER_KEY,
            };
            assert_eq!(reason, want, "{}: {place}", v.name);
            assert!(
                message.contains(&text),
                "{}: the {place} says why ({text}): {message}",
                v.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 5 * 20, "{checked}");
}

/// The rule of docs/spec/keys.md §2, written again from the text with independent formulations: the
/// canonical check compares integers (y < p, and no sign bit when y = ±1, the only points with
/// x = 0), S < L compares bytes, the subgroup check computes [L]P as [L - 1]P + P, and the
/// equation compares points.
fn reference(public: &[u8], message: &[u8], sig: &[u8]) -> Option<&'static str> {
    fn le_less(a: &[u8; 32], b: &[u8; 32]) -> bool {
        a.iter().rev().lt(b.iter().rev())
    }
    const P: [u8; 32] = {
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        p
    };
    enum Bad {
        NotAPoint,
        NonCanonical,
        Small,
        Mixed,
    }
    fn point(bytes: &[u8; 32]) -> Result<EdwardsPoint, Bad> {
        let point = CompressedEdwardsY(*bytes)
            .decompress()
            .ok_or(Bad::NotAPoint)?;
        let mut y = *bytes;
        y[31] &= 0x7f;
        let sign = bytes[31] >> 7 == 1;
        let mut one = [0u8; 32];
        one[0] = 1;
        let mut minus_one = P;
        minus_one[0] -= 1;
        if !le_less(&y, &P) || (sign && (y == one || y == minus_one)) {
            return Err(Bad::NonCanonical);
        }
        if (point * Scalar::from(8u8)).is_identity() {
            return Err(Bad::Small);
        }
        if !(point * (-Scalar::ONE) + point).is_identity() {
            return Err(Bad::Mixed);
        }
        Ok(point)
    }
    let Ok(a_enc) = <[u8; 32]>::try_from(public) else {
        return Some("A_ENCODING");
    };
    let a = match point(&a_enc) {
        Ok(a) => a,
        Err(Bad::NotAPoint) => return Some("A_NOT_A_POINT"),
        Err(Bad::NonCanonical) => return Some("A_NON_CANONICAL"),
        Err(Bad::Small) => return Some("A_SMALL_ORDER"),
        Err(Bad::Mixed) => return Some("A_MIXED_ORDER"),
    };
    if sig.len() != 64 {
        return Some("SIG_LENGTH");
    }
    let r_enc: [u8; 32] = sig[..32].try_into().unwrap();
    let s_enc: [u8; 32] = sig[32..].try_into().unwrap();
    if !le_less(&s_enc, &generator::L) {
        return Some("S_OUT_OF_RANGE");
    }
    let r = match point(&r_enc) {
        Ok(r) => r,
        Err(Bad::NotAPoint) => return Some("R_NOT_A_POINT"),
        Err(Bad::NonCanonical) => return Some("R_NON_CANONICAL"),
        Err(Bad::Small) => return Some("R_SMALL_ORDER"),
        // Reported as the equation: it cannot hold for an R outside the prime-order subgroup.
        Err(Bad::Mixed) => return Some("EQUATION"),
    };
    let mut h = Sha512::new();
    h.update(r_enc);
    h.update(a_enc);
    h.update(message);
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&h.finalize());
    let k = Scalar::from_bytes_mod_order_wide(&wide);
    let s = Scalar::from_bytes_mod_order(s_enc);
    if EdwardsPoint::mul_base(&s) == r + a * k {
        None
    } else {
        Some("EQUATION")
    }
}

#[test]
fn the_written_rule_gives_the_same_outcome_on_every_vector() {
    for v in vectors() {
        assert_eq!(
            reference(&v.public_key, &v.message, &v.signature),
            v.reason.as_deref(),
            "{}",
            v.name
        );
    }
}

#[test]
fn the_written_rule_and_the_implementation_agree_on_recombined_vectors() {
    // Every key of the file with every (R, S) of the file, over every message of the file: the
    // refusal reasons come from different checks in different orders.
    let all = vectors();
    let keys: BTreeSet<Vec<u8>> = all.iter().map(|v| v.public_key.clone()).collect();
    let rs: BTreeSet<Vec<u8>> = all
        .iter()
        .filter(|v| v.signature.len() == 64)
        .map(|v| v.signature[..32].to_vec())
        .collect();
    let ss: BTreeSet<Vec<u8>> = all
        .iter()
        .filter(|v| v.signature.len() == 64)
        .map(|v| v.signature[32..].to_vec())
        .collect();
    let messages: BTreeSet<Vec<u8>> = all.iter().map(|v| v.message.clone()).collect();
    for key in &keys {
        let got = VerifyKey::from_bytes(key).err().map(|e| e.code());
        assert_eq!(
            got,
            reference(key, b"", &[0; 64]).filter(|r| r.starts_with("A_"))
        );
    }
    let valid_keys: Vec<&Vec<u8>> = keys
        .iter()
        .filter(|k| VerifyKey::from_bytes(k).is_ok())
        .collect();
    assert_eq!(valid_keys.len(), 2);
    let mut combinations = 0;
    for public in valid_keys {
        let key = VerifyKey::from_bytes(public).unwrap();
        for r in &rs {
            for s in &ss {
                let sig = [r.as_slice(), s].concat();
                for m in messages.iter().take(2) {
                    let got = key.verify(m, &sig).err().map(SignatureRefusal::code);
                    assert_eq!(got, reference(public, m, &sig));
                    combinations += 1;
                }
            }
        }
    }
    assert!(combinations > 1000, "{combinations}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random 32-byte keys and random signatures under a real key: the same outcome.
    #[test]
    fn the_written_rule_and_the_implementation_agree_on_random_bytes(
        key in proptest::array::uniform32(any::<u8>()),
        sig in proptest::collection::vec(any::<u8>(), 64),
        message in proptest::collection::vec(any::<u8>(), 0..40),
        top in 0u8..4,
    ) {
        let got = VerifyKey::from_bytes(&key).err().map(|e| e.code());
        prop_assert_eq!(got, reference(&key, b"", &[0; 64]).filter(|r| r.starts_with("A_")));
        // S near L more often than uniform bytes would give.
        let mut sig = sig;
        sig[63] = match top { 0 => sig[63] & 0x0f, 1 => 0x10, _ => sig[63] };
        let signer = SecretKey::from_seed(&[7; 32]);
        let public = signer.verify_key().to_bytes();
        let got = signer.verify_key().verify(&message, &sig).err().map(SignatureRefusal::code);
        prop_assert_eq!(got, reference(&public, &message, &sig));
        let honest = signer.sign(&message);
        prop_assert_eq!(reference(&public, &message, &honest), None);
    }
}

#[test]
fn equation_only_verifiers_accept_vectors_the_rule_refuses() {
    let all = vectors();
    let mut lax_accepts = Vec::new();
    let mut old_accepts = Vec::new();
    for v in &all {
        let (Ok(a), Ok(sig)) = (
            <[u8; 32]>::try_from(v.public_key.as_slice()),
            <[u8; 64]>::try_from(v.signature.as_slice()),
        ) else {
            continue;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&sig);
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&a) else {
            continue;
        };
        // ed25519-dalek's plain `verify`: cofactorless, S < L, R compared as bytes, no check on
        // the order of A or R.
        if key.verify(&v.message, &sig).is_ok() {
            lax_accepts.push(v.name.as_str());
            assert_eq!(v.cofactorless, Some(true), "{}", v.name);
        }
        // The rule before docs/spec/keys.md §2 was made exact: dalek's key decoding, a small-order
        // check, `verify_strict`.
        if !key.is_weak() && key.verify_strict(&v.message, &sig).is_ok() {
            old_accepts.push(v.name.as_str());
        }
    }
    for name in [
        "identity-key-forgery-empty",
        "identity-key-forgery",
        "a-small-order-1",
        "a-small-order-7",
        "a-non-canonical-2",
        "r-small-order-0",
        "a-mixed-order-kt-zero",
    ] {
        assert!(
            lax_accepts.contains(&name),
            "{name} is accepted by a lax verifier: {lax_accepts:?}"
        );
        let v = all.iter().find(|v| v.name == name).unwrap();
        assert!(!v.accepted(), "{name} is refused by the rule");
    }
    // The old rule accepted one signature the exact rule refuses: a mixed-order key's.
    assert_eq!(
        old_accepts,
        ["valid-rfc8032-test1", "valid", "a-mixed-order-kt-zero"]
    );
    // And it accepted as keys the non-canonical and mixed-order ones.
    let old_keys: Vec<&str> = all
        .iter()
        .filter(|v| v.key_refusal())
        .filter(|v| {
            <[u8; 32]>::try_from(v.public_key.as_slice())
                .ok()
                .and_then(|a| ed25519_dalek::VerifyingKey::from_bytes(&a).ok())
                .is_some_and(|k| !k.is_weak())
        })
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        old_keys,
        [
            "a-non-canonical-large-order-0",
            "a-non-canonical-large-order-1",
            "a-mixed-order-kt-zero",
            "a-mixed-order"
        ]
    );
}

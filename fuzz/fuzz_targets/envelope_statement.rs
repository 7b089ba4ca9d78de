//! Envelope and statement decode plus validation, as the hub applies them to a
//! PublishStatement request. The first byte picks the path: the rest is either a whole
//! `rcpfed.v1.Envelope` (signature check against the federation, then the payload), or a
//! statement payload that the target signs with the claimed node's key so the fuzzer reaches
//! the decoder and the validator behind the signature check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcpfed_core::catalogue::{Catalogue, embedded_catalogue_toml, validate_snapshot};
use rcpfed_core::envelope::{SignedEnvelope, verify_signatures};
use rcpfed_core::members::Federation;
use rcpfed_core::statement::{Body, Statement};
use rcpfed_core::validate::{ValidationContext, validate_statement};
use rcpfed_fuzz as fx;
use std::sync::OnceLock;

struct Fixture {
    federation: Federation,
    catalogue: Option<Catalogue>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        federation: fx::federation(),
        catalogue: Catalogue::from_toml(embedded_catalogue_toml()).ok(),
    })
}

fn check_statement(f: &Fixture, st: &Statement) {
    // Whatever decodes must encode and decode again.
    let again = Statement::decode(&st.encode());
    assert!(
        again.is_ok(),
        "a decoded statement does not decode after re-encoding: {again:?}"
    );
    let Some(member) = f.federation.member(&st.header.node_id) else {
        return;
    };
    let aggregates = f
        .catalogue
        .as_ref()
        .map(|c| c.area_aggregates().to_vec())
        .unwrap_or_default();
    let ctx = ValidationContext {
        federation_id: fx::FED,
        member,
        now: fx::NOW,
        aggregates: &aggregates,
    };
    let _ = validate_statement(st, &ctx);
    if let (Body::Indicators(snap), Some(cat)) = (&st.body, &f.catalogue) {
        let _ = validate_snapshot(cat, snap, member).into_result();
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(env) = SignedEnvelope::decode(rest) else {
            return;
        };
        let _ = env.digest();
        let _ = verify_signatures(&env, |id| f.federation.key_owner(id).map(|(_, k)| k));
        if let Ok(st) = Statement::decode(&env.payload) {
            check_statement(f, &st);
        }
    } else {
        let Ok(st) = Statement::decode(rest) else {
            return;
        };
        let i = fx::node_index(&st.header.node_id).unwrap_or(0);
        let env = fx::sign_statement_payload(i, rest.to_vec());
        let verified = verify_signatures(&env, |id| f.federation.key_owner(id).map(|(_, k)| k));
        assert!(
            verified.is_ok(),
            "a freshly signed envelope does not verify"
        );
        check_statement(f, &st);
    }
});

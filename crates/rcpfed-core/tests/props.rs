//! Property tests: signatures break under any bit flip; statements survive encode/decode.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rcpfed_core::Digest;
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope, verify_signatures};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::statement::{
    Body, DocumentKind, Header, IndicatorSnapshot, LocalizedText, Observation, ObservationAction,
    PolicyStatus, PolicySummary, Reference, Statement,
};
use time::OffsetDateTime;

fn key() -> SecretKey {
    SecretKey::from_seed(&[7; 32])
}

proptest! {
    #[test]
    fn any_payload_bit_flip_breaks_the_signature(
        payload in proptest::collection::vec(any::<u8>(), 1..256),
        bit in any::<prop::sample::Index>(),
    ) {
        let k = key();
        let keys = [k.verify_key().clone()];
        let lookup = |id: &str| keys.iter().find(|v| v.key_id == id);
        let env = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, payload, &k);
        prop_assert!(verify_signatures(&env, lookup).is_ok());
        let mut bad = env.clone();
        let i = bit.index(bad.payload.len() * 8);
        bad.payload[i / 8] ^= 1 << (i % 8);
        prop_assert!(verify_signatures(&bad, lookup).is_err());
    }

    #[test]
    fn any_signature_bit_flip_breaks_the_signature(
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        bit in 0usize..512,
    ) {
        let k = key();
        let keys = [k.verify_key().clone()];
        let lookup = |id: &str| keys.iter().find(|v| v.key_id == id);
        let mut env = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, payload, &k);
        env.signatures[0].sig[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify_signatures(&env, lookup).is_err());
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Statement::decode(&bytes);
        let _ = SignedEnvelope::decode(&bytes);
    }

    #[test]
    fn statements_round_trip(st in statement()) {
        let bytes = st.encode();
        prop_assert_eq!(Statement::decode(&bytes), Ok(st));
    }
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 éß-]{0,12}"
}

fn texts() -> impl Strategy<Value = Vec<LocalizedText>> {
    proptest::collection::vec(
        ("[a-z]{2}", text()).prop_map(|(language, text)| LocalizedText { language, text }),
        0..3,
    )
}

fn digest() -> impl Strategy<Value = Option<Digest>> {
    proptest::option::of(any::<[u8; 32]>().prop_map(Digest))
}

fn policy() -> impl Strategy<Value = PolicySummary> {
    (
        texts(),
        texts(),
        text(),
        prop::sample::select(vec![
            PolicyStatus::Draft,
            PolicyStatus::Adopted,
            PolicyStatus::Superseded,
            PolicyStatus::Withdrawn,
        ]),
        proptest::collection::vec("[A-Z]{3}", 0..3),
        proptest::collection::vec(0u32..30, 0..3),
        proptest::collection::vec((text(), text(), digest()), 0..2),
    )
        .prop_map(
            |(title, summary, meeting, status, countries, gcm, refs)| PolicySummary {
                title,
                summary,
                meeting: meeting.clone(),
                meeting_date: meeting,
                status,
                countries,
                gcm_objectives: gcm,
                sdg_targets: vec!["10.7".into()],
                references: refs
                    .into_iter()
                    .map(|(title, url, sha256)| Reference { title, url, sha256 })
                    .collect(),
            },
        )
}

fn observation() -> impl Strategy<Value = Observation> {
    (
        prop::sample::select(vec![
            ObservationAction::Append,
            ObservationAction::Replace,
            ObservationAction::Delete,
        ]),
        "[A-Z]{3}",
        "[0-9]{4}",
        proptest::collection::vec(("[A-Z]{1,5}", "[A-Z0-9_]{0,4}"), 0..3),
        // NaN never equals itself, so it is left out of the equality check.
        proptest::option::of(-1e12f64..1e12),
        text(),
        -3i32..15,
    )
        .prop_map(
            |(action, ref_area, time_period, dimensions, obs_value, note, unit_mult)| Observation {
                action,
                ref_area,
                time_period,
                dimensions,
                obs_value,
                obs_status: "A".into(),
                unit_measure: note.clone(),
                unit_mult,
                conf_status: String::new(),
                footnote: note.clone(),
                source: note,
            },
        )
}

fn statement() -> impl Strategy<Value = Statement> {
    let body = prop_oneof![
        policy().prop_map(Body::Policy),
        (
            "[A-Z_]{1,10}",
            proptest::collection::vec(observation(), 0..4)
        )
            .prop_map(
                |(indicator, observations)| Body::Indicators(IndicatorSnapshot {
                    indicator,
                    observations,
                    chunks: None,
                })
            ),
    ];
    (
        body,
        any::<u64>(),
        digest(),
        0i64..4_000_000_000,
        0u32..1_000_000_000,
        any::<u32>(),
        "[a-z/-]{0,20}",
    )
        .prop_map(
            |(body, seq, prev_digest, secs, nanos, revision, document)| {
                let issued_at = OffsetDateTime::from_unix_timestamp(secs)
                    .unwrap()
                    .replace_nanosecond(nanos)
                    .unwrap();
                let kind = match body {
                    Body::Policy(_) => DocumentKind::PolicySummary,
                    Body::Indicators(_) => DocumentKind::IndicatorSnapshot,
                };
                Statement {
                    header: Header {
                        federation_id: "rcp-federation".into(),
                        node_id: "colombo".into(),
                        seq,
                        prev_digest,
                        issued_at,
                        kind,
                        schema_version: 1,
                        document,
                        revision,
                    },
                    body,
                }
            },
        )
}

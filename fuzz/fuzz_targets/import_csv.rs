//! The importers a publisher runs on its own files (`rcpfed publish`, the node's
//! PublishDocument and PublishSnapshot): indicator CSV (simple and SDMX-CSV 2.0, whole and
//! streamed in batches) and policy TOML, then the receiver's validation of what they produce.
//! Whole and streamed reading must agree on what they accept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcpfed_core::catalogue::{Catalogue, embedded_catalogue_toml, validate_snapshot};
use rcpfed_core::members::Federation;
use rcpfed_core::statement::{Body, DocumentKind, IndicatorSnapshot, PolicySummary, Statement};
use rcpfed_core::validate::{ValidationContext, validate_statement};
use rcpfed_fuzz as fx;
use rcpfed_import::{
    IndicatorCsvBatches, is_sdmx_csv, parse_any_indicator_csv, parse_indicator_csv,
    parse_policy_toml, parse_sdmx_csv, read_any_indicator_csv,
};
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

fn validate(f: &Fixture, st: &Statement) {
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
    let again = Statement::decode(&st.encode());
    assert!(
        again.is_ok(),
        "an imported statement does not decode after encoding: {again:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let text = String::from_utf8_lossy(data);
    let node = fx::NODES[0];
    let _ = is_sdmx_csv(&text);
    let _ = parse_indicator_csv(&text, node, "fuzz");
    let _ = parse_sdmx_csv(&text, node, "fuzz");
    let whole = parse_any_indicator_csv(&text, node, "fuzz");
    if let Ok(docs) = &whole {
        for doc in docs {
            assert_eq!(doc.lines.len(), doc.snapshot.observations.len());
            let Ok(snapshot) = IndicatorSnapshot::from_proto(doc.snapshot.clone()) else {
                continue;
            };
            let st = Statement {
                header: fx::header(node, 1, DocumentKind::IndicatorSnapshot, &doc.document),
                body: Body::Indicators(snapshot),
            };
            validate(f, &st);
        }
    }
    // The one-pass reader: the first-error reader's error is its first problem.
    match (&whole, read_any_indicator_csv(&text, node, "fuzz")) {
        (Ok(_), Ok(report)) => assert_eq!(report.total_problems, 0),
        (Ok(_), Err(e)) => panic!("the one-pass reader refuses what the other reads: {e}"),
        (Err(first), Ok(report)) => assert_eq!(report.problems.first(), Some(first)),
        (Err(first), Err(e)) => assert_eq!(first, &e),
    }
    // Streamed in small batches: must not panic, and must not accept what the whole-file
    // reader refuses.
    if let Ok(mut batches) = IndicatorCsvBatches::new(text.as_bytes(), 3) {
        let mut streamed_ok = true;
        for batch in batches.by_ref().take(10_000) {
            if batch.is_err() {
                streamed_ok = false;
                break;
            }
        }
        let _ = streamed_ok;
    }
    if let Ok(doc) = parse_policy_toml(&text)
        && let Ok(summary) = PolicySummary::from_proto(doc.summary)
    {
        let st = Statement {
            header: fx::header(node, 1, DocumentKind::PolicySummary, &doc.document),
            body: Body::Policy(summary),
        };
        validate(f, &st);
    }
});

//! The importers never panic, whatever they are given.

use proptest::prelude::*;
use rcpfed_import::{
    IndicatorCsvBatches, MAX_IMPORT_PROBLEMS, parse_any_indicator_csv, parse_indicator_csv,
    parse_policy_toml, parse_sdmx_csv, read_any_indicator_csv, read_indicator_csv_streaming,
    sample,
};

/// Every CSV entry point on `text`; where the whole-file reader accepts one indicator, the
/// streaming reader gives the same observations and lines, and every line is located.
fn all_csv(text: &str) {
    let _ = parse_indicator_csv(text, "colombo", "x");
    let _ = parse_sdmx_csv(text, "colombo", "x");
    let any = parse_any_indicator_csv(text, "colombo", "x");
    let streamed: Result<Vec<_>, _> =
        IndicatorCsvBatches::new(text.as_bytes(), 2).and_then(|b| b.collect::<Result<Vec<_>, _>>());
    if let Ok(docs) = &any {
        for doc in docs {
            assert_eq!(doc.lines.len(), doc.snapshot.observations.len());
            for (i, line) in doc.lines.iter().enumerate() {
                let cell = doc.locate(&format!("indicator_snapshot.observations[{i}].ref_area"));
                assert_eq!(cell.map(|c| c.line), Some(*line));
            }
        }
        if let [doc] = docs.as_slice() {
            let batches =
                streamed.expect("the streaming reader accepts what the whole-file reader accepts");
            let observations: Vec<_> = batches
                .iter()
                .flat_map(|b| b.observations.clone())
                .collect();
            let lines: Vec<usize> = batches.iter().flat_map(|b| b.lines.clone()).collect();
            assert_same(&observations, &doc.snapshot.observations);
            assert_eq!(lines, doc.lines);
        }
    }
    // The one-pass reader agrees with the first-error reader: the same snapshots when the file
    // reads, and that reader's error as its first problem when it does not.
    match (&any, read_any_indicator_csv(text, "colombo", "x")) {
        (Ok(docs), Ok(report)) => {
            assert_eq!(report.total_problems, 0, "{:?}", report.problems);
            assert_same(&report.docs, docs);
        }
        (Ok(_), Err(e)) => panic!("the one-pass reader refuses what the other reads: {e}"),
        (Err(first), Ok(report)) => {
            assert_eq!(report.problems.first(), Some(first));
            assert!(report.problems.len() <= MAX_IMPORT_PROBLEMS);
            assert!(report.total_problems >= report.problems.len());
            for doc in &report.docs {
                assert_eq!(doc.lines.len(), doc.snapshot.observations.len());
            }
        }
        (Err(first), Err(e)) => assert_eq!(first, &e),
    }
    // The callback reuses one batch's observations: the result must be the same.
    let mut observations = Vec::new();
    let mut lines = Vec::new();
    let summary = read_indicator_csv_streaming(
        text.as_bytes(),
        3,
        |b| -> Result<(), rcpfed_import::ImportError> {
            observations.extend(b.observations.iter().cloned());
            lines.extend(b.lines.iter().copied());
            Ok(())
        },
    );
    if let (Ok(docs), Ok(summary)) = (&any, summary)
        && let [doc] = docs.as_slice()
    {
        assert_eq!(summary.observations, doc.snapshot.observations.len());
        assert_same(&observations, &doc.snapshot.observations);
        assert_eq!(lines, doc.lines);
    }
}

/// Equal observations, NaN values included (NaN != NaN under `PartialEq`, and an importer
/// passes a NaN cell through for the validator to refuse with a row-level message).
fn assert_same<T: std::fmt::Debug>(a: &[T], b: &[T]) {
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

fn sdmx_like() -> impl Strategy<Value = String> {
    let cell = prop_oneof![
        Just(String::new()),
        Just("dataflow".to_owned()),
        Just("datastructure".to_owned()),
        Just("GFMD:MIG_STOCK(1.0.0)".to_owned()),
        Just("GFMD:REMIT_INFLOW(1.0.0): Name".to_owned()),
        Just("GFMD:X(".to_owned()),
        Just("LKA: Sri Lanka".to_owned()),
        Just("2024".to_owned()),
        Just("-".to_owned()),
        Just("12,4".to_owned()),
        "[IARDM]",
        "[A-Z_]{1,8}",
        "[0-9.eE+-]{1,6}",
        ".{0,6}",
    ];
    let sep = prop_oneof![Just(","), Just(";"), Just("\t"), Just("|")];
    let header = prop::sample::subsequence(
        vec![
            "STRUCTURE_ID",
            "STRUCTURE_NAME",
            "ACTION",
            "SERIES_KEY",
            "REF_AREA: Reference area",
            "Reference area",
            "TIME_PERIOD",
            "FREQ",
            "SEX",
            "AGE[]",
            "OBS_VALUE",
            "OBS_STATUS",
            "UNIT_MULT",
            "COMMENT[en;fr]",
            "SOURCE",
            "OBS_VALUE",
            "INDICATOR",
        ],
        0..10,
    );
    (
        sep,
        header,
        prop::collection::vec(prop::collection::vec(cell, 0..10), 0..6),
    )
        .prop_map(|(sep, header, rows)| {
            let mut text = format!("STRUCTURE{sep}{}\n", header.join(sep));
            for row in rows {
                text.push_str(&row.join(sep));
                text.push('\n');
            }
            text
        })
}

fn csv_like() -> impl Strategy<Value = String> {
    let cell = prop_oneof![
        Just(String::new()),
        Just("NaN".to_owned()),
        Just("delete".to_owned()),
        Just("\"a,\nb\"".to_owned()),
        "[A-Z_]{1,8}",
        "[0-9.eE+-]{1,6}",
        ".{0,6}",
    ];
    let row = prop::collection::vec(cell, 0..7).prop_map(|cells| cells.join(","));
    let header = prop::sample::subsequence(
        vec![
            "INDICATOR",
            "DATAFLOW",
            "REF_AREA",
            "TIME_PERIOD",
            "OBS_VALUE",
            "value",
            "UNIT_MULT",
            "ACTION",
            "SEX",
            "unit",
            "published",
            "OBS_VALUE",
        ],
        0..8,
    )
    .prop_map(|h| h.join(","));
    (header, prop::collection::vec(row, 0..6))
        .prop_map(|(h, rows)| format!("{h}\n{}", rows.join("\n")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn csv_never_panics(text in ".*") {
        all_csv(&text);
    }

    #[test]
    fn csv_like_never_panics(text in csv_like()) {
        all_csv(&text);
    }

    #[test]
    fn sdmx_like_never_panics(text in sdmx_like()) {
        all_csv(&text);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), batch in 0usize..4) {
        if let Ok(batches) = IndicatorCsvBatches::new(bytes.as_slice(), batch) {
            for b in batches {
                let _ = b;
            }
        }
        all_csv(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn toml_never_panics(text in ".*") {
        let _ = parse_policy_toml(&text);
    }

    #[test]
    fn mutated_samples_never_panic(cut in 0usize..4000, insert in ".{0,4}", which in 0usize..3) {
        let node = sample::DEMO_NODES[which];
        if let Some(policy) = sample::policy_toml(node) {
            let mut text = policy.to_owned();
            let at = cut.min(text.len());
            if text.is_char_boundary(at) {
                text.insert_str(at, &insert);
                let _ = parse_policy_toml(&text);
                let _ = parse_policy_toml(&text[..at]);
            }
        }
        let csv = sample::indicator_csv(node).unwrap_or(sample::FIGURES_CSV);
        let mut text = csv.to_owned();
        let at = cut.min(text.len());
        if text.is_char_boundary(at) {
            text.insert_str(at, &insert);
            all_csv(&text);
            all_csv(&text[..at]);
        }
    }

    #[test]
    fn mutated_sdmx_never_panics(cut in 0usize..600, insert in ".{0,4}", seed in 0u64..8) {
        let mut csv = Vec::new();
        rcpfed_import::synthetic_indicator_csv(5, seed, &mut csv).expect("synthetic rows");
        let simple = String::from_utf8(csv).expect("UTF-8");
        let sdmx = String::from(
            "STRUCTURE;STRUCTURE_ID;ACTION;REF_AREA: Reference area;TIME_PERIOD;FREQ;SEX;OBS_VALUE;COMMENT\n\
             dataflow;GFMD:MIG_STOCK(1.0.0): Stock;I;LKA: Sri Lanka;2020;A;F;12,5;a \"note\"\n\
             dataflow;GFMD:MIG_STOCK(1.0.0);D;LKA;2019;;M;-;\n"
        );
        for base in [simple, sdmx] {
            let mut text = base.clone();
            let at = cut.min(text.len());
            if text.is_char_boundary(at) {
                text.insert_str(at, &insert);
                all_csv(&text);
                all_csv(&text[..at]);
            }
        }
    }
}

/// Once found by the property test above: a NaN value must not make the streaming and
/// whole-file readers look different.
#[test]
fn nan_cells_read_the_same_streamed_and_whole() {
    all_csv("INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE,UNIT_MULT\nNaN,NaN,NaN,NaN,");
}

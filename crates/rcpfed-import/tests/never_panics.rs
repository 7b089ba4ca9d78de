//! The importers never panic, whatever they are given.

use proptest::prelude::*;
use rcpfed_import::{parse_indicator_csv, parse_policy_toml, sample};

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
        let _ = parse_indicator_csv(&text, "colombo", "x");
    }

    #[test]
    fn csv_like_never_panics(text in csv_like()) {
        let _ = parse_indicator_csv(&text, "colombo", "x");
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
            let _ = parse_indicator_csv(&text, node, "x");
            let _ = parse_indicator_csv(&text[..at], node, "x");
        }
    }
}

//! The shipped indicator catalogue parses, accepts every real figure in the sample data, and
//! refuses bad input with specific, row-level reasons. (The catalogue is not yet wired into
//! the hub or the node; these tests exercise `rcpfed_core::catalogue` alone.)

use rcpfed_core::Violation;
use rcpfed_core::catalogue::{Catalogue, CatalogueCheck, Frequency, validate_snapshot};
use rcpfed_core::members::{Member, Membership};
use rcpfed_core::rejection::reasons;
use rcpfed_core::statement::{IndicatorSnapshot, Observation, ObservationAction};
use std::collections::BTreeSet;

const CATALOGUE: &str = include_str!("../../../data/catalogue/catalogue.toml");
const FIGURES: &str = include_str!("../../../data/sample/figures.csv");
const RCPS: &str = include_str!("../../../data/sample/rcps.csv");

fn catalogue() -> Catalogue {
    match Catalogue::from_toml(CATALOGUE) {
        Ok(c) => c,
        Err(e) => panic!("shipped catalogue refused: {e:?}"),
    }
}

fn member(id: &str, kind: &str, states: &[&str]) -> Member {
    Member {
        id: id.into(),
        name: id.into(),
        kind: kind.into(),
        roles: BTreeSet::new(),
        spiffe_id: String::new(),
        keys: Vec::new(),
        states: states
            .iter()
            .map(|s| Membership {
                iso3: (*s).into(),
                since: None,
                until: None,
            })
            .collect(),
    }
}

fn hub() -> Member {
    member("gfmd", "hub", &[])
}

fn colombo() -> Member {
    member(
        "colombo",
        "RCP",
        &[
            "AFG", "BGD", "KHM", "CHN", "IND", "IDN", "NPL", "PAK", "PHL", "LKA", "THA", "VNM",
        ],
    )
}

fn obs(area: &str, period: &str, value: f64, unit: &str, mult: i32) -> Observation {
    Observation {
        action: ObservationAction::Append,
        ref_area: area.into(),
        time_period: period.into(),
        dimensions: Vec::new(),
        obs_value: Some(value),
        obs_status: "A".into(),
        unit_measure: unit.into(),
        unit_mult: mult,
        conf_status: String::new(),
        footnote: String::new(),
        source: "test".into(),
    }
}

fn snap(indicator: &str, observations: Vec<Observation>) -> IndicatorSnapshot {
    IndicatorSnapshot {
        indicator: indicator.into(),
        observations,
        chunks: None,
    }
}

/// One row of figures.csv.
struct Figure {
    indicator: String,
    observation: Observation,
}

fn figures() -> Vec<Figure> {
    let mut rdr = csv::Reader::from_reader(FIGURES.as_bytes());
    let headers = rdr.headers().cloned().unwrap_or_default();
    assert_eq!(
        headers.iter().take(7).collect::<Vec<_>>(),
        [
            "indicator",
            "ref_area",
            "time_period",
            "value",
            "unit_mult",
            "unit",
            "obs_status"
        ]
    );
    rdr.records()
        .map(|r| {
            let r = r.unwrap_or_default();
            let mut o = obs(
                &r[1],
                &r[2],
                r[3].parse().unwrap_or(f64::NAN),
                &r[5],
                r[4].parse().unwrap_or(-1),
            );
            o.obs_status = r[6].into();
            o.source = r[7].into();
            Figure {
                indicator: r[0].into(),
                observation: o,
            }
        })
        .collect()
}

/// (rcp id, member states) from rcps.csv, for the RCPs that list their members.
fn rcps() -> Vec<(String, String, Vec<String>)> {
    let mut rdr = csv::Reader::from_reader(RCPS.as_bytes());
    rdr.records()
        .map(|r| r.unwrap_or_default())
        .filter(|r| !r[7].is_empty())
        .map(|r| {
            (
                r[0].to_string(),
                r[2].to_string(),
                r[7].split(';').map(str::to_string).collect(),
            )
        })
        .collect()
}

fn reasons_of(list: &[Violation]) -> Vec<(&str, &str)> {
    list.iter().map(|v| (v.field.as_str(), v.reason)).collect()
}

fn assert_clean(check: &CatalogueCheck, what: &str) {
    assert!(check.is_ok(), "{what}: {:#?}", check.errors);
    assert!(check.warnings.is_empty(), "{what}: {:#?}", check.warnings);
}

#[test]
fn shipped_catalogue_parses_and_covers_the_indicator_list() {
    let cat = catalogue();
    let expected = [
        "SDG_10_7_1",
        "SDG_10_7_2",
        "SDG_10_7_3",
        "SDG_10_7_4",
        "SDG_10_C_1",
        "SDG_17_3_2",
        "SDG_8_8_1",
        "SDG_8_8_2",
        "MIG_STOCK",
        "REMIT_INFLOW",
    ];
    let codes: Vec<&str> = cat.indicators.iter().map(|i| i.code.as_str()).collect();
    assert_eq!(codes, expected);

    // SDG series codes are those of indicators.csv, and empty where it has none.
    let csv = include_str!("../../../data/sample/indicators.csv");
    let mut rdr = csv::Reader::from_reader(csv.as_bytes());
    let mut rows = 0;
    for r in rdr.records() {
        let r = r.unwrap_or_default();
        let ind = cat.indicator(&r[0]);
        assert!(ind.is_some(), "{} missing", &r[0]);
        if let Some(ind) = ind {
            assert_eq!(ind.sdg_series, &r[1], "{}", &r[0]);
            assert_eq!(ind.name, &r[2], "{}", &r[0]);
            assert_eq!(ind.custodian, &r[4], "{}", &r[0]);
        }
        rows += 1;
    }
    assert_eq!(rows, expected.len());

    let c_1 = cat.indicator("SDG_10_C_1");
    assert!(c_1.is_some_and(|i| i.allows(Frequency::Quarterly) && i.allows(Frequency::Annual)));
    let areas = cat.dimension_codelist("REF_AREA");
    assert!(areas.is_some_and(|cl| cl.contains("WLD")
        && cl.contains("LMC_AGG")
        && cl.contains("LKA")
        && cl.is_aggregate("WLD")
        && !cl.is_aggregate("LKA")
        && !cl.official));
    for id in ["SEX", "AGE", "MIGRANT_STATUS"] {
        assert!(cat.dimension_codelist(id).is_some(), "{id}");
    }
    assert!(cat.codelists.get("CL_SEX").is_some_and(|cl| cl.official));
    assert!(
        cat.codelists
            .get("CL_MIGRANT_STATUS")
            .is_some_and(|cl| !cl.official)
    );
}

#[test]
fn every_sample_figure_passes_as_the_hub_and_as_its_rcp() {
    let cat = catalogue();
    let figures = figures();
    assert_eq!(figures.len(), 18);
    let areas = cat.dimension_codelist("REF_AREA");
    let rcps = rcps();
    let mut by_rcp = 0;
    for (n, fig) in figures.iter().enumerate() {
        let s = snap(&fig.indicator, vec![fig.observation.clone()]);
        let what = format!("figures.csv row {}", n + 2);
        // The hub may report every figure, aggregates included.
        assert_clean(&validate_snapshot(&cat, &s, &hub()), &what);
        let area = fig.observation.ref_area.as_str();
        if areas.is_some_and(|cl| cl.is_aggregate(area)) {
            // Aggregates are the hub's only.
            let check = validate_snapshot(&cat, &s, &colombo());
            assert_eq!(
                reasons_of(&check.errors),
                [(
                    "indicator_snapshot.observations[0].ref_area",
                    reasons::NOT_A_MEMBER_STATE
                )],
                "{what}"
            );
            continue;
        }
        // A state: every RCP of rcps.csv that lists it may report it. Where rcps.csv lists
        // no RCP for the state (SYR, TJK, TON: their processes' lists are not recorded), a
        // regional process with that state stands in.
        let mut members: Vec<Member> = rcps
            .iter()
            .filter(|(_, _, states)| states.iter().any(|s| s == area))
            .map(|(id, kind, states)| {
                let states: Vec<&str> = states.iter().map(String::as_str).collect();
                member(id, kind, &states)
            })
            .collect();
        if members.is_empty() {
            members.push(member("unlisted-rcp", "RCP", &[area]));
        } else {
            by_rcp += 1;
        }
        for m in &members {
            assert_clean(
                &validate_snapshot(&cat, &s, m),
                &format!("{what} as {}", m.id),
            );
        }
    }
    // USA, NIC, MEX (rcm) and IND, CHN, PHL, PAK (colombo; all but CHN also abu-dhabi).
    assert_eq!(by_rcp, 7);

    // Each indicator's figures together, as one hub snapshot.
    let indicators: BTreeSet<&str> = figures.iter().map(|f| f.indicator.as_str()).collect();
    for code in indicators {
        let all: Vec<Observation> = figures
            .iter()
            .filter(|f| f.indicator == code)
            .map(|f| f.observation.clone())
            .collect();
        assert_clean(&validate_snapshot(&cat, &snap(code, all), &hub()), code);
    }
}

#[test]
fn sample_node_files_pass() {
    // colombo/remittances.csv: REMIT_INFLOW 2024, bn current USD, UNIT_MULT 9, OBS_STATUS E.
    let cat = catalogue();
    let rows = [("IND", 129.0), ("CHN", 48.0), ("PHL", 40.0), ("PAK", 33.0)];
    let list = rows
        .iter()
        .map(|(a, v)| {
            let mut o = obs(a, "2024", *v, "current USD", 9);
            o.obs_status = "E".into();
            o
        })
        .collect();
    assert_clean(
        &validate_snapshot(&cat, &snap("REMIT_INFLOW", list), &colombo()),
        "colombo",
    );
}

/// Checks `s` as colombo and returns (errors, warnings) as (field, reason).
fn check(cat: &Catalogue, s: &IndicatorSnapshot) -> CatalogueCheck {
    validate_snapshot(cat, s, &colombo())
}

const O0: &str = "indicator_snapshot.observations[0]";

#[test]
fn unknown_indicator() {
    let cat = catalogue();
    let c = check(
        &cat,
        &snap("SDG_99_9_9", vec![obs("IND", "2024", 1.0, "persons", 0)]),
    );
    assert_eq!(
        reasons_of(&c.errors),
        [("indicator_snapshot.indicator", reasons::UNKNOWN_INDICATOR)]
    );
    assert!(c.errors[0].description.contains("REMIT_INFLOW"));
    let e = c.into_result().err();
    assert_eq!(e.map(|e| e.reason), Some(reasons::UNKNOWN_INDICATOR));
}

#[test]
fn unknown_dimension() {
    let cat = catalogue();
    // SDG_10_C_1 has no disaggregations; MIG_STOCK has SEX and AGE but no COLOUR.
    let mut o = obs("IND", "2024", 5.0, "percent", 0);
    o.dimensions = vec![("SEX".into(), "F".into())];
    let c = check(&cat, &snap("SDG_10_C_1", vec![o]));
    let field = format!("{O0}.dimensions[0].id");
    assert_eq!(
        reasons_of(&c.errors),
        [(field.as_str(), reasons::UNKNOWN_DIMENSION)]
    );

    let mut o = obs("IND", "2024", 5.0, "persons", 6);
    o.dimensions = vec![("SEX".into(), "F".into()), ("COLOUR".into(), "RED".into())];
    let c = check(&cat, &snap("MIG_STOCK", vec![o]));
    let field = format!("{O0}.dimensions[1].id");
    assert_eq!(
        reasons_of(&c.errors),
        [(field.as_str(), reasons::UNKNOWN_DIMENSION)]
    );
}

#[test]
fn code_not_in_codelist() {
    let cat = catalogue();
    let base = obs("IND", "2024", 5.0, "persons", 6);

    let mut o = base.clone();
    o.dimensions = vec![("SEX".into(), "X".into())];
    let c = check(&cat, &snap("MIG_STOCK", vec![o]));
    let field = format!("{O0}.dimensions[0].value");
    assert_eq!(
        reasons_of(&c.errors),
        [(field.as_str(), reasons::CODE_NOT_IN_CODELIST)]
    );

    let mut o = base.clone();
    o.ref_area = "XKX".into();
    let c = check(&cat, &snap("MIG_STOCK", vec![o]));
    let field = format!("{O0}.ref_area");
    assert_eq!(
        reasons_of(&c.errors),
        [(field.as_str(), reasons::CODE_NOT_IN_CODELIST)]
    );

    let mut o = base.clone();
    o.obs_status = "Z".into();
    o.conf_status = "X".into();
    let c = check(&cat, &snap("MIG_STOCK", vec![o]));
    let (f1, f2) = (format!("{O0}.obs_status"), format!("{O0}.conf_status"));
    assert_eq!(
        reasons_of(&c.errors),
        [
            (f1.as_str(), reasons::CODE_NOT_IN_CODELIST),
            (f2.as_str(), reasons::CODE_NOT_IN_CODELIST)
        ]
    );

    // Valid codes of each codelist pass.
    let mut o = base;
    o.dimensions = vec![("SEX".into(), "_T".into()), ("AGE".into(), "Y_GE65".into())];
    o.conf_status = "F".into();
    assert_clean(&check(&cat, &snap("MIG_STOCK", vec![o])), "valid codes");
}

#[test]
fn unit_mismatch() {
    let cat = catalogue();
    let c = check(
        &cat,
        &snap("REMIT_INFLOW", vec![obs("IND", "2024", 129.0, "USD", 9)]),
    );
    let field = format!("{O0}.unit_measure");
    assert_eq!(
        reasons_of(&c.errors),
        [(field.as_str(), reasons::UNIT_MISMATCH)]
    );

    let c = check(
        &cat,
        &snap(
            "REMIT_INFLOW",
            vec![obs("IND", "2024", 129.0, "current USD", 3)],
        ),
    );
    let field = format!("{O0}.unit_mult");
    assert_eq!(
        reasons_of(&c.errors),
        [(field.as_str(), reasons::UNIT_MISMATCH)]
    );

    let c = check(
        &cat,
        &snap("REMIT_INFLOW", vec![obs("IND", "2024", 129.0, "", 9)]),
    );
    let field = format!("{O0}.unit_measure");
    assert_eq!(
        reasons_of(&c.errors),
        [(field.as_str(), reasons::FIELD_REQUIRED)]
    );
}

#[test]
fn out_of_range_error_versus_warning() {
    let cat = catalogue();
    let field = format!("{O0}.obs_value");
    let hub = hub();

    // SDG_10_C_1: 0–100 percent is an error range, above 30 a warning.
    let c = validate_snapshot(
        &cat,
        &snap(
            "SDG_10_C_1",
            vec![obs("WLD", "2023-Q3", 150.0, "percent", 0)],
        ),
        &hub,
    );
    assert_eq!(
        reasons_of(&c.errors),
        [(field.as_str(), reasons::VALUE_OUT_OF_RANGE)]
    );
    assert!(c.warnings.is_empty(), "an error is not also a warning");
    assert!(c.errors[0].description.contains("an error"));

    let c = validate_snapshot(
        &cat,
        &snap(
            "SDG_10_C_1",
            vec![obs("WLD", "2023-Q3", 45.0, "percent", 0)],
        ),
        &hub,
    );
    assert!(c.is_ok());
    assert_eq!(
        reasons_of(&c.warnings),
        [(field.as_str(), reasons::VALUE_OUT_OF_RANGE)]
    );
    assert!(c.warnings[0].description.contains("a warning"));
    assert_eq!(c.clone().into_result().map(|w| w.len()), Ok(1));

    // SDG_17_3_2: warning above 60 percent of GDP.
    let c = check(
        &cat,
        &snap(
            "SDG_17_3_2",
            vec![obs("NPL", "2024", 75.0, "percent of GDP", 0)],
        ),
    );
    assert!(c.is_ok());
    assert_eq!(
        reasons_of(&c.warnings),
        [(field.as_str(), reasons::VALUE_OUT_OF_RANGE)]
    );

    // MIG_STOCK: negative persons is an error; the range applies after UNIT_MULT.
    let c = check(
        &cat,
        &snap("MIG_STOCK", vec![obs("IND", "2024", -1.0, "persons", 6)]),
    );
    assert_eq!(
        reasons_of(&c.errors),
        [(field.as_str(), reasons::VALUE_OUT_OF_RANGE)]
    );
    let c = check(
        &cat,
        &snap("MIG_STOCK", vec![obs("IND", "2024", 2000.0, "persons", 6)]),
    );
    assert!(c.is_ok());
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].description.contains("2000 × 10^6"));
    let c = check(
        &cat,
        &snap("MIG_STOCK", vec![obs("IND", "2024", 2000.0, "persons", 0)]),
    );
    assert_clean(&c, "2000 persons");

    // Unit-specific ranges (SDG_10_7_2): a score of 5 is refused, 5 percent is not.
    let c = check(
        &cat,
        &snap("SDG_10_7_2", vec![obs("IND", "2024", 5.0, "score", 0)]),
    );
    assert_eq!(
        reasons_of(&c.errors),
        [(field.as_str(), reasons::VALUE_OUT_OF_RANGE)]
    );
    let c = check(
        &cat,
        &snap(
            "SDG_10_7_2",
            vec![obs("IND", "2024", 5.0, "percent of countries", 0)],
        ),
    );
    assert_clean(&c, "5 percent of countries");
}

#[test]
fn mixed_and_disallowed_frequencies() {
    let cat = catalogue();
    let hub = hub();
    let s = snap(
        "SDG_10_C_1",
        vec![
            obs("WLD", "2023-Q3", 6.18, "percent", 0),
            obs("WLD", "2023", 6.2, "percent", 0),
            obs("WLD", "2023-Q4", 6.1, "percent", 0),
        ],
    );
    let c = validate_snapshot(&cat, &s, &hub);
    assert_eq!(
        reasons_of(&c.errors),
        [(
            "indicator_snapshot.observations[1].time_period",
            reasons::MIXED_FREQUENCIES
        )]
    );
    assert!(
        c.errors[0]
            .description
            .contains("observation 0 is quarterly")
    );

    // MIG_STOCK is annual only.
    let c = check(
        &cat,
        &snap("MIG_STOCK", vec![obs("IND", "2024-Q1", 1.0, "persons", 6)]),
    );
    let field = format!("{O0}.time_period");
    assert_eq!(
        reasons_of(&c.errors),
        [(field.as_str(), reasons::FREQUENCY_NOT_ALLOWED)]
    );

    let c = check(
        &cat,
        &snap("MIG_STOCK", vec![obs("IND", "2024-Q5", 1.0, "persons", 6)]),
    );
    assert_eq!(
        reasons_of(&c.errors),
        [(field.as_str(), reasons::INVALID_TIME_PERIOD)]
    );

    for (p, f) in [
        ("2024", Frequency::Annual),
        ("2024-S2", Frequency::HalfYearly),
        ("2024-Q3", Frequency::Quarterly),
        ("2024-05", Frequency::Monthly),
        ("2024-05-17", Frequency::Daily),
    ] {
        assert_eq!(Frequency::of_time_period(p), Some(f), "{p}");
    }
    assert_eq!(Frequency::of_time_period("2024-13"), None);
}

#[test]
fn missing_required_dimension() {
    let cat = catalogue();
    let mut o = obs("IND", "2024", 3.5, "per 100000 workers", 0);
    o.dimensions = vec![("SEX".into(), "F".into())];
    let c = check(&cat, &snap("SDG_8_8_1", vec![o.clone()]));
    let field = format!("{O0}.dimensions");
    assert_eq!(
        reasons_of(&c.errors),
        [(field.as_str(), reasons::MISSING_DIMENSION)]
    );
    assert!(c.errors[0].description.contains("INJURY_TYPE"));

    o.dimensions.push(("INJURY_TYPE".into(), "FATAL".into()));
    assert_clean(
        &check(&cat, &snap("SDG_8_8_1", vec![o])),
        "with INJURY_TYPE",
    );

    let c = check(
        &cat,
        &snap("MIG_STOCK", vec![obs("", "", 1.0, "persons", 6)]),
    );
    let (f1, f2) = (format!("{O0}.ref_area"), format!("{O0}.time_period"));
    assert_eq!(
        reasons_of(&c.errors),
        [
            (f1.as_str(), reasons::MISSING_DIMENSION),
            (f2.as_str(), reasons::MISSING_DIMENSION)
        ]
    );
}

#[test]
fn deletes_name_a_key_only() {
    let cat = catalogue();
    let mut o = obs("IND", "2024", 0.0, "", 0);
    o.action = ObservationAction::Delete;
    o.obs_value = None;
    assert_clean(
        &check(&cat, &snap("REMIT_INFLOW", vec![o.clone()])),
        "delete",
    );
    // The key itself is still checked.
    o.ref_area = "WLD".into();
    let c = check(&cat, &snap("REMIT_INFLOW", vec![o]));
    assert_eq!(c.errors.len(), 1);
    assert_eq!(c.errors[0].reason, reasons::NOT_A_MEMBER_STATE);
}

#[test]
fn violations_are_capped_but_counted() {
    let cat = catalogue();
    let list = (0..150)
        .map(|_| obs("IND", "2024", -5.0, "persons", 6))
        .collect();
    let c = check(&cat, &snap("MIG_STOCK", list));
    assert_eq!(c.total_errors, 150);
    assert_eq!(c.errors.len(), rcpfed_core::validate::MAX_VIOLATIONS);
    let e = c.into_result().err();
    assert!(e.is_some_and(
        |e| e.reason == reasons::VALUE_OUT_OF_RANGE && e.message.contains("and 149 more")
    ));
}

fn refused(text: &str) -> Vec<(String, &'static str)> {
    match Catalogue::from_toml(text) {
        Ok(_) => panic!("accepted"),
        Err(e) => e
            .violations
            .into_iter()
            .map(|v| (v.field, v.reason))
            .collect(),
    }
}

fn edit(from: &str, to: &str) -> String {
    assert!(CATALOGUE.contains(from), "{from}");
    CATALOGUE.replacen(from, to, 1)
}

#[test]
fn inconsistent_catalogues_are_refused() {
    // Unknown key: refused with its line.
    let e = Catalogue::from_toml(&edit(
        "official = false\niso3166",
        "colour = 1\nofficial = false\niso3166",
    ))
    .err();
    assert!(
        e.as_ref()
            .is_some_and(|e| e.reason == reasons::PAYLOAD_MALFORMED)
    );
    assert!(e.is_some_and(|e| e.message.contains("colour")));

    assert_eq!(
        refused(&edit(
            "{ id = \"INJURY_TYPE\", required = true }",
            "{ id = \"INJURY_TYPE\", required = false, default = \"_T\" }"
        )),
        [(
            "indicators[6].dimensions[0].default".to_string(),
            reasons::CODE_NOT_IN_CODELIST
        )]
    );
    assert_eq!(
        refused(&edit("{ id = \"POLICY_DOMAIN\"", "{ id = \"RELIGION\"")),
        [(
            "indicators[1].dimensions[0].id".to_string(),
            reasons::UNKNOWN_DIMENSION
        )]
    );
    assert_eq!(
        refused(&edit("{ unit = \"countries\"", "{ unit = \"nations\"")),
        [(
            "indicators[1].ranges[2].unit".to_string(),
            reasons::UNIT_MISMATCH
        )]
    );
    assert_eq!(
        refused(&edit("code = \"SDG_8_8_2\"", "code = \"SDG_8_8_1\"")),
        [("indicators[7].code".to_string(), reasons::DUPLICATE_KEY)]
    );
    assert_eq!(
        refused(&edit(
            "aggregates = [\"WLD\", \"LMC_AGG\"]",
            "aggregates = [\"WLD\", \"EUU\"]"
        )),
        [(
            "codelists.CL_AREA.aggregates[1]".to_string(),
            reasons::CODE_NOT_IN_CODELIST
        )]
    );
    assert_eq!(
        refused(&edit(
            "frequencies = [\"A\", \"Q\"]",
            "frequencies = [\"A\", \"W\"]"
        )),
        [(
            "indicators[4].frequencies[1]".to_string(),
            reasons::FREQUENCY_NOT_ALLOWED
        )]
    );
    assert_eq!(
        refused(&edit(
            "{ min = 0.0, max = 100.0, severity = \"error\" },   # judgement: a percentage",
            "{ min = 100.0, max = 0.0, severity = \"error\" },   # judgement: a percentage"
        )),
        [(
            "indicators[4].ranges[0]".to_string(),
            reasons::VALUE_OUT_OF_RANGE
        )]
    );
    assert_eq!(
        refused(&edit("codelist = \"CL_AGE\"", "codelist = \"CL_AGES\"")),
        [(
            "dimensions.AGE.codelist".to_string(),
            reasons::INVALID_DIMENSION
        )]
    );
}

//! The shipped indicator catalogue parses, accepts every real figure in the sample data, and
//! refuses bad input with specific, row-level reasons; it survives the trip through a signed
//! catalogue document, and the chain of signed versions refuses forgeries and gaps.

use prost::Message as _;
use rcpfed_core::Violation;
use rcpfed_core::catalogue::{
    CATALOGUE_PAYLOAD_TYPE, Catalogue, CatalogueCheck, Frequency, SignedCatalogue,
    embedded_catalogue_toml, same_content, sign_catalogue, validate_observations_against,
    validate_snapshot, verify_catalogue,
};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::members::{Member, Membership};
use rcpfed_core::rejection::reasons;
use rcpfed_core::statement::{IndicatorSnapshot, Observation, ObservationAction};
use rcpfed_core::validate::{ValidationContext, validate_observations};
use rcpfed_core::{Digest, Rejection, SignedEnvelope};
use rcpfed_proto::v1 as pb;
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

fn context<'a>(member: &'a Member, aggregates: &'a [String]) -> ValidationContext<'a> {
    ValidationContext {
        federation_id: "rcp-federation",
        member,
        now: time::OffsetDateTime::now_utc(),
        aggregates,
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
    let mut aggregates = 0;
    for (n, fig) in figures.iter().enumerate() {
        let s = snap(&fig.indicator, vec![fig.observation.clone()]);
        let what = format!("figures.csv row {}", n + 2);
        // The hub may report every figure, aggregates included.
        assert_clean(&validate_snapshot(&cat, &s, &hub()), &what);
        let area = fig.observation.ref_area.as_str();
        if areas.is_some_and(|cl| cl.is_aggregate(area)) {
            // Aggregates are custodian figures any publisher may report: both checks accept
            // them from a regional process once the context names the catalogue's aggregates.
            aggregates += 1;
            let rcp = colombo();
            assert_clean(&validate_snapshot(&cat, &s, &rcp), &what);
            let ctx = context(&rcp, cat.area_aggregates());
            let obs = std::slice::from_ref(&fig.observation);
            assert_eq!(
                validate_observations(&fig.indicator, obs, &ctx),
                Ok(()),
                "{what}"
            );
            let without = context(&rcp, &[]);
            let e = validate_observations(&fig.indicator, obs, &without).err();
            assert_eq!(
                e.map(|e| e.reason),
                Some(reasons::INVALID_COUNTRY_CODE),
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
    assert!(aggregates > 0, "figures.csv has aggregate rows");

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
    o.ref_area = "XKX".into();
    let c = check(&cat, &snap("REMIT_INFLOW", vec![o]));
    assert_eq!(c.errors.len(), 1);
    assert_eq!(c.errors[0].reason, reasons::CODE_NOT_IN_CODELIST);
}

#[test]
fn violations_are_capped_but_counted() {
    let cat = catalogue();
    let list = (0..150)
        .map(|_| obs("IND", "2024", -5.0, "persons", 6))
        .collect();
    let c = check(&cat, &snap("MIG_STOCK", list));
    assert_eq!(c.total_errors, 150);
    assert_eq!(c.errors.len(), rcpfed_core::limits::MAX_VIOLATIONS);
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

// ----- The catalogue as a signed document -----

const FED: &str = "rcp-federation";

fn issued() -> time::OffsetDateTime {
    time::macros::datetime!(2025-01-02 03:04:05.678 UTC)
}

#[test]
fn toml_document_catalogue_round_trip() {
    let cat = catalogue();
    assert_eq!(embedded_catalogue_toml(), CATALOGUE);
    let doc = cat.to_document(FED, 1, issued(), None);
    assert_eq!(doc.version, 1);
    assert!(doc.previous_digest.is_empty());
    // Codes come out sorted by id, as the protocol says.
    for cl in &doc.codelists {
        let ids: Vec<&str> = cl.codes.iter().map(|c| c.id.as_str()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids, sorted, "{}", cl.id);
    }
    let back = Catalogue::from_document(&doc);
    assert_eq!(back.as_ref(), Ok(&cat));
    assert!(back.is_ok_and(|b| same_content(&b, &cat)));

    // Through the bytes, and back to the same document.
    let bytes = doc.encode_to_vec();
    let decoded = pb::CatalogueDocument::decode(bytes.as_slice()).ok();
    assert_eq!(decoded.as_ref(), Some(&doc));
    let again = Catalogue::from_document(&doc).map(|c| c.to_document(FED, 1, issued(), None));
    assert_eq!(again, Ok(doc));

    // A changed catalogue is not the same content.
    let mut other = cat.clone();
    other.catalogue.version = "1.0.1".into();
    assert!(!same_content(&cat, &other));
}

fn doc_refused(doc: &pb::CatalogueDocument) -> Vec<(String, &'static str)> {
    match Catalogue::from_document(doc) {
        Ok(_) => panic!("accepted"),
        Err(e) => {
            assert_eq!(e.reason, reasons::CATALOGUE_INVALID, "{e:?}");
            e.violations
                .into_iter()
                .map(|v| (v.field, v.reason))
                .collect()
        }
    }
}

#[test]
fn inconsistent_documents_are_refused() {
    let doc = catalogue().to_document(FED, 1, issued(), None);

    // The same consistency rules as the TOML.
    let mut d = doc.clone();
    d.indicators[3].units.clear();
    assert_eq!(
        doc_refused(&d),
        [("indicators[3].units".to_string(), reasons::FIELD_REQUIRED)]
    );
    let mut d = doc.clone();
    d.indicators[7].code = d.indicators[6].code.clone();
    assert_eq!(
        doc_refused(&d),
        [("indicators[7].code".to_string(), reasons::DUPLICATE_KEY)]
    );

    // What TOML cannot express: repeats, order, attributes, severities.
    let mut d = doc.clone();
    let first = d.codelists[0].codes[0].clone();
    d.codelists[0].codes.push(first);
    let fields = doc_refused(&d);
    assert_eq!(fields.len(), 1);
    assert!(fields[0].0.starts_with("codelists[0].codes["), "{fields:?}");
    assert_eq!(fields[0].1, reasons::DUPLICATE_KEY);

    let mut d = doc.clone();
    d.codelists[1].codes.reverse();
    assert!(
        doc_refused(&d)
            .iter()
            .all(|(f, r)| f.starts_with("codelists[1].codes[") && *r == reasons::CATALOGUE_INVALID)
    );

    let mut d = doc.clone();
    let dim = d.dimensions[0].clone();
    d.dimensions.push(dim);
    let n = d.dimensions.len() - 1;
    assert_eq!(
        doc_refused(&d),
        [(format!("dimensions[{n}].id"), reasons::DUPLICATE_KEY)]
    );

    let mut d = doc.clone();
    d.attributes.retain(|a| a.id != "OBS_STATUS");
    assert_eq!(
        doc_refused(&d),
        [("attributes".to_string(), reasons::FIELD_REQUIRED)]
    );

    let mut d = doc.clone();
    d.indicators[0].ranges[0].severity = pb::RangeSeverity::Unspecified as i32;
    assert_eq!(
        doc_refused(&d),
        [(
            "indicators[0].ranges[0].severity".to_string(),
            reasons::FIELD_REQUIRED
        )]
    );

    // The TOML path reports inconsistencies with the same reason.
    let e = Catalogue::from_toml(&edit("codelist = \"CL_AGE\"", "codelist = \"CL_AGES\"")).err();
    assert_eq!(e.map(|e| e.reason), Some(reasons::CATALOGUE_INVALID));
}

fn hub_key() -> SecretKey {
    SecretKey::from_seed(&[7; 32])
}

fn reason(r: Result<SignedCatalogue, Rejection>) -> Option<&'static str> {
    r.err().map(|e| e.reason)
}

/// Signs a document as the hub would, whatever it says (the tests forge bad ones).
fn sign_document(doc: &pb::CatalogueDocument, key: &SecretKey) -> SignedEnvelope {
    SignedEnvelope::sign(CATALOGUE_PAYLOAD_TYPE, doc.encode_to_vec(), key)
}

#[test]
fn signed_versions_chain_and_refuse_forgeries() {
    let cat = catalogue();
    let key = hub_key();
    let keys = [key.verify_key().clone()];

    let doc1 = cat.to_document(FED, 1, issued(), None);
    let env1 = sign_catalogue(&cat, FED, 1, issued(), None, &key);
    // What the hub signs is the encoding of its document, nothing else.
    assert_eq!(env1, sign_document(&doc1, &key));
    assert_eq!(env1.payload_type, CATALOGUE_PAYLOAD_TYPE);
    let v1 = match verify_catalogue(&env1, &keys, FED, None) {
        Ok(v) => v,
        Err(e) => panic!("version 1 refused: {e:?}"),
    };
    assert_eq!(v1.version, 1);
    assert_eq!(v1.digest, env1.digest());
    assert_eq!(v1.issued_at, issued());
    assert_eq!(v1.previous_digest, None);
    assert_eq!(*v1.catalogue, cat);
    assert_eq!(v1.envelope, env1);

    let mut changed = cat.clone();
    changed.catalogue.version = "1.1.0".into();
    let doc2 = changed.to_document(FED, 2, issued(), Some(v1.digest));
    let env2 = sign_document(&doc2, &key);
    let v2 = verify_catalogue(&env2, &keys, FED, Some((1, v1.digest)));
    assert_eq!(v2.as_ref().map(|v| v.version), Ok(2));
    assert_eq!(v2.as_ref().map(|v| v.previous_digest), Ok(Some(v1.digest)));
    assert!(v2.is_ok_and(|v| *v.catalogue == changed));

    // Tampered payload: the signature no longer verifies (checked before decoding).
    let mut tampered = env1.clone();
    let last = tampered.payload.len() - 1;
    tampered.payload[last] ^= 1;
    assert_eq!(
        reason(verify_catalogue(&tampered, &keys, FED, None)),
        Some(reasons::BAD_SIGNATURE)
    );
    // Garbage signed by the hub still fails, after the signature, as an invalid catalogue.
    let garbage = SignedEnvelope::sign(CATALOGUE_PAYLOAD_TYPE, vec![0xff; 8], &key);
    assert_eq!(
        reason(verify_catalogue(&garbage, &keys, FED, None)),
        Some(reasons::CATALOGUE_INVALID)
    );

    // Signed by a key that is not the hub's.
    let stranger = sign_document(&doc1, &SecretKey::from_seed(&[8; 32]));
    assert_eq!(
        reason(verify_catalogue(&stranger, &keys, FED, None)),
        Some(reasons::UNKNOWN_KEY_ID)
    );
    let mut unsigned = env1.clone();
    unsigned.signatures.clear();
    assert_eq!(
        reason(verify_catalogue(&unsigned, &keys, FED, None)),
        Some(reasons::MISSING_SIGNATURE)
    );

    // Another payload type, even correctly signed.
    let retyped = SignedEnvelope::sign(
        rcpfed_core::envelope::STATEMENT_PAYLOAD_TYPE,
        env1.payload.clone(),
        &key,
    );
    assert_eq!(
        reason(verify_catalogue(&retyped, &keys, FED, None)),
        Some(reasons::UNKNOWN_PAYLOAD_TYPE)
    );

    // Wrong federation.
    let e = verify_catalogue(&env1, &keys, "other-federation", None).err();
    assert!(
        e.as_ref()
            .is_some_and(|e| e.message.contains("other-federation"))
    );
    assert_eq!(e.map(|e| e.reason), Some(reasons::CATALOGUE_INVALID));

    // Version gap, rollback, and a chain that does not start at 1.
    let doc3 = changed.to_document(FED, 3, issued(), Some(v1.digest));
    let env3 = sign_document(&doc3, &key);
    let e = verify_catalogue(&env3, &keys, FED, Some((1, v1.digest))).err();
    assert!(e.as_ref().is_some_and(|e| e.message.contains("skips")));
    assert_eq!(e.map(|e| e.reason), Some(reasons::CATALOGUE_INVALID));
    assert_eq!(
        reason(verify_catalogue(&env1, &keys, FED, Some((1, v1.digest)))),
        Some(reasons::CATALOGUE_INVALID)
    );
    assert_eq!(
        reason(verify_catalogue(&env2, &keys, FED, None)),
        Some(reasons::CATALOGUE_INVALID)
    );

    // Wrong previous digest: a fork, or version 1 claiming a predecessor.
    let fork = changed.to_document(FED, 2, issued(), Some(Digest::of(b"another version 1")));
    let fork = sign_document(&fork, &key);
    let e = verify_catalogue(&fork, &keys, FED, Some((1, v1.digest))).err();
    assert!(
        e.as_ref()
            .is_some_and(|e| e.message.contains("previous_digest"))
    );
    assert_eq!(e.map(|e| e.reason), Some(reasons::CATALOGUE_INVALID));
    let claims = sign_document(&cat.to_document(FED, 1, issued(), Some(v1.digest)), &key);
    assert_eq!(
        reason(verify_catalogue(&claims, &keys, FED, None)),
        Some(reasons::CATALOGUE_INVALID)
    );

    // issued_at is required.
    let mut no_time = doc1.clone();
    no_time.issued_at = None;
    let no_time = sign_document(&no_time, &key);
    assert_eq!(
        reason(verify_catalogue(&no_time, &keys, FED, None)),
        Some(reasons::CATALOGUE_INVALID)
    );

    // Inconsistent content, properly signed, is refused with its field.
    let mut bad = doc1.clone();
    bad.indicators[3].units.clear();
    let e = verify_catalogue(&sign_document(&bad, &key), &keys, FED, None).err();
    assert_eq!(
        e.as_ref().map(|e| e.reason),
        Some(reasons::CATALOGUE_INVALID)
    );
    assert!(e.is_some_and(|e| {
        e.violations
            .iter()
            .any(|v| v.field == "indicators[3].units")
    }));
}

#[test]
fn many_observations_are_checked_row_by_row() {
    let cat = catalogue();
    let n = 100_000;
    let mut list: Vec<Observation> = (0..n)
        .map(|i| {
            let mut o = obs("IND", "2024", (i % 1000) as f64, "persons", 0);
            o.dimensions = vec![("SEX".into(), ["F", "M", "_T"][i % 3].into())];
            o
        })
        .collect();
    let c = validate_observations_against(&cat, "MIG_STOCK", &list);
    assert_clean(&c, "100k clean rows");

    // Problems far into the list are named by their position.
    list[54_321].unit_measure = "people".into();
    list[99_999].dimensions[0].1 = "X".into();
    list[70_000].obs_value = Some(2.0e9); // above the warning bound
    let c = validate_observations_against(&cat, "MIG_STOCK", &list);
    assert_eq!(
        reasons_of(&c.errors),
        [
            (
                "indicator_snapshot.observations[54321].unit_measure",
                reasons::UNIT_MISMATCH
            ),
            (
                "indicator_snapshot.observations[99999].dimensions[0].value",
                reasons::CODE_NOT_IN_CODELIST
            ),
        ]
    );
    assert_eq!(
        reasons_of(&c.warnings),
        [(
            "indicator_snapshot.observations[70000].obs_value",
            reasons::VALUE_OUT_OF_RANGE
        )]
    );
    assert_eq!((c.total_errors, c.total_warnings), (2, 1));

    // The snapshot form gives the same answer for the same observations.
    let s = snap("MIG_STOCK", list);
    assert_eq!(validate_snapshot(&cat, &s, &colombo()), c);

    // Aggregates pass for any publisher, states and aggregates mixed.
    let mixed = vec![
        obs("WLD", "2024", 304.0, "persons", 6),
        obs("LKA", "2024", 1.0, "persons", 6),
        obs("LMC_AGG", "2024", 200.0, "persons", 6),
    ];
    assert_clean(
        &validate_observations_against(&cat, "MIG_STOCK", &mixed),
        "mixed",
    );
}

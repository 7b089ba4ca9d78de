//! SDMX-CSV 2.0 files read through the importer's CSV engine with the SDMX-CSV rules of
//! rcpfed-sdmx: whole files, streamed batches and the errors that name line and column.

#![allow(clippy::unwrap_used)]

use rcpfed_import::{
    CsvFormat, ImportError, IndicatorCsvBatches, is_sdmx_csv, parse_any_indicator_csv,
    parse_indicator_csv, parse_sdmx_csv,
};
use rcpfed_proto::v1::ObservationAction;

const GOOD: &str = "\
STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,SEX,AGE,OBS_VALUE,UNIT_MEASURE,UNIT_MULT,OBS_STATUS,CONF_STATUS,COMMENT,SOURCE
dataflow,GFMD:MIG_STOCK(1.0.0),I,LKA,2020,F,_T,1.5,persons,6,A,F,\"mid-year, revised\",UN DESA
dataflow,GFMD:REMIT_INFLOW(1.0.0),A,IND,2024,,,129,current USD,9,E,,,World Bank/KNOMAD
dataflow,GFMD:MIG_STOCK(1.0.0),R,LKA,2021,M,,2.5,persons,6,E,,,UN DESA

dataflow,GFMD:MIG_STOCK(1.0.0),D,LKA,2019,M,Y_GE65,,,,,,,
dataflow,GFMD:MIG_STOCK,D,LKA,2018,M,,-,-,-,-,,removed,
";

/// The shape of rcpfed's own SDMX-CSV export (rcpfed-sdmx): attribute ids
/// COMMENT_OBS and SOURCE_DETAIL, then provenance columns.
const EXPORTED: &str = "\
STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,SEX,TIME_PERIOD,OBS_VALUE,OBS_STATUS,CONF_STATUS,UNIT_MEASURE,UNIT_MULT,COMMENT_OBS,SOURCE_DETAIL,PROVIDER,STATEMENT_DIGEST,FEED_INDEX,POSITION,ACCEPTED_AT,SUPERSEDED_AT\r
dataflow,GFMD:MIG_STOCK(1.0.0),I,LKA,F,2023,12.5,A,,persons,0,\"first, estimate\",UN DESA,colombo,9f86d081884c7d65,5,0,2024-05-01T12:00:05Z,\r
";

#[test]
fn an_exported_file_imports_again() {
    let docs = parse_sdmx_csv(EXPORTED, "colombo", "again").unwrap();
    let o = &docs[0].snapshot.observations;
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].footnote, "first, estimate");
    assert_eq!(o[0].source, "UN DESA");
    let dims: Vec<&str> = o[0].dimensions.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(dims, ["SEX"], "provenance columns are not dimensions");
}

#[test]
fn good_file_one_snapshot_per_structure_id() {
    let docs = parse_sdmx_csv(GOOD, "colombo", "upload").unwrap();
    assert_eq!(docs.len(), 2);
    let (mig, remit) = (&docs[0], &docs[1]);
    assert_eq!(mig.document, "regions/colombo/indicators/mig_stock/upload");
    assert_eq!(remit.snapshot.indicator, "REMIT_INFLOW");
    assert_eq!(mig.lines, [2, 4, 6, 7]);
    assert_eq!(remit.lines, [3]);
    let o = &mig.snapshot.observations;
    assert_eq!(o[0].ref_area, "LKA");
    assert_eq!(o[0].time_period, "2020");
    assert_eq!(o[0].obs_value, Some(1.5));
    assert_eq!(o[0].unit_measure, "persons");
    assert_eq!(o[0].unit_mult, 6);
    assert_eq!(
        (o[0].obs_status.as_str(), o[0].conf_status.as_str()),
        ("A", "F")
    );
    assert_eq!(o[0].footnote, "mid-year, revised");
    assert_eq!(o[0].source, "UN DESA");
    let dims: Vec<(&str, &str)> = o[0]
        .dimensions
        .iter()
        .map(|d| (d.id.as_str(), d.value.as_str()))
        .collect();
    assert_eq!(dims, [("SEX", "F"), ("AGE", "_T")]);
    assert_eq!(o[1].dimensions.len(), 1);
    assert!(remit.snapshot.observations[0].dimensions.is_empty());
    assert_eq!(o[3].obs_value, None);
    assert_eq!(o[3].dimensions.len(), 1);
    // "-" marks on a delete row carry nothing; free text is kept.
    assert_eq!(o[3].unit_measure, "");
    assert_eq!(o[3].unit_mult, 0);
    assert_eq!(o[3].obs_status, "");
    assert_eq!(o[3].footnote, "removed");
    assert_eq!(
        mig.columns.get("FOOTNOTE").map(String::as_str),
        Some("COMMENT")
    );
    // The dispatcher reads it the same way.
    assert_eq!(
        parse_any_indicator_csv(GOOD, "colombo", "upload").unwrap(),
        docs
    );
}

#[test]
fn action_mapping() {
    let docs = parse_sdmx_csv(GOOD, "c", "n").unwrap();
    let actions: Vec<i32> = docs[0]
        .snapshot
        .observations
        .iter()
        .map(|o| o.action)
        .collect();
    use ObservationAction::{Append, Delete, Replace};
    assert_eq!(
        actions,
        [Append as i32, Replace as i32, Delete as i32, Delete as i32]
    );
    assert_eq!(docs[1].snapshot.observations[0].action, Append as i32);
    // No ACTION column: Information, read as append.
    let text = "STRUCTURE,STRUCTURE_ID,REF_AREA,TIME_PERIOD,OBS_VALUE\n\
                dataflow,GFMD:MIG_STOCK(1.0.0),LKA,2020,1\n";
    let docs = parse_sdmx_csv(text, "c", "n").unwrap();
    assert_eq!(docs[0].snapshot.observations[0].action, Append as i32);
    let text = "STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,OBS_VALUE\n\
                dataflow,GFMD:MIG_STOCK(1.0.0),M,LKA,2020,1\n";
    let err = parse_sdmx_csv(text, "c", "n").unwrap_err();
    assert_eq!((err.line, err.column.as_deref()), (Some(2), Some("ACTION")));
    assert!(err.message.contains("I (information"), "{err}");
    // A value on a delete row, and no value on an append row.
    let text = "STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,OBS_VALUE\n\
                dataflow,GFMD:MIG_STOCK(1.0.0),D,LKA,2020,3\n";
    let err = parse_sdmx_csv(text, "c", "n").unwrap_err();
    assert_eq!(err.column.as_deref(), Some("OBS_VALUE"), "{err}");
    assert!(err.message.contains("D (delete)"), "{err}");
    let text = "STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,OBS_VALUE\n\
                dataflow,GFMD:MIG_STOCK(1.0.0),R,LKA,2020,\n";
    let err = parse_sdmx_csv(text, "c", "n").unwrap_err();
    assert!(err.message.contains("partial keys"), "{err}");
    // Wildcard deletes.
    let text = "STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,OBS_VALUE\n\
                dataflow,GFMD:MIG_STOCK(1.0.0),D,LKA,,\n";
    let err = parse_sdmx_csv(text, "c", "n").unwrap_err();
    assert_eq!(err.column.as_deref(), Some("TIME_PERIOD"), "{err}");
    assert!(err.message.contains("wildcard"), "{err}");
}

fn header_error(header: &str) -> ImportError {
    let text = format!("{header}\ndataflow,GFMD:MIG_STOCK(1.0.0),LKA,2020,1\n");
    parse_sdmx_csv(&text, "c", "n").unwrap_err()
}

#[test]
fn malformed_headers_name_the_column() {
    for (header, column, words) in [
        (
            "STRUCTURE_ID,REF_AREA,TIME_PERIOD,OBS_VALUE",
            "STRUCTURE_ID",
            "starts with the column STRUCTURE",
        ),
        (
            "DATAFLOW,STRUCTURE_ID,REF_AREA,TIME_PERIOD,OBS_VALUE",
            "DATAFLOW",
            "starts with the column STRUCTURE",
        ),
        (
            "STRUCTURE,REF_AREA,TIME_PERIOD,OBS_VALUE",
            "STRUCTURE_ID",
            "no STRUCTURE_ID column",
        ),
        (
            "STRUCTURE,STRUCTURE_ID,TIME_PERIOD,OBS_VALUE",
            "REF_AREA",
            "no REF_AREA column",
        ),
        (
            "STRUCTURE,STRUCTURE_ID,REF_AREA,OBS_VALUE",
            "TIME_PERIOD",
            "no TIME_PERIOD column",
        ),
        (
            "STRUCTURE,STRUCTURE_ID,REF_AREA,TIME_PERIOD",
            "OBS_VALUE",
            "no OBS_VALUE column",
        ),
        (
            "STRUCTURE,STRUCTURE_ID,REF_AREA",
            "TIME_PERIOD",
            "TIME_PERIOD, OBS_VALUE columns",
        ),
        (
            "STRUCTURE,STRUCTURE_ID,REF_AREA,TIME_PERIOD,OBS_VALUE,REF_AREA",
            "REF_AREA",
            "REF_AREA is given twice (columns 3 and 6)",
        ),
        (
            "STRUCTURE,STRUCTURE_ID,REF_AREA,TIME_PERIOD,OBS_VALUE,COMMENT,FOOTNOTE",
            "FOOTNOTE",
            "FOOTNOTE is given twice",
        ),
        (
            "STRUCTURE,STRUCTURE_ID,REF_AREA,TIME_PERIOD,OBS_VALUE,STRUCTURE",
            "STRUCTURE",
            "given twice",
        ),
        (
            "STRUCTURE,STRUCTURE_ID,REF_AREA,TIME_PERIOD,OBS_VALUE,Reference area",
            "Reference area",
            "unknown column",
        ),
        (
            "STRUCTURE,STRUCTURE_ID,INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE",
            "INDICATOR",
            "names the indicator in STRUCTURE_ID",
        ),
        (
            "STRUCTURE,STRUCTURE_ID,REF_AREA,TIME_PERIOD,OBS_VALUE,OBS_STATUS[]",
            "OBS_STATUS[]",
            "multi-valued",
        ),
    ] {
        let err = header_error(header);
        assert_eq!(err.line, Some(1), "{header}: {err}");
        assert_eq!(err.column.as_deref(), Some(column), "{header}: {err}");
        assert!(err.message.contains(words), "{header}: {err}");
    }
    let err = header_error("STRUCTURE,STRUCTURE_ID,,REF_AREA,TIME_PERIOD,OBS_VALUE");
    assert!(err.message.contains("header column 3 is empty"), "{err}");
    let err = parse_sdmx_csv("", "c", "n").unwrap_err();
    assert!(err.message.contains("empty"), "{err}");
}

#[test]
fn bad_structure_values_name_the_cell() {
    for (structure, words) in [
        ("datastructure", "\"datastructure\" rows are not accepted"),
        ("dataconstraint", "not accepted"),
        ("dataprovision", "not accepted"),
        ("", "is empty"),
        ("flow", "not an SDMX-CSV structure type"),
    ] {
        let text = format!(
            "STRUCTURE,STRUCTURE_ID,REF_AREA,TIME_PERIOD,OBS_VALUE\n\
             dataflow,GFMD:MIG_STOCK(1.0.0),LKA,2021,1\n\
             {structure},GFMD:MIG_STOCK(1.0.0),LKA,2020,1\n"
        );
        let err = parse_sdmx_csv(&text, "c", "n").unwrap_err();
        assert_eq!(
            (err.line, err.column.as_deref()),
            (Some(3), Some("STRUCTURE"))
        );
        assert!(err.message.contains(words), "{structure:?}: {err}");
    }
    for id in [
        "",
        "MIG_STOCK",
        ":MIG_STOCK(1.0)",
        "GFMD:",
        "GFMD:MIG_STOCK(1.0",
        "GFMD:MIG_STOCK()",
        "GFMD:MIG_STOCK)",
        "GFMD:X:Y(1.0)",
    ] {
        let text = format!(
            "STRUCTURE,STRUCTURE_ID,REF_AREA,TIME_PERIOD,OBS_VALUE\n\
             dataflow,\"{id}\",LKA,2020,1\n"
        );
        let err = parse_sdmx_csv(&text, "c", "n").unwrap_err();
        assert_eq!(
            (err.line, err.column.as_deref()),
            (Some(2), Some("STRUCTURE_ID")),
            "{id:?}"
        );
        assert!(err.message.contains("AGENCY:ID(VERSION)"), "{id:?}: {err}");
    }
}

#[test]
fn label_forms_separators_and_decimal_comma() {
    // labels=both, semicolon separator, sub-field separator, decimal comma.
    let text = "\u{feff}STRUCTURE[|];STRUCTURE_ID;ACTION;SERIES_KEY;OBS_KEY;REF_AREA: Reference area;\
TIME_PERIOD: Time period;FREQ: Frequency;SEX: Sex;OBS_VALUE: Observation value;OBS_STATUS: Observation status;COMMENT[en|fr]\n\
dataflow;GFMD:MIG_STOCK(1.0.0): International migrant stock;I;A.LKA;A.LKA.2020;LKA: Sri Lanka;2020: 2020;A: Annual;F: Female;12,4;E: Estimated value;en:Note: two parts\n";
    assert!(is_sdmx_csv(text));
    let docs = parse_any_indicator_csv(text, "c", "n").unwrap();
    let o = &docs[0].snapshot.observations[0];
    assert_eq!(docs[0].snapshot.indicator, "MIG_STOCK");
    assert_eq!(o.ref_area, "LKA");
    assert_eq!(o.time_period, "2020");
    assert_eq!(o.dimensions[0].id, "SEX");
    assert_eq!(o.dimensions[0].value, "F");
    assert_eq!(o.obs_value, Some(12.4));
    assert_eq!(o.obs_status, "E");
    assert_eq!(o.footnote, "en:Note: two parts");
    assert_eq!(
        docs[0].columns.get("REF_AREA").map(String::as_str),
        Some("REF_AREA: Reference area")
    );
    // Errors name the column as written.
    let bad = text.replace("12,4", "1,2,3");
    let err = parse_sdmx_csv(&bad, "c", "n").unwrap_err();
    assert_eq!(err.column.as_deref(), Some("OBS_VALUE: Observation value"));
    // A comma-separated file does not read "12,4" as a number (it would be two fields).
    let text = "STRUCTURE,STRUCTURE_ID,REF_AREA,TIME_PERIOD,OBS_VALUE\n\
                dataflow,GFMD:MIG_STOCK(1.0.0),LKA,2020,\"12,4\"\n";
    let err = parse_sdmx_csv(text, "c", "n").unwrap_err();
    assert!(err.message.contains("not a number"), "{err}");
    // Tab-separated, quoted header terms.
    let text = "\"STRUCTURE\"\t\"STRUCTURE_ID\"\tREF_AREA\tTIME_PERIOD\tOBS_VALUE\n\
                dataflow\tGFMD:MIG_STOCK(1.0.0)\tLKA\t2020\t7\n";
    assert!(is_sdmx_csv(text));
    let docs = parse_any_indicator_csv(text, "c", "n").unwrap();
    assert_eq!(docs[0].snapshot.observations[0].obs_value, Some(7.0));
}

#[test]
fn labels_name_columns_are_ignored() {
    let text = "STRUCTURE,STRUCTURE_ID,STRUCTURE_NAME,ACTION,REF_AREA,Reference area,\
TIME_PERIOD,Time period,SEX,Sex,OBS_VALUE,Observation value,UNIT_MEASURE,Unit\n\
dataflow,GFMD:MIG_STOCK(1.0.0),International migrant stock,R,LKA,Sri Lanka,2020,2020,M,Male,5,,persons,Persons\n";
    let docs = parse_sdmx_csv(text, "c", "n").unwrap();
    let o = &docs[0].snapshot.observations[0];
    assert_eq!(
        (o.ref_area.as_str(), o.time_period.as_str(), o.obs_value),
        ("LKA", "2020", Some(5.0))
    );
    assert_eq!(o.dimensions.len(), 1);
    assert_eq!(o.unit_measure, "persons");
    assert_eq!(o.action, ObservationAction::Replace as i32);
}

#[test]
fn freq_is_checked_against_the_period() {
    let text = "STRUCTURE,STRUCTURE_ID,FREQ,REF_AREA,TIME_PERIOD,OBS_VALUE\n\
                dataflow,GFMD:MIG_STOCK(1.0.0),A,LKA,2020,1\n\
                dataflow,GFMD:MIG_STOCK(1.0.0),M,LKA,2020-05,1\n\
                dataflow,GFMD:MIG_STOCK(1.0.0),A,LKA,2020-01-01,1\n";
    let err = parse_sdmx_csv(text, "c", "n").unwrap_err();
    assert_eq!((err.line, err.column.as_deref()), (Some(4), Some("FREQ")));
    assert!(err.message.contains("daily"), "{err}");
    let docs = parse_sdmx_csv(
        &text.replace(",A,LKA,2020-01-01", ",D,LKA,2020-01-01"),
        "c",
        "n",
    )
    .unwrap();
    assert!(
        docs[0]
            .snapshot
            .observations
            .iter()
            .all(|o| o.dimensions.is_empty())
    );
}

#[test]
fn line_mapping_and_locate() {
    let text = "\r\nSTRUCTURE,STRUCTURE_ID,ACTION,REF_AREA: Reference area,TIME_PERIOD,SEX,OBS_VALUE,COMMENT\r\n\
dataflow,GFMD:MIG_STOCK(1.0.0),I,LKA,2020,F,1,\"multi\r\nline\"\r\n\r\n\
dataflow,GFMD:MIG_STOCK(1.0.0),I,WLD,2020,F,1,\r\n";
    let docs = parse_sdmx_csv(text, "c", "n").unwrap();
    let doc = &docs[0];
    assert_eq!(doc.lines, [3, 6]);
    let err = doc.error_at(
        "indicator_snapshot.observations[1].ref_area",
        "\"WLD\" is not a member state",
    );
    assert_eq!(
        err.to_string(),
        "line 6, column REF_AREA: Reference area: \"WLD\" is not a member state"
    );
    let cell = doc
        .locate("indicator_snapshot.observations[1].dimensions[0].value")
        .unwrap();
    assert_eq!((cell.line, cell.column.as_deref()), (6, Some("SEX")));
    let cell = doc
        .locate("indicator_snapshot.observations[0].footnote")
        .unwrap();
    assert_eq!((cell.line, cell.column.as_deref()), (3, Some("COMMENT")));
    let cell = doc
        .locate("indicator_snapshot.observations[0].action")
        .unwrap();
    assert_eq!(cell.column.as_deref(), Some("ACTION"));
    let cell = doc.locate("indicator_snapshot.indicator").unwrap();
    assert_eq!(
        (cell.line, cell.column.as_deref()),
        (3, Some("STRUCTURE_ID"))
    );
}

#[test]
fn detection_and_dispatch() {
    for (text, sdmx) in [
        ("STRUCTURE,STRUCTURE_ID\n", true),
        ("\u{feff}\n  structure;STRUCTURE_ID\n", true),
        ("STRUCTURE[;],STRUCTURE_ID\n", true),
        ("STRUCTURE", true),
        ("STRUCTURE_ID,REF_AREA\n", false),
        ("STRUCTURES,REF_AREA\n", false),
        ("STRUCTURE[;,STRUCTURE_ID\n", false),
        ("INDICATOR,REF_AREA\n", false),
        ("", false),
    ] {
        assert_eq!(is_sdmx_csv(text), sdmx, "{text:?}");
    }
    // The simple format keeps ignoring a STRUCTURE column; the dispatcher reads SDMX-CSV.
    let text = "STRUCTURE,STRUCTURE_ID,REF_AREA,TIME_PERIOD,OBS_VALUE\n\
                datastructure,GFMD:MIG_STOCK(1.0.0),LKA,2020,1\n";
    assert!(parse_indicator_csv(text, "c", "n").is_ok());
    let err = parse_any_indicator_csv(text, "c", "n").unwrap_err();
    assert_eq!(err.column.as_deref(), Some("STRUCTURE"));
    let simple = "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE\nMIG_STOCK,LKA,2020,1\n";
    assert_eq!(
        parse_any_indicator_csv(simple, "c", "n").unwrap(),
        parse_indicator_csv(simple, "c", "n").unwrap()
    );
    let batches = IndicatorCsvBatches::new(GOOD.as_bytes(), 10).unwrap();
    assert_eq!(batches.format(), CsvFormat::SdmxCsv);
}

/// rcpfed's own SDMX-CSV export, as rcpfed-sdmx writes it, imports again with the same
/// observations (the absent dimension as its written `_Z`, a deletion as a delete).
#[test]
fn the_sdmx_csv_writer_output_imports_again() {
    use rcpfed_core::Digest;
    use rcpfed_core::statement::{Observation, ObservationAction as Action};
    use rcpfed_core::versions::{ObservationProvenance, ObservationRow};

    let written = |feed_index: u64, action: Action, area: &str| ObservationRow {
        indicator: "MIG_STOCK".into(),
        observation: Observation {
            action,
            ref_area: area.into(),
            time_period: "2023".into(),
            dimensions: vec![("SEX".into(), "F".into())],
            obs_value: (action != Action::Delete).then_some(1e21),
            obs_status: "A".into(),
            unit_measure: "persons".into(),
            unit_mult: 6,
            conf_status: String::new(),
            footnote: "two\r\nlines, \"quoted\"".into(),
            source: "UN DESA".into(),
        },
        provenance: ObservationProvenance {
            node_id: "colombo".into(),
            digest: Digest::of(area.as_bytes()),
            document: "stock".into(),
            revision: 1,
            feed_index,
            position: 0,
            accepted_at_ms: 1_714_564_800_000,
        },
        superseded_at_ms: None,
    };
    let rows = [
        written(3, Action::Append, "LKA"),
        written(4, Action::Delete, "IND"),
    ];
    let found = std::collections::BTreeSet::from(["SEX".to_string(), "AGE".to_string()]);
    let structure = rcpfed_sdmx::SdmxStructure::new("MIG_STOCK", None, "GFMD", &found, false);
    let mut text = String::new();
    rcpfed_sdmx::csv_header(&structure, &mut text);
    for r in &rows {
        rcpfed_sdmx::csv_row(&structure, r, &mut text).unwrap();
    }
    let docs = parse_any_indicator_csv(&text, "colombo", "again").unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].snapshot.indicator, "MIG_STOCK");
    let read = &docs[0].snapshot.observations;
    assert_eq!(read.len(), 2);
    let (kept, deleted) = (&read[0], &read[1]);
    assert_eq!(kept.action, ObservationAction::Append as i32);
    assert_eq!(
        (kept.ref_area.as_str(), kept.time_period.as_str()),
        ("LKA", "2023")
    );
    let dims: Vec<(&str, &str)> = kept
        .dimensions
        .iter()
        .map(|d| (d.id.as_str(), d.value.as_str()))
        .collect();
    // The export names every dimension of the structure: AGE, which the row lacks, as `_Z`.
    assert_eq!(dims, [("AGE", "_Z"), ("SEX", "F")]);
    assert_eq!(kept.obs_value, Some(1e21));
    assert_eq!(kept.unit_mult, 6);
    assert_eq!(kept.footnote, "two\r\nlines, \"quoted\"");
    assert_eq!(kept.source, "UN DESA");
    assert_eq!(deleted.action, ObservationAction::Delete as i32);
    assert_eq!(deleted.ref_area, "IND");
    assert_eq!(deleted.obs_value, None);
}

//! SDMX-CSV 2.0 data messages, the format statistical systems (.Stat Suite, FMR, pysdmx, …)
//! export, read by [`crate::parse_sdmx_csv`] and, when the header starts with `STRUCTURE`,
//! by [`crate::parse_any_indicator_csv`] and the streaming reader.
//!
//! What is read (SDMX-CSV 2.0 field guide, data message):
//!
//! | column | meaning |
//! |---|---|
//! | `STRUCTURE` (first column; `STRUCTURE[;]` when a sub-field separator is declared) | structure type of the row: only `dataflow` is accepted (each rcpfed indicator is one dataflow); `datastructure`, `dataprovision`, … rows are refused |
//! | `STRUCTURE_ID` | the dataflow, `AGENCY:ID(VERSION)` or `AGENCY:ID`, e.g. `GFMD:REMIT_INFLOW(1.0.0)`: `ID` is the indicator code; one snapshot per code |
//! | `ACTION` (optional) | `I` information and `A` append → append; `R` replace → replace; `D` delete → delete (a tombstone for the whole observation). Without the column (or with an empty cell) the action is Information, read as append, as the field guide says a database loading Information data does |
//! | `STRUCTURE_NAME`, `SERIES_KEY`, `OBS_KEY` | ignored (names and keys derivable from the other columns) |
//! | `REF_AREA`, `TIME_PERIOD` | required dimensions |
//! | `FREQ` (optional) | checked against the TIME_PERIOD's format (`A` for `2024`, `M` for `2024-05`, …) and not kept: the catalogue derives the frequency from the period |
//! | `OBS_VALUE` | the measure; required column; empty or `-` on `D` rows |
//! | `OBS_STATUS`, `UNIT_MEASURE`, `UNIT_MULT`, `CONF_STATUS` | attributes |
//! | `COMMENT`, `COMMENT_OBS` or `FOOTNOTE` | footnote (free text, kept as written) |
//! | `SOURCE` or `SOURCE_DETAIL` | source (free text) |
//! | `PROVIDER`, `STATEMENT_DIGEST`, `FEED_INDEX`, `POSITION`, `ACCEPTED_AT`, `SUPERSEDED_AT` | ignored: the provenance columns of rcpfed's own export, so an exported file imports again |
//! | any other upper-case id, e.g. `SEX`, `AGE`, `MIGRANT_STATUS` | a disaggregation dimension; an empty cell means the dimension is absent |
//!
//! Conventions of the format that are understood:
//! - the field separator is the character right after the first header term (`STRUCTURE,` or
//!   `STRUCTURE[;];`): `,`, `;`, tab or `|`; with a separator other than `,`, a value may use
//!   the decimal comma (`12,4`);
//! - `labels=both` headers (`REF_AREA: Reference area`) and values (`LKA: Sri Lanka`,
//!   `GFMD:REMIT_INFLOW(1.0.0): Personal remittances received`): the id before `": "` is
//!   used (free-text columns are kept whole);
//! - `labels=name` files (a `STRUCTURE_NAME` column, and after each component column a column
//!   of names whose header is not an upper-case id): the name columns are ignored;
//! - `D` rows may mark values with `-`; rcpfed deletes the whole observation, so the marks
//!   are dropped.
//!
//! Not supported, each refused with a message: wildcard deletes (a `D` row without REF_AREA
//! or TIME_PERIOD), rows that set attributes of partial keys (no OBS_VALUE on an `A`/`R`/`I`
//! row), multi-valued or multi-language components (`ATTR[]`, `ATTR[en;fr]`, except on the
//! free-text COMMENT/FOOTNOTE and SOURCE columns, kept as written), and the simple format's
//! `INDICATOR`/`DATAFLOW` columns (the indicator is the STRUCTURE_ID's id).
//!
//! Note the difference in meaning: SDMX's Append and Replace both insert or update, while an
//! rcpfed append needs no value in force and a replace needs one; the hub refuses an `A` row
//! for a key that already has a value (`OBSERVATION_EXISTS`), so send revisions as `R`.

use crate::ImportError;
use crate::columns::{Col, check_duplicate, is_dimension_id};
use rcpfed_proto::v1::ObservationAction;

/// Appended to the messages about an empty REF_AREA or TIME_PERIOD.
pub(crate) const NO_WILDCARDS: &str =
    " (wildcard deletes are not supported: a D row names one observation)";

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The field separator of an SDMX-CSV data message, if `bytes` starts with one's header
/// (after a byte order mark and white space): `STRUCTURE`, optionally `STRUCTURE[…]`,
/// optionally quoted, then `,`, `;`, tab or `|` (or the end of the line: a one-column header).
pub(crate) fn detect(bytes: &[u8]) -> Option<u8> {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let mut rest = &bytes[start..];
    let quoted = rest.first() == Some(&b'"');
    if quoted {
        rest = &rest[1..];
    }
    let term = b"STRUCTURE";
    if rest.len() < term.len() || !rest[..term.len()].eq_ignore_ascii_case(term) {
        return None;
    }
    rest = &rest[term.len()..];
    if rest.first() == Some(&b'[') {
        let end = rest.iter().position(|&b| b == b']' || b == b'\n')?;
        if rest[end] != b']' {
            return None;
        }
        rest = &rest[end + 1..];
    }
    if quoted {
        rest = rest.strip_prefix(b"\"")?;
    }
    let rest = &rest[rest.iter().take_while(|&&b| b == b' ').count()..];
    match rest.first() {
        None | Some(b'\r' | b'\n') => Some(b','),
        Some(&d @ (b',' | b';' | b'\t' | b'|')) => Some(d),
        _ => None,
    }
}

/// The code of a coded value written with its name (`labels=both`): "LKA: Sri Lanka" → "LKA".
pub(crate) fn strip_label(cell: &str) -> &str {
    cell.split_once(": ")
        .map_or(cell, |(code, _)| code.trim_end())
}

/// The indicator code of a STRUCTURE_ID: the `ID` of `AGENCY:ID(VERSION)` or `AGENCY:ID`
/// (also inside an SDMX URN `urn:sdmx:…Dataflow=AGENCY:ID(VERSION)`).
pub(crate) fn structure_id_code(cell: &str) -> Result<&str, String> {
    const EXAMPLE: &str = "give the dataflow as AGENCY:ID(VERSION), for example \
                           \"GFMD:REMIT_INFLOW(1.0.0)\", where ID is the indicator code";
    let reference = strip_label(cell);
    if reference.is_empty() {
        return Err(format!("is empty; {EXAMPLE}"));
    }
    let reference = match reference.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("urn:") => {
            reference.rsplit_once('=').map_or(reference, |(_, r)| r)
        }
        _ => reference,
    };
    let bad = || format!("{cell:?} is not an SDMX dataflow reference; {EXAMPLE}");
    let (agency, rest) = reference.split_once(':').ok_or_else(bad)?;
    if agency.trim().is_empty() || rest.contains(':') {
        return Err(bad());
    }
    let id = match rest.split_once('(') {
        Some((id, version)) => {
            let version = version.strip_suffix(')').ok_or_else(bad)?;
            if version.trim().is_empty() || version.contains(['(', ')']) {
                return Err(bad());
            }
            id
        }
        None if rest.contains(')') => return Err(bad()),
        None => rest,
    };
    let id = id.trim();
    if id.is_empty() {
        return Err(bad());
    }
    Ok(id)
}

/// Checks a row's STRUCTURE cell: only `dataflow` rows are read.
pub(crate) fn check_structure(cell: &str) -> Result<(), String> {
    if cell.eq_ignore_ascii_case("dataflow") {
        return Ok(());
    }
    let other = [
        "datastructure",
        "dataprovision",
        "dataconstraint",
        "metadataflow",
        "metadataprovision",
    ];
    if other.iter().any(|o| cell.eq_ignore_ascii_case(o)) {
        Err(format!(
            "{cell:?} rows are not accepted: rcpfed reads data by dataflow, one per indicator \
             (STRUCTURE dataflow with a STRUCTURE_ID such as \"GFMD:REMIT_INFLOW(1.0.0)\"); \
             export the data by dataflow"
        ))
    } else if cell.is_empty() {
        Err("is empty; every row names its structure type, dataflow".to_owned())
    } else {
        Err(format!(
            "{cell:?} is not an SDMX-CSV structure type; rcpfed accepts dataflow rows"
        ))
    }
}

/// An SDMX-CSV action: I (information: "if such data messages are loaded into an SDMX
/// database, the action Append is assumed") and A → append, R → replace, D → delete; empty
/// (no action given) is Information.
pub(crate) fn action_of(cell: &str) -> Option<ObservationAction> {
    let is = |names: &[&str]| names.iter().any(|n| cell.eq_ignore_ascii_case(n));
    if cell.is_empty() || is(&["I", "information", "A", "append"]) {
        Some(ObservationAction::Append)
    } else if is(&["R", "replace"]) {
        Some(ObservationAction::Replace)
    } else if is(&["D", "delete"]) {
        Some(ObservationAction::Delete)
    } else {
        None
    }
}

/// The id of a header cell: the part before ':' (`labels=both` writes "REF_AREA: Reference
/// area"), and the `[…]` marker of multi-valued or multi-language components apart.
fn header_id(cell: &str) -> (&str, Option<&str>) {
    let id = cell.split_once(':').map_or(cell, |(id, _)| id).trim();
    match id.split_once('[') {
        Some((base, marker)) => (base.trim(), Some(marker)),
        None => (id, None),
    }
}

fn classify(id: &str) -> Option<Col> {
    let known = [
        ("STRUCTURE", Col::Structure),
        ("STRUCTURE_ID", Col::StructureId),
        ("STRUCTURE_NAME", Col::Ignored),
        ("SERIES_KEY", Col::Ignored),
        ("OBS_KEY", Col::Ignored),
        ("ACTION", Col::Action),
        ("REF_AREA", Col::RefArea),
        ("TIME_PERIOD", Col::TimePeriod),
        ("FREQ", Col::Freq),
        ("OBS_VALUE", Col::ObsValue),
        ("UNIT_MEASURE", Col::UnitMeasure),
        ("UNIT_MULT", Col::UnitMult),
        ("OBS_STATUS", Col::ObsStatus),
        ("CONF_STATUS", Col::ConfStatus),
        ("COMMENT", Col::Footnote),
        ("COMMENT_OBS", Col::Footnote),
        ("FOOTNOTE", Col::Footnote),
        ("SOURCE", Col::Source),
        ("SOURCE_DETAIL", Col::Source),
        // Provenance columns of rcpfed's own SDMX-CSV export: where a figure was logged, not
        // part of it, so an exported file can be imported again.
        ("PROVIDER", Col::Ignored),
        ("STATEMENT_DIGEST", Col::Ignored),
        ("FEED_INDEX", Col::Ignored),
        ("POSITION", Col::Ignored),
        ("ACCEPTED_AT", Col::Ignored),
        ("SUPERSEDED_AT", Col::Ignored),
    ];
    if let Some((_, col)) = known
        .into_iter()
        .find(|(name, _)| id.eq_ignore_ascii_case(name))
    {
        return Some(col);
    }
    is_dimension_id(id).then(|| Col::Dimension(id.to_owned()))
}

/// Whether a column is a component (dimension, measure or attribute), which `labels=name`
/// follows with a column of names.
fn is_component(col: &Col) -> bool {
    !matches!(
        col,
        Col::Structure | Col::StructureId | Col::Action | Col::Ignored
    )
}

/// The meaning of each column of an SDMX-CSV header (`names` as written, trimmed, not empty).
pub(crate) fn header_columns(names: &[String], line: usize) -> Result<Vec<Col>, ImportError> {
    let first = names.first().map_or("", String::as_str);
    if !header_id(first).0.eq_ignore_ascii_case("STRUCTURE") {
        return Err(ImportError::at_cell(
            line,
            first,
            format!(
                "an SDMX-CSV file starts with the column STRUCTURE (for example \
                 STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,OBS_VALUE); this one starts \
                 with {first:?}"
            ),
        ));
    }
    let names_mode = names
        .iter()
        .any(|n| header_id(n).0.eq_ignore_ascii_case("STRUCTURE_NAME"));
    let mut cols: Vec<Col> = Vec::with_capacity(names.len());
    let mut after_component = false;
    for cell in names {
        let (id, marker) = header_id(cell);
        if names_mode && after_component && !is_dimension_id(id) {
            // labels=name: the names of the previous column's values.
            cols.push(Col::Ignored);
            after_component = false;
            continue;
        }
        let col = match classify(id) {
            Some(col) => col,
            None if id.eq_ignore_ascii_case("INDICATOR") || id.eq_ignore_ascii_case("DATAFLOW") => {
                indicator_column_error(cell, line)?
            }
            None => {
                return Err(ImportError::at_cell(
                    line,
                    cell,
                    format!(
                        "unknown column {cell:?}; SDMX-CSV columns are STRUCTURE, STRUCTURE_ID, \
                         ACTION, then component ids in upper case: REF_AREA, TIME_PERIOD, \
                         dimensions such as SEX, OBS_VALUE, OBS_STATUS, UNIT_MEASURE, UNIT_MULT, \
                         CONF_STATUS, COMMENT, SOURCE"
                    ),
                ));
            }
        };
        if let Col::Dimension(d) = &col
            && (d == "INDICATOR" || d == "DATAFLOW")
        {
            indicator_column_error(cell, line)?;
        }
        if marker.is_some()
            && !matches!(
                col,
                Col::Structure | Col::Footnote | Col::Source | Col::Ignored
            )
        {
            return Err(ImportError::at_cell(
                line,
                cell,
                format!(
                    "multi-valued or multi-language columns are not supported for {}; an \
                     rcpfed observation has one value per component",
                    col.canonical()
                ),
            ));
        }
        check_duplicate(&cols, names, &col, line)?;
        after_component = is_component(&col);
        cols.push(col);
    }
    let missing: Vec<&str> = [
        ("STRUCTURE_ID", Col::StructureId),
        ("REF_AREA", Col::RefArea),
        ("TIME_PERIOD", Col::TimePeriod),
        ("OBS_VALUE", Col::ObsValue),
    ]
    .iter()
    .filter(|(_, c)| !cols.contains(c))
    .map(|(name, _)| *name)
    .collect();
    if let Some(first) = missing.first() {
        return Err(ImportError::at_cell(
            line,
            first,
            format!(
                "the SDMX-CSV header has no {} column{}; it needs STRUCTURE, STRUCTURE_ID, \
                 REF_AREA, TIME_PERIOD and OBS_VALUE (left empty on D rows of a delete-only \
                 file)",
                missing.join(", "),
                if missing.len() > 1 { "s" } else { "" }
            ),
        ));
    }
    Ok(cols)
}

/// Refuses the simple format's INDICATOR/DATAFLOW column in an SDMX-CSV file.
fn indicator_column_error(cell: &str, line: usize) -> Result<Col, ImportError> {
    Err(ImportError::at_cell(
        line,
        cell,
        "SDMX-CSV names the indicator in STRUCTURE_ID (for example \
         \"GFMD:REMIT_INFLOW(1.0.0)\"); remove this column, or drop the STRUCTURE column to \
         use the simple format",
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::columns::CsvFormat;
    use crate::{
        IndicatorCsvBatches, is_sdmx_csv, parse_any_indicator_csv, parse_indicator_csv,
        parse_sdmx_csv,
    };

    const GOOD: &str = "\
STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,SEX,AGE,OBS_VALUE,UNIT_MEASURE,UNIT_MULT,OBS_STATUS,CONF_STATUS,COMMENT,SOURCE
dataflow,GFMD:MIG_STOCK(1.0.0),I,LKA,2020,F,_T,1.5,persons,6,A,F,\"mid-year, revised\",UN DESA
dataflow,GFMD:REMIT_INFLOW(1.0.0),A,IND,2024,,,129,current USD,9,E,,,World Bank/KNOMAD
dataflow,GFMD:MIG_STOCK(1.0.0),R,LKA,2021,M,,2.5,persons,6,E,,,UN DESA

dataflow,GFMD:MIG_STOCK(1.0.0),D,LKA,2019,M,Y_GE65,,,,,,,
dataflow,GFMD:MIG_STOCK,D,LKA,2018,M,,-,-,-,-,,removed,
";

    /// The shape of rcpfed's own SDMX-CSV export (rcpfed-grpc `sdmx.rs`): attribute ids
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
        for (cell, action) in [
            ("I", Some(Append)),
            ("i", Some(Append)),
            ("", Some(Append)),
            ("A", Some(Append)),
            ("Information", Some(Append)),
            ("R", Some(Replace)),
            ("replace", Some(Replace)),
            ("D", Some(Delete)),
            ("M", None),
            ("X", None),
        ] {
            assert_eq!(action_of(cell), action, "{cell:?}");
        }
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
        for (id, code) in [
            ("GFMD:MIG_STOCK(1.0.0)", "MIG_STOCK"),
            ("GFMD:MIG_STOCK", "MIG_STOCK"),
            (
                "GFMD:MIG_STOCK(1.0.0): International migrant stock",
                "MIG_STOCK",
            ),
            (
                "urn:sdmx:org.sdmx.infomodel.datastructure.Dataflow=GFMD:MIG_STOCK(1.0.0)",
                "MIG_STOCK",
            ),
        ] {
            assert_eq!(structure_id_code(id), Ok(code), "{id}");
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
}

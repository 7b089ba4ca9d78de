//! Reading SDMX-CSV 2.0 data messages, the format statistical systems (.Stat Suite, FMR,
//! pysdmx, …) export: how the header and the cells of such a file are understood. The CSV
//! engine that applies these rules row by row, and that also reads rcpfed's simple format, is
//! rcpfed-import's (`parse_sdmx_csv`, `parse_any_indicator_csv` and the streaming reader).
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

use crate::columns::{CellError, Column, check_duplicate};
use rcpfed_core::codes::is_dimension_id;
use rcpfed_core::statement::ObservationAction;

/// Appended to the messages about an empty REF_AREA or TIME_PERIOD.
pub const NO_WILDCARDS: &str =
    " (wildcard deletes are not supported: a D row names one observation)";

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The field separator of an SDMX-CSV data message, if `bytes` starts with one's header
/// (after a byte order mark and white space): `STRUCTURE`, optionally `STRUCTURE[…]`,
/// optionally quoted, then `,`, `;`, tab or `|` (or the end of the line: a one-column header).
pub fn detect(bytes: &[u8]) -> Option<u8> {
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
pub fn strip_label(cell: &str) -> &str {
    cell.split_once(": ")
        .map_or(cell, |(code, _)| code.trim_end())
}

/// The indicator code of a STRUCTURE_ID: the `ID` of `AGENCY:ID(VERSION)` or `AGENCY:ID`
/// (also inside an SDMX URN `urn:sdmx:…Dataflow=AGENCY:ID(VERSION)`).
pub fn structure_id_code(cell: &str) -> Result<&str, String> {
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
pub fn check_structure(cell: &str) -> Result<(), String> {
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
pub fn action_of(cell: &str) -> Option<ObservationAction> {
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

fn classify(id: &str) -> Option<Column> {
    let known = [
        ("STRUCTURE", Column::Structure),
        ("STRUCTURE_ID", Column::StructureId),
        ("STRUCTURE_NAME", Column::Ignored),
        ("SERIES_KEY", Column::Ignored),
        ("OBS_KEY", Column::Ignored),
        ("ACTION", Column::Action),
        ("REF_AREA", Column::RefArea),
        ("TIME_PERIOD", Column::TimePeriod),
        ("FREQ", Column::Freq),
        ("OBS_VALUE", Column::ObsValue),
        ("UNIT_MEASURE", Column::UnitMeasure),
        ("UNIT_MULT", Column::UnitMult),
        ("OBS_STATUS", Column::ObsStatus),
        ("CONF_STATUS", Column::ConfStatus),
        ("COMMENT", Column::Footnote),
        ("COMMENT_OBS", Column::Footnote),
        ("FOOTNOTE", Column::Footnote),
        ("SOURCE", Column::Source),
        ("SOURCE_DETAIL", Column::Source),
        // Provenance columns of rcpfed's own SDMX-CSV export: where a figure was logged, not
        // part of it, so an exported file can be imported again.
        ("PROVIDER", Column::Ignored),
        ("STATEMENT_DIGEST", Column::Ignored),
        ("FEED_INDEX", Column::Ignored),
        ("POSITION", Column::Ignored),
        ("ACCEPTED_AT", Column::Ignored),
        ("SUPERSEDED_AT", Column::Ignored),
    ];
    if let Some((_, col)) = known
        .into_iter()
        .find(|(name, _)| id.eq_ignore_ascii_case(name))
    {
        return Some(col);
    }
    is_dimension_id(id).then(|| Column::Dimension(id.to_owned()))
}

/// Whether a column is a component (dimension, measure or attribute), which `labels=name`
/// follows with a column of names.
fn is_component(col: &Column) -> bool {
    !matches!(
        col,
        Column::Structure | Column::StructureId | Column::Action | Column::Ignored
    )
}

/// The meaning of each column of an SDMX-CSV header (`names` as written, trimmed, not empty).
pub fn header_columns(names: &[String], line: usize) -> Result<Vec<Column>, CellError> {
    let first = names.first().map_or("", String::as_str);
    if !header_id(first).0.eq_ignore_ascii_case("STRUCTURE") {
        return Err(CellError::new(
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
    let mut cols: Vec<Column> = Vec::with_capacity(names.len());
    let mut after_component = false;
    for cell in names {
        let (id, marker) = header_id(cell);
        if names_mode && after_component && !is_dimension_id(id) {
            // labels=name: the names of the previous column's values.
            cols.push(Column::Ignored);
            after_component = false;
            continue;
        }
        let col = match classify(id) {
            Some(col) => col,
            None if id.eq_ignore_ascii_case("INDICATOR") || id.eq_ignore_ascii_case("DATAFLOW") => {
                indicator_column_error(cell, line)?
            }
            None => {
                return Err(CellError::new(
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
        if let Column::Dimension(d) = &col
            && (d == "INDICATOR" || d == "DATAFLOW")
        {
            indicator_column_error(cell, line)?;
        }
        if marker.is_some()
            && !matches!(
                col,
                Column::Structure | Column::Footnote | Column::Source | Column::Ignored
            )
        {
            return Err(CellError::new(
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
        ("STRUCTURE_ID", Column::StructureId),
        ("REF_AREA", Column::RefArea),
        ("TIME_PERIOD", Column::TimePeriod),
        ("OBS_VALUE", Column::ObsValue),
    ]
    .iter()
    .filter(|(_, c)| !cols.contains(c))
    .map(|(name, _)| *name)
    .collect();
    if let Some(first) = missing.first() {
        return Err(CellError::new(
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
fn indicator_column_error(cell: &str, line: usize) -> Result<Column, CellError> {
    Err(CellError::new(
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

    #[test]
    fn action_codes() {
        use ObservationAction::{Append, Delete, Replace};
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
    }

    #[test]
    fn structure_id_codes() {
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
    fn separators_are_detected_from_the_first_header_term() {
        for (text, separator) in [
            (&b"STRUCTURE,STRUCTURE_ID\n"[..], Some(b',')),
            (b"STRUCTURE[|];STRUCTURE_ID\n", Some(b';')),
            (b"\xEF\xBB\xBF\"STRUCTURE\"\tX\n", Some(b'\t')),
            (b"STRUCTURE|X\n", Some(b'|')),
            (b"STRUCTURE\r\n", Some(b',')),
            (b"STRUCTURE:X\n", None),
            (b"INDICATOR,REF_AREA\n", None),
        ] {
            assert_eq!(
                detect(text),
                separator,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn header_columns_classify_labels_and_provenance() {
        let names: Vec<String> = [
            "STRUCTURE",
            "STRUCTURE_ID",
            "REF_AREA: Reference area",
            "Reference area names",
            "TIME_PERIOD",
            "SEX",
            "OBS_VALUE",
            "COMMENT_OBS",
            "FEED_INDEX",
        ]
        .map(String::from)
        .to_vec();
        // Without STRUCTURE_NAME, a column that is not an id is unknown.
        let err = header_columns(&names, 1).unwrap_err();
        assert_eq!(err.column, "Reference area names");
        let mut names = names;
        names.insert(2, "STRUCTURE_NAME".into());
        let cols = header_columns(&names, 1).unwrap();
        assert_eq!(
            cols,
            [
                Column::Structure,
                Column::StructureId,
                Column::Ignored,
                Column::RefArea,
                Column::Ignored,
                Column::TimePeriod,
                Column::Dimension("SEX".into()),
                Column::ObsValue,
                Column::Footnote,
                Column::Ignored,
            ]
        );
    }
}

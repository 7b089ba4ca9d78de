//! Indicator observations written as CSV: the project's simple SDMX-CSV-like format and
//! SDMX-CSV 2.0 data messages (see [`rcpfed_sdmx::csv_read`] for what is specific to the
//! latter).

use crate::reader::{Engine, Mode};
use crate::row::fill_defaults;
use crate::{ImportError, sdmx};
use rcpfed_core::catalogue::Catalogue;
use rcpfed_proto::v1::{IndicatorSnapshot, Observation};
use std::collections::BTreeMap;

/// One indicator snapshot read from CSV, with the logical document it is a revision of and
/// where each observation was in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct IndicatorDoc {
    /// Logical document name: "regions/{node_id}/indicators/{indicator lowercased}/{name}".
    pub document: String,
    /// The body.
    pub snapshot: IndicatorSnapshot,
    /// The 1-based line of the file each observation was read from, parallel to
    /// `snapshot.observations`.
    pub lines: Vec<usize>,
    /// The header cell as written (for example `ref_area`, `REF_AREA: Reference area` or
    /// `COMMENT`) for each canonical column id (`REF_AREA`, `FOOTNOTE`, `SEX`, …; the
    /// indicator column is `INDICATOR`, `DATAFLOW` or `STRUCTURE_ID`). Used by
    /// [`IndicatorDoc::locate`] to name columns as the author wrote them.
    pub columns: BTreeMap<String, String>,
}

/// Where a validation violation is in the CSV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellRef {
    /// 1-based line.
    pub line: usize,
    /// The column (as written in the header), when the violation is about one cell.
    pub column: Option<String>,
}

impl IndicatorDoc {
    /// The 1-based line observation `i` was read from.
    pub fn line_of(&self, i: usize) -> Option<usize> {
        self.lines.get(i).copied()
    }

    /// Where the field of a validation violation is in the file: `field` is a path such as
    /// `indicator_snapshot.observations[3].ref_area` or `observations[3].dimensions[1].value`
    /// (as in [`rcpfed_core::Violation::field`]). A disaggregation is named by its own column
    /// (`SEX`); a path that names a whole observation (a duplicate key) or its `dimensions`
    /// list (a missing required dimension) gives the line only. `None` when the path names no
    /// observation of this document.
    pub fn locate(&self, field: &str) -> Option<CellRef> {
        let path = field.strip_prefix("indicator_snapshot.").unwrap_or(field);
        if path == "indicator" {
            return Some(CellRef {
                line: *self.lines.first()?,
                column: self.written("INDICATOR"),
            });
        }
        let rest = path.strip_prefix("observations[")?;
        let (index, rest) = rest.split_once(']')?;
        let i: usize = index.parse().ok()?;
        let line = self.line_of(i)?;
        let rest = rest.strip_prefix('.').unwrap_or(rest);
        let column = if let Some(dims) = rest.strip_prefix("dimensions[") {
            let j: usize = dims.split_once(']')?.0.parse().ok()?;
            let id = &self.snapshot.observations.get(i)?.dimensions.get(j)?.id;
            Some(self.columns.get(id).cloned().unwrap_or_else(|| id.clone()))
        } else {
            column_for_field(rest).and_then(|c| self.written(c))
        };
        Some(CellRef { line, column })
    }

    /// An [`ImportError`] at the cell of a validation violation's `field` (see
    /// [`IndicatorDoc::locate`]), or about the whole file when the field names no cell.
    pub fn error_at(&self, field: &str, message: impl Into<String>) -> ImportError {
        match self.locate(field) {
            Some(CellRef {
                line,
                column: Some(column),
            }) => ImportError::at_cell(line, &column, message),
            Some(CellRef { line, column: None }) => ImportError::at_line(line, message),
            None => ImportError::file(message),
        }
    }

    /// The header cell as written for canonical column `canonical`; the canonical name when
    /// the file has no such column (a required value the file does not give at all).
    fn written(&self, canonical: &str) -> Option<String> {
        let keys: &[&str] = if canonical == "INDICATOR" {
            &["INDICATOR", "DATAFLOW", "STRUCTURE_ID"]
        } else {
            &[canonical]
        };
        Some(
            keys.iter()
                .find_map(|k| self.columns.get(*k))
                .cloned()
                .unwrap_or_else(|| canonical.to_owned()),
        )
    }
}

impl IndicatorDoc {
    /// [`fill_defaults`] on this snapshot's observations; returns how many got a default.
    pub fn fill_defaults(&mut self, catalogue: &Catalogue) -> usize {
        let snapshot = &mut self.snapshot;
        fill_defaults(catalogue, &snapshot.indicator, &mut snapshot.observations)
    }
}

/// The CSV column of an observation field, by its canonical name (the same for both
/// formats): `ref_area` → `REF_AREA`, `time_period` → `TIME_PERIOD`, `obs_value` →
/// `OBS_VALUE`, `unit_measure` → `UNIT_MEASURE`, `unit_mult` → `UNIT_MULT`, `obs_status` →
/// `OBS_STATUS`, `conf_status` → `CONF_STATUS`, `action` → `ACTION`, `footnote` →
/// `FOOTNOTE` (also written `COMMENT`), `source` → `SOURCE`, `indicator` → `INDICATOR`
/// (written `DATAFLOW` or `STRUCTURE_ID` in some files).
///
/// `field` may be the bare name or a whole violation path
/// (`indicator_snapshot.observations[3].ref_area`). A disaggregation
/// (`dimensions[j].value`) has no fixed column: its column is the dimension's own id, which
/// only the observation knows; use [`IndicatorDoc::locate`], which also gives the header cell
/// as the author wrote it.
pub fn column_for_field(field: &str) -> Option<&'static str> {
    if field.contains("dimensions") {
        return None;
    }
    let last = field.rsplit('.').next().unwrap_or(field);
    Some(match last {
        "ref_area" => "REF_AREA",
        "time_period" => "TIME_PERIOD",
        "obs_value" => "OBS_VALUE",
        "unit_measure" => "UNIT_MEASURE",
        "unit_mult" => "UNIT_MULT",
        "obs_status" => "OBS_STATUS",
        "conf_status" => "CONF_STATUS",
        "action" => "ACTION",
        "footnote" => "FOOTNOTE",
        "source" => "SOURCE",
        "indicator" => "INDICATOR",
        _ => return None,
    })
}

/// The logical document of an indicator snapshot:
/// `regions/{node_id}/indicators/{indicator lowercased}/{name}`.
pub fn indicator_document(node_id: &str, indicator: &str, name: &str) -> String {
    format!(
        "regions/{node_id}/indicators/{}/{name}",
        indicator.to_ascii_lowercase()
    )
}

/// Observations of one indicator, in file order.
struct Group {
    indicator: String,
    observations: Vec<Observation>,
    lines: Vec<usize>,
}

/// Observations sorted into one group per indicator, in order of first appearance.
#[derive(Default)]
struct Groups {
    groups: Vec<Group>,
    last: usize,
}

impl Groups {
    fn add(&mut self, indicator: &str, observation: Observation, line: usize) {
        let groups = &mut self.groups;
        let i = if groups
            .get(self.last)
            .is_some_and(|g| g.indicator == indicator)
        {
            self.last
        } else if let Some(i) = groups.iter().position(|g| g.indicator == indicator) {
            i
        } else {
            groups.push(Group {
                indicator: indicator.to_owned(),
                observations: Vec::new(),
                lines: Vec::new(),
            });
            groups.len() - 1
        };
        self.last = i;
        let group = &mut groups[i];
        group.observations.push(observation);
        group.lines.push(line);
    }

    fn into_docs(
        self,
        node_id: &str,
        name: &str,
        columns: &BTreeMap<String, String>,
    ) -> Vec<IndicatorDoc> {
        self.groups
            .into_iter()
            .map(|g| IndicatorDoc {
                document: indicator_document(node_id, &g.indicator, name),
                snapshot: IndicatorSnapshot {
                    indicator: g.indicator,
                    observations: g.observations,
                    chunks: None,
                },
                lines: g.lines,
                columns: columns.clone(),
            })
            .collect()
    }
}

fn parse_text(
    text: &str,
    node_id: &str,
    name: &str,
    mode: Mode,
) -> Result<Vec<IndicatorDoc>, ImportError> {
    let mut engine = Engine::new(text.as_bytes(), mode)?;
    let mut groups = Groups::default();
    while let Some(row) = engine.next_row()? {
        groups.add(row.indicator, row.observation, row.line);
    }
    if groups.groups.is_empty() {
        return Err(ImportError::file(
            "the file has a header but no observations",
        ));
    }
    Ok(groups.into_docs(node_id, name, &engine.header.columns))
}

/// Most problems an [`ImportReport`] lists (all are counted).
pub const MAX_IMPORT_PROBLEMS: usize = 100;

/// A whole file read in one pass ([`read_any_indicator_csv`]): the snapshots of the rows that
/// could be read, and the problems of those that could not.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportReport {
    /// One snapshot per indicator of the rows read without a problem (as
    /// [`parse_any_indicator_csv`] gives them), empty when no row could be read.
    pub docs: Vec<IndicatorDoc>,
    /// Every problem of the rows, in file order (several per row when several cells are
    /// wrong), at most [`MAX_IMPORT_PROBLEMS`]. A problem that stops the reading (the file is
    /// not CSV past some line) comes last.
    pub problems: Vec<ImportError>,
    /// Problems found (may exceed `problems.len()`).
    pub total_problems: usize,
}

/// Reads a file of either format ([`parse_any_indicator_csv`]'s rules) in one pass without
/// stopping at a bad row: each row with a problem is left out and every problem it has is
/// reported, so a file's errors can all be fixed at once; the other rows still form the
/// snapshots, which the receiver can check in the same run. `Err` only when the file cannot be
/// read at all (no header, a malformed header, an empty file, no row at all).
pub fn read_any_indicator_csv(
    text: &str,
    node_id: &str,
    name: &str,
) -> Result<ImportReport, ImportError> {
    let mut engine = Engine::new(text.as_bytes(), Mode::Auto)?;
    let mut groups = Groups::default();
    let mut problems = Vec::new();
    let mut total_problems = 0;
    let mut row_problems = Vec::new();
    loop {
        let mut observation = Observation::default();
        match engine.next_row_checked(&mut observation, &mut row_problems) {
            Ok(Some((line, Some(indicator)))) => groups.add(indicator, observation, line),
            Ok(Some((_, None))) => {}
            Ok(None) => break,
            Err(fatal) => {
                row_problems.push(fatal);
                total_problems += row_problems.len();
                let room = MAX_IMPORT_PROBLEMS.saturating_sub(problems.len());
                problems.extend(row_problems.drain(..).take(room));
                break;
            }
        }
        total_problems += row_problems.len();
        let room = MAX_IMPORT_PROBLEMS.saturating_sub(problems.len());
        problems.extend(row_problems.drain(..).take(room));
    }
    if groups.groups.is_empty() && total_problems == 0 {
        return Err(ImportError::file(
            "the file has a header but no observations",
        ));
    }
    Ok(ImportReport {
        docs: groups.into_docs(node_id, name, &engine.header.columns),
        problems,
        total_problems,
    })
}

/// Parses indicator observations written in the project's simple CSV format into one snapshot
/// per indicator code, in order of first appearance; observations keep the file's order.
///
/// The first row must be a header. Column names are case-insensitive:
///
/// | column | meaning |
/// |---|---|
/// | `INDICATOR` (or `DATAFLOW`, whose code after the last ':' and before '(' is used) | indicator code, required |
/// | `REF_AREA` | ISO 3166-1 alpha-3 code, required |
/// | `TIME_PERIOD` | "2024", "2024-Q3", "2024-05", "2024-05-17", required |
/// | `OBS_VALUE` (or `value`) | the number; empty only for `delete` rows |
/// | `UNIT_MEASURE` (or `unit`) | unit, for example "current USD" |
/// | `UNIT_MULT` | power of ten, a whole number; empty means 0 |
/// | `OBS_STATUS` | SDMX code such as A, E, P |
/// | `ACTION` | append (default), replace or delete (also SDMX's A, R, D) |
/// | `CONF_STATUS` | SDMX code such as F or C |
/// | `FOOTNOTE` (or `COMMENT`) | footnote |
/// | `SOURCE` | where the figure comes from |
/// | `published`, `STRUCTURE` | ignored |
/// | any other column named in upper case (`SEX`, `AGE`, `MIGRANT_STATUS`) | a disaggregation dimension; an empty cell means the dimension is absent |
///
/// `NaN` and `inf` are accepted as numbers on purpose: refusing non-finite values is the
/// receiver's validation. Text that is not a number at all is refused here, naming the line and
/// column. The document of each snapshot is
/// `regions/{node_id}/indicators/{indicator lowercased}/{name}`. Each observation's line is
/// kept in [`IndicatorDoc::lines`].
///
/// This parser reads the simple format even when the first column is `STRUCTURE` (which it
/// ignores); [`parse_any_indicator_csv`] reads such a file as SDMX-CSV instead.
pub fn parse_indicator_csv(
    text: &str,
    node_id: &str,
    name: &str,
) -> Result<Vec<IndicatorDoc>, ImportError> {
    parse_text(text, node_id, name, Mode::Simple)
}

/// Parses an SDMX-CSV 2.0 data message into one snapshot per `STRUCTURE_ID` (one dataflow
/// per indicator), in order of first appearance; observations keep the file's order. See
/// [`rcpfed_sdmx::csv_read`] for the columns and how SDMX actions and conventions are read. The
/// result is the same as [`parse_indicator_csv`]'s; documents are named the same way.
pub fn parse_sdmx_csv(
    text: &str,
    node_id: &str,
    name: &str,
) -> Result<Vec<IndicatorDoc>, ImportError> {
    parse_text(text, node_id, name, Mode::Sdmx)
}

/// Parses either format: SDMX-CSV 2.0 when the header starts with `STRUCTURE`
/// ([`is_sdmx_csv`]), the simple format otherwise.
pub fn parse_any_indicator_csv(
    text: &str,
    node_id: &str,
    name: &str,
) -> Result<Vec<IndicatorDoc>, ImportError> {
    parse_text(text, node_id, name, Mode::Auto)
}

/// Whether `text` is an SDMX-CSV data message: its header's first column is `STRUCTURE`
/// (optionally `STRUCTURE[;]`), followed by the field separator (`,`, `;`, tab or `|`).
pub fn is_sdmx_csv(text: &str) -> bool {
    sdmx::detect(text.as_bytes()).is_some()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rcpfed_core::obskey;
    use rcpfed_proto::v1::ObservationAction;

    const FIGURES_STYLE: &str = "\
indicator,ref_area,time_period,value,unit_mult,unit,obs_status,source,published
REMIT_INFLOW,IND,2024,129,9,current USD,E,World Bank,2024
MIG_STOCK,WLD,2024,304,6,persons,A,UN DESA,2025
REMIT_INFLOW,PHL,2024,40,9,current USD,E,World Bank,2024
";

    #[test]
    fn an_unterminated_quote_is_refused_with_its_line() {
        let simple = "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE,SOURCE\n\
                      REMIT_INFLOW,LKA,2023,7.0,World Bank\n\
                      REMIT_INFLOW,BGD,2023,21.0,\"open\n";
        let sdmx = "STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,OBS_VALUE,SOURCE\n\
                    dataflow,RCPFED:REMIT_INFLOW(1.0),I,LKA,2023,7.0,\"open,\n\
                    dataflow,RCPFED:REMIT_INFLOW(1.0),I,BGD,2023,21.0,x\n";
        for (text, line) in [(simple, 3), (sdmx, 2)] {
            let err = parse_any_indicator_csv(text, "colombo", "x")
                .map(|_| ())
                .unwrap_err();
            let shown = err.to_string();
            assert!(shown.contains(&format!("line {line}")), "{shown}");
            assert!(shown.contains("never closed"), "{shown}");
        }
        // Quotes that close, escaped quotes and a last line without a newline still pass.
        let fine = "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE,SOURCE\n\
                    REMIT_INFLOW,LKA,2023,7.0,\"a \"\"b\"\", c\"";
        assert!(parse_any_indicator_csv(fine, "colombo", "x").is_ok());
    }

    #[test]
    fn groups_by_indicator_in_file_order() {
        let docs = parse_indicator_csv(FIGURES_STYLE, "colombo", "figures").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0].document,
            "regions/colombo/indicators/remit_inflow/figures"
        );
        assert_eq!(
            docs[1].document,
            "regions/colombo/indicators/mig_stock/figures"
        );
        let s = &docs[0].snapshot;
        assert_eq!(s.indicator, "REMIT_INFLOW");
        let areas: Vec<_> = s.observations.iter().map(|o| o.ref_area.as_str()).collect();
        assert_eq!(areas, ["IND", "PHL"]);
        let o = &s.observations[0];
        assert_eq!(o.obs_value, Some(129.0));
        assert_eq!(o.unit_mult, 9);
        assert_eq!(o.unit_measure, "current USD");
        assert_eq!(o.obs_status, "E");
        assert_eq!(o.source, "World Bank");
        assert_eq!(o.action, ObservationAction::Append as i32);
        assert!(o.dimensions.is_empty());
        assert_eq!(docs[0].lines, [2, 4]);
        assert_eq!(docs[1].lines, [3]);
    }

    #[test]
    fn sdmx_style_with_dimensions_actions_and_nan() {
        let text = "\
DATAFLOW,REF_AREA,TIME_PERIOD,SEX,AGE,OBS_VALUE,ACTION,CONF_STATUS,COMMENT
RCPFED:SDG_8_8_1(1.0),LKA,2023,F,,1.5,replace,F,revised
RCPFED:SDG_8_8_1(1.0),LKA,2023,M,Y15T64,,delete,,
RCPFED:SDG_8_8_1(1.0),LKA,2022,M,,NaN,A,,
RCPFED:SDG_8_8_1(1.0),LKA,2021,M,,-inf,,,
";
        let docs = parse_indicator_csv(text, "colombo", "injuries").unwrap();
        assert_eq!(docs.len(), 1);
        let obs = &docs[0].snapshot.observations;
        assert_eq!(docs[0].snapshot.indicator, "SDG_8_8_1");
        assert_eq!(obs[0].action, ObservationAction::Replace as i32);
        assert_eq!(obs[0].dimensions.len(), 1);
        assert_eq!(obs[0].dimensions[0].id, "SEX");
        assert_eq!(obs[0].footnote, "revised");
        assert_eq!(obs[1].action, ObservationAction::Delete as i32);
        assert_eq!(obs[1].obs_value, None);
        assert_eq!(obs[1].dimensions.len(), 2);
        assert!(obs[2].obs_value.unwrap().is_nan());
        assert_eq!(obs[3].obs_value, Some(f64::NEG_INFINITY));
    }

    #[test]
    fn bad_header() {
        let err = parse_indicator_csv("REF_AREA,TIME_PERIOD,OBS_VALUE\nIND,2024,1\n", "c", "n")
            .unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(err.message.contains("INDICATOR"), "{err}");
        let err = parse_indicator_csv("IND,2024,1\nIND,2024,1\n", "c", "n").unwrap_err();
        assert_eq!(err.line, Some(1), "{err}");
        let err = parse_indicator_csv(
            "indicator,ref_area,time_period,value,sex\nX,IND,2024,1,F\n",
            "c",
            "n",
        )
        .unwrap_err();
        assert_eq!(err.column.as_deref(), Some("sex"), "{err}");
        let err = parse_indicator_csv("indicator,ref_area,time_period,value,OBS_VALUE\n", "c", "n")
            .unwrap_err();
        assert!(err.message.contains("twice"), "{err}");
        let err = parse_indicator_csv("", "c", "n").unwrap_err();
        assert!(err.message.contains("header"), "{err}");
        let err = parse_indicator_csv("INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE\n", "c", "n")
            .unwrap_err();
        assert!(err.message.contains("no observations"), "{err}");
    }

    #[test]
    fn bad_number_names_line_and_column() {
        let text = "\
INDICATOR,REF_AREA,TIME_PERIOD,obs_value
X,IND,2024,1

X,IND,2023,abc
";
        let err = parse_indicator_csv(text, "c", "n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 4, column obs_value: \"abc\" is not a number"
        );
        let text = "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE,UNIT_MULT\nX,IND,2024,1,1.5\n";
        let err = parse_indicator_csv(text, "c", "n").unwrap_err();
        assert_eq!(err.column.as_deref(), Some("UNIT_MULT"));
        let text = "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE\nX,IND,2024,\n";
        let err = parse_indicator_csv(text, "c", "n").unwrap_err();
        assert_eq!(
            (err.line, err.column.as_deref()),
            (Some(2), Some("OBS_VALUE"))
        );
    }

    #[test]
    fn unknown_action() {
        let text = "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE,ACTION\nX,IND,2024,1,upsert\n";
        let err = parse_indicator_csv(text, "c", "n").unwrap_err();
        assert_eq!((err.line, err.column.as_deref()), (Some(2), Some("ACTION")));
        assert!(err.message.contains("upsert"), "{err}");
    }

    #[test]
    fn wrong_column_count() {
        let text = "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE\nX,IND,2024,1\nX,IND,2023\n";
        let err = parse_indicator_csv(text, "c", "n").unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(err.column, None);
        assert!(err.message.contains("3 fields"), "{err}");
    }

    #[test]
    fn lines_survive_blank_lines_crlf_bom_and_quoted_line_breaks() {
        let text = "\u{feff}\r\n\r\nindicator,ref_area,time_period,value,footnote\r\n\
X,IND,2024,1,\"two\r\nlines\"\r\n\r\n\n X ,PHL,2024,2,\n,,,,\nX,PAK,2024,3,\"a \"\"quote\"\"\"";
        let docs = parse_indicator_csv(text, "c", "n").unwrap();
        assert_eq!(docs[0].lines, [4, 8, 10]);
        assert_eq!(docs[0].snapshot.observations[0].footnote, "two\r\nlines");
        assert_eq!(docs[0].snapshot.observations[1].ref_area, "PHL");
        assert_eq!(docs[0].snapshot.observations[2].footnote, "a \"quote\"");
        let err = parse_indicator_csv(
            "\n\nINDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE\r\n\r\nX,IND,\"2024\n\",1\r\n\nX,IND,2024,z",
            "c",
            "n",
        )
        .unwrap_err();
        assert_eq!(
            (err.line, err.column.as_deref()),
            (Some(8), Some("OBS_VALUE"))
        );
    }

    #[test]
    fn locate_maps_violation_fields_to_line_and_column() {
        let text = "\
indicator,ref_area,time_period,SEX,AGE,value,unit,comment

X,IND,2024,F,Y15T24,1,persons,
X,PHL,2024,,_T,2,persons,
";
        let docs = parse_indicator_csv(text, "c", "n").unwrap();
        let doc = &docs[0];
        assert_eq!(doc.line_of(1), Some(4));
        assert_eq!(doc.line_of(2), None);
        let cell = |f: &str| doc.locate(f).map(|c| (c.line, c.column));
        assert_eq!(
            cell("indicator_snapshot.observations[1].ref_area"),
            Some((4, Some("ref_area".into())))
        );
        assert_eq!(
            cell("indicator_snapshot.observations[0].dimensions[1].value"),
            Some((3, Some("AGE".into())))
        );
        // The second row has no SEX: its first dimension is AGE.
        assert_eq!(
            cell("observations[1].dimensions[0].id"),
            Some((4, Some("AGE".into())))
        );
        assert_eq!(cell("indicator_snapshot.observations[1]"), Some((4, None)));
        assert_eq!(
            cell("indicator_snapshot.observations[1].dimensions"),
            Some((4, None))
        );
        assert_eq!(
            cell("indicator_snapshot.observations[0].obs_value"),
            Some((3, Some("value".into())))
        );
        assert_eq!(
            cell("indicator_snapshot.observations[0].footnote"),
            Some((3, Some("comment".into())))
        );
        // Not in the file at all: the canonical name.
        assert_eq!(
            cell("indicator_snapshot.observations[0].unit_mult"),
            Some((3, Some("UNIT_MULT".into())))
        );
        assert_eq!(
            cell("indicator_snapshot.indicator"),
            Some((3, Some("indicator".into())))
        );
        assert_eq!(cell("indicator_snapshot.observations[9].ref_area"), None);
        assert_eq!(cell("indicator_snapshot.observations[x]"), None);
        assert_eq!(cell("policy_summary.title"), None);
        let err = doc.error_at(
            "indicator_snapshot.observations[1].ref_area",
            "\"PHL\" is not a member state of c",
        );
        assert_eq!(
            err.to_string(),
            "line 4, column ref_area: \"PHL\" is not a member state of c"
        );
        assert_eq!(doc.error_at("nowhere", "m").to_string(), "m");
    }

    #[test]
    fn column_for_field_names_canonical_columns() {
        for (field, column) in [
            ("ref_area", Some("REF_AREA")),
            (
                "indicator_snapshot.observations[3].time_period",
                Some("TIME_PERIOD"),
            ),
            ("observations[0].obs_value", Some("OBS_VALUE")),
            ("unit_measure", Some("UNIT_MEASURE")),
            ("unit_mult", Some("UNIT_MULT")),
            ("obs_status", Some("OBS_STATUS")),
            ("conf_status", Some("CONF_STATUS")),
            ("action", Some("ACTION")),
            ("footnote", Some("FOOTNOTE")),
            ("source", Some("SOURCE")),
            ("indicator_snapshot.indicator", Some("INDICATOR")),
            (
                "indicator_snapshot.observations[3].dimensions[0].value",
                None,
            ),
            ("indicator_snapshot.observations[3].dimensions", None),
            ("indicator_snapshot.observations[3]", None),
            ("", None),
        ] {
            assert_eq!(column_for_field(field), column, "{field}");
        }
    }

    fn shipped() -> Catalogue {
        Catalogue::from_toml(rcpfed_core::catalogue::embedded_catalogue_toml()).unwrap()
    }

    /// The observation's key as the view keys it (defaults filled, id order).
    fn key(o: &Observation) -> String {
        let dims: Vec<(String, String)> = o
            .dimensions
            .iter()
            .map(|d| (d.id.clone(), d.value.clone()))
            .collect();
        format!(
            "{} {} {}",
            o.ref_area,
            o.time_period,
            obskey::dimension_key(&dims, &[]).0
        )
    }

    #[test]
    fn blank_optional_dimensions_are_filled_with_their_defaults_in_both_formats() {
        let simple = "\
INDICATOR,REF_AREA,TIME_PERIOD,SEX,AGE,COUNTERPART_AREA,OBS_VALUE,UNIT_MEASURE,UNIT_MULT
MIG_STOCK,LKA,2020,_T,_T,,40.5,persons,6
MIG_STOCK,LKA,2020,,,,41.0,persons,6
MIG_STOCK,LKA,2020,F,,,20.0,persons,6
MIG_STOCK,LKA,2020,,,IND,3.0,persons,6
REMIT_INFLOW,LKA,2020,,,,7.0,current USD,9
";
        let sdmx = "\
STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,SEX,AGE,COUNTERPART_AREA,OBS_VALUE,UNIT_MEASURE,UNIT_MULT
dataflow,GFMD:MIG_STOCK(1.0.0),I,LKA,2020,_T,_T,,40.5,persons,6
dataflow,GFMD:MIG_STOCK(1.0.0),I,LKA,2020,,,,41.0,persons,6
dataflow,GFMD:MIG_STOCK(1.0.0),I,LKA,2020,F,,,20.0,persons,6
dataflow,GFMD:MIG_STOCK(1.0.0),I,LKA,2020,,,IND,3.0,persons,6
dataflow,GFMD:REMIT_INFLOW(1.0.0),I,LKA,2020,,,,7.0,current USD,9
";
        let cat = shipped();
        for (text, parse) in [
            (simple, parse_indicator_csv as fn(&str, &str, &str) -> _),
            (sdmx, parse_sdmx_csv),
        ] {
            let mut docs = parse(text, "colombo", "stock").unwrap();
            // As read, the blank row has no dimensions: another key than the explicit total.
            let stock = &docs[0].snapshot.observations;
            assert_ne!(key(&stock[0]), key(&stock[1]));
            assert_eq!(docs[0].fill_defaults(&cat), 3);
            assert_eq!(
                docs[1].fill_defaults(&cat),
                0,
                "REMIT_INFLOW has no defaults"
            );
            let stock = &docs[0].snapshot.observations;
            let keys: Vec<String> = stock.iter().map(key).collect();
            assert_eq!(
                keys,
                [
                    "LKA 2020 AGE=_T;SEX=_T",
                    "LKA 2020 AGE=_T;SEX=_T",
                    "LKA 2020 AGE=_T;SEX=F",
                    // COUNTERPART_AREA has no default: it stays as given.
                    "LKA 2020 AGE=_T;COUNTERPART_AREA=IND;SEX=_T",
                ]
            );
            // The cells the file gives keep their positions; the defaults come after them.
            assert_eq!(stock[2].dimensions[0].id, "SEX");
            assert_eq!(stock[2].dimensions[1].id, "AGE");
            assert_eq!(
                docs[0].locate("indicator_snapshot.observations[2].dimensions[0].value"),
                Some(CellRef {
                    line: 4,
                    column: Some("SEX".into())
                })
            );
            // Filling again changes nothing.
            assert_eq!(docs[0].fill_defaults(&cat), 0);
        }
        // The streaming reader's batches fill the same way.
        for text in [simple, sdmx] {
            let only_stock: String = text
                .lines()
                .filter(|l| !l.contains("REMIT_INFLOW"))
                .map(|l| format!("{l}\n"))
                .collect();
            let mut batches = crate::IndicatorCsvBatches::new(only_stock.as_bytes(), 3).unwrap();
            let mut first = batches.next().unwrap().unwrap();
            assert_eq!(first.fill_defaults(&cat), 2);
            assert_eq!(key(&first.observations[0]), key(&first.observations[1]));
        }
        // An indicator the catalogue does not define is left as read.
        let mut unknown = parse_indicator_csv(
            "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE\nNO_SUCH,LKA,2020,1\n",
            "c",
            "n",
        )
        .unwrap();
        assert_eq!(unknown[0].fill_defaults(&cat), 0);
        assert!(unknown[0].snapshot.observations[0].dimensions.is_empty());
    }

    #[test]
    fn one_pass_reports_every_problem_of_every_row() {
        let text = "\
INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE,UNIT_MULT,ACTION
MIG_STOCK,LKA,2020,1,6,append
MIG_STOCK,LKA,2021,abc,6,append
MIG_STOCK,,2022,1,x,append
MIG_STOCK,LKA,2023,1,6,upsert
MIG_STOCK,LKA,2024,2,6,
MIG_STOCK,LKA,2025
REMIT_INFLOW,LKA,2020,3,9,
";
        let report = read_any_indicator_csv(text, "colombo", "n").unwrap();
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "line 3, column OBS_VALUE: \"abc\" is not a number",
                "line 4, column REF_AREA: is empty; give an ISO 3166-1 alpha-3 code such as \"LKA\"",
                "line 4, column UNIT_MULT: \"x\" is not a whole number",
                "line 5, column ACTION: \"upsert\" is not an action; use append, replace or delete",
                "line 7: the row has 3 fields but the header has 6",
            ]
        );
        assert_eq!(report.total_problems, 5);
        // The rows without a problem, with their lines.
        assert_eq!(report.docs.len(), 2);
        assert_eq!(report.docs[0].lines, [2, 6]);
        assert_eq!(report.docs[1].lines, [8]);
        // The first-error parser stops at the first of them, as before.
        let first = parse_any_indicator_csv(text, "colombo", "n").unwrap_err();
        assert_eq!(first, report.problems[0]);

        // Bounded: at most MAX_IMPORT_PROBLEMS listed, every one counted.
        let mut many = String::from("INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE\n");
        for i in 0..150 {
            many.push_str(&format!("MIG_STOCK,LKA,{},bad\n", 1900 + i));
        }
        let report = read_any_indicator_csv(&many, "c", "n").unwrap();
        assert_eq!(report.problems.len(), MAX_IMPORT_PROBLEMS);
        assert_eq!(report.total_problems, 150);
        assert!(report.docs.is_empty());
        // A file that stops being CSV: what was read, then that problem last.
        let cut = "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE,SOURCE\n\
                   REMIT_INFLOW,LKA,2023,zz,x\n\
                   REMIT_INFLOW,BGD,2023,21.0,\"open\n";
        let report = read_any_indicator_csv(cut, "c", "n").unwrap();
        assert_eq!(report.total_problems, 2);
        assert!(
            report.problems[1].message.contains("never closed"),
            "{report:?}"
        );
        // No header, or nothing at all: the file cannot be read.
        assert!(read_any_indicator_csv("", "c", "n").is_err());
        assert!(
            read_any_indicator_csv("INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE\n", "c", "n").is_err()
        );
    }
}

//! Indicator observations written as SDMX-CSV-like files.

use crate::{ImportError, line_of};
use rcpfed_proto::v1::{Dimension, IndicatorSnapshot, Observation, ObservationAction};

/// One indicator snapshot read from CSV, with the logical document it is a revision of.
#[derive(Clone, Debug, PartialEq)]
pub struct IndicatorDoc {
    /// Logical document name: "regions/{node_id}/indicators/{indicator lowercased}/{name}".
    pub document: String,
    /// The body.
    pub snapshot: IndicatorSnapshot,
}

/// What a header cell means.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Col {
    Indicator,
    Dataflow,
    RefArea,
    TimePeriod,
    ObsValue,
    UnitMeasure,
    UnitMult,
    ObsStatus,
    Action,
    ConfStatus,
    Footnote,
    Source,
    Ignored,
    Dimension(String),
}

impl Col {
    /// The canonical name, used to detect the same column given twice.
    fn canonical(&self) -> &str {
        match self {
            Col::Indicator => "INDICATOR",
            Col::Dataflow => "DATAFLOW",
            Col::RefArea => "REF_AREA",
            Col::TimePeriod => "TIME_PERIOD",
            Col::ObsValue => "OBS_VALUE",
            Col::UnitMeasure => "UNIT_MEASURE",
            Col::UnitMult => "UNIT_MULT",
            Col::ObsStatus => "OBS_STATUS",
            Col::Action => "ACTION",
            Col::ConfStatus => "CONF_STATUS",
            Col::Footnote => "FOOTNOTE",
            Col::Source => "SOURCE",
            Col::Ignored => "",
            Col::Dimension(id) => id,
        }
    }
}

fn is_dimension_id(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn classify(cell: &str) -> Option<Col> {
    let upper = cell.to_ascii_uppercase();
    Some(match upper.as_str() {
        "INDICATOR" => Col::Indicator,
        "DATAFLOW" | "STRUCTURE_ID" => Col::Dataflow,
        "REF_AREA" => Col::RefArea,
        "TIME_PERIOD" => Col::TimePeriod,
        "OBS_VALUE" | "VALUE" => Col::ObsValue,
        "UNIT_MEASURE" | "UNIT" => Col::UnitMeasure,
        "UNIT_MULT" => Col::UnitMult,
        "OBS_STATUS" => Col::ObsStatus,
        "ACTION" => Col::Action,
        "CONF_STATUS" => Col::ConfStatus,
        "FOOTNOTE" | "COMMENT" => Col::Footnote,
        "SOURCE" => Col::Source,
        "PUBLISHED" | "STRUCTURE" => Col::Ignored,
        _ if is_dimension_id(cell) => Col::Dimension(cell.to_owned()),
        _ => return None,
    })
}

/// The indicator code inside an SDMX dataflow reference such as "RCPFED:REMIT_INFLOW(1.0)".
fn dataflow_code(cell: &str) -> &str {
    let last = cell.rsplit(':').next().unwrap_or(cell);
    last.split('(').next().unwrap_or(last).trim()
}

fn action_of(cell: &str) -> Option<ObservationAction> {
    match cell.to_ascii_lowercase().as_str() {
        "" | "append" | "a" => Some(ObservationAction::Append),
        "replace" | "r" => Some(ObservationAction::Replace),
        "delete" | "d" => Some(ObservationAction::Delete),
        _ => None,
    }
}

/// Positions of each meaningful column in the header.
struct Header {
    names: Vec<String>,
    cols: Vec<Col>,
}

impl Header {
    fn position(&self, col: &Col) -> Option<usize> {
        self.cols.iter().position(|c| c == col)
    }
}

fn parse_header(record: &csv::StringRecord, line: usize) -> Result<Header, ImportError> {
    let mut names = Vec::with_capacity(record.len());
    let mut cols: Vec<Col> = Vec::with_capacity(record.len());
    for cell in record {
        if cell.is_empty() {
            return Err(ImportError::at_line(
                line,
                format!(
                    "header column {} is empty; every column needs a name",
                    names.len() + 1
                ),
            ));
        }
        let Some(col) = classify(cell) else {
            return Err(ImportError::at_cell(
                line,
                cell,
                format!(
                    "unknown column {cell:?}; expected INDICATOR, REF_AREA, TIME_PERIOD, OBS_VALUE, \
                     UNIT_MEASURE, UNIT_MULT, OBS_STATUS, ACTION, CONF_STATUS, FOOTNOTE, SOURCE, or \
                     a disaggregation dimension in upper case such as SEX"
                ),
            ));
        };
        if col != Col::Ignored && cols.contains(&col) {
            return Err(ImportError::at_cell(
                line,
                cell,
                format!("column {} is given twice", col.canonical()),
            ));
        }
        names.push(cell.to_owned());
        cols.push(col);
    }
    let header = Header { names, cols };
    let has_indicator =
        header.position(&Col::Indicator).is_some() || header.position(&Col::Dataflow).is_some();
    let missing: Vec<&str> = [
        ("INDICATOR (or DATAFLOW)", has_indicator),
        ("REF_AREA", header.position(&Col::RefArea).is_some()),
        ("TIME_PERIOD", header.position(&Col::TimePeriod).is_some()),
        ("OBS_VALUE", header.position(&Col::ObsValue).is_some()),
    ]
    .into_iter()
    .filter(|(_, present)| !present)
    .map(|(name, _)| name)
    .collect();
    if !missing.is_empty() {
        return Err(ImportError::at_line(
            line,
            format!(
                "the header row lacks {}; the first row must name the columns",
                missing.join(", ")
            ),
        ));
    }
    Ok(header)
}

/// The 1-based line where a record starts. csv's own line counter and byte offset both count
/// from before the blank lines it skips, so skip them here.
fn line_at(text: &str, pos: &csv::Position) -> usize {
    let start = usize::try_from(pos.byte())
        .unwrap_or(usize::MAX)
        .min(text.len());
    let blanks = text.as_bytes()[start..]
        .iter()
        .take_while(|&&b| b == b'\n' || b == b'\r')
        .count();
    line_of(text, start + blanks)
}

fn csv_error(text: &str, e: &csv::Error) -> ImportError {
    match e.position() {
        Some(pos) => ImportError::at_line(line_at(text, pos), format!("not readable as CSV: {e}")),
        None => ImportError::file(format!("not readable as CSV: {e}")),
    }
}

/// Parses indicator observations written as CSV into one snapshot per indicator code, in order
/// of first appearance; observations keep the file's order.
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
/// `regions/{node_id}/indicators/{indicator lowercased}/{name}`.
pub fn parse_indicator_csv(
    text: &str,
    node_id: &str,
    name: &str,
) -> Result<Vec<IndicatorDoc>, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let (header_record, header_line) = loop {
        match records.next() {
            None => {
                return Err(ImportError::file(
                    "the file is empty; a header row naming the columns is required",
                ));
            }
            Some(Err(e)) => return Err(csv_error(text, &e)),
            Some(Ok(r)) if r.iter().all(str::is_empty) => continue,
            Some(Ok(r)) => {
                let line = r.position().map_or(1, |p| line_at(text, p));
                break (r, line);
            }
        }
    };
    let header = parse_header(&header_record, header_line)?;

    let mut docs: Vec<(String, Vec<Observation>)> = Vec::new();
    for record in records {
        let record = record.map_err(|e| csv_error(text, &e))?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let line = record.position().map_or(0, |p| line_at(text, p));
        if record.len() != header.cols.len() {
            return Err(ImportError::at_line(
                line,
                format!(
                    "the row has {} fields but the header has {}",
                    record.len(),
                    header.cols.len()
                ),
            ));
        }
        let (indicator, obs) = parse_row(&header, &record, line)?;
        match docs.iter_mut().find(|(code, _)| *code == indicator) {
            Some((_, list)) => list.push(obs),
            None => docs.push((indicator, vec![obs])),
        }
    }
    if docs.is_empty() {
        return Err(ImportError::file(
            "the file has a header but no observations",
        ));
    }
    Ok(docs
        .into_iter()
        .map(|(indicator, observations)| IndicatorDoc {
            document: format!(
                "regions/{node_id}/indicators/{}/{name}",
                indicator.to_ascii_lowercase()
            ),
            snapshot: IndicatorSnapshot {
                indicator,
                observations,
                chunks: None,
            },
        })
        .collect())
}

fn parse_row(
    header: &Header,
    record: &csv::StringRecord,
    line: usize,
) -> Result<(String, Observation), ImportError> {
    let mut indicator = None;
    let mut dataflow = None;
    let mut value_cell = None;
    let mut mult_cell = None;
    let mut action = ObservationAction::Append;
    let mut obs = Observation::default();
    for ((col, name), cell) in header.cols.iter().zip(&header.names).zip(record) {
        let err = |message: String| ImportError::at_cell(line, name, message);
        match col {
            Col::Indicator => indicator = Some((cell, name)),
            Col::Dataflow => dataflow = Some((dataflow_code(cell), name)),
            Col::RefArea => {
                if cell.is_empty() {
                    return Err(err(
                        "is empty; give an ISO 3166-1 alpha-3 code such as \"LKA\"".to_owned(),
                    ));
                }
                obs.ref_area = cell.to_owned();
            }
            Col::TimePeriod => {
                if cell.is_empty() {
                    return Err(err(
                        "is empty; give a period such as \"2024\" or \"2024-Q3\"".to_owned(),
                    ));
                }
                obs.time_period = cell.to_owned();
            }
            Col::ObsValue => value_cell = Some((cell, name)),
            Col::UnitMeasure => obs.unit_measure = cell.to_owned(),
            Col::UnitMult => mult_cell = Some((cell, name)),
            Col::ObsStatus => obs.obs_status = cell.to_owned(),
            Col::Action => {
                action = action_of(cell).ok_or_else(|| {
                    err(format!(
                        "{cell:?} is not an action; use append, replace or delete"
                    ))
                })?;
            }
            Col::ConfStatus => obs.conf_status = cell.to_owned(),
            Col::Footnote => obs.footnote = cell.to_owned(),
            Col::Source => obs.source = cell.to_owned(),
            Col::Ignored => {}
            Col::Dimension(id) => {
                if !cell.is_empty() {
                    obs.dimensions.push(Dimension {
                        id: id.clone(),
                        value: cell.to_owned(),
                    });
                }
            }
        }
    }
    obs.action = action as i32;
    let Some((code, code_column)) = indicator.or(dataflow) else {
        return Err(ImportError::at_line(
            line,
            "the row has no indicator column",
        ));
    };
    if code.is_empty() {
        return Err(ImportError::at_cell(
            line,
            code_column,
            "is empty; give an indicator code such as \"REMIT_INFLOW\"",
        ));
    }
    if let Some((cell, column)) = mult_cell
        && !cell.is_empty()
    {
        obs.unit_mult = cell.parse::<i32>().map_err(|_| {
            ImportError::at_cell(line, column, format!("{cell:?} is not a whole number"))
        })?;
    }
    if let Some((cell, column)) = value_cell {
        let delete = action == ObservationAction::Delete;
        obs.obs_value = match (cell.is_empty(), delete) {
            (true, true) => None,
            (true, false) => {
                return Err(ImportError::at_cell(
                    line,
                    column,
                    "is empty; append and replace rows need a value (only delete rows leave it empty)",
                ));
            }
            (false, true) => {
                return Err(ImportError::at_cell(
                    line,
                    column,
                    format!("{cell:?} is given on a delete row; leave the value empty"),
                ));
            }
            (false, false) => Some(cell.parse::<f64>().map_err(|_| {
                ImportError::at_cell(line, column, format!("{cell:?} is not a number"))
            })?),
        };
    }
    Ok((code.to_owned(), obs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const FIGURES_STYLE: &str = "\
indicator,ref_area,time_period,value,unit_mult,unit,obs_status,source,published
REMIT_INFLOW,IND,2024,129,9,current USD,E,World Bank,2024
MIG_STOCK,WLD,2024,304,6,persons,A,UN DESA,2025
REMIT_INFLOW,PHL,2024,40,9,current USD,E,World Bank,2024
";

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
}

//! Headers and rows of both indicator CSV formats: what each header cell means, and a record
//! turned into an observation (every cell checked, the errors of a row reported together).

use crate::ImportError;
use crate::columns::{Col, CsvFormat, check_duplicate, is_dimension_id};
use crate::sdmx;
use rcpfed_core::catalogue::{Catalogue, Frequency};
use rcpfed_core::obskey;
use rcpfed_proto::v1::{Dimension, Observation, ObservationAction};
use std::collections::BTreeMap;

fn classify_simple(cell: &str) -> Option<Col> {
    let known = [
        ("INDICATOR", Col::Indicator),
        ("DATAFLOW", Col::Dataflow),
        ("STRUCTURE_ID", Col::Dataflow),
        ("REF_AREA", Col::RefArea),
        ("TIME_PERIOD", Col::TimePeriod),
        ("OBS_VALUE", Col::ObsValue),
        ("VALUE", Col::ObsValue),
        ("UNIT_MEASURE", Col::UnitMeasure),
        ("UNIT", Col::UnitMeasure),
        ("UNIT_MULT", Col::UnitMult),
        ("OBS_STATUS", Col::ObsStatus),
        ("ACTION", Col::Action),
        ("CONF_STATUS", Col::ConfStatus),
        ("FOOTNOTE", Col::Footnote),
        ("COMMENT", Col::Footnote),
        ("SOURCE", Col::Source),
        ("PUBLISHED", Col::Ignored),
        ("STRUCTURE", Col::Ignored),
    ];
    if let Some((_, col)) = known
        .into_iter()
        .find(|(name, _)| cell.eq_ignore_ascii_case(name))
    {
        return Some(col);
    }
    is_dimension_id(cell).then(|| Col::Dimension(cell.to_owned()))
}

/// The indicator code inside an SDMX dataflow reference such as "RCPFED:REMIT_INFLOW(1.0)".
fn dataflow_code(cell: &str) -> &str {
    let last = cell.rsplit(':').next().unwrap_or(cell);
    last.split('(').next().unwrap_or(last).trim()
}

fn action_of(cell: &str) -> Option<ObservationAction> {
    let is = |names: &[&str]| names.iter().any(|n| cell.eq_ignore_ascii_case(n));
    if cell.is_empty() || is(&["append", "a"]) {
        Some(ObservationAction::Append)
    } else if is(&["replace", "r"]) {
        Some(ObservationAction::Replace)
    } else if is(&["delete", "d"]) {
        Some(ObservationAction::Delete)
    } else {
        None
    }
}

/// The header: what each column means.
pub(crate) struct Header {
    pub(crate) format: CsvFormat,
    /// The field separator (SDMX-CSV may use another than ',').
    pub(crate) delimiter: u8,
    /// Header cells as written (trimmed).
    pub(crate) names: Vec<String>,
    pub(crate) cols: Vec<Col>,
    /// Canonical column id → header cell as written.
    pub(crate) columns: BTreeMap<String, String>,
}

impl Header {
    /// A header with no columns, replaced before any row is read.
    pub(crate) fn placeholder() -> Header {
        Header {
            format: CsvFormat::Simple,
            delimiter: b',',
            names: Vec::new(),
            cols: Vec::new(),
            columns: BTreeMap::new(),
        }
    }

    fn position(&self, col: &Col) -> Option<usize> {
        self.cols.iter().position(|c| c == col)
    }

    /// The indicator column as written.
    pub(crate) fn indicator_column(&self) -> &str {
        [Col::Indicator, Col::Dataflow, Col::StructureId]
            .iter()
            .find_map(|c| self.position(c))
            .and_then(|i| self.names.get(i))
            .map_or("INDICATOR", String::as_str)
    }
}

/// Parses the header row of either format.
pub(crate) fn parse_header(
    record: &csv::ByteRecord,
    line: usize,
    format: CsvFormat,
    delimiter: u8,
) -> Result<Header, ImportError> {
    let mut names = Vec::with_capacity(record.len());
    for (i, raw) in record.iter().enumerate() {
        let cell = std::str::from_utf8(raw).map_err(|_| {
            ImportError::at_line(
                line,
                format!("header column {} is not valid UTF-8 text", i + 1),
            )
        })?;
        let cell = cell.trim();
        if cell.is_empty() {
            return Err(ImportError::at_line(
                line,
                format!(
                    "header column {} is empty; every column needs a name",
                    i + 1
                ),
            ));
        }
        names.push(cell.to_owned());
    }
    let cols = match format {
        CsvFormat::Simple => simple_columns(&names, line)?,
        CsvFormat::SdmxCsv => sdmx::header_columns(&names, line)?,
    };
    let columns = cols
        .iter()
        .zip(&names)
        .filter(|(c, _)| **c != Col::Ignored)
        .map(|(c, n)| (c.canonical().to_owned(), n.clone()))
        .collect();
    Ok(Header {
        format,
        delimiter,
        names,
        cols,
        columns,
    })
}

fn simple_columns(names: &[String], line: usize) -> Result<Vec<Col>, ImportError> {
    let mut cols: Vec<Col> = Vec::with_capacity(names.len());
    for cell in names {
        let Some(col) = classify_simple(cell) else {
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
        check_duplicate(&cols, names, &col, line)?;
        cols.push(col);
    }
    let has = |c: &Col| cols.contains(c);
    let missing: Vec<&str> = [
        (
            "INDICATOR (or DATAFLOW)",
            has(&Col::Indicator) || has(&Col::Dataflow),
        ),
        ("REF_AREA", has(&Col::RefArea)),
        ("TIME_PERIOD", has(&Col::TimePeriod)),
        ("OBS_VALUE", has(&Col::ObsValue)),
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
    Ok(cols)
}

/// Clears every field of `obs`, keeping the strings' capacity; `dimensions` is left to the
/// caller, which reuses its entries.
fn reset(obs: &mut Observation) {
    // Exhaustive on purpose: a new field must be reset here too.
    let Observation {
        action,
        ref_area,
        time_period,
        dimensions: _,
        obs_value,
        obs_status,
        unit_measure,
        unit_mult,
        conf_status,
        footnote,
        source,
    } = obs;
    *action = 0;
    *obs_value = None;
    *unit_mult = 0;
    for s in [
        ref_area,
        time_period,
        obs_status,
        unit_measure,
        conf_status,
        footnote,
        source,
    ] {
        s.clear();
    }
}

fn set(field: &mut String, value: &str) {
    field.clear();
    field.push_str(value);
}

/// Parses one data row (with as many fields as the header) into `obs` (whose strings are
/// reused) and returns its indicator code; the error is the row's first problem, naming the
/// line and the column as written (see [`parse_row_all`] for all of them).
pub(crate) fn parse_row<'r>(
    header: &Header,
    record: &'r csv::ByteRecord,
    line: usize,
    obs: &mut Observation,
) -> Result<&'r str, ImportError> {
    let mut problems = Vec::new();
    match parse_row_all(header, record, line, obs, &mut problems) {
        Some(code) if problems.is_empty() => Ok(code),
        _ => Err(problems
            .into_iter()
            .next()
            .unwrap_or_else(|| ImportError::at_line(line, "the row cannot be read"))),
    }
}

/// Parses one data row into `obs` like [`parse_row`], adding every problem of the row to
/// `problems` (in column order, then the checks across columns) instead of stopping at the
/// first; returns the indicator code when the row has one. The row is usable only if nothing
/// was added.
pub(crate) fn parse_row_all<'r>(
    header: &Header,
    record: &'r csv::ByteRecord,
    line: usize,
    obs: &mut Observation,
    problems: &mut Vec<ImportError>,
) -> Option<&'r str> {
    if record.len() != header.cols.len() {
        problems.push(ImportError::at_line(
            line,
            format!(
                "the row has {} fields but the header has {}",
                record.len(),
                header.cols.len()
            ),
        ));
        return None;
    }
    let before = problems.len();
    let mut pass = RowPass::new(line, header.format == CsvFormat::SdmxCsv);
    // One UTF-8 check of the whole record; a field boundary inside a character (or invalid
    // text) falls back to checking the field alone, which names the column.
    let all = std::str::from_utf8(record.as_slice()).ok();
    reset(obs);
    let columns = header.cols.iter().zip(&header.names).zip(record.iter());
    for (i, ((col, name), raw)) in columns.enumerate() {
        let cell = match all.and_then(|a| a.get(record.range(i)?)) {
            Some(cell) => cell,
            None => match std::str::from_utf8(raw) {
                Ok(cell) => cell,
                Err(_) => {
                    problems.push(ImportError::at_cell(line, name, "is not valid UTF-8 text"));
                    if *col == Col::Action {
                        pass.action_read = false;
                    }
                    continue;
                }
            },
        }
        .trim();
        pass.read_cell(col, name, cell, obs, problems);
    }
    pass.finish(header, obs, problems, before)
}

/// One row's column pass: the cells that fill `obs` directly are set as they come; those
/// judged with the rest of the row (indicator, value, UNIT_MULT, FREQ, action) are kept
/// until [`RowPass::finish`].
struct RowPass<'r, 'h> {
    line: usize,
    sdmx: bool,
    /// Each cell with its column's name.
    indicator: Option<(&'r str, &'h str)>,
    dataflow: Option<(&'r str, &'h str)>,
    value_cell: Option<(&'r str, &'h str)>,
    mult_cell: Option<(&'r str, &'h str)>,
    freq_cell: Option<(&'r str, &'h str)>,
    action: ObservationAction,
    /// False when the action cell could not be read (the value is then not judged).
    action_read: bool,
    /// Dimensions set so far (the vector's slots are reused row to row).
    dims: usize,
}

impl<'r, 'h> RowPass<'r, 'h> {
    fn new(line: usize, sdmx: bool) -> Self {
        RowPass {
            line,
            sdmx,
            indicator: None,
            dataflow: None,
            value_cell: None,
            mult_cell: None,
            freq_cell: None,
            action: ObservationAction::Append,
            action_read: true,
            dims: 0,
        }
    }

    /// Reads the trimmed `cell` of the column `col` named `name`.
    fn read_cell(
        &mut self,
        col: &'h Col,
        name: &'h str,
        cell: &'r str,
        obs: &mut Observation,
        problems: &mut Vec<ImportError>,
    ) {
        let sdmx = self.sdmx;
        let err = |message: String| ImportError::at_cell(self.line, name, message);
        // SDMX-CSV `labels=both` writes coded values as "CODE: Name".
        let code = if sdmx { sdmx::strip_label(cell) } else { cell };
        let no_wildcards = if sdmx { sdmx::NO_WILDCARDS } else { "" };
        match col {
            Col::Indicator => self.indicator = Some((cell, name)),
            Col::Dataflow => self.dataflow = Some((dataflow_code(cell), name)),
            Col::StructureId => match sdmx::structure_id_code(cell) {
                Ok(id) => self.dataflow = Some((id, name)),
                Err(message) => problems.push(err(message)),
            },
            Col::Structure => {
                if let Err(message) = sdmx::check_structure(cell) {
                    problems.push(err(message));
                }
            }
            Col::RefArea => {
                if code.is_empty() {
                    problems.push(err(format!(
                        "is empty; give an ISO 3166-1 alpha-3 code such as \"LKA\"{no_wildcards}"
                    )));
                }
                set(&mut obs.ref_area, code);
            }
            Col::TimePeriod => {
                if code.is_empty() {
                    problems.push(err(format!(
                        "is empty; give a period such as \"2024\" or \"2024-Q3\"{no_wildcards}"
                    )));
                }
                set(&mut obs.time_period, code);
            }
            Col::ObsValue => self.value_cell = Some((cell, name)),
            Col::UnitMeasure => set(&mut obs.unit_measure, code),
            Col::UnitMult => self.mult_cell = Some((code, name)),
            Col::ObsStatus => set(&mut obs.obs_status, code),
            Col::Action => match self.read_action(cell, code, name) {
                Ok(a) => self.action = a,
                Err(e) => {
                    problems.push(e);
                    self.action_read = false;
                }
            },
            Col::ConfStatus => set(&mut obs.conf_status, code),
            Col::Footnote => set(&mut obs.footnote, cell),
            Col::Source => set(&mut obs.source, cell),
            Col::Freq => self.freq_cell = Some((code, name)),
            Col::Ignored => {}
            Col::Dimension(id) => {
                if !code.is_empty() {
                    match obs.dimensions.get_mut(self.dims) {
                        Some(d) => {
                            set(&mut d.id, id);
                            set(&mut d.value, code);
                        }
                        None => obs.dimensions.push(Dimension {
                            id: id.clone(),
                            value: code.to_owned(),
                        }),
                    }
                    self.dims += 1;
                }
            }
        }
    }

    /// The action of an ACTION cell: SDMX-CSV's letters, or the simple format's words.
    fn read_action(
        &self,
        cell: &str,
        code: &str,
        name: &str,
    ) -> Result<ObservationAction, ImportError> {
        let err = |message: String| ImportError::at_cell(self.line, name, message);
        if self.sdmx {
            sdmx::action_of(code).map(|a| a.to_proto()).ok_or_else(|| {
                err(format!(
                    "{cell:?} is not an SDMX-CSV action; use I (information, read as \
                     append), A (append), R (replace) or D (delete)"
                ))
            })
        } else {
            action_of(cell).ok_or_else(|| {
                err(format!(
                    "{cell:?} is not an action; use append, replace or delete"
                ))
            })
        }
    }

    /// The checks across columns, once every cell is read; the row's indicator code when it
    /// has one. `before` is the number of problems before this row.
    fn finish(
        self,
        header: &Header,
        obs: &mut Observation,
        problems: &mut Vec<ImportError>,
        before: usize,
    ) -> Option<&'r str> {
        obs.dimensions.truncate(self.dims);
        obs.action = self.action as i32;
        let delete = self.action == ObservationAction::Delete;
        if self.sdmx && delete {
            clear_delete_marks(obs);
        }
        let code = self.indicator_code(problems, before);
        if let Some((cell, column)) = self.mult_cell
            && !cell.is_empty()
            && !(self.sdmx && delete && cell == "-")
        {
            match cell.parse::<i32>() {
                Ok(mult) => obs.unit_mult = mult,
                Err(_) => problems.push(ImportError::at_cell(
                    self.line,
                    column,
                    format!("{cell:?} is not a whole number"),
                )),
            }
        }
        // Whether a value belongs here depends on the action: not judged when it is unreadable.
        if let Some((cell, column)) = self.value_cell
            && self.action_read
        {
            match parse_value(header, cell, delete) {
                Ok(value) => obs.obs_value = value,
                Err(message) => problems.push(ImportError::at_cell(self.line, column, message)),
            }
        }
        if let Some((freq, column)) = self.freq_cell {
            check_freq(self.line, freq, column, obs, problems);
        }
        code
    }

    /// The indicator code from the INDICATOR or dataflow column; a missing or empty one is a
    /// problem.
    fn indicator_code(&self, problems: &mut Vec<ImportError>, before: usize) -> Option<&'r str> {
        match self.indicator.or(self.dataflow) {
            Some((code, code_column)) => {
                if code.is_empty() {
                    problems.push(ImportError::at_cell(
                        self.line,
                        code_column,
                        "is empty; give an indicator code such as \"REMIT_INFLOW\"",
                    ));
                }
                Some(code)
            }
            // A STRUCTURE_ID cell that could not be read has said so already.
            None if problems.len() > before => None,
            None => {
                problems.push(ImportError::at_line(
                    self.line,
                    "the row has no indicator column",
                ));
                None
            }
        }
    }
}

/// On a delete row SDMX-CSV marks values to delete with "-"; rcpfed deletes the whole
/// observation, so the marks carry nothing.
fn clear_delete_marks(obs: &mut Observation) {
    for s in [
        &mut obs.unit_measure,
        &mut obs.obs_status,
        &mut obs.conf_status,
        &mut obs.footnote,
        &mut obs.source,
    ] {
        if s == "-" {
            s.clear();
        }
    }
}

/// A FREQ cell, when given, must be the frequency TIME_PERIOD is written in.
fn check_freq(
    line: usize,
    freq: &str,
    column: &str,
    obs: &Observation,
    problems: &mut Vec<ImportError>,
) {
    if !freq.is_empty()
        && let Some(f) = Frequency::of_time_period(&obs.time_period)
        && f.code() != freq
    {
        problems.push(ImportError::at_cell(
            line,
            column,
            format!(
                "{freq:?} does not match TIME_PERIOD {:?}, which is {} ({}); export the \
                 periods as recorded (SDMX timeFormat=original)",
                obs.time_period,
                f.word(),
                f.code()
            ),
        ));
    }
}

/// OBS_VALUE: required on append and replace rows, empty on delete rows (SDMX-CSV also
/// allows its "-" mark there). `NaN` and `inf` are numbers here on purpose.
fn parse_value(header: &Header, cell: &str, delete: bool) -> Result<Option<f64>, String> {
    let sdmx = header.format == CsvFormat::SdmxCsv;
    match (cell.is_empty(), delete) {
        (true, true) => Ok(None),
        (false, true) if sdmx && cell == "-" => Ok(None),
        (true, false) if sdmx => Err(
            "is empty; append and replace rows need a value (only D rows leave it empty; rows \
             that set attributes of partial keys are not supported)"
                .to_owned(),
        ),
        (true, false) => Err(
            "is empty; append and replace rows need a value (only delete rows leave it empty)"
                .to_owned(),
        ),
        (false, true) if sdmx => Err(format!(
            "{cell:?} is given on a D (delete) row; leave it empty or \"-\": the whole \
             observation is deleted"
        )),
        (false, true) => Err(format!(
            "{cell:?} is given on a delete row; leave the value empty"
        )),
        (false, false) => match cell.parse::<f64>() {
            Ok(v) => Ok(Some(v)),
            // A semicolon- or tab-separated SDMX-CSV file may use the decimal comma.
            Err(_)
                if sdmx
                    && header.delimiter != b','
                    && cell.bytes().filter(|&b| b == b',').count() == 1
                    && !cell.contains('.') =>
            {
                cell.replace(',', ".")
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| format!("{cell:?} is not a number"))
            }
            Err(_) => Err(format!("{cell:?} is not a number")),
        },
    }
}

/// Fills in, in each of `observations` (all of `indicator`), every optional dimension that
/// `catalogue` defaults and the row leaves blank, after the dimensions the row gives
/// ([`rcpfed_core::obskey`]): what the node signs, so a blank cell and the explicit default
/// are one key. An indicator the catalogue does not define is left as read (the node refuses
/// it). Returns how many observations got a default.
pub fn fill_defaults(
    catalogue: &Catalogue,
    indicator: &str,
    observations: &mut [Observation],
) -> usize {
    let Some(defaults) = catalogue.indicator(indicator).map(|i| i.key_defaults()) else {
        return 0;
    };
    if defaults.is_empty() {
        return 0;
    }
    let mut changed = 0;
    for o in observations {
        let missing: Vec<Dimension> =
            obskey::missing_defaults(&defaults, o.dimensions.iter().map(|d| d.id.as_str()))
                .map(|(id, value)| Dimension {
                    id: id.clone(),
                    value: value.clone(),
                })
                .collect();
        if !missing.is_empty() {
            o.dimensions.extend(missing);
            changed += 1;
        }
    }
    changed
}

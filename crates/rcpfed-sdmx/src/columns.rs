//! The columns indicator CSV files are made of: what a header cell can mean, and the rules on
//! columns that SDMX-CSV and rcpfed's simple SDMX-CSV-like format (read by rcpfed-import)
//! share. Both formats name their columns by SDMX concept ids (`REF_AREA`, `OBS_VALUE`, …);
//! the simple format adds `INDICATOR` and `DATAFLOW`.

/// An error about one cell of a file: its 1-based line, the column as written in the header,
/// and what is wrong in plain words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellError {
    /// 1-based line of the file.
    pub line: usize,
    /// The column as written in the header.
    pub column: String,
    /// What is wrong, in plain words.
    pub message: String,
}

impl CellError {
    /// An error about the cell of `column` on `line`.
    pub fn new(line: usize, column: &str, message: impl Into<String>) -> Self {
        CellError {
            line,
            column: column.to_owned(),
            message: message.into(),
        }
    }
}

/// What a header cell means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    /// Simple format (rcpfed-import): `INDICATOR`.
    Indicator,
    /// Simple format (rcpfed-import): `DATAFLOW` (or `STRUCTURE_ID`), whose code is taken leniently.
    Dataflow,
    /// SDMX-CSV: `STRUCTURE`, checked on every row.
    Structure,
    /// SDMX-CSV: `STRUCTURE_ID`, an `AGENCY:ID(VERSION)` reference.
    StructureId,
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
    /// SDMX-CSV: `FREQ`, checked against the TIME_PERIOD's format and not kept.
    Freq,
    Ignored,
    Dimension(String),
}

impl Column {
    /// The canonical name, used to detect the same column given twice.
    pub fn canonical(&self) -> &str {
        match self {
            Column::Indicator => "INDICATOR",
            Column::Dataflow => "DATAFLOW",
            Column::Structure => "STRUCTURE",
            Column::StructureId => "STRUCTURE_ID",
            Column::RefArea => "REF_AREA",
            Column::TimePeriod => "TIME_PERIOD",
            Column::ObsValue => "OBS_VALUE",
            Column::UnitMeasure => "UNIT_MEASURE",
            Column::UnitMult => "UNIT_MULT",
            Column::ObsStatus => "OBS_STATUS",
            Column::Action => "ACTION",
            Column::ConfStatus => "CONF_STATUS",
            Column::Footnote => "FOOTNOTE",
            Column::Source => "SOURCE",
            Column::Freq => "FREQ",
            Column::Ignored => "",
            Column::Dimension(id) => id,
        }
    }
}

/// Refuses a column given twice (`cols` so far, `col` at index `cols.len()`).
pub fn check_duplicate(
    cols: &[Column],
    names: &[String],
    col: &Column,
    line: usize,
) -> Result<(), CellError> {
    if *col == Column::Ignored {
        return Ok(());
    }
    match cols.iter().position(|c| c == col) {
        Some(first) => {
            let name = names.get(cols.len()).map_or("", String::as_str);
            Err(CellError::new(
                line,
                name,
                format!(
                    "column {} is given twice (columns {} and {})",
                    col.canonical(),
                    first + 1,
                    cols.len() + 1
                ),
            ))
        }
        None => Ok(()),
    }
}

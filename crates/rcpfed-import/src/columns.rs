//! The columns both indicator CSV formats are made of: what a header cell can mean, and the
//! rules on columns that the simple format and SDMX-CSV share. The lowest layer of the CSV
//! importers: it uses none of them.

use crate::ImportError;

/// The two indicator CSV formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvFormat {
    /// The project's simple format ([`crate::parse_indicator_csv`]): `INDICATOR,REF_AREA,…`.
    Simple,
    /// SDMX-CSV 2.0 data messages ([`crate::parse_sdmx_csv`]): `STRUCTURE,STRUCTURE_ID,…`.
    SdmxCsv,
}

/// What a header cell means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Col {
    /// Simple format: `INDICATOR`.
    Indicator,
    /// Simple format: `DATAFLOW` (or `STRUCTURE_ID`), whose code is taken leniently.
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

impl Col {
    /// The canonical name, used to detect the same column given twice.
    pub(crate) fn canonical(&self) -> &str {
        match self {
            Col::Indicator => "INDICATOR",
            Col::Dataflow => "DATAFLOW",
            Col::Structure => "STRUCTURE",
            Col::StructureId => "STRUCTURE_ID",
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
            Col::Freq => "FREQ",
            Col::Ignored => "",
            Col::Dimension(id) => id,
        }
    }
}

/// The one rule for how a dimension id is written, shared with the node's and the hub's checks.
pub(crate) use rcpfed_core::validate::is_dimension_id;

/// Refuses a column given twice (`cols` so far, `col` at index `cols.len()`).
pub(crate) fn check_duplicate(
    cols: &[Col],
    names: &[String],
    col: &Col,
    line: usize,
) -> Result<(), ImportError> {
    if *col == Col::Ignored {
        return Ok(());
    }
    match cols.iter().position(|c| c == col) {
        Some(first) => {
            let name = names.get(cols.len()).map_or("", String::as_str);
            Err(ImportError::at_cell(
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

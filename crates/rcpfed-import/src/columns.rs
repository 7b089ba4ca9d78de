//! The columns both indicator CSV formats are made of. What a header cell can mean and the rule
//! against a column given twice are shared with the SDMX-CSV reading rules in rcpfed-sdmx; the
//! choice of format is the importer's.

pub(crate) use rcpfed_sdmx::columns::{Column as Col, check_duplicate};

/// The one rule for how a dimension id is written, shared with the node's and the hub's checks.
pub(crate) use rcpfed_core::codes::is_dimension_id;

/// The two indicator CSV formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvFormat {
    /// The project's simple format ([`crate::parse_indicator_csv`]): `INDICATOR,REF_AREA,…`.
    Simple,
    /// SDMX-CSV 2.0 data messages ([`crate::parse_sdmx_csv`]): `STRUCTURE,STRUCTURE_ID,…`.
    SdmxCsv,
}

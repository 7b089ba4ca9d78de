//! Human file formats to protobuf statement bodies.
//!
//! Secretariats write policy summaries as TOML ([`parse_policy_toml`]) and indicator
//! observations as CSV: the project's simple SDMX-CSV-like format ([`parse_indicator_csv`]) or
//! SDMX-CSV 2.0 data messages as statistical systems export them ([`parse_sdmx_csv`], with the
//! SDMX-CSV rules of [`rcpfed_sdmx::csv_read`]); [`parse_any_indicator_csv`] reads either. The
//! parsers are pure functions on `&str` (no I/O, no clock), so they can be fuzzed; errors name
//! the line and, for CSV, the column ([`ImportError`]). Every observation keeps its line
//! ([`IndicatorDoc::lines`]), so a receiver's violation on
//! `indicator_snapshot.observations[i].ref_area` can be reported as "line N, column REF_AREA"
//! ([`IndicatorDoc::locate`], [`IndicatorDoc::error_at`]).
//!
//! Large files are read in batches without holding them in memory
//! ([`IndicatorCsvBatches`], [`read_indicator_csv_streaming`]), and [`synthetic_indicator_csv`]
//! writes clearly synthetic load-test files that pass the catalogue's validation.
//!
//! API boundary: the importers check syntax and types (a value is a number, a status is one of
//! the four words, a digest is hex). Federation rules (member states, catalogue codes, finite
//! values, dates) are the validator's business on the receiving side; in particular `NaN` and
//! `inf` parse here as numbers so that the receiver's validation can be exercised.
//!
//! [`sample`] embeds the demo's bundled data (`data/sample/`).
//!
//! An edge crate: its products are the protobuf messages the CLI sends to a node's gRPC API
//! (`PublishDocument` bodies, `PublishSnapshot` batches) and the benchmark feeds to it, so it
//! builds them directly, as `rcpfed_proto::v1::Observation` rows. Converting to core's domain
//! `Observation` first would only add a second conversion on the way to the wire; the rules
//! it applies (catalogue defaults, the SDMX-CSV reading) are core's and rcpfed-sdmx's, in
//! domain types.

mod columns;
mod csv_import;
mod policy;
mod reader;
mod row;
pub mod sample;
mod synthetic;

// The SDMX-CSV header and cell rules, applied by the CSV engine here.
use rcpfed_sdmx::csv_read as sdmx;

pub use columns::CsvFormat;
pub use csv_import::{
    CellRef, ImportReport, IndicatorDoc, MAX_IMPORT_PROBLEMS, column_for_field, indicator_document,
    is_sdmx_csv, parse_any_indicator_csv, parse_indicator_csv, parse_sdmx_csv,
    read_any_indicator_csv,
};
pub use policy::{PolicyDoc, parse_policy_toml};
pub use reader::{
    IndicatorCsvBatches, ObservationBatch, StreamSummary, read_indicator_csv_streaming,
};
pub use row::fill_defaults;
pub use synthetic::{
    SYNTHETIC_NODE, SYNTHETIC_SOURCE, SyntheticPlan, synthetic_indicator_csv, synthetic_plan,
};

/// Why a file could not be imported: where (1-based line, CSV column) and what, in plain words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportError {
    /// 1-based line of the file, when known.
    pub line: Option<usize>,
    /// The CSV column (as written in the header), when the error is about one cell.
    pub column: Option<String>,
    /// What is wrong, in plain words.
    pub message: String,
}

impl ImportError {
    /// An error about the whole file.
    pub fn file(message: impl Into<String>) -> Self {
        ImportError {
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// An error about one line.
    pub fn at_line(line: usize, message: impl Into<String>) -> Self {
        ImportError {
            line: Some(line),
            column: None,
            message: message.into(),
        }
    }

    /// An error about one cell.
    pub fn at_cell(line: usize, column: &str, message: impl Into<String>) -> Self {
        ImportError {
            line: Some(line),
            column: Some(column.to_owned()),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, &self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            (None, Some(column)) => write!(f, "column {column}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ImportError {}

impl From<rcpfed_sdmx::columns::CellError> for ImportError {
    fn from(e: rcpfed_sdmx::columns::CellError) -> Self {
        ImportError {
            line: Some(e.line),
            column: Some(e.column),
            message: e.message,
        }
    }
}

/// The 1-based line of byte offset `offset` in `text` (clamped to the text).
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

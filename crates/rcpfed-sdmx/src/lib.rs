//! SDMX reading and writing, in one place and without I/O.
//!
//! Reading ([`csv_read`], [`columns`]): how an SDMX-CSV 2.0 data message's header and cells
//! are understood when a secretariat publishes one; rcpfed-import's CSV engine applies these
//! rules row by row.
//!
//! Writing, from stored observation versions ([`rcpfed_core::versions::ObservationRow`]):
//! - data messages, all with the [`layout`] of [`SdmxStructure`]: SDMX-CSV 2.0
//!   ([`csv_write`]), SDMX-JSON 2.0 and 1.0 ([`json`]), SDMX-ML 2.1 generic and
//!   structure-specific ([`data`], which also picks any of them by [`DataFormat`]);
//! - structure messages (dataflows, data structure definitions, codelists, concept and data
//!   provider schemes) in SDMX-ML 2.1, built from the catalogue and the member list
//!   ([`structure`]), with the SDMX-ML helpers they share with the data messages ([`xml`]).
//!
//! The gRPC `ExportSdmx` RPC and the SDMX REST listener (rcpfed-grpc) page through the store
//! and hand each row to these writers; the exact bytes are tested here.
//!
//! Types: rows are core's domain `ObservationRow`s and the SDMX-CSV reader's actions are
//! core's `ObservationAction`. The catalogue comes in as the stored `CatalogueDocument`
//! (protobuf) on purpose: the structures render the version in force as it was logged, without
//! judging it again. Core's `Catalogue` exists only for a document that passes this build's
//! consistency rules (`Catalogue::from_document`), and a node serves versions it mirrored under
//! the rules of its build at the time (the reason the key rule reads logged versions leniently,
//! `KeyRule::from_catalogue_payload`); converting would turn a rule change into failed
//! exports.

pub mod columns;
pub mod csv_read;
pub mod csv_write;
pub mod data;
pub mod json;
pub mod layout;
pub mod structure;
#[cfg(test)]
mod test_support;
pub mod xml;

pub use csv_write::{csv_field, csv_header, csv_row};
pub use data::{DataFormat, DataWriter, XmlDataWriter};
pub use json::{JsonMeta, SdmxJsonWriter, json_string};
pub use layout::{
    CSV_MEDIA_TYPE, DEFAULT_VERSION, JSON_1_MEDIA_TYPE, JSON_MEDIA_TYPE, JSON_SCHEMA_URL,
    NOT_APPLICABLE, SdmxAction, SdmxDimension, SdmxError, SdmxStructure, dimension_value,
    is_sdmx_code, rfc3339_ms, sdmx_id,
};

//! The rcpfed domain, with no I/O: statements and their validation, DSSE envelopes, Ed25519
//! keys, the hub's receipts and the federation member file.
//!
//! API boundary: protobuf types (`rcpfed_proto`) appear only in the `wire` conversions
//! (`to_proto`/`from_proto`/`encode`/`decode` and [`wire`]); the rest of the crate, and its
//! callers, work with the domain types defined here.

pub mod admission;
pub mod bundle;
pub mod catalogue;
pub mod checkpoint;
pub mod chunks;
pub mod clock;
pub mod codes;
pub mod coherence;
pub mod dates;
pub mod digest;
pub mod dsse_json;
pub mod envelope;
pub mod feed;
pub mod hub_document;
pub mod iso3166;
pub mod keys;
pub mod limits;
pub mod logkeys;
pub mod members;
pub mod merkle;
pub mod note;
pub mod obskey;
pub mod receipt;
pub mod registry;
pub mod rejection;
pub mod spiffe;
pub mod statement;
pub mod suggest;
pub mod tiles;
pub mod validate;
pub mod versions;
pub mod wire;

pub use digest::Digest;
pub use envelope::SignedEnvelope;
pub use rejection::{RejectClass, Rejection, Violation};

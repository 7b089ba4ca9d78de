//! Generated types for the `rcpfed.v1` protocol. This crate is the edge: the domain crates
//! convert to and from these types and never pass them further in. The gRPC stubs and codec
//! are behind the `grpc` feature, so the domain crates build without tonic.

#![allow(clippy::all, missing_docs)]

#[cfg(feature = "grpc")]
pub mod codec;

/// The `rcpfed.v1` package: its messages, and with the `grpc` feature its gRPC clients and
/// servers.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/rcpfed.v1.rs"));
    #[cfg(feature = "grpc")]
    include!(concat!(env!("OUT_DIR"), "/grpc/rcpfed.v1.rs"));
}

/// Serialized `FileDescriptorSet` of every rcpfed proto file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rcpfed_descriptor.bin"));

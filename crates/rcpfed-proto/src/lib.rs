//! Generated types for the `rcpfed.v1` protocol. This crate is the edge: the domain crates
//! convert to and from these types and never pass them further in.

#![allow(clippy::all, missing_docs)]

pub mod codec;

/// The `rcpfed.v1` package.
pub mod v1 {
    tonic::include_proto!("rcpfed.v1");
}

/// Serialized `FileDescriptorSet` of every rcpfed proto file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rcpfed_descriptor.bin"));

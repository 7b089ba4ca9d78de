//! The gRPC edge shared by the hub and the node: mutual TLS, mapping a peer certificate to a
//! federation member, turning domain rejections into `google.rpc.Status` with `ErrorInfo` and
//! `BadRequest` details, reflection (v1 and v1alpha), health, and the plaintext ops port.

pub mod acceptor;
pub mod deadline;
pub mod indicators;
pub mod ops;
pub mod peer;
pub mod records;
pub mod sdmx;
pub mod shared;
pub mod status;
pub mod tls;

pub use peer::{authorize, peer_spiffe_id};
pub use status::{ERROR_DOMAIN, rejection_status};

/// Server-side limits, chosen deliberately (see ARCHITECTURE.md).
pub mod limits {
    use std::time::Duration;

    /// Largest gRPC message a server decodes. It is well above [`MAX_PAYLOAD_BYTES`] so that an
    /// oversized statement is decoded and refused with the specific reason `PAYLOAD_TOO_LARGE`;
    /// only beyond this does tonic refuse the message itself (`OUT_OF_RANGE`, no details).
    pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
    /// Largest statement payload the hub accepts (a protocol limit, see `rcpfed_core::limits`).
    pub use rcpfed_core::limits::MAX_PAYLOAD_BYTES;
    /// Per-request timeout for unary calls.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Concurrent streams per connection.
    pub const MAX_CONCURRENT_STREAMS: u32 = 256;
    /// `SubmitSnapshot` calls the hub processes at once (each may hold a large snapshot's
    /// chunks and decoded observations in memory, up to a few GiB at the protocol limits). A
    /// call over the limit waits for a turn, within its own `SNAPSHOT_TIMEOUT`, before it
    /// reads any chunk; the waiting stream costs only its HTTP/2 flow-control window.
    pub const MAX_CONCURRENT_SNAPSHOTS: usize = 2;
    /// HTTP/2 keepalive ping interval and timeout.
    pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
    /// How long to wait for a keepalive ping answer.
    pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
    /// TCP keepalive.
    pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
}

/// Reflection services (v1 and v1alpha; grpcurl 1.8.6 speaks only v1alpha) describing the
/// rcpfed protocol, `grpc.health.v1` and `google.rpc` error details (so grpcurl can print them).
pub fn reflection_services() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rcpfed_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rcpfed_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok((v1, v1alpha))
}

/// Unix milliseconds → protobuf timestamp.
pub fn timestamp_from_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

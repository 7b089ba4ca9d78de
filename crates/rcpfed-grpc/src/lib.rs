//! The gRPC edge shared by the hub and the node: mutual TLS, mapping a peer certificate to a
//! federation member, turning domain rejections into `google.rpc.Status` with `ErrorInfo` and
//! `BadRequest` details, reflection (v1 and v1alpha), health, and the plaintext ops port.

pub mod acceptor;
pub mod admission;
pub mod client_tls;
pub mod dashboard;
pub mod deadline;
pub mod failover;
pub mod indicators;
pub mod ops;
pub mod peer;
pub mod per_member;
pub mod public_http;
pub mod records;
pub mod rpc_metrics;
pub mod sdmx_rest;
pub mod server;
pub mod shared;
pub mod status;
pub mod tls;

pub use peer::{authorize, peer_spiffe_id};
pub use status::{ERROR_DOMAIN, rejection_status};

/// Response header of `SubscribeFeed`: the feed size when the subscription started, so the
/// subscriber knows which entry ends the backlog (docs/spec/feed-and-nodes.md §1).
pub const BACKLOG_END_HEADER: &str = "rcpfed-backlog-end";

/// Server-side limits, chosen deliberately (see docs/internals/limits.md).
pub mod limits {
    use std::time::Duration;

    /// Largest gRPC message a server encodes (responses, feed entries). Requests are bounded
    /// per method, far lower, by [`crate::admission::message_limits`].
    pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
    /// Largest statement payload the hub accepts (a protocol limit, see `rcpfed_core::limits`).
    pub use rcpfed_core::limits::MAX_PAYLOAD_BYTES;
    /// Per-request timeout for unary calls.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Concurrent streams per connection: a node needs a handful (feed, outbox, witness,
    /// snapshot chunks); each stream may hold up to one message of its method's limit.
    pub const MAX_CONCURRENT_STREAMS: u32 = 64;
    /// Established connections one client certificate may hold open at once; the oldest is
    /// kept and a new one over the limit is closed right after its handshake.
    pub const MAX_CONNECTIONS_PER_IDENTITY: usize = 32;
    /// How long a client has to complete the TLS handshake.
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
    /// TLS handshakes in progress at once, over all clients.
    pub const MAX_PENDING_HANDSHAKES: usize = 1024;
    /// TLS handshakes in progress at once from one source IP address; a connection over the
    /// limit is closed at once, so one address cannot take the slots of everyone else.
    pub const MAX_PENDING_HANDSHAKES_PER_ADDRESS: usize = 32;
    /// How long an established connection may stay without sending anything after its
    /// handshake (an HTTP/2 client sends its preface at once) before it is closed.
    pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long an established connection may go without receiving any byte (a client with an
    /// open stream answers the server's keepalive pings, so only a dead peer reaches this).
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
    /// After SIGTERM, how long open calls get to finish before every connection is closed.
    /// Together with the store's own shutdown this keeps a stop within 10 s.
    pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);
    /// `SubmitSnapshot` calls the hub processes at once (each may hold a large snapshot's
    /// chunks and decoded observations in memory, up to a few GiB at the protocol limits). A
    /// call over the limit waits for a turn, within its own `SNAPSHOT_TIMEOUT`, before it
    /// reads any chunk; the waiting stream costs only its HTTP/2 flow-control window.
    pub const MAX_CONCURRENT_SNAPSHOTS: usize = 2;
    /// HTTP/2 keepalive ping interval and timeout.
    pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
    /// How long to wait for a keepalive ping answer.
    pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
    /// TCP keepalive of every accepted connection (gRPC and public HTTP): idle time before the
    /// kernel starts probing the peer.
    pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
}

/// Reflection services (v1 and v1alpha; grpcurl 1.8.6 speaks only v1alpha) listing exactly
/// `services` (the rcpfed services this process serves) plus `grpc.health.v1.Health` and
/// reflection itself, with the descriptors of the rcpfed protocol, health and the
/// `google.rpc` error details (so grpcurl can print them).
pub fn reflection_services(
    services: &[&str],
) -> Result<
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
    let configure = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(rcpfed_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
        let always = [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ];
        for name in services.iter().chain(always.iter()) {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    Ok((configure().build_v1()?, configure().build_v1alpha()?))
}

/// Unix milliseconds → protobuf timestamp.
pub fn timestamp_from_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

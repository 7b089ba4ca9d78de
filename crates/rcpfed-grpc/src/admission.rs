//! Admission at the gRPC edge: who may call which method, and how large each of its messages
//! may be, decided from the TLS peer certificate and the request path BEFORE tonic reads or
//! decodes any of the body.
//!
//! The handlers still call [`crate::authorize`] (defence in depth, and they need the member);
//! this layer only makes sure that a caller who would be refused there never gets a body
//! buffered first (issue 9, finding 4: 16 MiB per stream were read before the role check).
//! A message larger than its method's limit is refused as soon as its 5-byte gRPC prefix
//! announces the length, so it is never buffered either.

use crate::peer::{Access, admit};
use crate::shared::SharedFederation;
use crate::status::rejection_status;
use bytes::{Buf as _, Bytes};
use rcpfed_core::members::Role;
use rcpfed_core::rejection::{RejectClass, Rejection};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// Reason of the refusal of a gRPC message larger than its method accepts.
pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";

/// Per-method message size limits (request direction), in bytes. Each is what the method
/// legitimately needs with headroom; everything else is a small unary request.
pub mod message_limits {
    /// Requests that carry only names, numbers, page tokens (reads, health, reflection).
    pub const SMALL: usize = 64 * 1024;
    /// One signed envelope (`SubmitStatement`, the first `SubmitSnapshot` message) or one
    /// document to publish (`PublishDocument`): a payload of up to 1 MiB plus its bounded
    /// signatures and framing.
    pub const ENVELOPE: usize = 2 * 1024 * 1024;
    /// One `SubmitSnapshot` message: a chunk of up to `rcpfed_core::chunks::MAX_CHUNK_BYTES`
    /// (4 MiB) plus its framing.
    pub const CHUNK: usize = 4 * 1024 * 1024 + 64 * 1024;
    /// One `PublishSnapshot` batch to a node (admin only): the CLI sends 5,000 observations a
    /// message, whose texts may be long.
    pub const BATCH: usize = 16 * 1024 * 1024;
    /// A registry version (`PublishRegistry`) or a checkpoint note with its consistency proof
    /// (`AddCheckpoint`, `SubmitCosignature`; a note is at most 1 MiB).
    pub const DOCUMENT: usize = 1024 * 1024 + 64 * 1024;
}

/// Who may call a method and how large its messages may be.
#[derive(Clone, Copy, Debug)]
pub struct MethodRule {
    /// The request path, "/package.Service/Method".
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Largest request message.
    pub max_message_bytes: usize,
}

const fn rule(path: &'static str, access: Access, max_message_bytes: usize) -> MethodRule {
    MethodRule {
        path,
        access,
        max_message_bytes,
    }
}

use Access::{HubOrRole, Member, Role as R};
use message_limits::{BATCH, CHUNK, DOCUMENT, ENVELOPE, SMALL};

/// Paths not listed (health, reflection, unknown methods): any member, small messages.
pub const DEFAULT_RULE: MethodRule = rule("", Member, SMALL);

const INDICATOR_RULES: [MethodRule; 4] = [
    rule(
        "/rcpfed.v1.IndicatorService/GetCatalogue",
        R(Role::Reader),
        SMALL,
    ),
    rule(
        "/rcpfed.v1.IndicatorService/QueryObservations",
        R(Role::Reader),
        SMALL,
    ),
    rule(
        "/rcpfed.v1.IndicatorService/GetCoherenceReport",
        R(Role::Reader),
        SMALL,
    ),
    rule(
        "/rcpfed.v1.IndicatorService/ExportSdmx",
        R(Role::Reader),
        SMALL,
    ),
];

/// The hub's methods: the roles match the `authorize` call at the top of each handler.
pub const HUB_RULES: &[MethodRule] = &[
    rule(
        "/rcpfed.v1.HubService/SubmitStatement",
        R(Role::Publisher),
        ENVELOPE,
    ),
    rule("/rcpfed.v1.HubService/GetStatement", R(Role::Reader), SMALL),
    rule(
        "/rcpfed.v1.HubService/ListStatements",
        R(Role::Reader),
        SMALL,
    ),
    rule(
        "/rcpfed.v1.HubService/SubscribeFeed",
        R(Role::Reader),
        SMALL,
    ),
    rule(
        "/rcpfed.v1.HubService/ListEquivocations",
        R(Role::Admin),
        SMALL,
    ),
    rule("/rcpfed.v1.HubService/ListMembers", R(Role::Reader), SMALL),
    rule(
        "/rcpfed.v1.HubService/GetCheckpoint",
        R(Role::Reader),
        SMALL,
    ),
    rule(
        "/rcpfed.v1.HubService/GetInclusionProof",
        R(Role::Reader),
        SMALL,
    ),
    rule(
        "/rcpfed.v1.HubService/GetConsistencyProof",
        R(Role::Reader),
        SMALL,
    ),
    rule(
        "/rcpfed.v1.HubService/ListLogEntries",
        R(Role::Reader),
        SMALL,
    ),
    rule(
        "/rcpfed.v1.HubService/SubmitCosignature",
        R(Role::Witness),
        DOCUMENT,
    ),
    rule(
        "/rcpfed.v1.HubService/PublishRegistry",
        R(Role::Admin),
        DOCUMENT,
    ),
    rule("/rcpfed.v1.HubService/GetRegistry", R(Role::Reader), SMALL),
    rule(
        "/rcpfed.v1.HubService/ListRegistryVersions",
        R(Role::Reader),
        SMALL,
    ),
    rule(
        "/rcpfed.v1.HubService/ListFlaggedStatements",
        R(Role::Reader),
        SMALL,
    ),
    rule(
        "/rcpfed.v1.HubService/SubmitSnapshot",
        R(Role::Publisher),
        CHUNK,
    ),
    rule(
        "/rcpfed.v1.HubService/GetSnapshotChunks",
        R(Role::Reader),
        SMALL,
    ),
    INDICATOR_RULES[0],
    INDICATOR_RULES[1],
    INDICATOR_RULES[2],
    INDICATOR_RULES[3],
];

/// A node's methods: the roles match the `authorize` call at the top of each handler.
pub const NODE_RULES: &[MethodRule] = &[
    rule(
        "/rcpfed.v1.NodeService/GetNodeStatus",
        R(Role::Reader),
        SMALL,
    ),
    rule(
        "/rcpfed.v1.NodeService/PublishDocument",
        R(Role::Admin),
        ENVELOPE,
    ),
    rule("/rcpfed.v1.NodeService/ListOutbox", R(Role::Reader), SMALL),
    rule(
        "/rcpfed.v1.NodeService/ListMirroredStatements",
        R(Role::Reader),
        SMALL,
    ),
    rule(
        "/rcpfed.v1.NodeService/PublishSnapshot",
        R(Role::Admin),
        BATCH,
    ),
    rule(
        "/rcpfed.v1.WitnessService/AddCheckpoint",
        HubOrRole(Role::Admin),
        DOCUMENT,
    ),
    rule(
        "/rcpfed.v1.WitnessService/GetWitnessStatus",
        R(Role::Reader),
        SMALL,
    ),
    INDICATOR_RULES[0],
    INDICATOR_RULES[1],
    INDICATOR_RULES[2],
    INDICATOR_RULES[3],
];

/// The largest message limit of `rules`: what tonic's own decode limit is set to (the per
/// method limit is enforced here, first).
pub const fn max_message_bytes(rules: &[MethodRule]) -> usize {
    let mut max = DEFAULT_RULE.max_message_bytes;
    let mut i = 0;
    while i < rules.len() {
        if rules[i].max_message_bytes > max {
            max = rules[i].max_message_bytes;
        }
        i += 1;
    }
    max
}

/// The rule for `path` in `rules`, or [`DEFAULT_RULE`].
pub fn rule_for(rules: &[MethodRule], path: &str) -> MethodRule {
    rules
        .iter()
        .find(|r| r.path == path)
        .copied()
        .unwrap_or(DEFAULT_RULE)
}

/// The admission layer; see the module documentation.
#[derive(Clone)]
pub struct AdmissionLayer {
    federation: SharedFederation,
    rules: &'static [MethodRule],
}

impl AdmissionLayer {
    /// Admits by the federation in force (re-read on every request) and `rules`.
    pub fn new(federation: SharedFederation, rules: &'static [MethodRule]) -> Self {
        AdmissionLayer { federation, rules }
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            federation: self.federation.clone(),
            rules: self.rules,
        }
    }
}

/// See [`AdmissionLayer`].
#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    federation: SharedFederation,
    rules: &'static [MethodRule],
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for Admission<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        >,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let rule = rule_for(self.rules, request.uri().path());
        let certs = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|info| info.peer_certs());
        let leaf = certs.as_ref().and_then(|c| c.first());
        if let Err(status) = admit(
            leaf.map(|c| c.as_ref()),
            &self.federation.get(),
            rule.access,
        ) {
            // Answered without touching the body: hyper resets the stream, so whatever the
            // caller is still sending is never read.
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        let path = rule.path;
        let request = request.map(|body| {
            tonic::body::Body::new(LimitedMessages::new(body, rule.max_message_bytes, path))
        });
        Box::pin(self.inner.call(request))
    }
}

/// A request body that checks each gRPC message's announced length against a limit as the
/// 5-byte prefix goes by, without buffering anything.
pub struct LimitedMessages {
    inner: tonic::body::Body,
    limit: usize,
    path: &'static str,
    /// Bytes of the current message still to pass.
    remaining: u64,
    /// The prefix of the next message, as far as received.
    prefix: [u8; 5],
    prefix_len: usize,
    failed: bool,
}

impl LimitedMessages {
    /// Wraps `inner`; messages longer than `limit` fail the body with [`MESSAGE_TOO_LARGE`].
    pub fn new(inner: tonic::body::Body, limit: usize, path: &'static str) -> Self {
        LimitedMessages {
            inner,
            limit,
            path,
            remaining: 0,
            prefix: [0; 5],
            prefix_len: 0,
            failed: false,
        }
    }

    /// Follows the message framing through `data`; the announced length of a message larger
    /// than the limit is returned.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), u64> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let step = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                data = &data[step..];
                self.remaining -= step as u64;
                continue;
            }
            let take = (5 - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&data[..take]);
            self.prefix_len += take;
            data = &data[take..];
            if self.prefix_len == 5 {
                self.prefix_len = 0;
                let announced = u64::from(u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]));
                if announced > self.limit as u64 {
                    return Err(announced);
                }
                self.remaining = announced;
            }
        }
        Ok(())
    }

    fn too_large(&self, announced: u64) -> Status {
        let method = self.path.rsplit('/').next().unwrap_or(self.path);
        rejection_status(
            &Rejection::new(
                RejectClass::TooLarge,
                MESSAGE_TOO_LARGE,
                format!(
                    "a {method} message of {announced} bytes is larger than the {} bytes this method accepts",
                    self.limit
                ),
            )
            .with_meta("limit_bytes", self.limit.to_string())
            .with_meta("message_bytes", announced.to_string()),
        )
    }
}

impl http_body::Body for LimitedMessages {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref()
            && let Err(announced) = this.scan(data.chunk())
        {
            this.failed = true;
            return Poll::Ready(Some(Err(this.too_large(announced))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(len: u32, body: usize) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend(std::iter::repeat_n(7u8, body));
        v
    }

    #[test]
    fn messages_within_the_limit_pass_in_any_split() {
        let mut data = framed(10, 10);
        data.extend(framed(3, 3));
        for split in 0..data.len() {
            let mut body = LimitedMessages::new(tonic::body::Body::empty(), 10, "/x/Y");
            assert_eq!(body.scan(&data[..split]), Ok(()));
            assert_eq!(body.scan(&data[split..]), Ok(()));
            assert_eq!((body.remaining, body.prefix_len), (0, 0));
        }
    }

    #[test]
    fn a_message_announcing_more_than_the_limit_is_caught_at_its_prefix() {
        let mut data = framed(4, 4);
        data.extend(framed(11, 0));
        let mut body = LimitedMessages::new(tonic::body::Body::empty(), 10, "/x/Y");
        assert_eq!(body.scan(&data[..7]), Ok(()));
        assert_eq!(body.scan(&data[7..]), Err(11));
    }

    #[test]
    fn every_limit_covers_what_the_protocol_allows() {
        let chunk = rcpfed_core::chunks::MAX_CHUNK_BYTES as usize;
        assert!(
            rule_for(HUB_RULES, "/rcpfed.v1.HubService/SubmitSnapshot").max_message_bytes > chunk
        );
        assert!(
            rule_for(NODE_RULES, "/rcpfed.v1.NodeService/PublishSnapshot").max_message_bytes
                > chunk
        );
        const { assert!(message_limits::DOCUMENT > rcpfed_core::note::MAX_NOTE_BYTES) };
        const { assert!(message_limits::ENVELOPE > crate::limits::MAX_PAYLOAD_BYTES) };
        assert_eq!(max_message_bytes(HUB_RULES), message_limits::CHUNK);
        assert_eq!(max_message_bytes(NODE_RULES), message_limits::BATCH);
        assert_eq!(
            rule_for(HUB_RULES, "/grpc.health.v1.Health/Check").max_message_bytes,
            message_limits::SMALL
        );
    }
}

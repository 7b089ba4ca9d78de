//! A regional node: `rcpfed.v1.NodeService` over mutual TLS, the signing publisher (validating
//! against the hub's indicator catalogue in force), the outbox that delivers to the hub, the
//! verified mirror of the federation feed, and `rcpfed.v1.IndicatorService` over that mirror
//! (the same code as the hub's, so both answer alike).

pub mod catalogue;
pub mod dashboard;
pub mod mirror;
pub mod outbox;
pub mod own_chain;
pub mod publish;
pub mod registry;
mod service;
pub mod view;
pub mod witness;

use rcpfed_core::keys::SecretKey;
use rcpfed_grpc::indicators::{IndicatorRpc, reader_role};
use rcpfed_grpc::limits;
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_proto::v1::node_service_server::NodeServiceServer;
use rcpfed_store::{IndicatorStore, NodeStore};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

pub use service::{MAX_STREAMED_OBSERVATIONS, Node};

/// A node's storage: the outbox and mirror, and the indicator view filled from the mirror (one
/// SQLite file; entries applied as they are mirrored, or by the view applier behind a large
/// snapshot).
pub trait NodeStorage: NodeStore + IndicatorStore {}

impl<T: NodeStore + IndicatorStore> NodeStorage for T {}

/// Live state shown by `GetNodeStatus`.
#[derive(Default)]
pub struct NodeState {
    /// Whether the feed stream is connected.
    pub feed_connected: AtomicBool,
    last_error: Mutex<String>,
    /// The link to the hub as the outbox and the mirror find it.
    hub: HubContact,
}

/// What the node knows about reaching the hub, for health, metrics, status and logs.
#[derive(Default)]
struct HubContact {
    /// When a call last got an answer from the hub (ms since the epoch; 0: never).
    last_answer_ms: std::sync::atomic::AtomicI64,
    /// Since when calls fail without reaching the hub (0: they do not).
    failing_since_ms: std::sync::atomic::AtomicI64,
    /// When the last warning about it was logged.
    warned_at_ms: std::sync::atomic::AtomicI64,
}

/// How often an ongoing outage is logged again at warning level.
const HUB_WARNING_EVERY_MS: i64 = 60_000;

/// Whether a failed call never reached the hub (transport, timeout), as opposed to an answer
/// from the hub (a refusal or one of its own errors, which carry an rcpfed `ErrorInfo`).
pub fn hub_not_reached(status: &tonic::Status) -> bool {
    use tonic_types::StatusExt as _;
    let answered = status
        .get_details_error_info()
        .is_some_and(|info| info.domain == rcpfed_grpc::ERROR_DOMAIN);
    !answered
        && matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
        )
}

impl NodeState {
    /// A call got an answer from the hub (whatever it said).
    pub(crate) fn hub_answered(&self) {
        let now = now_ms();
        self.hub.last_answer_ms.store(now, Ordering::Relaxed);
        let since = self.hub.failing_since_ms.swap(0, Ordering::Relaxed);
        if since != 0 {
            self.hub.warned_at_ms.store(0, Ordering::Relaxed);
            tracing::info!(
                unreachable_for_ms = now - since,
                "the hub is reachable again"
            );
        }
    }

    /// A call by `task` did not reach the hub; it is retried in `retry_in`. Logged at warning
    /// level when the outage starts and then once a minute while it lasts.
    pub(crate) fn hub_unreachable(
        &self,
        task: &'static str,
        status: &tonic::Status,
        retry_in: std::time::Duration,
    ) {
        let now = now_ms();
        // Only the first failure of a run sets the time; a later one leaves it as it is.
        let _ = self.hub.failing_since_ms.compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        let warned = self.hub.warned_at_ms.load(Ordering::Relaxed);
        if now - warned >= HUB_WARNING_EVERY_MS
            && self
                .hub
                .warned_at_ms
                .compare_exchange(warned, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                task,
                code = ?status.code(),
                reason = %rcpfed_core::rejection::truncate_str(status.message(), 200),
                retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                "cannot reach the hub; retrying with backoff"
            );
        }
    }

    /// Whether the hub is reachable: no call has failed to reach it since the last answer.
    pub fn hub_reachable(&self) -> bool {
        self.hub.failing_since_ms.load(Ordering::Relaxed) == 0
    }

    /// When a call last got an answer from the hub (ms since the epoch), if ever.
    pub fn last_hub_answer_ms(&self) -> Option<i64> {
        Some(self.hub.last_answer_ms.load(Ordering::Relaxed)).filter(|ms| *ms != 0)
    }

    pub(crate) fn set_error(&self, error: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = error;
        }
    }

    pub(crate) fn clear_error(&self) {
        if let Ok(mut e) = self.last_error.lock() {
            e.clear();
        }
    }

    /// The last error in plain words.
    pub fn last_error(&self) -> String {
        // A writer that panicked leaves the last error it wrote, still worth showing.
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }
}

/// Up to 25% random extra delay, so nodes that lost the hub together do not return together.
pub fn jitter(base: std::time::Duration) -> std::time::Duration {
    let mut byte = [0u8; 1];
    // Without randomness the delay is just `base`: the retry still happens.
    if let Err(e) = getrandom::fill(&mut byte) {
        tracing::debug!(error = %e, "no random jitter");
    }
    base + base.mul_f64(f64::from(byte[0]) / 255.0 * 0.25)
}

pub(crate) fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Health entry of the node's link to the hub: `SERVING` while calls reach the hub,
/// `NOT_SERVING` while they do not (the node still serves reads and queues what it signs).
pub const HUB_LINK_HEALTH: &str = "rcpfed.hub-link";

/// The metrics of the link to the hub and of the outbox.
struct HubLinkGauges {
    reachable: prometheus_client::metrics::gauge::Gauge,
    last_answer: prometheus_client::metrics::gauge::Gauge,
    outbox_pending: prometheus_client::metrics::gauge::Gauge,
    outbox_rejected: prometheus_client::metrics::gauge::Gauge,
    outbox_oldest: prometheus_client::metrics::gauge::Gauge,
    mirror_lag_seconds: prometheus_client::metrics::gauge::Gauge,
    hub_log_size: prometheus_client::metrics::gauge::Gauge,
    mirror_entries: prometheus_client::metrics::gauge::Gauge,
    view_applied: prometheus_client::metrics::gauge::Gauge,
    witnessed_size: prometheus_client::metrics::gauge::Gauge,
    forked: prometheus_client::metrics::gauge::Gauge,
}

impl HubLinkGauges {
    fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let gauges = HubLinkGauges {
            reachable: Default::default(),
            last_answer: Default::default(),
            outbox_pending: Default::default(),
            outbox_rejected: Default::default(),
            outbox_oldest: Default::default(),
            mirror_lag_seconds: Default::default(),
            hub_log_size: Default::default(),
            mirror_entries: Default::default(),
            view_applied: Default::default(),
            witnessed_size: Default::default(),
            forked: Default::default(),
        };
        registry.register(
            "rcpfed_node_hub_reachable",
            "1 while calls to the hub reach it, 0 while they fail to (transport errors, timeouts)",
            gauges.reachable.clone(),
        );
        registry.register(
            "rcpfed_node_hub_last_answer_timestamp_seconds",
            "When a call last got an answer from the hub (Unix time; 0: never)",
            gauges.last_answer.clone(),
        );
        registry.register(
            "rcpfed_node_outbox_pending",
            "Statements signed but not yet acknowledged by the hub",
            gauges.outbox_pending.clone(),
        );
        registry.register(
            "rcpfed_node_outbox_rejected",
            "Statements the hub refused (delivery stops at the first one)",
            gauges.outbox_rejected.clone(),
        );
        registry.register(
            "rcpfed_node_outbox_oldest_pending_timestamp_seconds",
            "When the oldest statement awaiting delivery was signed (Unix time; 0: nothing pending)",
            gauges.outbox_oldest.clone(),
        );
        registry.register(
            "rcpfed_node_mirror_lag_seconds",
            "Seconds since the mirror last held every log entry the node knows the hub has (0: caught up)",
            gauges.mirror_lag_seconds.clone(),
        );
        registry.register(
            "rcpfed_node_hub_log_size",
            "The largest log size of a hub-signed checkpoint this node has met since start-up (0: none yet)",
            gauges.hub_log_size.clone(),
        );
        registry.register(
            "rcpfed_node_mirror_entries",
            "Feed entries verified and applied to this node's mirror (the mirror lags the hub by rcpfed_node_hub_log_size minus this)",
            gauges.mirror_entries.clone(),
        );
        registry.register(
            "rcpfed_node_view_applied",
            "Highest feed index applied to the indicator view (below the mirror's while a large snapshot is fetched and applied)",
            gauges.view_applied.clone(),
        );
        registry.register(
            "rcpfed_node_witnessed_log_size",
            "Size of the latest checkpoint this node has verified as consistent and cosigned (the witness lags by rcpfed_node_hub_log_size minus this)",
            gauges.witnessed_size.clone(),
        );
        registry.register(
            "rcpfed_node_witness_forked",
            "1 when this node holds evidence of a fork of the hub's log (it cosigns nothing more), else 0",
            gauges.forked.clone(),
        );
        gauges
    }

    /// Sets the log gauges from the witness and the store; `caught_up_at` is when the mirror
    /// last held every entry the hub is known to have.
    fn report_log(
        &self,
        witness: &witness::Witness,
        mirror_entries: u64,
        witnessed: u64,
        caught_up_at: &mut std::time::Instant,
    ) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let hub_size = witness.hub_log_size_seen();
        if mirror_entries >= hub_size {
            *caught_up_at = std::time::Instant::now();
        }
        self.mirror_lag_seconds
            .set(gauge(caught_up_at.elapsed().as_secs()));
        self.hub_log_size.set(gauge(hub_size));
        self.mirror_entries.set(gauge(mirror_entries));
        self.witnessed_size.set(gauge(witnessed));
        self.forked.set(i64::from(witness.is_forked()));
    }
}

/// Every second: the hub link's health entry ([`HUB_LINK_HEALTH`]) and the gauges.
async fn report_hub_link(
    state: Arc<NodeState>,
    store: Arc<dyn NodeStorage>,
    health: tonic_health::server::HealthReporter,
    gauges: HubLinkGauges,
    witness: Arc<witness::Witness>,
    shutdown: CancellationToken,
) {
    let mut reported: Option<bool> = None;
    let mut mirror_caught_up_at = std::time::Instant::now();
    loop {
        let reachable = state.hub_reachable();
        if reported != Some(reachable) && !shutdown.is_cancelled() {
            let status = if reachable {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status(HUB_LINK_HEALTH, status).await;
            reported = Some(reachable);
        }
        gauges.reachable.set(i64::from(reachable));
        gauges
            .last_answer
            .set(state.last_hub_answer_ms().unwrap_or(0) / 1000);
        let counts_store = Arc::clone(&store);
        let read = tokio::task::spawn_blocking(move || {
            let counts = counts_store.outbox_counts()?;
            let mirrored = counts_store.mirror_cursor()?;
            let applied = counts_store.applied_feed_size()?;
            let witnessed = counts_store.trusted_checkpoint()?.map_or(0, |t| t.size);
            Ok::<_, rcpfed_store::StoreError>((counts, mirrored, applied, witnessed))
        })
        .await;
        if let Ok(Ok((counts, mirrored, applied, witnessed))) = read {
            gauges
                .view_applied
                .set(i64::try_from(applied).unwrap_or(i64::MAX));
            gauges
                .outbox_pending
                .set(i64::try_from(counts.pending).unwrap_or(i64::MAX));
            gauges
                .outbox_rejected
                .set(i64::try_from(counts.rejected).unwrap_or(i64::MAX));
            gauges
                .outbox_oldest
                .set(counts.oldest_pending_ms.map_or(0, |ms| ms / 1000));
            gauges.report_log(&witness, mirrored, witnessed, &mut mirror_caught_up_at);
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Timeouts and keepalives of the node's link to the hub (node configuration keys
/// `hub_connect_timeout_ms`, `hub_call_timeout_ms`, `hub_keepalive_interval_ms`,
/// `hub_keepalive_timeout_ms`): with them a blackholed or half-open connection is noticed and
/// redialled, and no task waits on the hub forever.
#[derive(Clone, Copy, Debug)]
pub struct HubLink {
    /// TCP connect plus TLS handshake.
    pub connect_timeout: std::time::Duration,
    /// Every unary call, and the opening of every stream.
    pub call_timeout: std::time::Duration,
    /// HTTP/2 keepalive ping interval (also while idle).
    pub keepalive_interval: std::time::Duration,
    /// How long a ping may stay unanswered.
    pub keepalive_timeout: std::time::Duration,
}

impl Default for HubLink {
    fn default() -> Self {
        HubLink {
            connect_timeout: std::time::Duration::from_secs(5),
            call_timeout: limits::REQUEST_TIMEOUT,
            keepalive_interval: limits::KEEPALIVE_INTERVAL,
            keepalive_timeout: limits::KEEPALIVE_TIMEOUT,
        }
    }
}

/// How long the node waits for its background tasks (outbox, mirror, witness) after shutdown
/// is requested before it aborts them, so SIGTERM stops the node whatever the hub does.
const TASK_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Awaits `call`, giving up after `timeout` with DEADLINE_EXCEEDED (a transient failure).
pub(crate) async fn bounded<T>(
    timeout: std::time::Duration,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "the hub did not answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// Everything a node needs to run.
pub struct NodeSettings {
    /// The GFMD root keys and threshold: the trust anchor of the registry.
    pub trust: rcpfed_core::registry::RootSet,
    /// The federation id the root keys are for.
    pub federation_id: String,
    /// Registry version 1, if configured; without it the node fetches the registry from the hub.
    pub initial_registry: Option<rcpfed_core::envelope::SignedEnvelope>,
    /// Where the node keeps the last registry version it trusted.
    pub registry_cache: std::path::PathBuf,
    /// The marker `rcpfed restore node` leaves: while it exists the node signs nothing new
    /// until its mirror has caught up with the hub's feed ([`own_chain`]).
    pub restore_marker: Option<std::path::PathBuf>,
    /// This node's member id.
    pub node_id: String,
    /// This node's statement signing key.
    pub signing_key: SecretKey,
    /// TLS material (client to the hub and server for operators).
    pub tls: TlsFiles,
    /// The federation CA's CRL (PEM). Client certificates it lists are refused; the file is
    /// watched and reloaded without a restart. None: no revocation check.
    pub crl_file: Option<std::path::PathBuf>,
    /// What the server does while the CRL is past its nextUpdate.
    pub stale_crl: rcpfed_grpc::acceptor::StaleCrl,
    /// The hub's gRPC endpoints, "https://host:port": one, or a leader's and its standbys' (one
    /// logical hub), tried in order and switched on failure or NOT_LEADER.
    pub hub_endpoints: Vec<String>,
    /// Timeouts and keepalives of the link to the hub.
    pub hub_link: HubLink,
    /// Listener for the node's mTLS gRPC port.
    pub grpc_listener: TcpListener,
    /// Listener for the plaintext ops port.
    pub ops_listener: TcpListener,
    /// The public read-only HTTP listener, answering from the verified mirror; None: not
    /// served.
    pub http: Option<rcpfed_grpc::public_http::HttpSettings>,
    /// How often the witness polls the hub's latest checkpoint.
    pub witness_interval: std::time::Duration,
    /// Opens the store.
    pub open_store:
        Box<dyn FnOnce() -> Result<Arc<dyn NodeStorage>, rcpfed_store::StoreError> + Send>,
}

/// Why the node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Store failure.
    #[error("store: {0}")]
    Store(#[from] rcpfed_store::StoreError),
    /// TLS material.
    #[error("tls: {0}")]
    Tls(#[from] rcpfed_grpc::tls::TlsError),
    /// gRPC server.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// Configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// Listener I/O.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<rcpfed_grpc::server::ServerError> for NodeError {
    fn from(e: rcpfed_grpc::server::ServerError) -> Self {
        use rcpfed_grpc::server::ServerError;
        match e {
            ServerError::Tls(e) => NodeError::Tls(e),
            ServerError::Transport(e) => NodeError::Transport(e),
            ServerError::Reflection(e) => NodeError::Reflection(e),
            ServerError::Io(e) => NodeError::Io(e),
        }
    }
}

/// The rcpfed services the node serves on its gRPC port (reflection lists them).
const NODE_SERVICES: &[&str] = &[
    rcpfed_proto::v1::node_service_server::SERVICE_NAME,
    rcpfed_proto::v1::witness_service_server::SERVICE_NAME,
    rcpfed_proto::v1::indicator_service_server::SERVICE_NAME,
];

/// The services whose health follows the server's; the witness reports its own
/// ([`witness::WITNESS_SERVICE`]).
const SERVING_WITH_THE_SERVER: &[&str] = &[
    rcpfed_proto::v1::node_service_server::SERVICE_NAME,
    rcpfed_proto::v1::indicator_service_server::SERVICE_NAME,
];

/// The node's own metrics, registered on the ops port.
struct NodeMetrics {
    proof_failures: prometheus_client::metrics::counter::Counter<u64>,
    link_gauges: HubLinkGauges,
}

impl NodeMetrics {
    fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let proof_failures = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.register(
            "rcpfed_witness_proof_failures",
            "Consistency proofs from the hub that did not verify (retried; not a fork)",
            proof_failures.clone(),
        );
        let link_gauges = HubLinkGauges::register(registry);
        NodeMetrics {
            proof_failures,
            link_gauges,
        }
    }
}

/// Runs the node until `shutdown` is cancelled.
pub async fn run(settings: NodeSettings, shutdown: CancellationToken) -> Result<(), NodeError> {
    let NodeSettings {
        trust,
        federation_id,
        initial_registry,
        registry_cache,
        restore_marker,
        node_id,
        signing_key,
        tls,
        crl_file,
        stale_crl,
        hub_endpoints,
        hub_link,
        grpc_listener,
        ops_listener,
        http,
        witness_interval,
        open_store,
    } = settings;
    let hub = HubAccess {
        endpoints: &hub_endpoints,
        tls: &tls,
        crl_file: crl_file.as_ref(),
        link: &hub_link,
    };
    let registry_source = RegistrySource {
        trust: &trust,
        federation_id: &federation_id,
        initial: initial_registry.as_ref(),
        cache: registry_cache,
    };
    let started = start_up(
        ops_listener,
        open_store,
        &hub,
        registry_source,
        &node_id,
        &signing_key,
        &shutdown,
    )
    .await?;
    let running = started.start_roles(
        restore_marker,
        node_id,
        signing_key,
        witness_interval,
        &hub_link,
        &shutdown,
    );
    let listening = node_server(
        grpc_listener,
        &tls,
        crl_file.as_deref(),
        stale_crl,
        &running.ops,
        &running.shared,
    )
    .listen(shutdown.clone())
    .await?;
    let addr = listening.addr();
    tracing::info!(%addr, node = %running.node_id, hub = %hub_endpoints.join(", "), "node serving (mTLS)");
    let public_http = running.spawn_public_http(http, crl_file, &shutdown)?;
    running.serve(listening, public_http, shutdown).await
}

/// How the node reaches the hub: its endpoints, the TLS material and CRL the channel checks
/// the hub with, and the link's timeouts.
struct HubAccess<'a> {
    endpoints: &'a [String],
    tls: &'a TlsFiles,
    crl_file: Option<&'a std::path::PathBuf>,
    link: &'a HubLink,
}

/// What start-up has ready once its checks pass: the ops port, the store, the channel to the
/// hub, and the registry, catalogue and witness in force.
struct Started {
    ops: rcpfed_grpc::server::OpsPort,
    link_gauges: HubLinkGauges,
    store: Arc<dyn NodeStorage>,
    channel: rcpfed_grpc::failover::FailoverChannel,
    node_registry: Arc<registry::NodeRegistry>,
    shared: rcpfed_grpc::shared::SharedFederation,
    /// The hub of the registry in force at start-up.
    hub_id: String,
    catalogue: catalogue::CatalogueInForce,
    witness: Arc<witness::Witness>,
}

/// Starts the ops port, opens the store, connects to the hub, and checks the signing key and
/// the mirrored catalogue against the registry in force before the witness starts.
async fn start_up(
    ops_listener: TcpListener,
    open_store: Box<dyn FnOnce() -> Result<Arc<dyn NodeStorage>, rcpfed_store::StoreError> + Send>,
    hub: &HubAccess<'_>,
    registry_source: RegistrySource<'_>,
    node_id: &str,
    signing_key: &SecretKey,
    shutdown: &CancellationToken,
) -> Result<Started, NodeError> {
    let (ops, metrics) = rcpfed_grpc::server::OpsPort::start(
        ops_listener,
        SERVING_WITH_THE_SERVER,
        shutdown.clone(),
        NodeMetrics::register,
    )
    .await?;
    let store = open_node_store(open_store).await?;
    let (channel, node_registry) = connect_to_hub(hub, registry_source, shutdown).await?;
    let shared = node_registry.shared();
    let federation = shared.get();
    check_signing_key(&federation, node_id, signing_key)?;
    let catalogue = load_catalogue(&store, &federation).await?;
    let witness = start_witness(
        &federation,
        node_id,
        signing_key,
        &store,
        &ops,
        metrics.proof_failures,
        hub.link,
    )
    .await?;
    Ok(Started {
        ops,
        link_gauges: metrics.link_gauges,
        store,
        channel,
        node_registry,
        shared,
        hub_id: federation.hub_id.clone(),
        catalogue,
        witness,
    })
}

impl Started {
    /// Starts the node's roles: the signing publisher (closed while a restore is pending), and
    /// the outbox, mirror, witness and hub-link tasks.
    fn start_roles(
        self,
        restore_marker: Option<std::path::PathBuf>,
        node_id: String,
        signing_key: SecretKey,
        witness_interval: std::time::Duration,
        hub_link: &HubLink,
        shutdown: &CancellationToken,
    ) -> Running {
        let state = Arc::new(NodeState::default());
        let wakeup = Arc::new(tokio::sync::Notify::new());
        let own_chain = Arc::new(own_chain::OwnChainGate::new(restore_marker));
        let publisher = publish::Publisher::new(
            self.shared.clone(),
            self.catalogue.clone(),
            node_id.clone(),
            signing_key,
            Arc::clone(&self.store),
            Arc::clone(&wakeup),
        )
        .with_own_chain_gate(Arc::clone(&own_chain));
        let tasks = BackgroundTasks::spawn(
            Roles {
                node_id: &node_id,
                shared: &self.shared,
                store: &self.store,
                state: &state,
                witness: &self.witness,
                health: &self.ops.health,
            },
            self.link_gauges,
            Mirroring {
                own_chain,
                registry: self.node_registry,
                catalogue: self.catalogue,
            },
            wakeup,
            self.channel,
            hub_link,
            witness_interval,
            shutdown,
        );
        Running {
            ops: self.ops,
            store: self.store,
            shared: self.shared,
            hub_id: self.hub_id,
            witness: self.witness,
            node_id,
            state,
            publisher,
            tasks,
        }
    }
}

/// The node with its roles started, before its gRPC services serve.
struct Running {
    ops: rcpfed_grpc::server::OpsPort,
    store: Arc<dyn NodeStorage>,
    shared: rcpfed_grpc::shared::SharedFederation,
    hub_id: String,
    witness: Arc<witness::Witness>,
    node_id: String,
    state: Arc<NodeState>,
    publisher: publish::Publisher,
    tasks: BackgroundTasks,
}

impl Running {
    /// The node's public HTTP listener, if configured (SDMX REST and the dashboard over the
    /// mirror), serving in a task of its own until `shutdown`.
    fn spawn_public_http(
        &self,
        http: Option<rcpfed_grpc::public_http::HttpSettings>,
        crl_file: Option<std::path::PathBuf>,
        shutdown: &CancellationToken,
    ) -> Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>, NodeError> {
        let Some(http) = http else {
            return Ok(None);
        };
        Ok(Some(http.spawn(
            crl_file,
            self.shared.clone(),
            public_routes(&self.store, &self.node_id, &self.shared, &self.hub_id),
            "/sdmx/ (SDMX REST 1.5.0) and the dashboard at /dashboard/ (JSON under /dashboard/api/)",
            shutdown.clone(),
        )?))
    }

    /// Serves the node's services on `listening` until the server stops, then stops everything
    /// else: the background tasks, the ops port and the public port.
    async fn serve(
        self,
        listening: rcpfed_grpc::server::Listening,
        public_http: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
        shutdown: CancellationToken,
    ) -> Result<(), NodeError> {
        let services = NodeServices::new(
            self.shared,
            &self.hub_id,
            self.witness,
            self.store,
            self.node_id,
            self.publisher,
            self.state,
        );
        let served = listening
            .serve(
                |routes| services.add_to(routes),
                shutting_down(self.ops.health.clone()),
            )
            .await;
        shutdown.cancel();
        stop_the_rest(self.tasks, self.ops, public_http).await;
        served?;
        Ok(())
    }
}

/// The channel to the hub and the registry in force at start-up, which the channel then checks
/// the hub's identity against.
async fn connect_to_hub(
    hub: &HubAccess<'_>,
    registry_source: RegistrySource<'_>,
    shutdown: &CancellationToken,
) -> Result<
    (
        rcpfed_grpc::failover::FailoverChannel,
        Arc<registry::NodeRegistry>,
    ),
    NodeError,
> {
    let (channel, registry_in_force) = hub_channel(
        hub.endpoints,
        hub.tls,
        hub.crl_file,
        registry_source.federation_id,
        hub.link,
    )?;
    let node_registry = establish_registry(
        registry_source,
        &channel,
        hub.link,
        shutdown,
        &registry_in_force,
    )
    .await?;
    Ok((channel, node_registry))
}

/// Opens the node's store off the async threads, then removes what an unfinished run left.
async fn open_node_store(
    open_store: Box<dyn FnOnce() -> Result<Arc<dyn NodeStorage>, rcpfed_store::StoreError> + Send>,
) -> Result<Arc<dyn NodeStorage>, NodeError> {
    let store = tokio::task::spawn_blocking(open_store)
        .await
        .map_err(|e| NodeError::Config(format!("store opener panicked: {e}")))??;
    // A PublishSnapshot stream cut short by a stop left its scratch file; it was never signed.
    let cleared = store.clear_publish_staging()?;
    if cleared > 0 {
        tracing::info!(
            files = cleared,
            "removed the staging of snapshot streams the last run did not finish"
        );
    }
    Ok(store)
}

/// The node's witness of the hub's log, its health reported (NOT_SERVING for good once it has
/// recorded a fork).
#[allow(clippy::too_many_arguments)]
async fn start_witness(
    federation: &rcpfed_core::members::Federation,
    node_id: &str,
    signing_key: &SecretKey,
    store: &Arc<dyn NodeStorage>,
    ops: &rcpfed_grpc::server::OpsPort,
    proof_failures: prometheus_client::metrics::counter::Counter<u64>,
    hub_link: &HubLink,
) -> Result<Arc<witness::Witness>, NodeError> {
    let witness = Arc::new(
        witness::Witness::new(
            federation,
            node_id,
            signing_key.clone(),
            Arc::clone(store) as Arc<dyn NodeStore>,
            ops.health.clone(),
        )
        .map_err(NodeError::Config)?
        .with_proof_counter(proof_failures)
        .with_call_timeout(hub_link.call_timeout),
    );
    witness.report_health().await;
    if witness.is_forked() {
        tracing::error!(
            "this node has recorded a fork of the hub's log: the witness role stays NOT_SERVING"
        );
    }
    Ok(witness)
}

/// What the node does when its server starts to stop: probes see NOT_SERVING at once, the
/// witness role included.
async fn shutting_down(health: tonic_health::server::HealthReporter) {
    rcpfed_grpc::server::mark_not_serving(&health, SERVING_WITH_THE_SERVER).await;
    health
        .set_service_status(witness::WITNESS_SERVICE, ServingStatus::NotServing)
        .await;
    tracing::info!("node shutting down");
}

/// Once the gRPC server has stopped: one grace period for the background tasks, the ops port
/// and the public port, not one each.
async fn stop_the_rest(
    tasks: BackgroundTasks,
    ops: rcpfed_grpc::server::OpsPort,
    public_http: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
) {
    let stop_by = tokio::time::Instant::now() + TASK_STOP_GRACE;
    tasks.stop(stop_by).await;
    ops.stopped(stop_by).await;
    if let Some(public_http) = public_http {
        let ended = rcpfed_grpc::server::log_failure("public HTTP", public_http);
        if tokio::time::timeout_at(stop_by, ended).await.is_err() {
            tracing::warn!("public HTTP server did not stop in time");
        }
    }
}

/// The channel to the hub (one logical hub over its endpoints, tried in order), and the
/// registry in force the channel checks the hub's identity against once it is known.
#[allow(clippy::type_complexity)]
fn hub_channel(
    hub_endpoints: &[String],
    tls: &TlsFiles,
    crl_file: Option<&std::path::PathBuf>,
    federation_id: &str,
    hub_link: &HubLink,
) -> Result<
    (
        rcpfed_grpc::failover::FailoverChannel,
        Arc<std::sync::OnceLock<rcpfed_grpc::shared::SharedFederation>>,
    ),
    NodeError,
> {
    // The hub must present the SPIFFE id of the hub member in the registry in force (read at
    // every dial, so a registry change of hub takes effect); before the registry is known, any
    // node identity of this federation, whose answers are verified from the root keys anyway.
    let registry_in_force: Arc<std::sync::OnceLock<rcpfed_grpc::shared::SharedFederation>> =
        Arc::default();
    let expected_hub = {
        let registry_in_force = Arc::clone(&registry_in_force);
        Arc::new(move || {
            registry_in_force
                .get()
                .and_then(|shared| shared.get().hub().map(|hub| hub.spiffe_id.clone()))
        })
    };
    let mut channels = Vec::with_capacity(hub_endpoints.len());
    for endpoint in hub_endpoints {
        let channel = rcpfed_grpc::client_tls::checked_channel(
            endpoint,
            rcpfed_grpc::client_tls::ServerIdentityCheck {
                files: tls.clone(),
                crl: crl_file.cloned(),
                federation_id: federation_id.to_string(),
                expected: expected_hub.clone(),
            },
            rcpfed_grpc::client_tls::ChannelTiming {
                connect_timeout: hub_link.connect_timeout,
                keepalive_interval: hub_link.keepalive_interval,
                keepalive_timeout: hub_link.keepalive_timeout,
            },
        )
        .map_err(|e| NodeError::Config(format!("hub endpoint {endpoint}: {e}")))?;
        channels.push((endpoint.clone(), channel));
    }
    let channel = rcpfed_grpc::failover::FailoverChannel::new(channels)
        .ok_or_else(|| NodeError::Config("no hub endpoint is configured".into()))?;
    Ok((channel, registry_in_force))
}

/// Where the registry in force at start-up comes from: the cache, the configured version 1,
/// or the hub.
struct RegistrySource<'a> {
    trust: &'a rcpfed_core::registry::RootSet,
    federation_id: &'a str,
    initial: Option<&'a rcpfed_core::envelope::SignedEnvelope>,
    cache: std::path::PathBuf,
}

/// The registry in force at start-up (fetched from the hub if need be, retrying until
/// `shutdown`), also handed to the channel's check of the hub's identity.
async fn establish_registry(
    source: RegistrySource<'_>,
    channel: &rcpfed_grpc::failover::FailoverChannel,
    hub_link: &HubLink,
    shutdown: &CancellationToken,
    registry_in_force: &std::sync::OnceLock<rcpfed_grpc::shared::SharedFederation>,
) -> Result<Arc<registry::NodeRegistry>, NodeError> {
    let (node_registry, in_force) = registry::NodeRegistry::bootstrap(
        source.trust,
        source.federation_id,
        source.initial,
        source.cache,
        channel.clone(),
        hub_link.call_timeout,
        shutdown,
    )
    .await
    .map_err(NodeError::Config)?;
    // Set once, here: a second set cannot happen.
    let _ = registry_in_force.set(node_registry.shared());
    tracing::info!(version = in_force.version, "registry in force");
    Ok(Arc::new(node_registry))
}

/// The node's mTLS gRPC server: the node's admission rules and its services.
fn node_server<'a>(
    grpc_listener: TcpListener,
    tls: &'a TlsFiles,
    crl_file: Option<&'a std::path::Path>,
    stale_crl: rcpfed_grpc::acceptor::StaleCrl,
    ops: &rcpfed_grpc::server::OpsPort,
    shared: &rcpfed_grpc::shared::SharedFederation,
) -> rcpfed_grpc::server::GrpcServer<'a> {
    rcpfed_grpc::server::GrpcServer {
        listener: grpc_listener,
        tls,
        crl_file,
        stale_crl,
        health: ops.health.clone(),
        rpc_metrics: ops.rpc_metrics.clone(),
        federation: shared.clone(),
        rules: rcpfed_grpc::admission::NODE_RULES,
        self_bounded: rcpfed_grpc::deadline::NODE_SELF_BOUNDED,
        reflected: NODE_SERVICES,
        serving: SERVING_WITH_THE_SERVER,
    }
}

/// Refuses to start with a signing key the member file does not give this node.
fn check_signing_key(
    federation: &rcpfed_core::members::Federation,
    node_id: &str,
    signing_key: &SecretKey,
) -> Result<(), NodeError> {
    let member = federation
        .member(node_id)
        .ok_or_else(|| NodeError::Config(format!("node {node_id} is not in the member file")))?;
    if member.key(signing_key.key_id()).is_none() {
        return Err(NodeError::Config(format!(
            "signing key {} is not a key of {node_id} in the member file",
            signing_key.key_id()
        )));
    }
    Ok(())
}

/// The catalogue this node last mirrored, checked again: its signature by the hub and its
/// link to the version before it (empty before the first one is mirrored).
async fn load_catalogue(
    store: &Arc<dyn NodeStorage>,
    federation: &Arc<rcpfed_core::members::Federation>,
) -> Result<catalogue::CatalogueInForce, NodeError> {
    let catalogue_in_force = catalogue::CatalogueInForce::empty();
    let store = Arc::clone(store);
    let federation = Arc::clone(federation);
    let loaded = tokio::task::spawn_blocking(move || {
        catalogue::CatalogueInForce::load(&*store, &federation)
    })
    .await
    .map_err(|e| NodeError::Config(format!("catalogue loader panicked: {e}")))?
    .map_err(NodeError::Config)?;
    match loaded {
        Some(c) => {
            tracing::info!(version = c.version, "indicator catalogue in force");
            catalogue_in_force.set(c);
        }
        None => tracing::info!(
            "no indicator catalogue mirrored yet; indicator snapshots wait for the hub's"
        ),
    }
    Ok(catalogue_in_force)
}

/// What the node's background tasks share.
struct Roles<'a> {
    node_id: &'a str,
    shared: &'a rcpfed_grpc::shared::SharedFederation,
    store: &'a Arc<dyn NodeStorage>,
    state: &'a Arc<NodeState>,
    witness: &'a Arc<witness::Witness>,
    health: &'a tonic_health::server::HealthReporter,
}

/// What the mirror keeps up to date besides the mirror itself.
struct Mirroring {
    /// Opens publishing again once the mirror has caught up after a restore.
    own_chain: Arc<own_chain::OwnChainGate>,
    /// The registry in force, advanced by the registry versions in the feed.
    registry: Arc<registry::NodeRegistry>,
    /// The catalogue in force, advanced by the catalogue versions in the feed.
    catalogue: catalogue::CatalogueInForce,
}

/// The node's work besides answering RPCs: sending the outbox, mirroring the feed, applying
/// the indicator view, witnessing checkpoints and reporting the hub link.
struct BackgroundTasks {
    tasks: [(&'static str, tokio::task::JoinHandle<()>); 5],
}

impl BackgroundTasks {
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        roles: Roles<'_>,
        link_gauges: HubLinkGauges,
        mirroring: Mirroring,
        wakeup: Arc<tokio::sync::Notify>,
        channel: rcpfed_grpc::failover::FailoverChannel,
        hub_link: &HubLink,
        witness_interval: std::time::Duration,
        shutdown: &CancellationToken,
    ) -> Self {
        let link_task = tokio::spawn(report_hub_link(
            Arc::clone(roles.state),
            Arc::clone(roles.store),
            roles.health.clone(),
            link_gauges,
            Arc::clone(roles.witness),
            shutdown.clone(),
        ));
        let outbox_task = tokio::spawn(outbox::run(
            outbox::Outbox {
                federation: roles.shared.clone(),
                node_id: roles.node_id.to_string(),
                store: Arc::clone(roles.store),
                wakeup,
                state: Arc::clone(roles.state),
                witness: Arc::clone(roles.witness),
                call_timeout: hub_link.call_timeout,
            },
            channel.clone(),
            shutdown.clone(),
        ));
        let view_wake = Arc::new(tokio::sync::Notify::new());
        let mirror = mirror::Mirror {
            node_id: roles.node_id.to_string(),
            own_chain: mirroring.own_chain,
            federation: roles.shared.clone(),
            store: Arc::clone(roles.store),
            state: Arc::clone(roles.state),
            witness: Arc::clone(roles.witness),
            registry: mirroring.registry,
            catalogue: mirroring.catalogue,
            call_timeout: hub_link.call_timeout,
            view_wake: Arc::clone(&view_wake),
        };
        let mirror_task = tokio::spawn(mirror::run(mirror, channel.clone(), shutdown.clone()));
        let view_task = tokio::spawn(view::run(
            view::ViewApplier {
                store: Arc::clone(roles.store),
                state: Arc::clone(roles.state),
                wake: view_wake,
                call_timeout: hub_link.call_timeout,
            },
            channel.clone(),
            shutdown.clone(),
        ));
        let witness_task = tokio::spawn(witness::run(
            Arc::clone(roles.witness),
            channel,
            witness_interval,
            hub_link.call_timeout,
            shutdown.clone(),
        ));
        BackgroundTasks {
            tasks: [
                ("outbox", outbox_task),
                ("mirror", mirror_task),
                ("indicator view", view_task),
                ("witness", witness_task),
                ("hub link", link_task),
            ],
        }
    }

    /// Each task stops at its next await on the shutdown token; one stuck in a call to a hub
    /// that does not answer is aborted at `stop_by` (its work is in the store, resumed at
    /// start-up).
    async fn stop(self, stop_by: tokio::time::Instant) {
        for (name, task) in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(stop_by, task).await.is_err() {
                tracing::warn!(task = name, "task did not stop in time; aborted");
                abort.abort();
            }
        }
    }
}

/// The same IndicatorService as the hub's, over this node's mirror, with the reader role check
/// of the node's other read RPCs.
fn mirror_indicators(
    store: &Arc<dyn NodeStorage>,
    hub_id: &str,
    shared: &rcpfed_grpc::shared::SharedFederation,
) -> IndicatorRpc {
    IndicatorRpc::new(
        Arc::clone(store) as Arc<dyn IndicatorStore>,
        hub_id.to_string(),
        reader_role(shared.clone()),
    )
    .with_data_providers(shared.clone())
}

/// The node's own gRPC services.
struct NodeServices {
    witness: service::WitnessRpc,
    indicators: IndicatorRpc,
    node: Node,
}

impl NodeServices {
    /// The witness, the mirror's IndicatorService of `hub_id`'s log and the NodeService, over
    /// `store`.
    fn new(
        shared: rcpfed_grpc::shared::SharedFederation,
        hub_id: &str,
        witness: Arc<witness::Witness>,
        store: Arc<dyn NodeStorage>,
        node_id: String,
        publisher: publish::Publisher,
        state: Arc<NodeState>,
    ) -> Self {
        NodeServices {
            witness: service::WitnessRpc {
                federation: shared.clone(),
                witness,
            },
            indicators: mirror_indicators(&store, hub_id, &shared),
            node: Node {
                federation: shared,
                node_id,
                store,
                publisher,
                state,
            },
        }
    }

    fn add_to(self, routes: tonic::service::Routes) -> tonic::service::Routes {
        let max_decoding =
            rcpfed_grpc::admission::max_message_bytes(rcpfed_grpc::admission::NODE_RULES);
        routes
            .add_service(
                rcpfed_proto::v1::witness_service_server::WitnessServiceServer::new(self.witness)
                    .max_decoding_message_size(max_decoding)
                    .max_encoding_message_size(limits::MAX_MESSAGE_BYTES),
            )
            .add_service(
                NodeServiceServer::new(self.node)
                    .max_decoding_message_size(max_decoding)
                    .max_encoding_message_size(limits::MAX_MESSAGE_BYTES),
            )
            .add_service(self.indicators.into_server())
    }
}

/// What the node's public HTTP listener serves, from the verified mirror: the hub's SDMX REST
/// API and the dashboard (like the IndicatorService).
fn public_routes(
    store: &Arc<dyn NodeStorage>,
    node_id: &str,
    shared: &rcpfed_grpc::shared::SharedFederation,
    hub_id: &str,
) -> axum::Router {
    let sdmx = rcpfed_grpc::sdmx_rest::SdmxSource::new(
        Arc::clone(store) as Arc<dyn IndicatorStore>,
        hub_id.to_string(),
        shared.clone(),
    );
    let dashboard = rcpfed_grpc::dashboard::router(
        Arc::new(dashboard::NodeDashboard::new(
            Arc::clone(store) as Arc<dyn NodeStore>,
            node_id.to_string(),
        )),
        Arc::clone(store) as Arc<dyn IndicatorStore>,
        shared.clone(),
        hub_id.to_string(),
    );
    axum::Router::new()
        .nest("/sdmx", rcpfed_grpc::sdmx_rest::router(sdmx))
        .merge(dashboard)
}

#[cfg(test)]
mod tests;

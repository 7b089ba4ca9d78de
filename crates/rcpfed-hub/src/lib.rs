//! The GFMD hub: `rcpfed.v1.HubService` over mutual TLS, the ingest sequencer with group commit,
//! and the federation feed.
//!
//! Start-up order matters: the ops port (health NOT_SERVING) comes up first, then the store
//! opens and the ingest sequencer loads the chain heads, the registry is verified (or version
//! 1 logged), the catalogue chain is verified and the configured catalogue logged as its next
//! version if its content changed, then the gRPC port starts (HubService and the shared
//! IndicatorService) and health turns SERVING; the coherence reporter runs from then on. On
//! shutdown health turns NOT_SERVING first, then feed and chunk streams end, the reporter
//! stops and the server drains.

pub mod catalogue;
pub mod coherence;
mod cosign;
pub mod dashboard;
pub mod ingest;
pub mod log;
pub mod metrics;
pub mod quotas;
pub mod registry;
mod service;
pub mod staged;
pub mod tiles;

use rcpfed_core::keys::SecretKey;
use rcpfed_grpc::indicators::IndicatorRpc;
use rcpfed_grpc::limits;
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_proto::v1::hub_service_server::HubServiceServer;
use rcpfed_store::{HubStore, IndicatorStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use service::{Hub, NOT_A_CHUNKED_SNAPSHOT};

/// What the hub stores in: its log and feed ([`HubStore`]) and the indicator view the store
/// fills in the same transactions ([`IndicatorStore`]). One object, so the sequencer's action
/// checks and the IndicatorService read exactly what the log committed.
pub trait HubBackend: HubStore + IndicatorStore {}

impl<T: HubStore + IndicatorStore + ?Sized> HubBackend for T {}

/// Everything the hub needs to run.
pub struct HubSettings {
    /// The GFMD root keys and threshold: the trust anchor of the registry.
    pub trust: rcpfed_core::registry::RootSet,
    /// The federation id the root keys are for.
    pub federation_id: String,
    /// Registry version 1, used when the log holds no registry yet.
    pub initial_registry: rcpfed_core::envelope::SignedEnvelope,
    /// The hub's statement/receipt signing key.
    pub signing_key: SecretKey,
    /// TLS material.
    pub tls: TlsFiles,
    /// The federation CA's CRL (PEM). Client certificates it lists are refused; the file is
    /// watched and reloaded without a restart. None: no revocation check.
    pub crl_file: Option<std::path::PathBuf>,
    /// What the server does while the CRL is past its nextUpdate.
    pub stale_crl: rcpfed_grpc::acceptor::StaleCrl,
    /// Listener for the mTLS gRPC port.
    pub grpc_listener: TcpListener,
    /// Listener for the plaintext ops port (health, metrics).
    pub ops_listener: TcpListener,
    /// The public read-only HTTP listener (the log as C2SP tlog-tiles under `/tlog`, SDMX REST
    /// under `/sdmx`, the dashboard under `/dashboard/`); None: not served.
    pub http: Option<rcpfed_grpc::public_http::HttpSettings>,
    /// Witness cosignatures that make a checkpoint final.
    pub witness_quorum: u32,
    /// The indicator catalogue to issue, as TOML; None for the shipped one
    /// ([`rcpfed_core::catalogue::embedded_catalogue_toml`]). A new version is logged at
    /// start-up only when its content differs from the latest logged version.
    pub catalogue_toml: Option<String>,
    /// How often the coherence report task looks for new content.
    pub coherence_interval: std::time::Duration,
    /// Per-member quotas and the size of the CPU pool.
    pub quotas: quotas::Quotas,
    /// Opens the store; called after the ops port is up so health can say NOT_SERVING meanwhile.
    pub open_store:
        Box<dyn FnOnce() -> Result<Arc<dyn HubBackend>, rcpfed_store::StoreError> + Send>,
    /// Run as one of several hub processes on one shared database; None: the only one.
    pub standby: Option<Standby>,
    /// Where large snapshots are staged while their chunks arrive (scratch files in a
    /// directory of this process, removed when each transfer ends and, left by a stopped hub
    /// process, at start-up). Hubs may share it.
    pub staging_dir: std::path::PathBuf,
}

/// How a hub shares its database with standbys: whoever holds the lease (a row in the
/// database, timed by its clock, fenced: see [`rcpfed_store::HubLease`]) sequences and signs;
/// the others serve reads and answer writes with NOT_LEADER, and take the lease over when it
/// expires. All of them are the same logical hub (certificate, signing key, SPIFFE id).
#[derive(Clone, Debug)]
pub struct Standby {
    /// How long the lease lasts unrenewed; the leader renews it every third of this, and a
    /// standby takes over at most this long after the leader stopped renewing.
    pub lease: Duration,
    /// The gRPC endpoint this process advertises while it leads ("https://host:port"), named
    /// in the standbys' NOT_LEADER answers; may be empty.
    pub advertise: String,
}

/// Default of [`HubSettings::coherence_interval`].
pub const DEFAULT_COHERENCE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the hub stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(#[from] rcpfed_store::StoreError),
    /// TLS material could not be loaded.
    #[error("tls: {0}")]
    Tls(#[from] rcpfed_grpc::tls::TlsError),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be set up.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The signing key is not the hub's key in the member file.
    #[error("configuration: {0}")]
    Config(String),
    /// I/O on a listener.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<rcpfed_grpc::server::ServerError> for HubError {
    fn from(e: rcpfed_grpc::server::ServerError) -> Self {
        use rcpfed_grpc::server::ServerError;
        match e {
            ServerError::Tls(e) => HubError::Tls(e),
            ServerError::Transport(e) => HubError::Transport(e),
            ServerError::Reflection(e) => HubError::Reflection(e),
            ServerError::Io(e) => HubError::Io(e),
        }
    }
}

/// Runs the hub until `shutdown` is cancelled.
pub async fn run(settings: HubSettings, shutdown: CancellationToken) -> Result<(), HubError> {
    let HubSettings {
        trust,
        federation_id,
        initial_registry,
        signing_key,
        tls,
        crl_file,
        stale_crl,
        grpc_listener,
        ops_listener,
        http,
        witness_quorum,
        catalogue_toml,
        coherence_interval,
        quotas,
        open_store,
        standby,
        staging_dir,
    } = settings;
    if witness_quorum == 0 {
        return Err(HubError::Config(
            "witness_quorum must be at least 1: a checkpoint nobody cosigned is not final".into(),
        ));
    }
    // A catalogue that does not parse stops the hub before anything is opened or logged.
    let catalogue_text = match &catalogue_toml {
        Some(text) => text.as_str(),
        None => rcpfed_core::catalogue::embedded_catalogue_toml(),
    };
    let configured_catalogue = rcpfed_core::catalogue::Catalogue::from_toml(catalogue_text)
        .map_err(|e| HubError::Config(format!("the configured catalogue is not valid: {e}")))?;

    let (ops, metrics) = rcpfed_grpc::server::OpsPort::start(
        ops_listener,
        HUB_SERVICES,
        shutdown.clone(),
        metrics::HubMetrics::register,
    )
    .await?;
    let (staging, left) = rcpfed_store::snapshot_staging::StagingArea::open(&staging_dir)?;
    if left > 0 {
        tracing::info!(processes = left, dir = %staging_dir.display(), "removed the staging of snapshots that stopped hub processes did not finish");
    }
    let store = tokio::task::spawn_blocking(open_store)
        .await
        .map_err(|e| HubError::Config(format!("store opener panicked: {e}")))??;
    let ctx = Arc::new(Ctx {
        trust,
        federation_id,
        initial_registry,
        signing_key,
        tls,
        crl_file,
        stale_crl,
        grpc_listener: grpc_listener.into_std()?,
        witness_quorum,
        configured_catalogue,
        coherence_interval,
        quotas,
        store,
        health: ops.health.clone(),
        metrics,
        rpc_metrics: ops.rpc_metrics.clone(),
        shutdown: shutdown.clone(),
        staging,
    });
    let ran = match standby {
        None => {
            ctx.metrics.role(true, 0);
            let public_http = PublicHttp::Later(http);
            lead(&ctx, public_http, shutdown.clone()).await
        }
        Some(standby) => run_with_standby(&ctx, http, &standby).await,
    };
    shutdown.cancel();
    ops.stopped(tokio::time::Instant::now() + OPS_STOP_GRACE)
        .await;
    ran
}

/// How long the ops port may take to stop once the hub has.
const OPS_STOP_GRACE: Duration = Duration::from_secs(3);

/// Running as one of several hub processes on one database (see [`Standby`]): stand by until
/// the lease is free, lead while it is held, stand by again after losing it.
async fn run_with_standby(
    ctx: &Arc<Ctx>,
    http: Option<rcpfed_grpc::public_http::HttpSettings>,
    standby: &Standby,
) -> Result<(), HubError> {
    if ctx.store.lease().is_none() {
        return Err(HubError::Config(
            "a hub with standbys needs a store several processes share: set database_url \
             (PostgreSQL)"
                .into(),
        ));
    }
    let ttl = standby.lease;
    with_lease(&ctx.store, move |lease| lease.enable_fencing(ttl)).await?;
    let holder = format!(
        "{}/{}/{:08x}",
        hostname(),
        std::process::id(),
        // Tells two processes of one host and pid (a restart in a container) apart.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    tracing::info!(%holder, lease_ms = ttl.as_millis(), advertise = %standby.advertise, "hub with standbys: taking the lease or standing by");
    // The public side is read from the shared database, whoever leads. Its federation (the
    // reader check, the data providers, the dashboard's members) is the registry in force at
    // start-up.
    let public_http = match http {
        Some(http) => {
            let (federation, hub_id) = registry_in_force(ctx).await?;
            Some(start_public_http(ctx, http, federation, hub_id)?)
        }
        None => None,
    };
    let mut result = Ok(());
    while !ctx.shutdown.is_cancelled() {
        let Some(epoch) = stand_by(ctx, &holder, standby).await? else {
            break;
        };
        tracing::info!(epoch, "HUB LEASE TAKEN: this process leads from now on");
        ctx.metrics.role(true, epoch);
        let term = ctx.shutdown.child_token();
        let keeper = tokio::spawn(keep_lease(Arc::clone(&ctx.store), epoch, ttl, term.clone()));
        let led = lead(ctx, PublicHttp::None, term.clone()).await;
        term.cancel();
        if let Err(e) = keeper.await {
            tracing::error!(error = %e, epoch, "the hub lease keeper failed");
        }
        ctx.metrics.role(false, epoch);
        // Released in every case: nothing of this process is written from here on, and a
        // standby takes over without waiting for the lease to expire.
        if let Err(e) = with_lease(&ctx.store, move |lease| lease.release(epoch)).await {
            tracing::warn!(error = %e, epoch, "cannot release the hub lease; it expires by itself");
        }
        match led {
            Ok(()) if ctx.shutdown.is_cancelled() => break,
            Ok(()) => tracing::warn!(epoch, "STEPPED DOWN: the hub lease was lost; standing by"),
            Err(e) if !ctx.shutdown.is_cancelled() && !term_held(&ctx.store, epoch) => {
                tracing::warn!(error = %e, epoch, "STEPPED DOWN: the hub lease was lost while starting to lead; standing by");
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if let Some(public_http) = public_http {
        rcpfed_grpc::server::log_failure("public HTTP", public_http).await;
    }
    result
}

/// Whether this process still holds term `epoch`.
fn term_held(store: &Arc<dyn HubBackend>, epoch: u64) -> bool {
    store.lease().and_then(|l| l.held_epoch()) == Some(epoch)
}

/// The machine's name, for the lease holder's name (which says who leads).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "hub".into())
}

/// Runs a lease operation off the async runtime.
async fn with_lease<T: Send + 'static>(
    store: &Arc<dyn HubBackend>,
    f: impl FnOnce(&dyn rcpfed_store::HubLease) -> Result<T, rcpfed_store::StoreError> + Send + 'static,
) -> Result<T, HubError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || match store.lease() {
        Some(lease) => f(lease),
        None => Err(rcpfed_store::StoreError::Corrupt(
            "this store has no hub lease".into(),
        )),
    })
    .await
    .map_err(|e| HubError::Config(format!("lease task panicked: {e}")))?
    .map_err(HubError::Store)
}

/// Renews the lease of term `epoch` every third of `ttl` and ends `term` as soon as the term
/// is over: another process took the lease, a write found it taken (the fence), or no renewal
/// succeeded for a whole `ttl` (the database unreachable: the standbys may take over).
async fn keep_lease(
    store: Arc<dyn HubBackend>,
    epoch: u64,
    ttl: Duration,
    term: CancellationToken,
) {
    let renew_every = ttl / 3;
    let mut last_renewed = tokio::time::Instant::now();
    let mut next_renewal = last_renewed + renew_every;
    loop {
        tokio::select! {
            _ = term.cancelled() => return,
            _ = tokio::time::sleep(LEASE_CHECK) => {}
        }
        if !term_held(&store, epoch) {
            tracing::error!(
                epoch,
                "HUB LEASE LOST: a write found another process's term; stepping down"
            );
            term.cancel();
            return;
        }
        let now = tokio::time::Instant::now();
        if now < next_renewal {
            continue;
        }
        next_renewal = now + renew_every;
        match with_lease(&store, move |lease| lease.renew(epoch, ttl)).await {
            Ok(true) => last_renewed = now,
            Ok(false) => {
                tracing::error!(
                    epoch,
                    "HUB LEASE LOST: another process took the lease; stepping down"
                );
                term.cancel();
                return;
            }
            Err(e) if last_renewed.elapsed() >= ttl => {
                tracing::error!(error = %e, epoch, "HUB LEASE LOST: no renewal succeeded for a whole lease; stepping down");
                term.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, epoch, "cannot renew the hub lease; retrying"),
        }
    }
}

/// How often the leader looks whether a write found its term over.
const LEASE_CHECK: Duration = Duration::from_millis(100);

/// Stands by until this process takes the lease (Some(epoch)) or `shutdown` (None). Meanwhile,
/// once the shared log holds a registry and a catalogue, it serves reads from the database and
/// refuses writes with NOT_LEADER, naming the leader's advertised endpoint.
async fn stand_by(
    ctx: &Arc<Ctx>,
    holder: &str,
    standby: &Standby,
) -> Result<Option<u64>, HubError> {
    let ttl = standby.lease;
    let poll = (ttl / 10).clamp(Duration::from_millis(50), Duration::from_millis(500));
    let (leader_tx, leader_rx) = tokio::sync::watch::channel(String::new());
    let (feed_tx, feed_rx) = tokio::sync::watch::channel(0u64);
    let phase = ctx.shutdown.child_token();
    let mut server: Option<tokio::task::JoinHandle<Result<(), HubError>>> = None;
    // The read service being served, to put later registry versions in force.
    let mut serving: Option<(Arc<Hub>, rcpfed_grpc::shared::SharedFederation)> = None;
    let mut registry_checked = tokio::time::Instant::now();
    // The feed grew since the last look for a registry version: a growth inside the one-second
    // pause is remembered, not lost (the leader may log nothing more for a long time).
    let mut registry_unchecked = false;
    let mut said_waiting = false;
    let mut known_epoch = u64::MAX;
    let stop = |server: Option<tokio::task::JoinHandle<_>>| {
        // The read server drains in the background: the leader's server takes new connections
        // on the same socket meanwhile.
        phase.cancel();
        drop(server);
    };
    loop {
        let (name, endpoint) = (holder.to_string(), standby.advertise.clone());
        match with_lease(&ctx.store, move |l| l.try_acquire(&name, &endpoint, ttl)).await {
            Ok(Some(epoch)) => {
                stop(server);
                return Ok(Some(epoch));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot reach the hub lease; retrying"),
        }
        observe_leader(ctx, &leader_tx, &mut known_epoch).await;
        // A registry version the leader logged is put in force here too (admission and reads
        // follow it), looked for at most once a second.
        registry_unchecked |= observe_feed(ctx, &feed_tx).await;
        if registry_unchecked
            && registry_checked.elapsed() >= REGISTRY_RECHECK
            && let Some((hub, federation)) = &serving
        {
            registry_checked = tokio::time::Instant::now();
            registry_unchecked = false;
            follow_registry(ctx, hub, federation).await;
        }
        if let Some(running) = server.take_if(|running| running.is_finished()) {
            match running.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    phase.cancel();
                    return Err(e);
                }
                // Started again below.
                Err(e) => tracing::error!(error = %e, "the standby's read server failed"),
            }
        }
        if server.is_none() {
            match standby_hub(ctx, leader_rx.clone(), feed_rx.clone(), phase.clone()).await {
                Ok(Some((hub, indicators, federation))) => {
                    tracing::info!("standby serving reads from the shared database");
                    serving = Some((Arc::clone(&hub), federation.clone()));
                    server = Some(tokio::spawn(serve(
                        Arc::clone(ctx),
                        hub,
                        indicators,
                        federation,
                        phase.clone(),
                    )));
                }
                Ok(None) if !said_waiting => {
                    said_waiting = true;
                    tracing::info!(
                        "standing by: no leader has logged the registry and catalogue yet"
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "standby cannot load the log state yet; retrying")
                }
            }
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {
                stop(server);
                return Ok(None);
            }
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Reads who holds the lease: the role gauge, a log line when the term changes, and the
/// leader's endpoint that NOT_LEADER refusals name.
async fn observe_leader(
    ctx: &Arc<Ctx>,
    leader_tx: &tokio::sync::watch::Sender<String>,
    known_epoch: &mut u64,
) {
    let current = match with_lease(&ctx.store, |l| l.current()).await {
        Ok(current) => current,
        Err(e) => {
            // Asked again at the next poll; the failed acquisition above said it already.
            tracing::debug!(error = %e, "cannot read the hub lease");
            return;
        }
    };
    ctx.metrics.role(false, current.epoch);
    if current.epoch != *known_epoch {
        *known_epoch = current.epoch;
        tracing::info!(leader = %current.holder, endpoint = %current.endpoint, epoch = current.epoch, live = current.live, "standing by; the lease is held by");
    }
    leader_tx.send_if_modified(|known| {
        let changed = *known != current.endpoint;
        if changed {
            known.clone_from(&current.endpoint);
        }
        changed
    });
}

/// Reads the shared log's last feed index for the standby's feed subscribers; true when it
/// grew.
async fn observe_feed(ctx: &Arc<Ctx>, feed_tx: &tokio::sync::watch::Sender<u64>) -> bool {
    let store = Arc::clone(&ctx.store);
    let size = match tokio::task::spawn_blocking(move || store.last_feed_index()).await {
        Ok(Ok(size)) => size,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "standby cannot read the log's size; retrying");
            return false;
        }
        Err(e) => {
            tracing::error!(error = %e, "standby's log size reader failed; retrying");
            return false;
        }
    };
    feed_tx.send_if_modified(|head| {
        let grew = size > *head;
        if grew {
            *head = size;
        }
        grew
    })
}

/// How often at most a standby looks for a registry version logged by the leader.
const REGISTRY_RECHECK: Duration = Duration::from_secs(1);

/// Puts the latest logged registry version in force on a standby's read service, when it is
/// newer than the one in force there (verified from the root keys, as at start-up).
async fn follow_registry(
    ctx: &Arc<Ctx>,
    hub: &Arc<Hub>,
    federation: &rcpfed_grpc::shared::SharedFederation,
) {
    let loaded = match load_registry(ctx).await {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::warn!(error = %e, "standby cannot verify the logged registry versions");
            return;
        }
    };
    let mut current = hub.registry.lock().await;
    if loaded.state.registry.version <= current.registry.version {
        return;
    }
    match loaded.state.registry.to_federation() {
        Ok(next) => {
            tracing::info!(
                version = loaded.state.registry.version,
                "standby: registry version in force"
            );
            federation.set(next);
            *current = loaded.state;
        }
        Err(e) => tracing::warn!(error = %e, "standby cannot use the logged registry version"),
    }
}

/// The read-only service of a standby: the registry and catalogue in force as logged, no
/// sequencer. None while the log holds no registry or catalogue yet.
async fn standby_hub(
    ctx: &Arc<Ctx>,
    leader: tokio::sync::watch::Receiver<String>,
    feed_head: tokio::sync::watch::Receiver<u64>,
    phase: CancellationToken,
) -> Result<
    Option<(
        Arc<Hub>,
        IndicatorRpc,
        rcpfed_grpc::shared::SharedFederation,
    )>,
    HubError,
> {
    let loaded = load_registry(ctx).await?;
    if loaded.needs_logging {
        return Ok(None);
    }
    let federation = loaded
        .state
        .registry
        .to_federation()
        .map_err(|e| HubError::Config(e.to_string()))?;
    let hub_member = federation
        .hub()
        .ok_or_else(|| HubError::Config("the member file names no hub".into()))?
        .clone();
    let issuer = catalogue::Issuer {
        federation_id: federation.federation_id.clone(),
        hub_id: hub_member.id.clone(),
        hub_keys: hub_member.keys.clone(),
        key: ctx.signing_key.clone(),
    };
    let latest = {
        let store = Arc::clone(&ctx.store);
        tokio::task::spawn_blocking(move || catalogue::load_chain(store.as_ref(), &issuer))
            .await
            .map_err(|e| HubError::Config(format!("catalogue loader panicked: {e}")))?
            .map_err(HubError::Config)?
    };
    let Some(latest) = latest else {
        return Ok(None);
    };
    let shared_federation = rcpfed_grpc::shared::SharedFederation::new(federation);
    let indicators = IndicatorRpc::new(
        Arc::clone(&ctx.store) as Arc<dyn IndicatorStore>,
        hub_member.id.clone(),
        rcpfed_grpc::indicators::reader_role(shared_federation.clone()),
    )
    .with_data_providers(shared_federation.clone())
    .on_quota_refusal(quota_metric(&ctx.metrics));
    let hub = new_hub(
        ctx,
        shared_federation.clone(),
        ingest::Ingest::standby(feed_head),
        loaded.state,
        catalogue::SharedCatalogue::new(latest),
        phase,
        Some(leader),
    );
    Ok(Some((hub, indicators, shared_federation)))
}

/// Everything a leading or standing-by phase needs, fixed for the process's life.
struct Ctx {
    trust: rcpfed_core::registry::RootSet,
    federation_id: String,
    initial_registry: rcpfed_core::envelope::SignedEnvelope,
    signing_key: SecretKey,
    tls: TlsFiles,
    crl_file: Option<std::path::PathBuf>,
    stale_crl: rcpfed_grpc::acceptor::StaleCrl,
    /// The gRPC socket; each phase serves a duplicate of it, so connections queue in its
    /// backlog while one phase's server ends and the next one's starts.
    grpc_listener: std::net::TcpListener,
    witness_quorum: u32,
    configured_catalogue: rcpfed_core::catalogue::Catalogue,
    coherence_interval: Duration,
    quotas: quotas::Quotas,
    store: Arc<dyn HubBackend>,
    health: tonic_health::server::HealthReporter,
    metrics: metrics::HubMetrics,
    rpc_metrics: rcpfed_grpc::rpc_metrics::RpcMetrics,
    shutdown: CancellationToken,
    /// This process's staging directory, held while it runs.
    staging: rcpfed_store::snapshot_staging::StagingArea,
}

/// When the public HTTP port starts.
enum PublicHttp {
    /// Once the log is loaded, so its first answer is the log in force (a single hub).
    Later(Option<rcpfed_grpc::public_http::HttpSettings>),
    /// Already started (a hub with standbys), or not configured.
    None,
}

fn start_public_http(
    ctx: &Ctx,
    http: rcpfed_grpc::public_http::HttpSettings,
    federation: rcpfed_grpc::shared::SharedFederation,
    hub_id: String,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, HubError> {
    let log_store: Arc<dyn HubStore> = Arc::clone(&ctx.store) as Arc<dyn HubStore>;
    let indicators: Arc<dyn IndicatorStore> = Arc::clone(&ctx.store) as Arc<dyn IndicatorStore>;
    let sdmx_source = rcpfed_grpc::sdmx_rest::SdmxSource::new(
        Arc::clone(&indicators),
        hub_id.clone(),
        federation.clone(),
    );
    let dashboard = rcpfed_grpc::dashboard::router(
        Arc::new(dashboard::HubDashboard::new(
            Arc::clone(&log_store),
            ctx.witness_quorum,
        )),
        indicators,
        federation.clone(),
        hub_id,
    );
    Ok(http.spawn(
        ctx.crl_file.clone(),
        federation,
        axum::Router::new()
            .nest("/tlog", tiles::router(log_store))
            .nest("/sdmx", rcpfed_grpc::sdmx_rest::router(sdmx_source))
            .merge(dashboard),
        "/tlog/checkpoint, /tlog/tile/<L>/<N>[.p/<W>] and /tlog/tile/entries/<N>[.p/<W>] (C2SP tlog-tiles), /sdmx/ (SDMX REST 1.5.0), and the dashboard at /dashboard/",
        ctx.shutdown.clone(),
    )?)
}

/// The registry in force: the versions in the log verified from the root keys, or version 1.
async fn load_registry(ctx: &Arc<Ctx>) -> Result<registry::Loaded, HubError> {
    let ctx = Arc::clone(ctx);
    tokio::task::spawn_blocking(move || {
        registry::load(
            ctx.store.as_ref(),
            &ctx.trust,
            &ctx.federation_id,
            &ctx.initial_registry,
        )
    })
    .await
    .map_err(|e| HubError::Config(format!("registry loader panicked: {e}")))?
    .map_err(HubError::Config)
}

/// Counts the IndicatorService's quota refusals in the hub's quota-refusal metric.
fn quota_metric(metrics: &metrics::HubMetrics) -> rcpfed_grpc::indicators::QuotaRefusalHook {
    let metrics = metrics.clone();
    Arc::new(move |reason| metrics.quota_refused(reason))
}

/// In the background, adds the flags the registry version in force calls for that are
/// missing: a hub stopped between logging that version and flagging what it revokes.
fn complete_flags(ctx: &Ctx, state: &registry::RegistryState) {
    if state.previous.is_none() {
        return;
    }
    let store = Arc::clone(&ctx.store);
    let state = state.clone();
    tokio::task::spawn_blocking(
        move || match registry::reflag_in_force(store.as_ref(), &state) {
            Ok(0) => {}
            Ok(newly_flagged) => tracing::warn!(
                version = state.registry.version,
                newly_flagged,
                "statements flagged at start-up: signed with keys revoked before their acceptance"
            ),
            Err(e) => tracing::error!(
                version = state.registry.version,
                error = %e,
                "cannot check the flags of the registry version in force; publishing it again retries"
            ),
        },
    );
}

/// The federation of the registry in force in the store (or of registry version 1 before any
/// is logged), and the hub's member id.
async fn registry_in_force(
    ctx: &Arc<Ctx>,
) -> Result<(rcpfed_grpc::shared::SharedFederation, String), HubError> {
    let loaded = load_registry(ctx).await?;
    let federation = loaded
        .state
        .registry
        .to_federation()
        .map_err(|e| HubError::Config(e.to_string()))?;
    let hub_id = federation
        .hub()
        .ok_or_else(|| HubError::Config("the member file names no hub".into()))?
        .id
        .clone();
    Ok((
        rcpfed_grpc::shared::SharedFederation::new(federation),
        hub_id,
    ))
}

fn new_hub(
    ctx: &Ctx,
    federation: rcpfed_grpc::shared::SharedFederation,
    ingest: ingest::Ingest,
    registry: registry::RegistryState,
    catalogue: catalogue::SharedCatalogue,
    phase: CancellationToken,
    standby: Option<tokio::sync::watch::Receiver<String>>,
) -> Arc<Hub> {
    let quotas = ctx.quotas.clone();
    Arc::new_cyclic(|me| Hub {
        me: me.clone(),
        pool: quotas::CpuPool::new(quotas.pool_size()),
        quotas,
        submissions: quotas::PerMember::default(),
        subscriptions: quotas::PerMember::default(),
        chunk_streams: quotas::PerMember::default(),
        feed_pages: Arc::new(service::FeedPages::new(ctx.metrics.clone())),
        snapshot_slots: quotas::PerMember::default(),
        federation,
        store: Arc::clone(&ctx.store),
        cosignatures: cosign::CosignatureWriter::start(Arc::clone(&ctx.store)),
        ingest,
        shutdown: phase,
        quorum: ctx.witness_quorum,
        registry: Arc::new(tokio::sync::Mutex::new(registry)),
        catalogue,
        metrics: ctx.metrics.clone(),
        snapshot_permits: Arc::new(tokio::sync::Semaphore::new(
            limits::MAX_CONCURRENT_SNAPSHOTS,
        )),
        standby,
        staging_dir: ctx.staging.dir().to_path_buf(),
    })
}

/// Leads until `term` ends: loads the log state as a restart does (chain heads, log, registry,
/// catalogue), starts the sequencer and the coherence reporter, and serves everything.
async fn lead(
    ctx: &Arc<Ctx>,
    public_http: PublicHttp,
    term: CancellationToken,
) -> Result<(), HubError> {
    // The registry in force: versions in the log verified from the root keys, or version 1.
    let loaded = load_registry(ctx).await?;
    let federation = loaded
        .state
        .registry
        .to_federation()
        .map_err(|e| HubError::Config(e.to_string()))?;
    tracing::info!(version = loaded.state.registry.version, "registry in force");
    restore_log_gauges(ctx).await?;
    let hub_member = signing_member(&federation, &ctx.signing_key)?;
    let ingest = start_sequencer(ctx, &federation.federation_id, &hub_member.id).await?;
    if loaded.needs_logging {
        // A new hub: registry version 1 becomes the first entry of the log and the feed.
        match ingest
            .submit(registry::as_statement(&loaded.state, None))
            .await
        {
            Ok(_) => tracing::info!("registry version 1 logged"),
            Err(e) => {
                return Err(HubError::Config(format!(
                    "cannot log registry version 1: {e}"
                )));
            }
        }
    }
    let catalogue = catalogue_in_force(ctx, &ingest, &federation.federation_id, hub_member).await?;
    let hub_id = hub_member.id.clone();
    let shared_federation = rcpfed_grpc::shared::SharedFederation::new(federation.clone());
    let indicators = IndicatorRpc::new(
        Arc::clone(&ctx.store) as Arc<dyn IndicatorStore>,
        hub_id.clone(),
        rcpfed_grpc::indicators::reader_role(shared_federation.clone()),
    )
    .with_data_providers(shared_federation.clone())
    .on_quota_refusal(quota_metric(&ctx.metrics));
    let coherence = tokio::spawn(coherence::run(
        coherence::Reporter {
            store: Arc::clone(&ctx.store),
            ingest: ingest.clone(),
            federation: shared_federation.clone(),
            catalogue: catalogue.clone(),
            hub_id: hub_id.clone(),
            key: ctx.signing_key.clone(),
            metrics: ctx.metrics.clone(),
        },
        ctx.coherence_interval,
        term.clone(),
    ));
    log_quotas(&ctx.quotas);
    complete_flags(ctx, &loaded.state);
    let hub = new_hub(
        ctx,
        shared_federation.clone(),
        ingest,
        loaded.state,
        catalogue,
        term.clone(),
        None,
    );
    // Started once the log is loaded, so its first answer is the log in force.
    let public_http = match public_http {
        PublicHttp::Later(Some(http)) => Some(start_public_http(
            ctx,
            http,
            shared_federation.clone(),
            hub_id,
        )?),
        PublicHttp::Later(None) | PublicHttp::None => None,
    };
    let served = serve(
        Arc::clone(ctx),
        hub,
        indicators,
        shared_federation,
        term.clone(),
    )
    .await;
    term.cancel();
    if let Err(e) = coherence.await {
        tracing::error!(error = %e, "the coherence reporter failed");
    }
    if let Some(public_http) = public_http {
        rcpfed_grpc::server::log_failure("public HTTP", public_http).await;
    }
    served
}

/// The log gauges start from what is stored, not from zero.
async fn restore_log_gauges(ctx: &Arc<Ctx>) -> Result<(), HubError> {
    let store = Arc::clone(&ctx.store);
    let witness_quorum = ctx.witness_quorum;
    let (latest, final_cp) = tokio::task::spawn_blocking(move || {
        Ok::<_, rcpfed_store::StoreError>((
            store.latest_checkpoint()?,
            store.latest_final_checkpoint(witness_quorum)?,
        ))
    })
    .await
    .map_err(|e| HubError::Config(format!("checkpoint reader panicked: {e}")))?
    .map_err(|e| HubError::Config(format!("cannot read the latest checkpoint: {e}")))?;
    if let Some(cp) = latest {
        ctx.metrics.checkpoint_issued(cp.size, cp.created_at_ms);
    }
    if let Some(cp) = final_cp {
        ctx.metrics.final_checkpoint(cp.size);
    }
    Ok(())
}

/// The hub member of `federation`, refused unless `signing_key` is its first key: witnesses
/// verify checkpoints with that key (logkeys::log_verifier), so it is the only key the hub may
/// sign with.
fn signing_member<'f>(
    federation: &'f rcpfed_core::members::Federation,
    signing_key: &SecretKey,
) -> Result<&'f rcpfed_core::members::Member, HubError> {
    let hub_member = federation
        .hub()
        .ok_or_else(|| HubError::Config("the member file names no hub".into()))?;
    if hub_member.keys.first().map(|k| k.key_id.as_str()) != Some(signing_key.key_id()) {
        return Err(HubError::Config(format!(
            "signing key {} is not the first key of hub member {} in the member file; witnesses would refuse every checkpoint",
            signing_key.key_id(),
            hub_member.id
        )));
    }
    Ok(hub_member)
}

/// Starts the sequencer, which first reads the database (the chain heads and the log's right
/// edge).
async fn start_sequencer(
    ctx: &Arc<Ctx>,
    federation_id: &str,
    hub_id: &str,
) -> Result<ingest::Ingest, HubError> {
    let store = Arc::clone(&ctx.store);
    let signer = ingest::ReceiptSigner {
        federation_id: federation_id.to_string(),
        hub_id: hub_id.to_string(),
        key: ctx.signing_key.clone(),
    };
    let metrics = ctx.metrics.clone();
    Ok(
        tokio::task::spawn_blocking(move || ingest::Ingest::start(store, signer, metrics))
            .await
            .map_err(|e| HubError::Config(format!("sequencer loader panicked: {e}")))??,
    )
}

/// The catalogue in force: the logged chain verified with the hub's keys, and the configured
/// catalogue logged as the next version when its content differs.
async fn catalogue_in_force(
    ctx: &Arc<Ctx>,
    ingest: &ingest::Ingest,
    federation_id: &str,
    hub_member: &rcpfed_core::members::Member,
) -> Result<catalogue::SharedCatalogue, HubError> {
    let in_force = catalogue::establish(
        Arc::clone(&ctx.store),
        ingest,
        catalogue::Issuer {
            federation_id: federation_id.to_string(),
            hub_id: hub_member.id.clone(),
            hub_keys: hub_member.keys.clone(),
            key: ctx.signing_key.clone(),
        },
        ctx.configured_catalogue.clone(),
    )
    .await
    .map_err(HubError::Config)?;
    tracing::info!(
        version = in_force.version,
        catalogue = %in_force.catalogue.catalogue.id,
        content_version = %in_force.catalogue.catalogue.version,
        "catalogue in force"
    );
    Ok(catalogue::SharedCatalogue::new(in_force))
}

/// Logs the per-member quotas in force.
fn log_quotas(quotas: &quotas::Quotas) {
    tracing::info!(
        cpu_threads = quotas.pool_size(),
        submissions_in_flight = quotas.submissions_in_flight,
        feed_subscriptions = quotas.feed_subscriptions,
        snapshot_chunk_idle_ms = quotas.snapshot_chunk_idle.as_millis(),
        snapshot_min_rate = quotas.snapshot_min_rate,
        "per-member quotas"
    );
}

/// The rcpfed services the hub serves on its gRPC port (health and reflection list them).
const HUB_SERVICES: &[&str] = &[
    rcpfed_proto::v1::hub_service_server::SERVICE_NAME,
    rcpfed_proto::v1::indicator_service_server::SERVICE_NAME,
];

/// Serves HubService, IndicatorService, health and reflection on a duplicate of the gRPC
/// socket until `phase` ends, then drains (bounded).
async fn serve(
    ctx: Arc<Ctx>,
    hub: Arc<Hub>,
    indicators: IndicatorRpc,
    federation: rcpfed_grpc::shared::SharedFederation,
    phase: CancellationToken,
) -> Result<(), HubError> {
    let leading = hub.standby.is_none();
    let listening = rcpfed_grpc::server::GrpcServer {
        listener: TcpListener::from_std(ctx.grpc_listener.try_clone()?)?,
        tls: &ctx.tls,
        crl_file: ctx.crl_file.as_deref(),
        stale_crl: ctx.stale_crl,
        health: ctx.health.clone(),
        rpc_metrics: ctx.rpc_metrics.clone(),
        federation,
        rules: rcpfed_grpc::admission::HUB_RULES,
        self_bounded: rcpfed_grpc::deadline::HUB_SELF_BOUNDED,
        reflected: HUB_SERVICES,
        serving: HUB_SERVICES,
    }
    .listen(phase)
    .await?;
    let grpc_addr = listening.addr();
    if leading {
        tracing::info!(%grpc_addr, federation = %ctx.federation_id, "hub serving (mTLS)");
    } else {
        tracing::info!(%grpc_addr, federation = %ctx.federation_id, "standby hub serving reads (mTLS); writes answer NOT_LEADER");
    }
    let health = ctx.health.clone();
    let process_shutdown = ctx.shutdown.clone();
    let on_shutdown = async move {
        if process_shutdown.is_cancelled() {
            // Probes must see NOT_SERVING as soon as shutdown starts.
            rcpfed_grpc::server::mark_not_serving(&health, HUB_SERVICES).await;
            tracing::info!("hub shutting down");
        } else if leading {
            tracing::info!("leader's server ending: the term is over");
        } else {
            tracing::info!("standby's read server ending: this process leads now");
        }
    };
    let hub_service = HubServiceServer::from_arc(hub)
        .max_decoding_message_size(rcpfed_grpc::admission::max_message_bytes(
            rcpfed_grpc::admission::HUB_RULES,
        ))
        .max_encoding_message_size(limits::MAX_MESSAGE_BYTES);
    listening
        .serve(
            |routes| {
                routes
                    .add_service(hub_service)
                    .add_service(indicators.into_server())
            },
            on_shutdown,
        )
        .await?;
    Ok(())
}

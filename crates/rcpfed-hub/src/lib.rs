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
pub mod dashboard;
pub mod ingest;
pub mod log;
pub mod metrics;
pub mod quotas;
pub mod registry;
mod service;
#[cfg(test)]
mod testkit;
pub mod tiles;

use rcpfed_core::keys::SecretKey;
use rcpfed_grpc::indicators::IndicatorRpc;
use rcpfed_grpc::limits;
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_proto::v1::hub_service_server::HubServiceServer;
use rcpfed_proto::v1::indicator_service_server::IndicatorServiceServer;
use rcpfed_store::{HubStore, IndicatorStore};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

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
    /// The public read-only HTTP listener (the log as C2SP tlog-tiles under `/tlog`, the
    /// dashboard under `/dashboard/`); None: not served.
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

    let (health, health_service) = tonic_health::server::health_reporter();
    // tonic-health starts "" as SERVING; we are not serving until the store is open.
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health.set_not_serving::<HubServiceServer<Hub>>().await;
    health
        .set_not_serving::<IndicatorServiceServer<IndicatorRpc>>()
        .await;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = metrics::HubMetrics::register(&mut registry);
    let rpc_metrics = rcpfed_grpc::rpc_metrics::RpcMetrics::register(&mut registry);
    rcpfed_grpc::ops::register_build_info(&mut registry);
    let ops_addr = ops_listener.local_addr()?;
    let ops_shutdown = shutdown.clone();
    let ops = tokio::spawn(rcpfed_grpc::ops::serve_ops(
        ops_listener,
        health.clone(),
        Arc::new(registry),
        async move { ops_shutdown.cancelled().await },
    ));
    tracing::info!(%ops_addr, "ops port (health, /metrics) listening");

    let store = tokio::task::spawn_blocking(open_store)
        .await
        .map_err(|e| HubError::Config(format!("store opener panicked: {e}")))??;
    // The registry in force: versions in the log verified from the root keys, or version 1.
    let loaded = {
        let store = Arc::clone(&store);
        tokio::task::spawn_blocking(move || {
            registry::load(store.as_ref(), &trust, &federation_id, &initial_registry)
        })
        .await
        .map_err(|e| HubError::Config(format!("registry loader panicked: {e}")))?
        .map_err(HubError::Config)?
    };
    let federation = Arc::new(
        loaded
            .state
            .registry
            .to_federation()
            .map_err(|e| HubError::Config(e.to_string()))?,
    );
    tracing::info!(version = loaded.state.registry.version, "registry in force");
    {
        // The log gauges start from what is stored, not from zero.
        let store = Arc::clone(&store);
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
            metrics.checkpoint_issued(cp.size, cp.created_at_ms);
        }
        if let Some(cp) = final_cp {
            metrics.final_checkpoint(cp.size);
        }
    }
    let hub_member = federation
        .hub()
        .ok_or_else(|| HubError::Config("the member file names no hub".into()))?;
    // Witnesses verify checkpoints with the hub member's first key (logkeys::log_verifier), so
    // that is the only key the hub may sign with.
    if hub_member.keys.first().map(|k| k.key_id.as_str()) != Some(signing_key.key_id()) {
        return Err(HubError::Config(format!(
            "signing key {} is not the first key of hub member {} in the member file; witnesses would refuse every checkpoint",
            signing_key.key_id(),
            hub_member.id
        )));
    }

    let ingest = ingest::Ingest::start(
        Arc::clone(&store),
        ingest::ReceiptSigner {
            federation_id: federation.federation_id.clone(),
            hub_id: hub_member.id.clone(),
            key: signing_key.clone(),
        },
        metrics.clone(),
    )?;
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
    // The catalogue in force: the logged chain verified with the hub's keys, and the configured
    // catalogue logged as the next version when its content differs.
    let hub_id = hub_member.id.clone();
    let hub_member_id = hub_id.clone();
    let in_force = catalogue::establish(
        Arc::clone(&store),
        &ingest,
        catalogue::Issuer {
            federation_id: federation.federation_id.clone(),
            hub_id: hub_id.clone(),
            hub_keys: hub_member.keys.clone(),
            key: signing_key.clone(),
        },
        configured_catalogue,
    )
    .await
    .map_err(HubError::Config)?;
    tracing::info!(
        version = in_force.version,
        catalogue = %in_force.catalogue.catalogue.id,
        content_version = %in_force.catalogue.catalogue.version,
        "catalogue in force"
    );
    let catalogue = catalogue::SharedCatalogue::new(in_force);
    let shared_federation = rcpfed_grpc::shared::SharedFederation::new((*federation).clone());
    let indicators = IndicatorRpc::new(
        Arc::clone(&store) as Arc<dyn IndicatorStore>,
        hub_id.clone(),
        rcpfed_grpc::indicators::reader_role(shared_federation.clone()),
    )
    .with_data_providers(shared_federation.clone());
    // The SDMX REST API reads the same store as the IndicatorService.
    let sdmx_source = rcpfed_grpc::sdmx_rest::SdmxSource::new(
        Arc::clone(&store) as Arc<dyn IndicatorStore>,
        hub_id.clone(),
        shared_federation.clone(),
    );
    let coherence = tokio::spawn(coherence::run(
        coherence::Reporter {
            store: Arc::clone(&store),
            ingest: ingest.clone(),
            federation: shared_federation.clone(),
            catalogue: catalogue.clone(),
            hub_id,
            key: signing_key,
            metrics: metrics.clone(),
        },
        coherence_interval,
        shutdown.clone(),
    ));
    tracing::info!(
        cpu_threads = quotas.pool_size(),
        submissions_in_flight = quotas.submissions_in_flight,
        feed_subscriptions = quotas.feed_subscriptions,
        snapshot_chunk_idle_ms = quotas.snapshot_chunk_idle.as_millis(),
        snapshot_min_rate = quotas.snapshot_min_rate,
        "per-member quotas"
    );
    let log_store: Arc<dyn HubStore> = Arc::clone(&store) as Arc<dyn HubStore>;
    let dashboard_indicators: Arc<dyn IndicatorStore> =
        Arc::clone(&store) as Arc<dyn IndicatorStore>;
    let hub = Arc::new_cyclic(|me| Hub {
        me: me.clone(),
        pool: quotas::CpuPool::new(quotas.pool_size()),
        quotas,
        submissions: quotas::PerMember::default(),
        subscriptions: quotas::PerMember::default(),
        snapshot_slots: quotas::PerMember::default(),
        federation: shared_federation.clone(),
        store,
        ingest,
        shutdown: shutdown.clone(),
        quorum: witness_quorum,
        registry: Arc::new(tokio::sync::Mutex::new(loaded.state)),
        catalogue,
        metrics,
        snapshot_permits: Arc::new(tokio::sync::Semaphore::new(
            limits::MAX_CONCURRENT_SNAPSHOTS,
        )),
    });
    let (reflection_v1, reflection_v1alpha) = rcpfed_grpc::reflection_services(&[
        rcpfed_proto::v1::hub_service_server::SERVICE_NAME,
        rcpfed_proto::v1::indicator_service_server::SERVICE_NAME,
    ])?;
    let grpc_addr: SocketAddr = grpc_listener.local_addr()?;
    // mTLS on rustls with the CRL, reloaded when it changes (tonic's TLS has no CRL hook).
    let (incoming, acceptor) = rcpfed_grpc::acceptor::mtls_incoming_with_acceptor(
        grpc_listener,
        &tls,
        crl_file.as_deref(),
    )?;
    acceptor.set_stale_crl(stale_crl);

    health.set_service_status("", ServingStatus::Serving).await;
    health.set_serving::<HubServiceServer<Hub>>().await;
    health
        .set_serving::<IndicatorServiceServer<IndicatorRpc>>()
        .await;
    tracing::info!(%grpc_addr, federation = %federation.federation_id, "hub serving (mTLS)");

    // Started after the start-up SERVING, which would otherwise hide a stale CRL.
    let crl_watch = rcpfed_grpc::acceptor::watch_crl_freshness(
        acceptor.clone(),
        health.clone(),
        shutdown.clone(),
    );
    // Started once the log is loaded, so its first answer is the log in force.
    let public_http = match http {
        Some(http) => {
            let dashboard = rcpfed_grpc::dashboard::router(
                Arc::new(dashboard::HubDashboard::new(
                    Arc::clone(&log_store),
                    witness_quorum,
                )),
                dashboard_indicators,
                shared_federation.clone(),
                hub_member_id.clone(),
            );
            Some(http.spawn(
                crl_file.clone(),
                shared_federation.clone(),
                axum::Router::new()
                    .nest("/tlog", tiles::router(log_store))
                    .nest("/sdmx", rcpfed_grpc::sdmx_rest::router(sdmx_source))
                    .merge(dashboard),
                "/tlog/checkpoint, /tlog/tile/<L>/<N>[.p/<W>] and /tlog/tile/entries/<N>[.p/<W>] (C2SP tlog-tiles), /sdmx/ (SDMX REST 1.5.0), and the dashboard at /dashboard/",
                shutdown.clone(),
            )?)
        }
        None => None,
    };
    let health_on_shutdown = health.clone();
    let server_shutdown = shutdown.clone();
    let serve = tonic::transport::Server::builder()
        // Outermost, so every answer is counted, refusals by the layers below included.
        .layer(rcpfed_grpc::rpc_metrics::RpcMetricsLayer::new(rpc_metrics))
        // Who may call what, and how large each message may be, before any body is read.
        .layer(rcpfed_grpc::admission::AdmissionLayer::new(
            shared_federation.clone(),
            rcpfed_grpc::admission::HUB_RULES,
        ))
        .layer(rcpfed_grpc::deadline::DeadlineLayer {
            timeout: limits::REQUEST_TIMEOUT,
            self_bounded: rcpfed_grpc::deadline::HUB_SELF_BOUNDED,
        })
        .max_concurrent_streams(limits::MAX_CONCURRENT_STREAMS)
        .http2_keepalive_interval(Some(limits::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(limits::KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(limits::TCP_KEEPALIVE))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            HubServiceServer::from_arc(hub)
                .max_decoding_message_size(rcpfed_grpc::admission::max_message_bytes(
                    rcpfed_grpc::admission::HUB_RULES,
                ))
                .max_encoding_message_size(limits::MAX_MESSAGE_BYTES),
        )
        .add_service(indicators.into_server())
        .serve_with_incoming_shutdown(incoming, async move {
            server_shutdown.cancelled().await;
            // Probes must see NOT_SERVING as soon as shutdown starts.
            health_on_shutdown
                .set_service_status("", ServingStatus::NotServing)
                .await;
            health_on_shutdown
                .set_not_serving::<HubServiceServer<Hub>>()
                .await;
            health_on_shutdown
                .set_not_serving::<IndicatorServiceServer<IndicatorRpc>>()
                .await;
            tracing::info!("hub shutting down");
        });
    // A bounded drain: silent or stuck peers cannot keep the process from stopping.
    let served = rcpfed_grpc::acceptor::serve_with_bounded_drain(serve, shutdown.clone(), acceptor)
        .await
        .unwrap_or(Ok(()));
    shutdown.cancel();
    let _ = crl_watch.await;
    let _ = coherence.await;
    if let Some(public_http) = public_http {
        let _ = public_http.await;
    }
    let _ = ops.await;
    served?;
    Ok(())
}

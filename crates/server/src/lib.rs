//! leadflow-server: the gRPC face of leadflow and the `leadflow` command.
//!
//! It translates between the API (`leadflow.v1`) and the engine — input
//! checked and converted at the edge, engine errors mapped to statuses with
//! rich details — and owns the process: configuration, telemetry, limits,
//! health and reflection, graceful shutdown. No lifecycle rule lives here;
//! those are in leadflow-domain.
//!
//! # Layout
//!
//! - [`start`] / [`serve`]: the server, on a listener of its own.
//! - `services/`: `LeadService` and `PolicyService`.
//! - `convert.rs`, `limits.rs`, `error.rs`: the edge.
//! - [`config`], [`telemetry`]: the process.

pub mod config;
mod convert;
mod error;
mod limits;
mod observe;
mod services;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use leadflow_engine::{Clock, Engine, SystemClock};
use leadflow_proto::v1::lead_service_server::LeadServiceServer;
use leadflow_proto::v1::policy_service_server::PolicyServiceServer;
use leadflow_store::{Store, StoreOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{Config, DatabaseUrl, LogFormat};
pub use leadflow_engine::DEFAULT_WORKSPACE;
pub use limits::{MAX_BATCH, MAX_MESSAGE_BYTES};
pub use services::{LeadApi, PolicyApi};

/// leadflow's default lead definition, given to a new workspace.
pub const DEFAULT_POLICY: &str = include_str!("../../../examples/policy.toml");

/// Connects to the database, applies migrations, and makes sure the default
/// workspace exists with an active policy.
pub async fn open_engine(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Engine> {
    let options = StoreOptions {
        max_connections: config.max_connections,
        ..StoreOptions::default()
    };
    let store = Store::connect(config.database_url.expose(), &options)
        .await
        .with_context(|| format!("cannot open the database {}", config.database_url))?;
    store
        .migrate()
        .await
        .context("cannot apply the database migrations")?;
    let engine = Engine::new(store, clock);
    engine
        .bootstrap(DEFAULT_WORKSPACE, DEFAULT_POLICY)
        .await
        .context("cannot prepare the default workspace")?;
    Ok(engine)
}

/// A server running in the background.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    health: tonic_health::server::HealthReporter,
    housekeeping: JoinHandle<()>,
}

impl Running {
    /// Stops taking calls, lets those in flight finish within `grace`, then
    /// cuts the rest (open streams included).
    pub async fn shutdown(mut self, grace: std::time::Duration) {
        self.housekeeping.abort();
        self.health.set_not_serving::<LeadServiceServer<LeadApi>>().await;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let abort = self.task.abort_handle();
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            tracing::warn!(
                grace_ms = grace.as_millis(),
                "calls still open after the grace period; closing them"
            );
            abort.abort();
        }
    }
}

/// Starts serving gRPC on `listen` (port 0 picks a free one).
pub async fn start(listen: SocketAddr, engine: Engine) -> anyhow::Result<Running> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<LeadServiceServer<LeadApi>>().await;
    health.set_serving::<PolicyServiceServer<PolicyApi>>().await;
    let reflection = |builder: tonic_reflection::server::Builder<'static>| {
        builder
            .register_encoded_file_descriptor_set(leadflow_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure()).build_v1()?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure()).build_v1alpha()?;

    let housekeeping = tokio::spawn(housekeeping(engine.clone()));
    let leads = LeadServiceServer::new(LeadApi::new(engine.clone(), DEFAULT_WORKSPACE))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let policies = PolicyServiceServer::new(PolicyApi::new(engine, DEFAULT_WORKSPACE))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);

    let (shutdown, signal) = oneshot::channel::<()>();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .layer(observe::ObserveLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(leads)
        .add_service(policies);
    let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = signal.await;
    }));
    Ok(Running {
        addr,
        shutdown: Some(shutdown),
        task,
        health,
        housekeeping,
    })
}

/// Hourly: forgets idempotent results older than two days.
async fn housekeeping(engine: Engine) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        match engine
            .purge_idempotent_results(leadflow_domain::Span::from_hours(48))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "forgot old idempotent results"),
            Err(e) => tracing::warn!(error = %e, "could not purge old idempotent results"),
        }
    }
}

/// `leadflow serve`: runs until SIGTERM or SIGINT, then shuts down within
/// the configured grace period.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let engine = open_engine(&config, Arc::new(SystemClock)).await?;
    let running = start(config.listen, engine).await?;
    tracing::info!(
        grpc = %running.addr,
        database = %config.database_url,
        "leadflow listening on {} (gRPC), database {}",
        running.addr,
        config.database_url
    );
    shutdown_signal().await;
    tracing::info!(grace_secs = config.shutdown_grace.as_secs(), "shutting down");
    running.shutdown(config.shutdown_grace).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

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
//! - [`start`] / [`serve`]: the server, on a listener of its own, and the
//!   background work it owns.
//! - `services/`: one file per gRPC service; `convert.rs`, `limits.rs`,
//!   `error.rs`: the edge — input checked and converted, engine errors as
//!   statuses.
//! - `methods.rs`: every RPC once, with its scope, admission class and
//!   retry kind; `auth.rs`, `admission.rs`, `observe.rs` and `metrics.rs`
//!   read it, as tower layers built on `layers.rs`.
//! - `http/`: the dashboard and `/metrics`; `present.rs` words numbers and
//!   dates for the dashboard and the command line alike.
//! - [`config`], [`telemetry`], [`cli`]: the process.

mod admission;
pub mod auth;
pub mod cli;
pub mod config;
mod convert;
mod error;
mod http;
mod layers;
mod leases;
mod limits;
mod methods;
mod metrics;
mod observe;
mod present;
pub mod relay;
mod services;
pub mod telemetry;
mod watch;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use leadflow_engine::{Clock, Engine, SystemClock};
use leadflow_proto::framed::trigger_service_server::TriggerServiceServer;
use leadflow_proto::v1::account_service_server::AccountServiceServer;
use leadflow_proto::v1::analytics_service_server::AnalyticsServiceServer;
use leadflow_proto::v1::lead_service_server::LeadServiceServer;
use leadflow_proto::v1::owner_service_server::OwnerServiceServer;
use leadflow_proto::v1::policy_service_server::PolicyServiceServer;
use leadflow_proto::v1::webhook_service_server::WebhookServiceServer;
use leadflow_store::{Store, StoreOptions};

use crate::layers::MiddlewareLayer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{Config, DatabaseUrl, LogFormat, TlsFiles};
pub use leadflow_engine::DEFAULT_WORKSPACE;
pub use limits::{MAX_BATCH, MAX_MESSAGE_BYTES};
pub use services::{AccountApi, AnalyticsApi, LeadApi, OwnerApi, PolicyApi, TriggerApi, WebhookApi};

/// leadflow's default lead definition, given to a new workspace.
pub const DEFAULT_POLICY: &str = include_str!("../../../examples/policy.toml");

/// Connects to the database, applies migrations, and makes sure the default
/// workspace exists with an active policy.
pub async fn open_engine(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Engine> {
    let options = StoreOptions {
        max_connections: config.max_connections,
        acquire_timeout: config.db_acquire_timeout(),
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
    /// The HTTP side (the dashboard), when it was asked for.
    pub http_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    health: tonic_health::server::HealthReporter,
    /// Its workers and the HTTP side, owned: stopped at shutdown.
    workers: Arc<leadflow_engine::Tasks>,
    engine: Engine,
    metrics: Arc<metrics::Metrics>,
}

impl Running {
    /// Stops taking calls and asks the background work to stop (workers
    /// finish their round; event streams end with UNAVAILABLE); lets the
    /// calls in flight and the writes they wait on finish within `grace`,
    /// then cuts the rest.
    pub async fn shutdown(mut self, grace: std::time::Duration) {
        self.health.set_not_serving::<LeadServiceServer<LeadApi>>().await;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let abort = self.task.abort_handle();
        let calls = async {
            if tokio::time::timeout(grace, &mut self.task).await.is_err() {
                tracing::warn!(
                    grace_ms = grace.as_millis(),
                    "calls still open after the grace period; closing them"
                );
                abort.abort();
            }
        };
        tokio::join!(calls, self.workers.shutdown(grace), self.engine.shutdown(grace));
        self.metrics.shutdown().await;
    }
}

/// What runs beside the RPCs. `leadflow serve` runs all of it; a test
/// leaves out what it drives by hand. How each part runs is the
/// [`Config`]'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts {
    /// The timer worker, looking for due timers every `timer_poll_ms`
    /// (off: the caller fires timers with `Engine::fire_due_timers`).
    pub timers: bool,
    /// The re-score worker, `rescore_batch` leads a transaction (off: the
    /// caller runs batches with `Engine::run_rescore_batch`).
    pub rescore: bool,
    /// The learning worker, one `LearnPolicy` job at a time (off: this
    /// replica leaves learnings to others, or the caller runs them with
    /// `Engine::run_learning`).
    pub learning: bool,
    /// The HTTP side on `http_listen`: the dashboard and `/metrics`.
    pub http: bool,
}

impl Parts {
    /// Everything, as `leadflow serve` runs it.
    pub const ALL: Self = Self {
        timers: true,
        rescore: true,
        learning: true,
        http: true,
    };
}

/// Starts serving gRPC on `config.listen` (port 0 picks a free one), with
/// the `parts` asked for beside it.
pub async fn start(config: &Config, engine: Engine, parts: Parts) -> anyhow::Result<Running> {
    let listen = config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<LeadServiceServer<LeadApi>>().await;
    health.set_serving::<PolicyServiceServer<PolicyApi>>().await;
    health.set_serving::<TriggerServiceServer<TriggerApi>>().await;
    health.set_serving::<AnalyticsServiceServer<AnalyticsApi>>().await;
    health.set_serving::<AccountServiceServer<AccountApi>>().await;
    health.set_serving::<OwnerServiceServer<OwnerApi>>().await;
    health.set_serving::<WebhookServiceServer<WebhookApi>>().await;
    let reflection = |builder: tonic_reflection::server::Builder<'static>| {
        builder
            .register_encoded_file_descriptor_set(leadflow_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure()).build_v1()?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure()).build_v1alpha()?;

    let background = Arc::new(leadflow_engine::Tasks::default());
    let stopping = background.stopping();
    background.spawn(housekeeping(engine.clone(), stopping.clone()));
    background.spawn_until_stopped({
        let engine = engine.clone();
        async move { engine.follow_other_replicas().await }
    });
    if parts.timers {
        background.spawn(fire_timers(engine.clone(), config.timer_poll(), stopping.clone()));
    }
    if parts.rescore {
        background.spawn(rescore(engine.clone(), config.rescore_batch, stopping.clone()));
    }
    if parts.learning {
        background.spawn(learn(engine.clone(), stopping.clone()));
    }
    let metrics = metrics::Metrics::new(
        engine.clone(),
        &config.service_name,
        config.otlp_endpoint.as_deref(),
    )?;
    if config.otlp_endpoint.is_some() {
        background.spawn_until_stopped(Arc::clone(&metrics).sample_for_export());
    }
    let reach = webhook::http::Reach {
        http: config.webhooks_allow_http,
        private: config.webhooks_allow_private_addresses,
    };
    background.spawn(webhook::deliver::run(engine.clone(), reach, stopping.clone()));
    if let Some(settings) = config.relay() {
        let js = relay::connect(&settings).await?;
        background.spawn(relay::run(engine.clone(), js, settings, stopping.clone()));
    }
    // Without tokens only while nothing listens beyond loopback.
    let loopback_only = addr.ip().is_loopback() && (!parts.http || config.http_listen.ip().is_loopback());
    let authenticator = Arc::new(if !config.require_auth && loopback_only {
        tracing::warn!(
            workspace = DEFAULT_WORKSPACE,
            "authentication is OFF: listening on loopback only, every call acts for workspace {DEFAULT_WORKSPACE:?} \
             (--require-auth turns tokens on)"
        );
        auth::Authenticator::open(engine.clone(), DEFAULT_WORKSPACE)
    } else {
        auth::Authenticator::new(
            engine.clone(),
            auth::RateLimit::per_second(config.token_rate_limit),
        )
    });
    let http_addr = match parts.http.then_some(config.http_listen) {
        Some(listen) => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen for HTTP on {listen}"))?;
            let http_addr = listener.local_addr()?;
            let router = http::router(Arc::new(http::Http::new(
                engine.clone(),
                Arc::clone(&authenticator),
                http_addr.ip().is_loopback(),
                Arc::clone(&metrics),
            )));
            let stopping = stopping.clone();
            background.spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stopping.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "the HTTP side stopped");
                }
            });
            tracing::info!(%http_addr, "dashboard at http://{http_addr}/dashboard");
            Some(http_addr)
        }
        None => None,
    };
    let triggers = TriggerServiceServer::new(TriggerApi::new(engine.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let leads =
        LeadServiceServer::new(LeadApi::new(engine.clone())).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let analytics = AnalyticsServiceServer::new(AnalyticsApi::new(engine.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let policies =
        PolicyServiceServer::new(PolicyApi::new(engine.clone())).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let accounts = AccountServiceServer::new(AccountApi::new(engine.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let owners =
        OwnerServiceServer::new(OwnerApi::new(engine.clone())).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let webhooks = WebhookServiceServer::new(WebhookApi::new(
        engine.clone(),
        webhook::http::Reach {
            http: config.webhooks_allow_http,
            private: config.webhooks_allow_private_addresses,
        },
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES);

    let (shutdown, signal) = oneshot::channel::<()>();
    // Replies go out at once: without TCP_NODELAY a small reply written in
    // two parts can wait for the client's delayed ACK (40 ms on Linux).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let Some(files) = config.tls() {
        builder = builder.tls_config(tls_config(&files)?)?;
    }
    let router = builder
        .layer(MiddlewareLayer(observe::Observe::new(Arc::clone(&metrics))))
        .layer(MiddlewareLayer(auth::Auth::new(authenticator)))
        .layer(MiddlewareLayer(admission::Admission::new(config.max_in_flight)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(leads)
        .add_service(policies)
        .add_service(triggers)
        .add_service(analytics)
        .add_service(accounts)
        .add_service(owners)
        .add_service(webhooks);
    let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = signal.await;
    }));
    Ok(Running {
        addr,
        http_addr,
        shutdown: Some(shutdown),
        task,
        health,
        workers: background,
        engine,
        metrics,
    })
}

/// The server's TLS from its files.
fn tls_config(files: &TlsFiles) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).with_context(|| format!("cannot read the TLS {what} {}", path.display()))
    };
    let identity =
        tonic::transport::Identity::from_pem(read(&files.cert, "certificate")?, read(&files.key, "key")?);
    let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(ca, "client CA")?));
    }
    Ok(config)
}

/// Waits `pause`, or less if a shutdown is asked for meanwhile: false then.
async fn pause(pause: std::time::Duration, stopping: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(pause) => true,
        () = stopping.cancelled() => false,
    }
}

/// Hourly: forgets idempotent results older than two days, purges
/// anonymous activity past its time to live, forgets webhook deliveries
/// resolved a week ago, and trims events every consumer has acked and
/// that are past the retention.
async fn housekeeping(engine: Engine, stopping: CancellationToken) {
    while pause(std::time::Duration::from_secs(3600), &stopping).await {
        match engine
            .purge_idempotent_results(leadflow_domain::Span::from_hours(48))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "forgot old idempotent results"),
            Err(e) => tracing::warn!(error = %e, "could not purge old idempotent results"),
        }
        match engine.purge_anonymous_activity().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged anonymous activity past its time to live"),
            Err(e) => tracing::warn!(error = %e, "could not purge anonymous activity"),
        }
        match engine.trim_deliveries().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(trimmed = n, "forgot webhook deliveries resolved a week ago"),
            Err(e) => tracing::warn!(error = %e, "could not trim webhook deliveries"),
        }
        match engine.trim_events().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(trimmed = n, "trimmed acknowledged events past the retention"),
            Err(e) => tracing::warn!(error = %e, "could not trim the outbox"),
        }
    }
}

/// The timer worker: fires due timers, in rounds, until a shutdown.
async fn fire_timers(engine: Engine, poll: std::time::Duration, stopping: CancellationToken) {
    const ROUND: u64 = 200;
    while !stopping.is_cancelled() {
        match engine.fire_due_timers(ROUND).await {
            Ok(n) if n as u64 == ROUND => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the timer worker could not read due timers"),
        }
        // Leads waiting for an owner, woken since capacity may have freed.
        match engine.route_woken(50).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(routed = n, "waiting leads given an owner"),
            Err(e) => tracing::warn!(error = %e, "the waiting leads could not be read"),
        }
        // Accounts that entered MQA promote their engaged members, a
        // batch at a time, between rounds of timers.
        match engine.run_account_promotions(50).await {
            Ok(0) => {}
            Ok(_) => continue,
            Err(e) => tracing::warn!(error = %e, "a batch of account members could not be promoted"),
        }
        if !pause(poll, &stopping).await {
            break;
        }
    }
}

/// The re-score worker: runs the batches of any running re-score, one
/// transaction each, until a shutdown; several replicas share the work.
async fn rescore(engine: Engine, batch: u64, stopping: CancellationToken) {
    while !stopping.is_cancelled() {
        match engine.run_rescore_batch(batch).await {
            Ok(Some(job)) if job.is_running() => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "a re-score batch failed; it is tried again"),
        }
        if !pause(std::time::Duration::from_millis(500), &stopping).await {
            break;
        }
    }
}

/// The learning worker: takes a running learning whose lease is free (a
/// new one, or one whose replica died) and runs it to its end; a shutdown
/// drops the one in hand, which another replica, or this one restarted,
/// takes again when its lease runs out.
async fn learn(engine: Engine, stopping: CancellationToken) {
    let holder = uuid::Uuid::new_v4().to_string();
    while !stopping.is_cancelled() {
        let ran = tokio::select! {
            ran = engine.run_learning(&holder) => ran,
            () = stopping.cancelled() => break,
        };
        match ran {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "a learning stopped; it is taken again when its lease runs out")
            }
        }
        if !pause(std::time::Duration::from_secs(1), &stopping).await {
            break;
        }
    }
}

/// `leadflow serve`: runs until SIGTERM or SIGINT, then shuts down within
/// the configured grace period.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let engine = open_engine(&config, Arc::new(SystemClock)).await?;
    let running = start(&config, engine, Parts::ALL).await?;
    tracing::info!(
        grpc = %running.addr,
        database = %config.database_url,
        "leadflow listening on {} (gRPC), database {}",
        running.addr,
        config.database_url
    );
    shutdown_signal().await;
    tracing::info!(grace_secs = config.shutdown_grace_secs, "shutting down");
    running.shutdown(config.shutdown_grace()).await;
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

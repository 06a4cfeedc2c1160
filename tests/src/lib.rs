//! leadflow-e2e: black-box tests of leadflow. Each scenario runs against a
//! real server on port 0 with a fresh database, through a real tonic client,
//! once on SQLite and once on PostgreSQL (see [`scenarios!`]). The test
//! binary's harness ([`harness`]) shows a trial it cannot run here — no
//! PostgreSQL, no browser, no Python — as ignored, with the reason.

pub mod harness;
pub use harness::*;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use leadflow_engine::{Clock, Engine, ManualClock, SystemClock};
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::account_service_client::AccountServiceClient;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use leadflow_proto::v1::policy_service_client::PolicyServiceClient;
use leadflow_proto::v1::trigger_service_client::TriggerServiceClient;
use leadflow_server::{Config, DatabaseUrl, Parts, Running};
pub use leadflow_store::testing::Engine as Db;
use leadflow_store::testing::TestDatabase;
use tonic::transport::Channel;

/// A fresh database on `db`; an error where none can be made (the harness
/// ignores PostgreSQL trials where no PostgreSQL answered at start).
pub async fn fresh_database(db: Db) -> anyhow::Result<TestDatabase> {
    TestDatabase::new(db).await.ok_or_else(|| {
        anyhow::anyhow!(
            "no {db:?} database: {}",
            leadflow_store::testing::postgres_admin_url()
        )
    })
}

/// A server for one test, and clients for it. Dropping it stops the server
/// and drops the database.
#[derive(Debug)]
pub struct TestServer {
    pub leads: LeadServiceClient<Channel>,
    pub accounts: AccountServiceClient<Channel>,
    pub policies: PolicyServiceClient<Channel>,
    pub triggers: TriggerServiceClient<Channel>,
    pub channel: Channel,
    /// Set when the server runs on a hand-moved clock (no timer worker).
    pub clock: Option<Arc<ManualClock>>,
    pub engine: Engine,
    pub db: Db,
    running: Option<Running>,
    _database: TestDatabase,
}

impl TestServer {
    pub async fn start(db: Db) -> anyhow::Result<Self> {
        Self::start_with(db, None).await
    }

    /// On a clock the test moves, without a timer worker: the test fires
    /// timers with `engine.fire_due_timers`.
    pub async fn start_with_clock(db: Db, start: leadflow_domain::Timestamp) -> anyhow::Result<Self> {
        Self::start_with(db, Some(Arc::new(ManualClock::new(start)))).await
    }

    /// On a clock the test moves, whose webhooks may reach receivers on
    /// loopback over plain HTTP (`--webhooks-allow-http`,
    /// `--webhooks-allow-private-addresses`).
    pub async fn start_with_clock_and_local_webhooks(
        db: Db,
        start: leadflow_domain::Timestamp,
    ) -> anyhow::Result<Self> {
        Self::start_configured(db, Some(Arc::new(ManualClock::new(start))), |c| {
            c.webhooks_allow_http = true;
            c.webhooks_allow_private_addresses = true;
        })
        .await
    }

    async fn start_with(db: Db, clock: Option<Arc<ManualClock>>) -> anyhow::Result<Self> {
        Self::start_configured(db, clock, |_| {}).await
    }

    async fn start_configured(
        db: Db,
        clock: Option<Arc<ManualClock>>,
        configure: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let database = fresh_database(db).await?;
        let mut config = Config {
            max_connections: 8,
            timer_poll_ms: 200,
            rescore_batch: 50,
            ..loopback(&database.url)
        };
        configure(&mut config);
        let engine_clock: Arc<dyn Clock> = match &clock {
            Some(c) => c.clone(),
            None => Arc::new(SystemClock),
        };
        let engine = leadflow_server::open_engine(&config, engine_clock)
            .await
            .context("open the engine")?;
        // On a hand-moved clock the test runs timers and re-scores itself.
        let parts = Parts {
            timers: clock.is_none(),
            rescore: clock.is_none(),
            learning: true,
            http: false,
        };
        let running = leadflow_server::start(&config, engine.clone(), parts)
            .await
            .context("start the server")?;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.addr))?
            .connect()
            .await
            .context("connect")?;
        Ok(Self {
            leads: LeadServiceClient::new(channel.clone()),
            accounts: AccountServiceClient::new(channel.clone()),
            policies: PolicyServiceClient::new(channel.clone()),
            triggers: TriggerServiceClient::new(channel.clone()),
            channel,
            clock,
            engine,
            db,
            running: Some(running),
            _database: database,
        })
    }

    /// The hand-moved clock of a server started on one.
    pub fn manual_clock(&self) -> &ManualClock {
        self.clock
            .as_deref()
            .expect("a server on a hand-moved clock (clock_at)")
    }

    /// The gRPC address the server listens on.
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.running
            .as_ref()
            .map_or_else(|| ([127, 0, 0, 1], 0).into(), |r| r.addr)
    }

    pub fn database_url(&self) -> &str {
        &self._database.url
    }

    pub fn workspace(&self) -> &'static str {
        leadflow_server::DEFAULT_WORKSPACE
    }

    /// Rows per table: leads, engagements, transitions, outbox, timers,
    /// level changes.
    pub async fn rows(&self) -> [u64; 6] {
        self.engine
            .store()
            .row_counts(self.workspace())
            .await
            .expect("count rows")
    }

    /// The lead as `GetLead` shows it.
    pub async fn lead(&mut self, id: &str) -> anyhow::Result<pb::Lead> {
        self.leads
            .get_lead(pb::GetLeadRequest { lead: by_id(id) })
            .await?
            .into_inner()
            .lead
            .context("GetLead answers a lead")
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown(Duration::from_secs(2)).await;
        }
    }
}

// ---- request builders ---------------------------------------------------------

pub fn by_id(id: &str) -> Option<pb::LeadRef> {
    Some(pb::LeadRef {
        key: Some(pb::lead_ref::Key::Id(id.to_owned())),
    })
}

pub fn by_key(key: &str) -> Option<pb::LeadRef> {
    Some(pb::LeadRef {
        key: Some(pb::lead_ref::Key::ExternalKey(key.to_owned())),
    })
}

pub fn profile(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A senior, mid-market, target-industry buyer (fit 40).
pub fn good_fit(email: &str) -> std::collections::BTreeMap<String, String> {
    profile(&[
        ("email", email),
        ("company", "Acme"),
        ("title", "VP Engineering"),
        ("company_size", "250"),
        ("industry", "software"),
    ])
}

pub fn engagement(event_id: &str, kind: &str) -> pb::Engagement {
    pb::Engagement {
        event_id: event_id.to_owned(),
        r#type: kind.to_owned(),
        ..pb::Engagement::default()
    }
}

pub fn at(e: pb::Engagement, t: prost_types::Timestamp) -> pb::Engagement {
    pb::Engagement {
        occurred_at: Some(t),
        ..e
    }
}

/// Now, truncated to the second, minus `ago`.
pub fn seconds_ago(ago: i64) -> prost_types::Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    prost_types::Timestamp {
        seconds: now - ago,
        nanos: 0,
    }
}

pub fn record(lead: &str, e: pb::Engagement) -> pb::RecordEngagementRequest {
    pb::RecordEngagementRequest {
        lead: by_id(lead),
        engagement: Some(e),
    }
}

pub fn transition(lead: &str, action: pb::Action, reason: &str) -> pb::TransitionRequest {
    pb::TransitionRequest {
        lead: by_id(lead),
        action: action.into(),
        reason: reason.to_owned(),
        actor: "sam@sales".to_owned(),
        ..pb::TransitionRequest::default()
    }
}

pub fn stage(lead: &pb::Lead) -> pb::Stage {
    pb::Stage::try_from(lead.stage).unwrap_or(pb::Stage::Unspecified)
}

/// (from, to) of each transition.
pub fn moves(transitions: &[pb::Transition]) -> Vec<(pb::Stage, pb::Stage)> {
    transitions
        .iter()
        .map(|t| {
            (
                pb::Stage::try_from(t.from_stage).unwrap_or(pb::Stage::Unspecified),
                pb::Stage::try_from(t.to_stage).unwrap_or(pb::Stage::Unspecified),
            )
        })
        .collect()
}

/// The rich details of an error status.
pub fn details(status: &tonic::Status) -> tonic_types::ErrorDetails {
    use tonic_types::StatusExt;
    status.get_error_details()
}

/// The `ErrorInfo` reason of a status.
pub fn reason(status: &tonic::Status) -> String {
    details(status)
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// How a stream ends, after what it still had to deliver.
pub async fn end_of<T>(stream: &mut tonic::Streaming<T>) -> Result<(), tonic::Status> {
    while stream.message().await?.is_some() {}
    Ok(())
}

/// An `ErrorInfo` metadata value of a status (empty when absent).
pub fn meta(status: &tonic::Status, key: &str) -> String {
    details(status)
        .error_info()
        .and_then(|i| i.metadata.get(key).cloned())
        .unwrap_or_default()
}

/// The field paths of a status's `BadRequest`.
pub fn fields(status: &tonic::Status) -> Vec<String> {
    details(status)
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// A request carrying `secret` as its bearer token (none if empty).
pub fn with_token<T>(secret: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if !secret.is_empty() {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {secret}").parse().expect("header value"),
        );
    }
    request
}

/// Checks that a call was refused with INVALID_ARGUMENT naming `field`.
pub fn assert_invalid<T, R: std::fmt::Debug>(result: Result<T, tonic::Status>, field: &str, request: &R) {
    let Err(status) = result else {
        panic!("{request:?} was accepted");
    };
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "{request:?}: {status:?}"
    );
    assert!(
        fields(&status).contains(&field.to_owned()),
        "{request:?}: {status:?}"
    );
}

/// Stores `source` as a policy version and activates it: the activation's
/// answer (the version, the re-score job it started).
pub async fn activate_source(
    policies: &mut PolicyServiceClient<Channel>,
    source: String,
) -> anyhow::Result<pb::ActivatePolicyResponse> {
    let version = policies
        .create_policy_version(pb::CreatePolicyVersionRequest {
            source,
            ..Default::default()
        })
        .await?
        .into_inner()
        .policy
        .map(|p| p.version)
        .ok_or_else(|| anyhow::anyhow!("no policy in the answer"))?;
    Ok(policies
        .activate_policy(pb::ActivatePolicyRequest {
            version,
            ..Default::default()
        })
        .await?
        .into_inner())
}

/// Stores `source` as a policy version and activates it: its version.
pub async fn activate_policy(server: &mut TestServer, source: String) -> anyhow::Result<i64> {
    activate_source(&mut server.policies, source)
        .await?
        .policy
        .map(|p| p.version)
        .ok_or_else(|| anyhow::anyhow!("no policy in the activation's answer"))
}

pub async fn create(server: &mut TestServer, email: &str) -> anyhow::Result<pb::Lead> {
    create_captured(server, email, None).await
}

/// A good-fit lead captured at `captured_at` (default now).
pub async fn create_captured(
    server: &mut TestServer,
    email: &str,
    captured_at: Option<prost_types::Timestamp>,
) -> anyhow::Result<pb::Lead> {
    let response = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit(email),
            captured_at,
            ..pb::CreateLeadRequest::default()
        })
        .await?
        .into_inner();
    response
        .lead
        .ok_or_else(|| anyhow::anyhow!("no lead in the response"))
}

/// A lead's whole history, read `page_size` entries a page (each page
/// checked to hold no more).
pub async fn full_history(
    server: &mut TestServer,
    lead: &str,
    page_size: i32,
) -> anyhow::Result<Vec<pb::HistoryEntry>> {
    let mut entries = Vec::new();
    let mut token = String::new();
    loop {
        let page = server
            .leads
            .get_lead_history(pb::GetLeadHistoryRequest {
                lead: by_id(lead),
                page_size,
                page_token: token,
            })
            .await?
            .into_inner();
        anyhow::ensure!(
            page_size == 0 || page.entries.len() <= usize::try_from(page_size)?,
            "a page of {} entries",
            page.entries.len()
        );
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return Ok(entries);
        }
        token = page.next_page_token;
    }
}

/// The engagements that take a fresh good-fit lead from IQL to MQL
/// (`trial_started`, `webinar_attended`, two `ebook_downloaded`).
pub const TO_MQL: [&str; 4] = [
    "trial_started",
    "webinar_attended",
    "ebook_downloaded",
    "ebook_downloaded",
];

/// A good-fit lead taken to MQL by [`TO_MQL`] (events `{email}-0`…): its
/// id. Its events: CAPTURE (IQL), MQL, the `mql_welcome` trigger.
pub async fn mql_lead(server: &mut TestServer, email: &str) -> anyhow::Result<String> {
    let lead = create(server, email).await?;
    for (i, kind) in TO_MQL.iter().enumerate() {
        server
            .leads
            .record_engagement(record(&lead.id, engagement(&format!("{email}-{i}"), kind)))
            .await?;
    }
    Ok(lead.id)
}

// ---- the event stream ---------------------------------------------------------

pub type EventStream = tonic::Streaming<pb::SubscribeResponse>;

pub async fn subscribe(
    server: &mut TestServer,
    consumer: &str,
    start: pb::StartPosition,
    at_sequence: i64,
    filter: Option<pb::EventFilter>,
) -> Result<EventStream, tonic::Status> {
    Ok(server
        .triggers
        .subscribe(pb::SubscribeRequest {
            consumer: consumer.to_owned(),
            start: start.into(),
            at_sequence,
            filter,
            at_time: None,
        })
        .await?
        .into_inner())
}

/// The next event of a stream (checkpoints skipped); `None` if none comes
/// within `wait`.
pub async fn next_event(stream: &mut EventStream, wait: Duration) -> anyhow::Result<Option<pb::Event>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let item = match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => return Ok(None),
            Ok(item) => item?,
        };
        match item.and_then(|r| r.item) {
            Some(pb::subscribe_response::Item::Event(e)) => return Ok(Some(e)),
            Some(pb::subscribe_response::Item::Checkpoint(_)) => {}
            None => return Ok(None),
        }
    }
}

/// The next `n` events, or an error if they do not all come within `wait`.
pub async fn events(stream: &mut EventStream, n: usize, wait: Duration) -> anyhow::Result<Vec<pb::Event>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match next_event(stream, wait).await? {
            Some(e) => out.push(e),
            None => anyhow::bail!("only {} of {n} events arrived", out.len()),
        }
    }
    Ok(out)
}

/// A short description of a history entry: an engagement's event id,
/// `->N` for a transition into stage N, `level:warm>hot` for a level change,
/// `owner:>ana` for a change of owner.
pub fn entry_shape(e: &pb::HistoryEntry) -> String {
    match &e.entry {
        Some(pb::history_entry::Entry::Engagement(g)) => g.event_id.clone(),
        Some(pb::history_entry::Entry::Transition(t)) => format!("->{}", t.to_stage),
        Some(pb::history_entry::Entry::LevelChange(l)) => format!("level:{}>{}", l.from_level, l.to_level),
        Some(pb::history_entry::Entry::Assignment(a)) => format!("owner:{}>{}", a.from_owner, a.to_owner),
        None => "?".to_owned(),
    }
}

/// A short description of an event: `TRANSITION:MQL`, `TRIGGER:mql_welcome_sequence`,
/// `LEVEL_CHANGED:>hot` (from no level to `hot`), `LEAD_ASSIGNED:>ana` (from
/// no owner to `ana`).
pub fn describe(e: &pb::Event) -> String {
    match &e.payload {
        Some(pb::event::Payload::Transition(t)) => format!(
            "TRANSITION:{}",
            pb::Stage::try_from(t.to_stage)
                .map_or("?", |s| s.as_str_name())
                .trim_start_matches("STAGE_")
        ),
        Some(pb::event::Payload::Trigger(t)) => format!("TRIGGER:{}", t.emit),
        Some(pb::event::Payload::SlaBreach(b)) => format!("SLA_BREACHED:{}", b.sla_id),
        Some(pb::event::Payload::LevelChange(l)) => format!("LEVEL_CHANGED:{}>{}", l.from_level, l.to_level),
        Some(pb::event::Payload::AccountTransition(t)) => format!(
            "ACCOUNT_TRANSITION:{}",
            pb::AccountStage::try_from(t.to)
                .map_or("?", |s| s.as_str_name())
                .trim_start_matches("ACCOUNT_STAGE_")
        ),
        Some(pb::event::Payload::AccountTrigger(t)) => format!("ACCOUNT_TRIGGER:{}", t.emit),
        Some(pb::event::Payload::Merge(m)) => match pb::EventKind::try_from(e.kind) {
            Ok(pb::EventKind::LeadUnmerged) => format!("LEAD_UNMERGED:{}<{}", m.survivor_id, m.duplicate_id),
            _ => format!("LEAD_MERGED:{}<{}", m.survivor_id, m.duplicate_id),
        },
        Some(pb::event::Payload::Assignment(a)) => match pb::EventKind::try_from(e.kind) {
            Ok(pb::EventKind::LeadUnrouted) => format!("LEAD_UNROUTED:{}", a.route_id),
            _ => format!("LEAD_ASSIGNED:{}>{}", a.from_owner, a.to_owner),
        },
        Some(pb::event::Payload::WebhookDisabled(w)) => format!("WEBHOOK_DISABLED:{}", w.webhook_id),
        None => "?".to_owned(),
    }
}

/// An engine on the database at `url` (migrated, the default workspace
/// ready), on the system clock: for tests that start servers of their own.
pub async fn engine_on(url: &str) -> anyhow::Result<Engine> {
    engine_on_clock(url, Arc::new(SystemClock)).await
}

/// [`engine_on`], on `clock`.
pub async fn engine_on_clock(url: &str, clock: Arc<dyn Clock>) -> anyhow::Result<Engine> {
    let config = Config {
        database_url: DatabaseUrl::new(url),
        ..Config::default()
    };
    leadflow_server::open_engine(&config, clock).await
}

/// A hand-moved clock that starts now.
pub fn manual_clock_now() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemClock.now()))
}

/// `d` as a span of the engine's clock.
pub fn span(d: Duration) -> leadflow_domain::Span {
    leadflow_domain::Span::from_micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A configuration for a test's own server on the database at `url`: gRPC
/// and the HTTP side on free loopback ports, the rest as shipped.
pub fn loopback(url: &str) -> Config {
    Config {
        database_url: DatabaseUrl::new(url),
        listen: ([127, 0, 0, 1], 0).into(),
        http_listen: ([127, 0, 0, 1], 0).into(),
        ..Config::default()
    }
}

/// The gRPC side and its workers, without the HTTP side.
pub const NO_HTTP: Parts = Parts {
    timers: true,
    rescore: true,
    learning: true,
    http: false,
};

/// The gRPC side only: no timer, re-score or learning worker, no HTTP side.
pub const GRPC_ONLY: Parts = Parts {
    timers: false,
    rescore: false,
    learning: false,
    http: false,
};

/// Serves `engine` as `config` says, with `parts` beside the RPCs: the
/// running server and a plain-text channel to it.
pub async fn serve(engine: &Engine, config: &Config, parts: Parts) -> anyhow::Result<(Running, Channel)> {
    let running = leadflow_server::start(config, engine.clone(), parts).await?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.addr))?
        .connect()
        .await?;
    Ok((running, channel))
}

/// A token of `ws` with `scopes` (a fresh secret, stored hashed as the
/// CLI stores it): its secret.
pub async fn token(
    engine: &Engine,
    ws: &str,
    name: &str,
    scopes: &[&str],
    expires_at: Option<leadflow_domain::Timestamp>,
) -> anyhow::Result<String> {
    let secret = leadflow_server::auth::new_secret()?;
    let record = leadflow_store::TokenRecord {
        workspace: ws.to_owned(),
        id: format!("{ws}-{name}"),
        name: name.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        created_at: engine.now(),
        expires_at,
        revoked_at: None,
    };
    engine
        .store()
        .insert_token(&record, &leadflow_server::auth::secret_hash(&secret))
        .await?;
    Ok(secret)
}

//! leadflow-e2e: black-box tests of leadflow. Each scenario runs against a
//! real server on port 0 with a fresh database, through a real tonic client,
//! once on SQLite and once on PostgreSQL (see [`on_both_databases!`]).

use std::sync::Arc;
use std::time::Duration;

use leadflow_engine::{Engine, SystemClock};
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use leadflow_proto::v1::policy_service_client::PolicyServiceClient;
use leadflow_server::{Config, DatabaseUrl, Running};
pub use leadflow_store::testing::Engine as Db;
use leadflow_store::testing::TestDatabase;
use tonic::transport::Channel;

/// A server for one test, and clients for it. Dropping it stops the server
/// and drops the database.
#[derive(Debug)]
pub struct TestServer {
    pub leads: LeadServiceClient<Channel>,
    pub policies: PolicyServiceClient<Channel>,
    pub channel: Channel,
    pub engine: Engine,
    pub db: Db,
    running: Option<Running>,
    _database: TestDatabase,
}

impl TestServer {
    /// `None` when the test must be skipped (no PostgreSQL, not required).
    pub async fn start(db: Db) -> Option<Self> {
        let database = TestDatabase::new(db).await?;
        let config = Config {
            database_url: DatabaseUrl::new(database.url.clone()),
            max_connections: 8,
            ..Config::default()
        };
        let engine = leadflow_server::open_engine(&config, Arc::new(SystemClock))
            .await
            .expect("open the engine");
        let running = leadflow_server::start("127.0.0.1:0".parse().expect("address"), engine.clone())
            .await
            .expect("start the server");
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        Some(Self {
            leads: LeadServiceClient::new(channel.clone()),
            policies: PolicyServiceClient::new(channel.clone()),
            channel,
            engine,
            db,
            running: Some(running),
            _database: database,
        })
    }

    pub fn workspace(&self) -> &'static str {
        leadflow_server::DEFAULT_WORKSPACE
    }

    /// Rows per table: leads, engagements, transitions, outbox, timers.
    pub async fn rows(&self) -> [u64; 5] {
        self.engine
            .store()
            .row_counts(self.workspace())
            .await
            .expect("count rows")
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown(Duration::from_secs(2)).await;
        }
    }
}

/// Runs a scenario on a fresh server on `db`, and stops the server after.
pub async fn run<F, Fut>(db: Db, scenario: F)
where
    F: FnOnce(TestServer) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let Some(server) = TestServer::start(db).await else {
        return;
    };
    if let Err(e) = scenario(server).await {
        panic!("scenario failed on {db:?}: {e:#}");
    }
}

/// Declares a scenario as two tests, `NAME::sqlite` and `NAME::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    (async fn $name:ident($srv:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario(mut $srv: $crate::TestServer) -> anyhow::Result<()> {
                let _ = &mut $srv;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::run($crate::Db::Sqlite, scenario).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::run($crate::Db::Postgres, scenario).await;
            }
        }
    };
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

/// The field paths of a status's `BadRequest`.
pub fn fields(status: &tonic::Status) -> Vec<String> {
    details(status)
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Creates a lead and returns it.
pub async fn create(server: &mut TestServer, email: &str) -> anyhow::Result<pb::Lead> {
    let response = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit(email),
            ..pb::CreateLeadRequest::default()
        })
        .await?
        .into_inner();
    response
        .lead
        .ok_or_else(|| anyhow::anyhow!("no lead in the response"))
}

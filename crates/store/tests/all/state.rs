//! A lead's packed state: what a migration leaves of the rows written
//! before it (JSON), what the store reads from them, and that the next write
//! packs them.

use std::collections::BTreeMap;

use leadflow_domain::{Command, Context, Engagement, Lead, Policy, Timestamp};
use leadflow_migrations::{Migrator, MigratorTrait};
use leadflow_store::testing::harness::Trial;
use leadflow_store::testing::{Engine, TestDatabase};
use leadflow_store::{LeadWrite, Store, StoreOptions};
use sea_orm::{ConnectionTrait as _, Database, DbBackend, Statement};

/// The migrations before the packed state.
const BEFORE_PACKED: u32 = 7;

fn shipped_source() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policy.toml"))
        .expect("the shipped policy")
}

fn shipped_policy() -> Policy {
    Policy::from_toml(&shipped_source()).expect("the shipped policy parses")
}

/// Lead l1's stored search keys: the default model's (on its row), then
/// every other model's, by model id.
async fn search_keys(url: &str) -> Vec<(String, f64, f64)> {
    let conn = Database::connect(url).await.expect("connect");
    let backend = conn.get_database_backend();
    let mut out = Vec::new();
    let row = conn
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT engagement_key, qualifying_key FROM leads WHERE id = 'l1'",
        ))
        .await
        .expect("select")
        .expect("a row");
    out.push((
        "default".to_owned(),
        row.try_get::<Option<f64>>("", "engagement_key")
            .expect("key")
            .unwrap_or(f64::NAN),
        row.try_get::<Option<f64>>("", "qualifying_key")
            .expect("key")
            .unwrap_or(f64::NAN),
    ));
    for row in conn
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT model, engagement_key, qualifying_key FROM lead_scores WHERE lead_id = 'l1' ORDER BY model",
        ))
        .await
        .expect("select")
    {
        out.push((
            row.try_get("", "model").expect("model"),
            row.try_get("", "engagement_key").expect("key"),
            row.try_get("", "qualifying_key").expect("key"),
        ));
    }
    conn.close().await.expect("close");
    out
}

/// A lead with something in every part of its state: a profile, rule
/// totals in both windows, crossings and timers from the shipped policy.
fn a_lead(policy: &Policy) -> Lead {
    let t0 = Timestamp::from_secs(1_780_000_000);
    let profile = BTreeMap::from([
        ("email".to_owned(), "ada@acme.example".to_owned()),
        // A quote, and a NUL (which PostgreSQL's jsonb refuses).
        (
            "company".to_owned(),
            "Acme \"Analytical\" Engines\u{0}".to_owned(),
        ),
        ("title".to_owned(), "VP Engineering".to_owned()),
    ]);
    let mut lead = leadflow_domain::capture(policy, profile, Some(t0), &Context { now: t0 })
        .expect("capture")
        .lead;
    for (i, kind) in ["page_viewed", "webinar_attended", "trial_started", "page_viewed"]
        .into_iter()
        .enumerate()
    {
        let at = Timestamp::from_secs(1_780_000_000 + 60 * (i64::try_from(i).unwrap_or(0) + 1));
        let engagement = Engagement {
            event_id: format!("e{i}"),
            kind: kind.to_owned(),
            channel: Some("web".to_owned()),
            properties: BTreeMap::from([("path".to_owned(), "/pricing".to_owned())]),
            occurred_at: at,
        };
        lead = leadflow_domain::decide(
            policy,
            &lead,
            Command::RecordEngagement(engagement),
            &Context { now: at },
            None,
        )
        .expect("decide")
        .lead;
    }
    lead
}

async fn a_lead_written_as_json_before_the_migration_reads_the_same_and_is_packed_at_its_next_write(
    engine: Engine,
) {
    let db = TestDatabase::new(engine)
        .await
        .expect("a database: PostgreSQL trials are ignored where none answers");
    let policy = shipped_policy();
    let lead = a_lead(&policy);
    let state = serde_json::to_string(&lead).expect("json");
    // A database as the release before left it, with one lead in it.
    {
        // SQLite's file does not exist yet: create it.
        let url = match engine {
            Engine::Sqlite => format!("{}?mode=rwc", db.url),
            Engine::Postgres => db.url.clone(),
        };
        let conn = Database::connect(url.as_str()).await.expect("connect");
        Migrator::up(&conn, Some(BEFORE_PACKED))
            .await
            .expect("migrate to 7");
        let backend = conn.get_database_backend();
        let p = |n: usize| match backend {
            DbBackend::Postgres => format!("${n}"),
            _ => format!("?{n}"),
        };
        conn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO leads (workspace_id, id, external_key, stage, version, policy_version, fit, \
                 engagement, qualifying_engagement, grade, state, captured_at, entered_stage_at, updated_at, \
                 last_engagement_at, history_len) VALUES ('w', 'l1', 'k1', {}, 3, 1, 0, 0, 0, 'C', {}, 0, 0, 0, \
                 NULL, 2)",
                p(1),
                p(2)
            ),
            [lead.stage.as_str().into(), state.clone().into()],
        ))
        .await
        .expect("a lead as JSON");
        // The policy version it was scored under.
        conn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO policies (workspace_id, version, name, description, source, checksum, created_at) \
                 VALUES ('w', 1, 'acme-b2b', '', {}, 'c', 0)",
                p(1)
            ),
            [shipped_source().into()],
        ))
        .await
        .expect("a policy version");
        conn.close().await.expect("close");
    }
    let store = Store::connect(&db.url, &StoreOptions::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let read = store.lead("w", "l1").await.expect("read").expect("the lead");
    assert_eq!(read.lead, lead, "a JSON state reads as it was written");
    assert_eq!(read.version, 3);
    // The migration keyed it for search, under its own policy version.
    assert!(read.keyed, "keyed by the migration");
    let keys = lead.search_keys(&policy);
    assert_eq!(keys.len(), 2, "the default model and analytics");
    assert_eq!(
        search_keys(&db.url).await,
        keys.iter()
            .map(|k| (k.model.clone(), k.engagement, k.qualifying))
            .collect::<Vec<_>>()
    );
    let (_, _, profile) = columns(&db.url).await;
    let profile: BTreeMap<String, String> =
        serde_json::from_str(&profile.expect("a profile")).expect("the profile column is JSON");
    assert_eq!(
        &profile,
        lead.profile.as_map(),
        "the migration copied the profile"
    );

    // The next write packs it.
    let mut changed = lead.clone();
    changed.profile = changed
        .profile
        .merge(BTreeMap::from([("title".to_owned(), "CTO".to_owned())]))
        .expect("merge")
        .0;
    let tx = store.begin().await.expect("begin");
    let scores = changed.scores_at(&policy, Timestamp::from_secs(1_780_001_000));
    tx.update_lead(
        "w",
        LeadWrite {
            id: "l1",
            lead: &changed,
            scores: &scores,
            keys: &changed.search_keys(&policy),
            keys_before: None,
            version: 4,
            policy_version: 1,
            history_len: 2,
            now: Timestamp::from_secs(1_780_001_000),
        },
    )
    .await
    .expect("update");
    tx.commit().await.expect("commit");
    let read = store.lead("w", "l1").await.expect("read").expect("the lead");
    assert_eq!(read.lead, changed, "a packed state reads as it was written");
    let (json, packed, profile) = columns(&db.url).await;
    assert_eq!(json, "", "the JSON is gone once the state is packed");
    let packed = packed.expect("packed");
    assert!(
        packed.len() * 2 < state.len(),
        "packed {} bytes against {} of JSON",
        packed.len(),
        state.len()
    );
    let profile: BTreeMap<String, String> =
        serde_json::from_str(&profile.expect("a profile")).expect("the profile column is JSON");
    assert_eq!(
        profile.get("title").map(String::as_str),
        Some("CTO"),
        "the copy follows the write"
    );
}

/// The lead's `state`, `packed_state` and `profile` columns, as stored.
async fn columns(url: &str) -> (String, Option<Vec<u8>>, Option<String>) {
    let conn = Database::connect(url).await.expect("connect");
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT state, packed_state, profile FROM leads WHERE id = 'l1'",
        ))
        .await
        .expect("select")
        .expect("a row");
    let out = (
        row.try_get("", "state").expect("state"),
        row.try_get("", "packed_state").expect("packed_state"),
        row.try_get("", "profile").expect("profile"),
    );
    conn.close().await.expect("close");
    out
}

async fn legacy_state_sqlite() {
    a_lead_written_as_json_before_the_migration_reads_the_same_and_is_packed_at_its_next_write(
        Engine::Sqlite,
    )
    .await;
}

async fn legacy_state_postgres() {
    a_lead_written_as_json_before_the_migration_reads_the_same_and_is_packed_at_its_next_write(
        Engine::Postgres,
    )
    .await;
}

pub(crate) fn trials() -> Vec<Trial> {
    crate::trials![legacy_state_sqlite, legacy_state_postgres]
}

//! Accounts stored before their engagement-end timers: the migration gives
//! each the soonest end among its engaged members, as a column and as a
//! timer the worker finds due.

use leadflow_domain::Timestamp;
use leadflow_migrations::{Migrator, MigratorTrait};
use leadflow_store::testing::harness::Trial;
use leadflow_store::testing::{Engine, TestDatabase};
use leadflow_store::{ACCOUNT_ENGAGEMENT_END, AccountLookup, Store, StoreOptions};
use sea_orm::{ConnectionTrait as _, Database};

/// The migrations before the engagement-end timers.
const BEFORE_ENDS: u32 = 11;

fn account(id: &str) -> String {
    format!(
        "INSERT INTO accounts (workspace_id, id, external_key, domain, attributes, owner, stage, version, \
         policy_version, created_at, entered_stage_at, last_transition_at, entered_by, window_start, \
         history_len, fit, engagement, engagement_key, sum_epoch, sum_units, engaged, personas, members, \
         updated_at) VALUES ('w', '{id}', NULL, '{id}.com', '{{}}', NULL, 'ENGAGED', 2, 1, 0, 0, 0, 'ENGAGE', \
         NULL, 2, 0, 0, 0, 0, '0', 2, '{{}}', 3, 5)"
    )
}

fn member(account: &str, lead: &str, engaged: bool, until: Option<i64>) -> String {
    let until = until.map_or("NULL".to_owned(), |t| t.to_string());
    format!(
        "INSERT INTO account_members (workspace_id, lead_id, account_id, matched_by, matched_at, persona, \
         stage, entered_stage_at, value, value_at, score_key, counts, engaged_until, engaged, erased) \
         VALUES ('w', '{lead}', '{account}', 'email_domain', 0, NULL, 'IQL', 0, 30, 0, 1, true, {until}, \
         {engaged}, false)"
    )
}

async fn accounts_stored_before_get_their_next_end(engine: Engine) {
    let db = TestDatabase::new(engine)
        .await
        .expect("a database: PostgreSQL trials are ignored where none answers");
    {
        let url = match engine {
            Engine::Sqlite => format!("{}?mode=rwc", db.url),
            Engine::Postgres => db.url.clone(),
        };
        let conn = Database::connect(url.as_str()).await.expect("connect");
        Migrator::up(&conn, Some(BEFORE_ENDS))
            .await
            .expect("migrate to 11");
        for sql in [
            account("a1"),
            // Two engaged members end at 2,000 and 1,000; one engaged until
            // its next change; one whose engagement ended earlier and was
            // taken out of the group.
            member("a1", "l1", true, Some(2_000)),
            member("a1", "l2", true, Some(1_000)),
            member("a1", "l3", true, Some(i64::MAX)),
            member("a1", "l4", false, Some(500)),
            // An account whose only engaged member never ends by decay.
            account("a2"),
            member("a2", "l5", true, Some(i64::MAX)),
        ] {
            conn.execute_unprepared(&sql).await.expect(&sql);
        }
        conn.close().await.expect("close");
    }
    let store = Store::connect(&db.url, &StoreOptions::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let a1 = store
        .account("w", AccountLookup::Id("a1"))
        .await
        .expect("read")
        .expect("a1");
    assert_eq!(a1.engagement_ends_at, Some(Timestamp::from_micros(1_000)));
    let a2 = store
        .account("w", AccountLookup::Id("a2"))
        .await
        .expect("read")
        .expect("a2");
    assert_eq!(a2.engagement_ends_at, None);
    let due = store
        .due_timers(Timestamp::from_micros(i64::MAX - 1), 10)
        .await
        .expect("due timers");
    let due: Vec<(&str, &str, i64)> = due
        .iter()
        .map(|t| (t.lead_id.as_str(), t.key.as_str(), t.due_at.as_micros()))
        .collect();
    assert_eq!(due, [("a1", ACCOUNT_ENGAGEMENT_END, 1_000)]);
}

async fn engagement_ends_sqlite() {
    accounts_stored_before_get_their_next_end(Engine::Sqlite).await;
}

async fn engagement_ends_postgres() {
    accounts_stored_before_get_their_next_end(Engine::Postgres).await;
}

pub(crate) fn trials() -> Vec<Trial> {
    crate::trials![engagement_ends_sqlite, engagement_ends_postgres]
}

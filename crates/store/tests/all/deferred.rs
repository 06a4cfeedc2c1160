//! Deferred writes (`Tx::defer_writes`) leave the database exactly as the
//! same changes made one statement at a time.

use leadflow_domain::Stage;
use leadflow_domain::workflow::{Timer, TimerChange, TimerKind};
use leadflow_domain::{Engagement, Timestamp};
use leadflow_store::testing::harness::Trial;
use leadflow_store::testing::{Engine, TestDatabase};
use leadflow_store::{NewEngagement, Store, StoreOptions};

async fn store(engine: Engine) -> (TestDatabase, Store) {
    let db = TestDatabase::new(engine)
        .await
        .expect("a database: PostgreSQL trials are ignored where none answers");
    let store = Store::connect(&db.url, &StoreOptions::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let tx = store.begin().await.expect("begin");
    for ws in ["now", "later"] {
        tx.ensure_workspace(ws, Timestamp::from_secs(1))
            .await
            .expect("workspace");
    }
    tx.commit().await.expect("commit");
    (db, store)
}

/// A small deterministic generator (the sequences must be reproducible).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn random_change(rng: &mut Lcg) -> TimerChange {
    let kind = match rng.below(3) {
        0 => TimerKind::Sla("idle".into()),
        1 => TimerKind::Workflow("nurture".into()),
        _ => TimerKind::Sla("first_contact".into()),
    };
    match rng.below(5) {
        0 => TimerChange::Cancel(kind),
        1 => TimerChange::CancelStageBound,
        _ => {
            let bound = (rng.below(2) == 0).then(|| (Stage::Mql, Timestamp::from_secs(5)));
            TimerChange::Schedule(Timer {
                kind,
                due_at: Timestamp::from_secs(100 + i64::try_from(rng.below(50)).unwrap_or(0)),
                bound,
                suppressed: rng.below(4) == 0,
            })
        }
    }
}

async fn timers(store: &Store, ws: &str, lead: &str) -> Vec<(String, Timestamp, bool, bool)> {
    let mut out: Vec<_> = store
        .timers_of(ws, lead)
        .await
        .expect("timers")
        .into_iter()
        .map(|t| {
            (
                t.timer.kind.key(),
                t.timer.due_at,
                t.timer.bound.is_some(),
                t.timer.suppressed,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

async fn timer_changes_end_where_they_would_one_by_one(engine: Engine) {
    let (_db, store) = store(engine).await;
    let now = Timestamp::from_secs(10);
    for seed in 0..40_u64 {
        let mut rng = Lcg(seed);
        let leads = [format!("a{seed}"), format!("b{seed}")];
        // The same starting timers in both workspaces, committed.
        let start: Vec<TimerChange> = (0..3).map(|_| random_change(&mut rng)).collect();
        let tx = store.begin().await.expect("begin");
        for ws in ["now", "later"] {
            for lead in &leads {
                tx.apply_timers(ws, lead, &start, now, None).await.expect("start");
            }
        }
        tx.commit().await.expect("commit");
        // Then decisions' changes, interleaved between the leads.
        let decisions: Vec<(usize, Vec<TimerChange>)> = (0..6)
            .map(|_| {
                let lead = usize::try_from(rng.below(2)).unwrap_or(0);
                let n = rng.below(3) + 1;
                (lead, (0..n).map(|_| random_change(&mut rng)).collect())
            })
            .collect();
        let immediate = store.begin().await.expect("begin");
        for (lead, changes) in &decisions {
            immediate
                .apply_timers("now", &leads[*lead], changes, now, None)
                .await
                .expect("apply");
        }
        immediate.commit().await.expect("commit");
        let deferred = store.begin().await.expect("begin");
        deferred.defer_writes();
        for (lead, changes) in &decisions {
            deferred
                .apply_timers("later", &leads[*lead], changes, now, None)
                .await
                .expect("apply");
        }
        deferred.commit().await.expect("commit");
        for lead in &leads {
            assert_eq!(
                timers(&store, "later", lead).await,
                timers(&store, "now", lead).await,
                "seed {seed}, lead {lead}: {start:?} then {decisions:?}"
            );
        }
    }
}

async fn timer_changes_end_where_they_would_one_by_one_sqlite() {
    timer_changes_end_where_they_would_one_by_one(Engine::Sqlite).await;
}

async fn timer_changes_end_where_they_would_one_by_one_postgres() {
    timer_changes_end_where_they_would_one_by_one(Engine::Postgres).await;
}

async fn reads_in_the_transaction_see_held_back_writes(engine: Engine) {
    let (_db, store) = store(engine).await;
    let engagement = |id: &str| Engagement {
        event_id: id.into(),
        kind: "page_viewed".into(),
        channel: None,
        properties: std::collections::BTreeMap::new(),
        occurred_at: Timestamp::from_secs(3),
    };
    let (e1, e2, e3) = (engagement("e1"), engagement("e2"), engagement("e3"));
    let new = |e| NewEngagement {
        lead_id: "lead-1",
        engagement: e,
        fingerprint: "fp",
    };
    let tx = store.begin().await.expect("begin");
    tx.defer_writes();
    let first = tx
        .insert_engagements_if_new("now", &[new(&e1), new(&e2), new(&e1)], Timestamp::from_secs(4))
        .await
        .expect("insert");
    assert_eq!(
        sorted(first),
        ["e1", "e2"],
        "a repeat within the list is not inserted"
    );
    let second = tx
        .insert_engagements_if_new("now", &[new(&e2), new(&e3)], Timestamp::from_secs(4))
        .await
        .expect("insert");
    assert_eq!(sorted(second), ["e3"], "nor one recorded before");
    let due = Timer {
        kind: TimerKind::Sla("idle".into()),
        due_at: Timestamp::from_secs(50),
        bound: None,
        suppressed: false,
    };
    tx.apply_timers(
        "now",
        "lead-1",
        &[TimerChange::Schedule(due)],
        Timestamp::from_secs(4),
        None,
    )
    .await
    .expect("held back");
    let seen = tx
        .due_timers_of("now", "lead-1", Timestamp::from_secs(60))
        .await
        .expect("read");
    assert_eq!(seen.len(), 1, "a read writes what was held back first");
    assert_eq!(tx.engagements_of("now", "lead-1").await.expect("log").len(), 3);
    drop(tx);
    assert!(
        store
            .engagements_of("now", "lead-1")
            .await
            .expect("log")
            .is_empty(),
        "rolled back with the transaction"
    );
    assert!(store.timers_of("now", "lead-1").await.expect("timers").is_empty());
}

fn sorted(ids: std::collections::HashSet<String>) -> Vec<String> {
    let mut ids: Vec<String> = ids.into_iter().collect();
    ids.sort();
    ids
}

async fn reads_in_the_transaction_see_held_back_writes_sqlite() {
    reads_in_the_transaction_see_held_back_writes(Engine::Sqlite).await;
}

async fn reads_in_the_transaction_see_held_back_writes_postgres() {
    reads_in_the_transaction_see_held_back_writes(Engine::Postgres).await;
}

pub(crate) fn trials() -> Vec<Trial> {
    crate::trials![
        timer_changes_end_where_they_would_one_by_one_sqlite,
        timer_changes_end_where_they_would_one_by_one_postgres,
        reads_in_the_transaction_see_held_back_writes_sqlite,
        reads_in_the_transaction_see_held_back_writes_postgres,
    ]
}

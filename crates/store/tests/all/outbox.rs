//! The outbox's sequence is commit-ordered: a reader never sees sequence
//! n+1 before a later-committing n.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use leadflow_domain::Timestamp;
use leadflow_store::testing::harness::Trial;
use leadflow_store::testing::{Engine, TestDatabase};
use leadflow_store::{NewOutboxEvent, Store, StoreOptions, StoredResult};

async fn store(engine: Engine) -> (TestDatabase, Store) {
    let db = TestDatabase::new(engine)
        .await
        .expect("a database: PostgreSQL trials are ignored where none answers");
    let store = Store::connect(&db.url, &StoreOptions::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let tx = store.begin().await.expect("begin");
    tx.ensure_workspace("w", Timestamp::from_secs(1))
        .await
        .expect("workspace");
    tx.commit().await.expect("commit");
    (db, store)
}

fn event(tag: &str) -> NewOutboxEvent {
    NewOutboxEvent {
        event_id: tag.to_owned(),
        lead_id: "lead".to_owned(),
        subject: leadflow_store::Subject::Lead,
        kind: "TRANSITION".to_owned(),
        payload: "{}".to_owned(),
        occurred_at: Timestamp::from_secs(1),
        created_at: Timestamp::from_secs(1),
        traceparent: None,
        suppressed: false,
    }
}

async fn seen(store: &Store) -> Vec<(i64, String)> {
    store
        .outbox_after("w", 0, 1_000)
        .await
        .expect("read")
        .into_iter()
        .map(|r| (r.seq, r.event.event_id))
        .collect()
}

/// Two transactions commit in the reverse of the order they started and
/// appended in: the one committing first gets the first sequence, so no
/// reader ever sees a hole that a slower transaction fills later.
async fn sequences_follow_commit_order_not_start_order_postgres() {
    let (_db, store) = store(Engine::Postgres).await;
    let slow = store.begin().await.expect("begin");
    slow.save_result(
        "w",
        "r-slow",
        &StoredResult {
            method: "m".into(),
            fingerprint: "f".into(),
            response: "{}".into(),
            created_at: Timestamp::from_secs(1),
        },
    )
    .await
    .expect("write");
    slow.append_outbox("w", vec![event("slow")]);

    let fast = store.begin().await.expect("begin");
    fast.append_outbox("w", vec![event("fast")]);
    fast.commit().await.expect("commit");
    assert_eq!(
        seen(&store).await,
        [(1, "fast".to_owned())],
        "no gap below the first commit"
    );

    slow.commit().await.expect("commit");
    assert_eq!(
        seen(&store).await,
        [(1, "fast".to_owned()), (2, "slow".to_owned())]
    );
}

async fn many_writers_one_reader(engine: Engine) {
    let (_db, store) = store(engine).await;
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let store = store.clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                for record in store.outbox_after("w", last, 1_000).await.expect("read") {
                    assert_eq!(
                        record.seq,
                        last + 1,
                        "a reader saw {} right after {last}",
                        record.seq
                    );
                    last = record.seq;
                }
                if finished {
                    return last;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..8_u64 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..15_u64 {
                let tx = store.begin().await.expect("begin");
                let n = 1 + (w + i) % 3;
                tx.append_outbox("w", (0..n).map(|k| event(&format!("{w}-{i}-{k}"))).collect());
                // commits land in an order unrelated to when they began
                tokio::time::sleep(Duration::from_micros((w * 7 + i * 13) % 500)).await;
                tx.commit().await.expect("commit");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    done.store(true, Ordering::SeqCst);
    let last = reader.await.expect("reader");
    let expected: i64 = (0..8_i64)
        .flat_map(|w| (0..15_i64).map(move |i| 1 + (w + i) % 3))
        .sum();
    assert_eq!(last, expected);
}

async fn many_writers_never_show_a_reader_a_gap_sqlite() {
    many_writers_one_reader(Engine::Sqlite).await;
}

async fn many_writers_never_show_a_reader_a_gap_postgres() {
    many_writers_one_reader(Engine::Postgres).await;
}

pub(crate) fn trials() -> Vec<Trial> {
    crate::trials![
        sequences_follow_commit_order_not_start_order_postgres,
        many_writers_never_show_a_reader_a_gap_sqlite,
        many_writers_never_show_a_reader_a_gap_postgres,
    ]
}

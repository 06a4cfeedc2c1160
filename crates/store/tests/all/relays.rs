//! Relays' leases and cursors: one holder at a time, taken over once the
//! lease runs out, every cursor write fenced on the holder and the relay's
//! epoch, never moved back, and the retention held until relayed.

use leadflow_domain::{Span, Timestamp};
use leadflow_store::testing::harness::Trial;
use leadflow_store::testing::{Engine, TestDatabase};
use leadflow_store::{Lease, NewOutboxEvent, Store, StoreOptions};

const RELAY: &str = "jetstream:LEADFLOW";

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
    tx.append_outbox(
        "w",
        (0..3)
            .map(|i| NewOutboxEvent {
                event_id: format!("e{i}"),
                lead_id: "lead".to_owned(),
                subject: leadflow_store::Subject::Lead,
                kind: "TRANSITION".to_owned(),
                payload: "{}".to_owned(),
                occurred_at: Timestamp::from_secs(1),
                created_at: Timestamp::from_secs(1),
                traceparent: None,
                suppressed: false,
            })
            .collect(),
    );
    tx.commit().await.expect("commit");
    (db, store)
}

fn lease(holder: &str, now: i64) -> Lease<'_> {
    Lease {
        holder,
        now,
        until: now + 6_000_000,
    }
}

async fn one_holder_at_a_time(engine: Engine) {
    let (_db, store) = store(engine).await;
    assert_eq!(store.workspaces_without_relay(RELAY).await.expect("list"), ["w"]);
    store.create_relay("w", RELAY, 0, 1_000).await.expect("create");
    // Made once: a second creation keeps the first (and its cursor).
    store
        .create_relay("w", RELAY, 2, 2_000)
        .await
        .expect("create again");
    assert!(
        store
            .workspaces_without_relay(RELAY)
            .await
            .expect("list")
            .is_empty()
    );

    let held = store.hold_relays(RELAY, lease("a", 10)).await.expect("hold");
    assert_eq!(held.len(), 1);
    let epoch = held[0].created_at.as_micros();
    assert_eq!((held[0].cursor, epoch), (0, 1_000));
    // b finds it held; a renews it.
    assert!(
        store
            .hold_relays(RELAY, lease("b", 20))
            .await
            .expect("hold")
            .is_empty()
    );
    assert_eq!(
        store
            .hold_relays(RELAY, lease("a", 30))
            .await
            .expect("renew")
            .len(),
        1
    );

    // Only the holder moves the cursor, and only forward.
    assert!(
        !store
            .advance_relay("w", RELAY, epoch, 2, lease("b", 40))
            .await
            .expect("fenced")
    );
    assert!(
        store
            .advance_relay("w", RELAY, epoch, 2, lease("a", 40))
            .await
            .expect("moved")
    );
    assert!(
        store
            .advance_relay("w", RELAY, epoch, 1, lease("a", 50))
            .await
            .expect("kept")
    );
    let relays = store.list_relays("w").await.expect("list");
    assert_eq!((relays[0].cursor, relays[0].holder.as_str()), (2, "a"));
    assert_eq!(relays[0].oldest_pending, Some(Timestamp::from_secs(1)));
    // The wrong epoch: a relay deleted and made again is not the one held.
    assert!(
        !store
            .advance_relay("w", RELAY, epoch + 1, 3, lease("a", 60))
            .await
            .expect("fenced")
    );

    // a stops renewing: once its lease ran out, b takes the relay, and a's
    // writes are refused.
    let later = 50 + 6_000_001;
    let taken = store
        .hold_relays(RELAY, lease("b", later))
        .await
        .expect("take over");
    assert_eq!((taken.len(), taken[0].cursor), (1, 2));
    assert!(
        !store
            .advance_relay("w", RELAY, epoch, 3, lease("a", later))
            .await
            .expect("fenced")
    );
    assert!(
        store
            .advance_relay("w", RELAY, epoch, 3, lease("b", later))
            .await
            .expect("moved")
    );
    assert_eq!(
        store.list_relays("w").await.expect("list")[0].oldest_pending,
        None
    );

    // Given up: free for the next at once.
    store.release_relay("w", RELAY, "a").await.expect("not a's");
    assert!(
        store
            .hold_relays(RELAY, lease("a", later + 1))
            .await
            .expect("held by b")
            .is_empty()
    );
    store.release_relay("w", RELAY, "b").await.expect("release");
    assert_eq!(
        store
            .hold_relays(RELAY, lease("a", later + 2))
            .await
            .expect("take")
            .len(),
        1
    );

    assert!(store.delete_relay("w", RELAY).await.expect("delete"));
    assert!(!store.delete_relay("w", RELAY).await.expect("gone"));
}

async fn one_holder_at_a_time_sqlite() {
    one_holder_at_a_time(Engine::Sqlite).await;
}

async fn one_holder_at_a_time_postgres() {
    one_holder_at_a_time(Engine::Postgres).await;
}

/// Events past the retention stay while a relay has not relayed them,
/// however long it was not seen.
async fn a_relay_holds_the_retention(engine: Engine) {
    let (_db, store) = store(engine).await;
    store.create_relay("w", RELAY, 0, 1_000).await.expect("create");
    let long_after = Timestamp::from_secs(1).saturating_add(Span::from_days(30));
    assert_eq!(store.trim_outbox("w", long_after).await.expect("trim"), 0);
    let epoch = store.hold_relays(RELAY, lease("a", 10)).await.expect("hold")[0]
        .created_at
        .as_micros();
    assert!(
        store
            .advance_relay("w", RELAY, epoch, 2, lease("a", 20))
            .await
            .expect("moved")
    );
    assert_eq!(store.trim_outbox("w", long_after).await.expect("trim"), 2);
    // Deleted, it holds nothing.
    assert!(store.delete_relay("w", RELAY).await.expect("delete"));
    assert_eq!(store.trim_outbox("w", long_after).await.expect("trim"), 1);
}

async fn a_relay_holds_the_retention_sqlite() {
    a_relay_holds_the_retention(Engine::Sqlite).await;
}

async fn a_relay_holds_the_retention_postgres() {
    a_relay_holds_the_retention(Engine::Postgres).await;
}

pub(crate) fn trials() -> Vec<Trial> {
    crate::trials![
        one_holder_at_a_time_sqlite,
        one_holder_at_a_time_postgres,
        a_relay_holds_the_retention_sqlite,
        a_relay_holds_the_retention_postgres,
    ]
}

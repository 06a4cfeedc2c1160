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

fn delivery(seq: i64, subject: &str, at: i64) -> leadflow_store::DeliveryRecord {
    leadflow_store::DeliveryRecord {
        seq,
        event_id: format!("e{seq}"),
        subject: subject.to_owned(),
        status: leadflow_store::DELIVERY_PENDING.to_owned(),
        attempts: 0,
        first_attempt_at: None,
        next_attempt_at: Timestamp::from_secs(at),
        last_attempt_at: None,
        last_status_code: None,
        last_error: String::new(),
        resolved_at: None,
    }
}

/// A webhook endpoint is a relay row (its cursor, lease and hold on the
/// retention) beside its deliveries; disabling or deleting it releases the
/// events it held.
async fn a_webhook_is_a_relay_with_deliveries(engine: Engine) {
    let (_db, store) = store(engine).await;
    let now = Timestamp::from_secs(100);
    let hook = leadflow_store::WebhookRecord {
        id: "h1".to_owned(),
        url: "https://example.com/hook".to_owned(),
        description: "crm".to_owned(),
        filter: "{}".to_owned(),
        secret: "whsec_a".to_owned(),
        previous_secret: None,
        previous_until: 0,
        enabled: true,
        disabled_reason: None,
        read: 0,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    store.insert_webhook("w", &hook, 1).await.expect("insert");
    let relays = store.list_relays("w").await.expect("relays");
    assert_eq!(
        (relays[0].name.as_str(), relays[0].cursor),
        (leadflow_store::webhook_relay_name("h1").as_str(), 1)
    );
    assert_eq!(
        store.webhook("w", "h1").await.expect("read").map(|h| h.read),
        Some(1)
    );

    store
        .add_deliveries(
            "w",
            "h1",
            &[delivery(2, "lead:a", 100), delivery(3, "lead:a", 100)],
            3,
        )
        .await
        .expect("add");
    // Read again (a replica taking over): nothing twice, the position kept.
    store
        .add_deliveries("w", "h1", &[delivery(3, "lead:a", 100)], 2)
        .await
        .expect("add again");
    assert_eq!(
        store.webhook("w", "h1").await.expect("read").map(|h| h.read),
        Some(3)
    );
    let open = store.open_deliveries("w", "h1").await.expect("open");
    assert_eq!(open.iter().map(|d| d.seq).collect::<Vec<_>>(), [2, 3]);

    let mut first = open[0].clone();
    first.status = leadflow_store::DELIVERY_DELIVERED.to_owned();
    first.attempts = 1;
    first.last_status_code = Some(204);
    first.resolved_at = Some(Timestamp::from_secs(101));
    // Written only over the delivery as it was.
    let mut stale = open[0].clone();
    stale.attempts = 7;
    assert!(
        !store
            .update_delivery("w", "h1", &stale, &first)
            .await
            .expect("stale")
    );
    assert!(
        store
            .update_delivery("w", "h1", &open[0], &first)
            .await
            .expect("update")
    );
    assert!(
        !store
            .update_delivery("w", "h1", &open[0], &first)
            .await
            .expect("once")
    );
    assert_eq!(store.open_deliveries("w", "h1").await.expect("open").len(), 1);
    let delivered = store
        .list_deliveries("w", "h1", Some(leadflow_store::DELIVERY_DELIVERED), 0, 10)
        .await
        .expect("list");
    assert_eq!((delivered.len(), delivered[0].last_status_code), (1, Some(204)));
    assert_eq!(
        store
            .list_deliveries("w", "h1", None, 3, 10)
            .await
            .expect("page")
            .len(),
        1
    );
    assert_eq!(
        store.delivery("w", "h1", 3).await.expect("one").map(|d| d.seq),
        Some(3)
    );

    let rotated = store
        .rotate_webhook_secret("w", "h1", "whsec_b", 200_000_000, Timestamp::from_secs(102))
        .await
        .expect("rotate")
        .expect("known");
    assert_eq!(
        (rotated.secret.as_str(), rotated.previous_secret.as_deref()),
        ("whsec_b", Some("whsec_a"))
    );

    let said = |id: &str| NewOutboxEvent {
        event_id: id.to_owned(),
        lead_id: "h1".to_owned(),
        subject: leadflow_store::Subject::Webhook,
        kind: "WEBHOOK_DISABLED".to_owned(),
        payload: "{}".to_owned(),
        occurred_at: Timestamp::from_secs(103),
        created_at: Timestamp::from_secs(103),
        traceparent: None,
        suppressed: false,
    };
    let head = store.outbox_bounds("w").await.expect("bounds").head;
    assert!(
        store
            .disable_webhook(
                "w",
                "h1",
                "failing for 24 h",
                Timestamp::from_secs(103),
                said("d1")
            )
            .await
            .expect("disable")
    );
    assert!(
        !store
            .disable_webhook("w", "h1", "again", Timestamp::from_secs(104), said("d2"))
            .await
            .expect("once")
    );
    // Said once, in the same transaction, as the endpoint's own event.
    let events = store.outbox_after("w", head, 10).await.expect("events");
    assert_eq!(
        events
            .iter()
            .map(|e| (
                e.event.event_id.as_str(),
                e.event.subject,
                e.event.lead_id.as_str()
            ))
            .collect::<Vec<_>>(),
        [("d1", leadflow_store::Subject::Webhook, "h1")]
    );
    assert!(store.list_relays("w").await.expect("relays").is_empty());
    let disabled = store.webhook("w", "h1").await.expect("read").expect("kept");
    assert_eq!(
        (disabled.enabled, disabled.disabled_reason.as_deref()),
        (false, Some("failing for 24 h"))
    );

    // Resolved a while ago: forgotten; open ones stay.
    assert_eq!(
        store
            .trim_deliveries(Timestamp::from_secs(101))
            .await
            .expect("trim"),
        0
    );
    assert_eq!(
        store
            .trim_deliveries(Timestamp::from_secs(102))
            .await
            .expect("trim"),
        1
    );
    assert_eq!(
        store
            .list_deliveries("w", "h1", None, 0, 10)
            .await
            .expect("list")
            .len(),
        1
    );

    assert!(store.delete_webhook("w", "h1").await.expect("delete"));
    assert!(!store.delete_webhook("w", "h1").await.expect("gone"));
    assert!(
        store
            .list_deliveries("w", "h1", None, 0, 10)
            .await
            .expect("list")
            .is_empty()
    );
}

async fn a_webhook_is_a_relay_with_deliveries_sqlite() {
    a_webhook_is_a_relay_with_deliveries(Engine::Sqlite).await;
}

async fn a_webhook_is_a_relay_with_deliveries_postgres() {
    a_webhook_is_a_relay_with_deliveries(Engine::Postgres).await;
}

pub(crate) fn trials() -> Vec<Trial> {
    crate::trials![
        one_holder_at_a_time_sqlite,
        one_holder_at_a_time_postgres,
        a_relay_holds_the_retention_sqlite,
        a_relay_holds_the_retention_postgres,
        a_webhook_is_a_relay_with_deliveries_sqlite,
        a_webhook_is_a_relay_with_deliveries_postgres,
    ]
}

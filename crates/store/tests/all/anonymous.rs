//! Anonymous activity in the store: one event-id namespace with the leads'
//! engagements, the oldest dropped over an id's limit (their ids kept), and
//! an identification that hands the kept events to the lead.

use std::collections::BTreeMap;

use leadflow_domain::{Engagement, Timestamp};
use leadflow_store::testing::harness::Trial;
use leadflow_store::testing::{Engine, TestDatabase};
use leadflow_store::{Store, StoreOptions};

fn event(id: &str, minute: i64) -> Engagement {
    Engagement {
        event_id: id.to_owned(),
        kind: "page_viewed".to_owned(),
        channel: Some("search".to_owned()),
        properties: BTreeMap::from([("path".to_owned(), "/pricing".to_owned())]),
        occurred_at: Timestamp::from_secs(1_767_571_200 + minute * 60),
    }
}

async fn anonymous_events_share_ids_keep_a_limit_and_join_a_lead(engine: Engine) {
    let db = TestDatabase::new(engine)
        .await
        .expect("a database: PostgreSQL trials are ignored where none answers");
    let store = Store::connect(&db.url, &StoreOptions::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let now = Timestamp::from_secs(1_767_571_200 + 86_400);
    let tx = store.begin().await.expect("begin");
    // Four events under a limit of three: the oldest is dropped. They
    // arrive out of time order; the oldest is by occurred_at.
    for (id, minute) in [("a2", 2), ("a1", 1), ("a4", 4), ("a3", 3)] {
        let seen = tx.touch_anonymous("w", "cookie", now).await.expect("touch");
        assert_eq!(seen.lead_id, None);
        let new = tx
            .insert_anonymous_engagement("w", &seen, &event(id, minute), "fp", now, 3)
            .await
            .expect("insert");
        assert!(new, "{id} is new");
    }
    let record = tx
        .lock_anonymous("w", "cookie")
        .await
        .expect("read")
        .expect("the id");
    assert_eq!((record.kept, record.dropped), (3, 1));
    // Every id stays taken: a re-delivery of the dropped one, and a lead's
    // engagement reusing an anonymous event's id.
    let seen = tx.touch_anonymous("w", "cookie", now).await.expect("touch");
    let again = tx
        .insert_anonymous_engagement("w", &seen, &event("a1", 1), "fp", now, 3)
        .await
        .expect("insert");
    assert!(!again, "a dropped event's id is still known");
    let reused = tx
        .insert_engagement_if_new("w", "lead-1", &event("a3", 3), "other", now)
        .await
        .expect("insert");
    assert!(!reused, "one event-id namespace");
    let stored = tx.engagement("w", "a1").await.expect("read").expect("a1");
    assert!(
        stored.engagement.properties.is_empty(),
        "a dropped event keeps no content"
    );
    // The identification: the kept events, in log order, become the lead's.
    let joined = tx
        .join_anonymous("w", "cookie", "lead-1", now)
        .await
        .expect("join");
    let ids: Vec<&str> = joined.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["a2", "a3", "a4"]);
    assert_eq!(joined[0], event("a2", 2));
    let log = tx.engagements_of("w", "lead-1").await.expect("log");
    assert_eq!(log, joined);
    let record = tx
        .lock_anonymous("w", "cookie")
        .await
        .expect("read")
        .expect("the id");
    assert_eq!(
        (
            record.lead_id.as_deref(),
            record.identified_at,
            record.kept,
            record.dropped
        ),
        (Some("lead-1"), Some(now), 0, 1)
    );
    // Another workspace has its own ids.
    let seen = tx.touch_anonymous("v", "cookie", now).await.expect("touch");
    assert!(
        tx.insert_anonymous_engagement("v", &seen, &event("a1", 1), "fp", now, 3)
            .await
            .expect("insert")
    );
    // After a purge the count kept with an id is counted again, not
    // trusted: three events purged, a fourth is not taken for one too many.
    let later = Timestamp::from_secs(1_767_571_200 + 30 * 86_400);
    for (id, minute) in [("p1", 1), ("p2", 2), ("p3", 3)] {
        let seen = tx.touch_anonymous("w", "purged", now).await.expect("touch");
        tx.insert_anonymous_engagement("w", &seen, &event(id, minute), "fp", now, 3)
            .await
            .expect("insert");
    }
    let seen = tx.touch_anonymous("w", "purged", later).await.expect("touch");
    assert_eq!(tx.purge_anonymous("w", later).await.expect("purge"), 3);
    tx.insert_anonymous_engagement("w", &seen, &event("p4", 4), "fp", later, 3)
        .await
        .expect("insert");
    let record = tx
        .lock_anonymous("w", "purged")
        .await
        .expect("read")
        .expect("seen since");
    assert_eq!((record.kept, record.dropped), (1, 0));
    tx.commit().await.expect("commit");
}

async fn anonymous_sqlite() {
    anonymous_events_share_ids_keep_a_limit_and_join_a_lead(Engine::Sqlite).await;
}

async fn anonymous_postgres() {
    anonymous_events_share_ids_keep_a_limit_and_join_a_lead(Engine::Postgres).await;
}

pub(crate) fn trials() -> Vec<Trial> {
    crate::trials![anonymous_sqlite, anonymous_postgres]
}

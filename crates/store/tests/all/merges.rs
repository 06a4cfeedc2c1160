//! Merges in the store: a duplicate's engagements and anonymous ids move
//! to the survivor and back, exactly what it brought plus what was recorded
//! since under its key or ids, and the merge's record round-trips.

use std::collections::BTreeMap;

use leadflow_domain::lifecycle::MergedAttributes;
use leadflow_domain::{Engagement, Stage, Timestamp};
use leadflow_store::testing::harness::Trial;
use leadflow_store::testing::{Engine, TestDatabase};
use leadflow_store::{MergeRecord, Store, StoreOptions};

fn event(id: &str, minute: i64) -> Engagement {
    Engagement {
        event_id: id.to_owned(),
        kind: "page_viewed".to_owned(),
        channel: None,
        properties: BTreeMap::new(),
        occurred_at: Timestamp::from_secs(1_767_571_200 + minute * 60),
    }
}

fn ids(log: &[Engagement]) -> Vec<&str> {
    log.iter().map(|e| e.event_id.as_str()).collect()
}

async fn a_merge_moves_a_log_and_an_unmerge_gives_back_what_it_brought(engine: Engine) {
    let db = TestDatabase::new(engine)
        .await
        .expect("a database: PostgreSQL trials are ignored where none answers");
    let store = Store::connect(&db.url, &StoreOptions::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let now = Timestamp::from_secs(1_767_571_200 + 86_400);
    let tx = store.begin().await.expect("begin");
    for (lead, id, minute) in [("s", "s1", 1), ("d", "d1", 2), ("d", "d2", 3)] {
        assert!(
            tx.insert_engagement_if_new("w", lead, &event(id, minute), "fp", now)
                .await
                .expect("insert")
        );
    }
    // An anonymous id identified as the duplicate.
    let seen = tx.touch_anonymous("w", "cookie", now).await.expect("touch");
    tx.insert_anonymous_engagement("w", &seen, &event("c1", 4), "fp", now, 10)
        .await
        .expect("anonymous");
    tx.join_anonymous("w", "cookie", "d", now).await.expect("join");

    // The merge: the duplicate's log and ids become the survivor's.
    let moved = tx.move_engagements("w", "d", "s").await.expect("move");
    assert_eq!(ids(&moved), ["d1", "d2", "c1"]);
    assert_eq!(
        ids(&tx.engagements_of("w", "s").await.expect("log")),
        ["s1", "d1", "d2", "c1"]
    );
    assert!(tx.engagements_of("w", "d").await.expect("log").is_empty());
    let brought = tx.move_anonymous_ids("w", "d", "s", None).await.expect("ids");
    assert_eq!(brought, ["cookie"]);
    assert_eq!(
        tx.anonymous_lead("w", "cookie").await.expect("id"),
        Some("s".to_owned())
    );
    let record = MergeRecord {
        duplicate_id: "d".to_owned(),
        survivor_id: "s".to_owned(),
        merged_at: now,
        recorded_at: now,
        stage: Stage::Sql,
        anonymous_ids: brought.clone(),
        attributes: MergedAttributes {
            set: BTreeMap::from([("phone".to_owned(), "+33".to_owned())]),
            before: BTreeMap::from([("phone".to_owned(), String::new())]),
        },
        merged_by: Some("ops".to_owned()),
        automatic: false,
        unmerged_at: None,
    };
    tx.save_merge("w", &record).await.expect("save");
    assert_eq!(tx.merge_of("w", "d").await.expect("read"), Some(record.clone()));
    assert_eq!(tx.merged_ids("w", "s").await.expect("ids"), ["d"]);

    // Since the merge: one under the duplicate's key, one under its
    // anonymous id, one the survivor's own.
    for (id, minute) in [("via-key", 5), ("via-cookie", 6), ("own", 7)] {
        tx.insert_engagement_if_new("w", "s", &event(id, minute), "fp", now)
            .await
            .expect("insert");
    }
    tx.mark_via("w", "via-key", "d").await.expect("via");
    tx.mark_anonymous("w", "via-cookie", "cookie")
        .await
        .expect("anonymous");
    // Under the key of a lead merged into the duplicate before: its too.
    tx.insert_engagement_if_new("w", "s", &event("via-chain", 8), "fp", now)
        .await
        .expect("insert");
    tx.mark_via("w", "via-chain", "x").await.expect("via");
    tx.save_merge(
        "w",
        &MergeRecord {
            duplicate_id: "x".to_owned(),
            survivor_id: "d".to_owned(),
            anonymous_ids: Vec::new(),
            ..record.clone()
        },
    )
    .await
    .expect("an earlier merge into the duplicate");

    // The unmerge: all that, and only that, goes back.
    let back = tx
        .return_engagements("w", "s", "d", &record.anonymous_ids)
        .await
        .expect("return");
    assert_eq!(back, 6);
    assert_eq!(
        ids(&tx.engagements_of("w", "s").await.expect("log")),
        ["s1", "own"]
    );
    assert_eq!(
        ids(&tx.engagements_of("w", "d").await.expect("log")),
        ["d1", "d2", "c1", "via-key", "via-cookie", "via-chain"]
    );
    tx.move_anonymous_ids("w", "s", "d", Some(&record.anonymous_ids))
        .await
        .expect("ids back");
    assert_eq!(
        tx.anonymous_lead("w", "cookie").await.expect("id"),
        Some("d".to_owned())
    );
    tx.end_merge("w", "d", now).await.expect("end");
    assert_eq!(tx.merge_of("w", "d").await.expect("read"), None);
    assert!(tx.merged_ids("w", "s").await.expect("ids").is_empty());
    // An erase forgets it, undone or not.
    tx.delete_merges("w", "s").await.expect("delete");
    tx.save_merge("w", &record).await.expect("merged again");
    tx.delete_merges("w", "d").await.expect("delete by the duplicate");
    assert_eq!(tx.merge_of("w", "d").await.expect("read"), None);
    tx.commit().await.expect("commit");
}

async fn merges_sqlite() {
    a_merge_moves_a_log_and_an_unmerge_gives_back_what_it_brought(Engine::Sqlite).await;
}

async fn merges_postgres() {
    a_merge_moves_a_log_and_an_unmerge_gives_back_what_it_brought(Engine::Postgres).await;
}

pub(crate) fn trials() -> Vec<Trial> {
    crate::trials![merges_sqlite, merges_postgres]
}

//! Learning jobs: one running per workspace (a later start supersedes
//! it), held by one replica at a time and taken over once its lease runs
//! out, progress and outcome written only by their holder, and only the
//! workspace's last report kept.

use leadflow_domain::Timestamp;
use leadflow_domain::analytics::Period;
use leadflow_store::testing::harness::Trial;
use leadflow_store::testing::{Engine, TestDatabase};
use leadflow_store::{
    LEARN_DONE, LEARN_FAILED, LEARN_RUNNING, LEARN_SUPERSEDED, LearnEnd, LearnRequest, Store, StoreOptions,
};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_secs(secs)
}

fn request() -> LearnRequest {
    LearnRequest {
        period: Period {
            start: at(0),
            end: at(1_000),
        },
        outcome: "SQL".to_owned(),
        base_version: 1,
        model: "default".to_owned(),
        target_precision: Some(0.6),
        choose_fit: true,
    }
}

async fn store(engine: Engine) -> (TestDatabase, Store) {
    let db = TestDatabase::new(engine)
        .await
        .expect("a database: PostgreSQL trials are ignored where none answers");
    let store = Store::connect(&db.url, &StoreOptions::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let tx = store.begin().await.expect("begin");
    tx.ensure_workspace("w", at(1)).await.expect("workspace");
    tx.commit().await.expect("commit");
    (db, store)
}

async fn start(store: &Store, now: i64) -> leadflow_store::LearnJobRecord {
    let tx = store.begin().await.expect("begin");
    tx.lock_workspace("w").await.expect("lock");
    let job = tx
        .start_learn("w", &request(), 0, at(now), None)
        .await
        .expect("start");
    tx.commit().await.expect("commit");
    job
}

fn done(report: &str) -> LearnEnd {
    LearnEnd::Done {
        outcomes: 200,
        positives: 40,
        report: report.to_owned(),
    }
}

async fn jobs_are_held_superseded_and_ended_once(engine: Engine) {
    let (_db, store) = store(engine).await;
    let first = start(&store, 10).await;
    assert_eq!(
        (first.id, first.status.as_str(), first.total),
        (1, LEARN_RUNNING, 0)
    );
    assert_eq!(first.request, request());

    // a holds it; b finds nothing free until the lease runs out
    let a = store
        .take_learn_job("a", at(11), at(71))
        .await
        .expect("take")
        .expect("a job");
    assert_eq!((a.id, a.attempts, a.holder.as_deref()), (1, 1, Some("a")));
    assert!(
        store
            .take_learn_job("b", at(20), at(80))
            .await
            .expect("take")
            .is_none()
    );
    assert!(
        store
            .advance_learn(&a, "READING", 500, at(30), at(90))
            .await
            .expect("advance")
    );
    assert!(
        store
            .take_learn_job("b", at(80), at(140))
            .await
            .expect("take")
            .is_none()
    );
    let b = store
        .take_learn_job("b", at(91), at(151))
        .await
        .expect("take")
        .expect("taken over");
    assert_eq!((b.id, b.attempts, b.read), (1, 2, 0));
    // a, taken over, can neither write progress nor end it
    assert!(
        !store
            .advance_learn(&a, "FITTING", 900, at(92), at(152))
            .await
            .expect("advance")
    );
    assert!(
        !store
            .finish_learn(&a, &done("{\"a\":1}"), at(93))
            .await
            .expect("finish")
    );
    assert!(
        store
            .finish_learn(&b, &done("{\"b\":1}"), at(94))
            .await
            .expect("finish")
    );
    assert!(
        !store
            .finish_learn(&b, &done("{\"b\":2}"), at(95))
            .await
            .expect("finish once")
    );
    let ended = store.learn_job("w", 1).await.expect("read").expect("job 1");
    assert_eq!(
        (
            ended.status.as_str(),
            ended.phase.as_str(),
            ended.report.as_deref(),
            ended.outcomes,
            ended.positives
        ),
        (LEARN_DONE, "DONE", Some("{\"b\":1}"), Some(200), Some(40))
    );
    assert!(
        store
            .take_learn_job("c", at(1_000), at(1_060))
            .await
            .expect("take")
            .is_none()
    );

    // a later start supersedes a running one; its holder can no longer write
    let second = start(&store, 100).await;
    let held = store
        .take_learn_job("a", at(101), at(161))
        .await
        .expect("take")
        .expect("job 2");
    assert_eq!(held.id, second.id);
    let third = start(&store, 102).await;
    assert_eq!(third.id, 3);
    assert_eq!(
        store
            .learn_job("w", 2)
            .await
            .expect("read")
            .expect("job 2")
            .status,
        LEARN_SUPERSEDED
    );
    assert!(
        !store
            .advance_learn(&held, "READING", 1, at(103), at(163))
            .await
            .expect("advance")
    );
    assert_eq!(
        store
            .learn_job("w", 3)
            .await
            .expect("read")
            .expect("job 3")
            .status,
        LEARN_RUNNING
    );

    // failing for too little data keeps the counts; the last report stays job 1's
    let taken = store
        .take_learn_job("a", at(104), at(164))
        .await
        .expect("take")
        .expect("job 3");
    let failed = LearnEnd::Failed {
        code: "TOO_LITTLE_DATA".to_owned(),
        error: "too little data".to_owned(),
        counts: Some((12, 3)),
    };
    assert!(
        store
            .finish_learn(&taken, &failed, at(105))
            .await
            .expect("finish")
    );
    let job = store.learn_job("w", 3).await.expect("read").expect("job 3");
    assert_eq!(
        (
            job.status.as_str(),
            job.error_code.as_deref(),
            job.outcomes,
            job.positives
        ),
        (LEARN_FAILED, Some("TOO_LITTLE_DATA"), Some(12), Some(3))
    );
    assert_eq!(
        store
            .last_learn_report("w")
            .await
            .expect("read")
            .expect("a report")
            .id,
        1
    );

    // a newer report replaces the older one: only the last is kept
    start(&store, 200).await;
    let fourth = store
        .take_learn_job("a", at(201), at(261))
        .await
        .expect("take")
        .expect("job 4");
    assert!(
        store
            .finish_learn(&fourth, &done("{\"d\":1}"), at(202))
            .await
            .expect("finish")
    );
    assert_eq!(
        store
            .last_learn_report("w")
            .await
            .expect("read")
            .expect("a report")
            .id,
        4
    );
    assert_eq!(
        store
            .learn_job("w", 1)
            .await
            .expect("read")
            .expect("job 1")
            .report,
        None
    );
    assert!(store.last_learn_report("other").await.expect("read").is_none());
}

async fn a_job_taken_too_often_is_given_up(engine: Engine) {
    let (_db, store) = store(engine).await;
    start(&store, 10).await;
    let job = store
        .take_learn_job("a", at(11), at(12))
        .await
        .expect("take")
        .expect("job");
    store
        .give_up_learn(&job, "taken 3 times", at(13))
        .await
        .expect("give up");
    let job = store.learn_job("w", 1).await.expect("read").expect("job");
    assert_eq!(
        (job.status.as_str(), job.error_code.as_deref()),
        (LEARN_FAILED, Some("LEARN_FAILED"))
    );
    assert!(
        store
            .take_learn_job("b", at(100), at(160))
            .await
            .expect("take")
            .is_none()
    );
}

async fn jobs_are_held_superseded_and_ended_once_sqlite() {
    jobs_are_held_superseded_and_ended_once(Engine::Sqlite).await;
}

async fn jobs_are_held_superseded_and_ended_once_postgres() {
    jobs_are_held_superseded_and_ended_once(Engine::Postgres).await;
}

async fn a_job_taken_too_often_is_given_up_sqlite() {
    a_job_taken_too_often_is_given_up(Engine::Sqlite).await;
}

async fn a_job_taken_too_often_is_given_up_postgres() {
    a_job_taken_too_often_is_given_up(Engine::Postgres).await;
}

pub(crate) fn trials() -> Vec<Trial> {
    crate::trials![
        jobs_are_held_superseded_and_ended_once_sqlite,
        jobs_are_held_superseded_and_ended_once_postgres,
        a_job_taken_too_often_is_given_up_sqlite,
        a_job_taken_too_often_is_given_up_postgres,
    ]
}

//! Real errors from real databases are classified by their codes: a taken
//! key is a unique violation, a lost race between transactions is
//! retryable, a connection the server ended is unavailability.

use std::time::Duration;

use leadflow_domain::Timestamp;
use leadflow_store::testing::harness::Trial;
use leadflow_store::testing::{Engine, TestDatabase};
use leadflow_store::{Store, StoreError, StoreOptions, StoredResult, TokenRecord, Tx};
use sea_orm::{DbErr, RuntimeErr};
use sqlx::Connection as _;

async fn store(engine: Engine, options: &StoreOptions) -> (TestDatabase, Store) {
    let db = TestDatabase::new(engine)
        .await
        .expect("a database: PostgreSQL trials are ignored where none answers");
    let store = Store::connect(&db.url, options).await.expect("connect");
    store.migrate().await.expect("migrate");
    let tx = store.begin().await.expect("begin");
    for ws in ["a", "b"] {
        tx.ensure_workspace(ws, Timestamp::from_secs(1))
            .await
            .expect("workspace");
    }
    tx.commit().await.expect("commit");
    (db, store)
}

/// The code the database gave, as the driver reports it.
fn code(e: &StoreError) -> Option<String> {
    let StoreError::Db(
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)),
    ) = e
    else {
        return None;
    };
    match &**e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Is what `expected` says, and nothing else.
#[track_caller]
fn classified(e: &StoreError, expected: &str) {
    let found = [
        ("unique", e.is_unique_violation()),
        ("retryable", e.is_retryable()),
        ("unavailable", e.is_unavailable()),
        ("busy", e.is_busy()),
    ];
    for (what, is) in found {
        assert_eq!(is, what == expected, "{what} for {e} (code {:?})", code(e));
    }
}

fn result() -> StoredResult {
    StoredResult {
        method: "CaptureLead".to_owned(),
        fingerprint: "f".to_owned(),
        response: "{}".to_owned(),
        created_at: Timestamp::from_secs(2),
    }
}

fn token(id: &str) -> TokenRecord {
    TokenRecord {
        workspace: "a".to_owned(),
        id: id.to_owned(),
        name: id.to_owned(),
        scopes: vec!["leads:read".to_owned()],
        created_at: Timestamp::from_secs(2),
        expires_at: None,
        revoked_at: None,
    }
}

async fn a_taken_key_is_a_unique_violation(engine: Engine) {
    let (_db, store) = store(engine, &StoreOptions::default()).await;
    // A primary key.
    let tx = store.begin().await.expect("begin");
    tx.save_result("a", "request-1", &result()).await.expect("first");
    tx.commit().await.expect("commit");
    let tx = store.begin().await.expect("begin");
    let e = tx
        .save_result("a", "request-1", &result())
        .await
        .expect_err("the request id is taken");
    let expected = match engine {
        Engine::Postgres => "23505",
        Engine::Sqlite => "1555", // SQLITE_CONSTRAINT_PRIMARYKEY
    };
    assert_eq!(code(&e).as_deref(), Some(expected), "{e}");
    classified(&e, "unique");
    drop(tx);

    // A unique index beside the key.
    store.insert_token(&token("t1"), "hash").await.expect("first");
    let e = store
        .insert_token(&token("t2"), "hash")
        .await
        .expect_err("the secret's hash is taken");
    let expected = match engine {
        Engine::Postgres => "23505",
        Engine::Sqlite => "2067", // SQLITE_CONSTRAINT_UNIQUE
    };
    assert_eq!(code(&e).as_deref(), Some(expected), "{e}");
    classified(&e, "unique");
}

async fn a_taken_key_is_a_unique_violation_sqlite() {
    a_taken_key_is_a_unique_violation(Engine::Sqlite).await;
}

async fn a_taken_key_is_a_unique_violation_postgres() {
    a_taken_key_is_a_unique_violation(Engine::Postgres).await;
}

/// Locks `ws` (the first transaction holding the other), then commits.
async fn lock_then_commit(tx: Tx, ws: &str) -> Result<(), StoreError> {
    tx.lock_workspace(ws).await?;
    tx.commit().await
}

async fn a_deadlock_between_two_transactions_is_retryable_postgres() {
    let (_db, store) = store(Engine::Postgres, &StoreOptions::default()).await;
    let first = store.begin().await.expect("begin");
    first.lock_workspace("a").await.expect("lock a");
    let second = store.begin().await.expect("begin");
    second.lock_workspace("b").await.expect("lock b");
    // Each waits for the other's row: PostgreSQL ends one of them.
    let (one, other) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(lock_then_commit(first, "b"), lock_then_commit(second, "a"))
    })
    .await
    .expect("the deadlock is broken");
    let e = match (one, other) {
        (Err(e), Ok(())) | (Ok(()), Err(e)) => e,
        (one, other) => panic!("one transaction should fail, the other commit: {one:?}, {other:?}"),
    };
    assert_eq!(code(&e).as_deref(), Some("40P01"), "{e}");
    classified(&e, "retryable");
}

/// A connection of another program on the store's SQLite file.
async fn other_writer(db: &TestDatabase) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&db.url).await.expect("connect")
}

async fn a_second_writer_on_the_file_is_sqlite_busy_and_retryable() {
    let options = StoreOptions {
        busy_timeout: Duration::from_millis(50),
        ..StoreOptions::default()
    };
    let (db, store) = store(Engine::Sqlite, &options).await;
    let mut other = other_writer(&db).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("the write lock");
    let tx = store.begin().await.expect("begin");
    let e = tx
        .ensure_workspace("c", Timestamp::from_secs(2))
        .await
        .expect_err("another connection holds the write lock");
    assert_eq!(code(&e).as_deref(), Some("5"), "{e}"); // SQLITE_BUSY
    classified(&e, "retryable");
    drop(tx);
    sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("rollback");
}

async fn a_write_on_a_snapshot_another_writer_moved_past_is_sqlite_busy_and_retryable() {
    let (db, store) = store(Engine::Sqlite, &StoreOptions::default()).await;
    let tx = store.begin().await.expect("begin");
    // The transaction reads: it now sees the file as it is.
    tx.active_policy_version("a").await.expect("read");
    let mut other = other_writer(&db).await;
    sqlx::query("INSERT INTO workspaces (id, outbox_head, outbox_floor, created_at) VALUES ('c', 0, 0, 2)")
        .execute(&mut other)
        .await
        .expect("another write");
    let e = tx
        .ensure_workspace("d", Timestamp::from_secs(2))
        .await
        .expect_err("the snapshot is out of date");
    // The extended code: SQLITE_BUSY_SNAPSHOT, SQLITE_BUSY (5) in its low byte.
    assert_eq!(code(&e).as_deref(), Some("517"), "{e}");
    classified(&e, "retryable");
}

async fn a_connection_the_server_ends_is_unavailable_postgres() {
    let (db, store) = store(Engine::Postgres, &StoreOptions::default()).await;
    let tx = store.begin().await.expect("begin");
    let mut admin = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut admin)
    .await
    .expect("terminate");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut admin)
        .await
        .expect("count");
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} sessions outlived termination"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = tx
        .ensure_workspace("c", Timestamp::from_secs(2))
        .await
        .expect_err("the connection is gone");
    // Either the server's last word (57P01 admin_shutdown) or the closed socket.
    if let Some(code) = code(&e) {
        assert!(code.starts_with("57P"), "{code}: {e}");
    }
    classified(&e, "unavailable");
}

/// A driver's error wrapped as sea-orm wraps a statement's.
fn from_driver(e: sqlx::Error) -> StoreError {
    StoreError::Db(DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(e))))
}

async fn the_code_decides_not_the_message_postgres() {
    let db = TestDatabase::postgres()
        .await
        .expect("a database: PostgreSQL trials are ignored where none answers");
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let e = from_driver(
        sqlx::query(
            "DO $$ BEGIN RAISE EXCEPTION 'try again later' USING ERRCODE = 'serialization_failure'; END $$",
        )
        .execute(&mut conn)
        .await
        .expect_err("raised"),
    );
    assert_eq!(code(&e).as_deref(), Some("40001"), "{e}");
    classified(&e, "retryable");
    let e = from_driver(
        sqlx::query(r#"SELECT * FROM "deadlock detected""#)
            .execute(&mut conn)
            .await
            .expect_err("no such table"),
    );
    assert_eq!(code(&e).as_deref(), Some("42P01"), "{e}");
    classified(&e, "none");
}

async fn the_code_decides_not_the_message_sqlite() {
    let db = TestDatabase::sqlite();
    let mut conn = sqlx::SqliteConnection::connect(&format!("{}?mode=rwc", db.url))
        .await
        .expect("connect");
    let e = from_driver(
        sqlx::query(r#"SELECT * FROM "database is locked""#)
            .execute(&mut conn)
            .await
            .expect_err("no such table"),
    );
    assert_eq!(code(&e).as_deref(), Some("1"), "{e}"); // SQLITE_ERROR
    classified(&e, "none");
}

pub(crate) fn trials() -> Vec<Trial> {
    crate::trials![
        a_taken_key_is_a_unique_violation_sqlite,
        a_taken_key_is_a_unique_violation_postgres,
        a_deadlock_between_two_transactions_is_retryable_postgres,
        a_second_writer_on_the_file_is_sqlite_busy_and_retryable,
        a_write_on_a_snapshot_another_writer_moved_past_is_sqlite_busy_and_retryable,
        a_connection_the_server_ends_is_unavailable_postgres,
        the_code_decides_not_the_message_postgres,
        the_code_decides_not_the_message_sqlite,
    ]
}

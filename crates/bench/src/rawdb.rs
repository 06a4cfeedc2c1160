//! The database ceilings: an engagement-sized row inserted with the raw
//! driver, one commit per row (L1, P1) and 100 rows per transaction (LB, PB).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::stats::{Stats, closed_loop};

const CREATE: &str = "CREATE TABLE bench_rows (workspace_id TEXT NOT NULL, event_id TEXT NOT NULL, lead_id TEXT NOT NULL, \
type TEXT NOT NULL, channel TEXT, properties TEXT NOT NULL, occurred_at BIGINT NOT NULL, recorded_at BIGINT NOT NULL, \
fingerprint TEXT NOT NULL, PRIMARY KEY (workspace_id, event_id))";

/// A row's values, numbered so every insert is a new key.
fn row(n: u64) -> (String, String, String, i64) {
    (
        format!("01937a4e-{n:012}-7000-8000-000000000000"),
        format!("01937a4e-{:012}-7000-8000-00000000lead", n % 1000),
        format!("{:064x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15),
        i64::try_from(n).unwrap_or(0),
    )
}

fn insert_sql(rows: usize, postgres: bool) -> String {
    let mut sql = String::from(
        "INSERT INTO bench_rows (workspace_id, event_id, lead_id, type, channel, properties, occurred_at, recorded_at, fingerprint) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        if postgres {
            let b = r * 5;
            sql.push_str(&format!(
                "('default', ${}, ${}, 'page_viewed', NULL, '{{\"path\":\"/docs\"}}', ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            ));
        } else {
            sql.push_str("('default', ?, ?, 'page_viewed', NULL, '{\"path\":\"/docs\"}', ?, ?, ?)");
        }
    }
    sql
}

/// One connection to a SQLite file (WAL, synchronous=NORMAL), as
/// leadflow's writer, with an empty `bench_rows`.
async fn sqlite_writer(path: &std::path::Path) -> anyhow::Result<sqlx::SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    sqlx::query("DROP TABLE IF EXISTS bench_rows")
        .execute(&pool)
        .await?;
    sqlx::query(CREATE).execute(&pool).await?;
    Ok(pool)
}

/// L1 and LB on a fresh SQLite file (WAL, synchronous=NORMAL), writes
/// through one connection as leadflow does.
pub(crate) async fn sqlite(
    path: &std::path::Path,
    concurrency: usize,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<Stats> {
    let pool = sqlite_writer(path).await?;
    let next = Arc::new(AtomicU64::new(0));
    let sql = Arc::new(insert_sql(batch, false));
    let name = if batch == 1 {
        "L1: SQLite, a commit a row"
    } else {
        "LB: SQLite, 100 rows a commit"
    };
    let stats = closed_loop(name, concurrency, duration, None, move |_, _| {
        let (pool, next, sql) = (pool.clone(), Arc::clone(&next), Arc::clone(&sql));
        async move {
            let mut tx = pool.begin().await?;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str().to_owned()));
            for _ in 0..batch {
                let (id, lead, fp, n) = row(next.fetch_add(1, Ordering::Relaxed));
                q = q.bind(id).bind(lead).bind(n).bind(n).bind(fp);
            }
            q.execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(batch as u64)
        }
    })
    .await;
    Ok(stats)
}

/// P1 and PB on a fresh PostgreSQL database, at `concurrency` connections.
pub(crate) async fn postgres(
    url: &str,
    concurrency: usize,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<Stats> {
    // Connected as leadflow connects (no TLS on loopback unless asked).
    let options = leadflow_store::postgres_tls_default(
        url.parse::<sqlx::postgres::PgConnectOptions>()?,
        leadflow_store::loopback_without_sslmode(url),
    );
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(concurrency).unwrap_or(8).max(1))
        .connect_with(options)
        .await?;
    sqlx::query("DROP TABLE IF EXISTS bench_rows")
        .execute(&pool)
        .await?;
    sqlx::query(CREATE).execute(&pool).await?;
    let next = Arc::new(AtomicU64::new(0));
    let sql = Arc::new(insert_sql(batch, true));
    let name = if batch == 1 {
        "P1: PostgreSQL, a commit a row"
    } else {
        "PB: PostgreSQL, 100 rows a commit"
    };
    let stats = closed_loop(name, concurrency, duration, None, move |_, _| {
        let (pool, next, sql) = (pool.clone(), Arc::clone(&next), Arc::clone(&sql));
        async move {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str().to_owned()));
            for _ in 0..batch {
                let (id, lead, fp, n) = row(next.fetch_add(1, Ordering::Relaxed));
                q = q.bind(id).bind(lead).bind(n).bind(n).bind(fp);
            }
            // One statement, its own transaction: one commit.
            q.execute(&pool).await?;
            Ok(batch as u64)
        }
    })
    .await;
    Ok(stats)
}

/// `leadflow-bench handoffs`: what one more statement in a SQLite write
/// transaction costs through the driver, at concurrency 1. The driver runs
/// each statement on its connection's own thread and hands the answer
/// back, so a statement that makes SQLite do almost nothing (`SELECT 1`)
/// costs the hand-off: transactions of one insert plus 0, 4 and 8 of them,
/// and the slope.
pub(crate) async fn handoffs(seconds: u64) -> anyhow::Result<()> {
    let scratch = crate::Scratch::new("handoffs")?;
    let duration = Duration::from_secs(seconds);
    let pool = sqlite_writer(&scratch.0.join("handoffs.db")).await?;
    let next = Arc::new(AtomicU64::new(0));
    let sql = Arc::new(insert_sql(1, false));
    let mut points = Vec::new();
    for extra in [0_usize, 4, 8] {
        let (pool, next, sql) = (pool.clone(), Arc::clone(&next), Arc::clone(&sql));
        let name = format!("BEGIN, INSERT, {extra} × SELECT 1, COMMIT");
        let stats = closed_loop(&name, 1, duration, None, move |_, _| {
            let (pool, next, sql) = (pool.clone(), Arc::clone(&next), Arc::clone(&sql));
            async move {
                let mut tx = pool.begin().await?;
                let (id, lead, fp, n) = row(next.fetch_add(1, Ordering::Relaxed));
                sqlx::query(sqlx::AssertSqlSafe(sql.as_str().to_owned()))
                    .bind(id)
                    .bind(lead)
                    .bind(n)
                    .bind(n)
                    .bind(fp)
                    .execute(&mut *tx)
                    .await?;
                for _ in 0..extra {
                    sqlx::query("SELECT 1").execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(1)
            }
        })
        .await;
        let micros = 1e6 / stats.per_second.max(1e-9);
        println!(
            "{name}: {:.0} transactions/s, {micros:.1} µs each",
            stats.per_second
        );
        #[allow(clippy::cast_precision_loss)]
        points.push((extra as f64, micros));
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        println!(
            "one more statement: {:.1} µs",
            (last.1 - first.1) / (last.0 - first.0).max(1.0)
        );
    }
    Ok(())
}

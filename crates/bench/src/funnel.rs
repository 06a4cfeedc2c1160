//! How long `GetFunnel` takes over a long history: about a million
//! transitions seeded with SQL over two years, the funnel of the last 30
//! days, year and two years, beside a plain read of the transitions in the
//! same period.

use std::sync::Arc;
use std::time::Instant;

use leadflow_domain::Span;
use leadflow_domain::analytics::Period;
use leadflow_domain::analytics::funnel::{Bucket, Grouping, Query};
use leadflow_engine::{Engine, SystemClock};
use leadflow_server::{Config, DatabaseUrl};
use leadflow_store::testing::{Engine as Db, TestDatabase};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;

use crate::stats::median_seconds;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Transitions to seed (three per lead on average).
    #[arg(long, default_value_t = 1_000_000)]
    transitions: u64,
    /// sqlite, postgres or both.
    #[arg(long, default_value = "both")]
    database: String,
    /// Runs of each measurement; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Keep the seeded databases (their URLs are printed), to look at
    /// query plans.
    #[arg(long)]
    keep: bool,
}

/// The workspace the history is seeded in.
const WS: &str = "bench";
/// The history's length; the queries end at its end.
const DAYS: i64 = 730;

/// Eight paths through the lifecycle, by `lead number % 8`: each step's
/// number, stages, move, cause and reason. 24 steps: three per lead.
const PATHS: &str = "(0,0,NULL,'IQL','CAPTURE','CAPTURE',NULL),\
(1,0,NULL,'IQL','CAPTURE','CAPTURE',NULL),(1,1,'IQL','MQL','AUTO_QUALIFY','ENGAGEMENT',NULL),\
(2,0,NULL,'IQL','CAPTURE','CAPTURE',NULL),(2,1,'IQL','MQL','AUTO_QUALIFY','ENGAGEMENT',NULL),\
(2,2,'MQL','SQL','ACCEPT','MANUAL',NULL),\
(3,0,NULL,'IQL','CAPTURE','CAPTURE',NULL),(3,1,'IQL','MQL','AUTO_QUALIFY','ENGAGEMENT',NULL),\
(3,2,'MQL','SQL','ACCEPT','MANUAL',NULL),(3,3,'SQL','CUSTOMER','CONVERT','MANUAL',NULL),\
(4,0,NULL,'IQL','CAPTURE','CAPTURE',NULL),(4,1,'IQL','MQL','AUTO_QUALIFY','ENGAGEMENT',NULL),\
(4,2,'MQL','IQL','REJECT','MANUAL','not_ready'),(4,3,'IQL','MQL','AUTO_QUALIFY','ENGAGEMENT',NULL),\
(4,4,'MQL','SQL','ACCEPT','MANUAL',NULL),\
(5,0,NULL,'IQL','CAPTURE','CAPTURE',NULL),(5,1,'IQL','MQL','AUTO_QUALIFY','ENGAGEMENT',NULL),\
(5,2,'MQL','SQL','ACCEPT','MANUAL',NULL),(5,3,'SQL','IQL','RECYCLE','MANUAL','no_budget'),\
(6,0,NULL,'IQL','CAPTURE','CAPTURE',NULL),(6,1,'IQL','DISQUALIFIED','AUTO_DISQUALIFY','ENGAGEMENT',NULL),\
(7,0,NULL,'IQL','CAPTURE','CAPTURE',NULL),(7,1,'IQL','SQL','SALES_READY','ENGAGEMENT',NULL),\
(7,2,'SQL','CUSTOMER','CONVERT','MANUAL',NULL)";

/// The seed, for both databases: leads captured evenly over the first 700
/// days, steps 1 to 168 hours apart; an engagement at capture (the source
/// channel) and one for each step an engagement caused.
fn seed_sql(leads: u64, base: i64) -> Vec<String> {
    let last = leads - 1;
    let spacing = Span::from_days(DAYS - 30).as_micros() / i64::try_from(leads).unwrap_or(i64::MAX);
    let n = format!("n(i) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < {last})");
    let s = format!("s(p, seq, from_stage, to_stage, mv, cause, reason) AS (VALUES {PATHS})");
    let at = format!("{base} + n.i * {spacing} + s.seq * (1 + (n.i * 7919) % 168) * 3600000000");
    let channel = |k: &str| {
        format!(
            "CASE ({k}) % 5 WHEN 0 THEN 'web' WHEN 1 THEN 'email' WHEN 2 THEN 'ads' \
             WHEN 3 THEN 'events' ELSE 'partner' END"
        )
    };
    vec![
        format!("INSERT INTO workspaces (id, outbox_head, created_at) VALUES ('{WS}', 0, {base})"),
        format!(
            "WITH RECURSIVE {n} INSERT INTO leads (workspace_id, id, stage, version, policy_version, fit, \
             engagement, qualifying_engagement, grade, state, captured_at, entered_stage_at, updated_at, \
             history_len) \
             SELECT '{WS}', 'lead-' || i, CASE i % 8 WHEN 0 THEN 'IQL' WHEN 1 THEN 'MQL' WHEN 2 THEN 'SQL' \
             WHEN 3 THEN 'CUSTOMER' WHEN 4 THEN 'SQL' WHEN 5 THEN 'IQL' WHEN 6 THEN 'DISQUALIFIED' \
             ELSE 'CUSTOMER' END, 1, 1, 0, 0, 0, 'C', '{{}}', {base} + i * {spacing}, \
             {base} + i * {spacing}, {base} + i * {spacing}, 3 FROM n"
        ),
        format!(
            "WITH RECURSIVE {n}, {s} INSERT INTO transitions (workspace_id, lead_id, seq, from_stage, \
             to_stage, at, \"move\", cause, cause_ref, reason, fit, engagement, guards, policy_version) \
             SELECT '{WS}', 'lead-' || n.i, s.seq, s.from_stage, s.to_stage, {at}, s.mv, s.cause, \
             CASE WHEN s.cause = 'ENGAGEMENT' THEN 'ev-' || n.i || '-' || s.seq END, s.reason, 0, 0, '[]', \
             1 + n.i % 2 FROM n JOIN s ON s.p = n.i % 8"
        ),
        format!(
            "WITH RECURSIVE {n}, {s} INSERT INTO engagements (workspace_id, event_id, lead_id, type, \
             channel, properties, occurred_at, recorded_at, fingerprint) \
             SELECT '{WS}', 'ev-' || n.i || '-' || s.seq, 'lead-' || n.i, 'page_viewed', {}, '{{}}', \
             {at}, {at}, 'f' FROM n JOIN s ON s.p = n.i % 8 WHERE s.seq = 0 OR s.cause = 'ENGAGEMENT'",
            channel("n.i + s.seq")
        ),
    ]
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let leads = args.transitions.div_ceil(3).max(8);
    let engines: &[Db] = match args.database.as_str() {
        "sqlite" => &[Db::Sqlite],
        "postgres" => &[Db::Postgres],
        "both" => &[Db::Sqlite, Db::Postgres],
        other => anyhow::bail!("--database {other:?}: sqlite, postgres or both"),
    };
    println!(
        "| database | period | grouping | transitions in period | leads moved | GetFunnel (median) | \
         plain read of the period (median) | ratio |"
    );
    println!("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for &db in engines {
        measure(db, leads, args.runs, args.keep).await?;
    }
    Ok(())
}

async fn measure(db: Db, leads: u64, runs: usize, keep: bool) -> anyhow::Result<()> {
    let name = match db {
        Db::Sqlite => "SQLite",
        Db::Postgres => "PostgreSQL",
    };
    let database = TestDatabase::new(db)
        .await
        .ok_or_else(|| anyhow::anyhow!("no PostgreSQL (set LEADFLOW_TEST_POSTGRES_URL)"))?;
    let config = Config {
        database_url: DatabaseUrl::new(database.url.clone()),
        ..Config::default()
    };
    let engine = leadflow_server::open_engine(&config, Arc::new(SystemClock)).await?;
    let end = engine.now();
    let base = end.saturating_sub(Span::from_days(DAYS)).as_micros();
    let raw = Raw::connect(db, &database.url).await?;
    let started = Instant::now();
    for sql in seed_sql(leads, base) {
        raw.execute(&sql).await?;
    }
    if db == Db::Postgres {
        // What autovacuum does soon after a bulk load.
        raw.execute("ANALYZE").await?;
    }
    let total = raw
        .count(
            "SELECT COUNT(*) FROM transitions WHERE workspace_id = 'bench'",
            &[],
        )
        .await?;
    eprintln!(
        "{name}: seeded {total} transitions of {leads} leads in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    for days in [30, 365, DAYS] {
        let period = Period {
            start: end.saturating_sub(Span::from_days(days)),
            end,
        };
        let bounds = [period.start.as_micros(), period.end.as_micros()];
        let in_period = raw
            .count(
                "SELECT COUNT(*) FROM transitions WHERE workspace_id = 'bench' AND at >= $1 AND at < $2",
                &bounds,
            )
            .await?;
        let moved = raw
            .count(
                "SELECT COUNT(DISTINCT lead_id) FROM transitions WHERE workspace_id = 'bench' \
                 AND at >= $1 AND at < $2",
                &bounds,
            )
            .await?;
        let baseline = median_seconds(runs, || raw.read_period(&bounds)).await?;
        for grouping in [Grouping::None, Grouping::SourceChannel] {
            let query = Query {
                period,
                grouping,
                bucket: if days > 90 { Bucket::Week } else { Bucket::Day },
                source_channel: None,
                attribution: None,
                top: leadflow_domain::analytics::attribution::DEFAULT_TOP,
                teams: std::collections::BTreeMap::new(),
            };
            let funnel = median_seconds(runs, || funnel_once(&engine, &query)).await?;
            println!(
                "| {name} | {days} days | {} | {in_period} | {moved} | {:.1} ms | {:.1} ms | {:.1}× |",
                match grouping {
                    Grouping::None => "none",
                    _ => "source channel",
                },
                funnel * 1e3,
                baseline * 1e3,
                funnel / baseline
            );
        }
    }
    if keep {
        eprintln!("{name}: kept {}", database.url);
        std::mem::forget(database);
    }
    Ok(())
}

async fn funnel_once(engine: &Engine, query: &Query) -> anyhow::Result<()> {
    let funnel = engine.funnel(WS, query).await?;
    anyhow::ensure!(!funnel.groups.is_empty(), "an empty funnel over a seeded history");
    Ok(())
}

/// The seeded database through its driver, beside the store.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn connect(db: Db, url: &str) -> anyhow::Result<Self> {
        Ok(match db {
            Db::Sqlite => Self::Sqlite(SqlitePoolOptions::new().max_connections(1).connect(url).await?),
            Db::Postgres => Self::Postgres(PgPoolOptions::new().max_connections(1).connect(url).await?),
        })
    }

    /// `sql` is the seed's, built from numbers only.
    async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Self::Sqlite(pool) => {
                sqlx::raw_sql(sql).execute(pool).await?;
            }
            Self::Postgres(pool) => {
                sqlx::raw_sql(sql).execute(pool).await?;
            }
        }
        Ok(())
    }

    /// Every transition of the period, fetched: what a funnel reads at
    /// least.
    async fn read_period(&self, bounds: &[i64; 2]) -> anyhow::Result<()> {
        const SQL: &str = "SELECT lead_id, seq, from_stage, to_stage, at, \"move\", cause, cause_ref, reason, \
                           policy_version FROM transitions WHERE workspace_id = 'bench' AND at >= $1 AND at < $2";
        let rows = match self {
            Self::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(SQL.replace('$', "?")))
                .bind(bounds[0])
                .bind(bounds[1])
                .fetch_all(pool)
                .await?
                .len(),
            Self::Postgres(pool) => sqlx::query(SQL)
                .bind(bounds[0])
                .bind(bounds[1])
                .fetch_all(pool)
                .await?
                .len(),
        };
        anyhow::ensure!(rows > 0, "no transitions in a seeded period");
        Ok(())
    }

    async fn count(&self, sql: &'static str, binds: &[i64]) -> anyhow::Result<i64> {
        Ok(match self {
            Self::Sqlite(pool) => {
                let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.replace('$', "?")));
                for b in binds {
                    q = q.bind(*b);
                }
                q.fetch_one(pool).await?
            }
            Self::Postgres(pool) => {
                let mut q = sqlx::query_scalar::<_, i64>(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.fetch_one(pool).await?
            }
        })
    }
}

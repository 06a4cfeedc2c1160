//! A long import beside live traffic. One lead has a long log (seeded with
//! SQL over the past year); closed-loop clients record single engagements
//! on other leads, first alone (the idle phase), then while another client
//! sends back-dated `RecordEngagements` batches to the long lead (the
//! import phase): every item is a late event, so the engine replays the
//! lead's whole log for each. The check: no single call fails, and the
//! single calls' p99 during the import stays within 5 × their idle p99 in
//! the same run. Exits non-zero when it does not, so it can serve as a
//! check.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use leadflow_engine::MAX_BATCH;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use leadflow_store::testing::{Engine as Db, TestDatabase};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tonic::transport::Channel;

use crate::Scratch;
use crate::server::{Process, sibling};
use crate::stats::{median, percentile};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Engagements seeded on the long lead, spread over the past year.
    #[arg(long, default_value_t = 10_000)]
    history: u64,
    /// Other leads, which the single calls go to.
    #[arg(long, default_value_t = 300)]
    leads: usize,
    /// Clients calling RecordEngagement back to back, in both phases.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seconds of the idle phase.
    #[arg(long, default_value_t = 5)]
    idle_seconds: u64,
    /// Back-dated batches sent one after the other; the import phase lasts
    /// as long as they take.
    #[arg(long, default_value_t = 2)]
    batches: usize,
    /// Items a batch (at most the API's limit, 500).
    #[arg(long, default_value_t = MAX_BATCH)]
    batch_size: usize,
    /// sqlite, postgres or both.
    #[arg(long, default_value = "both")]
    database: String,
    /// The `leadflow` binary (default: next to this one).
    #[arg(long)]
    leadflow: Option<PathBuf>,
}

/// The target: the import phase's p99 at most this many times the idle one.
const MAX_RATIO: f64 = 5.0;
/// The workspace a server without tokens serves.
const WS: &str = "default";
/// Late single events on the long lead, timed alone before the import.
const LATE_PROBES: usize = 5;
const DAY_US: i64 = 86_400_000_000;

/// The single calls of one phase.
#[derive(Debug, Default)]
struct Calls {
    /// Every call's latency, failed or not, in microseconds, sorted.
    latencies: Vec<u64>,
    /// Calls that did not end OK, by status code.
    failures: BTreeMap<String, u64>,
    seconds: f64,
    server_cpu: Option<f64>,
}

impl Calls {
    fn p50(&self) -> f64 {
        percentile(&self.latencies, 0.50)
    }

    fn p99(&self) -> f64 {
        percentile(&self.latencies, 0.99)
    }

    fn max(&self) -> f64 {
        percentile(&self.latencies, 1.0)
    }

    fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    #[allow(clippy::cast_precision_loss)]
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.seconds.max(1e-9)
    }
}

/// One back-dated batch.
#[derive(Debug)]
struct Batch {
    seconds: f64,
    /// Items the server answered for (all of them, unless it failed).
    committed: usize,
    /// The status, when not OK.
    error: Option<String>,
}

/// Where a late event's time goes, timed in this process beside the
/// server (medians): reading the lead's log with the raw driver, and the
/// domain's decision on it.
#[derive(Debug)]
struct Breakdown {
    log: usize,
    read_ms: f64,
    decide_ms: f64,
}

/// One database's figures.
#[derive(Debug)]
struct Outcome {
    database: &'static str,
    seeded_seconds: f64,
    late_alone_ms: f64,
    breakdown: Breakdown,
    idle: Calls,
    import: Calls,
    batches: Vec<Batch>,
}

impl Outcome {
    fn ratio(&self) -> f64 {
        self.import.p99() / self.idle.p99().max(1e-9)
    }

    fn passed(&self) -> bool {
        self.idle.failed() == 0
            && self.import.failed() == 0
            && self.ratio() <= MAX_RATIO
            && self.batches.iter().all(|b| b.error.is_none())
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_BATCH).contains(&args.batch_size),
        "--batch-size {}: from 1 to {MAX_BATCH}",
        args.batch_size
    );
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(args.leads > 0, "--leads must be at least 1");
    anyhow::ensure!(args.batches > 0, "--batches must be at least 1");
    anyhow::ensure!(args.history > 0, "--history must be at least 1");
    let engines: &[Db] = match args.database.as_str() {
        "sqlite" => &[Db::Sqlite],
        "postgres" => &[Db::Postgres],
        "both" => &[Db::Sqlite, Db::Postgres],
        other => anyhow::bail!("--database {other:?}: sqlite, postgres or both"),
    };
    let leadflow = args.leadflow.clone().unwrap_or_else(|| sibling("leadflow"));
    // `cargo run -p leadflow-bench` builds this binary only, not the server's.
    anyhow::ensure!(
        leadflow.is_file(),
        "no server binary at {}: build it first (cargo build --release -p leadflow-server) or pass --leadflow",
        leadflow.display()
    );
    let mut outcomes = Vec::new();
    for &db in engines {
        outcomes.push(measure(db, &leadflow, &args).await?);
    }
    print(&outcomes, &args);
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| o.database)
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "the import stalled other writers on {}",
        failed.join(" and ")
    );
    Ok(())
}

async fn measure(db: Db, leadflow: &std::path::Path, args: &Args) -> anyhow::Result<Outcome> {
    let name = match db {
        Db::Sqlite => "SQLite",
        Db::Postgres => "PostgreSQL",
    };
    let clock = Instant::now();
    let lap = |what: &str| eprintln!("[{:>6.1} s] {name}: {what}", clock.elapsed().as_secs_f64());
    let database = TestDatabase::new(db)
        .await
        .ok_or_else(|| anyhow::anyhow!("no PostgreSQL (set LEADFLOW_TEST_POSTGRES_URL)"))?;
    let scratch = Scratch::new("import")?;
    let server = Process::start(leadflow, &serve_args(&database.url), &scratch.0).await?;
    // A connection a client, and one for the importer.
    let mut channels = server.channels(args.concurrency + 1).await?;
    let importer = channels.pop().ok_or_else(|| anyhow::anyhow!("no channel"))?;

    lap(&format!("seeding {} leads", args.leads));
    let others = crate::load::seed(&channels, args.leads).await?;
    let now = now_micros();
    // The history ends a day before now, so every import item is late.
    let end = now - DAY_US;
    let start = end - 365 * DAY_US;
    let mut client = LeadServiceClient::new(importer.clone());
    let long = client
        .create_lead(pb::CreateLeadRequest {
            external_key: format!("import-bench-{}", std::process::id()),
            profile: [("email", "buyer@bigco.com"), ("company", "BigCo")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            captured_at: Some(timestamp(start - DAY_US)),
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .ok_or_else(|| anyhow::anyhow!("CreateLead answered without a lead"))?
        .id;

    lap(&format!("seeding {} engagements of one lead", args.history));
    let seeding = Instant::now();
    let raw = Raw::connect(db, &database.url).await?;
    raw.seed_history(&long, args.history, start, end).await?;
    // An engagement now, through the API: the lead's scores have seen the
    // latest event, so an item dated inside the history is late and must be
    // replayed with the whole log, as in a real import of an old backlog.
    client
        .record_engagement(pb::RecordEngagementRequest {
            lead: lead_ref(&long),
            engagement: Some(engagement("import-anchor".to_owned(), "/pricing", None)),
        })
        .await?;
    let seeded_seconds = seeding.elapsed().as_secs_f64();

    let run = format!("i{}-{}", std::process::id(), now);
    let next = Arc::new(AtomicU64::new(0));
    lap("idle phase");
    let stop = Arc::new(AtomicBool::new(false));
    let idle = {
        let calls = singles(&channels, &others, &run, &next, &stop, server.pid());
        let timer = {
            let stop = Arc::clone(&stop);
            let seconds = args.idle_seconds;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                stop.store(true, Ordering::Relaxed);
            })
        };
        let calls = calls.await;
        timer.await?;
        calls
    };

    lap("one late event at a time");
    let mut late = Vec::with_capacity(LATE_PROBES);
    for i in 0..LATE_PROBES {
        // Between the seeded events, early in the history.
        let at = start + DAY_US * i64::try_from(i + 1).unwrap_or(1) + 1;
        let began = Instant::now();
        client
            .record_engagement(pb::RecordEngagementRequest {
                lead: lead_ref(&long),
                engagement: Some(engagement(format!("{run}-late-{i}"), "/docs/late", Some(at))),
            })
            .await?;
        late.push(began.elapsed().as_secs_f64() * 1e3);
    }
    let store =
        leadflow_store::Store::connect(&database.url, &leadflow_store::StoreOptions::default()).await?;
    let breakdown = breakdown(&raw, &store, &long, start).await?;

    lap(&format!(
        "import phase: {} batches of {}",
        args.batches, args.batch_size
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let calls = singles(&channels, &others, &run, &next, &stop, server.pid());
    let import = {
        let stop = Arc::clone(&stop);
        let (long, run) = (long.clone(), run.clone());
        let (batches, size) = (args.batches, args.batch_size);
        tokio::spawn(async move {
            let done = import(client, &long, &run, batches, size, start, end).await;
            stop.store(true, Ordering::Relaxed);
            done
        })
    };
    let calls = calls.await;
    let batches = import.await?;

    // What the server said it committed is what is stored. (A failed batch
    // is reported as such; what it committed before failing is not known here.)
    if batches.iter().all(|b| b.error.is_none()) {
        let stored = raw.engagements_of(&long).await?;
        let committed: usize = batches.iter().map(|b| b.committed).sum();
        let expected = i64::try_from(committed + LATE_PROBES + 1).unwrap_or(i64::MAX)
            + i64::try_from(args.history).unwrap_or(i64::MAX);
        anyhow::ensure!(
            stored == expected,
            "{name}: the long lead has {stored} engagements stored; expected {expected}"
        );
    }
    lap("done");
    Ok(Outcome {
        database: name,
        seeded_seconds,
        late_alone_ms: median(&mut late),
        breakdown,
        idle,
        import: calls,
        batches,
    })
}

/// What a late event costs the server before anything is written: the
/// log read (the engine reads the same rows, through sea-orm) and the
/// decision, which replays the log.
async fn breakdown(
    raw: &Raw,
    store: &leadflow_store::Store,
    lead: &str,
    start: i64,
) -> anyhow::Result<Breakdown> {
    let policy = leadflow_domain::Policy::from_toml(leadflow_server::DEFAULT_POLICY)
        .map_err(|e| anyhow::anyhow!("the default policy does not parse: {e}"))?;
    // As the engine reads it (the stored form is the store's business).
    let state = store
        .lead(WS, lead)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the long lead {lead} is not stored"))?
        .lead;
    let ctx = leadflow_domain::Context {
        now: leadflow_domain::Timestamp::from_micros(now_micros()),
    };
    let (mut read, mut decide) = (Vec::new(), Vec::new());
    let mut log = Vec::new();
    for i in 0..LATE_PROBES {
        let began = Instant::now();
        log = raw.read_log(lead).await?;
        read.push(began.elapsed().as_secs_f64() * 1e3);
        let late = leadflow_domain::Engagement {
            event_id: format!("breakdown-{i}"),
            kind: "page_viewed".to_owned(),
            channel: None,
            properties: [("path".to_owned(), "/docs/late".to_owned())]
                .into_iter()
                .collect(),
            occurred_at: leadflow_domain::Timestamp::from_micros(start + DAY_US / 2),
        };
        let command = leadflow_domain::Command::RecordEngagement(late);
        let began = Instant::now();
        leadflow_domain::decide(&policy, &state, command, &ctx, Some(&log))?;
        decide.push(began.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Breakdown {
        log: log.len(),
        read_ms: median(&mut read),
        decide_ms: median(&mut decide),
    })
}

/// `concurrency` clients (one a channel) record single engagements on
/// `leads`, round robin, back to back until `stop`.
async fn singles(
    channels: &[Channel],
    leads: &Arc<Vec<String>>,
    run: &str,
    next: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
    server: u32,
) -> Calls {
    let cpu = crate::cpu::Meter::start(Some(server));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(channels.len());
    for channel in channels {
        let mut client = LeadServiceClient::new(channel.clone());
        let (leads, next, stop) = (Arc::clone(leads), Arc::clone(next), Arc::clone(stop));
        let run = run.to_owned();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures: BTreeMap<String, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let lead = &leads[usize::try_from(n).unwrap_or(0) % leads.len()];
                let request = pb::RecordEngagementRequest {
                    lead: lead_ref(lead),
                    engagement: Some(engagement(format!("{run}-{n}"), "/docs/getting-started", None)),
                };
                let began = Instant::now();
                let result = client.record_engagement(request).await;
                latencies.push(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
                if let Err(status) = result {
                    *failures.entry(format!("{:?}", status.code())).or_default() += 1;
                }
            }
            (latencies, failures)
        }));
    }
    let mut calls = Calls::default();
    for worker in workers {
        match worker.await {
            Ok((latencies, failures)) => {
                calls.latencies.extend(latencies);
                for (code, n) in failures {
                    *calls.failures.entry(code).or_default() += n;
                }
            }
            Err(e) => *calls.failures.entry(format!("client task: {e}")).or_default() += 1,
        }
    }
    calls.seconds = started.elapsed().as_secs_f64();
    calls.server_cpu = cpu.stop().1;
    calls.latencies.sort_unstable();
    calls
}

/// `batches` batches of `size` items for `long`, dated in time order
/// inside the history `[start, end)`, each sent once its previous one is
/// answered.
async fn import(
    mut client: LeadServiceClient<Channel>,
    long: &str,
    run: &str,
    batches: usize,
    size: usize,
    start: i64,
    end: i64,
) -> Vec<Batch> {
    let total = i64::try_from(batches * size).unwrap_or(i64::MAX);
    let spacing = (end - start) / total.max(1);
    let mut out = Vec::with_capacity(batches);
    for b in 0..batches {
        let engagements = (0..size)
            .map(|k| {
                let g = i64::try_from(b * size + k).unwrap_or(0);
                // Half a step off the grid, clear of the seeded instants.
                let at = start + g * spacing + spacing / 2;
                pb::EngagementItem {
                    lead: lead_ref(long),
                    engagement: Some(engagement(
                        format!("{run}-import-{b}-{k}"),
                        "/docs/imported",
                        Some(at),
                    )),
                }
            })
            .collect();
        let began = Instant::now();
        let answer = client
            .record_engagements(pb::RecordEngagementsRequest { engagements })
            .await;
        let seconds = began.elapsed().as_secs_f64();
        out.push(match answer {
            Ok(response) => Batch {
                seconds,
                committed: response.into_inner().results.len(),
                error: None,
            },
            Err(status) => Batch {
                seconds,
                committed: 0,
                error: Some(format!("{:?}: {}", status.code(), status.message())),
            },
        });
    }
    out
}

fn print(outcomes: &[Outcome], args: &Args) {
    println!(
        "\n{} clients calling RecordEngagement on {} other leads; one lead with {} engagements over the \
         past year; {} back-dated batches of {} items to it.\n",
        args.concurrency, args.leads, args.history, args.batches, args.batch_size
    );
    println!(
        "| database | phase | single calls | calls/s | p50 ms | p99 ms | max ms | not OK | server CPU |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for o in outcomes {
        for (phase, c) in [("idle", &o.idle), ("import", &o.import)] {
            println!(
                "| {} | {phase} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
                o.database,
                c.latencies.len(),
                c.per_second(),
                c.p50(),
                c.p99(),
                c.max(),
                c.failed(),
                c.server_cpu
                    .map_or_else(|| "—".to_owned(), |s| format!("{:.0}%", s * 100.0)),
            );
        }
    }
    println!(
        "\n| database | p99 import ÷ idle | ≤ {MAX_RATIO:.0} × | single calls not OK, by code | \
         batches (s each) | items/s in batches |"
    );
    println!("| --- | ---: | --- | --- | --- | ---: |");
    for o in outcomes {
        let mut codes = o.idle.failures.clone();
        for (code, n) in &o.import.failures {
            *codes.entry(code.clone()).or_default() += n;
        }
        let codes = if codes.is_empty() {
            "none".to_owned()
        } else {
            codes
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let batches = o
            .batches
            .iter()
            .map(|b| match &b.error {
                None => format!("{:.1}", b.seconds),
                Some(e) => format!("{:.1} ({e})", b.seconds),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let items: usize = o.batches.iter().map(|b| b.committed).sum();
        let seconds: f64 = o.batches.iter().map(|b| b.seconds).sum();
        #[allow(clippy::cast_precision_loss)]
        let rate = items as f64 / seconds.max(1e-9);
        println!(
            "| {} | {:.1} × | {} | {codes} | {batches} | {rate:.0} |",
            o.database,
            o.ratio(),
            if o.passed() { "PASS" } else { "FAIL" },
        );
    }
    println!(
        "\n| database | one late event alone, through the API | its log | plain read of the log | \
         the decision on it | seeding |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for o in outcomes {
        let b = &o.breakdown;
        println!(
            "| {} | {:.1} ms | {} engagements | {:.1} ms | {:.1} ms | {:.1} s |",
            o.database, o.late_alone_ms, b.log, b.read_ms, b.decide_ms, o.seeded_seconds,
        );
    }
    println!(
        "\nMedians of {LATE_PROBES}; the read and the decision are timed in this process, the server idle."
    );
}

/// `leadflow serve` on `url`, quiet, with the HTTP side on a free port.
fn serve_args(url: &str) -> [&str; 7] {
    [
        "serve",
        "--database-url",
        url,
        "--log-level",
        "warn",
        "--http-listen",
        "127.0.0.1:0",
    ]
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

fn lead_ref(id: &str) -> Option<pb::LeadRef> {
    Some(pb::LeadRef {
        key: Some(pb::lead_ref::Key::Id(id.to_owned())),
    })
}

/// A page view; `at` in microseconds, or now.
fn engagement(event_id: String, path: &str, at: Option<i64>) -> pb::Engagement {
    pb::Engagement {
        event_id,
        r#type: "page_viewed".to_owned(),
        channel: String::new(),
        properties: [("path".to_owned(), path.to_owned())].into_iter().collect(),
        occurred_at: at.map(timestamp),
    }
}

/// The bench's database beside the server, through the driver.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn connect(db: Db, url: &str) -> anyhow::Result<Self> {
        Ok(match db {
            Db::Sqlite => {
                // The server holds the file too: wait for its writer, as it waits for ours.
                let options = url
                    .parse::<SqliteConnectOptions>()?
                    .busy_timeout(Duration::from_secs(30));
                Self::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect_with(options)
                        .await?,
                )
            }
            Db::Postgres => Self::Postgres(PgPoolOptions::new().max_connections(1).connect(url).await?),
        })
    }

    /// `count` engagements of `lead` evenly over `[start, end)`, in one
    /// statement: mostly page views, some clicks and webinar sign-ups, none
    /// of which qualifies the lead (its scores are capped below the MQL
    /// threshold), so the import measures replays, not stage moves.
    async fn seed_history(&self, lead: &str, count: u64, start: i64, end: i64) -> anyhow::Result<()> {
        let last = count - 1;
        let spacing = (end - start) / i64::try_from(count).unwrap_or(i64::MAX).max(1);
        let sql = format!(
            "WITH RECURSIVE n(i) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < {last}) \
             INSERT INTO engagements (workspace_id, event_id, lead_id, type, channel, properties, \
             occurred_at, recorded_at, fingerprint) \
             SELECT $1, 'history-' || i, $2, \
             CASE i % 10 WHEN 7 THEN 'email_clicked' WHEN 8 THEN 'ad_clicked' \
             WHEN 9 THEN 'webinar_registered' ELSE 'page_viewed' END, \
             CASE i % 10 WHEN 8 THEN 'search' ELSE NULL END, \
             CASE WHEN i % 10 < 7 THEN '{{\"path\":\"/docs/p' || (i % 50) || '\"}}' ELSE '{{}}' END, \
             {start} + i * {spacing}, {start} + i * {spacing}, 'seeded' FROM n"
        );
        match self {
            Self::Sqlite(pool) => {
                sqlx::query(sqlx::AssertSqlSafe(sql.replace("$1", "?").replace("$2", "?")))
                    .bind(WS)
                    .bind(lead)
                    .execute(pool)
                    .await?;
            }
            Self::Postgres(pool) => {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(WS)
                    .bind(lead)
                    .execute(pool)
                    .await?;
                // What autovacuum does soon after a bulk load.
                sqlx::raw_sql("ANALYZE").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// The lead's log as the engine reads it: every column, in scoring order.
    async fn read_log(&self, lead: &str) -> anyhow::Result<Vec<leadflow_domain::Engagement>> {
        type Row = (
            String,
            String,
            String,
            String,
            Option<String>,
            String,
            i64,
            i64,
            String,
            Option<String>,
        );
        const SQL: &str = "SELECT workspace_id, event_id, lead_id, type, channel, properties, occurred_at, \
                           recorded_at, fingerprint, caused_triggers FROM engagements \
                           WHERE workspace_id = $1 AND lead_id = $2 ORDER BY occurred_at, event_id";
        let rows: Vec<Row> = match self {
            Self::Sqlite(pool) => {
                sqlx::query_as(sqlx::AssertSqlSafe(SQL.replace("$1", "?").replace("$2", "?")))
                    .bind(WS)
                    .bind(lead)
                    .fetch_all(pool)
                    .await?
            }
            Self::Postgres(pool) => sqlx::query_as(SQL).bind(WS).bind(lead).fetch_all(pool).await?,
        };
        rows.into_iter()
            .map(|(_, event_id, _, kind, channel, properties, occurred_at, ..)| {
                Ok(leadflow_domain::Engagement {
                    event_id,
                    kind,
                    channel,
                    properties: serde_json::from_str(&properties)?,
                    occurred_at: leadflow_domain::Timestamp::from_micros(occurred_at),
                })
            })
            .collect()
    }

    async fn engagements_of(&self, lead: &str) -> anyhow::Result<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM engagements WHERE workspace_id = $1 AND lead_id = $2";
        Ok(match self {
            Self::Sqlite(pool) => {
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(SQL.replace("$1", "?").replace("$2", "?")))
                    .bind(WS)
                    .bind(lead)
                    .fetch_one(pool)
                    .await?
            }
            Self::Postgres(pool) => {
                sqlx::query_scalar::<_, i64>(SQL)
                    .bind(WS)
                    .bind(lead)
                    .fetch_one(pool)
                    .await?
            }
        })
    }
}

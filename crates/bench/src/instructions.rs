//! `leadflow-bench instructions`: the server's instructions per engagement
//! under a fixed workload, counted by `valgrind --tool=callgrind` (counts
//! are repeatable on a shared machine, where seconds are not).
//!
//! The server runs under callgrind twice, each time seeded with the same
//! leads and then sent `small` and `large` engagements one call at a time;
//! what it executed beyond start-up, seeding and shutdown is the difference
//! of the two totals, over the difference of the two counts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use leadflow_store::testing::{Engine as Db, TestDatabase};

use crate::Scratch;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The `leadflow` binary (default: next to this one).
    #[arg(long)]
    leadflow: Option<PathBuf>,
    /// unary (RecordEngagement) or batched (RecordEngagements, 100 a call).
    #[arg(long, default_value = "unary")]
    kind: String,
    /// On PostgreSQL (`LEADFLOW_TEST_POSTGRES_URL`, a database of its own
    /// a run) instead of a new SQLite file.
    #[arg(long)]
    postgres: bool,
    #[arg(long, default_value_t = 100)]
    small: u64,
    #[arg(long, default_value_t = 600)]
    large: u64,
    /// Keep callgrind's files here (for `callgrind_annotate`) instead of
    /// in a scratch directory removed at the end.
    #[arg(long)]
    keep: Option<PathBuf>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let leadflow = args
        .leadflow
        .clone()
        .unwrap_or_else(|| crate::server::sibling("leadflow"));
    let scratch = Scratch::new("instructions")?;
    let (engine, label) = if args.postgres {
        (Db::Postgres, "PostgreSQL")
    } else {
        (Db::Sqlite, "SQLite")
    };
    let mut totals = Vec::new();
    for n in [args.small, args.large] {
        let database = TestDatabase::new(engine)
            .await
            .ok_or_else(|| anyhow::anyhow!("no PostgreSQL (set LEADFLOW_TEST_POSTGRES_URL)"))?;
        let dir = args.keep.as_deref().unwrap_or(&scratch.0);
        let total = counted(&leadflow, &database.url, &args.kind, n, dir).await?;
        println!("{n} engagements ({}): {total} instructions in all", args.kind);
        totals.push(total);
    }
    anyhow::ensure!(args.large > args.small, "--large must be more than --small");
    let extra = totals[1].saturating_sub(totals[0]);
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let per = extra as f64 / (args.large - args.small) as f64;
    println!("{per:.0} instructions per engagement ({}, {label})", args.kind);
    Ok(())
}

/// The server's total instructions: started under callgrind, sent `n`
/// engagements, stopped with SIGTERM (callgrind writes its counts at exit).
async fn counted(leadflow: &Path, url: &str, kind: &str, n: u64, dir: &Path) -> anyhow::Result<u64> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let address = format!("127.0.0.1:{port}");
    std::fs::create_dir_all(dir)?;
    let out = dir.join(format!("callgrind-{kind}-{n}.out"));
    let mut server = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(leadflow)
        .args(["serve", "--database-url", url, "--log-level", "warn"])
        .args(["--http-listen", "127.0.0.1:0", "--listen", &address])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start valgrind (is it installed?): {e}"))?;
    let mut up = false;
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(&address).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let loaded = if up {
        crate::load::fixed(&address, kind, n, 50, None).await
    } else {
        Err(anyhow::anyhow!("leadflow under callgrind did not come up"))
    };
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    server.wait()?;
    loaded?;
    let text = std::fs::read_to_string(&out)?;
    text.lines()
        .find_map(|l| l.strip_prefix("totals: "))
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no totals in {}", out.display()))
}

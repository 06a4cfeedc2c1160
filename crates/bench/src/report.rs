//! The whole run, and its report.

use std::time::Duration;

use leadflow_store::testing::TestDatabase;
use serde::Serialize;

use crate::fanout::FanOut;
use crate::long_lead::LongLead;
use crate::server::{Process, sibling};
use crate::stats::Stats;
use crate::{Scratch, echo, fanout, load, long_lead, rawdb};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A short run (under 30 s): one concurrency, short cells.
    #[arg(long)]
    quick: bool,
    /// Where to write the figures as JSON.
    #[arg(long, default_value = "leadflow-bench.json")]
    json: std::path::PathBuf,
    /// The `leadflow` binary (default: next to this one).
    #[arg(long)]
    leadflow: Option<std::path::PathBuf>,
    /// Skip PostgreSQL.
    #[arg(long)]
    no_postgres: bool,
    /// Only the long-history scenario, instead of everything above: in-order
    /// and late RecordEngagement calls on a lead with 10 and with 10,000
    /// engagements, and a StreamEngagements import over 10,000 leads.
    #[arg(long, conflicts_with = "quick")]
    long_lead: bool,
    /// Engagements the long-history scenario imports.
    #[arg(long, default_value_t = 1_000_000, requires = "long_lead")]
    long_lead_engagements: u64,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    quick: bool,
    cores: usize,
    ceilings: Vec<Stats>,
    leadflow: Vec<Stats>,
    fanout: Vec<FanOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    long_lead: Vec<LongLead>,
    checks: Vec<Check>,
}

#[derive(Debug, Serialize)]
struct Check {
    target: String,
    measured: String,
    met: bool,
}

/// The bytes of a typical RecordEngagementRequest, for the echo ceiling.
const MESSAGE_BYTES: usize = 160;

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let cell = if args.quick {
        Duration::from_millis(1_000)
    } else {
        Duration::from_millis(2_500)
    };
    let concurrencies: &[usize] = if args.quick { &[8] } else { &[1, 8, 32] };
    let leads = if args.quick { 100 } else { 2000 };
    let leadflow = args.leadflow.clone().unwrap_or_else(|| sibling("leadflow"));
    let mut report = Report {
        quick: args.quick,
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        ..Report::default()
    };
    let scratch = Scratch::new("run")?;
    let clock = std::time::Instant::now();
    let lap = |what: &str| eprintln!("[{:>6.1} s] {what}", clock.elapsed().as_secs_f64());

    if args.long_lead {
        long_lead_only(&args, &leadflow, &scratch, &mut report, &lap).await?;
        return finish(&args, &mut report, &lap);
    }

    lap("ceilings: tonic echo and stream");
    {
        let me = std::env::current_exe()?;
        let echo_server = Process::start(&me, &["echo-server"], &scratch.0).await?;
        let channels = echo_server.channels(4).await?;
        for &c in concurrencies {
            report
                .ceilings
                .push(echo::unary(&channels, MESSAGE_BYTES, c, cell, echo_server.pid()).await);
        }
        let messages = if args.quick { 100_000 } else { 400_000 };
        report
            .ceilings
            .push(echo::stream(&channels[0], 200, messages, echo_server.pid()).await?);
    }

    lap("ceilings: raw SQLite");
    for &c in concurrencies {
        report
            .ceilings
            .push(rawdb::sqlite(&scratch.0.join("raw.db"), c, 1, cell).await?);
    }
    report
        .ceilings
        .push(rawdb::sqlite(&scratch.0.join("raw.db"), 8, 100, cell).await?);

    let postgres = if args.no_postgres {
        None
    } else {
        TestDatabase::postgres().await
    };
    if let Some(db) = &postgres {
        lap("ceilings: raw PostgreSQL");
        for &c in concurrencies {
            report.ceilings.push(rawdb::postgres(&db.url, c, 1, cell).await?);
        }
        report
            .ceilings
            .push(rawdb::postgres(&db.url, 8, 100, cell).await?);
    }

    let sqlite_url = format!("sqlite://{}", scratch.0.join("leadflow.db").display());
    let mut targets = vec![("SQLite", sqlite_url)];
    let leadflow_pg = if postgres.is_some() {
        TestDatabase::postgres().await
    } else {
        None
    };
    if let Some(db) = &leadflow_pg {
        targets.push(("PostgreSQL", db.url.clone()));
    }
    for (label, url) in &targets {
        lap(&format!("leadflow on {label}"));
        let server = Process::start(&leadflow, &serve_args(url), &scratch.0).await?;
        let channels = server.channels(4).await?;
        let ids = load::seed(&channels, leads).await?;
        for &c in concurrencies {
            let name = format!("leadflow RecordEngagement, {label}");
            report
                .leadflow
                .push(load::unary(&name, &channels, &ids, c, cell, server.pid()).await);
        }
        let name = format!("leadflow RecordEngagements ×100, {label}");
        report
            .leadflow
            .push(load::batched(&name, &channels, &ids, 4, cell, server.pid()).await);
        let name = format!("leadflow StreamEngagements, {label}");
        report
            .leadflow
            .push(load::stream(&name, &channels, &ids, 4, cell, server.pid()).await?);

        if *label == "PostgreSQL" || leadflow_pg.is_none() {
            lap(&format!("fan-out on {label}"));
            let write = &channels[0];
            let pace = Some(Duration::from_millis(25));
            let events = if args.quick { 20 } else { 60 };
            for subscribers in [1, 100, 1_000] {
                let name = format!("commit → {subscribers} subscriber(s), {label}");
                report.fanout.push(
                    fanout::run(
                        &name,
                        write,
                        &server.address,
                        Some(server.pid()),
                        subscribers,
                        events,
                        pace,
                    )
                    .await?,
                );
            }
            let name = format!("backlog read by 1000 subscribers, {label}");
            let burst = if args.quick { 50 } else { 200 };
            let backlog = fanout::backlog(&name, write, &server.address, 1_000, burst).await?;
            // S in the same layout: as many streams over as many
            // connections, each sent as many messages of the same size.
            let me = std::env::current_exe()?;
            let echo_server = Process::start(&me, &["echo-server"], &scratch.0).await?;
            let payload = backlog.message_bytes.saturating_sub(3).max(1);
            report.ceilings.push(
                echo::streams(
                    &echo_server.address,
                    1_000,
                    payload,
                    i64::try_from(burst).unwrap_or(i64::MAX),
                    echo_server.pid(),
                )
                .await?,
            );
            drop(echo_server);
            report.fanout.push(backlog);
            if *label == "PostgreSQL" {
                let other = Process::start(&leadflow, &serve_args(url), &scratch.0).await?;
                let name = "commit on A → subscriber on B, PostgreSQL".to_owned();
                report
                    .fanout
                    .push(fanout::run(&name, write, &other.address, None, 1, events, pace).await?);
            }
        }
    }

    finish(&args, &mut report, &lap)
}

/// The checks, the tables and the JSON.
fn finish(args: &Args, report: &mut Report, lap: &dyn Fn(&str)) -> anyhow::Result<()> {
    lap("done");
    checks(report);
    print(report);
    std::fs::write(&args.json, serde_json::to_string_pretty(report)?)?;
    eprintln!("figures written to {}", args.json.display());
    Ok(())
}

/// `--long-lead`: the long-history scenario alone, on SQLite and (unless
/// `--no-postgres`) PostgreSQL, each on a fresh database and server.
async fn long_lead_only(
    args: &Args,
    leadflow: &std::path::Path,
    scratch: &Scratch,
    report: &mut Report,
    lap: &dyn Fn(&str),
) -> anyhow::Result<()> {
    anyhow::ensure!(
        leadflow.is_file(),
        "no server binary at {}: build it first (cargo build --release -p leadflow-server) or pass --leadflow",
        leadflow.display()
    );
    anyhow::ensure!(
        args.long_lead_engagements >= 10,
        "--long-lead-engagements: at least 10"
    );
    let sqlite_url = format!("sqlite://{}", scratch.0.join("long-lead.db").display());
    let postgres = if args.no_postgres {
        None
    } else {
        TestDatabase::postgres().await
    };
    let mut targets = vec![("SQLite", sqlite_url)];
    if let Some(db) = &postgres {
        targets.push(("PostgreSQL", db.url.clone()));
    }
    for (label, url) in &targets {
        let server = Process::start(leadflow, &serve_args(url), &scratch.0).await?;
        let channels = server.channels(4).await?;
        report
            .long_lead
            .push(long_lead::measure(label, &channels, args.long_lead_engagements, lap).await?);
    }
    Ok(())
}

fn find<'a>(list: &'a [Stats], prefix: &str, concurrency: usize) -> Option<&'a Stats> {
    list.iter()
        .find(|s| s.name.starts_with(prefix) && s.concurrency == concurrency)
}

fn checks(report: &mut Report) {
    let mut add = |target: &str, measured: String, met: bool| {
        report.checks.push(Check {
            target: target.to_owned(),
            measured,
            met,
        });
    };
    for (target, measured, met) in report.long_lead.iter().flat_map(LongLead::checks) {
        add(&target, measured, met);
    }
    // SQLite's ratios are taken against L1 at concurrency 1, the writer's
    // own capacity: raw L1 under lock contention varies too much between runs.
    let l1 = find(&report.ceilings, "L1", 1).map(|s| s.per_second);
    for (c, want) in [(1, 0.5), (32, 1.0)] {
        if let (Some(lf), Some(l1)) = (find(&report.leadflow, "leadflow RecordEngagement, SQLite", c), l1) {
            let r = lf.per_second / l1;
            add(
                &format!("RecordEngagement on SQLite ≥ {want} × L1 (concurrency 1) at concurrency {c}"),
                format!("{r:.2} ×"),
                r >= want,
            );
        }
        if let (Some(lf), Some(p1)) = (
            find(&report.leadflow, "leadflow RecordEngagement, PostgreSQL", c),
            find(&report.ceilings, "P1", c),
        ) {
            let r = lf.per_second / p1.per_second;
            add(
                &format!("RecordEngagement on PostgreSQL ≥ {want} × P1 at concurrency {c}"),
                format!("{r:.2} ×"),
                r >= want,
            );
        }
    }
    let batches = [("SQLite", "LB", 0.15), ("PostgreSQL", "PB", 0.12)];
    for (label, ceiling, want) in batches {
        let name = format!("leadflow RecordEngagements ×100, {label}");
        if let (Some(b), Some(c)) = (
            report.leadflow.iter().find(|s| s.name.starts_with(&name)),
            report.ceilings.iter().find(|s| s.name.starts_with(ceiling)),
        ) {
            let r = b.per_second / c.per_second;
            add(
                &format!("batched RecordEngagements on {label} ≥ {want} × {ceiling} rows/s"),
                format!("{r:.2} ×"),
                r >= want,
            );
        }
    }
    if let (Some(f), Some(s)) = (
        report.fanout.iter().find(|f| f.name.starts_with("backlog")),
        report
            .ceilings
            .iter()
            .find(|s| s.name.starts_with("S:") && s.concurrency > 1),
    ) {
        let r = f.per_second / s.per_second;
        add(
            "fan-out from a backlog ≥ 0.3 × S in the same layout, messages/s",
            format!("{r:.2} ×"),
            r >= 0.3,
        );
    }
    if let Some(f) = report
        .fanout
        .iter()
        .find(|f| f.subscribers == 1_000 && !f.name.starts_with("backlog"))
    {
        add(
            "commit-to-subscriber p99 < 15 ms with 1,000 subscribers",
            format!("{:.1} ms", f.p99_ms),
            f.p99_ms < 15.0,
        );
        if let Some(rss) = f.server_rss_mib {
            add(
                "server memory with 1,000 open streams < 128 MiB RSS",
                format!("{rss:.1} MiB"),
                rss < 128.0,
            );
        }
    }
}

fn print(report: &Report) {
    if !report.long_lead.is_empty() {
        long_lead::print(&report.long_lead);
        print_checks(report);
        return;
    }
    println!("\n| measure | concurrency | items/s | p50 ms | p99 ms | p99.9 ms | client CPU | server CPU |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for s in report.ceilings.iter().chain(&report.leadflow) {
        let server = s
            .server_cpu
            .map_or_else(|| "—".to_owned(), |c| format!("{:.0}%", c * 100.0));
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0}% | {server} |",
            s.name,
            s.concurrency,
            s.per_second,
            s.p50_ms,
            s.p99_ms,
            s.p999_ms,
            s.client_cpu * 100.0
        );
    }
    println!("\n| fan-out | subscribers | deliveries | deliveries/s | p50 ms | p99 ms | server RSS MiB |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for f in &report.fanout {
        let rss = f
            .server_rss_mib
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.1}"));
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {rss} |",
            f.name, f.subscribers, f.deliveries, f.per_second, f.p50_ms, f.p99_ms
        );
    }
    for f in report.fanout.iter().filter(|f| f.opened_after_seconds.is_some()) {
        let seconds = f.deliveries as f64 / f.per_second.max(1e-9);
        println!(
            "\n{}: the last stream opened after {:.2} s of {seconds:.2} s",
            f.name,
            f.opened_after_seconds.unwrap_or(0.0)
        );
    }
    print_checks(report);
    println!(
        "\nCPU shares are of all {} cores; client and server share them.",
        report.cores
    );
}

fn print_checks(report: &Report) {
    println!("\n| target | measured | met |\n| --- | ---: | --- |");
    for c in &report.checks {
        println!(
            "| {} | {} | {} |",
            c.target,
            c.measured,
            if c.met { "yes" } else { "no" }
        );
    }
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

//! `leadflow-bench`: measures leadflow on this machine, each figure beside
//! the ceiling it is bounded by, measured in the same run — a raw tonic
//! echo (E) and server stream (S), raw SQLite inserts (L1, LB), raw
//! PostgreSQL inserts (P1, PB). Prints a Markdown table and writes JSON.
//! Never part of the tests' pass/fail.
//!
//! Build both binaries, then run: `cargo build --release -p leadflow-server
//! -p leadflow-bench && target/release/leadflow-bench run` (`--quick` for a
//! short run).

// A measuring tool reports on stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod accounts;
mod cpu;
mod echo;
mod fanout;
mod funnel;
mod identify;
mod import;
mod instructions;
mod learn;
mod load;
mod long_lead;
mod merge;
mod rawdb;
mod relay;
mod report;
mod scale;
mod search;
mod server;
mod simulate;
mod stats;
mod webhooks;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "leadflow-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Everything: ceilings, leadflow on SQLite and PostgreSQL, fan-out
    /// (`--long-lead`: instead, writes to a lead with a long history).
    Run(report::Args),
    /// SimulatePolicy over many leads on PostgreSQL, against a plain read
    /// of the same leads and logs.
    Simulate(simulate::Args),
    /// GetFunnel over about a million transitions, on SQLite and
    /// PostgreSQL, beside a plain read of the same period.
    Funnel(funnel::Args),
    /// LearnPolicy over 100,000 leads with their logs (PostgreSQL, or
    /// --sqlite): the job beside a plain read of the same leads and the
    /// learning alone, and the memory it takes.
    Learn(learn::Args),
    /// An engagement to a member of an account of 10 members and of one of
    /// 10,000, beside one to a lead without an account, in the same database.
    Accounts(accounts::Args),
    /// IdentifyLead with 1,000 anonymous events beside 10, and an anonymous
    /// engagement beside a lead's.
    Identify(identify::Args),
    /// MergeLeads and UnmergeLead of two leads with 10,000 engagements each
    /// beside two with 10.
    Merge(merge::Args),
    /// Filtered ListLeads pages over a million leads on PostgreSQL (the
    /// indexed forms and a scanned one), beside a plain page by id.
    Search(search::Args),
    /// 1, 2 and 3 replicas on one PostgreSQL under the same load, the last
    /// killed halfway: throughput, commit-to-subscriber latency, and that
    /// nothing acknowledged is lost, every event arrives and every timer
    /// fires once.
    Scale(scale::Args),
    /// Back-dated RecordEngagements batches to a lead with a long log,
    /// beside single RecordEngagement calls on other leads, on SQLite and
    /// PostgreSQL: the single calls' p99 against their idle p99, and that
    /// none fails. Exits non-zero when one fails or the p99 grows over 5 ×.
    Import(import::Args),
    /// The JetStream relay: a backlog drained (events/s) and commit to a
    /// JetStream subscriber under a steady load, beside a raw async-nats
    /// publish loop to the same nats-server (started by the run).
    Relay(relay::Args),
    /// Webhook deliveries: a backlog drained to a receiver on loopback
    /// (deliveries/s), beside as many bare requests of the same size by the
    /// same request code to the same receiver.
    Webhooks(webhooks::Args),
    /// The server's instructions per engagement under a fixed workload,
    /// counted by `valgrind --tool=callgrind`.
    Instructions(instructions::Args),
    /// Load on a server already running (to profile it): seeds leads, then
    /// one kind of call for a while.
    Load {
        /// host:port of a running `leadflow serve`.
        #[arg(long)]
        address: String,
        /// unary, batched or stream.
        #[arg(long, default_value = "unary")]
        kind: String,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 200)]
        leads: usize,
        /// Instead of a time: this many engagements, one call after another
        /// (a fixed workload, for `valgrind --tool=callgrind` on the server).
        #[arg(long)]
        engagements: Option<u64>,
        /// With --engagements: the server's pid, to print its CPU time and
        /// context switches per call.
        #[arg(long, requires = "engagements")]
        server_pid: Option<u32>,
    },
    /// What one more statement in a SQLite write transaction costs through
    /// the driver (the hand-off to its connection's thread), at concurrency 1.
    Handoffs {
        /// Seconds for each of the three transaction sizes.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// The echo server the ceilings are measured against (started by `run`).
    EchoServer {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Scenario::Run(args) => report::run(args).await,
            Scenario::Simulate(args) => simulate::run(args).await,
            Scenario::Funnel(args) => funnel::run(args).await,
            Scenario::Learn(args) => learn::run(args).await,
            Scenario::Search(args) => search::run(args).await,
            Scenario::Accounts(args) => accounts::run(args).await,
            Scenario::Identify(args) => identify::run(args).await,
            Scenario::Merge(args) => merge::run(args).await,
            Scenario::Scale(args) => scale::run(args).await,
            Scenario::Import(args) => import::run(args).await,
            Scenario::Instructions(args) => instructions::run(args).await,
            Scenario::Relay(args) => relay::run(args).await,
            Scenario::Webhooks(args) => webhooks::run(args).await,
            Scenario::Handoffs { seconds } => rawdb::handoffs(seconds).await,
            Scenario::EchoServer { listen } => echo::serve(listen).await,
            Scenario::Load {
                address,
                kind,
                concurrency,
                seconds,
                leads,
                engagements,
                server_pid,
            } => match engagements {
                Some(n) => load::fixed(&address, &kind, n, leads, server_pid).await,
                None => load::standalone(&address, &kind, concurrency, seconds, leads).await,
            },
        }
    })
}

/// A scratch directory, removed on drop.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(tag: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("leadflow-bench-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

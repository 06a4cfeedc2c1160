//! `leadflow-bench`: measures leadflow on this machine, each figure beside a
//! baseline measured in the same run. Never part of the tests' pass/fail.

// A measuring tool reports on stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod simulate;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "leadflow-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// SimulatePolicy over many leads on PostgreSQL, against a plain read
    /// of the same leads and logs.
    Simulate(simulate::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Scenario::Simulate(args) => simulate::run(args).await,
        }
    })
}

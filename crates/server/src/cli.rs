//! The `leadflow` command line: run the service, migrate its database,
//! check and apply policies.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{Config, DatabaseUrl, Layer, LogFormat};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use leadflow_proto::v1 as pb;

/// leadflow: the B2B lead lifecycle, as a gRPC service.
#[derive(Debug, Parser)]
#[command(name = "leadflow", version, about, long_about = None)]
struct Cli {
    /// A TOML file of settings (the flags' long names, with `_`). Flags and
    /// LEADFLOW_* variables override it.
    #[arg(long, env = "LEADFLOW_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the gRPC service (SQLite at ./leadflow.db unless told otherwise).
    Serve(ServeArgs),
    /// Applies pending database migrations, then exits.
    Migrate(DatabaseArgs),
    /// Lead definitions (policies).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Args)]
struct DatabaseArgs {
    /// sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long, env = "LEADFLOW_DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Address for gRPC.
    #[arg(long, env = "LEADFLOW_LISTEN")]
    listen: Option<SocketAddr>,
    #[arg(long, env = "LEADFLOW_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// A tracing filter: `info`, `debug`, `leadflow_engine=debug,info`…
    #[arg(long, env = "LEADFLOW_LOG_LEVEL")]
    log_level: Option<String>,
    /// Seconds shutdown waits for calls in flight.
    #[arg(long, env = "LEADFLOW_SHUTDOWN_GRACE_SECS")]
    shutdown_grace_secs: Option<u64>,
    /// Database connection pool size.
    #[arg(long, env = "LEADFLOW_MAX_CONNECTIONS")]
    max_connections: Option<u32>,
    /// Milliseconds between the timer worker's looks for due timers.
    #[arg(long, env = "LEADFLOW_TIMER_POLL_MS")]
    timer_poll_ms: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Checks a policy file; prints every problem with its path.
    Validate { file: PathBuf },
    /// Stores a policy file as a new version on a running server and activates it.
    Apply {
        file: PathBuf,
        /// The server's gRPC address.
        #[arg(long, env = "LEADFLOW_SERVER", default_value = "http://127.0.0.1:50051")]
        server: String,
    },
}

fn config(file: Option<&Path>, flags: Layer) -> anyhow::Result<Config> {
    let mut config = Config::default();
    if let Some(file) = file {
        config = config.apply(Layer::from_file(file)?);
    }
    let config = config.apply(flags);
    config.validate()?;
    Ok(config)
}

/// Runs the command line given to the process.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("leadflow: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("leadflow: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let flags = Layer {
                database_url: args.database.database_url.map(DatabaseUrl::new),
                listen: args.listen,
                log_format: args.log_format,
                log_level: args.log_level,
                shutdown_grace_secs: args.shutdown_grace_secs,
                max_connections: args.max_connections,
                timer_poll_ms: args.timer_poll_ms,
            };
            let config = config(cli.config.as_deref(), flags)?;
            let _telemetry = crate::telemetry::init(config.log_format, &config.log_level, std::io::stderr)?;
            crate::serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(args) => {
            let flags = Layer {
                database_url: args.database_url.map(DatabaseUrl::new),
                ..Layer::default()
            };
            let config = config(cli.config.as_deref(), flags)?;
            crate::open_engine(&config, Arc::new(leadflow_engine::SystemClock)).await?;
            println!("migrated {}", config.database_url);
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Validate { file }) => {
            let source = read(&file)?;
            match leadflow_domain::Policy::from_toml(&source) {
                Ok(policy) => {
                    println!("{}: policy {:?} is valid", file.display(), policy.name);
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    for e in &errors.0 {
                        eprintln!("{}: {e}", file.display());
                    }
                    eprintln!("{} problem(s) in {}", errors.0.len(), file.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Policy(PolicyCommand::Apply { file, server }) => apply(&file, &server).await,
    }
}

fn read(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

async fn apply(file: &Path, server: &str) -> anyhow::Result<ExitCode> {
    let source = read(file)?;
    if let Err(errors) = leadflow_domain::Policy::from_toml(&source) {
        for e in &errors.0 {
            eprintln!("{}: {e}", file.display());
        }
        return Ok(ExitCode::FAILURE);
    }
    let channel = tonic::transport::Endpoint::from_shared(server.to_owned())
        .with_context(|| format!("bad server address {server:?}"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach leadflow at {server}"))?;
    let mut client = pb::policy_service_client::PolicyServiceClient::new(channel);
    let created = client
        .create_policy_version(pb::CreatePolicyVersionRequest {
            request_id: String::new(),
            source,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner()
        .policy
        .context("the server returned no policy")?;
    let activated = client
        .activate_policy(pb::ActivatePolicyRequest {
            request_id: String::new(),
            version: created.version,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    println!(
        "policy {:?} is version {} and active",
        created.name, created.version
    );
    println!("{}", activated.note);
    Ok(ExitCode::SUCCESS)
}

//! The `leadflow` command line: run the service, migrate its database,
//! manage workspaces and tokens, check and apply policies, read the funnel.
//!
//! - this file: the commands, the configuration they share, and errors;
//! - `admin.rs`: workspaces, tokens and migrations, on the database;
//! - `remote.rs`: the one client every command that talks to a server uses;
//! - `policy.rs`: checking a policy file, simulating and activating it;
//! - `funnel.rs`: the funnel of a period as tables.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod admin;
mod funnel;
mod policy;
mod policy_learn;
mod policy_record;
mod policy_test;
mod remote;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::config::{Config, ConfigError, Layers, Resolved};
use admin::{DatabaseArgs, TokenCommand, WorkspaceCommand};
use funnel::FunnelArgs;
use policy::PolicyCommand;

/// leadflow: the B2B lead lifecycle, as a gRPC service.
#[derive(Debug, Parser)]
#[command(name = "leadflow", version, about, long_about = None)]
struct Cli {
    /// A TOML file of settings (the flags' long names, with `_`).
    /// LEADFLOW_* and OTEL_* variables override it, and flags override
    /// those.
    #[arg(long, env = "LEADFLOW_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the gRPC service (SQLite at ./leadflow.db unless told otherwise).
    Serve(Config),
    /// Applies pending database migrations, then exits.
    Migrate(DatabaseArgs),
    /// Lead definitions (policies).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Workspaces: each has its own leads, policy, events and tokens.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// API tokens (bearer tokens bound to a workspace and scopes).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Prints the funnel of a period from a running server, as a table:
    /// the numbers of `GetFunnel` and of the dashboard.
    Funnel(FunnelArgs),
    /// The service's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Prints the effective configuration as TOML, each setting with where
    /// it came from; secrets redacted.
    Show(Config),
}

/// The configuration: defaults, the file, the environment, then the flags
/// given (`given` as clap parsed them, `matches` telling which were on the
/// command line), then `extra`, flags of a command's own by setting name.
fn resolve(
    file: Option<&Path>,
    given: Option<(&Config, &clap::ArgMatches)>,
    extra: Vec<(&'static str, Option<String>)>,
) -> Result<Resolved, ConfigError> {
    let mut layers = Layers::default();
    if let Some(file) = file {
        layers.file(file)?;
    }
    layers.env(|name| std::env::var(name).ok());
    if let Some((config, matches)) = given {
        layers.flags(config, matches);
    }
    for (name, value) in extra {
        layers.flag(name, value);
    }
    layers.resolve()
}

fn config(file: Option<&Path>, extra: Vec<(&'static str, Option<String>)>) -> Result<Config, ConfigError> {
    Ok(resolve(file, None, extra)?.config)
}

/// Runs the command line given to the process.
pub fn main() -> ExitCode {
    let mut command = setting_help(Cli::command());
    let matches = match command.try_get_matches_from_mut(std::env::args_os()) {
        Ok(matches) => matches,
        Err(e) => {
            // A setting's bad value is told as any bad setting is, wherever
            // it came from; anything else as clap tells it.
            if let Some(refused) = bad_setting_flag(&e) {
                eprintln!("leadflow: {refused}");
                return ExitCode::from(2);
            }
            e.exit()
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut command).exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("leadflow: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, &matches)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("leadflow: {}", causes(&e));
            if e.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The configuration's own refusal of a setting's flag value that clap
/// could not parse.
fn bad_setting_flag(e: &clap::Error) -> Option<ConfigError> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(e.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation) {
        return None;
    }
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let flag = text(ContextKind::InvalidArg)?;
    let key = flag
        .trim_start_matches("--")
        .split([' ', '='])
        .next()?
        .replace('-', "_");
    if !Config::keys().contains(&key) {
        return None;
    }
    let mut layers = Layers::default();
    layers.flag(&key, text(ContextKind::InvalidValue));
    layers.resolve().err()
}

/// An error and its causes, `: `-separated, each said once. Some errors
/// already include their source in their own message (tonic's transport
/// errors say `tcp connect error: Connection refused`, then have that very
/// text as their source), so a cause that a neighbour already says is left
/// out.
fn causes(error: &anyhow::Error) -> String {
    let mut said: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let text = text.trim();
        match said.last_mut() {
            Some(last) if last.ends_with(text) => {}
            Some(last) if text.starts_with(last.as_str()) => text.clone_into(last),
            _ => said.push(text.to_owned()),
        }
    }
    said.join(": ")
}

/// The help of every setting flag names its environment variables (its
/// default clap shows), from the configuration's own rule.
fn setting_help(command: clap::Command) -> clap::Command {
    let keys = Config::keys();
    command
        .mut_args(|arg| {
            let id = arg.get_id().as_str();
            if !keys.iter().any(|k| k == id) {
                return arg;
            }
            let mut help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            help.push_str(&format!(" [env: {}]", crate::config::variables(id).join(", ")));
            // A bare flag shows no default of its own.
            if arg.get_default_values().is_empty()
                && let Some(default) = Config::default_text(id)
            {
                help.push_str(&format!(" [default: {default}]"));
            }
            arg.help(help)
        })
        .mut_subcommands(setting_help)
}

async fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(given) => {
            let flags = matches.subcommand_matches("serve").map(|m| (&given, m));
            let config = resolve(cli.config.as_deref(), flags, Vec::new())?.config;
            let colour =
                std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            let _telemetry = crate::telemetry::init(&config, std::io::stderr, colour)?;
            crate::serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Show(given)) => {
            let flags = matches
                .subcommand_matches("config")
                .and_then(|m| m.subcommand_matches("show"))
                .map(|m| (&given, m));
            print!("{}", resolve(cli.config.as_deref(), flags, Vec::new())?.show());
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(args) => {
            let config = config(cli.config.as_deref(), vec![("database_url", args.database_url)])?;
            crate::open_engine(&config, Arc::new(leadflow_engine::SystemClock)).await?;
            println!("migrated {}", config.database_url);
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Validate { file }) => {
            let Some((_, policy, warnings)) = policy::policy_file(&file)? else {
                return Ok(ExitCode::FAILURE);
            };
            match warnings {
                0 => println!("{}: policy {:?} is valid", file.display(), policy.name),
                n => println!(
                    "{}: policy {:?} is valid, with {n} warning(s)",
                    file.display(),
                    policy.name
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Workspace(command) => admin::workspace_command(cli.config.as_deref(), command).await,
        Command::Token(command) => admin::token_command(cli.config.as_deref(), command).await,
        Command::Policy(PolicyCommand::Activate { file, remote }) => policy::activate(&file, &remote).await,
        Command::Policy(PolicyCommand::Test {
            file,
            cases,
            record,
            leads,
            keep_personal,
            remote,
        }) => match (record, file) {
            (true, _) => policy_record::record(&cases, &remote, &leads, keep_personal).await,
            (false, Some(file)) => policy_test::run(&file, &cases),
            (false, None) => anyhow::bail!("name the policy file to test"),
        },
        Command::Policy(PolicyCommand::Simulate {
            file,
            remote,
            top,
            all,
        }) => {
            let top = if all {
                usize::MAX
            } else {
                usize::try_from(top).unwrap_or(usize::MAX)
            };
            policy::simulate(&file, &remote, top).await
        }
        Command::Policy(PolicyCommand::Learn(args)) => policy_learn::learn(args).await,
        Command::Funnel(args) => funnel::funnel(args).await,
    }
}

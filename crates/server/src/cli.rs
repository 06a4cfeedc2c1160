//! The `leadflow` command line: run the service, migrate its database,
//! check and apply policies.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{Config, ConfigError, Layers, Resolved};
use anyhow::Context as _;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use leadflow_proto::v1 as pb;

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

/// How a command reaches a running server: the same flags for every
/// command that talks to one.
#[derive(Debug, Args)]
struct Remote {
    /// The server's gRPC address; https://… for a server with TLS.
    #[arg(
        long = "against",
        alias = "server",
        env = "LEADFLOW_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// A bearer token (`leadflow token create`), needed unless the server
    /// runs without tokens. The variable keeps it out of process lists.
    #[arg(long, env = "LEADFLOW_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// TLS: the CA certificate (PEM) that signed the server's certificate.
    #[arg(long, env = "LEADFLOW_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Mutual TLS: this client's certificate (PEM), with --client-key.
    #[arg(long, env = "LEADFLOW_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Mutual TLS: this client's private key (PEM), with --client-cert.
    #[arg(long, env = "LEADFLOW_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct FunnelArgs {
    // A token needs analytics:read.
    #[command(flatten)]
    remote: Remote,
    /// First day, YYYY-MM-DD (UTC); default 30 days before --to.
    #[arg(long)]
    from: Option<String>,
    /// The day after the last, YYYY-MM-DD (UTC); default tomorrow.
    #[arg(long)]
    to: Option<String>,
    /// none, source-channel, mql-channel or policy-version.
    #[arg(long, default_value = "none")]
    group_by: String,
    /// Only leads whose first engagement came on this channel.
    #[arg(long)]
    channel: Option<String>,
}

#[derive(Debug, Subcommand)]
enum WorkspaceCommand {
    /// Creates a workspace, with the example lead definition active.
    Create {
        /// Letters, digits, `-` and `_`, at most 64.
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Lists the workspaces.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Creates a token and prints its secret, once: only a hash is kept.
    Create {
        #[arg(long)]
        workspace: String,
        /// What the token is for (shown in lists and recorded as the
        /// principal of what it does).
        #[arg(long)]
        name: String,
        /// Comma-separated: leads:read, leads:write, engagements:write,
        /// transitions:write, policy:admin, triggers:subscribe, analytics:read.
        #[arg(long)]
        scopes: String,
        /// Lifetime, e.g. `90d` or `12h`; none by default.
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Lists tokens (never their secrets).
    List {
        /// Only this workspace's.
        #[arg(long)]
        workspace: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revokes a token by id or name; refused on every replica within seconds.
    Revoke {
        #[arg(long)]
        workspace: String,
        id_or_name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Args)]
struct DatabaseArgs {
    /// sqlite://PATH or postgres://USER@HOST/DB. A PostgreSQL on loopback
    /// is reached without TLS unless the URL sets sslmode.
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Prints the effective configuration as TOML, each setting with where
    /// it came from; secrets redacted.
    Show(Config),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Checks a policy file; prints every problem with its path. Warnings
    /// (e.g. a threshold no lead can reach) do not fail it.
    Validate { file: PathBuf },
    /// Shows what a policy file would do to every current lead on a running
    /// server: counts per stage before and after, the leads that would move
    /// and those that would newly fail a guard. Writes nothing.
    Simulate {
        file: PathBuf,
        // A token needs policy:admin, as for every policy command.
        #[command(flatten)]
        remote: Remote,
        /// Leads to list of each kind (movers, newly failing).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        top: u32,
        /// List every lead that would move or newly fail.
        #[arg(long, conflicts_with = "top")]
        all: bool,
    },
    /// Stores a policy file as a new version on a running server, activates
    /// it and follows the re-score of every lead; fails if the re-score does.
    #[command(alias = "apply")]
    Activate {
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
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
            let Some((_, policy, warnings)) = policy_file(&file)? else {
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
        Command::Workspace(command) => workspace_command(cli.config.as_deref(), command).await,
        Command::Token(command) => token_command(cli.config.as_deref(), command).await,
        Command::Policy(PolicyCommand::Activate { file, remote }) => activate(&file, &remote).await,
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
            simulate(&file, &remote, top).await
        }
        Command::Funnel(args) => funnel(args).await,
    }
}

/// The engine on the configured database, for the management commands.
async fn management_engine(
    file: Option<&Path>,
    database: DatabaseArgs,
) -> anyhow::Result<leadflow_engine::Engine> {
    let config = config(file, vec![("database_url", database.database_url)])?;
    crate::open_engine(&config, Arc::new(leadflow_engine::SystemClock)).await
}

fn valid_workspace_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

async fn workspace_command(file: Option<&Path>, command: WorkspaceCommand) -> anyhow::Result<ExitCode> {
    match command {
        WorkspaceCommand::Create { name, database } => {
            if !valid_workspace_name(&name) {
                eprintln!("workspace name {name:?}: letters, digits, '-' and '_', 1 to 64 of them");
                return Ok(ExitCode::from(2));
            }
            let engine = management_engine(file, database).await?;
            if !engine.create_workspace(&name, crate::DEFAULT_POLICY).await? {
                eprintln!("workspace {name:?} exists already");
                return Ok(ExitCode::FAILURE);
            }
            println!("created workspace {name}");
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::List { database } => {
            let engine = management_engine(file, database).await?;
            println!("{:<32} {:>14}  created", "workspace", "active policy");
            for w in engine.workspaces().await? {
                let active = w
                    .active_policy_version
                    .map_or("none".to_owned(), |v| format!("v{v}"));
                println!("{:<32} {active:>14}  {}", w.id, w.created_at);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn token_command(file: Option<&Path>, command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create {
            workspace,
            name,
            scopes,
            expires,
            database,
        } => {
            let scopes = match crate::auth::parse_scopes(&scopes) {
                Ok(scopes) => scopes,
                Err(e) => {
                    eprintln!("--scopes: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let lifetime = match expires.as_deref().map(leadflow_domain::Span::parse).transpose() {
                Ok(lifetime) => lifetime,
                Err(e) => {
                    eprintln!("--expires: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            if name.trim().is_empty() || name.len() > 128 {
                eprintln!("--name: 1 to 128 characters");
                return Ok(ExitCode::from(2));
            }
            let engine = management_engine(file, database).await?;
            let secret = crate::auth::new_secret()?;
            let token = match engine
                .create_token(leadflow_engine::NewToken {
                    workspace,
                    name,
                    scopes,
                    lifetime,
                    secret_hash: crate::auth::secret_hash(&secret),
                })
                .await
            {
                Ok(token) => token,
                Err(leadflow_engine::EngineError::NotFound { key, .. }) => {
                    eprintln!("no workspace {key:?} (leadflow workspace create {key})");
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            };
            eprintln!(
                "token {} ({}) for workspace {} with scopes {}; the secret below is shown once",
                token.id,
                token.name,
                token.workspace,
                token.scopes.join(",")
            );
            println!("{secret}");
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { workspace, database } => {
            let engine = management_engine(file, database).await?;
            let now = engine.now();
            println!(
                "{:<36} {:<16} {:<24} {:<8} scopes",
                "id", "workspace", "name", "state"
            );
            for t in engine.tokens(workspace.as_deref()).await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if !t.is_live(now) {
                    "expired"
                } else {
                    "live"
                };
                println!(
                    "{:<36} {:<16} {:<24} {state:<8} {}",
                    t.id,
                    t.workspace,
                    t.name,
                    t.scopes.join(",")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke {
            workspace,
            id_or_name,
            database,
        } => {
            let engine = management_engine(file, database).await?;
            let n = engine.revoke_token(&workspace, &id_or_name).await?;
            if n == 0 {
                eprintln!("no live token {id_or_name:?} in workspace {workspace:?}");
                return Ok(ExitCode::FAILURE);
            }
            println!("revoked {n} token(s)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

/// Reads a policy file and reports its problems: `None` if it has errors,
/// else its text, the policy and how many warnings were printed.
fn policy_file(file: &Path) -> anyhow::Result<Option<(String, leadflow_domain::Policy, usize)>> {
    let source = read(file)?;
    match leadflow_domain::Policy::from_toml(&source) {
        Ok(policy) => {
            let warnings = policy.warnings();
            for w in &warnings {
                let at = located(file, leadflow_domain::policy::place_of(&source, &w.path));
                eprintln!("{at} warning: {w}");
            }
            Ok(Some((source, policy, warnings.len())))
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{} {e}", located(file, e.place));
            }
            eprintln!("{} problem(s) in {}", errors.0.len(), file.display());
            Ok(None)
        }
    }
}

/// `file:line:column`, as editors and compilers write a place (`file:`
/// when the problem has none).
fn located(file: &Path, place: Option<leadflow_domain::policy::Place>) -> String {
    match place {
        Some(place) => format!("{}:{place}", file.display()),
        None => format!("{}:", file.display()),
    }
}

/// Puts the caller's bearer token, if any, on every call.
#[derive(Clone, Debug)]
struct Bearer(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connection to a server, with the token.
type Connection = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

impl Remote {
    /// Connects as the flags say: TLS for an https:// address (with the CA
    /// and the client certificate given), the token on every call.
    async fn connect(&self) -> anyhow::Result<Connection> {
        let server = self.server.as_str();
        let bearer = match &self.token {
            Some(token) => {
                let mut value: tonic::metadata::AsciiMetadataValue = format!("Bearer {}", token.trim())
                    .parse()
                    .context("the token has characters no header can carry")?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut endpoint = tonic::transport::Endpoint::from_shared(server.to_owned())
            .with_context(|| format!("bad server address {server:?}"))?
            .connect_timeout(std::time::Duration::from_secs(10));
        let https = endpoint.uri().scheme_str() == Some("https");
        if https {
            // Only the CA given is trusted: the client carries no system roots.
            let ca = self.ca_cert.as_deref().with_context(|| {
                format!("{server} is https://: --ca-cert names the CA that signed its certificate")
            })?;
            let read =
                |path: &Path| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
            let mut tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
            if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
                tls = tls.identity(tonic::transport::Identity::from_pem(read(cert)?, read(key)?));
            }
            endpoint = endpoint.tls_config(tls).context("cannot set up TLS")?;
        } else if self.ca_cert.is_some() || self.client_cert.is_some() {
            anyhow::bail!("--ca-cert and --client-cert are for https:// servers, and {server} is not one");
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach leadflow at {server}"))?;
        Ok(tonic::service::interceptor::InterceptedService::new(
            channel,
            Bearer(bearer),
        ))
    }
}

fn rpc_error(s: tonic::Status) -> anyhow::Error {
    let hint = match s.code() {
        tonic::Code::Unauthenticated => " (give a token with --token or LEADFLOW_TOKEN)",
        _ => "",
    };
    anyhow::anyhow!("{:?}: {}{hint}", s.code(), s.message())
}

fn stage_name(value: i32) -> &'static str {
    pb::Stage::try_from(value)
        .map_or("?", |s| s.as_str_name())
        .trim_start_matches("STAGE_")
}

/// Text from the data, safe to print: control characters shown as `?`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn span_text(d: Option<&prost_types::Duration>) -> String {
    crate::http::human(d.map(|d| leadflow_domain::time::Span::from_secs(d.seconds)))
}

async fn funnel(args: FunnelArgs) -> anyhow::Result<ExitCode> {
    let filters = crate::http::Filters::new(args.from, args.to, None);
    let query = match crate::http::query_of(
        &filters,
        leadflow_domain::Timestamp::from_micros(chrono::Utc::now().timestamp_micros()),
    ) {
        Ok(q) => q,
        Err(message) => {
            eprintln!("leadflow funnel: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let group_by = match args.group_by.as_str() {
        "none" => pb::FunnelGrouping::Unspecified,
        "source-channel" => pb::FunnelGrouping::SourceChannel,
        "mql-channel" => pb::FunnelGrouping::MqlChannel,
        "policy-version" => pb::FunnelGrouping::PolicyVersion,
        other => {
            eprintln!(
                "leadflow funnel: --group-by {other:?}: expected none, source-channel, mql-channel or policy-version"
            );
            return Ok(ExitCode::from(2));
        }
    };
    let mut client = pb::analytics_service_client::AnalyticsServiceClient::new(args.remote.connect().await?);
    let mut groups = Vec::new();
    let mut page_token = String::new();
    let (start, end) = (query.period.start, query.period.end);
    loop {
        let request = pb::GetFunnelRequest {
            period: Some(crate::services::period_out(query.period)),
            group_by: group_by.into(),
            source_channel: args.channel.clone().unwrap_or_default(),
            page_size: 200,
            page_token,
            ..Default::default()
        };
        let page = client.get_funnel(request).await.map_err(rpc_error)?.into_inner();
        groups.extend(page.groups);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let last = end.saturating_sub(leadflow_domain::time::Span::from_micros(1));
    println!(
        "Funnel {} to {} (UTC){}",
        start
            .to_chrono()
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        last.to_chrono()
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        args.channel
            .map(|c| format!(", source channel {c}"))
            .unwrap_or_default()
    );
    if groups.is_empty() {
        println!("\nno leads moved in the period");
    }
    for g in &groups {
        if !g.key.is_empty() {
            println!("\n== {} ==", printable(&g.key));
        }
        println!("\n{:<14} {:>8} {:>8}", "stage", "leads", "entries");
        for e in &g.entries {
            println!("{:<14} {:>8} {:>8}", stage_name(e.stage), e.leads, e.entries);
        }
        println!(
            "\n{:<20} {:>8} {:>9} {:>7} {:>9} {:>9}",
            "cohort", "leads", "converted", "rate", "p50", "p90"
        );
        for c in &g.conversions {
            println!(
                "{:<20} {:>8} {:>9} {:>6.1}% {:>9} {:>9}",
                format!("{} -> {}", stage_name(c.from), stage_name(c.to)),
                c.cohort,
                c.converted,
                c.rate * 100.0,
                span_text(c.p50.as_ref()),
                span_text(c.p90.as_ref())
            );
        }
        println!(
            "\n{:<14} {:>8} {:>9} {:>9}",
            "time in stage", "stays", "p50", "p90"
        );
        for t in &g.time_in_stage {
            println!(
                "{:<14} {:>8} {:>9} {:>9}",
                stage_name(t.stage),
                t.stays,
                span_text(t.p50.as_ref()),
                span_text(t.p90.as_ref())
            );
        }
        let rate = |r: Option<&pb::CohortRate>| {
            r.map_or_else(String::new, |r| {
                format!("{:.1}% ({} of {})", r.rate * 100.0, r.count, r.cohort)
            })
        };
        println!(
            "\nof the MQL cohort: rejected {}, recycled {}",
            rate(g.rejected.as_ref()),
            rate(g.recycled.as_ref())
        );
        if !g.reasons.is_empty() {
            println!("\n{:<14} {:<24} {:>6}", "move", "reason", "count");
            for r in &g.reasons {
                let by = pb::Move::try_from(r.r#move).map_or("?", |m| m.as_str_name());
                println!(
                    "{:<14} {:<24} {:>6}",
                    by.trim_start_matches("MOVE_"),
                    r.reason,
                    r.count
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Simulated leads a page; the server takes up to 1000, but each comes with
/// its transitions and guards, and a page must stay well inside a message.
const SIMULATION_PAGE: i32 = 250;

async fn simulate(file: &Path, remote: &Remote, top: usize) -> anyhow::Result<ExitCode> {
    let Some((source, _, _)) = policy_file(file)? else {
        return Ok(ExitCode::FAILURE);
    };
    let mut client = pb::policy_service_client::PolicyServiceClient::new(remote.connect().await?);
    let request = |as_of: Option<prost_types::Timestamp>, page_token: String| pb::SimulatePolicyRequest {
        policy: Some(pb::simulate_policy_request::Policy::Source(source.clone())),
        as_of,
        page_size: SIMULATION_PAGE,
        page_token,
    };
    let sim = client
        .simulate_policy(request(None, String::new()))
        .await
        .map_err(rpc_error)?
        .into_inner();
    println!(
        "{} leads under the active version {} against {}:\n",
        sim.leads,
        sim.active_version,
        file.display()
    );
    println!(
        "{:<14} {:>10} {:>10} {:>10}",
        "stage", "before", "after", "change"
    );
    for c in &sim.stages {
        println!(
            "{:<14} {:>10} {:>10} {:>+10}",
            stage_name(c.stage),
            c.before,
            c.after,
            c.after - c.before
        );
    }
    println!(
        "\n{} would move; {} would newly fail a qualification guard.",
        sim.movers, sim.newly_failing
    );
    // Leads come a page at a time, movers and newly failing mixed, by id:
    // read on until both lists are as long as asked (or all there is).
    let want = |total: i64| usize::try_from(total).unwrap_or(0).min(top);
    let (want_movers, want_failing) = (want(sim.movers), want(sim.newly_failing));
    let mut movers: Vec<pb::SimulatedLead> = Vec::new();
    let mut failing: Vec<pb::SimulatedLead> = Vec::new();
    let as_of = sim.as_of;
    let mut page = (sim.changed, sim.next_page_token);
    loop {
        for lead in page.0 {
            if lead.from_stage != lead.to_stage && movers.len() < want_movers {
                movers.push(lead.clone());
            }
            if !lead.newly_failing.is_empty() && failing.len() < want_failing {
                failing.push(lead);
            }
        }
        if page.1.is_empty() || (movers.len() >= want_movers && failing.len() >= want_failing) {
            break;
        }
        let next = client
            .simulate_policy(request(as_of, page.1))
            .await
            .map_err(rpc_error)?
            .into_inner();
        page = (next.changed, next.next_page_token);
    }
    if !movers.is_empty() {
        println!("\nWould move:");
        println!("{:<38} {:<24} deciding guards", "lead", "move");
        for l in &movers {
            let last = l.transitions.last();
            let guards: Vec<String> = last
                .map(|t| t.guards.iter().map(|g| printable(&g.detail)).collect())
                .unwrap_or_default();
            let why = if guards.is_empty() {
                last.map(|t| printable(&t.reason)).unwrap_or_default()
            } else {
                guards.join(", ")
            };
            println!(
                "{:<38} {:<24} {why}",
                lead_label(l),
                format!("{} -> {}", stage_name(l.from_stage), stage_name(l.to_stage))
            );
        }
        more(movers.len(), sim.movers);
    }
    if !failing.is_empty() {
        println!("\nWould newly fail a guard:");
        println!("{:<38} {:<14} failing guards", "lead", "stage");
        for l in &failing {
            let guards: Vec<String> = l
                .newly_failing
                .iter()
                .map(|g| printable(if g.detail.is_empty() { &g.guard } else { &g.detail }))
                .collect();
            println!(
                "{:<38} {:<14} {}",
                lead_label(l),
                stage_name(l.to_stage),
                guards.join(", ")
            );
        }
        more(failing.len(), sim.newly_failing);
    }
    Ok(ExitCode::SUCCESS)
}

/// A simulated lead by its external key where it has one, else its id.
fn lead_label(lead: &pb::SimulatedLead) -> String {
    if lead.external_key.is_empty() {
        lead.lead_id.clone()
    } else {
        printable(&lead.external_key)
    }
}

/// The line under a list cut at `listed` of `total`.
fn more(listed: usize, total: i64) {
    let listed = i64::try_from(listed).unwrap_or(i64::MAX);
    if total > listed {
        println!(
            "… and {} more (--top {total} or --all lists them)",
            total - listed
        );
    }
}

async fn activate(file: &Path, remote: &Remote) -> anyhow::Result<ExitCode> {
    let Some((source, _, _)) = policy_file(file)? else {
        return Ok(ExitCode::FAILURE);
    };
    let mut client = pb::policy_service_client::PolicyServiceClient::new(remote.connect().await?);
    let created = client
        .create_policy_version(pb::CreatePolicyVersionRequest {
            request_id: String::new(),
            source,
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .policy
        .context("the server returned no policy")?;
    let activated = client
        .activate_policy(pb::ActivatePolicyRequest {
            request_id: String::new(),
            version: created.version,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    println!(
        "policy {:?} is version {} and active",
        created.name, created.version
    );
    println!("{}", activated.note);
    let job = activated.job.context("the server started no re-score")?;
    let mut progress = client
        .watch_rescore(pb::WatchRescoreRequest { job_id: job.id })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let mut last = job;
    while let Some(update) = progress.message().await.map_err(rpc_error)? {
        if let Some(job) = update.job {
            eprint!("\r{}", progress_bar(&job));
            last = job;
        }
    }
    eprintln!();
    match pb::RescoreStatus::try_from(last.status) {
        Ok(pb::RescoreStatus::Done) => {
            println!("re-scored {} leads: {} transitions", last.done, last.transitions);
            Ok(ExitCode::SUCCESS)
        }
        Ok(pb::RescoreStatus::Superseded) => {
            eprintln!("the re-score was superseded by a later activation");
            Ok(ExitCode::FAILURE)
        }
        _ => {
            eprintln!("the re-score failed: {}", last.error);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `[#########...........]  45%  4500/10000 leads  120 transitions  900/s  ETA 6s`
fn progress_bar(job: &pb::RescoreJob) -> String {
    const WIDTH: i64 = 30;
    let total = job.total.max(1);
    let done = job.done.min(total);
    let filled = usize::try_from(done * WIDTH / total).unwrap_or(0);
    let empty = usize::try_from(WIDTH).unwrap_or(30).saturating_sub(filled);
    format!(
        "[{}{}] {:>3}%  {}/{} leads  {} transitions  {:.0}/s  ETA {:.0}s ",
        "#".repeat(filled),
        ".".repeat(empty),
        done * 100 / total,
        job.done,
        job.total,
        job.transitions,
        job.rate,
        job.eta_seconds
    )
}

//! The `leadflow` command line: run the service, migrate its database,
//! check and apply policies.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{Config, ConfigError, Layers, Resolved};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
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
    Serve(ServeArgs),
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

#[derive(Debug, Args)]
struct FunnelArgs {
    /// The server's gRPC address.
    #[arg(
        long = "against",
        env = "LEADFLOW_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// A token with analytics:read (needed unless the server runs without tokens).
    #[arg(long, env = "LEADFLOW_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
    /// [env: LEADFLOW_DATABASE_URL]
    #[arg(long)]
    database_url: Option<String>,
}

/// The service's settings as flags. Each can also come from the
/// configuration file (the flag's name with `_`) or an environment
/// variable; flags win over variables, variables over the file.
#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Address for gRPC. [env: LEADFLOW_LISTEN]
    #[arg(long)]
    listen: Option<String>,
    /// Address for the HTTP side: the funnel dashboard and /metrics.
    /// [env: LEADFLOW_HTTP_LISTEN]
    #[arg(long)]
    http_listen: Option<String>,
    /// json or pretty. [env: LEADFLOW_LOG_FORMAT]
    #[arg(long)]
    log_format: Option<String>,
    /// A tracing filter: `info`, `debug`, `leadflow_engine=debug,info`…
    /// [env: LEADFLOW_LOG_LEVEL]
    #[arg(long)]
    log_level: Option<String>,
    /// Seconds shutdown waits for calls in flight.
    /// [env: LEADFLOW_SHUTDOWN_GRACE_SECS]
    #[arg(long)]
    shutdown_grace_secs: Option<String>,
    /// Database connection pool size. [env: LEADFLOW_MAX_CONNECTIONS]
    #[arg(long)]
    max_connections: Option<String>,
    /// Milliseconds a call waits for a database connection (while the
    /// database restarts, say) before it is refused with UNAVAILABLE.
    /// [env: LEADFLOW_DB_ACQUIRE_TIMEOUT_MS]
    #[arg(long)]
    db_acquire_timeout_ms: Option<String>,
    /// Milliseconds between the timer worker's looks for due timers.
    /// [env: LEADFLOW_TIMER_POLL_MS]
    #[arg(long)]
    timer_poll_ms: Option<String>,
    /// Leads per transaction when a policy activation re-scores every lead.
    /// [env: LEADFLOW_RESCORE_BATCH]
    #[arg(long)]
    rescore_batch: Option<String>,
    /// Calls in flight at most; more are refused at once with
    /// RESOURCE_EXHAUSTED. [env: LEADFLOW_MAX_IN_FLIGHT]
    #[arg(long)]
    max_in_flight: Option<String>,
    /// Require a bearer token on every call even when listening on loopback
    /// (on any other address tokens are always required).
    /// [env: LEADFLOW_REQUIRE_AUTH]
    #[arg(long)]
    require_auth: Option<String>,
    /// TLS: the server's certificate chain (PEM). [env: LEADFLOW_TLS_CERT]
    #[arg(long)]
    tls_cert: Option<String>,
    /// TLS: the server's private key (PEM). [env: LEADFLOW_TLS_KEY]
    #[arg(long)]
    tls_key: Option<String>,
    /// Mutual TLS: clients must present a certificate this CA (PEM) signed.
    /// [env: LEADFLOW_TLS_CLIENT_CA]
    #[arg(long)]
    tls_client_ca: Option<String>,
    /// Calls a second per token (bursts of as many); more are refused with
    /// RESOURCE_EXHAUSTED and a retry delay. 0: unlimited.
    /// [env: LEADFLOW_TOKEN_RATE_LIMIT]
    #[arg(long)]
    token_rate_limit: Option<String>,
    /// OTLP/gRPC endpoint for spans and metrics, e.g. http://collector:4317.
    /// [env: OTEL_EXPORTER_OTLP_ENDPOINT, LEADFLOW_OTLP_ENDPOINT]
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// service.name of spans and metrics (default leadflow).
    /// [env: OTEL_SERVICE_NAME, LEADFLOW_SERVICE_NAME]
    #[arg(long)]
    service_name: Option<String>,
}

impl ServeArgs {
    /// The flags given, by setting name.
    fn into_flags(self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("database_url", self.database.database_url),
            ("listen", self.listen),
            ("http_listen", self.http_listen),
            ("log_format", self.log_format),
            ("log_level", self.log_level),
            ("shutdown_grace_secs", self.shutdown_grace_secs),
            ("max_connections", self.max_connections),
            ("db_acquire_timeout_ms", self.db_acquire_timeout_ms),
            ("timer_poll_ms", self.timer_poll_ms),
            ("rescore_batch", self.rescore_batch),
            ("max_in_flight", self.max_in_flight),
            ("require_auth", self.require_auth),
            ("tls_cert", self.tls_cert),
            ("tls_key", self.tls_key),
            ("tls_client_ca", self.tls_client_ca),
            ("token_rate_limit", self.token_rate_limit),
            ("otlp_endpoint", self.otlp_endpoint),
            ("service_name", self.service_name),
        ]
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Prints the effective configuration as TOML, each setting with where
    /// it came from; secrets redacted.
    Show(ServeArgs),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Checks a policy file; prints every problem with its path.
    Validate { file: PathBuf },
    /// Shows what a policy file would do to every current lead on a running
    /// server: counts per stage before and after, and the top movers.
    Simulate {
        file: PathBuf,
        /// The server's gRPC address.
        #[arg(
            long = "against",
            env = "LEADFLOW_SERVER",
            default_value = "http://127.0.0.1:50051"
        )]
        server: String,
        /// Movers to list.
        #[arg(long, default_value_t = 20)]
        top: u16,
    },
    /// Stores a policy file as a new version on a running server, activates
    /// it and follows the re-score of every lead; fails if the re-score does.
    #[command(alias = "apply")]
    Activate {
        file: PathBuf,
        /// The server's gRPC address.
        #[arg(
            long = "against",
            alias = "server",
            env = "LEADFLOW_SERVER",
            default_value = "http://127.0.0.1:50051"
        )]
        server: String,
    },
}

/// The configuration: defaults, the file, the environment, then `flags`.
fn resolve(file: Option<&Path>, flags: Vec<(&'static str, Option<String>)>) -> Result<Resolved, ConfigError> {
    let mut layers = Layers::default();
    if let Some(file) = file {
        layers.file(file)?;
    }
    layers.env(|name| std::env::var(name).ok());
    for (name, value) in flags {
        layers.flag(name, value);
    }
    layers.resolve()
}

fn config(file: Option<&Path>, flags: Vec<(&'static str, Option<String>)>) -> Result<Config, ConfigError> {
    Ok(resolve(file, flags)?.config)
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
            if e.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let config = config(cli.config.as_deref(), args.into_flags())?;
            let _telemetry = crate::telemetry::init(&config, std::io::stderr)?;
            crate::serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Show(args)) => {
            print!("{}", resolve(cli.config.as_deref(), args.into_flags())?.show());
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(args) => {
            let config = config(cli.config.as_deref(), vec![("database_url", args.database_url)])?;
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
        Command::Workspace(command) => workspace_command(cli.config.as_deref(), command).await,
        Command::Token(command) => token_command(cli.config.as_deref(), command).await,
        Command::Policy(PolicyCommand::Activate { file, server }) => activate(&file, &server).await,
        Command::Policy(PolicyCommand::Simulate { file, server, top }) => simulate(&file, &server, top).await,
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
            if engine.store().workspace_exists(&name).await? {
                eprintln!("workspace {name:?} exists already");
                return Ok(ExitCode::FAILURE);
            }
            engine.bootstrap(&name, crate::DEFAULT_POLICY).await?;
            println!("created workspace {name}");
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::List { database } => {
            let engine = management_engine(file, database).await?;
            println!("{:<32} {:>14}  created", "workspace", "active policy");
            for w in engine.store().workspace_list().await? {
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
            if !engine.store().workspace_exists(&workspace).await? {
                eprintln!("no workspace {workspace:?} (leadflow workspace create {workspace})");
                return Ok(ExitCode::FAILURE);
            }
            let now = engine.now();
            let secret = crate::auth::new_secret()?;
            let token = leadflow_store::TokenRecord {
                workspace,
                id: uuid::Uuid::now_v7().to_string(),
                name,
                scopes,
                created_at: now,
                expires_at: lifetime.map(|span| now.saturating_add(span)),
                revoked_at: None,
            };
            engine
                .store()
                .insert_token(&token, &crate::auth::secret_hash(&secret))
                .await?;
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
            for t in engine.store().tokens(workspace.as_deref()).await? {
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
            let n = engine
                .store()
                .revoke_token(&workspace, &id_or_name, engine.now())
                .await?;
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

/// Reads a policy file and reports its problems; `None` if it has some.
fn policy_file(file: &Path) -> anyhow::Result<Option<String>> {
    let source = read(file)?;
    if let Err(errors) = leadflow_domain::Policy::from_toml(&source) {
        for e in &errors.0 {
            eprintln!("{}: {e}", file.display());
        }
        eprintln!("{} problem(s) in {}", errors.0.len(), file.display());
        return Ok(None);
    }
    Ok(Some(source))
}

async fn connect(server: &str) -> anyhow::Result<tonic::transport::Channel> {
    tonic::transport::Endpoint::from_shared(server.to_owned())
        .with_context(|| format!("bad server address {server:?}"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach leadflow at {server}"))
}

fn rpc_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", s.code(), s.message())
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
    let mut client = pb::analytics_service_client::AnalyticsServiceClient::new(connect(&args.server).await?);
    let mut groups = Vec::new();
    let mut page_token = String::new();
    let (start, end) = (query.period.start, query.period.end);
    loop {
        let mut request = tonic::Request::new(pb::GetFunnelRequest {
            period: Some(crate::services::period_out(query.period)),
            group_by: group_by.into(),
            source_channel: args.channel.clone().unwrap_or_default(),
            page_size: 200,
            page_token,
            ..Default::default()
        });
        if let Some(token) = &args.token {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", token.trim())
                    .parse()
                    .context("the token is not a valid header value")?,
            );
        }
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

async fn simulate(file: &Path, server: &str, top: u16) -> anyhow::Result<ExitCode> {
    let Some(source) = policy_file(file)? else {
        return Ok(ExitCode::FAILURE);
    };
    let mut client = pb::policy_service_client::PolicyServiceClient::new(connect(server).await?);
    let sim = client
        .simulate_policy(pb::SimulatePolicyRequest {
            policy: Some(pb::simulate_policy_request::Policy::Source(source)),
            page_size: i32::from(top),
            ..Default::default()
        })
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
    let movers: Vec<&pb::SimulatedLead> = sim
        .changed
        .iter()
        .filter(|l| l.from_stage != l.to_stage)
        .collect();
    if !movers.is_empty() {
        println!("\n{:<38} {:<24} deciding guards", "lead", "move");
        for l in movers {
            let guards: Vec<String> = l
                .transitions
                .last()
                .map(|t| t.guards.iter().map(|g| g.detail.clone()).collect())
                .unwrap_or_default();
            let reason = l.transitions.last().map(|t| t.reason.clone()).unwrap_or_default();
            let why = if guards.is_empty() {
                reason
            } else {
                guards.join(", ")
            };
            println!(
                "{:<38} {:<24} {why}",
                l.lead_id,
                format!("{} -> {}", stage_name(l.from_stage), stage_name(l.to_stage))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn activate(file: &Path, server: &str) -> anyhow::Result<ExitCode> {
    let Some(source) = policy_file(file)? else {
        return Ok(ExitCode::FAILURE);
    };
    let channel = connect(server).await?;
    let mut client = pb::policy_service_client::PolicyServiceClient::new(channel);
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

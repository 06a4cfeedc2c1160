//! Configuration: one typed [`Config`]. Its fields are the settings: serde
//! reads them from a TOML file, clap makes them flags, and figment layers
//! them — defaults, then the file, then `LEADFLOW_*` (and the standard
//! `OTEL_*`, and `RUST_LOG` for the log level) environment variables, then
//! flags — keeping where each value came from. [`Config::validate`] then
//! checks every value, and a bad one is named with its source: a flag, a
//! variable, or the file and its line.
//!
//! Adding a setting is adding a field (its doc comment is its help) and,
//! if its values are bounded, a line of `validate`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object a line, for collectors.
    Json,
    /// Human-readable.
    #[default]
    Pretty,
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Json => "json",
            Self::Pretty => "pretty",
        })
    }
}

/// A secret setting: it never prints (a database URL prints without its
/// password), whether in a log line, an error or `leadflow config show`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

/// The database's URL, which may hold a password.
pub type DatabaseUrl = Secret;

impl Secret {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&leadflow_store::redact(&self.0))
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&leadflow_store::redact(&self.0))
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Everything `leadflow serve` can be told. Each field is a setting of the
/// same name in the file, a flag (`--max-connections`) and a variable
/// (`LEADFLOW_MAX_CONNECTIONS`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// sqlite://PATH or postgres://USER@HOST/DB. A PostgreSQL on loopback is
    /// reached without TLS unless the URL sets sslmode.
    #[arg(long, default_value_t = Config::default().database_url)]
    pub database_url: DatabaseUrl,
    /// Address for gRPC.
    #[arg(long, default_value_t = Config::default().listen)]
    pub listen: SocketAddr,
    /// Address for the HTTP side: the funnel dashboard and /metrics.
    #[arg(long, default_value_t = Config::default().http_listen)]
    pub http_listen: SocketAddr,
    /// How log lines look.
    #[arg(long, value_enum, default_value_t = Config::default().log_format)]
    pub log_format: LogFormat,
    /// Which log lines are written: a tracing filter, `info`, `debug`,
    /// `leadflow_engine=debug,info`… (the flag beats `RUST_LOG`).
    #[arg(long, default_value_t = Config::default().log_level)]
    pub log_level: String,
    /// Seconds shutdown waits for calls in flight.
    #[arg(long, default_value_t = Config::default().shutdown_grace_secs)]
    pub shutdown_grace_secs: u64,
    /// Database connection pool size.
    #[arg(long, default_value_t = Config::default().max_connections)]
    pub max_connections: u32,
    /// Milliseconds a call waits for a database connection (while the
    /// database restarts, say) before it is refused: UNAVAILABLE, or
    /// RESOURCE_EXHAUSTED when every connection was in use.
    #[arg(long, default_value_t = Config::default().db_acquire_timeout_ms)]
    pub db_acquire_timeout_ms: u64,
    /// Milliseconds between the timer worker's looks for due timers.
    #[arg(long, default_value_t = Config::default().timer_poll_ms)]
    pub timer_poll_ms: u64,
    /// Leads per transaction when a policy activation re-scores every lead.
    #[arg(long, default_value_t = Config::default().rescore_batch)]
    pub rescore_batch: u64,
    /// Calls in flight at most; more are refused at once with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = Config::default().max_in_flight)]
    pub max_in_flight: usize,
    /// Require a bearer token on every call even when listening on loopback
    /// (on any other address tokens are always required).
    #[arg(long)]
    pub require_auth: bool,
    /// TLS: the server's certificate chain (PEM), with tls_key.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// TLS: the server's private key (PEM), with tls_cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate this CA (PEM) signed.
    #[arg(long)]
    pub tls_client_ca: Option<PathBuf>,
    /// Calls a second per token (bursts of as many); more are refused with
    /// RESOURCE_EXHAUSTED and a retry delay. 0: unlimited.
    #[arg(long, default_value_t = Config::default().token_rate_limit)]
    pub token_rate_limit: u32,
    /// OTLP/gRPC endpoint for spans and metrics, e.g. http://collector:4317.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// service.name of spans and metrics.
    #[arg(long, default_value_t = Config::default().service_name)]
    pub service_name: String,
}

/// The files of the server's TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Mutual TLS: the CA that signs client certificates.
    pub client_ca: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: DatabaseUrl::new("sqlite://leadflow.db"),
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            log_format: LogFormat::Pretty,
            log_level: "info,sea_orm_migration=warn,sqlx=warn".to_owned(),
            shutdown_grace_secs: 10,
            max_connections: 16,
            db_acquire_timeout_ms: 5_000,
            timer_poll_ms: 1_000,
            rescore_batch: 200,
            max_in_flight: 256,
            require_auth: false,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            token_rate_limit: 1_000,
            otlp_endpoint: None,
            service_name: "leadflow".to_owned(),
        }
    }
}

impl Config {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn db_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout_ms)
    }

    pub fn timer_poll(&self) -> Duration {
        Duration::from_millis(self.timer_poll_ms)
    }

    /// The server's TLS, when it has a certificate and a key (`validate`
    /// refuses one without the other).
    pub fn tls(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// Every value checked: the first bad one, as (setting, why).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        fn within<T: PartialOrd + std::fmt::Display>(
            key: &'static str,
            value: T,
            range: std::ops::RangeInclusive<T>,
        ) -> Result<(), (&'static str, String)> {
            if range.contains(&value) {
                Ok(())
            } else {
                Err((
                    key,
                    format!("{value} is not from {} to {}", range.start(), range.end()),
                ))
            }
        }
        let url = self.database_url.expose();
        if !["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|s| url.starts_with(s))
        {
            return Err((
                "database_url",
                format!("sqlite://PATH or postgres://…, not {}", self.database_url),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|e| ("log_level", format!("{:?}: {e}", self.log_level)))?;
        within("shutdown_grace_secs", self.shutdown_grace_secs, 0..=3600)?;
        within("max_connections", self.max_connections, 1..=1000)?;
        within("db_acquire_timeout_ms", self.db_acquire_timeout_ms, 10..=300_000)?;
        within("timer_poll_ms", self.timer_poll_ms, 10..=3_600_000)?;
        within("rescore_batch", self.rescore_batch, 1..=10_000)?;
        within("max_in_flight", self.max_in_flight, 1..=100_000)?;
        within("token_rate_limit", self.token_rate_limit, 0..=1_000_000)?;
        for (key, path) in [
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
            ("tls_client_ca", &self.tls_client_ca),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err((key, "an empty path".to_owned()));
            }
        }
        match (&self.tls_cert, &self.tls_key, &self.tls_client_ca) {
            (Some(_), None, _) => return Err(("tls_cert", "TLS needs tls_key too".to_owned())),
            (None, Some(_), _) => return Err(("tls_key", "TLS needs tls_cert too".to_owned())),
            (None, None, Some(_)) => return Err(("tls_client_ca", "TLS needs tls_cert too".to_owned())),
            _ => {}
        }
        if let Some(url) = &self.otlp_endpoint {
            let ok = url.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
            });
            if !ok {
                return Err((
                    "otlp_endpoint",
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        if self.service_name.trim().is_empty() {
            return Err(("service_name", "an empty name".to_owned()));
        }
        Ok(())
    }

    /// A setting's default as the help and `config show` print it; `None`
    /// for one unset by default.
    pub fn default_text(key: &str) -> Option<String> {
        match Value::serialize(Self::default()) {
            Ok(Value::Dict(_, values)) => match values.get(key)? {
                Value::String(_, s) => Some(s.clone()),
                Value::Num(_, n) => Some(number(n)),
                Value::Bool(_, b) => Some(b.to_string()),
                _ => None,
            },
            _ => None,
        }
    }

    /// The settings, in the order they are declared.
    pub fn keys() -> Vec<String> {
        use clap::Args as _;
        Self::augment_args(clap::Command::new("settings"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect()
    }
}

/// The environment variables of a setting, later ones winning.
pub fn variables(key: &str) -> Vec<String> {
    let standard: &[&str] = match key {
        "otlp_endpoint" => &["OTEL_EXPORTER_OTLP_ENDPOINT"],
        "service_name" => &["OTEL_SERVICE_NAME"],
        "log_level" => &["RUST_LOG"],
        _ => &[],
    };
    standard
        .iter()
        .map(|s| (*s).to_owned())
        .chain([format!("LEADFLOW_{}", key.to_ascii_uppercase())])
        .collect()
}

/// Where a setting's value came from, for error messages and
/// `leadflow config show`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    /// A line of the configuration file.
    File {
        path: PathBuf,
        line: usize,
    },
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File { path, line } => write!(f, "{} line {line}", path.display()),
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A setting the configuration could not take, and where it came from.
/// The process exits with status 2 on it.
#[derive(Debug, thiserror::Error)]
#[error("bad {key} from {origin}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub origin: Source,
    pub message: String,
}

/// One layer's values, named as its source is: figment keeps the name
/// with every value, so a value's source is known after the merge.
struct Layer {
    name: String,
    file: Option<PathBuf>,
    values: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let metadata = Metadata::named(self.name.clone());
        match &self.file {
            Some(path) => metadata.source(path.as_path()),
            None => metadata,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// The layers of a configuration, defaults first.
#[derive(Debug)]
pub struct Layers {
    figment: Figment,
    /// The file's text, for the line of a setting.
    file: Option<(PathBuf, String)>,
}

impl Default for Layers {
    fn default() -> Self {
        Self {
            figment: Figment::from(figment::providers::Serialized::defaults(Config::default())),
            file: None,
        }
    }
}

impl Layers {
    /// Adds a TOML file of settings.
    pub fn file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: "config".to_owned(),
            origin: Source::File {
                path: path.to_owned(),
                line: 1,
            },
            message: format!("cannot read it: {e}"),
        })?;
        self.toml(path, &text)
    }

    /// Adds the settings of `text`, a TOML document read from `path`.
    pub fn toml(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
            key: "config".to_owned(),
            origin: Source::File {
                path: path.to_owned(),
                line: e.span().map_or(1, |s| line_of(text, s.start)),
            },
            message: e.message().to_owned(),
        })?;
        let values = match Value::serialize(&table) {
            Ok(Value::Dict(_, values)) => values,
            _ => Dict::new(),
        };
        self.figment = std::mem::take(&mut self.figment).merge(Layer {
            name: "file".to_owned(),
            file: Some(path.to_owned()),
            values,
        });
        self.file = Some((path.to_owned(), text.to_owned()));
        Ok(())
    }

    /// Adds the settings of the environment, as `var` reads it. An empty
    /// variable counts as unset (as OpenTelemetry's do).
    pub fn env(&mut self, var: impl Fn(&str) -> Option<String>) {
        for key in Config::keys() {
            for name in variables(&key) {
                if let Some(value) = var(&name).filter(|v| !v.trim().is_empty()) {
                    let value = value.parse::<Value>().unwrap_or(Value::from(value));
                    self.given(format!("environment variable {name}"), &key, value);
                }
            }
        }
    }

    /// Adds the flags given on the command line: those of `matches` (the
    /// settings' arguments) whose value came from the command line, as
    /// `given` has them parsed.
    pub fn flags(&mut self, given: &Config, matches: &clap::ArgMatches) {
        let Ok(Value::Dict(_, values)) = Value::serialize(given) else {
            return;
        };
        for key in Config::keys() {
            if matches.value_source(&key) == Some(clap::parser::ValueSource::CommandLine)
                && let Some(value) = values.get(&key)
            {
                let flag = format!("--{}", key.replace('_', "-"));
                self.given(format!("flag {flag}"), &key, value.clone());
            }
        }
    }

    /// Adds one flag's value, by the setting's name (for callers that take
    /// a setting from a flag of their own, such as `--database-url`).
    pub fn flag(&mut self, key: &str, value: Option<String>) {
        if let Some(value) = value {
            let flag = format!("--{}", key.replace('_', "-"));
            let value = value.parse::<Value>().unwrap_or(Value::from(value));
            self.given(format!("flag {flag}"), key, value);
        }
    }

    fn given(&mut self, name: String, key: &str, value: Value) {
        let mut values = Dict::new();
        values.insert(key.to_owned(), value);
        self.figment = std::mem::take(&mut self.figment).merge(Layer {
            name,
            file: None,
            values,
        });
    }

    /// Where the value of `key` came from.
    fn source(&self, key: &str) -> Source {
        match self.figment.find_metadata(key) {
            Some(m) if m.source.as_ref().and_then(|s| s.file_path()).is_some() => {
                let path = m
                    .source
                    .as_ref()
                    .and_then(|s| s.file_path())
                    .map(Path::to_owned)
                    .unwrap_or_default();
                let line = self.file.as_ref().map_or(1, |(_, text)| key_line(text, key));
                Source::File { path, line }
            }
            Some(m) if m.name.starts_with("environment variable ") => {
                Source::Env(m.name.trim_start_matches("environment variable ").to_owned())
            }
            Some(m) if m.name.starts_with("flag ") => {
                Source::Flag(m.name.trim_start_matches("flag ").to_owned())
            }
            _ => Source::Default,
        }
    }

    /// The configuration: defaults, then these layers in order; every value
    /// checked, a bad one named with its source.
    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        let config: Config = self.figment.extract().map_err(|e| self.explain(e))?;
        config.validate().map_err(|(key, message)| ConfigError {
            key: key.to_owned(),
            origin: self.source(key),
            message,
        })?;
        let sources = Config::keys()
            .into_iter()
            .map(|key| {
                let source = self.source(&key);
                (key, source)
            })
            .collect();
        Ok(Resolved { config, sources })
    }

    /// A value figment could not read as its setting's type.
    fn explain(&self, e: figment::Error) -> ConfigError {
        use figment::error::{Actual, Kind};
        let key = e.path.first().cloned().unwrap_or_else(|| "config".to_owned());
        match &e.kind {
            Kind::UnknownField(name, _) => ConfigError {
                key: "config".to_owned(),
                origin: match self.file.as_ref() {
                    Some((path, text)) => Source::File {
                        path: path.clone(),
                        line: key_line(text, name),
                    },
                    None => Source::Default,
                },
                message: format!("no setting is called {name:?}"),
            },
            Kind::InvalidType(actual, expected) => {
                let shown = match actual {
                    Actual::Str(s) => format!("{s:?}"),
                    Actual::Signed(n) => n.to_string(),
                    Actual::Unsigned(n) => n.to_string(),
                    Actual::Bool(b) => b.to_string(),
                    other => format!("a {other}"),
                };
                let whole = [
                    "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
                ];
                let message = if expected.contains("bool") {
                    format!("{shown} is not true or false")
                } else if expected.contains("integer") || whole.contains(&expected.as_str()) {
                    format!("{shown} is not a whole number")
                } else {
                    match actual {
                        Actual::Str(_) | Actual::Signed(_) | Actual::Unsigned(_) | Actual::Bool(_) => {
                            format!("{shown} is not {expected}")
                        }
                        other => format!("a string, a whole number or true/false, not {other}"),
                    }
                };
                ConfigError {
                    origin: self.source(&key),
                    key,
                    message,
                }
            }
            _ => {
                let given = match self.figment.find_value(&key) {
                    Ok(Value::String(_, s)) => format!("{s:?}"),
                    Ok(other) => format!("{other:?}"),
                    Err(_) => String::new(),
                };
                let message = match &e.kind {
                    Kind::Message(m) if m.contains("socket address") => {
                        format!("{given} is not an address like 127.0.0.1:50051 or [::]:50051")
                    }
                    kind => format!("{given} is not valid here: {kind}"),
                };
                ConfigError {
                    origin: self.source(&key),
                    key,
                    message,
                }
            }
        }
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// The line where `key` is set at the top level of a TOML document, read
/// with the document's spans.
fn key_line(text: &str, key: &str) -> usize {
    let Ok(table) = toml::de::DeTable::parse(text) else {
        return 1;
    };
    table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map_or(1, |(k, _)| line_of(text, k.span().start))
}

/// A configuration and where each of its settings came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub config: Config,
    pub sources: Vec<(String, Source)>,
}

impl Resolved {
    /// The effective configuration as TOML, each setting with its source;
    /// secrets redacted.
    pub fn show(&self) -> String {
        let shown = Config {
            database_url: DatabaseUrl::new(self.config.database_url.to_string()),
            ..self.config.clone()
        };
        let values = match Value::serialize(&shown) {
            Ok(Value::Dict(_, values)) => values,
            _ => Dict::new(),
        };
        let mut out = String::new();
        for (key, source) in &self.sources {
            let line = match values.get(key) {
                Some(Value::String(_, s)) => format!("{key} = {}", quoted(s)),
                Some(Value::Num(_, n)) => format!("{key} = {}", number(n)),
                Some(Value::Bool(_, b)) => format!("{key} = {b}"),
                _ => format!("# {key} is not set"),
            };
            out.push_str(&format!("{line:<60} # {source}\n"));
        }
        out
    }
}

fn number(n: &figment::value::Num) -> String {
    n.to_u128()
        .map(|u| u.to_string())
        .or_else(|| n.to_i128().map(|i| i.to_string()))
        .or_else(|| n.to_f64().map(|f| f.to_string()))
        .unwrap_or_default()
}

/// `text` as a TOML basic string.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn file(text: &str) -> Layers {
        let mut layers = Layers::default();
        layers
            .toml(Path::new("leadflow.toml"), text)
            .expect("a valid file");
        layers
    }

    #[test]
    fn layers_apply_in_order_and_secrets_never_print() {
        let mut layers = file(
            "# settings\ndatabase_url = \"postgres://u:secret@db/leadflow\"\nlisten = \"0.0.0.0:6000\"\nmax_connections = 4\n",
        );
        layers.env(env(&[
            ("LEADFLOW_LISTEN", "0.0.0.0:6001"),
            ("LEADFLOW_MAX_CONNECTIONS", "8"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_SERVICE_NAME", "leadflow-eu"),
        ]));
        layers.flag("listen", Some("127.0.0.1:7000".to_owned()));
        layers.flag("http_listen", None);
        let resolved = layers.resolve().expect("valid");
        let config = &resolved.config;
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.max_connections, 8);
        assert_eq!(config.otlp_endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(config.service_name, "leadflow-eu");
        assert_eq!(config.http_listen, Config::default().http_listen);
        let shown = resolved.show();
        assert!(!shown.contains("secret"), "{shown}");
        for expected in [
            "database_url = \"postgres://u:***@db/leadflow\"",
            "# leadflow.toml line 2",
            "listen = \"127.0.0.1:7000\"",
            "# flag --listen",
            "max_connections = 8",
            "# environment variable LEADFLOW_MAX_CONNECTIONS",
            "# environment variable OTEL_EXPORTER_OTLP_ENDPOINT",
            "http_listen = \"127.0.0.1:8080\"",
            "# tls_cert is not set",
        ] {
            assert!(shown.contains(expected), "{expected:?} not in\n{shown}");
        }
        // what it prints is a configuration file again
        let again = file(&shown).resolve().expect("show prints valid TOML");
        assert_eq!(again.config.listen, config.listen);
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn bad_values_name_their_source() {
        let bad = |layers: Layers| layers.resolve().expect_err("refused").to_string();
        let message = bad(file("listen = \"0.0.0.0:6000\"\n\nmax_connections = 0\n"));
        assert_eq!(
            message,
            "bad max_connections from leadflow.toml line 3: 0 is not from 1 to 1000"
        );

        let mut layers = file("listen = \"0.0.0.0:6000\"\n");
        layers.env(env(&[("LEADFLOW_DB_ACQUIRE_TIMEOUT_MS", "soon")]));
        assert!(bad(layers).starts_with(
            "bad db_acquire_timeout_ms from environment variable LEADFLOW_DB_ACQUIRE_TIMEOUT_MS"
        ),);

        let mut layers = Layers::default();
        layers.flag("listen", Some("localhost".to_owned()));
        let message = bad(layers);
        assert!(
            message.starts_with("bad listen from flag --listen: \"localhost\""),
            "{message}"
        );

        let mut layers = Layers::default();
        layers.flag("database_url", Some("mysql://u:pw@db/x".to_owned()));
        let message = bad(layers);
        assert!(
            message.contains("flag --database-url") && !message.contains("pw"),
            "{message}"
        );

        let mut layers = Layers::default();
        layers.env(env(&[("LEADFLOW_TLS_CERT", "/etc/leadflow/cert.pem")]));
        assert_eq!(
            bad(layers),
            "bad tls_cert from environment variable LEADFLOW_TLS_CERT: TLS needs tls_key too"
        );

        for (text, expected) in [
            (
                "listen = \"0.0.0.0:1\"\ncolour = 1\n",
                "bad config from leadflow.toml line 2: no setting is called \"colour\"",
            ),
            (
                "require_auth = \"maybe\"\n",
                "bad require_auth from leadflow.toml line 1: \"maybe\" is not true or false",
            ),
            (
                "log_format = [1]\n",
                "bad log_format from leadflow.toml line 1: a string, a whole number or true/false, not sequence",
            ),
            (
                "otlp_endpoint = \"collector:4317\"\n",
                "bad otlp_endpoint from leadflow.toml line 1: \"collector:4317\" is not an http:// or https:// URL",
            ),
        ] {
            let mut layers = Layers::default();
            let error = layers
                .toml(Path::new("leadflow.toml"), text)
                .and_then(|()| layers.resolve().map(drop))
                .expect_err(text);
            assert_eq!(error.to_string(), expected);
        }
        let mut layers = Layers::default();
        let broken = layers
            .toml(Path::new("leadflow.toml"), "listen = \"0.0.0.0:1\"\nlisten = \n")
            .expect_err("not TOML");
        assert!(
            broken
                .to_string()
                .starts_with("bad config from leadflow.toml line 2"),
            "{broken}"
        );
    }

    #[test]
    fn empty_variables_are_unset_and_endpoints_are_urls() {
        let mut layers = Layers::default();
        layers.env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            ("OTEL_SERVICE_NAME", " "),
        ]));
        let config = layers.resolve().expect("empty variables are unset").config;
        assert_eq!(
            (config.otlp_endpoint, config.service_name.as_str()),
            (None, "leadflow")
        );
        for (url, ok) in [
            ("http://x", true),
            ("https://collector.example:4317", true),
            ("http://bad host:4317", false),
            ("ftp://collector:21", false),
            ("http://", false),
        ] {
            let mut layers = Layers::default();
            layers.flag("otlp_endpoint", Some(url.to_owned()));
            assert_eq!(layers.resolve().is_ok(), ok, "{url}");
        }
        let mut layers = Layers::default();
        layers.env(env(&[("LEADFLOW_TLS_CLIENT_CA", "/etc/leadflow/ca.pem")]));
        assert_eq!(
            layers.resolve().expect_err("no certificate").to_string(),
            "bad tls_client_ca from environment variable LEADFLOW_TLS_CLIENT_CA: TLS needs tls_cert too"
        );
    }

    /// `--log-level` beats `RUST_LOG`, which beats the file.
    #[test]
    fn the_log_level_flag_beats_rust_log() {
        let mut layers = file("log_level = \"warn\"\n");
        layers.env(env(&[("RUST_LOG", "debug")]));
        assert_eq!(layers.resolve().expect("valid").config.log_level, "debug");
        layers.flag("log_level", Some("error".to_owned()));
        let resolved = layers.resolve().expect("valid");
        assert_eq!(resolved.config.log_level, "error");
        assert!(resolved.show().contains("# flag --log-level"));
        let mut layers = Layers::default();
        layers.env(env(&[("RUST_LOG", "debug"), ("LEADFLOW_LOG_LEVEL", "info")]));
        assert_eq!(layers.resolve().expect("valid").config.log_level, "info");
    }

    #[test]
    fn every_setting_is_a_flag_a_variable_and_a_key() {
        let keys = Config::keys();
        assert!(keys.len() >= 18, "{keys:?}");
        let defaults = Layers::default().resolve().expect("defaults are valid");
        let shown = defaults.show();
        for key in &keys {
            assert!(
                shown.contains(&format!("{key} = ")) || shown.contains(&format!("# {key} is not set")),
                "{key}"
            );
            assert!(variables(key).contains(&format!("LEADFLOW_{}", key.to_ascii_uppercase())));
        }
    }
}

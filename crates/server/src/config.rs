//! Configuration: defaults, then a TOML file, then `LEADFLOW_*` and `OTEL_*`
//! environment variables, then flags — each value checked once, before
//! anything starts, and a bad one named with where it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object a line, for collectors.
    Json,
    /// Human-readable.
    #[default]
    Pretty,
}

/// A database URL that never prints its password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&leadflow_store::redact(&self.0))
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&leadflow_store::redact(&self.0))
    }
}

/// Everything `leadflow serve` can be told.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub listen: SocketAddr,
    /// Where the HTTP side (the funnel dashboard) listens.
    pub http_listen: SocketAddr,
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `leadflow=debug,info`.
    pub log_level: String,
    /// How long shutdown waits for calls in flight.
    pub shutdown_grace: Duration,
    /// Database pool size.
    pub max_connections: u32,
    /// How long a call waits for a database connection (while the database
    /// restarts, say) before it is refused: UNAVAILABLE, or
    /// RESOURCE_EXHAUSTED when every connection was in use.
    pub db_acquire_timeout: Duration,
    /// How often the timer worker looks for due timers.
    pub timer_poll: Duration,
    /// Leads per transaction of a policy re-score.
    pub rescore_batch: u64,
    /// Calls in flight at most; more are refused with RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// Tokens on every call even on loopback (elsewhere they always are).
    pub require_auth: bool,
    /// TLS: the server's certificate chain and key (PEM); with
    /// `tls_client_ca`, clients must present a certificate it signed.
    pub tls: Option<TlsFiles>,
    /// Calls a second per token (bursts of as many); 0: unlimited.
    pub token_rate_limit: u32,
    /// Where spans go over OTLP/gRPC; nowhere when unset (calls still get
    /// trace ids, which events carry).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans and metrics.
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
            shutdown_grace: Duration::from_secs(10),
            max_connections: 16,
            db_acquire_timeout: Duration::from_secs(5),
            timer_poll: Duration::from_secs(1),
            rescore_batch: 200,
            max_in_flight: 256,
            require_auth: false,
            tls: None,
            token_rate_limit: 1_000,
            otlp_endpoint: None,
            service_name: "leadflow".to_owned(),
        }
    }
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
    Env(&'static str),
    /// A command-line flag.
    Flag(&'static str),
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
    pub key: &'static str,
    pub origin: Source,
    pub message: String,
}

/// A setting: its name in the file, its environment variables (later ones
/// win) and its flag.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    pub name: &'static str,
    pub env: &'static [&'static str],
    pub flag: &'static str,
    /// Printed redacted.
    pub secret: bool,
}

const fn key(name: &'static str, env: &'static [&'static str], flag: &'static str) -> Key {
    Key {
        name,
        env,
        flag,
        secret: false,
    }
}

/// Every setting, in the order `leadflow config show` prints them.
pub const KEYS: &[Key] = &[
    Key {
        secret: true,
        ..key("database_url", &["LEADFLOW_DATABASE_URL"], "--database-url")
    },
    key("listen", &["LEADFLOW_LISTEN"], "--listen"),
    key("http_listen", &["LEADFLOW_HTTP_LISTEN"], "--http-listen"),
    key("log_format", &["LEADFLOW_LOG_FORMAT"], "--log-format"),
    key("log_level", &["LEADFLOW_LOG_LEVEL"], "--log-level"),
    key(
        "shutdown_grace_secs",
        &["LEADFLOW_SHUTDOWN_GRACE_SECS"],
        "--shutdown-grace-secs",
    ),
    key(
        "max_connections",
        &["LEADFLOW_MAX_CONNECTIONS"],
        "--max-connections",
    ),
    key(
        "db_acquire_timeout_ms",
        &["LEADFLOW_DB_ACQUIRE_TIMEOUT_MS"],
        "--db-acquire-timeout-ms",
    ),
    key("timer_poll_ms", &["LEADFLOW_TIMER_POLL_MS"], "--timer-poll-ms"),
    key("rescore_batch", &["LEADFLOW_RESCORE_BATCH"], "--rescore-batch"),
    key("max_in_flight", &["LEADFLOW_MAX_IN_FLIGHT"], "--max-in-flight"),
    key("require_auth", &["LEADFLOW_REQUIRE_AUTH"], "--require-auth"),
    key("tls_cert", &["LEADFLOW_TLS_CERT"], "--tls-cert"),
    key("tls_key", &["LEADFLOW_TLS_KEY"], "--tls-key"),
    key("tls_client_ca", &["LEADFLOW_TLS_CLIENT_CA"], "--tls-client-ca"),
    key(
        "token_rate_limit",
        &["LEADFLOW_TOKEN_RATE_LIMIT"],
        "--token-rate-limit",
    ),
    key(
        "otlp_endpoint",
        &["OTEL_EXPORTER_OTLP_ENDPOINT", "LEADFLOW_OTLP_ENDPOINT"],
        "--otlp-endpoint",
    ),
    key(
        "service_name",
        &["OTEL_SERVICE_NAME", "LEADFLOW_SERVICE_NAME"],
        "--service-name",
    ),
];

fn find_key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// A setting's text and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raw {
    pub value: String,
    pub source: Source,
}

/// The settings given, by key; a later layer replaces an earlier one's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layers(Vec<(&'static str, Raw)>);

impl Layers {
    /// Adds the settings of a TOML file of the same keys, each with its
    /// line.
    pub fn file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: "config",
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
            key: "config",
            origin: Source::File {
                path: path.to_owned(),
                line: e.span().map_or(1, |s| line_of(text, s.start)),
            },
            message: e.message().to_owned(),
        })?;
        for (name, value) in table {
            let source = Source::File {
                path: path.to_owned(),
                line: key_line(text, &name),
            };
            let Some(key) = find_key(&name) else {
                return Err(ConfigError {
                    key: "config",
                    origin: source,
                    message: format!("no setting is called {name:?}"),
                });
            };
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(ConfigError {
                        key: key.name,
                        origin: source,
                        message: format!(
                            "a string, a whole number or true/false, not a {}",
                            other.type_str()
                        ),
                    });
                }
            };
            self.0.push((key.name, Raw { value, source }));
        }
        Ok(())
    }

    /// Adds the settings of the environment, as `var` reads it. An empty
    /// variable counts as unset (as OpenTelemetry's do).
    pub fn env(&mut self, var: impl Fn(&str) -> Option<String>) {
        for key in KEYS {
            for name in key.env {
                if let Some(value) = var(name).filter(|v| !v.trim().is_empty()) {
                    self.0.push((
                        key.name,
                        Raw {
                            value,
                            source: Source::Env(name),
                        },
                    ));
                }
            }
        }
    }

    /// Adds a flag's value, by the setting's name.
    pub fn flag(&mut self, name: &str, value: Option<String>) {
        if let (Some(key), Some(value)) = (find_key(name), value) {
            self.0.push((
                key.name,
                Raw {
                    value,
                    source: Source::Flag(key.flag),
                },
            ));
        }
    }

    /// The winning value of each setting given.
    fn effective(&self) -> Vec<(&'static str, &Raw)> {
        let mut out: Vec<(&'static str, &Raw)> = Vec::new();
        for (name, raw) in &self.0 {
            match out.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = raw,
                None => out.push((name, raw)),
            }
        }
        out
    }

    /// The configuration: defaults, then these layers in order; every value
    /// checked, a bad one named with its source.
    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        let mut config = Config::default();
        let mut sources: Vec<(&'static str, Source)> =
            KEYS.iter().map(|k| (k.name, Source::Default)).collect();
        for (name, raw) in self.effective() {
            config.set(name, &raw.value).map_err(|message| ConfigError {
                key: name,
                origin: raw.source.clone(),
                message,
            })?;
            if let Some(slot) = sources.iter_mut().find(|(n, _)| *n == name) {
                slot.1 = raw.source.clone();
            }
        }
        let source_of = |name: &str| {
            sources
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(Source::Default, |(_, s)| s.clone())
        };
        if let Some(tls) = &config.tls
            && (tls.cert.as_os_str().is_empty() || tls.key.as_os_str().is_empty())
        {
            // Named after a setting that was given, with its source.
            let missing = if tls.cert.as_os_str().is_empty() {
                "tls_cert"
            } else {
                "tls_key"
            };
            let key = ["tls_cert", "tls_key", "tls_client_ca"]
                .into_iter()
                .find(|k| *k != missing && source_of(k) != Source::Default)
                .unwrap_or(missing);
            return Err(ConfigError {
                key,
                origin: source_of(key),
                message: format!("TLS needs {missing} too"),
            });
        }
        Ok(Resolved { config, sources })
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// The line where `key` is set at the top level of a TOML document.
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            let name = line.split('=').next().unwrap_or("").trim().trim_matches('"');
            line.contains('=') && name == key
        })
        .map_or(1, |i| i + 1)
}

/// A configuration and where each of its settings came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub config: Config,
    pub sources: Vec<(&'static str, Source)>,
}

impl Resolved {
    /// The effective configuration as TOML, each setting with its source;
    /// secrets redacted.
    pub fn show(&self) -> String {
        let mut out = String::new();
        for key in KEYS {
            let source = self
                .sources
                .iter()
                .find(|(n, _)| *n == key.name)
                .map_or(Source::Default, |(_, s)| s.clone());
            let line = match self.config.get(key.name) {
                Some(Shown::Text(v)) => format!("{} = {}", key.name, quoted(&v)),
                Some(Shown::Number(v)) => format!("{} = {v}", key.name),
                None => format!("# {} is not set", key.name),
            };
            out.push_str(&format!("{line:<60} # {source}\n"));
        }
        out
    }
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

/// A setting's default as `leadflow config show` prints it (without
/// quotes); `None` for a setting unset by default.
pub fn default_text(name: &str) -> Option<String> {
    match Config::default().get(name)? {
        Shown::Text(text) | Shown::Number(text) => Some(text),
    }
}

/// How `leadflow config show` prints a value.
enum Shown {
    Text(String),
    Number(String),
}

fn number<T>(value: &str, range: std::ops::RangeInclusive<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let n: T = value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number"))?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} is not from {} to {}", range.start(), range.end()))
    }
}

fn boolean(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{value:?} is not true or false")),
    }
}

fn address(value: &str) -> Result<SocketAddr, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not an address like 127.0.0.1:50051 or [::]:50051"))
}

fn path(value: &str) -> Result<PathBuf, String> {
    if value.trim().is_empty() {
        Err("an empty path".to_owned())
    } else {
        Ok(PathBuf::from(value))
    }
}

impl Config {
    /// Sets one setting from its text.
    fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "database_url" => {
                if !(value.starts_with("sqlite:")
                    || value.starts_with("postgres:")
                    || value.starts_with("postgresql:"))
                {
                    return Err(format!(
                        "sqlite://PATH or postgres://…, not {}",
                        leadflow_store::redact(value)
                    ));
                }
                self.database_url = DatabaseUrl::new(value);
            }
            "listen" => self.listen = address(value)?,
            "http_listen" => self.http_listen = address(value)?,
            "log_format" => {
                self.log_format = match value.trim() {
                    "json" => LogFormat::Json,
                    "pretty" => LogFormat::Pretty,
                    _ => return Err(format!("{value:?} is not json or pretty")),
                };
            }
            "log_level" => {
                tracing_subscriber::EnvFilter::try_new(value).map_err(|e| format!("{value:?}: {e}"))?;
                value.clone_into(&mut self.log_level);
            }
            "shutdown_grace_secs" => self.shutdown_grace = Duration::from_secs(number(value, 0..=3600)?),
            "max_connections" => self.max_connections = number(value, 1..=1000)?,
            "db_acquire_timeout_ms" => {
                self.db_acquire_timeout = Duration::from_millis(number(value, 10..=300_000)?);
            }
            "timer_poll_ms" => self.timer_poll = Duration::from_millis(number(value, 10..=3_600_000)?),
            "rescore_batch" => self.rescore_batch = number(value, 1..=10_000)?,
            "max_in_flight" => self.max_in_flight = number(value, 1..=100_000)?,
            "require_auth" => self.require_auth = boolean(value)?,
            "token_rate_limit" => self.token_rate_limit = number(value, 0..=1_000_000)?,
            "tls_cert" | "tls_key" | "tls_client_ca" => {
                let p = path(value)?;
                let tls = self.tls.get_or_insert_with(|| TlsFiles {
                    cert: PathBuf::new(),
                    key: PathBuf::new(),
                    client_ca: None,
                });
                match name {
                    "tls_cert" => tls.cert = p,
                    "tls_key" => tls.key = p,
                    _ => tls.client_ca = Some(p),
                }
            }
            "otlp_endpoint" => {
                let url = value.trim();
                let uri: http::Uri = url
                    .parse()
                    .map_err(|_| format!("{value:?} is not an http:// or https:// URL"))?;
                if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty)
                {
                    return Err(format!("{value:?} is not an http:// or https:// URL"));
                }
                self.otlp_endpoint = Some(url.to_owned());
            }
            "service_name" => {
                if value.trim().is_empty() {
                    return Err("an empty name".to_owned());
                }
                value.trim().clone_into(&mut self.service_name);
            }
            _ => return Err("no such setting".to_owned()),
        }
        Ok(())
    }

    /// One setting's value as shown (secrets redacted); `None` when unset.
    fn get(&self, name: &str) -> Option<Shown> {
        let text = |s: String| Some(Shown::Text(s));
        let num = |n: u128| Some(Shown::Number(n.to_string()));
        let tls = self.tls.as_ref();
        match name {
            "database_url" => text(self.database_url.to_string()),
            "listen" => text(self.listen.to_string()),
            "http_listen" => text(self.http_listen.to_string()),
            "log_format" => text(
                match self.log_format {
                    LogFormat::Json => "json",
                    LogFormat::Pretty => "pretty",
                }
                .to_owned(),
            ),
            "log_level" => text(self.log_level.clone()),
            "shutdown_grace_secs" => num(self.shutdown_grace.as_secs().into()),
            "max_connections" => num(self.max_connections.into()),
            "db_acquire_timeout_ms" => num(self.db_acquire_timeout.as_millis()),
            "timer_poll_ms" => num(self.timer_poll.as_millis()),
            "rescore_batch" => num(self.rescore_batch.into()),
            "max_in_flight" => num(self.max_in_flight as u128),
            "require_auth" => Some(Shown::Number(self.require_auth.to_string())),
            "token_rate_limit" => num(self.token_rate_limit.into()),
            "tls_cert" => tls.map(|t| Shown::Text(t.cert.display().to_string())),
            "tls_key" => tls.map(|t| Shown::Text(t.key.display().to_string())),
            "tls_client_ca" => tls
                .and_then(|t| t.client_ca.as_ref())
                .map(|p| Shown::Text(p.display().to_string())),
            "otlp_endpoint" => self.otlp_endpoint.clone().map(Shown::Text),
            "service_name" => text(self.service_name.clone()),
            _ => None,
        }
    }
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
        assert!(bad(layers).starts_with("bad listen from flag --listen: \"localhost\" is not an address"));

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
                "bad log_format from leadflow.toml line 1: a string, a whole number or true/false, not a array",
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

    #[test]
    fn every_key_can_be_set_and_shown() {
        let defaults = Layers::default().resolve().expect("defaults are valid");
        for key in KEYS {
            let shown = defaults.config.get(key.name);
            assert!(
                shown.is_some()
                    || matches!(
                        key.name,
                        "tls_cert" | "tls_key" | "tls_client_ca" | "otlp_endpoint"
                    ),
                "{}",
                key.name
            );
            assert!(key.flag.starts_with("--") && !key.env.is_empty());
        }
    }
}

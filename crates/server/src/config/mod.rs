//! Configuration: one typed [`Config`]. Its fields are the settings: serde
//! reads them from a TOML file, clap makes them flags, and figment layers
//! them — defaults, then the file, then `LEADFLOW_*` (and the standard
//! `OTEL_*`, and `RUST_LOG` for the log level) environment variables, then
//! flags — keeping where each value came from. [`Config::validate`] then
//! checks every value, and a bad one is named with its source: a flag, a
//! variable, or the file and its line.
//!
//! Adding a setting is adding a field (its doc comment is its help) with
//! its value in `Default` and, if its values are bounded, a line of
//! `validate`. The server is started with the whole `Config`
//! ([`crate::start`]), so the code that uses the setting reads it there.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::value::Value;
use serde::{Deserialize, Serialize};

mod layers;
#[cfg(test)]
mod tests;

use layers::number;
pub use layers::{ConfigError, Layers, Resolved, Source};

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
    /// NATS server to relay every event to (JetStream), e.g.
    /// nats://127.0.0.1:4222; several separated by commas. Unset: no relay.
    #[arg(long)]
    pub nats_url: Option<Secret>,
    /// The JetStream stream events go to: created if absent (subjects
    /// leadflow.>, 7 days, a 10-minute duplicate window), checked if present.
    #[arg(long, default_value_t = Config::default().nats_stream)]
    pub nats_stream: String,
    /// Replicas of the stream when leadflow creates it (1 to 5; the JetStream
    /// cluster needs as many servers).
    #[arg(long, default_value_t = Config::default().nats_replicas)]
    pub nats_replicas: usize,
    /// Where a workspace's relay starts when it is first relayed: earliest
    /// (the oldest event kept) or an RFC 3339 time (the lowest sequence
    /// committed at or after it).
    #[arg(long, default_value_t = Config::default().nats_start)]
    pub nats_start: String,
    /// Webhooks may be http:// URLs (otherwise https:// only).
    #[arg(long)]
    pub webhooks_allow_http: bool,
    /// Webhook requests may reach loopback, private and link-local
    /// addresses (refused otherwise, checked on the address connected to).
    #[arg(long)]
    pub webhooks_allow_private_addresses: bool,
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
            nats_url: None,
            nats_stream: "LEADFLOW".to_owned(),
            nats_replicas: 1,
            nats_start: "earliest".to_owned(),
            webhooks_allow_http: false,
            webhooks_allow_private_addresses: false,
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
        if let Some(url) = self.nats_url.as_ref().map(Secret::expose) {
            let ok = !url.is_empty()
                && url.split(',').all(|u| {
                    let u = u.trim();
                    ["nats://", "tls://"]
                        .iter()
                        .any(|s| u.strip_prefix(s).is_some_and(|host| !host.is_empty()))
                });
            if !ok {
                return Err((
                    "nats_url",
                    format!(
                        "{:?} is not nats://HOST:PORT or tls://HOST:PORT (several separated by commas)",
                        leadflow_store::redact(url)
                    ),
                ));
            }
        }
        let stream_ok = !self.nats_stream.is_empty()
            && self.nats_stream.len() <= 64
            && self
                .nats_stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !stream_ok {
            return Err((
                "nats_stream",
                format!(
                    "{:?}: a stream name is 1 to 64 of A-Z a-z 0-9 - _",
                    self.nats_stream
                ),
            ));
        }
        within("nats_replicas", self.nats_replicas, 1..=5)?;
        self.relay_start()?;
        Ok(())
    }

    /// Where a new relay starts (`nats_start`).
    pub fn relay_start(&self) -> Result<leadflow_engine::Start, (&'static str, String)> {
        if self.nats_start == "earliest" {
            return Ok(leadflow_engine::Start::Earliest);
        }
        chrono::DateTime::parse_from_rfc3339(&self.nats_start)
            .map(|t| {
                leadflow_engine::Start::AtTime(leadflow_domain::Timestamp::from_micros(t.timestamp_micros()))
            })
            .map_err(|e| {
                (
                    "nats_start",
                    format!(
                        "{:?} is not `earliest` nor an RFC 3339 time: {e}",
                        self.nats_start
                    ),
                )
            })
    }

    /// The relay to JetStream, when `nats_url` is set.
    pub fn relay(&self) -> Option<crate::relay::Settings> {
        Some(crate::relay::Settings {
            url: self.nats_url.as_ref()?.expose().to_owned(),
            stream: self.nats_stream.clone(),
            replicas: self.nats_replicas,
            start: self.relay_start().ok()?,
        })
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

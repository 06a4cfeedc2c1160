//! Configuration: defaults, then a TOML file, then `LEADFLOW_*` environment
//! variables, then flags — validated once, before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object a line, for collectors.
    Json,
    /// Human-readable.
    #[default]
    Pretty,
}

/// A database URL that never prints its password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
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
    /// restarts, say) before it is refused with UNAVAILABLE.
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
        }
    }
}

/// One layer of configuration: every key optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub database_url: Option<DatabaseUrl>,
    pub listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
    pub shutdown_grace_secs: Option<u64>,
    pub max_connections: Option<u32>,
    pub db_acquire_timeout_ms: Option<u64>,
    pub timer_poll_ms: Option<u64>,
    pub rescore_batch: Option<u64>,
    pub max_in_flight: Option<usize>,
    pub require_auth: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub token_rate_limit: Option<u32>,
}

impl Layer {
    /// Reads a TOML file of the same keys.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the configuration file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("bad configuration file {}: {e}", path.display()))
    }
}

impl Config {
    /// Applies `layer` over this configuration.
    pub fn apply(mut self, layer: Layer) -> Self {
        if let Some(v) = layer.database_url {
            self.database_url = v;
        }
        if let Some(v) = layer.listen {
            self.listen = v;
        }
        if let Some(v) = layer.http_listen {
            self.http_listen = v;
        }
        if let Some(v) = layer.log_format {
            self.log_format = v;
        }
        if let Some(v) = layer.log_level {
            self.log_level = v;
        }
        if let Some(v) = layer.shutdown_grace_secs {
            self.shutdown_grace = Duration::from_secs(v);
        }
        if let Some(v) = layer.max_connections {
            self.max_connections = v;
        }
        if let Some(v) = layer.db_acquire_timeout_ms {
            self.db_acquire_timeout = Duration::from_millis(v);
        }
        if let Some(v) = layer.timer_poll_ms {
            self.timer_poll = Duration::from_millis(v);
        }
        if let Some(v) = layer.rescore_batch {
            self.rescore_batch = v;
        }
        if let Some(v) = layer.max_in_flight {
            self.max_in_flight = v;
        }
        if let Some(v) = layer.require_auth {
            self.require_auth = v;
        }
        if let Some(v) = layer.token_rate_limit {
            self.token_rate_limit = v;
        }
        if layer.tls_cert.is_some() || layer.tls_key.is_some() || layer.tls_client_ca.is_some() {
            let mut tls = self.tls.take().unwrap_or(TlsFiles {
                cert: PathBuf::new(),
                key: PathBuf::new(),
                client_ca: None,
            });
            if let Some(v) = layer.tls_cert {
                tls.cert = v;
            }
            if let Some(v) = layer.tls_key {
                tls.key = v;
            }
            if let Some(v) = layer.tls_client_ca {
                tls.client_ca = Some(v);
            }
            self.tls = Some(tls);
        }
        self
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let url = self.database_url.expose();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:")) {
            anyhow::bail!(
                "database_url must be sqlite://PATH or postgres://…, not {}",
                self.database_url
            );
        }
        if self.max_connections == 0 {
            anyhow::bail!("max_connections must be at least 1");
        }
        if self.db_acquire_timeout < Duration::from_millis(10)
            || self.db_acquire_timeout > Duration::from_secs(300)
        {
            anyhow::bail!("db_acquire_timeout_ms must be from 10 to 300000");
        }
        if self.timer_poll < Duration::from_millis(10) || self.timer_poll > Duration::from_secs(3600) {
            anyhow::bail!("timer_poll_ms must be from 10 to 3600000");
        }
        if !(1..=100_000).contains(&self.max_in_flight) {
            anyhow::bail!("max_in_flight must be from 1 to 100000");
        }
        if !(1..=10_000).contains(&self.rescore_batch) {
            anyhow::bail!("rescore_batch must be from 1 to 10000");
        }
        if self.shutdown_grace > Duration::from_secs(3600) {
            anyhow::bail!("shutdown_grace_secs must be at most 3600");
        }
        if let Some(tls) = &self.tls
            && (tls.cert.as_os_str().is_empty() || tls.key.as_os_str().is_empty())
        {
            anyhow::bail!("TLS needs both tls_cert and tls_key (tls_client_ca adds mutual TLS)");
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|e| anyhow::anyhow!("bad log_level {:?}: {e}", self.log_level))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_and_passwords_never_print() {
        let file: Layer =
            toml::from_str("database_url = \"postgres://u:secret@db/leadflow\"\nlisten = \"0.0.0.0:6000\"")
                .expect("valid");
        let flags = Layer {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 7000))),
            ..Layer::default()
        };
        let config = Config::default().apply(file).apply(flags);
        assert_eq!(config.listen.port(), 7000);
        assert!(config.validate().is_ok());
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("u:***@db"), "{shown}");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(toml::from_str::<Layer>("colour = 1").is_err());
        let bad = Config {
            database_url: DatabaseUrl::new("mysql://x"),
            ..Config::default()
        };
        assert!(bad.validate().is_err());
        let no_wait = Config::default().apply(toml::from_str("db_acquire_timeout_ms = 0").expect("a layer"));
        assert!(no_wait.validate().is_err());
        let wait = Config::default().apply(toml::from_str("db_acquire_timeout_ms = 750").expect("a layer"));
        assert_eq!(wait.db_acquire_timeout, Duration::from_millis(750));
        assert!(wait.validate().is_ok());
    }
}

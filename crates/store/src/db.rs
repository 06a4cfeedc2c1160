//! Connections: SQLite (WAL, one writer, a pool of readers) or PostgreSQL.

use std::time::Duration;

use leadflow_migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, TransactionTrait};
use sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use tracing::Instrument as _;

use crate::backend::{Backend, transaction_span};
use crate::error::StoreError;
use crate::tx::Tx;

/// Tuning; the defaults suit one service on one machine.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// PostgreSQL pool size (SQLite keeps one writer and this many readers).
    pub max_connections: u32,
    /// How long a writer waits for a locked SQLite database.
    pub busy_timeout: Duration,
    /// How long a command waits for a connection (a free one, or a new one
    /// while the database is away) before it fails as unavailable.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// The database: every read and write of leadflow goes through it.
#[derive(Clone, Debug)]
pub struct Store {
    writer: DatabaseConnection,
    reader: DatabaseConnection,
    backend: Backend,
}

impl Store {
    /// Connects to `sqlite://path` (created if missing) or `postgres://…`.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let writer = Database::connect(sqlite_options(url, options, 1)).await?;
            // An in-memory database exists once per connection: one pool for all.
            let reader = if memory {
                writer.clone()
            } else {
                Database::connect(sqlite_options(url, options, options.max_connections.clamp(1, 8))).await?
            };
            Ok(Self {
                writer,
                reader,
                backend: Backend::Sqlite,
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut opts = ConnectOptions::new(url.to_owned());
            let plain = loopback_without_sslmode(url);
            opts.max_connections(options.max_connections.max(2))
                .min_connections(1)
                .acquire_timeout(options.acquire_timeout)
                .sqlx_logging(false)
                .map_sqlx_postgres_opts(move |o| postgres_tls_default(o, plain));
            let db = Database::connect(opts).await?;
            Ok(Self {
                reader: db.clone(),
                writer: db,
                backend: Backend::Postgres,
            })
        } else {
            Err(StoreError::Config(format!(
                "unsupported database URL {:?}: expected sqlite://PATH or postgres://…",
                redact(url)
            )))
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pending migrations; when the one that adds search keys is among
    /// them, the leads stored before it are keyed right after (a lead it
    /// leaves unkeyed, its state unreadable, is keyed at its next write).
    async fn apply_migrations(&self) -> Result<(), StoreError> {
        let pending: Vec<String> = Migrator::get_pending_migrations(&self.writer)
            .await?
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        Migrator::up(&self.writer, None).await?;
        if pending.iter().any(|m| m == leadflow_migrations::LEAD_SEARCH) {
            self.key_unkeyed_leads().await?;
        }
        if pending.iter().any(|m| m == leadflow_migrations::MATCH_KEYS) {
            self.write_match_keys().await?;
        }
        Ok(())
    }

    /// Applies pending migrations. On PostgreSQL, under an advisory lock:
    /// replicas starting together, or beside a migration job, take turns,
    /// and the later ones find nothing left to do.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let Some(pool) = self.postgres_pool() else {
            return self.apply_migrations().await;
        };
        let mut lock = pool.acquire().await.map_err(exec_err)?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *lock)
            .await
            .map_err(exec_err)?;
        let migrated = self.apply_migrations().await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *lock)
            .await;
        migrated?;
        unlocked.map_err(exec_err)?;
        Ok(())
    }

    /// Starts a write transaction. On SQLite, writes are serialised through
    /// one connection, so a transaction never meets another writer's lock.
    /// Within a traced call or job it is a span of its own
    /// (`db.transaction`), from `BEGIN` to commit or rollback.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let span = transaction_span(self.backend);
        let txn = self
            .writer
            .begin()
            .instrument(span.clone())
            .await
            .map_err(|e| self.on_writer(e))?;
        Ok(Tx::new(txn, self.backend, span))
    }

    /// A failed command on the reader pool: a time-out waiting for a
    /// connection while every one is in use is [`StoreError::Busy`].
    pub(crate) fn on_reader(&self, e: sea_orm::DbErr) -> StoreError {
        self.classify(&self.reader, e)
    }

    /// [`Self::on_reader`], on the writer pool.
    pub(crate) fn on_writer(&self, e: sea_orm::DbErr) -> StoreError {
        self.classify(&self.writer, e)
    }

    fn classify(&self, db: &DatabaseConnection, e: sea_orm::DbErr) -> StoreError {
        if !matches!(
            e,
            sea_orm::DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout)
        ) {
            return StoreError::Db(e);
        }
        // The same time-out is given when no new connection could be made
        // (the database is away): that one is unavailability.
        let (size, idle, max, waited) = match self.backend {
            Backend::Sqlite => {
                let pool = db.get_sqlite_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                    pool.options().get_acquire_timeout(),
                )
            }
            Backend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                    pool.options().get_acquire_timeout(),
                )
            }
        };
        if size >= max && idle == 0 {
            StoreError::Busy { waited }
        } else {
            StoreError::Db(e)
        }
    }

    pub(crate) fn reader(&self) -> &DatabaseConnection {
        &self.reader
    }

    pub(crate) fn writer(&self) -> &DatabaseConnection {
        &self.writer
    }

    /// The PostgreSQL pool, for LISTEN/NOTIFY.
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        (self.backend == Backend::Postgres).then(|| self.writer.get_postgres_connection_pool())
    }

    pub async fn close(self) {
        let _ = self.reader.close().await;
        let _ = self.writer.close().await;
    }
}

fn sqlite_options(url: &str, options: &StoreOptions, connections: u32) -> ConnectOptions {
    let mut opts = ConnectOptions::new(url.to_owned());
    let busy = options.busy_timeout;
    opts.max_connections(connections)
        .min_connections(1)
        .acquire_timeout(options.acquire_timeout)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |o| {
            o.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(busy)
        });
    opts
}

/// True for a PostgreSQL URL on this machine that does not choose `sslmode`.
pub fn loopback_without_sslmode(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let loopback = match parsed.host() {
        // Hosts of a `postgres:` URL are not parsed as addresses.
        Some(url::Host::Domain(d)) => {
            d == "localhost"
                || d.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        // No host: a Unix socket, which never uses TLS.
        None => false,
    };
    loopback
        && !parsed
            .query_pairs()
            .any(|(k, _)| k == "sslmode" || k == "ssl-mode")
}

/// A PostgreSQL on loopback is reached without TLS unless the URL asks for
/// it: TLS protects nothing that never leaves the machine, and costs more
/// than its CPU here — the driver does not set TCP_NODELAY, so a statement
/// larger than one TLS record (16 KiB, a batch's insert) waits for the
/// server's delayed ACK, about 40 ms (measured in docs/performance.md).
pub fn postgres_tls_default(
    options: sqlx::postgres::PgConnectOptions,
    loopback_without_sslmode: bool,
) -> sqlx::postgres::PgConnectOptions {
    if loopback_without_sslmode {
        options.ssl_mode(sqlx::postgres::PgSslMode::Disable)
    } else {
        options
    }
}

/// A database URL without its passwords (in the credentials or as a
/// `password`/`sslpassword` parameter), for messages.
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &base[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &base[..scheme + 3], &base[at..]),
                None => base.to_owned(),
            }
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _))
                    if key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword") =>
                {
                    format!("{key}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// A driver error as the store reports the ORM's (so that a broken
/// connection stays UNAVAILABLE).
fn exec_err(e: sqlx::Error) -> sea_orm::DbErr {
    sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(e)))
}

/// The advisory lock migrations take on PostgreSQL (any constant, the same
/// in every replica).
const MIGRATION_LOCK: i64 = 0x6c65_6164_666c_6f77; // "leadflow"

#[cfg(test)]
mod tests {
    use super::{loopback_without_sslmode, redact};

    #[test]
    fn passwords_never_print() {
        for (url, shown) in [
            ("postgres://u:secret@db/x", "postgres://u:***@db/x"),
            (
                "postgres://u@db/x?password=secret&sslmode=require",
                "postgres://u@db/x?password=***&sslmode=require",
            ),
            (
                "postgres://u:a@db/x?sslpassword=secret",
                "postgres://u:***@db/x?sslpassword=***",
            ),
            ("sqlite://leadflow.db", "sqlite://leadflow.db"),
        ] {
            assert_eq!(redact(url), shown);
        }
    }

    #[test]
    fn only_loopback_urls_without_sslmode_go_without_tls() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/db",
            "postgres://u:p@localhost/db?application_name=x",
            "postgresql://[::1]:5432/db",
        ] {
            assert!(loopback_without_sslmode(url), "{url}");
        }
        for url in [
            "postgres://postgres@127.0.0.1:5432/db?sslmode=require",
            "postgres://postgres@127.0.0.1/db?sslmode=prefer",
            "postgres://db.internal:5432/db",
            "postgres://10.0.0.5/db",
            "postgres:///db?host=/var/run/postgresql",
            "not a url",
        ] {
            assert!(!loopback_without_sslmode(url), "{url}");
        }
    }
}

use sea_orm::{DbErr, SqlErr};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// A row that does not decode: written by another version, or edited by hand.
    #[error("corrupt {table} row {key}: {detail}")]
    Corrupt {
        table: &'static str,
        key: String,
        detail: String,
    },
    #[error("bad database configuration: {0}")]
    Config(String),
    /// No connection came free in time while every one of the pool was in
    /// use: leadflow is at its own limit, the database may be fine.
    #[error("every database connection is in use (waited {waited:?})")]
    Busy { waited: std::time::Duration },
}

impl StoreError {
    pub(crate) fn corrupt(table: &'static str, key: impl Into<String>, detail: impl ToString) -> Self {
        Self::Corrupt {
            table,
            key: key.into(),
            detail: detail.to_string(),
        }
    }

    /// leadflow's own pool is exhausted (see [`StoreError::Busy`]).
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Busy { .. })
    }

    /// A unique key was taken by a concurrent writer.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Db(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))))
    }

    /// A conflict between concurrent transactions (deadlock, serialization
    /// failure, a locked SQLite file): running the command again may succeed.
    pub fn is_retryable(&self) -> bool {
        let Self::Db(e) = self else { return false };
        let text = e.to_string();
        [
            "40P01",
            "40001",
            "deadlock detected",
            "could not serialize",
            "database is locked",
            "SQLITE_BUSY",
        ]
        .iter()
        .any(|needle| text.contains(needle))
    }

    /// The database could not be reached (a connection could not be made in
    /// time), the connection broke mid-command, or PostgreSQL is shutting down or
    /// starting up (SQLSTATE classes 08 and 57P): nothing was committed,
    /// and the call may be made again once the database is back.
    pub fn is_unavailable(&self) -> bool {
        let Self::Db(e) = self else { return false };
        let runtime = match e {
            DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => return true,
            DbErr::Exec(r) | DbErr::Query(r) => r,
            _ => return false,
        };
        let sea_orm::RuntimeErr::SqlxError(e) = runtime else {
            return false;
        };
        match &**e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => false,
        }
    }
}

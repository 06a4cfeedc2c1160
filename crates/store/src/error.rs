use sea_orm::{DbErr, RuntimeErr, SqlErr};
use sqlx::error::DatabaseError;

use crate::backend::Backend;

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

    /// A unique key was taken by a concurrent writer (sea-orm reads the
    /// code: SQLSTATE 23505, SQLite's SQLITE_CONSTRAINT_UNIQUE or
    /// SQLITE_CONSTRAINT_PRIMARYKEY).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Db(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))))
    }

    /// A conflict between concurrent transactions (deadlock, serialization
    /// failure, a locked SQLite file), by the database's error code, wherever
    /// it failed (a statement, `BEGIN`, `COMMIT`, setting up a connection):
    /// running the command again may succeed.
    pub fn is_retryable(&self) -> bool {
        let Self::Db(e) = self else { return false };
        database_error(e).is_some_and(|db| failure(db) == Failure::Conflict)
    }

    /// The same failure for another caller of a call that failed together
    /// (`None` unless it is [`StoreError::is_busy`] or
    /// [`StoreError::is_unavailable`]: those say nothing of one call, and
    /// trying each call alone would wait as long again for each).
    pub fn for_another_caller(&self) -> Option<Self> {
        match self {
            Self::Busy { waited } => Some(Self::Busy { waited: *waited }),
            _ if self.is_unavailable() => Some(Self::Db(DbErr::Conn(RuntimeErr::Internal(self.to_string())))),
            _ => None,
        }
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
        let RuntimeErr::SqlxError(e) = runtime else {
            return false;
        };
        match &**e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => failure(&**db) == Failure::Unavailable,
            _ => false,
        }
    }
}

/// What the database's own error code says about a failed command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// A concurrent transaction won: the command may succeed if run again.
    Conflict,
    /// The database cannot serve now: nothing was committed.
    Unavailable,
    Other,
}

/// The error the database itself returned, wherever sea-orm put it: a
/// statement's (`Exec`, `Query`, which is also where `BEGIN` and `COMMIT`
/// fail) or a connection's being set up (`Conn`).
fn database_error(e: &DbErr) -> Option<&dyn DatabaseError> {
    let (DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Query(RuntimeErr::SqlxError(e))
    | DbErr::Conn(RuntimeErr::SqlxError(e))) = e
    else {
        return None;
    };
    match &**e {
        sqlx::Error::Database(db) => Some(&**db),
        _ => None,
    }
}

fn failure(db: &dyn DatabaseError) -> Failure {
    // The two databases' codes mean different things: which one answered
    // decides how the code reads.
    let backend = if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
        Backend::Postgres
    } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        Backend::Sqlite
    } else {
        return Failure::Other;
    };
    db.code().map_or(Failure::Other, |code| classify(backend, &code))
}

/// Reads a PostgreSQL SQLSTATE, or a SQLite extended result code (as sqlx
/// gives it: the number in decimal).
fn classify(backend: Backend, code: &str) -> Failure {
    match backend {
        Backend::Postgres => match code {
            PG_SERIALIZATION_FAILURE | PG_DEADLOCK_DETECTED => Failure::Conflict,
            _ if code.starts_with(PG_CONNECTION_EXCEPTION) || code.starts_with(PG_OPERATOR_INTERVENTION) => {
                Failure::Unavailable
            }
            _ => Failure::Other,
        },
        // An extended code is its primary code in the low byte, and the
        // detail (SQLITE_BUSY_SNAPSHOT is 517, SQLITE_BUSY 5) above it.
        Backend::Sqlite => match code.parse::<i32>().map(|extended| extended & 0xff) {
            Ok(SQLITE_BUSY | SQLITE_LOCKED) => Failure::Conflict,
            _ => Failure::Other,
        },
    }
}

/// PostgreSQL's SQLSTATEs (appendix A of its manual).
const PG_SERIALIZATION_FAILURE: &str = "40001";
const PG_DEADLOCK_DETECTED: &str = "40P01";
/// Class 08: the connection failed or was lost.
const PG_CONNECTION_EXCEPTION: &str = "08";
/// 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
/// 57P04 database_dropped, 57P05 idle_session_timeout.
const PG_OPERATOR_INTERVENTION: &str = "57P";

/// SQLite's primary result codes (<https://sqlite.org/rescode.html>): the
/// file is locked by another connection, or a table within it by one
/// sharing its cache.
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

#[cfg(test)]
mod tests {
    use super::{Failure, classify};
    use crate::backend::Backend;

    #[test]
    fn codes_are_read_by_the_database_that_gave_them() {
        use Backend::{Postgres, Sqlite};
        use Failure::{Conflict, Other, Unavailable};
        for (backend, code, failure) in [
            (Postgres, "40001", Conflict),    // serialization_failure
            (Postgres, "40P01", Conflict),    // deadlock_detected
            (Postgres, "40000", Other),       // transaction_rollback: not said to be a conflict
            (Postgres, "40002", Other),       // transaction_integrity_constraint_violation
            (Postgres, "08000", Unavailable), // connection_exception
            (Postgres, "08006", Unavailable), // connection_failure
            (Postgres, "08P01", Unavailable), // protocol_violation
            (Postgres, "57P01", Unavailable), // admin_shutdown
            (Postgres, "57P02", Unavailable), // crash_shutdown
            (Postgres, "57P03", Unavailable), // cannot_connect_now
            (Postgres, "57014", Other),       // query_canceled
            (Postgres, "23505", Other),       // unique_violation: is_unique_violation's
            (Postgres, "42P01", Other),       // undefined_table
            (Postgres, "5", Other),           // a SQLite code
            (Postgres, "", Other),
            (Sqlite, "5", Conflict),   // SQLITE_BUSY
            (Sqlite, "261", Conflict), // SQLITE_BUSY_RECOVERY
            (Sqlite, "517", Conflict), // SQLITE_BUSY_SNAPSHOT
            (Sqlite, "773", Conflict), // SQLITE_BUSY_TIMEOUT
            (Sqlite, "6", Conflict),   // SQLITE_LOCKED
            (Sqlite, "262", Conflict), // SQLITE_LOCKED_SHAREDCACHE
            (Sqlite, "2067", Other),   // SQLITE_CONSTRAINT_UNIQUE: is_unique_violation's
            (Sqlite, "1555", Other),   // SQLITE_CONSTRAINT_PRIMARYKEY
            (Sqlite, "19", Other),     // SQLITE_CONSTRAINT
            (Sqlite, "1", Other),      // SQLITE_ERROR
            (Sqlite, "8", Other),      // SQLITE_READONLY
            (Sqlite, "40P01", Other),  // a PostgreSQL code
            (Sqlite, "40001", Other),  // one that parses: 40001 & 0xff is 65
            (Sqlite, "08006", Other),
            (Sqlite, "", Other),
        ] {
            assert_eq!(classify(backend, code), failure, "{backend:?} {code:?}");
        }
    }
}

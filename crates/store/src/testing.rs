//! Throwaway databases for tests: a SQLite file in a fresh directory, or a
//! fresh PostgreSQL database on the server named by
//! `LEADFLOW_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! dropped when the handle is.
//!
//! Where no PostgreSQL answers, [`TestDatabase::postgres`] says so loudly and
//! returns `None` — unless `LEADFLOW_REQUIRE_POSTGRES=1`, where it panics.
//! Test binaries built on [`harness`] (feature `harness`) look once, at start,
//! and show the trials they cannot run as ignored in their summary.

use std::path::PathBuf;

use sea_orm::{ConnectionTrait, Database};

#[cfg(feature = "harness")]
pub mod harness;

/// A lead's state packed as the store writes it, and its profile as the
/// `profile` column holds it: for tools that seed a database in bulk.
pub fn stored_state(lead: &leadflow_domain::Lead) -> Result<(Vec<u8>, String), crate::StoreError> {
    Ok((
        crate::state::pack("", lead)?,
        crate::state::profile_json("", lead)?,
    ))
}

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The PostgreSQL server tests make their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("LEADFLOW_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// Whether `LEADFLOW_REQUIRE_POSTGRES=1`: a missing PostgreSQL is then a failure.
pub fn postgres_required() -> bool {
    std::env::var("LEADFLOW_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// Connects to the server of [`postgres_admin_url`] and runs one query,
/// giving up after a few seconds.
pub async fn postgres_answers() -> Result<(), sea_orm::DbErr> {
    let mut options = sea_orm::ConnectOptions::new(postgres_admin_url());
    options
        .max_connections(1)
        .connect_timeout(std::time::Duration::from_secs(3))
        .acquire_timeout(std::time::Duration::from_secs(3));
    let admin = Database::connect(options).await?;
    admin.execute_unprepared("SELECT 1").await?;
    admin.close().await
}

/// Which engine a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Dir(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A fresh database on `engine`; `None` when PostgreSQL is wanted but absent (and not required).
    pub async fn new(engine: Engine) -> Option<Self> {
        match engine {
            Engine::Sqlite => Some(Self::sqlite()),
            Engine::Postgres => Self::postgres().await,
        }
    }

    pub fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("leadflow-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        Self {
            url: format!("sqlite://{}", dir.join("leadflow.db").display()),
            cleanup: Cleanup::Dir(dir),
        }
    }

    #[allow(clippy::print_stderr)] // the loud skip below
    pub async fn postgres() -> Option<Self> {
        let admin_url = postgres_admin_url();
        let required = postgres_required();
        let name = format!("leadflow_test_{}", uuid::Uuid::new_v4().simple());
        let created = async {
            let admin = Database::connect(admin_url.as_str()).await?;
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await?;
            admin.close().await?;
            Ok::<(), sea_orm::DbErr>(())
        }
        .await;
        match created {
            Ok(()) => Some(Self {
                url: with_database(&admin_url, &name),
                cleanup: Cleanup::Postgres { admin_url, name },
            }),
            Err(e) if required => {
                panic!("PostgreSQL is required (LEADFLOW_REQUIRE_POSTGRES=1) but {admin_url} failed: {e}")
            }
            Err(e) => {
                // Loud on purpose: a skipped database is not a passed test.
                eprintln!(
                    "\n*** SKIPPING a PostgreSQL test: no PostgreSQL at {admin_url} ({e}).\n*** Set LEADFLOW_TEST_POSTGRES_URL, or LEADFLOW_REQUIRE_POSTGRES=1 to make this a failure.\n"
                );
                None
            }
        }
    }
}

/// The same server URL with another database name.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop may run inside a runtime: do the async work on a thread of its own.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    rt.block_on(async {
                        let admin = Database::connect(admin_url.as_str()).await.ok()?;
                        let _ = admin
                            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                        let _ = admin.close().await;
                        Some(())
                    })
                })
                .join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_names_are_swapped_keeping_the_query() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}

//! The e2e binary's trials: [`scenarios!`](crate::scenarios) declares a
//! module's tests, each a [`Trial`] of the harness in
//! `leadflow_store::testing::harness` (a trial this machine cannot run is
//! ignored, marked `[no postgres]`, `[no chromium]`, `[no python]` or
//! `[no initdb]`, and a line after the summary says why).

use std::future::Future;
use std::marker::PhantomData;
use std::path::PathBuf;

use anyhow::Context as _;
pub use leadflow_store::testing::harness::{Need, Outcome, POSTGRES, Trial, run, trial};

use crate::{Db, TestServer};

/// Chromium, for the dashboard's browser test: `$LEADFLOW_CHROMIUM` or
/// `/usr/bin/chromium`.
pub static BROWSER: Need = Need::new("chromium", "LEADFLOW_REQUIRE_BROWSER", || {
    chromium()
        .map(|_| ())
        .ok_or_else(|| format!("no Chromium at {} (apt-get install chromium)", chromium_path()))
});

/// A Python with grpcio-tools, named by `$LEADFLOW_TEST_PYTHON`.
pub static PYTHON: Need = Need::new("python", "LEADFLOW_REQUIRE_PYTHON", || {
    python()
        .map(|_| ())
        .ok_or_else(|| "LEADFLOW_TEST_PYTHON does not name a Python with grpcio-tools".to_owned())
});

/// PostgreSQL's server programs (`initdb`, `pg_ctl`), for a cluster a test
/// stops and starts itself.
pub static INITDB: Need = Need::new("initdb", "LEADFLOW_REQUIRE_POSTGRES", || {
    postgres_binaries()
        .map(|_| ())
        .ok_or_else(|| "no initdb under /usr/lib/postgresql".to_owned())
});

/// `nats-server` (`$LEADFLOW_NATS_SERVER`, or on the PATH), for the relay's
/// tests, which start servers and clusters of their own.
pub static NATS: Need = Need::new("nats-server", "LEADFLOW_REQUIRE_NATS", || {
    nats_server()
        .map(|_| ())
        .ok_or_else(|| "no nats-server on the PATH (apt-get install nats-server)".to_owned())
});

/// Everything some trial may need.
pub const NEEDS: [&Need; 5] = [&POSTGRES, &BROWSER, &PYTHON, &INITDB, &NATS];

/// The `nats-server` to start, if there is one.
pub fn nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LEADFLOW_NATS_SERVER").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.exists())
}

fn chromium_path() -> String {
    std::env::var("LEADFLOW_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

/// The browser to drive, if there is one.
pub fn chromium() -> Option<String> {
    let path = chromium_path();
    std::path::Path::new(&path).exists().then_some(path)
}

/// The Python to run grpcio clients with, if one is named.
pub fn python() -> Option<String> {
    std::env::var("LEADFLOW_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
}

/// The newest `/usr/lib/postgresql/<version>/bin` with an `initdb`.
pub fn postgres_binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// How the tests of one [`scenarios!`](crate::scenarios) entry run; `K`
/// says what the test function takes.
#[derive(Debug)]
pub struct Setup<K> {
    clock: Option<leadflow_domain::Timestamp>,
    needs: Vec<&'static Need>,
    kind: PhantomData<K>,
}

/// Takes a [`TestServer`]: one test on each database.
#[derive(Debug)]
pub struct OnServer;
/// Takes a [`Db`] and makes what it needs itself: one test on each database.
#[derive(Debug)]
pub struct OnDatabase;
/// Takes nothing: one test.
#[derive(Debug)]
pub struct Once;

fn setup<K>(clock: Option<leadflow_domain::Timestamp>) -> Setup<K> {
    Setup {
        clock,
        needs: Vec::new(),
        kind: PhantomData,
    }
}

/// A scenario on a server on the system clock, with its workers.
pub fn system_clock() -> Setup<OnServer> {
    setup(None)
}

/// A scenario on a server on a hand-moved clock starting at `start`,
/// without timer or re-score workers: the test moves the clock and fires
/// timers itself.
pub fn clock_at(start: leadflow_domain::Timestamp) -> Setup<OnServer> {
    setup(Some(start))
}

/// A test function of a [`Db`], run on each.
pub fn each_database() -> Setup<OnDatabase> {
    setup(None)
}

/// A test function run once.
pub fn once() -> Setup<Once> {
    setup(None)
}

impl<K> Setup<K> {
    /// The tests also need `need`.
    pub fn needs(mut self, need: &'static Need) -> Self {
        self.needs.push(need);
        self
    }

    fn needs_on(&self, db: Db) -> Vec<&'static Need> {
        let mut needs = self.needs.clone();
        if db == Db::Postgres {
            needs.push(&POSTGRES);
        }
        needs
    }
}

fn db_name(db: Db) -> &'static str {
    match db {
        Db::Sqlite => "sqlite",
        Db::Postgres => "postgres",
    }
}

/// The trials of a test function `body` named `name`, set up as `self` says.
pub trait Register<F> {
    fn trials(self, name: &str, body: F) -> Vec<Trial>;
}

impl<F, Fut> Register<F> for Setup<OnServer>
where
    F: FnOnce(TestServer) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>>,
{
    fn trials(self, name: &str, scenario: F) -> Vec<Trial> {
        [Db::Sqlite, Db::Postgres]
            .map(|db| {
                let clock = self.clock;
                trial(
                    format!("{name}::{}", db_name(db)),
                    &self.needs_on(db),
                    move || async move {
                        let server = match clock {
                            Some(start) => TestServer::start_with_clock(db, start).await?,
                            None => TestServer::start(db).await?,
                        };
                        scenario(server)
                            .await
                            .with_context(|| format!("the scenario failed on {db:?}"))
                    },
                )
            })
            .into()
    }
}

impl<F, Fut> Register<F> for Setup<OnDatabase>
where
    F: FnOnce(Db) -> Fut + Copy + Send + 'static,
    Fut: Future<Output: Outcome>,
{
    fn trials(self, name: &str, test: F) -> Vec<Trial> {
        [Db::Sqlite, Db::Postgres]
            .map(|db| {
                trial(
                    format!("{name}::{}", db_name(db)),
                    &self.needs_on(db),
                    move || test(db),
                )
            })
            .into()
    }
}

impl<F, Fut> Register<F> for Setup<Once>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output: Outcome>,
{
    fn trials(self, name: &str, test: F) -> Vec<Trial> {
        vec![trial(name, &self.needs, test)]
    }
}

/// `e2e::stream` → `stream`: test names start at the binary's modules.
pub fn test_module(module_path: &str) -> &str {
    module_path.split_once("::").map_or(module_path, |(_, m)| m)
}

/// Declares a module's tests as the module's `trials()`. Each entry is a
/// test function and how it runs:
///
/// ```text
/// scenarios! {
///     // async fn(TestServer) -> anyhow::Result<()>, a server on the system
///     // clock: tests `NAME::sqlite` and `NAME::postgres`
///     health_says_serving,
///     // the same on a hand-moved clock starting at T0
///     an_idle_mql_is_recycled = clock_at(T0),
///     // async fn(Db): tests `NAME::sqlite` and `NAME::postgres`
///     each_token_has_its_own_rate = each_database(),
///     // async fn(): the test `NAME`, with what it needs of the machine
///     a_timer_due_while_both_run_fires_once = once().needs(&POSTGRES),
/// }
/// ```
///
/// The PostgreSQL tests need PostgreSQL; a test whose needs this machine
/// lacks is ignored, and says so. A module's `trials()` that `main` does not
/// call, or a test function no entry names, is dead code: a warning.
#[macro_export]
macro_rules! scenarios {
    (@setup) => {
        $crate::system_clock()
    };
    (@setup $setup:expr) => {
        $setup
    };
    ($($name:ident $(= $setup:expr)?),* $(,)?) => {
        /// This module's tests.
        pub(crate) fn trials() -> Vec<$crate::Trial> {
            let module = $crate::test_module(module_path!());
            let mut trials = Vec::new();
            $(
                trials.extend($crate::Register::trials(
                    $crate::scenarios!(@setup $($setup)?),
                    &format!("{module}::{}", stringify!($name)),
                    $name,
                ));
            )*
            trials
        }
    };
}

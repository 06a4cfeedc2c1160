//! A test harness (for test binaries with `harness = false`) in which a trial
//! that cannot run here is *ignored*, and says so in the summary, rather
//! than passing without having run.
//!
//! What trials need of the machine — a PostgreSQL server, a browser, a
//! program — is a [`Need`], looked for once, before the first trial. A
//! trial whose need is missing is ignored and marked `[no NAME]`; after the
//! summary a line says why each was missing. Where the need's
//! `LEADFLOW_REQUIRE_…` variable is `1`, the trial is not ignored but fails,
//! saying what is missing.
//!
//! Each trial runs its body on a tokio runtime of its own with two worker
//! threads, as `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`
//! does; a panic fails the trial with its message. The usual arguments work:
//! `--list`, name filters, `--exact`, `--skip`, `--ignored`,
//! `--include-ignored`, `--test-threads`.

use std::future::Future;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

pub use libtest_mimic::{Arguments, Failed, Trial};

/// Something trials need of the machine, looked for once.
#[derive(Debug)]
pub struct Need {
    /// Shown on the trials it makes ignored: `[no NAME]`.
    name: &'static str,
    /// The variable that, set to `1`, makes a missing need a failure.
    require_var: &'static str,
    /// Looks: `Err(why)` when missing.
    probe: fn() -> Result<(), String>,
    missing: OnceLock<Option<String>>,
    /// Whether some trial was ignored for want of it.
    skipped: AtomicBool,
}

impl Need {
    pub const fn new(
        name: &'static str,
        require_var: &'static str,
        probe: fn() -> Result<(), String>,
    ) -> Self {
        Self {
            name,
            require_var,
            probe,
            missing: OnceLock::new(),
            skipped: AtomicBool::new(false),
        }
    }

    /// Why it is missing; `None` when it is there.
    pub fn missing(&self) -> Option<&str> {
        self.missing.get_or_init(|| (self.probe)().err()).as_deref()
    }

    /// Whether its variable says it must be there.
    pub fn required(&self) -> bool {
        std::env::var(self.require_var).is_ok_and(|v| v == "1")
    }

    /// Whether trials needing it are skipped: missing, and not required.
    pub fn skips(&self) -> bool {
        self.missing().is_some() && !self.required()
    }
}

/// The PostgreSQL server of `LEADFLOW_TEST_POSTGRES_URL`.
pub static POSTGRES: Need = Need::new("postgres", "LEADFLOW_REQUIRE_POSTGRES", || {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no runtime to look for PostgreSQL: {e}"))?;
    runtime
        .block_on(super::postgres_answers())
        .map_err(|e| format!("no PostgreSQL at {}: {e}", super::postgres_admin_url()))
});

/// What a trial's body may return: nothing (it panics to fail), or a result.
pub trait Outcome {
    fn into_result(self) -> Result<(), Failed>;
}

impl Outcome for () {
    fn into_result(self) -> Result<(), Failed> {
        Ok(())
    }
}

impl<E: std::fmt::Debug> Outcome for Result<(), E> {
    fn into_result(self) -> Result<(), Failed> {
        self.map_err(|e| Failed::from(format!("{e:?}")))
    }
}

/// A trial named `name` that runs `body` on a runtime of its own; ignored,
/// and marked `[no NAME]`, when one of `needs` is missing and not required.
pub fn trial<F, Fut>(name: impl Into<String>, needs: &[&'static Need], body: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output: Outcome>,
{
    // Required but missing: the trial fails at once, saying why, rather
    // than after its body's own time-outs.
    if let Some(need) = needs
        .iter()
        .find(|need| need.missing().is_some() && need.required())
    {
        let why = format!(
            "{}=1, but {}",
            need.require_var,
            need.missing().unwrap_or_default()
        );
        return Trial::test(name, move || Err(Failed::from(why)));
    }
    let trial = Trial::test(name, move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Failed::from(format!("no runtime for the trial: {e}")))?;
        runtime.block_on(body()).into_result()
    });
    match needs.iter().find(|need| need.skips()) {
        Some(need) => {
            need.skipped.store(true, Ordering::Relaxed);
            trial
                .with_kind(format!("no {}", need.name))
                .with_ignored_flag(true)
        }
        None => trial,
    }
}

/// Runs `trials` with the command line's arguments; after the summary, a
/// line for each of `needs` that made trials ignored.
#[allow(clippy::print_stdout)] // the harness's own report, beside libtest-mimic's
pub fn run(trials: Vec<Trial>, needs: &[&'static Need]) -> ExitCode {
    let args = Arguments::from_args();
    let conclusion = libtest_mimic::run(&args, trials);
    if !args.list {
        for need in needs {
            if need.skipped.load(Ordering::Relaxed)
                && let Some(why) = need.missing()
            {
                println!(
                    "ignored [no {}]: {why}; with {}=1 they fail instead.",
                    need.name, need.require_var
                );
            }
        }
    }
    conclusion.exit_code()
}

//! The store on real databases, SQLite and PostgreSQL, in one test binary
//! whose harness shows the PostgreSQL trials as ignored where no
//! PostgreSQL answers (see `leadflow_store::testing::harness`).

use std::process::ExitCode;

use leadflow_store::testing::harness::{self, POSTGRES, Trial};

mod anonymous;
mod deferred;
mod engagement_ends;
mod errors;
mod learning;
mod merges;
mod outbox;
mod relays;
mod state;

/// Trials of the module's async test functions, named `MODULE::FUNCTION`;
/// those whose names end in `_postgres` need PostgreSQL.
#[macro_export]
macro_rules! trials {
    ($($test:ident),* $(,)?) => {
        vec![$($crate::trial(module_path!(), stringify!($test), $test)),*]
    };
}

fn trial<F, Fut>(module: &str, test: &str, body: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let module = module.split_once("::").map_or(module, |(_, m)| m);
    let needs: &[&'static harness::Need] = if test.ends_with("_postgres") {
        &[&POSTGRES]
    } else {
        &[]
    };
    harness::trial(format!("{module}::{test}"), needs, body)
}

fn main() -> ExitCode {
    let trials = [
        anonymous::trials(),
        deferred::trials(),
        engagement_ends::trials(),
        errors::trials(),
        learning::trials(),
        merges::trials(),
        outbox::trials(),
        relays::trials(),
        state::trials(),
    ]
    .into_iter()
    .flatten()
    .collect();
    harness::run(trials, &[&POSTGRES])
}

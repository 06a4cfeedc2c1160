//! leadflow end to end: every scenario on SQLite and on PostgreSQL, in one
//! test binary whose harness shows a test it cannot run here as ignored,
//! with the reason (see `leadflow_e2e::harness`).

use std::process::ExitCode;

mod accounts;
mod analytics;
mod attribution;
mod auth;
mod batch;
mod checkpoints;
mod cli;
mod dashboard;
mod erase;
mod errors;
mod grades;
mod grpcio;
mod hardening;
mod idempotency;
mod identity;
mod learn;
mod levels;
mod lifecycle;
mod merge;
mod metrics;
mod models;
mod outage;
mod overload;
mod owners;
mod reads;
mod relay;
mod replicas;
mod rescore;
mod routing;
mod search;
mod service;
mod stream;
mod telemetry;
mod timers;
mod tls;
mod validation;
mod webhooks;

fn main() -> ExitCode {
    let mut trials = [
        accounts::trials(),
        analytics::trials(),
        attribution::trials(),
        auth::trials(),
        batch::trials(),
        checkpoints::trials(),
        cli::trials(),
        dashboard::trials(),
        erase::trials(),
        errors::trials(),
        grades::trials(),
        grpcio::trials(),
        hardening::trials(),
        idempotency::trials(),
        identity::trials(),
        learn::trials(),
        levels::trials(),
        lifecycle::trials(),
        merge::trials(),
        metrics::trials(),
        models::trials(),
        outage::trials(),
        overload::trials(),
        owners::trials(),
        reads::trials(),
        relay::trials(),
        replicas::trials(),
        rescore::trials(),
        routing::trials(),
        search::trials(),
        service::trials(),
        stream::trials(),
        telemetry::trials(),
        timers::trials(),
        tls::trials(),
        validation::trials(),
        webhooks::trials(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    // In name order, as libtest lists and runs them.
    trials.sort_by(|a, b| a.name().cmp(b.name()));
    leadflow_e2e::run(trials, &leadflow_e2e::NEEDS)
}

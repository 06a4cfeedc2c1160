//! leadflow end to end: every scenario on SQLite and on PostgreSQL.

mod analytics;
mod auth;
mod batch;
mod cli;
mod dashboard;
mod erase;
mod errors;
mod grades;
mod grpcio;
mod hardening;
mod idempotency;
mod lifecycle;
mod metrics;
mod outage;
mod overload;
mod reads;
mod replicas;
mod rescore;
mod service;
mod stream;
mod telemetry;
mod timers;
mod tls;
mod validation;

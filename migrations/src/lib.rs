//! leadflow-migrations: the database schema, for SQLite and PostgreSQL alike.
//!
//! Applied at start-up and by `leadflow migrate`. Every table's primary key
//! begins with `workspace_id`, so the schema can be distributed by workspace.
//! Instants are BIGINT microseconds since the Unix epoch (UTC); structured
//! values are JSON text (a lead's state is packed: see the migration that
//! packs it). This crate knows nothing of the domain.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_initial;
mod m20261125_000002_stream;
mod m20261125_000003_rescore;
mod m20261125_000004_tokens;
mod m20261125_000005_analytics;
mod m20261125_000006_trace;
mod m20261205_000007_checkpoints;
mod m20261206_000008_packed_state;
mod m20261206_000009_level_changes;
mod m20261207_000010_lead_search;
mod m20261208_000011_accounts;
mod m20261209_000012_account_engagement_ends;
mod m20261210_000013_anonymous_activity;
mod m20261211_000014_merges;
mod m20261212_000015_match_keys;
mod m20261213_000016_owners;
mod m20261214_000017_assignments;
mod m20261215_000018_routing_waits;
mod m20261216_000019_sla_breaches;
mod m20261217_000020_relays;
mod m20261218_000021_webhooks;
mod m20261219_000022_resolved_deliveries;
mod m20261220_000023_learn_jobs;
mod m20261221_000024_learn_choose_fit;

/// The migration that adds lead search's keys: the store keys the leads
/// stored before it once it is applied.
pub const LEAD_SEARCH: &str = "m20261207_000010_lead_search";
/// The migration that adds match keys: the leads stored before it are
/// keyed right after it.
pub const MATCH_KEYS: &str = "m20261212_000015_match_keys";

/// Every migration, in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_initial::Migration),
            Box::new(m20261125_000002_stream::Migration),
            Box::new(m20261125_000003_rescore::Migration),
            Box::new(m20261125_000004_tokens::Migration),
            Box::new(m20261125_000005_analytics::Migration),
            Box::new(m20261125_000006_trace::Migration),
            Box::new(m20261205_000007_checkpoints::Migration),
            Box::new(m20261206_000008_packed_state::Migration),
            Box::new(m20261206_000009_level_changes::Migration),
            Box::new(m20261207_000010_lead_search::Migration),
            Box::new(m20261208_000011_accounts::Migration),
            Box::new(m20261209_000012_account_engagement_ends::Migration),
            Box::new(m20261210_000013_anonymous_activity::Migration),
            Box::new(m20261211_000014_merges::Migration),
            Box::new(m20261212_000015_match_keys::Migration),
            Box::new(m20261213_000016_owners::Migration),
            Box::new(m20261214_000017_assignments::Migration),
            Box::new(m20261215_000018_routing_waits::Migration),
            Box::new(m20261216_000019_sla_breaches::Migration),
            Box::new(m20261217_000020_relays::Migration),
            Box::new(m20261218_000021_webhooks::Migration),
            Box::new(m20261219_000022_resolved_deliveries::Migration),
            Box::new(m20261220_000023_learn_jobs::Migration),
            Box::new(m20261221_000024_learn_choose_fit::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "leadflow_migrations".into_iden()
    }
}

//! Learning jobs: a lead definition learned from a period's outcomes, run
//! in the background by whichever replica holds the job's lease; the last
//! report of each workspace is kept.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, double_null, integer, string, string_null, text_null,
};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum LearnJobs {
    Table,
    WorkspaceId,
    Id,
    Status,
    Phase,
    PeriodStart,
    PeriodEnd,
    Outcome,
    BaseVersion,
    Model,
    TargetPrecision,
    AsOf,
    Total,
    Read,
    Outcomes,
    Positives,
    Report,
    ErrorCode,
    Error,
    Holder,
    LeaseUntil,
    Attempts,
    StartedAt,
    UpdatedAt,
    FinishedAt,
    Traceparent,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(LearnJobs::Table)
                .col(string(LearnJobs::WorkspaceId))
                .col(big_integer(LearnJobs::Id))
                // RUNNING, DONE, FAILED or SUPERSEDED.
                .col(string(LearnJobs::Status))
                // READING, FITTING or DONE.
                .col(string(LearnJobs::Phase))
                .col(big_integer(LearnJobs::PeriodStart))
                .col(big_integer(LearnJobs::PeriodEnd))
                .col(string(LearnJobs::Outcome))
                .col(big_integer(LearnJobs::BaseVersion))
                .col(string(LearnJobs::Model))
                .col(double_null(LearnJobs::TargetPrecision))
                // Moves after it do not count: a job taken again learns the same.
                .col(big_integer(LearnJobs::AsOf))
                // Leads captured in the period when it started, and read so far.
                .col(big_integer(LearnJobs::Total))
                .col(big_integer(LearnJobs::Read))
                .col(big_integer_null(LearnJobs::Outcomes))
                .col(big_integer_null(LearnJobs::Positives))
                // The report, as JSON: only the workspace's last one is kept.
                .col(text_null(LearnJobs::Report))
                .col(string_null(LearnJobs::ErrorCode))
                .col(text_null(LearnJobs::Error))
                // The replica running it, until when.
                .col(string_null(LearnJobs::Holder))
                .col(big_integer_null(LearnJobs::LeaseUntil))
                .col(integer(LearnJobs::Attempts))
                .col(big_integer(LearnJobs::StartedAt))
                .col(big_integer(LearnJobs::UpdatedAt))
                .col(big_integer_null(LearnJobs::FinishedAt))
                .col(text_null(LearnJobs::Traceparent))
                .primary_key(Index::create().col(LearnJobs::WorkspaceId).col(LearnJobs::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("learn_jobs_status")
                .table(LearnJobs::Table)
                .col(LearnJobs::Status)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LearnJobs::Table).to_owned())
            .await
    }
}

//! Re-score jobs: a durable, resumable replay of every lead under a newly
//! active policy version.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_integer_null, string, text_null};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum RescoreJobs {
    Table,
    WorkspaceId,
    Id,
    PolicyVersion,
    ActivatedAt,
    Status,
    Cursor,
    LastLead,
    Total,
    Done,
    Transitions,
    Error,
    StartedAt,
    UpdatedAt,
    FinishedAt,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RescoreJobs::Table)
                .col(string(RescoreJobs::WorkspaceId))
                .col(big_integer(RescoreJobs::Id))
                .col(big_integer(RescoreJobs::PolicyVersion))
                .col(big_integer(RescoreJobs::ActivatedAt))
                .col(string(RescoreJobs::Status))
                // The last lead id re-scored ("" before the first).
                .col(string(RescoreJobs::Cursor))
                // The newest lead id when the job started: later leads are born under it.
                .col(string(RescoreJobs::LastLead))
                .col(big_integer(RescoreJobs::Total))
                .col(big_integer(RescoreJobs::Done))
                .col(big_integer(RescoreJobs::Transitions))
                .col(text_null(RescoreJobs::Error))
                .col(big_integer(RescoreJobs::StartedAt))
                .col(big_integer(RescoreJobs::UpdatedAt))
                .col(big_integer_null(RescoreJobs::FinishedAt))
                .primary_key(Index::create().col(RescoreJobs::WorkspaceId).col(RescoreJobs::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("rescore_jobs_status")
                .table(RescoreJobs::Table)
                .col(RescoreJobs::Status)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RescoreJobs::Table).to_owned())
            .await
    }
}

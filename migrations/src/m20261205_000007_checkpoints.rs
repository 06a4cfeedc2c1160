//! Score checkpoints: a lead's score states after a prefix of its log (the
//! prefix ends at the event `(occurred_at, event_id)`), under one policy
//! version, so that a late engagement is replayed from the newest
//! checkpoint before it rather than from the lead's first engagement. A
//! cache: any row may be deleted at any time, and a late engagement deletes
//! those at or after it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string, text};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ScoreCheckpoints {
    Table,
    WorkspaceId,
    LeadId,
    OccurredAt,
    EventId,
    PolicyVersion,
    State,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ScoreCheckpoints::Table)
                .col(string(ScoreCheckpoints::WorkspaceId))
                .col(string(ScoreCheckpoints::LeadId))
                .col(big_integer(ScoreCheckpoints::OccurredAt))
                .col(string(ScoreCheckpoints::EventId))
                .col(big_integer(ScoreCheckpoints::PolicyVersion))
                // The score states, as JSON.
                .col(text(ScoreCheckpoints::State))
                .primary_key(
                    Index::create()
                        .col(ScoreCheckpoints::WorkspaceId)
                        .col(ScoreCheckpoints::LeadId)
                        .col(ScoreCheckpoints::OccurredAt)
                        .col(ScoreCheckpoints::EventId),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ScoreCheckpoints::Table).to_owned())
            .await
    }
}

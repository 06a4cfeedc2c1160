//! The event stream: durable consumer cursors, the floor below which the
//! outbox has been trimmed; and what an engagement set off.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string, text_null};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Consumers {
    Table,
    WorkspaceId,
    Name,
    Cursor,
    Session,
    CreatedAt,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    OutboxFloor,
}

#[derive(DeriveIden)]
enum Engagements {
    Table,
    CausedTriggers,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Consumers::Table)
                .col(string(Consumers::WorkspaceId))
                .col(string(Consumers::Name))
                .col(big_integer(Consumers::Cursor))
                .col(string(Consumers::Session))
                .col(big_integer(Consumers::CreatedAt))
                .col(big_integer(Consumers::LastSeenAt))
                .primary_key(Index::create().col(Consumers::WorkspaceId).col(Consumers::Name))
                .to_owned(),
        )
        .await?;
        // Sequences at or below the floor have been trimmed from the outbox.
        m.alter_table(
            Table::alter()
                .table(Workspaces::Table)
                .add_column(big_integer(Workspaces::OutboxFloor).default(0))
                .to_owned(),
        )
        .await?;
        // The workflow triggers an engagement set off, so that a repeat of
        // its event id can answer with the first result.
        m.alter_table(
            Table::alter()
                .table(Engagements::Table)
                .add_column(text_null(Engagements::CausedTriggers))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Engagements::Table)
                .drop_column(Engagements::CausedTriggers)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Workspaces::Table)
                .drop_column(Workspaces::OutboxFloor)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(Consumers::Table).to_owned())
            .await?;
        Ok(())
    }
}

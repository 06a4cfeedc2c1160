//! Relays of the outbox to other systems (`relays`): per workspace and
//! target, the last sequence the target acknowledged, and the lease of the
//! replica relaying it. A relay holds the outbox's retention whether or not
//! it was seen lately.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Relays {
    Table,
    WorkspaceId,
    Name,
    Cursor,
    Holder,
    LeaseUntil,
    CreatedAt,
    MovedAt,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Relays::Table)
                .col(string(Relays::WorkspaceId))
                .col(string(Relays::Name))
                .col(big_integer(Relays::Cursor))
                .col(string(Relays::Holder))
                .col(big_integer(Relays::LeaseUntil))
                .col(big_integer(Relays::CreatedAt))
                .col(big_integer(Relays::MovedAt))
                .primary_key(Index::create().col(Relays::WorkspaceId).col(Relays::Name))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Relays::Table).to_owned()).await
    }
}

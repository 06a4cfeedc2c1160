//! Owners: the sales reps and queues of a workspace that leads are handed
//! to (`OwnerService`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, boolean, integer, integer_null, string, string_null, text};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Owners {
    Table,
    WorkspaceId,
    Id,
    DisplayName,
    Teams,
    Territories,
    Capacity,
    Weight,
    Available,
    Version,
    CreatedAt,
    UpdatedAt,
    UpdatedBy,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Owners::Table)
                .col(string(Owners::WorkspaceId))
                .col(string(Owners::Id))
                .col(string(Owners::DisplayName))
                .col(text(Owners::Teams))
                .col(text(Owners::Territories))
                .col(integer_null(Owners::Capacity))
                .col(integer(Owners::Weight))
                .col(boolean(Owners::Available))
                .col(big_integer(Owners::Version))
                .col(big_integer(Owners::CreatedAt))
                .col(big_integer(Owners::UpdatedAt))
                .col(string_null(Owners::UpdatedBy))
                .primary_key(Index::create().col(Owners::WorkspaceId).col(Owners::Id))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Owners::Table).to_owned()).await
    }
}

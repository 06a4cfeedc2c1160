//! Indexes for analytics over a long history: the leads captured in a
//! period, in the order reports page through them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Leads {
    Table,
    WorkspaceId,
    CapturedAt,
    Id,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("leads_captured")
                .table(Leads::Table)
                .col(Leads::WorkspaceId)
                .col(Leads::CapturedAt)
                .col(Leads::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("leads_captured")
                .table(Leads::Table)
                .to_owned(),
        )
        .await
    }
}

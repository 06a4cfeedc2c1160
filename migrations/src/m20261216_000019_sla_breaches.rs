//! SLA breaches as the funnel counts them per owner (`sla_breaches`): each
//! breach of a lead, when, in which stage, and the owner the lead had then.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string, string_null};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum SlaBreaches {
    Table,
    WorkspaceId,
    LeadId,
    SlaId,
    At,
    Stage,
    OwnerId,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SlaBreaches::Table)
                .col(string(SlaBreaches::WorkspaceId))
                .col(string(SlaBreaches::LeadId))
                .col(string(SlaBreaches::SlaId))
                .col(big_integer(SlaBreaches::At))
                .col(string(SlaBreaches::Stage))
                .col(string_null(SlaBreaches::OwnerId))
                .primary_key(
                    Index::create()
                        .col(SlaBreaches::WorkspaceId)
                        .col(SlaBreaches::LeadId)
                        .col(SlaBreaches::SlaId)
                        .col(SlaBreaches::At),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("sla_breaches_at")
                .table(SlaBreaches::Table)
                .col(SlaBreaches::WorkspaceId)
                .col(SlaBreaches::At)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SlaBreaches::Table).to_owned())
            .await
    }
}

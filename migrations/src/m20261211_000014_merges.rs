//! Merges: one row per lead merged into another (`MergeLeads`), keeping
//! what the duplicate brought — its anonymous ids, the attributes it gave
//! the survivor and the stage it left — so that `UnmergeLead` gives exactly
//! that back. A merged lead keeps its row in `leads` (stage MERGED, its
//! external key with it): its key resolves to the survivor through this
//! table. `engagements.via` names the lead an engagement came from in a
//! merge, or the merged lead whose key it was recorded under: an unmerge
//! gives back by it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_integer_null, boolean, string, string_null, text};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Merges {
    Table,
    WorkspaceId,
    DuplicateId,
    SurvivorId,
    MergedAt,
    RecordedAt,
    Stage,
    AnonymousIds,
    Attributes,
    MergedBy,
    Automatic,
    UnmergedAt,
}

#[derive(DeriveIden)]
enum Engagements {
    Table,
    Via,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Merges::Table)
                .col(string(Merges::WorkspaceId))
                .col(string(Merges::DuplicateId))
                .col(string(Merges::SurvivorId))
                .col(big_integer(Merges::MergedAt))
                .col(big_integer(Merges::RecordedAt))
                .col(string(Merges::Stage))
                .col(text(Merges::AnonymousIds))
                .col(text(Merges::Attributes))
                .col(string_null(Merges::MergedBy))
                .col(boolean(Merges::Automatic).default(false))
                .col(big_integer_null(Merges::UnmergedAt))
                .primary_key(Index::create().col(Merges::WorkspaceId).col(Merges::DuplicateId))
                .to_owned(),
        )
        .await?;
        // The leads merged into a survivor (erasure, an unmerge's checks).
        m.create_index(
            Index::create()
                .name("merges_survivor")
                .table(Merges::Table)
                .col(Merges::WorkspaceId)
                .col(Merges::SurvivorId)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Engagements::Table)
                .add_column(string_null(Engagements::Via))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Merges::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Engagements::Table)
                .drop_column(Engagements::Via)
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}

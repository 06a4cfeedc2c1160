//! Level changes: a lead's MQL level history (`[[stages.MQL.levels]]`),
//! beside its transitions. A level is not a stage, so a change is not a
//! transition: it has its own sequence per lead.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, boolean, double, string, string_null, text_null};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum LevelChanges {
    Table,
    WorkspaceId,
    LeadId,
    Seq,
    FromLevel,
    ToLevel,
    At,
    Stage,
    Cause,
    CauseRef,
    Fit,
    Engagement,
    PolicyVersion,
    Suppressed,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(LevelChanges::Table)
                .col(string(LevelChanges::WorkspaceId))
                .col(string(LevelChanges::LeadId))
                .col(big_integer(LevelChanges::Seq))
                .col(string_null(LevelChanges::FromLevel))
                .col(string_null(LevelChanges::ToLevel))
                .col(big_integer(LevelChanges::At))
                .col(string(LevelChanges::Stage))
                .col(string(LevelChanges::Cause))
                .col(text_null(LevelChanges::CauseRef))
                .col(double(LevelChanges::Fit))
                .col(double(LevelChanges::Engagement))
                .col(big_integer(LevelChanges::PolicyVersion))
                .col(boolean(LevelChanges::Suppressed))
                .primary_key(
                    Index::create()
                        .col(LevelChanges::WorkspaceId)
                        .col(LevelChanges::LeadId)
                        .col(LevelChanges::Seq),
                )
                .to_owned(),
        )
        .await?;
        // The funnel finds the leads whose level changed in a period.
        m.create_index(
            Index::create()
                .name("level_changes_at")
                .table(LevelChanges::Table)
                .col(LevelChanges::WorkspaceId)
                .col(LevelChanges::At)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LevelChanges::Table).to_owned())
            .await
    }
}

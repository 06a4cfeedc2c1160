//! Lead search: each lead's scores as a range can be found by an index.
//! A model's engagement scores decay, so what is indexed is their search
//! key (the score rebased to a fixed epoch, as a signed logarithm: it
//! orders leads as their scores do at every instant and changes only with
//! the lead). The default model's keys are columns of `leads`; every other
//! model's are rows of `lead_scores`. Rows written before get their keys
//! right after the migration (`Store::migrate` keys them under their own
//! policy version, which the schema alone cannot).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{double, double_null, string};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Leads {
    Table,
    WorkspaceId,
    Id,
    Fit,
    EngagementKey,
    QualifyingKey,
    EnteredStageAt,
}

#[derive(DeriveIden)]
enum LeadScores {
    Table,
    WorkspaceId,
    Model,
    LeadId,
    Fit,
    EngagementKey,
    QualifyingKey,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [Leads::EngagementKey, Leads::QualifyingKey] {
            m.alter_table(
                Table::alter()
                    .table(Leads::Table)
                    .add_column(double_null(column))
                    .to_owned(),
            )
            .await?;
        }
        for (name, column) in [
            ("leads_by_qualifying_key", Leads::QualifyingKey),
            ("leads_by_engagement_key", Leads::EngagementKey),
            ("leads_by_fit", Leads::Fit),
            ("leads_by_entered_stage", Leads::EnteredStageAt),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(Leads::Table)
                    .col(Leads::WorkspaceId)
                    .col(column)
                    .col(Leads::Id)
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table(LeadScores::Table)
                .col(string(LeadScores::WorkspaceId))
                .col(string(LeadScores::Model))
                .col(string(LeadScores::LeadId))
                .col(double(LeadScores::Fit))
                .col(double(LeadScores::EngagementKey))
                .col(double(LeadScores::QualifyingKey))
                .primary_key(
                    Index::create()
                        .col(LeadScores::WorkspaceId)
                        .col(LeadScores::Model)
                        .col(LeadScores::LeadId),
                )
                .to_owned(),
        )
        .await?;
        for (name, column) in [
            ("lead_scores_by_qualifying_key", LeadScores::QualifyingKey),
            ("lead_scores_by_engagement_key", LeadScores::EngagementKey),
            ("lead_scores_by_fit", LeadScores::Fit),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(LeadScores::Table)
                    .col(LeadScores::WorkspaceId)
                    .col(LeadScores::Model)
                    .col(column)
                    .col(LeadScores::LeadId)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LeadScores::Table).to_owned())
            .await?;
        for name in [
            "leads_by_qualifying_key",
            "leads_by_engagement_key",
            "leads_by_fit",
            "leads_by_entered_stage",
        ] {
            m.drop_index(Index::drop().name(name).table(Leads::Table).to_owned())
                .await?;
        }
        for column in [Leads::EngagementKey, Leads::QualifyingKey] {
            m.alter_table(Table::alter().table(Leads::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

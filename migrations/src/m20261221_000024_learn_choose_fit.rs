//! A learning job may be asked to choose the draft's MQL fit bar too;
//! jobs stored before kept it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::boolean;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum LearnJobs {
    Table,
    ChooseFit,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(LearnJobs::Table)
                .add_column(boolean(LearnJobs::ChooseFit).default(false))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(LearnJobs::Table)
                .drop_column(LearnJobs::ChooseFit)
                .to_owned(),
        )
        .await
    }
}

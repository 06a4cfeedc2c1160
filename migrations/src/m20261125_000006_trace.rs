//! Timers and re-score jobs keep the trace context of the call that caused
//! them, so that firing a timer or running a re-score batch starts a trace
//! linked to that call.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::text_null;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Timers {
    Table,
    Traceparent,
}

#[derive(DeriveIden)]
enum RescoreJobs {
    Table,
    Traceparent,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        m.alter_table(
            Table::alter()
                .table(Timers::Table)
                .add_column(text_null(Timers::Traceparent))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(RescoreJobs::Table)
                .add_column(text_null(RescoreJobs::Traceparent))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(RescoreJobs::Table)
                .drop_column(RescoreJobs::Traceparent)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Timers::Table)
                .drop_column(Timers::Traceparent)
                .to_owned(),
        )
        .await
    }
}

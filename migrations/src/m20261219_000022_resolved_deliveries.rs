//! Resolved webhook deliveries by when they were resolved: the daily
//! housekeeping forgets those older than 7 days without reading the rest.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    ResolvedAt,
}

const NAME: &str = "webhook_deliveries_resolved";

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(NAME)
                .table(WebhookDeliveries::Table)
                .col(WebhookDeliveries::ResolvedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name(NAME)
                .table(WebhookDeliveries::Table)
                .to_owned(),
        )
        .await
    }
}

//! Webhook endpoints (`webhooks`) and their deliveries
//! (`webhook_deliveries`). An endpoint's durable position is its relay row
//! (`relays`, named `webhook:<id>`: the cursor below which every delivery
//! is resolved, and the lease of the replica delivering it), the highest
//! sequence read into its deliveries, and its deliveries still open.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, boolean, integer, integer_null, string, string_null, text,
};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    WorkspaceId,
    Id,
    Url,
    Description,
    Filter,
    Secret,
    PreviousSecret,
    PreviousUntil,
    Enabled,
    DisabledReason,
    ReadTo,
    FailingSince,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    WorkspaceId,
    WebhookId,
    Seq,
    EventId,
    Subject,
    Status,
    Attempts,
    FirstAttemptAt,
    NextAttemptAt,
    LastAttemptAt,
    LastStatusCode,
    LastError,
    ResolvedAt,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Webhooks::Table)
                .col(string(Webhooks::WorkspaceId))
                .col(string(Webhooks::Id))
                .col(text(Webhooks::Url))
                .col(text(Webhooks::Description))
                .col(text(Webhooks::Filter))
                .col(string(Webhooks::Secret))
                .col(string_null(Webhooks::PreviousSecret))
                .col(big_integer(Webhooks::PreviousUntil))
                .col(boolean(Webhooks::Enabled))
                .col(string_null(Webhooks::DisabledReason))
                .col(big_integer(Webhooks::ReadTo))
                .col(big_integer_null(Webhooks::FailingSince))
                .col(big_integer(Webhooks::CreatedAt))
                .col(big_integer(Webhooks::UpdatedAt))
                .primary_key(Index::create().col(Webhooks::WorkspaceId).col(Webhooks::Id))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WebhookDeliveries::Table)
                .col(string(WebhookDeliveries::WorkspaceId))
                .col(string(WebhookDeliveries::WebhookId))
                .col(big_integer(WebhookDeliveries::Seq))
                .col(string(WebhookDeliveries::EventId))
                .col(string(WebhookDeliveries::Subject))
                .col(string(WebhookDeliveries::Status))
                .col(integer(WebhookDeliveries::Attempts))
                .col(big_integer_null(WebhookDeliveries::FirstAttemptAt))
                .col(big_integer(WebhookDeliveries::NextAttemptAt))
                .col(big_integer_null(WebhookDeliveries::LastAttemptAt))
                .col(integer_null(WebhookDeliveries::LastStatusCode))
                .col(text(WebhookDeliveries::LastError))
                .col(big_integer_null(WebhookDeliveries::ResolvedAt))
                .primary_key(
                    Index::create()
                        .col(WebhookDeliveries::WorkspaceId)
                        .col(WebhookDeliveries::WebhookId)
                        .col(WebhookDeliveries::Seq),
                )
                .to_owned(),
        )
        .await?;
        // The open deliveries of an endpoint, read by its delivery worker.
        m.create_index(
            Index::create()
                .name("webhook_deliveries_open")
                .table(WebhookDeliveries::Table)
                .col(WebhookDeliveries::WorkspaceId)
                .col(WebhookDeliveries::WebhookId)
                .col(WebhookDeliveries::ResolvedAt)
                .col(WebhookDeliveries::Seq)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(WebhookDeliveries::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Webhooks::Table).to_owned())
            .await
    }
}

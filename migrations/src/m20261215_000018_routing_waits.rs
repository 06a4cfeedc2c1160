//! Leads waiting for an owner (`routing_waits`): a lead a route found no
//! owner for waits here, oldest first, until an owner can take it. When
//! capacity may have freed (an owner lost an open lead, came back, had its
//! capacity raised, or was created), the oldest waiting leads are woken
//! (`wake_at`) and routed again by the worker.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_integer_null, string};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum RoutingWaits {
    Table,
    WorkspaceId,
    LeadId,
    Since,
    WakeAt,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RoutingWaits::Table)
                .col(string(RoutingWaits::WorkspaceId))
                .col(string(RoutingWaits::LeadId))
                .col(big_integer(RoutingWaits::Since))
                .col(big_integer_null(RoutingWaits::WakeAt))
                .primary_key(
                    Index::create()
                        .col(RoutingWaits::WorkspaceId)
                        .col(RoutingWaits::LeadId),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("routing_waits_wake")
                .table(RoutingWaits::Table)
                .col(RoutingWaits::WakeAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("routing_waits_since")
                .table(RoutingWaits::Table)
                .col(RoutingWaits::WorkspaceId)
                .col(RoutingWaits::Since)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RoutingWaits::Table).to_owned())
            .await
    }
}

//! Anonymous activity: engagements recorded under a caller's anonymous id
//! (a cookie, a device) before a lead exists for it. They share the
//! engagements table — and so the event-id namespace of the workspace —
//! with an empty `lead_id` until identified; `anonymous_id` says whose they
//! are, and `dropped` marks the oldest of an id over its limit (their event
//! ids stay, so that a re-delivery is still known). `anonymous_ids` holds
//! each id: the lead it joined, when, and its counts.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_integer_null, boolean, string, string_null};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Engagements {
    Table,
    WorkspaceId,
    EventId,
    LeadId,
    OccurredAt,
    RecordedAt,
    AnonymousId,
    Dropped,
}

#[derive(DeriveIden)]
enum AnonymousIds {
    Table,
    WorkspaceId,
    AnonymousId,
    LeadId,
    IdentifiedAt,
    Kept,
    Dropped,
    FirstSeenAt,
    LastSeenAt,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Engagements::Table)
                .add_column(string_null(Engagements::AnonymousId))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Engagements::Table)
                .add_column(boolean(Engagements::Dropped).default(false))
                .to_owned(),
        )
        .await?;
        // An id's events in time order; the unidentified ones by receipt
        // (the purge after the time to live).
        m.create_index(
            Index::create()
                .name("engagements_anonymous")
                .table(Engagements::Table)
                .col(Engagements::WorkspaceId)
                .col(Engagements::AnonymousId)
                .col(Engagements::OccurredAt)
                .col(Engagements::EventId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("engagements_received")
                .table(Engagements::Table)
                .col(Engagements::WorkspaceId)
                .col(Engagements::LeadId)
                .col(Engagements::RecordedAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AnonymousIds::Table)
                .col(string(AnonymousIds::WorkspaceId))
                .col(string(AnonymousIds::AnonymousId))
                .col(string_null(AnonymousIds::LeadId))
                .col(big_integer_null(AnonymousIds::IdentifiedAt))
                .col(big_integer(AnonymousIds::Kept))
                .col(big_integer(AnonymousIds::Dropped))
                .col(big_integer(AnonymousIds::FirstSeenAt))
                .col(big_integer(AnonymousIds::LastSeenAt))
                .primary_key(
                    Index::create()
                        .col(AnonymousIds::WorkspaceId)
                        .col(AnonymousIds::AnonymousId),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("anonymous_ids_lead")
                .table(AnonymousIds::Table)
                .col(AnonymousIds::WorkspaceId)
                .col(AnonymousIds::LeadId)
                .col(AnonymousIds::AnonymousId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AnonymousIds::Table).to_owned())
            .await?;
        for name in ["engagements_anonymous", "engagements_received"] {
            m.drop_index(Index::drop().name(name).table(Engagements::Table).to_owned())
                .await?;
        }
        for column in [Engagements::AnonymousId, Engagements::Dropped] {
            m.alter_table(
                Table::alter()
                    .table(Engagements::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

//! The first schema: workspaces, policies, leads, engagements, transitions,
//! the outbox, durable timers and idempotent results.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, boolean, double, double_null, string, string_null, text, text_null,
};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
    ActivePolicyVersion,
    OutboxHead,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Policies {
    Table,
    WorkspaceId,
    Version,
    Name,
    Description,
    Source,
    Checksum,
    CreatedAt,
    ActivatedAt,
}

#[derive(DeriveIden)]
enum Leads {
    Table,
    WorkspaceId,
    Id,
    ExternalKey,
    Stage,
    Version,
    PolicyVersion,
    Fit,
    Engagement,
    QualifyingEngagement,
    Grade,
    State,
    CapturedAt,
    EnteredStageAt,
    UpdatedAt,
    LastEngagementAt,
    HistoryLen,
}

#[derive(DeriveIden)]
enum Engagements {
    Table,
    WorkspaceId,
    EventId,
    LeadId,
    Type,
    Channel,
    Properties,
    OccurredAt,
    RecordedAt,
    Fingerprint,
}

#[derive(DeriveIden)]
enum Transitions {
    Table,
    WorkspaceId,
    LeadId,
    Seq,
    FromStage,
    ToStage,
    At,
    Move,
    Cause,
    CauseRef,
    Reason,
    Actor,
    DealValue,
    Currency,
    Fit,
    Engagement,
    Guards,
    PolicyVersion,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    WorkspaceId,
    Seq,
    EventId,
    LeadId,
    Kind,
    Payload,
    OccurredAt,
    CreatedAt,
    Traceparent,
    Suppressed,
}

#[derive(DeriveIden)]
enum Timers {
    Table,
    WorkspaceId,
    LeadId,
    Key,
    DueAt,
    BoundStage,
    BoundAt,
    Suppressed,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Idempotency {
    Table,
    WorkspaceId,
    RequestId,
    Method,
    Fingerprint,
    Response,
    CreatedAt,
}

fn index(name: &str) -> IndexCreateStatement {
    Index::create().name(name).to_owned()
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Workspaces::Table)
                .col(string(Workspaces::Id).primary_key())
                .col(big_integer_null(Workspaces::ActivePolicyVersion))
                .col(big_integer(Workspaces::OutboxHead).default(0))
                .col(big_integer(Workspaces::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Policies::Table)
                .col(string(Policies::WorkspaceId))
                .col(big_integer(Policies::Version))
                .col(string(Policies::Name))
                .col(text(Policies::Description))
                .col(text(Policies::Source))
                .col(string(Policies::Checksum))
                .col(big_integer(Policies::CreatedAt))
                .col(big_integer_null(Policies::ActivatedAt))
                .primary_key(Index::create().col(Policies::WorkspaceId).col(Policies::Version))
                .to_owned(),
        )
        .await?;
        m.create_index(
            index("policies_checksum")
                .table(Policies::Table)
                .col(Policies::WorkspaceId)
                .col(Policies::Checksum)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Leads::Table)
                .col(string(Leads::WorkspaceId))
                .col(string(Leads::Id))
                .col(string_null(Leads::ExternalKey))
                .col(string(Leads::Stage))
                .col(big_integer(Leads::Version))
                .col(big_integer(Leads::PolicyVersion))
                .col(double(Leads::Fit))
                .col(double(Leads::Engagement))
                .col(double(Leads::QualifyingEngagement))
                .col(string(Leads::Grade))
                .col(text(Leads::State))
                .col(big_integer(Leads::CapturedAt))
                .col(big_integer(Leads::EnteredStageAt))
                .col(big_integer(Leads::UpdatedAt))
                .col(big_integer_null(Leads::LastEngagementAt))
                .col(big_integer(Leads::HistoryLen))
                .primary_key(Index::create().col(Leads::WorkspaceId).col(Leads::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            index("leads_external_key")
                .table(Leads::Table)
                .col(Leads::WorkspaceId)
                .col(Leads::ExternalKey)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            index("leads_stage")
                .table(Leads::Table)
                .col(Leads::WorkspaceId)
                .col(Leads::Stage)
                .col(Leads::Id)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Engagements::Table)
                .col(string(Engagements::WorkspaceId))
                .col(string(Engagements::EventId))
                .col(string(Engagements::LeadId))
                .col(string(Engagements::Type))
                .col(string_null(Engagements::Channel))
                .col(text(Engagements::Properties))
                .col(big_integer(Engagements::OccurredAt))
                .col(big_integer(Engagements::RecordedAt))
                .col(string(Engagements::Fingerprint))
                .primary_key(
                    Index::create()
                        .col(Engagements::WorkspaceId)
                        .col(Engagements::EventId),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            index("engagements_lead")
                .table(Engagements::Table)
                .col(Engagements::WorkspaceId)
                .col(Engagements::LeadId)
                .col(Engagements::OccurredAt)
                .col(Engagements::EventId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Transitions::Table)
                .col(string(Transitions::WorkspaceId))
                .col(string(Transitions::LeadId))
                .col(big_integer(Transitions::Seq))
                .col(string_null(Transitions::FromStage))
                .col(string(Transitions::ToStage))
                .col(big_integer(Transitions::At))
                .col(string(Transitions::Move))
                .col(string(Transitions::Cause))
                .col(text_null(Transitions::CauseRef))
                .col(text_null(Transitions::Reason))
                .col(text_null(Transitions::Actor))
                .col(double_null(Transitions::DealValue))
                .col(string_null(Transitions::Currency))
                .col(double(Transitions::Fit))
                .col(double(Transitions::Engagement))
                .col(text(Transitions::Guards))
                .col(big_integer(Transitions::PolicyVersion))
                .primary_key(
                    Index::create()
                        .col(Transitions::WorkspaceId)
                        .col(Transitions::LeadId)
                        .col(Transitions::Seq),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            index("transitions_at")
                .table(Transitions::Table)
                .col(Transitions::WorkspaceId)
                .col(Transitions::At)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Outbox::Table)
                .col(string(Outbox::WorkspaceId))
                .col(big_integer(Outbox::Seq))
                .col(string(Outbox::EventId))
                .col(string(Outbox::LeadId))
                .col(string(Outbox::Kind))
                .col(text(Outbox::Payload))
                .col(big_integer(Outbox::OccurredAt))
                .col(big_integer(Outbox::CreatedAt))
                .col(text_null(Outbox::Traceparent))
                .col(boolean(Outbox::Suppressed))
                .primary_key(Index::create().col(Outbox::WorkspaceId).col(Outbox::Seq))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Timers::Table)
                .col(string(Timers::WorkspaceId))
                .col(string(Timers::LeadId))
                .col(string(Timers::Key))
                .col(big_integer(Timers::DueAt))
                .col(string_null(Timers::BoundStage))
                .col(big_integer_null(Timers::BoundAt))
                .col(boolean(Timers::Suppressed))
                .col(big_integer(Timers::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(Timers::WorkspaceId)
                        .col(Timers::LeadId)
                        .col(Timers::Key),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            index("timers_due")
                .table(Timers::Table)
                .col(Timers::DueAt)
                .col(Timers::WorkspaceId)
                .col(Timers::LeadId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Idempotency::Table)
                .col(string(Idempotency::WorkspaceId))
                .col(string(Idempotency::RequestId))
                .col(string(Idempotency::Method))
                .col(string(Idempotency::Fingerprint))
                .col(text(Idempotency::Response))
                .col(big_integer(Idempotency::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(Idempotency::WorkspaceId)
                        .col(Idempotency::RequestId),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            index("idempotency_created")
                .table(Idempotency::Table)
                .col(Idempotency::CreatedAt)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Idempotency::Table.into_iden(),
            Timers::Table.into_iden(),
            Outbox::Table.into_iden(),
            Transitions::Table.into_iden(),
            Engagements::Table.into_iden(),
            Leads::Table.into_iden(),
            Policies::Table.into_iden(),
            Workspaces::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

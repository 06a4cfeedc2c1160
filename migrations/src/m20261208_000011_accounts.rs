//! Accounts: the organisations leads belong to, their members, their stage
//! history, and the history of each lead's link to an account. The outbox
//! gains each event's subject (a lead or an account): an account's events
//! carry the account's id where a lead's carry the lead's. A re-score gains
//! its second phase: after every lead, every account (its cursor).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, boolean, double, integer, string, string_null, text, text_null,
};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    WorkspaceId,
    Id,
    ExternalKey,
    Domain,
    Attributes,
    Owner,
    Stage,
    Version,
    PolicyVersion,
    CreatedAt,
    EnteredStageAt,
    LastTransitionAt,
    EnteredBy,
    WindowStart,
    HistoryLen,
    Fit,
    Engagement,
    EngagementKey,
    SumEpoch,
    SumUnits,
    Engaged,
    Personas,
    Members,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AccountMembers {
    Table,
    WorkspaceId,
    LeadId,
    AccountId,
    MatchedBy,
    MatchedAt,
    Persona,
    Stage,
    EnteredStageAt,
    Value,
    ValueAt,
    ScoreKey,
    Counts,
    EngagedUntil,
    Engaged,
    Erased,
}

#[derive(DeriveIden)]
enum AccountTransitions {
    Table,
    WorkspaceId,
    AccountId,
    Seq,
    FromStage,
    ToStage,
    At,
    Move,
    Cause,
    CauseLead,
    CauseRef,
    Reason,
    Actor,
    Engagement,
    Fit,
    EngagedMembers,
    Guards,
    PolicyVersion,
    Principal,
}

#[derive(DeriveIden)]
enum AccountLinks {
    Table,
    WorkspaceId,
    LeadId,
    Seq,
    FromAccount,
    ToAccount,
    MatchedBy,
    At,
    Actor,
    Principal,
}

#[derive(DeriveIden)]
enum AccountPromotions {
    Table,
    WorkspaceId,
    AccountId,
    Cursor,
    At,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Subject,
}

#[derive(DeriveIden)]
enum RescoreJobs {
    Table,
    AccountCursor,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Accounts::Table)
                .col(string(Accounts::WorkspaceId))
                .col(string(Accounts::Id))
                .col(string_null(Accounts::ExternalKey))
                .col(string_null(Accounts::Domain))
                .col(text(Accounts::Attributes))
                .col(string_null(Accounts::Owner))
                .col(string(Accounts::Stage))
                .col(big_integer(Accounts::Version))
                .col(big_integer(Accounts::PolicyVersion))
                .col(big_integer(Accounts::CreatedAt))
                .col(big_integer(Accounts::EnteredStageAt))
                .col(big_integer(Accounts::LastTransitionAt))
                .col(string(Accounts::EnteredBy))
                .col(big_integer_null(Accounts::WindowStart))
                .col(big_integer(Accounts::HistoryLen))
                .col(double(Accounts::Fit))
                // The aggregate at `updated_at`, and its search key (as a
                // lead's: it orders accounts as their scores at any instant).
                .col(double(Accounts::Engagement))
                .col(double(Accounts::EngagementKey))
                // The members' sum in fixed point: units (an i128, as text) at an epoch.
                .col(big_integer(Accounts::SumEpoch))
                .col(string(Accounts::SumUnits))
                .col(integer(Accounts::Engaged))
                .col(text(Accounts::Personas))
                .col(big_integer(Accounts::Members))
                .col(big_integer(Accounts::UpdatedAt))
                .primary_key(Index::create().col(Accounts::WorkspaceId).col(Accounts::Id))
                .to_owned(),
        )
        .await?;
        for (name, column) in [
            ("accounts_by_external_key", Accounts::ExternalKey),
            ("accounts_by_domain", Accounts::Domain),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(Accounts::Table)
                    .col(Accounts::WorkspaceId)
                    .col(column)
                    .unique()
                    .to_owned(),
            )
            .await?;
        }
        for (name, column) in [
            ("accounts_by_engagement_key", Accounts::EngagementKey),
            ("accounts_by_entered_stage", Accounts::EnteredStageAt),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(Accounts::Table)
                    .col(Accounts::WorkspaceId)
                    .col(column)
                    .col(Accounts::Id)
                    .to_owned(),
            )
            .await?;
        }

        m.create_table(
            Table::create()
                .table(AccountMembers::Table)
                .col(string(AccountMembers::WorkspaceId))
                .col(string(AccountMembers::LeadId))
                .col(string(AccountMembers::AccountId))
                .col(string(AccountMembers::MatchedBy))
                .col(big_integer(AccountMembers::MatchedAt))
                .col(string_null(AccountMembers::Persona))
                .col(string(AccountMembers::Stage))
                .col(big_integer(AccountMembers::EnteredStageAt))
                .col(double(AccountMembers::Value))
                .col(big_integer(AccountMembers::ValueAt))
                .col(double(AccountMembers::ScoreKey))
                .col(boolean(AccountMembers::Counts))
                .col(big_integer_null(AccountMembers::EngagedUntil))
                .col(boolean(AccountMembers::Engaged))
                .col(boolean(AccountMembers::Erased))
                .primary_key(
                    Index::create()
                        .col(AccountMembers::WorkspaceId)
                        .col(AccountMembers::LeadId),
                )
                .to_owned(),
        )
        .await?;
        // The N highest members, the engaged ones whose engagement ends by
        // an instant, and the members by stage: each without reading the rest.
        for (name, columns) in [
            (
                "account_members_by_key",
                [AccountMembers::Counts, AccountMembers::ScoreKey],
            ),
            (
                "account_members_by_engaged_until",
                [AccountMembers::Engaged, AccountMembers::EngagedUntil],
            ),
            (
                "account_members_by_stage",
                [AccountMembers::Stage, AccountMembers::EnteredStageAt],
            ),
        ] {
            let mut index = Index::create();
            index
                .name(name)
                .table(AccountMembers::Table)
                .col(AccountMembers::WorkspaceId)
                .col(AccountMembers::AccountId);
            for column in columns {
                index.col(column);
            }
            m.create_index(index.col(AccountMembers::LeadId).to_owned())
                .await?;
        }

        m.create_table(
            Table::create()
                .table(AccountTransitions::Table)
                .col(string(AccountTransitions::WorkspaceId))
                .col(string(AccountTransitions::AccountId))
                .col(big_integer(AccountTransitions::Seq))
                .col(string_null(AccountTransitions::FromStage))
                .col(string(AccountTransitions::ToStage))
                .col(big_integer(AccountTransitions::At))
                .col(string(AccountTransitions::Move))
                .col(string(AccountTransitions::Cause))
                .col(string_null(AccountTransitions::CauseLead))
                .col(text_null(AccountTransitions::CauseRef))
                .col(text_null(AccountTransitions::Reason))
                .col(text_null(AccountTransitions::Actor))
                .col(double(AccountTransitions::Engagement))
                .col(double(AccountTransitions::Fit))
                .col(integer(AccountTransitions::EngagedMembers))
                .col(text(AccountTransitions::Guards))
                .col(big_integer(AccountTransitions::PolicyVersion))
                .col(text_null(AccountTransitions::Principal))
                .primary_key(
                    Index::create()
                        .col(AccountTransitions::WorkspaceId)
                        .col(AccountTransitions::AccountId)
                        .col(AccountTransitions::Seq),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("account_transitions_at")
                .table(AccountTransitions::Table)
                .col(AccountTransitions::WorkspaceId)
                .col(AccountTransitions::At)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AccountLinks::Table)
                .col(string(AccountLinks::WorkspaceId))
                .col(string(AccountLinks::LeadId))
                .col(big_integer(AccountLinks::Seq))
                .col(string_null(AccountLinks::FromAccount))
                .col(string_null(AccountLinks::ToAccount))
                .col(string(AccountLinks::MatchedBy))
                .col(big_integer(AccountLinks::At))
                .col(text_null(AccountLinks::Actor))
                .col(text_null(AccountLinks::Principal))
                .primary_key(
                    Index::create()
                        .col(AccountLinks::WorkspaceId)
                        .col(AccountLinks::LeadId)
                        .col(AccountLinks::Seq),
                )
                .to_owned(),
        )
        .await?;

        // Accounts that entered MQA under `promote_members_on_mqa`: their
        // engaged members are promoted in the background, a batch at a time.
        m.create_table(
            Table::create()
                .table(AccountPromotions::Table)
                .col(string(AccountPromotions::WorkspaceId))
                .col(string(AccountPromotions::AccountId))
                .col(string(AccountPromotions::Cursor))
                .col(big_integer(AccountPromotions::At))
                .col(big_integer(AccountPromotions::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(AccountPromotions::WorkspaceId)
                        .col(AccountPromotions::AccountId),
                )
                .to_owned(),
        )
        .await?;
        // The leads an account ever had (an explanation in the past).
        m.create_index(
            Index::create()
                .name("account_links_to")
                .table(AccountLinks::Table)
                .col(AccountLinks::WorkspaceId)
                .col(AccountLinks::ToAccount)
                .col(AccountLinks::LeadId)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Outbox::Table)
                .add_column(string(Outbox::Subject).default("LEAD"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(RescoreJobs::Table)
                .add_column(string_null(RescoreJobs::AccountCursor))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(RescoreJobs::Table)
                .drop_column(RescoreJobs::AccountCursor)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Outbox::Table)
                .drop_column(Outbox::Subject)
                .to_owned(),
        )
        .await?;
        for table in [
            AccountPromotions::Table.into_iden(),
            AccountLinks::Table.into_iden(),
            AccountTransitions::Table.into_iden(),
            AccountMembers::Table.into_iden(),
            Accounts::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

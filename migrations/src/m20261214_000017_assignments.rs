//! Routing: a lead's owner (`leads.owner_id`), each owner's open leads
//! (`owners.open_leads`, kept with every change of owner or stage, so a
//! capacity check reads one row), each team's cursor (`team_cursors`:
//! the owner last given a lead, and the running weights), and the history
//! of a lead's owners (`assignments`: who, from whom, why, and what was
//! considered).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string, string_null, text};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Leads {
    Table,
    WorkspaceId,
    OwnerId,
}

#[derive(DeriveIden)]
enum Owners {
    Table,
    OpenLeads,
}

#[derive(DeriveIden)]
enum TeamCursors {
    Table,
    WorkspaceId,
    Team,
    Last,
    Running,
}

#[derive(DeriveIden)]
enum Assignments {
    Table,
    WorkspaceId,
    LeadId,
    Seq,
    At,
    FromOwner,
    ToOwner,
    Cause,
    RouteId,
    Explanation,
    Reason,
    Principal,
    Stage,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Leads::Table)
                .add_column(string_null(Leads::OwnerId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("leads_owner")
                .table(Leads::Table)
                .col(Leads::WorkspaceId)
                .col(Leads::OwnerId)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Owners::Table)
                .add_column(big_integer(Owners::OpenLeads).default(0))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(TeamCursors::Table)
                .col(string(TeamCursors::WorkspaceId))
                .col(string(TeamCursors::Team))
                .col(string_null(TeamCursors::Last))
                .col(text(TeamCursors::Running))
                .primary_key(
                    Index::create()
                        .col(TeamCursors::WorkspaceId)
                        .col(TeamCursors::Team),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Assignments::Table)
                .col(string(Assignments::WorkspaceId))
                .col(string(Assignments::LeadId))
                .col(big_integer(Assignments::Seq))
                .col(big_integer(Assignments::At))
                .col(string_null(Assignments::FromOwner))
                .col(string_null(Assignments::ToOwner))
                .col(string(Assignments::Cause))
                .col(string_null(Assignments::RouteId))
                .col(text(Assignments::Explanation))
                .col(string_null(Assignments::Reason))
                .col(string_null(Assignments::Principal))
                .col(string(Assignments::Stage))
                .primary_key(
                    Index::create()
                        .col(Assignments::WorkspaceId)
                        .col(Assignments::LeadId)
                        .col(Assignments::Seq),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Assignments::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(TeamCursors::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Owners::Table)
                .drop_column(Owners::OpenLeads)
                .to_owned(),
        )
        .await?;
        m.drop_index(Index::drop().name("leads_owner").table(Leads::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Leads::Table)
                .drop_column(Leads::OwnerId)
                .to_owned(),
        )
        .await
    }
}

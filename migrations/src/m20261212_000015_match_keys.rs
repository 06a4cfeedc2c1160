//! Match keys: what each lead is found as a duplicate by (`FindDuplicates`,
//! `[identity] auto_merge_on`) — its normalised email, and its
//! `match_attributes` values together — one row a key, so that the leads
//! sharing a key are one index probe away.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::string;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum LeadMatchKeys {
    Table,
    WorkspaceId,
    Kind,
    Value,
    LeadId,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(LeadMatchKeys::Table)
                .col(string(LeadMatchKeys::WorkspaceId))
                .col(string(LeadMatchKeys::Kind))
                .col(string(LeadMatchKeys::Value))
                .col(string(LeadMatchKeys::LeadId))
                .primary_key(
                    Index::create()
                        .col(LeadMatchKeys::WorkspaceId)
                        .col(LeadMatchKeys::Kind)
                        .col(LeadMatchKeys::Value)
                        .col(LeadMatchKeys::LeadId),
                )
                .to_owned(),
        )
        .await?;
        // A lead's own keys, to replace them.
        m.create_index(
            Index::create()
                .name("lead_match_keys_lead")
                .table(LeadMatchKeys::Table)
                .col(LeadMatchKeys::WorkspaceId)
                .col(LeadMatchKeys::LeadId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LeadMatchKeys::Table).to_owned())
            .await?;
        Ok(())
    }
}

//! API tokens: a workspace, a name, scopes and the hash of a secret that is
//! shown once and never stored; and the principal (a token's name) recorded
//! on transitions and policy versions; and when a lead was erased.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_integer_null, string, text, text_null};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Tokens {
    Table,
    WorkspaceId,
    Id,
    Name,
    SecretHash,
    Scopes,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Leads {
    Table,
    ErasedAt,
    ErasedBy,
}

#[derive(DeriveIden)]
enum Transitions {
    Table,
    Principal,
}

#[derive(DeriveIden)]
enum Policies {
    Table,
    CreatedBy,
    ActivatedBy,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Tokens::Table)
                .col(string(Tokens::WorkspaceId))
                .col(string(Tokens::Id))
                .col(string(Tokens::Name))
                // SHA-256 of the secret, hex.
                .col(string(Tokens::SecretHash))
                // Space-separated scopes.
                .col(text(Tokens::Scopes))
                .col(big_integer(Tokens::CreatedAt))
                .col(big_integer_null(Tokens::ExpiresAt))
                .col(big_integer_null(Tokens::RevokedAt))
                .primary_key(Index::create().col(Tokens::WorkspaceId).col(Tokens::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("tokens_secret_hash")
                .table(Tokens::Table)
                .col(Tokens::SecretHash)
                .unique()
                .to_owned(),
        )
        .await?;
        // SQLite adds one column per statement.
        m.alter_table(
            Table::alter()
                .table(Leads::Table)
                .add_column(big_integer_null(Leads::ErasedAt))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Leads::Table)
                .add_column(text_null(Leads::ErasedBy))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Transitions::Table)
                .add_column(text_null(Transitions::Principal))
                .to_owned(),
        )
        .await?;
        for column in [Policies::CreatedBy, Policies::ActivatedBy] {
            m.alter_table(
                Table::alter()
                    .table(Policies::Table)
                    .add_column(text_null(column))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [Policies::CreatedBy, Policies::ActivatedBy] {
            m.alter_table(
                Table::alter()
                    .table(Policies::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        m.alter_table(
            Table::alter()
                .table(Transitions::Table)
                .drop_column(Transitions::Principal)
                .to_owned(),
        )
        .await?;
        for column in [Leads::ErasedAt, Leads::ErasedBy] {
            m.alter_table(Table::alter().table(Leads::Table).drop_column(column).to_owned())
                .await?;
        }
        m.drop_table(Table::drop().table(Tokens::Table).to_owned()).await
    }
}

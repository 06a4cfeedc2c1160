//! A lead's state in a compact form, and its profile in a column of its own.
//!
//! `packed_state` holds the state as MessagePack after a format byte (the
//! store's `state` module says what each format is); rows written before
//! this migration keep their JSON in `state` and `packed_state` NULL until
//! their next write, and are read as they are. `profile` is a JSON copy of
//! the lead's profile attributes, for queries that filter on them: the
//! migration fills it from the JSON state of the rows already there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Leads {
    Table,
    PackedState,
    Profile,
}

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column a statement: SQLite alters one thing at a time.
        m.alter_table(
            Table::alter()
                .table(Leads::Table)
                .add_column(ColumnDef::new(Leads::PackedState).blob().null())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Leads::Table)
                .add_column(ColumnDef::new(Leads::Profile).text().null())
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        let backend = db.get_database_backend();
        let fill = match backend {
            DbBackend::Postgres => {
                "UPDATE leads SET profile = (state::jsonb -> 'profile')::text WHERE profile IS NULL"
            }
            _ => "UPDATE leads SET profile = json_extract(state, '$.profile') WHERE profile IS NULL",
        };
        db.execute_raw(Statement::from_string(backend, fill)).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let backend = db.get_database_backend();
        let packed = db
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT COUNT(*) AS n FROM leads WHERE packed_state IS NOT NULL",
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        if packed > 0 {
            return Err(DbErr::Migration(format!(
                "{packed} leads hold their state only in the packed form, which an older leadflow cannot read"
            )));
        }
        m.alter_table(
            Table::alter()
                .table(Leads::Table)
                .drop_column(Leads::Profile)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Leads::Table)
                .drop_column(Leads::PackedState)
                .to_owned(),
        )
        .await
    }
}

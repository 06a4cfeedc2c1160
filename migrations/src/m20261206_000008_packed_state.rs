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
        fill_profiles(m).await
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

/// Rows fetched at a time while filling `profile`.
const PAGE: u64 = 1_000;

/// Copies each existing lead's profile out of its JSON state, a page of
/// leads at a time. In Rust rather than SQL: PostgreSQL's JSON functions
/// refuse a `\u0000` escape, which a stored string may hold, and would
/// respace the object.
async fn fill_profiles(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = m.get_connection();
    let backend = db.get_database_backend();
    let sql = |s: &str| match backend {
        DbBackend::Postgres => s.to_owned(),
        _ => s.replace('$', "?"),
    };
    let mut after: Option<(String, String)> = None;
    loop {
        let page = match &after {
            None => Statement::from_string(
                backend,
                format!("SELECT workspace_id, id, state FROM leads ORDER BY workspace_id, id LIMIT {PAGE}"),
            ),
            Some((ws, id)) => Statement::from_sql_and_values(
                backend,
                sql(&format!(
                    "SELECT workspace_id, id, state FROM leads WHERE (workspace_id, id) > ($1, $2) \
                     ORDER BY workspace_id, id LIMIT {PAGE}"
                )),
                [ws.as_str().into(), id.as_str().into()],
            ),
        };
        let rows = db.query_all_raw(page).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = Some((last.try_get("", "workspace_id")?, last.try_get("", "id")?));
        for row in &rows {
            let (ws, id, state): (String, String, String) = (
                row.try_get("", "workspace_id")?,
                row.try_get("", "id")?,
                row.try_get("", "state")?,
            );
            // A state that does not parse is reported when the lead is read.
            let Some(profile) = serde_json::from_str::<serde_json::Value>(&state)
                .ok()
                .and_then(|v| v.get("profile").map(ToString::to_string))
            else {
                continue;
            };
            db.execute_raw(Statement::from_sql_and_values(
                backend,
                sql("UPDATE leads SET profile = $1 WHERE workspace_id = $2 AND id = $3"),
                [profile.into(), ws.into(), id.into()],
            ))
            .await?;
        }
    }
}

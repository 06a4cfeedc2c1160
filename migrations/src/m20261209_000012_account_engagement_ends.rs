//! When an account's engaged members' engagement next ends by decay alone:
//! a column of `accounts` (the soonest end among its engaged members) and
//! a durable timer at that instant, in the timers table under the account's
//! id, which the timer worker fires to take those members out of the
//! buying group. Accounts stored before get both from their members.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::big_integer_null;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    EngagementEndsAt,
}

/// The timer's key (the engine's `ACCOUNT_ENGAGEMENT_END`).
const KEY: &str = "account:engagement-end";

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Accounts::Table)
                .add_column(big_integer_null(Accounts::EngagementEndsAt))
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        db.execute_unprepared(
            "UPDATE accounts SET engagement_ends_at = (
                 SELECT MIN(m.engaged_until) FROM account_members m
                 WHERE m.workspace_id = accounts.workspace_id
                   AND m.account_id = accounts.id
                   AND m.engaged = true
                   AND m.engaged_until < 9223372036854775807)",
        )
        .await?;
        db.execute_unprepared(&format!(
            "INSERT INTO timers (workspace_id, lead_id, key, due_at, bound_stage, bound_at, suppressed, created_at)
             SELECT workspace_id, id, '{KEY}', engagement_ends_at, NULL, NULL, false, updated_at
             FROM accounts WHERE engagement_ends_at IS NOT NULL"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared(&format!("DELETE FROM timers WHERE key = '{KEY}'"))
            .await?;
        m.alter_table(
            Table::alter()
                .table(Accounts::Table)
                .drop_column(Accounts::EngagementEndsAt)
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}

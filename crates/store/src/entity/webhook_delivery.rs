use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub webhook_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub event_id: String,
    /// Whose event (`lead:<id>`, `account:<id>`): one open delivery of a
    /// subject is attempted at a time.
    pub subject: String,
    /// PENDING, RETRYING, PARKED, DELIVERED or SKIPPED.
    pub status: String,
    pub attempts: i32,
    pub first_attempt_at: Option<i64>,
    pub next_attempt_at: i64,
    pub last_attempt_at: Option<i64>,
    pub last_status_code: Option<i32>,
    #[sea_orm(column_type = "Text")]
    pub last_error: String,
    /// Set when delivered or skipped.
    pub resolved_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

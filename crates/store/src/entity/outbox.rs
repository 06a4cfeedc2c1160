use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub event_id: String,
    pub lead_id: String,
    pub kind: String,
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub occurred_at: i64,
    pub created_at: i64,
    #[sea_orm(column_type = "Text", nullable)]
    pub traceparent: Option<String>,
    pub suppressed: bool,
    /// `LEAD` or `ACCOUNT`: whose id `lead_id` holds.
    pub subject: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

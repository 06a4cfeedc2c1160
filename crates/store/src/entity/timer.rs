use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "timers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub lead_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub due_at: i64,
    pub bound_stage: Option<String>,
    pub bound_at: Option<i64>,
    pub suppressed: bool,
    pub created_at: i64,
    /// W3C trace context of the call that scheduled it.
    pub traceparent: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

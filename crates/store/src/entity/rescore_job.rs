use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rescore_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    pub policy_version: i64,
    pub activated_at: i64,
    pub status: String,
    pub cursor: String,
    pub last_lead: String,
    pub total: i64,
    pub done: i64,
    pub transitions: i64,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    pub started_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// W3C trace context of the activation that started it.
    #[sea_orm(column_type = "Text", nullable)]
    pub traceparent: Option<String>,
    /// Set once every lead is done and accounts are decided: the last
    /// account id decided ("" before the first).
    pub account_cursor: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "account_transitions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub from_stage: Option<String>,
    pub to_stage: String,
    pub at: i64,
    #[sea_orm(column_name = "move")]
    pub by: String,
    pub cause: String,
    pub cause_lead: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub cause_ref: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub reason: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub actor: Option<String>,
    pub engagement: f64,
    pub fit: f64,
    pub engaged_members: i32,
    #[sea_orm(column_type = "Text")]
    pub guards: String,
    pub policy_version: i64,
    #[sea_orm(column_type = "Text", nullable)]
    pub principal: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

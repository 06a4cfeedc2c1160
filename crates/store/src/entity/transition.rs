use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "transitions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub lead_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub from_stage: Option<String>,
    pub to_stage: String,
    pub at: i64,
    #[sea_orm(column_name = "move")]
    pub by: String,
    pub cause: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub cause_ref: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub reason: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub actor: Option<String>,
    pub deal_value: Option<f64>,
    pub currency: Option<String>,
    pub fit: f64,
    pub engagement: f64,
    #[sea_orm(column_type = "Text")]
    pub guards: String,
    pub policy_version: i64,
    #[sea_orm(column_type = "Text", nullable)]
    pub principal: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

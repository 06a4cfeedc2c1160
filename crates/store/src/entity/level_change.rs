use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "level_changes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub lead_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub from_level: Option<String>,
    pub to_level: Option<String>,
    pub at: i64,
    pub stage: String,
    pub cause: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub cause_ref: Option<String>,
    pub fit: f64,
    pub engagement: f64,
    pub policy_version: i64,
    pub suppressed: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

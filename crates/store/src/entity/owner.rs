use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "owners")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub display_name: String,
    /// A JSON array of labels.
    #[sea_orm(column_type = "Text")]
    pub teams: String,
    /// A JSON array of labels.
    #[sea_orm(column_type = "Text")]
    pub territories: String,
    pub capacity: Option<i32>,
    pub weight: i32,
    pub available: bool,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub updated_by: Option<String>,
    /// Leads it owns in IQL, MQL or SQL: kept with every change of a
    /// lead's owner or stage (routing's capacity check).
    pub open_leads: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

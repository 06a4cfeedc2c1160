use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "policies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i64,
    pub name: String,
    pub description: String,
    pub source: String,
    pub checksum: String,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    /// The token (by name) that stored it.
    pub created_by: Option<String>,
    /// The token (by name) that last activated it.
    pub activated_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

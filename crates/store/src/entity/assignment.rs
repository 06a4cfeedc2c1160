use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "assignments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub lead_id: String,
    /// Position among the lead's assignments, from 1.
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub at: i64,
    pub from_owner: Option<String>,
    /// `None`: released, or left without an owner (`UNROUTED`).
    pub to_owner: Option<String>,
    pub cause: String,
    pub route_id: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub explanation: String,
    pub reason: Option<String>,
    pub principal: Option<String>,
    /// The lead's stage then.
    pub stage: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

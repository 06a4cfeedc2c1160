use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "relays")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// The last sequence the target acknowledged (and every one before).
    pub cursor: i64,
    /// The process relaying it now, empty when none.
    pub holder: String,
    /// The holder's lease ends then (micros, wall clock) unless renewed.
    pub lease_until: i64,
    pub created_at: i64,
    /// When the cursor last moved.
    pub moved_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "workspaces")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub active_policy_version: Option<i64>,
    /// The last outbox sequence handed out.
    pub outbox_head: i64,
    pub created_at: i64,
    /// Sequences at or below it have been trimmed from the outbox.
    pub outbox_floor: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

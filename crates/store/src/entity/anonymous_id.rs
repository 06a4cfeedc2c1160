use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "anonymous_ids")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub anonymous_id: String,
    /// The lead it joined, once identified.
    pub lead_id: Option<String>,
    pub identified_at: Option<i64>,
    /// Events kept while unidentified.
    pub kept: i64,
    /// Its oldest events dropped over the limit.
    pub dropped: i64,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

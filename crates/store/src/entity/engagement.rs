use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "engagements")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: String,
    pub lead_id: String,
    #[sea_orm(column_name = "type")]
    pub kind: String,
    pub channel: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub properties: String,
    pub occurred_at: i64,
    pub recorded_at: i64,
    /// A hash of the content, to tell a retry from a different event with the same id.
    pub fingerprint: String,
    /// The workflow triggers it set off, as JSON (absent when none).
    #[sea_orm(column_type = "Text", nullable)]
    pub caused_triggers: Option<String>,
    /// The anonymous id it was recorded under (`lead_id` is empty until
    /// that id is identified).
    pub anonymous_id: Option<String>,
    /// One of an anonymous id's oldest events, dropped over its limit: only
    /// its id (and content's hash) is kept.
    pub dropped: bool,
    /// The merged lead whose external key or anonymous id named the lead it
    /// was recorded for (an unmerge takes it back).
    pub via: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

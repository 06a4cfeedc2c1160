use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(column_type = "Text")]
    pub url: String,
    #[sea_orm(column_type = "Text")]
    pub description: String,
    /// The event filter, JSON (kinds, stages, account stages, workflows).
    #[sea_orm(column_type = "Text")]
    pub filter: String,
    /// The signing secret (`whsec_…`).
    pub secret: String,
    /// During a rotation, the secret before it, also signing until `previous_until`.
    pub previous_secret: Option<String>,
    pub previous_until: i64,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// The highest sequence read into its deliveries.
    pub read_to: i64,
    /// Since when every attempt has failed, if they do.
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

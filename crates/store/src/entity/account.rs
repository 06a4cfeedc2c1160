use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub external_key: Option<String>,
    pub domain: Option<String>,
    /// Firmographic attributes, a JSON object.
    #[sea_orm(column_type = "Text")]
    pub attributes: String,
    pub owner: Option<String>,
    pub stage: String,
    pub version: i64,
    pub policy_version: i64,
    pub created_at: i64,
    pub entered_stage_at: i64,
    pub last_transition_at: i64,
    pub entered_by: String,
    pub window_start: Option<i64>,
    pub history_len: i64,
    pub fit: f64,
    pub engagement: f64,
    pub engagement_key: f64,
    pub sum_epoch: i64,
    /// An i128, in decimal.
    pub sum_units: String,
    pub engaged: i32,
    /// Engaged members by persona, a JSON object.
    #[sea_orm(column_type = "Text")]
    pub personas: String,
    pub members: i64,
    pub updated_at: i64,
    /// The soonest end of an engaged member's engagement by decay alone.
    pub engagement_ends_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

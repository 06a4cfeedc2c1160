use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "learn_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    pub status: String,
    pub phase: String,
    pub period_start: i64,
    pub period_end: i64,
    pub outcome: String,
    pub base_version: i64,
    pub model: String,
    pub target_precision: Option<f64>,
    pub choose_fit: bool,
    pub as_of: i64,
    pub total: i64,
    pub read: i64,
    pub outcomes: Option<i64>,
    pub positives: Option<i64>,
    #[sea_orm(column_type = "Text", nullable)]
    pub report: Option<String>,
    pub error_code: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    pub holder: Option<String>,
    pub lease_until: Option<i64>,
    pub attempts: i32,
    pub started_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    #[sea_orm(column_type = "Text", nullable)]
    pub traceparent: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

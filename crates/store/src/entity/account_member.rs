use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "account_members")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub lead_id: String,
    pub account_id: String,
    pub matched_by: String,
    pub matched_at: i64,
    pub persona: Option<String>,
    pub stage: String,
    pub entered_stage_at: i64,
    pub value: f64,
    pub value_at: i64,
    pub score_key: f64,
    pub counts: bool,
    /// `None`: not engaged; `i64::MAX`: engaged until its next change.
    pub engaged_until: Option<i64>,
    /// Counted among the account's engaged members.
    pub engaged: bool,
    pub erased: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

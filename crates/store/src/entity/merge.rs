use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "merges")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub duplicate_id: String,
    pub survivor_id: String,
    /// The merge's instant (`occurred_at`).
    pub merged_at: i64,
    /// When it was recorded: the unmerge window counts from here.
    pub recorded_at: i64,
    /// The duplicate's stage before the merge.
    pub stage: String,
    /// The anonymous ids it brought, as a JSON array.
    #[sea_orm(column_type = "Text")]
    pub anonymous_ids: String,
    /// The attributes it gave the survivor and what they were before, as
    /// JSON (`{"set": {…}, "before": {…}}`).
    #[sea_orm(column_type = "Text")]
    pub attributes: String,
    pub merged_by: Option<String>,
    /// Made by `[identity] auto_merge_on` at a capture, not asked for.
    pub automatic: bool,
    /// Set when the merge was undone.
    pub unmerged_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

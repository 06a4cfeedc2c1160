use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "leads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub external_key: Option<String>,
    pub stage: String,
    pub version: i64,
    pub policy_version: i64,
    pub fit: f64,
    pub engagement: f64,
    pub qualifying_engagement: f64,
    pub grade: String,
    /// The domain's `Lead` as JSON, for rows written before `packed_state`
    /// (empty once it is set).
    #[sea_orm(column_type = "Text")]
    pub state: String,
    pub captured_at: i64,
    pub entered_stage_at: i64,
    pub updated_at: i64,
    pub last_engagement_at: Option<i64>,
    /// Transitions recorded so far; the next one gets `history_len + 1`.
    pub history_len: i64,
    /// Set when the lead was erased: it is then invisible to every lead
    /// read and frozen, its personal data gone.
    pub erased_at: Option<i64>,
    /// The token (by name) that erased it.
    pub erased_by: Option<String>,
    /// The domain's `Lead`, packed (see `crate::state`).
    #[sea_orm(column_type = "Blob", nullable)]
    pub packed_state: Option<Vec<u8>>,
    /// The profile's attributes as a JSON object: a copy of what the state
    /// holds, for queries.
    #[sea_orm(column_type = "Text", nullable)]
    pub profile: Option<String>,
    /// The default model's search keys (see `leadflow_domain::score`);
    /// `None` on rows not written since they were added.
    pub engagement_key: Option<f64>,
    pub qualifying_key: Option<f64>,
    /// The owner (`owners.id`) the lead is handed to, if any.
    pub owner_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

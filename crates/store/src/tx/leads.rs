//! The leads table, in a write transaction: locking leads for a decision,
//! creating them, and writing their new state (held back under
//! [`Tx::defer_writes`]).

use leadflow_domain::lifecycle::SearchKeys;
use leadflow_domain::{Engagement, Timestamp};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait as _, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{INSERT_CHUNK, Tx};
use crate::backend::{Backend, string_array};
use crate::convert;
use crate::entity::{lead, lead_score};
use crate::error::StoreError;
use crate::records::{LeadRecord, LeadWrite};

/// How a lead is looked up.
#[derive(Clone, Copy, Debug)]
pub enum LeadLookup<'a> {
    Id(&'a str),
    ExternalKey(&'a str),
}

/// What a decision changes on a lead row (not its identity, key or capture).
const LEAD_DECISION_COLUMNS: [lead::Column; 16] = [
    lead::Column::Stage,
    lead::Column::Version,
    lead::Column::PolicyVersion,
    lead::Column::Fit,
    lead::Column::Engagement,
    lead::Column::QualifyingEngagement,
    lead::Column::Grade,
    lead::Column::State,
    lead::Column::PackedState,
    lead::Column::Profile,
    lead::Column::EnteredStageAt,
    lead::Column::UpdatedAt,
    lead::Column::LastEngagementAt,
    lead::Column::HistoryLen,
    lead::Column::EngagementKey,
    lead::Column::QualifyingKey,
];

impl Tx {
    /// Reads a lead and locks it until commit, together with the workspace's
    /// active policy version — one statement, on the hot path of every command.
    pub async fn lock_lead_with_policy(
        &self,
        ws: &str,
        key: LeadLookup<'_>,
    ) -> Result<Option<(LeadRecord, Option<i64>)>, StoreError> {
        let (by, value) = match key {
            LeadLookup::Id(id) => ("id", id),
            LeadLookup::ExternalKey(k) => ("external_key", k),
        };
        let sql = match self.backend {
            Backend::Postgres => format!(
                "SELECT l.*, (SELECT w.active_policy_version FROM workspaces w WHERE w.id = $1) AS active_version \
                 FROM leads l WHERE l.workspace_id = $1 AND l.{by} = $2 AND l.erased_at IS NULL FOR UPDATE OF l"
            ),
            // One writer at a time: no row lock to take.
            Backend::Sqlite => format!(
                "SELECT l.*, (SELECT w.active_policy_version FROM workspaces w WHERE w.id = ?1) AS active_version \
                 FROM leads l WHERE l.workspace_id = ?1 AND l.{by} = ?2 AND l.erased_at IS NULL"
            ),
        };
        let statement = sea_orm::Statement::from_sql_and_values(
            self.txn.get_database_backend(),
            sql,
            [ws.into(), value.into()],
        );
        let Some(row) = self.db().await?.query_one_raw(statement).await? else {
            return Ok(None);
        };
        let active: Option<i64> = row.try_get("", "active_version")?;
        let model = <lead::Model as sea_orm::FromQueryResult>::from_query_result(&row, "")?;
        Ok(Some((convert::lead_record(model)?, active)))
    }

    /// [`Tx::lock_lead_with_policy`] by id, then records the engagement
    /// unless its event id is recorded already (the last value: whether it
    /// was recorded now). On PostgreSQL one statement does both, the insert
    /// after the lock (a data-modifying `WITH` over the locked row); nothing
    /// is recorded when the lead is not found.
    pub async fn lock_lead_recording(
        &self,
        ws: &str,
        lead_id: &str,
        e: &Engagement,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<Option<(LeadRecord, Option<i64>, bool)>, StoreError> {
        if self.backend == Backend::Sqlite {
            let Some((record, active)) = self.lock_lead_with_policy(ws, LeadLookup::Id(lead_id)).await?
            else {
                return Ok(None);
            };
            let new = self
                .insert_engagement_if_new(ws, lead_id, e, fingerprint, now)
                .await?;
            return Ok(Some((record, active, new)));
        }
        let row = super::engagements::engagement_row(ws, lead_id, e, fingerprint, now)?;
        let statement = sea_orm::Statement::from_sql_and_values(
            self.txn.get_database_backend(),
            "WITH locked AS ( \
               SELECT l.*, (SELECT w.active_policy_version FROM workspaces w WHERE w.id = $1) AS active_version \
               FROM leads l WHERE l.workspace_id = $1 AND l.id = $2 AND l.erased_at IS NULL FOR UPDATE OF l \
             ), recorded AS ( \
               INSERT INTO engagements \
                 (workspace_id, event_id, lead_id, \"type\", channel, properties, occurred_at, recorded_at, fingerprint) \
               SELECT $1, $3, locked.id, $4, $5, $6, $7, $8, $9 FROM locked \
               ON CONFLICT (workspace_id, event_id) DO NOTHING RETURNING 1 \
             ) \
             SELECT locked.*, EXISTS (SELECT 1 FROM recorded) AS recorded FROM locked",
            [
                ws.into(),
                lead_id.into(),
                row.event_id.into(),
                row.kind.into(),
                row.channel.into(),
                row.properties.into(),
                row.occurred_at.into(),
                row.recorded_at.into(),
                row.fingerprint.into(),
            ],
        );
        let Some(row) = self.db().await?.query_one_raw(statement).await? else {
            return Ok(None);
        };
        let active: Option<i64> = row.try_get("", "active_version")?;
        let recorded: bool = row.try_get("", "recorded")?;
        let model = <lead::Model as sea_orm::FromQueryResult>::from_query_result(&row, "")?;
        Ok(Some((convert::lead_record(model)?, active, recorded)))
    }

    /// Reads many leads, by id or external key, and locks them until commit
    /// in id order (so two batches over the same leads queue instead of
    /// deadlocking); with the workspace's active policy version, read after
    /// the locks are held. Leads not found are left out.
    pub async fn lock_leads_with_policy(
        &self,
        ws: &str,
        ids: &[&str],
        external_keys: &[&str],
    ) -> Result<(Vec<LeadRecord>, Option<i64>), StoreError> {
        let mut records = Vec::with_capacity(ids.len() + external_keys.len());
        if self.backend == Backend::Postgres {
            // Arrays as single parameters: the plan uses the keys' indexes
            // whatever the table's statistics (a list of parameters, planned
            // generically while a new table's statistics are stale, was
            // seen to scan the whole workspace).
            let statement = sea_orm::Statement::from_sql_and_values(
                self.txn.get_database_backend(),
                "SELECT * FROM leads WHERE workspace_id = $1 AND (id = ANY($2) OR external_key = ANY($3)) \
                 AND erased_at IS NULL ORDER BY id FOR UPDATE",
                [ws.into(), string_array(ids), string_array(external_keys)],
            );
            for row in self.db().await?.query_all_raw(statement).await? {
                let model = <lead::Model as sea_orm::FromQueryResult>::from_query_result(&row, "")?;
                records.push(convert::lead_record(model)?);
            }
            let active = self.active_policy_version(ws).await?.flatten();
            return Ok((records, active));
        }
        // One statement, unless there are more than a statement may carry.
        let (mut rest_ids, mut rest_keys) = (ids, external_keys);
        while !rest_ids.is_empty() || !rest_keys.is_empty() {
            let (ids, more_ids) = rest_ids.split_at(rest_ids.len().min(INSERT_CHUNK));
            let (keys, more_keys) = rest_keys.split_at(rest_keys.len().min(INSERT_CHUNK - ids.len()));
            (rest_ids, rest_keys) = (more_ids, more_keys);
            // One writer at a time on SQLite: reading is locking.
            let rows = lead::Entity::find()
                .filter(lead::Column::WorkspaceId.eq(ws))
                .filter(
                    sea_orm::Condition::any()
                        .add(lead::Column::Id.is_in(ids.iter().copied()))
                        .add(lead::Column::ExternalKey.is_in(keys.iter().copied())),
                )
                .filter(lead::Column::ErasedAt.is_null())
                .order_by_asc(lead::Column::Id)
                .all(self.db().await?)
                .await?;
            for row in rows {
                records.push(convert::lead_record(row)?);
            }
        }
        let active = self.active_policy_version(ws).await?.flatten();
        Ok((records, active))
    }

    /// The id of the lead holding `external_key`, if any.
    pub async fn lead_id_by_key(&self, ws: &str, external_key: &str) -> Result<Option<String>, StoreError> {
        Ok(lead::Entity::find()
            .select_only()
            .column(lead::Column::Id)
            .filter(lead::Column::WorkspaceId.eq(ws))
            .filter(lead::Column::ExternalKey.eq(external_key))
            .into_tuple::<String>()
            .one(self.db().await?)
            .await?)
    }

    pub async fn insert_lead(
        &self,
        ws: &str,
        external_key: Option<&str>,
        w: LeadWrite<'_>,
    ) -> Result<(), StoreError> {
        lead::Entity::insert(lead_model(ws, external_key, &w)?)
            .exec_without_returning(self.db().await?)
            .await?;
        self.write_model_scores(ws, &w).await
    }

    /// The search keys of every model but the default (a column of the
    /// lead's row) that changed, in one statement.
    async fn write_model_scores(&self, ws: &str, w: &LeadWrite<'_>) -> Result<(), StoreError> {
        let changed: Vec<&SearchKeys> = w
            .keys
            .iter()
            .skip(1)
            .filter(|k| w.keys_before.is_none_or(|before| !before.contains(k)))
            .collect();
        self.upsert_model_scores(ws, w.id, &changed).await
    }

    /// A lead's search keys, written apart from a decision (see
    /// `Store::key_unkeyed_leads`) unless a decision keyed it meanwhile;
    /// whether they were written.
    pub(crate) async fn set_search_keys(
        &self,
        ws: &str,
        id: &str,
        keys: &[SearchKeys],
    ) -> Result<bool, StoreError> {
        let Some(default) = keys.first() else {
            return Ok(false);
        };
        let updated = lead::Entity::update_many()
            .col_expr(lead::Column::EngagementKey, Expr::value(default.engagement))
            .col_expr(lead::Column::QualifyingKey, Expr::value(default.qualifying))
            .filter(lead::Column::WorkspaceId.eq(ws))
            .filter(lead::Column::Id.eq(id))
            .filter(lead::Column::EngagementKey.is_null())
            .exec(self.db().await?)
            .await?
            .rows_affected;
        if updated == 0 {
            return Ok(false);
        }
        let rest: Vec<&SearchKeys> = keys.iter().skip(1).collect();
        self.upsert_model_scores(ws, id, &rest).await?;
        Ok(true)
    }

    async fn upsert_model_scores(&self, ws: &str, id: &str, keys: &[&SearchKeys]) -> Result<(), StoreError> {
        let changed: Vec<lead_score::ActiveModel> = keys
            .iter()
            .map(|k| lead_score::ActiveModel {
                workspace_id: Set(ws.to_owned()),
                model: Set(k.model.clone()),
                lead_id: Set(id.to_owned()),
                fit: Set(k.fit),
                engagement_key: Set(k.engagement),
                qualifying_key: Set(k.qualifying),
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        lead_score::Entity::insert_many(changed)
            .on_conflict(
                OnConflict::columns([
                    lead_score::Column::WorkspaceId,
                    lead_score::Column::Model,
                    lead_score::Column::LeadId,
                ])
                .update_columns([
                    lead_score::Column::Fit,
                    lead_score::Column::EngagementKey,
                    lead_score::Column::QualifyingKey,
                ])
                .to_owned(),
            )
            .exec_without_returning(self.db().await?)
            .await?;
        Ok(())
    }

    pub async fn update_lead(&self, ws: &str, w: LeadWrite<'_>) -> Result<(), StoreError> {
        self.write_model_scores(ws, &w).await?;
        if self.deferring() {
            let model = lead_model(ws, None, &w)?;
            self.pending().leads.insert(w.id.to_owned(), model);
            return Ok(());
        }
        let mut model = lead_model(ws, None, &w)?;
        model.external_key = sea_orm::ActiveValue::NotSet;
        model.workspace_id = sea_orm::ActiveValue::NotSet;
        model.id = sea_orm::ActiveValue::NotSet;
        model.captured_at = sea_orm::ActiveValue::NotSet;
        model.erased_at = sea_orm::ActiveValue::NotSet;
        model.erased_by = sea_orm::ActiveValue::NotSet;
        lead::Entity::update_many()
            .set(model)
            .filter(lead::Column::WorkspaceId.eq(ws))
            .filter(lead::Column::Id.eq(w.id))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    /// Lead updates held back, each lead's latest state.
    pub(super) async fn write_deferred_leads(&self, leads: Vec<lead::ActiveModel>) -> Result<(), StoreError> {
        for chunk in leads.chunks(INSERT_CHUNK) {
            // Every lead here exists and is locked: the insert is an update
            // of the columns a decision changes, one statement for them all.
            lead::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([lead::Column::WorkspaceId, lead::Column::Id])
                        .update_columns(LEAD_DECISION_COLUMNS)
                        .to_owned(),
                )
                .exec_without_returning(&self.txn)
                .await?;
        }
        Ok(())
    }
}

fn lead_model(
    ws: &str,
    external_key: Option<&str>,
    w: &LeadWrite<'_>,
) -> Result<lead::ActiveModel, StoreError> {
    let packed = crate::state::pack(w.id, w.lead)?;
    let profile = crate::state::profile_json(w.id, w.lead)?;
    Ok(lead::ActiveModel {
        workspace_id: Set(ws.to_owned()),
        id: Set(w.id.to_owned()),
        external_key: Set(external_key.map(str::to_owned)),
        stage: Set(w.lead.stage.as_str().to_owned()),
        version: Set(w.version),
        policy_version: Set(w.policy_version),
        fit: Set(w.scores.fit),
        engagement: Set(w.scores.engagement),
        qualifying_engagement: Set(w.scores.qualifying_engagement),
        grade: Set(w.scores.grade.clone()),
        state: Set(String::new()),
        packed_state: Set(Some(packed)),
        profile: Set(Some(profile)),
        captured_at: Set(w.lead.captured_at.as_micros()),
        entered_stage_at: Set(w.lead.entered_stage_at.as_micros()),
        updated_at: Set(w.now.as_micros()),
        last_engagement_at: Set(w.lead.last_engagement_at().map(Timestamp::as_micros)),
        history_len: Set(w.history_len),
        erased_at: Set(None),
        erased_by: Set(None),
        engagement_key: Set(w.keys.first().map(|k| k.engagement)),
        qualifying_key: Set(w.keys.first().map(|k| k.qualifying)),
        owner_id: sea_orm::ActiveValue::NotSet,
    })
}

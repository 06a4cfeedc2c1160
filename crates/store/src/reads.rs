//! Reads outside a write transaction (on SQLite, through the reader pool).

use leadflow_domain::{Engagement, Stage, Timestamp};
use sea_orm::sea_query::Condition;
use sea_orm::{
    AccessMode, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use crate::Store;
use crate::backend::{Backend, string_array};
use crate::convert;
use crate::entity::{engagement, lead, level_change, outbox, policy, timer, transition, workspace};
use crate::error::StoreError;
use crate::queries::engagements_of;
use crate::records::{
    EngagementCursor, LeadRecord, NewOutboxEvent, OutboxRecord, PolicyRecord, StoredEngagement,
    StoredLevelChange, StoredTimer, StoredTransition,
};

/// What [`Store::batch_survey`] found.
#[derive(Clone, Debug, Default)]
pub struct BatchSurvey {
    pub leads: Vec<LeadName>,
    pub engagements: Vec<StoredEngagement>,
}

/// A live lead, as a batch names it.
#[derive(Clone, Debug)]
pub struct LeadName {
    pub id: String,
    pub external_key: Option<String>,
    pub last_engagement_at: Option<Timestamp>,
    /// Merged into another lead: its key names the survivor.
    pub merged: bool,
}

impl Store {
    pub async fn lead(&self, ws: &str, id: &str) -> Result<Option<LeadRecord>, StoreError> {
        lead::Entity::find_by_id((ws.to_owned(), id.to_owned()))
            .filter(lead::Column::ErasedAt.is_null())
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(convert::lead_record)
            .transpose()
    }

    /// Where the lead's score checkpoints end, in scoring order: for tests
    /// that look at the cache.
    #[cfg(any(test, feature = "testing"))]
    pub async fn checkpoints_of(
        &self,
        ws: &str,
        lead_id: &str,
    ) -> Result<Vec<leadflow_domain::EventKey>, StoreError> {
        use crate::entity::score_checkpoint::{Column as C, Entity};
        use sea_orm::QueryOrder as _;
        Ok(Entity::find()
            .filter(C::WorkspaceId.eq(ws))
            .filter(C::LeadId.eq(lead_id))
            .order_by_asc(C::OccurredAt)
            .order_by_asc(C::EventId)
            .all(self.reader())
            .await?
            .into_iter()
            .map(|row| leadflow_domain::EventKey {
                occurred_at: Timestamp::from_micros(row.occurred_at),
                event_id: row.event_id,
            })
            .collect())
    }

    pub async fn lead_by_key(&self, ws: &str, external_key: &str) -> Result<Option<LeadRecord>, StoreError> {
        lead::Entity::find()
            .filter(lead::Column::WorkspaceId.eq(ws))
            .filter(lead::Column::ExternalKey.eq(external_key))
            .filter(lead::Column::ErasedAt.is_null())
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(convert::lead_record)
            .transpose()
    }

    /// What a batch checks before it writes, read without locking: the live
    /// leads named by `ids` or `external_keys` (each one's id, external key
    /// and the instant of its latest engagement), and the engagements
    /// already recorded under `event_ids`. At most a batch's worth of each.
    ///
    /// Every row is found through its key's index: on PostgreSQL the keys go
    /// as arrays, in a read-only transaction that does not let the planner
    /// scan a table whose statistics are stale (a young table's plan was seen
    /// to scan a whole workspace for a hundred event ids).
    pub async fn batch_survey(
        &self,
        ws: &str,
        ids: &[&str],
        external_keys: &[&str],
        event_ids: &[&str],
    ) -> Result<BatchSurvey, StoreError> {
        let mut survey = BatchSurvey::default();
        if self.backend() == Backend::Postgres {
            let tx = self
                .reader()
                .begin_with_config(None, Some(AccessMode::ReadOnly))
                .await
                .map_err(|e| self.on_reader(e))?;
            tx.execute_unprepared("SET LOCAL enable_seqscan = off").await?;
            let statement = |sql: &str, values: Vec<sea_orm::Value>| {
                sea_orm::Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, values)
            };
            if !ids.is_empty() || !external_keys.is_empty() {
                for row in tx
                    .query_all_raw(statement(
                        "SELECT id, external_key, last_engagement_at, stage FROM leads WHERE workspace_id = $1 \
                         AND (id = ANY($2) OR external_key = ANY($3)) AND erased_at IS NULL",
                        vec![ws.into(), string_array(ids), string_array(external_keys)],
                    ))
                    .await?
                {
                    survey.leads.push(LeadName {
                        id: row.try_get("", "id")?,
                        external_key: row.try_get("", "external_key")?,
                        last_engagement_at: row
                            .try_get::<Option<i64>>("", "last_engagement_at")?
                            .map(Timestamp::from_micros),
                        merged: row.try_get::<String>("", "stage")? == Stage::Merged.as_str(),
                    });
                }
            }
            if !event_ids.is_empty() {
                for row in tx
                    .query_all_raw(statement(
                        "SELECT * FROM engagements WHERE workspace_id = $1 AND event_id = ANY($2)",
                        vec![ws.into(), string_array(event_ids)],
                    ))
                    .await?
                {
                    let model = <engagement::Model as sea_orm::FromQueryResult>::from_query_result(&row, "")?;
                    survey.engagements.push(convert::engagement(model)?);
                }
            }
            tx.commit().await?;
            return Ok(survey);
        }
        if !ids.is_empty() || !external_keys.is_empty() {
            survey.leads = lead::Entity::find()
                .select_only()
                .column(lead::Column::Id)
                .column(lead::Column::ExternalKey)
                .column(lead::Column::LastEngagementAt)
                .column(lead::Column::Stage)
                .filter(lead::Column::WorkspaceId.eq(ws))
                .filter(
                    Condition::any()
                        .add(lead::Column::Id.is_in(ids.iter().copied()))
                        .add(lead::Column::ExternalKey.is_in(external_keys.iter().copied())),
                )
                .filter(lead::Column::ErasedAt.is_null())
                .into_tuple::<(String, Option<String>, Option<i64>, String)>()
                .all(self.reader())
                .await
                .map_err(|e| self.on_reader(e))?
                .into_iter()
                .map(|(id, external_key, last, stage)| LeadName {
                    id,
                    external_key,
                    last_engagement_at: last.map(Timestamp::from_micros),
                    merged: stage == Stage::Merged.as_str(),
                })
                .collect();
        }
        if !event_ids.is_empty() {
            survey.engagements = engagement::Entity::find()
                .filter(engagement::Column::WorkspaceId.eq(ws))
                .filter(engagement::Column::EventId.is_in(event_ids.iter().copied()))
                .all(self.reader())
                .await
                .map_err(|e| self.on_reader(e))?
                .into_iter()
                .map(convert::engagement)
                .collect::<Result<_, _>>()?;
        }
        Ok(survey)
    }

    /// Leads by id, after `after`, optionally in one stage.
    pub async fn list_leads(
        &self,
        ws: &str,
        stage: Option<Stage>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<LeadRecord>, StoreError> {
        let mut q = lead::Entity::find()
            .filter(lead::Column::WorkspaceId.eq(ws))
            .filter(lead::Column::ErasedAt.is_null());
        // Merged leads only when asked for.
        q = match stage {
            Some(stage) => q.filter(lead::Column::Stage.eq(stage.as_str())),
            None => q.filter(lead::Column::Stage.ne(Stage::Merged.as_str())),
        };
        if let Some(after) = after {
            q = q.filter(lead::Column::Id.gt(after));
        }
        q.order_by_asc(lead::Column::Id)
            .limit(limit)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(convert::lead_record)
            .collect()
    }

    /// The workspace's latest transitions, newest first.
    pub async fn latest_transitions(
        &self,
        ws: &str,
        limit: u64,
    ) -> Result<Vec<StoredTransition>, StoreError> {
        transition::Entity::find()
            .filter(transition::Column::WorkspaceId.eq(ws))
            .order_by_desc(transition::Column::At)
            .order_by_desc(transition::Column::LeadId)
            .order_by_desc(transition::Column::Seq)
            .limit(limit)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(convert::transition)
            .collect()
    }

    /// A lead's whole log, in scoring order.
    pub async fn engagements_of(&self, ws: &str, lead_id: &str) -> Result<Vec<Engagement>, StoreError> {
        engagements_of(self.reader(), ws, lead_id).await
    }

    /// A page of a lead's engagements in scoring order, after `after`.
    pub async fn engagements_page(
        &self,
        ws: &str,
        lead_id: &str,
        after: Option<&EngagementCursor>,
        limit: u64,
    ) -> Result<Vec<StoredEngagement>, StoreError> {
        let mut q = engagement::Entity::find()
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::LeadId.eq(lead_id));
        if let Some(c) = after {
            q = q.filter(
                Condition::any()
                    .add(engagement::Column::OccurredAt.gt(c.occurred_at.as_micros()))
                    .add(
                        Condition::all()
                            .add(engagement::Column::OccurredAt.eq(c.occurred_at.as_micros()))
                            .add(engagement::Column::EventId.gt(c.event_id.as_str())),
                    ),
            );
        }
        q.order_by_asc(engagement::Column::OccurredAt)
            .order_by_asc(engagement::Column::EventId)
            .limit(limit)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(convert::engagement)
            .collect()
    }

    /// A page of a lead's transitions, in order, after sequence `after`.
    pub async fn transitions_page(
        &self,
        ws: &str,
        lead_id: &str,
        after: i64,
        limit: u64,
    ) -> Result<Vec<StoredTransition>, StoreError> {
        transition::Entity::find()
            .filter(transition::Column::WorkspaceId.eq(ws))
            .filter(transition::Column::LeadId.eq(lead_id))
            .filter(transition::Column::Seq.gt(after))
            .order_by_asc(transition::Column::Seq)
            .limit(limit)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(convert::transition)
            .collect()
    }

    /// A page of a lead's level changes, in order, after sequence `after`.
    pub async fn level_changes_page(
        &self,
        ws: &str,
        lead_id: &str,
        after: i64,
        limit: u64,
    ) -> Result<Vec<StoredLevelChange>, StoreError> {
        level_change::Entity::find()
            .filter(level_change::Column::WorkspaceId.eq(ws))
            .filter(level_change::Column::LeadId.eq(lead_id))
            .filter(level_change::Column::Seq.gt(after))
            .order_by_asc(level_change::Column::Seq)
            .limit(limit)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(convert::level_change)
            .collect()
    }

    /// A lead's pending timers, soonest first.
    pub async fn timers_of(&self, ws: &str, lead_id: &str) -> Result<Vec<StoredTimer>, StoreError> {
        timer::Entity::find()
            .filter(timer::Column::WorkspaceId.eq(ws))
            .filter(timer::Column::LeadId.eq(lead_id))
            .order_by_asc(timer::Column::DueAt)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(convert::timer)
            .collect()
    }

    /// Outbox events after `after`, in sequence order.
    pub async fn outbox_after(
        &self,
        ws: &str,
        after: i64,
        limit: u64,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        Ok(outbox::Entity::find()
            .filter(outbox::Column::WorkspaceId.eq(ws))
            .filter(outbox::Column::Seq.gt(after))
            .order_by_asc(outbox::Column::Seq)
            .limit(limit)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(|r| OutboxRecord {
                seq: r.seq,
                event: NewOutboxEvent {
                    created_at: convert::ts(r.created_at),
                    event_id: r.event_id,
                    lead_id: r.lead_id,
                    subject: crate::records::Subject::parse(&r.subject),
                    kind: r.kind,
                    payload: r.payload,
                    occurred_at: convert::ts(r.occurred_at),
                    traceparent: r.traceparent,
                    suppressed: r.suppressed,
                },
            })
            .collect())
    }

    /// Rows per table in a workspace — leads, engagements, transitions,
    /// outbox, timers, level changes — for checks that a refused command
    /// wrote nothing.
    pub async fn row_counts(&self, ws: &str) -> Result<[u64; 6], StoreError> {
        let db = self.reader();
        Ok([
            lead::Entity::find()
                .filter(lead::Column::WorkspaceId.eq(ws))
                .count(db)
                .await?,
            engagement::Entity::find()
                .filter(engagement::Column::WorkspaceId.eq(ws))
                .count(db)
                .await?,
            transition::Entity::find()
                .filter(transition::Column::WorkspaceId.eq(ws))
                .count(db)
                .await?,
            outbox::Entity::find()
                .filter(outbox::Column::WorkspaceId.eq(ws))
                .count(db)
                .await?,
            timer::Entity::find()
                .filter(timer::Column::WorkspaceId.eq(ws))
                .count(db)
                .await?,
            level_change::Entity::find()
                .filter(level_change::Column::WorkspaceId.eq(ws))
                .count(db)
                .await?,
        ])
    }

    // ---- policies ----------------------------------------------------------

    pub async fn active_policy_version(&self, ws: &str) -> Result<Option<i64>, StoreError> {
        Ok(workspace::Entity::find_by_id(ws.to_owned())
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .and_then(|w| w.active_policy_version))
    }

    pub async fn policy(&self, ws: &str, version: i64) -> Result<Option<PolicyRecord>, StoreError> {
        let active = self.active_policy_version(ws).await?;
        Ok(policy::Entity::find_by_id((ws.to_owned(), version))
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(|row| convert::policy(row, active)))
    }

    /// Versions newest first, below `before`.
    pub async fn list_policies(
        &self,
        ws: &str,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<PolicyRecord>, StoreError> {
        let active = self.active_policy_version(ws).await?;
        let mut q = policy::Entity::find().filter(policy::Column::WorkspaceId.eq(ws));
        if let Some(before) = before {
            q = q.filter(policy::Column::Version.lt(before));
        }
        Ok(q.order_by_desc(policy::Column::Version)
            .limit(limit)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(|row| convert::policy(row, active))
            .collect())
    }
}

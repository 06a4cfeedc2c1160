//! A write transaction: everything one command (or one batch) writes.

use leadflow_domain::lifecycle::TransitionRecord;
use leadflow_domain::workflow::{TimerChange, Trigger};
use std::sync::{Mutex, PoisonError};

use indexmap::IndexMap;

use leadflow_domain::{Engagement, Timestamp};
use sea_orm::ConnectionTrait as _;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::backend::{Backend, string_array};
use crate::convert;
use crate::entity::{engagement, idempotency, lead, outbox, policy, timer, transition, workspace};
use crate::error::StoreError;
use crate::records::{
    LeadRecord, LeadWrite, NewEngagement, NewOutboxEvent, NewPolicy, PolicyRecord, StoredEngagement,
    StoredResult,
};

/// How a lead is looked up.
#[derive(Clone, Copy, Debug)]
pub enum LeadLookup<'a> {
    Id(&'a str),
    ExternalKey(&'a str),
}

/// PostgreSQL takes at most 65,535 bind parameters in one statement.
const INSERT_CHUNK: usize = 1_000;

/// What a decision changes on a lead row (not its identity, key or capture).
const LEAD_DECISION_COLUMNS: [lead::Column; 12] = [
    lead::Column::Stage,
    lead::Column::Version,
    lead::Column::PolicyVersion,
    lead::Column::Fit,
    lead::Column::Engagement,
    lead::Column::QualifyingEngagement,
    lead::Column::Grade,
    lead::Column::State,
    lead::Column::EnteredStageAt,
    lead::Column::UpdatedAt,
    lead::Column::LastEngagementAt,
    lead::Column::HistoryLen,
];

/// A write transaction. Dropped without [`Tx::commit`], it rolls back.
#[derive(Debug)]
pub struct Tx {
    txn: DatabaseTransaction,
    backend: Backend,
    /// Outbox events, appended at commit (see [`Tx::append_outbox`]).
    outbox: Mutex<Vec<(String, NewOutboxEvent)>>,
    /// Writes held back until the next statement (see [`Tx::defer_writes`]).
    pending: Mutex<Pending>,
    /// The transaction's span: it ends when the transaction does.
    span: tracing::Span,
}

/// Rows written together, a statement a table, before anything else runs.
#[derive(Debug, Default)]
struct Pending {
    on: bool,
    /// The latest state of each lead updated, by id.
    leads: IndexMap<String, lead::ActiveModel>,
    transitions: Vec<transition::ActiveModel>,
    /// Each lead's timer changes by (workspace, lead), folded into their net effect.
    timers: IndexMap<(String, String), LeadTimers>,
}

/// The net effect of a lead's timer changes, in the order they were made:
/// first its stage-bound timers are cancelled (if any change said so), then
/// each key ends up scheduled (`Some`) or cancelled (`None`).
#[derive(Debug, Default)]
struct LeadTimers {
    cancel_stage_bound: bool,
    keys: IndexMap<String, Option<timer::ActiveModel>>,
}

impl LeadTimers {
    fn apply(
        &mut self,
        change: &TimerChange,
        ws: &str,
        lead_id: &str,
        now: Timestamp,
        traceparent: Option<&str>,
    ) {
        match change {
            TimerChange::Schedule(t) => {
                self.keys
                    .insert(t.kind.key(), Some(timer_model(ws, lead_id, t, now, traceparent)));
            }
            TimerChange::Cancel(kind) => {
                self.keys.insert(kind.key(), None);
            }
            TimerChange::CancelStageBound => {
                self.cancel_stage_bound = true;
                for row in self.keys.values_mut() {
                    if row
                        .as_ref()
                        .is_some_and(|r| matches!(&r.bound_stage, sea_orm::ActiveValue::Set(Some(_))))
                    {
                        *row = None;
                    }
                }
            }
        }
    }
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.leads.is_empty() && self.transitions.is_empty() && self.timers.is_empty()
    }
}

impl Tx {
    pub(crate) fn new(txn: DatabaseTransaction, backend: Backend, span: tracing::Span) -> Self {
        Self {
            txn,
            backend,
            outbox: Mutex::new(Vec::new()),
            pending: Mutex::new(Pending::default()),
            span,
        }
    }

    /// Gives a transaction begun outside any trace the span it would have
    /// had under the current one (a job found inside it starts the trace).
    pub fn trace_here(&mut self) {
        if self.span.is_none() {
            self.span = crate::backend::transaction_span(self.backend);
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// From now on, lead updates, transitions and timer changes are held
    /// back and written together — each lead once with its latest state,
    /// transitions in multi-row inserts, timers by their net effect — just
    /// before the next other statement or the commit. Every
    /// read in this transaction still sees them. A batch of many
    /// engagements costs a few statements instead of a few per engagement.
    pub fn defer_writes(&self) {
        self.pending().on = true;
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deferring(&self) -> bool {
        self.pending().on
    }

    /// The connection, once every held-back write is in.
    pub(crate) async fn db(&self) -> Result<&DatabaseTransaction, StoreError> {
        self.flush().await?;
        Ok(&self.txn)
    }

    /// Writes what [`Tx::defer_writes`] held back.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let pending = {
            let mut p = self.pending();
            if p.is_empty() {
                return Ok(());
            }
            Pending {
                on: p.on,
                leads: std::mem::take(&mut p.leads),
                transitions: std::mem::take(&mut p.transitions),
                timers: std::mem::take(&mut p.timers),
            }
        };
        let leads: Vec<lead::ActiveModel> = pending.leads.into_values().collect();
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
        for chunk in pending.transitions.chunks(INSERT_CHUNK) {
            transition::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&self.txn)
                .await?;
        }
        self.write_timers(pending.timers).await
    }

    /// Timer changes held back, a statement per kind of change.
    async fn write_timers(&self, timers: IndexMap<(String, String), LeadTimers>) -> Result<(), StoreError> {
        let mut unbound: IndexMap<&str, Vec<&str>> = IndexMap::new();
        for ((ws, lead), t) in &timers {
            if t.cancel_stage_bound {
                unbound.entry(ws.as_str()).or_default().push(lead.as_str());
            }
        }
        for (ws, leads) in unbound {
            for chunk in leads.chunks(INSERT_CHUNK) {
                timer::Entity::delete_many()
                    .filter(timer::Column::WorkspaceId.eq(ws))
                    .filter(timer::Column::LeadId.is_in(chunk.iter().copied()))
                    .filter(timer::Column::BoundStage.is_not_null())
                    .exec(&self.txn)
                    .await?;
            }
        }
        let mut cancelled = Vec::new();
        let mut scheduled = Vec::new();
        for ((ws, lead), t) in &timers {
            for (key, row) in &t.keys {
                match row {
                    Some(row) => scheduled.push(row.clone()),
                    None => cancelled.push((ws.as_str(), lead.as_str(), key.as_str())),
                }
            }
        }
        for chunk in cancelled.chunks(INSERT_CHUNK / 3) {
            let mut any = sea_orm::Condition::any();
            for &(ws, lead, key) in chunk {
                any = any.add(
                    sea_orm::Condition::all()
                        .add(timer::Column::WorkspaceId.eq(ws))
                        .add(timer::Column::LeadId.eq(lead))
                        .add(timer::Column::Key.eq(key)),
                );
            }
            timer::Entity::delete_many().filter(any).exec(&self.txn).await?;
        }
        for chunk in scheduled.chunks(INSERT_CHUNK) {
            timer::Entity::insert_many(chunk.to_vec())
                .on_conflict(timer_upsert())
                .exec_without_returning(&self.txn)
                .await?;
        }
        Ok(())
    }

    /// Appends the buffered outbox events, then commits.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.flush().await?;
        let pending = std::mem::take(&mut *self.outbox.lock().unwrap_or_else(PoisonError::into_inner));
        let mut by_workspace: Vec<(String, Vec<NewOutboxEvent>)> = Vec::new();
        for (ws, event) in pending {
            match by_workspace.iter_mut().find(|(w, _)| *w == ws) {
                Some((_, events)) => events.push(event),
                None => by_workspace.push((ws, vec![event])),
            }
        }
        for (ws, events) in by_workspace {
            self.write_outbox(&ws, &events).await?;
        }
        Ok(self.txn.commit().await?)
    }

    // ---- workspaces and policies -------------------------------------------

    /// Creates the workspace if it does not exist.
    pub async fn ensure_workspace(&self, ws: &str, now: Timestamp) -> Result<(), StoreError> {
        workspace::Entity::insert(workspace::ActiveModel {
            id: Set(ws.to_owned()),
            active_policy_version: Set(None),
            outbox_head: Set(0),
            outbox_floor: Set(0),
            created_at: Set(now.as_micros()),
        })
        .on_conflict_do_nothing_on([workspace::Column::Id])
        .exec_without_returning(self.db().await?)
        .await?;
        Ok(())
    }

    /// The workspace's active policy version (`None` if the workspace does not exist).
    pub async fn active_policy_version(&self, ws: &str) -> Result<Option<Option<i64>>, StoreError> {
        Ok(workspace::Entity::find_by_id(ws.to_owned())
            .one(self.db().await?)
            .await?
            .map(|w| w.active_policy_version))
    }

    /// The workspace's active policy version, locking the workspace row until
    /// commit (policy changes are serialised per workspace).
    pub async fn lock_workspace(&self, ws: &str) -> Result<Option<Option<i64>>, StoreError> {
        Ok(workspace::Entity::find_by_id(ws.to_owned())
            .lock_exclusive()
            .one(self.db().await?)
            .await?
            .map(|w| w.active_policy_version))
    }

    pub async fn policy_by_checksum(
        &self,
        ws: &str,
        checksum: &str,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        let active = self.lock_workspace(ws).await?.flatten();
        Ok(policy::Entity::find()
            .filter(policy::Column::WorkspaceId.eq(ws))
            .filter(policy::Column::Checksum.eq(checksum))
            .order_by_asc(policy::Column::Version)
            .one(self.db().await?)
            .await?
            .map(|row| convert::policy(row, active)))
    }

    /// Stores a new version, numbered one past the last. Call under
    /// [`Tx::lock_workspace`].
    pub async fn insert_policy(
        &self,
        ws: &str,
        new: &NewPolicy<'_>,
        now: Timestamp,
    ) -> Result<PolicyRecord, StoreError> {
        let last = policy::Entity::find()
            .filter(policy::Column::WorkspaceId.eq(ws))
            .order_by_desc(policy::Column::Version)
            .one(self.db().await?)
            .await?
            .map_or(0, |p| p.version);
        let row = policy::Model {
            workspace_id: ws.to_owned(),
            version: last + 1,
            name: new.name.to_owned(),
            description: new.description.to_owned(),
            source: new.source.to_owned(),
            checksum: new.checksum.to_owned(),
            created_at: now.as_micros(),
            activated_at: None,
            created_by: new.created_by.map(str::to_owned),
            activated_by: None,
        };
        policy::Entity::insert(policy::ActiveModel::from(row.clone()))
            .exec_without_returning(self.db().await?)
            .await?;
        Ok(convert::policy(row, None))
    }

    pub async fn policy(&self, ws: &str, version: i64) -> Result<Option<PolicyRecord>, StoreError> {
        let active = workspace::Entity::find_by_id(ws.to_owned())
            .one(self.db().await?)
            .await?
            .and_then(|w| w.active_policy_version);
        Ok(policy::Entity::find_by_id((ws.to_owned(), version))
            .one(self.db().await?)
            .await?
            .map(|row| convert::policy(row, active)))
    }

    /// Makes `version` the active one (it must exist).
    pub async fn activate_policy(
        &self,
        ws: &str,
        version: i64,
        now: Timestamp,
        by: Option<&str>,
    ) -> Result<(), StoreError> {
        workspace::Entity::update_many()
            .col_expr(workspace::Column::ActivePolicyVersion, Expr::value(version))
            .filter(workspace::Column::Id.eq(ws))
            .exec(self.db().await?)
            .await?;
        policy::Entity::update_many()
            .col_expr(policy::Column::ActivatedAt, Expr::value(now.as_micros()))
            .col_expr(policy::Column::ActivatedBy, Expr::value(by.map(str::to_owned)))
            .filter(policy::Column::WorkspaceId.eq(ws))
            .filter(policy::Column::Version.eq(version))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    // ---- leads ------------------------------------------------------------

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
        Ok(())
    }

    pub async fn update_lead(&self, ws: &str, w: LeadWrite<'_>) -> Result<(), StoreError> {
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

    // ---- engagements ------------------------------------------------------

    pub async fn engagement(&self, ws: &str, event_id: &str) -> Result<Option<StoredEngagement>, StoreError> {
        engagement::Entity::find_by_id((ws.to_owned(), event_id.to_owned()))
            .one(self.db().await?)
            .await?
            .map(convert::engagement)
            .transpose()
    }

    /// A lead's whole log, in scoring order.
    pub async fn engagements_of(&self, ws: &str, lead_id: &str) -> Result<Vec<Engagement>, StoreError> {
        crate::queries::engagements_of(self.db().await?, ws, lead_id).await
    }

    /// Records an engagement unless its event id is already recorded;
    /// false if it was (nothing written).
    pub async fn insert_engagement_if_new(
        &self,
        ws: &str,
        lead_id: &str,
        e: &Engagement,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = engagement::Entity::insert(engagement_model(ws, lead_id, e, fingerprint, None, now)?)
            .on_conflict_do_nothing_on([engagement::Column::WorkspaceId, engagement::Column::EventId])
            .exec_without_returning(self.db().await?)
            .await?;
        Ok(matches!(result, sea_orm::TryInsertResult::Inserted(n) if n > 0))
    }

    /// Records each engagement whose event id is not recorded yet, in one
    /// statement (a few for very large batches), and returns the event ids
    /// it recorded: the others were recorded before (or earlier in the
    /// list). The key's own index decides, not a plan.
    pub async fn insert_engagements_if_new(
        &self,
        ws: &str,
        items: &[NewEngagement<'_>],
        now: Timestamp,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        use sea_orm::QueryTrait as _;
        let mut inserted = std::collections::HashSet::with_capacity(items.len());
        let rows = items
            .iter()
            .map(|i| engagement_model(ws, i.lead_id, i.engagement, i.fingerprint, None, now))
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in rows.chunks(INSERT_CHUNK) {
            let mut insert = engagement::Entity::insert_many(chunk.to_vec()).on_conflict(
                OnConflict::columns([engagement::Column::WorkspaceId, engagement::Column::EventId])
                    .do_nothing()
                    .to_owned(),
            );
            insert.query().returning_col(engagement::Column::EventId);
            let statement = insert.build(self.txn.get_database_backend());
            for row in self.db().await?.query_all_raw(statement).await? {
                inserted.insert(row.try_get::<String>("", "event_id")?);
            }
        }
        Ok(inserted)
    }

    /// Notes the workflow triggers an engagement set off (for a repeat of its event id).
    pub async fn set_engagement_triggers(
        &self,
        ws: &str,
        event_id: &str,
        triggers: &[Trigger],
    ) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(triggers).map_err(|x| StoreError::corrupt("engagements", event_id, x))?;
        engagement::Entity::update_many()
            .col_expr(engagement::Column::CausedTriggers, Expr::value(json))
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::EventId.eq(event_id))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    // ---- history ----------------------------------------------------------

    /// Appends transitions numbered from `first_seq`.
    pub async fn insert_transitions(
        &self,
        ws: &str,
        lead_id: &str,
        first_seq: i64,
        records: &[&TransitionRecord],
        policy_version: i64,
        principal: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(records.len());
        for (seq, t) in (first_seq..).zip(records) {
            let (cause, cause_ref) = convert::cause_parts(&t.cause);
            rows.push(transition::ActiveModel {
                workspace_id: Set(ws.to_owned()),
                lead_id: Set(lead_id.to_owned()),
                seq: Set(seq),
                from_stage: Set(t.from.map(|s| s.as_str().to_owned())),
                to_stage: Set(t.to.as_str().to_owned()),
                at: Set(t.at.as_micros()),
                by: Set(t.by.as_str().to_owned()),
                cause: Set(cause.to_owned()),
                cause_ref: Set(cause_ref),
                reason: Set(t.reason.clone()),
                actor: Set(t.actor.clone()),
                deal_value: Set(t.deal.as_ref().map(|d| d.value)),
                currency: Set(t.deal.as_ref().map(|d| d.currency.clone())),
                fit: Set(t.fit),
                engagement: Set(t.engagement),
                guards: Set(serde_json::to_string(&t.guards)
                    .map_err(|e| StoreError::corrupt("transitions", lead_id, e))?),
                policy_version: Set(policy_version),
                principal: Set(principal.map(str::to_owned)),
            });
        }
        if self.deferring() {
            self.pending().transitions.extend(rows);
            return Ok(());
        }
        for chunk in rows.chunks(INSERT_CHUNK) {
            transition::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(self.db().await?)
                .await?;
        }
        Ok(())
    }

    // ---- timers -----------------------------------------------------------

    /// Applies a decision's timer changes, in order.
    pub async fn apply_timers(
        &self,
        ws: &str,
        lead_id: &str,
        changes: &[TimerChange],
        now: Timestamp,
        traceparent: Option<&str>,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        {
            let mut pending = self.pending();
            if pending.on {
                let timers = pending
                    .timers
                    .entry((ws.to_owned(), lead_id.to_owned()))
                    .or_default();
                for change in changes {
                    timers.apply(change, ws, lead_id, now, traceparent);
                }
                return Ok(());
            }
        }
        let of_lead = || {
            timer::Entity::delete_many()
                .filter(timer::Column::WorkspaceId.eq(ws))
                .filter(timer::Column::LeadId.eq(lead_id))
        };
        for change in changes {
            match change {
                TimerChange::Schedule(t) => {
                    timer::Entity::insert(timer_model(ws, lead_id, t, now, traceparent))
                        .on_conflict(timer_upsert())
                        .exec_without_returning(self.db().await?)
                        .await?;
                }
                TimerChange::Cancel(kind) => {
                    of_lead()
                        .filter(timer::Column::Key.eq(kind.key()))
                        .exec(self.db().await?)
                        .await?;
                }
                TimerChange::CancelStageBound => {
                    of_lead()
                        .filter(timer::Column::BoundStage.is_not_null())
                        .exec(self.db().await?)
                        .await?;
                }
            }
        }
        Ok(())
    }

    // ---- outbox -----------------------------------------------------------

    /// Adds events to the workspace's outbox. They are written at commit,
    /// where their sequences are handed out: see [`Tx::write_outbox`].
    pub fn append_outbox(&self, ws: &str, events: Vec<NewOutboxEvent>) {
        self.outbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(events.into_iter().map(|e| (ws.to_owned(), e)));
    }

    /// Writes events with the next sequences of the workspace.
    ///
    /// The sequences come from the workspace row, which stays locked until
    /// commit: transactions that write events commit one after another in
    /// sequence order, so a reader never sees a sequence before a smaller
    /// one that commits later. It runs last, just before COMMIT, so the
    /// lock is held for as short a time as possible and never while other
    /// rows are being locked.
    async fn write_outbox(&self, ws: &str, events: &[NewOutboxEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let head = workspace::Entity::update_many()
            .col_expr(
                workspace::Column::OutboxHead,
                Expr::col(workspace::Column::OutboxHead).add(n),
            )
            .filter(workspace::Column::Id.eq(ws))
            .exec_with_returning(self.db().await?)
            .await?
            .first()
            .map(|w| w.outbox_head)
            .ok_or_else(|| StoreError::corrupt("workspaces", ws, "no such workspace"))?;
        let rows: Vec<outbox::ActiveModel> = events
            .iter()
            .zip(head - n + 1..)
            .map(|(e, seq)| outbox::ActiveModel {
                workspace_id: Set(ws.to_owned()),
                seq: Set(seq),
                event_id: Set(e.event_id.clone()),
                lead_id: Set(e.lead_id.clone()),
                kind: Set(e.kind.clone()),
                payload: Set(e.payload.clone()),
                occurred_at: Set(e.occurred_at.as_micros()),
                created_at: Set(e.created_at.as_micros()),
                traceparent: Set(e.traceparent.clone()),
                suppressed: Set(e.suppressed),
            })
            .collect();
        for chunk in rows.chunks(INSERT_CHUNK) {
            outbox::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(self.db().await?)
                .await?;
        }
        Ok(())
    }

    /// The transitions an engagement caused, in order.
    pub async fn transitions_caused_by(
        &self,
        ws: &str,
        lead_id: &str,
        event_id: &str,
    ) -> Result<Vec<crate::StoredTransition>, StoreError> {
        transition::Entity::find()
            .filter(transition::Column::WorkspaceId.eq(ws))
            .filter(transition::Column::LeadId.eq(lead_id))
            .filter(transition::Column::Cause.eq("ENGAGEMENT"))
            .filter(transition::Column::CauseRef.eq(event_id))
            .order_by_asc(transition::Column::Seq)
            .all(self.db().await?)
            .await?
            .into_iter()
            .map(convert::transition)
            .collect()
    }

    // ---- idempotency ------------------------------------------------------

    pub async fn stored_result(
        &self,
        ws: &str,
        request_id: &str,
    ) -> Result<Option<StoredResult>, StoreError> {
        Ok(
            idempotency::Entity::find_by_id((ws.to_owned(), request_id.to_owned()))
                .one(self.db().await?)
                .await?
                .map(|r| StoredResult {
                    method: r.method,
                    fingerprint: r.fingerprint,
                    response: r.response,
                    created_at: convert::ts(r.created_at),
                }),
        )
    }

    pub async fn save_result(
        &self,
        ws: &str,
        request_id: &str,
        result: &StoredResult,
    ) -> Result<(), StoreError> {
        idempotency::Entity::insert(idempotency::ActiveModel {
            workspace_id: Set(ws.to_owned()),
            request_id: Set(request_id.to_owned()),
            method: Set(result.method.clone()),
            fingerprint: Set(result.fingerprint.clone()),
            response: Set(result.response.clone()),
            created_at: Set(result.created_at.as_micros()),
        })
        .exec_without_returning(self.db().await?)
        .await?;
        Ok(())
    }

    /// Forgets idempotent results recorded before `before`.
    pub async fn purge_results(&self, before: Timestamp) -> Result<u64, StoreError> {
        Ok(idempotency::Entity::delete_many()
            .filter(idempotency::Column::CreatedAt.lt(before.as_micros()))
            .exec(self.db().await?)
            .await?
            .rows_affected)
    }
}

fn lead_model(
    ws: &str,
    external_key: Option<&str>,
    w: &LeadWrite<'_>,
) -> Result<lead::ActiveModel, StoreError> {
    let state = serde_json::to_string(w.lead).map_err(|e| StoreError::corrupt("leads", w.id, e))?;
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
        state: Set(state),
        captured_at: Set(w.lead.captured_at.as_micros()),
        entered_stage_at: Set(w.lead.entered_stage_at.as_micros()),
        updated_at: Set(w.now.as_micros()),
        last_engagement_at: Set(w.lead.last_engagement_at().map(Timestamp::as_micros)),
        history_len: Set(w.history_len),
        erased_at: Set(None),
        erased_by: Set(None),
    })
}

fn engagement_model(
    ws: &str,
    lead_id: &str,
    e: &Engagement,
    fingerprint: &str,
    triggers: Option<&[Trigger]>,
    now: Timestamp,
) -> Result<engagement::ActiveModel, StoreError> {
    let caused_triggers = match triggers {
        Some(t) if !t.is_empty() => {
            Some(serde_json::to_string(t).map_err(|x| StoreError::corrupt("engagements", &e.event_id, x))?)
        }
        _ => None,
    };
    let properties = serde_json::to_string(&e.properties)
        .map_err(|x| StoreError::corrupt("engagements", &e.event_id, x))?;
    Ok(engagement::ActiveModel {
        workspace_id: Set(ws.to_owned()),
        event_id: Set(e.event_id.clone()),
        lead_id: Set(lead_id.to_owned()),
        kind: Set(e.kind.clone()),
        channel: Set(e.channel.clone()),
        properties: Set(properties),
        occurred_at: Set(e.occurred_at.as_micros()),
        recorded_at: Set(now.as_micros()),
        fingerprint: Set(fingerprint.to_owned()),
        caused_triggers: Set(caused_triggers),
    })
}

fn timer_model(
    ws: &str,
    lead_id: &str,
    t: &leadflow_domain::workflow::Timer,
    now: Timestamp,
    traceparent: Option<&str>,
) -> timer::ActiveModel {
    timer::ActiveModel {
        workspace_id: Set(ws.to_owned()),
        lead_id: Set(lead_id.to_owned()),
        key: Set(t.kind.key()),
        due_at: Set(t.due_at.as_micros()),
        bound_stage: Set(t.bound.map(|(s, _)| s.as_str().to_owned())),
        bound_at: Set(t.bound.map(|(_, at)| at.as_micros())),
        suppressed: Set(t.suppressed),
        created_at: Set(now.as_micros()),
        traceparent: Set(traceparent.map(str::to_owned)),
    }
}

/// A timer scheduled again replaces the one of the same key.
fn timer_upsert() -> OnConflict {
    OnConflict::columns([
        timer::Column::WorkspaceId,
        timer::Column::LeadId,
        timer::Column::Key,
    ])
    .update_columns([
        timer::Column::DueAt,
        timer::Column::BoundStage,
        timer::Column::BoundAt,
        timer::Column::Suppressed,
        timer::Column::CreatedAt,
        timer::Column::Traceparent,
    ])
    .to_owned()
}

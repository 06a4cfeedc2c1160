//! The timers table, in a write transaction: a decision's timer changes,
//! applied in order or (under [`Tx::defer_writes`]) folded into their net
//! effect. Finding due timers and taking one to fire is the crate's
//! `timers` module.

use indexmap::IndexMap;
use leadflow_domain::Timestamp;
use leadflow_domain::workflow::{Timer, TimerChange};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use super::{INSERT_CHUNK, Tx};
use crate::entity::timer;
use crate::error::StoreError;

/// The net effect of a lead's timer changes, in the order they were made:
/// first its stage-bound timers are cancelled (if any change said so), then
/// each key ends up scheduled (`Some`) or cancelled (`None`).
#[derive(Debug, Default)]
pub(super) struct LeadTimers {
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

impl Tx {
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

    /// Timer changes held back, a statement per kind of change.
    pub(super) async fn write_deferred_timers(
        &self,
        timers: IndexMap<(String, String), LeadTimers>,
    ) -> Result<(), StoreError> {
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
}

fn timer_model(
    ws: &str,
    lead_id: &str,
    t: &Timer,
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
pub(super) fn timer_upsert() -> OnConflict {
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

//! The transitions table, in a write transaction: a lead's stage history,
//! appended (held back under [`Tx::defer_writes`]) and read back by cause.

use leadflow_domain::lifecycle::TransitionRecord;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::{INSERT_CHUNK, Tx};
use crate::convert;
use crate::entity::transition;
use crate::error::StoreError;
use crate::records::StoredTransition;

impl Tx {
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

    /// The transitions an engagement caused, in order.
    pub async fn transitions_caused_by(
        &self,
        ws: &str,
        lead_id: &str,
        event_id: &str,
    ) -> Result<Vec<StoredTransition>, StoreError> {
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

    /// The lead's last move into `stage`, if it has one.
    pub async fn last_transition_to(
        &self,
        ws: &str,
        lead_id: &str,
        stage: leadflow_domain::Stage,
    ) -> Result<Option<StoredTransition>, StoreError> {
        transition::Entity::find()
            .filter(transition::Column::WorkspaceId.eq(ws))
            .filter(transition::Column::LeadId.eq(lead_id))
            .filter(transition::Column::ToStage.eq(stage.as_str()))
            .order_by_desc(transition::Column::Seq)
            .one(self.db().await?)
            .await?
            .map(convert::transition)
            .transpose()
    }

    /// Transitions held back, in multi-row inserts.
    pub(super) async fn write_deferred_transitions(
        &self,
        transitions: &[transition::ActiveModel],
    ) -> Result<(), StoreError> {
        for chunk in transitions.chunks(INSERT_CHUNK) {
            transition::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&self.txn)
                .await?;
        }
        Ok(())
    }
}

//! The outbox table, in a write transaction: events buffered by the
//! command and written at commit, numbered by their workspace.

use std::sync::PoisonError;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use super::{INSERT_CHUNK, Tx};
use crate::entity::{outbox, workspace};
use crate::error::StoreError;
use crate::records::NewOutboxEvent;

impl Tx {
    /// Adds events to the workspace's outbox. They are written at commit,
    /// where their sequences are handed out (see `write_outbox`).
    pub fn append_outbox(&self, ws: &str, events: Vec<NewOutboxEvent>) {
        self.outbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(events.into_iter().map(|e| (ws.to_owned(), e)));
    }

    /// Writes the buffered events, each workspace's with its next sequences.
    pub(super) async fn write_buffered_outbox(&self) -> Result<(), StoreError> {
        let buffered = std::mem::take(&mut *self.outbox.lock().unwrap_or_else(PoisonError::into_inner));
        let mut by_workspace: Vec<(String, Vec<NewOutboxEvent>)> = Vec::new();
        for (ws, event) in buffered {
            match by_workspace.iter_mut().find(|(w, _)| *w == ws) {
                Some((_, events)) => events.push(event),
                None => by_workspace.push((ws, vec![event])),
            }
        }
        for (ws, events) in by_workspace {
            self.write_outbox(&ws, &events).await?;
        }
        Ok(())
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
                subject: Set(e.subject.as_str().to_owned()),
            })
            .collect();
        for chunk in rows.chunks(INSERT_CHUNK) {
            outbox::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(self.db().await?)
                .await?;
        }
        Ok(())
    }
}

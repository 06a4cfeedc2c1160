//! Many engagements, possibly for many leads, in one transaction: all of
//! them or none.

use leadflow_domain::FieldViolation;

use crate::Engine;
use crate::error::EngineError;
use std::collections::HashMap;

use crate::leads::{Locked, MAX_BATCH, retrying};
use crate::model::{BatchItem, LeadKey, Outcome, Request};

impl Engine {
    /// Records every item in order, in one transaction. If any item is
    /// refused, nothing is written and every refusal is reported, each
    /// under `engagements[i]`.
    pub async fn record_engagements(
        &self,
        req: &Request,
        items: &[BatchItem],
    ) -> Result<Vec<Outcome>, EngineError> {
        if items.len() > MAX_BATCH {
            return Err(EngineError::invalid(
                "BATCH_TOO_LARGE",
                "engagements",
                format!(
                    "{} engagements in one call; the limit is {MAX_BATCH}",
                    items.len()
                ),
            ));
        }
        retrying!(self.try_record_engagements(req, items))
    }

    async fn try_record_engagements(
        &self,
        req: &Request,
        items: &[BatchItem],
    ) -> Result<Vec<Outcome>, EngineError> {
        let tx = self.store.begin().await?;
        // Every lead of the batch, locked up front in one order: two batches
        // over the same leads queue instead of deadlocking.
        let mut keys: Vec<&LeadKey> = items.iter().map(|i| &i.lead).collect();
        keys.sort_by(|a, b| order(a).cmp(&order(b)));
        keys.dedup();
        // Kept by lead id, so a lead named both ways is one record.
        let mut ids: HashMap<&LeadKey, String> = HashMap::new();
        let mut locked: HashMap<String, Locked> = HashMap::new();
        for key in keys {
            match self.lock(&tx, &req.workspace, key).await {
                Ok(l) => {
                    ids.insert(key, l.record.id.clone());
                    locked.insert(l.record.id.clone(), l);
                }
                Err(EngineError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut outcomes = Vec::with_capacity(items.len());
        let mut violations: Vec<FieldViolation> = Vec::new();
        let mut reason = None;
        let mut events = 0;
        for (i, item) in items.iter().enumerate() {
            let field = format!("engagements[{i}].engagement");
            let current = ids.get(&item.lead).and_then(|id| locked.get(id)).cloned();
            let result = self
                .engagement_in(
                    &tx,
                    req,
                    &item.lead,
                    current,
                    &item.engagement,
                    item.occurred_at_given,
                    &field,
                )
                .await;
            if result.is_err()
                && let Some(id) = ids.get(&item.lead)
            {
                // A refused item may have written before it was refused
                // (overdue timers, a policy change): the lead is read again.
                locked.remove(id);
            }
            match result {
                Ok(applied) => {
                    if let Some(l) = locked.get_mut(&applied.outcome.lead.record.id) {
                        l.record = applied.outcome.lead.record.clone();
                    }
                    events += applied.events;
                    outcomes.push(applied.outcome);
                }
                Err(EngineError::NotFound { what, key }) => {
                    reason.get_or_insert("NOT_FOUND");
                    violations.push(FieldViolation::new(
                        format!("engagements[{i}].lead"),
                        format!("{what} {key} not found"),
                    ));
                }
                Err(EngineError::Domain(leadflow_domain::DomainError::InvalidArgument {
                    kind,
                    violations: v,
                })) => {
                    reason.get_or_insert(kind.reason());
                    violations.extend(v);
                }
                Err(EngineError::InvalidArgument {
                    reason: r,
                    violations: v,
                }) => {
                    reason.get_or_insert(r);
                    violations.extend(v);
                }
                Err(other) => return Err(other),
            }
        }
        if !violations.is_empty() {
            // Dropping the transaction rolls back every item already applied.
            return Err(EngineError::InvalidArgument {
                reason: reason.unwrap_or("INVALID_FIELD"),
                violations,
            });
        }
        tx.commit().await?;
        if events > 0 {
            self.announce(&req.workspace);
        }
        Ok(outcomes)
    }
}

/// The order batches lock leads in.
fn order(key: &LeadKey) -> (u8, &str) {
    match key {
        LeadKey::Id(id) => (0, id),
        LeadKey::ExternalKey(k) => (1, k),
    }
}

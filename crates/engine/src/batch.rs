//! Many engagements, possibly for many leads, in one transaction: all of
//! them or none.

use std::collections::HashMap;

use leadflow_domain::FieldViolation;
use leadflow_store::NewEngagement;

use crate::Engine;
use crate::error::EngineError;
use crate::leads::{Known, Locked, MAX_BATCH, engagement_fingerprint, retrying};
use crate::model::{BatchItem, LeadKey, Outcome, Request};

impl Engine {
    /// Records every item in order, in one transaction. If any item is
    /// refused, nothing is written and every refusal is reported, each
    /// under `engagements[i]`.
    #[tracing::instrument(name = "engine.record_engagements", skip_all)]
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
        let items: Vec<(&Request, &BatchItem)> = items.iter().map(|item| (req, item)).collect();
        let outcomes = retrying!(self.try_batch(&items))?;
        self.count_recorded(&outcomes);
        Ok(outcomes)
    }

    /// Items of one workspace, each under its own request, in one
    /// transaction: all of them or none. The leads are locked up front in
    /// one statement, the engagements inserted in one, and the other rows
    /// written at commit a statement a table (see `Tx::defer_writes`).
    pub(crate) async fn try_batch(
        &self,
        items: &[(&Request, &BatchItem)],
    ) -> Result<Vec<Outcome>, EngineError> {
        let Some((first, _)) = items.first() else {
            return Ok(Vec::new());
        };
        let ws = first.workspace.as_str();
        let tx = self.store.begin().await?;
        tx.defer_writes();

        let mut ids: Vec<&str> = Vec::new();
        let mut keys: Vec<&str> = Vec::new();
        for (_, item) in items {
            match &item.lead {
                LeadKey::Id(id) => ids.push(id),
                LeadKey::ExternalKey(k) => keys.push(k),
            }
        }
        for list in [&mut ids, &mut keys] {
            list.sort_unstable();
            list.dedup();
        }
        let (records, active) = tx.lock_leads_with_policy(ws, &ids, &keys).await?;
        // Kept by lead id, so a lead named both ways is one record.
        let mut by_key: HashMap<LeadKey, String> = HashMap::with_capacity(records.len());
        let mut locked: HashMap<String, Locked> = HashMap::with_capacity(records.len());
        for record in records {
            if let Some(k) = &record.external_key {
                by_key.insert(LeadKey::ExternalKey(k.clone()), record.id.clone());
            }
            by_key.insert(LeadKey::Id(record.id.clone()), record.id.clone());
            locked.insert(record.id.clone(), self.locked(&tx, ws, record, active).await?);
        }
        // Every engagement whose lead is locked, recorded up front in one
        // statement; an event id that was not inserted is a repeat.
        let fingerprints: Vec<Option<String>> = items
            .iter()
            .map(|(_, item)| {
                let id = by_key.get(&item.lead)?;
                Some(engagement_fingerprint(
                    id,
                    &item.engagement,
                    item.occurred_at_given,
                ))
            })
            .collect();
        let new: Vec<NewEngagement<'_>> = items
            .iter()
            .zip(&fingerprints)
            .filter_map(|((_, item), fp)| {
                Some(NewEngagement {
                    lead_id: by_key.get(&item.lead)?,
                    engagement: &item.engagement,
                    fingerprint: fp.as_deref()?,
                })
            })
            .collect();
        let mut inserted = tx.insert_engagements_if_new(ws, &new, self.now()).await?;

        let mut outcomes = Vec::with_capacity(items.len());
        let mut violations: Vec<FieldViolation> = Vec::new();
        let mut reason = None;
        let mut events = 0;
        for (i, ((req, item), fingerprint)) in items.iter().zip(&fingerprints).enumerate() {
            let field = format!("engagements[{i}].engagement");
            let id = by_key.get(&item.lead);
            let known = match fingerprint.as_deref() {
                // Not locked up front (not found, or named by a key that a
                // concurrent call has just given a lead): found out on its own.
                None => Known::Unknown,
                Some(fingerprint) if inserted.remove(item.engagement.event_id.as_str()) => {
                    Known::Inserted { fingerprint }
                }
                Some(fingerprint) => Known::Recorded { fingerprint },
            };
            let current = id.and_then(|id| locked.get(id)).cloned();
            let result = self
                .engagement_in(
                    &tx,
                    req,
                    &item.lead,
                    current,
                    known,
                    &item.engagement,
                    item.occurred_at_given,
                    &field,
                )
                .await;
            if result.is_err()
                && let Some(id) = id
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
            self.announce(ws);
        }
        Ok(outcomes)
    }

    /// Counts the engagements of `outcomes` that were new.
    pub(crate) fn count_recorded(&self, outcomes: &[Outcome]) {
        let recorded = outcomes.iter().filter(|o| !o.duplicate).count() as u64;
        self.counters
            .engagements_recorded
            .fetch_add(recorded, std::sync::atomic::Ordering::Relaxed);
    }
}

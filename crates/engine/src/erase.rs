//! Erasing a lead (`docs/security.md`, "Erasing a lead"): personal data goes
//! in one transaction, the anonymous stage history stays, and a LEAD_ERASED
//! event tells downstream engines to delete their copies.

use leadflow_domain::profile::Profile;
use leadflow_domain::{Stage, Timestamp};
use leadflow_store::{LeadLookup, NewOutboxEvent};

use crate::Engine;
use crate::error::EngineError;
use crate::leads::retrying;
use crate::model::{LeadKey, OutboxPayload, Request};

/// What an erase did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erasure {
    pub lead_id: String,
    pub erased_at: Timestamp,
    /// Erased before: nothing changed.
    pub already: bool,
    /// Engagements whose properties were removed.
    pub engagements: u64,
    /// Stored events whose personal fields were removed.
    pub events: u64,
}

impl Engine {
    /// Erases a lead. A second erase by id changes nothing and says so; by
    /// external key it is NOT_FOUND, since the key is gone.
    #[tracing::instrument(name = "engine.erase_lead", skip_all)]
    pub async fn erase_lead(&self, req: &Request, key: &LeadKey) -> Result<Erasure, EngineError> {
        retrying!(self.try_erase_lead(req, key))
    }

    async fn try_erase_lead(&self, req: &Request, key: &LeadKey) -> Result<Erasure, EngineError> {
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        let not_found = || EngineError::NotFound {
            what: "lead",
            key: key.describe(),
        };
        // The lead named, read without a lock: a merged lead is part of its
        // survivor's person, so erasing it (by its old id or key) erases
        // the survivor, and with it every lead merged into it.
        let named = match key {
            LeadKey::Id(id) => id.clone(),
            LeadKey::ExternalKey(k) => tx.lead_id_by_key(ws, k).await?.ok_or_else(not_found)?,
            LeadKey::Anonymous(a) => tx
                .anonymous_lead(ws, a)
                .await?
                .ok_or_else(|| crate::identity::not_identified(a))?,
        };
        let top = tx.survivor_of(ws, &named).await?;
        let merged = merged_closure(&tx, ws, &top).await?;
        // Merged leads before their survivors (the order every path takes),
        // the deepest first.
        let mut locked = Vec::with_capacity(merged.len());
        for id in merged.iter().rev() {
            if let Some(found) = tx.lock_lead_even_erased(ws, LeadLookup::Id(id)).await? {
                locked.push(found);
            }
        }
        let (record, erased_at) = tx
            .lock_lead_even_erased(ws, LeadLookup::Id(&top))
            .await?
            .ok_or_else(not_found)?;
        if let Some(erased_at) = erased_at {
            return Ok(Erasure {
                lead_id: record.id,
                erased_at,
                already: true,
                engagements: 0,
                events: 0,
            });
        }
        // Merged or unmerged meanwhile: look again.
        if record.lead.stage == Stage::Merged || merged_closure(&tx, ws, &top).await? != merged {
            return Err(EngineError::Conflict(format!(
                "the merges of lead {top} changed meanwhile"
            )));
        }
        let now = self.now();
        let mut total = self.erase_one(&tx, req, &record, now).await?;
        // The leads merged into it, and what was kept to undo those merges.
        for (dup, erased) in &locked {
            if erased.is_none() {
                let done = self.erase_one(&tx, req, dup, now).await?;
                total.engagements += done.engagements;
                total.events += done.events;
            }
        }
        tx.delete_merges(ws, &record.id).await?;
        for id in &merged {
            tx.delete_merges(ws, id).await?;
        }
        tx.commit().await?;
        self.announce(ws);
        tracing::info!(
            lead = %record.id,
            principal = req.principal.as_deref().unwrap_or(""),
            engagements = total.engagements,
            events = total.events,
            "lead erased"
        );
        Ok(Erasure {
            lead_id: record.id,
            erased_at: now,
            already: false,
            engagements: total.engagements,
            events: total.events,
        })
    }

    /// Erases one locked lead in `tx`: its personal data, a LEAD_ERASED
    /// event, its part in its account kept as numbers.
    async fn erase_one(
        &self,
        tx: &leadflow_store::Tx,
        req: &Request,
        record: &leadflow_store::LeadRecord,
        now: Timestamp,
    ) -> Result<leadflow_store::Erased, EngineError> {
        let ws = req.workspace.as_str();
        let policy = self.policy_version_of(tx, ws, record.policy_version).await?;
        let mut scrubbed = record.lead.clone();
        scrubbed.profile = Profile::default();
        crate::assign::release_erased(tx, ws, record).await?;
        let erased = tx
            .erase_lead(ws, &record.id, &scrubbed, now, req.principal.as_deref())
            .await?;
        let payload = OutboxPayload {
            lead_id: record.id.clone(),
            external_key: None,
            stage: record.lead.stage,
            lead_version: record.version,
            // Scores are anonymous facts: as they stood before the erase.
            scores: record.lead.scores_at(&policy, now),
            policy_version: record.policy_version,
            transition: None,
            trigger: None,
            sla_breach: None,
            level_change: None,
            merge: None,
            assignment: None,
        };
        tx.append_outbox(
            ws,
            vec![NewOutboxEvent {
                event_id: uuid::Uuid::now_v7().to_string(),
                lead_id: record.id.clone(),
                subject: leadflow_store::Subject::Lead,
                kind: "LEAD_ERASED".to_owned(),
                payload: serde_json::to_string(&payload).map_err(|e| EngineError::Internal(e.to_string()))?,
                occurred_at: now,
                created_at: now,
                traceparent: req.traceparent.clone(),
                suppressed: false,
            }],
        );
        // Its part in its account stays as numbers: the account's history
        // and explanations keep it, without a person behind it.
        tx.mark_member_erased(ws, &record.id).await?;
        Ok(erased)
    }
}

/// The most leads merged into one that an erase takes with it.
const MAX_MERGED: usize = 1_000;

/// The leads merged into `survivor`, and into those, and so on (their
/// merges standing), breadth first: refused past [`MAX_MERGED`].
async fn merged_closure(
    tx: &leadflow_store::Tx,
    ws: &str,
    survivor: &str,
) -> Result<Vec<String>, EngineError> {
    let merged = tx.merged_closure(ws, survivor, MAX_MERGED + 1).await?;
    if merged.len() > MAX_MERGED {
        // Never erase a part of a person.
        return Err(EngineError::FailedPrecondition {
            reason: "TOO_MANY_MERGED",
            message: format!("more than {MAX_MERGED} leads were merged into lead {survivor}"),
        });
    }
    Ok(merged)
}

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
        let identified;
        let lookup = match key {
            LeadKey::Id(id) => LeadLookup::Id(id),
            LeadKey::ExternalKey(k) => LeadLookup::ExternalKey(k),
            LeadKey::Anonymous(a) => {
                identified = tx
                    .anonymous_lead(ws, a)
                    .await?
                    .ok_or_else(|| crate::identity::not_identified(a))?;
                LeadLookup::Id(&identified)
            }
        };
        let (mut record, mut erased_at) =
            tx.lock_lead_even_erased(ws, lookup)
                .await?
                .ok_or_else(|| EngineError::NotFound {
                    what: "lead",
                    key: key.describe(),
                })?;
        // A merged lead is part of its survivor's person: erasing it (by
        // its old id or key) erases the survivor, and with it every lead
        // merged into it.
        for _ in 0..64 {
            if record.lead.stage != Stage::Merged || erased_at.is_some() {
                break;
            }
            let Some(merge) = tx.merge_of(ws, &record.id).await? else {
                break;
            };
            (record, erased_at) = tx
                .lock_lead_even_erased(ws, LeadLookup::Id(&merge.survivor_id))
                .await?
                .ok_or_else(|| EngineError::Internal(format!("the survivor of {} is gone", record.id)))?;
        }
        if let Some(erased_at) = erased_at {
            return Ok(Erasure {
                lead_id: record.id,
                erased_at,
                already: true,
                engagements: 0,
                events: 0,
            });
        }
        let now = self.now();
        let mut total = self.erase_one(&tx, req, &record, now).await?;
        // The leads merged into it, and what was kept to undo those merges.
        let mut pending = vec![record.id.clone()];
        while let Some(survivor) = pending.pop() {
            for merged in tx.merged_ids(ws, &survivor).await? {
                if let Some((dup, None)) = tx.lock_lead_even_erased(ws, LeadLookup::Id(&merged)).await? {
                    let erased = self.erase_one(&tx, req, &dup, now).await?;
                    total.engagements += erased.engagements;
                    total.events += erased.events;
                }
                pending.push(merged);
            }
            tx.delete_merges(ws, &survivor).await?;
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

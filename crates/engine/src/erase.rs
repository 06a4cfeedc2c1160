//! Erasing a lead (`docs/security.md`, "Erasing a lead"): personal data goes
//! in one transaction, the anonymous stage history stays, and a LEAD_ERASED
//! event tells downstream engines to delete their copies.

use leadflow_domain::Timestamp;
use leadflow_domain::profile::Profile;
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
        let (record, erased_at) =
            tx.lock_lead_even_erased(ws, lookup)
                .await?
                .ok_or_else(|| EngineError::NotFound {
                    what: "lead",
                    key: key.describe(),
                })?;
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
        let policy = self.policy_version_of(&tx, ws, record.policy_version).await?;
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
        tx.commit().await?;
        self.announce(ws);
        tracing::info!(
            lead = %record.id,
            principal = req.principal.as_deref().unwrap_or(""),
            engagements = erased.engagements,
            events = erased.events,
            "lead erased"
        );
        Ok(Erasure {
            lead_id: record.id,
            erased_at: now,
            already: false,
            engagements: erased.engagements,
            events: erased.events,
        })
    }
}

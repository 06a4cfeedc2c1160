//! A decision into the transaction: lead row, history, timers, outbox.

use leadflow_domain::workflow::{Event, Trigger};
use leadflow_domain::{Decision, Policy, Stage, Timestamp};
use leadflow_store::{LeadRecord, LeadWrite, NewOutboxEvent, StoredTransition, Tx};

use crate::error::EngineError;
use crate::model::{OutboxPayload, Scored};

/// Where a decision lands.
pub(crate) struct Target<'a> {
    pub(crate) ws: &'a str,
    pub(crate) policy: &'a Policy,
    pub(crate) policy_version: i64,
    pub(crate) now: Timestamp,
    pub(crate) traceparent: Option<&'a str>,
    /// Recorded on the transitions (see `Request::principal`).
    pub(crate) principal: Option<&'a str>,
    /// A re-score's first phase: members' changes are recorded, their
    /// accounts decided in the second phase, after every lead.
    pub(crate) defer_accounts: bool,
    /// Decisions under a policy version about to be left (timers due
    /// before a change, fired under the version that armed them) leave the
    /// lead's account alone: the change's own decision, next in the same
    /// transaction, brings it up to the new version.
    pub(crate) sync_accounts: bool,
}

/// The lead before the decision, or a new one.
pub(crate) enum Before<'a> {
    Existing(&'a LeadRecord),
    New {
        id: &'a str,
        external_key: Option<&'a str>,
    },
}

/// What was written.
pub(crate) struct Written {
    pub(crate) lead: Scored,
    pub(crate) transitions: Vec<StoredTransition>,
    pub(crate) triggers: Vec<Trigger>,
    /// Outbox events written.
    pub(crate) events: usize,
}

/// Writes everything the decision decided (the engagement, if any, is
/// already in: `engagement` names it).
pub(crate) async fn persist(
    tx: &Tx,
    target: &Target<'_>,
    before: Before<'_>,
    engagement: Option<&str>,
    decision: &Decision,
) -> Result<Written, EngineError> {
    let ws = target.ws;
    let before_lead = match &before {
        Before::Existing(r) => Some(r.lead.clone()),
        Before::New { .. } => None,
    };
    let policy_changed = matches!(&before, Before::Existing(r) if r.policy_version != target.policy_version);
    let (id, external_key, version, history_len) = match &before {
        Before::Existing(r) => (
            r.id.as_str(),
            r.external_key.as_deref(),
            r.version + i64::from(decision.bumps_version()),
            r.history_len,
        ),
        Before::New { id, external_key } => (*id, *external_key, 1, 0),
    };
    if let Some(event_id) = engagement {
        // A repeat of the event id answers with the triggers it set off.
        let triggers: Vec<Trigger> = decision
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Trigger(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        if !triggers.is_empty() {
            tx.set_engagement_triggers(ws, event_id, &triggers).await?;
        }
    }
    let records: Vec<_> = decision.transitions().collect();
    let new_len = history_len + i64::try_from(records.len()).unwrap_or(i64::MAX);
    let scores = decision.lead.scores_at(target.policy, target.now);
    let keys = decision.lead.search_keys(target.policy);
    // What the store holds of the other models' keys is known only for a
    // lead keyed under the same policy version: else every model is written
    // (a policy with the default model alone has none to compare).
    let keys_before = match &before {
        Before::Existing(r)
            if target.policy.models.len() > 1 && r.keyed && r.policy_version == target.policy_version =>
        {
            Some(r.lead.search_keys(target.policy))
        }
        _ => None,
    };
    let write = LeadWrite {
        id,
        lead: &decision.lead,
        scores: &scores,
        keys: &keys,
        keys_before: keys_before.as_deref(),
        version,
        policy_version: target.policy_version,
        history_len: new_len,
        now: target.now,
    };
    match before {
        Before::Existing(_) => tx.update_lead(ws, write).await?,
        Before::New { .. } => tx.insert_lead(ws, external_key, write).await?,
    }
    // What it is found as a duplicate by follows its profile (and the
    // policy's `match_attributes`); a merged lead is found by none.
    let merged = decision.lead.stage == Stage::Merged;
    let rekey = match &before_lead {
        None => true,
        Some(b) => {
            b.profile != decision.lead.profile
                || (b.stage == Stage::Merged) != merged
                || (policy_changed && !target.policy.identity.match_attributes.is_empty())
        }
    };
    if rekey {
        let keys = if merged {
            Vec::new()
        } else {
            target.policy.identity.match_keys(&decision.lead.profile)
        };
        let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        tx.set_match_keys(ws, id, &keys, before_lead.is_some()).await?;
    }
    tx.insert_transitions(
        ws,
        id,
        history_len + 1,
        &records,
        target.policy_version,
        target.principal,
    )
    .await?;
    let level_changes: Vec<_> = decision
        .events
        .iter()
        .filter_map(|e| match e {
            Event::LevelChanged(l) => Some(l),
            _ => None,
        })
        .collect();
    tx.insert_level_changes(ws, id, &level_changes, target.policy_version)
        .await?;
    // SLA breaches, with the owner the lead had (the funnel counts them per
    // owner).
    let breaches: Vec<(&str, leadflow_domain::Timestamp, Stage)> = decision
        .events
        .iter()
        .filter_map(|e| match e {
            Event::SlaBreached(b) => Some((b.sla_id.as_str(), b.at, b.stage)),
            _ => None,
        })
        .collect();
    if !breaches.is_empty() {
        let owner = match &before {
            Before::Existing(r) => r.owner.as_deref(),
            Before::New { .. } => None,
        };
        tx.insert_sla_breaches(ws, id, &breaches, owner).await?;
    }
    tx.apply_timers(ws, id, &decision.timers, target.now, target.traceparent)
        .await?;

    let transitions: Vec<StoredTransition> = (history_len + 1..)
        .zip(records)
        .map(|(seq, record)| StoredTransition {
            lead_id: id.to_owned(),
            seq,
            record: record.clone(),
            policy_version: target.policy_version,
            principal: target.principal.map(str::to_owned),
        })
        .collect();
    // The owner follows the decision's moves.
    let handed = crate::assign::after_decision(
        tx,
        &crate::assign::Around {
            ws,
            policy: target.policy,
            lead_id: id,
            before: match &before {
                Before::Existing(r) => Some((r.owner.as_deref(), r.lead.stage)),
                Before::New { .. } => None,
            },
            lead: &decision.lead,
            scores: &scores,
            principal: target.principal,
            policy_change: policy_changed,
        },
        &decision.events,
    )
    .await?;
    let record = LeadRecord {
        id: id.to_owned(),
        external_key: external_key.map(str::to_owned),
        version,
        policy_version: target.policy_version,
        history_len: new_len,
        updated_at: target.now,
        lead: decision.lead.clone(),
        keyed: true,
        owner: handed.owner,
    };

    let mut outbox = Vec::with_capacity(decision.events.len() + handed.events.len());
    let mut triggers = Vec::new();
    let mut next_transition = transitions.iter();
    let snapshot = OutboxPayload {
        lead_id: id.to_owned(),
        external_key: record.external_key.clone(),
        stage: record.lead.stage,
        lead_version: version,
        scores: scores.clone(),
        policy_version: target.policy_version,
        transition: None,
        trigger: None,
        sla_breach: None,
        level_change: None,
        merge: None,
        assignment: None,
    };
    for event in &decision.events {
        let mut payload = snapshot.clone();
        let kind = match event {
            Event::Transition(_) => {
                payload.transition = next_transition.next().cloned().map(Into::into);
                "TRANSITION"
            }
            Event::Trigger(t) => {
                triggers.push(t.clone());
                payload.trigger = Some(t.clone());
                "TRIGGER"
            }
            Event::SlaBreached(b) => {
                payload.sla_breach = Some(b.clone());
                "SLA_BREACHED"
            }
            Event::LevelChanged(l) => {
                payload.level_change = Some(l.clone());
                "LEVEL_CHANGED"
            }
        };
        outbox.push(NewOutboxEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            lead_id: id.to_owned(),
            subject: leadflow_store::Subject::Lead,
            kind: kind.to_owned(),
            payload: serde_json::to_string(&payload).map_err(|e| EngineError::Internal(e.to_string()))?,
            occurred_at: event.at(),
            created_at: target.now,
            traceparent: target.traceparent.map(str::to_owned),
            suppressed: event.suppressed(),
        });
    }
    for (kind, note, at) in handed.events {
        outbox.push(crate::assign::outbox_event(
            &snapshot,
            kind,
            note,
            at,
            target.now,
            target.traceparent,
        )?);
    }
    let mut events = outbox.len();
    tx.append_outbox(ws, outbox);
    // The lead's account follows, its events after the lead's.
    let at = record.lead.evaluated_at.max(record.lead.last_transition_at);
    if target.sync_accounts {
        events += crate::accounts::sync_lead(
            tx,
            target,
            before_lead.as_ref(),
            policy_changed,
            &record,
            engagement,
            at,
        )
        .await?;
    }
    Ok(Written {
        events,
        lead: Scored {
            record,
            scores,
            scored_at: target.now,
        },
        transitions,
        triggers,
    })
}

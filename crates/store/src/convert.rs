//! Rows ↔ domain types.

use std::collections::BTreeMap;

use leadflow_domain::lifecycle::{Cause, Deal, GuardCheck, Move, TransitionRecord};
use leadflow_domain::workflow::{LevelChange, Timer, TimerKind};
use leadflow_domain::{Engagement, Lead, Stage, Timestamp};

use crate::entity::{engagement, lead, level_change, policy, timer, transition};
use crate::error::StoreError;
use crate::records::{
    LeadRecord, PolicyRecord, StoredEngagement, StoredLevelChange, StoredTimer, StoredTransition,
};

pub(crate) fn ts(micros: i64) -> Timestamp {
    Timestamp::from_micros(micros)
}

pub(crate) fn stage(table: &'static str, key: &str, text: &str) -> Result<Stage, StoreError> {
    text.parse::<Stage>()
        .map_err(|e| StoreError::corrupt(table, key, e))
}

pub(crate) fn lead_record(row: lead::Model) -> Result<LeadRecord, StoreError> {
    let lead: Lead = crate::state::unpack(&row.id, row.packed_state.as_deref(), &row.state)?;
    Ok(LeadRecord {
        id: row.id,
        external_key: row.external_key,
        version: row.version,
        policy_version: row.policy_version,
        history_len: row.history_len,
        updated_at: ts(row.updated_at),
        lead,
        keyed: row.engagement_key.is_some(),
        owner: row.owner_id,
    })
}

pub(crate) fn engagement(row: engagement::Model) -> Result<StoredEngagement, StoreError> {
    let properties: BTreeMap<String, String> = serde_json::from_str(&row.properties)
        .map_err(|e| StoreError::corrupt("engagements", &row.event_id, e))?;
    let triggers = match &row.caused_triggers {
        Some(json) => {
            serde_json::from_str(json).map_err(|e| StoreError::corrupt("engagements", &row.event_id, e))?
        }
        None => Vec::new(),
    };
    Ok(StoredEngagement {
        lead_id: row.lead_id,
        fingerprint: row.fingerprint,
        recorded_at: ts(row.recorded_at),
        triggers,
        engagement: Engagement {
            event_id: row.event_id,
            kind: row.kind,
            channel: row.channel,
            properties,
            occurred_at: ts(row.occurred_at),
        },
    })
}

pub(crate) fn cause_parts(cause: &Cause) -> (&'static str, Option<String>) {
    let reference = match cause {
        Cause::Engagement { event_id } => Some(event_id.clone()),
        Cause::Timer { key } => Some(key.clone()),
        Cause::Identify { anonymous_id } => Some(anonymous_id.clone()),
        Cause::Merge { lead_id } | Cause::Unmerge { lead_id } => Some(lead_id.clone()),
        Cause::Capture | Cause::ProfileUpdate | Cause::Manual | Cause::PolicyChange | Cause::Decay => None,
    };
    (cause.as_str(), reference)
}

fn cause(table: &'static str, key: &str, kind: &str, reference: Option<String>) -> Result<Cause, StoreError> {
    let need =
        |r: Option<String>| r.ok_or_else(|| StoreError::corrupt(table, key, "cause without its reference"));
    Ok(match kind {
        "CAPTURE" => Cause::Capture,
        "ENGAGEMENT" => Cause::Engagement {
            event_id: need(reference)?,
        },
        "PROFILE_UPDATE" => Cause::ProfileUpdate,
        "MANUAL" => Cause::Manual,
        "TIMER" => Cause::Timer {
            key: need(reference)?,
        },
        "POLICY_CHANGE" => Cause::PolicyChange,
        "DECAY" => Cause::Decay,
        "IDENTIFY" => Cause::Identify {
            anonymous_id: need(reference)?,
        },
        "MERGE" => Cause::Merge {
            lead_id: need(reference)?,
        },
        "UNMERGE" => Cause::Unmerge {
            lead_id: need(reference)?,
        },
        other => {
            return Err(StoreError::corrupt(
                table,
                key,
                format!("unknown cause {other:?}"),
            ));
        }
    })
}

pub(crate) fn by(key: &str, text: &str) -> Result<Move, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| StoreError::corrupt("transitions", key, format!("unknown move {text:?}")))
}

pub(crate) fn transition(row: transition::Model) -> Result<StoredTransition, StoreError> {
    let key = format!("{}#{}", row.lead_id, row.seq);
    let guards: Vec<GuardCheck> =
        serde_json::from_str(&row.guards).map_err(|e| StoreError::corrupt("transitions", &key, e))?;
    let from = row
        .from_stage
        .as_deref()
        .map(|s| stage("transitions", &key, s))
        .transpose()?;
    let deal = match (row.deal_value, row.currency) {
        (Some(value), Some(currency)) => Some(Deal { value, currency }),
        _ => None,
    };
    Ok(StoredTransition {
        seq: row.seq,
        policy_version: row.policy_version,
        principal: row.principal,
        record: TransitionRecord {
            from,
            to: stage("transitions", &key, &row.to_stage)?,
            at: ts(row.at),
            by: by(&key, &row.by)?,
            cause: cause("transitions", &key, &row.cause, row.cause_ref)?,
            reason: row.reason,
            actor: row.actor,
            deal,
            fit: row.fit,
            engagement: row.engagement,
            guards,
        },
        lead_id: row.lead_id,
    })
}

pub(crate) fn timer(row: timer::Model) -> Result<StoredTimer, StoreError> {
    let key = format!("{}/{}", row.lead_id, row.key);
    let kind: TimerKind = row
        .key
        .parse()
        .map_err(|e: String| StoreError::corrupt("timers", &key, e))?;
    let bound = match (row.bound_stage, row.bound_at) {
        (Some(s), Some(at)) => Some((stage("timers", &key, &s)?, ts(at))),
        _ => None,
    };
    Ok(StoredTimer {
        lead_id: row.lead_id,
        timer: Timer {
            kind,
            due_at: ts(row.due_at),
            bound,
            suppressed: row.suppressed,
        },
        traceparent: row.traceparent,
    })
}

pub(crate) fn policy(row: policy::Model, active: Option<i64>) -> PolicyRecord {
    PolicyRecord {
        active: active == Some(row.version),
        version: row.version,
        name: row.name,
        description: row.description,
        source: row.source,
        checksum: row.checksum,
        created_at: ts(row.created_at),
        activated_at: row.activated_at.map(ts),
        created_by: row.created_by,
        activated_by: row.activated_by,
    }
}

pub(crate) fn level_change(row: level_change::Model) -> Result<StoredLevelChange, StoreError> {
    let key = format!("{}#{}", row.lead_id, row.seq);
    Ok(StoredLevelChange {
        lead_id: row.lead_id,
        policy_version: row.policy_version,
        change: LevelChange {
            seq: u64::try_from(row.seq).map_err(|e| StoreError::corrupt("level_changes", &key, e))?,
            from: row.from_level,
            to: row.to_level,
            at: ts(row.at),
            stage: stage("level_changes", &key, &row.stage)?,
            cause: cause("level_changes", &key, &row.cause, row.cause_ref)?,
            fit: row.fit,
            engagement: row.engagement,
            suppressed: row.suppressed,
        },
    })
}

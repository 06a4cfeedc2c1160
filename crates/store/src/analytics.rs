//! Reads for analytics: the stage histories of the leads that moved in a
//! period, with what the funnel groups them by.

use std::collections::HashMap;

use leadflow_domain::analytics::{History, LevelStep, OwnerStep, Period, Step, StepCause, Touch};
use sea_orm::{ConnectionTrait, Value};

use crate::Store;
use crate::backend::Backend;
use crate::convert::{self, ts};
use crate::error::StoreError;

/// The leads with a move or a level change in the period (a subquery of
/// `ws`, `start`, `end`).
const MOVED: &str = "SELECT m.lead_id FROM transitions m WHERE m.workspace_id = $1 AND m.at >= $2 AND m.at < $3 \
     UNION SELECT c.lead_id FROM level_changes c WHERE c.workspace_id = $1 AND c.at >= $2 AND c.at < $3";

/// [`MOVED`], and the leads whose owner changed in the period.
const MOVED_OR_HANDED: &str = "SELECT m.lead_id FROM transitions m WHERE m.workspace_id = $1 AND m.at >= $2 AND m.at < $3 \
     UNION SELECT c.lead_id FROM level_changes c WHERE c.workspace_id = $1 AND c.at >= $2 AND c.at < $3 \
     UNION SELECT a.lead_id FROM assignments a WHERE a.workspace_id = $1 AND a.at >= $2 AND a.at < $3 \
     UNION SELECT b.lead_id FROM sla_breaches b WHERE b.workspace_id = $1 AND b.at >= $2 AND b.at < $3";

/// What a funnel by owner or team reads besides the stage histories.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnersRead {
    /// The engagement types that count as a sales touch.
    pub touch_types: Vec<String>,
}

impl Store {
    /// The whole stage history of every lead that moved during `period`,
    /// each move with the channel of the engagement that caused it; with
    /// `source_channels`, each lead's first engagement's channel too; with
    /// `touches`, each lead's engagements with that property's value
    /// (`channel` and `type` are the engagement's own) and whether it was
    /// erased. Erased leads are included: their stage history is anonymous.
    pub async fn funnel_histories(
        &self,
        ws: &str,
        period: Period,
        source_channels: bool,
        touches: Option<&str>,
        owners: Option<&OwnersRead>,
    ) -> Result<Vec<History>, StoreError> {
        let params = || -> Vec<Value> {
            vec![
                ws.into(),
                period.start.as_micros().into(),
                period.end.as_micros().into(),
            ]
        };
        // PostgreSQL is handed the moved leads as an array, so that it
        // looks their histories up by key: joined to the subquery, it
        // scans every transition of the workspace however short the period.
        let leads = if owners.is_some() { MOVED_OR_HANDED } else { MOVED };
        let (moved, bytewise) = match self.backend() {
            Backend::Postgres => (format!("= ANY(ARRAY({leads}))"), " COLLATE \"C\""),
            Backend::Sqlite => (format!("IN ({leads})"), ""),
        };
        let tx = self.read_snapshot().await?;
        let sql = format!(
            "SELECT t.lead_id, t.seq, t.from_stage, t.to_stage, t.at, t.\"move\" AS by, t.cause, t.reason, \
             t.policy_version, t.cause_ref, e.channel \
             FROM transitions t \
             LEFT JOIN engagements e ON t.cause = 'ENGAGEMENT' AND e.workspace_id = t.workspace_id \
             AND e.event_id = t.cause_ref \
             WHERE t.workspace_id = $1 AND t.lead_id {moved} \
             ORDER BY t.lead_id, t.seq"
        );
        let rows = tx.query_all_raw(self.sql(&sql, params())).await?;
        let mut histories: Vec<History> = Vec::new();
        for row in rows {
            let lead_id: String = row.try_get("", "lead_id")?;
            let seq: i64 = row.try_get("", "seq")?;
            let key = format!("{lead_id}#{seq}");
            let from: Option<String> = row.try_get("", "from_stage")?;
            let to: String = row.try_get("", "to_stage")?;
            let cause: String = row.try_get("", "cause")?;
            let channel: Option<String> = row.try_get("", "channel")?;
            let cause_ref: Option<String> = row.try_get("", "cause_ref")?;
            let step = Step {
                from: from
                    .as_deref()
                    .map(|s| convert::stage("transitions", &key, s))
                    .transpose()?,
                to: convert::stage("transitions", &key, &to)?,
                at: ts(row.try_get("", "at")?),
                by: convert::by(&key, &row.try_get::<String>("", "by")?)?,
                reason: row.try_get("", "reason")?,
                policy_version: row.try_get("", "policy_version")?,
                caused_by: match cause.as_str() {
                    "ENGAGEMENT" => StepCause::Engagement {
                        channel,
                        event_id: cause_ref.unwrap_or_default(),
                    },
                    "MANUAL" => StepCause::Command,
                    "CAPTURE" | "PROFILE_UPDATE" => StepCause::Profile,
                    _ => StepCause::Automatic,
                },
            };
            match histories.last_mut() {
                Some(h) if h.lead_id == lead_id => h.steps.push(step),
                _ => histories.push(History {
                    lead_id,
                    source_channel: None,
                    steps: vec![step],
                    levels: Vec::new(),
                    touches: Vec::new(),
                    erased: false,
                    owners: Vec::new(),
                    sales_touches: Vec::new(),
                    sla_breaches: Vec::new(),
                }),
            }
        }
        if !histories.is_empty() {
            // The funnel reads the levels reached in the period only: by the
            // index on the instant, without the moved leads' subquery again.
            let sql = "SELECT lead_id, to_level, at, policy_version FROM level_changes \
                       WHERE workspace_id = $1 AND at >= $2 AND at < $3 AND to_level IS NOT NULL \
                       ORDER BY lead_id, seq";
            let index: HashMap<String, usize> = histories
                .iter()
                .enumerate()
                .map(|(i, h)| (h.lead_id.clone(), i))
                .collect();
            for row in tx.query_all_raw(self.sql(sql, params())).await? {
                let lead_id: String = row.try_get("", "lead_id")?;
                let Some(&i) = index.get(&lead_id) else { continue };
                histories[i].levels.push(LevelStep {
                    level: row.try_get("", "to_level")?,
                    at: ts(row.try_get("", "at")?),
                    policy_version: row.try_get("", "policy_version")?,
                });
            }
        }
        if source_channels && !histories.is_empty() {
            // Ties on the instant go to the smallest event id byte by byte,
            // as in the domain, whatever the database's collation.
            let sql = format!(
                "SELECT l.id, (SELECT e.channel FROM engagements e \
                 WHERE e.workspace_id = l.workspace_id AND e.lead_id = l.id \
                 ORDER BY e.occurred_at, e.event_id{bytewise} LIMIT 1) AS channel \
                 FROM leads l WHERE l.workspace_id = $1 AND l.id {moved}"
            );
            let mut channels: HashMap<String, Option<String>> = HashMap::new();
            for row in tx.query_all_raw(self.sql(&sql, params())).await? {
                channels.insert(row.try_get("", "id")?, row.try_get("", "channel")?);
            }
            for h in &mut histories {
                h.source_channel = channels.remove(&h.lead_id).flatten();
            }
        }
        if let Some(property) = touches.filter(|_| !histories.is_empty()) {
            let index: HashMap<String, usize> = histories
                .iter()
                .enumerate()
                .map(|(i, h)| (h.lead_id.clone(), i))
                .collect();
            let sql = format!(
                "SELECT l.id FROM leads l WHERE l.workspace_id = $1 AND l.id {moved} AND l.erased_at IS NOT NULL"
            );
            for row in tx.query_all_raw(self.sql(&sql, params())).await? {
                let id: String = row.try_get("", "id")?;
                if let Some(&i) = index.get(&id) {
                    histories[i].erased = true;
                }
            }
            // In scoring order: by instant, ties to the smallest event id
            // byte by byte.
            let sql = format!(
                "SELECT e.lead_id, e.event_id, e.occurred_at, e.channel, e.type AS kind, e.properties \
                 FROM engagements e WHERE e.workspace_id = $1 AND e.lead_id {moved} \
                 ORDER BY e.lead_id, e.occurred_at, e.event_id{bytewise}"
            );
            for row in tx.query_all_raw(self.sql(&sql, params())).await? {
                let lead_id: String = row.try_get("", "lead_id")?;
                let Some(&i) = index.get(&lead_id) else { continue };
                let event_id: String = row.try_get("", "event_id")?;
                let value = match property {
                    "channel" => row.try_get("", "channel")?,
                    "type" => Some(row.try_get("", "kind")?),
                    _ => {
                        let text: String = row.try_get("", "properties")?;
                        property_value(&text, property)
                            .map_err(|e| StoreError::corrupt("engagements", &event_id, e))?
                    }
                };
                histories[i].touches.push(Touch {
                    event_id,
                    at: ts(row.try_get("", "occurred_at")?),
                    value,
                });
            }
        }
        if let Some(read) = owners.filter(|_| !histories.is_empty()) {
            let index: HashMap<String, usize> = histories
                .iter()
                .enumerate()
                .map(|(i, h)| (h.lead_id.clone(), i))
                .collect();
            let sql = format!(
                "SELECT a.lead_id, a.at, a.from_owner, a.to_owner, a.cause FROM assignments a \
                 WHERE a.workspace_id = $1 AND a.lead_id {moved} ORDER BY a.lead_id, a.seq"
            );
            for row in tx.query_all_raw(self.sql(&sql, params())).await? {
                let lead_id: String = row.try_get("", "lead_id")?;
                let Some(&i) = index.get(&lead_id) else { continue };
                histories[i].owners.push(OwnerStep {
                    at: ts(row.try_get("", "at")?),
                    from: row.try_get("", "from_owner")?,
                    to: row.try_get("", "to_owner")?,
                    cause: row.try_get("", "cause")?,
                });
            }
            let sql = format!(
                "SELECT b.lead_id, b.at, b.owner_id FROM sla_breaches b \
                 WHERE b.workspace_id = $1 AND b.lead_id {moved} ORDER BY b.lead_id, b.at"
            );
            for row in tx.query_all_raw(self.sql(&sql, params())).await? {
                let lead_id: String = row.try_get("", "lead_id")?;
                let Some(&i) = index.get(&lead_id) else { continue };
                histories[i]
                    .sla_breaches
                    .push((ts(row.try_get("", "at")?), row.try_get("", "owner_id")?));
            }
            if !read.touch_types.is_empty() {
                let mut values = params();
                let mut types = Vec::with_capacity(read.touch_types.len());
                for t in &read.touch_types {
                    values.push(t.clone().into());
                    types.push(format!("${}", values.len()));
                }
                let types = types.join(", ");
                let sql = format!(
                    "SELECT e.lead_id, e.occurred_at FROM engagements e \
                     WHERE e.workspace_id = $1 AND e.lead_id {moved} AND e.type IN ({types}) \
                     ORDER BY e.lead_id, e.occurred_at"
                );
                for row in tx.query_all_raw(self.sql(&sql, values)).await? {
                    let lead_id: String = row.try_get("", "lead_id")?;
                    let Some(&i) = index.get(&lead_id) else { continue };
                    histories[i]
                        .sales_touches
                        .push(ts(row.try_get("", "occurred_at")?));
                }
            }
        }
        tx.commit().await?;
        Ok(histories)
    }
}

/// One property of an engagement's stored properties (a JSON object of
/// texts).
fn property_value(properties: &str, property: &str) -> Result<Option<String>, String> {
    let mut map: HashMap<String, String> =
        serde_json::from_str(properties).map_err(|e| format!("properties: {e}"))?;
    Ok(map.remove(property))
}

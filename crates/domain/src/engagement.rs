//! Engagements: what a lead did. Inputs to scoring, never events themselves.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// One thing a lead did, as recorded by a caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engagement {
    /// Caller-chosen, unique per workspace: the idempotency key.
    pub event_id: String,
    /// The engagement type, from the policy's vocabulary.
    #[serde(rename = "type")]
    pub kind: String,
    pub channel: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub occurred_at: Timestamp,
}

/// The order in which a log is scored: by time, ties broken by event id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventKey {
    pub occurred_at: Timestamp,
    pub event_id: String,
}

impl Engagement {
    pub fn key(&self) -> EventKey {
        EventKey {
            occurred_at: self.occurred_at,
            event_id: self.event_id.clone(),
        }
    }

    /// Compares by scoring order without allocating a key.
    pub fn cmp_key(&self, other: &Self) -> Ordering {
        (self.occurred_at, &self.event_id).cmp(&(other.occurred_at, &other.event_id))
    }

    /// Whether this event sorts after `key`.
    pub fn is_after(&self, key: &EventKey) -> bool {
        (self.occurred_at, self.event_id.as_str()) > (key.occurred_at, key.event_id.as_str())
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(String::as_str)
    }
}

/// The scoring order of a log: sorted, one entry per event id (the first in
/// scoring order wins; a repeated id carries the same content anyway).
pub fn canonical_log(log: &[Engagement]) -> Vec<&Engagement> {
    let mut sorted: Vec<&Engagement> = log.iter().collect();
    sorted.sort_by(|a, b| a.cmp_key(b));
    let mut seen = std::collections::HashSet::with_capacity(sorted.len());
    sorted.retain(|e| seen.insert(e.event_id.as_str()));
    sorted
}

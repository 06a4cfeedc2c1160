//! The sales handoff of a period, by owner or by team: leads given, leads
//! an SLA's reassign took away, and of the leads that entered SQL while
//! owned, how fast they were first touched and how many became customers.

use std::collections::BTreeMap;

use super::funnel::{Grouping, History, Query, owner_keys, percentile, ratio};
use crate::stage::Stage;
use crate::time::Span;

/// One owner's (or team's) handoff in a period.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Handoff {
    pub key: String,
    /// The owner's display name (grouped by owner; empty otherwise).
    pub display_name: String,
    /// Leads given to it in the period (by a route, by hand, a merge, an
    /// SLA's reassign).
    pub assigned: u64,
    /// SLA breaches in the period of leads it owned then.
    pub sla_breaches: u64,
    /// Leads whose first entry into SQL in the period found it their owner.
    pub sql: u64,
    /// Of those, the ones touched since (an engagement of a type an SQL SLA
    /// waits for), and the time from entering SQL to the first touch.
    pub touched: u64,
    pub first_touch_p50: Option<Span>,
    pub first_touch_p90: Option<Span>,
    /// Of `sql`, those that became customers since.
    pub converted: u64,
    /// `converted / sql`; 0 when `sql` is.
    pub conversion_rate: f64,
}

#[derive(Default)]
struct Acc {
    assigned: u64,
    sla_breaches: u64,
    sql: u64,
    touches: Vec<i64>,
    converted: u64,
}

/// The handoff of `query.period` over `histories` (their `owners` and
/// `sales_touches` read), by owner (or team, with `query.grouping` TEAM),
/// keys ascending. Leads without an owner are under "(none)".
pub fn handoff(histories: &[History], query: &Query) -> Vec<Handoff> {
    let period = query.period;
    let by = Query {
        grouping: if query.grouping == Grouping::Team {
            Grouping::Team
        } else {
            Grouping::Owner
        },
        ..query.clone()
    };
    let grouped = |owner: Option<&str>| owner_keys(&by, owner);
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    for h in histories {
        if query
            .source_channel
            .as_ref()
            .is_some_and(|w| h.source_key() != *w)
        {
            continue;
        }
        for step in h.owners.iter().filter(|o| period.contains(o.at)) {
            if let Some(to) = step.to.as_deref().filter(|to| step.from.as_deref() != Some(*to)) {
                for key in grouped(Some(to)) {
                    groups.entry(key).or_default().assigned += 1;
                }
            }
        }
        for (_, owner) in h.sla_breaches.iter().filter(|(at, _)| period.contains(*at)) {
            for key in grouped(owner.as_deref()) {
                groups.entry(key).or_default().sla_breaches += 1;
            }
        }
        let Some(entry) = h.first_entry(Stage::Sql).filter(|s| period.contains(s.at)) else {
            continue;
        };
        let touch = h.sales_touches.iter().find(|t| **t >= entry.at);
        let won = h
            .steps
            .iter()
            .any(|s| s.to == Stage::Customer && s.at >= entry.at);
        for key in grouped(h.owner_at(entry.at)) {
            let acc = groups.entry(key).or_default();
            acc.sql += 1;
            if let Some(t) = touch {
                acc.touches.push(t.since(entry.at).as_micros());
            }
            acc.converted += u64::from(won);
        }
    }
    groups
        .into_iter()
        .map(|(key, mut acc)| {
            acc.touches.sort_unstable();
            Handoff {
                key,
                display_name: String::new(),
                assigned: acc.assigned,
                sla_breaches: acc.sla_breaches,
                sql: acc.sql,
                touched: acc.touches.len() as u64,
                first_touch_p50: percentile(&acc.touches, 50).map(Span::from_micros),
                first_touch_p90: percentile(&acc.touches, 90).map(Span::from_micros),
                converted: acc.converted,
                conversion_rate: ratio(acc.converted, acc.sql),
            }
        })
        .collect()
}

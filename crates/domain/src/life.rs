//! A lead's life from a profile and an engagement log, decided as the
//! service decides a live feed: captured, then each engagement at its own
//! instant in time order, the lead's durable timers firing at their due
//! instants in between. Policy regression tests (`leadflow policy test`)
//! run their cases through it.

use std::collections::BTreeMap;

use crate::engagement::Engagement;
use crate::error::DomainError;
use crate::lifecycle::{Command, Context, Decision, Lead, capture, decide};
use crate::policy::Policy;
use crate::time::Timestamp;
use crate::workflow::{Event, Timer, TimerChange};

/// Timers fired in one life at the most: a policy whose timers re-arm
/// forever would otherwise never end.
pub const MAX_TIMERS: usize = 10_000;

/// What a life decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Life {
    pub lead: Lead,
    /// Every event of every decision, in order.
    pub events: Vec<Event>,
    /// The engagements, in the order they were decided.
    pub log: Vec<Engagement>,
    /// The timers still pending at the end, by key.
    pub timers: BTreeMap<String, Timer>,
}

/// Why a life could not be lived: a command the domain refused (`at` is
/// the engagement's event id, or `capture`).
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    pub at: String,
    pub error: DomainError,
}

impl Life {
    fn absorb(&mut self, decision: Decision) {
        self.lead = decision.lead;
        self.events.extend(decision.events);
        for change in decision.timers {
            match change {
                TimerChange::Schedule(t) => {
                    self.timers.insert(t.kind.key(), t);
                }
                TimerChange::Cancel(kind) => {
                    self.timers.remove(&kind.key());
                }
                TimerChange::CancelStageBound => self.timers.retain(|_, t| t.bound.is_none()),
            }
        }
    }

    /// Fires the timers due by `t`, soonest first (ties by key).
    fn fire_until(&mut self, policy: &Policy, t: Timestamp, fired: &mut usize) -> Result<(), Refused> {
        while *fired < MAX_TIMERS {
            let Some(key) = self
                .timers
                .iter()
                .filter(|(_, timer)| timer.due_at <= t)
                .min_by_key(|(key, timer)| (timer.due_at, (*key).clone()))
                .map(|(key, _)| key.clone())
            else {
                return Ok(());
            };
            let Some(timer) = self.timers.remove(&key) else {
                return Ok(());
            };
            *fired += 1;
            let ctx = Context { now: timer.due_at };
            let decision = decide(
                policy,
                &self.lead,
                Command::TimerFired(timer),
                &ctx,
                Some(&self.log),
            )
            .map_err(|error| Refused { at: key, error })?;
            self.absorb(decision);
        }
        Ok(())
    }
}

/// Lives a lead's life up to `until`: captured at `captured_at` with
/// `profile`, then `engagements` sorted by scoring order, each decided at
/// its `occurred_at`, with timers firing as they fall due.
pub fn live(
    policy: &Policy,
    profile: BTreeMap<String, String>,
    captured_at: Timestamp,
    engagements: &[Engagement],
    until: Timestamp,
) -> Result<Life, Refused> {
    fn refused(at: &str) -> impl FnOnce(DomainError) -> Refused + '_ {
        move |error| Refused {
            at: at.to_owned(),
            error,
        }
    }
    let captured = capture(policy, profile, Some(captured_at), &Context { now: captured_at })
        .map_err(refused("capture"))?;
    let mut life = Life {
        lead: captured.lead.clone(),
        events: Vec::new(),
        log: Vec::with_capacity(engagements.len()),
        timers: BTreeMap::new(),
    };
    life.absorb(captured);
    let mut sorted: Vec<&Engagement> = engagements.iter().collect();
    sorted.sort_by(|a, b| a.cmp_key(b));
    let mut fired = 0;
    for e in sorted {
        life.fire_until(policy, e.occurred_at, &mut fired)?;
        let ctx = Context { now: e.occurred_at };
        let decision = decide(
            policy,
            &life.lead,
            Command::RecordEngagement(e.clone()),
            &ctx,
            Some(&life.log),
        )
        .map_err(refused(&e.event_id))?;
        life.absorb(decision);
        life.log.push(e.clone());
    }
    life.fire_until(policy, until, &mut fired)?;
    Ok(life)
}

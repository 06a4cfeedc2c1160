//! A lead's life from a profile and an engagement log, decided as the
//! service decides a live feed: captured, then each engagement at its own
//! instant in time order, the lead's durable timers firing at their due
//! instants in between. Policy regression tests (`leadflow policy test`)
//! run their cases through it.

use std::collections::BTreeMap;

use crate::engagement::Engagement;
use crate::error::DomainError;
use crate::lifecycle::{Command, Context, Decision, Lead, ManualTransition, capture, decide};
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

/// Something that happens to a lead in its life.
#[derive(Clone, Debug, PartialEq)]
pub enum Happening {
    Engagement(Engagement),
    /// A manual move, at its `occurred_at` (required).
    Transition(ManualTransition),
}

impl Happening {
    fn at(&self) -> Option<Timestamp> {
        match self {
            Self::Engagement(e) => Some(e.occurred_at),
            Self::Transition(t) => t.occurred_at,
        }
    }

    fn name(&self, index: usize) -> String {
        match self {
            Self::Engagement(e) => e.event_id.clone(),
            Self::Transition(t) => format!("transition[{index}] {}", t.command),
        }
    }
}

/// Why a life could not be lived: a command the domain refused (`at` is
/// the engagement's event id, the transition, `capture` or a timer's key),
/// or timers that kept re-arming past [`MAX_TIMERS`].
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    pub at: String,
    pub error: String,
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
        loop {
            let Some(key) = self
                .timers
                .iter()
                .filter(|(_, timer)| timer.due_at <= t)
                .min_by_key(|(key, timer)| (timer.due_at, (*key).clone()))
                .map(|(key, _)| key.clone())
            else {
                return Ok(());
            };
            if *fired >= MAX_TIMERS {
                return Err(Refused {
                    at: key,
                    error: format!("more than {MAX_TIMERS} timers fired: they keep re-arming"),
                });
            }
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
            .map_err(|error| Refused {
                at: key,
                error: error.to_string(),
            })?;
            self.absorb(decision);
        }
    }
}

/// Lives a lead's life up to `until`: captured at `captured_at` with
/// `profile`, then each happening at its instant — in time order, an
/// engagement before a transition of the same instant, engagements of one
/// instant in scoring order, transitions in the order given — with timers
/// firing as they fall due.
pub fn live(
    policy: &Policy,
    profile: BTreeMap<String, String>,
    captured_at: Timestamp,
    happenings: &[Happening],
    until: Timestamp,
) -> Result<Life, Refused> {
    fn refused(at: &str) -> impl FnOnce(DomainError) -> Refused + '_ {
        move |error| Refused {
            at: at.to_owned(),
            error: error.to_string(),
        }
    }
    let captured = capture(policy, profile, Some(captured_at), &Context { now: captured_at })
        .map_err(refused("capture"))?;
    let mut life = Life {
        lead: captured.lead.clone(),
        events: Vec::new(),
        log: Vec::with_capacity(happenings.len()),
        timers: BTreeMap::new(),
    };
    life.absorb(captured);
    let mut sorted: Vec<(usize, &Happening)> = happenings.iter().enumerate().collect();
    sorted.sort_by(|(i, a), (j, b)| {
        let instant = |h: &Happening| h.at().unwrap_or(captured_at);
        instant(a).cmp(&instant(b)).then_with(|| match (a, b) {
            (Happening::Engagement(x), Happening::Engagement(y)) => x.cmp_key(y),
            (Happening::Engagement(_), Happening::Transition(_)) => std::cmp::Ordering::Less,
            (Happening::Transition(_), Happening::Engagement(_)) => std::cmp::Ordering::Greater,
            (Happening::Transition(_), Happening::Transition(_)) => i.cmp(j),
        })
    });
    let mut fired = 0;
    for (i, h) in sorted {
        let at = h.at().unwrap_or(captured_at);
        life.fire_until(policy, at, &mut fired)?;
        let command = match h {
            Happening::Engagement(e) => Command::RecordEngagement(e.clone()),
            Happening::Transition(t) => Command::Transition(t.clone()),
        };
        let decision = decide(policy, &life.lead, command, &Context { now: at }, Some(&life.log))
            .map_err(refused(&h.name(i)))?;
        life.absorb(decision);
        if let Happening::Engagement(e) = h {
            life.log.push(e.clone());
        }
    }
    life.fire_until(policy, until, &mut fired)?;
    Ok(life)
}

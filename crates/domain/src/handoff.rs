//! The handoff: what of a decision concerns the lead's owner (a route set
//! off, a release), which `[[route]]` applies, and whom it gives the lead
//! to, given the workspace's owners, their open leads and the teams'
//! cursors. Deterministic: the same state gives the same owner.

use std::collections::{BTreeMap, BTreeSet};

use crate::lifecycle::Scores;
use crate::policy::{Policy, Release, Route, RouteOn, RouteTarget, ScoreName, SlaAction};
use crate::profile::Profile;
use crate::routing::{Owner, Strategy, TeamCursor, Verdict, choose};
use crate::stage::Stage;
use crate::transition::{Cause, Move};
use crate::workflow::Event;

/// Whether a lead in `stage` with an owner counts toward its capacity.
pub const fn is_open(stage: Stage) -> bool {
    matches!(stage, Stage::Iql | Stage::Mql | Stage::Sql)
}

/// What a decision's events ask of routing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Occasions {
    /// The lead leaves its owner: the release move (`None` for a merge
    /// into another lead, which always releases).
    pub release: Option<Option<Release>>,
    /// The routes' events, in order: the stage the decision's moves end
    /// in, then each level the lead goes to.
    pub on: Vec<RouteOn>,
    /// Set off by a policy change (re-score): such routes do not take a
    /// lead from its owner.
    pub policy_change: bool,
    /// The SLAs with `then = "reassign"` that breached, in order: the lead
    /// goes back through its stage's route, past the owners of its stay.
    pub reassign: Vec<String>,
}

/// The release and the route events of a decision's `events`.
pub fn occasions(policy: &Policy, events: &[Event]) -> Occasions {
    let mut out = Occasions::default();
    let mut last = None;
    for event in events {
        match event {
            Event::Transition(t) => {
                let release = match t.by {
                    Move::Reject => Some(Release::Rejected),
                    Move::Recycle | Move::SlaRecycle => Some(Release::Recycled),
                    Move::Disqualify | Move::AutoDisqualify => Some(Release::Disqualified),
                    Move::Convert => Some(Release::Converted),
                    _ => None,
                };
                if t.by == Move::MergedInto {
                    out.release = Some(None);
                } else if let Some(r) = release.filter(|r| policy.routing.release_on.contains(r)) {
                    out.release = Some(Some(r));
                }
                last = Some(t);
            }
            Event::SlaBreached(b)
                if policy
                    .slas
                    .iter()
                    .any(|s| s.id == b.sla_id && s.then == SlaAction::Reassign) =>
            {
                out.reassign.push(b.sla_id.clone());
            }
            Event::LevelChanged(l) if !l.suppressed && l.cause != Cause::PolicyChange => {
                if let Some(level) = &l.to {
                    out.on.push(RouteOn::Level(level.clone()));
                }
            }
            _ => {}
        }
    }
    if let Some(t) = last
        && is_open(t.to)
        && !matches!(t.by, Move::Unmerge | Move::MergedInto)
    {
        out.policy_change = t.cause == Cause::PolicyChange;
        out.on.insert(0, RouteOn::Entered(t.to));
    }
    out
}

/// The first route of `policy` set off by `on` whose conditions hold for
/// a lead of this profile and these scores.
pub fn route_for<'p>(
    policy: &'p Policy,
    on: &RouteOn,
    profile: &Profile,
    scores: &Scores,
) -> Option<&'p Route> {
    let score = |name: ScoreName, model: usize| -> Option<f64> {
        let (fit, engagement, qualifying) = if model == 0 {
            (scores.fit, scores.engagement, scores.qualifying_engagement)
        } else {
            let m = scores.models.get(&policy.models.get(model)?.id)?;
            (m.fit, m.engagement, m.qualifying_engagement)
        };
        Some(match name {
            ScoreName::Fit => fit,
            ScoreName::Engagement => engagement,
            ScoreName::QualifyingEngagement => qualifying,
        })
    };
    policy
        .routing
        .routes
        .iter()
        .filter(|r| r.on == *on)
        .find(|r| r.when.iter().all(|c| c.holds(profile, score)))
}

/// The workspace's owners as routing reads them.
#[derive(Clone, Copy, Debug)]
pub struct Pool<'a> {
    pub owners: &'a [Owner],
    /// Each owner's open leads (absent: none).
    pub open: &'a BTreeMap<String, u32>,
    /// Each team's cursor (absent: a fresh one).
    pub cursors: &'a BTreeMap<String, TeamCursor>,
}

/// Whom a route gives the lead to, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    /// `None`: no owner could take it (the lead stays without one).
    pub owner: Option<String>,
    /// "team emea round_robin: ana (at capacity, 5/5), ben (out of
    /// office) → chloe".
    pub explanation: String,
    /// The team's cursor to keep, when the choice moved it.
    pub cursor: Option<(String, TeamCursor)>,
}

/// Where `route` sends a lead of this profile, past the owners it may not
/// go back to (`excluded`), then to the route's fallback (which it may go
/// back to).
pub fn hand_off(route: &Route, profile: &Profile, pool: &Pool<'_>, excluded: &BTreeSet<String>) -> Handoff {
    let mut out = match &route.target {
        RouteTarget::Owner(id) => {
            let (owner, explanation) = single(id, pool, excluded);
            Handoff {
                owner,
                explanation: format!("owner {explanation}"),
                cursor: None,
            }
        }
        RouteTarget::Team {
            team,
            strategy,
            territory,
        } => team_choice(team, *strategy, territory.as_deref(), profile, pool, excluded),
    };
    if out.owner.is_none()
        && let Some(fallback) = &route.fallback
    {
        // The queue of last resort: an owner it had does not keep it out.
        let (owner, explanation) = single(fallback, pool, &BTreeSet::new());
        out.owner = owner;
        out.explanation = format!("{}; fallback {explanation}", out.explanation);
    }
    if out.owner.is_none() && !out.explanation.ends_with(NO_OWNER) {
        out.explanation.push_str(" → ");
        out.explanation.push_str(NO_OWNER);
    }
    out
}

const NO_OWNER: &str = "no owner";

/// One owner by id: it, or why not: "ana" / "ana (out of office)".
fn single(id: &str, pool: &Pool<'_>, excluded: &BTreeSet<String>) -> (Option<String>, String) {
    let Some(owner) = pool.owners.iter().find(|o| o.id == id) else {
        return (None, format!("{id} (no such owner)"));
    };
    let open = pool.open.get(id).copied().unwrap_or(0);
    let verdict = if excluded.contains(id) {
        Verdict::Excluded
    } else if !owner.available {
        Verdict::Unavailable
    } else if let Some(capacity) = owner.capacity.filter(|c| open >= *c) {
        Verdict::AtCapacity { open, capacity }
    } else {
        return (Some(id.to_owned()), id.to_owned());
    };
    (None, format!("{id} ({verdict})"))
}

fn team_choice(
    team: &str,
    strategy: Strategy,
    territory: Option<&str>,
    profile: &Profile,
    pool: &Pool<'_>,
    excluded: &BTreeSet<String>,
) -> Handoff {
    let fresh = TeamCursor::default();
    let cursor = pool.cursors.get(team).unwrap_or(&fresh);
    let (owners, prefix): (Vec<Owner>, String) = match territory {
        None => (pool.owners.to_vec(), String::new()),
        Some(attribute) => {
            let value = profile.get(attribute).map(|v| v.trim().to_lowercase());
            match value.filter(|v| !v.is_empty()) {
                None => {
                    return Handoff {
                        owner: None,
                        explanation: format!(
                            "team {team} {}: the lead has no {attribute} to match a territory → no owner",
                            strategy.as_str()
                        ),
                        cursor: None,
                    };
                }
                Some(value) => (
                    pool.owners
                        .iter()
                        .filter(|o| o.territories.iter().any(|t| t.trim().to_lowercase() == value))
                        .cloned()
                        .collect(),
                    format!("territory {attribute} = {value}: "),
                ),
            }
        }
    };
    let choice = choose(team, strategy, &owners, pool.open, cursor, excluded);
    let moved = choice.cursor != *cursor;
    Handoff {
        explanation: format!("{prefix}{}", choice.explain()),
        cursor: moved.then(|| (team.to_owned(), choice.cursor.clone())),
        owner: choice.chosen,
    }
}

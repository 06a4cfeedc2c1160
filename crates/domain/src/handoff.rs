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
    account: Option<&RouteAccount>,
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
    policy.routing.routes.iter().filter(|r| r.on == *on).find(|r| {
        r.when
            .iter()
            .all(|c| c.holds(profile, account.map(|a| &a.attributes), score))
    })
}

/// The lead's account, as routing reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteAccount {
    pub owner: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

/// An account entered MQA: its owner, and how it came. An account with
/// an owner keeps it ("account owner dora"); one without (or with an id
/// that is no owner's) is given the first matching `account_entered:MQA`
/// route's choice. `None`: no account route matches.
pub fn account_handoff<'p>(
    policy: &'p Policy,
    account: &RouteAccount,
    pool: &Pool<'_>,
) -> Option<(&'p Route, Handoff)> {
    let nobody = Profile::default();
    let route = policy
        .routing
        .routes
        .iter()
        .filter(|r| r.on == RouteOn::AccountMqa)
        .find(|r| {
            r.when
                .iter()
                .all(|c| c.holds(&nobody, Some(&account.attributes), |_, _| None))
        })?;
    match &account.owner {
        Some(owner) if pool.owners.iter().any(|o| o.id == *owner) => Some((
            route,
            Handoff {
                owner: Some(owner.clone()),
                explanation: format!("account owner {owner}"),
                cursor: None,
            },
        )),
        unknown => {
            let mut chosen = hand_off(route, &nobody, None, pool, &BTreeSet::new());
            if let Some(id) = unknown {
                chosen.explanation = format!("account owner {id} (no such owner); {}", chosen.explanation);
            }
            Some((route, chosen))
        }
    }
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
pub fn hand_off(
    route: &Route,
    profile: &Profile,
    account_owner: Option<&str>,
    pool: &Pool<'_>,
    excluded: &BTreeSet<String>,
) -> Handoff {
    // The account's owner first: one rep works one account.
    let mut first = String::new();
    if route.account_owner {
        match account_owner {
            Some(id) => {
                let (owner, explanation) = single(id, pool, excluded);
                if owner.is_some() {
                    return Handoff {
                        owner,
                        explanation: format!("account owner {explanation}"),
                        cursor: None,
                    };
                }
                first = format!("account owner {explanation}");
            }
            None => first = "account owner: none".to_owned(),
        }
    }
    let mut out = match &route.target {
        RouteTarget::AccountOwner => Handoff {
            owner: None,
            explanation: std::mem::take(&mut first),
            cursor: None,
        },
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
    if !first.is_empty() {
        out.explanation = format!("{first}; {}", out.explanation);
    }
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

/// The lead's value of a route's `territory` attribute, as territories are
/// matched (trimmed, lowercase; none when blank).
fn territory_of(profile: &Profile, attribute: &str) -> Option<String> {
    profile
        .get(attribute)
        .map(|v| v.trim().to_lowercase())
        .filter(|v| !v.is_empty())
}

/// Whether the owner works the territory `value` (as [`territory_of`]).
fn serves(owner: &Owner, value: &str) -> bool {
    owner.territories.iter().any(|t| t.trim().to_lowercase() == value)
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
        Some(attribute) => match territory_of(profile, attribute) {
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
                    .filter(|o| serves(o, &value))
                    .cloned()
                    .collect(),
                format!("territory {attribute} = {value}: "),
            ),
        },
    };
    let choice = choose(team, strategy, &owners, pool.open, cursor, excluded);
    let moved = choice.cursor != *cursor;
    Handoff {
        explanation: format!("{prefix}{}", choice.explain()),
        cursor: moved.then(|| (team.to_owned(), choice.cursor.clone())),
        owner: choice.chosen,
    }
}

/// The workspace's owners, their open leads and the teams' turns: what a
/// [`plan`] reads and moves as it goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolState {
    pub owners: Vec<Owner>,
    /// Open leads by owner (absent: none).
    pub open: BTreeMap<String, u32>,
    pub cursors: BTreeMap<String, TeamCursor>,
}

impl PoolState {
    pub fn pool(&self) -> Pool<'_> {
        Pool {
            owners: &self.owners,
            open: &self.open,
            cursors: &self.cursors,
        }
    }
}

/// A lead around a decision, as routing reads it.
#[derive(Clone, Copy, Debug)]
pub struct Situation<'a> {
    pub policy: &'a Policy,
    /// Its owner before the decision.
    pub owner: Option<&'a str>,
    /// Its stage before the decision (`None`: a new lead).
    pub stage_before: Option<Stage>,
    /// Its stage after.
    pub stage: Stage,
    pub profile: &'a Profile,
    pub scores: &'a Scores,
    /// The decision is a policy change (the lead's first under a new
    /// version): an open lead without an owner goes through its stage's
    /// route, and with `[routing] reassign_on_policy_change` one whose
    /// owner its route would no longer give it to.
    pub policy_change: bool,
    /// The owners it had in its current stay, for an SLA's reassign.
    pub stay: &'a BTreeSet<String>,
    /// Its account (read when a route reads one).
    pub account: Option<&'a RouteAccount>,
}

/// Why the owner changed (or a route found none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeCause {
    Route,
    Release,
    Merge,
    Sla,
}

impl ChangeCause {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Route => "ROUTE",
            Self::Release => "RELEASE",
            Self::Merge => "MERGE",
            Self::Sla => "SLA",
        }
    }
}

/// A change of the lead's owner, or a route that found no one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `false`: no owner could take the lead (`LEAD_UNROUTED`); `to` is
    /// the owner it keeps.
    pub assigned: bool,
    pub from: Option<String>,
    pub to: Option<String>,
    pub cause: ChangeCause,
    pub route_id: Option<String>,
    pub explanation: String,
}

/// What routing does with a lead's decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The lead's owner after.
    pub owner: Option<String>,
    pub changes: Vec<Change>,
    /// The open leads it moves, by owner (never zero).
    pub counts: BTreeMap<String, i64>,
    /// The teams' turns it moved.
    pub cursors: BTreeMap<String, TeamCursor>,
}

impl Plan {
    /// Whether it writes anything.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.counts.is_empty() && self.cursors.is_empty()
    }
}

/// Whether [`plan`] reads the pool (a route runs): the caller may skip
/// reading it (and locking it) otherwise.
pub fn reads_pool(s: &Situation<'_>, found: &Occasions) -> bool {
    let released = found.release.is_some();
    let owned = s.owner.is_some() && !released;
    for on in &found.on {
        if let Some(route) = route_for(s.policy, on, s.profile, s.account, s.scores)
            && (!owned || (route.reassign && !found.policy_change))
        {
            return true;
        }
    }
    if !found.reassign.is_empty() && is_open(s.stage) {
        return true;
    }
    s.policy_change
        && is_open(s.stage)
        && (!owned || s.policy.routing.reassign_on_policy_change)
        && route_for(
            s.policy,
            &RouteOn::Entered(s.stage),
            s.profile,
            s.account,
            s.scores,
        )
        .is_some()
}

/// The lead's owner through its decision: a release move of
/// `[routing] release_on` (or a merge into another lead) lets it go; each
/// route event (the stage the moves end in, then each level reached) gives
/// the lead to the first matching route's owner when it has none or the
/// route says `reassign`; a breached SLA's reassign sends it back through
/// its stage's route past the owners of its stay; a policy change routes an
/// open lead without an owner (and re-routes one its route no longer fits,
/// with `reassign_on_policy_change`). The pool's open leads and turns move
/// as it goes; the plan says by how much.
pub fn plan(s: &Situation<'_>, found: &Occasions, pool: &mut PoolState) -> Plan {
    let mut p = Planner {
        s,
        pool,
        out: Plan {
            owner: s.owner.map(str::to_owned),
            ..Plan::default()
        },
        counted: s
            .owner
            .filter(|_| s.stage_before.is_some_and(is_open))
            .map(str::to_owned),
        open_now: is_open(s.stage),
    };
    if let (Some(release), Some(from)) = (found.release, s.owner) {
        p.out.changes.push(Change {
            assigned: true,
            from: Some(from.to_owned()),
            to: None,
            cause: if release.is_some() {
                ChangeCause::Release
            } else {
                ChangeCause::Merge
            },
            route_id: None,
            explanation: match release {
                Some(r) => format!("released: {}", r.as_str()),
                None => "released: merged into another lead".to_owned(),
            },
        });
        p.out.owner = None;
        p.count(None);
    }
    for on in &found.on {
        let Some(route) = route_for(s.policy, on, s.profile, s.account, s.scores) else {
            continue;
        };
        if p.out.owner.is_some() && (!route.reassign || found.policy_change) {
            continue;
        }
        p.give(route, on, Why::Event);
    }
    if p.open_now {
        let on = RouteOn::Entered(s.stage);
        for sla in &found.reassign {
            // Only while the lead is still in the SLA's stage (a later move
            // of the same decision routed it already).
            let watched = s.policy.slas.iter().find(|x| x.id == *sla).map(|x| x.stage);
            if watched == Some(s.stage)
                && let Some(route) = route_for(s.policy, &on, s.profile, s.account, s.scores)
            {
                p.give(route, &on, Why::Sla(sla));
            }
        }
        if s.policy_change
            && !found.on.contains(&on)
            && let Some(route) = route_for(s.policy, &on, s.profile, s.account, s.scores)
        {
            let refit = match &p.out.owner {
                None => true,
                Some(owner) => {
                    s.policy.routing.reassign_on_policy_change
                        && !admits(route, s.profile, account_owner(s), &p.pool.pool(), owner)
                }
            };
            if refit {
                p.give(route, &on, Why::PolicyChange);
            }
        }
    }
    // The open leads follow the owner and the stage.
    let last = p.out.owner.clone().filter(|_| p.open_now);
    p.count(last);
    let mut out = p.out;
    out.counts.retain(|_, n| *n != 0);
    out
}

/// A plan being made.
struct Planner<'s, 'p> {
    s: &'s Situation<'s>,
    pool: &'p mut PoolState,
    out: Plan,
    /// The owner whose open leads count the lead, so far.
    counted: Option<String>,
    open_now: bool,
}

impl Planner<'_, '_> {
    /// Counts the lead for `to` instead of the owner counting it so far.
    fn count(&mut self, to: Option<String>) {
        if self.counted == to {
            return;
        }
        if let Some(from) = self.counted.take() {
            if let Some(n) = self.pool.open.get_mut(&from) {
                *n = n.saturating_sub(1);
            }
            *self.out.counts.entry(from).or_insert(0) -= 1;
        }
        if let Some(to) = &to {
            *self.pool.open.entry(to.clone()).or_insert(0) += 1;
            *self.out.counts.entry(to.clone()).or_insert(0) += 1;
        }
        self.counted = to;
    }

    /// Gives the lead to `route`'s choice.
    fn give(&mut self, route: &Route, on: &RouteOn, why: Why<'_>) {
        // An SLA's reassign passes over every owner of the stay, the late
        // one included.
        let excluded: BTreeSet<String> = if matches!(why, Why::Sla(_)) {
            self.s
                .stay
                .iter()
                .cloned()
                .chain(self.out.owner.clone())
                .collect()
        } else {
            BTreeSet::new()
        };
        let handoff = hand_off(
            route,
            self.s.profile,
            account_owner(self.s),
            &self.pool.pool(),
            &excluded,
        );
        if let Some((team, cursor)) = handoff.cursor {
            self.pool.cursors.insert(team.clone(), cursor.clone());
            self.out.cursors.insert(team, cursor);
        }
        let prefix = match why {
            Why::Event => String::new(),
            Why::Sla(id) => format!("sla {id} breached: "),
            Why::PolicyChange => "policy change: ".to_owned(),
        };
        let mut change = Change {
            assigned: true,
            from: self.out.owner.clone(),
            to: handoff.owner.clone(),
            cause: if matches!(why, Why::Sla(_)) {
                ChangeCause::Sla
            } else {
                ChangeCause::Route
            },
            route_id: Some(route.id.clone()),
            explanation: format!("{prefix}route {} on {on}: {}", route.id, handoff.explanation),
        };
        match handoff.owner {
            Some(to) if self.out.owner.as_deref() != Some(to.as_str()) => {
                // Counted at once: a later event of this decision sees it.
                self.count(Some(to.clone()).filter(|_| self.open_now));
                self.out.owner = Some(to);
                self.out.changes.push(change);
            }
            // The owner it has (an SLA's reassign back to the fallback it
            // had: kept, said so below).
            Some(_) if !matches!(why, Why::Sla(_)) => {}
            Some(_) | None => match self.out.owner.clone() {
                None => {
                    change.assigned = false;
                    self.out.changes.push(change);
                }
                // An SLA's reassign that found no one: the late owner keeps
                // it, said so.
                Some(kept) if matches!(why, Why::Sla(_)) => {
                    change.assigned = false;
                    change.explanation.push_str(&format!("; kept by {kept}"));
                    change.to = Some(kept);
                    self.out.changes.push(change);
                }
                Some(_) => {} // a route's reassign found no one: it keeps its owner
            },
        }
    }
}

fn account_owner<'s>(s: &Situation<'s>) -> Option<&'s str> {
    s.account.and_then(|a| a.owner.as_deref())
}

#[derive(Clone, Copy)]
enum Why<'a> {
    Event,
    Sla(&'a str),
    PolicyChange,
}

/// Whether `route` could give a lead of this profile to `owner`: its
/// account's owner (with `account_owner`), its target owner, a member of
/// its team (in the lead's territory, when it has one), or its fallback.
pub fn admits(
    route: &Route,
    profile: &Profile,
    account_owner: Option<&str>,
    pool: &Pool<'_>,
    owner: &str,
) -> bool {
    if route.fallback.as_deref() == Some(owner) {
        return true;
    }
    if route.account_owner && account_owner == Some(owner) {
        return true;
    }
    match &route.target {
        RouteTarget::AccountOwner => false,
        RouteTarget::Owner(id) => id == owner,
        RouteTarget::Team { team, territory, .. } => {
            let Some(o) = pool.owners.iter().find(|o| o.id == owner && o.in_team(team)) else {
                return false;
            };
            match territory {
                None => true,
                Some(attribute) => territory_of(profile, attribute).is_some_and(|v| serves(o, &v)),
            }
        }
    }
}

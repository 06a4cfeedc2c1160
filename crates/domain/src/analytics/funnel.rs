//! The funnel of a period, from the stage histories of the leads that moved
//! in it.
//!
//! - **Entries**: moves into a stage during the period. A forward jump is a
//!   move into every stage it passes, so each counts; `leads` counts each
//!   lead once per stage.
//! - **Conversions** are cohorts: of the leads whose *first* entry into
//!   `from` lies in the period, how many have entered `to` since (up to
//!   now, not only within the period), and how long that took.
//! - **Time in stage**: the stays that ended in the period, each from the
//!   move into the stage to the move out of it (a stage passed in a forward
//!   jump is a stay of zero).
//! - **Rejection and recycle rates**: of the MQL cohort, the share sent back
//!   by REJECT, or by RECYCLE (manual or an SLA's), at least once since.
//! - **Reasons**: the reasons given by rejections, recycles and
//!   disqualifications during the period.
//!
//! Erased leads keep their stage history, so they count like any other.

use std::collections::{BTreeMap, BTreeSet};

use super::attribution::{self, Attribution, Touch, Touched};
use crate::lifecycle::sends_back;
use crate::stage::Stage;
use crate::time::{Span, Timestamp};
use crate::transition::Move;

/// The group of a lead without a channel (or an engagement).
pub const NO_CHANNEL: &str = "(none)";
/// The MQL group of a lead promoted by a command.
pub const MANUAL: &str = "(manual)";
/// The MQL group of a lead qualified by its profile (at capture or on an update).
pub const PROFILE: &str = "(profile)";
/// The MQL group of a lead moved by a timer or a policy re-score.
pub const AUTOMATIC: &str = "(automatic)";
/// The MQL group of a lead that has not been an MQL.
pub const NOT_MQL: &str = "(not MQL)";

/// `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Period {
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

/// How the funnel is split.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Grouping {
    /// One group, keyed "".
    #[default]
    None,
    /// By the channel of the lead's first engagement.
    SourceChannel,
    /// By the channel of the engagement that first made the lead an MQL.
    MqlChannel,
    /// By the policy version each move was decided under (a cohort by the
    /// version of its first entry).
    PolicyVersion,
    /// By the lead's owner at the period's end ("(none)" without one).
    Owner,
    /// By the teams of the lead's owner at the period's end (a lead counts
    /// in each; "(no team)" for an owner of none, "(none)" without one).
    Team,
}

/// The width of a velocity bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Day,
    Week,
}

impl Bucket {
    pub const fn span(self) -> Span {
        match self {
            Self::Day => Span::from_secs(86_400),
            Self::Week => Span::from_secs(7 * 86_400),
        }
    }
}

/// One move of a lead's history, as the funnel reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub from: Option<Stage>,
    pub to: Stage,
    pub at: Timestamp,
    pub by: Move,
    pub reason: Option<String>,
    pub policy_version: i64,
    pub caused_by: StepCause,
}

/// What made a move, as far as grouping by MQL channel cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepCause {
    /// An engagement, on this channel (if it named one).
    Engagement {
        channel: Option<String>,
        event_id: String,
    },
    /// A caller's command.
    Command,
    /// The profile: at capture, or on an update.
    Profile,
    /// A timer or a policy re-score.
    Automatic,
}

/// A lead's whole stage history, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    pub lead_id: String,
    /// The channel of the lead's first engagement (when asked for).
    pub source_channel: Option<String>,
    pub steps: Vec<Step>,
    /// The MQL levels it reached, in order (the store reads those of the
    /// period, all a funnel counts).
    pub levels: Vec<LevelStep>,
    /// Its engagements with the attributed property's value, in scoring
    /// order (read only for an attribution).
    pub touches: Vec<Touch>,
    /// The lead was erased: its engagements' details are gone.
    pub erased: bool,
    /// Its changes of owner, in order (read only to group by owner or team).
    pub owners: Vec<OwnerStep>,
    /// The instants of its sales touches (engagements of a type an SQL SLA
    /// waits for), in order (read with `owners`).
    pub sales_touches: Vec<Timestamp>,
    /// Its SLA breaches: when, and the owner it had then (read with
    /// `owners`).
    pub sla_breaches: Vec<(Timestamp, Option<String>)>,
}

/// A change of a lead's owner, as analytics reads it (a route that found
/// none has `to` empty or the same as `from`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerStep {
    pub at: Timestamp,
    pub from: Option<String>,
    pub to: Option<String>,
    /// `ROUTE`, `MANUAL`, `RELEASE`, `MERGE` or `SLA`.
    pub cause: String,
}

/// A lead reached an MQL level (a level change to it).
#[derive(Clone, Debug, PartialEq)]
pub struct LevelStep {
    pub level: String,
    pub at: Timestamp,
    pub policy_version: i64,
}

impl History {
    pub(crate) fn first_entry(&self, stage: Stage) -> Option<&Step> {
        self.steps.iter().find(|s| s.to == stage)
    }

    /// Its owner at `t` (after the changes at `t`).
    pub(crate) fn owner_at(&self, t: Timestamp) -> Option<&str> {
        self.owners
            .iter()
            .take_while(|o| o.at <= t)
            .last()
            .and_then(|o| o.to.as_deref())
    }

    pub(crate) fn source_key(&self) -> String {
        non_empty(self.source_channel.as_deref())
            .unwrap_or(NO_CHANNEL)
            .to_owned()
    }

    fn mql_key(&self) -> String {
        match self.first_entry(Stage::Mql).map(|s| &s.caused_by) {
            None => NOT_MQL.to_owned(),
            Some(StepCause::Engagement { channel, .. }) => {
                non_empty(channel.as_deref()).unwrap_or(NO_CHANNEL).to_owned()
            }
            Some(StepCause::Command) => MANUAL.to_owned(),
            Some(StepCause::Profile) => PROFILE.to_owned(),
            Some(StepCause::Automatic) => AUTOMATIC.to_owned(),
        }
    }
}

impl History {
    /// What attribution reads of the lead. Its outcome is a win (its first
    /// entry into CUSTOMER), else its first loss (a move back or a
    /// disqualification), as the rule report has it.
    fn touched(&self) -> Touched<'_> {
        let won = self.steps.iter().find(|s| s.to == Stage::Customer);
        let outcome = won.or_else(|| self.steps.iter().find(|s| sends_back(s.by)));
        Touched {
            erased: self.erased,
            touches: &self.touches,
            mql_by: self.first_entry(Stage::Mql).map(|s| match &s.caused_by {
                StepCause::Engagement { event_id, .. } => Some(event_id.as_str()),
                _ => None,
            }),
            outcome_at: outcome.map(|s| s.at),
        }
    }
}

/// A channel as a group key: trimmed; `None` when blank.
fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub period: Period,
    pub grouping: Grouping,
    pub bucket: Bucket,
    /// Only leads whose first engagement came on this channel.
    pub source_channel: Option<String>,
    /// Groups by an engagement property instead of `grouping`.
    pub attribution: Option<Attribution>,
    /// With an attribution: the groups kept besides "(other)".
    pub top: usize,
    /// Each owner's teams (to group by team).
    pub teams: BTreeMap<String, Vec<String>>,
}

/// The group keys of a lead owned by `owner`, grouped by owner or team.
pub(crate) fn owner_keys(query: &Query, owner: Option<&str>) -> Vec<String> {
    let Some(owner) = owner else {
        return vec![NO_OWNER.to_owned()];
    };
    if query.grouping != Grouping::Team {
        return vec![owner.to_owned()];
    }
    match query.teams.get(owner).filter(|t| !t.is_empty()) {
        Some(teams) => teams.clone(),
        None => vec![NO_TEAM.to_owned()],
    }
}

/// The key of leads without an owner.
pub const NO_OWNER: &str = "(none)";
/// The key of an owner of no team.
pub const NO_TEAM: &str = "(no team)";

/// The stage pairs a funnel reports conversion for.
pub const CONVERSIONS: [(Stage, Stage); 5] = [
    (Stage::Iql, Stage::Mql),
    (Stage::Mql, Stage::Sql),
    (Stage::Sql, Stage::Customer),
    (Stage::Mql, Stage::Customer),
    (Stage::Iql, Stage::Customer),
];

/// The stages a stay can be measured in (CUSTOMER is never left).
pub const STAYS: [Stage; 4] = [Stage::Iql, Stage::Mql, Stage::Sql, Stage::Disqualified];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Funnel {
    /// By key, ascending (policy versions by number).
    pub groups: Vec<Group>,
    /// The velocity buckets' starts, shared by every group.
    pub buckets: Vec<Timestamp>,
    /// A lead may be in several groups (`touched:`): counts and rates do
    /// not sum over the groups.
    pub overlapping: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub key: String,
    /// One per stage, in [`Stage::LIFECYCLE`] order.
    pub entries: Vec<Entries>,
    /// One per pair of [`CONVERSIONS`], in that order.
    pub conversions: Vec<Conversion>,
    /// One per stage of [`STAYS`], in that order.
    pub time_in_stage: Vec<StageTime>,
    /// Entries per stage and bucket of [`Funnel::buckets`].
    pub velocity: Velocity,
    pub rejected: Rate,
    pub recycled: Rate,
    /// Most frequent first.
    pub reasons: Vec<ReasonCount>,
    /// One per MQL level reached in the period, by id (see
    /// [`Funnel::order_levels`]).
    pub levels: Vec<LevelConversion>,
    /// Grouped by owner or team: its sales handoff.
    pub handoff: Option<super::handoff::Handoff>,
}

/// The leads that reached an MQL level in the period, and how many of them
/// went on to SQL.
#[derive(Clone, Debug, PartialEq)]
pub struct LevelConversion {
    pub level: String,
    /// Distinct leads (each counted once however often it reached the level).
    pub leads: u64,
    /// Those that entered SQL at or after first reaching it in the period.
    pub to_sql: u64,
    /// `to_sql / leads`.
    pub rate: f64,
    /// Time from reaching the level to entering SQL, over those.
    pub p50: Option<Span>,
    pub p90: Option<Span>,
}

impl Funnel {
    /// Puts each group's levels in `order` (a policy's levels, lowest
    /// first); levels it does not name (an older policy's) follow by id.
    pub fn order_levels(&mut self, order: &[String]) {
        for group in &mut self.groups {
            group.levels.sort_by_key(|l| {
                (
                    order.iter().position(|id| *id == l.level).unwrap_or(order.len()),
                    l.level.clone(),
                )
            });
        }
    }
}

/// Entries per stage and velocity bucket. Only buckets with entries are
/// held, so a funnel of many groups over many buckets stays small.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Velocity(BTreeMap<(Stage, usize), u64>);

impl Velocity {
    /// Per stage in [`Stage::LIFECYCLE`] order, the entries in each of `buckets`
    /// buckets.
    pub fn series(&self, buckets: usize) -> Vec<Vec<u64>> {
        Stage::LIFECYCLE
            .iter()
            .map(|&stage| {
                let mut series = vec![0; buckets];
                for (&(_, slot), &n) in self.0.range((stage, 0)..=(stage, usize::MAX)) {
                    if let Some(x) = series.get_mut(slot) {
                        *x = n;
                    }
                }
                series
            })
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entries {
    pub stage: Stage,
    pub leads: u64,
    pub entries: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Conversion {
    pub from: Stage,
    pub to: Stage,
    pub cohort: u64,
    pub converted: u64,
    /// `converted / cohort`; 0 for an empty cohort.
    pub rate: f64,
    /// Time from entering `from` to entering `to`, over the converted.
    pub p50: Option<Span>,
    pub p90: Option<Span>,
    /// The rate over that of all the period's leads (of a grouped funnel);
    /// `None` when either cohort is empty or nobody converted overall.
    pub lift: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageTime {
    pub stage: Stage,
    pub stays: u64,
    pub p50: Option<Span>,
    pub p90: Option<Span>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    /// The MQL cohort.
    pub cohort: u64,
    pub count: u64,
    pub rate: f64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasonCount {
    pub by: Move,
    pub reason: String,
    pub count: u64,
}

/// The velocity buckets of a period: their starts, from the period's start.
pub fn bucket_starts(period: Period, bucket: Bucket) -> Vec<Timestamp> {
    let width = bucket.span().as_micros().max(1);
    let mut starts = Vec::new();
    let mut t = period.start;
    while t < period.end {
        starts.push(t);
        t = Timestamp::from_micros(t.as_micros().saturating_add(width));
    }
    starts
}

/// The nearest-rank percentile `p` (0–100) of sorted values.
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // ceil(p · n / 100), at least 1
    let rank = (usize::try_from(p).unwrap_or(100) * n).div_ceil(100).max(1);
    sorted.get(rank.min(n) - 1).copied()
}

#[derive(Default)]
struct Acc {
    entries: BTreeMap<Stage, (u64, BTreeSet<usize>)>,
    cohorts: BTreeMap<(Stage, Stage), (u64, Vec<i64>)>,
    stays: BTreeMap<Stage, Vec<i64>>,
    velocity: Velocity,
    mql_cohort: u64,
    rejected: u64,
    recycled: u64,
    reasons: BTreeMap<(Move, String), u64>,
    /// Per level: the leads that reached it, and their times to SQL.
    levels: BTreeMap<String, (u64, Vec<i64>)>,
}

/// The funnel of `query.period` over `histories` (each a lead's whole
/// history; leads without a move or a level reached in the period
/// contribute nothing).
pub fn funnel(histories: &[History], query: &Query) -> Funnel {
    let period = query.period;
    let buckets = bucket_starts(period, query.bucket);
    let width = query.bucket.span().as_micros().max(1);
    let mut groups: BTreeMap<GroupKey, Acc> = BTreeMap::new();
    let wanted = |h: &History| query.source_channel.as_ref().is_none_or(|w| h.source_key() == *w);
    // With an attribution, each lead's keys, bounded to the top groups.
    let attributed: Option<Vec<Vec<String>>> = query.attribution.as_ref().map(|a| {
        let keys = histories
            .iter()
            .map(|h| {
                if wanted(h) {
                    a.keys(&h.touched())
                } else {
                    Vec::new()
                }
            })
            .collect();
        attribution::bounded(keys, query.top)
    });
    let lead_keys = |index: usize, h: &History| match (&attributed, query.grouping) {
        (Some(keys), _) => Some(keys[index].iter().cloned().map(GroupKey::Text).collect()),
        (None, Grouping::None) => Some(vec![GroupKey::Text(String::new())]),
        (None, Grouping::SourceChannel) => Some(vec![GroupKey::Text(h.source_key())]),
        (None, Grouping::MqlChannel) => Some(vec![GroupKey::Text(h.mql_key())]),
        (None, Grouping::PolicyVersion) => None,
        (None, Grouping::Owner | Grouping::Team) => Some(
            owner_keys(
                query,
                h.owner_at(Timestamp::from_micros(period.end.as_micros() - 1)),
            )
            .into_iter()
            .map(GroupKey::Text)
            .collect(),
        ),
    };
    for (index, h) in histories.iter().enumerate() {
        if !wanted(h) {
            continue;
        }
        let fixed: Option<Vec<GroupKey>> = lead_keys(index, h);
        let keys_of = |version: i64| fixed.clone().unwrap_or_else(|| vec![GroupKey::Version(version)]);
        // moves in the period
        for (i, step) in h.steps.iter().enumerate() {
            if !period.contains(step.at) {
                continue;
            }
            for key in keys_of(step.policy_version) {
                let acc = groups.entry(key).or_default();
                // An unmerge gives a lead back the stage it had: no entry.
                if step.by != Move::Unmerge {
                    let e = acc.entries.entry(step.to).or_default();
                    e.0 += 1;
                    e.1.insert(index);
                    let slot = usize::try_from(step.at.since(period.start).as_micros() / width).unwrap_or(0);
                    if slot < buckets.len() {
                        *acc.velocity.0.entry((step.to, slot)).or_default() += 1;
                    }
                }
                if let (Some(from), Some(previous)) =
                    (step.from, i.checked_sub(1).and_then(|p| h.steps.get(p)))
                {
                    acc.stays
                        .entry(from)
                        .or_default()
                        .push(step.at.since(previous.at).as_micros());
                }
                if sends_back(step.by) {
                    let reason = step.reason.clone().unwrap_or_else(|| NO_CHANNEL.to_owned());
                    *acc.reasons.entry((step.by, reason)).or_default() += 1;
                }
            }
        }
        // cohorts: first entries in the period
        for (from, to) in CONVERSIONS {
            let Some(first) = h.first_entry(from).filter(|s| period.contains(s.at)) else {
                continue;
            };
            let reached = h.steps.iter().find(|s| s.to == to && s.at >= first.at);
            for key in keys_of(first.policy_version) {
                let cohort = groups
                    .entry(key)
                    .or_default()
                    .cohorts
                    .entry((from, to))
                    .or_default();
                cohort.0 += 1;
                if let Some(reached) = reached {
                    cohort.1.push(reached.at.since(first.at).as_micros());
                }
            }
        }
        // levels: each lead once a level, at its first reaching it in the period
        let mut reached = BTreeSet::new();
        for l in h.levels.iter().filter(|l| period.contains(l.at)) {
            if !reached.insert(l.level.as_str()) {
                continue;
            }
            let sql = h.steps.iter().find(|s| s.to == Stage::Sql && s.at >= l.at);
            for key in keys_of(l.policy_version) {
                let level = groups
                    .entry(key)
                    .or_default()
                    .levels
                    .entry(l.level.clone())
                    .or_default();
                level.0 += 1;
                if let Some(sql) = sql {
                    level.1.push(sql.at.since(l.at).as_micros());
                }
            }
        }
        if let Some(first) = h.first_entry(Stage::Mql).filter(|s| period.contains(s.at)) {
            let after = h.steps.iter().filter(|s| s.at >= first.at);
            let (mut rejected, mut recycled) = (false, false);
            for s in after {
                rejected |= s.by == Move::Reject;
                recycled |= matches!(s.by, Move::Recycle | Move::SlaRecycle);
            }
            for key in keys_of(first.policy_version) {
                let acc = groups.entry(key).or_default();
                acc.mql_cohort += 1;
                acc.rejected += u64::from(rejected);
                acc.recycled += u64::from(recycled);
            }
        }
    }
    let single = query.grouping == Grouping::None && query.attribution.is_none();
    if groups.is_empty() && single {
        groups.insert(GroupKey::Text(String::new()), Acc::default());
    }
    let mut handoffs: BTreeMap<String, super::handoff::Handoff> =
        if matches!(query.grouping, Grouping::Owner | Grouping::Team) {
            super::handoff::handoff(histories, query)
                .into_iter()
                .map(|h| (h.key.clone(), h))
                .collect()
        } else {
            BTreeMap::new()
        };
    for key in handoffs.keys() {
        groups.entry(GroupKey::Text(key.clone())).or_default();
    }
    let mut funnel = Funnel {
        groups: groups
            .into_iter()
            .map(|(key, acc)| {
                let key = key.to_string();
                let handoff = handoffs.remove(&key);
                Group {
                    handoff,
                    ..group(key, acc)
                }
            })
            .collect(),
        buckets,
        overlapping: query.attribution.as_ref().is_some_and(Attribution::overlaps)
            || (query.grouping == Grouping::Team && query.teams.values().any(|t| t.len() > 1)),
    };
    // Each group's conversions against those of the whole: the funnel of
    // the same leads, ungrouped.
    let whole = if single {
        funnel.groups.first().map(|g| g.conversions.clone())
    } else {
        let ungrouped = Query {
            grouping: Grouping::None,
            attribution: None,
            ..query.clone()
        };
        self::funnel(histories, &ungrouped)
            .groups
            .into_iter()
            .next()
            .map(|g| g.conversions)
    };
    if let Some(whole) = whole {
        for group in &mut funnel.groups {
            for (c, all) in group.conversions.iter_mut().zip(&whole) {
                c.lift = (c.cohort > 0 && all.rate > 0.0).then(|| crate::num::round6(c.rate / all.rate));
            }
        }
    }
    funnel
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum GroupKey {
    Version(i64),
    Text(String),
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Version(v) => write!(f, "{v}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        // counts far below 2^52: exact
        #[allow(clippy::cast_precision_loss)]
        let r = part as f64 / whole as f64;
        r
    }
}

fn group(key: String, mut acc: Acc) -> Group {
    let entries = Stage::LIFECYCLE
        .iter()
        .map(|&stage| {
            let (entries, leads) = acc.entries.remove(&stage).unwrap_or_default();
            Entries {
                stage,
                leads: leads.len() as u64,
                entries,
            }
        })
        .collect();
    let conversions = CONVERSIONS
        .iter()
        .map(|&(from, to)| {
            let (cohort, mut times) = acc.cohorts.remove(&(from, to)).unwrap_or_default();
            times.sort_unstable();
            let converted = times.len() as u64;
            Conversion {
                from,
                to,
                cohort,
                converted,
                rate: ratio(converted, cohort),
                p50: percentile(&times, 50).map(Span::from_micros),
                p90: percentile(&times, 90).map(Span::from_micros),
                lift: None,
            }
        })
        .collect();
    let time_in_stage = STAYS
        .iter()
        .map(|&stage| {
            let mut times = acc.stays.remove(&stage).unwrap_or_default();
            times.sort_unstable();
            StageTime {
                stage,
                stays: times.len() as u64,
                p50: percentile(&times, 50).map(Span::from_micros),
                p90: percentile(&times, 90).map(Span::from_micros),
            }
        })
        .collect();
    let mut reasons: Vec<ReasonCount> = acc
        .reasons
        .into_iter()
        .map(|((by, reason), count)| ReasonCount { by, reason, count })
        .collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.count));
    let levels = acc
        .levels
        .into_iter()
        .map(|(level, (leads, mut times))| {
            times.sort_unstable();
            let to_sql = times.len() as u64;
            LevelConversion {
                level,
                leads,
                to_sql,
                rate: ratio(to_sql, leads),
                p50: percentile(&times, 50).map(Span::from_micros),
                p90: percentile(&times, 90).map(Span::from_micros),
            }
        })
        .collect();
    Group {
        key,
        entries,
        conversions,
        time_in_stage,
        velocity: acc.velocity,
        rejected: Rate {
            cohort: acc.mql_cohort,
            count: acc.rejected,
            rate: ratio(acc.rejected, acc.mql_cohort),
        },
        recycled: Rate {
            cohort: acc.mql_cohort,
            count: acc.recycled,
            rate: ratio(acc.recycled, acc.mql_cohort),
        },
        reasons,
        levels,
        handoff: None,
    }
}

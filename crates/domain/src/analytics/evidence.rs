//! What the leads' outcomes say about a lead definition: which rules fired
//! for leads that were won and which for leads that were lost (lift), and
//! where the MQL engagement threshold would have sat best (calibration).
//!
//! Outcomes, as of now:
//! - **won**: the lead became a CUSTOMER;
//! - **lost**: never won, and sales sent it back (REJECT, RECYCLE, an SLA's
//!   recycle) or it was disqualified;
//! - **open**: neither yet.
//!
//! A rule *fired* for a lead when its profile matches the attribute rule,
//! or an engagement before the outcome matched the event rule (counted or
//! not: caps do not hide a signal). Lift is the won share (of won and lost)
//! among leads the rule fired for, over the won share of all leads.

use std::collections::BTreeMap;

use super::attribution::{self, Attribution, Touch, Touched};
use super::funnel::percentile;
use crate::engagement::{Engagement, canonical_log};
use crate::lifecycle::{Move, sends_back};
use crate::num::round6;
use crate::policy::{Policy, with_value};
use crate::profile::Profile;
use crate::score::{ScoreState, disqualifying_attribute, fit_score};
use crate::stage::Stage;
use crate::time::{Span, Timestamp};

/// One lead, as the evidence reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Evidence {
    pub lead_id: String,
    pub profile: Profile,
    pub log: Vec<Engagement>,
    /// Its moves, in order: (to, by, at).
    pub moves: Vec<(Stage, Move, Timestamp)>,
    /// What made its first MQL move: `None` when it has none; the event id
    /// of the engagement that did (`Some(None)`: a command, the profile or
    /// a policy). Read for attribution.
    pub mql_by: Option<Option<String>>,
    /// Erased: its profile and engagement details are gone. Rule lift and
    /// calibration leave it out; attribution counts it as "(erased)".
    pub erased: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Won,
    Lost,
    Open,
}

impl Evidence {
    /// The outcome and its instant: won if the lead ever became a
    /// CUSTOMER (at that entry), else lost at its first loss, else open.
    pub fn outcome(&self) -> (Outcome, Option<Timestamp>) {
        if let Some(&(.., at)) = self.moves.iter().find(|(to, ..)| *to == Stage::Customer) {
            return (Outcome::Won, Some(at));
        }
        match self.moves.iter().find(|&&(_, by, _)| sends_back(by)) {
            Some(&(.., at)) => (Outcome::Lost, Some(at)),
            None => (Outcome::Open, None),
        }
    }

    /// The lead's fit score under `policy`, of the target's model.
    pub(crate) fn fit(&self, policy: &Policy, target: Target) -> f64 {
        round6(fit_score(policy, target.model, &self.profile))
    }

    /// Whether the guards of `target` other than its engagement threshold
    /// pass on the profile: fit (the target model's), grade (the default
    /// model's), required attributes, no disqualifying match.
    pub(crate) fn profile_qualifies(&self, policy: &Policy, target: Target) -> bool {
        let fit = self.fit(policy, target);
        let grade_fit = round6(fit_score(policy, 0, &self.profile));
        let mql = &policy.mql;
        let (fit_at_least, grade) = match target.level.and_then(|i| mql.levels.get(i)) {
            Some(level) => (level.fit_at_least, level.grade_at_least.as_deref()),
            None => (mql.fit_at_least, mql.grade_at_least.as_deref()),
        };
        fit >= fit_at_least
            && grade
                .and_then(|letter| policy.grade_threshold(letter))
                .is_none_or(|required| grade_fit >= required)
            && mql
                .requires_attributes
                .iter()
                .all(|a| self.profile.get(a).is_some_and(|v| !v.trim().is_empty()))
            && disqualifying_attribute(policy, &self.profile).is_none()
    }

    /// The first entry into SQL or CUSTOMER.
    fn reached_sql(&self) -> Option<Timestamp> {
        self.moves
            .iter()
            .find(|(to, ..)| matches!(to, Stage::Sql | Stage::Customer))
            .map(|&(.., at)| at)
    }

    fn became_customer(&self) -> bool {
        self.moves.iter().any(|(to, ..)| *to == Stage::Customer)
    }

    /// Engagements up to `until` (all of them without), in scoring order.
    fn log_until(&self, until: Option<Timestamp>) -> Vec<&Engagement> {
        let mut log = canonical_log(&self.log);
        if let Some(u) = until {
            log.retain(|e| e.occurred_at <= u);
        }
        log
    }

    /// The highest engagement score of a model the lead had up to `until`:
    /// scores only decay between engagements, so the peak follows one of them.
    pub fn peak_engagement(&self, policy: &Policy, model: usize, until: Option<Timestamp>) -> f64 {
        let mut state = ScoreState::new(policy, None);
        let mut peak: f64 = 0.0;
        for event in self.log_until(until) {
            state.apply(policy, event);
            peak = peak.max(state.value_at(policy, model, event.occurred_at));
        }
        round6(peak)
    }
}

/// The engagement threshold a calibration is for: the MQL bar's, or one of
/// its levels', on a model's score.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// An index into `Policy::models`.
    pub model: usize,
    /// An index into `[[stages.MQL.levels]]`; `None`: the MQL bar.
    pub level: Option<usize>,
}

// ---- outcomes by attribution ------------------------------------------------------

/// The outcomes of one attribution group.
#[derive(Clone, Debug, PartialEq)]
pub struct OutcomeGroup {
    pub key: String,
    pub leads: Tally,
    /// won / (won + lost).
    pub win_rate: Option<f64>,
    /// The win rate over that of all leads; `None` when either is undefined
    /// or nothing was won overall.
    pub lift: Option<f64>,
    /// From capture to the win, over the won.
    pub p50_to_win: Option<Span>,
    pub p90_to_win: Option<Span>,
}

/// Outcomes by an attribution, built one lead at a time. Each key is kept
/// once; a lead keeps the numbers of its keys, its outcome and its time to
/// a win (the top groups are known only at the end).
#[derive(Clone, Debug)]
pub struct OutcomeTallies {
    attribution: Attribution,
    keys: Vec<String>,
    numbers: std::collections::HashMap<String, u32>,
    leads: Vec<(Vec<u32>, Outcome, Option<i64>)>,
}

impl OutcomeTallies {
    pub fn new(attribution: Attribution) -> Self {
        Self {
            attribution,
            keys: Vec::new(),
            numbers: std::collections::HashMap::new(),
            leads: Vec::new(),
        }
    }

    fn number(&mut self, key: String) -> u32 {
        if let Some(&n) = self.numbers.get(&key) {
            return n;
        }
        let n = u32::try_from(self.keys.len()).unwrap_or(u32::MAX - 1);
        self.keys.push(key.clone());
        self.numbers.insert(key, n);
        n
    }

    pub fn add(&mut self, lead: &Evidence) {
        let property = self.attribution.property.as_str();
        let touches: Vec<Touch> = canonical_log(&lead.log)
            .into_iter()
            .map(|e| Touch {
                event_id: e.event_id.clone(),
                at: e.occurred_at,
                value: match property {
                    "channel" => e.channel.clone(),
                    "type" => Some(e.kind.clone()),
                    _ => e.property(property).map(str::to_owned),
                },
            })
            .collect();
        let (outcome, at) = lead.outcome();
        let keys = self.attribution.keys(&Touched {
            erased: lead.erased,
            touches: &touches,
            mql_by: lead.mql_by.as_ref().map(Option::as_deref),
            outcome_at: at,
        });
        let captured = lead.moves.first().map(|&(.., t)| t);
        let to_win = match (outcome, captured, at) {
            (Outcome::Won, Some(from), Some(to)) => Some(to.since(from).as_micros()),
            _ => None,
        };
        let keys = keys.into_iter().map(|k| self.number(k)).collect();
        self.leads.push((keys, outcome, to_win));
    }

    /// The groups by key (the `top` largest, the rest as "(other)").
    pub fn report(self, top: usize) -> Vec<OutcomeGroup> {
        /// The number of "(other)".
        const OTHER: u32 = u32::MAX;
        type Keys = Vec<Vec<u32>>;
        let names = self.keys;
        let (keys, rest): (Keys, Vec<(Outcome, Option<i64>)>) = self
            .leads
            .into_iter()
            .map(|(keys, outcome, to_win)| (keys, (outcome, to_win)))
            .unzip();
        let name = |n: u32| {
            usize::try_from(n)
                .ok()
                .and_then(|i| names.get(i))
                .map_or(attribution::OTHER, String::as_str)
        };
        let bounded = attribution::bounded_by(keys, top, |a, b| name(*a).cmp(name(*b)), OTHER);
        let mut all = Tally::default();
        let mut groups: BTreeMap<String, (Tally, Vec<i64>)> = BTreeMap::new();
        for (keys, (outcome, to_win)) in bounded.into_iter().zip(rest) {
            all.add(outcome);
            for key in keys {
                let group = groups.entry(name(key).to_owned()).or_default();
                group.0.add(outcome);
                group.1.extend(to_win);
            }
        }
        let base = all.win_rate().filter(|r| *r > 0.0);
        groups
            .into_iter()
            .map(|(key, (leads, mut times))| {
                times.sort_unstable();
                let win_rate = leads.win_rate();
                OutcomeGroup {
                    key,
                    leads,
                    win_rate: win_rate.map(round6),
                    lift: win_rate.zip(base).map(|(r, b)| round6(r / b)),
                    p50_to_win: percentile(&times, 50).map(Span::from_micros),
                    p90_to_win: percentile(&times, 90).map(Span::from_micros),
                }
            })
            .collect()
    }
}

// ---- rule lift ------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub won: u64,
    pub lost: u64,
    pub open: u64,
}

impl Tally {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Won => self.won += 1,
            Outcome::Lost => self.lost += 1,
            Outcome::Open => self.open += 1,
        }
    }

    /// won / (won + lost); `None` when nothing is decided.
    pub fn win_rate(&self) -> Option<f64> {
        let decided = self.won + self.lost;
        // counts far below 2^52: exact
        #[allow(clippy::cast_precision_loss)]
        (decided > 0).then(|| self.won as f64 / decided as f64)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Fit,
    Engagement,
    Undesirable,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RuleLift {
    pub rule_id: String,
    pub kind: RuleKind,
    pub fired: Tally,
    pub not_fired: Tally,
    /// The won share among decided leads it fired for, over the won share
    /// of all decided leads; `None` when either is undefined or zero.
    pub lift: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RuleReport {
    pub leads: Tally,
    /// In policy order: attribute rules, then event rules.
    pub rules: Vec<RuleLift>,
}

/// Rule by rule, for leads with `evidence`, scored by `policy`.
pub fn rule_report(policy: &Policy, evidence: &[Evidence]) -> RuleReport {
    let mut tallies = RuleTallies::new(policy);
    for lead in evidence {
        tallies.add(policy, lead);
    }
    tallies.report(policy)
}

/// A rule report built one lead at a time, so that the leads can be read a
/// page at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleTallies {
    /// Per rule, attribute rules then event rules: the leads it fired for.
    fired: Vec<Tally>,
    all: Tally,
}

impl RuleTallies {
    pub fn new(policy: &Policy) -> Self {
        Self {
            fired: vec![Tally::default(); policy.attribute_rules.len() + policy.event_rules.len()],
            all: Tally::default(),
        }
    }

    /// Counts a lead; an erased one (its details are gone) is left out.
    pub fn add(&mut self, policy: &Policy, lead: &Evidence) {
        if lead.erased {
            return;
        }
        let attribute = policy.attribute_rules.len();
        let (outcome, at) = lead.outcome();
        self.all.add(outcome);
        let mut hit = vec![false; self.fired.len()];
        for (i, rule) in policy.attribute_rules.iter().enumerate() {
            hit[i] = rule.matches(&lead.profile);
        }
        // A counting rule fires at its Nth matching engagement, not at the first.
        let mut kept: Vec<Vec<Timestamp>> = vec![Vec::new(); policy.event_rules.len()];
        for event in lead.log_until(at) {
            for (i, rule) in policy.event_rules.iter().enumerate() {
                if !hit[attribute + i] && rule.matches(event) {
                    hit[attribute + i] = rule
                        .count
                        .is_none_or(|count| count.keep(&mut kept[i], event.occurred_at));
                }
            }
        }
        for (tally, _) in self.fired.iter_mut().zip(&hit).filter(|(_, h)| **h) {
            tally.add(outcome);
        }
    }

    /// The report, for the `policy` the tallies were made with.
    pub fn report(self, policy: &Policy) -> RuleReport {
        let Self { fired, all } = self;
        let base = all.win_rate().filter(|r| *r > 0.0);
        let kinds = policy
            .attribute_rules
            .iter()
            .map(|r| {
                (
                    r.id.as_str(),
                    if r.undesirable {
                        RuleKind::Undesirable
                    } else {
                        RuleKind::Fit
                    },
                )
            })
            .chain(policy.event_rules.iter().map(|r| {
                (
                    r.id.as_str(),
                    if r.undesirable {
                        RuleKind::Undesirable
                    } else {
                        RuleKind::Engagement
                    },
                )
            }));
        let rules = kinds
            .zip(fired)
            .map(|((id, kind), fired)| RuleLift {
                rule_id: id.to_owned(),
                kind,
                fired,
                not_fired: Tally {
                    won: all.won - fired.won,
                    lost: all.lost - fired.lost,
                    open: all.open - fired.open,
                },
                lift: fired.win_rate().zip(base).map(|(r, b)| round6(r / b)),
            })
            .collect();
        RuleReport { leads: all, rules }
    }
}

// ---- threshold calibration ----------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub struct CutPoint {
    pub cutoff: f64,
    /// Leads that would have qualified: the MQL guards on the profile pass
    /// (fit, grade, required attributes, no disqualifying match) and the
    /// peak is at or above the cut-off.
    pub qualified: u64,
    /// Of those, the share that reached SQL or CUSTOMER.
    pub precision: Option<f64>,
    /// Of the customers, the share that would have qualified.
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    pub leads: u64,
    /// Reached SQL or CUSTOMER.
    pub reached_sql: u64,
    pub customers: u64,
    /// Ascending cut-offs.
    pub points: Vec<CutPoint>,
    /// With a target precision: the lowest cut-off that reaches it (the
    /// most recall at that precision); without: the best F1 (the lowest
    /// cut-off of a tie). `None` when no cut-off qualifies.
    pub suggested: Option<CutPoint>,
    /// The highest peak seen.
    pub max_peak: f64,
}

/// The cut-offs a calibration tries: every `step` from 0 to `max` (default:
/// the highest peak).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cutoffs {
    pub step: f64,
    pub max: Option<f64>,
}

/// What calibration keeps of a lead.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peak {
    /// The peak engagement score before the outcome.
    pub peak: f64,
    /// The MQL guards on the profile pass.
    pub profile_qualifies: bool,
    pub reached_sql: bool,
    pub customer: bool,
}

impl Peak {
    /// The lead's peak engagement score before its outcome (reaching SQL, a
    /// win or a loss), and the outcome.
    pub fn of(policy: &Policy, target: Target, lead: &Evidence) -> Self {
        let (_, outcome_at) = lead.outcome();
        let sql_at = lead.reached_sql();
        let until = match (sql_at, outcome_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            peak: lead.peak_engagement(policy, target.model, until),
            profile_qualifies: lead.profile_qualifies(policy, target),
            reached_sql: sql_at.is_some(),
            customer: lead.became_customer(),
        }
    }
}

/// Each lead's peak engagement score before its outcome against the
/// outcome, over `cutoffs`.
pub fn calibrate(
    policy: &Policy,
    target: Target,
    evidence: &[Evidence],
    cutoffs: Cutoffs,
    target_precision: Option<f64>,
) -> Calibration {
    let peaks: Vec<Peak> = evidence
        .iter()
        .map(|lead| Peak::of(policy, target, lead))
        .collect();
    calibrate_peaks(&peaks, cutoffs, target_precision)
}

/// [`calibrate`] over the leads' [`Peak`]s: in O(n log n + cut-offs · log n).
pub fn calibrate_peaks(peaks: &[Peak], cutoffs: Cutoffs, target_precision: Option<f64>) -> Calibration {
    let customers = peaks.iter().filter(|r| r.customer).count() as u64;
    let max_peak = peaks.iter().map(|r| r.peak).fold(0.0, f64::max);
    // The leads that could qualify, by peak; with running counts of those
    // that reached SQL and became customers, so a cut-off's qualified leads
    // are a suffix and its counts two subtractions.
    let mut eligible: Vec<&Peak> = peaks.iter().filter(|r| r.profile_qualifies).collect();
    eligible.sort_by(|a, b| a.peak.total_cmp(&b.peak));
    let mut good_before = Vec::with_capacity(eligible.len() + 1);
    let mut caught_before = Vec::with_capacity(eligible.len() + 1);
    let (mut good, mut caught) = (0_u64, 0_u64);
    for r in &eligible {
        good_before.push(good);
        caught_before.push(caught);
        good += u64::from(r.reached_sql);
        caught += u64::from(r.customer);
    }
    good_before.push(good);
    caught_before.push(caught);
    let cutoffs = cutoff_list(cutoffs.max.unwrap_or(max_peak), cutoffs.step);
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let points: Vec<CutPoint> = cutoffs
        .iter()
        .map(|&cutoff| {
            let first = eligible.partition_point(|r| r.peak < cutoff);
            let n = (eligible.len() - first) as u64;
            let good = (good - good_before[first]) as f64;
            let caught = (caught - caught_before[first]) as f64;
            let precision = (n > 0).then(|| good / n as f64);
            let recall = (customers > 0).then(|| caught / customers as f64);
            let f1 = match (precision, recall) {
                (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
                (Some(_), Some(_)) => Some(0.0),
                _ => None,
            };
            CutPoint {
                cutoff,
                qualified: n,
                precision: precision.map(round6),
                recall: recall.map(round6),
                f1: f1.map(round6),
            }
        })
        .collect();
    let suggested = match target_precision {
        Some(target) => points
            .iter()
            .find(|p| p.qualified > 0 && p.precision.is_some_and(|x| x >= target))
            .cloned(),
        None => points
            .iter()
            .filter(|p| p.qualified > 0 && p.f1.is_some())
            .fold(None::<&CutPoint>, |best, p| match best {
                Some(b) if b.f1 >= p.f1 => Some(b),
                _ => Some(p),
            })
            .cloned(),
    };
    Calibration {
        leads: peaks.len() as u64,
        reached_sql: peaks.iter().filter(|r| r.reached_sql).count() as u64,
        customers,
        points,
        suggested,
        max_peak,
    }
}

/// Cut-offs from 0 to `max` (inclusive, rounded up to a step) every `step`,
/// at most [`MAX_CUTOFFS`].
pub fn cutoff_list(max: f64, step: f64) -> Vec<f64> {
    if step.is_nan() || step < MIN_STEP || !max.is_finite() {
        return vec![0.0];
    }
    let mut out = Vec::new();
    let mut i: u32 = 0;
    loop {
        let c = round6(f64::from(i) * step);
        out.push(c);
        if c >= max || out.len() >= MAX_CUTOFFS {
            return out;
        }
        i += 1;
    }
}

/// Cut-offs in one calibration, at most.
pub const MAX_CUTOFFS: usize = 500;
/// The finest step between cut-offs (scores are kept to 6 decimals).
pub const MIN_STEP: f64 = 1e-6;

/// `source` (the document of `policy`) with the engagement threshold of
/// `target` set to `cutoff`: the MQL bar's `engagement_at_least` — and its
/// `model`, when the target's model is not the one the MQL stage reads —
/// or a level's. `None` if the document cannot be edited so, or the edit
/// would not be a valid policy (a level's threshold out of order).
pub fn with_threshold(source: &str, policy: &Policy, target: Target, cutoff: f64) -> Option<String> {
    let value = format_number(cutoff);
    let out = match target.level {
        Some(i) => {
            (target.model == policy.mql.model && i < policy.mql.levels.len()).then_some(())?;
            with_value(
                source,
                &format!("stages.MQL.levels[{i}]"),
                "engagement_at_least",
                &value,
            )?
        }
        None => {
            let out = with_value(source, "stages.MQL", "engagement_at_least", &value)?;
            if target.model == policy.mql.model {
                out
            } else {
                let id = &policy.models.get(target.model)?.id;
                with_value(&out, "stages.MQL", "model", &crate::policy::toml_string(id))?
            }
        }
    };
    // the edit must have changed that threshold (and model), and only that
    let parsed = Policy::from_toml(&out).ok()?;
    let threshold = match target.level {
        Some(i) => parsed.mql.levels.get(i)?.engagement_at_least,
        None => parsed.mql.engagement_at_least,
    };
    (threshold == round6(cutoff) && parsed.mql.model == target.model).then_some(out)
}

/// A number as TOML writes a float: `75.0`, `2.5`.
pub(crate) fn format_number(x: f64) -> String {
    let text = format!("{}", round6(x));
    if text.contains('.') || text.contains('e') {
        text
    } else {
        format!("{text}.0")
    }
}

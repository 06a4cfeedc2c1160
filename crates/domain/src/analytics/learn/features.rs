//! What a lead looked like at one instant, as numbers a model can weigh.
//!
//! Each lead is observed once, at [`observed_at`]: its first MQL under the
//! base policy, or [`OBSERVATION_AGE`] after its capture if that comes
//! first — the same rule for leads that reached the outcome and leads that
//! did not. Only engagements strictly before that instant count (the
//! engagement at the instant, such as the one that made the lead MQL, does
//! not), and with the outcome SQL no sales-ready type counts (it *is* the
//! outcome). The features ([`Feature`]):
//!
//! - each event rule of the chosen model: its decayed points at the instant;
//! - each attribute rule of the model's fit: 1 if the profile matches;
//! - the profile's grade, one indicator a grade (the top grade left out);
//! - the channel of the first engagement, one indicator a channel;
//! - candidates for new rules: an attribute value no rule reads, or an
//!   engagement type no rule of the model scores (one point an engagement,
//!   decayed as the model decays), each only with [`MIN_SUPPORT`] leads or
//!   more, never on an identifying attribute ([`is_identifying`]).
//!
//! An indicator (grade, channel, value) needs [`MIN_SUPPORT`] leads with it
//! and as many without.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::population::LearnOutcome;
use crate::analytics::evidence::Evidence;
use crate::engagement::{Engagement, canonical_log};
use crate::life::{Happening, live};
use crate::policy::Policy;
use crate::profile::normalised_value;
use crate::score::{ScoreState, decay_factor, fit_score};
use crate::stage::Stage;
use crate::time::{Span, Timestamp};
use crate::workflow::Event;

/// A lead is observed this long after its capture at the latest.
pub const OBSERVATION_AGE: Span = Span::from_days(30);
/// A candidate rule, a grade or a channel needs this many leads with it.
pub const MIN_SUPPORT: usize = 20;
/// Candidate rules kept at most, the best supported first.
const MAX_CANDIDATES: usize = 40;
/// A value this long is free text, not a category.
const MAX_VALUE_CHARS: usize = 64;

/// Attributes that identify a person, never proposed as rules (beside the
/// policy's own `identity.match_attributes`).
pub const IDENTIFYING: [&str; 13] = [
    "email",
    "name",
    "first_name",
    "last_name",
    "full_name",
    "phone",
    "mobile",
    "address",
    "street",
    "linkedin",
    "linkedin_url",
    "ip",
    "account_key",
];

/// Whether `attribute` may identify a person: a known identifying name, a
/// name containing one of them (`work_email`, `phone_number`; a short one
/// such as `ip` as a word of it: `client_ip`, not `zip`), or an attribute
/// the policy matches duplicates on.
pub fn is_identifying(policy: &Policy, attribute: &str) -> bool {
    let a = attribute.trim().to_ascii_lowercase();
    IDENTIFYING.iter().any(|i| {
        a == *i
            || (i.len() > 3 && a.contains(i))
            || a.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| word == *i)
    }) || policy
        .identity
        .match_attributes
        .iter()
        .any(|m| m.eq_ignore_ascii_case(&a))
}

/// One number of a lead's row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Feature {
    /// An event rule's decayed points (its index in `event_rules`).
    Rule(usize),
    /// An attribute rule matches (its index in `attribute_rules`).
    Attribute(usize),
    /// The profile's grade is this letter.
    Grade(String),
    /// The first engagement came through this channel.
    FirstChannel(String),
    /// A candidate rule: the attribute has this (normalised) value.
    Value { attribute: String, value: String },
    /// A candidate rule: engagements of this type, one point each, decayed.
    Type(String),
}

/// When `e` is observed under `base`: its first MQL, replaying its
/// engagements as the service would have decided them, or
/// [`OBSERVATION_AGE`] after `captured_at`, whichever comes first.
pub fn observed_at(base: &Policy, e: &Evidence, captured_at: Timestamp) -> Timestamp {
    let cap = captured_at.saturating_add(OBSERVATION_AGE);
    let happenings: Vec<Happening> = canonical_log(&e.log)
        .into_iter()
        .filter(|g| g.occurred_at <= cap && base.knows_type(&g.kind))
        .map(|g| Happening::Engagement(g.clone()))
        .collect();
    live(base, e.profile.as_map().clone(), captured_at, &happenings, cap).map_or(cap, |life| {
        life.events
            .iter()
            .find_map(|event| match event {
                Event::Transition(t) if t.to == Stage::Mql => Some(t.at),
                _ => None,
            })
            .map_or(cap, |at| at.min(cap))
    })
}

/// The engagements a lead observed at `at` is judged on, in scoring order.
pub fn seen_before<'a>(
    base: &Policy,
    e: &'a Evidence,
    at: Timestamp,
    outcome: LearnOutcome,
) -> Vec<&'a Engagement> {
    canonical_log(&e.log)
        .into_iter()
        .filter(|g| g.occurred_at < at && base.knows_type(&g.kind))
        .filter(|g| outcome != LearnOutcome::Sql || !base.is_sales_ready(&g.kind))
        .collect()
}

/// The features a model weighs, in a fixed order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpace {
    pub model: usize,
    pub outcome: LearnOutcome,
    pub features: Vec<Feature>,
}

/// A lead at its instant, as the space needs it.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub evidence: &'a Evidence,
    pub at: Timestamp,
}

impl FeatureSpace {
    /// The space for `base`'s model `model`, with the candidates, grades
    /// and channels `leads` support.
    pub fn build(base: &Policy, model: usize, outcome: LearnOutcome, leads: &[Observed<'_>]) -> Self {
        let fit_model = base.fit_model(model);
        let mut features: Vec<Feature> = base
            .event_rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.model == model && !r.disqualify)
            .map(|(i, _)| Feature::Rule(i))
            .collect();
        features.extend(
            base.attribute_rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.model == fit_model && !r.disqualify)
                .map(|(i, _)| Feature::Attribute(i)),
        );
        let read: BTreeSet<&str> = base
            .attribute_rules
            .iter()
            .map(|r| r.attribute.as_str())
            .collect();
        let scored: BTreeSet<&str> = base
            .event_rules
            .iter()
            .filter(|r| r.model == model)
            .map(|r| r.kind.as_str())
            .collect();
        let mut grades: BTreeMap<String, usize> = BTreeMap::new();
        let mut channels: BTreeMap<String, usize> = BTreeMap::new();
        let mut values: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut distinct: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut having: BTreeMap<String, usize> = BTreeMap::new();
        let mut types: BTreeMap<String, usize> = BTreeMap::new();
        for lead in leads {
            let e = lead.evidence;
            let grade = base.grade(fit_score(base, model, &e.profile)).to_owned();
            *grades.entry(grade).or_default() += 1;
            let seen = seen_before(base, e, lead.at, outcome);
            if let Some(channel) = seen.first().and_then(|g| g.channel.clone()) {
                *channels.entry(channel).or_default() += 1;
            }
            for (attribute, value) in e.profile.iter() {
                if read.contains(attribute) || is_identifying(base, attribute) {
                    continue;
                }
                let value = normalised_value(value);
                if value.is_empty() || value.chars().count() > MAX_VALUE_CHARS {
                    continue;
                }
                *having.entry(attribute.to_owned()).or_default() += 1;
                distinct
                    .entry(attribute.to_owned())
                    .or_default()
                    .insert(value.clone());
                *values.entry((attribute.to_owned(), value)).or_default() += 1;
            }
            let kinds: BTreeSet<&str> = seen
                .iter()
                .map(|g| g.kind.as_str())
                .filter(|k| !scored.contains(k))
                .collect();
            for kind in kinds {
                *types.entry(kind.to_owned()).or_default() += 1;
            }
        }
        // An indicator says something when enough leads have it and enough
        // do not (one every lead has is a constant).
        let supported = |n: usize| n >= MIN_SUPPORT && n + MIN_SUPPORT <= leads.len();
        // The top grade is the reference level (its indicator would be the
        // others' complement).
        let top = base.grades.first().map(|g| g.letter.as_str());
        features.extend(
            grades
                .into_iter()
                .filter(|(g, n)| supported(*n) && Some(g.as_str()) != top)
                .map(|(g, _)| Feature::Grade(g)),
        );
        features.extend(
            channels
                .into_iter()
                .filter(|(_, n)| supported(*n))
                .map(|(c, _)| Feature::FirstChannel(c)),
        );
        // Free text: most leads that have the attribute have their own value.
        let categorical = |attribute: &str| {
            let n = having.get(attribute).copied().unwrap_or(0);
            distinct.get(attribute).is_some_and(|d| d.len() * 2 <= n)
        };
        let mut candidates: Vec<(usize, Feature)> = values
            .into_iter()
            .filter(|((a, _), n)| supported(*n) && categorical(a))
            .map(|((attribute, value), n)| (n, Feature::Value { attribute, value }))
            .chain(
                types
                    .into_iter()
                    .filter(|(_, n)| *n >= MIN_SUPPORT)
                    .map(|(kind, n)| (n, Feature::Type(kind))),
            )
            .collect();
        candidates.sort_by(|(a, fa), (b, fb)| b.cmp(a).then_with(|| fa.cmp(fb)));
        features.extend(candidates.into_iter().take(MAX_CANDIDATES).map(|(_, f)| f));
        Self {
            model,
            outcome,
            features,
        }
    }

    /// The lead's row: one number a feature.
    pub fn row(&self, base: &Policy, e: &Evidence, at: Timestamp) -> Vec<f64> {
        let seen = seen_before(base, e, at, self.outcome);
        let mut state = ScoreState::new(base, None);
        for g in &seen {
            state.apply(base, g);
        }
        let fit = fit_score(base, self.model, &e.profile);
        let grade = base.grade(fit);
        let first_channel = seen.first().and_then(|g| g.channel.as_deref());
        let half_life = base.models.get(self.model).and_then(|m| m.half_life);
        let indicator = |b: bool| if b { 1.0 } else { 0.0 };
        self.features
            .iter()
            .map(|f| match f {
                Feature::Rule(i) => state.rule_value(base, *i, at),
                Feature::Attribute(i) => indicator(
                    base.attribute_rules
                        .get(*i)
                        .is_some_and(|r| r.matches(&e.profile)),
                ),
                Feature::Grade(g) => indicator(grade == g),
                Feature::FirstChannel(c) => indicator(first_channel == Some(c.as_str())),
                Feature::Value { attribute, value } => indicator(
                    e.profile
                        .get(attribute)
                        .is_some_and(|v| normalised_value(v) == *value),
                ),
                Feature::Type(kind) => seen
                    .iter()
                    .filter(|g| g.kind == *kind)
                    .map(|g| decay_factor(half_life, at.since(g.occurred_at)))
                    .sum(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;
    use crate::transition::Move;

    fn policy() -> Policy {
        Policy::from_toml(include_str!("../../../../../examples/policy.toml")).expect("the example policy")
    }

    fn day(d: i64, hours: i64) -> Timestamp {
        Timestamp::from_secs(1_780_000_000 + d * 86_400 + hours * 3_600)
    }

    fn event(id: &str, kind: &str, t: Timestamp) -> Engagement {
        Engagement {
            event_id: id.to_owned(),
            kind: kind.to_owned(),
            channel: Some("paid".to_owned()),
            properties: BTreeMap::new(),
            occurred_at: t,
        }
    }

    fn lead(id: &str, extra: &[(&str, &str)], log: Vec<Engagement>) -> Evidence {
        let mut a = BTreeMap::new();
        a.insert("email".to_owned(), format!("{id}@acme.com"));
        a.insert("title".to_owned(), "VP Sales".to_owned());
        a.insert("company_size".to_owned(), "250".to_owned());
        a.insert("company".to_owned(), "Acme".to_owned());
        for (k, v) in extra {
            a.insert((*k).to_owned(), (*v).to_owned());
        }
        Evidence {
            lead_id: id.to_owned(),
            profile: Profile::capture(a).expect("a profile"),
            log,
            moves: vec![(Stage::Iql, Move::Capture, day(0, 0))],
            mql_by: None,
            erased: false,
        }
    }

    #[test]
    fn observed_at_the_first_mql_or_thirty_days_after_capture() {
        let p = policy();
        // Fit 30 (senior, mid-market); the second ebook crosses 60 points.
        let mql = lead(
            "a",
            &[],
            vec![
                event("1", "trial_started", day(1, 0)),
                event("2", "webinar_attended", day(2, 0)),
                event("3", "ebook_downloaded", day(2, 1)),
                event("4", "ebook_downloaded", day(2, 2)),
                event("5", "demo_requested", day(3, 0)),
            ],
        );
        assert_eq!(observed_at(&p, &mql, day(0, 0)), day(2, 2));
        // A sales-ready action jumps through MQL: observed then.
        let demo = lead("c", &[], vec![event("1", "demo_requested", day(4, 0))]);
        assert_eq!(observed_at(&p, &demo, day(0, 0)), day(4, 0));
        let quiet = lead("b", &[], vec![event("1", "page_viewed", day(1, 0))]);
        assert_eq!(observed_at(&p, &quiet, day(0, 0)), day(30, 0));
    }

    #[test]
    fn only_what_happened_before_the_instant_counts() {
        let p = policy();
        let e = lead(
            "a",
            &[],
            vec![
                event("1", "ebook_downloaded", day(1, 0)),
                event("2", "webinar_attended", day(2, 0)),
            ],
        );
        let space = FeatureSpace::build(
            &p,
            0,
            LearnOutcome::Sql,
            &[Observed {
                evidence: &e,
                at: day(2, 0),
            }],
        );
        let row = space.row(&p, &e, day(2, 0));
        let mut planted = e.clone();
        planted.log.push(event("3", "trial_started", day(2, 0)));
        planted.log.push(event("4", "webinar_attended", day(9, 0)));
        assert_eq!(space.row(&p, &planted, day(2, 0)), row);
        // The webinar at the instant is not a feature; the ebook before it is.
        let ebook = space
            .features
            .iter()
            .position(|f| matches!(f, Feature::Rule(i) if p.event_rules[*i].kind == "ebook_downloaded"))
            .expect("an ebook rule");
        let webinar = space
            .features
            .iter()
            .position(|f| matches!(f, Feature::Rule(i) if p.event_rules[*i].kind == "webinar_attended" && p.event_rules[*i].model == 0))
            .expect("a webinar rule");
        assert!(row[ebook] > 0.0 && row[webinar] == 0.0, "{row:?}");
        // Arrival order does not matter.
        let mut shuffled = planted.clone();
        shuffled.log.reverse();
        assert_eq!(space.row(&p, &shuffled, day(2, 0)), row);
    }

    #[test]
    fn sales_ready_types_are_no_feature_of_sql() {
        let p = policy();
        let demo = p
            .engagement_types
            .iter()
            .find(|k| p.is_sales_ready(k))
            .cloned()
            .expect("a sales-ready type");
        let e = lead("a", &[], vec![event("1", &demo, day(1, 0))]);
        assert!(seen_before(&p, &e, day(3, 0), LearnOutcome::Sql).is_empty());
        assert_eq!(seen_before(&p, &e, day(3, 0), LearnOutcome::Customer).len(), 1);
    }

    #[test]
    fn candidates_need_support_and_are_never_identifying_or_free_text() {
        let p = policy();
        let leads: Vec<Evidence> = (0..45)
            .map(|i| {
                let region = match i {
                    0..25 => "EMEA",
                    25..40 => "APAC",
                    _ => "AMER",
                };
                let note = format!("met at booth {i}");
                let phone = "+44 20 7946 0000".to_owned();
                let mut click = event(&format!("{i}"), "email_clicked", day(1, 0));
                click.channel = Some(if i % 2 == 0 { "paid" } else { "organic" }.to_owned());
                let log = vec![click];
                lead(
                    &format!("l{i}"),
                    &[("region", region), ("notes", &note), ("phone", &phone)],
                    log,
                )
            })
            .collect();
        let observed: Vec<Observed<'_>> = leads
            .iter()
            .map(|e| Observed {
                evidence: e,
                at: day(5, 0),
            })
            .collect();
        let space = FeatureSpace::build(&p, 0, LearnOutcome::Customer, &observed);
        let has = |f: &Feature| space.features.contains(f);
        assert!(has(&Feature::Value {
            attribute: "region".to_owned(),
            value: "emea".to_owned()
        }));
        // 15 leads: below the support.
        assert!(!has(&Feature::Value {
            attribute: "region".to_owned(),
            value: "apac".to_owned()
        }));
        assert!(space.features.iter().all(|f| !matches!(f,
            Feature::Value { attribute, .. } if attribute == "notes" || attribute == "phone" || attribute == "email")));
        assert!(has(&Feature::FirstChannel("paid".to_owned())));
        assert!(
            has(&Feature::Type("email_clicked".to_owned()))
                || p.event_rules
                    .iter()
                    .any(|r| r.model == 0 && r.kind == "email_clicked")
        );
        assert!(
            is_identifying(&p, "Work_Email")
                && is_identifying(&p, "phone_number")
                && is_identifying(&p, "client_ip")
                && !is_identifying(&p, "zip")
                && !is_identifying(&p, "industry")
        );
    }
}

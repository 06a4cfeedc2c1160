//! Learned weights back into an ordinary policy: each rule's points become
//! its current points × its weight, scaled so that the training leads'
//! average engagement and fit under the draft equal theirs under the base
//! policy (so thresholds keep their meaning), rounded to readable numbers;
//! supported candidates whose interval does not hold zero become new rules
//! at the end of the document. The
//! draft is the base document edited — comments, order and every other key
//! kept — and must parse.

use serde::{Deserialize, Serialize};

use super::features::Feature;
use super::logistic::Matrix;
use crate::analytics::evidence::{Target, format_number, with_threshold};
use crate::num::round6;
use crate::policy::{Policy, rule_path, toml_string as quoted, with_value};

/// A feature's learned coefficient (log-odds per unit), its bootstrap
/// interval, and how many training leads have it (non-zero).
#[derive(Clone, Debug, PartialEq)]
pub struct Weighed {
    pub feature: Feature,
    pub beta: f64,
    pub interval: (f64, f64),
    pub support: u64,
}

/// A rule of the draft, or a signal that is not a rule, as the report shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleLearned {
    pub rule_id: String,
    /// `fit`, `engagement`, `undesirable`, or `signal` (a grade or a first
    /// channel: weighed, not a rule).
    pub kind: String,
    /// A new rule the draft proposes: what it reads.
    pub proposed: Option<Proposal>,
    pub old_points: f64,
    pub learned_points: f64,
    /// Learned over old points (1: the rule as it is); for a proposed rule
    /// its learned points a point, for a signal its log-odds.
    pub weight: f64,
    /// The weight's 95 % bootstrap interval.
    pub interval: (f64, f64),
    pub support: u64,
    /// In the draft: every rule of the base; a candidate only when its
    /// interval excludes zero (otherwise its learned points are 0); never
    /// a signal.
    #[serde(default)]
    pub in_draft: bool,
}

/// What a proposed rule reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposal {
    /// A `[[fit]]` rule: the attribute equals the value.
    Attribute { attribute: String, equals: String },
    /// An `[[engagement]]` rule: engagements of the type.
    Type { kind: String },
}

/// Points a person reads at a glance: halves below 5, units below 20,
/// fives above.
pub fn readable(x: f64) -> f64 {
    let step = match x.abs() {
        a if a < 5.0 => 0.5,
        a if a < 20.0 => 1.0,
        _ => 5.0,
    };
    let r = (x / step).round() * step;
    if r == 0.0 { 0.0 } else { r }
}

/// How the draft's points are scaled: engagement and fit separately.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scales {
    pub engagement: f64,
    pub fit: f64,
}

/// The scales that keep the mean engagement and mean fit of the training
/// rows as the base policy gives them. A side the draft gives no positive
/// mean keeps scale 1.
pub fn scales(base: &Policy, features: &[Feature], rows: &Matrix, beta: &[f64]) -> Scales {
    let mut sums = [0.0_f64; 4]; // base engagement, draft engagement, base fit, draft fit
    for r in 0..rows.rows() {
        let row = rows.row(r);
        for ((f, x), b) in features.iter().zip(row).zip(beta) {
            match f {
                Feature::Rule(_) => {
                    sums[0] += x;
                    sums[1] += b * x;
                }
                Feature::Type(_) => sums[1] += b * x,
                Feature::Attribute(j) => {
                    sums[2] += base.attribute_rules.get(*j).map_or(0.0, |a| a.points) * x;
                    sums[3] += b * x;
                }
                Feature::Value { .. } => sums[3] += b * x,
                Feature::Grade(_) | Feature::FirstChannel(_) => {}
            }
        }
    }
    let ratio = |base: f64, draft: f64| {
        if base > 0.0 && draft > 0.0 {
            base / draft
        } else {
            1.0
        }
    };
    Scales {
        engagement: ratio(sums[0], sums[1]),
        fit: ratio(sums[2], sums[3]),
    }
}

/// The report's rules: every weighed feature with its points.
pub fn learned_rules(base: &Policy, weighed: &[Weighed], scales: Scales) -> Vec<RuleLearned> {
    weighed
        .iter()
        .map(|w| {
            let (lo, hi) = w.interval;
            let (rule_id, kind, proposed, old, scale) = match &w.feature {
                Feature::Rule(i) => {
                    let r = &base.event_rules[*i];
                    let kind = if r.undesirable {
                        "undesirable"
                    } else {
                        "engagement"
                    };
                    (r.id.clone(), kind, None, r.points, scales.engagement)
                }
                Feature::Attribute(j) => {
                    let r = &base.attribute_rules[*j];
                    let kind = if r.undesirable { "undesirable" } else { "fit" };
                    // An indicator's coefficient is per match, not per point.
                    let per_point = if r.points == 0.0 {
                        0.0
                    } else {
                        scales.fit / r.points
                    };
                    (r.id.clone(), kind, None, r.points, per_point)
                }
                Feature::Type(kind) => (
                    proposed_id(&format!("type-{kind}")),
                    "engagement",
                    Some(Proposal::Type { kind: kind.clone() }),
                    1.0,
                    scales.engagement,
                ),
                Feature::Value { attribute, value } => (
                    proposed_id(&format!("{attribute}-{value}")),
                    "fit",
                    Some(Proposal::Attribute {
                        attribute: attribute.clone(),
                        equals: value.clone(),
                    }),
                    1.0,
                    scales.fit,
                ),
                Feature::Grade(g) => (format!("grade:{g}"), "signal", None, 0.0, 1.0),
                Feature::FirstChannel(c) => (format!("first_channel:{c}"), "signal", None, 0.0, 1.0),
            };
            let is_new = proposed.is_some();
            let weight = w.beta * scale;
            // A candidate is proposed only when the data is sure of its sign.
            let sure = !(lo <= 0.0 && hi >= 0.0);
            let learned = match kind {
                "signal" => 0.0,
                _ if is_new && !sure => 0.0,
                "undesirable" => readable(old * weight).min(0.0),
                _ => readable(old * weight),
            };
            let in_draft = kind != "signal" && (!is_new || learned != 0.0);
            RuleLearned {
                rule_id,
                kind: kind.to_owned(),
                proposed,
                old_points: if is_new { 0.0 } else { old },
                learned_points: learned,
                weight: round6(weight),
                // A negative scale (an undesirable fit rule) turns the interval around.
                interval: (
                    round6((lo * scale).min(hi * scale)),
                    round6((lo * scale).max(hi * scale)),
                ),
                support: w.support,
                in_draft,
            }
        })
        .collect()
}

/// A new rule's id: `learned-` and its words, safe as an id.
fn proposed_id(words: &str) -> String {
    let slug: String = words
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let mut id = format!("learned-{slug}");
    id.truncate(120);
    id
}

/// The draft's source: `source` (the base policy's) with each rule's
/// learned points and the proposed rules appended, and the draft parsed.
/// An error says what would not parse.
pub fn draft_source(
    source: &str,
    base: &Policy,
    model: usize,
    rules: &[RuleLearned],
) -> Result<(String, Policy), String> {
    let mut out = source.to_owned();
    let mut taken: std::collections::BTreeSet<String> = base
        .event_rules
        .iter()
        .map(|r| r.id.clone())
        .chain(base.attribute_rules.iter().map(|r| r.id.clone()))
        .collect();
    let mut appended = String::new();
    let model_key = |m: usize| {
        (m != 0)
            .then(|| base.models.get(m).map(|x| format!("model = {}\n", quoted(&x.id))))
            .flatten()
            .unwrap_or_default()
    };
    for rule in rules.iter().filter(|r| r.kind != "signal") {
        let Some(proposal) = &rule.proposed else {
            let path =
                rule_path(&out, &rule.rule_id).ok_or_else(|| format!("rule {} not found", rule.rule_id))?;
            out = with_value(&out, &path, "points", &format_number(rule.learned_points))
                .ok_or_else(|| format!("the points of {} cannot be set", rule.rule_id))?;
            continue;
        };
        if !rule.in_draft {
            continue;
        }
        let mut id = rule.rule_id.clone();
        let mut n = 2;
        while taken.contains(&id) {
            id = format!("{}-{n}", rule.rule_id);
            n += 1;
        }
        taken.insert(id.clone());
        let points = format_number(rule.learned_points);
        match proposal {
            Proposal::Attribute { attribute, equals } => appended.push_str(&format!(
                "\n[[fit]]\nid = {}\nattribute = {}\nequals = {}\npoints = {points}\n{}",
                quoted(&id),
                quoted(attribute),
                quoted(equals),
                model_key(base.fit_model(model)),
            )),
            Proposal::Type { kind } => appended.push_str(&format!(
                "\n[[engagement]]\nid = {}\ntype = {}\npoints = {points}\n{}",
                quoted(&id),
                quoted(kind),
                model_key(model),
            )),
        }
    }
    if !appended.is_empty() {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("\n# ---- proposed from outcomes (each seen on at least 20 leads) ----\n");
        out.push_str(&appended);
    }
    let parsed = Policy::from_toml(&out).map_err(|e| e.to_string())?;
    Ok((out, parsed))
}

/// The draft with its MQL engagement bar at `cutoff`, parsed.
pub fn with_bar(draft: &str, parsed: &Policy, model: usize, cutoff: f64) -> Result<(String, Policy), String> {
    let out = with_threshold(draft, parsed, Target { model, level: None }, cutoff)
        .ok_or_else(|| format!("engagement_at_least = {cutoff} cannot be set"))?;
    let barred = Policy::from_toml(&out).map_err(|e| e.to_string())?;
    Ok((out, barred))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_source() -> &'static str {
        include_str!("../../../../../examples/policy.toml")
    }

    fn weighed(feature: Feature, beta: f64) -> Weighed {
        Weighed {
            feature,
            beta,
            interval: (beta - 0.1, beta + 0.1),
            support: 50,
        }
    }

    #[test]
    fn readable_numbers() {
        assert_eq!(
            [2.26, 2.76, 7.4, 19.6, 22.4, 23.0, -3.2, 0.2, -0.2].map(readable),
            [2.5, 3.0, 7.0, 20.0, 20.0, 25.0, -3.0, 0.0, 0.0]
        );
    }

    #[test]
    fn scales_keep_the_mean_score() {
        let base = Policy::from_toml(policy_source()).expect("policy");
        let mut rows = Matrix::new(2);
        rows.push(&[10.0, 0.0]);
        rows.push(&[0.0, 20.0]);
        let s = scales(&base, &[Feature::Rule(0), Feature::Rule(1)], &rows, &[2.0, 1.0]);
        assert!((s.engagement - 0.75).abs() < 1e-12 && s.fit == 1.0, "{s:?}");
    }

    #[test]
    fn weights_of_one_give_the_base_policy_back_and_proposals_parse() {
        let source = policy_source();
        let base = Policy::from_toml(source).expect("policy");
        let mut all: Vec<Weighed> = (0..base.event_rules.len())
            .filter(|i| base.event_rules[*i].model == 0 && !base.event_rules[*i].disqualify)
            .map(|i| weighed(Feature::Rule(i), 1.0))
            .collect();
        all.extend(
            (0..base.attribute_rules.len())
                .filter(|j| base.attribute_rules[*j].model == 0 && !base.attribute_rules[*j].disqualify)
                .map(|j| weighed(Feature::Attribute(j), base.attribute_rules[j].points)),
        );
        let unit = Scales {
            engagement: 1.0,
            fit: 1.0,
        };
        let rules = learned_rules(&base, &all, unit);
        assert!(rules.iter().all(|r| (r.weight - 1.0).abs() < 1e-9), "{rules:?}");
        let (_, parsed) = draft_source(source, &base, 0, &rules).expect("a draft");
        for (a, b) in parsed.event_rules.iter().zip(&base.event_rules) {
            assert_eq!((a.id.as_str(), a.points), (b.id.as_str(), b.points));
        }
        for (a, b) in parsed.attribute_rules.iter().zip(&base.attribute_rules) {
            assert_eq!((a.id.as_str(), a.points), (b.id.as_str(), b.points));
        }

        // Doubled engagement weights, two proposals and a new bar.
        let mut more: Vec<Weighed> = all
            .iter()
            .map(|w| match w.feature {
                Feature::Rule(_) => weighed(w.feature.clone(), 2.0),
                _ => w.clone(),
            })
            .collect();
        more.push(weighed(
            Feature::Value {
                attribute: "region".to_owned(),
                value: "emea \"north\"".to_owned(),
            },
            6.2,
        ));
        more.push(weighed(Feature::Type("email_clicked".to_owned()), 2.2));
        more.push(weighed(Feature::Grade("B".to_owned()), 0.4));
        let rules = learned_rules(&base, &more, unit);
        let (unbarred, parsed) = draft_source(source, &base, 0, &rules).expect("a draft");
        let (draft, parsed) = with_bar(&unbarred, &parsed, 0, 75.0).expect("a bar");
        let trial = parsed
            .event_rules
            .iter()
            .find(|r| r.kind == "trial_started")
            .expect("trial");
        assert_eq!(trial.points, 60.0);
        assert_eq!(parsed.mql.engagement_at_least, 75.0);
        let region = parsed
            .attribute_rules
            .iter()
            .find(|r| r.attribute == "region")
            .expect("a proposed fit rule");
        assert_eq!(
            (region.id.as_str(), region.points),
            ("learned-region-emea-north", 6.0)
        );
        assert!(region.matches(&crate::profile::Profile::from_stored(
            [("region".to_owned(), "EMEA \"north\"".to_owned())].into()
        )));
        let clicked = parsed
            .event_rules
            .iter()
            .find(|r| r.id == "learned-type-email-clicked")
            .expect("a proposed engagement rule");
        assert_eq!(clicked.points, 2.0);
        // A signal is reported, never a rule; the base's comments stay.
        assert!(rules.iter().any(|r| r.kind == "signal" && r.rule_id == "grade:B"));
        assert!(draft.contains("# ---- fit: who they are"));
    }

    #[test]
    fn rule_paths_in_mixed_arrays() {
        let source = policy_source();
        let base = Policy::from_toml(source).expect("policy");
        for r in &base.event_rules {
            let path = rule_path(source, &r.id).expect("a path");
            assert!(
                path.starts_with("engagement[") || path.starts_with("undesirable["),
                "{path}"
            );
        }
        assert_eq!(rule_path(source, "senior-title").as_deref(), Some("fit[0]"));
        assert_eq!(rule_path(source, "no-such-rule"), None);
    }
}

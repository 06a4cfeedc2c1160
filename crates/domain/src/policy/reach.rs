//! What a valid policy can still get wrong: MQL thresholds that no lead can
//! ever reach under the policy's own rules. Such a policy is accepted (it
//! may be on its way to the rules that reach them), with a warning.

use std::collections::BTreeMap;

use super::{AttributeMatcher, AttributeRule, Policy, PolicyWarning};
use crate::num::round6;

impl Policy {
    /// The warnings about this policy, each with its document path.
    pub fn warnings(&self) -> Vec<PolicyWarning> {
        let mut out = Vec::new();
        let mql = &self.mql;
        if let Some(most) = self.most_engagement(mql.model)
            && round6(most) < mql.engagement_at_least
        {
            out.push(PolicyWarning {
                path: "stages.MQL.engagement_at_least".to_owned(),
                message: format!(
                    "unreachable: every positive engagement rule has max_points, and together they give at most {}, below {}",
                    round6(most),
                    mql.engagement_at_least
                ),
            });
        }
        let fit = round6(self.most_fit(mql.model));
        if fit < mql.fit_at_least {
            out.push(PolicyWarning {
                path: "stages.MQL.fit_at_least".to_owned(),
                message: format!(
                    "unreachable: the fit rules give at most {fit} (the best positive points per attribute, summed), below {}",
                    mql.fit_at_least
                ),
            });
        }
        let grade_fit = round6(self.most_fit(0));
        if let Some(letter) = &mql.grade_at_least
            && let Some(required) = self.grade_threshold(letter)
            && grade_fit < required
        {
            out.push(PolicyWarning {
                path: "stages.MQL.grade_at_least".to_owned(),
                message: format!(
                    "unreachable: grade {letter} needs a fit of {required}, and the fit rules give at most {grade_fit}"
                ),
            });
        }
        out
    }

    /// The most engagement score of a model a lead can ever have: the sum
    /// of its positive rules' `max_points` (decay only takes away), or
    /// `None` when a positive rule has no cap and the score has no bound.
    pub fn most_engagement(&self, model: usize) -> Option<f64> {
        self.event_rules
            .iter()
            .filter(|r| r.points > 0.0 && r.model == model)
            .map(|r| r.max_points)
            .sum()
    }

    /// At least the most fit score of a model a profile can have: per
    /// attribute, the best the positive rules on it can give together, summed.
    pub fn most_fit(&self, model: usize) -> f64 {
        let model = self.fit_model(model);
        let mut by_attribute: BTreeMap<&str, Vec<&AttributeRule>> = BTreeMap::new();
        for rule in self
            .attribute_rules
            .iter()
            .filter(|r| r.points > 0.0 && r.model == model)
        {
            by_attribute
                .entry(rule.attribute.as_str())
                .or_default()
                .push(rule);
        }
        by_attribute.values().map(|rules| most_of_attribute(rules)).sum()
    }
}

/// The most the rules on one attribute give one value. Rules on the same
/// attribute can match together (`one_of` and a range on a size), so this is
/// not simply the best rule. Equality and list rules match a value through
/// its folded text and ranges through its number, so the best value for them
/// is one of the texts or range bounds the rules name; a regex can match
/// values no other rule names, so its points count in full, which keeps this
/// an upper bound (a warning must never call a reachable threshold
/// unreachable).
fn most_of_attribute(rules: &[&AttributeRule]) -> f64 {
    let (patterns, named): (Vec<&AttributeRule>, Vec<&AttributeRule>) = rules
        .iter()
        .partition(|r| matches!(r.matcher, AttributeMatcher::Matches(_)));
    let mut candidates: Vec<String> = Vec::new();
    for rule in &named {
        match &rule.matcher {
            AttributeMatcher::Equals(value) => candidates.push(value.clone()),
            AttributeMatcher::OneOf(values) => candidates.extend(values.iter().cloned()),
            AttributeMatcher::Range { at_least, at_most } => {
                candidates.extend(at_least.iter().chain(at_most).map(ToString::to_string));
            }
            AttributeMatcher::Matches(_) => {}
        }
    }
    let best = candidates
        .iter()
        .map(|value| {
            named
                .iter()
                .filter(|r| r.matcher.matches(value))
                .map(|r| r.points)
                .sum::<f64>()
        })
        .fold(0.0, f64::max);
    best + patterns.iter().map(|r| r.points).sum::<f64>()
}

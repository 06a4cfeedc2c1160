//! The workspace's last learned lead definition, beside the calibration:
//! what it learned from, each rule's points before and after with its
//! weight and interval, and the back-test of base and draft. The draft
//! itself is `GetLearnReport`'s (or `leadflow policy learn`'s) to take.

use leadflow_domain::analytics::learn::{LearnOutcome, Metrics, Proposal, RuleLearned};
use leadflow_engine::LearnJob;
use maud::{Markup, html};

use crate::present;

fn outcome(o: LearnOutcome) -> &'static str {
    match o {
        LearnOutcome::Sql => "SQL",
        LearnOutcome::Customer => "CUSTOMER",
    }
}

fn name(rule: &RuleLearned) -> String {
    match &rule.proposed {
        None => rule.rule_id.clone(),
        Some(Proposal::Attribute { attribute, equals }) => format!("{attribute} = {equals}"),
        Some(Proposal::Type { kind }) => format!("type {kind}"),
    }
}

fn backtest_row(label: &str, key: &str, m: &Metrics) -> Markup {
    html! {
        tr data-policy=(key) {
            td { (label) }
            td data-k="qualified" { (m.qualified) }
            td data-k="precision" { (present::percent(m.precision)) }
            td data-k="recall" { (present::percent(m.recall)) }
            td data-k="lift" { (format!("{:.2}", m.lift)) }
            td data-k="auc" { (format!("{:.3}", m.auc)) }
        }
    }
}

pub(super) fn learned(job: Option<&LearnJob>) -> Markup {
    html! {
        section id="learned" {
            h2 {
                "Learned lead definition "
                span class="muted" { "the last LearnPolicy report" }
            }
            @match job.and_then(|j| j.report.as_ref().map(|r| (j, r))) {
                None => {
                    p class="muted" {
                        "No report yet: "
                        code { "leadflow policy learn --from … --to … > draft.toml" }
                        " learns one from the outcomes of a period."
                    }
                }
                Some((job, report)) => {
                    p class="muted" {
                        "Job " (job.id) ", " (present::days(job.period)) ", outcome " (outcome(job.outcome))
                        ", base version " (job.base_version) ": " (report.outcomes) " leads with a known outcome, "
                        (report.positives) " reached it; the latest " (report.held_out) " held out. "
                        "MQL bar " b id="learned-bar" data-v=(report.engagement_at_least) {
                            (present::score(report.engagement_at_least))
                        }
                        " (was " (present::score(report.base_engagement_at_least)) "), fit "
                        b id="learned-fit-bar" data-v=(report.fit_at_least) { (present::score(report.fit_at_least)) }
                        @if job.choose_fit {
                            " (was " (present::score(report.base_fit_at_least.unwrap_or(report.fit_at_least))) ")."
                        } @else {
                            " (kept)."
                        }
                        @if let (Some(p), Some(r)) = (report.training_precision, report.training_recall) {
                            " On the training leads: precision " (present::percent(p)) ", recall " (present::percent(r)) "."
                        }
                    }
                    table id="learned-rules" {
                        thead { tr { th { "Rule" } th { "Points" } th { "Learned" } th { "Weight" } th { "95% interval" } th { "Leads" } } }
                        tbody {
                            @for rule in &report.rules {
                                tr data-rule=(rule.rule_id) data-kind=(rule.kind) data-in-draft=(rule.in_draft) {
                                    td {
                                        (name(rule))
                                        @if rule.proposed.is_some() {
                                            " " span class="muted" { @if rule.in_draft { "new" } @else { "left out" } }
                                        }
                                        @if rule.kind == "signal" { " " span class="muted" { "signal" } }
                                    }
                                    td { (present::score(rule.old_points)) }
                                    td data-k="learned" { (present::score(rule.learned_points)) }
                                    td { (format!("{:.2}", rule.weight)) }
                                    td { (format!("{:.2} – {:.2}", rule.interval.0, rule.interval.1)) }
                                    td { (rule.support) }
                                }
                            }
                        }
                    }
                    h3 { "Back-test on the held-out leads" }
                    table id="learned-backtest" {
                        thead { tr { th { "Policy" } th { "Qualified" } th { "Precision" } th { "Recall" } th { "Lift" } th { "AUC" } } }
                        tbody {
                            (backtest_row(&format!("version {}", job.base_version), "base", &report.base))
                            (backtest_row("draft", "draft", &report.draft))
                        }
                    }
                }
            }
        }
    }
}

//! `leadflow policy learn`: a draft of the active policy (or a version)
//! learned from a period's outcomes. The draft goes to stdout, ready for
//! `policy validate`, `policy simulate` and `policy test`; the job's
//! progress and its report to stderr.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Args;
use leadflow_proto::v1 as pb;

use super::funnel::printable;
use super::remote::{Remote, rpc_error};
use crate::http::{Filters, query_of};
use crate::present;

#[derive(Debug, Args)]
pub(super) struct LearnArgs {
    // A token needs policy:admin.
    #[command(flatten)]
    remote: Remote,
    /// Leads captured from this day, YYYY-MM-DD (UTC).
    #[arg(long)]
    from: String,
    /// … up to the day before this one, YYYY-MM-DD (UTC).
    #[arg(long)]
    to: String,
    /// What counts as success: SQL (sales accepted the lead) or CUSTOMER.
    #[arg(long, default_value = "CUSTOMER", value_parser = ["SQL", "CUSTOMER", "sql", "customer"])]
    outcome: String,
    /// The policy version learned from; default the active one.
    #[arg(long)]
    base_version: Option<i64>,
    /// The score model learned (a [[model]] id); default the one the MQL
    /// stage reads.
    #[arg(long)]
    model: Option<String>,
    /// The precision the draft's MQL bar is calibrated for (default 0.5).
    #[arg(long)]
    target_precision: Option<f64>,
    /// Choose the MQL fit bar too (the pair of bars with the most recall
    /// at the target precision); otherwise the base's is kept.
    #[arg(long)]
    choose_fit: bool,
}

fn phase_text(job: &pb::LearnJob) -> String {
    match pb::LearnPhase::try_from(job.phase) {
        Ok(pb::LearnPhase::Reading) => format!("reading leads {}/{}", job.leads_read, job.leads_total),
        Ok(pb::LearnPhase::Fitting) => format!("fitting on {} leads", job.leads_read),
        _ => "done".to_owned(),
    }
}

fn interval(rule: &pb::LearnedRule) -> String {
    format!("[{:.2}, {:.2}]", rule.interval_low, rule.interval_high)
}

fn describe(rule: &pb::LearnedRule) -> String {
    if !rule.proposed {
        return printable(&rule.rule_id);
    }
    let new = if rule.in_draft { "new" } else { "left out" };
    if rule.engagement_type.is_empty() {
        format!(
            "{} ({new}: {} = {})",
            printable(&rule.rule_id),
            printable(&rule.attribute),
            printable(&rule.equals)
        )
    } else {
        format!(
            "{} ({new}: type {})",
            printable(&rule.rule_id),
            printable(&rule.engagement_type)
        )
    }
}

fn backtest_line(name: &str, b: Option<&pb::BackTest>) -> String {
    let b = b.cloned().unwrap_or_default();
    format!(
        "{name:<6} {:>9} {:>9.3} {:>9.3} {:>9.2} {:>9.3}",
        b.qualified, b.precision, b.recall, b.lift, b.auc
    )
}

/// The report, as a person reads it.
fn print_report(job: &pb::LearnJob, report: &pb::LearnReport) {
    eprintln!(
        "learned from {} leads with a known outcome ({} reached it): {} to train on, the latest {} held out",
        report.outcomes, report.positives, report.training, report.held_out
    );
    eprintln!(
        "\n{:<40} {:<11} {:>8} {:>8} {:>8} {:>16} {:>8}",
        "rule", "kind", "points", "learned", "weight", "95% interval", "support"
    );
    for rule in &report.rules {
        eprintln!(
            "{:<40} {:<11} {:>8} {:>8} {:>8.2} {:>16} {:>8}",
            describe(rule),
            printable(&rule.kind),
            present::score(rule.old_points),
            present::score(rule.learned_points),
            rule.weight,
            interval(rule),
            rule.support
        );
    }
    let fit = if job.choose_fit {
        format!(
            "{} (was {})",
            present::score(report.fit_at_least),
            present::score(report.base_fit_at_least)
        )
    } else {
        format!("{} (kept)", present::score(report.fit_at_least))
    };
    eprintln!(
        "\nMQL bar: engagement_at_least {} (was {}), fit_at_least {fit}",
        present::score(report.engagement_at_least),
        present::score(report.base_engagement_at_least),
    );
    let target = job.target_precision.unwrap_or(0.5);
    match (report.training_precision, report.training_recall) {
        (Some(precision), Some(recall)) => eprintln!(
            "on the training leads at that bar: precision {precision:.3}, recall {recall:.3}{}",
            if precision < target {
                " (below the target: the MQL levels' thresholds allow no higher bar)"
            } else {
                ""
            }
        ),
        _ => eprintln!(
            "no bar the policy can hold reached the target precision on the training leads: the engagement bar is the base's"
        ),
    }
    eprintln!(
        "\nback-test on the {} held-out leads, each policy replaying their logs:",
        report.held_out
    );
    eprintln!(
        "{:<6} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "qualified", "precision", "recall", "lift", "AUC"
    );
    eprintln!(
        "{}",
        backtest_line(&format!("v{}", job.base_version), report.base.as_ref())
    );
    eprintln!("{}", backtest_line("draft", report.draft.as_ref()));
}

pub(super) async fn learn(args: LearnArgs) -> anyhow::Result<ExitCode> {
    let filters = Filters::new(Some(args.from), Some(args.to), None);
    let now = leadflow_domain::Timestamp::from_micros(chrono::Utc::now().timestamp_micros());
    let query = match query_of(&filters, now) {
        Ok(q) => q,
        Err(message) => {
            eprintln!("leadflow policy learn: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let outcome = if args.outcome.eq_ignore_ascii_case("SQL") {
        pb::LearnOutcome::Sql
    } else {
        pb::LearnOutcome::Customer
    };
    let mut client = pb::analytics_service_client::AnalyticsServiceClient::new(args.remote.connect().await?);
    let mut stream = client
        .learn_policy(pb::LearnPolicyRequest {
            period: Some(crate::services::period_out(query.period)),
            outcome: outcome.into(),
            base_version: args.base_version.unwrap_or(0),
            model: args.model.unwrap_or_default(),
            target_precision: args.target_precision,
            request_id: String::new(),
            choose_fit: args.choose_fit,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let terminal = std::io::stderr().is_terminal();
    let mut last = None;
    loop {
        match stream.message().await {
            Ok(Some(update)) => {
                if let Some(job) = update.job {
                    if terminal {
                        eprint!("\rlearning job {}: {:<40}", job.id, phase_text(&job));
                    } else {
                        eprintln!("learning job {}: {}", job.id, phase_text(&job));
                    }
                    last = Some(job);
                }
            }
            Ok(None) => break,
            Err(status) => {
                if terminal {
                    eprintln!();
                }
                eprintln!("leadflow policy learn: {}", rpc_error(status));
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if terminal {
        eprintln!();
    }
    let Some(job) = last else {
        anyhow::bail!("the server sent no job");
    };
    let Some(report) = job.report.as_ref() else {
        eprintln!(
            "leadflow policy learn: the job ended without a report: {}",
            job.error
        );
        return Ok(ExitCode::FAILURE);
    };
    print_report(&job, report);
    print!("{}", report.draft_source);
    Ok(ExitCode::SUCCESS)
}

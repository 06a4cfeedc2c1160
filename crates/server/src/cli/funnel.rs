//! `leadflow funnel`: the numbers of `GetFunnel` as tables.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::Args;
use leadflow_proto::v1 as pb;

use super::remote::{Remote, rpc_error};
use crate::http::{Filters, query_of};
use crate::present;

#[derive(Debug, Args)]
pub(super) struct FunnelArgs {
    // A token needs analytics:read.
    #[command(flatten)]
    remote: Remote,
    /// First day, YYYY-MM-DD (UTC); default 30 days before --to.
    #[arg(long)]
    from: Option<String>,
    /// The day after the last, YYYY-MM-DD (UTC); default tomorrow.
    #[arg(long)]
    to: Option<String>,
    /// none, source-channel, mql-channel or policy-version.
    #[arg(long, default_value = "none")]
    group_by: String,
    /// Only leads whose first engagement came on this channel.
    #[arg(long)]
    channel: Option<String>,
}

pub(super) fn stage_name(value: i32) -> &'static str {
    pb::Stage::try_from(value)
        .map_or("?", |s| s.as_str_name())
        .trim_start_matches("STAGE_")
}

/// Text from the data, safe to print: control characters shown as `?`.
pub(super) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A duration off the wire, worded as the dashboard words it.
fn span_text(d: Option<&prost_types::Duration>) -> String {
    present::duration(d.map(|d| leadflow_domain::time::Span::from_secs(d.seconds)))
}

pub(super) async fn funnel(args: FunnelArgs) -> anyhow::Result<ExitCode> {
    let filters = Filters::new(args.from, args.to, None);
    let query = match query_of(
        &filters,
        leadflow_domain::Timestamp::from_micros(chrono::Utc::now().timestamp_micros()),
    ) {
        Ok(q) => q,
        Err(message) => {
            eprintln!("leadflow funnel: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let group_by = match args.group_by.as_str() {
        "none" => pb::FunnelGrouping::Unspecified,
        "source-channel" => pb::FunnelGrouping::SourceChannel,
        "mql-channel" => pb::FunnelGrouping::MqlChannel,
        "policy-version" => pb::FunnelGrouping::PolicyVersion,
        other => {
            eprintln!(
                "leadflow funnel: --group-by {other:?}: expected none, source-channel, mql-channel or policy-version"
            );
            return Ok(ExitCode::from(2));
        }
    };
    let mut client = pb::analytics_service_client::AnalyticsServiceClient::new(args.remote.connect().await?);
    let mut groups = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::GetFunnelRequest {
            period: Some(crate::services::period_out(query.period)),
            group_by: group_by.into(),
            source_channel: args.channel.clone().unwrap_or_default(),
            page_size: 200,
            page_token,
            ..Default::default()
        };
        let page = client.get_funnel(request).await.map_err(rpc_error)?.into_inner();
        groups.extend(page.groups);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    println!(
        "Funnel {}{}",
        present::days(query.period),
        args.channel
            .map(|c| format!(", source channel {}", printable(&c)))
            .unwrap_or_default()
    );
    if groups.is_empty() {
        println!("\nno leads moved in the period");
    }
    for g in &groups {
        if !g.key.is_empty() {
            println!("\n== {} ==", printable(&g.key));
        }
        println!("\n{:<14} {:>8} {:>8}", "stage", "leads", "entries");
        for e in &g.entries {
            println!("{:<14} {:>8} {:>8}", stage_name(e.stage), e.leads, e.entries);
        }
        println!(
            "\n{:<20} {:>8} {:>9} {:>7} {:>9} {:>9}",
            "cohort", "leads", "converted", "rate", "p50", "p90"
        );
        for c in &g.conversions {
            println!(
                "{:<20} {:>8} {:>9} {:>7} {:>9} {:>9}",
                format!("{} -> {}", stage_name(c.from), stage_name(c.to)),
                c.cohort,
                c.converted,
                present::percent(c.rate),
                span_text(c.p50.as_ref()),
                span_text(c.p90.as_ref())
            );
        }
        println!(
            "\n{:<14} {:>8} {:>9} {:>9}",
            "time in stage", "stays", "p50", "p90"
        );
        for t in &g.time_in_stage {
            println!(
                "{:<14} {:>8} {:>9} {:>9}",
                stage_name(t.stage),
                t.stays,
                span_text(t.p50.as_ref()),
                span_text(t.p90.as_ref())
            );
        }
        let rate = |r: Option<&pb::CohortRate>| {
            r.map_or_else(String::new, |r| present::share(r.rate, r.count, r.cohort))
        };
        println!(
            "\nof the MQL cohort: rejected {}, recycled {}",
            rate(g.rejected.as_ref()),
            rate(g.recycled.as_ref())
        );
        if !g.levels.is_empty() {
            println!(
                "\n{:<20} {:>8} {:>8} {:>7} {:>9} {:>9}",
                "MQL level", "leads", "to SQL", "rate", "p50", "p90"
            );
            for l in &g.levels {
                println!(
                    "{:<20} {:>8} {:>8} {:>7} {:>9} {:>9}",
                    printable(&l.level),
                    l.leads,
                    l.to_sql,
                    present::percent(l.rate),
                    span_text(l.p50.as_ref()),
                    span_text(l.p90.as_ref())
                );
            }
        }
        if !g.reasons.is_empty() {
            println!("\n{:<14} {:<24} {:>6}", "move", "reason", "count");
            for r in &g.reasons {
                let by = pb::Move::try_from(r.r#move).map_or("?", |m| m.as_str_name());
                println!(
                    "{:<14} {:<24} {:>6}",
                    by.trim_start_matches("MOVE_"),
                    printable(&r.reason),
                    r.count
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

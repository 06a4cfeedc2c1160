//! The filters form and the sections of the funnel's numbers: entries and
//! conversion (charts and tables), MQL levels, time in stage, the reasons
//! leads were sent back.

use leadflow_domain::Stage;
use leadflow_domain::analytics::Attribution;
use leadflow_domain::analytics::funnel::{Bucket, Funnel, Group, Query as FunnelQuery};
use leadflow_domain::time::Span;
use maud::{Markup, html};

use super::charts::{COLORS, HBar, Measure, count_axis, hbars};
use crate::present;

/// A duration's whole seconds for a `data-v`, -1 for none: a number for
/// whoever reads the page, where the text is for people.
fn seconds(span: Option<Span>) -> i64 {
    span.map_or(-1, |s| s.as_micros() / 1_000_000)
}

/// The form that reloads the page with other filters, showing the current
/// ones. The channel shown stays a choice even when no lead of the period
/// came on it.
pub(super) fn filters(query: &FunnelQuery, channels: &[String], by: Option<&Attribution>) -> Markup {
    let current = query.source_channel.as_deref();
    let mut choices: Vec<&str> = channels.iter().map(String::as_str).collect();
    if let Some(c) = current
        && !choices.contains(&c)
    {
        choices.push(c);
    }
    html! {
        section {
            form id="filters" method="get" action="/dashboard" {
                label { "From " input type="date" name="from" value=(present::date(query.period.start)); }
                label {
                    "To (exclusive) " input type="date" name="to" value=(present::date(query.period.end));
                }
                label {
                    "Source channel "
                    select name="channel" {
                        option value="" { "all" }
                        @for c in choices {
                            option value=(c) selected[current == Some(c)] { (c) }
                        }
                    }
                }
                label {
                    "Group by "
                    input type="text" name="by" placeholder="touched:utm_campaign" size="24"
                        value=(by.map(ToString::to_string).unwrap_or_default());
                }
                label {
                    "Velocity by "
                    select name="bucket" {
                        option value="day" selected[query.bucket == Bucket::Day] { "day" }
                        option value="week" selected[query.bucket == Bucket::Week] { "week" }
                    }
                }
                button type="submit" { "Show" }
            }
        }
    }
}

/// The funnel: leads entering each stage and cohort conversion, each as a
/// chart of its own kind of number and as a table, and the MQL cohort's
/// rejections and recycles.
pub(super) fn funnel(g: &Group) -> Markup {
    const MAIN: [Stage; 4] = [Stage::Iql, Stage::Mql, Stage::Sql, Stage::Customer];
    let leads = |stage: Stage| g.entries.iter().find(|e| e.stage == stage).map_or(0, |e| e.leads);
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let entering: Vec<HBar> = MAIN
        .iter()
        .zip(COLORS)
        .map(|(&stage, color)| HBar {
            key: stage.as_str().to_owned(),
            measure: Measure::Leads(leads(stage)),
            label: stage.as_str().to_owned(),
            value: leads(stage) as f64,
            text: leads(stage).to_string(),
            color,
        })
        .collect();
    let converting: Vec<HBar> = g
        .conversions
        .iter()
        .map(|c| HBar {
            key: format!("{}-{}", c.from.as_str(), c.to.as_str()),
            measure: Measure::Rate(c.rate),
            label: format!("{} → {}", c.from.as_str(), c.to.as_str()),
            value: c.rate,
            text: present::share(c.rate, c.converted, c.cohort),
            color: COLORS[0],
        })
        .collect();
    let rate_axis = [0.0, 0.25, 0.5, 0.75, 1.0].map(|r| (r, present::round_percent(r)));
    html! {
        section {
            h2 { "Funnel" }
            h3 { "Leads entering each stage " span class="muted" { "in the period" } }
            (hbars(
                "funnel-chart",
                &entering,
                &count_axis(MAIN.iter().map(|&s| leads(s)).max().unwrap_or(0)),
                "leads entering the stage in the period",
            ))
            h3 {
                "Cohort conversion "
                span class="muted" {
                    "of the leads that first entered a stage in the period, the share that has entered the \
                     later one since"
                }
            }
            (hbars("conversion-chart", &converting, &rate_axis, "converted, % of the cohort"))
            table id="funnel" {
                thead { tr { th { "Stage" } th { "Leads entering" } th { "Entries" } } }
                tbody {
                    @for e in &g.entries {
                        tr data-stage=(e.stage.as_str()) {
                            td { (e.stage.as_str()) }
                            td data-k="leads" { (e.leads) }
                            td data-k="entries" { (e.entries) }
                        }
                    }
                }
            }
            table id="conversions" {
                thead {
                    tr {
                        th { "Cohort" } th { "Leads" } th { "Converted" } th { "Rate" }
                        th { "Time p50" } th { "Time p90" }
                    }
                }
                tbody {
                    @for c in &g.conversions {
                        @let (from, to) = (c.from.as_str(), c.to.as_str());
                        tr data-conv=(format!("{from}-{to}")) {
                            td { (from) " → " (to) }
                            td data-k="cohort" { (c.cohort) }
                            td data-k="converted" { (c.converted) }
                            td data-k="rate" data-v=(c.rate) { (present::percent(c.rate)) }
                            td data-k="p50" data-v=(seconds(c.p50)) { (present::duration(c.p50)) }
                            td data-k="p90" data-v=(seconds(c.p90)) { (present::duration(c.p90)) }
                        }
                    }
                }
            }
            @if !g.levels.is_empty() {
                h3 {
                    "MQL levels "
                    span class="muted" {
                        "the leads that reached each level in the period, and the share that has entered SQL since"
                    }
                }
                table id="levels" {
                    thead {
                        tr {
                            th { "Level" } th { "Leads" } th { "To SQL" } th { "Rate" }
                            th { "Time p50" } th { "Time p90" }
                        }
                    }
                    tbody {
                        @for l in &g.levels {
                            tr data-level=(l.level) {
                                td { (l.level) }
                                td data-k="leads" { (l.leads) }
                                td data-k="to_sql" { (l.to_sql) }
                                td data-k="rate" data-v=(l.rate) { (present::percent(l.rate)) }
                                td data-k="p50" data-v=(seconds(l.p50)) { (present::duration(l.p50)) }
                                td data-k="p90" data-v=(seconds(l.p90)) { (present::duration(l.p90)) }
                            }
                        }
                    }
                }
            }
            p class="muted" {
                "Of the MQL cohort: rejected "
                b id="rejected" data-v=(g.rejected.rate) { (present::percent(g.rejected.rate)) }
                " (" (present::part_of(g.rejected.count, g.rejected.cohort)) "), recycled "
                b id="recycled" data-v=(g.recycled.rate) { (present::percent(g.recycled.rate)) }
                " (" (present::part_of(g.recycled.count, g.recycled.cohort)) ")."
            }
        }
    }
}

/// Attribution: the top groups by an engagement property, each with its
/// MQL cohort, how it converted, how fast, and its lift against the whole.
pub(super) fn attribution(by: &Attribution, funnel: &Funnel) -> Markup {
    let conversion = |g: &Group, from: Stage, to: Stage| {
        g.conversions
            .iter()
            .find(|c| c.from == from && c.to == to)
            .cloned()
    };
    html! {
        section id="attribution-section" {
            h2 {
                "By " (by.to_string()) " "
                span class="muted" {
                    "the top groups by leads, the rest as (other)"
                    @if funnel.overlapping { "; a lead counts in every group it touched, so the groups overlap" }
                }
            }
            table id="attribution" {
                thead {
                    tr {
                        th { "Group" } th { "MQLs" } th { "To SQL" } th { "To customer" }
                        th { "Lift" } th { "Time to customer p50" }
                    }
                }
                tbody {
                    @for g in &funnel.groups {
                        @let sql = conversion(g, Stage::Mql, Stage::Sql);
                        @let won = conversion(g, Stage::Mql, Stage::Customer);
                        tr data-group=(g.key) {
                            td { (g.key) }
                            td data-k="mqls" { (won.as_ref().map_or(0, |c| c.cohort)) }
                            td data-k="to_sql" data-v=(sql.as_ref().map_or(0.0, |c| c.rate)) {
                                (present::percent(sql.as_ref().map_or(0.0, |c| c.rate)))
                            }
                            td data-k="to_customer" data-v=(won.as_ref().map_or(0.0, |c| c.rate)) {
                                (present::percent(won.as_ref().map_or(0.0, |c| c.rate)))
                            }
                            @let lift = won.as_ref().and_then(|c| c.lift);
                            td data-k="lift" data-v=(lift.map_or(-1.0, |l| l)) {
                                (lift.map_or_else(|| "—".to_owned(), |l| format!("{l:.2}×")))
                            }
                            td data-k="p50" data-v=(seconds(won.as_ref().and_then(|c| c.p50))) {
                                (present::duration(won.as_ref().and_then(|c| c.p50)))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How long leads stayed in each stage, of the stays that ended in the
/// period.
pub(super) fn time_in_stage(g: &Group) -> Markup {
    html! {
        section {
            h2 { "Time in stage " span class="muted" { "stays that ended in the period" } }
            table id="time-in-stage" {
                thead { tr { th { "Stage" } th { "Stays" } th { "p50" } th { "p90" } } }
                tbody {
                    @for t in &g.time_in_stage {
                        tr data-stage=(t.stage.as_str()) {
                            td { (t.stage.as_str()) }
                            td data-k="stays" { (t.stays) }
                            td data-k="p50" data-v=(seconds(t.p50)) { (present::duration(t.p50)) }
                            td data-k="p90" data-v=(seconds(t.p90)) { (present::duration(t.p90)) }
                        }
                    }
                }
            }
        }
    }
}

/// The sales handoff per owner: leads given, SQLs, first touch, SLA
/// breaches, conversion. Owners by display name only (their id in an
/// attribute); nothing else personal.
pub(super) fn owners(funnel: &Funnel) -> Markup {
    let rows: Vec<(&Group, &leadflow_domain::analytics::Handoff)> = funnel
        .groups
        .iter()
        .filter_map(|g| g.handoff.as_ref().map(|h| (g, h)))
        .collect();
    html! {
        section {
            h2 { "Owners " span class="muted" { "the sales handoff in the period; a touch is an engagement the SQL SLAs wait for" } }
            table id="owners" {
                thead { tr {
                    th { "Owner" } th { "Assigned" } th { "SQLs" } th { "Touched" }
                    th { "First touch p50" } th { "p90" } th { "SLA breaches" } th { "Won" } th { "Conversion" }
                } }
                tbody {
                    @if rows.is_empty() {
                        tr { td colspan="9" class="muted" { "no lead was handed to an owner in the period" } }
                    }
                    @for (g, h) in &rows {
                        tr data-owner=(g.key) {
                            td { @if h.display_name.is_empty() { (g.key) } @else { (h.display_name) } }
                            td data-k="assigned" { (h.assigned) }
                            td data-k="sql" { (h.sql) }
                            td data-k="touched" { (h.touched) }
                            td data-k="p50" data-v=(seconds(h.first_touch_p50)) { (present::duration(h.first_touch_p50)) }
                            td data-k="p90" data-v=(seconds(h.first_touch_p90)) { (present::duration(h.first_touch_p90)) }
                            td data-k="sla_breaches" { (h.sla_breaches) }
                            td data-k="converted" { (h.converted) }
                            td data-k="rate" { (present::percent(h.conversion_rate)) }
                        }
                    }
                }
            }
        }
    }
}

/// The reasons given for sending leads back, by move.
pub(super) fn reasons(g: &Group) -> Markup {
    html! {
        section {
            h2 { "Why leads were sent back" }
            table id="reasons" {
                thead { tr { th { "Move" } th { "Reason" } th { "Count" } } }
                tbody {
                    @if g.reasons.is_empty() {
                        tr { td colspan="3" class="muted" { "none in the period" } }
                    }
                    @for r in &g.reasons {
                        tr data-move=(r.by.as_str()) data-reason=(r.reason) {
                            td { (r.by.as_str()) }
                            td { (r.reason) }
                            td data-k="count" { (r.count) }
                        }
                    }
                }
            }
        }
    }
}

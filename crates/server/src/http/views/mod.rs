//! The HTML of the HTTP side. Templates escape every value they are given,
//! so text from the data (a channel, a reason, a workspace's name) reads as
//! text; only this module's own style sheet and script go in as they are.
//!
//! The ids, classes and `data-` attributes are read by the browser test and
//! by whoever scrapes the page: keep them when changing the look.

mod charts;
mod funnel;
mod learned;
mod trends;

use leadflow_domain::Stage;
use leadflow_domain::analytics::funnel::Query as FunnelQuery;
use leadflow_engine::TransitionView;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::leads::SearchForm;
use super::load::Dashboard;
use crate::present;

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\
main{max-width:1100px;margin:0 auto;padding:16px 24px}\
h1{font-size:22px;margin:8px 0}h2{font-size:16px;margin:0 0 8px}h3{font-size:14px;margin:8px 0 4px}\
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:12px 16px;margin:12px 0}\
.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}.grid section{margin:0}\
table{border-collapse:collapse;width:100%;font-size:14px}\
th,td{text-align:right;padding:4px 8px;border-bottom:1px solid #eef0f3}\
th:first-child,td:first-child{text-align:left}\
form{display:flex;gap:12px;align-items:end;flex-wrap:wrap;font-size:14px}\
label{display:flex;flex-direction:column;gap:2px}\
.muted{color:#667085;font-size:13px}.error{color:#b42318}\
svg text{font-size:11px;fill:#1d2330}svg .axis-title{font-size:12px;fill:#667085}\
#tail li{font-family:ui-monospace,monospace;font-size:12px;margin:2px 0}";

/// The live tail's refresh: the fragment replaces the list, and a refusal
/// or an outage leaves the last one standing.
const TAIL_SCRIPT: &str = "\
setInterval(function(){fetch('/dashboard/tail',{credentials:'same-origin'})\
.then(function(r){return r.ok?r.text():null})\
.then(function(t){if(t!==null){document.getElementById('tail').innerHTML=t;}})\
.catch(function(){});},5000);";

fn style() -> Markup {
    html! { style { (PreEscaped(STYLE)) } }
}

/// A page's head: its title, and the style sheet.
fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width";
            title { (title) }
            (style())
        }
    }
}

/// A page that says what went wrong, with the ways on.
pub(super) fn error_page(message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html {
            head { meta charset="utf-8"; title { "leadflow" } (style()) }
            body {
                main {
                    h1 { "leadflow" }
                    p class="error" id="error" { (message) }
                    p {
                        a href="/dashboard" { "Back to the dashboard" }
                        " · "
                        a href="/login" { "Sign in with a token" }
                    }
                }
            }
        }
    }
}

/// The lead search page: the form (showing what it was given) and a page
/// of the leads found, by id and external key (their email and company
/// only for a caller who may read leads: `profiles`), with
/// their stage, level, grade and scores now, and a link to the next page.
pub(super) fn lead_search(form: &SearchForm, page: &leadflow_engine::SearchPage, profiles: bool) -> Markup {
    let field = |f: &Option<String>| f.clone().unwrap_or_default();
    let selected =
        |f: &Option<String>, value: &str, default: bool| f.as_deref().map_or(default, |v| v == value);
    let next = page.next.as_ref().map(|cursor| {
        let mut pairs: Vec<(&str, String)> = [
            ("stage", &form.stage),
            ("level", &form.level),
            ("grade", &form.grade),
            ("model", &form.model),
            ("score", &form.score),
            ("min", &form.min),
            ("max", &form.max),
            ("order", &form.order),
            ("attribute", &form.attribute),
            ("equals", &form.equals),
            ("prefix", &form.prefix),
            ("captured_from", &form.captured_from),
            ("captured_to", &form.captured_to),
            ("entered_from", &form.entered_from),
            ("entered_to", &form.entered_to),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect();
        pairs.push(("after", super::leads::after(cursor)));
        let query: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        format!("/dashboard/leads?{}", query.join("&"))
    });
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("leadflow leads"))
            body {
                main {
                    h1 { "Lead search" }
                    p class="muted" { a href="/dashboard" { "The funnel" } }
                    section {
                        form id="search" method="get" action="/dashboard/leads" {
                            label { "Stage " select name="stage" {
                                option value="" { "any" }
                                @for s in Stage::LIFECYCLE {
                                    option value=(s.as_str()) selected[selected(&form.stage, s.as_str(), false)] { (s.as_str()) }
                                }
                            } }
                            label { "Level " input type="text" name="level" size="8" placeholder="hot, none" value=(field(&form.level)); }
                            label { "Grade " input type="text" name="grade" size="4" value=(field(&form.grade)); }
                            label { "Model " input type="text" name="model" size="10" placeholder="default" value=(field(&form.model)); }
                            label { "Score " select name="score" {
                                @for (value, text) in [("qualifying", "qualifying engagement"), ("engagement", "engagement"), ("fit", "fit")] {
                                    option value=(value) selected[selected(&form.score, value, value == "qualifying")] { (text) }
                                }
                            } }
                            label { "At least " input type="text" name="min" size="6" value=(field(&form.min)); }
                            label { "At most " input type="text" name="max" size="6" value=(field(&form.max)); }
                            label { "Order " select name="order" {
                                @for (value, text) in [("score", "score, highest first"), ("entered", "stage entry, latest first"), ("captured", "capture, latest first")] {
                                    option value=(value) selected[selected(&form.order, value, value == "score")] { (text) }
                                }
                            } }
                            label { "Attribute " input type="text" name="attribute" size="10" placeholder="industry" value=(field(&form.attribute)); }
                            label { "Equals " input type="text" name="equals" size="10" value=(field(&form.equals)); }
                            label { "Or starts with " input type="text" name="prefix" size="10" value=(field(&form.prefix)); }
                            label { "Captured from " input type="date" name="captured_from" value=(field(&form.captured_from)); }
                            label { "to (exclusive) " input type="date" name="captured_to" value=(field(&form.captured_to)); }
                            label { "Entered stage from " input type="date" name="entered_from" value=(field(&form.entered_from)); }
                            label { "to (exclusive) " input type="date" name="entered_to" value=(field(&form.entered_to)); }
                            button type="submit" { "Search" }
                        }
                    }
                    section {
                        h2 { "Leads " span class="muted" { "scores as of now" } }
                        @if page.leads.is_empty() {
                            p id="no-leads" { "No lead on this page." }
                        } @else {
                            table id="leads" {
                                thead { tr {
                                    th { "Lead" } th { "External key" }
                                    @if profiles { th { "Email" } th { "Company" } }
                                    th { "Stage" } th { "Level" } th { "Grade" }
                                    th { "Fit" } th { "Qualifying" } th { "Engagement" } th { "Other models" }
                                } }
                                tbody {
                                    @for (lead, _) in &page.leads {
                                        tr data-lead=(lead.id) {
                                            td { a href=(format!("/dashboard/leads/{}", url_encode(&lead.id))) { (lead.id) } }
                                            td { (lead.external_key.clone().unwrap_or_default()) }
                                            @if profiles {
                                                td data-k="email" { (lead.lead.profile.get("email").unwrap_or_default()) }
                                                td data-k="company" { (lead.lead.profile.get("company").unwrap_or_default()) }
                                            }
                                            td data-k="stage" { (lead.lead.stage.as_str()) }
                                            td data-k="level" { (lead.scores.level.clone().unwrap_or_default()) }
                                            td data-k="grade" { (lead.scores.grade) }
                                            td data-k="fit" data-v=(lead.scores.fit) { (present::score(lead.scores.fit)) }
                                            td data-k="qualifying" data-v=(lead.scores.qualifying_engagement) {
                                                (present::score(lead.scores.qualifying_engagement))
                                            }
                                            td data-k="engagement" data-v=(lead.scores.engagement) { (present::score(lead.scores.engagement)) }
                                            td {
                                                @for (id, m) in &lead.scores.models {
                                                    span data-model=(id) data-v=(m.qualifying_engagement) {
                                                        (id) " " (present::score(m.qualifying_engagement)) " "
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        @if let Some(href) = next {
                            p { a id="next" href=(href) { "Next page" } }
                        }
                    }
                }
            }
        }
    }
}

/// Samples of the score chart.
const SAMPLES: usize = 60;
/// Engagements listed on a lead's page (the latest).
const LOGGED: usize = 200;
const CHART: (f64, f64) = (720.0, 220.0);

/// A lead's page: where it is and why — its scores over time per model
/// (sampled from the score function, with the MQL thresholds of the model
/// the stage reads and its moves marked), its latest engagements with each
/// rule's points, and the guards that block its next move.
pub(super) fn lead_page(
    d: &leadflow_engine::LeadDetail,
    now: leadflow_domain::Timestamp,
    profiles: bool,
) -> Markup {
    let policy = &d.policy;
    let lead = &d.view;
    let from = lead.lead.captured_at.min(now);
    let (at, series) = leadflow_domain::explain::timeline(policy, &d.log, from, now, SAMPLES);
    let mut thresholds: Vec<(String, f64)> = vec![("MQL".to_owned(), policy.mql.engagement_at_least)];
    thresholds.extend(
        policy
            .mql
            .levels
            .iter()
            .map(|l| (l.id.clone(), l.engagement_at_least)),
    );
    let top = series
        .iter()
        .flatten()
        .copied()
        .chain(thresholds.iter().map(|(_, v)| *v))
        .fold(1.0_f64, f64::max)
        * 1.1;
    let span = now.since(from).as_micros().max(1) as f64;
    let x = |t: leadflow_domain::Timestamp| CHART.0 * t.since(from).as_micros() as f64 / span;
    let y = |v: f64| CHART.1 - CHART.1 * v.max(0.0) / top;
    let mql_model = policy.models[policy.mql.model].id.clone();
    let blocking: Vec<&leadflow_domain::lifecycle::GuardCheck> = d
        .explanation
        .next
        .iter()
        .flat_map(|n| n.guards.iter())
        .filter(|g| !g.passed)
        .collect();
    let logged = leadflow_domain::explain::log_points(policy, &d.log, LOGGED);
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("leadflow lead"))
            body {
                main {
                    h1 { "Lead " span id="lead-id" { (lead.id) } }
                    p class="muted" {
                        a href="/dashboard/leads" { "Lead search" } " · external key "
                        span id="external-key" { (lead.external_key.clone().unwrap_or_default()) }
                    }
                    section {
                        p {
                            "Stage " b id="stage" { (lead.lead.stage.as_str()) }
                            " · level " b id="level" { (lead.scores.level.clone().unwrap_or_else(|| "none".to_owned())) }
                            " · grade " b id="grade" { (lead.scores.grade) }
                            " · fit " b id="fit" data-v=(lead.scores.fit) { (present::score(lead.scores.fit)) }
                            " · qualifying " b id="qualifying" data-v=(lead.scores.qualifying_engagement) { (present::score(lead.scores.qualifying_engagement)) }
                        }
                    }
                    section {
                        h2 { "Engagement over time " span class="muted" { "each model's score since capture; thresholds of the " (mql_model) " model, which the MQL stage reads; moves as lines" } }
                        svg id="score-chart" width=(CHART.0 + 60.0) height=(CHART.1 + 30.0) viewBox=(format!("-50 -10 {} {}", CHART.0 + 60.0, CHART.1 + 30.0)) {
                            @for (name, v) in &thresholds {
                                line class="threshold" data-threshold=(name) data-v=(v) x1="0" x2=(CHART.0) y1=(y(*v)) y2=(y(*v)) stroke="#b42318" stroke-dasharray="4 3" {}
                                text x="-48" y=(y(*v) + 4.0) { (name) " " (present::score(*v)) }
                            }
                            @for (t, stage) in &d.moves {
                                line class="move" data-stage=(stage.as_str()) x1=(x(*t)) x2=(x(*t)) y1="0" y2=(CHART.1) stroke="#667085" {}
                            }
                            @for (m, values) in series.iter().enumerate() {
                                @let points: Vec<String> = at.iter().zip(values).map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
                                polyline class="series" data-model=(policy.models[m].id) data-last=(values.last().copied().unwrap_or_default())
                                    points=(points.join(" ")) fill="none" stroke=(series_color(m)) stroke-width="2" {}
                            }
                        }
                        p class="muted" {
                            @for (m, model) in policy.models.iter().enumerate() {
                                span style=(format!("color:{}", series_color(m))) { "■ " (model.id) " " }
                            }
                        }
                    }
                    @if profiles {
                        section {
                            h2 { "Profile" }
                            table id="profile" {
                                tbody {
                                    @for (name, value) in lead.lead.profile.as_map() {
                                        tr data-attribute=(name) { td { (name) } td { (value) } }
                                    }
                                }
                            }
                        }
                    }
                    section {
                        h2 { "What blocks the next stage" }
                        @if blocking.is_empty() {
                            p id="no-block" { "Nothing: every guard of the next automatic move passes, or there is none." }
                        } @else {
                            ul id="blocking" {
                                @for g in &blocking {
                                    li data-guard=(g.guard.as_str()) { (g.guard.as_str()) ": " (g.detail) }
                                }
                            }
                        }
                    }
                    section {
                        h2 { "Engagements " span class="muted" { "the latest " (LOGGED) ", with what each rule gave (before decay)" } }
                        table id="log" {
                            thead { tr { th { "Event" } th { "Type" } th { "Occurred" } th { "Rules" } } }
                            tbody {
                                @for (e, gave) in logged.iter().rev() {
                                    tr data-event=(e.event_id) {
                                        td { (e.event_id) }
                                        td { (e.kind) }
                                        td { (e.occurred_at.to_string()) }
                                        td {
                                            @for (rule, model, points) in gave {
                                                span data-rule=(rule) data-v=(points) {
                                                    (rule) @if let Some(m) = model { " (" (m) ")" } " " (present::score(*points)) " "
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The colour of a model's line.
pub(super) fn series_color(model: usize) -> &'static str {
    const COLORS: [&str; 6] = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#dc2626"];
    COLORS[model % COLORS.len()]
}

/// A query-string value, percent-encoded but for unreserved characters.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The form that turns a token into the login cookie.
pub(super) fn login_page() -> Markup {
    html! {
        (DOCTYPE)
        html {
            head { meta charset="utf-8"; title { "leadflow: sign in" } (style()) }
            body {
                main {
                    h1 { "leadflow" }
                    form method="post" action="/login" {
                        label {
                            "Token with analytics:read "
                            input type="password" name="token" autocomplete="off";
                        }
                        " "
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

/// The funnel dashboard of workspace `ws` for `query`.
pub(super) fn dashboard(ws: &str, query: &FunnelQuery, data: &Dashboard) -> Markup {
    let period = query.period;
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("leadflow funnel"))
            body {
                main {
                    h1 { "leadflow funnel" }
                    p class="muted" {
                        "Workspace " b id="workspace" { (ws) } " · "
                        a href="/dashboard/accounts" { "Accounts" } " · "
                        span id="period" data-start=(present::date(period.start))
                            data-end=(present::date(period.end)) { (present::days(period)) }
                    }
                    (funnel::filters(query, &data.channels, data.attribution.as_ref().map(|(a, _)| a)))
                    @if let Some(group) = data.funnel.groups.first() {
                        (funnel::funnel(group))
                        div class="grid" {
                            (funnel::time_in_stage(group))
                            (funnel::reasons(group))
                        }
                        @if let Some((by, grouped)) = &data.attribution {
                            (funnel::attribution(by, grouped))
                        }
                        (funnel::owners(&data.owners))
                        (trends::velocity(group, &data.funnel.buckets, query.bucket))
                        div class="grid" {
                            (trends::calibration(data.calibration.as_ref()))
                            (learned::learned(data.learning.as_ref()))
                        }
                        section {
                            h2 { "Live tail " span class="muted" { "latest transitions, every 5 s" } }
                            ol id="tail" { (tail_rows(&data.tail)) }
                        }
                        script { (PreEscaped(TAIL_SCRIPT)) }
                    } @else {
                        p { "No data." }
                    }
                }
            }
        }
    }
}

/// The account view: accounts per stage, and the top accounts by score
/// with their buying group's coverage of the personas `[stages.MQA]`
/// requires. Accounts by domain (else external key, else id); no member is
/// named.
pub(super) fn accounts(ws: &str, data: &super::load::Accounts) -> Markup {
    let name = |a: &leadflow_engine::AccountView| {
        a.domain
            .clone()
            .or_else(|| a.external_key.clone())
            .unwrap_or_else(|| a.id.clone())
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("leadflow accounts"))
            body {
                main {
                    h1 { "Accounts" }
                    p class="muted" {
                        "Workspace " b id="workspace" { (ws) } " · "
                        a href="/dashboard" { "The funnel" } " · "
                        a href="/dashboard/leads" { "Lead search" }
                    }
                    @if data.required.is_none() {
                        p id="no-accounts" class="muted" {
                            "The active policy has no [accounts]: accounts are kept, not matched, scored or moved."
                        }
                    }
                    section {
                        h2 { "Accounts per stage" }
                        table id="stages" {
                            tr { th { "stage" } th { "accounts" } }
                            @for (stage, n) in &data.counts {
                                tr data-stage=(stage.as_str()) { td { (stage.as_str()) } td class="n" { (n) } }
                            }
                        }
                    }
                    section {
                        h2 { "Top accounts " span class="muted" { "by engagement now" } }
                        @if data.top.is_empty() {
                            p class="muted" { "no accounts yet" }
                        } @else {
                            table id="top" {
                                tr {
                                    th { "account" } th { "stage" } th { "engagement" } th { "fit" }
                                    th { "engaged / members" } th { "buying group" }
                                }
                                @for a in &data.top {
                                    tr data-account=(a.id) {
                                        td { (name(a)) }
                                        td data-cell="stage" { (a.stage.as_str()) }
                                        td class="n" data-cell="engagement" { (present::score(a.engagement)) }
                                        td class="n" { (present::score(a.fit)) }
                                        td class="n" data-cell="engaged" { (a.engaged_members) " / " (a.members) }
                                        td data-cell="coverage" {
                                            @for p in data.required.iter().flatten() {
                                                @let n = a.personas.get(p).copied().unwrap_or(0);
                                                span class=(if n > 0 { "covered" } else { "missing" }) {
                                                    (p) " " (n)
                                                }
                                                " "
                                            }
                                            @for (p, n) in a.personas.iter().filter(|(p, _)| !data.required.iter().flatten().any(|r| r == *p)) {
                                                span class="muted" { (p) " " (n) } " "
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The live tail's items, newest first: when, which lead, the move. A
/// reason only where the policy defines it: a PROMOTE's free text may name
/// a person.
pub(super) fn tail_rows(tail: &[TransitionView]) -> Markup {
    html! {
        @if tail.is_empty() {
            li class="muted" { "no transitions yet" }
        }
        @for t in tail {
            @let r = &t.record;
            li data-lead=(t.lead_id) {
                (r.at) " " (t.lead_id) " " (r.from.map_or("·", Stage::as_str)) " → " (r.to.as_str())
                " " (r.by.as_str())
                @if let Some(reason) = r.reason.as_deref()
                    .filter(|_| leadflow_domain::lifecycle::reason_from_policy(r.by)) {
                    " (" (reason) ")"
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use leadflow_domain::analytics::funnel::{
        self, Bucket, Grouping, History, LevelStep, Period, Step, StepCause,
    };
    use leadflow_domain::{Move, Timestamp};

    use super::*;

    /// Markup where a channel or a reason goes, as a caller could send it.
    const HOSTILE: &str = "<img src=x onerror=alert(1)>\"&";
    const SHOWN: &str = "&lt;img src=x onerror=alert(1)&gt;&quot;&amp;";

    fn day(n: i64) -> Timestamp {
        Timestamp::from_secs(1_790_812_800 + n * 86_400) // 2026-10-01 + n
    }

    fn step(from: Option<Stage>, to: Stage, at: i64, by: Move, reason: Option<&str>) -> Step {
        Step {
            from,
            to,
            at: day(at),
            by,
            reason: reason.map(str::to_owned),
            policy_version: 1,
            caused_by: StepCause::Command,
        }
    }

    #[test]
    fn the_data_on_a_page_reads_as_text() {
        let history = History {
            lead_id: "l1".to_owned(),
            source_channel: Some(HOSTILE.to_owned()),
            steps: vec![
                step(None, Stage::Iql, 0, Move::Capture, None),
                step(Some(Stage::Iql), Stage::Mql, 1, Move::Promote, None),
                step(Some(Stage::Mql), Stage::Iql, 2, Move::Reject, Some(HOSTILE)),
            ],
            levels: vec![LevelStep {
                level: HOSTILE.to_owned(),
                at: day(1),
                policy_version: 1,
            }],
            touches: Vec::new(),
            erased: false,
            owners: vec![leadflow_domain::analytics::OwnerStep {
                at: day(1),
                from: None,
                to: Some(HOSTILE.to_owned()),
                cause: "ROUTE".to_owned(),
            }],
            sales_touches: Vec::new(),
            sla_breaches: Vec::new(),
        };
        let query = funnel::Query {
            period: Period {
                start: day(0),
                end: day(7),
            },
            grouping: Grouping::None,
            bucket: Bucket::Day,
            source_channel: Some(HOSTILE.to_owned()),
            attribution: None,
            top: 20,
            teams: std::collections::BTreeMap::new(),
        };
        let mut touched = history.clone();
        touched.touches = vec![leadflow_domain::analytics::Touch {
            event_id: "e1".to_owned(),
            at: day(0),
            value: Some(HOSTILE.to_owned()),
        }];
        let by: leadflow_domain::analytics::Attribution =
            format!("first:{HOSTILE}").parse().expect("an attribution");
        let grouped = funnel::Query {
            attribution: Some(by.clone()),
            ..query.clone()
        };
        let data = Dashboard {
            funnel: funnel::funnel(std::slice::from_ref(&history), &query),
            channels: vec![HOSTILE.to_owned()],
            calibration: None,
            learning: None,
            tail: Vec::new(),
            attribution: Some((by, funnel::funnel(&[touched], &grouped))),
            owners: funnel::funnel(
                std::slice::from_ref(&history),
                &funnel::Query {
                    grouping: Grouping::Owner,
                    source_channel: None,
                    ..query.clone()
                },
            ),
        };
        let page = dashboard(HOSTILE, &query, &data).into_string();
        assert!(!page.contains("<img"), "{page}");
        // the workspace, the chosen channel (value and text), the reason
        // (attribute and cell)
        assert!(
            page.contains(&format!("<b id=\"workspace\">{SHOWN}</b>")),
            "{page}"
        );
        // the owners' table: an owner id as text, in its attribute and cell
        assert!(
            page.contains(&format!(
                "<tr data-owner=\"{SHOWN}\"><td>{SHOWN}</td><td data-k=\"assigned\">1</td>"
            )),
            "{page}"
        );
        assert!(
            page.contains(&format!("<option value=\"{SHOWN}\" selected>{SHOWN}</option>")),
            "{page}"
        );
        assert!(
            page.contains(&format!(
                "<tr data-move=\"REJECT\" data-reason=\"{SHOWN}\"><td>REJECT</td><td>{SHOWN}</td>\
                 <td data-k=\"count\">1</td></tr>"
            )),
            "{page}"
        );
        assert!(
            page.contains(&format!(
                "<tr data-level=\"{SHOWN}\"><td>{SHOWN}</td><td data-k=\"leads\">1</td><td data-k=\"to_sql\">0</td>"
            )),
            "{page}"
        );
        // the attribution: its property (heading and form) and its group
        assert!(
            page.contains(&format!(
                "<tr data-group=\"{SHOWN}\"><td>{SHOWN}</td><td data-k=\"mqls\">1</td>"
            )),
            "{page}"
        );
        assert_eq!(page.matches(SHOWN).count(), 13, "{page}");
        // the funnel's numbers are there, and the page is whole
        assert!(page.contains("<tr data-stage=\"MQL\"><td>MQL</td><td data-k=\"leads\">1</td>"));
        assert!(page.contains("<p class=\"muted\">not available now; retry</p>"));
        assert!(page.contains("<li class=\"muted\">no transitions yet</li>"));
        assert!(page.ends_with("</script></main></body></html>"), "{page}");
    }

    #[test]
    fn a_refusal_reads_as_text() {
        let page = error_page(HOSTILE).into_string();
        assert!(
            page.contains(&format!("<p class=\"error\" id=\"error\">{SHOWN}</p>")),
            "{page}"
        );
        assert!(!page.contains("<img"));
    }
}

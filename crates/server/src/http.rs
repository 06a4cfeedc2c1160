//! The HTTP side: a funnel dashboard for people, server-rendered HTML with
//! inline SVG charts and a few lines of inline script for the live tail —
//! nothing fetched from elsewhere, so it works offline.
//!
//! With authentication on, every page needs a token with `analytics:read`:
//! `authorization: Bearer …`, or the cookie `/login` sets from a form. The
//! page shows that token's workspace only, and no personal field: leads by
//! their opaque id.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use leadflow_domain::analytics::evidence::Calibration;
use leadflow_domain::analytics::funnel::{self, Bucket, Funnel, Grouping, Period, Query as FunnelQuery};
use leadflow_domain::time::Span;
use leadflow_domain::{Stage, Timestamp};
use leadflow_engine::{CalibrationQuery, Engine};
use serde::Deserialize;

use crate::auth::{Authenticator, Principal};
use crate::metrics::Metrics;
use crate::present;

// `leadflow funnel` still finds the duration wording here.
pub(crate) use crate::present::duration as human;

/// The cookie `/login` sets.
const COOKIE: &str = "leadflow_token";
/// Transitions in the live tail.
const TAIL: u64 = 20;
/// The default period: the last 30 days.
const DEFAULT_DAYS: i64 = 30;
/// A period longer than this is refused (the page would not be read).
const MAX_DAYS: i64 = 3_660;

/// Pages rendered at once, at most: more wait for a free slot up to
/// [`BUSY_WAIT`], then get 503.
const PAGES_AT_ONCE: usize = 4;
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct Http {
    engine: Engine,
    auth: Arc<Authenticator>,
    /// Listening on loopback only: the login cookie may go over plain HTTP.
    loopback: bool,
    pages: tokio::sync::Semaphore,
    metrics: Arc<Metrics>,
}

impl Http {
    pub(crate) fn new(
        engine: Engine,
        auth: Arc<Authenticator>,
        loopback: bool,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            engine,
            auth,
            loopback,
            pages: tokio::sync::Semaphore::new(PAGES_AT_ONCE),
            metrics,
        }
    }
}

pub(crate) fn router(state: Arc<Http>) -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard", get(dashboard))
        .route("/dashboard/tail", get(tail))
        .route("/login", get(login_form).post(login))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::map_response(harden))
        .with_state(state)
}

/// The metrics of the caller's workspace, for a Prometheus scrape, let in
/// as a dashboard page is: with tokens, one with `analytics:read`; without,
/// a loopback host, for the workspace every call acts for. Counts per
/// stage, method and consumer, nothing about a lead.
async fn metrics(State(http): State<Arc<Http>>, headers: HeaderMap) -> Response {
    let principal = match principal_of(&http, &headers).await {
        Ok(p) => p,
        Err((status, message)) => {
            let mut response = (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{message}\n"),
            )
                .into_response();
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"leadflow\""),
                );
            }
            return response;
        }
    };
    match http.metrics.render(&principal.workspace).await {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not render metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Every page: nothing from elsewhere, never in a frame, never sniffed.
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// Without tokens (loopback only), a page is served for a loopback host
/// only: another site's name resolving to 127.0.0.1 (DNS rebinding) gets
/// nothing.
fn loopback_host(headers: &HeaderMap) -> bool {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(names_loopback)
}

/// Whether a Host header names this machine's loopback: an IPv4 literal in
/// 127.0.0.0/8, `[::1]`, or `localhost` (any case, with or without the root's
/// trailing dot, which names the same host and which no other site can
/// claim), each with or without a port. Anything else — a name that merely
/// starts like one (`127.0.0.1.nip.io`), another spelling of an address
/// (`2130706433`, `127.0.0.01`) — is refused: only the forms a browser sends
/// for a loopback address are known to be one.
fn names_loopback(host: &str) -> bool {
    let port_ok = |port: &str| {
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
    };
    if let Some(rest) = host.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        let port_fits = after.is_empty() || after.strip_prefix(':').is_some_and(port_ok);
        return port_fits
            && address
                .parse::<std::net::Ipv6Addr>()
                .is_ok_and(|a| a.is_loopback());
    }
    let name = match host.split_once(':') {
        Some((name, port)) if port_ok(port) => name,
        Some(_) => return false,
        None => host,
    };
    name.eq_ignore_ascii_case("localhost")
        || name.eq_ignore_ascii_case("localhost.")
        || name.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// The dashboard's filters, as the form sends them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    /// First day, `YYYY-MM-DD` (UTC).
    from: Option<String>,
    /// Day after the last, `YYYY-MM-DD` (UTC): the period is [from, to).
    to: Option<String>,
    /// Only leads whose first engagement came on this channel.
    channel: Option<String>,
    /// `day` or `week`; by default a day up to 92 days.
    bucket: Option<String>,
}

impl Filters {
    pub(crate) fn new(from: Option<String>, to: Option<String>, channel: Option<String>) -> Self {
        Self {
            from,
            to,
            channel,
            bucket: None,
        }
    }
}

fn page_error(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>leadflow</title>{STYLE}</head>\
         <body><main><h1>leadflow</h1><p class=\"error\" id=\"error\">{}</p>\
         <p><a href=\"/dashboard\">Back to the dashboard</a> · <a href=\"/login\">Sign in with a token</a></p>\
         </main></body></html>",
        escape(message)
    );
    let mut response = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"leadflow\""),
        );
    }
    response
}

/// The caller of a dashboard page, from a bearer header or the login
/// cookie; a refusal as a page.
async fn caller(state: &Http, headers: &HeaderMap) -> Result<Principal, Response> {
    principal_of(state, headers)
        .await
        .map_err(|(status, message)| page_error(status, &message))
}

/// The caller of a page or a scrape, from a bearer header or the login
/// cookie: as for `GetFunnel`, a token with `analytics:read` unless auth is
/// off, when the host must be a loopback one. A refusal's status and why.
async fn principal_of(state: &Http, headers: &HeaderMap) -> Result<Principal, (StatusCode, String)> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let from_cookie = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| format!("Bearer {value}"))
    };
    let authorization = bearer.or_else(from_cookie);
    if state.auth.is_open() && !loopback_host(headers) {
        return Err((
            StatusCode::FORBIDDEN,
            "without tokens the HTTP side answers to a loopback host only (localhost, 127.0.0.1, [::1])"
                .to_owned(),
        ));
    }
    state
        .auth
        .dashboard_principal(authorization.as_deref())
        .await
        .map_err(|(code, message)| {
            let status = match code {
                tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
                tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
                tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, message)
        })
}

fn day_start(text: &str, field: &str) -> Result<Timestamp, String> {
    let date = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{field}: {text:?} is not a date (YYYY-MM-DD)"))?;
    let midnight = date
        .and_hms_opt(0, 0, 0)
        .ok_or_else(|| format!("{field}: {text:?} is not a date"))?
        .and_utc();
    Ok(Timestamp::from_micros(midnight.timestamp_micros()))
}

/// The filters as a funnel query, or what is wrong with them.
pub(crate) fn query_of(filters: &Filters, now: Timestamp) -> Result<FunnelQuery, String> {
    let day = Span::from_days(1).as_micros();
    let tomorrow = Timestamp::from_micros((now.as_micros().div_euclid(day) + 1) * day);
    let end = match filters.to.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => day_start(text, "to")?,
        None => tomorrow,
    };
    let start = match filters.from.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => day_start(text, "from")?,
        None => end.saturating_sub(Span::from_days(DEFAULT_DAYS)),
    };
    if end <= start {
        return Err("to: the period is empty or reversed: 'to' must be after 'from'".to_owned());
    }
    if end.since(start) > Span::from_days(MAX_DAYS) {
        return Err(format!("the period is longer than {MAX_DAYS} days"));
    }
    let bucket = match filters.bucket.as_deref().unwrap_or("") {
        "day" => Bucket::Day,
        "week" => Bucket::Week,
        "" if end.since(start) <= Span::from_days(92) => Bucket::Day,
        "" => Bucket::Week,
        other => return Err(format!("bucket: {other:?} is neither day nor week")),
    };
    if bucket == Bucket::Day && end.since(start) > Span::from_days(1_000) {
        return Err("bucket: more than 1000 days: use week".to_owned());
    }
    let channel = filters
        .channel
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    if channel.as_ref().is_some_and(|c| c.chars().count() > 128) {
        return Err("channel: longer than 128 characters".to_owned());
    }
    Ok(FunnelQuery {
        period: Period { start, end },
        grouping: Grouping::None,
        bucket,
        source_channel: channel,
    })
}

async fn dashboard(
    State(state): State<Arc<Http>>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
) -> Response {
    let principal = match caller(&state, &headers).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let query = match query_of(&filters, state.engine.now()) {
        Ok(q) => q,
        Err(message) => return page_error(StatusCode::BAD_REQUEST, &message),
    };
    let Ok(Ok(_slot)) = tokio::time::timeout(BUSY_WAIT, state.pages.acquire()).await else {
        return page_error(StatusCode::SERVICE_UNAVAILABLE, "the dashboard is busy; retry");
    };
    let ws = principal.workspace.as_str();
    let loaded = async {
        let funnel = state.engine.funnel(ws, &query).await?;
        let by_channel = state
            .engine
            .funnel(
                ws,
                &FunnelQuery {
                    grouping: Grouping::SourceChannel,
                    source_channel: None,
                    ..query.clone()
                },
            )
            .await?;
        // a calibration that cannot be made leaves its section empty
        let calibration = state
            .engine
            .calibrate(
                ws,
                &CalibrationQuery {
                    period: query.period,
                    policy_version: None,
                    target_precision: None,
                    step: 5.0,
                    max_cutoff: None,
                },
            )
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "no calibration for the dashboard"))
            .ok();
        let tail = state.engine.latest_transitions(ws, TAIL).await?;
        Ok::<_, leadflow_engine::EngineError>((funnel, by_channel, calibration, tail))
    };
    match loaded.await {
        Ok((funnel, by_channel, calibration, tail)) => {
            let channels: Vec<String> = by_channel.groups.into_iter().map(|g| g.key).collect();
            let html = render(&Page {
                workspace: ws,
                query: &query,
                channels: &channels,
                funnel: &funnel,
                calibration: calibration.as_ref().map(|c| &c.calibration),
                tail: &tail,
            });
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                html,
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "the dashboard could not be read");
            page_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the data could not be read; retry",
            )
        }
    }
}

/// The live tail as an HTML fragment, for the page's script.
async fn tail(State(state): State<Arc<Http>>, headers: HeaderMap) -> Response {
    let principal = match caller(&state, &headers).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    match state.engine.latest_transitions(&principal.workspace, TAIL).await {
        Ok(tail) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            tail_rows(&tail),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "the live tail could not be read");
            page_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the data could not be read; retry",
            )
        }
    }
}

async fn login_form() -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>leadflow: sign in</title>{STYLE}</head>\
         <body><main><h1>leadflow</h1><form method=\"post\" action=\"/login\">\
         <label>Token with analytics:read <input type=\"password\" name=\"token\" autocomplete=\"off\"></label> \
         <button type=\"submit\">Sign in</button></form></main></body></html>"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

#[derive(Debug, Deserialize)]
struct Login {
    token: String,
}

async fn login(State(state): State<Arc<Http>>, Form(form): Form<Login>) -> Response {
    let token = form.token.trim();
    let valid = token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return page_error(StatusCode::UNAUTHORIZED, "the token is not valid");
    }
    let header_value = format!("Bearer {token}");
    if let Err((_, message)) = state.auth.dashboard_principal(Some(&header_value)).await {
        return page_error(StatusCode::UNAUTHORIZED, &message);
    }
    let secure = if state.loopback { "" } else { "; Secure" };
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}");
    let mut response = Redirect::to("/dashboard").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

// ---- rendering --------------------------------------------------------------------

struct Page<'a> {
    workspace: &'a str,
    query: &'a FunnelQuery,
    channels: &'a [String],
    funnel: &'a Funnel,
    calibration: Option<&'a Calibration>,
    tail: &'a [leadflow_engine::TransitionView],
}

/// `text` safe inside HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const COLORS: [&str; 5] = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759"];

const STYLE: &str = "<style>\
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
#tail li{font-family:ui-monospace,monospace;font-size:12px;margin:2px 0}\
</style>";

fn render(p: &Page<'_>) -> String {
    let mut html = String::with_capacity(32 * 1024);
    let period = p.query.period;
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>leadflow funnel</title>{STYLE}</head>\
         <body><main><h1>leadflow funnel</h1>\
         <p class=\"muted\">Workspace <b id=\"workspace\">{ws}</b> · \
         <span id=\"period\" data-start=\"{start}\" data-end=\"{end}\">{days}</span></p>",
        ws = escape(p.workspace),
        start = present::date(period.start),
        end = present::date(period.end),
        days = present::days(period),
    );
    filters(&mut html, p);
    let Some(group) = p.funnel.groups.first() else {
        html.push_str("<p>No data.</p></main></body></html>");
        return html;
    };
    funnel_section(&mut html, group);
    html.push_str("<div class=\"grid\">");
    time_in_stage(&mut html, group);
    reasons(&mut html, group);
    html.push_str("</div>");
    velocity(&mut html, group, &p.funnel.buckets, p.query.bucket);
    html.push_str("<div class=\"grid\">");
    calibration(&mut html, p.calibration);
    let _ = write!(
        html,
        "<section><h2>Live tail <span class=\"muted\">latest transitions, every 5 s</span></h2>\
         <ol id=\"tail\">{}</ol></section>",
        tail_rows(p.tail)
    );
    html.push_str("</div>");
    html.push_str(
        "<script>\
         setInterval(function(){fetch('/dashboard/tail',{credentials:'same-origin'})\
         .then(function(r){return r.ok?r.text():null})\
         .then(function(t){if(t!==null){document.getElementById('tail').innerHTML=t;}})\
         .catch(function(){});},5000);\
         </script></main></body></html>",
    );
    html
}

fn filters(html: &mut String, p: &Page<'_>) {
    let period = p.query.period;
    let selected = |on: bool| if on { " selected" } else { "" };
    let _ = write!(
        html,
        "<section><form id=\"filters\" method=\"get\" action=\"/dashboard\">\
         <label>From <input type=\"date\" name=\"from\" value=\"{}\"></label>\
         <label>To (exclusive) <input type=\"date\" name=\"to\" value=\"{}\"></label>\
         <label>Source channel <select name=\"channel\"><option value=\"\">all</option>",
        present::date(period.start),
        present::date(period.end),
    );
    let current = p.query.source_channel.as_deref();
    let mut channels: Vec<&str> = p.channels.iter().map(String::as_str).collect();
    if let Some(c) = current
        && !channels.contains(&c)
    {
        channels.push(c);
    }
    for c in channels {
        let _ = write!(
            html,
            "<option value=\"{v}\"{s}>{v}</option>",
            v = escape(c),
            s = selected(current == Some(c))
        );
    }
    let _ = write!(
        html,
        "</select></label><label>Velocity by <select name=\"bucket\">\
         <option value=\"day\"{}>day</option><option value=\"week\"{}>week</option></select></label>\
         <button type=\"submit\">Show</button></form></section>",
        selected(p.query.bucket == Bucket::Day),
        selected(p.query.bucket == Bucket::Week),
    );
}

fn funnel_section(html: &mut String, g: &funnel::Group) {
    const MAIN: [Stage; 4] = [Stage::Iql, Stage::Mql, Stage::Sql, Stage::Customer];
    html.push_str(
        "<section><h2>Funnel</h2><h3>Leads entering each stage <span class=\"muted\">in the period</span></h3>",
    );
    let leads = |stage: Stage| g.entries.iter().find(|e| e.stage == stage).map_or(0, |e| e.leads);
    let ticks = count_ticks(MAIN.iter().map(|&s| leads(s)).max().unwrap_or(0));
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let bars: Vec<HBar> = MAIN
        .iter()
        .enumerate()
        .map(|(i, &stage)| HBar {
            label: stage.as_str().to_owned(),
            value: leads(stage) as f64,
            text: leads(stage).to_string(),
            color: COLORS[i],
            data: format!("data-bar=\"{}\" data-leads=\"{}\"", stage.as_str(), leads(stage)),
        })
        .collect();
    #[allow(clippy::cast_precision_loss)]
    hbars(
        html,
        "funnel-chart",
        &bars,
        &ticks
            .iter()
            .map(|&t| (t as f64, t.to_string()))
            .collect::<Vec<_>>(),
        "leads entering the stage in the period",
    );
    html.push_str(
        "<h3>Cohort conversion <span class=\"muted\">of the leads that first entered a stage in the period, \
         the share that has entered the later one since</span></h3>",
    );
    let bars: Vec<HBar> = g
        .conversions
        .iter()
        .map(|c| HBar {
            label: format!("{} → {}", c.from.as_str(), c.to.as_str()),
            value: c.rate,
            text: present::share(c.rate, c.converted, c.cohort),
            color: COLORS[0],
            data: format!(
                "data-bar=\"{}-{}\" data-rate=\"{}\"",
                c.from.as_str(),
                c.to.as_str(),
                c.rate
            ),
        })
        .collect();
    hbars(
        html,
        "conversion-chart",
        &bars,
        &[0.0, 0.25, 0.5, 0.75, 1.0].map(|r| (r, present::round_percent(r))),
        "converted, % of the cohort",
    );
    html.push_str(
        "<table id=\"funnel\"><thead><tr><th>Stage</th><th>Leads entering</th><th>Entries</th></tr></thead><tbody>",
    );
    for e in &g.entries {
        let _ = write!(
            html,
            "<tr data-stage=\"{s}\"><td>{s}</td><td data-k=\"leads\">{}</td><td data-k=\"entries\">{}</td></tr>",
            e.leads,
            e.entries,
            s = e.stage.as_str()
        );
    }
    html.push_str("</tbody></table>");
    html.push_str(
        "<table id=\"conversions\"><thead><tr><th>Cohort</th><th>Leads</th><th>Converted</th><th>Rate</th>\
         <th>Time p50</th><th>Time p90</th></tr></thead><tbody>",
    );
    for c in &g.conversions {
        let _ = write!(
            html,
            "<tr data-conv=\"{f}-{t}\"><td>{f} → {t}</td><td data-k=\"cohort\">{}</td><td data-k=\"converted\">{}</td>\
             <td data-k=\"rate\" data-v=\"{}\">{}</td><td data-k=\"p50\" data-v=\"{}\">{}</td><td data-k=\"p90\" data-v=\"{}\">{}</td></tr>",
            c.cohort,
            c.converted,
            c.rate,
            present::percent(c.rate),
            c.p50.map_or(-1, |s| s.as_micros() / 1_000_000),
            present::duration(c.p50),
            c.p90.map_or(-1, |s| s.as_micros() / 1_000_000),
            present::duration(c.p90),
            f = c.from.as_str(),
            t = c.to.as_str(),
        );
    }
    let _ = write!(
        html,
        "</tbody></table><p class=\"muted\">Of the MQL cohort: rejected <b id=\"rejected\" data-v=\"{}\">{}</b> \
         ({}), recycled <b id=\"recycled\" data-v=\"{}\">{}</b> ({}).</p></section>",
        g.rejected.rate,
        present::percent(g.rejected.rate),
        present::part_of(g.rejected.count, g.rejected.cohort),
        g.recycled.rate,
        present::percent(g.recycled.rate),
        present::part_of(g.recycled.count, g.recycled.cohort),
    );
}

fn time_in_stage(html: &mut String, g: &funnel::Group) {
    html.push_str(
        "<section><h2>Time in stage <span class=\"muted\">stays that ended in the period</span></h2>\
         <table id=\"time-in-stage\"><thead><tr><th>Stage</th><th>Stays</th><th>p50</th><th>p90</th></tr></thead><tbody>",
    );
    for t in &g.time_in_stage {
        let _ = write!(
            html,
            "<tr data-stage=\"{s}\"><td>{s}</td><td data-k=\"stays\">{}</td><td data-k=\"p50\" data-v=\"{}\">{}</td>\
             <td data-k=\"p90\" data-v=\"{}\">{}</td></tr>",
            t.stays,
            t.p50.map_or(-1, |s| s.as_micros() / 1_000_000),
            present::duration(t.p50),
            t.p90.map_or(-1, |s| s.as_micros() / 1_000_000),
            present::duration(t.p90),
            s = t.stage.as_str(),
        );
    }
    html.push_str("</tbody></table></section>");
}

fn reasons(html: &mut String, g: &funnel::Group) {
    html.push_str(
        "<section><h2>Why leads were sent back</h2><table id=\"reasons\"><thead><tr><th>Move</th><th>Reason</th>\
         <th>Count</th></tr></thead><tbody>",
    );
    if g.reasons.is_empty() {
        html.push_str("<tr><td colspan=\"3\" class=\"muted\">none in the period</td></tr>");
    }
    for r in &g.reasons {
        let _ = write!(
            html,
            "<tr data-move=\"{m}\" data-reason=\"{reason}\"><td>{m}</td><td>{reason}</td><td data-k=\"count\">{}</td></tr>",
            r.count,
            m = r.by.as_str(),
            reason = escape(&r.reason),
        );
    }
    html.push_str("</tbody></table></section>");
}

/// Integer ticks from 0 that cover `max`: steps of 1, 2 or 5 times a power
/// of ten, at most five of them.
fn count_ticks(max: u64) -> Vec<u64> {
    let max = max.max(1);
    let mut power = 1_u64;
    loop {
        for step in [power, power.saturating_mul(2), power.saturating_mul(5)] {
            let steps = max.div_ceil(step);
            if steps <= 5 {
                return (0..=steps).map(|i| i.saturating_mul(step)).collect();
            }
        }
        power = power.saturating_mul(10);
    }
}

/// A bar of [`hbars`]: its row's label, its value on the axis, the text
/// beside it, and `data-` attributes for whoever reads the page.
struct HBar {
    label: String,
    value: f64,
    text: String,
    color: &'static str,
    data: String,
}

/// A horizontal bar chart: one row per bar, from 0 up to the last tick.
fn hbars(html: &mut String, id: &str, bars: &[HBar], ticks: &[(f64, String)], x_title: &str) {
    let (left, plot, row, top) = (130.0, 680.0, 30.0, 6.0);
    let end = ticks.last().map_or(1.0, |t| t.0).max(f64::MIN_POSITIVE);
    #[allow(clippy::cast_precision_loss)]
    let axis = top + bars.len() as f64 * row + 4.0;
    let _ = write!(
        html,
        "<svg id=\"{id}\" viewBox=\"0 0 1000 {h}\" width=\"100%\" role=\"img\" aria-label=\"{t}\">",
        h = axis + 40.0,
        t = escape(x_title),
    );
    for (x, label) in ticks {
        let x = left + x / end * plot;
        let _ = write!(
            html,
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{axis}\" stroke=\"#eef0f3\"></line>\
             <text x=\"{x:.1}\" y=\"{ly}\" text-anchor=\"middle\">{label}</text>",
            ly = axis + 15.0,
            label = escape(label),
        );
    }
    for (i, bar) in bars.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let y = top + i as f64 * row;
        let w = (bar.value / end).clamp(0.0, 1.0) * plot;
        let _ = write!(
            html,
            "<text x=\"0\" y=\"{ty}\">{label}</text>\
             <rect class=\"bar\" {data} x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"{bh}\" fill=\"{c}\" rx=\"2\">\
             <title>{label}: {text}</title></rect>\
             <text class=\"value\" x=\"{vx:.1}\" y=\"{ty}\">{text}</text>",
            ty = y + row / 2.0 + 1.0,
            label = escape(&bar.label),
            data = bar.data,
            bh = row - 8.0,
            c = bar.color,
            vx = left + w + 8.0,
            text = escape(&bar.text),
        );
    }
    let _ = write!(
        html,
        "<line class=\"x-axis\" x1=\"{left}\" y1=\"{axis}\" x2=\"{right}\" y2=\"{axis}\" stroke=\"#99a\"></line>\
         <text class=\"axis-title\" data-axis=\"x\" x=\"{mid}\" y=\"{ty}\" text-anchor=\"middle\">{title}</text></svg>",
        right = left + plot,
        mid = left + plot / 2.0,
        ty = axis + 34.0,
        title = escape(x_title),
    );
}

/// The plot area of a chart with a vertical value axis, in the SVG's
/// units, with room on the left for the value labels and the axis title.
/// Values from 0 to `y_end` map to heights through [`Frame::y`].
struct Frame {
    view_width: f64,
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    y_end: f64,
}

impl Frame {
    /// A frame `view_width` wide whose value axis ends at the last of
    /// `y_ticks`.
    fn new(view_width: f64, y_ticks: &[(f64, String)]) -> Self {
        Self {
            view_width,
            left: 62.0,
            top: 8.0,
            width: view_width - 62.0 - 14.0,
            height: 200.0,
            y_end: y_ticks.last().map_or(1.0, |t| t.0).max(f64::MIN_POSITIVE),
        }
    }

    fn y(&self, value: f64) -> f64 {
        self.top + self.height - (value / self.y_end).clamp(0.0, 1.0) * self.height
    }

    /// Opens the SVG and draws the frame — grid lines and labels at
    /// `y_ticks`, `x_labels` at their x, the axes and their titles; the
    /// caller draws the data and closes it.
    fn open(
        &self,
        html: &mut String,
        id: &str,
        y_ticks: &[(f64, String)],
        x_labels: &[(f64, String)],
        (x_title, y_title): (&str, &str),
    ) {
        let frame = self;
        let base = frame.top + frame.height;
        let _ = write!(
            html,
            "<svg id=\"{id}\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"{t}\">",
            w = frame.view_width,
            h = base + 42.0,
            t = escape(&format!("{y_title} by {x_title}")),
        );
        for (value, label) in y_ticks {
            let y = frame.y(*value);
            let _ = write!(
                html,
                "<line x1=\"{l}\" y1=\"{y:.1}\" x2=\"{r}\" y2=\"{y:.1}\" stroke=\"#eef0f3\"></line>\
                 <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>",
                l = frame.left,
                r = frame.left + frame.width,
                tx = frame.left - 6.0,
                ty = y + 4.0,
                label = escape(label),
            );
        }
        for (x, label) in x_labels {
            let _ = write!(
                html,
                "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\">{label}</text>",
                y = base + 15.0,
                label = escape(label),
            );
        }
        let _ = write!(
            html,
            "<line class=\"x-axis\" x1=\"{l}\" y1=\"{base}\" x2=\"{r}\" y2=\"{base}\" stroke=\"#99a\"></line>\
             <line class=\"y-axis\" x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{base}\" stroke=\"#99a\"></line>\
             <text class=\"axis-title\" data-axis=\"x\" x=\"{mid}\" y=\"{xt}\" text-anchor=\"middle\">{x_title}</text>\
             <text class=\"axis-title\" data-axis=\"y\" transform=\"rotate(-90)\" x=\"{ym:.1}\" y=\"12\" text-anchor=\"middle\">{y_title}</text>",
            l = frame.left,
            r = frame.left + frame.width,
            t = frame.top,
            mid = frame.left + frame.width / 2.0,
            xt = base + 36.0,
            ym = -(frame.top + frame.height / 2.0),
            x_title = escape(x_title),
            y_title = escape(y_title),
        );
    }
}

/// Entries per bucket as bars, one per bucket, stacked by stage: counts of
/// separate days or weeks, which a line between them would misstate.
fn velocity(html: &mut String, g: &funnel::Group, buckets: &[Timestamp], bucket: Bucket) {
    let unit = match bucket {
        Bucket::Day => "day",
        Bucket::Week => "week",
    };
    let _ = write!(
        html,
        "<section><h2>Velocity <span class=\"muted\">entries into each stage per {unit}</span></h2>"
    );
    let series = g.velocity.series(buckets.len());
    let totals: Vec<u64> = (0..buckets.len())
        .map(|i| series.iter().map(|s| s[i]).sum())
        .collect();
    let ticks = count_ticks(totals.iter().copied().max().unwrap_or(0));
    #[allow(clippy::cast_precision_loss)]
    let y_ticks: Vec<(f64, String)> = ticks.iter().map(|&t| (t as f64, t.to_string())).collect();
    let frame = Frame::new(1000.0, &y_ticks);
    #[allow(clippy::cast_precision_loss)]
    let slot = frame.width / buckets.len().max(1) as f64;
    // about seven dates along the axis, whatever the number of bars
    let every = buckets.len().div_ceil(7).max(1);
    #[allow(clippy::cast_precision_loss)]
    let x_labels: Vec<(f64, String)> = buckets
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, &t)| (frame.left + (i as f64 + 0.5) * slot, present::date(t)))
        .collect();
    let x_title = match bucket {
        Bucket::Day => "day (UTC)",
        Bucket::Week => "week, by its first day (UTC)",
    };
    let y_title = format!("entries per {unit}");
    frame.open(html, "velocity", &y_ticks, &x_labels, (x_title, &y_title));
    let bar = (slot * 0.8).max(0.5);
    for (i, &start) in buckets.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let x = frame.left + i as f64 * slot + (slot - bar) / 2.0;
        let mut below = 0_u64;
        for (s, stage) in Stage::ALL.iter().enumerate() {
            let n = series[s][i];
            if n == 0 {
                continue;
            }
            #[allow(clippy::cast_precision_loss)]
            let (bottom, top) = (frame.y(below as f64), frame.y((below + n) as f64));
            below += n;
            let _ = write!(
                html,
                "<rect class=\"bar\" data-bar=\"{st}\" data-bucket=\"{d}\" data-n=\"{n}\" x=\"{x:.1}\" y=\"{top:.1}\" \
                 width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{c}\"><title>{d} {st}: {n}</title></rect>",
                st = stage.as_str(),
                d = present::date(start),
                h = bottom - top,
                c = COLORS[s],
            );
        }
    }
    html.push_str("</svg><p class=\"muted\">");
    for (i, stage) in Stage::ALL.iter().enumerate() {
        let _ = write!(
            html,
            "<span style=\"color:{}\">■</span> {} ",
            COLORS[i],
            stage.as_str()
        );
    }
    html.push_str("</p></section>");
}

fn calibration(html: &mut String, c: Option<&Calibration>) {
    html.push_str(
        "<section><h2>MQL threshold calibration <span class=\"muted\">leads captured in the period, \
         all channels; peak engagement before the outcome</span></h2>",
    );
    let Some(c) = c else {
        html.push_str("<p class=\"muted\">not available now; retry</p></section>");
        return;
    };
    let _ = write!(
        html,
        "<p class=\"muted\">{} leads, {} reached SQL, {} customers.",
        c.leads, c.reached_sql, c.customers
    );
    if let Some(s) = &c.suggested {
        let _ = write!(
            html,
            " Best F1 at <b id=\"suggested\" data-v=\"{}\">{}</b> (precision {}, recall {}).",
            s.cutoff,
            s.cutoff,
            s.precision
                .map_or_else(|| present::NONE.to_owned(), present::percent),
            s.recall
                .map_or_else(|| present::NONE.to_owned(), present::percent),
        );
    }
    html.push_str("</p>");
    let first = c.points.first().map_or(0.0, |p| p.cutoff);
    let last = c.points.last().map_or(0.0, |p| p.cutoff);
    let span = if last > first { last - first } else { 1.0 };
    let y_ticks: Vec<(f64, String)> = [0.0, 0.25, 0.5, 0.75, 1.0]
        .iter()
        .map(|&v| (v, present::round_percent(v)))
        .collect();
    let frame = Frame::new(500.0, &y_ticks);
    let x = |cutoff: f64| frame.left + (cutoff - first) / span * frame.width;
    let marks: &[f64] = if last > first {
        &[first, (first + last) / 2.0, last]
    } else {
        &[first]
    };
    let x_labels: Vec<(f64, String)> = marks.iter().map(|&v| (x(v), present::score(v))).collect();
    frame.open(
        html,
        "calibration",
        &y_ticks,
        &x_labels,
        ("MQL cut-off: peak engagement score", "precision, recall"),
    );
    type Pick = fn(&leadflow_domain::analytics::evidence::CutPoint) -> Option<f64>;
    let series: [(&str, &str, Pick); 2] = [
        ("precision", COLORS[0], |p| p.precision),
        ("recall", COLORS[1], |p| p.recall),
    ];
    for (name, color, pick) in series {
        // a cut-off no lead passes has no precision: the line stops there
        let points: Vec<String> = c
            .points
            .iter()
            .filter_map(|p| Some(format!("{:.1},{:.1}", x(p.cutoff), frame.y(pick(p)?))))
            .collect();
        let _ = write!(
            html,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\" data-series=\"{name}\"></polyline>",
            points.join(" "),
        );
    }
    let _ = write!(
        html,
        "</svg><p class=\"muted\"><span style=\"color:{}\">■</span> precision: of the leads at or above the cut-off, \
         the share that reached SQL<br><span style=\"color:{}\">■</span> recall: of the customers, the share at or \
         above it</p></section>",
        COLORS[0], COLORS[1]
    );
}

fn tail_rows(tail: &[leadflow_engine::TransitionView]) -> String {
    let mut out = String::new();
    if tail.is_empty() {
        out.push_str("<li class=\"muted\">no transitions yet</li>");
    }
    for t in tail {
        let r = &t.record;
        let _ = write!(
            out,
            "<li data-lead=\"{lead}\">{at} {lead} {from} → {to} {by}{reason}</li>",
            at = escape(&r.at.to_string()),
            lead = escape(&t.lead_id),
            from = r.from.map_or("·", Stage::as_str),
            to = r.to.as_str(),
            by = r.by.as_str(),
            // Only reasons the policy defines: a PROMOTE's free text may
            // name a person.
            reason = r
                .reason
                .as_deref()
                .filter(|_| leadflow_domain::lifecycle::reason_from_policy(r.by))
                .map(|x| format!(" ({})", escape(x)))
                .unwrap_or_default(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<b a=\"1\">'&'</b>"),
            "&lt;b a=&quot;1&quot;&gt;&#39;&amp;&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn count_axes_end_on_a_round_number() {
        assert_eq!(count_ticks(0), [0, 1]);
        assert_eq!(count_ticks(5), [0, 1, 2, 3, 4, 5]);
        assert_eq!(count_ticks(6), [0, 2, 4, 6]);
        assert_eq!(count_ticks(11), [0, 5, 10, 15]);
        assert_eq!(count_ticks(26), [0, 10, 20, 30]);
        assert_eq!(count_ticks(4_321), [0, 1_000, 2_000, 3_000, 4_000, 5_000]);
        assert_eq!(count_ticks(u64::MAX).last(), Some(&u64::MAX));
    }

    #[test]
    fn only_loopback_hosts_count_as_loopback() {
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:65535",
            "127.1.2.3",
            "127.255.255.254:80",
            "[::1]",
            "[::1]:8080",
            "[0:0:0:0:0:0:0:1]",
        ] {
            assert!(names_loopback(host), "{host}");
        }
        for host in [
            "",
            "127.evil.example",
            "127.0.0.1.nip.io",
            "127.0.0.1.nip.io:8080",
            "localhost.evil.example",
            "evil.localhost",
            "localhost..",
            "128.0.0.1",
            "0.0.0.0",
            "127.0.0.01",
            "127.1",
            "2130706433",
            "0x7f000001",
            "127.0.0.1:",
            "127.0.0.1:+80",
            "127.0.0.1:65536",
            "127.0.0.1:80:80",
            "127.0.0.1 ",
            "::1",
            "[::1",
            "[::1]8080",
            "[::1]:",
            "[::1].evil.example",
            "[::2]",
            "[::ffff:127.0.0.1]",
            "[::1%25lo]",
        ] {
            assert!(!names_loopback(host), "{host:?}");
        }
    }

    #[test]
    fn filters_become_a_query_or_a_reason() {
        let now = Timestamp::from_secs(1_790_812_800 + 3_600); // 2026-10-01T01:00Z
        let q = query_of(&Filters::default(), now).expect("defaults");
        assert_eq!(present::date(q.period.end), "2026-10-02");
        assert_eq!(present::date(q.period.start), "2026-09-02");
        assert_eq!(q.bucket, Bucket::Day);
        let f = |from: &str, to: &str| Filters {
            from: Some(from.to_owned()),
            to: Some(to.to_owned()),
            ..Filters::default()
        };
        assert!(query_of(&f("2026-10-05", "2026-10-05"), now).is_err());
        assert!(query_of(&f("2026-10-05", "2026-10-01"), now).is_err());
        assert!(query_of(&f("yesterday", "2026-10-01"), now).is_err());
        let long = query_of(&f("2025-01-01", "2026-01-01"), now).expect("a year");
        assert_eq!(long.bucket, Bucket::Week);
        let bad_bucket = Filters {
            bucket: Some("month".to_owned()),
            ..Filters::default()
        };
        assert!(query_of(&bad_bucket, now).is_err());
    }
}

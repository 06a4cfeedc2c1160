//! The HTTP side: a headless Chromium loads the funnel dashboard against
//! the scripted history of `analytics.rs`, and the numbers it shows are
//! those `GetFunnel` answers. With tokens on, the page needs
//! `analytics:read` and shows the token's workspace only.
//!
//! Chromium is `/usr/bin/chromium` (or `$LEADFLOW_CHROMIUM`); without it the
//! browser test is ignored, marked `[no chromium]`, unless
//! `LEADFLOW_REQUIRE_BROWSER=1`, where it fails.
//! `LEADFLOW_SCREENSHOT=path` saves a screenshot of the page.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use leadflow_domain::Timestamp;
use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::analytics_service_client::AnalyticsServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::analytics::{period, seed};

/// 2026-11-01: day 31 of the script.
const NOW: Timestamp = Timestamp::from_secs(1_790_812_800 + 31 * 86_400);
/// Days 0 to 20 of the script.
const PAGE: &str = "/dashboard?from=2026-10-01&to=2026-10-21";

/// A second server on the test's engine, with the HTTP side on (and
/// tokens required if `require_auth`).
pub(crate) async fn with_http(
    server: &TestServer,
    require_auth: bool,
) -> anyhow::Result<leadflow_server::Running> {
    let config = leadflow_server::Config {
        require_auth,
        ..loopback(server.database_url())
    };
    let parts = leadflow_server::Parts {
        http: true,
        ..GRPC_ONLY
    };
    leadflow_server::start(&config, server.engine.clone(), parts).await
}

/// A GET over plain HTTP/1.1: the status and the body.
pub(crate) async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String)> {
    request(addr, "GET", path, headers, "").await
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut text = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        text.push_str(&format!("host: {addr}\r\n"));
    }
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(text.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw)).await??;
    let raw = String::from_utf8_lossy(&raw).to_string();
    let status = raw.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, raw))
}

/// The page as the browser built it (after its scripts ran).
fn browse(browser: &str, url: &str, screenshot: bool) -> anyhow::Result<String> {
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let profile = std::env::temp_dir().join(format!(
        "leadflow-chromium-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=2000",
            "--dump-dom",
            url,
        ])
        .output()?;
    if let Some(path) = std::env::var("LEADFLOW_SCREENSHOT").ok().filter(|_| screenshot) {
        let shot = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                &format!("--user-data-dir={}", profile.display()),
                "--window-size=1200,2250",
                &format!("--screenshot={path}"),
                url,
            ])
            .output()?;
        anyhow::ensure!(
            shot.status.success(),
            "screenshot: {}",
            String::from_utf8_lossy(&shot.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&profile);
    anyhow::ensure!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// The text of the first element after `marker` with `data-k="key"`.
fn cell(dom: &str, marker: &str, key: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let rest = &dom[at..];
    let row_end = rest.find("</tr>").unwrap_or(rest.len());
    let row = &rest[..row_end];
    let start = row.find(&format!("data-k=\"{key}\""))?;
    let after = &row[start..];
    let open = after.find('>')? + 1;
    let close = after[open..].find('<')?;
    Some(after[open..open + close].trim().to_owned())
}

/// The `data-v` of the first element after `marker` with `data-k="key"`.
fn value(dom: &str, marker: &str, key: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let rest = &dom[at..];
    let row = &rest[..rest.find("</tr>").unwrap_or(rest.len())];
    let start =
        row.find(&format!("data-k=\"{key}\" data-v=\""))? + format!("data-k=\"{key}\" data-v=\"").len();
    let end = row[start..].find('"')?;
    Some(row[start..start + end].to_owned())
}

/// The chart `id` as the browser built it.
fn chart<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<svg id=\"{id}\""))
        .unwrap_or_else(|| panic!("no chart {id}"));
    let end = dom[start..].find("</svg>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// The attributes of every `<tag …>` in `html`.
fn tags(html: &str, tag: &str) -> Vec<HashMap<String, String>> {
    html.match_indices(&format!("<{tag} "))
        .map(|(at, open)| {
            let rest = &html[at + open.len()..];
            let mut inside = &rest[..rest.find('>').unwrap_or(rest.len())];
            let mut attributes = HashMap::new();
            while let Some((name, after)) = inside.split_once("=\"") {
                let Some((value, next)) = after.split_once('"') else {
                    break;
                };
                attributes.insert(name.trim().to_owned(), value.to_owned());
                inside = next;
            }
            attributes
        })
        .collect()
}

/// The number in attribute `name`.
fn number(attributes: &HashMap<String, String>, name: &str) -> f64 {
    attributes
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {name} in {attributes:?}"))
}

/// The bars of a chart: `data-bar` and its attributes.
fn bars(svg: &str) -> Vec<HashMap<String, String>> {
    tags(svg, "rect")
        .into_iter()
        .filter(|a| a.contains_key("data-bar"))
        .collect()
}

/// The texts of the elements of a chart whose tag holds `marker`.
fn texts(svg: &str, marker: &str) -> Vec<String> {
    svg.match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = &svg[at..];
            let open = rest.find('>')? + 1;
            let close = rest[open..].find('<')?;
            Some(rest[open..open + close].to_owned())
        })
        .collect()
}

/// The texts of a chart's axis titles.
fn axis_titles(svg: &str) -> Vec<String> {
    texts(svg, "class=\"axis-title\"")
}

/// The length of a chart's x axis.
fn x_axis(svg: &str) -> f64 {
    let axis = tags(svg, "line")
        .into_iter()
        .find(|a| a.get("class").map(String::as_str) == Some("x-axis"))
        .expect("an x axis");
    number(&axis, "x2") - number(&axis, "x1")
}

/// `YYYY-MM-DD` of a UTC instant.
fn date(t: &prost_types::Timestamp) -> String {
    Timestamp::from_secs(t.seconds).to_string()[..10].to_owned()
}

fn stage_name(stage: i32) -> &'static str {
    pb::Stage::try_from(stage)
        .map_or("?", |s| s.as_str_name())
        .trim_start_matches("STAGE_")
}

async fn the_page_shows_what_get_funnel_answers(mut server: TestServer) -> anyhow::Result<()> {
    let browser = chromium().ok_or_else(|| anyhow::anyhow!("no Chromium"))?;
    seed(&mut server).await?;
    let http = with_http(&server, false).await?;
    let addr = http.http_addr.expect("the HTTP side");
    let dom = tokio::task::spawn_blocking(move || browse(&browser, &format!("http://{addr}{PAGE}"), true))
        .await??;
    assert!(dom.contains("leadflow funnel"), "{dom}");

    let funnel = AnalyticsServiceClient::new(server.channel.clone())
        .get_funnel(pb::GetFunnelRequest {
            period: period(0, 20),
            ..Default::default()
        })
        .await?
        .into_inner();
    let g = &funnel.groups[0];
    for e in &g.entries {
        let marker = format!("data-stage=\"{}\"", stage_name(e.stage));
        assert_eq!(
            cell(&dom, &marker, "leads"),
            Some(e.leads.to_string()),
            "{marker}"
        );
        assert_eq!(
            cell(&dom, &marker, "entries"),
            Some(e.entries.to_string()),
            "{marker}"
        );
    }
    for c in &g.conversions {
        let marker = format!("data-conv=\"{}-{}\"", stage_name(c.from), stage_name(c.to));
        assert_eq!(
            cell(&dom, &marker, "cohort"),
            Some(c.cohort.to_string()),
            "{marker}"
        );
        assert_eq!(
            cell(&dom, &marker, "converted"),
            Some(c.converted.to_string()),
            "{marker}"
        );
        assert_eq!(value(&dom, &marker, "rate"), Some(c.rate.to_string()), "{marker}");
        let p50 = c.p50.as_ref().map_or(-1, |d| d.seconds);
        assert_eq!(value(&dom, &marker, "p50"), Some(p50.to_string()), "{marker}");
    }
    let times = &dom[dom.find("id=\"time-in-stage\"").expect("time in stage")..];
    for t in &g.time_in_stage {
        let marker = format!("data-stage=\"{}\"", stage_name(t.stage));
        assert_eq!(
            cell(times, &marker, "stays"),
            Some(t.stays.to_string()),
            "{marker}"
        );
        let p90 = t.p90.as_ref().map_or(-1, |d| d.seconds);
        assert_eq!(value(times, &marker, "p90"), Some(p90.to_string()), "{marker}");
    }
    for r in &g.reasons {
        let marker = format!("data-reason=\"{}\"", r.reason);
        assert_eq!(
            cell(&dom, &marker, "count"),
            Some(r.count.to_string()),
            "{marker}"
        );
    }
    let rejected = g
        .rejected
        .as_ref()
        .map(|r| r.rate.to_string())
        .unwrap_or_default();
    assert!(
        dom.contains(&format!("id=\"rejected\" data-v=\"{rejected}\"")),
        "rejected"
    );
    // one kind of number a chart: the funnel's bars are the leads entering
    // each stage, as long as their numbers, and say nothing of conversion
    let funnel_chart = chart(&dom, "funnel-chart");
    let drawn = bars(funnel_chart);
    assert_eq!(drawn.len(), 4, "{funnel_chart}");
    let leads_of = |bar: &HashMap<String, String>| {
        g.entries
            .iter()
            .find(|e| stage_name(e.stage) == bar["data-bar"])
            .expect("a stage of GetFunnel")
            .leads
    };
    let widest = drawn.iter().map(leads_of).max().expect("bars");
    let widest_bar = drawn.iter().map(|b| number(b, "width")).fold(0.0, f64::max);
    for bar in &drawn {
        let leads = leads_of(bar);
        assert_eq!(bar["data-leads"], leads.to_string(), "{bar:?}");
        #[allow(clippy::cast_precision_loss)]
        let expected = widest_bar * leads as f64 / widest as f64;
        assert!(
            (number(bar, "width") - expected).abs() < 0.2,
            "{bar:?}: expected width {expected}"
        );
    }
    // each bar's number beside it, and no other kind of number
    let numbers: Vec<String> = drawn.iter().map(|b| b["data-leads"].clone()).collect();
    assert_eq!(texts(funnel_chart, "class=\"value\""), numbers);
    assert!(
        texts(funnel_chart, "<text")
            .iter()
            .all(|t| !t.contains('%') && !t.contains("cohort")),
        "{funnel_chart}"
    );
    assert_eq!(
        axis_titles(funnel_chart),
        ["leads entering the stage in the period"]
    );
    // conversion is a chart of its own, bars as long as the rates
    let conversion_chart = chart(&dom, "conversion-chart");
    let full = x_axis(conversion_chart);
    let drawn = bars(conversion_chart);
    assert_eq!(drawn.len(), g.conversions.len());
    for c in &g.conversions {
        let key = format!("{}-{}", stage_name(c.from), stage_name(c.to));
        let bar = drawn
            .iter()
            .find(|b| b["data-bar"] == key)
            .unwrap_or_else(|| panic!("no bar {key}"));
        assert_eq!(bar["data-rate"], c.rate.to_string(), "{key}");
        assert!(
            (number(bar, "width") - c.rate * full).abs() < 0.1,
            "{key}: {bar:?}"
        );
    }
    assert_eq!(axis_titles(conversion_chart), ["converted, % of the cohort"]);
    // velocity: a bar a day, stacked by stage, each part as tall as
    // GetFunnel's count; no part for a zero
    let velocity = chart(&dom, "velocity");
    let drawn = bars(velocity);
    let mut parts = 0;
    for series in &g.velocity {
        let stage = stage_name(series.stage);
        for (start, &n) in funnel.bucket_starts.iter().zip(&series.entries) {
            let day = date(start);
            let bar = drawn
                .iter()
                .find(|b| b["data-bar"] == stage && b["data-bucket"] == day);
            match bar {
                None => assert_eq!(n, 0, "{stage} on {day}"),
                Some(bar) => {
                    parts += 1;
                    assert_eq!(number(bar, "data-n"), n as f64, "{stage} on {day}");
                }
            }
        }
    }
    assert!(parts > 0 && parts == drawn.len(), "{velocity}");
    let per_entry: Vec<f64> = drawn
        .iter()
        .map(|b| number(b, "height") / number(b, "data-n"))
        .collect();
    assert!(
        per_entry.iter().all(|h| (h - per_entry[0]).abs() < 0.1),
        "one scale: {per_entry:?}"
    );
    assert_eq!(axis_titles(velocity), ["day (UTC)", "entries per day"]);
    assert!(!velocity.contains("<polyline"), "{velocity}");
    // the calibration curve says what its axes are
    let calibration = chart(&dom, "calibration");
    assert_eq!(
        axis_titles(calibration),
        ["MQL cut-off: peak engagement score", "precision, recall"]
    );
    for series in ["precision", "recall"] {
        assert!(
            calibration.contains(&format!("data-series=\"{series}\"")),
            "{calibration}"
        );
    }
    assert!(dom.contains("id=\"tail\""));
    // by week, a bar a week, as GetFunnel counts them
    let weekly = AnalyticsServiceClient::new(server.channel.clone())
        .get_funnel(pb::GetFunnelRequest {
            period: period(0, 20),
            bucket: pb::VelocityBucket::Week.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let (status, page) = get(addr, &format!("{PAGE}&bucket=week"), &[]).await?;
    assert_eq!(status, 200, "{page}");
    let velocity = chart(&page, "velocity");
    assert_eq!(
        axis_titles(velocity),
        ["week, by its first day (UTC)", "entries per week"]
    );
    assert_eq!(weekly.bucket_starts.len(), 3);
    for (i, start) in weekly.bucket_starts.iter().enumerate() {
        let week = date(start);
        let drawn: f64 = bars(velocity)
            .iter()
            .filter(|b| b["data-bucket"] == week)
            .map(|b| number(b, "data-n"))
            .sum();
        let counted: i64 = weekly.groups[0].velocity.iter().map(|v| v.entries[i]).sum();
        #[allow(clippy::cast_precision_loss)]
        let counted = counted as f64;
        assert!(
            drawn == counted,
            "week of {week}: {drawn} drawn, {counted} counted"
        );
    }
    assert!(!bars(velocity).is_empty(), "{velocity}");
    // the channel filter narrows the numbers as GetFunnel's does
    let web = AnalyticsServiceClient::new(server.channel.clone())
        .get_funnel(pb::GetFunnelRequest {
            period: period(0, 20),
            source_channel: "web".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let browser = chromium().expect("checked above");
    let web_dom = tokio::task::spawn_blocking(move || {
        browse(&browser, &format!("http://{addr}{PAGE}&channel=web"), false)
    })
    .await??;
    let iql = web.groups[0]
        .entries
        .iter()
        .find(|e| e.stage == pb::Stage::Iql as i32)
        .map(|e| e.entries);
    assert_eq!(
        cell(&web_dom, "data-stage=\"IQL\"", "entries"),
        iql.map(|n| n.to_string())
    );
    assert!(web_dom.contains("<option value=\"web\" selected"));

    // the live tail's fragment carries the newest transition, without the
    // free text of a PROMOTE (it may name a person)
    let lead = create(&mut server, "late@acme.com").await?;
    server
        .leads
        .transition(transition(
            &lead.id,
            pb::Action::Promote,
            "met ann@example.com at the booth",
        ))
        .await?;
    let (status, tail) = get(addr, "/dashboard/tail", &[]).await?;
    assert_eq!(status, 200);
    assert!(tail.contains(&lead.id) && tail.contains("PROMOTE"), "{tail}");
    assert!(
        !tail.contains("ann@example.com") && !tail.contains("late@acme.com"),
        "{tail}"
    );
    assert!(
        tail.to_lowercase()
            .contains("content-security-policy: default-src 'none'"),
        "{tail}"
    );
    // without tokens, another site's name for 127.0.0.1 gets nothing
    let (status, _) = get(addr, PAGE, &[("host", "rebound.example:8080")]).await?;
    assert_eq!(status, 403);
    // bad filters are a 400 naming the field
    let (status, body) = get(addr, "/dashboard?from=2026-10-05&to=2026-10-01", &[]).await?;
    assert_eq!(status, 400);
    assert!(body.contains("to: the period is empty or reversed"), "{body}");
    let (status, body) = get(addr, &format!("{PAGE}&by=last:campaign"), &[]).await?;
    assert_eq!(status, 400);
    assert!(body.contains("by: unknown touchpoint"), "{body}");
    // attribution: the top groups by a property, as GetFunnel groups them
    let by_first = AnalyticsServiceClient::new(server.channel.clone())
        .get_funnel(pb::GetFunnelRequest {
            period: period(0, 20),
            group_by_property: "first:channel".into(),
            top_groups: 10,
            ..Default::default()
        })
        .await?
        .into_inner();
    let (status, page) = get(addr, &format!("{PAGE}&by=first%3Achannel"), &[]).await?;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("value=\"first:channel\""), "{page}");
    assert!(by_first.groups.len() >= 3, "{by_first:?}");
    for g in &by_first.groups {
        let marker = format!("data-group=\"{}\"", g.key);
        let won = g
            .conversions
            .iter()
            .find(|c| c.from == pb::Stage::Mql as i32 && c.to == pb::Stage::Customer as i32)
            .expect("MQL → CUSTOMER");
        assert_eq!(
            cell(&page, &marker, "mqls"),
            Some(won.cohort.to_string()),
            "{marker}"
        );
        assert_eq!(
            value(&page, &marker, "lift"),
            Some(won.lift.unwrap_or(-1.0).to_string()),
            "{marker}"
        );
    }
    http.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

async fn the_page_needs_analytics_read_and_shows_one_workspace(mut server: TestServer) -> anyhow::Result<()> {
    seed(&mut server).await?;
    let engine = server.engine.clone();
    engine
        .bootstrap("globex", leadflow_server::DEFAULT_POLICY)
        .await?;
    let reader = token(&engine, "default", "dash", &["analytics:read"], None).await?;
    let writer = token(&engine, "default", "crm", &["leads:write"], None).await?;
    let other = token(&engine, "globex", "dash", &["analytics:read"], None).await?;
    let http = with_http(&server, true).await?;
    let addr = http.http_addr.expect("the HTTP side");

    let (status, body) = get(addr, PAGE, &[]).await?;
    assert_eq!(status, 401, "{body}");
    assert!(body.to_lowercase().contains("www-authenticate: bearer"), "{body}");
    let (status, _) = get(addr, PAGE, &[("authorization", "Bearer lft_made_up")]).await?;
    assert_eq!(status, 401);
    let (status, body) = get(addr, PAGE, &[("authorization", &format!("Bearer {writer}"))]).await?;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("analytics:read"));
    let (status, _) = get(addr, "/dashboard/tail", &[]).await?;
    assert_eq!(status, 401);

    let (status, mine) = get(addr, PAGE, &[("authorization", &format!("Bearer {reader}"))]).await?;
    assert_eq!(status, 200);
    assert_eq!(cell(&mine, "data-stage=\"IQL\"", "entries").as_deref(), Some("8"));
    // another workspace's token sees its own, empty, funnel and no lead of ours
    let (status, theirs) = get(addr, PAGE, &[("authorization", &format!("Bearer {other}"))]).await?;
    assert_eq!(status, 200);
    assert!(theirs.contains("<b id=\"workspace\">globex</b>"));
    assert_eq!(
        cell(&theirs, "data-stage=\"IQL\"", "entries").as_deref(),
        Some("0")
    );
    let (_, their_tail) = get(
        addr,
        "/dashboard/tail",
        &[("authorization", &format!("Bearer {other}"))],
    )
    .await?;
    assert!(their_tail.contains("no transitions yet"), "{their_tail}");

    // a browser signs in with a form; the cookie carries the token after
    let (status, signed_in) = request(
        addr,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("token={reader}"),
    )
    .await?;
    assert_eq!(status, 303, "{signed_in}");
    assert!(signed_in.contains("HttpOnly"));
    let (status, _) = get(addr, PAGE, &[("cookie", &format!("leadflow_token={reader}"))]).await?;
    assert_eq!(status, 200);
    let (status, _) = request(
        addr,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        "token=lft_wrong",
    )
    .await?;
    assert_eq!(status, 401);
    // the command line takes the token too
    let grpc = http.addr;
    let (ok, text) = tokio::task::spawn_blocking(move || funnel_command(grpc, &[])).await??;
    assert!(!ok && text.contains("a bearer token is required"), "{text}");
    let (ok, text) =
        tokio::task::spawn_blocking(move || funnel_command(grpc, &["--token", reader.as_str()])).await??;
    assert!(ok, "{text}");
    assert_eq!(row(&text, "IQL "), ["5", "8"], "{text}");
    http.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

/// `leadflow funnel` against `grpc` with `extra` arguments: success, output.
fn funnel_command(grpc: SocketAddr, extra: &[&str]) -> anyhow::Result<(bool, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_leadflow-e2e-server"))
        .args(["funnel", "--against", &format!("http://{grpc}")])
        .args(["--from", "2026-10-01", "--to", "2026-10-21"])
        .args(extra)
        .env_remove("LEADFLOW_TOKEN")
        .output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// The numbers of a table row that starts with `label`.
fn row(text: &str, label: &str) -> Vec<String> {
    text.lines()
        .find(|l| l.starts_with(label))
        .map(|l| l[label.len()..].split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

async fn the_command_line_prints_the_same_funnel(mut server: TestServer) -> anyhow::Result<()> {
    seed(&mut server).await?;
    let grpc = server.grpc_addr();
    let (ok, text) = tokio::task::spawn_blocking(move || funnel_command(grpc, &[])).await??;
    assert!(ok, "{text}");
    assert!(text.contains("Funnel 2026-10-01 to 2026-10-20 (UTC)"), "{text}");
    assert_eq!(row(&text, "IQL "), ["5", "8"], "{text}");
    assert_eq!(row(&text, "MQL "), ["4", "5"], "{text}");
    assert_eq!(
        row(&text, "MQL -> SQL"),
        ["4", "2", "50.0%", "0s", "2d", "0h"],
        "{text}"
    );
    assert!(
        text.contains("rejected 50.0% (2 of 4), recycled 25.0% (1 of 4)"),
        "{text}"
    );
    assert_eq!(row(&text, "REJECT         not_ready"), ["1"], "{text}");
    let (ok, grouped) =
        tokio::task::spawn_blocking(move || funnel_command(grpc, &["--group-by", "source-channel"]))
            .await??;
    assert!(
        ok && grouped.contains("== webinar ==") && grouped.contains("== (none) =="),
        "{grouped}"
    );
    let (ok, bad) =
        tokio::task::spawn_blocking(move || funnel_command(grpc, &["--group-by", "colour"])).await??;
    assert!(!ok && bad.contains("--group-by"), "{bad}");
    Ok(())
}

/// A dashboard beyond loopback needs tokens even when gRPC is on loopback.
async fn an_http_side_beyond_loopback_needs_tokens(server: TestServer) -> anyhow::Result<()> {
    let config = leadflow_server::Config {
        http_listen: "0.0.0.0:0".parse()?,
        ..loopback(server.database_url())
    };
    let parts = leadflow_server::Parts {
        http: true,
        ..GRPC_ONLY
    };
    let running = leadflow_server::start(&config, server.engine.clone(), parts).await?;
    let port = running.http_addr.expect("the HTTP side").port();
    let (status, _) = get(SocketAddr::from(([127, 0, 0, 1], port)), PAGE, &[]).await?;
    assert_eq!(status, 401);
    running.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

async fn analytics_calls_need_their_scope_and_see_one_workspace(
    mut server: TestServer,
) -> anyhow::Result<()> {
    seed(&mut server).await?;
    let engine = server.engine.clone();
    engine
        .bootstrap("globex", leadflow_server::DEFAULT_POLICY)
        .await?;
    let reader = token(&engine, "default", "dash", &["analytics:read"], None).await?;
    let writer = token(&engine, "default", "crm", &["leads:read", "leads:write"], None).await?;
    let other = token(&engine, "globex", "dash", &["analytics:read"], None).await?;
    let secured = with_http(&server, true).await?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", secured.addr))?
        .connect()
        .await?;
    let mut client = AnalyticsServiceClient::new(channel);
    let ask = |secret: &str| {
        let mut request = tonic::Request::new(pb::GetFunnelRequest {
            period: period(0, 20),
            ..Default::default()
        });
        if !secret.is_empty() {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {secret}").parse().expect("header"),
            );
        }
        request
    };
    let none = client.get_funnel(ask("")).await.expect_err("no token");
    assert_eq!(none.code(), tonic::Code::Unauthenticated);
    let wrong_scope = client
        .get_funnel(ask(&writer))
        .await
        .expect_err("no analytics:read");
    assert_eq!(wrong_scope.code(), tonic::Code::PermissionDenied);
    let mine = client.get_funnel(ask(&reader)).await?.into_inner();
    let iql = |r: &pb::GetFunnelResponse| {
        r.groups[0]
            .entries
            .iter()
            .find(|e| e.stage == pb::Stage::Iql as i32)
            .map(|e| e.entries)
    };
    assert_eq!(iql(&mine), Some(8));
    // another workspace sees zeros, not ours
    let theirs = client.get_funnel(ask(&other)).await?.into_inner();
    assert_eq!(iql(&theirs), Some(0));
    let mut report = tonic::Request::new(pb::GetRuleReportRequest {
        period: period(-10, 30),
        ..Default::default()
    });
    report
        .metadata_mut()
        .insert("authorization", format!("Bearer {other}").parse()?);
    let leads = client
        .get_rule_report(report)
        .await?
        .into_inner()
        .leads
        .expect("leads");
    assert_eq!((leads.won, leads.lost, leads.open), (0, 0, 0));
    secured.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

/// Without tokens every page answers to a loopback name or address only,
/// parsed as one: a name that merely starts like one, which a rebinding
/// site can point at 127.0.0.1, gets nothing.
async fn without_tokens_only_loopback_hosts_are_served(server: TestServer) -> anyhow::Result<()> {
    let running = with_http(&server, false).await?;
    let addr = running.http_addr.expect("the HTTP side");
    let port = addr.port();
    let refused = [
        "127.evil.example".to_owned(),
        "127.0.0.1.nip.io".to_owned(),
        format!("127.0.0.1.nip.io:{port}"),
        "127.0.0.1.evil.example".to_owned(),
        "localhost.evil.example".to_owned(),
        "evil.localhost".to_owned(),
        "rebound.example:8080".to_owned(),
        "[::1].evil.example".to_owned(),
        "[::2]".to_owned(),
        "[::ffff:10.0.0.1]".to_owned(),
        "::1".to_owned(),
        "0.0.0.0".to_owned(),
        format!("10.0.0.1:{port}"),
        "127.0.0.01".to_owned(),
        "2130706433".to_owned(),
        "127.0.0.1:".to_owned(),
        "127.0.0.1:+80".to_owned(),
        "127.0.0.1:99999".to_owned(),
        "127.0.0.1:80:80".to_owned(),
    ];
    let served = [
        "localhost".to_owned(),
        format!("LocalHost:{port}"),
        "localhost.".to_owned(),
        "127.0.0.1".to_owned(),
        format!("127.0.0.1:{port}"),
        format!("127.1.2.3:{port}"),
        "127.255.255.254".to_owned(),
        "[::1]".to_owned(),
        format!("[::1]:{port}"),
    ];
    for path in ["/dashboard", "/dashboard/tail", "/metrics"] {
        for host in &refused {
            let (status, body) = get(addr, path, &[("host", host)]).await?;
            assert_eq!(status, 403, "{path} for host {host:?}: {body}");
        }
        for host in &served {
            let (status, body) = get(addr, path, &[("host", host)]).await?;
            assert_eq!(status, 200, "{path} for host {host:?}: {body}");
        }
    }
    running.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

/// What the data holds is shown as text: a channel named like markup is
/// neither an element of the page nor a way out of an attribute.
async fn markup_in_the_data_is_shown_as_text(mut server: TestServer) -> anyhow::Result<()> {
    const CHANNEL: &str = "<img src=x onerror=alert(1)>\"'&";
    let lead = create(&mut server, "odd@acme.com").await?;
    let e = pb::Engagement {
        channel: CHANNEL.to_owned(),
        ..engagement("odd-1", "page_viewed")
    };
    server.leads.record_engagement(record(&lead.id, e)).await?;
    let running = with_http(&server, false).await?;
    let addr = running.http_addr.expect("the HTTP side");
    // the last 30 days, which hold the lead
    let (status, page) = get(addr, "/dashboard?channel=%3Cimg%20src%3Dx%3E", &[]).await?;
    assert_eq!(status, 200, "{page}");
    let shown = "&lt;img src=x onerror=alert(1)&gt;&quot;'&amp;";
    assert!(
        page.contains(&format!("<option value=\"{shown}\">{shown}</option>")),
        "{page}"
    );
    assert!(
        page.contains("<option value=\"&lt;img src=x&gt;\" selected>&lt;img src=x&gt;</option>"),
        "{page}"
    );
    assert!(!page.contains("<img"), "{page}");
    running.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

/// The lead search page lists, page by page, what ListLeads answers for
/// the same search, and refuses a bad field by name.
async fn the_lead_search_page_shows_what_list_leads_answers(mut server: TestServer) -> anyhow::Result<()> {
    let browser = chromium().ok_or_else(|| anyhow::anyhow!("no Chromium"))?;
    for i in 0..60 {
        let lead = create(&mut server, &format!("s{i}@acme.com")).await?;
        for n in 0..(i % 5) {
            server
                .leads
                .record_engagement(record(
                    &lead.id,
                    engagement(&format!("s{i}-{n}"), "trial_started"),
                ))
                .await?;
        }
    }
    let http = with_http(&server, false).await?;
    let addr = http.http_addr.expect("the HTTP side");
    let path = "/dashboard/leads?min=60&order=score";
    let dom = tokio::task::spawn_blocking(move || browse(&browser, &format!("http://{addr}{path}"), false))
        .await??;
    let listed = server
        .leads
        .list_leads(pb::ListLeadsRequest {
            filter: Some(pb::LeadFilter {
                scores: vec![pb::ScoreRange {
                    score: None,
                    at_least: Some(60.0),
                    at_most: None,
                }],
                ..Default::default()
            }),
            order_by: pb::LeadOrder::Score.into(),
            descending: true,
            page_size: 50,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(listed.leads.len(), 36, "2, 3 and 4 trials: 60 and more");
    let shown: Vec<&str> = dom
        .match_indices("<tr data-lead=\"")
        .map(|(at, m)| {
            let rest = &dom[at + m.len()..];
            &rest[..rest.find('"').unwrap_or(0)]
        })
        .collect();
    let ids: Vec<&str> = listed.leads.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(shown, ids, "the same leads in the same order");
    let first = &listed.leads[0];
    let marker = format!("data-lead=\"{}\"", first.id);
    assert_eq!(
        value(&dom, &marker, "qualifying"),
        first.scores.as_ref().map(|s| s.qualifying_engagement.to_string())
    );
    assert_eq!(cell(&dom, &marker, "stage"), Some("MQL".to_owned()));
    assert!(
        dom.contains("s4@acme.com"),
        "without tokens every scope: the profile shows"
    );
    assert!(!dom.contains("id=\"next\""), "one page holds them");
    // a small page size is the form's own (50): the next link walks on
    let (status, all) = get(addr, "/dashboard/leads?order=captured", &[]).await?;
    assert_eq!(status, 200, "{all}");
    assert!(all.contains("id=\"next\""), "60 leads: a second page");
    let next = all
        .split("id=\"next\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the next page's link")
        .replace("&amp;", "&");
    let (status, second) = get(addr, &next, &[]).await?;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second.matches("<tr data-lead=").count(), 10);
    // a profile attribute and the capture's days
    let (status, one) = get(addr, "/dashboard/leads?attribute=email&prefix=S4%40", &[]).await?;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one.matches("<tr data-lead=").count(), 1, "{one}");
    assert!(one.contains("s4@acme.com"));
    let (_, company) = get(
        addr,
        "/dashboard/leads?attribute=company&equals=acme&order=captured",
        &[],
    )
    .await?;
    assert_eq!(company.matches("<tr data-lead=").count(), 50, "a full first page");
    let (_, that_day) = get(
        addr,
        "/dashboard/leads?captured_from=2026-11-01&captured_to=2026-11-02&min=60",
        &[],
    )
    .await?;
    assert_eq!(that_day.matches("<tr data-lead=").count(), 36);
    let (_, before) = get(addr, "/dashboard/leads?captured_to=2026-11-01", &[]).await?;
    assert!(before.contains("id=\"no-leads\""), "{before}");
    // bad fields are a 400 naming them
    for (query, said) in [
        (
            "captured_from=yesterday",
            "captured_from: &quot;yesterday&quot; is not a date",
        ),
        (
            "captured_from=2026-11-02&captured_to=2026-11-01",
            "captured_to: the range is empty or reversed",
        ),
        ("equals=x", "attribute: name the attribute"),
        (
            "attribute=email&equals=a&prefix=b",
            "prefix: give equals or prefix, not both",
        ),
        ("min=lots", "min: &quot;lots&quot; is not a number"),
        ("stage=LATE", "stage:"),
        ("min=5&max=1", "max: 1 is below min 5"),
        ("model=nope&min=1", "no model &quot;nope&quot;"),
    ] {
        let (status, body) = get(addr, &format!("/dashboard/leads?{query}"), &[]).await?;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(said), "{query}: {body}");
    }
    http.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

/// A lead's page shows its scores over time, its thresholds and moves, its
/// log with each rule's points and what blocks its next stage, as the API
/// answers them.
async fn the_lead_page_explains_the_lead(mut server: TestServer) -> anyhow::Result<()> {
    let browser = chromium().ok_or_else(|| anyhow::anyhow!("no Chromium"))?;
    let lead = create(&mut server, "page@acme.com").await?;
    for (id, kind) in [
        ("p1", "trial_started"),
        ("p2", "trial_started"),
        ("p3", "webinar_attended"),
    ] {
        server
            .leads
            .record_engagement(record(&lead.id, engagement(id, kind)))
            .await?;
    }
    let got = server.lead(&lead.id).await?;
    assert_eq!(stage(&got), pb::Stage::Mql);
    let http = with_http(&server, false).await?;
    let addr = http.http_addr.expect("the HTTP side");
    let path = format!("/dashboard/leads/{}", lead.id);
    let dom = tokio::task::spawn_blocking(move || browse(&browser, &format!("http://{addr}{path}"), false))
        .await??;
    assert!(dom.contains("<b id=\"stage\">MQL</b>"), "{dom}");
    let scores = got.scores.expect("scores");
    // the default model's line ends at the lead's lifetime score now
    let last = dom
        .split("data-model=\"default\" data-last=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("the default model's line");
    assert_eq!(last, scores.engagement);
    assert!(
        dom.contains("data-model=\"analytics\""),
        "every model has its line"
    );
    assert!(dom.contains("data-threshold=\"MQL\" data-v=\"60\""), "{dom}");
    assert!(dom.contains("data-threshold=\"hot\""));
    assert_eq!(dom.matches("class=\"move\"").count(), 2, "captured, then MQL");
    assert_eq!(dom.matches("<tr data-event=").count(), 3);
    assert!(dom.contains("data-rule=\"trial\" data-v=\"30\""), "{dom}");
    assert!(
        dom.contains("data-rule=\"webinar-attendance\" data-v=\"15\""),
        "{dom}"
    );
    // what blocks it: ExplainScore's failing guards of the move up
    let explained = server
        .leads
        .explain_score(pb::ExplainScoreRequest {
            lead: by_id(&lead.id),
            as_of: None,
        })
        .await?
        .into_inner();
    let failing: Vec<String> = explained
        .next
        .iter()
        .flat_map(|n| n.guards.iter())
        .filter(|g| !g.passed)
        .map(|g| g.guard.clone())
        .collect();
    assert!(failing.contains(&"sales_ready_action".to_owned()));
    for guard in &failing {
        assert!(dom.contains(&format!("data-guard=\"{guard}\"")), "{guard}: {dom}");
    }
    assert!(
        dom.contains("page@acme.com"),
        "without tokens every scope: the profile shows"
    );
    // the search page links to it
    let (status, search) = get(addr, "/dashboard/leads", &[]).await?;
    assert_eq!(status, 200);
    assert!(
        search.contains(&format!("href=\"/dashboard/leads/{}\"", lead.id)),
        "{search}"
    );
    let (status, _) = get(addr, "/dashboard/leads/no-such-lead", &[]).await?;
    assert_eq!(status, 404);
    http.shutdown(Duration::from_secs(1)).await;
    // With tokens: the profile only for one with leads:read.
    let engine = server.engine.clone();
    let analyst = token(&engine, "default", "analyst", &["analytics:read"], None).await?;
    let sales = token(
        &engine,
        "default",
        "sales",
        &["analytics:read", "leads:read"],
        None,
    )
    .await?;
    let http = with_http(&server, true).await?;
    let addr = http.http_addr.expect("the HTTP side");
    for path in [
        format!("/dashboard/leads/{}", lead.id),
        "/dashboard/leads".to_owned(),
    ] {
        let (status, page) = get(addr, &path, &[("authorization", &format!("Bearer {analyst}"))]).await?;
        assert_eq!(status, 200, "{page}");
        assert!(
            !page.contains("page@acme.com"),
            "{path}: no leads:read, no profile"
        );
        let (status, page) = get(addr, &path, &[("authorization", &format!("Bearer {sales}"))]).await?;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("page@acme.com"), "{path}: leads:read shows it");
    }
    http.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

scenarios! {
    the_page_shows_what_get_funnel_answers = clock_at(NOW).needs(&BROWSER),
    the_lead_page_explains_the_lead = clock_at(NOW).needs(&BROWSER),
    the_lead_search_page_shows_what_list_leads_answers = clock_at(NOW).needs(&BROWSER),
    the_command_line_prints_the_same_funnel = clock_at(NOW),
    the_page_needs_analytics_read_and_shows_one_workspace = clock_at(NOW),
    analytics_calls_need_their_scope_and_see_one_workspace = clock_at(NOW),
    without_tokens_only_loopback_hosts_are_served = clock_at(NOW),
    an_http_side_beyond_loopback_needs_tokens = clock_at(NOW),
    markup_in_the_data_is_shown_as_text = clock_at(NOW),
}

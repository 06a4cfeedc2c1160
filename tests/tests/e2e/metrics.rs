//! /metrics on the HTTP side: calls by method and code, and the database's
//! numbers, in the Prometheus text format, as a scraper reads them.

use std::time::Duration;

use leadflow_domain::{Span, Timestamp};
use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;

use super::dashboard::{get, with_http};

/// The value of the sample `name` whose labels include `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series(text, name)
        .into_iter()
        .find(|(have, _)| labels.iter().all(|(k, v)| have.contains(&format!("{k}=\"{v}\""))))
        .map(|(_, value)| value)
}

/// Every sample of `name`: its labels as written, and its value.
fn series(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            (metric == name).then(|| Some((labels.to_owned(), value.parse().ok()?)))?
        })
        .collect()
}

/// `ws`, with no re-score running, has one series of each re-score metric,
/// at 0, without a job.
fn idle_rescore(text: &str, ws: &str) {
    for name in ["leadflow_rescore_done", "leadflow_rescore_total"] {
        let found = series(text, name);
        assert_eq!(found.len(), 1, "{name}: {text}");
        let (labels, value) = &found[0];
        assert!(
            labels.contains(&format!("workspace=\"{ws}\""))
                && !labels
                    .split(',')
                    .any(|l| l.starts_with("rescore_job=") || l.starts_with("job=")),
            "{name}: {text}"
        );
        assert!(*value == 0.0, "{name}: {text}");
    }
}

/// A consumer of `ws` whose cursor is `cursor`, as a subscription leaves it.
async fn consumer(server: &TestServer, ws: &str, name: &str, cursor: i64) -> anyhow::Result<()> {
    server
        .engine
        .store()
        .claim_consumer(ws, name, cursor, "test", server.engine.now())
        .await?;
    Ok(())
}

async fn metrics_count_calls_and_show_the_database(mut server: TestServer) -> anyhow::Result<()> {
    let running = with_http(&server, false).await?;
    let http = running.http_addr.expect("the HTTP side");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.addr))?
        .connect()
        .await?;
    let mut leads = LeadServiceClient::new(channel);
    let mut ids = Vec::new();
    for email in ["ann@acme.com", "bob@acme.com"] {
        let lead = leads
            .create_lead(pb::CreateLeadRequest {
                profile: good_fit(email),
                ..Default::default()
            })
            .await?
            .into_inner()
            .lead
            .expect("a lead");
        ids.push(lead.id);
    }
    // a demo request makes Ann an SQL, with a 24 h first-contact SLA
    leads
        .record_engagement(record(&ids[0], engagement("e1", "demo_requested")))
        .await?;
    let refused = leads
        .record_engagement(record(&ids[1], engagement("", "page_viewed")))
        .await;
    assert_eq!(
        refused.expect_err("no event id").code(),
        tonic::Code::InvalidArgument
    );

    let mut stream = subscribe(&mut server, "nurture", pb::StartPosition::Earliest, 0, None).await?;
    let first = events(&mut stream, 1, Duration::from_secs(5)).await?;
    server
        .triggers
        .ack(pb::AckRequest {
            consumer: "nurture".into(),
            sequence: first[0].sequence,
        })
        .await?;
    drop(stream);
    let head = server
        .triggers
        .list_consumers(pb::ListConsumersRequest {})
        .await?
        .into_inner()
        .consumers[0]
        .head;
    server.manual_clock().advance(Span::from_hours(25));
    // a new version's re-score, left running (no re-score worker here)
    let source =
        leadflow_server::DEFAULT_POLICY.replace("engagement_at_least = 60", "engagement_at_least = 50");
    activate_policy(&mut server, source).await?;

    let (status, text) = get(http, "/metrics", &[]).await?;
    assert_eq!(status, 200, "{text}");
    let calls = |method: &str, code: &str| {
        sample(
            &text,
            "rpc_server_call_duration_seconds_count",
            &[("rpc_method", method), ("rpc_grpc_status_code", code)],
        )
    };
    assert_eq!(calls("CreateLead", "0"), Some(2.0), "{text}");
    assert_eq!(calls("RecordEngagement", "0"), Some(1.0), "{text}");
    assert_eq!(calls("RecordEngagement", "3"), Some(1.0), "{text}");
    assert!(
        sample(
            &text,
            "rpc_server_call_duration_seconds_bucket",
            &[("rpc_method", "CreateLead"), ("le", "+Inf")]
        ) == Some(2.0),
        "{text}"
    );
    let leads_in = |stage: &str| {
        sample(
            &text,
            "leadflow_leads",
            &[("workspace", "default"), ("stage", stage)],
        )
    };
    assert_eq!(
        (leads_in("IQL"), leads_in("SQL")),
        (Some(1.0), Some(1.0)),
        "{text}"
    );
    assert_eq!(
        sample(&text, "leadflow_engagements_recorded_total", &[]),
        Some(1.0),
        "{text}"
    );
    #[allow(clippy::cast_precision_loss)]
    let (head, lag) = (head as f64, (head - first[0].sequence) as f64);
    assert_eq!(
        sample(&text, "leadflow_outbox_head", &[("workspace", "default")]),
        Some(head),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "leadflow_consumer_lag",
            &[("workspace", "default"), ("consumer", "nurture")]
        ),
        Some(lag),
        "{text}"
    );
    assert_eq!(
        sample(&text, "leadflow_timers_due", &[("workspace", "default")]),
        Some(1.0),
        "{text}"
    );
    let rescore = |name: &str| sample(&text, name, &[("workspace", "default"), ("rescore_job", "1")]);
    assert_eq!(
        (
            rescore("leadflow_rescore_done"),
            rescore("leadflow_rescore_total")
        ),
        (Some(0.0), Some(2.0)),
        "{text}"
    );
    assert!(text.contains("service_name=\"leadflow\""), "{text}");
    // nothing personal
    assert!(!text.contains("acme.com"), "{text}");
    // without tokens, for loopback host names only (as the dashboard)
    let (status, _) = get(http, "/metrics", &[("host", "metrics.example.com")]).await?;
    assert_eq!(status, 403);
    // and for the workspace every call acts for: not another one in the
    // same database
    server
        .engine
        .bootstrap("globex", leadflow_server::DEFAULT_POLICY)
        .await?;
    consumer(&server, "globex", "globex-sync", 0).await?;
    // the re-score done, its series give way to the workspace's idle one
    while server.engine.run_rescore_batch(100).await?.is_some() {}
    server.manual_clock().advance(Span::from_micros(1_100_000)); // past the cached sample
    let (status, text) = get(http, "/metrics", &[]).await?;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("globex"), "{text}");
    assert!(text.contains("workspace=\"default\""), "{text}");
    idle_rescore(&text, "default");
    running.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

/// With tokens, /metrics needs `analytics:read` as the dashboard does, and
/// shows the token's workspace: its consumers, the 50 most behind by name
/// and the rest summed, so that clients naming consumers cannot multiply
/// the series.
async fn metrics_need_analytics_read_and_show_one_workspace(mut server: TestServer) -> anyhow::Result<()> {
    let engine = server.engine.clone();
    engine
        .bootstrap("globex", leadflow_server::DEFAULT_POLICY)
        .await?;
    let reader = token(&engine, "default", "scraper", &["analytics:read"], None).await?;
    let writer = token(&engine, "default", "crm", &["leads:write"], None).await?;
    let other = token(&engine, "globex", "scraper", &["analytics:read"], None).await?;
    for email in ["ann@acme.com", "bob@acme.com", "cy@acme.com"] {
        create(&mut server, email).await?;
    }
    let head = engine.store().outbox_bounds("default").await?.head;
    assert!(head >= 3, "{head}");
    // 50 consumers far behind, then 5 nearly or quite caught up, one of
    // them named like the bucket they fall in
    for i in 0..50 {
        consumer(&server, "default", &format!("busy-{i:02}"), 0).await?;
    }
    consumer(&server, "default", "slow", head - 1).await?;
    consumer(&server, "default", "_other", head - 2).await?;
    for name in ["idle-a", "idle-b", "idle-c"] {
        consumer(&server, "default", name, head).await?;
    }
    consumer(&server, "globex", "globex-sync", 0).await?;

    let running = with_http(&server, true).await?;
    let http = running.http_addr.expect("the HTTP side");
    let bearer = |secret: &str| format!("Bearer {secret}");
    let (status, body) = get(http, "/metrics", &[]).await?;
    assert_eq!(status, 401, "{body}");
    assert!(body.to_lowercase().contains("www-authenticate: bearer"), "{body}");
    assert!(!body.contains("leadflow_"), "{body}");
    let (status, body) = get(http, "/metrics", &[("authorization", "Bearer lft_made_up")]).await?;
    assert_eq!(status, 401, "{body}");
    let (status, body) = get(http, "/metrics", &[("authorization", &bearer(&writer))]).await?;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("analytics:read"), "{body}");
    assert!(!body.contains("leadflow_"), "{body}");
    // a token is checked, not the host name
    let (status, _) = get(
        http,
        "/metrics",
        &[
            ("authorization", &bearer(&reader)),
            ("host", "metrics.example.com"),
        ],
    )
    .await?;
    assert_eq!(status, 200);

    let (status, text) = get(http, "/metrics", &[("authorization", &bearer(&reader))]).await?;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("globex"), "{text}");
    assert_eq!(
        sample(
            &text,
            "leadflow_leads",
            &[("workspace", "default"), ("stage", "IQL")]
        ),
        Some(3.0),
        "{text}"
    );
    // process-wide series stay: they name no workspace
    assert!(
        sample(&text, "leadflow_engagements_recorded_total", &[]).is_some(),
        "{text}"
    );
    let lags = series(&text, "leadflow_consumer_lag");
    assert_eq!(lags.len(), 51, "{text}");
    #[allow(clippy::cast_precision_loss)]
    let far = head as f64;
    for i in 0..50 {
        let name = format!("busy-{i:02}");
        assert_eq!(
            sample(&text, "leadflow_consumer_lag", &[("consumer", &name)]),
            Some(far),
            "{name}: {text}"
        );
    }
    // slow (1) + _other (2) + three idle (0)
    assert_eq!(
        sample(&text, "leadflow_consumer_lag", &[("consumer", "_other")]),
        Some(3.0),
        "{text}"
    );
    assert!(!text.contains("consumer=\"slow\""), "{text}");

    // another workspace's token sees that workspace only
    let (status, text) = get(http, "/metrics", &[("authorization", &bearer(&other))]).await?;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("workspace=\"default\""), "{text}");
    assert!(!text.contains("busy-"), "{text}");
    assert_eq!(
        sample(
            &text,
            "leadflow_consumer_lag",
            &[("workspace", "globex"), ("consumer", "globex-sync")]
        ),
        Some(0.0),
        "{text}"
    );
    // a fresh workspace has its timer and re-score series, at 0
    assert_eq!(
        sample(&text, "leadflow_timers_due", &[("workspace", "globex")]),
        Some(0.0),
        "{text}"
    );
    idle_rescore(&text, "globex");
    running.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

/// A fresh server has its due-timer and re-score series from the start, at
/// 0, so a dashboard or an alert has something to read before anything
/// happens.
async fn a_fresh_server_exports_timers_and_rescores_at_zero(server: TestServer) -> anyhow::Result<()> {
    let running = with_http(&server, false).await?;
    let http = running.http_addr.expect("the HTTP side");
    let (status, text) = get(http, "/metrics", &[]).await?;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        sample(&text, "leadflow_timers_due", &[("workspace", "default")]),
        Some(0.0),
        "{text}"
    );
    idle_rescore(&text, "default");
    running.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

fn now() -> Timestamp {
    Timestamp::from_secs(1_790_812_800)
}

scenarios! {
    metrics_count_calls_and_show_the_database = clock_at(now()),
    metrics_need_analytics_read_and_show_one_workspace = clock_at(now()),
    a_fresh_server_exports_timers_and_rescores_at_zero = clock_at(now()),
}

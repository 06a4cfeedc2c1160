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
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse().ok())
            .flatten()
    })
}

async fn metrics_count_calls_and_show_the_database(mut server: TestServer) -> anyhow::Result<()> {
    let running = with_http(&server, leadflow_server::AuthMode::Auto).await?;
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
    server
        .clock
        .as_ref()
        .expect("a hand-moved clock")
        .advance(Span::from_hours(25));
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
    let rescore = |name: &str| sample(&text, name, &[("workspace", "default"), ("job", "1")]);
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
    running.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

fn now() -> Timestamp {
    Timestamp::from_secs(1_790_812_800)
}

on_both_databases_at!(super::now(), metrics_count_calls_and_show_the_database);

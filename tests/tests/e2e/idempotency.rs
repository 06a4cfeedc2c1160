//! Retries: event ids and request ids; optimistic concurrency; many writers.

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

async fn a_repeated_event_id_counts_once(mut server: TestServer) -> anyhow::Result<()> {
    let lead = create(&mut server, "ha@acme.com").await?;
    let e = at(engagement("evt-1", "trial_started"), seconds_ago(5));
    let first = server
        .leads
        .record_engagement(record(&lead.id, e.clone()))
        .await?
        .into_inner();
    assert!(!first.duplicate);
    let again = server
        .leads
        .record_engagement(record(&lead.id, e.clone()))
        .await?
        .into_inner();
    assert!(again.duplicate);
    assert!(again.transitions.is_empty());
    let rows = server.rows().await;
    assert_eq!(rows[1], 1, "one engagement stored");
    // a retry that leaves occurred_at to the server is the same event
    let plain = engagement("evt-2", "ebook_downloaded");
    server
        .leads
        .record_engagement(record(&lead.id, plain.clone()))
        .await?;
    assert!(
        server
            .leads
            .record_engagement(record(&lead.id, plain))
            .await?
            .into_inner()
            .duplicate
    );
    // the same id with other content is refused and changes nothing
    let before = server.rows().await;
    let err = server
        .leads
        .record_engagement(record(
            &lead.id,
            at(engagement("evt-1", "webinar_attended"), seconds_ago(5)),
        ))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&err), "EVENT_ID_REUSED");
    assert_eq!(fields(&err), ["engagement.event_id"]);
    assert_eq!(server.rows().await, before);
    let x = server
        .leads
        .explain_score(pb::ExplainScoreRequest {
            lead: by_id(&lead.id),
            ..Default::default()
        })
        .await?
        .into_inner();
    let trial = x
        .engagement
        .iter()
        .find(|r| r.rule_id == "trial")
        .expect("trial rule");
    assert_eq!(trial.matched, 1);
    Ok(())
}

async fn a_retried_request_id_returns_the_first_result(mut server: TestServer) -> anyhow::Result<()> {
    let create = pb::CreateLeadRequest {
        request_id: "req-create-1".to_owned(),
        external_key: "crm-7".to_owned(),
        profile: good_fit("io@acme.com"),
        ..Default::default()
    };
    let first = server.leads.create_lead(create.clone()).await?.into_inner();
    let again = server.leads.create_lead(create.clone()).await?.into_inner();
    assert_eq!(first, again);
    assert_eq!(server.rows().await[0], 1, "one lead");
    let mut other = create.clone();
    other.profile = good_fit("someone-else@acme.com");
    let err = server.leads.create_lead(other).await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&err), "REQUEST_ID_REUSED");
    assert_eq!(fields(&err), ["request_id"]);

    let lead = first.lead.expect("lead");
    let mut promote = transition(&lead.id, pb::Action::Promote, "booth");
    promote.request_id = "req-promote-1".to_owned();
    let first = server.leads.transition(promote.clone()).await?.into_inner();
    let again = server.leads.transition(promote).await?.into_inner();
    assert_eq!(
        first, again,
        "a retry returns the first result, not INVALID_TRANSITION"
    );
    assert_eq!(server.rows().await[2], 2, "capture and one promotion");
    Ok(())
}

async fn a_stale_expected_version_is_aborted(mut server: TestServer) -> anyhow::Result<()> {
    let lead = create(&mut server, "jo@acme.com").await?;
    server
        .leads
        .update_lead_profile(pb::UpdateLeadProfileRequest {
            lead: by_id(&lead.id),
            attributes: profile(&[("phone", "+1 555 0100")]),
            expected_version: Some(1),
            ..Default::default()
        })
        .await?;
    let mut promote = transition(&lead.id, pb::Action::Promote, "booth");
    promote.expected_version = Some(1);
    let err = server.leads.transition(promote.clone()).await.expect_err("stale");
    assert_eq!(err.code(), tonic::Code::Aborted);
    assert_eq!(reason(&err), "VERSION_CONFLICT");
    let info = details(&err).error_info().cloned().expect("info");
    assert_eq!(info.metadata.get("actual_version").map(String::as_str), Some("2"));
    promote.expected_version = Some(2);
    let r = server.leads.transition(promote).await?.into_inner();
    assert_eq!(r.lead.map(|l| l.version), Some(3));
    Ok(())
}

async fn concurrent_writers_never_lose_an_engagement(mut server: TestServer) -> anyhow::Result<()> {
    let lead = create(&mut server, "ka@acme.com").await?;
    let t = seconds_ago(30);
    let writers = 16;
    let each = 8;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut client = server.leads.clone();
        let id = lead.id.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                let e = at(engagement(&format!("w{w}-{i}"), "webinar_attended"), t);
                client.record_engagement(record(&id, e)).await?;
            }
            Ok::<(), tonic::Status>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let x = server
        .leads
        .explain_score(pb::ExplainScoreRequest {
            lead: by_id(&lead.id),
            as_of: Some(t),
        })
        .await?
        .into_inner();
    let attended = x
        .engagement
        .iter()
        .find(|r| r.rule_id == "webinar-attendance")
        .expect("rule");
    assert_eq!(attended.matched, writers * each);
    assert_eq!(
        x.scores.map(|s| s.engagement),
        Some(15.0 * (writers * each) as f64)
    );
    // the stored, incrementally kept score agrees with the replay
    let got = server
        .leads
        .get_lead(pb::GetLeadRequest {
            lead: by_id(&lead.id),
        })
        .await?
        .into_inner();
    let stored = got
        .lead
        .and_then(|l| l.scores)
        .map(|s| s.engagement)
        .unwrap_or_default();
    assert!(stored > 0.99 * 15.0 * (writers * each) as f64, "{stored}");
    assert_eq!(server.rows().await[1], (writers * each) as u64);
    Ok(())
}

scenarios! {
    a_repeated_event_id_counts_once,
    a_retried_request_id_returns_the_first_result,
    a_stale_expected_version_is_aborted,
    concurrent_writers_never_lose_an_engagement,
}

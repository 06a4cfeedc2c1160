//! Batches and client streams of engagements.

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

fn item(lead: &str, e: pb::Engagement) -> pb::EngagementItem {
    pb::EngagementItem {
        lead: by_id(lead),
        engagement: Some(e),
    }
}

async fn a_batch_spans_leads_and_answers_per_item(mut server: TestServer) -> anyhow::Result<()> {
    let a = create(&mut server, "oa@acme.com").await?;
    let b = create(&mut server, "ob@acme.com").await?;
    let items = vec![
        item(&a.id, engagement("a1", "trial_started")),
        item(&b.id, engagement("b1", "demo_requested")),
        item(&a.id, engagement("a2", "webinar_attended")),
        item(&a.id, engagement("a1", "trial_started")),
    ];
    let r = server
        .leads
        .record_engagements(pb::RecordEngagementsRequest { engagements: items })
        .await?
        .into_inner();
    assert_eq!(r.results.len(), 4);
    assert_eq!(
        moves(&r.results[1].transitions),
        [(pb::Stage::Iql, pb::Stage::Mql), (pb::Stage::Mql, pb::Stage::Sql)]
    );
    assert_eq!(
        r.results.iter().map(|x| x.duplicate).collect::<Vec<_>>(),
        [false, false, false, true]
    );
    assert_eq!(
        r.results[2].lead.as_ref().map(|l| l.id.clone()),
        Some(a.id.clone())
    );
    assert_eq!(server.rows().await[1], 3);
    Ok(())
}

async fn one_bad_item_refuses_the_whole_batch(mut server: TestServer) -> anyhow::Result<()> {
    let a = create(&mut server, "pa@acme.com").await?;
    let before = server.rows().await;
    let items = vec![
        item(&a.id, engagement("ok-1", "demo_requested")),
        item(&a.id, engagement("bad-1", "demo_requestd")),
        item("no-such-lead", engagement("bad-2", "trial_started")),
        item(&a.id, engagement("", "trial_started")),
    ];
    let err = server
        .leads
        .record_engagements(pb::RecordEngagementsRequest {
            engagements: items.clone(),
        })
        .await
        .expect_err("refused");
    // Every refused item is listed, whatever refused it; the code is
    // the one the first would get alone.
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&err), "UNKNOWN_ENGAGEMENT_TYPE");
    assert_eq!(
        fields(&err),
        [
            "engagements[1].engagement.type",
            "engagements[2].lead",
            "engagements[3].engagement.event_id"
        ]
    );
    let err = server
        .leads
        .record_engagements(pb::RecordEngagementsRequest {
            engagements: items[2..].to_vec(),
        })
        .await
        .expect_err("refused");
    assert_eq!(
        err.code(),
        tonic::Code::NotFound,
        "an unknown lead first, as RecordEngagement says: {err:?}"
    );
    assert_eq!(reason(&err), "NOT_FOUND");
    assert_eq!(
        fields(&err),
        ["engagements[0].lead", "engagements[1].engagement.event_id"]
    );
    let err = server
        .leads
        .record_engagements(pb::RecordEngagementsRequest {
            engagements: items[..3].to_vec(),
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        fields(&err),
        ["engagements[1].engagement.type", "engagements[2].lead"]
    );
    assert_eq!(
        server.rows().await,
        before,
        "the good item was not written either"
    );
    let lead = server
        .leads
        .get_lead(pb::GetLeadRequest { lead: by_id(&a.id) })
        .await?
        .into_inner();
    assert_eq!(lead.lead.map(|l| stage(&l)), Some(pb::Stage::Iql));
    Ok(())
}

async fn a_client_stream_commits_as_it_goes_and_says_how_far_it_got(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let a = create(&mut server, "qa@acme.com").await?;
    let messages: Vec<pb::StreamEngagementsRequest> = [
        "trial_started",
        "webinar_attended",
        "ebook_downloaded",
        "ebook_downloaded",
        "trial_started",
    ]
    .iter()
    .enumerate()
    .map(|(i, kind)| pb::StreamEngagementsRequest {
        lead: by_id(&a.id),
        engagement: Some(engagement(&format!("s{}", i % 4), kind)),
    })
    .collect();
    let r = server
        .leads
        .stream_engagements(tokio_stream::iter(messages))
        .await?
        .into_inner();
    assert_eq!((r.committed, r.duplicates, r.transitions), (5, 1, 1));

    let bad: Vec<pb::StreamEngagementsRequest> = vec![
        pb::StreamEngagementsRequest {
            lead: by_id(&a.id),
            engagement: Some(engagement("t1", "page_viewed")),
        },
        pb::StreamEngagementsRequest {
            lead: by_id(&a.id),
            engagement: Some(engagement("t2", "page_viewd")),
        },
        pb::StreamEngagementsRequest {
            lead: by_id(&a.id),
            engagement: Some(engagement("t3", "page_viewed")),
        },
    ];
    let err = server
        .leads
        .stream_engagements(tokio_stream::iter(bad))
        .await
        .expect_err("the second is bad");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&err), "UNKNOWN_ENGAGEMENT_TYPE");
    let info = details(&err).error_info().cloned().expect("info");
    assert_eq!(info.metadata.get("committed").map(String::as_str), Some("1"));
    assert!(
        err.message().contains("1 engagements were committed"),
        "{}",
        err.message()
    );
    assert_eq!(
        server.rows().await[1],
        5,
        "four from the first stream, one from the second"
    );
    Ok(())
}

async fn concurrent_single_calls_each_get_the_answer_they_would_get_alone(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let mut leads = Vec::new();
    for k in 0..4 {
        leads.push(create(&mut server, &format!("g{k}@acme.com")).await?.id);
    }
    // (label, lead, event)
    let mut calls: Vec<(String, String, pb::Engagement)> = Vec::new();
    for (k, lead) in leads.iter().enumerate() {
        for j in 0..8 {
            calls.push((
                format!("good-{k}-{j}"),
                lead.clone(),
                engagement(&format!("g{k}-{j}"), "ebook_downloaded"),
            ));
        }
    }
    calls.push((
        "dup-a".into(),
        leads[0].clone(),
        engagement("dup", "webinar_attended"),
    ));
    calls.push((
        "dup-b".into(),
        leads[0].clone(),
        engagement("dup", "webinar_attended"),
    ));
    calls.push((
        "reuse-a".into(),
        leads[1].clone(),
        engagement("reuse", "webinar_attended"),
    ));
    calls.push((
        "reuse-b".into(),
        leads[1].clone(),
        engagement("reuse", "ebook_downloaded"),
    ));
    calls.push((
        "bad-type".into(),
        leads[2].clone(),
        engagement("bad", "webinar_atended"),
    ));
    calls.push((
        "no-lead".into(),
        "no-such-lead".into(),
        engagement("lost", "ebook_downloaded"),
    ));

    let mut tasks = Vec::new();
    for (label, lead, e) in calls {
        let mut client = server.leads.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .record_engagement(pb::RecordEngagementRequest {
                    lead: by_id(&lead),
                    engagement: Some(e),
                })
                .await
                .map(tonic::Response::into_inner);
            (label, lead, r)
        }));
    }
    let mut answers = std::collections::HashMap::new();
    for task in tasks {
        let (label, lead, r) = task.await?;
        answers.insert(label, (lead, r));
    }
    for (label, (lead, r)) in &answers {
        if label.starts_with("good-") {
            let r = r.as_ref().map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
            assert!(!r.duplicate, "{label}");
            assert_eq!(
                r.lead.as_ref().map(|l| l.id.as_str()),
                Some(lead.as_str()),
                "{label}"
            );
        }
    }
    let dups: Vec<bool> = ["dup-a", "dup-b"]
        .iter()
        .map(|l| {
            answers[*l]
                .1
                .as_ref()
                .map(|r| r.duplicate)
                .expect("a repeat is answered")
        })
        .collect();
    assert_eq!(
        dups.iter().filter(|d| **d).count(),
        1,
        "exactly one is the repeat: {dups:?}"
    );
    let reuse: Vec<_> = ["reuse-a", "reuse-b"].iter().map(|l| &answers[*l].1).collect();
    assert_eq!(
        reuse.iter().filter(|r| r.is_ok()).count(),
        1,
        "the first of the two is recorded"
    );
    let refused = reuse
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("the other is refused");
    assert_eq!(
        (refused.code(), reason(refused)),
        (tonic::Code::InvalidArgument, "EVENT_ID_REUSED".to_owned())
    );
    assert_eq!(fields(refused), ["engagement.event_id"]);
    let bad = answers["bad-type"].1.as_ref().expect_err("unknown type");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert_eq!(fields(bad), ["engagement.type"]);
    let lost = answers["no-lead"].1.as_ref().expect_err("no lead");
    assert_eq!(lost.code(), tonic::Code::NotFound);
    assert_eq!(
        server.rows().await[1],
        32 + 1 + 1,
        "every accepted engagement, once"
    );
    let logs = server
        .engine
        .store()
        .leads_with_logs(server.workspace(), "", 100)
        .await?;
    for (record, log) in logs {
        let expected = if record.id == leads[0] || record.id == leads[1] {
            9
        } else {
            8
        };
        assert_eq!(log.len(), expected, "lead {}", record.id);
    }
    Ok(())
}

async fn a_batch_locks_the_leads_it_names_in_one_go(mut server: TestServer) -> anyhow::Result<()> {
    let a = create(&mut server, "la@acme.com").await?;
    let b = create(&mut server, "lb@acme.com").await?;
    let keyed = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            external_key: "crm-42".into(),
            profile: good_fit("lk@acme.com"),
            ..pb::CreateLeadRequest::default()
        })
        .await?
        .into_inner()
        .lead
        .expect("lead");
    let tx = server.engine.store().begin().await?;
    let (records, active) = tx
        .lock_leads_with_policy(
            server.workspace(),
            &[a.id.as_str(), b.id.as_str(), "nobody"],
            &["crm-42", "crm-0"],
        )
        .await?;
    let mut expected = vec![a.id.clone(), b.id.clone(), keyed.id.clone()];
    expected.sort();
    assert_eq!(
        records.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        expected,
        "in id order, the unknown left out"
    );
    assert!(active.is_some());
    Ok(())
}

async fn a_late_item_is_answered_as_if_recorded_alone(mut server: TestServer) -> anyhow::Result<()> {
    let now = 1_767_603_600;
    let page = |id: &str, path: &str, ago_days: i64| {
        let mut e = engagement(id, "page_viewed");
        e.properties.insert("path".to_owned(), path.to_owned());
        at(
            e,
            prost_types::Timestamp {
                seconds: now - ago_days * 86_400,
                nanos: 0,
            },
        )
    };
    // Two leads with a page view now; then two page views dated before
    // it (late events): one by one on the first, in one batch on the second.
    let alone = create(&mut server, "alone@acme.com").await?;
    let batched = create(&mut server, "batched@acme.com").await?;
    for lead in [&alone, &batched] {
        server
            .leads
            .record_engagement(record(&lead.id, page(&format!("{}-now", lead.id), "/pricing", 0)))
            .await?;
    }
    let mut one_by_one = Vec::new();
    for (i, ago) in [3, 2].into_iter().enumerate() {
        let r = server
            .leads
            .record_engagement(record(&alone.id, page(&format!("a-{i}"), "/docs", ago)))
            .await?
            .into_inner();
        one_by_one.push(r.lead.and_then(|l| l.scores).expect("scores"));
    }
    let r = server
        .leads
        .record_engagements(pb::RecordEngagementsRequest {
            engagements: vec![
                item(&batched.id, page("b-0", "/docs", 3)),
                item(&batched.id, page("b-1", "/docs", 2)),
            ],
        })
        .await?
        .into_inner();
    let in_batch: Vec<pb::Scores> = r
        .results
        .into_iter()
        .map(|x| x.lead.and_then(|l| l.scores).expect("scores"))
        .collect();
    assert_ne!(
        one_by_one[0].engagement, one_by_one[1].engagement,
        "each late view adds to the score"
    );
    for (i, (a, b)) in one_by_one.iter().zip(&in_batch).enumerate() {
        assert_eq!(
            (a.engagement, a.qualifying_engagement),
            (b.engagement, b.qualifying_engagement),
            "item {i}: what it would be alone"
        );
    }
    Ok(())
}

scenarios! {
    a_batch_spans_leads_and_answers_per_item,
    one_bad_item_refuses_the_whole_batch,
    a_client_stream_commits_as_it_goes_and_says_how_far_it_got,
    concurrent_single_calls_each_get_the_answer_they_would_get_alone,
    a_batch_locks_the_leads_it_names_in_one_go,
    a_late_item_is_answered_as_if_recorded_alone = clock_at(leadflow_domain::Timestamp::from_secs(1_767_603_600)),
}

//! Listing, history pages, explanations.

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

async fn leads_list_by_stage_page_by_page(mut server: TestServer) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(create(&mut server, &format!("r{i}@acme.com")).await?.id);
    }
    for id in &ids[..3] {
        server
            .leads
            .transition(transition(id, pb::Action::Promote, "booth"))
            .await?;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = server
            .leads
            .list_leads(pb::ListLeadsRequest {
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(page.leads.len() <= 3);
        seen.extend(page.leads.into_iter().map(|l| l.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "every lead once, in id order");
    let mql = server
        .leads
        .list_leads(pb::ListLeadsRequest {
            stage: pb::Stage::Mql.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut expected = ids[..3].to_vec();
    expected.sort();
    assert_eq!(
        mql.leads.iter().map(|l| l.id.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(mql.next_page_token.is_empty());
    Ok(())
}

async fn history_pages_interleave_engagements_and_transitions(mut server: TestServer) -> anyhow::Result<()> {
    let lead = create_captured(&mut server, "sa@acme.com", Some(seconds_ago(600))).await?;
    for (i, kind) in [
        "trial_started",
        "webinar_attended",
        "ebook_downloaded",
        "ebook_downloaded",
        "demo_requested",
    ]
    .iter()
    .enumerate()
    {
        let ago = 500 - 100 * i64::try_from(i)?;
        server
            .leads
            .record_engagement(record(
                &lead.id,
                at(engagement(&format!("h{i}"), kind), seconds_ago(ago)),
            ))
            .await?;
    }
    let entries = full_history(&mut server, &lead.id, 2).await?;
    let shape: Vec<String> = entries.iter().map(entry_shape).collect();
    // captured, 4 engagements (MQL on the 4th), the demo (MQL -> SQL)
    let iql = pb::Stage::Iql as i32;
    let mql = pb::Stage::Mql as i32;
    let sql = pb::Stage::Sql as i32;
    assert_eq!(
        shape,
        [
            format!("->{iql}"),
            "h0".into(),
            "h1".into(),
            "h2".into(),
            "h3".into(),
            format!("->{mql}"),
            "h4".into(),
            format!("->{sql}")
        ]
    );
    Ok(())
}

async fn explain_names_every_rule_and_the_next_guards(mut server: TestServer) -> anyhow::Result<()> {
    let lead = create(&mut server, "ta@acme.com").await?;
    let t = seconds_ago(10);
    for (i, path) in ["/pricing", "/pricing", "/pricing", "/careers"]
        .iter()
        .enumerate()
    {
        let mut e = at(engagement(&format!("p{i}"), "page_viewed"), t);
        e.properties.insert("path".to_owned(), (*path).to_owned());
        server.leads.record_engagement(record(&lead.id, e)).await?;
    }
    let x = server
        .leads
        .explain_score(pb::ExplainScoreRequest {
            lead: by_id(&lead.id),
            as_of: Some(t),
        })
        .await?
        .into_inner();
    let rule = |id: &str| x.engagement.iter().find(|r| r.rule_id == id).cloned().expect(id);
    assert_eq!((rule("any-page").matched, rule("any-page").raw_points), (4, 4.0));
    let pricing = rule("pricing-page");
    assert_eq!(
        (pricing.matched, pricing.counted, pricing.raw_points),
        (3, 2, 20.0),
        "max_per_day = 2"
    );
    assert_eq!(rule("careers-page").raw_points, -5.0);
    assert_eq!(x.scores.as_ref().map(|s| s.engagement), Some(19.0));
    assert_eq!(x.policy_version, 1);
    assert_eq!(
        x.fit.iter().map(|f| f.rule_id.as_str()).collect::<Vec<_>>(),
        ["senior-title", "mid-market", "target-industry"]
    );
    let to_mql = x
        .next
        .iter()
        .find(|n| n.r#move == pb::Move::AutoQualify as i32)
        .expect("next step");
    let engagement_guard = to_mql
        .guards
        .iter()
        .find(|g| g.guard == "engagement_at_least")
        .expect("guard");
    assert!(!engagement_guard.passed);
    assert_eq!(engagement_guard.detail, "engagement 19 < 60");
    assert_eq!(
        (engagement_guard.actual, engagement_guard.required),
        (Some(19.0), Some(60.0))
    );
    Ok(())
}

async fn counting_and_bounded_rules_explain_their_firings(mut server: TestServer) -> anyhow::Result<()> {
    const DAY: i64 = 86_400;
    let lead = create(&mut server, "stories@acme.com").await?;
    // two customer stories (the later one first), a long and a short docs read
    for (id, path, seconds, ago) in [
        ("s2", "/customers/b", "40", DAY),
        ("s1", "/customers/a", "40", 3 * DAY),
        ("d1", "/docs/api", " 150 ", 2 * DAY),
        ("d2", "/docs/api", "30", 2 * DAY),
    ] {
        let mut e = at(engagement(id, "page_viewed"), seconds_ago(ago + 60));
        e.properties.insert("path".to_owned(), path.to_owned());
        e.properties.insert("seconds".to_owned(), seconds.to_owned());
        server.leads.record_engagement(record(&lead.id, e)).await?;
    }
    let explain = |server: &mut TestServer| {
        let mut leads = server.leads.clone();
        let id = lead.id.clone();
        async move {
            let x = leads
                .explain_score(pb::ExplainScoreRequest {
                    lead: by_id(&id),
                    as_of: None,
                })
                .await?
                .into_inner();
            anyhow::Ok(x)
        }
    };
    let x = explain(&mut server).await?;
    let rule =
        |x: &pb::ExplainScoreResponse, id: &str| x.engagement.iter().find(|r| r.rule_id == id).cloned();
    let stories = rule(&x, "case-study-research").expect("matched");
    assert_eq!(
        (
            stories.matched,
            stories.at_count,
            stories.fired,
            stories.pending,
            stories.raw_points
        ),
        (2, 3, 0, 2, 0.0),
        "two of three kept: {stories:?}"
    );
    let docs = rule(&x, "docs-read").expect("matched");
    assert_eq!(
        (docs.matched, docs.raw_points, docs.at_count),
        (1, 4.0, 0),
        "150 s only"
    );

    // the third story within the week fires the rule at itself
    let mut e = at(engagement("s3", "page_viewed"), seconds_ago(60));
    e.properties.insert("path".to_owned(), "/customers/c".to_owned());
    server.leads.record_engagement(record(&lead.id, e)).await?;
    let x = explain(&mut server).await?;
    let stories = rule(&x, "case-study-research").expect("matched");
    assert_eq!(
        (
            stories.matched,
            stories.fired,
            stories.counted,
            stories.pending,
            stories.raw_points
        ),
        (3, 1, 1, 0, 10.0)
    );
    let shown = server.lead(&lead.id).await?;
    assert_eq!(
        shown.scores.map(|s| s.engagement.round()),
        x.scores.map(|s| s.engagement.round())
    );
    Ok(())
}

scenarios! {
    counting_and_bounded_rules_explain_their_firings,
    leads_list_by_stage_page_by_page,
    history_pages_interleave_engagements_and_transitions,
    explain_names_every_rule_and_the_next_guards,
}

//! MQL levels over the API: on the lead, in its history, on the stream,
//! explained, lowered by decay on a durable timer, and refused when wrong.

use std::time::Duration;

use leadflow_domain::{Span, Timestamp};
use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

/// 2026-01-05T09:00:00Z.
const T0: Timestamp = Timestamp::from_secs(1_767_603_600);
const WAIT: Duration = Duration::from_secs(5);

/// The example with its `warm` level at `warm` (90 as shipped) and its
/// `hot` one at 85 (120); its workflow on `level:hot` emits
/// `sales_hot_lead_alert` while the lead is an MQL.
fn levelled(warm: &str) -> String {
    let policy = leadflow_server::DEFAULT_POLICY;
    let (warm_at, hot_at) = ("engagement_at_least = 90", "engagement_at_least = 120");
    assert!(policy.contains(warm_at) && policy.contains(hot_at));
    policy
        .replacen(warm_at, &format!("engagement_at_least = {warm}"), 1)
        .replacen(hot_at, "engagement_at_least = 85", 1)
}

/// Records trials (30 points each), ebooks (10) at `t`.
async fn record_all(
    server: &mut TestServer,
    lead: &str,
    items: &[(&str, &str)],
    t: prost_types::Timestamp,
) -> anyhow::Result<()> {
    for (id, kind) in items {
        server
            .leads
            .record_engagement(record(lead, at(engagement(id, kind), t)))
            .await?;
    }
    Ok(())
}

async fn explain(server: &mut TestServer, lead: &str) -> anyhow::Result<pb::ExplainScoreResponse> {
    Ok(server
        .leads
        .explain_score(pb::ExplainScoreRequest {
            lead: by_id(lead),
            as_of: None,
        })
        .await?
        .into_inner())
}

async fn levels_rise_with_engagements_and_show_on_the_lead_the_history_and_the_stream(
    mut server: TestServer,
) -> anyhow::Result<()> {
    activate_policy(&mut server, levelled("65")).await?;
    let mut stream = subscribe(&mut server, "levels", pb::StartPosition::Latest, 0, None).await?;
    // captured before the engagements, so that each is decided at its own
    // instant (not decayed to the capture's)
    let lead = create_captured(&mut server, "levels@acme.com", Some(seconds_ago(120))).await?;
    record_all(
        &mut server,
        &lead.id,
        &[("t1", "trial_started"), ("t2", "trial_started")],
        seconds_ago(40),
    )
    .await?;
    let mql = server.lead(&lead.id).await?;
    assert_eq!(
        (stage(&mql), mql.scores.as_ref().map(|s| s.level.as_str())),
        (pb::Stage::Mql, Some("")),
        "60: an MQL below every level"
    );
    record_all(
        &mut server,
        &lead.id,
        &[("b1", "ebook_downloaded")],
        seconds_ago(30),
    )
    .await?;
    let x = explain(&mut server, &lead.id).await?;
    assert_eq!(x.scores.as_ref().map(|s| s.level.as_str()), Some("warm"));
    let next = x.next_level.expect("hot is next");
    assert_eq!(next.id, "hot");
    let failing: Vec<&str> = next
        .guards
        .iter()
        .filter(|g| !g.passed)
        .map(|g| g.detail.as_str())
        .collect();
    assert_eq!(failing, ["engagement 70 < 85"], "{:?}", next.guards);

    record_all(&mut server, &lead.id, &[("t3", "trial_started")], seconds_ago(20)).await?;
    let hot = server.lead(&lead.id).await?;
    assert_eq!(hot.scores.as_ref().map(|s| s.level.as_str()), Some("hot"));
    assert_eq!(
        hot.version, mql.version,
        "a level is not a stage: the version stays"
    );
    let listed = server
        .leads
        .list_leads(pb::ListLeadsRequest {
            stage: pb::Stage::Mql.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        listed
            .leads
            .iter()
            .map(|l| l.scores.as_ref().map(|s| s.level.clone()))
            .collect::<Vec<_>>(),
        [Some("hot".to_owned())]
    );
    assert!(
        explain(&mut server, &lead.id).await?.next_level.is_none(),
        "hot is the top"
    );

    // the history: each level change after what caused it
    let history = full_history(&mut server, &lead.id, 0).await?;
    let shape: Vec<String> = history.iter().map(entry_shape).collect();
    let iql = pb::Stage::Iql as i32;
    let mql_n = pb::Stage::Mql as i32;
    assert_eq!(
        shape,
        [
            format!("->{iql}"),
            "t1".into(),
            "t2".into(),
            format!("->{mql_n}"),
            "b1".into(),
            "level:>warm".into(),
            "t3".into(),
            "level:warm>hot".into()
        ]
    );
    let Some(pb::history_entry::Entry::LevelChange(change)) = &history[7].entry else {
        panic!("a level change");
    };
    assert_eq!(
        (
            change.cause,
            change.cause_ref.as_str(),
            change.sequence,
            change.stage
        ),
        (pb::Cause::Engagement as i32, "t3", 2, pb::Stage::Mql as i32)
    );
    assert!(change.engagement > 99.0 && change.fit == 40.0, "{change:?}");

    // history pages hold every kind, each once
    let paged: Vec<String> = full_history(&mut server, &lead.id, 3)
        .await?
        .iter()
        .map(entry_shape)
        .collect();
    assert_eq!(paged, shape);

    // the stream: the level changes, and the workflow on level:hot after hot
    let streamed: Vec<String> = events(&mut stream, 6, WAIT).await?.iter().map(describe).collect();
    assert_eq!(
        streamed,
        [
            "TRANSITION:IQL",
            "TRANSITION:MQL",
            "TRIGGER:mql_welcome_sequence",
            "LEVEL_CHANGED:>warm",
            "LEVEL_CHANGED:warm>hot",
            "TRIGGER:sales_hot_lead_alert"
        ]
    );

    // leaving MQL ends the level
    record_all(
        &mut server,
        &lead.id,
        &[("demo", "demo_requested")],
        seconds_ago(1),
    )
    .await?;
    let sql = server.lead(&lead.id).await?;
    assert_eq!(
        (stage(&sql), sql.scores.map(|s| s.level)),
        (pb::Stage::Sql, Some(String::new()))
    );
    let streamed: Vec<String> = events(&mut stream, 2, WAIT).await?.iter().map(describe).collect();
    assert_eq!(streamed, ["TRANSITION:SQL", "LEVEL_CHANGED:hot>"]);

    // the funnel: the leads that reached each level, and went on to SQL
    let funnel = crate::analytics::analytics(&server)
        .get_funnel(pb::GetFunnelRequest {
            period: Some(pb::Period {
                start: Some(seconds_ago(3_600)),
                end: Some(seconds_ago(-60)),
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let levels: Vec<(&str, i64, i64)> = funnel.groups[0]
        .levels
        .iter()
        .map(|l| (l.level.as_str(), l.leads, l.to_sql))
        .collect();
    assert_eq!(levels, [("warm", 1, 1), ("hot", 1, 1)], "the policy's order");
    Ok(())
}

async fn decay_lowers_the_level_on_a_durable_timer(mut server: TestServer) -> anyhow::Result<()> {
    activate_policy(&mut server, levelled("65")).await?;
    let mut stream = subscribe(
        &mut server,
        "levels",
        pb::StartPosition::Latest,
        0,
        Some(pb::EventFilter {
            kinds: vec![pb::EventKind::LevelChanged.into()],
            ..Default::default()
        }),
    )
    .await?;
    let lead = create(&mut server, "decay@acme.com").await?;
    for i in 0..4 {
        server
            .leads
            .record_engagement(record(&lead.id, engagement(&format!("t{i}"), "trial_started")))
            .await?;
    }
    assert_eq!(
        server.lead(&lead.id).await?.scores.map(|s| s.level),
        Some("hot".to_owned())
    );
    // the day-3 workflow step comes first
    server.manual_clock().advance(Span::from_days(3));
    assert_eq!(server.engine.fire_due_timers(100).await?, 1);
    // 120 halves every 30 days: below 85 after 30 × log2(120 / 85) ≈ 14.9 days
    server.manual_clock().advance(Span::from_days(11));
    assert_eq!(server.engine.fire_due_timers(100).await?, 0, "not yet");
    server.manual_clock().advance(Span::from_days(1));
    assert_eq!(server.engine.fire_due_timers(100).await?, 1);
    let lowered = server.lead(&lead.id).await?;
    assert_eq!(lowered.scores.map(|s| s.level), Some("warm".to_owned()));
    // 60 is below warm, 90 is hot: no level passed on the way up
    let streamed = events(&mut stream, 2, WAIT).await?;
    assert_eq!(
        streamed.iter().map(describe).collect::<Vec<_>>(),
        ["LEVEL_CHANGED:>hot", "LEVEL_CHANGED:hot>warm"]
    );
    let Some(pb::event::Payload::LevelChange(change)) = &streamed[1].payload else {
        panic!("a level change");
    };
    assert_eq!(change.cause, pb::Cause::Decay as i32);
    let at = change.occurred_at.expect("an instant");
    let days = (at.seconds - T0.as_micros() / 1_000_000) as f64 / 86_400.0;
    assert!((days - 30.0 * (120.0_f64 / 85.0).log2()).abs() < 0.001, "{days}");
    Ok(())
}

async fn bad_levels_are_refused_with_their_paths(mut server: TestServer) -> anyhow::Result<()> {
    let v = server
        .policies
        .validate_policy(pb::ValidatePolicyRequest {
            source: levelled("50"),
        })
        .await?
        .into_inner();
    assert!(!v.valid);
    assert_eq!(
        v.problems
            .iter()
            .map(|p| (p.path.as_str(), p.message.as_str()))
            .collect::<Vec<_>>(),
        [(
            "stages.MQL.levels[0].engagement_at_least",
            "50 is below the MQL bar's 60: levels go from the MQL bar upwards"
        )]
    );
    let err = server
        .policies
        .create_policy_version(pb::CreatePolicyVersionRequest {
            source: levelled("65").replace("level:hot", "level:boiling"),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        (reason(&err).as_str(), fields(&err)),
        ("INVALID_POLICY", vec!["source".to_owned()])
    );
    assert!(
        err.message().contains("no level \"boiling\""),
        "{}",
        err.message()
    );
    assert!(err.message().len() < 4096);
    Ok(())
}

async fn a_simulation_counts_leads_per_level_before_and_after(mut server: TestServer) -> anyhow::Result<()> {
    // the example's levels: warm at 90, hot at 120 (grade A)
    for (email, trials, webinar) in [("hot@acme.com", 5, false), ("warm@acme.com", 3, true)] {
        let lead = create(&mut server, email).await?;
        let mut kinds = vec!["trial_started"; trials];
        if webinar {
            kinds.push("webinar_attended");
        }
        for (i, kind) in kinds.iter().enumerate() {
            server
                .leads
                .record_engagement(record(&lead.id, engagement(&format!("{email}-{i}"), kind)))
                .await?;
        }
    }
    let draft = leadflow_server::DEFAULT_POLICY
        .replacen("engagement_at_least = 90", "engagement_at_least = 110", 1)
        .replacen("engagement_at_least = 120", "engagement_at_least = 130", 1);
    let before = server.rows().await;
    let sim = server
        .policies
        .simulate_policy(pb::SimulatePolicyRequest {
            policy: Some(pb::simulate_policy_request::Policy::Source(draft)),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(server.rows().await, before, "a simulation writes nothing");
    let levels: Vec<(&str, i64, i64)> = sim
        .levels
        .iter()
        .map(|l| (l.level.as_str(), l.before, l.after))
        .collect();
    assert_eq!(
        levels,
        [("warm", 1, 0), ("hot", 1, 1)],
        "105 is no longer warm at 110"
    );
    assert_eq!(sim.movers, 0, "a level is not a stage");
    Ok(())
}

scenarios! {
    a_simulation_counts_leads_per_level_before_and_after,
    levels_rise_with_engagements_and_show_on_the_lead_the_history_and_the_stream,
    decay_lowers_the_level_on_a_durable_timer = clock_at(T0),
    bad_levels_are_refused_with_their_paths,
}

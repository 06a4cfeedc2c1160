//! Several score models over the API: a lead's every model on the lead,
//! in ExplainScore and on the stream; the MQL stage reading a model and
//! its transition recording that model's scores; a workflow on a model's
//! score; CalibrateThreshold by model and level; bad models refused.

use std::time::Duration;

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

use crate::analytics::analytics;

const WAIT: Duration = Duration::from_secs(5);

/// The example (its `analytics` model: trials of the analytics product 40,
/// analytics webinars 20) with its MQL stage reading `analytics`.
fn reading_analytics() -> String {
    let policy = leadflow_server::DEFAULT_POLICY;
    assert!(policy.contains("[stages.MQL]\n") && policy.contains("id = \"analytics\""));
    policy.replacen("[stages.MQL]\n", "[stages.MQL]\nmodel = \"analytics\"\n", 1)
}

fn with(e: pb::Engagement, key: &str, value: &str) -> pb::Engagement {
    let mut e = e;
    e.properties.insert(key.to_owned(), value.to_owned());
    e
}

/// An analytics trial (40) and an analytics webinar (20) at `t`: 60 on the
/// analytics model; the default model scores them 30 + 15.
async fn analytics_interest(
    server: &mut TestServer,
    lead: &str,
    t: prost_types::Timestamp,
) -> anyhow::Result<()> {
    for e in [
        with(
            engagement(&format!("{lead}-trial"), "trial_started"),
            "product",
            "analytics",
        ),
        with(
            engagement(&format!("{lead}-webinar"), "webinar_attended"),
            "topic",
            "analytics",
        ),
    ] {
        server.leads.record_engagement(record(lead, at(e, t))).await?;
    }
    Ok(())
}

fn model<'a>(scores: Option<&'a pb::Scores>, id: &str) -> Option<&'a pb::ModelScores> {
    scores.and_then(|s| s.models.get(id))
}

async fn every_model_shows_on_the_lead_its_explanation_and_the_stream(
    mut server: TestServer,
) -> anyhow::Result<()> {
    activate_policy(&mut server, reading_analytics()).await?;
    let mut stream = subscribe(&mut server, "models", pb::StartPosition::Latest, 0, None).await?;
    let lead = create_captured(&mut server, "models@acme.com", Some(seconds_ago(120))).await?;
    analytics_interest(&mut server, &lead.id, seconds_ago(30)).await?;

    let got = server.lead(&lead.id).await?;
    assert_eq!(stage(&got), pb::Stage::Mql, "the analytics model reached 60");
    let scores = got.scores.as_ref();
    let analytics = model(scores, "analytics").expect("the analytics model's scores");
    assert!((59.99..=60.0).contains(&analytics.engagement), "{analytics:?}");
    assert_eq!(analytics.qualifying_engagement, analytics.engagement);
    assert_eq!(analytics.fit, 40.0, "no fit rules of its own: the default's");
    let default = scores.map(|s| s.engagement).unwrap_or_default();
    assert!((44.99..=45.0).contains(&default), "the default model: {default}");
    assert_eq!(scores.map(|s| s.models.len()), Some(1));

    // The MQL move recorded the model its guards read.
    let history = full_history(&mut server, &lead.id, 50).await?;
    let mql = history
        .iter()
        .find_map(|e| match &e.entry {
            Some(pb::history_entry::Entry::Transition(t)) if t.to_stage == pb::Stage::Mql as i32 => {
                Some(t.clone())
            }
            _ => None,
        })
        .expect("the MQL transition");
    assert_eq!((mql.fit, mql.engagement), (40.0, 60.0));
    let guard = mql
        .guards
        .iter()
        .find(|g| g.guard == "engagement_at_least")
        .expect("the engagement guard");
    assert_eq!((guard.actual, guard.required), (Some(60.0), Some(60.0)));

    let x = server
        .leads
        .explain_score(pb::ExplainScoreRequest {
            lead: by_id(&lead.id),
            as_of: None,
        })
        .await?
        .into_inner();
    let rule_model = |id: &str| {
        x.engagement
            .iter()
            .find(|r| r.rule_id == id)
            .map(|r| r.model.as_str())
    };
    assert_eq!(rule_model("analytics-trial"), Some("analytics"));
    assert_eq!(rule_model("analytics-webinar"), Some("analytics"));
    assert_eq!(rule_model("trial"), Some(""), "the default model's");
    assert!(x.fit.iter().all(|f| f.model.is_empty()));
    assert!(model(x.scores.as_ref(), "analytics").is_some());

    // The stream: the move, the workflow on the analytics score, each with
    // every model on the lead's snapshot.
    let seen = events(&mut stream, 4, WAIT).await?;
    let kinds: Vec<String> = seen.iter().map(describe).collect();
    assert!(
        kinds.contains(&"TRIGGER:analytics_product_nurture".to_owned()),
        "engagement_above:analytics:40 fired: {kinds:?}"
    );
    let to_mql = seen
        .iter()
        .find(|e| describe(e) == "TRANSITION:MQL")
        .expect("the move on the stream");
    let snapshot = to_mql.lead.as_ref().and_then(|l| l.scores.as_ref());
    assert!(model(snapshot, "analytics").is_some_and(|m| m.engagement > 59.0));
    Ok(())
}

async fn calibration_reads_a_model_and_a_level(mut server: TestServer) -> anyhow::Result<()> {
    // Stock example: the MQL stage reads the default model.
    let a = create_captured(&mut server, "cal-a@acme.com", Some(seconds_ago(600))).await?;
    analytics_interest(&mut server, &a.id, seconds_ago(300)).await?;
    server
        .leads
        .record_engagement(record(
            &a.id,
            at(engagement("demo", "demo_requested"), seconds_ago(200)),
        ))
        .await?;
    assert_eq!(stage(&server.lead(&a.id).await?), pb::Stage::Sql);
    let b = create_captured(&mut server, "cal-b@acme.com", Some(seconds_ago(600))).await?;
    let trial = with(engagement("b-trial", "trial_started"), "product", "analytics");
    server
        .leads
        .record_engagement(record(&b.id, at(trial, seconds_ago(300))))
        .await?;
    let period = Some(pb::Period {
        start: Some(seconds_ago(3600)),
        end: Some(seconds_ago(-3600)),
    });
    let calibrate = |model: &str, level: &str| pb::CalibrateThresholdRequest {
        period,
        step: Some(10.0),
        target_precision: Some(1.0),
        model: model.to_owned(),
        level: level.to_owned(),
        ..Default::default()
    };

    // The analytics model: peaks 60 (reached SQL) and 40 (open).
    let c = analytics(&server)
        .calibrate_threshold(calibrate("analytics", ""))
        .await?
        .into_inner();
    assert_eq!((c.leads, c.reached_sql, c.max_peak), (2, 1, 60.0));
    assert_eq!((c.model.as_str(), c.level.as_str()), ("analytics", ""));
    assert_eq!(
        c.suggested.map(|s| s.cutoff),
        Some(50.0),
        "40 also takes the open lead"
    );
    assert!(
        c.draft_source.contains("model = \"analytics\""),
        "{}",
        c.draft_source
    );
    let draft = leadflow_domain::Policy::from_toml(&c.draft_source).expect("a valid draft");
    assert_eq!(draft.mql.engagement_at_least, 50.0);
    assert_eq!(draft.models[draft.mql.model].id, "analytics");

    // The default model (the one the stage reads): peaks 45 and 30.
    let d = analytics(&server)
        .calibrate_threshold(calibrate("", ""))
        .await?
        .into_inner();
    assert_eq!((d.model.as_str(), d.max_peak), ("default", 45.0));
    // A level: its suggestion (40) would sit below the MQL bar (60), so
    // there is no valid draft to offer.
    let warm = analytics(&server)
        .calibrate_threshold(calibrate("", "warm"))
        .await?
        .into_inner();
    assert_eq!((warm.model.as_str(), warm.level.as_str()), ("default", "warm"));
    assert_eq!(warm.suggested.map(|s| s.cutoff), Some(40.0));
    assert_eq!(warm.draft_source, "");

    for (request, field, why) in [
        (calibrate("nope", ""), "model", "UNKNOWN_MODEL"),
        (calibrate("", "lukewarm"), "level", "UNKNOWN_LEVEL"),
        (
            calibrate("analytics", "warm"),
            "model",
            "LEVEL_READS_ANOTHER_MODEL",
        ),
        (calibrate(&"m".repeat(300), ""), "model", "INVALID_ARGUMENT"),
    ] {
        let status = analytics(&server)
            .calibrate_threshold(request.clone())
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert_eq!(fields(&status), [field], "{status:?}");
        if why != "INVALID_ARGUMENT" {
            assert_eq!(reason(&status), why);
        }
        assert!(status.message().len() < 1000);
    }
    Ok(())
}

async fn bad_models_are_refused_with_their_paths(mut server: TestServer) -> anyhow::Result<()> {
    let policy = leadflow_server::DEFAULT_POLICY;
    for (source, path) in [
        (
            policy.replacen("model = \"analytics\"", "model = \"analytcs\"", 1),
            "engagement[9].model",
        ),
        (
            policy.replacen("[stages.MQL]\n", "[stages.MQL]\nmodel = \"nope\"\n", 1),
            "stages.MQL.model",
        ),
        (
            policy.replacen("engagement_above:analytics:40", "engagement_above:nope:40", 1),
            "workflow[4].on",
        ),
        (
            policy.replacen("id = \"analytics\"", "id = \"default\"", 1),
            "model[0].id",
        ),
    ] {
        let status = server
            .policies
            .validate_policy(pb::ValidatePolicyRequest {
                source: source.clone(),
            })
            .await;
        let answer = status?.into_inner();
        assert!(!answer.valid, "{path}");
        assert!(
            answer.problems.iter().any(|e| e.path == path),
            "{path} among {:?}",
            answer.problems
        );
        let refused = server
            .policies
            .create_policy_version(pb::CreatePolicyVersionRequest {
                source,
                ..Default::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }
    Ok(())
}

scenarios! {
    every_model_shows_on_the_lead_its_explanation_and_the_stream,
    calibration_reads_a_model_and_a_level,
    bad_models_are_refused_with_their_paths,
}

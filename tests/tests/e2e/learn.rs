//! LearnPolicy over gRPC, on SQLite and PostgreSQL: a synthetic history
//! whose truth is known (a lead reaches SQL more often the more demos and
//! pricing views it had, and when its company is large), learned from a
//! deliberately wrong policy (two noise types worth 20 points, the two
//! that matter 2). The draft weighs the true rules above the noise, beats
//! the base on the held-out leads, and goes through ValidatePolicy and
//! SimulatePolicy like any other document.

use leadflow_domain::Timestamp;
use leadflow_domain::analytics::learn::synthetic::{self, WRONG};
use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use tokio_stream::StreamExt as _;

use crate::analytics::analytics;

/// 2026-01-01T00:00:00Z: leads are captured over the 100 days after it.
const T0: i64 = 1_767_225_600;
const DAY: i64 = 86_400;

fn ts(secs: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

#[allow(clippy::cast_possible_truncation)]
fn day(d: f64) -> i64 {
    T0 + (d * DAY as f64) as i64
}

/// `n` leads of the synthetic history, each with its engagements and its
/// outcome: SQL (promoted if need be, then accepted) or disqualified.
pub(crate) async fn seed(server: &mut TestServer, n: usize) -> anyhow::Result<usize> {
    seed_leads(server, synthetic::history(2026, n)).await
}

async fn seed_leads(server: &mut TestServer, leads: Vec<synthetic::SyntheticLead>) -> anyhow::Result<usize> {
    let mut positives = 0;
    for lead in leads {
        let id = server
            .leads
            .create_lead(pb::CreateLeadRequest {
                profile: lead.profile,
                captured_at: Some(ts(day(lead.captured))),
                ..Default::default()
            })
            .await?
            .into_inner()
            .lead
            .expect("a lead")
            .id;
        let items: Vec<pb::EngagementItem> = lead
            .engagements
            .iter()
            .map(|e| pb::EngagementItem {
                lead: by_id(&id),
                engagement: Some(pb::Engagement {
                    channel: e.channel.to_owned(),
                    ..at(engagement(&e.event_id, e.kind), ts(day(e.day)))
                }),
            })
            .collect();
        if !items.is_empty() {
            server
                .leads
                .record_engagements(pb::RecordEngagementsRequest { engagements: items })
                .await?;
        }
        let decided = day(lead.captured + synthetic::OUTCOME_DAYS);
        if lead.positive {
            positives += 1;
            let current = server
                .leads
                .get_lead(pb::GetLeadRequest { lead: by_id(&id) })
                .await?
                .into_inner()
                .lead
                .expect("a lead");
            if stage(&current) == pb::Stage::Iql {
                let mut promote = transition(&id, pb::Action::Promote, "booth");
                promote.occurred_at = Some(ts(decided));
                server.leads.transition(promote).await?;
            }
            let mut accept = transition(&id, pb::Action::Accept, "");
            accept.occurred_at = Some(ts(decided + 60));
            server.leads.transition(accept).await?;
        } else {
            let mut lost = transition(&id, pb::Action::Disqualify, "spam");
            lost.occurred_at = Some(ts(decided));
            server.leads.transition(lost).await?;
        }
    }
    Ok(positives)
}

fn learn_request(period: (i64, i64)) -> pb::LearnPolicyRequest {
    pb::LearnPolicyRequest {
        period: Some(pb::Period {
            start: Some(ts(period.0)),
            end: Some(ts(period.1)),
        }),
        outcome: pb::LearnOutcome::Sql.into(),
        target_precision: Some(0.6),
        ..Default::default()
    }
}

/// Every message of a LearnPolicy stream, and how it ended.
pub(crate) async fn follow(
    server: &TestServer,
    request: pb::LearnPolicyRequest,
) -> anyhow::Result<(Vec<pb::LearnJob>, Result<(), tonic::Status>)> {
    let mut stream = analytics(server).learn_policy(request).await?.into_inner();
    let mut jobs = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(m) => jobs.push(m.job.expect("a job")),
            Err(status) => return Ok((jobs, Err(status))),
        }
    }
    Ok((jobs, Ok(())))
}

fn weight(report: &pb::LearnReport, id: &str) -> f64 {
    report
        .rules
        .iter()
        .find(|r| r.rule_id == id)
        .map(|r| r.weight)
        .unwrap_or_else(|| panic!("no rule {id}: {:#?}", report.rules))
}

async fn the_draft_beats_a_wrong_policy(mut server: TestServer) -> anyhow::Result<()> {
    let base = activate_policy(&mut server, WRONG.to_owned()).await?;
    let positives = seed(&mut server, 300).await?;
    let mut request = learn_request((T0, day(100.0) + 1));
    request.request_id = "learn-1".to_owned();
    let (jobs, end) = follow(&server, request.clone()).await?;
    end.map_err(|s| anyhow::anyhow!("the learning failed: {s:?}"))?;
    let last = jobs.last().expect("a message");
    assert!(jobs.len() >= 2, "{jobs:#?}");
    assert_eq!(jobs[0].status, pb::LearnStatus::Running as i32);
    assert_eq!(
        (last.status, last.phase, last.base_version, last.model.as_str()),
        (
            pb::LearnStatus::Done as i32,
            pb::LearnPhase::Done as i32,
            base,
            "default"
        )
    );
    assert_eq!((last.leads_total, last.leads_read), (300, 300));
    let report = last.report.as_ref().expect("a report");
    assert_eq!(
        (report.outcomes, report.positives),
        (300, i64::try_from(positives)?)
    );
    assert_eq!(report.training + report.held_out, 300);
    let (demo, pricing, newsletter, blog) = (
        weight(report, "demo"),
        weight(report, "pricing"),
        weight(report, "newsletter"),
        weight(report, "blog"),
    );
    assert!(
        demo.min(pricing) > 3.0 * newsletter.max(blog),
        "{:#?}",
        report.rules
    );
    // candidates the data is not sure of are reported, not drafted
    for rule in &report.rules {
        let drafted = report
            .draft_source
            .contains(&format!("id = \"{}\"", rule.rule_id));
        assert_eq!(drafted, rule.in_draft, "{rule:?}");
        if rule.proposed && !rule.in_draft {
            assert_eq!(rule.learned_points, 0.0, "{rule:?}");
        }
    }
    assert!(report.rules.iter().any(|r| r.proposed), "{:#?}", report.rules);
    let (b, d) = (report.base.expect("base"), report.draft.expect("draft"));
    assert!(d.auc > b.auc, "{b:?} {d:?}");
    assert_eq!((b.leads, d.leads), (report.held_out, report.held_out));

    // the draft is a policy like any other
    let valid = server
        .policies
        .validate_policy(pb::ValidatePolicyRequest {
            source: report.draft_source.clone(),
        })
        .await?
        .into_inner();
    assert!(valid.valid, "{:?}\n{}", valid.problems, report.draft_source);
    let simulated = server
        .policies
        .simulate_policy(pb::SimulatePolicyRequest {
            policy: Some(pb::simulate_policy_request::Policy::Source(
                report.draft_source.clone(),
            )),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(simulated.leads, 300);

    // kept: the last report, and the job by id
    let kept = analytics(&server)
        .get_learn_report(pb::GetLearnReportRequest::default())
        .await?
        .into_inner()
        .job
        .expect("a job");
    assert_eq!(&kept, last);
    let by_id = analytics(&server)
        .get_learn_report(pb::GetLearnReportRequest { job_id: last.id })
        .await?
        .into_inner()
        .job
        .expect("a job");
    assert_eq!(&by_id, last);

    // the dashboard shows it beside the calibration
    let http = crate::dashboard::with_http(&server, false).await?;
    let addr = http.http_addr.expect("the HTTP side");
    let (code, page) = crate::dashboard::get(addr, "/dashboard?from=2026-01-01&to=2026-04-12", &[]).await?;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("id=\"learned-rules\""), "{page}");
    assert!(page.contains("data-rule=\"demo\""), "{page}");
    let auc = format!("{:.3}", d.auc);
    assert!(page.contains(&format!("data-k=\"auc\">{auc}<")), "{page}");
    http.shutdown(std::time::Duration::from_secs(2)).await;

    // the same request id follows the same job: no second learning
    let (again, end) = follow(&server, request.clone()).await?;
    end.map_err(|s| anyhow::anyhow!("{s:?}"))?;
    assert_eq!(again.len(), 1);
    assert_eq!(&again[0], last);
    // … and with other content it is refused
    let mut other = request;
    other.outcome = pb::LearnOutcome::Customer.into();
    let refused = analytics(&server).learn_policy(other).await.expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&refused), "REQUEST_ID_REUSED");

    // the command prints the same draft, and `policy test` runs it
    cli_learns_the_same_draft(&server, db_of(&server), &report.draft_source).await?;

    // learned again, the same history gives the same draft
    let (jobs, end) = follow(&server, learn_request((T0, day(100.0) + 1))).await?;
    end.map_err(|s| anyhow::anyhow!("{s:?}"))?;
    let again = jobs.last().and_then(|j| j.report.clone()).expect("a report");
    assert_eq!(again.draft_source, report.draft_source);
    assert_eq!(again.rules, report.rules);
    Ok(())
}

/// Small companies never reach SQL here: only a fit bar lets engagement
/// qualify the big ones without the small ones that engage as much.
async fn a_fit_bar_is_chosen_when_asked(mut server: TestServer) -> anyhow::Result<()> {
    activate_policy(&mut server, WRONG.to_owned()).await?;
    seed_leads(
        &mut server,
        synthetic::small_never_convert(synthetic::history(2026, 300)),
    )
    .await?;
    let report = |jobs: &[pb::LearnJob]| jobs.last().and_then(|j| j.report.clone()).expect("a report");

    let (jobs, end) = follow(&server, learn_request((T0, day(100.0) + 1))).await?;
    end.map_err(|s| anyhow::anyhow!("{s:?}"))?;
    let kept = report(&jobs);
    assert!(!jobs.last().expect("a job").choose_fit);
    assert_eq!((kept.base_fit_at_least, kept.fit_at_least), (0.0, 0.0));

    let asked = pb::LearnPolicyRequest {
        choose_fit: true,
        ..learn_request((T0, day(100.0) + 1))
    };
    let (jobs, end) = follow(&server, asked).await?;
    end.map_err(|s| anyhow::anyhow!("{s:?}"))?;
    assert!(jobs.last().expect("a job").choose_fit);
    let chosen = report(&jobs);
    assert_eq!(chosen.base_fit_at_least, 0.0);
    assert!(chosen.fit_at_least > 0.0, "{chosen:#?}");
    assert!(chosen.training_precision.is_some_and(|p| p >= 0.6), "{chosen:#?}");
    assert!(
        chosen.training_recall > kept.training_recall,
        "{:?} {:?}",
        chosen.training_recall,
        kept.training_recall
    );
    assert_eq!(chosen.rules, kept.rules);
    let valid = server
        .policies
        .validate_policy(pb::ValidatePolicyRequest {
            source: chosen.draft_source.clone(),
        })
        .await?
        .into_inner();
    assert!(valid.valid, "{:?}\n{}", valid.problems, chosen.draft_source);
    let bar = format!("fit_at_least = {:?}", chosen.fit_at_least);
    assert!(
        chosen.draft_source.contains(&bar),
        "{bar}\n{}",
        chosen.draft_source
    );

    // the command asks the same, and says what it chose
    let run = cli_learn(&server, &["--choose-fit"]).await?;
    assert!(run.status.success(), "{}", crate::cli::text(&run));
    assert_eq!(String::from_utf8(run.stdout.clone())?, chosen.draft_source);
    let said = String::from_utf8_lossy(&run.stderr);
    let fit = format!(
        "fit_at_least {} (was 0)",
        (chosen.fit_at_least * 10.0).round() / 10.0
    );
    assert!(said.contains(&fit), "{fit}\n{said}");

    // the dashboard shows both bars
    let http = crate::dashboard::with_http(&server, false).await?;
    let addr = http.http_addr.expect("the HTTP side");
    let (code, page) = crate::dashboard::get(addr, "/dashboard?from=2026-01-01&to=2026-04-12", &[]).await?;
    assert_eq!(code, 200, "{page}");
    let shown = format!(
        "id=\"learned-fit-bar\" data-v=\"{}\">{}</b> (was 0).",
        chosen.fit_at_least,
        (chosen.fit_at_least * 10.0).round() / 10.0
    );
    assert!(page.contains(&shown), "{shown}\n{page}");
    http.shutdown(std::time::Duration::from_secs(2)).await;
    Ok(())
}

async fn too_little_data_is_a_failed_precondition(mut server: TestServer) -> anyhow::Result<()> {
    activate_policy(&mut server, WRONG.to_owned()).await?;
    seed(&mut server, 40).await?;
    let (jobs, end) = follow(&server, learn_request((T0, day(100.0) + 1))).await?;
    let status = end.expect_err("too little data");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(&status), "TOO_LITTLE_DATA");
    let info = details(&status).error_info().cloned().expect("error info");
    assert_eq!(info.metadata.get("outcomes").map(String::as_str), Some("40"));
    assert_eq!(info.metadata.get("min_outcomes").map(String::as_str), Some("200"));
    assert!(info.metadata.contains_key("positives"));
    // the job's progress came first
    assert_eq!(
        jobs.first().map(|j| j.status),
        Some(pb::LearnStatus::Running as i32)
    );
    // the failed job is readable by id; there is still no report
    let id: i64 = info.metadata.get("job_id").expect("job id").parse()?;
    let job = analytics(&server)
        .get_learn_report(pb::GetLearnReportRequest { job_id: id })
        .await?
        .into_inner()
        .job
        .expect("a job");
    assert_eq!(
        (job.status, job.error_code.as_str(), job.outcomes),
        (pb::LearnStatus::Failed as i32, "TOO_LITTLE_DATA", Some(40))
    );
    let none = analytics(&server)
        .get_learn_report(pb::GetLearnReportRequest::default())
        .await
        .expect_err("no report");
    assert_eq!(none.code(), tonic::Code::NotFound);
    Ok(())
}

async fn bad_learning_requests_name_their_field(mut server: TestServer) -> anyhow::Result<()> {
    activate_policy(&mut server, WRONG.to_owned()).await?;
    let good = learn_request((T0, day(100.0)));
    let cases: Vec<(&str, pb::LearnPolicyRequest)> = vec![
        (
            "period",
            pb::LearnPolicyRequest {
                period: None,
                ..good.clone()
            },
        ),
        ("period.end", learn_request((day(10.0), day(1.0)))),
        (
            "outcome",
            pb::LearnPolicyRequest {
                outcome: 9,
                ..good.clone()
            },
        ),
        (
            "target_precision",
            pb::LearnPolicyRequest {
                target_precision: Some(1.5),
                ..good.clone()
            },
        ),
        (
            "base_version",
            pb::LearnPolicyRequest {
                base_version: -1,
                ..good.clone()
            },
        ),
        (
            "model",
            pb::LearnPolicyRequest {
                model: "nope".to_owned(),
                ..good.clone()
            },
        ),
        (
            "request_id",
            pb::LearnPolicyRequest {
                request_id: "x".repeat(500),
                ..good.clone()
            },
        ),
    ];
    for (field, request) in cases {
        let result = analytics(&server).learn_policy(request.clone()).await.map(|_| ());
        assert_invalid(result, field, &request);
    }
    let missing = analytics(&server)
        .learn_policy(pb::LearnPolicyRequest {
            base_version: 99,
            ..good
        })
        .await
        .map(|_| ())
        .expect_err("no such version");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let negative = analytics(&server)
        .get_learn_report(pb::GetLearnReportRequest { job_id: -1 })
        .await
        .expect_err("refused");
    assert_eq!(negative.code(), tonic::Code::InvalidArgument);
    let unknown = analytics(&server)
        .get_learn_report(pb::GetLearnReportRequest { job_id: 7 })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    Ok(())
}

/// The first message of a LearnPolicy stream, and the stream.
async fn opened(
    client: &mut pb::analytics_service_client::AnalyticsServiceClient<tonic::transport::Channel>,
    request: pb::LearnPolicyRequest,
) -> anyhow::Result<(pb::LearnJob, tonic::Streaming<pb::LearnPolicyResponse>)> {
    let mut stream = client.learn_policy(request).await?.into_inner();
    let job = stream.message().await?.and_then(|m| m.job).expect("a job");
    Ok((job, stream))
}

/// How a stream ended: its status, after any messages.
async fn ending(stream: &mut tonic::Streaming<pb::LearnPolicyResponse>) -> tonic::Status {
    tokio::time::timeout(std::time::Duration::from_secs(10), end_of(stream))
        .await
        .expect("the stream ends")
        .expect_err("the stream ends with a status")
}

/// On a replica that runs no learning, a job stays where it is: a later
/// LearnPolicy supersedes it and its stream ends ABORTED; at shutdown the
/// later one's stream ends UNAVAILABLE while its job goes on, and the
/// next replica to learn runs it.
async fn learning_streams_end_when_superseded_and_at_shutdown(db: Db) -> anyhow::Result<()> {
    use leadflow_engine::LearnStatus;
    let database = fresh_database(db).await?;
    let engine = engine_on_clock(
        &database.url,
        std::sync::Arc::new(leadflow_engine::ManualClock::new(now())),
    )
    .await?;
    let ws = leadflow_server::DEFAULT_WORKSPACE;
    engine.bootstrap(ws, leadflow_server::DEFAULT_POLICY).await?;
    let (running, channel) = serve(&engine, &loopback(&database.url), GRPC_ONLY).await?;
    let mut client = pb::analytics_service_client::AnalyticsServiceClient::new(channel);
    let request = learn_request((T0, day(100.0)));
    let (first, mut superseded) = opened(&mut client, request.clone()).await?;
    assert_eq!(
        (first.status, first.phase),
        (pb::LearnStatus::Running as i32, pb::LearnPhase::Reading as i32)
    );
    let later = pb::LearnPolicyRequest {
        choose_fit: true,
        ..request
    };
    let (second, mut stopped) = opened(&mut client, later).await?;
    assert!(second.id > first.id && second.choose_fit);

    let status = ending(&mut superseded).await;
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert_eq!(reason(&status), "SUPERSEDED");
    assert_eq!(meta(&status, "job_id"), first.id.to_string());

    let stopping = tokio::spawn(running.shutdown(std::time::Duration::from_secs(2)));
    let status = ending(&mut stopped).await;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), "SHUTTING_DOWN", "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("learning job {} goes on", second.id)),
        "{status:?}"
    );
    stopping.await?;

    // the job went on: a replica that learns runs it to its end
    assert!(engine.run_learning("next").await?);
    let job = engine.learn_job(ws, second.id).await?;
    assert_eq!(
        (job.status, job.error_code.as_deref()),
        (LearnStatus::Failed, Some("TOO_LITTLE_DATA"))
    );
    assert_eq!(
        engine.learn_job(ws, first.id).await?.status,
        LearnStatus::Superseded
    );
    Ok(())
}

/// A replica that dies holding a learning: another takes it over once the
/// lease has run out (not before), and a job whose replicas keep dying is
/// failed rather than taken for ever.
async fn a_job_whose_replica_died_is_taken_over(db: Db) -> anyhow::Result<()> {
    use leadflow_engine::{Clock as _, LearnQuery, LearnStatus, Request};
    let database = fresh_database(db).await?;
    let clock = std::sync::Arc::new(leadflow_engine::ManualClock::new(now()));
    let engine = engine_on_clock(&database.url, clock.clone()).await?;
    let ws = leadflow_server::DEFAULT_WORKSPACE;
    engine.bootstrap(ws, leadflow_server::DEFAULT_POLICY).await?;
    let query = LearnQuery {
        period: leadflow_domain::analytics::Period {
            start: Timestamp::from_secs(T0),
            end: Timestamp::from_secs(day(100.0)),
        },
        outcome: leadflow_domain::analytics::learn::LearnOutcome::Customer,
        base_version: None,
        model: None,
        target_precision: None,
        choose_fit: false,
    };
    let job = engine.start_learning(&Request::new(ws), &query).await?;
    let store = engine.store();
    let lease = leadflow_domain::Span::from_secs(60);
    let dead = store
        .take_learn_job("dead", clock.now(), clock.now().saturating_add(lease))
        .await?
        .expect("the job");
    assert_eq!(dead.id, job.id);
    clock.advance(leadflow_domain::Span::from_secs(59));
    assert!(
        !engine.run_learning("alive").await?,
        "taken before its lease ran out"
    );
    clock.advance(leadflow_domain::Span::from_secs(2));
    assert!(engine.run_learning("alive").await?);
    let ended = engine.learn_job(ws, job.id).await?;
    assert_eq!(
        (ended.status, ended.error_code.as_deref(), ended.outcomes),
        (LearnStatus::Failed, Some("TOO_LITTLE_DATA"), Some(0))
    );
    // a later learning supersedes a running one
    let first = engine.start_learning(&Request::new(ws), &query).await?;
    let second = engine.start_learning(&Request::new(ws), &query).await?;
    assert_eq!(
        engine.learn_job(ws, first.id).await?.status,
        LearnStatus::Superseded
    );
    assert!(engine.run_learning("alive").await?);
    assert_eq!(engine.learn_job(ws, second.id).await?.status, LearnStatus::Failed);

    // taken three times and never finished: failed the fourth time
    let job = engine.start_learning(&Request::new(ws), &query).await?;
    for _ in 0..3 {
        store
            .take_learn_job("dying", clock.now(), clock.now().saturating_add(lease))
            .await?
            .expect("the job");
        clock.advance(leadflow_domain::Span::from_secs(61));
    }
    assert!(engine.run_learning("alive").await?);
    let failed = engine.learn_job(ws, job.id).await?;
    assert_eq!(
        (failed.status, failed.error_code.as_deref()),
        (LearnStatus::Failed, Some("LEARN_FAILED"))
    );
    Ok(())
}

fn db_of(server: &TestServer) -> Db {
    if server.database_url().starts_with("postgres") {
        Db::Postgres
    } else {
        Db::Sqlite
    }
}

/// A big company's demo watcher, and a small one's newsletter reader: what
/// the history says, and the wrong policy gets backwards.
const CASES: [(&str, &str); 2] = [
    (
        "watcher.toml",
        r#"
now = "2026-02-03T00:00:00Z"
captured_at = "2026-02-01T09:00:00Z"

[profile]
email = "w@example.com"
company_size = "500"

[[engagement]]
id = "d1"
type = "demo_watched"
at = "2026-02-01T10:00:00Z"

[[engagement]]
id = "d2"
type = "demo_watched"
at = "2026-02-01T11:00:00Z"

[[engagement]]
id = "p1"
type = "pricing_viewed"
at = "2026-02-01T12:00:00Z"

[[engagement]]
id = "p2"
type = "pricing_viewed"
at = "2026-02-01T13:00:00Z"

[expect]
stage = "MQL"
"#,
    ),
    (
        "reader.toml",
        r#"
now = "2026-02-03T00:00:00Z"
captured_at = "2026-02-01T09:00:00Z"

[profile]
email = "r@example.com"
company_size = "50"

[[engagement]]
id = "n1"
type = "newsletter_opened"
at = "2026-02-01T10:00:00Z"

[[engagement]]
id = "b1"
type = "blog_read"
at = "2026-02-01T11:00:00Z"

[expect]
stage = "IQL"
"#,
    ),
];

/// `leadflow policy learn` over the seeded period, outcome SQL, at
/// precision 0.6, with `extra` arguments.
async fn cli_learn(server: &TestServer, extra: &[&str]) -> anyhow::Result<std::process::Output> {
    let against = format!("http://{}", server.grpc_addr());
    let mut args = vec![
        "policy",
        "learn",
        "--against",
        &against,
        "--from",
        "2026-01-01",
        "--to",
        "2026-04-12",
        "--outcome",
        "SQL",
        "--target-precision",
        "0.6",
    ];
    args.extend_from_slice(extra);
    crate::cli::leadflow(&args, None).await
}

/// `leadflow policy learn … > draft.toml`, then `policy validate` and
/// `policy test` with the draft (cases pass) and with the base (they fail).
async fn cli_learns_the_same_draft(server: &TestServer, db: Db, draft: &str) -> anyhow::Result<()> {
    use crate::cli::{Scratch, leadflow, text};
    let run = cli_learn(server, &[]).await?;
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(String::from_utf8(run.stdout.clone())?, draft);
    let report = String::from_utf8_lossy(&run.stderr);
    assert!(
        report.contains("back-test on the") && report.contains("demo"),
        "{report}"
    );

    let dir = Scratch::new("learn", db)?;
    let file = dir.write("draft.toml", draft)?;
    let base = dir.write("base.toml", WRONG)?;
    for (name, case) in CASES {
        dir.write(&format!("cases/{name}"), case)?;
    }
    let cases = dir.write("cases/.keep", "")?;
    let cases = cases.trim_end_matches("/.keep");
    let valid = leadflow(&["policy", "validate", &file], None).await?;
    assert!(valid.status.success(), "{}", text(&valid));
    let passed = leadflow(&["policy", "test", &file, "--cases", cases], None).await?;
    assert!(passed.status.success(), "{}\n{draft}", text(&passed));
    let failed = leadflow(&["policy", "test", &base, "--cases", cases], None).await?;
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    Ok(())
}

fn now() -> Timestamp {
    Timestamp::from_secs(T0 + 300 * DAY)
}

scenarios! {
    the_draft_beats_a_wrong_policy = clock_at(now()),
    a_fit_bar_is_chosen_when_asked = clock_at(now()),
    too_little_data_is_a_failed_precondition = clock_at(now()),
    bad_learning_requests_name_their_field = clock_at(now()),
    a_job_whose_replica_died_is_taken_over = each_database(),
    learning_streams_end_when_superseded_and_at_shutdown = each_database(),
}

//! AnalyticsService over a scripted history, on SQLite and PostgreSQL. The
//! expected numbers are worked out by hand from the script below, not by
//! the code under test.
//!
//! Days count from T0; the period is [day 0, day 20); "now" is day 31.
//!
//! | lead | source channel | history |
//! | --- | --- | --- |
//! | L1 | webinar | captured d0; 2 trials d1 → MQL d1; ACCEPT d3 → SQL; CONVERT d10 |
//! | L2 | web | captured d0 + 1 h; demo d2 → MQL and SQL d2; RECYCLE went_dark d5 |
//! | L3 | (none) | captured d1; PROMOTE d2; REJECT not_ready d4; PROMOTE d6 |
//! | L4 | paid_social | captured d3; 2 trials d4 → MQL d4; REJECT bad_fit d5; erased |
//! | L6 | (none) | captured d2; DISQUALIFY spam d3 |
//! | L7 | email | captured d−5; 2 trials d−4 → MQL d−4; ACCEPT d2 → SQL |
//! | L8 | web | captured d25 (after the period) |

use leadflow_domain::Timestamp;
use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::analytics_service_client::AnalyticsServiceClient;
use tonic::transport::Channel;

/// 2026-10-01T00:00:00Z.
const T0: i64 = 1_790_812_800;
const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

fn t(secs: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: T0 + secs,
        nanos: 0,
    }
}

fn day(n: i64) -> prost_types::Timestamp {
    t(n * DAY)
}

pub(crate) fn period(from: i64, to: i64) -> Option<pb::Period> {
    Some(pb::Period {
        start: Some(day(from)),
        end: Some(day(to)),
    })
}

fn secs(d: Option<&prost_types::Duration>) -> Option<i64> {
    d.map(|d| d.seconds)
}

struct Script<'a> {
    server: &'a mut TestServer,
    n: usize,
}

impl Script<'_> {
    async fn capture(&mut self, name: &str, at: prost_types::Timestamp) -> anyhow::Result<String> {
        Ok(self
            .server
            .leads
            .create_lead(pb::CreateLeadRequest {
                profile: good_fit(&format!("{name}@acme.com")),
                captured_at: Some(at),
                ..Default::default()
            })
            .await?
            .into_inner()
            .lead
            .expect("lead")
            .id)
    }

    async fn engage(
        &mut self,
        lead: &str,
        kind: &str,
        channel: &str,
        when: prost_types::Timestamp,
    ) -> anyhow::Result<()> {
        self.n += 1;
        let e = pb::Engagement {
            channel: channel.to_owned(),
            ..at(engagement(&format!("e{}", self.n), kind), when)
        };
        self.server.leads.record_engagement(record(lead, e)).await?;
        Ok(())
    }

    async fn command(
        &mut self,
        lead: &str,
        action: pb::Action,
        reason: &str,
        when: prost_types::Timestamp,
    ) -> anyhow::Result<()> {
        let mut request = transition(lead, action, reason);
        request.occurred_at = Some(when);
        if action == pb::Action::Convert {
            request.deal_value = Some(12_000.0);
            request.currency = "EUR".to_owned();
        }
        self.server.leads.transition(request).await?;
        Ok(())
    }
}

pub(crate) async fn seed(server: &mut TestServer) -> anyhow::Result<()> {
    let mut s = Script { server, n: 0 };
    let l1 = s.capture("l1", day(0)).await?;
    s.engage(&l1, "trial_started", "webinar", day(1)).await?;
    s.engage(&l1, "trial_started", "webinar", day(1)).await?;
    s.command(&l1, pb::Action::Accept, "", day(3)).await?;
    s.command(&l1, pb::Action::Convert, "", day(10)).await?;

    let l2 = s.capture("l2", t(HOUR)).await?;
    s.engage(&l2, "demo_requested", "web", day(2)).await?;
    s.command(&l2, pb::Action::Recycle, "went_dark", day(5)).await?;

    let l3 = s.capture("l3", day(1)).await?;
    s.command(&l3, pb::Action::Promote, "booth", day(2)).await?;
    s.command(&l3, pb::Action::Reject, "not_ready", day(4)).await?;
    s.command(&l3, pb::Action::Promote, "booth", day(6)).await?;

    let l4 = s.capture("l4", day(3)).await?;
    s.engage(&l4, "trial_started", "paid_social", day(4)).await?;
    s.engage(&l4, "trial_started", "paid_social", day(4)).await?;
    s.command(&l4, pb::Action::Reject, "bad_fit", day(5)).await?;

    let l6 = s.capture("l6", day(2)).await?;
    s.command(&l6, pb::Action::Disqualify, "spam", day(3)).await?;

    let l7 = s.capture("l7", day(-5)).await?;
    s.engage(&l7, "trial_started", "email", day(-4)).await?;
    s.engage(&l7, "trial_started", "email", day(-4)).await?;
    s.command(&l7, pb::Action::Accept, "", day(2)).await?;

    let l8 = s.capture("l8", day(25)).await?;
    s.engage(&l8, "page_viewed", "web", day(25)).await?;

    // an erased lead still counts
    s.server
        .leads
        .erase_lead(pb::EraseLeadRequest { lead: by_id(&l4) })
        .await?;
    Ok(())
}

pub(crate) fn analytics(server: &TestServer) -> AnalyticsServiceClient<Channel> {
    AnalyticsServiceClient::new(server.channel.clone())
}

fn entries(g: &pb::FunnelGroup, stage: pb::Stage) -> (i64, i64) {
    g.entries
        .iter()
        .find(|e| e.stage == stage as i32)
        .map_or((-1, -1), |e| (e.leads, e.entries))
}

fn conversion(g: &pb::FunnelGroup, from: pb::Stage, to: pb::Stage) -> (i64, i64, Option<i64>, Option<i64>) {
    let c = g
        .conversions
        .iter()
        .find(|c| c.from == from as i32 && c.to == to as i32)
        .expect("the pair");
    (c.cohort, c.converted, secs(c.p50.as_ref()), secs(c.p90.as_ref()))
}

fn stay(g: &pb::FunnelGroup, stage: pb::Stage) -> (i64, Option<i64>, Option<i64>) {
    let s = g
        .time_in_stage
        .iter()
        .find(|s| s.stage == stage as i32)
        .expect("the stage");
    (s.stays, secs(s.p50.as_ref()), secs(s.p90.as_ref()))
}

fn velocity(g: &pb::FunnelGroup, stage: pb::Stage) -> Vec<i64> {
    g.velocity
        .iter()
        .find(|v| v.stage == stage as i32)
        .map(|v| v.entries.clone())
        .unwrap_or_default()
}

async fn the_funnel_matches_the_script(mut server: TestServer) -> anyhow::Result<()> {
    use pb::Stage::{Customer, Disqualified, Iql, Mql, Sql};
    seed(&mut server).await?;
    let response = analytics(&server)
        .get_funnel(pb::GetFunnelRequest {
            period: period(0, 20),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(response.bucket, pb::VelocityBucket::Day as i32);
    assert_eq!(response.bucket_starts.len(), 20);
    assert_eq!(response.bucket_starts[3], day(3));
    assert_eq!(response.groups.len(), 1);
    let g = &response.groups[0];
    assert_eq!(g.key, "");

    // entries: (distinct leads, entries)
    assert_eq!(entries(g, Iql), (5, 8));
    assert_eq!(entries(g, Mql), (4, 5));
    assert_eq!(entries(g, Sql), (3, 3));
    assert_eq!(entries(g, Customer), (1, 1));
    assert_eq!(entries(g, Disqualified), (1, 1));

    // cohorts: (cohort, converted, p50, p90)
    assert_eq!(conversion(g, Iql, Mql), (5, 4, Some(DAY), Some(2 * DAY - HOUR)));
    assert_eq!(conversion(g, Mql, Sql), (4, 2, Some(0), Some(2 * DAY)));
    assert_eq!(conversion(g, Sql, Customer), (3, 1, Some(7 * DAY), Some(7 * DAY)));
    assert_eq!(conversion(g, Mql, Customer), (4, 1, Some(9 * DAY), Some(9 * DAY)));
    assert_eq!(
        conversion(g, Iql, Customer),
        (5, 1, Some(10 * DAY), Some(10 * DAY))
    );
    let rate = g
        .conversions
        .iter()
        .find(|c| c.from == Mql as i32 && c.to == Sql as i32)
        .map(|c| c.rate);
    assert_eq!(rate, Some(0.5));

    // stays that ended in the period: (stays, p50, p90)
    assert_eq!(stay(g, Iql), (6, Some(DAY), Some(2 * DAY)));
    assert_eq!(stay(g, Mql), (5, Some(2 * DAY), Some(6 * DAY)));
    assert_eq!(stay(g, Sql), (2, Some(3 * DAY), Some(7 * DAY)));
    assert_eq!(stay(g, Disqualified), (0, None, None));

    // velocity: MQL entries on days 1, 2 (two), 4 and 6
    let mut mql = vec![0; 20];
    mql[1] = 1;
    mql[2] = 2;
    mql[4] = 1;
    mql[6] = 1;
    assert_eq!(velocity(g, Mql), mql);
    assert_eq!(velocity(g, Iql).iter().sum::<i64>(), 8);

    // of the 4 MQLs: L3 and L4 rejected, L2 recycled
    let rejected = g.rejected.as_ref().expect("rate");
    assert_eq!((rejected.cohort, rejected.count, rejected.rate), (4, 2, 0.5));
    let recycled = g.recycled.as_ref().expect("rate");
    assert_eq!((recycled.cohort, recycled.count, recycled.rate), (4, 1, 0.25));
    let mut reasons: Vec<(i32, String, i64)> = g
        .reasons
        .iter()
        .map(|r| (r.r#move, r.reason.clone(), r.count))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            (pb::Move::Reject as i32, "bad_fit".to_owned(), 1),
            (pb::Move::Reject as i32, "not_ready".to_owned(), 1),
            (pb::Move::Recycle as i32, "went_dark".to_owned(), 1),
            (pb::Move::Disqualify as i32, "spam".to_owned(), 1),
        ]
    );

    // a day after the period takes in L1's conversion on day 10 … and
    // nothing of L8 until day 25
    let later = analytics(&server)
        .get_funnel(pb::GetFunnelRequest {
            period: period(10, 30),
            ..Default::default()
        })
        .await?
        .into_inner();
    let g = &later.groups[0];
    assert_eq!(entries(g, Customer), (1, 1));
    assert_eq!(entries(g, Iql), (1, 1));
    assert_eq!(entries(g, Mql), (0, 0));
    Ok(())
}

async fn groups_match_the_script(mut server: TestServer) -> anyhow::Result<()> {
    use pb::Stage::{Iql, Mql, Sql};
    seed(&mut server).await?;
    let by = |group_by: pb::FunnelGrouping| pb::GetFunnelRequest {
        period: period(0, 20),
        group_by: group_by.into(),
        ..Default::default()
    };
    let source = analytics(&server)
        .get_funnel(by(pb::FunnelGrouping::SourceChannel))
        .await?
        .into_inner();
    let keys: Vec<&str> = source.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["(none)", "email", "paid_social", "web", "webinar"]);
    let none = &source.groups[0];
    // L3 captured and rejected, L6 captured; L3 promoted twice
    assert_eq!(entries(none, Iql), (2, 3));
    assert_eq!(entries(none, Mql), (1, 2));
    let email = &source.groups[1];
    assert_eq!(entries(email, Sql), (1, 1));
    assert_eq!(conversion(email, Sql, pb::Stage::Customer).0, 1);

    let mql = analytics(&server)
        .get_funnel(by(pb::FunnelGrouping::MqlChannel))
        .await?
        .into_inner();
    let keys: Vec<&str> = mql.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(
        keys,
        ["(manual)", "(not MQL)", "email", "paid_social", "web", "webinar"]
    );
    let manual = &mql.groups[0];
    assert_eq!(conversion(manual, Mql, Sql), (1, 0, None, None));
    let web = &mql.groups[4];
    assert_eq!(conversion(web, Mql, Sql), (1, 1, Some(0), Some(0)));

    let version = analytics(&server)
        .get_funnel(by(pb::FunnelGrouping::PolicyVersion))
        .await?
        .into_inner();
    let keys: Vec<&str> = version.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["1"]);
    assert_eq!(entries(&version.groups[0], Iql), (5, 8));

    // the channel filter
    let web_only = analytics(&server)
        .get_funnel(pb::GetFunnelRequest {
            source_channel: "web".into(),
            ..by(pb::FunnelGrouping::Unspecified)
        })
        .await?
        .into_inner();
    assert_eq!(entries(&web_only.groups[0], Iql), (1, 2));
    assert_eq!(entries(&web_only.groups[0], Sql), (1, 1));

    // pages of groups
    let mut keys = Vec::new();
    let mut token = String::new();
    loop {
        let page = analytics(&server)
            .get_funnel(pb::GetFunnelRequest {
                page_size: 2,
                page_token: token,
                ..by(pb::FunnelGrouping::SourceChannel)
            })
            .await?
            .into_inner();
        assert!(page.groups.len() <= 2);
        keys.extend(page.groups.into_iter().map(|g| g.key));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(keys, ["(none)", "email", "paid_social", "web", "webinar"]);
    Ok(())
}

async fn bad_requests_name_their_field(server: TestServer) -> anyhow::Result<()> {
    let cases: Vec<(pb::GetFunnelRequest, &str)> = vec![
        (pb::GetFunnelRequest::default(), "period"),
        (
            pb::GetFunnelRequest {
                period: Some(pb::Period {
                    start: Some(day(1)),
                    end: None,
                }),
                ..Default::default()
            },
            "period.end",
        ),
        (
            pb::GetFunnelRequest {
                period: period(3, 3),
                ..Default::default()
            },
            "period.end",
        ),
        (
            pb::GetFunnelRequest {
                period: period(5, 1),
                ..Default::default()
            },
            "period.end",
        ),
        (
            pb::GetFunnelRequest {
                period: period(0, 10),
                group_by: 42,
                ..Default::default()
            },
            "group_by",
        ),
        (
            pb::GetFunnelRequest {
                period: period(0, 10),
                bucket: 9,
                ..Default::default()
            },
            "bucket",
        ),
        (
            pb::GetFunnelRequest {
                period: period(0, 2_000),
                bucket: pb::VelocityBucket::Day.into(),
                ..Default::default()
            },
            "bucket",
        ),
        (
            pb::GetFunnelRequest {
                period: period(0, 10),
                page_size: 201,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::GetFunnelRequest {
                period: period(0, 10),
                page_token: "nonsense".into(),
                ..Default::default()
            },
            "page_token",
        ),
    ];
    for (request, field) in cases {
        assert_invalid(
            analytics(&server).get_funnel(request.clone()).await,
            field,
            &request,
        );
    }
    Ok(())
}

async fn an_empty_workspace_is_zeros(server: TestServer) -> anyhow::Result<()> {
    let response = analytics(&server)
        .get_funnel(pb::GetFunnelRequest {
            period: period(0, 400),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(response.bucket, pb::VelocityBucket::Week as i32, "over 92 days");
    assert_eq!(response.bucket_starts.len(), 58);
    assert_eq!(response.groups.len(), 1);
    let g = &response.groups[0];
    assert!(g.entries.iter().all(|e| e.leads == 0 && e.entries == 0));
    assert!(
        g.conversions
            .iter()
            .all(|c| c.cohort == 0 && c.rate == 0.0 && c.p50.is_none())
    );
    assert!(
        g.velocity
            .iter()
            .all(|v| v.entries.len() == 58 && v.entries.iter().all(|&n| n == 0))
    );
    Ok(())
}

async fn rules_and_calibration_match_the_script(mut server: TestServer) -> anyhow::Result<()> {
    seed(&mut server).await?;
    // captured in [d−10, d30) and not erased: L1 won; L2, L3, L6 lost; L7, L8 open
    let report = analytics(&server)
        .get_rule_report(pb::GetRuleReportRequest {
            period: period(-10, 30),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(report.policy_version, 1);
    let leads = report.leads.expect("leads");
    assert_eq!((leads.won, leads.lost, leads.open), (1, 3, 2));
    let rule = |id: &str| {
        report
            .rules
            .iter()
            .find(|r| r.rule_id == id)
            .unwrap_or_else(|| panic!("{id}"))
    };
    let tally = |c: Option<&pb::OutcomeCounts>| c.map(|c| (c.won, c.lost, c.open));
    // every lead has the good-fit profile
    let senior = rule("senior-title");
    assert_eq!(senior.kind, pb::RuleKind::Fit as i32);
    assert_eq!(tally(senior.fired.as_ref()), Some((1, 3, 2)));
    assert_eq!(senior.lift, Some(1.0));
    // trials: L1 (won) and L7 (open): a win rate of 1 against 1/4
    let trial = rule("trial");
    assert_eq!(tally(trial.fired.as_ref()), Some((1, 0, 1)));
    assert_eq!(tally(trial.not_fired.as_ref()), Some((0, 3, 1)));
    assert_eq!(trial.lift, Some(4.0));
    // L8's page view: no decided lead, no lift
    let page = rule("any-page");
    assert_eq!(tally(page.fired.as_ref()), Some((0, 0, 1)));
    assert_eq!(page.lift, None);
    assert_eq!(tally(rule("webinar-attendance").fired.as_ref()), Some((0, 0, 0)));

    // peaks before reaching SQL or the outcome: L1 60, L7 60, L8 1, the rest 0;
    // L1, L2 (a demo) and L7 reached SQL; L1 is the customer
    let calibration = analytics(&server)
        .calibrate_threshold(pb::CalibrateThresholdRequest {
            period: period(-10, 30),
            step: Some(10.0),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        (
            calibration.leads,
            calibration.reached_sql,
            calibration.customers,
            calibration.max_peak
        ),
        (6, 3, 1, 60.0)
    );
    let cut = |c: f64| {
        calibration
            .points
            .iter()
            .find(|p| p.cutoff == c)
            .map(|p| (p.qualified, p.precision, p.recall))
    };
    assert_eq!(calibration.points.len(), 7);
    assert_eq!(cut(0.0), Some((6, Some(0.5), Some(1.0))));
    assert_eq!(cut(10.0), Some((2, Some(1.0), Some(1.0))));
    assert_eq!(cut(60.0), Some((2, Some(1.0), Some(1.0))));
    let suggested = calibration.suggested.expect("a suggestion");
    assert_eq!((suggested.cutoff, suggested.f1), (10.0, Some(1.0)));
    assert!(
        calibration.draft_source.contains("engagement_at_least = 10.0"),
        "{}",
        calibration.draft_source
    );
    // the draft runs through SimulatePolicy as it is
    server
        .policies
        .simulate_policy(pb::SimulatePolicyRequest {
            policy: Some(pb::simulate_policy_request::Policy::Source(
                calibration.draft_source.clone(),
            )),
            ..Default::default()
        })
        .await?;
    let targeted = analytics(&server)
        .calibrate_threshold(pb::CalibrateThresholdRequest {
            period: period(-10, 30),
            step: Some(10.0),
            target_precision: Some(0.4),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(targeted.suggested.map(|s| s.cutoff), Some(0.0));
    Ok(())
}

async fn bad_analytics_requests_name_their_field(server: TestServer) -> anyhow::Result<()> {
    let calibrate = |r: pb::CalibrateThresholdRequest| pb::CalibrateThresholdRequest {
        period: period(0, 10),
        ..r
    };
    let cases = vec![
        (
            calibrate(pb::CalibrateThresholdRequest {
                stage: pb::Stage::Sql.into(),
                ..Default::default()
            }),
            "stage",
        ),
        (
            calibrate(pb::CalibrateThresholdRequest {
                target_precision: Some(1.5),
                ..Default::default()
            }),
            "target_precision",
        ),
        (
            calibrate(pb::CalibrateThresholdRequest {
                step: Some(0.0),
                ..Default::default()
            }),
            "step",
        ),
        (
            calibrate(pb::CalibrateThresholdRequest {
                step: Some(0.01),
                max_cutoff: Some(100.0),
                ..Default::default()
            }),
            "step",
        ),
        (
            calibrate(pb::CalibrateThresholdRequest {
                policy_version: -1,
                ..Default::default()
            }),
            "policy_version",
        ),
        (pb::CalibrateThresholdRequest::default(), "period"),
    ];
    for (request, field) in cases {
        assert_invalid(
            analytics(&server).calibrate_threshold(request.clone()).await,
            field,
            &request,
        );
    }
    let status = analytics(&server)
        .get_rule_report(pb::GetRuleReportRequest {
            period: period(4, 2),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(fields(&status), ["period.end"]);
    let status = analytics(&server)
        .get_rule_report(pb::GetRuleReportRequest {
            period: period(0, 2),
            policy_version: 99,
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::NotFound);
    // an empty workspace: zeros, no suggestion
    let empty = analytics(&server)
        .calibrate_threshold(calibrate(pb::CalibrateThresholdRequest::default()))
        .await?
        .into_inner();
    assert_eq!((empty.leads, empty.points.len()), (0, 1));
    assert!(empty.suggested.is_none() && empty.draft_source.is_empty());
    Ok(())
}

/// Rule reports and calibrations read the leads a page at a time: more
/// leads than a page, many captured at one instant, each counted once.
async fn reports_count_every_lead_of_many_pages_once(server: TestServer) -> anyhow::Result<()> {
    use leadflow_domain::lifecycle::Deal;
    use leadflow_domain::{CommandKind, ManualTransition};
    use leadflow_engine::{CreateLead, LeadKey, Request};

    let engine = &server.engine;
    let req = Request::new(leadflow_server::DEFAULT_WORKSPACE);
    let (mut won, mut erased) = (0_i64, 0_i64);
    for i in 0..1_203_i64 {
        // four instants, so that pages end inside runs of equal capture times
        let captured = Timestamp::from_secs(T0 + (i % 4) * HOUR);
        let lead = engine
            .create_lead(
                &req,
                &CreateLead {
                    profile: good_fit(&format!("lead{i}@acme.com")),
                    captured_at: Some(captured),
                    ..CreateLead::default()
                },
            )
            .await?;
        let key = LeadKey::Id(lead.lead.expect("a created lead").id);
        let erase = i % 400 == 1;
        if i % 3 == 0 {
            engine
                .transition(
                    &req,
                    &key,
                    &ManualTransition {
                        command: CommandKind::Convert,
                        reason: None,
                        actor: None,
                        deal: Some(Deal {
                            value: 1_000.0,
                            currency: "EUR".to_owned(),
                        }),
                        occurred_at: None,
                    },
                    None,
                )
                .await?;
            won += i64::from(!erase);
        }
        if erase {
            engine.erase_lead(&req, &key).await?;
            erased += 1;
        }
    }
    let report = analytics(&server)
        .get_rule_report(pb::GetRuleReportRequest {
            period: period(-1, 1),
            ..Default::default()
        })
        .await?
        .into_inner();
    let leads = report.leads.expect("leads");
    assert_eq!(
        (leads.won, leads.lost, leads.open),
        (won, 0, 1_203 - erased - won)
    );
    let calibration = analytics(&server)
        .calibrate_threshold(pb::CalibrateThresholdRequest {
            period: period(-1, 1),
            step: Some(10.0),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!((calibration.leads, calibration.customers), (1_203 - erased, won));
    Ok(())
}

fn now() -> Timestamp {
    Timestamp::from_secs(T0 + 31 * DAY)
}

scenarios! {
    the_funnel_matches_the_script = clock_at(now()),
    groups_match_the_script = clock_at(now()),
    bad_requests_name_their_field = clock_at(now()),
    an_empty_workspace_is_zeros = clock_at(now()),
    rules_and_calibration_match_the_script = clock_at(now()),
    bad_analytics_requests_name_their_field = clock_at(now()),
    reports_count_every_lead_of_many_pages_once = clock_at(now()),
}

//! Attribution over the API, on SQLite and PostgreSQL: GetFunnel and
//! GetRuleReport grouped by an engagement property of the first touch, the
//! MQL move's engagement or every touch before the outcome, with lift, the
//! erased and the bounded groups. The numbers are worked out by hand:
//!
//! | lead | engagements (campaign) | then |
//! | --- | --- | --- |
//! | won | ad spring; trial spring; webinar webinar-q1; 2 ebooks q1-ebook → MQL | demo → SQL; CONVERT |
//! | lost | trial spring; webinar spring; 2 ebooks q1-ebook → MQL | REJECT |
//! | promoted | none | PROMOTE → MQL |
//! | erased | trial spring; webinar spring; 2 ebooks q1-ebook → MQL | erased |

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

use crate::analytics::analytics;

struct Script<'a> {
    server: &'a mut TestServer,
    n: usize,
}

impl Script<'_> {
    async fn engage(
        &mut self,
        lead: &str,
        kind: &str,
        campaign: Option<&str>,
        ago: i64,
    ) -> anyhow::Result<()> {
        self.n += 1;
        let mut e = at(engagement(&format!("att-{}", self.n), kind), seconds_ago(ago));
        if let Some(c) = campaign {
            e.properties.insert("campaign".to_owned(), c.to_owned());
        }
        self.server.leads.record_engagement(record(lead, e)).await?;
        Ok(())
    }

    /// trial, webinar (campaign `webinar`), two ebooks (q1-ebook): 65 → MQL
    /// at the second ebook.
    async fn qualify(&mut self, lead: &str, first: &str, webinar: &str) -> anyhow::Result<()> {
        self.engage(lead, "trial_started", Some(first), 500).await?;
        self.engage(lead, "webinar_attended", Some(webinar), 490).await?;
        self.engage(lead, "ebook_downloaded", Some("q1-ebook"), 480)
            .await?;
        self.engage(lead, "ebook_downloaded", Some("q1-ebook"), 470)
            .await?;
        Ok(())
    }
}

async fn seed(server: &mut TestServer) -> anyhow::Result<()> {
    let mut s = Script { server, n: 0 };
    let won = create_captured(s.server, "won@acme.com", Some(seconds_ago(900))).await?;
    s.engage(&won.id, "ad_clicked", Some("spring"), 600).await?;
    s.qualify(&won.id, "spring", "webinar-q1").await?;
    s.engage(&won.id, "demo_requested", None, 400).await?;
    let mut convert = transition(&won.id, pb::Action::Convert, "");
    convert.occurred_at = Some(seconds_ago(300));
    convert.deal_value = Some(10_000.0);
    convert.currency = "EUR".to_owned();
    s.server.leads.transition(convert).await?;
    // after the win: touches nothing
    s.engage(&won.id, "page_viewed", Some("late"), 100).await?;

    let lost = create_captured(s.server, "lost@acme.com", Some(seconds_ago(900))).await?;
    s.qualify(&lost.id, "spring", "spring").await?;
    s.server
        .leads
        .transition(transition(&lost.id, pb::Action::Reject, "not_ready"))
        .await?;

    let promoted = create_captured(s.server, "promoted@acme.com", Some(seconds_ago(900))).await?;
    s.server
        .leads
        .transition(transition(&promoted.id, pb::Action::Promote, "booth"))
        .await?;

    let erased = create_captured(s.server, "erased@acme.com", Some(seconds_ago(900))).await?;
    s.qualify(&erased.id, "spring", "spring").await?;
    s.server
        .leads
        .erase_lead(pb::EraseLeadRequest {
            lead: by_id(&erased.id),
        })
        .await?;
    assert_eq!(stage(&s.server.lead(&won.id).await?), pb::Stage::Customer);
    assert_eq!(stage(&s.server.lead(&promoted.id).await?), pb::Stage::Mql);
    Ok(())
}

fn period() -> Option<pb::Period> {
    Some(pb::Period {
        start: Some(seconds_ago(3_600)),
        end: Some(seconds_ago(-3_600)),
    })
}

async fn funnel(server: &TestServer, by: &str, top: i32) -> anyhow::Result<pb::GetFunnelResponse> {
    Ok(analytics(server)
        .get_funnel(pb::GetFunnelRequest {
            period: period(),
            group_by_property: by.to_owned(),
            top_groups: top,
            ..Default::default()
        })
        .await?
        .into_inner())
}

fn keys(f: &pb::GetFunnelResponse) -> Vec<&str> {
    f.groups.iter().map(|g| g.key.as_str()).collect()
}

/// A group's MQL → CUSTOMER cohort, converted and lift.
fn to_customer(f: &pb::GetFunnelResponse, key: &str) -> (i64, i64, Option<f64>) {
    let group = f.groups.iter().find(|g| g.key == key).expect("the group");
    let c = group
        .conversions
        .iter()
        .find(|c| c.from == pb::Stage::Mql as i32 && c.to == pb::Stage::Customer as i32)
        .expect("MQL → CUSTOMER");
    (c.cohort, c.converted, c.lift)
}

async fn the_funnel_groups_by_an_engagement_property(mut server: TestServer) -> anyhow::Result<()> {
    seed(&mut server).await?;

    let first = funnel(&server, "first:campaign", 0).await?;
    assert_eq!(keys(&first), ["(erased)", "(none)", "spring"]);
    assert!(!first.groups_overlap);
    assert_eq!(
        to_customer(&first, "spring"),
        (2, 1, Some(2.0)),
        "1 of 2 against 1 of 4"
    );
    assert_eq!(to_customer(&first, "(none)"), (1, 0, Some(0.0)));

    let mql = funnel(&server, "mql:campaign", 0).await?;
    assert_eq!(
        keys(&mql),
        ["(erased)", "(none)", "q1-ebook"],
        "the promoted lead: (none)"
    );
    let by_type = funnel(&server, "mql:type", 0).await?;
    assert_eq!(keys(&by_type), ["(erased)", "(none)", "ebook_downloaded"]);

    let touched = funnel(&server, "touched:campaign", 0).await?;
    assert!(touched.groups_overlap);
    assert_eq!(
        keys(&touched),
        ["(erased)", "(none)", "q1-ebook", "spring", "webinar-q1"],
        "not \"late\": after the win"
    );
    assert_eq!(to_customer(&touched, "webinar-q1"), (1, 1, Some(4.0)));
    assert_eq!(to_customer(&touched, "q1-ebook"), (2, 1, Some(2.0)));

    // The largest group (ties by key) and the rest as "(other)".
    let top = funnel(&server, "touched:campaign", 1).await?;
    assert_eq!(keys(&top), ["(other)", "q1-ebook"]);
    assert_eq!(
        to_customer(&top, "(other)").0,
        4,
        "every lead touched something else too, or nothing"
    );

    // Without a property the whole is one group, its lift 1.
    let whole = analytics(&server)
        .get_funnel(pb::GetFunnelRequest {
            period: period(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(to_customer(&whole, ""), (4, 1, Some(1.0)));
    Ok(())
}

async fn the_rule_report_groups_outcomes_by_an_engagement_property(
    mut server: TestServer,
) -> anyhow::Result<()> {
    seed(&mut server).await?;
    let report = analytics(&server)
        .get_rule_report(pb::GetRuleReportRequest {
            period: period(),
            group_by_property: "touched:campaign".to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(report.groups_overlap);
    type Row<'a> = (&'a str, (i64, i64, i64), Option<f64>);
    let groups: Vec<Row<'_>> = report
        .groups
        .iter()
        .map(|g| {
            let c = g.leads.as_ref().map_or((-1, -1, -1), |c| (c.won, c.lost, c.open));
            (g.key.as_str(), c, g.lift)
        })
        .collect();
    // won share of the decided: 1 of 2 overall (the erased lead is open,
    // the promoted one open too)
    assert_eq!(
        groups,
        [
            ("(erased)", (0, 0, 1), None),
            ("(none)", (0, 0, 1), None),
            ("q1-ebook", (1, 1, 0), Some(1.0)),
            ("spring", (1, 1, 0), Some(1.0)),
            ("webinar-q1", (1, 0, 0), Some(2.0)),
        ]
    );
    let won = report
        .groups
        .iter()
        .find(|g| g.key == "webinar-q1")
        .and_then(|g| g.p50_to_win.as_ref());
    assert!(won.is_some_and(|d| (599..=601).contains(&d.seconds)), "{won:?}");
    Ok(())
}

async fn bad_attribution_requests_name_their_field(server: TestServer) -> anyhow::Result<()> {
    let funnel_cases = [
        (
            pb::GetFunnelRequest {
                group_by_property: "last:campaign".to_owned(),
                ..Default::default()
            },
            "group_by_property",
        ),
        (
            pb::GetFunnelRequest {
                group_by_property: "first:".to_owned(),
                ..Default::default()
            },
            "group_by_property",
        ),
        (
            pb::GetFunnelRequest {
                group_by_property: format!("first:{}", "p".repeat(5_000)),
                ..Default::default()
            },
            "group_by_property",
        ),
        (
            pb::GetFunnelRequest {
                group_by_property: "first:campaign".to_owned(),
                group_by: pb::FunnelGrouping::SourceChannel.into(),
                ..Default::default()
            },
            "group_by",
        ),
        (
            pb::GetFunnelRequest {
                group_by_property: "first:campaign".to_owned(),
                top_groups: 101,
                ..Default::default()
            },
            "top_groups",
        ),
        (
            pb::GetFunnelRequest {
                top_groups: 5,
                ..Default::default()
            },
            "top_groups",
        ),
    ];
    for (request, field) in funnel_cases {
        let request = pb::GetFunnelRequest {
            period: period(),
            ..request
        };
        let status = analytics(&server)
            .get_funnel(request.clone())
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{request:?}");
        assert_eq!(fields(&status), [field], "{status:?}");
        assert!(status.message().len() < 1_000);
    }
    let status = analytics(&server)
        .get_rule_report(pb::GetRuleReportRequest {
            period: period(),
            group_by_property: "anything".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(fields(&status), ["group_by_property"]);
    Ok(())
}

scenarios! {
    the_funnel_groups_by_an_engagement_property,
    the_rule_report_groups_outcomes_by_an_engagement_property,
    bad_attribution_requests_name_their_field,
}

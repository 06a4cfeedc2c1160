//! Lead search over the API, on SQLite and PostgreSQL: ListLeads with a
//! filter (stages, levels, grades, score ranges of any model, profile
//! attributes, capture and stage-entry ranges) and an order, paged; scores
//! read at the request's instant; bad filters refused by field.

use leadflow_domain::{Span, Timestamp};
use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

/// 2026-06-01T00:00:00Z.
const T0: Timestamp = Timestamp::from_secs(1_780_272_000);

fn score(model: &str, kind: pb::ScoreKind) -> Option<pb::ScoreRef> {
    Some(pb::ScoreRef {
        model: model.to_owned(),
        kind: kind.into(),
    })
}

fn range(model: &str, kind: pb::ScoreKind, at_least: Option<f64>, at_most: Option<f64>) -> pb::ScoreRange {
    pb::ScoreRange {
        score: score(model, kind),
        at_least,
        at_most,
    }
}

fn filtered(filter: pb::LeadFilter) -> pb::ListLeadsRequest {
    pb::ListLeadsRequest {
        filter: Some(filter),
        ..Default::default()
    }
}

async fn emails(server: &mut TestServer, request: pb::ListLeadsRequest) -> anyhow::Result<Vec<String>> {
    let page = server.leads.list_leads(request).await?.into_inner();
    Ok(page
        .leads
        .iter()
        .map(|l| l.profile.get("email").cloned().unwrap_or_default())
        .collect())
}

/// Every page of a request, `size` leads a page.
async fn all_pages(
    server: &mut TestServer,
    request: pb::ListLeadsRequest,
    size: i32,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..50 {
        let page = server
            .leads
            .list_leads(pb::ListLeadsRequest {
                page_size: size,
                page_token: token.clone(),
                ..request.clone()
            })
            .await?
            .into_inner();
        assert!(page.leads.len() <= usize::try_from(size).unwrap_or(0));
        out.extend(
            page.leads
                .iter()
                .map(|l| l.profile.get("email").cloned().unwrap_or_default()),
        );
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
    anyhow::bail!("more than 50 pages")
}

async fn engage(
    server: &mut TestServer,
    lead: &str,
    id: &str,
    kind: &str,
    props: &[(&str, &str)],
) -> anyhow::Result<()> {
    let mut e = engagement(&format!("{lead}-{id}"), kind);
    for (k, v) in props {
        e.properties.insert((*k).to_owned(), (*v).to_owned());
    }
    server.leads.record_engagement(record(lead, e)).await?;
    Ok(())
}

/// a: MQL at 65 (trial, webinar, two ebooks), captured first;
/// b: an IQL at 30 (a trial), at Initech; c: a poor fit (no title, a
/// small company) with an analytics trial: 30 and 40 on analytics;
/// d: five trials, 150, hot; e: erased.
async fn seed(server: &mut TestServer) -> anyhow::Result<()> {
    let a = create(server, "a@acme.com").await?;
    for (id, kind) in [
        ("t", "trial_started"),
        ("w", "webinar_attended"),
        ("e1", "ebook_downloaded"),
        ("e2", "ebook_downloaded"),
    ] {
        engage(server, &a.id, id, kind, &[]).await?;
    }
    server.manual_clock().advance(Span::from_hours(1));
    let b = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: profile(&[
                ("email", "b@initech.com"),
                ("company", "Initech"),
                ("title", "VP Sales"),
                ("company_size", "300"),
                ("industry", "Software"),
            ]),
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .expect("b");
    engage(server, &b.id, "t", "trial_started", &[]).await?;
    server.manual_clock().advance(Span::from_hours(1));
    let c = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: profile(&[("email", "c@tiny.io"), ("company", "Tiny"), ("company_size", "5")]),
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .expect("c");
    engage(server, &c.id, "t", "trial_started", &[("product", "analytics")]).await?;
    server.manual_clock().advance(Span::from_hours(1));
    let d = create(server, "d@acme.com").await?;
    for i in 0..5 {
        engage(server, &d.id, &format!("t{i}"), "trial_started", &[]).await?;
    }
    let e = create(server, "e@acme.com").await?;
    for i in 0..5 {
        engage(server, &e.id, &format!("t{i}"), "trial_started", &[]).await?;
    }
    server
        .leads
        .erase_lead(pb::EraseLeadRequest { lead: by_id(&e.id) })
        .await?;
    Ok(())
}

async fn leads_are_found_by_their_scores_profile_and_instants(mut server: TestServer) -> anyhow::Result<()> {
    seed(&mut server).await?;
    let q = pb::ScoreKind::QualifyingEngagement;
    assert_eq!(
        emails(
            &mut server,
            filtered(pb::LeadFilter {
                scores: vec![range("", q, Some(60.0), None)],
                ..Default::default()
            })
        )
        .await?,
        emails(
            &mut server,
            filtered(pb::LeadFilter {
                stages: vec![pb::Stage::Mql.into()],
                ..Default::default()
            })
        )
        .await?,
        "the MQLs are those at 60 and above here"
    );
    let mut by_score = emails(
        &mut server,
        pb::ListLeadsRequest {
            order_by: pb::LeadOrder::Score.into(),
            order_score: score("", q),
            descending: true,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(&by_score[..2], ["d@acme.com", "a@acme.com"], "150, then 65");
    by_score.sort();
    assert_eq!(
        by_score,
        ["a@acme.com", "b@initech.com", "c@tiny.io", "d@acme.com"],
        "never the erased lead"
    );

    // another model's score
    let analytics = emails(
        &mut server,
        filtered(pb::LeadFilter {
            scores: vec![range(
                "analytics",
                pb::ScoreKind::Engagement,
                Some(35.0),
                Some(45.0),
            )],
            ..Default::default()
        }),
    )
    .await?;
    assert_eq!(analytics, ["c@tiny.io"]);
    let fit = emails(
        &mut server,
        filtered(pb::LeadFilter {
            scores: vec![range("", pb::ScoreKind::Fit, None, Some(10.0))],
            ..Default::default()
        }),
    )
    .await?;
    assert_eq!(fit, ["c@tiny.io"]);
    // level and grade
    let hot = emails(
        &mut server,
        filtered(pb::LeadFilter {
            levels: vec!["hot".into()],
            ..Default::default()
        }),
    )
    .await?;
    assert_eq!(hot, ["d@acme.com"]);
    let no_level = emails(
        &mut server,
        filtered(pb::LeadFilter {
            stages: vec![pb::Stage::Mql.into()],
            levels: vec![String::new()],
            ..Default::default()
        }),
    )
    .await?;
    assert_eq!(no_level, ["a@acme.com"], "an MQL below every level");
    let mut graded = emails(
        &mut server,
        filtered(pb::LeadFilter {
            grades: vec!["A".into()],
            ..Default::default()
        }),
    )
    .await?;
    graded.sort();
    assert_eq!(graded, ["a@acme.com", "b@initech.com", "d@acme.com"]);
    // profile attributes, trimmed and case-insensitively
    let prefix = emails(
        &mut server,
        filtered(pb::LeadFilter {
            attributes: vec![pb::AttributeFilter {
                attribute: "email".into(),
                r#match: Some(pb::attribute_filter::Match::Prefix(" B@".into())),
            }],
            ..Default::default()
        }),
    )
    .await?;
    assert_eq!(prefix, ["b@initech.com"]);
    let mut companies = emails(
        &mut server,
        filtered(pb::LeadFilter {
            attributes: vec![pb::AttributeFilter {
                attribute: "company".into(),
                r#match: Some(pb::attribute_filter::Match::OneOf(pb::StringList {
                    values: vec!["initech".into(), "TINY".into()],
                })),
            }],
            ..Default::default()
        }),
    )
    .await?;
    companies.sort();
    assert_eq!(companies, ["b@initech.com", "c@tiny.io"]);
    // instants: a was captured an hour before b
    let t = |h: i64| {
        Some(prost_types::Timestamp {
            seconds: T0.as_micros() / 1_000_000 + h * 3_600,
            nanos: 0,
        })
    };
    let first_hour = emails(
        &mut server,
        filtered(pb::LeadFilter {
            captured: Some(pb::TimeRange {
                start: t(0),
                end: t(1),
            }),
            ..Default::default()
        }),
    )
    .await?;
    assert_eq!(first_hour, ["a@acme.com"]);
    // paged, one at a time, by capture: every lead once, in order
    let paged = all_pages(
        &mut server,
        pb::ListLeadsRequest {
            order_by: pb::LeadOrder::Captured.into(),
            ..Default::default()
        },
        1,
    )
    .await?;
    assert_eq!(paged[0], "a@acme.com");
    assert_eq!(paged.len(), 4, "{paged:?}");
    let by_score_paged = all_pages(
        &mut server,
        pb::ListLeadsRequest {
            order_by: pb::LeadOrder::Score.into(),
            order_score: score("", q),
            descending: true,
            ..Default::default()
        },
        1,
    )
    .await?;
    assert_eq!(&by_score_paged[..2], ["d@acme.com", "a@acme.com"]);
    assert_eq!(by_score_paged.len(), 4);
    // ascending, by another model's score, one a page: the same leads reversed in kind
    let ascending = all_pages(
        &mut server,
        pb::ListLeadsRequest {
            order_by: pb::LeadOrder::Score.into(),
            order_score: score("analytics", pb::ScoreKind::Engagement),
            ..Default::default()
        },
        1,
    )
    .await?;
    assert_eq!(ascending.len(), 4, "{ascending:?}");
    assert_eq!(
        ascending.last().map(String::as_str),
        Some("c@tiny.io"),
        "40 on analytics, the others 0"
    );
    Ok(())
}

async fn scores_are_read_at_the_request_instant(mut server: TestServer) -> anyhow::Result<()> {
    seed(&mut server).await?;
    let q = pb::ScoreKind::QualifyingEngagement;
    let at_least = |x: f64| {
        filtered(pb::LeadFilter {
            scores: vec![range("", q, Some(x), None)],
            ..Default::default()
        })
    };
    assert_eq!(emails(&mut server, at_least(100.0)).await?, ["d@acme.com"]);
    // a half-life later, d shows about 75: not at 100 any more, still at 70
    server.manual_clock().advance(Span::from_days(30));
    let d = emails(&mut server, at_least(70.0)).await?;
    assert_eq!(d, ["d@acme.com"]);
    assert!(emails(&mut server, at_least(100.0)).await?.is_empty());
    let shown = server
        .leads
        .list_leads(at_least(70.0))
        .await?
        .into_inner()
        .leads
        .first()
        .and_then(|l| l.scores.as_ref())
        .map(|s| s.qualifying_engagement)
        .unwrap_or_default();
    assert!((74.0..76.0).contains(&shown), "{shown}");
    // exactly at the shown value: found (bounds are inclusive, to 6 decimals)
    assert_eq!(emails(&mut server, at_least(shown)).await?, ["d@acme.com"]);
    assert!(emails(&mut server, at_least(shown + 0.000_001)).await?.is_empty());
    Ok(())
}

async fn bad_filters_are_refused_by_field(mut server: TestServer) -> anyhow::Result<()> {
    let q = pb::ScoreKind::QualifyingEngagement;
    let f = |filter: pb::LeadFilter| filtered(filter);
    let cases = vec![
        (
            f(pb::LeadFilter {
                scores: vec![range("nope", q, Some(1.0), None)],
                ..Default::default()
            }),
            "filter.scores[0].score.model",
        ),
        (
            f(pb::LeadFilter {
                scores: vec![range("", q, Some(5.0), Some(1.0))],
                ..Default::default()
            }),
            "filter.scores[0].at_most",
        ),
        (
            f(pb::LeadFilter {
                scores: vec![range("", q, None, None)],
                ..Default::default()
            }),
            "filter.scores[0]",
        ),
        (
            f(pb::LeadFilter {
                scores: vec![range("", q, Some(f64::NAN), None)],
                ..Default::default()
            }),
            "filter.scores[0].at_least",
        ),
        (
            f(pb::LeadFilter {
                scores: vec![range("", q, Some(1.0), None); 9],
                ..Default::default()
            }),
            "filter.scores",
        ),
        (
            f(pb::LeadFilter {
                attributes: vec![pb::AttributeFilter {
                    attribute: "email".into(),
                    r#match: None,
                }],
                ..Default::default()
            }),
            "filter.attributes[0]",
        ),
        (
            f(pb::LeadFilter {
                attributes: vec![pb::AttributeFilter {
                    attribute: String::new(),
                    r#match: Some(pb::attribute_filter::Match::Equals("x".into())),
                }],
                ..Default::default()
            }),
            "filter.attributes[0].attribute",
        ),
        (
            f(pb::LeadFilter {
                captured: Some(pb::TimeRange {
                    start: Some(prost_types::Timestamp {
                        seconds: 2_000_000_000,
                        nanos: 0,
                    }),
                    end: Some(prost_types::Timestamp {
                        seconds: 1_000_000_000,
                        nanos: 0,
                    }),
                }),
                ..Default::default()
            }),
            "filter.captured.end",
        ),
        (
            f(pb::LeadFilter {
                stages: vec![99],
                ..Default::default()
            }),
            "filter.stages[0]",
        ),
        (
            pb::ListLeadsRequest {
                order_score: score("", q),
                ..Default::default()
            },
            "order_score",
        ),
        (
            pb::ListLeadsRequest {
                order_by: pb::LeadOrder::Score.into(),
                order_score: score("nope", q),
                ..Default::default()
            },
            "order_score.model",
        ),
        (
            pb::ListLeadsRequest {
                order_by: 42,
                ..Default::default()
            },
            "order_by",
        ),
    ];
    for (request, field) in cases {
        let status = server
            .leads
            .list_leads(request.clone())
            .await
            .expect_err("refused");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{request:?}: {status:?}"
        );
        assert_eq!(fields(&status), [field], "{status:?}");
        assert!(status.message().len() < 2_000);
    }
    // a token of one order is refused by another
    for i in 0..3 {
        create(&mut server, &format!("p{i}@acme.com")).await?;
    }
    let page = server
        .leads
        .list_leads(pb::ListLeadsRequest {
            order_by: pb::LeadOrder::Captured.into(),
            page_size: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(!page.next_page_token.is_empty());
    let status = server
        .leads
        .list_leads(pb::ListLeadsRequest {
            order_by: pb::LeadOrder::EnteredStage.into(),
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .expect_err("another order's token");
    assert_eq!(fields(&status), ["page_token"]);
    Ok(())
}

scenarios! {
    leads_are_found_by_their_scores_profile_and_instants = clock_at(T0),
    scores_are_read_at_the_request_instant = clock_at(T0),
    bad_filters_are_refused_by_field = clock_at(T0),
}

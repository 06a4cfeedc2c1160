//! Anonymous activity over the API: engagements under an anonymous id are
//! kept and score nothing; `IdentifyLead` joins them to a lead at their
//! own instants and decides what they cause at the identification; the id
//! then names the lead.

use leadflow_domain::{Span, Timestamp};
use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

/// 2026-01-05T09:00:00Z.
const T0: Timestamp = Timestamp::from_secs(1_767_603_600);
const HOUR: i64 = 3_600;

fn anonymous(id: &str) -> Option<pb::LeadRef> {
    Some(pb::LeadRef {
        key: Some(pb::lead_ref::Key::AnonymousId(id.to_owned())),
    })
}

fn pb_time(t: Timestamp) -> prost_types::Timestamp {
    let micros = t.as_micros();
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

/// A pricing page seen `hours` after T0: 10 points (at most two a day) and
/// 1 for any page.
fn pricing_view(id: &str, hours: i64) -> pb::Engagement {
    let mut e = engagement(id, "page_viewed");
    e.properties.insert("path".to_owned(), "/pricing".to_owned());
    at(
        e,
        pb_time(Timestamp::from_secs(T0.as_micros() / 1_000_000 + hours * HOUR)),
    )
}

async fn as_visitor(
    server: &mut TestServer,
    visitor: &str,
    e: pb::Engagement,
) -> Result<pb::RecordEngagementResponse, tonic::Status> {
    server
        .leads
        .record_engagement(pb::RecordEngagementRequest {
            lead: anonymous(visitor),
            engagement: Some(e),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn identify(lead: &str, visitor: &str) -> pb::IdentifyLeadRequest {
    pb::IdentifyLeadRequest {
        lead: by_id(lead),
        anonymous_id: visitor.to_owned(),
        ..Default::default()
    }
}

/// The six views of the first scenario: two a day over three days.
const VIEW_HOURS: [i64; 6] = [0, 1, 24, 25, 48, 49];

async fn a_visitor_s_page_views_then_a_form_make_an_mql_at_identification(
    mut server: TestServer,
) -> anyhow::Result<()> {
    server.manual_clock().set(T0.saturating_add(Span::from_hours(50)));
    for (i, h) in VIEW_HOURS.iter().enumerate() {
        let r = as_visitor(&mut server, "cookie-1", pricing_view(&format!("v{i}"), *h)).await?;
        assert!(r.anonymous && r.lead.is_none() && !r.duplicate, "{r:?}");
    }
    // A re-delivery is known; the id names no lead yet.
    let again = as_visitor(&mut server, "cookie-1", pricing_view("v0", 0)).await?;
    assert!(again.anonymous && again.duplicate);
    let missing = server
        .leads
        .get_lead(pb::GetLeadRequest {
            lead: anonymous("cookie-1"),
        })
        .await
        .expect_err("not identified yet");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // The form: a lead, at IQL, then identified an hour later.
    server.manual_clock().set(T0.saturating_add(Span::from_hours(60)));
    let lead = create(&mut server, "ann@initech.com").await?;
    assert_eq!(stage(&lead), pb::Stage::Iql);
    server.manual_clock().set(T0.saturating_add(Span::from_hours(61)));
    let identified = server
        .leads
        .identify_lead(identify(&lead.id, "cookie-1"))
        .await?
        .into_inner();
    assert_eq!(identified.joined, 6);
    assert!(!identified.already);
    assert_eq!(moves(&identified.transitions), [(pb::Stage::Iql, pb::Stage::Mql)]);
    let mql = &identified.transitions[0];
    assert_eq!(mql.cause, pb::Cause::Identify as i32);
    assert_eq!(mql.cause_ref, "cookie-1");
    let at = mql.occurred_at.expect("an instant");
    assert_eq!(at.seconds, T0.as_micros() / 1_000_000 + 61 * HOUR);
    // Each view decayed from its own instant over a 30-day half-life.
    let expected: f64 = VIEW_HOURS
        .iter()
        .map(|h| 11.0 * 0.5_f64.powf((61 - h) as f64 / (30.0 * 24.0)))
        .sum();
    assert!(
        (mql.engagement - expected).abs() < 1e-5,
        "{} against {expected}",
        mql.engagement
    );
    // The explanation reads the whole joined log at any instant: half an
    // hour before the identification the views were worth what they were.
    let before = server
        .leads
        .explain_score(pb::ExplainScoreRequest {
            lead: anonymous("cookie-1"),
            as_of: Some(pb_time(Timestamp::from_secs(
                T0.as_micros() / 1_000_000 + 60 * HOUR + HOUR / 2,
            ))),
        })
        .await?
        .into_inner();
    let then: f64 = VIEW_HOURS
        .iter()
        .map(|h| 11.0 * 0.5_f64.powf((60.5 - *h as f64) / (30.0 * 24.0)))
        .sum();
    let engagement = before.scores.map(|s| s.engagement).unwrap_or_default();
    assert!((engagement - then).abs() < 1e-5, "{engagement} against {then}");
    // The id now names the lead, for reads and for what it records.
    let found = server
        .leads
        .get_lead(pb::GetLeadRequest {
            lead: anonymous("cookie-1"),
        })
        .await?
        .into_inner()
        .lead
        .expect("the lead");
    assert_eq!(found.id, lead.id);
    let later = as_visitor(&mut server, "cookie-1", pricing_view("v9", 61)).await?;
    assert!(!later.anonymous && !later.duplicate);
    assert_eq!(later.lead.map(|l| l.id), Some(lead.id.clone()));
    let old = as_visitor(&mut server, "cookie-1", pricing_view("v0", 0)).await?;
    assert!(
        old.duplicate,
        "a repeat of an event from before the identification"
    );
    assert_eq!(old.lead.map(|l| l.id), Some(lead.id.clone()));
    // The history has the joined views at their own instants.
    let history = full_history(&mut server, &lead.id, 0).await?;
    let views: Vec<i64> = history
        .iter()
        .filter_map(|e| match &e.entry {
            Some(pb::history_entry::Entry::Engagement(x)) => x.occurred_at.as_ref().map(|t| t.seconds),
            _ => None,
        })
        .collect();
    let base = T0.as_micros() / 1_000_000;
    assert_eq!(
        views,
        [0, 1, 24, 25, 48, 49, 61].map(|h| base + h * HOUR).to_vec()
    );
    Ok(())
}

async fn an_identification_is_idempotent_and_an_id_joins_one_lead(
    mut server: TestServer,
) -> anyhow::Result<()> {
    as_visitor(&mut server, "device-7", pricing_view("d1", 0)).await?;
    let ann = create(&mut server, "ann@hooli.com").await?;
    let bob = create(&mut server, "bob@hooli.com").await?;
    let first = server
        .leads
        .identify_lead(identify(&ann.id, "device-7"))
        .await?
        .into_inner();
    assert_eq!((first.joined, first.already), (1, false));
    let again = server
        .leads
        .identify_lead(identify(&ann.id, "device-7"))
        .await?
        .into_inner();
    assert_eq!((again.joined, again.already), (0, true));
    let taken = server
        .leads
        .identify_lead(identify(&bob.id, "device-7"))
        .await
        .expect_err("one lead per anonymous id");
    assert_eq!(taken.code(), tonic::Code::AlreadyExists);
    assert!(taken.message().contains(&ann.id), "{}", taken.message());
    // A retry with the same request id answers the first result.
    let mut request = identify(&bob.id, "device-8");
    request.request_id = "identify-1".to_owned();
    let once = server.leads.identify_lead(request.clone()).await?.into_inner();
    let twice = server.leads.identify_lead(request).await?.into_inner();
    assert_eq!(once, twice);
    assert_eq!(
        once.joined, 0,
        "an id never seen is identified ahead of its activity"
    );
    // Its first engagement then goes to bob.
    let r = as_visitor(&mut server, "device-8", pricing_view("d2", 0)).await?;
    assert_eq!(r.lead.map(|l| l.id), Some(bob.id.clone()));
    // Several ids may join one lead.
    as_visitor(&mut server, "device-9", pricing_view("d3", 0)).await?;
    let more = server
        .leads
        .identify_lead(identify(&bob.id, "device-9"))
        .await?
        .into_inner();
    assert_eq!(more.joined, 1);
    Ok(())
}

async fn bad_identity_requests_are_refused_with_their_fields(mut server: TestServer) -> anyhow::Result<()> {
    let lead = create(&mut server, "cat@globex.com").await?;
    let bad = |anonymous_id: &str, occurred_at: Option<i64>| pb::IdentifyLeadRequest {
        lead: by_id(&lead.id),
        anonymous_id: anonymous_id.to_owned(),
        occurred_at: occurred_at.map(seconds_ago),
        ..Default::default()
    };
    // No id, one too long; before the lead's capture (its last
    // transition), and in the future.
    for (request, field) in [
        (bad("", None), "anonymous_id"),
        (bad(&"x".repeat(129), None), "anonymous_id"),
        (bad("c", Some(3_600)), "occurred_at"),
        (bad("c", Some(-3_600)), "occurred_at"),
    ] {
        assert_invalid(server.leads.identify_lead(request.clone()).await, field, &request);
    }
    let unknown = server
        .leads
        .identify_lead(pb::IdentifyLeadRequest {
            lead: by_id("no-such-lead"),
            anonymous_id: "c".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("no such lead");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    // An engagement the policy does not take, and an empty anonymous id.
    let bad = as_visitor(&mut server, "c", engagement("b1", "no_such_type")).await;
    assert_invalid(bad, "engagement.type", &"an unknown type");
    let empty = as_visitor(&mut server, " ", engagement("b2", "page_viewed")).await;
    assert_invalid(empty, "lead.anonymous_id", &"an empty id");
    // One event-id namespace: a lead's event id is not an anonymous one.
    server
        .leads
        .record_engagement(record(&lead.id, engagement("shared", "page_viewed")))
        .await?;
    let reused = as_visitor(&mut server, "c", engagement("shared", "page_viewed")).await;
    let Err(status) = reused else {
        panic!("an event id of a lead reused anonymously was accepted");
    };
    assert_eq!(reason(&status), "EVENT_ID_REUSED");
    // A batch is checked whole, its anonymous items too: nothing of it is
    // written when one is bad.
    let batch = pb::RecordEngagementsRequest {
        engagements: vec![
            pb::EngagementItem {
                lead: anonymous("c"),
                engagement: Some(engagement("b3", "page_viewed")),
            },
            pb::EngagementItem {
                lead: anonymous("c"),
                engagement: Some(engagement("shared", "page_viewed")),
            },
        ],
    };
    let refused = server
        .leads
        .record_engagements(batch.clone())
        .await
        .expect_err("an event id of a lead reused");
    assert_eq!(reason(&refused), "EVENT_ID_REUSED");
    assert!(fields(&refused).contains(&"engagements[1].engagement.event_id".to_owned()));
    // Nothing of it was kept: the id is still unknown to the lead calls.
    let missing = server
        .leads
        .get_lead(pb::GetLeadRequest { lead: anonymous("c") })
        .await
        .expect_err("never identified");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    Ok(())
}

async fn a_stream_records_anonymous_activity_as_it_arrives(mut server: TestServer) -> anyhow::Result<()> {
    let lead = create(&mut server, "dee@piedpiper.com").await?;
    let items: Vec<pb::StreamEngagementsRequest> = (0..5)
        .map(|i| pb::StreamEngagementsRequest {
            lead: if i % 2 == 0 {
                anonymous("tab-1")
            } else {
                by_id(&lead.id)
            },
            engagement: Some(engagement(&format!("s{i}"), "page_viewed")),
        })
        .collect();
    let summary = server
        .leads
        .stream_engagements(tokio_stream::iter(items))
        .await?
        .into_inner();
    assert_eq!(summary.committed, 5);
    let identified = server
        .leads
        .identify_lead(identify(&lead.id, "tab-1"))
        .await?
        .into_inner();
    assert_eq!(identified.joined, 3);
    let scored = identified.lead.and_then(|l| l.scores).expect("scores");
    // Five page views of one point each, nearly undecayed.
    assert!((scored.engagement - 5.0).abs() < 0.01, "{}", scored.engagement);
    Ok(())
}

async fn a_capture_joins_the_anonymous_ids_it_names(mut server: TestServer) -> anyhow::Result<()> {
    // Two visits under two devices of one person, then the form names both.
    as_visitor(&mut server, "laptop", engagement("l1", "trial_started")).await?;
    as_visitor(&mut server, "phone", engagement("p1", "trial_started")).await?;
    let created = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit("fay@hooli.com"),
            anonymous_ids: vec!["laptop".to_owned(), "phone".to_owned()],
            ..Default::default()
        })
        .await?
        .into_inner();
    let lead = created.lead.expect("a lead");
    // Captured at IQL, then the second trial's 60 points make it an MQL
    // at its capture, with cause IDENTIFY.
    assert_eq!(
        moves(&created.transitions),
        [
            (pb::Stage::Unspecified, pb::Stage::Iql),
            (pb::Stage::Iql, pb::Stage::Mql)
        ]
    );
    let mql = &created.transitions[1];
    assert_eq!(
        (mql.cause, mql.cause_ref.as_str()),
        (pb::Cause::Identify as i32, "phone")
    );
    assert_eq!(mql.occurred_at, created.transitions[0].occurred_at);
    for device in ["laptop", "phone"] {
        let found = server
            .leads
            .get_lead(pb::GetLeadRequest {
                lead: anonymous(device),
            })
            .await?
            .into_inner()
            .lead
            .expect("the lead");
        assert_eq!(found.id, lead.id);
    }
    // An id another lead has, and an id named twice, are refused whole.
    let taken = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit("gus@hooli.com"),
            anonymous_ids: vec!["tablet".to_owned(), "phone".to_owned()],
            ..Default::default()
        })
        .await
        .expect_err("phone is fay's");
    assert_eq!(taken.code(), tonic::Code::AlreadyExists);
    let tablet = as_visitor(&mut server, "tablet", engagement("t1", "page_viewed")).await?;
    assert!(tablet.anonymous, "nothing of the refused capture stayed");
    let request = pb::CreateLeadRequest {
        profile: good_fit("gus@hooli.com"),
        anonymous_ids: vec!["tablet".to_owned(), " tablet ".to_owned()],
        ..Default::default()
    };
    assert_invalid(
        server.leads.create_lead(request.clone()).await,
        "anonymous_ids[1]",
        &request,
    );
    Ok(())
}

/// A webinar `hours` after T0: 15 points, no cap.
fn webinar(id: &str, hours: i64) -> pb::Engagement {
    at(
        engagement(id, "webinar_attended"),
        pb_time(Timestamp::from_secs(T0.as_micros() / 1_000_000 + hours * HOUR)),
    )
}

async fn joined_activity_older_than_the_kept_score_states_counts_after_a_late_event(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let lead = create(&mut server, "hal@initech.com").await?;
    server
        .manual_clock()
        .set(T0.saturating_add(Span::from_hours(100)));
    // 70 webinars, one an hour: the score states are kept every 64.
    let items = (1..=70)
        .map(|h| pb::EngagementItem {
            lead: by_id(&lead.id),
            engagement: Some(webinar(&format!("w{h}"), h)),
        })
        .collect();
    server
        .leads
        .record_engagements(pb::RecordEngagementsRequest { engagements: items })
        .await?;
    // Two visits from long before the 64th, joined; then a late webinar
    // between the 64th and the last, decided from the score states kept.
    as_visitor(&mut server, "early", webinar("a10", 10)).await?;
    as_visitor(&mut server, "early", webinar("a20", 20)).await?;
    server.leads.identify_lead(identify(&lead.id, "early")).await?;
    server
        .leads
        .record_engagement(record(&lead.id, webinar("late", 67)))
        .await?;
    let scores = server
        .leads
        .get_lead(pb::GetLeadRequest {
            lead: by_id(&lead.id),
        })
        .await?
        .into_inner()
        .lead
        .and_then(|l| l.scores)
        .expect("scores");
    let hours: Vec<i64> = (1..=70).chain([10, 20, 67]).collect();
    let expected: f64 = hours
        .iter()
        .map(|h| 15.0 * 0.5_f64.powf((100 - h) as f64 / (30.0 * 24.0)))
        .sum();
    assert!(
        (scores.engagement - expected).abs() < 1e-3,
        "{} against {expected}",
        scores.engagement
    );
    Ok(())
}

async fn a_batch_records_leads_and_anonymous_ids_in_order(mut server: TestServer) -> anyhow::Result<()> {
    let lead = create(&mut server, "ivy@globex.com").await?;
    as_visitor(&mut server, "known", engagement("k0", "page_viewed")).await?;
    server.leads.identify_lead(identify(&lead.id, "known")).await?;
    let item = |lead: Option<pb::LeadRef>, id: &str| pb::EngagementItem {
        lead,
        engagement: Some(engagement(id, "page_viewed")),
    };
    let batch = pb::RecordEngagementsRequest {
        engagements: vec![
            item(by_id(&lead.id), "m1"),
            item(anonymous("fresh"), "m2"),
            item(anonymous("known"), "m3"),
            item(anonymous("fresh"), "m2"),
        ],
    };
    let results = server
        .leads
        .record_engagements(batch.clone())
        .await?
        .into_inner()
        .results;
    let shape: Vec<(bool, Option<String>, bool)> = results
        .iter()
        .map(|r| (r.anonymous, r.lead.as_ref().map(|l| l.id.clone()), r.duplicate))
        .collect();
    assert_eq!(
        shape,
        [
            (false, Some(lead.id.clone()), false),
            (true, None, false),
            (false, Some(lead.id.clone()), false),
            (true, None, true),
        ]
    );
    // The whole batch again: every item a repeat.
    let again = server.leads.record_engagements(batch).await?.into_inner().results;
    assert!(again.iter().all(|r| r.duplicate), "{again:?}");
    let joined = server
        .leads
        .identify_lead(identify(&lead.id, "fresh"))
        .await?
        .into_inner();
    assert_eq!(joined.joined, 1);
    Ok(())
}

scenarios! {
    a_visitor_s_page_views_then_a_form_make_an_mql_at_identification = clock_at(T0),
    an_identification_is_idempotent_and_an_id_joins_one_lead,
    bad_identity_requests_are_refused_with_their_fields,
    a_stream_records_anonymous_activity_as_it_arrives,
    a_batch_records_leads_and_anonymous_ids_in_order,
    a_capture_joins_the_anonymous_ids_it_names = clock_at(T0),
    joined_activity_older_than_the_kept_score_states_counts_after_a_late_event = clock_at(T0),
    anonymous_activity_is_purged_after_its_time_to_live_and_erased_on_request = clock_at(T0),
}

async fn erase_anonymous(
    server: &mut TestServer,
    id: &str,
) -> Result<pb::EraseAnonymousResponse, tonic::Status> {
    server
        .leads
        .erase_anonymous(pb::EraseAnonymousRequest {
            anonymous_id: id.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn anonymous_activity_is_purged_after_its_time_to_live_and_erased_on_request(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let policy = format!(
        "{}\n[identity]\nanonymous_ttl = \"7d\"\n",
        leadflow_server::DEFAULT_POLICY
    );
    activate_policy(&mut server, policy).await?;
    as_visitor(&mut server, "old-1", engagement("a1", "page_viewed")).await?;
    server.manual_clock().advance(Span::from_hours(6 * 24));
    as_visitor(&mut server, "old-1", engagement("a2", "page_viewed")).await?;
    // A week and a second after the first: it goes, the second stays.
    server.manual_clock().advance(Span::from_secs(24 * 3_600 + 1));
    assert_eq!(server.engine.purge_anonymous_activity().await?, 1);
    let lead = create(&mut server, "eve@soylent.com").await?;
    let identified = server
        .leads
        .identify_lead(identify(&lead.id, "old-1"))
        .await?
        .into_inner();
    assert_eq!(identified.joined, 1);
    // The purged event's id is free again.
    let again = as_visitor(&mut server, "old-2", engagement("a1", "page_viewed")).await?;
    assert!(again.anonymous && !again.duplicate);
    assert_eq!(erase_anonymous(&mut server, "old-2").await?.events_erased, 1);
    assert_eq!(erase_anonymous(&mut server, "old-2").await?.events_erased, 0);
    let identified = erase_anonymous(&mut server, "old-1")
        .await
        .expect_err("an identified id's activity is its lead's");
    assert_eq!(identified.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&identified), "IDENTIFIED");
    let request = pb::EraseAnonymousRequest::default();
    assert_invalid(
        server.leads.erase_anonymous(request.clone()).await,
        "anonymous_id",
        &request,
    );
    // Erasing the lead by its anonymous id forgets the id with it.
    server
        .leads
        .erase_lead(pb::EraseLeadRequest {
            lead: anonymous("old-1"),
        })
        .await?;
    let gone = server
        .leads
        .get_lead(pb::GetLeadRequest {
            lead: anonymous("old-1"),
        })
        .await
        .expect_err("erased with its lead");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    Ok(())
}

//! Every class of bad input: its code, its reason, its field path — and
//! nothing written.

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use tonic::Code;

/// Asserts the error's code, `ErrorInfo` reason (if given) and field paths.
fn expect(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, why: &str, paths: &[&str]) {
    let err = result.expect_err("the request must be refused");
    assert_eq!(err.code(), code, "{err:?}");
    if !why.is_empty() {
        assert_eq!(reason(&err), why, "{err:?}");
    }
    let got = fields(&err);
    for path in paths {
        assert!(
            got.iter().any(|f| f == path),
            "no violation at {path}: {got:?} ({})",
            err.message()
        );
    }
}

async fn bad_input_is_refused_with_its_field_and_writes_nothing(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let lead = create(&mut server, "lu@acme.com").await?;
    let before = server.rows().await;
    let leads = &mut server.leads;

    // capture
    let create = |profile| pb::CreateLeadRequest {
        profile,
        ..Default::default()
    };
    expect(
        leads.create_lead(create(profile(&[("name", "Lu")]))).await,
        Code::InvalidArgument,
        "INVALID_FIELD",
        &["profile.email"],
    );
    expect(
        leads
            .create_lead(create(profile(&[("email", "not-an-address")])))
            .await,
        Code::InvalidArgument,
        "",
        &["profile.email"],
    );
    let long_key = "k".repeat(200);
    expect(
        leads
            .create_lead(create(profile(&[("email", "a@b.c"), (long_key.as_str(), "v")])))
            .await,
        Code::InvalidArgument,
        "",
        // The name is cut in the path: it is not echoed whole.
        &[&format!("profile[{:?}]", format!("{}…", "k".repeat(61)))],
    );
    let many: std::collections::BTreeMap<String, String> = (0..65)
        .map(|i| (format!("a{i}"), "v".to_owned()))
        .chain([("email".to_owned(), "a@b.c".to_owned())])
        .collect();
    expect(
        leads.create_lead(create(many)).await,
        Code::InvalidArgument,
        "",
        &["profile"],
    );
    let mut future = create(good_fit("f@acme.com"));
    future.captured_at = Some(seconds_ago(-60));
    expect(
        leads.create_lead(future).await,
        Code::InvalidArgument,
        "",
        &["captured_at"],
    );
    let mut broken = create(good_fit("g@acme.com"));
    broken.captured_at = Some(prost_types::Timestamp {
        seconds: 1,
        nanos: -5,
    });
    expect(
        leads.create_lead(broken).await,
        Code::InvalidArgument,
        "",
        &["captured_at"],
    );

    // engagements
    expect(
        leads
            .record_engagement(record(&lead.id, engagement("e1", "webinar_atended")))
            .await,
        Code::InvalidArgument,
        "UNKNOWN_ENGAGEMENT_TYPE",
        &["engagement.type"],
    );
    expect(
        leads
            .record_engagement(record(&lead.id, engagement("", "trial_started")))
            .await,
        Code::InvalidArgument,
        "",
        &["engagement.event_id"],
    );
    expect(
        leads
            .record_engagement(record(&lead.id, engagement(&"x".repeat(129), "trial_started")))
            .await,
        Code::InvalidArgument,
        "",
        &["engagement.event_id"],
    );
    expect(
        leads
            .record_engagement(record(
                &lead.id,
                at(engagement("e2", "trial_started"), seconds_ago(-60)),
            ))
            .await,
        Code::InvalidArgument,
        "",
        &["engagement.occurred_at"],
    );
    let mut control = engagement("e3", "page_viewed");
    control
        .properties
        .insert("path".to_owned(), "/a\u{0}b".to_owned());
    expect(
        leads.record_engagement(record(&lead.id, control)).await,
        Code::InvalidArgument,
        "",
        &["engagement.properties[\"path\"]"],
    );
    expect(
        leads
            .record_engagement(pb::RecordEngagementRequest {
                lead: None,
                engagement: Some(engagement("e4", "trial_started")),
            })
            .await,
        Code::InvalidArgument,
        "",
        &["lead"],
    );
    expect(
        leads
            .record_engagement(pb::RecordEngagementRequest {
                lead: by_id(&lead.id),
                engagement: None,
            })
            .await,
        Code::InvalidArgument,
        "",
        &["engagement"],
    );
    expect(
        leads
            .record_engagement(record("no-such-lead", engagement("e5", "trial_started")))
            .await,
        Code::NotFound,
        "NOT_FOUND",
        &[],
    );

    // transitions
    expect(
        leads
            .transition(transition(&lead.id, pb::Action::Unspecified, ""))
            .await,
        Code::InvalidArgument,
        "",
        &["action"],
    );
    let mut convert = transition(&lead.id, pb::Action::Convert, "");
    convert.deal_value = Some(-10.0);
    convert.currency = "EUR".to_owned();
    expect(
        leads.transition(convert.clone()).await,
        Code::InvalidArgument,
        "",
        &["deal_value"],
    );
    convert.deal_value = Some(10.0);
    convert.currency = "eu".to_owned();
    expect(
        leads.transition(convert).await,
        Code::InvalidArgument,
        "",
        &["currency"],
    );
    expect(
        leads
            .transition(transition(&lead.id, pb::Action::Accept, ""))
            .await,
        Code::FailedPrecondition,
        "INVALID_TRANSITION",
        &[],
    );
    // a pair outside the table is refused as such, whatever its arguments
    expect(
        leads
            .transition(transition(&lead.id, pb::Action::Reject, "meh"))
            .await,
        Code::FailedPrecondition,
        "INVALID_TRANSITION",
        &[],
    );
    expect(
        leads
            .transition(transition(&lead.id, pb::Action::Promote, ""))
            .await,
        Code::InvalidArgument,
        "",
        &["reason"],
    );
    let mut imported = transition(&lead.id, pb::Action::Promote, "booth");
    imported.occurred_at = Some(prost_types::Timestamp { seconds: 0, nanos: 0 });
    expect(
        leads.transition(imported).await,
        Code::InvalidArgument,
        "",
        &["occurred_at"],
    );
    expect(
        leads
            .update_lead_profile(pb::UpdateLeadProfileRequest {
                lead: by_id(&lead.id),
                attributes: profile(&[("email", "")]),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "",
        &["attributes.email"],
    );

    // reads
    expect(
        leads
            .list_leads(pb::ListLeadsRequest {
                page_token: "garbage!".to_owned(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "",
        &["page_token"],
    );
    expect(
        leads
            .list_leads(pb::ListLeadsRequest {
                page_size: -1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "",
        &["page_size"],
    );
    expect(
        leads
            .list_leads(pb::ListLeadsRequest {
                stage: 42,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "",
        &["stage"],
    );
    expect(
        leads
            .get_lead(pb::GetLeadRequest {
                lead: by_id("missing"),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
        &[],
    );
    expect(
        leads.get_lead(pb::GetLeadRequest { lead: None }).await,
        Code::InvalidArgument,
        "",
        &["lead"],
    );

    assert_eq!(server.rows().await, before, "a refused request writes nothing");
    Ok(())
}

async fn a_guard_refusal_names_the_guard(mut server: TestServer) -> anyhow::Result<()> {
    let r = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: profile(&[("email", "mo@acme.com")]),
            ..Default::default()
        })
        .await?
        .into_inner();
    let lead = r.lead.expect("lead");
    let before = server.rows().await;
    let err = server
        .leads
        .transition(transition(&lead.id, pb::Action::Promote, "booth"))
        .await
        .expect_err("guarded");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "GUARD_FAILED");
    let d = details(&err);
    let info = d.error_info().cloned().expect("info");
    assert_eq!(
        info.metadata.get("guard").map(String::as_str),
        Some("requires_attributes")
    );
    assert_eq!(
        info.metadata.get("detail").map(String::as_str),
        Some("missing company")
    );
    let failure = d.precondition_failure().cloned().expect("precondition failure");
    assert_eq!(failure.violations[0].subject, "requires_attributes");
    assert_eq!(server.rows().await, before);
    Ok(())
}

async fn oversized_requests_are_resource_exhausted(mut server: TestServer) -> anyhow::Result<()> {
    let lead = create(&mut server, "ne@acme.com").await?;
    let before = server.rows().await;
    let items: Vec<pb::EngagementItem> = (0..501)
        .map(|i| pb::EngagementItem {
            lead: by_id(&lead.id),
            engagement: Some(engagement(&format!("b{i}"), "page_viewed")),
        })
        .collect();
    let err = server
        .leads
        .record_engagements(pb::RecordEngagementsRequest { engagements: items })
        .await
        .expect_err("too many");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(fields(&err), ["engagements"]);

    // a message over 4 MiB
    let big: std::collections::BTreeMap<String, String> =
        (0..60).map(|i| (format!("p{i}"), "x".repeat(2_000))).collect();
    let items: Vec<pb::EngagementItem> = (0..50)
        .map(|i| pb::EngagementItem {
            lead: by_id(&lead.id),
            engagement: Some(pb::Engagement {
                properties: big.clone(),
                ..engagement(&format!("c{i}"), "page_viewed")
            }),
        })
        .collect();
    let err = server
        .leads
        .record_engagements(pb::RecordEngagementsRequest { engagements: items })
        .await
        .expect_err("too large");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    let huge = "#".repeat(300 * 1024);
    let err = server
        .policies
        .validate_policy(pb::ValidatePolicyRequest { source: huge })
        .await
        .expect_err("too large");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(server.rows().await, before);
    Ok(())
}

scenarios! {
    bad_input_is_refused_with_its_field_and_writes_nothing,
    a_guard_refusal_names_the_guard,
    oversized_requests_are_resource_exhausted,
}

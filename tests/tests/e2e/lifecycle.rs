//! The lifecycle through the API: automatic and manual moves, history.

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

async fn capture_engage_mql_demo_sql_convert(mut server: TestServer) -> anyhow::Result<()> {
    let captured = seconds_ago(120);
    let lead = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit("ann@acme.com"),
            captured_at: Some(captured),
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .expect("lead");
    assert_eq!(stage(&lead), pb::Stage::Iql);
    assert_eq!(lead.captured_at, Some(captured));
    assert_eq!(lead.version, 1);
    assert_eq!(lead.scores.as_ref().map(|s| s.fit), Some(40.0));
    assert_eq!(
        lead.profile.get("email_domain").map(String::as_str),
        Some("acme.com")
    );
    let t = seconds_ago(60);
    for (i, kind) in ["trial_started", "webinar_attended", "ebook_downloaded"]
        .iter()
        .enumerate()
    {
        let r = server
            .leads
            .record_engagement(record(&lead.id, at(engagement(&format!("e{i}"), kind), t)))
            .await?
            .into_inner();
        assert!(r.transitions.is_empty(), "55 points do not qualify");
        assert!(!r.duplicate);
        assert_eq!(
            r.lead.as_ref().map(|l| l.version),
            Some(1),
            "engagements do not change the version"
        );
    }
    let r = server
        .leads
        .record_engagement(record(&lead.id, at(engagement("e3", "ebook_downloaded"), t)))
        .await?
        .into_inner();
    assert_eq!(moves(&r.transitions), [(pb::Stage::Iql, pb::Stage::Mql)]);
    let mql = &r.transitions[0];
    assert_eq!(mql.cause, pb::Cause::Engagement as i32);
    assert_eq!(mql.cause_ref, "e3");
    assert_eq!(mql.r#move, pb::Move::AutoQualify as i32);
    assert_eq!(mql.occurred_at, Some(t), "decided at the engagement's own time");
    assert!(
        mql.guards
            .iter()
            .any(|g| g.guard == "fit_at_least" && g.passed && g.detail == "fit 40 ≥ 20")
    );
    assert_eq!(
        r.triggers.iter().map(|t| t.emit.as_str()).collect::<Vec<_>>(),
        ["mql_welcome_sequence"]
    );
    let l = r.lead.expect("lead");
    assert_eq!((stage(&l), l.version), (pb::Stage::Mql, 2));

    let r = server
        .leads
        .record_engagement(record(&lead.id, engagement("demo", "demo_requested")))
        .await?
        .into_inner();
    assert_eq!(moves(&r.transitions), [(pb::Stage::Mql, pb::Stage::Sql)]);

    let mut convert = transition(&lead.id, pb::Action::Convert, "");
    convert.deal_value = Some(25_000.0);
    convert.currency = "EUR".to_owned();
    let r = server.leads.transition(convert).await?.into_inner();
    assert_eq!(moves(&r.transitions), [(pb::Stage::Sql, pb::Stage::Customer)]);
    assert_eq!(r.transitions[0].deal_value, Some(25_000.0));
    assert_eq!(r.transitions[0].actor, "sam@sales");
    assert_eq!(
        r.lead.map(|l| (stage(&l), l.version)),
        Some((pb::Stage::Customer, 4))
    );

    // the whole history, in order, from the capture on
    let h = server
        .leads
        .get_lead_history(pb::GetLeadHistoryRequest {
            lead: by_id(&lead.id),
            ..Default::default()
        })
        .await?
        .into_inner();
    let transitions: Vec<pb::Transition> = h
        .entries
        .iter()
        .filter_map(|e| match &e.entry {
            Some(pb::history_entry::Entry::Transition(t)) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        moves(&transitions),
        [
            (pb::Stage::Unspecified, pb::Stage::Iql),
            (pb::Stage::Iql, pb::Stage::Mql),
            (pb::Stage::Mql, pb::Stage::Sql),
            (pb::Stage::Sql, pb::Stage::Customer)
        ]
    );
    assert_eq!(
        transitions.iter().map(|t| t.sequence).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(h.entries.len(), 4 + 5);
    // CUSTOMER is terminal
    let err = server
        .leads
        .transition(transition(&lead.id, pb::Action::Disqualify, "spam"))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&err), "INVALID_TRANSITION");
    // the server's view matches the response's
    let got = server
        .leads
        .get_lead(pb::GetLeadRequest {
            lead: by_id(&lead.id),
        })
        .await?
        .into_inner();
    assert_eq!(
        got.lead.map(|l| (stage(&l), l.version)),
        Some((pb::Stage::Customer, 4))
    );
    Ok(())
}

async fn reject_with_a_reason_then_qualify_again_on_new_evidence(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let lead = create(&mut server, "bo@acme.com").await?;
    let r = server
        .leads
        .transition(transition(&lead.id, pb::Action::Promote, "met at the booth"))
        .await?
        .into_inner();
    assert_eq!(moves(&r.transitions), [(pb::Stage::Iql, pb::Stage::Mql)]);
    let r = server
        .leads
        .transition(transition(&lead.id, pb::Action::Reject, "not_ready"))
        .await?
        .into_inner();
    assert_eq!(moves(&r.transitions), [(pb::Stage::Mql, pb::Stage::Iql)]);
    assert_eq!(r.transitions[0].reason, "not_ready");
    assert_eq!(
        r.triggers.iter().map(|t| t.emit.as_str()).collect::<Vec<_>>(),
        ["long_term_nurture"]
    );
    let l = r.lead.expect("lead");
    assert!(l.qualifying_since.is_some());
    // new evidence after the rejection qualifies again
    for (i, kind) in ["trial_started", "webinar_attended", "ebook_downloaded"]
        .iter()
        .enumerate()
    {
        server
            .leads
            .record_engagement(record(&lead.id, engagement(&format!("n{i}"), kind)))
            .await?;
    }
    let r = server
        .leads
        .record_engagement(record(&lead.id, engagement("n3", "ebook_downloaded")))
        .await?
        .into_inner();
    assert_eq!(moves(&r.transitions), [(pb::Stage::Iql, pb::Stage::Mql)]);
    // a reason outside the policy's list is refused
    let err = server
        .leads
        .transition(transition(&lead.id, pb::Action::Reject, "too_busy"))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&err), "UNKNOWN_REASON");
    assert_eq!(fields(&err), ["reason"]);
    Ok(())
}

async fn undesirables_disqualify_and_requalify_is_guarded(mut server: TestServer) -> anyhow::Result<()> {
    // a competitor is disqualified at capture
    let r = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit("spy@rivalsoft.io"),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        moves(&r.transitions),
        [
            (pb::Stage::Unspecified, pb::Stage::Iql),
            (pb::Stage::Iql, pb::Stage::Disqualified)
        ]
    );
    assert_eq!(r.transitions[1].reason, "competitor");
    let spy = r.lead.expect("lead");
    let err = server
        .leads
        .transition(transition(&spy.id, pb::Action::Requalify, ""))
        .await
        .expect_err("guarded");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&err), "GUARD_FAILED");
    let info = details(&err).error_info().cloned().expect("error info");
    assert_eq!(
        info.metadata.get("guard").map(String::as_str),
        Some("no_disqualifying_attribute")
    );
    assert!(err.message().contains("competitor"), "{}", err.message());

    // a hard bounce disqualifies an open lead
    let lead = create(&mut server, "cy@acme.com").await?;
    let r = server
        .leads
        .record_engagement(record(&lead.id, engagement("bounce", "email_bounced")))
        .await?
        .into_inner();
    assert_eq!(moves(&r.transitions), [(pb::Stage::Iql, pb::Stage::Disqualified)]);
    assert_eq!(r.transitions[0].r#move, pb::Move::AutoDisqualify as i32);
    // requalified, the old bounce no longer counts
    let r = server
        .leads
        .transition(transition(&lead.id, pb::Action::Requalify, "address fixed"))
        .await?
        .into_inner();
    assert_eq!(moves(&r.transitions), [(pb::Stage::Disqualified, pb::Stage::Iql)]);
    let r = server
        .leads
        .record_engagement(record(&lead.id, engagement("view", "page_viewed")))
        .await?
        .into_inner();
    assert!(r.transitions.is_empty());
    Ok(())
}

async fn forward_jumps_record_every_stage(mut server: TestServer) -> anyhow::Result<()> {
    let lead = create(&mut server, "di@acme.com").await?;
    let r = server
        .leads
        .record_engagement(record(&lead.id, engagement("demo", "demo_requested")))
        .await?
        .into_inner();
    assert_eq!(
        moves(&r.transitions),
        [(pb::Stage::Iql, pb::Stage::Mql), (pb::Stage::Mql, pb::Stage::Sql)]
    );
    assert_eq!(r.transitions[0].occurred_at, r.transitions[1].occurred_at);
    assert!(
        r.triggers.is_empty(),
        "a stage passed through fires no entered: workflow"
    );

    let other = create(&mut server, "ed@acme.com").await?;
    let mut convert = transition(&other.id, pb::Action::Convert, "");
    convert.deal_value = Some(0.0);
    convert.currency = "USD".to_owned();
    let r = server.leads.transition(convert).await?.into_inner();
    assert_eq!(
        moves(&r.transitions),
        [
            (pb::Stage::Iql, pb::Stage::Mql),
            (pb::Stage::Mql, pb::Stage::Sql),
            (pb::Stage::Sql, pb::Stage::Customer)
        ]
    );
    Ok(())
}

async fn leads_are_reachable_by_external_key(mut server: TestServer) -> anyhow::Result<()> {
    let r = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            external_key: "crm-42".to_owned(),
            profile: good_fit("fa@acme.com"),
            ..Default::default()
        })
        .await?
        .into_inner();
    let id = r.lead.expect("lead").id;
    let got = server
        .leads
        .get_lead(pb::GetLeadRequest {
            lead: by_key("crm-42"),
        })
        .await?
        .into_inner();
    assert_eq!(got.lead.map(|l| l.id), Some(id.clone()));
    let r = server
        .leads
        .record_engagement(pb::RecordEngagementRequest {
            lead: by_key("crm-42"),
            engagement: Some(engagement("k1", "trial_started")),
        })
        .await?
        .into_inner();
    assert_eq!(r.lead.map(|l| l.id), Some(id.clone()));
    let err = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            external_key: "crm-42".to_owned(),
            profile: good_fit("other@acme.com"),
            ..Default::default()
        })
        .await
        .expect_err("taken");
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    let info = details(&err).error_info().cloned().expect("info");
    assert_eq!(info.metadata.get("id"), Some(&id));
    Ok(())
}

// On a hand-moved clock the re-score worker does not run: the lead's own
// next command re-scores it.
async fn a_lead_the_rescore_has_not_reached_is_rescored_by_its_next_command(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let lead = create(&mut server, "gi@acme.com").await?;
    server
        .leads
        .record_engagement(record(&lead.id, engagement("t", "trial_started")))
        .await?;
    server
        .leads
        .record_engagement(record(&lead.id, engagement("w", "webinar_attended")))
        .await?;
    let source =
        leadflow_server::DEFAULT_POLICY.replace("engagement_at_least = 60", "engagement_at_least = 40");
    let created = server
        .policies
        .create_policy_version(pb::CreatePolicyVersionRequest {
            source,
            ..Default::default()
        })
        .await?
        .into_inner()
        .policy
        .expect("policy");
    assert_eq!(created.version, 2);
    assert!(!created.active);
    let activated = server
        .policies
        .activate_policy(pb::ActivatePolicyRequest {
            version: 2,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(activated.policy.is_some_and(|p| p.active));
    assert!(activated.note.contains("re-scored"), "{}", activated.note);
    let r = server
        .leads
        .record_engagement(record(&lead.id, engagement("p", "page_viewed")))
        .await?
        .into_inner();
    assert_eq!(moves(&r.transitions), [(pb::Stage::Iql, pb::Stage::Mql)]);
    assert_eq!(r.transitions[0].cause, pb::Cause::PolicyChange as i32);
    assert_eq!(r.transitions[0].policy_version, 2);
    assert_eq!(r.lead.map(|l| l.policy_version), Some(2));
    Ok(())
}

async fn a_late_engagement_is_scored_once_in_its_place(mut server: TestServer) -> anyhow::Result<()> {
    let lead = create_captured(&mut server, "lu@acme.com", Some(seconds_ago(300))).await?;
    let t = seconds_ago(60);
    for (i, kind) in ["trial_started", "webinar_attended", "ebook_downloaded"]
        .iter()
        .enumerate()
    {
        server
            .leads
            .record_engagement(record(&lead.id, at(engagement(&format!("e{i}"), kind), t)))
            .await?;
    }
    // older than what the lead has seen: the log is replayed with it in place
    let r = server
        .leads
        .record_engagement(record(
            &lead.id,
            at(engagement("late", "ebook_downloaded"), seconds_ago(120)),
        ))
        .await?
        .into_inner();
    // two minutes of a 30-day half-life: within 0.01 of the points
    let scored = r
        .lead
        .as_ref()
        .and_then(|l| l.scores.as_ref())
        .map(|s| s.engagement.round());
    assert_eq!(scored, Some(65.0), "55 + 10, the late event counted once");
    // decided at its own time, over the events up to then: 10 points
    assert!(r.transitions.is_empty());
    let got = server.lead(&lead.id).await?;
    assert_eq!(got.scores.map(|s| s.engagement.round()), Some(65.0));
    // the next event is decided over all of them: 66 points
    let r = server
        .leads
        .record_engagement(record(&lead.id, engagement("now", "page_viewed")))
        .await?
        .into_inner();
    assert_eq!(moves(&r.transitions), [(pb::Stage::Iql, pb::Stage::Mql)]);
    let mql = &r.transitions[0];
    assert_eq!(mql.cause_ref, "now");
    Ok(())
}

scenarios! {
    capture_engage_mql_demo_sql_convert,
    reject_with_a_reason_then_qualify_again_on_new_evidence,
    undesirables_disqualify_and_requalify_is_guarded,
    forward_jumps_record_every_stage,
    leads_are_reachable_by_external_key,
    a_lead_the_rescore_has_not_reached_is_rescored_by_its_next_command = clock_at(leadflow_domain::Timestamp::from_secs(1_767_603_600)),
    a_late_engagement_is_scored_once_in_its_place,
}

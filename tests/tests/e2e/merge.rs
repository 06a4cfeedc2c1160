//! Merges over the API: a duplicate's log, keys and missing attributes
//! move to the survivor, whose scores are the union log's and whose stage
//! is the further of the two; the duplicate is MERGED (MERGED_INTO by its
//! id, its key names the survivor); an unmerge gives it all back.

use leadflow_domain::{Span, Timestamp};
use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::analytics_service_client::AnalyticsServiceClient;

/// 2026-01-05T09:00:00Z.
const T0: Timestamp = Timestamp::from_secs(1_767_603_600);

fn pb_time(t: Timestamp) -> prost_types::Timestamp {
    let micros = t.as_micros();
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

/// A good-fit lead with an external key.
async fn keyed(server: &mut TestServer, key: &str, email: &str) -> anyhow::Result<pb::Lead> {
    server
        .leads
        .create_lead(pb::CreateLeadRequest {
            external_key: key.to_owned(),
            profile: good_fit(email),
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .ok_or_else(|| anyhow::anyhow!("no lead"))
}

async fn engage(
    server: &mut TestServer,
    lead: Option<pb::LeadRef>,
    id: &str,
    kind: &str,
) -> anyhow::Result<pb::RecordEngagementResponse> {
    Ok(server
        .leads
        .record_engagement(pb::RecordEngagementRequest {
            lead,
            engagement: Some(engagement(id, kind)),
        })
        .await?
        .into_inner())
}

fn merge(survivor: Option<pb::LeadRef>, duplicate: Option<pb::LeadRef>) -> pb::MergeLeadsRequest {
    pb::MergeLeadsRequest {
        survivor,
        duplicate,
        ..Default::default()
    }
}

async fn get(server: &mut TestServer, lead: Option<pb::LeadRef>) -> Result<pb::Lead, tonic::Status> {
    server
        .leads
        .get_lead(pb::GetLeadRequest { lead })
        .await
        .map(|r| r.into_inner().lead.unwrap_or_default())
}

fn funnel_period() -> Option<pb::Period> {
    Some(pb::Period {
        start: Some(pb_time(T0.saturating_sub(Span::from_days(1)))),
        end: Some(pb_time(T0.saturating_add(Span::from_days(1)))),
    })
}

fn entries(g: &pb::FunnelGroup, stage: pb::Stage) -> (i64, i64) {
    g.entries
        .iter()
        .find(|e| e.stage == stage as i32)
        .map_or((-1, -1), |e| (e.leads, e.entries))
}

async fn funnel(server: &mut TestServer) -> anyhow::Result<pb::FunnelGroup> {
    let response = AnalyticsServiceClient::new(server.channel.clone())
        .get_funnel(pb::GetFunnelRequest {
            period: funnel_period(),
            ..Default::default()
        })
        .await?
        .into_inner();
    response
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no funnel group"))
}

async fn two_leads_below_the_bar_make_an_mql_and_the_duplicate_s_key_names_the_survivor(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let mut stream = subscribe(&mut server, "merges", pb::StartPosition::Latest, 0, None).await?;
    let a = keyed(&mut server, "crm-1", "ann@initech.com").await?;
    let b = keyed(&mut server, "form-1", "ann.b@initech.com").await?;
    // 30 + 15 for one, 15 + 10 for the other: neither reaches 60 alone.
    engage(&mut server, by_id(&a.id), "a-trial", "trial_started").await?;
    engage(&mut server, by_id(&a.id), "a-webinar", "webinar_attended").await?;
    engage(&mut server, by_key("form-1"), "b-webinar", "webinar_attended").await?;
    engage(&mut server, by_key("form-1"), "b-ebook", "ebook_downloaded").await?;
    let before = funnel(&mut server).await?;
    assert_eq!(entries(&before, pb::Stage::Iql), (2, 2));
    assert_eq!(entries(&before, pb::Stage::Mql), (0, 0));

    server.manual_clock().set(T0.saturating_add(Span::from_hours(1)));
    let merged = server
        .leads
        .merge_leads(merge(by_id(&a.id), by_key("form-1")))
        .await?
        .into_inner();
    assert_eq!(merged.duplicate_id, b.id);
    assert_eq!(merged.duplicate_stage, pb::Stage::Iql as i32);
    assert_eq!(merged.engagements_moved, 2);
    assert_eq!(moves(&merged.transitions), [(pb::Stage::Iql, pb::Stage::Mql)]);
    let mql = &merged.transitions[0];
    assert_eq!(
        (mql.cause, mql.cause_ref.as_str()),
        (pb::Cause::Merge as i32, b.id.as_str())
    );
    let survivor = merged.survivor.expect("the survivor");
    assert_eq!(survivor.id, a.id);
    assert_eq!(stage(&survivor), pb::Stage::Mql);
    // The survivor's email stays; the union log's 70 points, an hour decayed.
    assert_eq!(
        survivor.profile.get("email").map(String::as_str),
        Some("ann@initech.com")
    );
    let points = survivor.scores.map(|s| s.engagement).unwrap_or_default();
    let expected = 70.0 * 0.5_f64.powf(1.0 / (30.0 * 24.0));
    assert!((points - expected).abs() < 1e-6, "{points} against {expected}");

    // By its id the duplicate is gone, naming the survivor.
    let gone = get(&mut server, by_id(&b.id)).await.expect_err("merged");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    assert_eq!(reason(&gone), "MERGED_INTO");
    assert_eq!(meta(&gone, "survivor_id"), a.id);
    // By its key: the survivor, for reads and for what it records.
    assert_eq!(get(&mut server, by_key("form-1")).await?.id, a.id);
    let later = engage(&mut server, by_key("form-1"), "b-later", "ebook_downloaded").await?;
    assert_eq!(later.lead.map(|l| l.id), Some(a.id.clone()));
    // A re-delivery of the duplicate's event is known as one.
    let again = engage(&mut server, by_key("form-1"), "b-webinar", "webinar_attended").await?;
    assert!(again.duplicate, "{again:?}");
    // Under the survivor too, alone or in a batch.
    let again = engage(&mut server, by_id(&a.id), "b-webinar", "webinar_attended").await?;
    assert!(again.duplicate, "{again:?}");
    let batch = server
        .leads
        .record_engagements(pb::RecordEngagementsRequest {
            engagements: vec![pb::EngagementItem {
                lead: by_id(&a.id),
                engagement: Some(engagement("b-ebook", "ebook_downloaded")),
            }],
        })
        .await?
        .into_inner();
    assert!(batch.results.iter().all(|r| r.duplicate), "{batch:?}");
    // A merged lead is listed only when asked for.
    let listed = server
        .leads
        .list_leads(pb::ListLeadsRequest::default())
        .await?
        .into_inner();
    assert!(listed.leads.iter().all(|l| l.id != b.id));

    // The funnel: the duplicate's history stays, MERGED is no stage of it.
    let after = funnel(&mut server).await?;
    assert_eq!(entries(&after, pb::Stage::Iql), (2, 2));
    assert_eq!(entries(&after, pb::Stage::Mql), (1, 1));
    assert!(after.entries.iter().all(|e| e.stage != pb::Stage::Merged as i32));

    // The stream: the duplicate's move, the survivor's, then LEAD_MERGED.
    let merged_event = format!("LEAD_MERGED:{}<{}", a.id, b.id);
    let mut seen = Vec::new();
    while let Some(e) = next_event(&mut stream, std::time::Duration::from_secs(5)).await? {
        seen.push(describe(&e));
        if seen.last() == Some(&merged_event) {
            break;
        }
    }
    let at = |d: &str| seen.iter().position(|s| s == d);
    assert!(at("TRANSITION:MERGED") < at("TRANSITION:MQL"), "{seen:?}");
    assert!(
        at("TRANSITION:MQL").is_some() && at(&merged_event).is_some(),
        "{seen:?}"
    );
    Ok(())
}

async fn a_sales_qualified_duplicate_takes_an_iql_survivor_to_sql(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let a = create(&mut server, "bo@initech.com").await?;
    let b = create(&mut server, "bo.b@initech.com").await?;
    let demo = engage(&mut server, by_id(&b.id), "demo", "demo_requested").await?;
    assert_eq!(demo.lead.as_ref().map(stage), Some(pb::Stage::Sql));
    server.manual_clock().set(T0.saturating_add(Span::from_hours(2)));
    let merged = server
        .leads
        .merge_leads(merge(by_id(&a.id), by_id(&b.id)))
        .await?
        .into_inner();
    assert_eq!(merged.duplicate_stage, pb::Stage::Sql as i32);
    assert_eq!(
        moves(&merged.transitions),
        [(pb::Stage::Iql, pb::Stage::Mql), (pb::Stage::Mql, pb::Stage::Sql)]
    );
    assert!(
        merged
            .transitions
            .iter()
            .all(|t| t.r#move == pb::Move::Merge as i32)
    );
    assert_eq!(merged.survivor.as_ref().map(stage), Some(pb::Stage::Sql));
    // The duplicate's own history ends in MERGED.
    let history = full_history(&mut server, &a.id, 50).await?;
    assert!(
        history.iter().any(|e| entry_shape(e) == "demo"),
        "the demo is the survivor's now"
    );
    Ok(())
}

async fn an_unmerge_gives_the_duplicate_back_what_it_brought_and_what_came_since(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let a = keyed(&mut server, "crm-2", "cy@initech.com").await?;
    let b = keyed(&mut server, "form-2", "cy.b@initech.com").await?;
    engage(&mut server, by_id(&a.id), "a-trial", "trial_started").await?;
    engage(&mut server, by_id(&a.id), "a-webinar", "webinar_attended").await?;
    engage(&mut server, by_id(&b.id), "b-trial", "trial_started").await?;
    let a_before = get(&mut server, by_id(&a.id)).await?;
    server.manual_clock().set(T0.saturating_add(Span::from_hours(1)));
    let merged = server
        .leads
        .merge_leads(merge(by_id(&a.id), by_id(&b.id)))
        .await?
        .into_inner();
    assert_eq!(merged.survivor.as_ref().map(stage), Some(pb::Stage::Mql));
    // Recorded under the duplicate's key while merged: the survivor's now.
    engage(&mut server, by_key("form-2"), "b-since", "webinar_attended").await?;
    // The key is taken: by the survivor.
    let taken = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            external_key: "form-2".to_owned(),
            profile: good_fit("cy.c@initech.com"),
            ..Default::default()
        })
        .await
        .expect_err("the key names the survivor");
    assert_eq!(taken.code(), tonic::Code::AlreadyExists);
    assert_eq!(meta(&taken, "id"), a.id);
    // A batch naming the merged lead by its id is refused whole.
    let batch = server
        .leads
        .record_engagements(pb::RecordEngagementsRequest {
            engagements: vec![
                pb::EngagementItem {
                    lead: by_id(&a.id),
                    engagement: Some(engagement("batch-1", "page_viewed")),
                },
                pb::EngagementItem {
                    lead: by_id(&b.id),
                    engagement: Some(engagement("batch-2", "page_viewed")),
                },
            ],
        })
        .await
        .expect_err("a merged lead by its id");
    assert_eq!(reason(&batch), "MERGED_INTO");
    assert_eq!(fields(&batch), ["engagements[1].lead"]);
    // A new policy while merged: the unmerge re-scores under it.
    let description =
        "description = \"Mid-market software buyers; MQL on real intent, SQL on a sales-ready action.\"";
    let edited = leadflow_server::DEFAULT_POLICY.replacen(description, "description = \"v2\"", 1);
    assert_ne!(edited, leadflow_server::DEFAULT_POLICY);
    activate_policy(&mut server, edited).await?;
    server.manual_clock().set(T0.saturating_add(Span::from_hours(3)));
    let unmerged = server
        .leads
        .unmerge_lead(pb::UnmergeLeadRequest {
            duplicate_id: b.id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(unmerged.engagements_returned, 2);
    assert_eq!(
        moves(&unmerged.transitions),
        [(pb::Stage::Merged, pb::Stage::Iql)]
    );
    assert_eq!(unmerged.transitions[0].cause, pb::Cause::Unmerge as i32);
    let duplicate = unmerged.duplicate.expect("the duplicate");
    assert_eq!(
        (duplicate.id.as_str(), stage(&duplicate)),
        (b.id.as_str(), pb::Stage::Iql)
    );
    // 30 + 15, from their own instants.
    let dup_engagement = duplicate.scores.map(|s| s.engagement).unwrap_or_default();
    assert!((40.0..45.0).contains(&dup_engagement), "{dup_engagement}");
    // The survivor keeps its stage; its scores are its own log's again.
    let survivor = unmerged.survivor.expect("the survivor");
    assert_eq!(stage(&survivor), pb::Stage::Mql);
    let own = a_before.scores.map(|s| s.engagement).unwrap_or_default();
    let now = survivor.scores.map(|s| s.engagement).unwrap_or_default();
    let decayed = own * 0.5_f64.powf(3.0 / (30.0 * 24.0));
    assert!((now - decayed).abs() < 1e-6, "{now} against {decayed}");
    // The key names the duplicate again; its id answers.
    assert_eq!(get(&mut server, by_key("form-2")).await?.id, b.id);
    assert_eq!(get(&mut server, by_id(&b.id)).await?.id, b.id);
    // Once only.
    let again = server
        .leads
        .unmerge_lead(pb::UnmergeLeadRequest {
            duplicate_id: b.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("not merged any more");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&again), "NOT_MERGED");
    Ok(())
}

async fn an_unmerge_answers_the_workflows_the_survivor_s_re_score_set_off(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let a = create(&mut server, "fox@initech.com").await?;
    let b = create(&mut server, "fox.b@initech.com").await?;
    engage(&mut server, by_id(&a.id), "a-webinar", "webinar_attended").await?;
    for (id, kind) in [
        ("b-1", "ebook_downloaded"),
        ("b-2", "ebook_downloaded"),
        ("b-3", "trial_started"),
    ] {
        engage(&mut server, by_id(&b.id), id, kind).await?;
    }
    server.manual_clock().set(T0.saturating_add(Span::from_hours(1)));
    let merged = server
        .leads
        .merge_leads(merge(by_id(&a.id), by_id(&b.id)))
        .await?
        .into_inner();
    assert_eq!(merged.survivor.as_ref().map(stage), Some(pb::Stage::Mql));
    server.manual_clock().set(T0.saturating_add(Span::from_hours(2)));
    let unmerged = server
        .leads
        .unmerge_lead(pb::UnmergeLeadRequest {
            duplicate_id: b.id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    // The survivor, an MQL of 15 points again, fell below 30: cooling off.
    assert_eq!(unmerged.survivor.as_ref().map(stage), Some(pb::Stage::Mql));
    let emitted: Vec<&str> = unmerged
        .survivor_triggers
        .iter()
        .map(|t| t.emit.as_str())
        .collect();
    assert_eq!(emitted, ["re_engagement_campaign"]);
    assert!(unmerged.triggers.is_empty(), "{:?}", unmerged.triggers);
    Ok(())
}

async fn an_unmerge_after_its_window_is_refused(mut server: TestServer) -> anyhow::Result<()> {
    let a = create(&mut server, "di@initech.com").await?;
    let b = create(&mut server, "di.b@initech.com").await?;
    server
        .leads
        .merge_leads(merge(by_id(&a.id), by_id(&b.id)))
        .await?;
    server.manual_clock().set(T0.saturating_add(Span::from_days(31)));
    let late = server
        .leads
        .unmerge_lead(pb::UnmergeLeadRequest {
            duplicate_id: b.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("past the 30 days");
    assert_eq!(late.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&late), "UNMERGE_WINDOW_PASSED");
    Ok(())
}

async fn bad_merge_requests_are_refused_with_their_fields(mut server: TestServer) -> anyhow::Result<()> {
    let a = create(&mut server, "ed@initech.com").await?;
    let b = create(&mut server, "ed.b@initech.com").await?;
    let c = create(&mut server, "ed.c@initech.com").await?;
    for (request, field) in [
        (merge(None, by_id(&b.id)), "survivor"),
        (merge(by_id(&a.id), None), "duplicate"),
        (merge(by_id(&a.id), by_id(&a.id)), "duplicate"),
        (
            pb::MergeLeadsRequest {
                occurred_at: Some(pb_time(T0.saturating_add(Span::from_days(1)))),
                ..merge(by_id(&a.id), by_id(&b.id))
            },
            "occurred_at",
        ),
    ] {
        assert_invalid(server.leads.merge_leads(request.clone()).await, field, &request);
    }
    let missing = server
        .leads
        .merge_leads(merge(by_id(&a.id), by_id("no-such-lead")))
        .await
        .expect_err("unknown");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // Idempotent by request id: a retry answers the first result.
    let first = pb::MergeLeadsRequest {
        request_id: "merge-1".to_owned(),
        ..merge(by_id(&a.id), by_id(&b.id))
    };
    let once = server.leads.merge_leads(first.clone()).await?.into_inner();
    let twice = server.leads.merge_leads(first).await?.into_inner();
    assert_eq!(once, twice);
    // Into or from a merged lead: MERGED_INTO.
    for request in [
        merge(by_id(&c.id), by_id(&b.id)),
        merge(by_id(&b.id), by_id(&c.id)),
    ] {
        let refused = server.leads.merge_leads(request).await.expect_err("merged");
        assert_eq!(reason(&refused), "MERGED_INTO", "{refused:?}");
    }
    let request = pb::UnmergeLeadRequest::default();
    assert_invalid(
        server.leads.unmerge_lead(request.clone()).await,
        "duplicate_id",
        &request,
    );
    let not_merged = server
        .leads
        .unmerge_lead(pb::UnmergeLeadRequest {
            duplicate_id: c.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("never merged");
    assert_eq!(reason(&not_merged), "NOT_MERGED");
    Ok(())
}

async fn concurrent_merges_of_overlapping_leads_lose_no_engagement(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    for i in 0..4 {
        let lead = create(&mut server, &format!("fay{i}@initech.com")).await?;
        for j in 0..3 {
            engage(&mut server, by_id(&lead.id), &format!("f{i}-{j}"), "page_viewed").await?;
        }
        ids.push(lead.id);
    }
    let pairs = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)];
    let mut calls = Vec::new();
    for (s, d) in pairs {
        let mut leads = server.leads.clone();
        let request = merge(by_id(&ids[s]), by_id(&ids[d]));
        calls.push(tokio::spawn(async move { leads.merge_leads(request).await }));
    }
    for call in calls {
        if let Err(refused) = call.await? {
            // A lead merged by another call first.
            assert_eq!(reason(&refused), "MERGED_INTO", "{refused:?}");
        }
    }
    // Every engagement is on exactly one lead that stands.
    let mut seen = Vec::new();
    for id in &ids {
        if get(&mut server, by_id(id)).await.is_ok() {
            for e in full_history(&mut server, id, 50).await? {
                if let Some(pb::history_entry::Entry::Engagement(g)) = e.entry {
                    seen.push(g.event_id);
                }
            }
        }
    }
    seen.sort();
    let expected: Vec<String> = (0..4)
        .flat_map(|i| (0..3).map(move |j| format!("f{i}-{j}")))
        .collect();
    assert_eq!(seen, expected);
    Ok(())
}

async fn erasing_a_merged_lead_by_its_old_id_erases_the_person(mut server: TestServer) -> anyhow::Result<()> {
    let a = create(&mut server, "gus@initech.com").await?;
    let b = keyed(&mut server, "form-3", "gus.b@initech.com").await?;
    engage(&mut server, by_id(&b.id), "g1", "webinar_attended").await?;
    server
        .leads
        .merge_leads(merge(by_id(&a.id), by_id(&b.id)))
        .await?;
    let erased = server
        .leads
        .erase_lead(pb::EraseLeadRequest { lead: by_id(&b.id) })
        .await?
        .into_inner();
    assert_eq!(erased.lead_id, a.id);
    for lead in [by_id(&a.id), by_id(&b.id), by_key("form-3")] {
        let gone = get(&mut server, lead).await.expect_err("erased");
        assert_eq!(gone.code(), tonic::Code::NotFound);
    }
    // Again by the old id: erased already, nothing changes.
    let again = server
        .leads
        .erase_lead(pb::EraseLeadRequest { lead: by_id(&b.id) })
        .await?
        .into_inner();
    assert!(again.already_erased, "{again:?}");
    Ok(())
}

/// The example policy with `[identity]` settings.
fn identity_policy(settings: &str) -> String {
    let policy =
        leadflow_server::DEFAULT_POLICY.replacen("[decay]", &format!("[identity]\n{settings}\n\n[decay]"), 1);
    assert_ne!(policy, leadflow_server::DEFAULT_POLICY);
    policy
}

async fn lead_with(
    server: &mut TestServer,
    pairs: &[(&str, &str)],
) -> anyhow::Result<pb::CreateLeadResponse> {
    Ok(server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: profile(pairs),
            ..Default::default()
        })
        .await?
        .into_inner())
}

async fn duplicates_of(server: &mut TestServer, lead: &str) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    Ok(server
        .leads
        .find_duplicates(pb::FindDuplicatesRequest {
            lead: by_id(lead),
            ..Default::default()
        })
        .await?
        .into_inner()
        .candidates
        .into_iter()
        .map(|c| (c.lead.map(|l| l.id).unwrap_or_default(), c.matched))
        .collect())
}

async fn duplicates_are_found_by_the_email_or_by_every_match_attribute(
    mut server: TestServer,
) -> anyhow::Result<()> {
    activate_policy(
        &mut server,
        identity_policy("match_attributes = [\"company\", \"last_name\"]"),
    )
    .await?;
    let ann = lead_with(
        &mut server,
        &[
            ("email", "ann+crm@initech.com"),
            ("company", "Initech"),
            ("last_name", "Smith"),
        ],
    )
    .await?;
    let ann = ann.lead.expect("a lead").id;
    let same_mail = lead_with(
        &mut server,
        &[("email", " ANN@Initech.com"), ("company", "Globex")],
    )
    .await?;
    let same_mail = same_mail.lead.expect("a lead").id;
    let same_name = lead_with(
        &mut server,
        &[
            ("email", "a.smith@initech.com"),
            ("company", " initech "),
            ("last_name", "SMITH"),
        ],
    )
    .await?;
    let same_name = same_name.lead.expect("a lead").id;
    // The company alone is not enough: every attribute, or nothing.
    let company_only = lead_with(
        &mut server,
        &[("email", "bo@initech.com"), ("company", "Initech")],
    )
    .await?;
    let company_only = company_only.lead.expect("a lead").id;
    let mut expected = vec![
        (same_mail.clone(), vec!["email".to_owned()]),
        (
            same_name.clone(),
            vec!["company".to_owned(), "last_name".to_owned()],
        ),
    ];
    expected.sort();
    assert_eq!(duplicates_of(&mut server, &ann).await?, expected);
    assert!(duplicates_of(&mut server, &company_only).await?.is_empty());
    // Nothing was merged by itself; once merged, a lead is no candidate.
    server
        .leads
        .merge_leads(merge(by_id(&ann), by_id(&same_mail)))
        .await?;
    assert_eq!(
        duplicates_of(&mut server, &ann).await?,
        [(same_name, vec!["company".to_owned(), "last_name".to_owned()])]
    );
    let request = pb::FindDuplicatesRequest {
        lead: by_id(&ann),
        limit: 101,
    };
    assert_invalid(
        server.leads.find_duplicates(request.clone()).await,
        "limit",
        &request,
    );
    let request = pb::FindDuplicatesRequest::default();
    assert_invalid(
        server.leads.find_duplicates(request.clone()).await,
        "lead",
        &request,
    );
    let missing = server
        .leads
        .find_duplicates(pb::FindDuplicatesRequest {
            lead: by_id("no-such-lead"),
            limit: 0,
        })
        .await
        .expect_err("unknown");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    Ok(())
}

async fn auto_merge_on_email_merges_a_new_lead_into_the_older_one_from_activation_on(
    mut server: TestServer,
) -> anyhow::Result<()> {
    // Two leads of one email before the policy says so: left alone.
    let early = lead_with(
        &mut server,
        &[("email", "cy@initech.com"), ("company", "Initech")],
    )
    .await?;
    let early = early.lead.expect("a lead").id;
    let twin = lead_with(&mut server, &[("email", "Cy@initech.com")]).await?;
    assert!(twin.merged_into.is_empty());
    activate_policy(&mut server, identity_policy("auto_merge_on = [\"email\"]")).await?;
    assert_eq!(
        get(&mut server, by_id(&early)).await?.stage,
        pb::Stage::Iql as i32
    );
    // A new lead of that email is merged into the oldest of them.
    let late = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            external_key: "late-form".to_owned(),
            profile: profile(&[("email", "cy+form@initech.com"), ("phone", "+1 555 0100")]),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(late.merged_into, early);
    let survivor = late.lead.expect("the survivor");
    assert_eq!(survivor.id, early);
    assert_eq!(
        survivor.profile.get("phone").map(String::as_str),
        Some("+1 555 0100")
    );
    let moved: Vec<(String, i32)> = late
        .transitions
        .iter()
        .map(|t| (t.lead_id.clone(), t.to_stage))
        .collect();
    let new_id = moved.first().map(|(id, _)| id.clone()).unwrap_or_default();
    assert_eq!(
        moved,
        [
            (new_id.clone(), pb::Stage::Iql as i32),
            (new_id.clone(), pb::Stage::Merged as i32)
        ]
    );
    assert_eq!(get(&mut server, by_key("late-form")).await?.id, early);
    // An automatic merge is undone like any other.
    let unmerged = server
        .leads
        .unmerge_lead(pb::UnmergeLeadRequest {
            duplicate_id: new_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(unmerged.duplicate.map(|l| l.id), Some(new_id));
    // Four captures of one person at once: one lead stands, the others
    // merged into it.
    let mut calls = Vec::new();
    for i in 0..4 {
        let mut leads = server.leads.clone();
        calls.push(tokio::spawn(async move {
            leads
                .create_lead(pb::CreateLeadRequest {
                    profile: profile(&[("email", &format!("DEE+{i}@initech.com"))]),
                    ..Default::default()
                })
                .await
                .map(tonic::Response::into_inner)
        }));
    }
    let mut standing = Vec::new();
    for call in calls {
        let created = call.await??;
        let lead = created.lead.map(|l| l.id).unwrap_or_default();
        if created.merged_into.is_empty() {
            standing.push(lead);
        } else {
            assert_eq!(created.merged_into, lead, "the answer is the survivor");
            standing.push(lead);
        }
    }
    standing.sort();
    standing.dedup();
    assert_eq!(standing.len(), 1, "{standing:?}");
    Ok(())
}

scenarios! {
    duplicates_are_found_by_the_email_or_by_every_match_attribute,
    auto_merge_on_email_merges_a_new_lead_into_the_older_one_from_activation_on,
    two_leads_below_the_bar_make_an_mql_and_the_duplicate_s_key_names_the_survivor = clock_at(T0),
    a_sales_qualified_duplicate_takes_an_iql_survivor_to_sql = clock_at(T0),
    an_unmerge_gives_the_duplicate_back_what_it_brought_and_what_came_since = clock_at(T0),
    an_unmerge_after_its_window_is_refused = clock_at(T0),
    an_unmerge_answers_the_workflows_the_survivor_s_re_score_set_off = clock_at(T0),
    bad_merge_requests_are_refused_with_their_fields = clock_at(T0),
    concurrent_merges_of_overlapping_leads_lose_no_engagement,
    erasing_a_merged_lead_by_its_old_id_erases_the_person = clock_at(T0),
}

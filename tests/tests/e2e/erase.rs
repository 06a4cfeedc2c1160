//! EraseLead: personal data gone in one transaction, the anonymous history
//! kept, a LEAD_ERASED event, the lead NOT_FOUND afterwards, a second erase
//! a no-op.

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use tonic::Code;

async fn an_erased_lead_keeps_only_its_anonymous_history(mut server: TestServer) -> anyhow::Result<()> {
    let ws = server.workspace();
    let lead = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            external_key: "crm-7".into(),
            profile: good_fit("jane.doe@acme.com"),
            ..pb::CreateLeadRequest::default()
        })
        .await?
        .into_inner()
        .lead
        .expect("lead");
    let mut visit = engagement("v1", "demo_requested");
    visit
        .properties
        .insert("path".into(), "/pricing?email=jane.doe@acme.com".into());
    let moved = server
        .leads
        .record_engagement(pb::RecordEngagementRequest {
            lead: by_key("crm-7"),
            engagement: Some(visit),
        })
        .await?
        .into_inner();
    assert!(!moved.transitions.is_empty(), "the demo request moved the lead");
    let before = server.rows().await;
    let events_before = server.engine.store().outbox_after(ws, 0, 1_000).await?;
    assert!(
        events_before.iter().any(|e| e.event.payload.contains("crm-7")),
        "the stored events named the lead's key"
    );

    let erased = server
        .leads
        .erase_lead(pb::EraseLeadRequest {
            lead: by_key("crm-7"),
        })
        .await?
        .into_inner();
    assert_eq!(erased.lead_id, lead.id);
    assert!(!erased.already_erased);
    assert_eq!(erased.engagements_scrubbed, 1);
    assert!(erased.events_scrubbed >= 1);

    // Every lead RPC: NOT_FOUND, by id or by the key it no longer has.
    for lead_ref in [by_id(&lead.id), by_key("crm-7")] {
        let err = server
            .leads
            .get_lead(pb::GetLeadRequest {
                lead: lead_ref.clone(),
            })
            .await
            .expect_err("erased");
        assert_eq!(err.code(), Code::NotFound);
        let err = server
            .leads
            .record_engagement(pb::RecordEngagementRequest {
                lead: lead_ref.clone(),
                engagement: Some(engagement("v2", "demo_requested")),
            })
            .await
            .expect_err("erased");
        assert_eq!(err.code(), Code::NotFound);
        let err = server
            .leads
            .get_lead_history(pb::GetLeadHistoryRequest {
                lead: lead_ref,
                ..Default::default()
            })
            .await
            .expect_err("erased");
        assert_eq!(err.code(), Code::NotFound);
    }
    let listed = server
        .leads
        .list_leads(pb::ListLeadsRequest::default())
        .await?
        .into_inner();
    assert!(listed.leads.iter().all(|l| l.id != lead.id));

    // The history stays (the funnel still counts it); nothing personal is left.
    let after = server.rows().await;
    assert_eq!(
        (after[0], after[1], after[2]),
        (before[0], before[1], before[2]),
        "leads, engagements, transitions kept"
    );
    let log = server.engine.store().engagements_of(ws, &lead.id).await?;
    assert!(log.iter().all(|e| e.properties.is_empty()), "{log:?}");
    let events = server.engine.store().outbox_after(ws, 0, 1_000).await?;
    for e in &events {
        assert!(
            !e.event.payload.contains("crm-7") && !e.event.payload.contains("jane.doe"),
            "{}",
            e.event.payload
        );
    }
    let last = events.last().expect("events");
    assert_eq!(
        (last.event.kind.as_str(), last.event.lead_id.as_str()),
        ("LEAD_ERASED", lead.id.as_str())
    );
    let tx = server.engine.store().begin().await?;
    let (record, erased_at) = tx
        .lock_lead_even_erased(ws, leadflow_store::LeadLookup::Id(&lead.id))
        .await?
        .expect("the row stays");
    drop(tx);
    assert!(erased_at.is_some());
    assert_eq!(record.external_key, None);
    assert!(!serde_json::to_string(&record.lead)?.contains("jane.doe"));

    // Again, by id: nothing changes, no second event.
    let again = server
        .leads
        .erase_lead(pb::EraseLeadRequest {
            lead: by_id(&lead.id),
        })
        .await?
        .into_inner();
    assert!(again.already_erased);
    assert_eq!(again.erased_at, erased.erased_at);
    assert_eq!(
        server.engine.store().outbox_after(ws, 0, 1_000).await?.len(),
        events.len()
    );
    // By the key it no longer has: NOT_FOUND.
    let err = server
        .leads
        .erase_lead(pb::EraseLeadRequest {
            lead: by_key("crm-7"),
        })
        .await
        .expect_err("no such key any more");
    assert_eq!(err.code(), Code::NotFound);
    Ok(())
}

scenarios! {
    an_erased_lead_keeps_only_its_anonymous_history,
}

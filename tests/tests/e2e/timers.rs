//! Durable timers on a hand-moved clock: delayed workflows, SLAs, idle
//! recycling, and firing exactly once with several workers.

use std::time::Duration;

use leadflow_domain::{Span, Timestamp};
use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

/// 2026-01-05T09:00:00Z.
const T0: Timestamp = Timestamp::from_secs(1_767_603_600);
const WAIT: Duration = Duration::from_secs(5);

/// The kinds of events a lead has in the outbox, in order.
async fn outbox_of(server: &TestServer, lead: &str) -> anyhow::Result<Vec<String>> {
    let mut stream = server
        .engine
        .store()
        .outbox_after(server.workspace(), 0, 1_000)
        .await?;
    stream.retain(|r| r.event.lead_id == lead);
    Ok(stream
        .iter()
        .map(|r| {
            let p: leadflow_engine::OutboxPayload =
                serde_json::from_str(&r.event.payload).unwrap_or_else(|e| panic!("{e}"));
            if let Some(t) = p.transition {
                format!("TRANSITION:{}", t.record.to)
            } else if let Some(t) = p.trigger {
                format!("TRIGGER:{}", t.emit)
            } else if let Some(b) = p.sla_breach {
                format!("SLA_BREACHED:{}", b.sla_id)
            } else {
                "?".to_owned()
            }
        })
        .collect())
}

async fn a_delayed_workflow_fires_only_while_the_lead_stays(mut server: TestServer) -> anyhow::Result<()> {
    let mut stream = subscribe(&mut server, "nurture", pb::StartPosition::Earliest, 0, None).await?;
    let stays = mql_lead(&mut server, "stay@acme.com").await?;
    let leaves = mql_lead(&mut server, "leave@acme.com").await?;
    server
        .leads
        .transition(transition(&leaves, pb::Action::Reject, "no_budget"))
        .await?;
    server
        .manual_clock()
        .advance(Span::from_days(3) - Span::from_secs(1));
    assert_eq!(server.engine.fire_due_timers(100).await?, 0, "not yet");
    server.manual_clock().advance(Span::from_secs(2));
    assert_eq!(server.engine.fire_due_timers(100).await?, 1);
    assert_eq!(server.engine.fire_due_timers(100).await?, 0, "once");
    let stays_events = outbox_of(&server, &stays).await?;
    assert_eq!(
        stays_events.last().map(String::as_str),
        Some("TRIGGER:mql_followup_day3")
    );
    assert!(
        !outbox_of(&server, &leaves)
            .await?
            .iter()
            .any(|e| e == "TRIGGER:mql_followup_day3")
    );
    // and the subscriber gets it, stamped at the due instant
    let all = events(&mut stream, 8, WAIT).await?;
    let followup = all
        .iter()
        .find(|e| describe(e) == "TRIGGER:mql_followup_day3")
        .expect("streamed");
    let due = T0.saturating_add(Span::from_days(3));
    assert_eq!(
        followup.occurred_at.map(|t| t.seconds),
        Some(due.as_micros() / 1_000_000)
    );
    Ok(())
}

async fn an_uncontacted_sql_breaches_its_sla(mut server: TestServer) -> anyhow::Result<()> {
    let late = create(&mut server, "late@acme.com").await?;
    let quick = create(&mut server, "quick@acme.com").await?;
    for lead in [&late.id, &quick.id] {
        server
            .leads
            .record_engagement(record(
                lead,
                engagement(&format!("demo-{lead}"), "demo_requested"),
            ))
            .await?;
    }
    server.manual_clock().advance(Span::from_hours(2));
    server
        .leads
        .record_engagement(record(&quick.id, engagement("call", "sales_contacted")))
        .await?;
    server.manual_clock().advance(Span::from_hours(23));
    server.engine.fire_due_timers(100).await?;
    assert_eq!(
        outbox_of(&server, &late.id).await?.last().map(String::as_str),
        Some("SLA_BREACHED:sql_first_contact")
    );
    assert!(
        !outbox_of(&server, &quick.id)
            .await?
            .iter()
            .any(|e| e.starts_with("SLA_BREACHED"))
    );
    let lead = server
        .leads
        .get_lead(pb::GetLeadRequest {
            lead: by_id(&late.id),
        })
        .await?
        .into_inner()
        .lead
        .expect("lead");
    assert_eq!(stage(&lead), pb::Stage::Sql, "this SLA only reports");
    Ok(())
}

async fn an_idle_mql_is_recycled(mut server: TestServer) -> anyhow::Result<()> {
    let lead = mql_lead(&mut server, "idle@acme.com").await?;
    server.manual_clock().advance(Span::from_days(10));
    server
        .leads
        .record_engagement(record(&lead, engagement("view", "page_viewed")))
        .await?;
    server
        .manual_clock()
        .advance(Span::from_days(30) - Span::from_secs(1));
    server.engine.fire_due_timers(100).await?;
    let got = server
        .leads
        .get_lead(pb::GetLeadRequest { lead: by_id(&lead) })
        .await?
        .into_inner()
        .lead
        .expect("lead");
    assert_eq!(
        stage(&got),
        pb::Stage::Mql,
        "the engagement on day 10 restarted the clock"
    );
    server.manual_clock().advance(Span::from_secs(2));
    server.engine.fire_due_timers(100).await?;
    let got = server
        .leads
        .get_lead(pb::GetLeadRequest { lead: by_id(&lead) })
        .await?
        .into_inner()
        .lead
        .expect("lead");
    assert_eq!(stage(&got), pb::Stage::Iql);
    let events = outbox_of(&server, &lead).await?;
    let tail: Vec<&str> = events.iter().rev().take(2).rev().map(String::as_str).collect();
    assert_eq!(tail, ["SLA_BREACHED:mql_idle", "TRANSITION:IQL"]);
    let history = server
        .leads
        .get_lead_history(pb::GetLeadHistoryRequest {
            lead: by_id(&lead),
            ..Default::default()
        })
        .await?
        .into_inner();
    let last = history.entries.iter().rev().find_map(|e| match &e.entry {
        Some(pb::history_entry::Entry::Transition(t)) => Some(t.clone()),
        _ => None,
    });
    let last = last.expect("a transition");
    assert_eq!(
        (last.reason.as_str(), last.cause, last.cause_ref.as_str()),
        ("idle", pb::Cause::Timer as i32, "sla:mql_idle")
    );
    Ok(())
}

async fn several_workers_fire_each_timer_once(mut server: TestServer) -> anyhow::Result<()> {
    let mut leads = Vec::new();
    for i in 0..12 {
        leads.push(mql_lead(&mut server, &format!("x{i}@acme.com")).await?);
    }
    server
        .manual_clock()
        .advance(Span::from_days(3) + Span::from_secs(1));
    // a second engine on the same database: another replica's worker
    let url = server.database_url().to_owned();
    let other = leadflow_engine::Engine::new(
        leadflow_store::Store::connect(&url, &leadflow_store::StoreOptions::default()).await?,
        server.clock.clone().expect("clock"),
    );
    let mine = server.engine.clone();
    let (a, b, c) = tokio::join!(
        mine.fire_due_timers(5),
        other.fire_due_timers(100),
        mine.fire_due_timers(100)
    );
    assert_eq!(a? + b? + c?, 12);
    for lead in &leads {
        let followups = outbox_of(&server, lead)
            .await?
            .iter()
            .filter(|e| *e == "TRIGGER:mql_followup_day3")
            .count();
        assert_eq!(followups, 1, "lead {lead}");
    }
    Ok(())
}

async fn a_command_first_fires_the_lead_s_overdue_timers(mut server: TestServer) -> anyhow::Result<()> {
    // the worker is late: an engagement after the due instant still sees
    // the breach and the recycle happen first, at their own time
    let lead = mql_lead(&mut server, "catch@acme.com").await?;
    server.manual_clock().advance(Span::from_days(31));
    let r = server
        .leads
        .record_engagement(record(&lead, engagement("back", "trial_started")))
        .await?
        .into_inner();
    assert_eq!(moves(&r.transitions), [(pb::Stage::Mql, pb::Stage::Iql)]);
    assert_eq!(r.transitions[0].cause, pb::Cause::Timer as i32);
    let due = T0.saturating_add(Span::from_days(30));
    assert_eq!(
        r.transitions[0].occurred_at.map(|t| t.seconds),
        Some(due.as_micros() / 1_000_000)
    );
    Ok(())
}

async fn events_are_kept_until_acked_and_retained(mut server: TestServer) -> anyhow::Result<()> {
    let lead = create(&mut server, "keep@acme.com").await?;
    server
        .leads
        .transition(transition(&lead.id, pb::Action::Promote, "booth"))
        .await?;
    // seq 1 capture, 2 MQL, 3 welcome; "fast" acks them all, "slow" acks nothing
    subscribe(&mut server, "fast", pb::StartPosition::Earliest, 0, None).await?;
    server
        .triggers
        .ack(pb::AckRequest {
            consumer: "fast".into(),
            sequence: 3,
        })
        .await?;
    subscribe(&mut server, "slow", pb::StartPosition::Earliest, 0, None).await?;
    server.manual_clock().advance(Span::from_days(8));
    // "slow" was seen within the retention: nothing goes
    server
        .triggers
        .ack(pb::AckRequest {
            consumer: "slow".into(),
            sequence: 0,
        })
        .await?;
    assert_eq!(server.engine.trim_events().await?, 0);
    server.manual_clock().advance(Span::from_days(8));
    // now nobody seen in 7 days holds them back
    server
        .triggers
        .ack(pb::AckRequest {
            consumer: "fast".into(),
            sequence: 3,
        })
        .await?;
    assert_eq!(server.engine.trim_events().await?, 3);
    let err = subscribe(&mut server, "late", pb::StartPosition::AtSequence, 2, None)
        .await
        .expect_err("trimmed");
    assert_eq!(err.code(), tonic::Code::OutOfRange);
    let err = subscribe(&mut server, "slow", pb::StartPosition::Resume, 0, None)
        .await
        .expect_err("behind the floor");
    assert_eq!(err.code(), tonic::Code::OutOfRange);
    server
        .leads
        .transition(transition(&lead.id, pb::Action::Accept, ""))
        .await?;
    // EARLIEST starts above the floor: the day-3 step, fired late by the
    // command (no worker ran), then the move to SQL
    let mut earliest = subscribe(&mut server, "new", pb::StartPosition::Earliest, 0, None).await?;
    let got = events(&mut earliest, 2, WAIT).await?;
    assert_eq!(
        got.iter().map(|e| (e.sequence, describe(e))).collect::<Vec<_>>(),
        [
            (4, "TRIGGER:mql_followup_day3".to_owned()),
            (5, "TRANSITION:SQL".to_owned())
        ]
    );
    Ok(())
}

scenarios! {
    a_delayed_workflow_fires_only_while_the_lead_stays = clock_at(T0),
    an_uncontacted_sql_breaches_its_sla = clock_at(T0),
    an_idle_mql_is_recycled = clock_at(T0),
    several_workers_fire_each_timer_once = clock_at(T0),
    a_command_first_fires_the_lead_s_overdue_timers = clock_at(T0),
    events_are_kept_until_acked_and_retained = clock_at(T0),
}

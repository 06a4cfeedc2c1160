//! The event stream: subscribe, receive, ack, resume; start positions;
//! filters; takeover; per-lead order.

use std::time::Duration;

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

const WAIT: Duration = Duration::from_secs(5);

async fn subscribe_receive_ack_disconnect_resume(mut server: TestServer) -> anyhow::Result<()> {
    let mut stream = subscribe(&mut server, "nurture", pb::StartPosition::Earliest, 0, None).await?;
    let lead = mql_lead(&mut server, "ev@acme.com").await?;
    let got = events(&mut stream, 3, WAIT).await?;
    assert_eq!(
        got.iter().map(describe).collect::<Vec<_>>(),
        ["TRANSITION:IQL", "TRANSITION:MQL", "TRIGGER:mql_welcome_sequence"]
    );
    assert_eq!(got.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2, 3]);
    let mql = &got[1];
    assert!(!mql.event_id.is_empty());
    assert_eq!(mql.kind, pb::EventKind::Transition as i32);
    let snapshot = mql.lead.clone().expect("lead snapshot");
    assert_eq!(
        (snapshot.id.as_str(), snapshot.stage),
        (lead.as_str(), pb::Stage::Mql as i32)
    );
    let Some(pb::event::Payload::Transition(t)) = &mql.payload else {
        anyhow::bail!("a transition")
    };
    assert_eq!((t.from_stage, t.policy_version), (pb::Stage::Iql as i32, 1));
    assert_eq!(t.cause, pb::Cause::Engagement as i32);

    let acked = server
        .triggers
        .ack(pb::AckRequest {
            consumer: "nurture".into(),
            sequence: 2,
        })
        .await?
        .into_inner();
    assert_eq!(acked.consumer.map(|c| (c.cursor, c.head, c.lag)), Some((2, 3, 1)));
    drop(stream);

    // while nobody listens, sales accepts
    server
        .leads
        .transition(transition(&lead, pb::Action::Accept, ""))
        .await?;
    let listed = server
        .triggers
        .list_consumers(pb::ListConsumersRequest {})
        .await?
        .into_inner();
    assert_eq!(
        listed
            .consumers
            .iter()
            .map(|c| (c.name.as_str(), c.cursor, c.head, c.lag))
            .collect::<Vec<_>>(),
        [("nurture", 2, 4, 2)]
    );

    // resuming redelivers what was not acked, then goes on
    let mut stream = subscribe(&mut server, "nurture", pb::StartPosition::Resume, 0, None).await?;
    let got = events(&mut stream, 2, WAIT).await?;
    assert_eq!(
        got.iter().map(|e| (e.sequence, describe(e))).collect::<Vec<_>>(),
        [
            (3, "TRIGGER:mql_welcome_sequence".to_owned()),
            (4, "TRANSITION:SQL".to_owned())
        ]
    );
    // an ack never moves the cursor back
    server
        .triggers
        .ack(pb::AckRequest {
            consumer: "nurture".into(),
            sequence: 4,
        })
        .await?;
    let acked = server
        .triggers
        .ack(pb::AckRequest {
            consumer: "nurture".into(),
            sequence: 1,
        })
        .await?
        .into_inner();
    assert_eq!(acked.consumer.map(|c| c.cursor), Some(4));
    let err = server
        .triggers
        .ack(pb::AckRequest {
            consumer: "nurture".into(),
            sequence: 99,
        })
        .await
        .expect_err("beyond the head");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = server
        .triggers
        .ack(pb::AckRequest {
            consumer: "nobody".into(),
            sequence: 1,
        })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), tonic::Code::NotFound);
    Ok(())
}

async fn start_positions(mut server: TestServer) -> anyhow::Result<()> {
    mql_lead(&mut server, "fa@acme.com").await?; // sequences 1..=3
    let mut at = subscribe(&mut server, "at", pb::StartPosition::AtSequence, 2, None).await?;
    assert_eq!(next_event(&mut at, WAIT).await?.map(|e| e.sequence), Some(2));
    let mut latest = subscribe(&mut server, "latest", pb::StartPosition::Latest, 0, None).await?;
    let mut earliest = subscribe(&mut server, "earliest", pb::StartPosition::Earliest, 0, None).await?;
    assert_eq!(
        next_event(&mut earliest, WAIT).await?.map(|e| e.sequence),
        Some(1)
    );
    let other = create(&mut server, "fb@acme.com").await?;
    let first_new = next_event(&mut latest, WAIT).await?.expect("an event");
    assert_eq!(
        (first_new.sequence, first_new.lead.map(|l| l.id)),
        (4, Some(other.id))
    );

    let err = subscribe(&mut server, "x", pb::StartPosition::Resume, 0, None)
        .await
        .expect_err("unknown consumer");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = subscribe(&mut server, "x", pb::StartPosition::AtSequence, 99, None)
        .await
        .expect_err("not yet handed out");
    assert_eq!(err.code(), tonic::Code::OutOfRange);
    let err = subscribe(&mut server, "x", pb::StartPosition::AtSequence, 0, None)
        .await
        .expect_err("no sequence 0");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = subscribe(&mut server, "bad name!", pb::StartPosition::Earliest, 0, None)
        .await
        .expect_err("bad name");
    assert_eq!(
        (err.code(), fields(&err)),
        (tonic::Code::InvalidArgument, vec!["consumer".to_owned()])
    );
    // a new consumer with no start position begins at the start; a known one resumes
    let mut fresh = subscribe(&mut server, "fresh", pb::StartPosition::Unspecified, 0, None).await?;
    assert_eq!(next_event(&mut fresh, WAIT).await?.map(|e| e.sequence), Some(1));
    Ok(())
}

async fn filters_narrow_by_kind_stage_and_workflow(mut server: TestServer) -> anyhow::Result<()> {
    let kinds = pb::EventFilter {
        kinds: vec![pb::EventKind::Trigger.into()],
        ..Default::default()
    };
    let mut triggers_only = subscribe(&mut server, "t", pb::StartPosition::Earliest, 0, Some(kinds)).await?;
    let sql = pb::EventFilter {
        kinds: vec![pb::EventKind::Transition.into()],
        stages: vec![pb::Stage::Sql.into()],
        ..Default::default()
    };
    let mut sql_only = subscribe(&mut server, "s", pb::StartPosition::Earliest, 0, Some(sql)).await?;
    let workflows = pb::EventFilter {
        workflows: vec!["not-ready".into()],
        kinds: vec![pb::EventKind::Trigger.into()],
        ..Default::default()
    };
    let mut not_ready = subscribe(&mut server, "w", pb::StartPosition::Earliest, 0, Some(workflows)).await?;

    let lead = mql_lead(&mut server, "ga@acme.com").await?;
    server
        .leads
        .transition(transition(&lead, pb::Action::Reject, "not_ready"))
        .await?;
    let other = create(&mut server, "gb@acme.com").await?;
    server
        .leads
        .record_engagement(record(&other.id, engagement("demo", "demo_requested")))
        .await?;

    let got = events(&mut triggers_only, 2, WAIT).await?;
    assert_eq!(
        got.iter().map(describe).collect::<Vec<_>>(),
        ["TRIGGER:mql_welcome_sequence", "TRIGGER:long_term_nurture"]
    );
    let got = events(&mut sql_only, 1, WAIT).await?;
    assert_eq!(got.iter().map(describe).collect::<Vec<_>>(), ["TRANSITION:SQL"]);
    assert_eq!(got[0].lead.as_ref().map(|l| l.id.clone()), Some(other.id.clone()));
    let got = events(&mut not_ready, 1, WAIT).await?;
    assert_eq!(
        got.iter().map(describe).collect::<Vec<_>>(),
        ["TRIGGER:long_term_nurture"]
    );
    // nothing else passes, but a checkpoint says how far the stream has looked
    let head = server
        .triggers
        .list_consumers(pb::ListConsumersRequest {})
        .await?
        .into_inner()
        .consumers[0]
        .head;
    let item = tokio::time::timeout(Duration::from_secs(7), not_ready.message())
        .await??
        .and_then(|r| r.item);
    let checkpoint = match item {
        Some(pb::subscribe_response::Item::Checkpoint(c)) => c,
        Some(pb::subscribe_response::Item::Event(e)) => anyhow::bail!("unexpected {}", describe(&e)),
        None => anyhow::bail!("the stream ended"),
    };
    assert_eq!(checkpoint.head_sequence, head);
    Ok(())
}

async fn a_newer_stream_takes_over_a_consumer(mut server: TestServer) -> anyhow::Result<()> {
    let mut old = subscribe(&mut server, "engine", pb::StartPosition::Earliest, 0, None).await?;
    create(&mut server, "ha@acme.com").await?;
    assert!(next_event(&mut old, WAIT).await?.is_some());
    let mut new = subscribe(&mut server, "engine", pb::StartPosition::Resume, 0, None).await?;
    let ended = tokio::time::timeout(Duration::from_secs(7), async {
        loop {
            match old.message().await {
                Err(status) => break Some(status),
                Ok(None) => break None,
                Ok(Some(_)) => {}
            }
        }
    })
    .await?;
    assert_eq!(ended.map(|s| s.code()), Some(tonic::Code::Aborted));
    assert_eq!(
        next_event(&mut new, WAIT).await?.map(|e| e.sequence),
        Some(1),
        "nothing acked: redelivered"
    );
    // deleting the consumer ends its stream and forgets its cursor
    server
        .triggers
        .delete_consumer(pb::DeleteConsumerRequest {
            consumer: "engine".into(),
        })
        .await?;
    let err = subscribe(&mut server, "engine", pb::StartPosition::Resume, 0, None)
        .await
        .expect_err("gone");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = server
        .triggers
        .delete_consumer(pb::DeleteConsumerRequest {
            consumer: "engine".into(),
        })
        .await
        .expect_err("gone");
    assert_eq!(err.code(), tonic::Code::NotFound);
    Ok(())
}

async fn concurrent_writers_stream_in_order_per_lead_without_gaps(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let mut stream = subscribe(&mut server, "all", pb::StartPosition::Earliest, 0, None).await?;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(create(&mut server, &format!("w{i}@acme.com")).await?.id);
    }
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let mut client = server.leads.clone();
        tasks.push(tokio::spawn(async move {
            client
                .transition(transition(&id, pb::Action::Promote, "booth"))
                .await?;
            client.transition(transition(&id, pb::Action::Accept, "")).await?;
            client
                .transition(transition(&id, pb::Action::Recycle, "timing"))
                .await?;
            Ok::<(), tonic::Status>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    // 6 captures + per lead: MQL, welcome, SQL, IQL (recycle)
    let got = events(&mut stream, 6 + 6 * 4, Duration::from_secs(10)).await?;
    let seqs: Vec<i64> = got.iter().map(|e| e.sequence).collect();
    assert_eq!(
        seqs,
        (1..=30).collect::<Vec<_>>(),
        "every sequence once, in order"
    );
    for id in &ids {
        let mine: Vec<String> = got
            .iter()
            .filter(|e| e.lead.as_ref().is_some_and(|l| &l.id == id))
            .map(describe)
            .collect();
        assert_eq!(
            mine,
            [
                "TRANSITION:IQL",
                "TRANSITION:MQL",
                "TRIGGER:mql_welcome_sequence",
                "TRANSITION:SQL",
                "TRANSITION:IQL"
            ]
        );
    }
    Ok(())
}

/// Streams catching up over the same stretch share one read and one
/// encoding of each event; each still gets exactly its own filter's events,
/// in order, as a stream reading alone gets them.
async fn many_streams_catching_up_get_what_one_alone_gets(mut server: TestServer) -> anyhow::Result<()> {
    for i in 0..4 {
        mql_lead(&mut server, &format!("shared{i}@acme.com")).await?;
    }
    // 4 × (IQL, MQL, welcome)
    let mut alone = subscribe(&mut server, "alone", pb::StartPosition::Earliest, 0, None).await?;
    let all = events(&mut alone, 12, WAIT).await?;
    drop(alone);
    let triggers_only = Some(pb::EventFilter {
        kinds: vec![pb::EventKind::Trigger.into()],
        ..Default::default()
    });
    let mut streams = Vec::new();
    for i in 0..12 {
        let filter = if i % 3 == 0 { triggers_only.clone() } else { None };
        let at = 1 + i64::from(i % 4);
        let stream = subscribe(
            &mut server,
            &format!("many-{i}"),
            pb::StartPosition::AtSequence,
            at,
            filter.clone(),
        )
        .await?;
        streams.push((stream, at, filter.is_some()));
    }
    for (mut stream, at, triggers) in streams {
        let want: Vec<&pb::Event> = all
            .iter()
            .filter(|e| e.sequence >= at && (!triggers || e.kind == pb::EventKind::Trigger as i32))
            .collect();
        let got = events(&mut stream, want.len(), WAIT).await?;
        assert_eq!(
            got.iter().collect::<Vec<_>>(),
            want,
            "from {at}, triggers only: {triggers}"
        );
    }
    // A stream that starts later reads on from where the shared stretch ends.
    mql_lead(&mut server, "shared-late@acme.com").await?;
    let mut late = subscribe(&mut server, "late", pb::StartPosition::AtSequence, 11, None).await?;
    let got = events(&mut late, 5, WAIT).await?;
    assert_eq!(
        got.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [11, 12, 13, 14, 15]
    );
    assert_eq!(&got[..2], &all[10..]);
    Ok(())
}

/// 2026-01-05T09:00:00Z.
const T0: leadflow_domain::Timestamp = leadflow_domain::Timestamp::from_secs(1_767_603_600);

fn at_time(t: leadflow_domain::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_micros().div_euclid(1_000_000),
        nanos: 0,
    }
}

async fn subscribe_at(
    server: &mut TestServer,
    consumer: &str,
    start: pb::StartPosition,
    at: Option<leadflow_domain::Timestamp>,
) -> Result<EventStream, tonic::Status> {
    Ok(server
        .triggers
        .subscribe(pb::SubscribeRequest {
            consumer: consumer.to_owned(),
            start: start.into(),
            at_time: at.map(at_time),
            ..Default::default()
        })
        .await?
        .into_inner())
}

async fn a_stream_starts_at_a_commit_time(mut server: TestServer) -> anyhow::Result<()> {
    use leadflow_domain::Span;
    let first = create(&mut server, "first@acme.com").await?.id;
    server.manual_clock().advance(Span::from_hours(1));
    let second = create(&mut server, "second@acme.com").await?.id;
    // The lowest sequence committed at or after the instant: the second's
    // capture, not the first's.
    let half = T0.saturating_add(Span::from_secs(1_800));
    let mut from_half = subscribe_at(&mut server, "half", pb::StartPosition::AtTime, Some(half)).await?;
    let e = next_event(&mut from_half, WAIT).await?.expect("an event");
    assert_eq!(e.lead.as_ref().map(|l| l.id.as_str()), Some(second.as_str()));
    let mut from_start = subscribe_at(&mut server, "start", pb::StartPosition::AtTime, Some(T0)).await?;
    let e = next_event(&mut from_start, WAIT).await?.expect("an event");
    assert_eq!((e.sequence, e.lead.map(|l| l.id)), (1, Some(first.clone())));
    // Bad input: in the future, missing, or with another start.
    let ahead = T0.saturating_add(Span::from_days(1));
    let err = subscribe_at(&mut server, "x", pb::StartPosition::AtTime, Some(ahead))
        .await
        .expect_err("in the future");
    assert_eq!(
        (err.code(), fields(&err)),
        (tonic::Code::InvalidArgument, vec!["at_time".to_owned()])
    );
    let err = subscribe_at(&mut server, "x", pb::StartPosition::AtTime, None)
        .await
        .expect_err("missing");
    assert_eq!(
        (err.code(), fields(&err)),
        (tonic::Code::InvalidArgument, vec!["at_time".to_owned()])
    );
    let err = subscribe_at(&mut server, "x", pb::StartPosition::Earliest, Some(T0))
        .await
        .expect_err("not with EARLIEST");
    assert_eq!(
        (err.code(), fields(&err)),
        (tonic::Code::InvalidArgument, vec!["at_time".to_owned()])
    );
    // Past the retention, once events have been trimmed: OUT_OF_RANGE; a
    // time since then with nothing committed starts at the next event.
    for name in ["half", "start"] {
        server.engine.delete_consumer(server.workspace(), name).await?;
    }
    server.manual_clock().advance(Span::from_days(8));
    assert!(server.engine.trim_events().await? > 0);
    let err = subscribe_at(&mut server, "x", pb::StartPosition::AtTime, Some(T0))
        .await
        .expect_err("trimmed");
    assert_eq!(err.code(), tonic::Code::OutOfRange);
    let recent = T0.saturating_add(Span::from_days(8));
    let mut next = subscribe_at(&mut server, "next", pb::StartPosition::AtTime, Some(recent)).await?;
    let third = create(&mut server, "third@acme.com").await?.id;
    let e = next_event(&mut next, WAIT).await?.expect("an event");
    assert_eq!(e.lead.map(|l| l.id), Some(third));
    Ok(())
}

scenarios! {
    subscribe_receive_ack_disconnect_resume,
    start_positions,
    filters_narrow_by_kind_stage_and_workflow,
    a_newer_stream_takes_over_a_consumer,
    concurrent_writers_stream_in_order_per_lead_without_gaps,
    many_streams_catching_up_get_what_one_alone_gets,
    a_stream_starts_at_a_commit_time = clock_at(T0),
}

//! Score checkpoints: a late engagement is replayed from the lead's newest
//! checkpoint before it, and the lead ends exactly where a replay of its
//! whole log from the first engagement ends.

use leadflow_domain::Policy;
use leadflow_domain::score::ScoreState;
use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

const KINDS: [(&str, &str); 4] = [
    ("page_viewed", "/pricing"),
    ("page_viewed", "/blog"),
    ("ebook_downloaded", ""),
    ("webinar_attended", ""),
];

fn item(lead: &str, id: String, i: usize, seconds: i64) -> pb::EngagementItem {
    let (kind, path) = KINDS[i % KINDS.len()];
    let mut e = at(
        engagement(&id, kind),
        prost_types::Timestamp { seconds, nanos: 0 },
    );
    if !path.is_empty() {
        e.properties.insert("path".to_owned(), path.to_owned());
    }
    pb::EngagementItem {
        lead: by_id(lead),
        engagement: Some(e),
    }
}

/// The lead's score states against a replay of its whole stored log.
async fn replays_as_a_whole(server: &TestServer, lead: &str) -> anyhow::Result<()> {
    let policy = Policy::from_toml(leadflow_server::DEFAULT_POLICY)?;
    let store = server.engine.store();
    let record = store
        .lead(server.workspace(), lead)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no lead {lead}"))?;
    let log = store.engagements_of(server.workspace(), lead).await?;
    assert_eq!(
        record.lead.lifetime,
        ScoreState::replay(&policy, &log, None, None)
    );
    assert_eq!(
        record.lead.qualifying,
        ScoreState::replay(&policy, &log, record.lead.window_start, None)
    );
    Ok(())
}

async fn late_engagements_replay_from_a_checkpoint(mut server: TestServer) -> anyhow::Result<()> {
    let start = seconds_ago(400 * 86_400).seconds;
    let lead = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit("long@acme.com"),
            captured_at: Some(prost_types::Timestamp {
                seconds: start - 60,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .ok_or_else(|| anyhow::anyhow!("no lead"))?;
    // 300 engagements an hour apart, in scoring order, in batches and alone.
    let hour = 3_600;
    let items: Vec<_> = (0..300)
        .map(|i| {
            item(
                &lead.id,
                format!("m{i:04}"),
                i,
                start + hour * i64::try_from(i).unwrap_or(0),
            )
        })
        .collect();
    for chunk in items[..200].chunks(100) {
        server
            .leads
            .record_engagements(pb::RecordEngagementsRequest {
                engagements: chunk.to_vec(),
            })
            .await?;
    }
    for i in &items[200..] {
        server
            .leads
            .record_engagement(pb::RecordEngagementRequest {
                lead: i.lead.clone(),
                engagement: i.engagement.clone(),
            })
            .await?;
    }
    replays_as_a_whole(&server, &lead.id).await?;
    let kept = server
        .engine
        .store()
        .checkpoints_of(server.workspace(), &lead.id)
        .await?;
    assert_eq!(kept.len(), 300 / 64, "one every 64 engagements: {kept:?}");

    let last = leadflow_domain::Timestamp::from_secs(start + hour * 299);
    let late = [
        // within the newest 1 %: between the 297th and the 298th
        (
            item(&lead.id, "late-near".to_owned(), 1, start + hour * 297 + 60),
            5,
            "m0063",
        ),
        // at the same second as the last, sorting before it
        (
            item(&lead.id, "a-same-second".to_owned(), 2, start + hour * 299),
            5,
            "m0063",
        ),
        // before the first: the newest three checkpoints are made again, one
        // event on
        (item(&lead.id, "late-first".to_owned(), 3, start - 30), 4, "m0126"),
        // near the end again, from a checkpoint made again
        (
            item(&lead.id, "late-again".to_owned(), 0, start + hour * 298 + 60),
            4,
            "m0126",
        ),
    ];
    for (n, (i, count, first)) in late.into_iter().enumerate() {
        server
            .leads
            .record_engagement(pb::RecordEngagementRequest {
                lead: i.lead,
                engagement: i.engagement,
            })
            .await?;
        replays_as_a_whole(&server, &lead.id).await?;
        // every 64 engagements (the newest three after a replay from the
        // start), and at the end
        let kept: Vec<(leadflow_domain::Timestamp, String)> = server
            .engine
            .store()
            .checkpoints_of(server.workspace(), &lead.id)
            .await?
            .into_iter()
            .map(|k| (k.occurred_at, k.event_id))
            .collect();
        assert_eq!(kept.len(), count, "late engagement {n}: {kept:?}");
        assert_eq!(kept[0].1, first, "late engagement {n}: {kept:?}");
        assert_eq!(
            kept.last(),
            Some(&(last, "m0299".to_owned())),
            "late engagement {n}"
        );
    }
    Ok(())
}

scenarios! {
    late_engagements_replay_from_a_checkpoint,
}

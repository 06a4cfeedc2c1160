//! Batches and client streams of engagements.

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

fn item(lead: &str, e: pb::Engagement) -> pb::EngagementItem {
    pb::EngagementItem {
        lead: by_id(lead),
        engagement: Some(e),
    }
}

on_both_databases!(
    async fn a_batch_spans_leads_and_answers_per_item(server) {
        let a = create(&mut server, "oa@acme.com").await?;
        let b = create(&mut server, "ob@acme.com").await?;
        let items = vec![
            item(&a.id, engagement("a1", "trial_started")),
            item(&b.id, engagement("b1", "demo_requested")),
            item(&a.id, engagement("a2", "webinar_attended")),
            item(&a.id, engagement("a1", "trial_started")),
        ];
        let r = server
            .leads
            .record_engagements(pb::RecordEngagementsRequest { engagements: items })
            .await?
            .into_inner();
        assert_eq!(r.results.len(), 4);
        assert_eq!(moves(&r.results[1].transitions), [(pb::Stage::Iql, pb::Stage::Mql), (pb::Stage::Mql, pb::Stage::Sql)]);
        assert_eq!(r.results.iter().map(|x| x.duplicate).collect::<Vec<_>>(), [false, false, false, true]);
        assert_eq!(r.results[2].lead.as_ref().map(|l| l.id.clone()), Some(a.id.clone()));
        assert_eq!(server.rows().await[1], 3);
        Ok(())
    }
);

on_both_databases!(
    async fn one_bad_item_refuses_the_whole_batch(server) {
        let a = create(&mut server, "pa@acme.com").await?;
        let before = server.rows().await;
        let items = vec![
            item(&a.id, engagement("ok-1", "demo_requested")),
            item(&a.id, engagement("bad-1", "demo_requestd")),
            item("no-such-lead", engagement("bad-2", "trial_started")),
            item(&a.id, engagement("", "trial_started")),
        ];
        let err = server
            .leads
            .record_engagements(pb::RecordEngagementsRequest { engagements: items.clone() })
            .await
            .expect_err("refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(fields(&err), ["engagements[3].engagement.event_id"], "static checks first");
        let items = items[..3].to_vec();
        let err = server
            .leads
            .record_engagements(pb::RecordEngagementsRequest { engagements: items })
            .await
            .expect_err("refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(fields(&err), ["engagements[1].engagement.type", "engagements[2].lead"]);
        assert_eq!(server.rows().await, before, "the good item was not written either");
        let lead = server.leads.get_lead(pb::GetLeadRequest { lead: by_id(&a.id) }).await?.into_inner();
        assert_eq!(lead.lead.map(|l| stage(&l)), Some(pb::Stage::Iql));
        Ok(())
    }
);

on_both_databases!(
    async fn a_client_stream_commits_as_it_goes_and_says_how_far_it_got(server) {
        let a = create(&mut server, "qa@acme.com").await?;
        let messages: Vec<pb::StreamEngagementsRequest> = ["trial_started", "webinar_attended", "ebook_downloaded", "ebook_downloaded", "trial_started"]
            .iter()
            .enumerate()
            .map(|(i, kind)| pb::StreamEngagementsRequest {
                lead: by_id(&a.id),
                engagement: Some(engagement(&format!("s{}", i % 4), kind)),
            })
            .collect();
        let r = server
            .leads
            .stream_engagements(tokio_stream::iter(messages))
            .await?
            .into_inner();
        assert_eq!((r.committed, r.duplicates, r.transitions), (5, 1, 1));

        let bad: Vec<pb::StreamEngagementsRequest> = vec![
            pb::StreamEngagementsRequest {
                lead: by_id(&a.id),
                engagement: Some(engagement("t1", "page_viewed")),
            },
            pb::StreamEngagementsRequest {
                lead: by_id(&a.id),
                engagement: Some(engagement("t2", "page_viewd")),
            },
            pb::StreamEngagementsRequest {
                lead: by_id(&a.id),
                engagement: Some(engagement("t3", "page_viewed")),
            },
        ];
        let err = server
            .leads
            .stream_engagements(tokio_stream::iter(bad))
            .await
            .expect_err("the second is bad");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(reason(&err), "UNKNOWN_ENGAGEMENT_TYPE");
        let info = details(&err).error_info().cloned().expect("info");
        assert_eq!(info.metadata.get("committed").map(String::as_str), Some("1"));
        assert!(err.message().contains("1 engagements were committed"), "{}", err.message());
        assert_eq!(server.rows().await[1], 5, "four from the first stream, one from the second");
        Ok(())
    }
);

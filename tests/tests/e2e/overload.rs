//! Under overload leadflow sheds calls with RESOURCE_EXHAUSTED at once
//! instead of queueing them without bound; what it refuses it does not write.

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;

async fn overload_is_shed_with_resource_exhausted(db: Db) -> anyhow::Result<()> {
    let database = fresh_database(db).await?;
    let engine = engine_on(&database.url).await?;
    let config = leadflow_server::Config {
        max_in_flight: 2,
        ..loopback(&database.url)
    };
    let (running, channel) = serve(&engine, &config, NO_HTTP).await?;
    let mut leads = LeadServiceClient::new(channel.clone());
    let mut ids = Vec::new();
    for i in 0..10 {
        let r = leads
            .create_lead(pb::CreateLeadRequest {
                profile: good_fit(&format!("o{i}@acme.com")),
                ..Default::default()
            })
            .await?;
        ids.push(r.into_inner().lead.expect("lead").id);
    }
    let mut calls = Vec::new();
    for i in 0..80 {
        let mut client = LeadServiceClient::new(channel.clone());
        let id = ids[i % ids.len()].clone();
        calls.push(tokio::spawn(async move {
            client
                .record_engagement(record(&id, engagement(&format!("burst-{i}"), "page_viewed")))
                .await
        }));
    }
    let (mut ok, mut refused) = (0_u64, 0_u64);
    for call in calls {
        match call.await? {
            Ok(_) => ok += 1,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                assert_eq!(reason(&status), "OVERLOADED");
                assert!(details(&status).retry_info().is_some());
                refused += 1;
            }
        }
    }
    assert!(
        refused > 0,
        "80 calls at once against a limit of 2: some are shed"
    );
    assert!(ok > 0);
    let stored = engine
        .store()
        .row_counts(leadflow_server::DEFAULT_WORKSPACE)
        .await?[1];
    assert_eq!(stored, ok, "what was shed was not written");
    // health answers whatever the load
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await?;
    running.shutdown(std::time::Duration::from_secs(2)).await;
    Ok(())
}

scenarios! {
    overload_is_shed_with_resource_exhausted = each_database(),
}

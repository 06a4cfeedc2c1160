//! The service around the API: health, reflection, policies.

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

async fn health_says_serving(server: TestServer) -> anyhow::Result<()> {
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    for service in ["", "leadflow.v1.LeadService", "leadflow.v1.PolicyService"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    Ok(())
}

async fn policies_validate_version_and_activate(mut server: TestServer) -> anyhow::Result<()> {
    let active = server
        .policies
        .get_active_policy(pb::GetActivePolicyRequest {})
        .await?
        .into_inner();
    let v1 = active.policy.expect("the default policy");
    assert_eq!((v1.version, v1.name.as_str(), v1.active), (1, "acme-b2b", true));

    let bad = leadflow_server::DEFAULT_POLICY.replacen(
        "type = \"webinar_attended\"",
        "type = \"webinar_atended\"",
        1,
    );
    let v = server
        .policies
        .validate_policy(pb::ValidatePolicyRequest { source: bad.clone() })
        .await?
        .into_inner();
    assert!(!v.valid);
    assert_eq!(v.problems.len(), 1);
    assert_eq!(v.problems[0].path, "engagement[1].type");
    let err = server
        .policies
        .create_policy_version(pb::CreatePolicyVersionRequest {
            source: bad,
            ..Default::default()
        })
        .await
        .expect_err("invalid");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&err), "INVALID_POLICY");
    assert_eq!(fields(&err), ["source"]);

    // the same document again is the same version
    let same = server
        .policies
        .create_policy_version(pb::CreatePolicyVersionRequest {
            source: leadflow_server::DEFAULT_POLICY.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(same.policy.map(|p| p.version), Some(1));
    let next = leadflow_server::DEFAULT_POLICY.replace("half_life = \"30d\"", "half_life = \"60d\"");
    let v2 = server
        .policies
        .create_policy_version(pb::CreatePolicyVersionRequest {
            source: next,
            request_id: "policy-2".to_owned(),
        })
        .await?
        .into_inner()
        .policy
        .expect("v2");
    assert_eq!(v2.version, 2);
    let list = server
        .policies
        .list_policy_versions(pb::ListPolicyVersionsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(list.policies.iter().map(|p| p.version).collect::<Vec<_>>(), [2]);
    let rest = server
        .policies
        .list_policy_versions(pb::ListPolicyVersionsRequest {
            page_size: 1,
            page_token: list.next_page_token,
        })
        .await?
        .into_inner();
    assert_eq!(
        rest.policies
            .iter()
            .map(|p| (p.version, p.active))
            .collect::<Vec<_>>(),
        [(1, true)]
    );
    let err = server
        .policies
        .activate_policy(pb::ActivatePolicyRequest {
            version: 9,
            ..Default::default()
        })
        .await
        .expect_err("no such version");
    assert_eq!(err.code(), tonic::Code::NotFound);
    server
        .policies
        .activate_policy(pb::ActivatePolicyRequest {
            version: 2,
            ..Default::default()
        })
        .await?;
    let active = server
        .policies
        .get_active_policy(pb::GetActivePolicyRequest {})
        .await?
        .into_inner();
    assert_eq!(active.policy.map(|p| p.version), Some(2));
    Ok(())
}

async fn events_carry_the_callers_trace(mut server: TestServer) -> anyhow::Result<()> {
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(pb::CreateLeadRequest {
        profile: good_fit("ua@acme.com"),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01").parse()?,
    );
    let lead = server
        .leads
        .create_lead(request)
        .await?
        .into_inner()
        .lead
        .expect("lead");
    let events = server
        .engine
        .store()
        .outbox_after(server.workspace(), 0, 100)
        .await?;
    assert!(!events.is_empty(), "the capture is an event");
    for e in &events {
        assert_eq!(e.event.lead_id, lead.id);
        let tp = e.event.traceparent.clone().unwrap_or_default();
        assert!(tp.starts_with("00-") && tp.contains(trace_id), "{tp}");
    }
    Ok(())
}

scenarios! {
    health_says_serving,
    policies_validate_version_and_activate,
    events_carry_the_callers_trace,
}

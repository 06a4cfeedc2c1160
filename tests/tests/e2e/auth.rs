//! Bearer tokens: a token acts for its workspace only, with its scopes only;
//! a revoked or expired token is refused; health checks need none.

use std::time::Duration;

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use leadflow_server::auth::CACHE_TTL;
use tonic::Code;

fn create(secret: &str, email: &str) -> tonic::Request<pb::CreateLeadRequest> {
    with_token(
        secret,
        pb::CreateLeadRequest {
            profile: good_fit(email),
            ..pb::CreateLeadRequest::default()
        },
    )
}

async fn tokens_bind_calls_to_their_workspace_and_scopes(db: Db) -> anyhow::Result<()> {
    let database = fresh_database(db).await?;
    // The token cache reads the engine's clock: the test moves it.
    let clock = manual_clock_now();
    let engine = engine_on_clock(&database.url, clock.clone()).await?;
    for ws in ["acme", "globex"] {
        engine.bootstrap(ws, leadflow_server::DEFAULT_POLICY).await?;
    }
    let writer = token(
        &engine,
        "acme",
        "crm-sync",
        &["leads:read", "leads:write", "engagements:write"],
        None,
    )
    .await?;
    let reader = token(&engine, "acme", "reports", &["leads:read"], None).await?;
    let other = token(
        &engine,
        "globex",
        "everything",
        &leadflow_server::auth::SCOPES,
        None,
    )
    .await?;
    let expired = token(
        &engine,
        "acme",
        "old",
        &["leads:read"],
        Some(engine.now().saturating_sub(leadflow_domain::Span::from_days(1))),
    )
    .await?;

    let config = leadflow_server::Config {
        require_auth: true,
        ..loopback(&database.url)
    };
    let (running, channel) = serve(&engine, &config, NO_HTTP).await?;
    let mut leads = LeadServiceClient::new(channel.clone());

    // No token, a made-up one, an expired one: UNAUTHENTICATED, nothing written.
    for (secret, what) in [
        ("", "none"),
        ("lft_not-a-real-token", "unknown"),
        (expired.as_str(), "expired"),
    ] {
        let err = leads
            .create_lead(create(secret, "x@acme.com"))
            .await
            .expect_err(what);
        assert_eq!(err.code(), Code::Unauthenticated, "{what}: {err:?}");
    }
    // A valid token without the scope: PERMISSION_DENIED.
    let err = leads
        .create_lead(create(&reader, "r@acme.com"))
        .await
        .expect_err("no leads:write");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "MISSING_SCOPE");
    assert_eq!(engine.store().row_counts("acme").await?[0], 0, "nothing written");

    let created = leads
        .create_lead(create(&writer, "w@acme.com"))
        .await?
        .into_inner();
    assert_eq!(
        created
            .transitions
            .iter()
            .map(|t| t.principal.as_str())
            .collect::<Vec<_>>(),
        ["crm-sync"],
        "the token's name is recorded on what its call did"
    );
    let lead = created.lead.expect("lead");
    let got = leads
        .get_lead(with_token(
            &reader,
            pb::GetLeadRequest {
                lead: by_id(&lead.id),
            },
        ))
        .await?
        .into_inner();
    assert_eq!(got.lead.map(|l| l.id), Some(lead.id.clone()));

    // Another workspace's token never sees the lead, nor can it write to it.
    let err = leads
        .get_lead(with_token(
            &other,
            pb::GetLeadRequest {
                lead: by_id(&lead.id),
            },
        ))
        .await
        .expect_err("other workspace");
    assert_eq!(err.code(), Code::NotFound);
    assert!(!err.message().contains("w@acme.com"));
    let err = leads
        .record_engagement(with_token(
            &other,
            pb::RecordEngagementRequest {
                lead: by_id(&lead.id),
                engagement: Some(engagement("g-1", "demo_requested")),
            },
        ))
        .await
        .expect_err("other workspace");
    assert_eq!(err.code(), Code::NotFound);
    let listed = leads
        .list_leads(with_token(&other, pb::ListLeadsRequest::default()))
        .await?
        .into_inner();
    assert!(listed.leads.is_empty(), "globex lists none of acme's leads");
    assert_eq!(
        engine.store().row_counts("acme").await?[1],
        0,
        "no engagement written"
    );

    // Policy changes record their principal too; engagement writers may not make them.
    let mut policies = leadflow_proto::v1::policy_service_client::PolicyServiceClient::new(channel.clone());
    let source = format!("{}\n# tuned by marketing ops\n", leadflow_server::DEFAULT_POLICY);
    let err = policies
        .create_policy_version(with_token(
            &writer,
            pb::CreatePolicyVersionRequest {
                request_id: String::new(),
                source: source.clone(),
            },
        ))
        .await
        .expect_err("no policy:admin");
    assert_eq!(err.code(), Code::PermissionDenied);
    let admin = token(&engine, "acme", "ops", &["policy:admin"], None).await?;
    let version = policies
        .create_policy_version(with_token(
            &admin,
            pb::CreatePolicyVersionRequest {
                request_id: String::new(),
                source,
            },
        ))
        .await?
        .into_inner()
        .policy
        .expect("policy");
    assert_eq!(version.created_by, "ops");
    let activated = policies
        .activate_policy(with_token(
            &admin,
            pb::ActivatePolicyRequest {
                request_id: String::new(),
                version: version.version,
            },
        ))
        .await?
        .into_inner()
        .policy
        .expect("policy");
    assert_eq!(activated.activated_by, "ops");
    let globex_active = policies
        .get_active_policy(with_token(&other, pb::GetActivePolicyRequest::default()))
        .await?
        .into_inner()
        .policy
        .expect("policy");
    assert_eq!(globex_active.version, 1, "globex keeps its own policy");

    // Health needs no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // An erase records its principal too.
    leads
        .erase_lead(with_token(
            &writer,
            pb::EraseLeadRequest {
                lead: by_id(&lead.id),
            },
        ))
        .await?;
    let erasure = engine
        .store()
        .erasure_of("acme", &lead.id)
        .await?
        .expect("erased");
    assert_eq!(erasure.1.as_deref(), Some("crm-sync"));

    // Revoked: refused once the cache has turned over.
    assert_eq!(
        engine
            .store()
            .revoke_token("acme", "crm-sync", engine.now())
            .await?,
        1
    );
    clock.advance(span(CACHE_TTL + Duration::from_millis(300)));
    let err = leads
        .create_lead(create(&writer, "late@acme.com"))
        .await
        .expect_err("revoked");
    assert_eq!(err.code(), Code::Unauthenticated);

    running.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

async fn each_token_has_its_own_rate(db: Db) -> anyhow::Result<()> {
    let database = fresh_database(db).await?;
    // The buckets fill on the engine's clock: the test moves it.
    let clock = manual_clock_now();
    let engine = engine_on_clock(&database.url, clock.clone()).await?;
    engine.bootstrap("acme", leadflow_server::DEFAULT_POLICY).await?;
    let busy = token(&engine, "acme", "busy", &["leads:read"], None).await?;
    let calm = token(&engine, "acme", "calm", &["leads:read"], None).await?;
    let config = leadflow_server::Config {
        require_auth: true,
        token_rate_limit: 2,
        ..loopback(&database.url)
    };
    let (running, channel) = serve(&engine, &config, NO_HTTP).await?;
    let mut leads = LeadServiceClient::new(channel);
    let mut limited = Vec::new();
    for _ in 0..20 {
        if let Err(e) = leads
            .list_leads(with_token(&busy, pb::ListLeadsRequest::default()))
            .await
        {
            limited.push(e);
        }
    }
    assert_eq!(limited.len(), 18, "the burst of 2 got through, and no more");
    for e in &limited {
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert_eq!(reason(e), "RATE_LIMITED");
        let retry = details(e)
            .retry_info()
            .and_then(|r| r.retry_delay)
            .expect("a retry delay");
        assert!(retry <= Duration::from_millis(500), "{retry:?}");
    }
    leads
        .list_leads(with_token(&calm, pb::ListLeadsRequest::default()))
        .await
        .expect("another token is not limited by the first");
    clock.advance(span(Duration::from_millis(600)));
    leads
        .list_leads(with_token(&busy, pb::ListLeadsRequest::default()))
        .await
        .expect("refilled");
    running.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

/// Every RPC with a token of workspace B against what workspace A has.
async fn another_workspace_sees_nothing(db: Db) -> anyhow::Result<()> {
    use leadflow_proto::v1::policy_service_client::PolicyServiceClient;
    use leadflow_proto::v1::trigger_service_client::TriggerServiceClient;
    let database = fresh_database(db).await?;
    let engine = engine_on(&database.url).await?;
    for ws in ["acme", "globex"] {
        engine.bootstrap(ws, leadflow_server::DEFAULT_POLICY).await?;
    }
    let a = token(&engine, "acme", "a", &leadflow_server::auth::SCOPES, None).await?;
    let b = token(&engine, "globex", "b", &leadflow_server::auth::SCOPES, None).await?;
    let config = leadflow_server::Config {
        require_auth: true,
        ..loopback(&database.url)
    };
    let (running, channel) = serve(&engine, &config, NO_HTTP).await?;
    let mut leads = LeadServiceClient::new(channel.clone());
    let mut policies = PolicyServiceClient::new(channel.clone());
    let mut triggers = TriggerServiceClient::new(channel);

    // Workspace A: a lead with a key, an engagement, a consumer, a second policy version.
    let lead = leads
        .create_lead(with_token(
            &a,
            pb::CreateLeadRequest {
                external_key: "crm-1".into(),
                profile: good_fit("a@acme.com"),
                ..pb::CreateLeadRequest::default()
            },
        ))
        .await?
        .into_inner()
        .lead
        .expect("lead");
    leads
        .record_engagement(with_token(
            &a,
            pb::RecordEngagementRequest {
                lead: by_id(&lead.id),
                engagement: Some(engagement("a-1", "demo_requested")),
            },
        ))
        .await?;
    let mut stream = triggers
        .subscribe(with_token(
            &a,
            pb::SubscribeRequest {
                consumer: "crm".into(),
                start: pb::StartPosition::Earliest.into(),
                ..pb::SubscribeRequest::default()
            },
        ))
        .await?
        .into_inner();
    let first = stream.message().await?.expect("an event");
    let Some(pb::subscribe_response::Item::Event(event)) = first.item else {
        anyhow::bail!("expected an event first");
    };
    triggers
        .ack(with_token(
            &a,
            pb::AckRequest {
                consumer: "crm".into(),
                sequence: event.sequence,
            },
        ))
        .await?;
    drop(stream);
    let version = policies
        .create_policy_version(with_token(
            &a,
            pb::CreatePolicyVersionRequest {
                request_id: String::new(),
                source: format!("{}\n# acme's own\n", leadflow_server::DEFAULT_POLICY),
            },
        ))
        .await?
        .into_inner()
        .policy
        .expect("policy");
    let job = policies
        .activate_policy(with_token(
            &a,
            pb::ActivatePolicyRequest {
                request_id: String::new(),
                version: version.version,
            },
        ))
        .await?
        .into_inner()
        .job
        .expect("job");

    // Workspace B's token, RPC by RPC.
    fn not_found<T>(r: Result<T, tonic::Status>, rpc: &str) -> anyhow::Result<()> {
        match r {
            Err(e) if e.code() == Code::NotFound => Ok(()),
            Err(e) => Err(anyhow::anyhow!("{rpc}: {e:?}")),
            Ok(_) => Err(anyhow::anyhow!("{rpc}: answered")),
        }
    }
    for lead_ref in [by_id(&lead.id), by_key("crm-1")] {
        not_found(
            leads
                .get_lead(with_token(
                    &b,
                    pb::GetLeadRequest {
                        lead: lead_ref.clone(),
                    },
                ))
                .await,
            "GetLead",
        )?;
        not_found(
            leads
                .update_lead_profile(with_token(
                    &b,
                    pb::UpdateLeadProfileRequest {
                        lead: lead_ref.clone(),
                        attributes: profile(&[("title", "CEO")]),
                        ..Default::default()
                    },
                ))
                .await,
            "UpdateLeadProfile",
        )?;
        not_found(
            leads
                .record_engagement(with_token(
                    &b,
                    pb::RecordEngagementRequest {
                        lead: lead_ref.clone(),
                        engagement: Some(engagement("b-1", "demo_requested")),
                    },
                ))
                .await,
            "RecordEngagement",
        )?;
        not_found(
            leads
                .transition(with_token(
                    &b,
                    pb::TransitionRequest {
                        lead: lead_ref.clone(),
                        action: pb::Action::Disqualify.into(),
                        reason: "competitor".into(),
                        ..Default::default()
                    },
                ))
                .await,
            "Transition",
        )?;
        not_found(
            leads
                .get_lead_history(with_token(
                    &b,
                    pb::GetLeadHistoryRequest {
                        lead: lead_ref.clone(),
                        ..Default::default()
                    },
                ))
                .await,
            "GetLeadHistory",
        )?;
        not_found(
            leads
                .explain_score(with_token(
                    &b,
                    pb::ExplainScoreRequest {
                        lead: lead_ref.clone(),
                        ..Default::default()
                    },
                ))
                .await,
            "ExplainScore",
        )?;
        not_found(
            leads
                .erase_lead(with_token(&b, pb::EraseLeadRequest { lead: lead_ref }))
                .await,
            "EraseLead",
        )?;
    }
    let batch = leads
        .record_engagements(with_token(
            &b,
            pb::RecordEngagementsRequest {
                engagements: vec![pb::EngagementItem {
                    lead: by_id(&lead.id),
                    engagement: Some(engagement("b-2", "demo_requested")),
                }],
            },
        ))
        .await
        .expect_err("not B's lead");
    assert_eq!(reason(&batch), "NOT_FOUND");
    let listed = leads
        .list_leads(with_token(&b, pb::ListLeadsRequest::default()))
        .await?
        .into_inner();
    assert!(listed.leads.is_empty());
    // B may use the same external key: it is B's own.
    leads
        .create_lead(with_token(
            &b,
            pb::CreateLeadRequest {
                external_key: "crm-1".into(),
                profile: good_fit("b@globex.com"),
                ..pb::CreateLeadRequest::default()
            },
        ))
        .await?;

    let versions = policies
        .list_policy_versions(with_token(&b, pb::ListPolicyVersionsRequest::default()))
        .await?
        .into_inner();
    assert_eq!(versions.policies.len(), 1, "only globex's own version");
    not_found(
        policies
            .activate_policy(with_token(
                &b,
                pb::ActivatePolicyRequest {
                    request_id: String::new(),
                    version: version.version,
                },
            ))
            .await,
        "ActivatePolicy",
    )?;
    not_found(
        policies
            .watch_rescore(with_token(&b, pb::WatchRescoreRequest { job_id: job.id }))
            .await,
        "WatchRescore",
    )?;

    let consumers = triggers
        .list_consumers(with_token(&b, pb::ListConsumersRequest {}))
        .await?
        .into_inner();
    assert!(consumers.consumers.is_empty(), "{consumers:?}");
    not_found(
        triggers
            .subscribe(with_token(
                &b,
                pb::SubscribeRequest {
                    consumer: "crm".into(),
                    start: pb::StartPosition::Resume.into(),
                    ..pb::SubscribeRequest::default()
                },
            ))
            .await,
        "Subscribe RESUME",
    )?;
    not_found(
        triggers
            .delete_consumer(with_token(
                &b,
                pb::DeleteConsumerRequest {
                    consumer: "crm".into(),
                },
            ))
            .await,
        "DeleteConsumer",
    )?;
    let still = triggers
        .list_consumers(with_token(&a, pb::ListConsumersRequest {}))
        .await?
        .into_inner();
    assert_eq!(still.consumers.len(), 1, "A's consumer is untouched");

    running.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

/// Listening beyond loopback turns tokens on without being asked.
async fn tokens_are_required_off_loopback() -> anyhow::Result<()> {
    let database = fresh_database(Db::Sqlite).await?;
    let engine = engine_on(&database.url).await?;
    let config = leadflow_server::Config {
        listen: "0.0.0.0:0".parse()?,
        ..loopback(&database.url)
    };
    let running = leadflow_server::start(&config, engine.clone(), NO_HTTP).await?;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", running.addr.port()))?
            .connect()
            .await?;
    let err = LeadServiceClient::new(channel.clone())
        .create_lead(create("", "open@acme.com"))
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health stays open");
    running.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

scenarios! {
    tokens_bind_calls_to_their_workspace_and_scopes = each_database(),
    each_token_has_its_own_rate = each_database(),
    another_workspace_sees_nothing = each_database(),
    tokens_are_required_off_loopback = once(),
}

//! What a hostile caller tries: profiles grown past their limits, pages
//! too large to read, whitespace keys, messages over the decode limit, an
//! exhausted pool, a revoked token on an open stream, an import that
//! would stall every other writer.

use std::sync::Arc;
use std::time::Duration;

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use leadflow_proto::v1::policy_service_client::PolicyServiceClient;
use leadflow_proto::v1::trigger_service_client::TriggerServiceClient;
use leadflow_store::testing::TestDatabase;
use tonic::Code;

fn attributes(from: usize, n: usize, len: usize) -> std::collections::BTreeMap<String, String> {
    (from..from + n)
        .map(|i| (format!("attr_{i}"), "v".repeat(len)))
        .collect()
}

fn update(
    lead: &str,
    attributes: std::collections::BTreeMap<String, String>,
) -> pb::UpdateLeadProfileRequest {
    pb::UpdateLeadProfileRequest {
        lead: by_id(lead),
        attributes,
        ..Default::default()
    }
}

async fn a_profile_stays_within_its_limits_after_any_number_of_merges(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let lead = create(&mut server, "big@acme.com").await?;
    // good_fit has 5 attributes: 59 more make 64, the limit.
    server
        .leads
        .update_lead_profile(update(&lead.id, attributes(0, 59, 10)))
        .await?;
    let before = server.rows().await;
    let at_limit = server
        .leads
        .get_lead(pb::GetLeadRequest {
            lead: by_id(&lead.id),
        })
        .await?
        .into_inner()
        .lead;
    let err = server
        .leads
        .update_lead_profile(update(&lead.id, attributes(100, 1, 10)))
        .await
        .expect_err("the 65th attribute");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(reason(&err), "LIMIT_EXCEEDED");
    assert_eq!(fields(&err), ["attributes"]);
    assert_eq!(
        (meta(&err, "limit").as_str(), meta(&err, "actual").as_str()),
        ("64", "65")
    );
    // Replacing and removing stay possible at the limit.
    let replaced = server
        .leads
        .update_lead_profile(update(
            &lead.id,
            [
                ("attr_0".to_owned(), "w".to_owned()),
                ("attr_1".to_owned(), String::new()),
            ]
            .into(),
        ))
        .await?
        .into_inner()
        .lead
        .expect("lead");
    assert_eq!(
        replaced.profile.len(),
        63 + 1,
        "63 attributes and the derived email_domain"
    );

    // The byte cap, one call at a time: each call is within the request
    // limits, the merged profile is not.
    let other = create(&mut server, "bytes@acme.com").await?;
    let mut refused = None;
    for round in 0..10 {
        match server
            .leads
            .update_lead_profile(update(&other.id, attributes(round * 10, 10, 2_000)))
            .await
        {
            Ok(_) => {}
            Err(e) => {
                refused = Some((round, e));
                break;
            }
        }
    }
    let (round, err) = refused.expect("the byte cap is reached");
    assert_eq!(round, 3, "30 attributes of 2,000 bytes fit in 64 KiB, 40 do not");
    assert_eq!(reason(&err), "LIMIT_EXCEEDED");
    assert_eq!(meta(&err, "limit"), (64 * 1024).to_string());
    let got = server
        .leads
        .get_lead(pb::GetLeadRequest {
            lead: by_id(&other.id),
        })
        .await?
        .into_inner()
        .lead
        .expect("lead");
    let bytes: usize = got
        .profile
        .iter()
        .filter(|(k, _)| *k != "email_domain")
        .map(|(k, v)| k.len() + v.len())
        .sum();
    assert!(bytes <= 64 * 1024, "{bytes} bytes kept");

    // A capture is bounded the same way.
    let mut profile = good_fit("huge@acme.com");
    profile.extend(attributes(0, 40, 2_000));
    let err = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile,
            ..Default::default()
        })
        .await
        .expect_err("too many bytes at capture");
    assert_eq!(reason(&err), "LIMIT_EXCEEDED");
    assert_eq!(fields(&err), ["profile"]);

    // Nothing of the refused calls was written.
    let after = server
        .leads
        .get_lead(pb::GetLeadRequest {
            lead: by_id(&lead.id),
        })
        .await?
        .into_inner()
        .lead;
    assert_eq!(after.map(|l| l.version), Some(replaced.version));
    assert_ne!(at_limit.map(|l| l.version), Some(replaced.version));
    assert_eq!(server.rows().await[0], before[0] + 1, "the second lead only");
    Ok(())
}

async fn a_page_of_leads_is_bounded_in_bytes(mut server: TestServer) -> anyhow::Result<()> {
    // 60 leads of about 60 KB each: 3.6 MB, more than a page may carry.
    for i in 0..60 {
        let mut profile = good_fit(&format!("p{i}@acme.com"));
        profile.extend(attributes(0, 30, 2_000));
        server
            .leads
            .create_lead(pb::CreateLeadRequest {
                profile,
                ..Default::default()
            })
            .await?;
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let page = server
            .leads
            .list_leads(pb::ListLeadsRequest {
                page_size: 500,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        let size = prost::Message::encoded_len(&page);
        assert!(size <= 3 * 1024 * 1024, "a page of {size} bytes");
        assert!(!page.leads.is_empty());
        pages += 1;
        for lead in page.leads {
            assert!(seen.insert(lead.id), "a lead listed twice");
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen.len(), 60, "every lead listed once");
    assert!(pages >= 2, "{pages} pages");
    Ok(())
}

async fn keys_are_trimmed_and_checked_alike_everywhere(mut server: TestServer) -> anyhow::Result<()> {
    let before = server.rows().await;
    let capture = |key: &str| pb::CreateLeadRequest {
        external_key: key.to_owned(),
        profile: good_fit("keys@acme.com"),
        ..Default::default()
    };
    let err = server
        .leads
        .create_lead(capture("   "))
        .await
        .expect_err("a blank key");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), ["external_key"]);
    assert_eq!(server.rows().await, before, "nothing written");

    let lead = server
        .leads
        .create_lead(capture("  crm-7 "))
        .await?
        .into_inner()
        .lead
        .expect("lead");
    assert_eq!(lead.external_key, "crm-7");
    for key in ["crm-7", " crm-7", "crm-7\t"] {
        let got = server
            .leads
            .get_lead(pb::GetLeadRequest { lead: by_key(key) })
            .await?
            .into_inner();
        assert_eq!(got.lead.map(|l| l.id), Some(lead.id.clone()), "{key:?}");
    }
    let err = server
        .leads
        .create_lead(capture("crm-7"))
        .await
        .expect_err("taken");
    assert_eq!(err.code(), Code::AlreadyExists);
    for blank in ["", "  "] {
        let err = server
            .leads
            .get_lead(pb::GetLeadRequest { lead: by_key(blank) })
            .await
            .expect_err("blank");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(fields(&err), ["lead.external_key"]);
    }
    let err = server
        .leads
        .transition(pb::TransitionRequest {
            request_id: " ".to_owned(),
            ..transition(&lead.id, pb::Action::Promote, "booth")
        })
        .await
        .expect_err("a blank request id");
    assert_eq!(fields(&err), ["request_id"]);

    // An event id is a key too.
    let first = server
        .leads
        .record_engagement(record(&lead.id, engagement(" ev-1 ", "trial_started")))
        .await?
        .into_inner();
    assert!(!first.duplicate);
    let again = server
        .leads
        .record_engagement(record(&lead.id, engagement("ev-1", "trial_started")))
        .await?
        .into_inner();
    assert!(again.duplicate, "the same event");
    Ok(())
}

async fn a_message_over_the_decode_limit_gets_our_limit_details(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let lead = create(&mut server, "decode@acme.com").await?;
    let huge = "x".repeat(5 * 1024 * 1024);
    let mut profile = good_fit("too-big@acme.com");
    profile.insert("notes".to_owned(), huge.clone());
    let err = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile,
            ..Default::default()
        })
        .await
        .expect_err("over 4 MiB");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(reason(&err), "LIMIT_EXCEEDED");
    assert_eq!(meta(&err, "limit"), (4 * 1024 * 1024).to_string());
    assert!(
        meta(&err, "actual")
            .parse::<u64>()
            .is_ok_and(|n| n > 5 * 1024 * 1024),
        "{err:?}"
    );

    // In a client stream, after one committed engagement.
    let mut big = engagement("s-2", "trial_started");
    big.properties.insert("blob".to_owned(), huge);
    let messages = vec![
        pb::StreamEngagementsRequest {
            lead: by_id(&lead.id),
            engagement: Some(engagement("s-1", "trial_started")),
        },
        pb::StreamEngagementsRequest {
            lead: by_id(&lead.id),
            engagement: Some(big),
        },
    ];
    let err = server
        .leads
        .stream_engagements(tokio_stream::iter(messages))
        .await
        .expect_err("over 4 MiB");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(reason(&err), "LIMIT_EXCEEDED");
    assert_eq!(meta(&err, "committed"), "1");
    Ok(())
}

/// A server whose calls wait at most `acquire` for a database connection.
async fn server_with(
    db: Db,
    acquire: Duration,
    parts: leadflow_server::Parts,
) -> anyhow::Result<(
    TestDatabase,
    leadflow_engine::Engine,
    leadflow_server::Running,
    tonic::transport::Channel,
)> {
    let database = fresh_database(db).await?;
    let config = leadflow_server::Config {
        max_connections: 2,
        db_acquire_timeout_ms: u64::try_from(acquire.as_millis()).unwrap_or(u64::MAX),
        ..loopback(&database.url)
    };
    let engine = leadflow_server::open_engine(&config, Arc::new(leadflow_engine::SystemClock)).await?;
    let (running, channel) = serve(&engine, &config, parts).await?;
    Ok((database, engine, running, channel))
}

async fn a_busy_pool_is_overload_not_unavailability(db: Db) -> anyhow::Result<()> {
    let (_database, engine, running, channel) =
        server_with(db, Duration::from_millis(300), GRPC_ONLY).await?;
    let mut leads = LeadServiceClient::new(channel);
    // Every write connection taken (SQLite has one writer; PostgreSQL a
    // pool of two, which its event listener shares).
    let mut held = Vec::new();
    loop {
        match engine.store().begin().await {
            Ok(tx) => held.push(tx),
            Err(e) if e.is_busy() => break,
            Err(e) => return Err(e.into()),
        }
    }
    assert!(!held.is_empty());
    let err = leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit("busy@acme.com"),
            ..Default::default()
        })
        .await
        .expect_err("no connection comes free");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(reason(&err), "OVERLOADED");
    assert!(
        details(&err).retry_info().and_then(|r| r.retry_delay).is_some(),
        "a retry hint"
    );
    drop(held);
    leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit("busy@acme.com"),
            ..Default::default()
        })
        .await
        .expect("a retry succeeds once connections are free");
    running.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

/// The refusal a call ended with, checked to be UNAUTHENTICATED.
fn unauthenticated(result: Result<(), tonic::Status>, what: &str) -> tonic::Status {
    match result {
        Err(status) => {
            assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
            status
        }
        Ok(()) => panic!("{what} ended without a refusal"),
    }
}

/// The contract: an open call ends within this long of its token's end.
const TOKEN_END_NOTICED: Duration = Duration::from_secs(5);

async fn open_calls_end_when_their_token_does(db: Db) -> anyhow::Result<()> {
    let database = fresh_database(db).await?;
    let engine = engine_on(&database.url).await?;
    engine.bootstrap("acme", leadflow_server::DEFAULT_POLICY).await?;
    let all = leadflow_server::auth::SCOPES;
    let subscriber = token(&engine, "acme", "subscriber", &all, None).await?;
    let admin = token(&engine, "acme", "admin", &all, None).await?;
    let writer = token(&engine, "acme", "writer", &all, None).await?;
    let soon = engine
        .now()
        .saturating_add(leadflow_domain::Span::from_micros(3_000_000));
    let expiring = token(&engine, "acme", "expiring", &all, Some(soon)).await?;
    // No re-score worker: an activation's job stays running, and its watch open.
    let config = leadflow_server::Config {
        require_auth: true,
        ..loopback(&database.url)
    };
    let parts = leadflow_server::Parts {
        rescore: false,
        ..NO_HTTP
    };
    let (running, channel) = serve(&engine, &config, parts).await?;
    let mut leads = LeadServiceClient::new(channel.clone());
    let mut policies = PolicyServiceClient::new(channel.clone());
    let mut triggers = TriggerServiceClient::new(channel.clone());
    let lead = leads
        .create_lead(with_token(
            &writer,
            pb::CreateLeadRequest {
                profile: good_fit("t@acme.com"),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .lead
        .expect("lead");

    let subscribe = |secret: &str, name: &str| {
        with_token(
            secret,
            pb::SubscribeRequest {
                consumer: name.to_owned(),
                start: pb::StartPosition::Earliest.into(),
                ..Default::default()
            },
        )
    };
    let mut revoked_stream = triggers
        .subscribe(subscribe(&subscriber, "nurture"))
        .await?
        .into_inner();
    let mut expiring_stream = triggers
        .subscribe(subscribe(&expiring, "alerts"))
        .await?
        .into_inner();
    assert!(revoked_stream.message().await?.is_some(), "the stream delivers");

    let version = policies
        .create_policy_version(with_token(
            &admin,
            pb::CreatePolicyVersionRequest {
                source: format!("{}\n# v2\n", leadflow_server::DEFAULT_POLICY),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .policy
        .expect("policy")
        .version;
    let job = policies
        .activate_policy(with_token(
            &admin,
            pb::ActivatePolicyRequest {
                version,
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .job
        .expect("job");
    let mut watch = policies
        .watch_rescore(with_token(&admin, pb::WatchRescoreRequest { job_id: job.id }))
        .await?
        .into_inner();
    assert!(watch.message().await?.is_some(), "the watch reports");

    // An upload that committed two engagements, then waits.
    let (send, receive) = tokio::sync::mpsc::channel(4);
    let mut uploads = leads.clone();
    let writer_secret = writer.clone();
    let upload = tokio::spawn(async move {
        uploads
            .stream_engagements(with_token(
                &writer_secret,
                tokio_stream::wrappers::ReceiverStream::new(receive),
            ))
            .await
    });
    for id in ["u-1", "u-2"] {
        send.send(pb::StreamEngagementsRequest {
            lead: by_id(&lead.id),
            engagement: Some(engagement(id, "trial_started")),
        })
        .await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while engine.store().row_counts("acme").await?[1] < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the upload commits");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for name in ["subscriber", "admin", "writer"] {
        assert_eq!(engine.store().revoke_token("acme", name, engine.now()).await?, 1);
    }
    let revoked_at = tokio::time::Instant::now();

    let status = tokio::time::timeout(TOKEN_END_NOTICED, end_of(&mut revoked_stream)).await?;
    unauthenticated(status, "Subscribe");
    let status = tokio::time::timeout(TOKEN_END_NOTICED, end_of(&mut watch)).await?;
    unauthenticated(status, "WatchRescore");
    let status = tokio::time::timeout(TOKEN_END_NOTICED, upload).await??.map(drop);
    let status = unauthenticated(status, "StreamEngagements");
    assert_eq!(
        meta(&status, "committed"),
        "2",
        "the upload says what it committed: {status:?}"
    );
    assert!(
        revoked_at.elapsed() < TOKEN_END_NOTICED,
        "{:?}",
        revoked_at.elapsed()
    );
    drop(send);

    // An expiring token ends its stream too, without a revocation.
    let status = tokio::time::timeout(
        Duration::from_secs(3) + TOKEN_END_NOTICED,
        end_of(&mut expiring_stream),
    )
    .await?;
    unauthenticated(status, "Subscribe with an expired token");
    running.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

/// A lead with a long log, for imports that replay it.
async fn long_lead(
    leads: &mut LeadServiceClient<tonic::transport::Channel>,
    email: &str,
    events: usize,
) -> anyhow::Result<String> {
    let lead = leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit(email),
            captured_at: Some(seconds_ago(400 * 86_400)),
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .expect("lead");
    let mut sent = 0;
    while sent < events {
        let items = (sent..(sent + 500).min(events))
            .map(|i| pb::EngagementItem {
                lead: by_id(&lead.id),
                // Every other hour over the year, oldest first.
                engagement: Some(at(
                    engagement(&format!("{email}-{i}"), "page_viewed"),
                    seconds_ago(i64::try_from(events - i).unwrap_or(0) * 7_200),
                )),
            })
            .collect::<Vec<_>>();
        sent += items.len();
        leads
            .record_engagements(pb::RecordEngagementsRequest { engagements: items })
            .await?;
    }
    Ok(lead.id)
}

/// `n` engagements back-dated into the long lead's history: each is a late
/// event, decided by a replay of the log.
fn back_dated(lead: &str, prefix: &str, n: usize) -> Vec<pb::EngagementItem> {
    (0..n)
        .map(|i| pb::EngagementItem {
            lead: by_id(lead),
            engagement: Some(at(
                engagement(&format!("{prefix}-{i}"), "webinar_attended"),
                seconds_ago(300 * 86_400 - i64::try_from(i).unwrap_or(0) * 3_600),
            )),
        })
        .collect()
}

async fn an_import_lets_other_writers_in(db: Db) -> anyhow::Result<()> {
    // Calls wait at most a second for the writer: an import that held it
    // for its whole length would refuse them.
    let (_database, _engine, running, channel) = server_with(db, Duration::from_secs(1), NO_HTTP).await?;
    let mut leads = LeadServiceClient::new(channel);
    let long = long_lead(&mut leads, "long@acme.com", 1_000).await?;
    let mut others = Vec::new();
    for i in 0..4 {
        let lead = leads
            .create_lead(pb::CreateLeadRequest {
                profile: good_fit(&format!("o{i}@acme.com")),
                ..Default::default()
            })
            .await?;
        others.push(lead.into_inner().lead.expect("lead").id);
    }
    let mut importer = leads.clone();
    let import = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let result = importer
            .record_engagements(pb::RecordEngagementsRequest {
                engagements: back_dated(&long, "late", 300),
            })
            .await;
        (result, started.elapsed())
    });
    // Writers on other leads, for as long as the import runs.
    let importing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut writers = Vec::new();
    for (w, lead) in others.into_iter().enumerate() {
        let mut client = leads.clone();
        let importing = Arc::clone(&importing);
        writers.push(tokio::spawn(async move {
            let (mut calls, mut failures) = (0, Vec::new());
            while importing.load(std::sync::atomic::Ordering::Relaxed) || calls < 10 {
                if let Err(e) = client
                    .record_engagement(record(&lead, engagement(&format!("w{w}-{calls}"), "page_viewed")))
                    .await
                {
                    failures.push(e);
                }
                calls += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failures
        }));
    }
    let (result, took) = import.await?;
    importing.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut failures = Vec::new();
    for writer in writers {
        failures.extend(writer.await?);
    }
    let results = result?.into_inner().results;
    assert_eq!(results.len(), 300);
    assert!(
        failures.is_empty(),
        "writers refused while the import ran ({took:?}): {failures:?}"
    );
    running.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

async fn a_batch_that_fails_midway_says_what_it_committed(mut server: TestServer) -> anyhow::Result<()> {
    let long = long_lead(&mut server.leads, "midway@acme.com", 1_000).await?;
    let before = server.rows().await[1];
    let mut importer = server.leads.clone();
    let items = back_dated(&long, "mid", 300);
    let import = tokio::spawn(async move {
        importer
            .record_engagements(pb::RecordEngagementsRequest { engagements: items })
            .await
    });
    // Once the first chunk is in, the lead goes away.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while server.rows().await[1] == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the import commits a first chunk"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server
        .leads
        .erase_lead(pb::EraseLeadRequest { lead: by_id(&long) })
        .await?;
    let err = import.await?.expect_err("the lead was erased midway");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let committed: usize = meta(&err, "committed").parse()?;
    assert!((1..300).contains(&committed), "{committed} committed");
    assert!(
        err.message()
            .contains(&format!("{committed} engagements were committed")),
        "{}",
        err.message()
    );
    Ok(())
}

async fn a_shutdown_ends_open_streams_with_unavailable(mut server: TestServer) -> anyhow::Result<()> {
    let mut stream = subscribe(&mut server, "nurture", pb::StartPosition::Earliest, 0, None).await?;
    assert!(stream.message().await?.is_some(), "the stream delivers");
    let stopping = tokio::spawn(server.stop());
    let status = tokio::time::timeout(Duration::from_secs(10), end_of(&mut stream))
        .await?
        .expect_err("the stream ends with a status to act on");
    assert_eq!(status.code(), Code::Unavailable, "subscribe again: {status:?}");
    assert_eq!(reason(&status), "SHUTTING_DOWN", "{status:?}");
    stopping.await?;
    Ok(())
}

scenarios! {
    a_profile_stays_within_its_limits_after_any_number_of_merges,
    a_page_of_leads_is_bounded_in_bytes,
    keys_are_trimmed_and_checked_alike_everywhere,
    a_message_over_the_decode_limit_gets_our_limit_details,
    a_busy_pool_is_overload_not_unavailability = each_database(),
    open_calls_end_when_their_token_does = each_database(),
    an_import_lets_other_writers_in = each_database(),
    a_batch_that_fails_midway_says_what_it_committed,
    a_shutdown_ends_open_streams_with_unavailable,
}

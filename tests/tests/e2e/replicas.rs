//! Two `leadflow serve` processes on one PostgreSQL: events committed on
//! one reach subscribers on the other, a timer fires once, and a replica
//! killed with SIGKILL loses no committed event.

use std::collections::{BTreeSet, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use leadflow_proto::v1::policy_service_client::PolicyServiceClient;
use leadflow_proto::v1::trigger_service_client::TriggerServiceClient;
use leadflow_store::testing::TestDatabase;
use tonic::transport::Channel;

/// A `leadflow serve` process.
struct Replica {
    child: Child,
    address: String,
    channel: Channel,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A scratch directory, removed on drop.
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Replica {
    async fn start(database_url: &str) -> anyhow::Result<Self> {
        Self::start_with(database_url, &[]).await
    }

    async fn start_with(database_url: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("leadflow-replica-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("serve.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_leadflow-e2e-server"))
            .args([
                "serve",
                "--database-url",
                database_url,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--timer-poll-ms", "100", "--log-format", "json"])
            .args(extra)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?;
        let mut replica = Self {
            child,
            address: format!("127.0.0.1:{port}"),
            channel: endpoint.connect_lazy(),
            _dir: tempdir::Dir(dir),
        };
        for _ in 0..200 {
            if let Some(status) = replica.child.try_wait()? {
                anyhow::bail!("the replica exited at start: {status}");
            }
            if let Ok(channel) = endpoint.connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
                let serving = health
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    .is_ok_and(|r| r.into_inner().status == 1);
                if serving {
                    replica.channel = channel;
                    return Ok(replica);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the replica did not come up")
    }

    fn address(&self) -> String {
        self.address.clone()
    }

    fn leads(&self) -> LeadServiceClient<Channel> {
        LeadServiceClient::new(self.channel.clone())
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn two_replicas() -> anyhow::Result<Option<(TestDatabase, Replica, Replica)>> {
    let Some(db) = TestDatabase::postgres().await else {
        return Ok(None);
    };
    // One after the other: the first applies the migrations.
    let a = Replica::start(&db.url).await?;
    let b = Replica::start(&db.url).await?;
    Ok(Some((db, a, b)))
}

fn create_request(email: &str) -> pb::CreateLeadRequest {
    pb::CreateLeadRequest {
        profile: good_fit(email),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_on_one_replica_reaches_a_subscriber_on_the_other() -> anyhow::Result<()> {
    let Some((_db, a, b)) = two_replicas().await? else {
        return Ok(());
    };
    let mut on_b = TriggerServiceClient::new(b.channel.clone())
        .subscribe(pb::SubscribeRequest {
            consumer: "router".into(),
            start: pb::StartPosition::Latest.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut leads = a.leads();
    let lead = leads
        .create_lead(create_request("x@acme.com"))
        .await?
        .into_inner()
        .lead
        .expect("lead");
    leads
        .record_engagement(record(&lead.id, engagement("demo", "demo_requested")))
        .await?;
    let got = events(&mut on_b, 3, Duration::from_secs(5)).await?;
    assert_eq!(
        got.iter().map(describe).collect::<Vec<_>>(),
        ["TRANSITION:IQL", "TRANSITION:MQL", "TRANSITION:SQL"]
    );
    assert!(
        got.iter()
            .all(|e| e.lead.as_ref().is_some_and(|l| l.id == lead.id))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_due_while_both_run_fires_once() -> anyhow::Result<()> {
    let Some((db, a, _b)) = two_replicas().await? else {
        return Ok(());
    };
    let mut policies = PolicyServiceClient::new(a.channel.clone());
    let source = leadflow_server::DEFAULT_POLICY.replace("after = \"3d\"", "after = \"2s\"");
    let version = policies
        .create_policy_version(pb::CreatePolicyVersionRequest {
            source,
            ..Default::default()
        })
        .await?
        .into_inner()
        .policy
        .expect("policy")
        .version;
    policies
        .activate_policy(pb::ActivatePolicyRequest {
            version,
            ..Default::default()
        })
        .await?;
    let mut leads = a.leads();
    let mut ids = Vec::new();
    for i in 0..10 {
        let lead = leads
            .create_lead(create_request(&format!("t{i}@acme.com")))
            .await?
            .into_inner()
            .lead
            .expect("lead");
        leads
            .transition(transition(&lead.id, pb::Action::Promote, "booth"))
            .await?;
        ids.push(lead.id);
    }
    let store = leadflow_store::Store::connect(&db.url, &leadflow_store::StoreOptions::default()).await?;
    let count = |records: &[leadflow_store::OutboxRecord], id: &str| {
        records
            .iter()
            .filter(|r| r.event.lead_id == id && r.event.payload.contains("\"mql_followup_day3\""))
            .count()
    };
    let mut all_fired = false;
    for _ in 0..100 {
        let records = store.outbox_after("default", 0, 10_000).await?;
        if ids.iter().all(|id| count(&records, id) >= 1) {
            all_fired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(all_fired, "every delayed step fired");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let records = store.outbox_after("default", 0, 10_000).await?;
    for id in &ids {
        assert_eq!(count(&records, id), 1, "lead {id}: exactly once");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_replica_mid_load_loses_no_committed_event() -> anyhow::Result<()> {
    let Some((db, mut a, b)) = two_replicas().await? else {
        return Ok(());
    };
    // a subscriber on B records everything
    let received = Arc::new(Mutex::new(Vec::<pb::Event>::new()));
    let collector = {
        let received = Arc::clone(&received);
        let mut stream = TriggerServiceClient::new(b.channel.clone())
            .subscribe(pb::SubscribeRequest {
                consumer: "audit".into(),
                start: pb::StartPosition::Earliest.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        tokio::spawn(async move {
            while let Ok(Some(e)) = next_event(&mut stream, Duration::from_secs(30)).await {
                received.lock().expect("lock").push(e);
            }
        })
    };
    // load on A: every call that returned OK is committed
    let confirmed = Arc::new(Mutex::new(BTreeSet::<(String, String)>::new()));
    let mut load = Vec::new();
    for w in 0..4 {
        let mut leads = a.leads();
        let confirmed = Arc::clone(&confirmed);
        load.push(tokio::spawn(async move {
            for i in 0.. {
                let Ok(r) = leads
                    .create_lead(create_request(&format!("k{w}-{i}@acme.com")))
                    .await
                else {
                    return;
                };
                let Some(lead) = r.into_inner().lead else { return };
                confirmed
                    .lock()
                    .expect("lock")
                    .insert((lead.id.clone(), "IQL".into()));
                if leads
                    .transition(transition(&lead.id, pb::Action::Promote, "booth"))
                    .await
                    .is_err()
                {
                    return;
                }
                confirmed.lock().expect("lock").insert((lead.id, "MQL".into()));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    a.kill();
    for task in load {
        task.await?;
    }
    let confirmed = confirmed.lock().expect("lock").clone();
    assert!(
        confirmed.len() > 10,
        "the load ran ({} confirmed)",
        confirmed.len()
    );

    // B streams everything committed, in order, without a gap
    let store = leadflow_store::Store::connect(&db.url, &leadflow_store::StoreOptions::default()).await?;
    let head = store.outbox_bounds("default").await?.head;
    for _ in 0..100 {
        if received
            .lock()
            .expect("lock")
            .last()
            .is_some_and(|e| e.sequence == head)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    collector.abort();
    let received = received.lock().expect("lock").clone();
    let seqs: Vec<i64> = received.iter().map(|e| e.sequence).collect();
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "every committed event, once, in order"
    );
    let streamed: HashSet<(String, String)> = received
        .iter()
        .filter_map(|e| match &e.payload {
            Some(pb::event::Payload::Transition(t)) => Some((
                t.lead_id.clone(),
                pb::Stage::try_from(t.to_stage)
                    .map_or("?", |s| s.as_str_name())
                    .trim_start_matches("STAGE_")
                    .to_owned(),
            )),
            _ => None,
        })
        .collect();
    for c in &confirmed {
        assert!(
            streamed.contains(c),
            "{c:?} was confirmed to the caller but not streamed"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescore_killed_midway_finishes_after_a_restart_touching_each_lead_once() -> anyhow::Result<()> {
    let Some(db) = TestDatabase::postgres().await else {
        return Ok(());
    };
    let mut a = Replica::start_with(&db.url, &["--rescore-batch", "1"]).await?;
    let mut leads = a.leads();
    let total = 400;
    let mut items = Vec::new();
    for i in 0..total {
        let lead = leads
            .create_lead(create_request(&format!("r{i}@acme.com")))
            .await?
            .into_inner()
            .lead
            .expect("lead");
        for kind in ["trial_started", "webinar_attended"] {
            items.push(pb::EngagementItem {
                lead: by_id(&lead.id),
                engagement: Some(engagement(&format!("{}-{kind}", lead.id), kind)),
            });
        }
    }
    for chunk in items.chunks(500) {
        leads
            .record_engagements(pb::RecordEngagementsRequest {
                engagements: chunk.to_vec(),
            })
            .await?;
    }
    // the command line shows what the draft would do
    let dir = std::env::temp_dir().join(format!("leadflow-draft-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("draft.toml");
    std::fs::write(
        &file,
        leadflow_server::DEFAULT_POLICY.replace("engagement_at_least = 60", "engagement_at_least = 40"),
    )?;
    let target = format!("http://{}", a.address());
    let out = Command::new(env!("CARGO_BIN_EXE_leadflow-e2e-server"))
        .args([
            "policy",
            "simulate",
            file.to_str().unwrap_or_default(),
            "--against",
            &target,
            "--top",
            "3",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("{total} would move")), "{text}");
    assert!(
        text.contains("IQL -> MQL") && text.contains("engagement 45 ≥ 40"),
        "{text}"
    );

    let mut policies = PolicyServiceClient::new(a.channel.clone());
    let source = std::fs::read_to_string(&file)?;
    let _ = std::fs::remove_dir_all(&dir);
    let version = policies
        .create_policy_version(pb::CreatePolicyVersionRequest {
            source,
            ..Default::default()
        })
        .await?
        .into_inner()
        .policy
        .expect("policy")
        .version;
    let job = policies
        .activate_policy(pb::ActivatePolicyRequest {
            version,
            ..Default::default()
        })
        .await?
        .into_inner()
        .job
        .expect("job");
    let mut watch = policies
        .watch_rescore(pb::WatchRescoreRequest { job_id: job.id })
        .await?
        .into_inner();
    loop {
        let update = watch.message().await?.and_then(|u| u.job).expect("progress");
        if update.done >= 20 {
            assert_eq!(update.status, pb::RescoreStatus::Running as i32, "killed midway");
            assert!(update.done < total);
            break;
        }
    }
    a.kill();

    let b = Replica::start(&db.url).await?;
    let mut watch = PolicyServiceClient::new(b.channel.clone())
        .watch_rescore(pb::WatchRescoreRequest { job_id: job.id })
        .await?
        .into_inner();
    let mut last = None;
    while let Some(update) = watch.message().await? {
        last = update.job;
    }
    let last = last.expect("a final state");
    assert_eq!(
        (last.status, last.done, last.transitions),
        (pb::RescoreStatus::Done as i32, total, total)
    );
    let store = leadflow_store::Store::connect(&db.url, &leadflow_store::StoreOptions::default()).await?;
    let all = store.list_leads("default", None, None, 10_000).await?;
    assert_eq!(all.len(), usize::try_from(total)?);
    for lead in all {
        let changes = store
            .transitions_page("default", &lead.id, 0, 100)
            .await?
            .into_iter()
            .filter(|t| t.record.cause == leadflow_domain::Cause::PolicyChange)
            .count();
        assert_eq!(changes, 1, "lead {}: re-scored exactly once", lead.id);
        assert_eq!(lead.policy_version, version);
    }
    Ok(())
}

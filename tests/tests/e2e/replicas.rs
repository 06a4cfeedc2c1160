//! Two `leadflow serve` processes on one PostgreSQL: events committed on
//! one reach subscribers on the other, a timer fires once, and a replica
//! killed with SIGKILL loses no committed event; a server killed with
//! SIGKILL and restarted loses nothing it acknowledged, and its consumers
//! resume with every committed event.

use std::collections::{BTreeSet, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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
pub(crate) struct Replica {
    child: Child,
    address: String,
    pub(crate) channel: Channel,
    pub(crate) dir: tempdir::Dir,
}

pub(crate) mod tempdir {
    /// A scratch directory, removed on drop.
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Replica {
    pub(crate) async fn start(database_url: &str) -> anyhow::Result<Self> {
        Self::start_with(database_url, &[]).await
    }

    pub(crate) async fn start_with(database_url: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Self::start_on(database_url, port, extra).await
    }

    /// On `port`: a restarted server comes back where its clients expect it.
    pub(crate) async fn start_on(database_url: &str, port: u16, extra: &[&str]) -> anyhow::Result<Self> {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "leadflow-replica-{port}-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
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
            .args(["--http-listen", "127.0.0.1:0"])
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
            dir: tempdir::Dir(dir),
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

    pub(crate) fn leads(&self) -> LeadServiceClient<Channel> {
        LeadServiceClient::new(self.channel.clone())
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn two_replicas() -> anyhow::Result<(TestDatabase, Replica, Replica)> {
    let db = fresh_database(Db::Postgres).await?;
    // One after the other: the first applies the migrations.
    let a = Replica::start(&db.url).await?;
    let b = Replica::start(&db.url).await?;
    Ok((db, a, b))
}

fn create_request(email: &str) -> pb::CreateLeadRequest {
    pb::CreateLeadRequest {
        profile: good_fit(email),
        ..Default::default()
    }
}

async fn a_transition_on_one_replica_reaches_a_subscriber_on_the_other() -> anyhow::Result<()> {
    let (_db, a, b) = two_replicas().await?;
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

async fn a_timer_due_while_both_run_fires_once() -> anyhow::Result<()> {
    let (db, a, _b) = two_replicas().await?;
    let mut policies = PolicyServiceClient::new(a.channel.clone());
    let source = leadflow_server::DEFAULT_POLICY.replace("after = \"3d\"", "after = \"2s\"");
    activate_source(&mut policies, source).await?;
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

async fn killing_a_replica_mid_load_loses_no_committed_event() -> anyhow::Result<()> {
    let (db, mut a, b) = two_replicas().await?;
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
    // (the head read again each time: B's own workers may still commit)
    let mut head = store.outbox_bounds("default").await?.head;
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
        head = store.outbox_bounds("default").await?.head;
    }
    collector.abort();
    let received = received.lock().expect("lock").clone();
    let seqs: Vec<i64> = received.iter().map(|e| e.sequence).collect();
    // up to the head, and any committed after it was read
    let upto = seqs.last().copied().unwrap_or_default().max(head);
    assert_eq!(
        seqs,
        (1..=upto).collect::<Vec<_>>(),
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

/// A durable consumer that acks each event once it has it, and resumes
/// from its cursor whenever its server goes away, until `stop`. Returns how
/// many streams it opened.
fn consume(
    channel: Channel,
    consumer: &'static str,
    received: Arc<Mutex<Vec<pb::Event>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut client = TriggerServiceClient::new(channel);
        let mut streams = 0;
        while !stop.load(Ordering::SeqCst) {
            // RESUME for a known consumer, EARLIEST the first time
            let Ok(response) = client
                .subscribe(pb::SubscribeRequest {
                    consumer: consumer.into(),
                    ..Default::default()
                })
                .await
            else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            streams += 1;
            let mut stream = response.into_inner();
            let mut last = 0;
            loop {
                match next_event(&mut stream, Duration::from_millis(200)).await {
                    Ok(Some(e)) => {
                        assert!(e.sequence > last, "in order within a stream");
                        last = e.sequence;
                        received.lock().expect("lock").push(e);
                        let ack = client.ack(pb::AckRequest {
                            consumer: consumer.into(),
                            sequence: last,
                        });
                        if ack.await.is_err() {
                            break;
                        }
                    }
                    Ok(None) if stop.load(Ordering::SeqCst) => return streams,
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        }
        streams
    })
}

/// Creates leads and records engagements that move them (IQL → MQL → SQL)
/// until `stop`, retrying each refused call; every engagement the server
/// acknowledged goes into `acknowledged`, every refusal into `refused`.
fn drive(
    channel: Channel,
    worker: usize,
    acknowledged: Arc<Mutex<Vec<(String, String)>>>,
    refused: Arc<Mutex<Vec<tonic::Status>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut leads = LeadServiceClient::new(channel);
        let refuse = |status| {
            refused.lock().expect("lock").push(status);
            tokio::time::sleep(Duration::from_millis(20))
        };
        'leads: for i in 0.. {
            let lead = loop {
                if stop.load(Ordering::SeqCst) {
                    break 'leads;
                }
                match leads
                    .create_lead(create_request(&format!("c{worker}-{i}@acme.com")))
                    .await
                {
                    Ok(r) => break r.into_inner().lead.expect("lead"),
                    Err(status) => refuse(status).await,
                }
            };
            for (n, kind) in ["webinar_attended", "webinar_attended", "demo_requested"]
                .into_iter()
                .enumerate()
            {
                let id = format!("{}-{n}", lead.id);
                while !stop.load(Ordering::SeqCst) {
                    match leads
                        .record_engagement(record(&lead.id, engagement(&id, kind)))
                        .await
                    {
                        Ok(_) => {
                            acknowledged
                                .lock()
                                .expect("lock")
                                .push((lead.id.clone(), id.clone()));
                            break;
                        }
                        Err(status) => refuse(status).await,
                    }
                }
            }
        }
    })
}

async fn kill_and_restart_loses_nothing(db: TestDatabase) -> anyhow::Result<()> {
    let mut server = Replica::start(&db.url).await?;
    let port: u16 = server.address().rsplit(':').next().unwrap_or_default().parse()?;
    let channel = server.channel.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(Mutex::new(Vec::<pb::Event>::new()));
    let consumer = consume(channel.clone(), "crm", Arc::clone(&received), Arc::clone(&stop));
    let load_stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let load: Vec<_> = (0..3)
        .map(|w| {
            drive(
                channel.clone(),
                w,
                Arc::clone(&acknowledged),
                Arc::clone(&refused),
                Arc::clone(&load_stop),
            )
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.kill(); // SIGKILL, mid-write
    let before = acknowledged.lock().expect("lock").len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _server = Replica::start_on(&db.url, port, &[]).await?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    load_stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await?;
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(before > 10, "the load ran before the kill ({before})");
    assert!(
        acknowledged.len() > before + 10,
        "the load ran after the restart ({} then {})",
        before,
        acknowledged.len()
    );
    // a dead server answers nothing: the client sees its own transport errors
    assert!(!refused.lock().expect("lock").is_empty(), "the kill was felt");

    // every acknowledged engagement is stored
    let store = leadflow_store::Store::connect(&db.url, &leadflow_store::StoreOptions::default()).await?;
    let mut stored = HashSet::new();
    let all = store.list_leads("default", None, None, 100_000).await?;
    let mut transitions = BTreeSet::new();
    for lead in &all {
        for e in store.engagements_of("default", &lead.id).await? {
            stored.insert((lead.id.clone(), e.event_id));
        }
        for t in store.transitions_page("default", &lead.id, 0, 100).await? {
            transitions.insert((t.lead_id, t.seq));
        }
    }
    for a in &acknowledged {
        assert!(stored.contains(a), "acknowledged {a:?} is missing");
    }

    // every committed event reaches the consumer, across the restart
    let head = store.outbox_bounds("default").await?.head;
    for _ in 0..200 {
        if received.lock().expect("lock").iter().any(|e| e.sequence == head) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let streams = consumer.await?;
    assert!(
        streams >= 2,
        "the consumer resumed after the restart ({streams} streams)"
    );
    let received = received.lock().expect("lock").clone();
    let sequences: BTreeSet<i64> = received.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (1..=head).collect::<BTreeSet<_>>(),
        "every committed event was delivered"
    );
    let delivered: BTreeSet<(String, i64)> = received
        .iter()
        .filter_map(|e| match &e.payload {
            Some(pb::event::Payload::Transition(t)) => Some((t.lead_id.clone(), t.sequence)),
            _ => None,
        })
        .collect();
    assert_eq!(
        delivered, transitions,
        "every committed transition's event was delivered"
    );
    assert!(
        transitions.len() > all.len() * 2,
        "the engagements moved leads ({} transitions of {} leads)",
        transitions.len(),
        all.len()
    );
    // at least once: only what was not yet acknowledged comes again
    let repeats = received.len() - sequences.len();
    assert!(
        repeats <= streams as usize,
        "{repeats} repeats over {streams} streams"
    );
    store.close().await;
    Ok(())
}

async fn a_server_killed_and_restarted_on_sqlite_loses_nothing_acknowledged() -> anyhow::Result<()> {
    kill_and_restart_loses_nothing(TestDatabase::sqlite()).await
}

async fn a_server_killed_and_restarted_on_postgres_loses_nothing_acknowledged() -> anyhow::Result<()> {
    let db = fresh_database(Db::Postgres).await?;
    kill_and_restart_loses_nothing(db).await
}

async fn a_rescore_killed_midway_finishes_after_a_restart_touching_each_lead_once() -> anyhow::Result<()> {
    let db = fresh_database(Db::Postgres).await?;
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
    let activated = activate_source(&mut policies, source).await?;
    let version = activated.policy.expect("policy").version;
    let job = activated.job.expect("job");
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

/// Two replicas make leads sales-ready at once, each its half: the
/// workspace's routing lock makes their choices follow one another, so the
/// team's turns are neither skipped nor taken twice, and each lead has one
/// owner, given once.
async fn two_replicas_routing_at_once_spread_leads_round_robin_exactly() -> anyhow::Result<()> {
    let (_db, a, b) = two_replicas().await?;
    let mut policies = PolicyServiceClient::new(a.channel.clone());
    activate_source(
        &mut policies,
        crate::routing::routed(
            "[[route]]\nid = \"sql\"\non = \"entered:SQL\"\nteam = \"emea\"\nstrategy = \"round_robin\"\n",
        ),
    )
    .await?;
    let mut admin = leadflow_proto::v1::owner_service_client::OwnerServiceClient::new(b.channel.clone());
    for id in ["ana", "ben", "chloe", "dan"] {
        crate::routing::add_owner(&mut admin, id, &["emea"], Some(100)).await?;
    }
    let mut ids = Vec::new();
    for i in 0..80 {
        let lead = a
            .leads()
            .create_lead(create_request(&format!("r{i}@acme.com")))
            .await?
            .into_inner()
            .lead
            .expect("lead");
        ids.push(lead.id);
    }
    let mut calls = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let mut leads = if i % 2 == 0 { a.leads() } else { b.leads() };
        let request = record(id, engagement(&format!("demo-{id}"), "demo_requested"));
        calls.spawn(async move { leads.record_engagement(request).await.map(|_| ()) });
    }
    while let Some(done) = calls.join_next().await {
        done??;
    }
    let mut spread = std::collections::BTreeMap::<String, usize>::new();
    let mut leads = b.leads();
    for id in &ids {
        let lead = leads
            .get_lead(pb::GetLeadRequest { lead: by_id(id) })
            .await?
            .into_inner()
            .lead
            .expect("lead");
        *spread.entry(lead.owner_id).or_insert(0) += 1;
        let history = leads
            .get_lead_history(pb::GetLeadHistoryRequest {
                lead: by_id(id),
                ..Default::default()
            })
            .await?
            .into_inner()
            .entries;
        let given = history
            .iter()
            .filter(|e| matches!(e.entry, Some(pb::history_entry::Entry::Assignment(_))))
            .count();
        assert_eq!(given, 1, "lead {id} was given {given} times");
    }
    assert_eq!(
        spread,
        ["ana", "ben", "chloe", "dan"]
            .into_iter()
            .map(|o| (o.to_owned(), 20))
            .collect(),
        "four owners, 80 leads: 20 each"
    );
    for id in ["ana", "ben", "chloe", "dan"] {
        let open = admin
            .get_owner(pb::GetOwnerRequest { id: id.to_owned() })
            .await?
            .into_inner()
            .owner
            .map_or(0, |o| o.open_leads);
        assert_eq!(open, 20, "{id}'s open leads");
    }
    Ok(())
}

scenarios! {
    two_replicas_routing_at_once_spread_leads_round_robin_exactly = once().needs(&POSTGRES),
    a_transition_on_one_replica_reaches_a_subscriber_on_the_other = once().needs(&POSTGRES),
    a_timer_due_while_both_run_fires_once = once().needs(&POSTGRES),
    killing_a_replica_mid_load_loses_no_committed_event = once().needs(&POSTGRES),
    a_server_killed_and_restarted_on_sqlite_loses_nothing_acknowledged = once(),
    a_server_killed_and_restarted_on_postgres_loses_nothing_acknowledged = once().needs(&POSTGRES),
    a_rescore_killed_midway_finishes_after_a_restart_touching_each_lead_once = once().needs(&POSTGRES),
}

//! The outbox relayed to NATS JetStream, against `nats-server` processes
//! the tests start themselves (one server, or a three-node cluster with a
//! stream of three replicas): every event `Subscribe` delivers is in the
//! stream exactly once by `Nats-Msg-Id`, in sequence order per lead,
//! through a JetStream outage, a NATS node killed, the relaying replica
//! killed, and a forced re-publish.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use leadflow_proto::v1::trigger_service_client::TriggerServiceClient;
use prost::Message as _;
use tonic::transport::Channel;

use crate::replicas::{Replica, tempdir};

const STREAM: &str = "LEADFLOW";

/// One `nats-server` of a [`Nats`].
struct Node {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    log: std::path::PathBuf,
}

/// `nats-server` processes with JetStream on loopback: one, or a cluster.
struct Nats {
    nodes: Vec<Node>,
    _dir: tempdir::Dir,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Nats {
    /// `n` servers; more than one form a cluster.
    fn start(n: usize) -> anyhow::Result<Self> {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "leadflow-nats-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let ports: Vec<(u16, u16)> = (0..n)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<anyhow::Result<_>>()?;
        let mut nodes = Vec::new();
        for (i, (port, cluster_port)) in ports.iter().enumerate() {
            let store = dir.join(format!("n{i}"));
            let mut args: Vec<String> = [
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-js",
                "-sd",
                &store.display().to_string(),
                "-n",
                &format!("n{i}"),
            ]
            .map(str::to_owned)
            .to_vec();
            if n > 1 {
                let routes: Vec<String> = ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, (_, c))| format!("nats://127.0.0.1:{c}"))
                    .collect();
                args.extend([
                    "--cluster_name".to_owned(),
                    "leadflow".to_owned(),
                    "--cluster".to_owned(),
                    format!("nats://127.0.0.1:{cluster_port}"),
                    "--routes".to_owned(),
                    routes.join(","),
                ]);
            }
            let mut node = Node {
                child: None,
                port: *port,
                args,
                log: dir.join(format!("n{i}.log")),
            };
            node.spawn()?;
            nodes.push(node);
        }
        Ok(Self {
            nodes,
            _dir: tempdir::Dir(dir),
        })
    }

    fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].spawn()
    }

    /// A JetStream client of the servers running, once JetStream answers.
    async fn jetstream(&self) -> anyhow::Result<jetstream::Context> {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect();
        let mut last = String::new();
        for _ in 0..150 {
            match async_nats::connect(urls.as_slice()).await {
                Ok(client) => {
                    let js = jetstream::new(client);
                    // JetStream answers: the stream, or that there is none.
                    match js.get_stream(STREAM).await {
                        Ok(_) => return Ok(js),
                        Err(e)
                            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(_)) =>
                        {
                            return Ok(js);
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::bail!("JetStream did not answer at {}: {last}", urls.join(","))
    }
}

impl Node {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = nats_server().ok_or_else(|| anyhow::anyhow!("no nats-server"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        self.child = Some(
            Command::new(bin)
                .args(&self.args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// A message of the stream, as a consumer reads it.
#[derive(Debug)]
struct Relayed {
    subject: String,
    msg_id: String,
    sequence: i64,
    lead: String,
    event: pb::Event,
    headers: BTreeMap<String, String>,
}

/// Every message of the stream, in stream order.
async fn stream_messages(js: &jetstream::Context) -> anyhow::Result<Vec<Relayed>> {
    let mut stream = js.get_stream(STREAM).await?;
    let state = stream.info().await?.state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        let m = stream.get_raw_message(seq).await?;
        let mut headers = BTreeMap::new();
        for (name, values) in m.headers.iter() {
            if let Some(v) = values.first() {
                headers.insert(name.to_string(), v.as_str().to_owned());
            }
        }
        let event = pb::Event::decode(m.payload.as_ref())?;
        out.push(Relayed {
            subject: m.subject.to_string(),
            msg_id: headers.get("Nats-Msg-Id").cloned().unwrap_or_default(),
            sequence: headers
                .get("Leadflow-Sequence")
                .and_then(|s| s.parse().ok())
                .unwrap_or(-1),
            lead: headers
                .get("Leadflow-Lead-Id")
                .or_else(|| headers.get("Leadflow-Account-Id"))
                .cloned()
                .unwrap_or_default(),
            event,
            headers,
        });
    }
    Ok(out)
}

/// Every event `Subscribe` delivers from the start, until none comes for a while.
async fn delivered(channel: &Channel) -> anyhow::Result<Vec<pb::Event>> {
    let mut stream = TriggerServiceClient::new(channel.clone())
        .subscribe(pb::SubscribeRequest {
            consumer: format!("check-{}", uuid_like()),
            start: pb::StartPosition::Earliest.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(e) = next_event(&mut stream, Duration::from_secs(2)).await? {
        out.push(e);
    }
    Ok(out)
}

fn uuid_like() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The relay's consumer entry, once the relay exists.
async fn relay_consumer(channel: &Channel) -> anyhow::Result<Option<pb::Consumer>> {
    let consumers = TriggerServiceClient::new(channel.clone())
        .list_consumers(pb::ListConsumersRequest {})
        .await?
        .into_inner()
        .consumers;
    Ok(consumers
        .into_iter()
        .find(|c| c.kind == i32::from(pb::ConsumerKind::Relay)))
}

/// Waits until the relay has relayed everything committed (lag 0).
async fn caught_up(channel: &Channel, within: Duration) -> anyhow::Result<pb::Consumer> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(c) = relay_consumer(channel).await?
            && c.lag == 0
            && c.head > 0
        {
            return Ok(c);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the relay did not catch up: {:?}",
            relay_consumer(channel).await?
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Leads taken to MQL (a capture, an MQL transition and a trigger each).
async fn make_leads(leads: &mut LeadServiceClient<Channel>, prefix: &str, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        let email = format!("{prefix}{i}@acme.com");
        let lead = leads
            .create_lead(pb::CreateLeadRequest {
                profile: good_fit(&email),
                ..Default::default()
            })
            .await?
            .into_inner()
            .lead
            .ok_or_else(|| anyhow::anyhow!("no lead"))?;
        for (j, kind) in TO_MQL.iter().enumerate() {
            leads
                .record_engagement(record(&lead.id, engagement(&format!("{email}-{j}"), kind)))
                .await?;
        }
    }
    Ok(())
}

/// The stream holds exactly what `Subscribe` delivers: each event once by
/// `Nats-Msg-Id`, each lead's in sequence order.
fn same_events(relayed: &[Relayed], delivered: &[pb::Event]) -> anyhow::Result<()> {
    let mut ids = HashSet::new();
    for m in relayed {
        anyhow::ensure!(
            ids.insert(m.msg_id.clone()),
            "{} is in the stream twice",
            m.msg_id
        );
        anyhow::ensure!(m.msg_id == m.event.event_id, "Nats-Msg-Id is not the event id");
        anyhow::ensure!(
            m.sequence == m.event.sequence,
            "Leadflow-Sequence is not the event's"
        );
    }
    let wanted: HashSet<String> = delivered.iter().map(|e| e.event_id.clone()).collect();
    anyhow::ensure!(
        ids == wanted,
        "the stream has {} events, Subscribe delivers {}; missing {:?}, extra {:?}",
        ids.len(),
        wanted.len(),
        wanted.difference(&ids).take(5).collect::<Vec<_>>(),
        ids.difference(&wanted).take(5).collect::<Vec<_>>()
    );
    let mut last: HashMap<&str, i64> = HashMap::new();
    for m in relayed {
        let before = last.insert(&m.lead, m.sequence).unwrap_or(0);
        anyhow::ensure!(
            m.sequence > before,
            "{}'s event {} came after its event {before}",
            m.lead,
            m.sequence
        );
    }
    Ok(())
}

async fn events_reach_jetstream_as_the_stream_delivers_them(db: Db) -> anyhow::Result<()> {
    let nats = Nats::start(1)?;
    let js = nats.jetstream().await?;
    let database = fresh_database(db).await?;
    let replica = Replica::start_with(&database.url, &["--nats-url", &nats.url()]).await?;
    let mut leads = replica.leads();
    make_leads(&mut leads, "r", 12).await?;
    // An erasure, an event with neither a stage nor a workflow.
    let erased = leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit("gone@acme.com"),
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .ok_or_else(|| anyhow::anyhow!("no lead"))?;
    leads
        .erase_lead(pb::EraseLeadRequest {
            lead: by_id(&erased.id),
        })
        .await?;
    // A history import: its trigger lies days back, so it is suppressed —
    // in the outbox, not streamed, and not relayed.
    let imported = leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit("imported@acme.com"),
            captured_at: Some(seconds_ago(3 * 86_400)),
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .ok_or_else(|| anyhow::anyhow!("no lead"))?;
    for (j, kind) in TO_MQL.iter().enumerate() {
        let e = at(
            engagement(&format!("imported-{j}"), kind),
            seconds_ago(2 * 86_400),
        );
        leads.record_engagement(record(&imported.id, e)).await?;
    }
    let relay = caught_up(&replica.channel, Duration::from_secs(30)).await?;
    assert_eq!(relay.name, format!("jetstream:{STREAM}"));
    assert_eq!(relay.lag_time.map(|d| (d.seconds, d.nanos)), Some((0, 0)));
    let relayed = stream_messages(&js).await?;
    let delivered = delivered(&replica.channel).await?;
    same_events(&relayed, &delivered)?;
    // Sequences have no holes: the ones Subscribe skips are suppressed,
    // and the relay went past them.
    assert!(
        delivered.len() < usize::try_from(relay.head)?,
        "no suppressed event: {} delivered of {}",
        delivered.len(),
        relay.head
    );
    assert_eq!(relay.cursor, relay.head);
    // The body is the event the gRPC stream sends, byte for byte once decoded.
    let by_id: HashMap<&str, &pb::Event> = delivered.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let ws = leadflow_server::DEFAULT_WORKSPACE;
    for m in &relayed {
        assert_eq!(Some(&&m.event), by_id.get(m.event.event_id.as_str()));
        assert_eq!(
            m.headers.get("Content-Type").map(String::as_str),
            Some("application/protobuf")
        );
        assert_eq!(
            m.headers.get("Leadflow-Schema").map(String::as_str),
            Some("leadflow.v1.Event")
        );
        assert_eq!(m.headers.get("Leadflow-Workspace").map(String::as_str), Some(ws));
        assert!(!m.event.traceparent.is_empty());
        assert_eq!(m.headers.get("traceparent"), Some(&m.event.traceparent));
        let kind = pb::EventKind::try_from(m.event.kind)?;
        let expected = match (kind, &m.event.payload) {
            (pb::EventKind::Transition, Some(pb::event::Payload::Transition(t))) => format!(
                "leadflow.{ws}.transition.{}",
                pb::Stage::try_from(t.to_stage)?
                    .as_str_name()
                    .trim_start_matches("STAGE_")
            ),
            (pb::EventKind::Trigger, Some(pb::event::Payload::Trigger(t))) => {
                format!("leadflow.{ws}.trigger.{}", t.workflow_id.replace('.', "%2E"))
            }
            (pb::EventKind::AccountTransition, Some(pb::event::Payload::AccountTransition(t))) => format!(
                "leadflow.{ws}.account_transition.{}",
                pb::AccountStage::try_from(t.to)?
                    .as_str_name()
                    .trim_start_matches("ACCOUNT_STAGE_")
            ),
            (pb::EventKind::AccountTrigger, Some(pb::event::Payload::AccountTrigger(t))) => {
                format!(
                    "leadflow.{ws}.account_trigger.{}",
                    t.workflow_id.replace('.', "%2E")
                )
            }
            (pb::EventKind::SlaBreached, _) => anyhow::bail!("no SLA is due in this test"),
            (other, _) => format!(
                "leadflow.{ws}.{}._",
                other
                    .as_str_name()
                    .trim_start_matches("EVENT_KIND_")
                    .to_ascii_lowercase()
            ),
        };
        assert_eq!(m.subject, expected);
    }
    let kinds: HashSet<i32> = relayed.iter().map(|m| m.event.kind).collect();
    assert!(kinds.contains(&i32::from(pb::EventKind::Trigger)));
    assert!(kinds.contains(&i32::from(pb::EventKind::LeadErased)));

    // A forced re-publish: the relay deleted while it runs starts over from
    // the oldest event, and JetStream's de-duplication drops every one.
    let log = replica.dir.0.join("serve.log");
    assert_eq!(relaying_lines(&log), 1);
    TriggerServiceClient::new(replica.channel.clone())
        .delete_consumer(pb::DeleteConsumerRequest {
            consumer: relay.name.clone(),
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = caught_up(&replica.channel, Duration::from_secs(30)).await?;
    assert_eq!(again.cursor, relay.cursor);
    let after = stream_messages(&js).await?;
    assert_eq!(after.len(), relayed.len(), "a re-publish was not de-duplicated");
    let text = std::fs::read_to_string(&log)?;
    // Started again, from the oldest event.
    assert_eq!(relaying_lines(&log), 2, "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("\"relaying\"") && l.contains("\"cursor\":0")),
        "{text}"
    );
    assert!(
        text.contains("the relay was taken over or deleted"),
        "the relay did not start over"
    );
    Ok(())
}

async fn a_jetstream_outage_loses_nothing_and_writes_go_on(db: Db) -> anyhow::Result<()> {
    let mut nats = Nats::start(1)?;
    nats.jetstream().await?;
    let database = fresh_database(db).await?;
    let replica = Replica::start_with(&database.url, &["--nats-url", &nats.url()]).await?;
    let mut leads = replica.leads();
    make_leads(&mut leads, "a", 5).await?;
    caught_up(&replica.channel, Duration::from_secs(30)).await?;
    nats.kill(0);
    // Writes are accepted while JetStream is away…
    make_leads(&mut leads, "b", 10).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let behind = relay_consumer(&replica.channel)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no relay"))?;
    assert!(
        behind.lag > 0,
        "nothing waits while JetStream is down: {behind:?}"
    );
    assert!(behind.lag_time.is_some_and(|d| d.seconds >= 1), "{behind:?}");
    // …and relayed once it is back.
    nats.restart(0)?;
    let js = nats.jetstream().await?;
    caught_up(&replica.channel, Duration::from_secs(60)).await?;
    same_events(&stream_messages(&js).await?, &delivered(&replica.channel).await?)
}

/// How often a replica's log says it took a relay.
fn relaying_lines(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log).map_or(0, |log| {
        log.lines().filter(|l| l.contains("\"relaying\"")).count()
    })
}

/// The relaying replica's log says so.
fn relays_here(replica: &Replica) -> bool {
    std::fs::read_to_string(replica.dir.0.join("serve.log")).is_ok_and(|log| log.contains("\"relaying\""))
}

async fn a_nats_node_and_the_relaying_replica_killed_under_load_lose_nothing() -> anyhow::Result<()> {
    let mut nats = Nats::start(3)?;
    nats.jetstream().await?;
    let database = fresh_database(Db::Postgres).await?;
    let args = ["--nats-url", &nats.url(), "--nats-replicas", "3"];
    let mut a = Replica::start_with(&database.url, &args).await?;
    let mut b = Replica::start_with(&database.url, &args).await?;
    // Load from both replicas, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for (w, channel) in [a.channel.clone(), b.channel.clone()].into_iter().enumerate() {
        let (stop, failures) = (Arc::clone(&stop), Arc::clone(&failures));
        writers.push(tokio::spawn(async move {
            let mut leads = LeadServiceClient::new(channel);
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                // A replica killed mid-call fails that call: the event may
                // or may not be committed, and either way is checked below.
                if let Err(e) = make_leads(&mut leads, &format!("w{w}-{i}-"), 1).await {
                    failures.lock().map(|mut f| f.push(e.to_string())).ok();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The stream's leader goes.
    let leader = nats
        .jetstream()
        .await?
        .get_stream(STREAM)
        .await?
        .info()
        .await?
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .ok_or_else(|| anyhow::anyhow!("the stream has no leader"))?;
    nats.kill(leader.trim_start_matches('n').parse()?);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !relays_here(&a) && !relays_here(&b) {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no replica relays");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (killed, survivor) = if relays_here(&a) {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    let survivor_log = survivor.dir.0.join("serve.log");
    let before = relaying_lines(&survivor_log);
    killed.kill();
    let killed_at = tokio::time::Instant::now();
    // The survivor takes the relay over within seconds.
    while relaying_lines(&survivor_log) == before {
        anyhow::ensure!(
            killed_at.elapsed() < Duration::from_secs(20),
            "the relay was not taken over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await?;
    }
    let survivor_channel = survivor.channel.clone();
    caught_up(&survivor_channel, Duration::from_secs(60)).await?;
    let js = nats.jetstream().await?;
    let relayed = stream_messages(&js).await?;
    let delivered = delivered(&survivor_channel).await?;
    anyhow::ensure!(
        delivered.len() > 100,
        "too little load: {} events",
        delivered.len()
    );
    same_events(&relayed, &delivered)?;
    let info = js.get_stream(STREAM).await?.info().await?.config.num_replicas;
    assert_eq!(info, 3);
    Ok(())
}

async fn a_stream_unfit_for_the_relay_stops_the_server() -> anyhow::Result<()> {
    let nats = Nats::start(1)?;
    let js = nats.jetstream().await?;
    js.create_stream(jetstream::stream::Config {
        name: STREAM.to_owned(),
        subjects: vec!["other.>".to_owned()],
        ..Default::default()
    })
    .await?;
    let database = fresh_database(Db::Sqlite).await?;
    // An unfit stream stops the start; a bad name, address or start is
    // refused before anything starts.
    for (args, says) in [
        (
            vec!["--nats-url", &nats.url()],
            "nats_stream: stream LEADFLOW takes the subjects",
        ),
        (
            vec!["--nats-url", &nats.url(), "--nats-stream", "a.b"],
            "nats_stream",
        ),
        (vec!["--nats-url", "127.0.0.1:4222"], "nats_url"),
        (
            vec!["--nats-url", &nats.url(), "--nats-replicas", "7"],
            "nats_replicas",
        ),
        (
            vec!["--nats-url", &nats.url(), "--nats-start", "yesterday"],
            "nats_start",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_leadflow-e2e-server"))
            .args([
                "serve",
                "--database-url",
                &database.url,
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .output()?;
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
    }
    Ok(())
}

scenarios! {
    events_reach_jetstream_as_the_stream_delivers_them = each_database().needs(&NATS),
    a_jetstream_outage_loses_nothing_and_writes_go_on = each_database().needs(&NATS),
    a_nats_node_and_the_relaying_replica_killed_under_load_lose_nothing = once().needs(&POSTGRES).needs(&NATS),
    a_stream_unfit_for_the_relay_stops_the_server = once().needs(&NATS),
}

//! The JetStream relay: how many events a second it relays (a backlog of
//! committed events drained), and how long a committed event takes to reach
//! a JetStream subscriber under a steady load — beside a raw `async-nats`
//! publish loop of messages of the same size to the same server, measured
//! in the same run.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use leadflow_proto::v1::trigger_service_client::TriggerServiceClient;
use prost::Message as _;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

use crate::Scratch;
use crate::server::{Process, sibling};
use crate::stats::percentile;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Leads created for the backlog (each commits one to three events).
    #[arg(long, default_value_t = 5_000)]
    leads: usize,
    /// Events a second of the steady load whose latency is measured.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Seconds of the steady load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// On PostgreSQL (`LEADFLOW_TEST_POSTGRES_URL`) instead of SQLite.
    #[arg(long)]
    postgres: bool,
}

/// Publishes in flight of the raw loop: as many as the relay allows.
const IN_FLIGHT: usize = 512;

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(0))
}

/// A `nats-server -js` of the run's own, killed on drop.
struct NatsServer {
    child: Child,
    url: String,
}

impl NatsServer {
    async fn start(dir: &std::path::Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server");
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.join("nats"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start nats-server (apt-get install nats-server): {e}"))?;
        let url = format!("nats://127.0.0.1:{port}");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(Self { child, url });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("nats-server did not come up")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Messages a second over a stream's contents, by JetStream's own
/// timestamps (first to last stored), and how many there are.
async fn stored_rate(js: &jetstream::Context, stream: &str) -> anyhow::Result<(u64, f64)> {
    let mut s = js.get_stream(stream).await?;
    let state = s.info().await?.state.clone();
    let seconds = (state.last_timestamp - state.first_timestamp).as_seconds_f64();
    #[allow(clippy::cast_precision_loss)]
    Ok((state.messages, state.messages as f64 / seconds.max(1e-6)))
}

/// The workspace's head sequence, through a consumer made at LATEST.
pub(crate) async fn head(channel: &Channel) -> anyhow::Result<i64> {
    let mut triggers = TriggerServiceClient::new(channel.clone());
    drop(
        triggers
            .subscribe(pb::SubscribeRequest {
                consumer: "bench-head".to_owned(),
                start: pb::StartPosition::Latest.into(),
                ..Default::default()
            })
            .await?,
    );
    Ok(triggers
        .list_consumers(pb::ListConsumersRequest {})
        .await?
        .into_inner()
        .consumers
        .first()
        .map_or(0, |c| c.head))
}

pub(crate) async fn create_leads(
    channel: &Channel,
    tag: &str,
    n: usize,
    pace: Option<Duration>,
) -> anyhow::Result<()> {
    let writers = if pace.is_some() { 1 } else { 4 };
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut client = LeadServiceClient::new(channel.clone());
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut next = Instant::now();
            for i in (w..n).step_by(writers) {
                let mut profile = std::collections::BTreeMap::new();
                profile.insert("email".to_owned(), format!("{tag}{i}@acme{}.com", i % 50));
                client
                    .create_lead(pb::CreateLeadRequest {
                        profile,
                        ..Default::default()
                    })
                    .await?;
                if let Some(pace) = pace {
                    next += pace;
                    tokio::time::sleep_until(next.into()).await;
                }
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Waits until the relay's cursor reaches `head`.
async fn drained(channel: &Channel, head: i64) -> anyhow::Result<()> {
    let mut triggers = TriggerServiceClient::new(channel.clone());
    for _ in 0..6_000 {
        let relayed = triggers
            .list_consumers(pb::ListConsumersRequest {})
            .await?
            .into_inner()
            .consumers
            .into_iter()
            .any(|c| c.kind == i32::from(pb::ConsumerKind::Relay) && c.cursor >= head);
        if relayed {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the relay did not drain the backlog")
}

/// Latencies (µs) of what a core subscription on `subject` receives while
/// `load` runs, each measured by `latency` from the message.
async fn latencies<F>(
    client: &async_nats::Client,
    subject: &str,
    load: impl std::future::Future<Output = anyhow::Result<()>>,
    latency: F,
) -> anyhow::Result<Vec<u64>>
where
    F: Fn(&async_nats::Message) -> Option<i64> + Send + 'static,
{
    let mut sub = client.subscribe(subject.to_owned()).await?;
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
            if let Some(micros) = latency(&m) {
                out.push(u64::try_from(micros).unwrap_or(0));
            }
        }
        out
    });
    load.await?;
    let mut out = reader.await?;
    out.sort_unstable();
    Ok(out)
}

/// The raw loop: `n` messages of `bytes` bytes with unique `Nats-Msg-Id`s,
/// [`IN_FLIGHT`] awaiting their acknowledgement at a time, each paced by
/// `pace` if given. The body starts with the publish instant (µs).
async fn raw_publish(
    js: &jetstream::Context,
    n: usize,
    bytes: usize,
    pace: Option<Duration>,
    tag: &str,
) -> anyhow::Result<()> {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut acks = tokio::task::JoinSet::new();
    let mut next = Instant::now();
    for i in 0..n {
        let permit = Arc::clone(&semaphore).acquire_owned().await?;
        let mut body = now_micros().to_le_bytes().to_vec();
        body.resize(bytes.max(8), 0);
        let ack = js
            .send_publish(
                format!("raw.{}", i % 1_000),
                jetstream::message::PublishMessage::build()
                    .payload(body.into())
                    .message_id(format!("{tag}-{i}")),
            )
            .await?;
        acks.spawn(async move {
            let done = ack.await;
            drop(permit);
            done.map(drop).map_err(|e| anyhow::anyhow!("{e}"))
        });
        if let Some(pace) = pace {
            next += pace;
            tokio::time::sleep_until(next.into()).await;
        }
    }
    while let Some(done) = acks.join_next().await {
        done??;
    }
    Ok(())
}

/// A fresh database for a run: a throwaway PostgreSQL one (dropped with
/// the value returned) or a SQLite file in the scratch directory; its URL.
pub(crate) async fn database(
    postgres: bool,
    scratch: &Scratch,
) -> anyhow::Result<(Option<leadflow_store::testing::TestDatabase>, String)> {
    let db = if postgres {
        Some(
            leadflow_store::testing::TestDatabase::new(leadflow_store::testing::Engine::Postgres)
                .await
                .ok_or_else(|| anyhow::anyhow!("no PostgreSQL at LEADFLOW_TEST_POSTGRES_URL"))?,
        )
    } else {
        None
    };
    let url = db.as_ref().map_or_else(
        || format!("sqlite://{}", scratch.0.join("leadflow.db").display()),
        |db| db.url.clone(),
    );
    Ok((db, url))
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let scratch = Scratch::new("relay")?;
    let nats = NatsServer::start(&scratch.0).await?;
    let client = async_nats::connect(nats.url.as_str()).await?;
    let js = jetstream::new(client.clone());
    let (_postgres, database) = database(args.postgres, &scratch).await?;
    let leadflow = sibling("leadflow");
    let serve = |extra: Vec<String>| {
        let mut a: Vec<String> = [
            "serve",
            "--database-url",
            &database,
            "--http-listen",
            "127.0.0.1:0",
        ]
        .map(str::to_owned)
        .to_vec();
        a.extend(extra);
        a
    };

    // 1. A backlog committed with no relay, then drained by one.
    let args_a = serve(Vec::new());
    let a_args: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let mut a = Process::start(&leadflow, &a_args, &scratch.0).await?;
    let channel = a.channels(1).await?.remove(0);
    create_leads(&channel, "backlog", args.leads, None).await?;
    let backlog_head = head(&channel).await?;
    a.stop();
    let args_b = serve(vec!["--nats-url".to_owned(), nats.url.clone()]);
    let b_args: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let b = Process::start(&leadflow, &b_args, &scratch.0).await?;
    let channel = b.channels(1).await?.remove(0);
    drained(&channel, backlog_head).await?;
    let (relayed, relay_rate) = stored_rate(&js, "LEADFLOW").await?;
    let mut stream = js.get_stream("LEADFLOW").await?;
    let last = stream.info().await?.state.last_sequence;
    let message_bytes = stream.get_raw_message(last).await?.payload.len();

    // 2. Steady load: commit to a JetStream subscriber.
    let pace = Duration::from_secs(1) / args.rate.max(1);
    let n = usize::try_from(args.seconds * u64::from(args.rate))?;
    let relay_latencies = latencies(
        &client,
        "leadflow.>",
        create_leads(&channel, "steady", n, Some(pace)),
        |m| {
            let e = pb::Event::decode(m.payload.as_ref()).ok()?;
            let t = e.committed_at?;
            Some(now_micros() - (t.seconds * 1_000_000 + i64::from(t.nanos / 1_000)))
        },
    )
    .await?;

    // 3. The raw loop, same server, same sizes.
    js.create_stream(jetstream::stream::Config {
        name: "RAW".to_owned(),
        subjects: vec!["raw.>".to_owned()],
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    })
    .await?;
    raw_publish(&js, usize::try_from(relayed)?, message_bytes, None, "backlog").await?;
    let (_, raw_rate) = stored_rate(&js, "RAW").await?;
    let raw_latencies = latencies(
        &client,
        "raw.>",
        raw_publish(&js, n, message_bytes, Some(pace), "steady"),
        |m| {
            let sent = i64::from_le_bytes(m.payload.get(..8)?.try_into().ok()?);
            Some(now_micros() - sent)
        },
    )
    .await?;

    let db = if args.postgres { "PostgreSQL" } else { "SQLite" };
    println!("JetStream relay ({db}), one nats-server on loopback\n");
    println!("| | messages | per second | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!(
        "| raw async-nats publish loop ({IN_FLIGHT} in flight), backlog | {relayed} | {raw_rate:.0} | | |"
    );
    println!(
        "| leadflow relay, backlog of {backlog_head} events drained | {relayed} | {relay_rate:.0} | | |"
    );
    println!(
        "| raw loop at {} msg/s: publish → subscriber | {} | | {:.2} | {:.2} |",
        args.rate,
        raw_latencies.len(),
        percentile(&raw_latencies, 0.5),
        percentile(&raw_latencies, 0.99)
    );
    println!(
        "| leadflow at {} leads/s: commit → subscriber | {} | | {:.2} | {:.2} |",
        args.rate,
        relay_latencies.len(),
        percentile(&relay_latencies, 0.5),
        percentile(&relay_latencies, 0.99)
    );
    #[allow(clippy::cast_precision_loss)]
    let ratio = relay_rate / raw_rate.max(1e-9);
    println!("\nrelay / raw throughput: {ratio:.2}; message body {message_bytes} bytes");
    Ok(())
}

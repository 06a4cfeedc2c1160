//! Webhook deliveries: how many a second one endpoint receives while a
//! backlog of committed events drains to a receiver on loopback — beside
//! the same number of bare requests of the same size, sent by leadflow's own
//! request code (a new connection each, as deliveries are) with as many in
//! flight, to the same receiver, in the same run. The difference is what
//! a delivery adds to its request: reading the event, its JSON and
//! signature, writing the outcome and moving the endpoint's cursor.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadflow_proto::v1 as pb;
use leadflow_proto::v1::webhook_service_client::WebhookServiceClient;
use leadflow_server::webhook::http::{Reach, post};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::Scratch;
use crate::relay::{create_leads, head};
use crate::server::{Process, sibling};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Leads created for the backlog (each commits one to three events).
    #[arg(long, default_value_t = 5_000)]
    leads: usize,
    /// On PostgreSQL (`LEADFLOW_TEST_POSTGRES_URL`) instead of SQLite.
    #[arg(long)]
    postgres: bool,
}

/// Requests in flight of the bare loop: as many as one endpoint's deliveries.
const IN_FLIGHT: usize = 16;

/// What the receiver saw.
#[derive(Debug, Default)]
struct Seen {
    ids: HashSet<String>,
    requests: u64,
    bytes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Seen {
    /// Requests a second, first to last arrival.
    #[allow(clippy::cast_precision_loss)]
    fn rate(&self) -> f64 {
        let seconds = match (self.first, self.last) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        self.requests as f64 / seconds.max(1e-6)
    }
}

/// An HTTP/1.1 receiver on loopback answering every request 204.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hooks", listener.local_addr()?);
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let kept = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(answer(socket, Arc::clone(&kept)));
            }
        });
        Ok(Self { url, seen })
    }

    fn take(&self) -> Seen {
        self.seen
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    fn distinct(&self) -> usize {
        self.seen.lock().map_or(0, |s| s.ids.len())
    }
}

/// Serves the requests of one connection.
async fn answer(mut socket: tokio::net::TcpStream, seen: Arc<Mutex<Seen>>) {
    let mut buffer: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let (end, length, id) = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..at]).to_ascii_lowercase();
                let header = |name: &str| {
                    head.lines().find_map(|l| {
                        l.strip_prefix(name)
                            .map(|v| v.trim_start_matches(':').trim().to_owned())
                    })
                };
                let length: usize = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                break (at + 4, length, header("webhook-id").unwrap_or_default());
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        while buffer.len() < end + length {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        buffer.drain(..end + length);
        if let Ok(mut s) = seen.lock() {
            let now = Instant::now();
            s.first.get_or_insert(now);
            s.last = Some(now);
            s.requests += 1;
            s.bytes += u64::try_from(length).unwrap_or(0);
            s.ids.insert(id);
        }
        if socket
            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    }
}

/// `n` bare requests of `bytes` bytes, [`IN_FLIGHT`] at a time.
async fn bare_posts(url: &str, n: u64, bytes: usize) -> anyhow::Result<()> {
    let reach = Reach {
        http: true,
        private: true,
    };
    let semaphore = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut sent = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = Arc::clone(&semaphore).acquire_owned().await?;
        let url = url.to_owned();
        let body = bytes::Bytes::from(vec![b' '; bytes]);
        sent.spawn(async move {
            let headers = [
                ("content-type", "application/json".to_owned()),
                ("webhook-id", format!("bare-{i}")),
            ];
            let answer = post(&url, &headers, body, reach).await;
            drop(permit);
            answer.map(drop).map_err(|e| anyhow::anyhow!("{e}"))
        });
    }
    while let Some(done) = sent.join_next().await {
        done??;
    }
    Ok(())
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let scratch = Scratch::new("webhooks")?;
    let receiver = Receiver::start().await?;
    let (_postgres, database) = crate::relay::database(args.postgres, &scratch).await?;
    let leadflow = sibling("leadflow");
    let server = Process::start(
        &leadflow,
        &[
            "serve",
            "--database-url",
            &database,
            "--http-listen",
            "127.0.0.1:0",
            "--webhooks-allow-http",
            "--webhooks-allow-private-addresses",
        ],
        &scratch.0,
    )
    .await?;
    let channel = server.channels(1).await?.remove(0);

    // 1. A backlog committed, then an endpoint made at EARLIEST drains it.
    create_leads(&channel, "backlog", args.leads, None).await?;
    let events = usize::try_from(head(&channel).await?)?;
    let started = Instant::now();
    WebhookServiceClient::new(channel.clone())
        .create_webhook(pb::CreateWebhookRequest {
            url: receiver.url.clone(),
            description: "bench".to_owned(),
            start: pb::StartPosition::Earliest.into(),
            ..Default::default()
        })
        .await?;
    while receiver.distinct() < events {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{} of {events} events delivered in 10 minutes",
            receiver.distinct()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = receiver.take();
    let bytes = usize::try_from(delivered.bytes / delivered.requests.max(1))?;

    // 2. The bare loop: as many requests, same size, same receiver.
    bare_posts(&receiver.url, delivered.requests, bytes).await?;
    let bare = receiver.take();

    let db = if args.postgres { "PostgreSQL" } else { "SQLite" };
    println!("Webhook deliveries ({db}), one endpoint, a receiver on loopback answering 204\n");
    println!("| | requests | per second |");
    println!("| --- | ---: | ---: |");
    println!(
        "| bare requests ({IN_FLIGHT} in flight, a connection each) | {} | {:.0} |",
        bare.requests,
        bare.rate()
    );
    println!(
        "| leadflow deliveries, backlog of {events} events drained | {} | {:.0} |",
        delivered.requests,
        delivered.rate()
    );
    let ratio = delivered.rate() / bare.rate().max(1e-9);
    println!("\ndeliveries / bare requests: {ratio:.2}; body {bytes} bytes on average");
    Ok(())
}

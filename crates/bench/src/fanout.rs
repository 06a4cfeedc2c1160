//! Fan-out: how long a committed transition takes to reach 1, 100 or 1,000
//! subscribers, and how many deliveries a second the stream sustains.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use leadflow_proto::v1::trigger_service_client::TriggerServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

use crate::stats::percentile;

#[derive(Clone, Debug, Serialize)]
pub(crate) struct FanOut {
    pub(crate) name: String,
    pub(crate) subscribers: usize,
    pub(crate) events: usize,
    pub(crate) deliveries: u64,
    /// Deliveries a second, from the first write to the last delivery.
    pub(crate) per_second: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// The mean encoded size of a delivered message, bytes.
    pub(crate) message_bytes: usize,
    /// The server's resident memory with every stream open, once the
    /// events are written, MiB.
    pub(crate) server_rss_mib: Option<f64>,
    /// From the start to the last stream's answer to `Subscribe`, seconds
    /// (the backlog: opening the streams, within the measured time).
    pub(crate) opened_after_seconds: Option<f64>,
}

static RUN: AtomicU64 = AtomicU64::new(0);

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(0))
}

/// `subscribers` streams on `read` (100 to a connection), `events`
/// transitions written on `write`, one every `pace` (or as fast as 4
/// writers go). Each delivery's latency is its arrival minus the event's
/// commit instant.
pub(crate) async fn run(
    name: &str,
    write: &Channel,
    read: &str,
    server: Option<u32>,
    subscribers: usize,
    events: usize,
    pace: Option<Duration>,
) -> anyhow::Result<FanOut> {
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let connections = subscribers.div_ceil(100);
    let channels = crate::server::connect(read, connections).await?;
    let mut streams = Vec::with_capacity(subscribers);
    for s in 0..subscribers {
        let mut client = TriggerServiceClient::new(channels[s % connections].clone());
        let stream = client
            .subscribe(pb::SubscribeRequest {
                consumer: format!("bench-{run}-{s}"),
                start: pb::StartPosition::Latest.into(),
                at_sequence: 0,
                filter: Some(pb::EventFilter {
                    kinds: vec![pb::EventKind::Transition.into()],
                    ..Default::default()
                }),
                at_time: None,
            })
            .await?
            .into_inner();
        streams.push(stream);
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::with_capacity(subscribers);
    for mut stream in streams {
        let delivered = Arc::clone(&delivered);
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(events);
            while latencies.len() < events {
                let Ok(Ok(Some(item))) =
                    tokio::time::timeout(Duration::from_secs(20), stream.message()).await
                else {
                    break;
                };
                if let Some(pb::subscribe_response::Item::Event(e)) = item.item {
                    let committed = e
                        .committed_at
                        .map_or(0, |t| t.seconds * 1_000_000 + i64::from(t.nanos / 1_000));
                    latencies.push(u64::try_from(now_micros() - committed).unwrap_or(0));
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let started = Instant::now();
    let writers = if pace.is_some() { 1 } else { 4 };
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut client = LeadServiceClient::new(write.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..events).step_by(writers) {
                let mut profile = std::collections::BTreeMap::new();
                profile.insert("email".to_owned(), format!("fan{run}-{i}@acme.com"));
                client
                    .create_lead(pb::CreateLeadRequest {
                        profile,
                        ..Default::default()
                    })
                    .await?;
                if let Some(pace) = pace {
                    tokio::time::sleep(pace).await;
                }
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let server_rss_mib = server.and_then(crate::cpu::resident_mib);
    let mut latencies = Vec::new();
    for r in readers {
        latencies.extend(r.await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let deliveries = delivered.load(Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss)]
    Ok(FanOut {
        name: name.to_owned(),
        subscribers,
        events,
        deliveries,
        per_second: deliveries as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        message_bytes: 0,
        server_rss_mib,
        opened_after_seconds: None,
    })
}

/// Fan-out capacity: `events` transitions are committed first, then
/// `subscribers` streams read them all from the same sequence at once;
/// deliveries a second over the whole read.
pub(crate) async fn backlog(
    name: &str,
    write: &Channel,
    read: &str,
    subscribers: usize,
    events: usize,
) -> anyhow::Result<FanOut> {
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let mut triggers = TriggerServiceClient::new(write.clone());
    // A consumer created at LATEST has its cursor at the head.
    let probe = format!("bench-head-{run}");
    drop(
        triggers
            .subscribe(pb::SubscribeRequest {
                consumer: probe.clone(),
                start: pb::StartPosition::Latest.into(),
                ..Default::default()
            })
            .await?,
    );
    let head = triggers
        .list_consumers(pb::ListConsumersRequest {})
        .await?
        .into_inner()
        .consumers
        .into_iter()
        .find(|c| c.name == probe)
        .map_or(0, |c| c.cursor);
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut client = LeadServiceClient::new(write.clone());
        writers.push(tokio::spawn(async move {
            for i in (w..events).step_by(4) {
                let mut profile = std::collections::BTreeMap::new();
                profile.insert("email".to_owned(), format!("backlog{run}-{i}@acme.com"));
                client
                    .create_lead(pb::CreateLeadRequest {
                        profile,
                        ..Default::default()
                    })
                    .await?;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let connections = subscribers.div_ceil(100);
    let channels = crate::server::connect(read, connections).await?;
    let started = Instant::now();
    let opened = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::with_capacity(subscribers);
    for s in 0..subscribers {
        let mut client = TriggerServiceClient::new(channels[s % connections].clone());
        let consumer = format!("bench-backlog-{run}-{s}");
        let opened = Arc::clone(&opened);
        readers.push(tokio::spawn(async move {
            let stream = client
                .subscribe(pb::SubscribeRequest {
                    consumer,
                    start: pb::StartPosition::AtSequence.into(),
                    at_sequence: head + 1,
                    filter: Some(pb::EventFilter {
                        kinds: vec![pb::EventKind::Transition.into()],
                        ..Default::default()
                    }),
                    at_time: None,
                })
                .await?;
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            opened.fetch_max(micros, Ordering::Relaxed);
            let mut stream = stream.into_inner();
            let (mut n, mut bytes) = (0_u64, 0_usize);
            while n < events as u64 {
                match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
                    Ok(Ok(Some(
                        m @ pb::SubscribeResponse {
                            item: Some(pb::subscribe_response::Item::Event(_)),
                        },
                    ))) => {
                        n += 1;
                        bytes += prost::Message::encoded_len(&m);
                    }
                    Ok(Ok(Some(_))) => {}
                    _ => break,
                }
            }
            Ok::<(u64, usize), anyhow::Error>((n, bytes))
        }));
    }
    let (mut deliveries, mut bytes) = (0, 0);
    for r in readers {
        let (n, b) = r.await??;
        deliveries += n;
        bytes += b;
    }
    let seconds = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    Ok(FanOut {
        name: name.to_owned(),
        subscribers,
        events,
        deliveries,
        per_second: deliveries as f64 / seconds,
        p50_ms: 0.0,
        p99_ms: 0.0,
        message_bytes: bytes / usize::try_from(deliveries).unwrap_or(usize::MAX).max(1),
        server_rss_mib: None,
        #[allow(clippy::cast_precision_loss)]
        opened_after_seconds: Some(opened.load(Ordering::Relaxed) as f64 / 1e6),
    })
}

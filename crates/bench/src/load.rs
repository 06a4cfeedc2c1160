//! leadflow under load: RecordEngagement, RecordEngagements (100 a call) and
//! StreamEngagements, from closed-loop clients over several channels.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use tonic::transport::Channel;

use crate::stats::{Stats, closed_loop};

/// Leads the load spreads over.
pub(crate) async fn seed(channels: &[Channel], leads: usize) -> anyhow::Result<Arc<Vec<String>>> {
    let mut tasks = Vec::new();
    let per = leads.div_ceil(channels.len());
    for (c, channel) in channels.iter().enumerate() {
        let mut client = LeadServiceClient::new(channel.clone());
        let (from, to) = (c * per, ((c + 1) * per).min(leads));
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in from..to {
                let mut profile = std::collections::BTreeMap::new();
                profile.insert("email".to_owned(), format!("load{i}@acme.com"));
                profile.insert("company".to_owned(), "Acme".to_owned());
                let lead = client
                    .create_lead(pb::CreateLeadRequest {
                        profile,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .lead
                    .ok_or_else(|| anyhow::anyhow!("no lead"))?;
                ids.push(lead.id);
            }
            Ok::<_, anyhow::Error>(ids)
        }));
    }
    let mut all = Vec::with_capacity(leads);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(Arc::new(all))
}

fn engagement(run: &str, n: u64) -> pb::Engagement {
    let mut properties = std::collections::BTreeMap::new();
    properties.insert("path".to_owned(), "/docs/getting-started".to_owned());
    pb::Engagement {
        event_id: format!("{run}-{n}"),
        r#type: "page_viewed".to_owned(),
        channel: String::new(),
        properties,
        occurred_at: None,
    }
}

fn lead_ref(id: &str) -> Option<pb::LeadRef> {
    Some(pb::LeadRef {
        key: Some(pb::lead_ref::Key::Id(id.to_owned())),
    })
}

static RUNS: AtomicU64 = AtomicU64::new(0);

fn run_id() -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "r{}-{started}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) async fn unary(
    name: &str,
    channels: &[Channel],
    leads: &Arc<Vec<String>>,
    concurrency: usize,
    duration: Duration,
    server: u32,
) -> Stats {
    let clients: Vec<_> = channels.iter().cloned().map(LeadServiceClient::new).collect();
    let (leads, run, next) = (Arc::clone(leads), Arc::new(run_id()), Arc::new(AtomicU64::new(0)));
    closed_loop(name, concurrency, duration, Some(server), move |w, _| {
        let mut client = clients[w % clients.len()].clone();
        let n = next.fetch_add(1, Ordering::Relaxed);
        let lead = leads[usize::try_from(n).unwrap_or(0) % leads.len()].clone();
        let e = engagement(&run, n);
        async move {
            client
                .record_engagement(pb::RecordEngagementRequest {
                    lead: lead_ref(&lead),
                    engagement: Some(e),
                })
                .await?;
            Ok(1)
        }
    })
    .await
}

pub(crate) async fn batched(
    name: &str,
    channels: &[Channel],
    leads: &Arc<Vec<String>>,
    concurrency: usize,
    duration: Duration,
    server: u32,
) -> Stats {
    let clients: Vec<_> = channels.iter().cloned().map(LeadServiceClient::new).collect();
    let (leads, run, next) = (Arc::clone(leads), Arc::new(run_id()), Arc::new(AtomicU64::new(0)));
    closed_loop(name, concurrency, duration, Some(server), move |w, _| {
        let mut client = clients[w % clients.len()].clone();
        let items: Vec<pb::EngagementItem> = (0..100)
            .map(|_| {
                let n = next.fetch_add(1, Ordering::Relaxed);
                pb::EngagementItem {
                    lead: lead_ref(&leads[usize::try_from(n).unwrap_or(0) % leads.len()]),
                    engagement: Some(engagement(&run, n)),
                }
            })
            .collect();
        async move {
            client
                .record_engagements(pb::RecordEngagementsRequest { engagements: items })
                .await?;
            Ok(100)
        }
    })
    .await
}

/// Each worker streams `duration × 400` engagements (a fixed count: the
/// client can buffer far ahead of the server, so a time limit would measure
/// the buffer) and waits for the server's count.
pub(crate) async fn stream(
    name: &str,
    channels: &[Channel],
    leads: &Arc<Vec<String>>,
    concurrency: usize,
    duration: Duration,
    server: u32,
) -> anyhow::Result<Stats> {
    let cpu = crate::cpu::Meter::start(Some(server));
    let started = Instant::now();
    let run = run_id();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let mut client = LeadServiceClient::new(channels[w % channels.len()].clone());
        let (leads, run, next) = (Arc::clone(leads), run.clone(), Arc::clone(&next));
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let count = (duration.as_secs_f64() * 400.0 / concurrency as f64).ceil() as u64;
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            let producer = tokio::spawn(async move {
                for _ in 0..count {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let m = pb::StreamEngagementsRequest {
                        lead: lead_ref(&leads[usize::try_from(n).unwrap_or(0) % leads.len()]),
                        engagement: Some(engagement(&run, n)),
                    };
                    if tx.send(m).await.is_err() {
                        return;
                    }
                }
            });
            let response = client
                .stream_engagements(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await?
                .into_inner();
            producer.await?;
            Ok::<u64, anyhow::Error>(u64::try_from(response.committed).unwrap_or(0))
        }));
    }
    let mut items = 0;
    for t in tasks {
        items += t.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (client_cpu, server_cpu) = cpu.stop();
    #[allow(clippy::cast_precision_loss)]
    Ok(Stats {
        name: name.to_owned(),
        concurrency,
        per_second: items as f64 / seconds,
        items,
        calls: concurrency as u64,
        seconds,
        client_cpu,
        server_cpu,
        ..Stats::default()
    })
}

/// `leadflow-bench load`: one kind of load on a running server.
pub(crate) async fn standalone(
    address: &str,
    kind: &str,
    concurrency: usize,
    seconds: u64,
    leads: usize,
) -> anyhow::Result<()> {
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
                .connect()
                .await?,
        );
    }
    let ids = seed(&channels, leads).await?;
    let duration = Duration::from_secs(seconds);
    let stats = match kind {
        "unary" => unary("RecordEngagement", &channels, &ids, concurrency, duration, 0).await,
        "batched" => {
            batched(
                "RecordEngagements ×100",
                &channels,
                &ids,
                concurrency,
                duration,
                0,
            )
            .await
        }
        "stream" => stream("StreamEngagements", &channels, &ids, concurrency, duration, 0).await?,
        other => anyhow::bail!("unknown kind {other:?}: unary, batched or stream"),
    };
    println!(
        "{}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
        stats.name, stats.per_second, stats.p50_ms, stats.p99_ms, stats.errors
    );
    Ok(())
}

/// `leadflow-bench load --engagements N`: seeds the leads, then records
/// exactly `n` engagements, one call at a time (`unary`: one a call;
/// `batched`: 100 a call), the same ones for the same `n` but for their
/// event ids. Under callgrind, two runs with different `n` give the
/// server's instructions per engagement: the difference over the difference.
/// With the server's pid, it also prints what the server spent per call:
/// user and system CPU and context switches, from /proc.
pub(crate) async fn fixed(
    address: &str,
    kind: &str,
    n: u64,
    leads: usize,
    server: Option<u32>,
) -> anyhow::Result<()> {
    let channels = crate::server::connect(address, 1).await?;
    let ids = seed(&channels, leads).await?;
    let spent = server.and_then(crate::cpu::Spent::start);
    let mut client = LeadServiceClient::new(channels[0].clone());
    let run = run_id();
    let lead = |i: u64| lead_ref(&ids[usize::try_from(i).unwrap_or(0) % ids.len()]);
    let started = Instant::now();
    match kind {
        "unary" => {
            for i in 0..n {
                client
                    .record_engagement(pb::RecordEngagementRequest {
                        lead: lead(i),
                        engagement: Some(engagement(&run, i)),
                    })
                    .await?;
            }
        }
        "batched" => {
            let mut i = 0;
            while i < n {
                let end = (i + 100).min(n);
                let engagements = (i..end)
                    .map(|k| pb::EngagementItem {
                        lead: lead(k),
                        engagement: Some(engagement(&run, k)),
                    })
                    .collect();
                client
                    .record_engagements(pb::RecordEngagementsRequest { engagements })
                    .await?;
                i = end;
            }
        }
        other => anyhow::bail!("unknown kind {other:?} with --engagements: unary or batched"),
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{n} engagements ({kind}) in {seconds:.2} s");
    let calls = if kind == "batched" { n.div_ceil(100) } else { n };
    if let Some((user, system, switched)) = spent.and_then(|s| s.per_call(calls)) {
        #[allow(clippy::cast_precision_loss)]
        let wall = seconds * 1e6 / calls.max(1) as f64;
        println!(
            "per call: {wall:.0} µs wall; server {user:.0} µs user + {system:.0} µs system CPU, {switched:.1} context switches"
        );
    }
    Ok(())
}

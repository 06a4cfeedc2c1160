//! Scale-out on one PostgreSQL: 1, 2 and 3 `leadflow serve` replicas under
//! the same closed-loop load (three RecordEngagement calls to one CreateLead,
//! spread over the replicas), a durable consumer on the first replica, and
//! timers due during the run. A last run with the most replicas kills one
//! (SIGKILL) halfway through; its clients go on with the others. Checks, per run: every
//! acknowledged engagement is stored, the consumer receives every sequence
//! up to the head once, and every timer fired once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use leadflow_proto::v1::policy_service_client::PolicyServiceClient;
use leadflow_proto::v1::trigger_service_client::TriggerServiceClient;
use leadflow_store::testing::{Engine as Db, TestDatabase};
use tonic::transport::Channel;

use crate::Scratch;
use crate::server::{Process, sibling};
use crate::stats::{closed_loop, percentile};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Seconds of load per replica count.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Closed-loop clients, spread over the replicas.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Leads qualified before the load: each arms a follow-up timer that
    /// falls due during the run.
    #[arg(long, default_value_t = 100)]
    leads: usize,
    /// Up to this many replicas.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
}

/// One run's figures and checks.
struct Run {
    replicas: usize,
    per_second: f64,
    call_p99_ms: f64,
    delivery_p50_ms: f64,
    delivery_p99_ms: f64,
    head: i64,
    received: usize,
    repeats: usize,
    timers_once: String,
    acked: usize,
    lost: usize,
    killed: bool,
    /// PostgreSQL's commits a second during the load (every database).
    commits_per_second: f64,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    let most = args.replicas.max(1);
    let plan = (1..=most)
        .map(|n| (n, false))
        .chain((most > 1).then_some((most, true)));
    for (replicas, kill) in plan {
        let run = one(replicas, kill, &args).await?;
        eprintln!(
            "{replicas} replica(s), killed: {kill}: {:.0} calls/s",
            run.per_second
        );
        runs.push(run);
    }
    // The ceiling: raw inserts, a commit each, from as many clients.
    let ceiling = {
        let database = TestDatabase::new(Db::Postgres)
            .await
            .ok_or_else(|| anyhow::anyhow!("no PostgreSQL (set LEADFLOW_TEST_POSTGRES_URL)"))?;
        crate::rawdb::postgres(
            &database.url,
            args.concurrency,
            1,
            Duration::from_secs(args.seconds),
        )
        .await?
    };
    println!(
        "P1, PostgreSQL's commit ceiling in this run (an engagement-sized row a commit, {} clients): {:.0} commits/s",
        args.concurrency, ceiling.per_second
    );
    println!();
    let base = runs.first().map_or(1.0, |r| r.per_second);
    println!(
        "| replicas | calls/s | × 1 replica | PostgreSQL commits/s | call p99 | commit → subscriber p50 / p99 | \
         events (head) | received once | timers fired once | replica killed | engagements acked / lost |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |");
    for r in &runs {
        println!(
            "| {} | {:.0} | {:.2} | {:.0} | {:.1} ms | {:.1} / {:.1} ms | {} | {} ({} repeated) | {} | {} | {} / {} |",
            r.replicas,
            r.per_second,
            r.per_second / base,
            r.commits_per_second,
            r.call_p99_ms,
            r.delivery_p50_ms,
            r.delivery_p99_ms,
            r.head,
            r.received,
            r.repeats,
            r.timers_once,
            if r.killed { "yes, halfway" } else { "no" },
            r.acked,
            r.lost,
        );
    }
    Ok(())
}

fn good_fit(email: &str) -> std::collections::BTreeMap<String, String> {
    [
        ("email", email),
        ("company", "Acme"),
        ("title", "VP Engineering"),
        ("company_size", "250"),
        ("industry", "software"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn engagement(event_id: String, kind: &str) -> Option<pb::Engagement> {
    Some(pb::Engagement {
        event_id,
        r#type: kind.to_owned(),
        ..Default::default()
    })
}

fn lead_ref(id: &str) -> Option<pb::LeadRef> {
    Some(pb::LeadRef {
        key: Some(pb::lead_ref::Key::Id(id.to_owned())),
    })
}

fn micros(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| t.seconds * 1_000_000 + i64::from(t.nanos / 1_000))
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(0))
}

/// What the consumer saw.
#[derive(Default)]
struct Seen {
    sequences: HashSet<i64>,
    repeats: usize,
    latencies: Vec<u64>,
    /// Follow-up triggers per lead.
    followups: HashMap<String, u32>,
}

async fn one(replicas: usize, kill: bool, args: &Args) -> anyhow::Result<Run> {
    let database = TestDatabase::new(Db::Postgres)
        .await
        .ok_or_else(|| anyhow::anyhow!("no PostgreSQL (set LEADFLOW_TEST_POSTGRES_URL)"))?;
    let scratch = Scratch::new(&format!("scale{replicas}"))?;
    let program = sibling("leadflow");
    let serve = [
        "serve",
        "--database-url",
        database.url.as_str(),
        "--http-listen",
        "127.0.0.1:0",
        "--timer-poll-ms",
        "200",
    ];
    // The first migrates; the others start on the migrated database.
    let mut processes = vec![Process::start(&program, &serve, &scratch.0).await?];
    for _ in 1..replicas {
        processes.push(Process::start(&program, &serve, &scratch.0).await?);
    }
    let mut channels: Vec<Channel> = Vec::new();
    for p in &processes {
        channels.extend(p.channels(1).await?);
    }

    // A follow-up due 3 s after MQL, and leads that become MQLs now.
    let mut policies = PolicyServiceClient::new(channels[0].clone());
    let version = policies
        .create_policy_version(pb::CreatePolicyVersionRequest {
            source: leadflow_server::DEFAULT_POLICY.replace("after = \"3d\"", "after = \"3s\""),
            ..Default::default()
        })
        .await?
        .into_inner()
        .policy
        .map(|p| p.version)
        .ok_or_else(|| anyhow::anyhow!("no policy"))?;
    policies
        .activate_policy(pb::ActivatePolicyRequest {
            version,
            ..Default::default()
        })
        .await?;
    let mut seeded = Vec::with_capacity(args.leads);
    for i in 0..args.leads {
        let mut client = LeadServiceClient::new(channels[i % channels.len()].clone());
        let lead = client
            .create_lead(pb::CreateLeadRequest {
                profile: good_fit(&format!("scale{i}@acme.com")),
                ..Default::default()
            })
            .await?
            .into_inner()
            .lead
            .ok_or_else(|| anyhow::anyhow!("no lead"))?;
        for (k, kind) in [
            "trial_started",
            "webinar_attended",
            "ebook_downloaded",
            "ebook_downloaded",
        ]
        .iter()
        .enumerate()
        {
            client
                .record_engagement(pb::RecordEngagementRequest {
                    lead: lead_ref(&lead.id),
                    engagement: engagement(format!("q{i}-{k}"), kind),
                })
                .await?;
        }
        seeded.push(lead.id);
    }

    // The consumer, on the first replica (never killed).
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut stream = TriggerServiceClient::new(channels[0].clone())
        .subscribe(pb::SubscribeRequest {
            consumer: "scale".into(),
            start: pb::StartPosition::Earliest.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    // Latency counts for what is committed from here on, not the backlog.
    let subscribed_at = now_micros();
    let reader = {
        let seen = Arc::clone(&seen);
        let mut acks = TriggerServiceClient::new(channels[0].clone());
        tokio::spawn(async move {
            let mut unacked = 0;
            while let Ok(Some(item)) = stream.message().await {
                let Some(pb::subscribe_response::Item::Event(e)) = item.item else {
                    continue;
                };
                {
                    let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if !seen.sequences.insert(e.sequence) {
                        seen.repeats += 1;
                    }
                    let committed = micros(e.committed_at.as_ref());
                    if committed >= subscribed_at {
                        seen.latencies
                            .push(u64::try_from(now_micros() - committed).unwrap_or(0));
                    }
                    if let Some(pb::event::Payload::Trigger(t)) = &e.payload
                        && t.emit == "mql_followup_day3"
                        && let Some(lead) = &e.lead
                    {
                        *seen.followups.entry(lead.id.clone()).or_default() += 1;
                    }
                }
                unacked += 1;
                if unacked >= 100 {
                    unacked = 0;
                    let _ = acks
                        .ack(pb::AckRequest {
                            consumer: "scale".into(),
                            sequence: e.sequence,
                        })
                        .await;
                }
            }
        })
    };

    // The load: each call to one of the replicas still alive.
    let alive = Arc::new(AtomicUsize::new(replicas));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let killed = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs(args.seconds);
    let killer = if kill && replicas > 1 {
        let (alive, killed) = (Arc::clone(&alive), Arc::clone(&killed));
        processes.pop().map(|mut p| {
            // Killed with calls in flight; then out of the clients' rotation,
            // as a load balancer's health check would take it out.
            tokio::spawn(async move {
                tokio::time::sleep(duration / 2).await;
                p.stop();
                killed.store(true, Ordering::SeqCst);
                alive.fetch_sub(1, Ordering::SeqCst);
            })
        })
    } else {
        None
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&database.url)
        .await?;
    let commits = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT SUM(xact_commit)::BIGINT FROM pg_stat_database")
            .fetch_one(&pool)
            .await
    };
    let commits_before = commits(pool.clone()).await?;
    let started = Instant::now();
    let stats = {
        let (channels, leads, acked, alive) = (
            channels.clone(),
            Arc::new(seeded.clone()),
            Arc::clone(&acked),
            Arc::clone(&alive),
        );
        closed_loop("scale", args.concurrency, duration, None, move |w, _| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let replica = (w + usize::try_from(n).unwrap_or(0)) % alive.load(Ordering::SeqCst).max(1);
            let mut client = LeadServiceClient::new(channels[replica].clone());
            let lead = leads[usize::try_from(n).unwrap_or(0) % leads.len()].clone();
            let event_id = format!("load-{n}");
            let acked = Arc::clone(&acked);
            async move {
                if n.is_multiple_of(4) {
                    // a new lead: a CAPTURE event for the consumer
                    client
                        .create_lead(pb::CreateLeadRequest {
                            profile: good_fit(&format!("{event_id}@acme.com")),
                            ..Default::default()
                        })
                        .await?;
                    return Ok(1);
                }
                client
                    .record_engagement(pb::RecordEngagementRequest {
                        lead: lead_ref(&lead),
                        engagement: engagement(event_id.clone(), "page_viewed"),
                    })
                    .await?;
                acked
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(event_id);
                Ok(1)
            }
        })
        .await
    };
    let elapsed = started.elapsed();
    // (the statistics reach pg_stat_database within half a second)
    tokio::time::sleep(Duration::from_millis(600)).await;
    let commits_after = commits(pool.clone()).await?;
    if let Some(k) = killer {
        k.await?;
    }

    // Every acknowledged engagement is stored.
    let stored: HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT event_id FROM engagements WHERE event_id LIKE 'load-%'")
            .fetch_all(&pool)
            .await?
            .into_iter()
            .collect();
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let lost = acked.iter().filter(|id| !stored.contains(*id)).count();
    // Every timer has fired (the follow-ups were due 3 s after seeding).
    let head: i64 = sqlx::query_scalar("SELECT outbox_head FROM workspaces WHERE id = 'default'")
        .fetch_one(&pool)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (received, all_fired) = {
            let seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (seen.sequences.len(), seen.followups.len() == seeded.len())
        };
        let timers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM timers WHERE key = 'workflow:mql-day-3'")
            .fetch_one(&pool)
            .await?;
        if (i64::try_from(received).unwrap_or(0) >= head && all_fired && timers == 0)
            || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reader.abort();
    let mut seen = std::mem::take(&mut *seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    seen.latencies.sort_unstable();
    let once = seeded
        .iter()
        .filter(|l| seen.followups.get(*l) == Some(&1))
        .count();
    let missing = (1..=head).filter(|s| !seen.sequences.contains(s)).count();
    anyhow::ensure!(
        missing == 0,
        "{missing} sequences up to {head} never reached the consumer"
    );
    #[allow(clippy::cast_precision_loss)]
    Ok(Run {
        replicas,
        per_second: stats.items as f64 / elapsed.as_secs_f64(),
        call_p99_ms: stats.p99_ms,
        delivery_p50_ms: percentile(&seen.latencies, 0.50),
        delivery_p99_ms: percentile(&seen.latencies, 0.99),
        head,
        received: seen.sequences.len(),
        repeats: seen.repeats,
        timers_once: format!("{once} of {}", seeded.len()),
        acked: acked.len(),
        lost,
        killed: killed.load(Ordering::SeqCst),
        commits_per_second: (commits_after - commits_before) as f64 / elapsed.as_secs_f64(),
    })
}

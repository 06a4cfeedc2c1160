//! Closed-loop load and its figures.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What one measurement gave.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Stats {
    pub(crate) name: String,
    pub(crate) concurrency: usize,
    /// Items done (rows, engagements, messages) per second.
    pub(crate) per_second: f64,
    pub(crate) items: u64,
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    /// Call latency, milliseconds.
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    /// Share of one core the client used (user + system time / wall time / cores).
    pub(crate) client_cpu: f64,
    /// The same for the server process, where there is one.
    pub(crate) server_cpu: Option<f64>,
}

pub(crate) fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    #[allow(clippy::cast_precision_loss)]
    let us = sorted[i.min(sorted.len() - 1)] as f64;
    us / 1000.0
}

/// `concurrency` workers call `op(worker, i)` back to back for `duration`;
/// each call returns how many items it did.
pub(crate) async fn closed_loop<F, Fut>(
    name: &str,
    concurrency: usize,
    duration: Duration,
    server: Option<u32>,
    op: F,
) -> Stats
where
    F: Fn(usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<u64>> + Send,
{
    let cpu = crate::cpu::Meter::start(server);
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let op = op.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut items, mut errors) = (0_u64, 0_u64);
            let mut i = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                match op(w, i).await {
                    Ok(n) => {
                        items += n;
                        latencies.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    }
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            (latencies, items, errors)
        }));
    }
    let mut latencies = Vec::new();
    let (mut items, mut errors) = (0, 0);
    for w in workers {
        if let Ok((l, n, e)) = w.await {
            latencies.extend(l);
            items += n;
            errors += e;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let (client_cpu, server_cpu) = cpu.stop();
    latencies.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    Stats {
        name: name.to_owned(),
        concurrency,
        per_second: items as f64 / seconds,
        items,
        calls: latencies.len() as u64,
        errors,
        seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        p999_ms: percentile(&latencies, 0.999),
        client_cpu,
        server_cpu,
    }
}

/// The median of `values` (sorted in place); 0 for none.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

/// The median, in seconds, of `runs` runs of `f` (at least one).
pub(crate) async fn median_seconds<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut seconds = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        f().await?;
        seconds.push(started.elapsed().as_secs_f64());
    }
    Ok(median(&mut seconds))
}

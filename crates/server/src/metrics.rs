//! Metrics, scraped from `/metrics` on the HTTP side (Prometheus text
//! format) and pushed over OTLP when an endpoint is configured:
//!
//! - `rpc.server.call.duration` (seconds; its count is the calls) by method
//!   and gRPC status code;
//! - `leadflow.engagements.recorded`, a counter (its rate is engagements/s);
//! - from the database, per workspace: `leadflow.leads` by stage,
//!   `leadflow.outbox.head`, `leadflow.consumer.lag` (events not yet acked,
//!   by consumer: the [`CONSUMERS_SHOWN`] most behind, the rest summed under
//!   [`OTHER_CONSUMERS`]), `leadflow.relay.lag` and
//!   `leadflow.relay.lag_seconds` (events not yet relayed to JetStream, and
//!   how long ago the oldest of them was committed), `leadflow.timers.due` (due, not yet fired) and
//!   `leadflow.rescore.done` / `leadflow.rescore.total` of running re-scores.
//!   The last three have a series for every workspace from the start, at 0
//!   while nothing is due or running, so that an alert has one to read.
//!
//! The database numbers are sampled at most once a second, on a scrape or
//! before an OTLP export. A scrape shows one workspace's series (and those
//! of the process, which name none); the OTLP push, which goes to the
//! operator's collector, carries every workspace.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadflow_domain::Span;
use leadflow_engine::Engine;
use leadflow_engine::Gauges;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, MeterProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

/// How often metrics go out over OTLP.
const EXPORT_EVERY: Duration = Duration::from_secs(10);
/// A scrape within this long of the last sample reuses it.
const SAMPLE_AT_MOST_EVERY: Span = Span::from_secs(1);
/// Consumers with a series of their own, per workspace: callers name
/// consumers, and each name would otherwise be a series.
pub(crate) const CONSUMERS_SHOWN: usize = 50;
/// The `consumer` label of the lag of the consumers beyond
/// [`CONSUMERS_SHOWN`], summed. A consumer really named so is summed there
/// too, so that two series never share a label set.
pub(crate) const OTHER_CONSUMERS: &str = "_other";

/// The instruments of one server.
#[derive(Debug)]
pub(crate) struct Metrics {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    rpc_duration: Histogram<f64>,
    engine: Engine,
    /// The last sample of the database, read by the gauges' callbacks.
    sampled: Arc<Mutex<Gauges>>,
    /// When it was taken; held while sampling, so one scrape samples.
    /// On the engine's clock.
    sampled_at: tokio::sync::Mutex<Option<leadflow_domain::Timestamp>>,
}

impl Metrics {
    pub(crate) fn new(engine: Engine, service_name: &str, otlp: Option<&str>) -> anyhow::Result<Arc<Self>> {
        let registry = prometheus::Registry::new();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name.to_owned())
            .build();
        let mut builder = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(prometheus);
        if let Some(endpoint) = otlp {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            builder = builder.with_reader(
                PeriodicReader::builder(exporter)
                    .with_interval(EXPORT_EVERY)
                    .build(),
            );
        }
        let provider = builder.build();
        let meter = provider.meter("leadflow");
        let rpc_duration = meter
            .f64_histogram("rpc.server.call.duration")
            .with_unit("s")
            .with_description("gRPC calls served, by method and status code")
            .with_boundaries(vec![
                0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .build();
        let sampled = Arc::new(Mutex::new(Gauges::default()));
        observe(&meter, &engine, &sampled);
        Ok(Arc::new(Self {
            provider,
            registry,
            rpc_duration,
            engine,
            sampled,
            sampled_at: tokio::sync::Mutex::new(None),
        }))
    }

    /// Notes a call: its method (`/package.Service/Method`), status and time.
    /// A path no service knows counts as `_OTHER`, so that made-up paths
    /// cannot multiply the series.
    pub(crate) fn rpc(&self, method: &str, code: tonic::Code, seconds: f64) {
        let (service, name) = match crate::methods::lookup(method) {
            crate::methods::Lookup::Known(rpc) => (rpc.service, rpc.method),
            _ => ("_OTHER", "_OTHER"),
        };
        self.rpc_duration.record(
            seconds,
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", service.to_owned()),
                KeyValue::new("rpc.method", name.to_owned()),
                KeyValue::new("rpc.grpc.status_code", i64::from(code as i32)),
            ],
        );
    }

    /// Samples the database, unless a sample is fresh (or even so, when
    /// `force`d).
    pub(crate) async fn sample(&self, force: bool) {
        let mut at = self.sampled_at.lock().await;
        let now = self.engine.now();
        // A sample from the future (a clock set back) is not fresh.
        if !force && at.is_some_and(|t| now.since(t) >= Span::ZERO && now.since(t) < SAMPLE_AT_MOST_EVERY) {
            return;
        }
        match self.engine.gauges().await {
            Ok(gauges) => {
                *self
                    .sampled
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = gauges;
                *at = Some(now);
            }
            Err(e) => tracing::warn!(error = %e, "could not sample the database for metrics"),
        }
    }

    /// The metrics of `workspace` and of the process in the Prometheus text
    /// format, the database freshly sampled: a series of another workspace
    /// is left out.
    pub(crate) async fn render(&self, workspace: &str) -> anyhow::Result<String> {
        self.sample(false).await;
        let mut families = self.registry.gather();
        for family in &mut families {
            family.mut_metric().retain(|m| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == "workspace")
                    .is_none_or(|l| l.value() == workspace)
            });
        }
        // the encoder refuses a family without a series
        families.retain(|f| !f.get_metric().is_empty());
        let mut text = String::new();
        prometheus::TextEncoder::new().encode_utf8(&families, &mut text)?;
        Ok(text)
    }

    /// Samples ahead of each OTLP export, until the server stops.
    pub(crate) async fn sample_for_export(self: Arc<Self>) {
        let mut every = tokio::time::interval(EXPORT_EVERY);
        loop {
            every.tick().await;
            self.sample(false).await;
        }
    }

    /// Sends the last numbers, then what is buffered (the exporter blocks:
    /// off the runtime's threads).
    pub(crate) async fn shutdown(&self) {
        self.sample(true).await;
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// The instruments whose values are read when metrics are collected.
fn observe(meter: &Meter, engine: &Engine, sampled: &Arc<Mutex<Gauges>>) {
    let read = |sampled: &Arc<Mutex<Gauges>>| -> Gauges {
        sampled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    };
    let counters = engine.clone();
    meter
        .u64_observable_counter("leadflow.engagements.recorded")
        .with_description("Engagements recorded by this server (repeats of an event id not counted)")
        .with_callback(move |o| {
            o.observe(
                counters
                    .counters()
                    .engagements_recorded
                    .load(std::sync::atomic::Ordering::Relaxed),
                &[],
            );
        })
        .build();
    let s = Arc::clone(sampled);
    meter
        .i64_observable_gauge("leadflow.leads")
        .with_description("Leads, by workspace and stage")
        .with_callback(move |o| {
            for (ws, stage, n) in read(&s).leads {
                o.observe(
                    n,
                    &[KeyValue::new("workspace", ws), KeyValue::new("stage", stage)],
                );
            }
        })
        .build();
    let s = Arc::clone(sampled);
    meter
        .i64_observable_gauge("leadflow.outbox.head")
        .with_description("The sequence of the workspace's latest event")
        .with_callback(move |o| {
            for (ws, head) in read(&s).outbox_heads {
                o.observe(head, &[KeyValue::new("workspace", ws)]);
            }
        })
        .build();
    let s = Arc::clone(sampled);
    meter
        .i64_observable_gauge("leadflow.consumer.lag")
        .with_description("Events a named consumer has not acknowledged yet")
        .with_callback(move |o| {
            for (ws, name, lag) in consumer_lags(&read(&s)) {
                o.observe(
                    lag,
                    &[KeyValue::new("workspace", ws), KeyValue::new("consumer", name)],
                );
            }
        })
        .build();
    let s = Arc::clone(sampled);
    meter
        .i64_observable_gauge("leadflow.relay.lag")
        .with_description("Events committed and not yet relayed (to JetStream), by relay")
        .with_callback(move |o| {
            let g = read(&s);
            let heads: BTreeMap<&str, i64> = g.outbox_heads.iter().map(|(ws, h)| (ws.as_str(), *h)).collect();
            for (ws, name, cursor, _) in &g.relays {
                let head = heads.get(ws.as_str()).copied().unwrap_or(*cursor);
                o.observe(
                    (head - cursor).max(0),
                    &[
                        KeyValue::new("workspace", ws.clone()),
                        KeyValue::new("relay", name.clone()),
                    ],
                );
            }
        })
        .build();
    let s = Arc::clone(sampled);
    meter
        .f64_observable_gauge("leadflow.relay.lag_seconds")
        .with_description("How long ago the oldest event not yet relayed was committed (0: up to date)")
        .with_callback(move |o| {
            for (ws, name, _, behind) in &read(&s).relays {
                #[allow(clippy::cast_precision_loss)]
                let seconds = *behind as f64 / 1e6;
                o.observe(
                    seconds,
                    &[
                        KeyValue::new("workspace", ws.clone()),
                        KeyValue::new("relay", name.clone()),
                    ],
                );
            }
        })
        .build();
    let s = Arc::clone(sampled);
    meter
        .i64_observable_gauge("leadflow.timers.due")
        .with_description("Timers due and not fired yet (the timer worker's backlog)")
        .with_callback(move |o| {
            for (ws, n) in due_timers(&read(&s)) {
                o.observe(n, &[KeyValue::new("workspace", ws)]);
            }
        })
        .build();
    for (name, description, done) in [
        (
            "leadflow.rescore.done",
            "Leads re-scored so far by a running re-score (0 without one)",
            true,
        ),
        (
            "leadflow.rescore.total",
            "Leads a running re-score goes through (0 without one)",
            false,
        ),
    ] {
        let s = Arc::clone(sampled);
        meter
            .i64_observable_gauge(name)
            .with_description(description)
            .with_callback(move |o| {
                for r in rescores(&read(&s)) {
                    let value = if done { r.done } else { r.total };
                    match r.job {
                        // `job` is the label Prometheus gives the scrape
                        // target: a series's own would be renamed
                        Some(job) => o.observe(
                            value,
                            &[
                                KeyValue::new("workspace", r.workspace),
                                KeyValue::new("rescore_job", job),
                            ],
                        ),
                        None => o.observe(value, &[KeyValue::new("workspace", r.workspace)]),
                    }
                }
            })
            .build();
    }
}

/// Every workspace the sample knows of, in order.
fn workspaces(g: &Gauges) -> BTreeSet<&str> {
    g.outbox_heads
        .iter()
        .map(|(ws, _)| ws.as_str())
        .chain(g.due_timers.iter().map(|(ws, _)| ws.as_str()))
        .chain(g.rescores.iter().map(|(ws, ..)| ws.as_str()))
        .chain(g.consumers.iter().map(|(ws, ..)| ws.as_str()))
        .collect()
}

/// (workspace, consumer, lag): per workspace the [`CONSUMERS_SHOWN`] most
/// behind (ties by name), then the rest summed under [`OTHER_CONSUMERS`].
fn consumer_lags(g: &Gauges) -> Vec<(String, String, i64)> {
    let mut by_workspace: BTreeMap<&str, Vec<(&str, i64)>> = BTreeMap::new();
    for (ws, name, cursor) in &g.consumers {
        let head = g
            .outbox_heads
            .iter()
            .find(|(w, _)| w == ws)
            .map_or(*cursor, |(_, h)| *h);
        by_workspace
            .entry(ws)
            .or_default()
            .push((name, (head - cursor).max(0)));
    }
    let mut out = Vec::new();
    for (ws, mut consumers) in by_workspace {
        let (mut other, mut folded) = (0, false);
        consumers.retain(|&(name, lag)| {
            let named_other = name == OTHER_CONSUMERS;
            if named_other {
                (other, folded) = (other + lag, true);
            }
            !named_other
        });
        consumers.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        for (i, (name, lag)) in consumers.into_iter().enumerate() {
            if i < CONSUMERS_SHOWN {
                out.push((ws.to_owned(), name.to_owned(), lag));
            } else {
                (other, folded) = (other + lag, true);
            }
        }
        if folded {
            out.push((ws.to_owned(), OTHER_CONSUMERS.to_owned(), other));
        }
    }
    out
}

/// (workspace, timers due) for every workspace, 0 where none is.
fn due_timers(g: &Gauges) -> Vec<(String, i64)> {
    workspaces(g)
        .into_iter()
        .map(|ws| {
            let n = g
                .due_timers
                .iter()
                .filter(|(w, _)| w == ws)
                .map(|(_, n)| *n)
                .sum();
            (ws.to_owned(), n)
        })
        .collect()
}

/// A re-score's progress, or a workspace's 0 while none runs.
#[derive(Debug, PartialEq, Eq)]
struct Progress {
    workspace: String,
    job: Option<i64>,
    done: i64,
    total: i64,
}

/// The running re-scores, and a [`Progress`] without a job for every
/// workspace where none runs.
fn rescores(g: &Gauges) -> Vec<Progress> {
    let mut out = Vec::new();
    for ws in workspaces(g) {
        let before = out.len();
        out.extend(
            g.rescores
                .iter()
                .filter(|(w, ..)| w == ws)
                .map(|(_, job, done, total)| Progress {
                    workspace: ws.to_owned(),
                    job: Some(*job),
                    done: *done,
                    total: *total,
                }),
        );
        if out.len() == before {
            out.push(Progress {
                workspace: ws.to_owned(),
                job: None,
                done: 0,
                total: 0,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> Gauges {
        Gauges {
            outbox_heads: vec![("acme".into(), 100), ("globex".into(), 7)],
            ..Gauges::default()
        }
    }

    #[test]
    fn consumers_beyond_the_most_behind_are_summed() {
        let mut g = gauges();
        for i in 0..CONSUMERS_SHOWN {
            g.consumers.push(("acme".into(), format!("c{i:02}"), 10));
        }
        g.consumers.push(("acme".into(), "late".into(), 99));
        g.consumers.push(("acme".into(), "caught-up".into(), 100));
        g.consumers.push(("acme".into(), "near".into(), 95));
        g.consumers.push(("acme".into(), OTHER_CONSUMERS.into(), 98));
        g.consumers.push(("globex".into(), "sync".into(), 5));
        let lags = consumer_lags(&g);
        let acme: Vec<_> = lags.iter().filter(|(ws, ..)| ws == "acme").collect();
        assert_eq!(acme.len(), CONSUMERS_SHOWN + 1);
        assert!(
            acme[..CONSUMERS_SHOWN]
                .iter()
                .all(|(_, name, lag)| name.starts_with('c') && *lag == 90)
        );
        // late 1, caught-up 0, near 5, and the one named _other 2
        assert_eq!(
            acme[CONSUMERS_SHOWN],
            &("acme".to_owned(), OTHER_CONSUMERS.to_owned(), 8)
        );
        assert_eq!(lags.last(), Some(&("globex".to_owned(), "sync".to_owned(), 2)));
    }

    #[test]
    fn a_few_consumers_are_shown_as_they_are() {
        let mut g = gauges();
        g.consumers.push(("acme".into(), "b".into(), 90));
        g.consumers.push(("acme".into(), "ahead".into(), 150));
        g.consumers.push(("acme".into(), "a".into(), 90));
        assert_eq!(
            consumer_lags(&g),
            [
                ("acme".to_owned(), "a".to_owned(), 10),
                ("acme".to_owned(), "b".to_owned(), 10),
                ("acme".to_owned(), "ahead".to_owned(), 0),
            ]
        );
    }

    #[test]
    fn every_workspace_has_timer_and_rescore_series() {
        let mut g = gauges();
        g.due_timers.push(("globex".into(), 3));
        g.rescores.push(("acme".into(), 4, 10, 40));
        assert_eq!(due_timers(&g), [("acme".to_owned(), 0), ("globex".to_owned(), 3)]);
        assert_eq!(
            rescores(&g),
            [
                Progress {
                    workspace: "acme".into(),
                    job: Some(4),
                    done: 10,
                    total: 40
                },
                Progress {
                    workspace: "globex".into(),
                    job: None,
                    done: 0,
                    total: 0
                },
            ]
        );
    }
}

//! `leadflow-bench run --long-lead`: what a lead's long history costs a
//! write, through the API, on one `leadflow serve`.
//!
//! Two leads, seeded through `RecordEngagements` in scoring order over the
//! past year: one with 10 engagements, one with 10,000. Then, each timed
//! one call at a time through `RecordEngagement` ([`CALLS`] calls on the same
//! lead, every one a fresh event id):
//!
//! 1. in-order appends (dated after the lead's last engagement, still in
//!    the past), on both leads, alternately;
//! 2. late events within the newest 1 % of the long lead's log;
//! 3. late events before the long lead's first engagement (the worst case);
//! 4. events at the same instant as the long lead's last engagement, with an
//!    event id that sorts before its own (what a second-resolution import
//!    with unordered ids sends).
//!
//! Then an import of `--long-lead-engagements` engagements over
//! [`IMPORT_LEADS`] leads through `StreamEngagements`, in time order, and
//! its rate by tenths: whether it stays flat as the leads' logs grow.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use leadflow_engine::MAX_BATCH;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

use crate::stats::{median, percentile};

/// Timed calls a measure (on one lead).
const CALLS: usize = 60;
/// In-order calls on a lead of its own before anything is timed.
const WARM_UP: usize = 20;
/// The long lead's log.
const LONG: usize = 10_000;
/// The short lead's log.
const SHORT: usize = 10;
/// Leads the import spreads over.
pub(crate) const IMPORT_LEADS: usize = 10_000;
/// Concurrent streams of the import, each with leads of its own.
const IMPORT_STREAMS: usize = 4;
/// Messages a stream may hold in its queue ahead of the server.
const IN_FLIGHT: usize = 64;
const DAY: i64 = 86_400;
const YEAR: i64 = 365 * DAY;

/// The targets.
const APPEND_RATIO: f64 = 1.5;
const LATE_RATIO: f64 = 3.0;
const FLAT: f64 = 0.8;

/// One database's figures.
#[derive(Debug, Serialize)]
pub(crate) struct LongLead {
    pub(crate) database: String,
    pub(crate) measures: Vec<Measure>,
    pub(crate) import: Import,
}

/// One kind of call, timed on one lead.
#[derive(Debug, Serialize)]
pub(crate) struct Measure {
    pub(crate) name: String,
    /// Engagements in the lead's log before the first timed call.
    pub(crate) log: usize,
    /// Engagements that sort after the call's in scoring order (median).
    pub(crate) behind: usize,
    pub(crate) calls: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    /// Against what (`"short lead"` or `"in-order append"`), and how many times it.
    pub(crate) ratio_to: Option<String>,
    pub(crate) ratio: Option<f64>,
    /// At most this ratio; none: reported only.
    pub(crate) target: Option<f64>,
}

/// The streamed import.
#[derive(Debug, Serialize)]
pub(crate) struct Import {
    pub(crate) engagements: u64,
    pub(crate) leads: usize,
    pub(crate) streams: usize,
    /// Engagements a `StreamEngagements` call (each stream sends several calls in turn).
    pub(crate) per_call: u64,
    pub(crate) seconds: f64,
    pub(crate) per_second: f64,
    /// Engagements/s in each tenth of the engagements, by when their call was answered.
    pub(crate) tenths: Vec<f64>,
    /// The last tenth's rate ÷ the first's.
    pub(crate) flat: f64,
}

impl LongLead {
    /// The targets and what was measured: (target, measured, met).
    pub(crate) fn checks(&self) -> Vec<(String, String, bool)> {
        let mut out = Vec::new();
        for m in &self.measures {
            if let (Some(r), Some(t)) = (m.ratio, m.target) {
                out.push((
                    format!(
                        "{}, {}: ≤ {t} × {}",
                        m.name,
                        self.database,
                        m.ratio_to.as_deref().unwrap_or("")
                    ),
                    format!("{r:.2} ×"),
                    r <= t,
                ));
            }
        }
        out.push((
            format!(
                "StreamEngagements import of {} over {} leads, {}: last tenth ≥ {FLAT} × the first",
                self.import.engagements, self.import.leads, self.database
            ),
            format!("{:.2} ×", self.import.flat),
            self.import.flat >= FLAT,
        ));
        out
    }
}

/// The scenario on the server behind `channels` (a fresh database).
pub(crate) async fn measure(
    database: &str,
    channels: &[Channel],
    engagements: u64,
    lap: &dyn Fn(&str),
) -> anyhow::Result<LongLead> {
    anyhow::ensure!(
        channels.len() >= IMPORT_STREAMS,
        "{IMPORT_STREAMS} channels needed"
    );
    let mut client = LeadServiceClient::new(channels[0].clone());
    let now = now_seconds();
    // The histories end two days ago; the appends follow, a second apart.
    let end = now - 2 * DAY;
    let start = end - YEAR;

    lap(&format!(
        "long lead on {database}: seeding {SHORT} and {LONG} engagements"
    ));
    let mut warm = Lead::create(&mut client, "warm", start).await?;
    let mut short = Lead::create(&mut client, "short", start).await?;
    let mut long = Lead::create(&mut client, "long", start).await?;
    short.seed(&mut client, SHORT, start, end).await?;
    long.seed(&mut client, LONG, start, end).await?;
    for k in 0..WARM_UP {
        warm.call(&mut client, "z", k, end + seconds(k)).await?;
    }

    lap(&format!("long lead on {database}: timed calls"));
    // 1. In-order appends, on both leads in turn.
    let (short_log, long_log) = (short.log.len(), long.log.len());
    let (mut on_short, mut on_long) = (Timed::default(), Timed::default());
    for k in 0..CALLS {
        on_short.add(short.call(&mut client, "z", k, end + seconds(k)).await?);
        on_long.add(long.call(&mut client, "z", k, end + seconds(k)).await?);
    }
    let base_short = on_short.p50();
    let base_long = on_long.p50();
    let mut measures = vec![
        on_short.measure(&format!("in-order append, {SHORT} engagements"), short_log, None),
        on_long.measure(
            &format!("in-order append, {LONG} engagements"),
            long_log,
            Some((
                format!("the {SHORT}-engagement lead"),
                base_short,
                Some(APPEND_RATIO),
            )),
        ),
    ];
    let against = |target: Option<f64>| Some(("the in-order append".to_owned(), base_long, target));

    // 2. Late, within the newest 1 %: between the second-to-last and the
    // last seeded engagement, each after the previous probe.
    let log = long.log.len();
    let gap = long.seeded[LONG - 2];
    let mut late = Timed::default();
    for k in 0..CALLS {
        late.add(long.call(&mut client, "l", k, gap + 1 + seconds(k)).await?);
    }
    anyhow::ensure!(
        late.behind.iter().all(|&b| b * 100 <= log),
        "a late probe fell outside the newest 1 % of the log"
    );
    measures.push(late.measure("late, within the newest 1 %", log, against(Some(LATE_RATIO))));

    // 3. Late, before the first engagement (each before the previous probe).
    let log = long.log.len();
    let first = long.seeded[0];
    let mut earliest = Timed::default();
    for k in 0..CALLS {
        earliest.add(
            long.call(&mut client, "e", CALLS - k, first - 1 - seconds(k))
                .await?,
        );
    }
    measures.push(earliest.measure("late, before the first engagement", log, against(None)));

    // 4. The last engagement's instant, an event id sorting before its own.
    let log = long.log.len();
    let (last, last_id) = long
        .log
        .last()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("empty log"))?;
    let mut same = Timed::default();
    for k in 0..CALLS {
        same.add(long.call(&mut client, "a", k, last).await?);
    }
    anyhow::ensure!(
        long.log.last().is_some_and(|(_, id)| *id == last_id),
        "a same-instant probe sorted after the last engagement"
    );
    measures.push(same.measure("same instant, smaller event id", log, against(Some(LATE_RATIO))));

    // 5. The import.
    lap(&format!("long lead on {database}: seeding {IMPORT_LEADS} leads"));
    let leads = crate::load::seed(channels, IMPORT_LEADS).await?;
    lap(&format!(
        "long lead on {database}: importing {engagements} engagements"
    ));
    let import = import(&channels[..IMPORT_STREAMS], &leads, engagements, now - DAY).await?;
    lap(&format!(
        "long lead on {database}: {:.0} engagements/s, last tenth ÷ first {:.2}",
        import.per_second, import.flat
    ));
    Ok(LongLead {
        database: database.to_owned(),
        measures,
        import,
    })
}

/// A lead of the scenario and its log as this side knows it, in scoring
/// order: (occurred_at in seconds, event id).
struct Lead {
    id: String,
    tag: &'static str,
    log: Vec<(i64, String)>,
    /// The seeded engagements' instants, oldest first.
    seeded: Vec<i64>,
}

impl Lead {
    async fn create(
        client: &mut LeadServiceClient<Channel>,
        tag: &'static str,
        start: i64,
    ) -> anyhow::Result<Self> {
        let id = client
            .create_lead(pb::CreateLeadRequest {
                external_key: format!("long-lead-{tag}"),
                profile: [
                    ("email", format!("{tag}@bigco.com")),
                    ("company", "BigCo".to_owned()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
                captured_at: Some(timestamp(start - DAY)),
                ..Default::default()
            })
            .await?
            .into_inner()
            .lead
            .ok_or_else(|| anyhow::anyhow!("CreateLead answered without a lead"))?
            .id;
        Ok(Self {
            id,
            tag,
            log: Vec::new(),
            seeded: Vec::new(),
        })
    }

    /// `count` engagements evenly over `[start, end)`, in scoring order, in
    /// batches of at most the API's limit.
    async fn seed(
        &mut self,
        client: &mut LeadServiceClient<Channel>,
        count: usize,
        start: i64,
        end: i64,
    ) -> anyhow::Result<()> {
        let spacing = (end - start) / i64::try_from(count)?;
        let all: Vec<(i64, String)> = (0..count)
            .map(|i| (start + seconds(i) * spacing, format!("{}-h-{i:07}", self.tag)))
            .collect();
        for (b, chunk) in all.chunks(MAX_BATCH).enumerate() {
            let engagements = chunk
                .iter()
                .enumerate()
                .map(|(i, (at, id))| pb::EngagementItem {
                    lead: lead_ref(&self.id),
                    engagement: Some(engagement(id.clone(), b * MAX_BATCH + i, *at)),
                })
                .collect();
            let results = client
                .record_engagements(pb::RecordEngagementsRequest { engagements })
                .await?
                .into_inner()
                .results;
            anyhow::ensure!(
                results.len() == chunk.len() && results.iter().all(|r| !r.duplicate),
                "seeding {}: a batch was not recorded whole",
                self.tag
            );
        }
        self.seeded = all.iter().map(|(at, _)| *at).collect();
        self.log = all;
        Ok(())
    }

    /// One `RecordEngagement` at `at`, event id `{tag}-{prefix}-{k}`: its
    /// latency and how many engagements sort after it.
    async fn call(
        &mut self,
        client: &mut LeadServiceClient<Channel>,
        prefix: &str,
        k: usize,
        at: i64,
    ) -> anyhow::Result<(f64, usize)> {
        let id = format!("{}-{prefix}-{k:04}", self.tag);
        let request = pb::RecordEngagementRequest {
            lead: lead_ref(&self.id),
            engagement: Some(engagement(id.clone(), k, at)),
        };
        let began = Instant::now();
        let response = client.record_engagement(request).await?.into_inner();
        let ms = began.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(!response.duplicate, "{id} was taken for a duplicate");
        let key = (at, id);
        let position = self.log.partition_point(|e| *e < key);
        let behind = self.log.len() - position;
        self.log.insert(position, key);
        Ok((ms, behind))
    }
}

/// The calls of one measure.
#[derive(Default)]
struct Timed {
    ms: Vec<f64>,
    behind: Vec<usize>,
}

impl Timed {
    fn add(&mut self, (ms, behind): (f64, usize)) {
        self.ms.push(ms);
        self.behind.push(behind);
    }

    fn p50(&self) -> f64 {
        median(&mut self.ms.clone())
    }

    fn measure(&self, name: &str, log: usize, against: Option<(String, f64, Option<f64>)>) -> Measure {
        let mut micros: Vec<u64> = self
            .ms
            .iter()
            .map(|ms| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let us = (ms * 1e3).round() as u64;
                us
            })
            .collect();
        micros.sort_unstable();
        let mut behind = self.behind.clone();
        behind.sort_unstable();
        let p50 = self.p50();
        let (ratio_to, ratio, target) = match against {
            Some((to, base, target)) => (Some(to), Some(p50 / base.max(1e-9)), target),
            None => (None, None, None),
        };
        Measure {
            name: name.to_owned(),
            log,
            behind: behind.get(behind.len() / 2).copied().unwrap_or(0),
            calls: self.ms.len(),
            p50_ms: p50,
            p90_ms: percentile(&micros, 0.90),
            ratio_to,
            ratio,
            target,
        }
    }
}

/// `total` engagements over `leads` through [`IMPORT_STREAMS`] concurrent
/// streams, in time order over the year that ends at `end`: engagement `j`
/// goes to lead `j mod leads`, so a lead's engagements arrive in their
/// order, and each stream owns its leads. A stream sends its share as
/// `StreamEngagements` calls of `per_call` engagements, one after the
/// other, each fed through a queue of [`IN_FLIGHT`] messages.
async fn import(
    channels: &[Channel],
    leads: &Arc<Vec<String>>,
    total: u64,
    end: i64,
) -> anyhow::Result<Import> {
    let streams = channels.len();
    let per_call = (total / (u64::try_from(streams)? * 50)).max(100);
    let spacing = (YEAR / i64::try_from(total.max(1))?).max(1);
    let start = end - spacing * i64::try_from(total)?;
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(streams);
    for (s, channel) in channels.iter().enumerate() {
        let mut client = LeadServiceClient::new(channel.clone());
        let leads = Arc::clone(leads);
        tasks.push(tokio::spawn(async move {
            let count = leads.len();
            let mut mine = (0..total)
                .filter(move |j| usize::try_from(*j).unwrap_or(0) % count % streams == s)
                .peekable();
            // (seconds since the start when answered, engagements committed)
            let mut answered = Vec::new();
            while mine.peek().is_some() {
                let call: Vec<u64> = mine.by_ref().take(usize::try_from(per_call)?).collect();
                let sent = call.len();
                let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
                let leads = Arc::clone(&leads);
                let producer = tokio::spawn(async move {
                    for j in call {
                        let n = usize::try_from(j).unwrap_or(0);
                        let at = start + spacing * i64::try_from(j).unwrap_or(0);
                        let m = pb::StreamEngagementsRequest {
                            lead: lead_ref(&leads[n % leads.len()]),
                            engagement: Some(engagement(format!("import-{j:08}"), n / leads.len(), at)),
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
                anyhow::ensure!(
                    usize::try_from(response.committed)? == sent && response.duplicates == 0,
                    "a stream of {sent} committed {} ({} duplicates)",
                    response.committed,
                    response.duplicates
                );
                answered.push((began.elapsed().as_secs_f64(), sent));
            }
            Ok::<_, anyhow::Error>(answered)
        }));
    }
    let mut answered = Vec::new();
    for t in tasks {
        answered.extend(t.await??);
    }
    let seconds = began.elapsed().as_secs_f64();
    answered.sort_by(|a, b| a.0.total_cmp(&b.0));
    let tenths = tenths(&answered, total);
    let flat = match (tenths.first(), tenths.last()) {
        (Some(first), Some(last)) if *first > 0.0 => last / first,
        _ => 0.0,
    };
    #[allow(clippy::cast_precision_loss)]
    Ok(Import {
        engagements: total,
        leads: leads.len(),
        streams,
        per_call,
        seconds,
        per_second: total as f64 / seconds,
        tenths,
        flat,
    })
}

/// The rate of each tenth of `total`, from the calls' answers (time,
/// engagements), oldest first: a tenth ends with the answer that brings
/// the count to it.
fn tenths(answered: &[(f64, usize)], total: u64) -> Vec<f64> {
    let mut out = Vec::with_capacity(10);
    let (mut done, mut from_count, mut from_time) = (0_u64, 0_u64, 0.0);
    let mut tenth = 1;
    for &(at, n) in answered {
        done += u64::try_from(n).unwrap_or(0);
        while tenth <= 10 && done * 10 >= total * tenth {
            if done > from_count {
                #[allow(clippy::cast_precision_loss)]
                out.push((done - from_count) as f64 / (at - from_time).max(1e-9));
                (from_count, from_time) = (done, at);
            }
            tenth += 1;
        }
    }
    out
}

/// The engagement types of the default policy, in turn: page views (any
/// page, pricing, careers), an ebook, webinars, clicks.
fn engagement(event_id: String, n: usize, at: i64) -> pb::Engagement {
    let (kind, path, channel) = match n % 10 {
        0 | 3 | 6 => ("page_viewed", Some("/docs/getting-started"), ""),
        1 => ("page_viewed", Some("/pricing"), ""),
        2 => ("ebook_downloaded", None, ""),
        4 => ("webinar_registered", None, ""),
        5 => ("ad_clicked", None, "paid_social"),
        7 => ("email_clicked", None, ""),
        8 => ("page_viewed", Some("/careers"), ""),
        _ => ("webinar_attended", None, ""),
    };
    pb::Engagement {
        event_id,
        r#type: kind.to_owned(),
        channel: channel.to_owned(),
        properties: path
            .map(|p| ("path".to_owned(), p.to_owned()))
            .into_iter()
            .collect(),
        occurred_at: Some(timestamp(at)),
    }
}

fn seconds(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

fn lead_ref(id: &str) -> Option<pb::LeadRef> {
    Some(pb::LeadRef {
        key: Some(pb::lead_ref::Key::Id(id.to_owned())),
    })
}

/// The figures as Markdown tables.
pub(crate) fn print(all: &[LongLead]) {
    println!(
        "\n| database | call on one lead | log | behind it | calls | p50 ms | p90 ms | ratio | against | target |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    for l in all {
        for m in &l.measures {
            let ratio = m.ratio.map_or_else(|| "—".to_owned(), |r| format!("{r:.2} ×"));
            let target = match (m.ratio, m.target) {
                (Some(_), Some(t)) => format!("≤ {t} ×"),
                (Some(_), None) => "report".to_owned(),
                _ => "—".to_owned(),
            };
            println!(
                "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {ratio} | {} | {target} |",
                l.database,
                m.name,
                m.log,
                m.behind,
                m.calls,
                m.p50_ms,
                m.p90_ms,
                m.ratio_to.as_deref().unwrap_or("—"),
            );
        }
    }
    println!(
        "\n| database | StreamEngagements import | leads | streams | seconds | engagements/s | by tenth (engagements/s) | last ÷ first |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |");
    for l in all {
        let i = &l.import;
        let tenths = i
            .tenths
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.0} | {tenths} | {:.2} × |",
            l.database, i.engagements, i.leads, i.streams, i.seconds, i.per_second, i.flat
        );
    }
    println!(
        "\nTimed calls one at a time, {CALLS} a measure on the same lead; \"log\": the lead's engagements before the \
         first; \"behind it\": those that sort after the call's (median)."
    );
}

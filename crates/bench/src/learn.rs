//! LearnPolicy over many leads: seeds a history whose truth is known (a
//! lead reaches SQL more often the more demos and pricing views it had,
//! and when its company is large), then times, in one run, a plain read of
//! the same leads with their logs and moves, the learning alone on leads
//! already in memory, and the whole job as the service runs it, with the
//! memory the job took.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use leadflow_domain::analytics::Period;
use leadflow_domain::analytics::learn::synthetic::{self, SyntheticLead, WRONG};
use leadflow_domain::analytics::learn::{self, LearnOutcome, LearnParams};
use leadflow_domain::lifecycle::CommandKind;
use leadflow_domain::{Engagement, ManualTransition, Policy, Timestamp};
use leadflow_engine::{BatchItem, CreateLead, Engine, LeadKey, LearnQuery, Request, SystemClock};
use leadflow_server::{Config, DEFAULT_WORKSPACE, DatabaseUrl};
use leadflow_store::testing::{Engine as Db, TestDatabase};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Leads to seed.
    #[arg(long, default_value_t = 100_000)]
    leads: usize,
    /// Concurrent seeders.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// SQLite instead of PostgreSQL.
    #[arg(long)]
    sqlite: bool,
    /// The precision the draft's MQL bar is calibrated for.
    #[arg(long, default_value_t = 0.7)]
    target_precision: f64,
    /// A history where small companies never reach SQL (a fit bar is
    /// worth choosing).
    #[arg(long)]
    small_never_convert: bool,
}

const DAY: i64 = 86_400;

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let db = TestDatabase::new(if args.sqlite { Db::Sqlite } else { Db::Postgres })
        .await
        .ok_or_else(|| anyhow::anyhow!("no PostgreSQL (set LEADFLOW_TEST_POSTGRES_URL)"))?;
    let config = Config {
        database_url: DatabaseUrl::new(db.url.clone()),
        max_connections: 16,
        ..Config::default()
    };
    let engine = leadflow_server::open_engine(&config, Arc::new(SystemClock)).await?;
    let req = Request::new(DEFAULT_WORKSPACE);
    let version = engine.create_policy_version(&req, WRONG).await?.version;
    engine.activate_policy(&req, version).await?;

    // Captured over 100 days, the last 100 days before now: every outcome
    // (40 days after capture) is in the past.
    let now = engine.now().as_micros() / 1_000_000;
    let start = now - 200 * DAY;
    let started = Instant::now();
    let mut seeders = Vec::new();
    let mut history = synthetic::history(2026, args.leads);
    if args.small_never_convert {
        history = synthetic::small_never_convert(history);
    }
    for chunk in history.chunks(args.leads.div_ceil(args.writers.max(1)).max(1)) {
        let engine = engine.clone();
        let chunk = chunk.to_vec();
        seeders.push(tokio::spawn(async move { seed(&engine, start, chunk).await }));
    }
    let mut positives = 0;
    for s in seeders {
        positives += s.await??;
    }
    let seeding = started.elapsed().as_secs_f64();
    println!(
        "seeded {} leads ({positives} reached SQL) in {seeding:.1} s ({:.0} leads/s)",
        args.leads,
        args.leads as f64 / seeding
    );

    let period = Period {
        start: Timestamp::from_secs(start),
        end: Timestamp::from_secs(now),
    };
    let params = LearnParams {
        outcome: LearnOutcome::Sql,
        model: 0,
        as_of: engine.now(),
        target_precision: Some(args.target_precision),
        choose_fit: false,
    };
    // Baseline: the same pages the job reads, the labelled leads kept.
    let store = leadflow_store::Store::connect(&db.url, &leadflow_store::StoreOptions::default()).await?;
    let started = Instant::now();
    let mut kept = Vec::new();
    let mut read = 0;
    let mut after = None;
    loop {
        let (page, next) = store
            .evidence(DEFAULT_WORKSPACE, period, after.as_ref(), 1_000, false)
            .await?;
        read += page.len();
        kept.extend(
            page.into_iter()
                .filter(|e| learn::labelled(e, params.outcome, params.as_of).is_some()),
        );
        match next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    let reading = started.elapsed().as_secs_f64();

    // The learning alone, on the leads in memory.
    let base = Policy::from_toml(WRONG).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let started = Instant::now();
    let report = learn::learn(WRONG, &base, &kept, &params)?;
    let fitting = started.elapsed().as_secs_f64();
    // … choosing the fit bar too.
    let choosing = LearnParams {
        choose_fit: true,
        ..params.clone()
    };
    let started = Instant::now();
    let chosen = learn::learn(WRONG, &base, &kept, &choosing)?;
    let fitting_chosen = started.elapsed().as_secs_f64();
    drop(kept);

    // The whole job, as a replica's worker runs it.
    let before = crate::cpu::resident_mib(std::process::id()).unwrap_or(0.0);
    // Resets VmHWM to the current resident size (Linux ≥ 4.0).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let started = Instant::now();
    let job = engine
        .start_learning(
            &req,
            &LearnQuery {
                period,
                outcome: LearnOutcome::Sql,
                base_version: None,
                model: None,
                target_precision: Some(args.target_precision),
                choose_fit: false,
            },
        )
        .await?;
    anyhow::ensure!(engine.run_learning("bench").await?, "the job was not taken");
    let whole = started.elapsed().as_secs_f64();
    let peak = crate::cpu::peak_mib(std::process::id()).unwrap_or(0.0);
    let done = engine.learn_job(DEFAULT_WORKSPACE, job.id).await?;
    let learned = done
        .report
        .ok_or_else(|| anyhow::anyhow!("the job ended without a report: {:?}", done.error))?;
    anyhow::ensure!(
        learned.draft_source == report.draft_source,
        "the job's draft differs from the learning's alone"
    );

    println!("| measure | leads | seconds | leads/s |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| read leads, logs and moves (baseline) | {read} | {reading:.2} | {:.0} |",
        read as f64 / reading
    );
    println!(
        "| learning alone (fit, {} bootstrap rounds, draft, back-test) | {} | {fitting:.2} | {:.0} |",
        learn::ROUNDS,
        report.outcomes,
        report.outcomes as f64 / fitting
    );
    println!(
        "| learning alone, choosing the fit bar too | {} | {fitting_chosen:.2} | {:.0} |",
        chosen.outcomes,
        chosen.outcomes as f64 / fitting_chosen
    );
    println!(
        "| LearnPolicy job, whole | {} | {whole:.2} | {:.0} |",
        done.total,
        done.total as f64 / whole
    );
    println!(
        "job / (read + learning alone): {:.2}×; memory {before:.0} MiB before the job, peak {}",
        whole / (reading + fitting),
        if reset {
            format!("{peak:.0} MiB during it (+{:.0} MiB)", peak - before)
        } else {
            "unknown (no /proc/self/clear_refs)".to_owned()
        }
    );
    let figures = |r: &learn::LearnReport| {
        format!(
            "fit_at_least {} (was {}), engagement_at_least {} (was {}); training precision {:?}, recall {:?}; held-out AUC {:.3}, precision {:.3}, recall {:.3}",
            r.fit_at_least,
            r.base_fit_at_least.unwrap_or(r.fit_at_least),
            r.engagement_at_least,
            r.base_engagement_at_least,
            r.training_precision,
            r.training_recall,
            r.draft.auc,
            r.draft.precision,
            r.draft.recall
        )
    };
    println!("bars kept:  {}", figures(&report));
    println!(
        "bars chosen: {} ({:.2}× the time of the learning that keeps the fit bar)",
        figures(&chosen),
        fitting_chosen / fitting
    );
    let weight = |id: &str| {
        learned
            .rules
            .iter()
            .find(|r| r.rule_id == id)
            .map_or(f64::NAN, |r| r.weight)
    };
    println!(
        "weights: demo {:.2}, pricing {:.2}, newsletter {:.2}, blog {:.2}, big {:.2}; AUC on {} held-out leads: base {:.3}, draft {:.3}",
        weight("demo"),
        weight("pricing"),
        weight("newsletter"),
        weight("blog"),
        weight("big"),
        learned.held_out,
        learned.base.auc,
        learned.draft.auc
    );
    Ok(())
}

/// `leads`, each with its engagements and its outcome: promoted and
/// accepted (SQL), or disqualified. How many reached SQL.
async fn seed(engine: &Engine, start: i64, leads: Vec<SyntheticLead>) -> anyhow::Result<usize> {
    let req = Request::new(DEFAULT_WORKSPACE);
    let at = |days: f64| Timestamp::from_secs(start + (days * DAY as f64) as i64);
    let mut positives = 0;
    for lead in leads {
        let created = engine
            .create_lead(
                &req,
                &CreateLead {
                    profile: lead.profile,
                    captured_at: Some(at(lead.captured)),
                    ..CreateLead::default()
                },
            )
            .await?
            .lead
            .ok_or_else(|| anyhow::anyhow!("a created lead"))?;
        let key = LeadKey::Id(created.id);
        let items: Vec<BatchItem> = lead
            .engagements
            .iter()
            .map(|e| BatchItem {
                lead: key.clone(),
                engagement: Engagement {
                    event_id: e.event_id.clone(),
                    kind: e.kind.to_owned(),
                    channel: Some(e.channel.to_owned()),
                    properties: BTreeMap::new(),
                    occurred_at: at(e.day),
                },
                occurred_at_given: true,
            })
            .collect();
        if !items.is_empty() {
            engine.record_engagements(&req, &items).await?;
        }
        let decided = lead.captured + synthetic::OUTCOME_DAYS;
        let manual = |command, reason: Option<&str>, when: Timestamp| ManualTransition {
            command,
            reason: reason.map(str::to_owned),
            actor: None,
            deal: None,
            occurred_at: Some(when),
        };
        if lead.positive {
            positives += 1;
            // An MQL already (its engagement reached the bar) cannot be promoted.
            let _ = engine
                .transition(
                    &req,
                    &key,
                    &manual(CommandKind::Promote, Some("booth"), at(decided)),
                    None,
                )
                .await;
            let accepted = Timestamp::from_secs(at(decided).as_micros() / 1_000_000 + 60);
            engine
                .transition(&req, &key, &manual(CommandKind::Accept, None, accepted), None)
                .await?;
        } else {
            engine
                .transition(
                    &req,
                    &key,
                    &manual(CommandKind::Disqualify, Some("spam"), at(decided)),
                    None,
                )
                .await?;
        }
    }
    Ok(positives)
}

//! `leadflow-bench identify`: what `IdentifyLead` costs for an anonymous id
//! with many events (1,000 by default) beside one with 10, and what an
//! anonymous engagement costs beside a lead's, in the same database.
//!
//! Each id's events are page views and webinars spread over the 30 days
//! before now, recorded one call at a time under the anonymous id; each id
//! is then identified as a lead of its own, captured just before.

use std::sync::Arc;
use std::time::Instant;

use leadflow_domain::{Engagement, Span};
use leadflow_engine::{CreateLead, Engine, LeadKey, Request, SystemClock};
use leadflow_server::{Config, DEFAULT_POLICY, DEFAULT_WORKSPACE, DatabaseUrl};
use leadflow_store::testing::{Engine as Db, TestDatabase};

use crate::stats::percentile;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Anonymous events of each large id.
    #[arg(long, default_value_t = 1_000)]
    events: usize,
    /// Identifications measured of each size.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// On PostgreSQL (`LEADFLOW_TEST_POSTGRES_URL`) instead of SQLite.
    #[arg(long)]
    postgres: bool,
}

/// The `i`th of `n` engagements spread over the 30 days before now: page
/// views, every tenth a webinar.
pub(crate) fn event(engine: &Engine, id: String, i: usize, n: usize) -> Engagement {
    let back = Span::from_secs(i64::try_from((n - i) * 30 * 86_400 / (n + 1)).unwrap_or(0));
    Engagement {
        event_id: id,
        kind: if i.is_multiple_of(10) {
            "webinar_attended"
        } else {
            "page_viewed"
        }
        .to_owned(),
        channel: None,
        properties: [("path".to_owned(), format!("/docs/{}", i % 40))].into(),
        occurred_at: engine.now().saturating_sub(back),
    }
}

/// Records `n` events under `visitor`, one call each: their microseconds.
async fn visits(engine: &Engine, req: &Request, visitor: &str, n: usize) -> anyhow::Result<Vec<u64>> {
    let key = LeadKey::Anonymous(visitor.to_owned());
    let mut micros = Vec::with_capacity(n);
    for i in 0..n {
        let e = event(engine, format!("{visitor}-{i}"), i, n);
        let started = Instant::now();
        engine.record_engagement(req, &key, &e, true).await?;
        micros.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    Ok(micros)
}

/// A lead captured now, then identified as `visitor`: the identification's
/// microseconds.
async fn identify(engine: &Engine, req: &Request, visitor: &str, joined: usize) -> anyhow::Result<u64> {
    let lead = engine
        .create_lead(
            req,
            &CreateLead {
                profile: [
                    ("email".to_owned(), format!("{visitor}@bench.example")),
                    ("company".to_owned(), "Bench".to_owned()),
                ]
                .into(),
                ..CreateLead::default()
            },
        )
        .await?
        .lead
        .ok_or_else(|| anyhow::anyhow!("a created lead"))?;
    let started = Instant::now();
    let done = engine
        .identify_lead(req, &LeadKey::Id(lead.id), visitor, None)
        .await?;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    anyhow::ensure!(
        done.joined == joined as u64,
        "{} joined, {joined} sent",
        done.joined
    );
    Ok(micros)
}

/// An engine on a throwaway database (PostgreSQL's at
/// `LEADFLOW_TEST_POSTGRES_URL`, or SQLite) with the default policy active:
/// the database (dropped with it), the engine, a request of the default
/// workspace and the database's name.
pub(crate) async fn fresh_engine(
    postgres: bool,
) -> anyhow::Result<(TestDatabase, Engine, Request, &'static str)> {
    let (db, label) = if postgres {
        (Db::Postgres, "PostgreSQL")
    } else {
        (Db::Sqlite, "SQLite")
    };
    let database = TestDatabase::new(db)
        .await
        .ok_or_else(|| anyhow::anyhow!("no PostgreSQL (set LEADFLOW_TEST_POSTGRES_URL)"))?;
    let config = Config {
        database_url: DatabaseUrl::new(database.url.clone()),
        ..Config::default()
    };
    let engine = leadflow_server::open_engine(&config, Arc::new(SystemClock)).await?;
    let req = Request::new(DEFAULT_WORKSPACE);
    let version = engine.create_policy_version(&req, DEFAULT_POLICY).await?.version;
    engine.activate_policy(&req, version).await?;
    Ok((database, engine, req, label))
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let (_database, engine, req, label) = fresh_engine(args.postgres).await?;
    // A lead's own engagements, as the baseline of one recorded event.
    let own = engine
        .create_lead(
            &req,
            &CreateLead {
                profile: [("email".to_owned(), "own@bench.example".to_owned())].into(),
                ..CreateLead::default()
            },
        )
        .await?
        .lead
        .ok_or_else(|| anyhow::anyhow!("a created lead"))?;
    let mut lead_calls = Vec::new();
    for i in 0..200 {
        let e = event(&engine, format!("own-{i}"), i, 200);
        let started = Instant::now();
        engine
            .record_engagement(&req, &LeadKey::Id(own.id.clone()), &e, true)
            .await?;
        lead_calls.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    let (mut anonymous, mut small, mut large) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        let few = format!("small-{run}");
        visits(&engine, &req, &few, 10).await?;
        small.push(identify(&engine, &req, &few, 10).await?);
        let many = format!("large-{run}");
        anonymous.extend(visits(&engine, &req, &many, args.events).await?);
        large.push(identify(&engine, &req, &many, args.events).await?);
    }
    for v in [&mut lead_calls, &mut anonymous, &mut small, &mut large] {
        v.sort_unstable();
    }
    let ms = |v: &[u64], q: f64| percentile(v, q);
    println!("{label} (p50 / p90, ms)");
    println!("| what | time | against |");
    println!("| --- | ---: | ---: |");
    println!(
        "| an anonymous engagement | {:.2} / {:.2} | {:.2} × a lead's ({:.2}) |",
        ms(&anonymous, 0.5),
        ms(&anonymous, 0.9),
        ms(&anonymous, 0.5) / ms(&lead_calls, 0.5),
        ms(&lead_calls, 0.5)
    );
    println!(
        "| IdentifyLead, 10 events | {:.2} / {:.2} | |",
        ms(&small, 0.5),
        ms(&small, 0.9)
    );
    println!(
        "| IdentifyLead, {} events | {:.2} / {:.2} | {:.1} × 10 events |",
        args.events,
        ms(&large, 0.5),
        ms(&large, 0.9),
        ms(&large, 0.5) / ms(&small, 0.5)
    );
    engine.shutdown(std::time::Duration::from_secs(5)).await;
    Ok(())
}

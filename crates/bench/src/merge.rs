//! `leadflow-bench merge`: what `MergeLeads` and `UnmergeLead` cost for two
//! leads with many engagements each (10,000 by default) beside two with 10,
//! in the same database.
//!
//! Each lead's engagements are page views and webinars spread over the 30
//! days before now, recorded in batches; the two leads are then merged, and
//! the merge undone.

use std::time::Instant;

use leadflow_engine::{BatchItem, CreateLead, Engine, LeadKey, Request};

use crate::identify::event;
use crate::stats::percentile;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Engagements of each lead of the large pairs.
    #[arg(long, default_value_t = 10_000)]
    engagements: usize,
    /// Merges measured of each size.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// On PostgreSQL (`LEADFLOW_TEST_POSTGRES_URL`) instead of SQLite.
    #[arg(long)]
    postgres: bool,
}

/// A lead with `n` engagements: its id.
async fn lead_with(engine: &Engine, req: &Request, name: &str, n: usize) -> anyhow::Result<String> {
    let lead = engine
        .create_lead(
            req,
            &CreateLead {
                profile: [
                    ("email".to_owned(), format!("{name}@bench.example")),
                    ("company".to_owned(), "Bench".to_owned()),
                ]
                .into(),
                ..CreateLead::default()
            },
        )
        .await?
        .lead
        .ok_or_else(|| anyhow::anyhow!("a created lead"))?;
    let items: Vec<BatchItem> = (0..n)
        .map(|i| BatchItem {
            lead: LeadKey::Id(lead.id.clone()),
            engagement: event(engine, format!("{name}-{i}"), i, n),
            occurred_at_given: true,
        })
        .collect();
    for chunk in items.chunks(500) {
        engine.record_engagements(req, chunk).await?;
    }
    Ok(lead.id)
}

/// Two leads of `n` engagements each, merged then unmerged: the two
/// calls' microseconds.
async fn pair(engine: &Engine, req: &Request, name: &str, n: usize) -> anyhow::Result<(u64, u64)> {
    let survivor = lead_with(engine, req, &format!("{name}-s"), n).await?;
    let duplicate = lead_with(engine, req, &format!("{name}-d"), n).await?;
    let started = Instant::now();
    let merged = engine
        .merge_leads(req, &LeadKey::Id(survivor), &LeadKey::Id(duplicate.clone()), None)
        .await?;
    let merge = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    anyhow::ensure!(
        merged.engagements_moved == n as u64,
        "{} moved, {n} sent",
        merged.engagements_moved
    );
    let started = Instant::now();
    let unmerged = engine.unmerge_lead(req, &duplicate).await?;
    let unmerge = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    anyhow::ensure!(
        unmerged.engagements_returned == n as u64,
        "{} returned, {n} brought",
        unmerged.engagements_returned
    );
    Ok((merge, unmerge))
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let (_database, engine, req, label) = crate::identify::fresh_engine(args.postgres).await?;
    let (mut small, mut large) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for run in 0..args.runs {
        let (m, u) = pair(&engine, &req, &format!("small{run}"), 10).await?;
        small.0.push(m);
        small.1.push(u);
        let (m, u) = pair(&engine, &req, &format!("large{run}"), args.engagements).await?;
        large.0.push(m);
        large.1.push(u);
    }
    for v in [&mut small.0, &mut small.1, &mut large.0, &mut large.1] {
        v.sort_unstable();
    }
    let ms = |v: &[u64]| percentile(v, 0.5);
    println!("{label} (p50 of {} runs, ms)", args.runs);
    println!("| engagements of each lead | MergeLeads | UnmergeLead |");
    println!("| ---: | ---: | ---: |");
    println!("| 10 | {:.1} | {:.1} |", ms(&small.0), ms(&small.1));
    println!(
        "| {} | {:.1} ({:.0} × 10) | {:.1} ({:.0} × 10) |",
        args.engagements,
        ms(&large.0),
        ms(&large.0) / ms(&small.0),
        ms(&large.1),
        ms(&large.1) / ms(&small.1)
    );
    Ok(())
}

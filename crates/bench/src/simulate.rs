//! How long a dry run of a draft policy takes over N leads, beside the time
//! to merely read those leads and their logs.

use std::sync::Arc;
use std::time::Instant;

use leadflow_engine::{BatchItem, CreateLead, Draft, Engine, LeadKey, Request, SystemClock};
use leadflow_server::{Config, DEFAULT_POLICY, DEFAULT_WORKSPACE, DatabaseUrl};
use leadflow_store::testing::{Engine as Db, TestDatabase};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Leads to seed.
    #[arg(long, default_value_t = 100_000)]
    leads: usize,
    /// Engagements per lead.
    #[arg(long, default_value_t = 4)]
    engagements: usize,
    /// Concurrent seeders.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// sqlite instead of PostgreSQL.
    #[arg(long)]
    sqlite: bool,
}

const KINDS: [&str; 4] = [
    "page_viewed",
    "webinar_attended",
    "ebook_downloaded",
    "email_clicked",
];

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

    let started = Instant::now();
    let mut seeders = Vec::new();
    let per = args.leads.div_ceil(args.writers);
    for w in 0..args.writers {
        let engine = engine.clone();
        let (from, to) = (w * per, ((w + 1) * per).min(args.leads));
        let engagements = args.engagements;
        seeders.push(tokio::spawn(
            async move { seed(&engine, from, to, engagements).await },
        ));
    }
    for s in seeders {
        s.await??;
    }
    let seeding = started.elapsed().as_secs_f64();
    println!(
        "seeded {} leads with {} engagements each in {seeding:.1} s ({:.0} leads/s)",
        args.leads,
        args.engagements,
        args.leads as f64 / seeding
    );

    // Baseline: read every lead with its log, decide nothing (the store
    // on the same database, beside the engine).
    let store = leadflow_store::Store::connect(&db.url, &leadflow_store::StoreOptions::default()).await?;
    let started = Instant::now();
    let mut cursor = String::new();
    let mut read = 0;
    loop {
        let batch = store.leads_with_logs(DEFAULT_WORKSPACE, &cursor, 1_000).await?;
        let Some(last) = batch.last() else { break };
        cursor.clone_from(&last.0.id);
        read += batch.len();
    }
    let baseline = started.elapsed().as_secs_f64();

    let draft = DEFAULT_POLICY.replace("engagement_at_least = 60", "engagement_at_least = 20");
    let started = Instant::now();
    let sim = engine
        .simulate(DEFAULT_WORKSPACE, &Draft::Source(draft), None, None, 100)
        .await?;
    let simulated = started.elapsed().as_secs_f64();
    let counts = sim.counts.unwrap_or_default();
    println!("| measure | leads | seconds | leads/s |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| read leads and logs (baseline) | {read} | {baseline:.2} | {:.0} |",
        read as f64 / baseline
    );
    println!(
        "| SimulatePolicy, full count | {} | {simulated:.2} | {:.0} |",
        counts.leads,
        counts.leads as f64 / simulated
    );
    println!(
        "simulation / baseline: {:.2}×; {} movers, {} newly failing",
        simulated / baseline,
        counts.movers,
        counts.newly_failing
    );
    Ok(())
}

async fn seed(engine: &Engine, from: usize, to: usize, engagements: usize) -> anyhow::Result<()> {
    let req = Request::new(DEFAULT_WORKSPACE);
    let mut items = Vec::new();
    for i in from..to {
        let mut profile = std::collections::BTreeMap::new();
        profile.insert("email".to_owned(), format!("lead{i}@acme{}.com", i % 97));
        profile.insert("company".to_owned(), "Acme".to_owned());
        profile.insert(
            "title".to_owned(),
            if i % 3 == 0 { "VP Sales" } else { "Analyst" }.to_owned(),
        );
        profile.insert("company_size".to_owned(), (50 + i % 400).to_string());
        let lead = engine
            .create_lead(
                &req,
                &CreateLead {
                    profile,
                    ..CreateLead::default()
                },
            )
            .await?
            .lead
            .ok_or_else(|| anyhow::anyhow!("a created lead"))?;
        for k in 0..engagements {
            let now = engine.now();
            items.push(BatchItem {
                lead: LeadKey::Id(lead.id.clone()),
                engagement: leadflow_domain::Engagement {
                    event_id: format!("e{i}-{k}"),
                    kind: KINDS[(i + k) % KINDS.len()].to_owned(),
                    channel: None,
                    properties: std::collections::BTreeMap::new(),
                    occurred_at: now,
                },
                occurred_at_given: true,
            });
        }
        if items.len() >= 400 {
            engine.record_engagements(&req, &items).await?;
            items.clear();
        }
    }
    if !items.is_empty() {
        engine.record_engagements(&req, &items).await?;
    }
    Ok(())
}

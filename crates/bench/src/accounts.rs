//! `leadflow-bench accounts`: what an engagement costs a member of an
//! account with 10 members and of one with 10,000, beside the same
//! engagement to a lead without an account, in the same database: the
//! account's part must not grow with its members.
//!
//! Each size gets a database of its own (SQLite, or PostgreSQL with
//! `--postgres`) under the example policy with `[accounts]` (an MQA bar no
//! one reaches, so accounts are decided but never moved), seeded through
//! the engine itself: the members, each with an engagement, and leads on
//! free mail. Then engagements go, one call after another, alternately to a
//! member and to a free-mail lead.

use std::sync::Arc;
use std::time::Instant;

use leadflow_domain::Engagement;
use leadflow_engine::{CreateLead, Engine, LeadKey, Request, SystemClock};
use leadflow_server::{Config, DEFAULT_POLICY, DEFAULT_WORKSPACE, DatabaseUrl};
use leadflow_store::testing::{Engine as Db, TestDatabase};

use crate::stats::percentile;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Members of the large account (the small one has 10).
    #[arg(long, default_value_t = 10_000)]
    members: usize,
    /// Engagements measured of each kind, at each size.
    #[arg(long, default_value_t = 300)]
    engagements: usize,
    /// On PostgreSQL (`LEADFLOW_TEST_POSTGRES_URL`) instead of SQLite.
    #[arg(long)]
    postgres: bool,
}

/// The example with accounts: members engaged at 20, an MQA bar of a
/// million points (decided at every change, never reached).
fn policy() -> String {
    format!(
        "{DEFAULT_POLICY}\n[accounts]\nengaged_at_least = 20\n\n[stages.MQA]\nengagement_at_least = 1000000\n"
    )
}

fn engagement(id: String, kind: &str) -> Engagement {
    Engagement {
        event_id: id,
        kind: kind.to_owned(),
        channel: None,
        properties: Default::default(),
        occurred_at: leadflow_domain::Timestamp::EPOCH,
    }
}

/// Creates a lead at `email` and gives it one engagement; its id.
async fn seed(engine: &Engine, req: &Request, email: &str, i: usize) -> anyhow::Result<String> {
    let created = engine
        .create_lead(
            req,
            &CreateLead {
                profile: [
                    ("email".to_owned(), email.to_owned()),
                    ("company".to_owned(), "Big".to_owned()),
                    ("title".to_owned(), "Engineer".to_owned()),
                ]
                .into(),
                ..CreateLead::default()
            },
        )
        .await?;
    let id = created.lead.ok_or_else(|| anyhow::anyhow!("a created lead"))?.id;
    let mut e = engagement(format!("seed-{i}"), "webinar_attended");
    e.occurred_at = engine.now();
    engine
        .record_engagement(req, &LeadKey::Id(id.clone()), &e, false)
        .await?;
    Ok(id)
}

/// Per-call milliseconds of engagements to `leads` in turn.
async fn calls(
    engine: &Engine,
    req: &Request,
    leads: &[String],
    tag: &str,
    n: usize,
) -> anyhow::Result<Vec<u64>> {
    let mut micros = Vec::with_capacity(n);
    for i in 0..n {
        let mut e = engagement(format!("{tag}-{i}"), "page_viewed");
        e.occurred_at = engine.now();
        let key = LeadKey::Id(leads[i % leads.len()].clone());
        let started = Instant::now();
        engine.record_engagement(req, &key, &e, false).await?;
        micros.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    micros.sort_unstable();
    Ok(micros)
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let (db, label) = if args.postgres {
        (Db::Postgres, "PostgreSQL")
    } else {
        (Db::Sqlite, "SQLite")
    };
    println!(
        "{label}: one engagement at a time, {} of each kind per size (p50 / p90, ms)",
        args.engagements
    );
    println!("| members | to a member | to a lead without account | ratio (p50) |");
    println!("| ---: | ---: | ---: | ---: |");
    let mut firsts = Vec::new();
    for members in [10, args.members] {
        let database = TestDatabase::new(db)
            .await
            .ok_or_else(|| anyhow::anyhow!("no PostgreSQL (set LEADFLOW_TEST_POSTGRES_URL)"))?;
        let config = Config {
            database_url: DatabaseUrl::new(database.url.clone()),
            ..Config::default()
        };
        let engine = leadflow_server::open_engine(&config, Arc::new(SystemClock)).await?;
        let req = Request::new(DEFAULT_WORKSPACE);
        let version = engine.create_policy_version(&req, &policy()).await?.version;
        engine.activate_policy(&req, version).await?;
        let started = Instant::now();
        let mut in_account = Vec::with_capacity(members);
        for i in 0..members {
            in_account.push(seed(&engine, &req, &format!("m{i}@big.example"), i).await?);
        }
        let mut alone = Vec::new();
        for i in 0..args.engagements.min(100) {
            alone.push(seed(&engine, &req, &format!("solo{i}@gmail.com"), members + i).await?);
        }
        eprintln!(
            "seeded {members} members in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        if args.postgres {
            // As autovacuum would after a bulk load: the planner sees the
            // tables as they are.
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&database.url)
                .await?;
            sqlx::query("ANALYZE").execute(&pool).await?;
            pool.close().await;
        }
        // Warm both paths, then measure them interleaved in halves.
        calls(&engine, &req, &in_account, "warm-m", 20).await?;
        calls(&engine, &req, &alone, "warm-a", 20).await?;
        let half = args.engagements / 2;
        let mut member = calls(&engine, &req, &in_account, "m1", half).await?;
        let mut solo = calls(&engine, &req, &alone, "a1", half).await?;
        member.extend(calls(&engine, &req, &in_account, "m2", half).await?);
        solo.extend(calls(&engine, &req, &alone, "a2", half).await?);
        member.sort_unstable();
        solo.sort_unstable();
        let ms = |v: &[u64], q: f64| percentile(v, q);
        let (m50, s50) = (ms(&member, 0.5), ms(&solo, 0.5));
        println!(
            "| {members} | {m50:.2} / {:.2} | {s50:.2} / {:.2} | {:.2} |",
            ms(&member, 0.9),
            ms(&solo, 0.9),
            m50 / s50
        );
        firsts.push(m50);
        engine.shutdown(std::time::Duration::from_secs(5)).await;
    }
    if let [small, large] = firsts[..] {
        println!(
            "a member's engagement, {} members against 10: {:.2} ×",
            args.members,
            large / small
        );
    }
    Ok(())
}

//! How long a filtered `ListLeads` page takes over a million leads on
//! PostgreSQL: leads seeded in bulk from a few hundred states the domain
//! decided (the example policy, engagements over the last 90 days, so
//! their scores and search keys differ), then each form of search, beside
//! a plain read of a page by id.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use leadflow_domain::{Command, Context, Engagement, Policy, Span, Stage, Timestamp};
use leadflow_engine::{
    AttributeFilter, AttributeMatch, LeadFilter, LeadOrder, LeadQuery, ScoreColumn, ScoreRange, ScoreRef,
    SystemClock,
};
use leadflow_server::{Config, DEFAULT_POLICY, DEFAULT_WORKSPACE, DatabaseUrl};
use leadflow_store::testing::{Engine as Db, TestDatabase, stored_state};
use sqlx::postgres::PgPoolOptions;

use crate::stats::median_seconds;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Leads to seed.
    #[arg(long, default_value_t = 1_000_000)]
    leads: u64,
    /// Runs of each measurement; the median is reported.
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Keep the seeded database (its URL is printed), to look at plans.
    #[arg(long)]
    keep: bool,
}

/// Distinct decided states the leads are copies of.
const TEMPLATES: usize = 400;

/// One template lead: its state and what its row holds besides.
struct Template {
    stage: Stage,
    fit: f64,
    grade: String,
    engagement: f64,
    qualifying: f64,
    keys: Vec<leadflow_domain::lifecycle::SearchKeys>,
    packed: Vec<u8>,
    profile: String,
    entered_stage_at: i64,
}

/// A lead decided by the domain: a profile (one in three a poor fit), then
/// `i % 9` engagements over the last 90 days, some on the analytics add-on.
fn template(policy: &Policy, i: usize, now: Timestamp) -> anyhow::Result<Template> {
    let start = now.saturating_sub(Span::from_days(90));
    let mut profile = BTreeMap::from([
        ("email".to_owned(), format!("lead{i}@company{}.example", i % 37)),
        ("company".to_owned(), format!("Company {}", i % 37)),
    ]);
    if !i.is_multiple_of(3) {
        profile.insert("title".to_owned(), "VP Engineering".to_owned());
        profile.insert("company_size".to_owned(), "250".to_owned());
        profile.insert("industry".to_owned(), "software".to_owned());
    }
    let ctx = Context { now };
    let mut lead = leadflow_domain::capture(policy, profile, Some(start), &ctx)?.lead;
    let kinds = [
        "trial_started",
        "webinar_attended",
        "ebook_downloaded",
        "page_viewed",
    ];
    let hours = i64::try_from(i * 7919 % (80 * 24)).unwrap_or(0);
    let mut log = Vec::new();
    for n in 0..i % 9 {
        let mut properties = BTreeMap::new();
        if n % 3 == 1 {
            properties.insert("product".to_owned(), "analytics".to_owned());
        }
        let e = Engagement {
            event_id: format!("t{i}-{n}"),
            kind: kinds[(i + n) % kinds.len()].to_owned(),
            channel: None,
            properties,
            occurred_at: start.saturating_add(Span::from_hours(hours + i64::try_from(n).unwrap_or(0) * 20)),
        };
        lead = leadflow_domain::decide(
            policy,
            &lead,
            Command::RecordEngagement(e.clone()),
            &ctx,
            Some(&log),
        )?
        .lead;
        log.push(e);
    }
    let scores = lead.scores_at(policy, now);
    let keys = lead.search_keys(policy);
    let (packed, profile) = stored_state(&lead)?;
    Ok(Template {
        stage: lead.stage,
        fit: scores.fit,
        grade: scores.grade,
        engagement: scores.engagement,
        qualifying: scores.qualifying_engagement,
        keys,
        packed,
        profile,
        entered_stage_at: lead.entered_stage_at.as_micros(),
    })
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let database = TestDatabase::new(Db::Postgres)
        .await
        .ok_or_else(|| anyhow::anyhow!("no PostgreSQL (set LEADFLOW_TEST_POSTGRES_URL)"))?;
    let config = Config {
        database_url: DatabaseUrl::new(database.url.clone()),
        ..Config::default()
    };
    let engine = leadflow_server::open_engine(&config, Arc::new(SystemClock)).await?;
    let now = engine.now();
    let policy = Policy::from_toml(DEFAULT_POLICY).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&database.url)
        .await?;
    let started = Instant::now();
    let templates: Vec<Template> = (0..TEMPLATES)
        .map(|i| template(&policy, i, now))
        .collect::<anyhow::Result<_>>()?;
    sqlx::raw_sql(
        "CREATE TEMPORARY TABLE templates (k BIGINT, stage TEXT, fit DOUBLE PRECISION, grade TEXT, \
         engagement DOUBLE PRECISION, qualifying DOUBLE PRECISION, engagement_key DOUBLE PRECISION, \
         qualifying_key DOUBLE PRECISION, a_fit DOUBLE PRECISION, a_engagement_key DOUBLE PRECISION, \
         a_qualifying_key DOUBLE PRECISION, packed BYTEA, profile TEXT, entered BIGINT)",
    )
    .execute(&pool)
    .await?;
    for (k, t) in templates.iter().enumerate() {
        let (default, analytics) = (&t.keys[0], &t.keys[1]);
        sqlx::query(
            "INSERT INTO templates VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(i64::try_from(k)?)
        .bind(t.stage.as_str())
        .bind(t.fit)
        .bind(&t.grade)
        .bind(t.engagement)
        .bind(t.qualifying)
        .bind(default.engagement)
        .bind(default.qualifying)
        .bind(analytics.fit)
        .bind(analytics.engagement)
        .bind(analytics.qualifying)
        .bind(&t.packed)
        .bind(&t.profile)
        .bind(t.entered_stage_at)
        .execute(&pool)
        .await?;
    }
    let spacing = Span::from_days(365).as_micros() / i64::try_from(args.leads.max(1))?;
    let base = now.saturating_sub(Span::from_days(365)).as_micros();
    let n = i64::try_from(args.leads)? - 1;
    let ws = DEFAULT_WORKSPACE;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO leads (workspace_id, id, stage, version, policy_version, fit, engagement, \
         qualifying_engagement, grade, state, captured_at, entered_stage_at, updated_at, history_len, \
         packed_state, profile, engagement_key, qualifying_key) \
         SELECT '{ws}', 'lead-' || lpad(g::text, 8, '0'), t.stage, 1, 1, t.fit, t.engagement, t.qualifying, \
         t.grade, '', {base} + g * {spacing}, t.entered, {base} + g * {spacing}, 0, t.packed, t.profile, \
         t.engagement_key, t.qualifying_key \
         FROM generate_series(CAST(0 AS BIGINT), {n}) g JOIN templates t ON t.k = g % {TEMPLATES}"
    )))
    .execute(&pool)
    .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO lead_scores (workspace_id, model, lead_id, fit, engagement_key, qualifying_key) \
         SELECT '{ws}', 'analytics', 'lead-' || lpad(g::text, 8, '0'), t.a_fit, t.a_engagement_key, \
         t.a_qualifying_key FROM generate_series(CAST(0 AS BIGINT), {n}) g JOIN templates t ON t.k = g % {TEMPLATES}"
    )))
    .execute(&pool)
    .await?;
    sqlx::raw_sql("ANALYZE").execute(&pool).await?;
    eprintln!(
        "PostgreSQL: seeded {} leads from {TEMPLATES} states in {:.1} s",
        args.leads,
        started.elapsed().as_secs_f64()
    );

    let baseline = median_seconds(args.runs, || async {
        sqlx::query("SELECT * FROM leads WHERE workspace_id = $1 ORDER BY id LIMIT 51")
            .bind(ws)
            .fetch_all(&pool)
            .await?;
        Ok(())
    })
    .await?;
    println!(
        "| search (PostgreSQL, {} leads, page of 50) | indexed | leads on the page | median | plain page by id (median) | ratio |",
        args.leads
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    let qualifying = ScoreRef {
        model: None,
        column: ScoreColumn::Qualifying,
    };
    let week = now.saturating_sub(Span::from_days(7));
    let cases: Vec<(&str, bool, LeadFilter, LeadOrder, bool)> = vec![
        (
            "qualifying ≥ 60, by that score, highest first",
            true,
            LeadFilter {
                scores: vec![ScoreRange {
                    score: qualifying.clone(),
                    at_least: Some(60.0),
                    at_most: None,
                }],
                ..LeadFilter::default()
            },
            LeadOrder::Score(qualifying.clone()),
            true,
        ),
        (
            "qualifying between 20 and 40, by id",
            true,
            LeadFilter {
                scores: vec![ScoreRange {
                    score: qualifying.clone(),
                    at_least: Some(20.0),
                    at_most: Some(40.0),
                }],
                ..LeadFilter::default()
            },
            LeadOrder::Id,
            false,
        ),
        (
            "analytics engagement ≥ 5 (another model)",
            true,
            LeadFilter {
                scores: vec![ScoreRange {
                    score: ScoreRef {
                        model: Some("analytics".to_owned()),
                        column: ScoreColumn::Engagement,
                    },
                    at_least: Some(5.0),
                    at_most: None,
                }],
                ..LeadFilter::default()
            },
            LeadOrder::Id,
            false,
        ),
        (
            "stage MQL, by stage entry, latest first",
            true,
            LeadFilter {
                stages: vec![Stage::Mql],
                ..LeadFilter::default()
            },
            LeadOrder::EnteredStage,
            true,
        ),
        (
            "captured in the last 7 days, by capture",
            true,
            LeadFilter {
                captured: (Some(week), None),
                ..LeadFilter::default()
            },
            LeadOrder::Captured,
            false,
        ),
        (
            "email prefix (scanned, checked lead by lead)",
            false,
            LeadFilter {
                attributes: vec![AttributeFilter {
                    attribute: "email".to_owned(),
                    matches: AttributeMatch::Prefix("lead7@".to_owned()),
                }],
                ..LeadFilter::default()
            },
            LeadOrder::Id,
            false,
        ),
    ];
    for (name, indexed, filter, order, descending) in cases {
        let query = LeadQuery {
            filter,
            order,
            descending,
            after: None,
            page_size: 50,
        };
        let found = std::cell::Cell::new(0);
        let seconds = median_seconds(args.runs, || async {
            found.set(engine.search_leads(ws, &query).await?.leads.len());
            Ok(())
        })
        .await?;
        let found = found.get();
        println!(
            "| {name} | {} | {found} | {:.1} ms | {:.2} ms | {:.1}× |",
            if indexed { "yes" } else { "no" },
            seconds * 1e3,
            baseline * 1e3,
            seconds / baseline
        );
    }
    if args.keep {
        eprintln!("kept {}", database.url);
        std::mem::forget(database);
    }
    drop(engine);
    Ok(())
}

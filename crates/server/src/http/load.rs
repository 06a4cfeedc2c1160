//! What a page shows, read from the engine for one workspace: the same
//! calls `GetFunnel`, `Calibrate`, `GetLearnReport` and the transition
//! listing make, so the page cannot show other numbers than the API
//! answers.

use leadflow_domain::analytics::Attribution;
use leadflow_domain::analytics::evidence::Calibration;
use leadflow_domain::analytics::funnel::{Funnel, Grouping, Query as FunnelQuery};
use leadflow_engine::{CalibrationQuery, Engine, EngineError, LearnJob, TransitionView};

/// Transitions in the live tail.
const TAIL: u64 = 20;
/// Attribution groups on the page (the rest are "(other)").
const ATTRIBUTION_TOP: usize = 10;

/// The dashboard's data.
#[derive(Debug)]
pub(super) struct Dashboard {
    pub(super) funnel: Funnel,
    /// Every source channel seen in the period, for the filter's choices,
    /// whatever channel the page is narrowed to.
    pub(super) channels: Vec<String>,
    /// None when it cannot be made now: its section says so, the rest of
    /// the page stands.
    pub(super) calibration: Option<Calibration>,
    /// The workspace's last learning report (None: none yet, or it cannot
    /// be read now).
    pub(super) learning: Option<LearnJob>,
    pub(super) tail: Vec<TransitionView>,
    /// The top groups by an engagement property, when asked for.
    pub(super) attribution: Option<(Attribution, Funnel)>,
    /// By owner, with each owner's handoff.
    pub(super) owners: Funnel,
}

pub(super) async fn dashboard(
    engine: &Engine,
    ws: &str,
    query: &FunnelQuery,
    by: Option<Attribution>,
) -> Result<Dashboard, EngineError> {
    let funnel = engine.funnel(ws, query).await?;
    let attribution = match by {
        None => None,
        Some(by) => {
            let grouped = FunnelQuery {
                attribution: Some(by.clone()),
                top: ATTRIBUTION_TOP,
                ..query.clone()
            };
            Some((by, engine.funnel(ws, &grouped).await?))
        }
    };
    let by_channel = engine
        .funnel(
            ws,
            &FunnelQuery {
                grouping: Grouping::SourceChannel,
                source_channel: None,
                ..query.clone()
            },
        )
        .await?;
    let owners = engine
        .funnel(
            ws,
            &FunnelQuery {
                grouping: Grouping::Owner,
                ..query.clone()
            },
        )
        .await?;
    let calibration = engine
        .calibrate(
            ws,
            &CalibrationQuery {
                period: query.period,
                policy_version: None,
                target_precision: None,
                step: 5.0,
                max_cutoff: None,
                model: None,
                level: None,
            },
        )
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "no calibration for the dashboard"))
        .ok()
        .map(|c| c.calibration);
    let learning = engine
        .last_learn_report(ws)
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "no learning report for the dashboard"))
        .ok()
        .flatten();
    let tail = tail(engine, ws).await?;
    Ok(Dashboard {
        funnel,
        channels: by_channel.groups.into_iter().map(|g| g.key).collect(),
        calibration,
        learning,
        tail,
        owners,
        attribution,
    })
}

/// The latest transitions, newest first.
pub(super) async fn tail(engine: &Engine, ws: &str) -> Result<Vec<TransitionView>, EngineError> {
    engine.latest_transitions(ws, TAIL).await
}

/// Accounts on the account view.
const TOP_ACCOUNTS: u64 = 50;

/// The account view's data.
#[derive(Debug)]
pub(super) struct Accounts {
    pub(super) counts: Vec<(leadflow_domain::AccountStage, i64)>,
    /// Highest score first.
    pub(super) top: Vec<leadflow_engine::AccountView>,
    /// The personas `[stages.MQA]` requires; `None` without `[accounts]`.
    pub(super) required: Option<Vec<String>>,
}

pub(super) async fn accounts(engine: &Engine, ws: &str) -> Result<Accounts, EngineError> {
    let counts = engine.account_stage_counts(ws).await?;
    let top = engine
        .list_accounts(
            ws,
            &leadflow_engine::AccountListing {
                by_score: true,
                limit: TOP_ACCOUNTS,
                ..Default::default()
            },
        )
        .await?
        .accounts;
    let required = engine.mqa_personas(ws).await?;
    Ok(Accounts {
        counts,
        top,
        required,
    })
}

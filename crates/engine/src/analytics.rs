//! Analytics: the funnel of a period, rule lift and threshold calibration,
//! computed by the domain from what the store reads.

use std::sync::Arc;

use crate::views::{PolicyVersion, TransitionView};
use leadflow_domain::Policy;
use leadflow_domain::analytics::Attribution;
use leadflow_domain::analytics::Period;
use leadflow_domain::analytics::evidence::{
    self, Calibration, Evidence, OutcomeGroup, OutcomeTallies, RuleReport,
};
use leadflow_domain::analytics::funnel::{self, Funnel, Grouping, Query};

use crate::Engine;
use crate::error::EngineError;

/// Leads read at once for a rule report or a calibration: their logs are
/// replayed a page at a time, so memory does not grow with the period.
const EVIDENCE_PAGE: u64 = 500;

/// What to calibrate the MQL engagement threshold over.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationQuery {
    /// Leads captured in this period.
    pub period: Period,
    /// Scored by this version; the active one by default.
    pub policy_version: Option<i64>,
    /// Suggest the lowest cut-off with at least this precision; best F1 without.
    pub target_precision: Option<f64>,
    /// Cut-offs every `step` points from 0 …
    pub step: f64,
    /// … up to this one (default: the highest peak seen).
    pub max_cutoff: Option<f64>,
    /// The score model calibrated (a `[[model]]` id or `default`); `None`:
    /// the one the MQL stage reads.
    pub model: Option<String>,
    /// A level to calibrate instead of the MQL bar.
    pub level: Option<String>,
}

/// A calibration, the version it scored with, and that version's source
/// with the suggested threshold, ready for `SimulatePolicy`.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationResult {
    pub policy_version: i64,
    pub calibration: Calibration,
    pub draft_source: Option<String>,
    /// The model and level calibrated, by id (`None`: the MQL bar).
    pub model: String,
    pub level: Option<String>,
}

/// The engagement types that count as a sales touch: those the policy's
/// SQL SLAs wait for (`until`).
fn touch_types(policy: &Policy) -> Vec<String> {
    let mut types: Vec<String> = policy
        .slas
        .iter()
        .filter(|s| s.stage == leadflow_domain::Stage::Sql)
        .filter_map(|s| match &s.kind {
            leadflow_domain::policy::SlaKind::Until(t) => Some(t.clone()),
            leadflow_domain::policy::SlaKind::Idle => None,
        })
        .collect();
    types.sort();
    types.dedup();
    types
}

impl Engine {
    /// The funnel of `query.period` in `ws`; zeros for a quiet period or an
    /// empty workspace.
    #[tracing::instrument(name = "engine.funnel", skip_all)]
    pub async fn funnel(&self, ws: &str, query: &Query) -> Result<Funnel, EngineError> {
        let channels = query.grouping == Grouping::SourceChannel || query.source_channel.is_some();
        let touches = query.attribution.as_ref().map(|a| a.property.as_str());
        let active = match self.store.active_policy_version(ws).await? {
            Some(version) => Some(self.policy_of(ws, version).await?),
            None => None,
        };
        let by_owner = matches!(query.grouping, Grouping::Owner | Grouping::Team);
        let mut query = query.clone();
        let mut names = std::collections::BTreeMap::new();
        let owners_read = if by_owner {
            // Read a page at a time, on the reader.
            let mut after: Option<String> = None;
            loop {
                let (page, more) = self.store.owners(ws, None, after.as_deref(), 500).await?;
                after = page.last().map(|o| o.owner.id.clone());
                for o in page {
                    names.insert(o.owner.id.clone(), o.owner.display_name);
                    query.teams.insert(o.owner.id, o.owner.teams);
                }
                if !more || after.is_none() {
                    break;
                }
            }
            Some(leadflow_store::OwnersRead {
                touch_types: active.as_deref().map(touch_types).unwrap_or_default(),
            })
        } else {
            None
        };
        let histories = self
            .store
            .funnel_histories(ws, query.period, channels, touches, owners_read.as_ref())
            .await?;
        let mut funnel = funnel::funnel(&histories, &query);
        if query.grouping == Grouping::Owner {
            for h in funnel.groups.iter_mut().filter_map(|g| g.handoff.as_mut()) {
                h.display_name = names.get(&h.key).cloned().unwrap_or_default();
            }
        }
        if let Some(policy) = active {
            let order: Vec<String> = policy.mql.levels.iter().map(|l| l.id.clone()).collect();
            funnel.order_levels(&order);
        }
        Ok(funnel)
    }

    /// The workspace's latest `limit` transitions, newest first: stage
    /// history only, nothing personal.
    #[tracing::instrument(name = "engine.latest_transitions", skip_all)]
    pub async fn latest_transitions(&self, ws: &str, limit: u64) -> Result<Vec<TransitionView>, EngineError> {
        Ok(crate::views::transitions(
            self.store.latest_transitions(ws, limit).await?,
        ))
    }

    /// `f` over every lead captured in `period` and not erased, read
    /// [`EVIDENCE_PAGE`] at a time.
    async fn each_lead_captured(
        &self,
        ws: &str,
        period: Period,
        erased: bool,
        mut f: impl FnMut(&Evidence),
    ) -> Result<(), EngineError> {
        let mut after = None;
        loop {
            let (leads, next) = self
                .store
                .evidence(ws, period, after.as_ref(), EVIDENCE_PAGE, erased)
                .await?;
            leads.iter().for_each(&mut f);
            match next {
                Some(cursor) => after = Some(cursor),
                None => return Ok(()),
            }
        }
    }

    /// A version of the workspace's policy, the active one by default.
    pub(crate) async fn analysed_policy(
        &self,
        ws: &str,
        version: Option<i64>,
    ) -> Result<(PolicyVersion, Arc<Policy>), EngineError> {
        let record = match version {
            None => self.active_policy_version(ws).await?,
            Some(v) => self
                .store
                .policy(ws, v)
                .await?
                .map(PolicyVersion::from)
                .ok_or_else(|| EngineError::NotFound {
                    what: "policy version",
                    key: v.to_string(),
                })?,
        };
        let policy = match self.cached_policy(ws, record.version) {
            Some(p) => p,
            None => self.cache_policy(ws, record.version, &record.source)?,
        };
        Ok((record, policy))
    }

    /// How each rule of a policy version fired for the leads captured in
    /// `period`, by their outcome; with an attribution (and its top groups),
    /// their outcomes by it too (erased leads included there, as "(erased)").
    #[tracing::instrument(name = "engine.rule_report", skip_all)]
    pub async fn rule_report(
        &self,
        ws: &str,
        period: Period,
        version: Option<i64>,
        attribution: Option<(Attribution, usize)>,
    ) -> Result<(i64, RuleReport, Vec<OutcomeGroup>), EngineError> {
        let (record, policy) = self.analysed_policy(ws, version).await?;
        let mut tallies = evidence::RuleTallies::new(&policy);
        let (mut outcomes, top) = match attribution {
            Some((a, top)) => (Some(OutcomeTallies::new(a)), top),
            None => (None, 0),
        };
        self.each_lead_captured(ws, period, outcomes.is_some(), |lead| {
            tallies.add(&policy, lead);
            if let Some(o) = &mut outcomes {
                o.add(lead);
            }
        })
        .await?;
        let groups = outcomes.map(|o| o.report(top)).unwrap_or_default();
        Ok((record.version, tallies.report(&policy), groups))
    }

    /// Precision and recall of MQL engagement cut-offs over the leads
    /// captured in `query.period`, with a suggestion and its draft.
    #[tracing::instrument(name = "engine.calibrate", skip_all)]
    pub async fn calibrate(
        &self,
        ws: &str,
        query: &CalibrationQuery,
    ) -> Result<CalibrationResult, EngineError> {
        let (record, policy) = self.analysed_policy(ws, query.policy_version).await?;
        let target = calibration_target(&policy, query)?;
        let mut peaks = Vec::new();
        self.each_lead_captured(ws, query.period, false, |lead| {
            peaks.push(evidence::Peak::of(&policy, target, lead));
        })
        .await?;
        let cutoffs = evidence::Cutoffs {
            step: query.step,
            max: query.max_cutoff,
        };
        let calibration = evidence::calibrate_peaks(&peaks, cutoffs, query.target_precision);
        let draft_source = calibration
            .suggested
            .as_ref()
            .and_then(|s| evidence::with_threshold(&record.source, &policy, target, s.cutoff));
        Ok(CalibrationResult {
            policy_version: record.version,
            calibration,
            draft_source,
            model: policy.models[target.model].id.clone(),
            level: target.level.map(|i| policy.mql.levels[i].id.clone()),
        })
    }
}

fn listed(ids: Vec<&str>) -> String {
    if ids.is_empty() {
        "none".to_owned()
    } else {
        ids.join(", ")
    }
}

/// The model `id` names in `policy`; `None`: the one the MQL stage reads.
pub(crate) fn model_index(policy: &Policy, id: Option<&str>) -> Result<usize, EngineError> {
    match id {
        None => Ok(policy.mql.model),
        Some(id) => policy.model_index(id).ok_or_else(|| {
            let ids = policy.models.iter().map(|m| m.id.as_str()).collect();
            EngineError::invalid(
                "UNKNOWN_MODEL",
                "model",
                format!("the policy has no model {id:?} (models: {})", listed(ids)),
            )
        }),
    }
}

/// The model and level a calibration names, in `policy`.
fn calibration_target(policy: &Policy, query: &CalibrationQuery) -> Result<evidence::Target, EngineError> {
    let model = model_index(policy, query.model.as_deref())?;
    let level = match query.level.as_deref() {
        None => None,
        Some(id) => {
            let index = policy.mql.levels.iter().position(|l| l.id == id).ok_or_else(|| {
                let ids = policy.mql.levels.iter().map(|l| l.id.as_str()).collect();
                EngineError::invalid(
                    "UNKNOWN_LEVEL",
                    "level",
                    format!("the policy has no MQL level {id:?} (levels: {})", listed(ids)),
                )
            })?;
            if model != policy.mql.model {
                return Err(EngineError::invalid(
                    "LEVEL_READS_ANOTHER_MODEL",
                    "model",
                    format!(
                        "levels read the model the MQL stage reads ({}), not {}",
                        policy.models[policy.mql.model].id, policy.models[model].id
                    ),
                ));
            }
            Some(index)
        }
    };
    Ok(evidence::Target { model, level })
}

//! A lead's state: where it stands, its scores and its pending timers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::guards::Fits;
use super::levels::level_index;
use crate::num::round6;
use crate::policy::Policy;
use crate::profile::Profile;
use crate::score::{ScoreState, fit_score};
use crate::stage::Stage;
use crate::time::Timestamp;
use crate::transition::Move;
use crate::workflow::{CrossingState, Timer};

/// Everything the domain needs to decide the next command for a lead. The
/// store keeps it; the scores in it are a cache of a replay of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub stage: Stage,
    pub profile: Profile,
    pub captured_at: Timestamp,
    pub entered_stage_at: Timestamp,
    pub last_transition_at: Timestamp,
    /// The move that entered the current stage, and its reason (a policy
    /// change re-plans the timers that move armed).
    pub entered_by: Move,
    pub entered_reason: Option<String>,
    /// The last backward move: the qualifying window starts after it.
    pub window_start: Option<Timestamp>,
    /// The score over the whole log.
    pub lifetime: ScoreState,
    /// The score over the qualifying window, which guards read.
    pub qualifying: ScoreState,
    /// Which side of each watched threshold the qualifying score was on.
    pub crossings: Vec<CrossingState>,
    /// The last instant the crossings were brought up to date.
    pub evaluated_at: Timestamp,
    /// The lead's pending durable timers by key, as its decisions left them
    /// (the store holds the same): a command looks for overdue timers only
    /// when one is due, and an unchanged timer is not written again.
    #[serde(default)]
    pub timers: BTreeMap<String, Timer>,
    /// The MQL level its last decision left it at (`[[stages.MQL.levels]]`
    /// id); decay may have lowered it since (`Scores::level` is the level at an instant).
    #[serde(default)]
    pub level: Option<String>,
    /// Level changes recorded so far (the last one's sequence).
    #[serde(default)]
    pub level_changes: u64,
}

/// The scores a lead shows at an instant: the default model's, its grade
/// and level, and every other model's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub fit: f64,
    pub grade: String,
    /// Over the whole log.
    pub engagement: f64,
    /// Over the qualifying window (what guards read).
    pub qualifying_engagement: f64,
    /// An MQL's level (a `[[stages.MQL.levels]]` id).
    #[serde(default)]
    pub level: Option<String>,
    /// The `[[model]]`s' scores by model id (the fields above are the
    /// default model's); empty for a policy without models.
    #[serde(default)]
    pub models: BTreeMap<String, ModelScores>,
}

/// One model's scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelScores {
    pub fit: f64,
    pub engagement: f64,
    pub qualifying_engagement: f64,
}

impl Scores {
    /// The scores of a lead in `stage` with these score states, each read at
    /// its instant and rounded to 6 decimals.
    pub(crate) fn read(
        policy: &Policy,
        stage: Stage,
        profile: &Profile,
        (lifetime, lifetime_at): (&ScoreState, Timestamp),
        (qualifying, qualifying_at): (&ScoreState, Timestamp),
    ) -> Self {
        // Every model once; a model without fit rules shares the default's fit.
        let default_fit = round6(fit_score(policy, 0, profile));
        let mut models: Vec<ModelScores> = (0..policy.models.len())
            .map(|m| ModelScores {
                fit: if policy.fit_model(m) == 0 {
                    default_fit
                } else {
                    round6(fit_score(policy, m, profile))
                },
                engagement: round6(lifetime.value_at(policy, m, lifetime_at)),
                qualifying_engagement: round6(qualifying.value_at(policy, m, qualifying_at)),
            })
            .collect();
        let mql = &models[policy.mql.model];
        let fits = Fits {
            fit: mql.fit,
            grade: default_fit,
        };
        let level = level_index(policy, stage, fits, mql.qualifying_engagement)
            .map(|i| policy.mql.levels[i].id.clone());
        let others = models.split_off(1);
        let default = &models[0];
        Self {
            grade: policy.grade(default.fit).to_owned(),
            fit: default.fit,
            engagement: default.engagement,
            qualifying_engagement: default.qualifying_engagement,
            level,
            models: policy.models[1..]
                .iter()
                .map(|m| m.id.clone())
                .zip(others)
                .collect(),
        }
    }
}

/// What lead search indexes of one model's scores: its fit (which does not
/// decay) and the search keys of its engagement scores
/// ([`ScoreState::search_key`]), which order leads as the scores do at
/// any instant.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchKeys {
    pub model: String,
    pub fit: f64,
    pub engagement: f64,
    pub qualifying: f64,
}

impl Scores {
    /// The fit and qualifying engagement of the model the MQL stage reads
    /// (the ones its guards compare).
    pub fn mql_model(&self, policy: &Policy) -> (f64, f64) {
        match policy.mql.model {
            0 => (self.fit, self.qualifying_engagement),
            m => self
                .models
                .get(&policy.models[m].id)
                .map_or((self.fit, self.qualifying_engagement), |s| {
                    (s.fit, s.qualifying_engagement)
                }),
        }
    }
}

impl Lead {
    /// Every model's search keys, the default model's first.
    pub fn search_keys(&self, policy: &Policy) -> Vec<SearchKeys> {
        policy
            .models
            .iter()
            .enumerate()
            .map(|(m, model)| SearchKeys {
                model: model.id.clone(),
                fit: round6(fit_score(policy, m, &self.profile)),
                engagement: self.lifetime.search_key(policy, m),
                qualifying: self.qualifying.search_key(policy, m),
            })
            .collect()
    }

    /// The scores at `t`, each rounded to 6 decimals. Accurate for `t` at or
    /// after the last event applied (`ScoreState::last_at`).
    pub fn scores_at(&self, policy: &Policy, t: Timestamp) -> Scores {
        Scores::read(
            policy,
            self.stage,
            &self.profile,
            (&self.lifetime, t.max(self.lifetime.last_at().unwrap_or(t))),
            (&self.qualifying, t.max(self.qualifying.last_at().unwrap_or(t))),
        )
    }

    /// When the soonest of the lead's timers is due.
    pub fn next_timer_due(&self) -> Option<Timestamp> {
        self.timers.values().map(|t| t.due_at).min()
    }

    /// When the lead's last engagement occurred.
    pub fn last_engagement_at(&self) -> Option<Timestamp> {
        self.lifetime.last_at()
    }
}

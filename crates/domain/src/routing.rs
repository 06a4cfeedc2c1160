//! Routing: who of a team's owners gets a lead, decided from the state
//! alone (the owners, their open leads, the team's cursor), so that every
//! replica given the same state makes the same choice, and explained.
//!
//! An owner is a sales rep or a queue: an id, a display name, its teams
//! and territories, a capacity (open leads at most), a weight and whether
//! it is available. A choice among a team's owners skips those out of
//! office, at capacity or excluded (the owners a lead had in its current
//! stay, when an SLA sends it back), then applies the team's strategy.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::error::{DomainError, FieldViolation};

/// Characters an owner's id may have (as every key of the API).
pub const MAX_OWNER_ID_CHARS: usize = 128;
/// Characters of a display name, a team or a territory at most.
pub const MAX_LABEL_CHARS: usize = 200;
/// Teams, and territories, an owner has at most.
pub const MAX_LABELS: usize = 50;
/// The largest weight.
pub const MAX_WEIGHT: u32 = 1_000;

/// A sales rep or a queue, as leads are routed to it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub id: String,
    pub display_name: String,
    pub teams: Vec<String>,
    /// Free labels matched against lead or account attributes.
    pub territories: Vec<String>,
    /// Open leads at most; `None`: no limit.
    pub capacity: Option<u32>,
    /// Its share under `weighted`: from 1 to [`MAX_WEIGHT`].
    pub weight: u32,
    /// In office.
    pub available: bool,
}

impl Owner {
    /// The owner as kept: labels trimmed, each team and territory once,
    /// in order. Refused with every field at fault (`owner.<field>`).
    pub fn checked(mut self) -> Result<Self, DomainError> {
        let mut violations = Vec::new();
        self.id = self.id.trim().to_owned();
        if self.id.is_empty() {
            violations.push(FieldViolation::new("owner.id", "required"));
        } else if self.id.chars().count() > MAX_OWNER_ID_CHARS {
            violations.push(FieldViolation::new(
                "owner.id",
                format!("longer than {MAX_OWNER_ID_CHARS} characters"),
            ));
        }
        self.display_name = self.display_name.trim().to_owned();
        if self.display_name.is_empty() {
            violations.push(FieldViolation::new("owner.display_name", "required"));
        } else if self.display_name.chars().count() > MAX_LABEL_CHARS {
            violations.push(FieldViolation::new(
                "owner.display_name",
                format!("longer than {MAX_LABEL_CHARS} characters"),
            ));
        }
        for (field, labels) in [
            ("owner.teams", &mut self.teams),
            ("owner.territories", &mut self.territories),
        ] {
            let mut seen = BTreeSet::new();
            let mut kept = Vec::with_capacity(labels.len());
            for (i, label) in labels.iter().enumerate() {
                let label = label.trim();
                if label.is_empty() {
                    violations.push(FieldViolation::new(format!("{field}[{i}]"), "empty"));
                } else if label.chars().count() > MAX_LABEL_CHARS {
                    violations.push(FieldViolation::new(
                        format!("{field}[{i}]"),
                        format!("longer than {MAX_LABEL_CHARS} characters"),
                    ));
                } else if seen.insert(label.to_owned()) {
                    kept.push(label.to_owned());
                }
            }
            if kept.len() > MAX_LABELS {
                violations.push(FieldViolation::new(
                    field,
                    format!("{} labels; at most {MAX_LABELS}", kept.len()),
                ));
            }
            *labels = kept;
        }
        if !(1..=MAX_WEIGHT).contains(&self.weight) {
            violations.push(FieldViolation::new(
                "owner.weight",
                format!("{}: from 1 to {MAX_WEIGHT}", self.weight),
            ));
        }
        if violations.is_empty() {
            Ok(self)
        } else {
            Err(DomainError::InvalidArgument {
                kind: crate::error::InvalidKind::Field,
                violations,
            })
        }
    }

    pub fn in_team(&self, team: &str) -> bool {
        self.teams.iter().any(|t| t == team)
    }
}

/// How a team's lead goes to one of its owners.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Each in turn, in id order, after the last one given a lead.
    RoundRobin,
    /// In proportion to the owners' weights, spread evenly (smooth
    /// weighted round robin over the team's state).
    Weighted,
    /// The one with the fewest open leads; ties by id.
    LeastLoaded,
}

impl Strategy {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::Weighted => "weighted",
            Self::LeastLoaded => "least_loaded",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round_robin" => Ok(Self::RoundRobin),
            "weighted" => Ok(Self::Weighted),
            "least_loaded" => Ok(Self::LeastLoaded),
            other => Err(format!(
                "unknown strategy {other:?} (expected round_robin, weighted or least_loaded)"
            )),
        }
    }
}

/// What a team's choices leave for the next: the owner last given a lead
/// (round robin), and each owner's running weight (weighted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TeamCursor {
    pub last: Option<String>,
    pub running: BTreeMap<String, i64>,
}

/// Why an owner of the team was passed over, or that it was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Chosen,
    Unavailable,
    AtCapacity {
        open: u32,
        capacity: u32,
    },
    /// It had the lead before in this stay.
    Excluded,
    /// Eligible, but the strategy chose another.
    NotChosen,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chosen => f.write_str("chosen"),
            Self::Unavailable => f.write_str("out of office"),
            Self::AtCapacity { open, capacity } => write!(f, "at capacity, {open}/{capacity}"),
            Self::Excluded => f.write_str("had it before"),
            Self::NotChosen => f.write_str("not its turn"),
        }
    }
}

/// A choice among a team's owners, with every owner considered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub team: String,
    pub strategy: Strategy,
    /// `None`: no owner of the team is available under capacity.
    pub chosen: Option<String>,
    /// Each owner of the team, in id order, with its verdict.
    pub considered: Vec<(String, Verdict)>,
    /// The team's cursor after the choice (unchanged without one).
    pub cursor: TeamCursor,
}

impl Choice {
    /// "team emea round_robin: ana (at capacity, 5/5), ben (out of office)
    /// → chloe": the owners passed over, then the one chosen (or "no
    /// owner").
    pub fn explain(&self) -> String {
        let passed: Vec<String> = self
            .considered
            .iter()
            .filter(|(_, v)| !matches!(v, Verdict::Chosen | Verdict::NotChosen))
            .map(|(id, v)| format!("{id} ({v})"))
            .collect();
        let to = self.chosen.as_deref().unwrap_or("no owner");
        let head = format!("team {} {}", self.team, self.strategy.as_str());
        if passed.is_empty() {
            format!("{head}: {to}")
        } else {
            format!("{head}: {} → {to}", passed.join(", "))
        }
    }
}

/// Chooses among `owners` (any order; those of other teams are ignored)
/// the one of `team` to give a lead, by `strategy`, given each owner's open
/// leads (`open`, absent: none), the team's `cursor`, and the owners the
/// lead may not go back to (`excluded`). The same inputs give the same
/// choice.
pub fn choose(
    team: &str,
    strategy: Strategy,
    owners: &[Owner],
    open: &BTreeMap<String, u32>,
    cursor: &TeamCursor,
    excluded: &BTreeSet<String>,
) -> Choice {
    let mut members: Vec<&Owner> = owners.iter().filter(|o| o.in_team(team)).collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    members.dedup_by(|a, b| a.id == b.id);
    let load = |o: &Owner| open.get(&o.id).copied().unwrap_or(0);
    let mut considered: Vec<(String, Verdict)> = members
        .iter()
        .map(|o| {
            let verdict = if excluded.contains(&o.id) {
                Verdict::Excluded
            } else if !o.available {
                Verdict::Unavailable
            } else if let Some(capacity) = o.capacity.filter(|c| load(o) >= *c) {
                Verdict::AtCapacity {
                    open: load(o),
                    capacity,
                }
            } else {
                Verdict::NotChosen
            };
            (o.id.clone(), verdict)
        })
        .collect();
    let eligible: Vec<&Owner> = members
        .iter()
        .zip(&considered)
        .filter(|(_, (_, v))| *v == Verdict::NotChosen)
        .map(|(o, _)| *o)
        .collect();
    let mut next = cursor.clone();
    let chosen: Option<&Owner> = match strategy {
        _ if eligible.is_empty() => None,
        Strategy::RoundRobin => {
            let after = cursor.last.as_deref();
            eligible
                .iter()
                .find(|o| after.is_some_and(|last| o.id.as_str() > last))
                .or_else(|| eligible.first())
                .copied()
        }
        Strategy::LeastLoaded => eligible.iter().min_by_key(|o| (load(o), o.id.clone())).copied(),
        Strategy::Weighted => {
            // Smooth weighted round robin: each eligible owner gains its
            // weight, the highest running total wins and pays the sum.
            let total: i64 = eligible.iter().map(|o| i64::from(o.weight)).sum();
            for o in &eligible {
                *next.running.entry(o.id.clone()).or_insert(0) += i64::from(o.weight);
            }
            let winner = eligible
                .iter()
                .max_by(|a, b| {
                    let ra = next.running.get(&a.id).copied().unwrap_or(0);
                    let rb = next.running.get(&b.id).copied().unwrap_or(0);
                    ra.cmp(&rb).then_with(|| b.id.cmp(&a.id))
                })
                .copied();
            if let Some(w) = winner {
                *next.running.entry(w.id.clone()).or_insert(0) -= total;
            }
            // Owners that left the team (or the workspace) leave no state.
            next.running.retain(|id, _| members.iter().any(|o| o.id == *id));
            winner
        }
    };
    if let Some(owner) = chosen {
        next.last = Some(owner.id.clone());
        if let Some((_, v)) = considered.iter_mut().find(|(id, _)| *id == owner.id) {
            *v = Verdict::Chosen;
        }
    }
    Choice {
        team: team.to_owned(),
        strategy,
        chosen: chosen.map(|o| o.id.clone()),
        considered,
        cursor: next,
    }
}

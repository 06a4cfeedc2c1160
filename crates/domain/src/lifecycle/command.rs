//! What goes into a decision and what comes out: the commands, the wall
//! clock, the decision; and the checks a command's own fields must pass
//! before the lead's state is read.

use std::collections::BTreeMap;

use super::lead::Lead;
use super::table::{Edge, manual_edge};
use crate::engagement::Engagement;
use crate::error::{DomainError, FieldViolation, InvalidKind};
use crate::policy::Policy;
use crate::profile::Profile;
use crate::stage::Stage;
use crate::time::{Span, Timestamp};
use crate::transition::{CommandKind, Deal, TransitionRecord};
use crate::workflow::{Event, Timer, TimerChange};

/// How far ahead of the wall clock an instant given by a caller may be
/// (clock skew between services).
pub const MAX_FUTURE: Span = Span::from_secs(5);

/// What the domain is told about the world: only the wall clock, so it can
/// refuse instants in the future and suppress stale triggers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub now: Timestamp,
}

/// A command for an existing lead.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    RecordEngagement(Engagement),
    /// Attribute changes: a non-empty value sets, an empty one removes.
    UpdateProfile(BTreeMap<String, String>),
    Transition(ManualTransition),
    TimerFired(Timer),
    /// The lead is re-scored under a newly active policy, decided at the
    /// activation instant (or the lead's last transition, if later).
    PolicyChanged {
        at: Timestamp,
    },
    /// Anonymous activity joins the lead (`IdentifyLead`): its events take
    /// their places in the log at their own instants, so the scores are
    /// those of the joined log; what they cause is decided at `at` (default
    /// now; never in the future nor before the lead's last transition).
    Identify {
        anonymous_id: String,
        events: Vec<Engagement>,
        at: Option<Timestamp>,
    },
    /// A duplicate merges into this lead (`MergeLeads`): its events join
    /// the log at their own instants, the attributes the lead lacks come
    /// with it, the lead jumps to the duplicate's stage if that is further
    /// along, and the automatic moves follow, all at `at` (see
    /// [`merge_instant`]).
    Merge {
        duplicate: Duplicate,
        at: Timestamp,
    },
    /// This lead is merged into `survivor_id` at `at`: it enters MERGED
    /// and its timers go.
    MergedInto {
        survivor_id: String,
        at: Timestamp,
    },
    /// A merge undone for the duplicate: it leaves MERGED for `stage` (the
    /// stage it was merged from) at `at`, re-scored over its log as it is
    /// given back, then the automatic moves.
    Unmerge {
        survivor_id: String,
        stage: Stage,
        at: Timestamp,
    },
    /// A merge undone for the survivor: re-scored at `at` over its log
    /// without what the duplicate took back, its profile changed by
    /// `attributes` (as `UpdateProfile` changes it); its stage stays.
    Unmerged {
        duplicate_id: String,
        attributes: BTreeMap<String, String>,
        at: Timestamp,
    },
}

/// What a duplicate brings to the survivor of a merge.
#[derive(Clone, Debug, PartialEq)]
pub struct Duplicate {
    pub lead_id: String,
    /// Its stage before the merge.
    pub stage: Stage,
    /// The deal of its conversion, when it is a CUSTOMER.
    pub deal: Option<Deal>,
    /// Its profile's attributes.
    pub attributes: BTreeMap<String, String>,
    /// Its engagements.
    pub events: Vec<Engagement>,
}

impl Command {
    pub fn kind(&self) -> CommandKind {
        match self {
            Self::RecordEngagement(_) => CommandKind::RecordEngagement,
            Self::UpdateProfile(_) => CommandKind::UpdateProfile,
            Self::Transition(t) => t.command,
            Self::TimerFired(_) => CommandKind::TimerFired,
            Self::PolicyChanged { .. } => CommandKind::PolicyChanged,
            Self::Identify { .. } => CommandKind::Identify,
            Self::Merge { .. } | Self::MergedInto { .. } => CommandKind::Merge,
            Self::Unmerge { .. } | Self::Unmerged { .. } => CommandKind::Unmerge,
        }
    }
}

/// When an identification at `at` joining `events` is decided: at `at`,
/// or at its last event if that is later (an import placing the
/// identification before some of the activity: nothing is decided before
/// it happened).
pub fn identification_instant(at: Timestamp, events: &[Engagement]) -> Timestamp {
    events
        .iter()
        .map(|e| e.occurred_at)
        .max()
        .map_or(at, |last| at.max(last))
}

/// When a merge of `duplicate` (with its `events`) into `survivor` asked
/// for at `at` (default now) happens: never in the future, never before
/// either lead's last transition, and — as an identification — not before
/// the last of the duplicate's events. Both leads' decisions take it.
pub fn merge_instant(
    at: Option<Timestamp>,
    survivor: &Lead,
    duplicate: &Lead,
    events: &[Engagement],
    ctx: &Context,
) -> Result<Timestamp, DomainError> {
    let last = survivor.last_transition_at.max(duplicate.last_transition_at);
    let t = at.unwrap_or(ctx.now.max(last));
    check_instant("occurred_at", t, ctx)?;
    for (lead, which) in [(survivor, "survivor"), (duplicate, "duplicate")] {
        if t < lead.last_transition_at {
            return Err(DomainError::invalid(FieldViolation::new(
                "occurred_at",
                format!(
                    "{t} is before the {which}'s last transition at {}",
                    lead.last_transition_at
                ),
            )));
        }
    }
    Ok(identification_instant(t, events))
}

/// The attribute changes a merge makes to the survivor's profile: every
/// attribute of the duplicate the survivor lacks, and those `prefer` names
/// where the two differ (the survivor wins on every other conflict). With
/// them, what each attribute changed was before (empty: absent), so an
/// unmerge can put it back.
pub fn merge_attributes(
    survivor: &Profile,
    duplicate: &BTreeMap<String, String>,
    prefer: &[String],
) -> MergedAttributes {
    let mut out = MergedAttributes::default();
    for (key, value) in duplicate {
        if key == crate::profile::EMAIL_DOMAIN || value.trim().is_empty() {
            continue;
        }
        let before = survivor.get(key);
        let take = match before {
            None => true,
            Some(mine) => mine != value && prefer.iter().any(|p| p == key),
        };
        if take {
            out.set.insert(key.clone(), value.clone());
            out.before
                .insert(key.clone(), before.unwrap_or_default().to_owned());
        }
    }
    out
}

/// What [`merge_attributes`] found.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MergedAttributes {
    /// Attribute → the duplicate's value, set on the survivor.
    pub set: BTreeMap<String, String>,
    /// Attribute → the survivor's value before (empty: it had none).
    pub before: BTreeMap<String, String>,
}

impl MergedAttributes {
    /// The changes that undo the merge's on `now` (the survivor's profile
    /// at the unmerge): each attribute the merge set and that still holds
    /// the value it set goes back to what it was; one changed since stays.
    pub fn undo(&self, now: &Profile) -> BTreeMap<String, String> {
        self.set
            .iter()
            .filter(|(key, value)| now.get(key) == Some(value.as_str()))
            .map(|(key, _)| (key.clone(), self.before.get(key).cloned().unwrap_or_default()))
            .collect()
    }
}

/// A caller's `Transition`: one of [`CommandKind::MANUAL`].
#[derive(Clone, Debug, PartialEq)]
pub struct ManualTransition {
    pub command: CommandKind,
    pub reason: Option<String>,
    pub actor: Option<String>,
    /// CONVERT only.
    pub deal: Option<Deal>,
    /// Default: now. Never in the future, never before the last transition.
    pub occurred_at: Option<Timestamp>,
}

/// What a command decided: the lead's new state, the events for the outbox
/// (stream order), and the changes to its durable timers (apply in order).
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub lead: Lead,
    pub events: Vec<Event>,
    pub timers: Vec<TimerChange>,
    pub profile_changed: bool,
}

impl Decision {
    pub fn transitions(&self) -> impl Iterator<Item = &TransitionRecord> {
        self.events.iter().filter_map(|e| match e {
            Event::Transition(t) => Some(t),
            _ => None,
        })
    }

    /// The lead's version changes with its stage and profile, not with every engagement.
    pub fn bumps_version(&self) -> bool {
        self.profile_changed || self.transitions().next().is_some()
    }
}

/// Whether `policy` takes `event` at all, whatever the lead: an event id,
/// a type of its vocabulary, an instant not in the future. Field paths
/// begin with `engagement.`.
pub fn check_engagement(policy: &Policy, event: &Engagement, ctx: &Context) -> Result<(), DomainError> {
    if event.event_id.trim().is_empty() {
        return Err(DomainError::invalid(FieldViolation::new(
            "engagement.event_id",
            "required",
        )));
    }
    if !policy.knows_type(&event.kind) {
        let hint = policy
            .suggest_type(&event.kind)
            .map(|s| format!(" (did you mean {s:?}?)"))
            .unwrap_or_default();
        return Err(DomainError::invalid_as(
            InvalidKind::UnknownEngagementType,
            FieldViolation::new(
                "engagement.type",
                format!(
                    "unknown engagement type {:?}{hint}: not in policy {:?}",
                    event.kind, policy.name
                ),
            ),
        ));
    }
    check_instant("engagement.occurred_at", event.occurred_at, ctx)
}

pub(super) fn check_instant(field: &str, t: Timestamp, ctx: &Context) -> Result<(), DomainError> {
    if t > ctx.now.saturating_add(MAX_FUTURE) {
        return Err(DomainError::invalid(FieldViolation::new(
            field,
            format!("{t} is in the future (now is {})", ctx.now),
        )));
    }
    if t < Timestamp::EPOCH {
        return Err(DomainError::invalid(FieldViolation::new(
            field,
            format!("{t} is before 1970"),
        )));
    }
    Ok(())
}

/// A manual transition that passed its checks: the edge it takes, what it
/// records, and its instant. Guards are still to be evaluated.
pub(super) struct Checked {
    pub(super) edge: &'static Edge,
    pub(super) reason: Option<String>,
    pub(super) actor: Option<String>,
    pub(super) deal: Option<Deal>,
    pub(super) at: Timestamp,
}

impl ManualTransition {
    /// Checks the command for a lead against the table and the policy: a
    /// pair outside the table first, then the reason, the deal and the
    /// instant (default now, or the last transition if that lies a few
    /// seconds ahead).
    pub(super) fn check(self, policy: &Policy, lead: &Lead, now: Timestamp) -> Result<Checked, DomainError> {
        let m = self;
        if !CommandKind::MANUAL.contains(&m.command) {
            return Err(DomainError::invalid(FieldViolation::new(
                "action",
                format!("{} is not a transition a caller can ask for", m.command),
            )));
        }
        // A pair outside the table is refused as such, whatever else is wrong.
        let row = manual_edge(lead.stage, m.command).ok_or(DomainError::InvalidTransition {
            stage: lead.stage,
            command: m.command,
        })?;
        let reason = m.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
        match (row.reasons, reason) {
            (Some(list), None) => {
                return Err(DomainError::invalid_as(
                    InvalidKind::UnknownReason,
                    FieldViolation::new(
                        "reason",
                        format!(
                            "{} needs a reason, one of: {}",
                            m.command,
                            policy.reasons_for(list).join(", ")
                        ),
                    ),
                ));
            }
            (Some(list), Some(r)) if !policy.reasons_for(list).iter().any(|x| x == r) => {
                return Err(DomainError::invalid_as(
                    InvalidKind::UnknownReason,
                    FieldViolation::new(
                        "reason",
                        format!(
                            "{r:?} is not a {} reason in policy {:?} (one of: {})",
                            list.key(),
                            policy.name,
                            policy.reasons_for(list).join(", ")
                        ),
                    ),
                ));
            }
            (None, None) if m.command == CommandKind::Promote => {
                return Err(DomainError::invalid(FieldViolation::new(
                    "reason",
                    "PROMOTE skips the score thresholds and needs a reason",
                )));
            }
            _ => {}
        }
        let deal = match (m.deal, m.command == CommandKind::Convert) {
            (None, true) => {
                return Err(DomainError::invalid(FieldViolation::new(
                    "deal_value",
                    "CONVERT needs the deal's value",
                )));
            }
            (Some(_), false) => {
                return Err(DomainError::invalid(FieldViolation::new(
                    "deal_value",
                    format!("only CONVERT takes a deal, not {}", m.command),
                )));
            }
            (Some(deal), true) => Some(checked_deal(deal)?),
            (None, false) => None,
        };
        // Without an instant, now — or the last transition, if that lies a
        // few seconds ahead (an engagement from a clock a little fast).
        let t = m.occurred_at.unwrap_or(now.max(lead.last_transition_at));
        check_instant("occurred_at", t, &Context { now })?;
        if t < lead.last_transition_at {
            return Err(DomainError::invalid(FieldViolation::new(
                "occurred_at",
                format!(
                    "{t} is before the lead's last transition at {}",
                    lead.last_transition_at
                ),
            )));
        }
        Ok(Checked {
            edge: row,
            reason: reason.map(str::to_owned),
            actor: m.actor,
            deal,
            at: t,
        })
    }
}

/// The largest deal value taken: far above any deal, and small enough that
/// sums of many stay exact to the cent in an f64.
pub(crate) const MAX_DEAL_VALUE: f64 = 1e15;

/// A deal as recorded: a finite value from 0 to [`MAX_DEAL_VALUE`] (−0 is
/// kept as 0) in a currency of the ISO 4217 list.
fn checked_deal(deal: Deal) -> Result<Deal, DomainError> {
    if !deal.value.is_finite() || !(0.0..=MAX_DEAL_VALUE).contains(&deal.value) {
        return Err(DomainError::invalid(FieldViolation::new(
            "deal_value",
            format!(
                "{} is not a deal value: it must be from 0 to {MAX_DEAL_VALUE:e}",
                deal.value
            ),
        )));
    }
    if iso_currency::Currency::from_code(&deal.currency).is_none() {
        return Err(DomainError::invalid(FieldViolation::new(
            "currency",
            format!(
                "{:?} is not an ISO 4217 currency code (e.g. EUR, USD, JPY)",
                deal.currency
            ),
        )));
    }
    Ok(Deal {
        // −0.0 passes the range check; it is recorded as 0.
        value: if deal.value == 0.0 { 0.0 } else { deal.value },
        ..deal
    })
}

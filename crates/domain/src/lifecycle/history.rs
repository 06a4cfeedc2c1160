//! What of a lead's log a decision is given: the whole log, or a score
//! checkpoint and the events after it.

use std::borrow::Cow;

use super::command::{Command, Context, Decision};
use super::lead::Lead;
use crate::engagement::Engagement;
use crate::error::DomainError;
use crate::policy::Policy;
use crate::score::{Checkpoint, ScoreState};
use crate::time::Timestamp;

/// [`decide`](super::decide), given the lead's log from a checkpoint on: `after` holds the
/// stored engagements that sort after the checkpoint's last event (without
/// the command's own). A late engagement after that event is replayed from
/// the checkpoint. Where that is not enough — the command reaches back
/// before the checkpoint, opens a window it does not hold, or reads the
/// whole log — it returns [`DomainError::HistoryRequired`]: decide again
/// with the whole log. The checkpoint must have been made under `policy`.
pub fn decide_since(
    policy: &Policy,
    lead: &Lead,
    command: Command,
    ctx: &Context,
    checkpoint: &Checkpoint,
    after: &[Engagement],
) -> Result<Decision, DomainError> {
    let history = History::Since {
        checkpoint,
        after: Cow::Borrowed(after),
    };
    super::decide::decide_with(policy, lead, command, ctx, Some(history))
}

/// What of the lead's log a decision is given.
pub(crate) enum History<'a> {
    /// The whole log.
    Full(Cow<'a, [Engagement]>),
    /// The score states after a prefix of the log, and the events after it.
    Since {
        checkpoint: &'a Checkpoint,
        after: Cow<'a, [Engagement]>,
    },
}

impl History<'_> {
    /// The whole log, if that is what was given.
    pub(crate) fn whole(&self) -> Option<&[Engagement]> {
        match self {
            Self::Full(log) => Some(log),
            Self::Since { .. } => None,
        }
    }

    /// The score state over the window after `since` of the events up to
    /// `until`: from the first event, or from the checkpoint when it holds
    /// a state of that window and all its events count.
    pub(crate) fn replay(
        &self,
        policy: &Policy,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<ScoreState, DomainError> {
        match self {
            Self::Full(log) => Ok(ScoreState::replay(policy, log, since, until)),
            Self::Since { checkpoint, after } => {
                let end = checkpoint.key();
                if until.is_some_and(|u| end.is_some_and(|k| k.occurred_at > u)) {
                    return Err(DomainError::HistoryRequired);
                }
                let start = checkpoint
                    .state_for(policy, since)
                    .ok_or(DomainError::HistoryRequired)?;
                Ok(start.replayed(policy, after, end, until))
            }
        }
    }

    /// The log with a late `event` in its place; itself unchanged when the
    /// event falls before its checkpoint.
    pub(crate) fn with(self, event: &Engagement) -> Result<Self, Self> {
        match self {
            Self::Full(log) => {
                let mut log = log.into_owned();
                log.push(event.clone());
                Ok(Self::Full(Cow::Owned(log)))
            }
            Self::Since { checkpoint, after } => {
                if checkpoint.key().is_some_and(|k| !event.is_after(k)) {
                    return Err(Self::Since { checkpoint, after });
                }
                let mut after = after.into_owned();
                after.push(event.clone());
                Ok(Self::Since {
                    checkpoint,
                    after: Cow::Owned(after),
                })
            }
        }
    }
}

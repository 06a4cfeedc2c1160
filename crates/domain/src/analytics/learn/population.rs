//! Which leads a policy learns from, and what each teaches: a lead whose
//! outcome is known as of the job's instant is positive if it reached the
//! outcome, negative if it was lost as the analytics define it (sent back
//! by sales or disqualified) or stayed open past [`OPEN_HORIZON`]; every
//! other lead is left out, as are erased leads and duplicates merged into
//! another lead.
//! Only moves up to the job's instant count, so a job that resumes gives
//! the same population.

use serde::{Deserialize, Serialize};

use crate::analytics::evidence::Evidence;
use crate::lifecycle::sends_back;
use crate::stage::Stage;
use crate::time::{Span, Timestamp};

/// What a learned policy predicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LearnOutcome {
    /// Sales accepted the lead (it entered SQL, or CUSTOMER directly).
    Sql,
    /// The lead became a customer.
    #[default]
    Customer,
}

/// A lead still open this long after its capture counts as a negative.
pub const OPEN_HORIZON: Span = Span::from_days(90);

/// A lead with a known outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Labelled {
    pub positive: bool,
    pub captured_at: Timestamp,
    /// When its outcome was decided: it reached the outcome, was lost, or
    /// reached the horizon open.
    pub decided_at: Timestamp,
}

/// The lead's label as of `as_of`: `Some(true)` reached the outcome,
/// `Some(false)` did not and will not count as open, `None` left out.
pub fn label(e: &Evidence, outcome: LearnOutcome, as_of: Timestamp) -> Option<bool> {
    labelled(e, outcome, as_of).map(|l| l.positive)
}

/// [`label`], with the instants of its capture and of its outcome.
pub fn labelled(e: &Evidence, outcome: LearnOutcome, as_of: Timestamp) -> Option<Labelled> {
    if e.erased {
        return None;
    }
    let moves: Vec<_> = e.moves.iter().filter(|&&(.., at)| at <= as_of).collect();
    let &&(_, _, captured_at) = moves.first()?;
    // A duplicate merged into another lead (and not unmerged since).
    if moves.last().is_some_and(|(to, ..)| *to == Stage::Merged) {
        return None;
    }
    let reached = moves.iter().find(|(to, ..)| match outcome {
        LearnOutcome::Sql => matches!(to, Stage::Sql | Stage::Customer),
        LearnOutcome::Customer => *to == Stage::Customer,
    });
    let lost = moves.iter().find(|&&&(_, by, _)| sends_back(by));
    let horizon = captured_at.saturating_add(OPEN_HORIZON);
    let (positive, decided_at) = match (reached, lost) {
        (Some(&&(.., at)), _) => (true, at),
        (None, Some(&&(.., at))) => (false, at),
        (None, None) if horizon <= as_of => (false, horizon),
        (None, None) => return None,
    };
    Some(Labelled {
        positive,
        captured_at,
        decided_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transition::Move;

    fn day(d: i64) -> Timestamp {
        Timestamp::from_secs(1_780_000_000 + d * 86_400)
    }

    fn lead(moves: Vec<(Stage, Move, Timestamp)>) -> Evidence {
        Evidence {
            lead_id: "l".to_owned(),
            profile: crate::profile::Profile::default(),
            log: Vec::new(),
            moves,
            mql_by: None,
            erased: false,
        }
    }

    #[test]
    fn positives_negatives_and_the_rest() {
        use LearnOutcome::{Customer, Sql};
        let now = day(200);
        let accepted = lead(vec![
            (Stage::Iql, Move::Capture, day(0)),
            (Stage::Mql, Move::AutoQualify, day(3)),
            (Stage::Sql, Move::Accept, day(5)),
        ]);
        assert_eq!(label(&accepted, Sql, now), Some(true));
        // Accepted, not yet won, open 200 days: a negative for CUSTOMER.
        assert_eq!(label(&accepted, Customer, now), Some(false));
        // … but not 50 days after its capture.
        assert_eq!(label(&accepted, Customer, day(50)), None);
        let rejected = lead(vec![
            (Stage::Iql, Move::Capture, day(0)),
            (Stage::Mql, Move::AutoQualify, day(3)),
            (Stage::Iql, Move::Reject, day(4)),
        ]);
        assert_eq!(label(&rejected, Sql, now), Some(false));
        // Rejected after the job's instant: unknown then.
        assert_eq!(label(&rejected, Sql, day(3)), None);
        // Lost first, won later: a positive.
        let won = lead(vec![
            (Stage::Iql, Move::Capture, day(0)),
            (Stage::Disqualified, Move::Disqualify, day(2)),
            (Stage::Iql, Move::Requalify, day(10)),
            (Stage::Customer, Move::Convert, day(20)),
        ]);
        assert_eq!(label(&won, Customer, now), Some(true));
        let merged = lead(vec![
            (Stage::Iql, Move::Capture, day(0)),
            (Stage::Merged, Move::MergedInto, day(1)),
        ]);
        assert_eq!(label(&merged, Sql, now), None);
        let erased = Evidence {
            erased: true,
            ..won.clone()
        };
        assert_eq!(label(&erased, Customer, now), None);
        assert_eq!(label(&lead(Vec::new()), Sql, now), None);
        assert_eq!(
            labelled(&won, Customer, now),
            Some(Labelled {
                positive: true,
                captured_at: day(0),
                decided_at: day(20),
            })
        );
        assert_eq!(labelled(&rejected, Sql, now).map(|l| l.decided_at), Some(day(4)));
    }
}

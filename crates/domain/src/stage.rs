//! The lifecycle stages.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a lead stands. The forward path is IQL → MQL → SQL → CUSTOMER;
/// DISQUALIFIED sits beside it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Stage {
    /// Information-qualified: gave contact info for something of value.
    Iql,
    /// Marketing-qualified: engaged and fits well enough for sales' attention.
    Mql,
    /// Sales-qualified: ready for a direct sales conversation.
    Sql,
    /// Closed-won. Terminal.
    Customer,
    /// An undesirable: competitor, spam, bounce, …
    Disqualified,
}

impl Stage {
    pub const ALL: [Self; 5] = [
        Self::Iql,
        Self::Mql,
        Self::Sql,
        Self::Customer,
        Self::Disqualified,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Iql => "IQL",
            Self::Mql => "MQL",
            Self::Sql => "SQL",
            Self::Customer => "CUSTOMER",
            Self::Disqualified => "DISQUALIFIED",
        }
    }

    /// Position on the forward path; DISQUALIFIED has none.
    pub const fn rank(self) -> Option<u8> {
        match self {
            Self::Iql => Some(0),
            Self::Mql => Some(1),
            Self::Sql => Some(2),
            Self::Customer => Some(3),
            Self::Disqualified => None,
        }
    }

    const FORWARD: [Self; 4] = [Self::Iql, Self::Mql, Self::Sql, Self::Customer];

    /// The stages a forward move from `self` to `to` enters, in order, ending
    /// with `to`. Empty when `to` is not ahead of `self` on the forward path.
    pub fn forward_path(self, to: Self) -> &'static [Self] {
        match (self.rank(), to.rank()) {
            (Some(a), Some(b)) if a < b => &Self::FORWARD[usize::from(a) + 1..=usize::from(b)],
            _ => &[],
        }
    }

    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Customer)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a stage.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown stage {0:?} (expected one of IQL, MQL, SQL, CUSTOMER, DISQUALIFIED)")]
pub struct UnknownStage(pub String);

impl FromStr for Stage {
    type Err = UnknownStage;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| UnknownStage(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_paths_list_every_stage_entered() {
        assert_eq!(
            Stage::Iql.forward_path(Stage::Customer),
            &[Stage::Mql, Stage::Sql, Stage::Customer]
        );
        assert_eq!(Stage::Mql.forward_path(Stage::Sql), &[Stage::Sql]);
        assert!(Stage::Sql.forward_path(Stage::Iql).is_empty());
        assert!(Stage::Iql.forward_path(Stage::Disqualified).is_empty());
        assert!(Stage::Disqualified.forward_path(Stage::Iql).is_empty());
    }

    #[test]
    fn stages_round_trip_through_their_names() {
        for stage in Stage::ALL {
            assert_eq!(stage.as_str().parse::<Stage>(), Ok(stage));
        }
        assert!("mql".parse::<Stage>().is_err());
    }
}

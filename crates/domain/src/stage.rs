//! The lifecycle stages: a lead's and an account's.

use serde::{Deserialize, Serialize};

use crate::named::named_enum;

named_enum! {
    /// Where a lead stands. The forward path is IQL → MQL → SQL → CUSTOMER;
    /// DISQUALIFIED sits beside it.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
    pub enum Stage as "stage" {
        /// Information-qualified: gave contact info for something of value.
        Iql = "IQL",
        /// Marketing-qualified: engaged and fits well enough for sales' attention.
        Mql = "MQL",
        /// Sales-qualified: ready for a direct sales conversation.
        Sql = "SQL",
        /// Closed-won. Terminal.
        Customer = "CUSTOMER",
        /// An undesirable: competitor, spam, bounce, …
        Disqualified = "DISQUALIFIED",
        /// Merged into another lead (`MergeLeads`): its engagements and
        /// keys are the survivor's. Left only by `UnmergeLead`; never part
        /// of a policy or of the funnel's counts.
        Merged = "MERGED",
    }
}

impl Stage {
    /// Position on the forward path; DISQUALIFIED and MERGED have none.
    pub const fn rank(self) -> Option<u8> {
        match self {
            Self::Iql => Some(0),
            Self::Mql => Some(1),
            Self::Sql => Some(2),
            Self::Customer => Some(3),
            Self::Disqualified | Self::Merged => None,
        }
    }

    /// The stages a lead can be in by the lifecycle's own moves: every
    /// stage but MERGED, which only a merge enters. What a policy, the
    /// funnel and the dashboard speak of.
    pub const LIFECYCLE: [Self; 5] = [
        Self::Iql,
        Self::Mql,
        Self::Sql,
        Self::Customer,
        Self::Disqualified,
    ];

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

named_enum! {
    /// Where an account stands. The forward path is TARGET → ENGAGED → MQA
    /// → OPPORTUNITY → CUSTOMER; DISQUALIFIED sits beside it.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
    pub enum AccountStage as "account stage" {
        /// Known (loaded by a team or matched from a lead), no member engaged yet.
        Target = "TARGET",
        /// At least one member has engaged.
        Engaged = "ENGAGED",
        /// Marketing-qualified account: its buying group passes `[stages.MQA]`.
        Mqa = "MQA",
        /// Sales works the account: a member became SQL, or sales accepted it.
        Opportunity = "OPPORTUNITY",
        /// A member converted. Terminal.
        Customer = "CUSTOMER",
        /// Not an account to work (a competitor, a bad fit, …).
        Disqualified = "DISQUALIFIED",
    }
}

impl AccountStage {
    /// Position on the forward path; DISQUALIFIED has none.
    pub const fn rank(self) -> Option<u8> {
        match self {
            Self::Target => Some(0),
            Self::Engaged => Some(1),
            Self::Mqa => Some(2),
            Self::Opportunity => Some(3),
            Self::Customer => Some(4),
            Self::Disqualified => None,
        }
    }

    const FORWARD: [Self; 5] = [
        Self::Target,
        Self::Engaged,
        Self::Mqa,
        Self::Opportunity,
        Self::Customer,
    ];

    /// The stages a forward move from `self` to `to` enters, in order,
    /// ending with `to`. Empty when `to` is not ahead of `self`.
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
    fn account_forward_paths_list_every_stage_entered() {
        use AccountStage::*;
        assert_eq!(Target.forward_path(Opportunity), &[Engaged, Mqa, Opportunity]);
        assert_eq!(Mqa.forward_path(Customer), &[Opportunity, Customer]);
        assert!(Mqa.forward_path(Engaged).is_empty());
        assert!(Disqualified.forward_path(Target).is_empty());
        for stage in AccountStage::ALL {
            assert_eq!(stage.as_str().parse::<AccountStage>(), Ok(stage));
        }
    }

    #[test]
    fn stages_round_trip_through_their_names() {
        for stage in Stage::ALL {
            assert_eq!(stage.as_str().parse::<Stage>(), Ok(stage));
        }
        assert!("mql".parse::<Stage>().is_err());
    }
}

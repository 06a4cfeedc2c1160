//! `[[route]]` and `[routing]`: who a lead is handed to when it reaches a
//! stage or a level, and when it is let go.

use std::collections::BTreeMap;
use std::fmt;

use super::AttributeMatcher;
use crate::profile::Profile;
use crate::routing::Strategy;
use crate::stage::Stage;

/// `[routing]` and the `[[route]]` entries, first match wins.
#[derive(Clone, Debug)]
pub struct Routing {
    pub routes: Vec<Route>,
    /// `release_on`: the moves out of the sales stages that take the lead
    /// from its owner (default: rejected, recycled, disqualified).
    pub release_on: Vec<Release>,
    /// `reassign_on_policy_change`: at a policy change, an open lead whose
    /// owner its stage's route could no longer give it to goes through the
    /// route again.
    pub reassign_on_policy_change: bool,
}

impl Routing {
    /// Whether a route reads the lead's account (its owner or attributes).
    pub fn reads_account(&self) -> bool {
        self.routes.iter().any(|r| {
            r.account_owner
                || r.when
                    .iter()
                    .any(|c| matches!(c, RouteCondition::AccountAttribute { .. }))
        })
    }
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            reassign_on_policy_change: false,
            release_on: Release::DEFAULT.to_vec(),
        }
    }
}

/// A move after which a lead no longer has an owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Release {
    /// Sent back to IQL by `REJECT`.
    Rejected,
    /// Sent back to IQL by `RECYCLE` or an SLA's recycle.
    Recycled,
    /// Moved to DISQUALIFIED, by a caller or a rule.
    Disqualified,
    /// Moved to CUSTOMER.
    Converted,
}

impl Release {
    pub const ALL: [Self; 4] = [
        Self::Rejected,
        Self::Recycled,
        Self::Disqualified,
        Self::Converted,
    ];
    pub const DEFAULT: [Self; 3] = [Self::Rejected, Self::Recycled, Self::Disqualified];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Recycled => "recycled",
            Self::Disqualified => "disqualified",
            Self::Converted => "converted",
        }
    }
}

impl std::str::FromStr for Release {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            format!("unknown move {s:?} (expected rejected, recycled, disqualified or converted)")
        })
    }
}

/// A `[[route]]`.
#[derive(Clone, Debug)]
pub struct Route {
    pub id: String,
    pub on: RouteOn,
    /// `[[route.when]]`: every one must hold.
    pub when: Vec<RouteCondition>,
    pub target: RouteTarget,
    /// `account_owner = true`: the owner of the lead's account first (so
    /// one rep works one account), then the target.
    pub account_owner: bool,
    /// `fallback`: the owner (a queue, usually) given the lead when the
    /// target gives none.
    pub fallback: Option<String>,
    /// `reassign = true`: the route also takes a lead that has an owner.
    pub reassign: bool,
}

/// What sets a route off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOn {
    /// A move that ends in the stage (IQL, MQL or SQL).
    Entered(Stage),
    /// The lead's MQL level becomes this one.
    Level(String),
    /// `account_entered:MQA`: the lead's account becomes marketing
    /// qualified (the route decides the account's owner, who then takes
    /// its engaged members without one).
    AccountMqa,
}

impl fmt::Display for RouteOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Entered(stage) => write!(f, "entered:{stage}"),
            Self::Level(level) => write!(f, "level:{level}"),
            Self::AccountMqa => f.write_str("account_entered:MQA"),
        }
    }
}

/// A score a route condition reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreName {
    Fit,
    Engagement,
    QualifyingEngagement,
}

impl ScoreName {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fit => "fit",
            Self::Engagement => "engagement",
            Self::QualifyingEngagement => "qualifying_engagement",
        }
    }
}

/// A `[[route.when]]`: on an attribute of the lead's profile (as an
/// attribute rule compares), or on one of its scores (a range).
#[derive(Clone, Debug)]
pub enum RouteCondition {
    Attribute {
        attribute: String,
        matcher: AttributeMatcher,
    },
    /// `account_attribute`: an attribute of the lead's account (a lead
    /// without an account matches none).
    AccountAttribute {
        attribute: String,
        matcher: AttributeMatcher,
    },
    Score {
        score: ScoreName,
        /// The model (index into `Policy::models`; 0 the default).
        model: usize,
        at_least: Option<f64>,
        at_most: Option<f64>,
    },
}

impl RouteCondition {
    /// Whether it holds for a lead of this profile and these scores (`fit`,
    /// `engagement`, `qualifying_engagement` by model index).
    pub fn holds(
        &self,
        profile: &Profile,
        account: Option<&BTreeMap<String, String>>,
        score: impl Fn(ScoreName, usize) -> Option<f64>,
    ) -> bool {
        match self {
            Self::Attribute { attribute, matcher } => {
                profile.get(attribute).is_some_and(|v| matcher.matches(v))
            }
            Self::AccountAttribute { attribute, matcher } => account
                .and_then(|a| a.get(attribute))
                .is_some_and(|v| matcher.matches(v)),
            Self::Score {
                score: name,
                model,
                at_least,
                at_most,
            } => score(*name, *model).is_some_and(|n| {
                let n = crate::num::round6(n);
                at_least.is_none_or(|min| n >= min) && at_most.is_none_or(|max| n <= max)
            }),
        }
    }
}

/// Whom a route gives the lead to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteTarget {
    /// `owner = "id"`.
    Owner(String),
    /// `team = "t"` with a `strategy`, among its available owners under
    /// capacity; with `territory = "<attribute>"`, only those whose
    /// territories include the lead's value of that attribute.
    Team {
        team: String,
        strategy: Strategy,
        territory: Option<String>,
    },
    /// `account_owner = true` alone: the owner of the lead's account only.
    AccountOwner,
}

//! Accounts: the organisations leads belong to, scored from their members
//! and moved through their own stages — TARGET → ENGAGED → MQA →
//! OPPORTUNITY → CUSTOMER, with DISQUALIFIED beside them.
//!
//! - `matching`: which account a lead belongs to, by the policy's
//!   `[accounts] match` order.
//! - `members`: a member's contribution, engagement and persona; the
//!   aggregate and the buying group, kept so a member's change updates them
//!   without reading every member.
//! - `table`: the account transition table.
//! - `decide`: an account's state and its decisions.
//!
//! As for leads, everything here is a pure function of what comes in: the
//! store keeps the members' contributions, the engine passes the facts of
//! the instant.

mod decide;
mod matching;
mod members;
mod table;

use std::collections::BTreeMap;

pub use decide::{
    Account, AccountCause, AccountDecision, AccountError, AccountEvent, AccountGuardCheck, AccountTransition,
    AccountTrigger, Facts, ManualAccountTransition, NextAccountStep, check, coverage, create_account,
    decide_account, next_step, transition_account,
};
pub use matching::{
    ACCOUNT_KEY, FREE_MAIL_DOMAINS, Match, MatchKey, MatchedBy, created_domain, inherited, is_ignored_domain,
    match_lead,
};
pub use members::{
    AggregateInput, BuyingGroup, Contribution, EngagedUntil, Member, SUM_FRACTION_BITS, SumState,
    account_fit, top_n,
};
pub use table::{
    ACCOUNT_TABLE, AccountCommand, AccountEdge, AccountGuard, AccountMove, account_stages_entered,
    automatic_account_edges, manual_account_edge, reads_guard,
};

use crate::policy::{Accounts, Aggregate, Policy};
use crate::profile::Profile;
use crate::stage::{AccountStage, Stage};
use crate::time::Timestamp;

impl Facts {
    /// The facts of an account at `t`, computed whole from its members
    /// (the recompute the incremental path must equal; an explanation).
    pub fn of(
        policy: &Policy,
        accounts: &Accounts,
        account: &Account,
        attributes: &Profile,
        members: &[Member],
        t: Timestamp,
    ) -> Self {
        let after_window = |m: &&Member| account.window_start.is_none_or(|w| m.entered_stage_at > w);
        let first_in = |stage: Stage| {
            members
                .iter()
                .filter(|m| m.stage == stage)
                .filter(after_window)
                .min_by(|a, b| {
                    a.entered_stage_at
                        .cmp(&b.entered_stage_at)
                        .then_with(|| a.lead.cmp(&b.lead))
                })
                .map(|m| m.lead.clone())
        };
        Self {
            engagement: AggregateInput::of(policy, accounts, members).value_at(policy, accounts, t),
            fit: account_fit(accounts, attributes),
            group: BuyingGroup::of(policy, accounts, members, t),
            member_sql: first_in(Stage::Sql),
            member_customer: first_in(Stage::Customer),
        }
    }
}

/// Whether `promote_members_on_mqa` promotes a member at `at`: an IQL that
/// passes every MQL guard but the engagement score (fit, grade, required
/// attributes, not disqualified).
pub fn promotes(
    policy: &Policy,
    lead: &crate::lifecycle::Lead,
    log: &[crate::Engagement],
    at: Timestamp,
) -> bool {
    lead.stage == Stage::Iql
        && crate::explain::qualification(policy, lead, log, at)
            .iter()
            .all(|g| g.passed || g.guard == crate::lifecycle::Guard::EngagementAtLeast)
}

/// One member in an account's explanation.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberExplanation {
    pub lead: String,
    pub persona: Option<String>,
    pub stage: Stage,
    /// Its qualifying engagement at the instant, rounded to 6 decimals.
    pub score: f64,
    pub engaged: bool,
    pub engaged_until: EngagedUntil,
    /// Its score is part of the aggregate (every member not disqualified
    /// for `sum`; the N highest for `max` and `top:N`).
    pub in_aggregate: bool,
    /// Erased: its numbers stay, its profile is gone.
    pub erased: bool,
}

/// An account's scores at an instant, member by member, and what stands
/// between it and its next stage.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountExplanation {
    pub at: Timestamp,
    pub stage: AccountStage,
    pub aggregate: Aggregate,
    pub engagement: f64,
    pub fit: f64,
    pub group: BuyingGroup,
    /// Engaged members per persona, and whether `[stages.MQA]` requires it.
    pub coverage: BTreeMap<String, (u32, bool)>,
    /// Highest score first (then by lead id).
    pub members: Vec<MemberExplanation>,
    pub next: Option<NextAccountStep>,
}

/// Explains an account at `t` from its members (each as at `t`).
pub fn explain_account(
    policy: &Policy,
    accounts: &Accounts,
    account: &Account,
    attributes: &Profile,
    members: &[Member],
    t: Timestamp,
) -> AccountExplanation {
    let model = accounts.score.model;
    let facts = Facts::of(policy, accounts, account, attributes, members, t);
    let mut order: Vec<&Member> = members.iter().collect();
    order.sort_by(|a, b| {
        b.score
            .key(policy, model)
            .total_cmp(&a.score.key(policy, model))
            .then_with(|| a.lead.cmp(&b.lead))
    });
    let n = top_n(accounts.score.aggregate);
    let mut counted = 0usize;
    let members = order
        .into_iter()
        .map(|m| {
            let in_aggregate = m.counts() && (n == 0 || counted < n);
            if m.counts() {
                counted += 1;
            }
            let until = m.engaged_until(policy, accounts);
            MemberExplanation {
                lead: m.lead.clone(),
                persona: m.persona.clone(),
                stage: m.stage,
                score: crate::num::round6(m.score.value_at(policy, model, t)),
                engaged: until.at(t),
                engaged_until: until,
                in_aggregate,
                erased: m.erased,
            }
        })
        .collect();
    let next = if matches!(account.stage, AccountStage::Disqualified | AccountStage::Customer) {
        None
    } else {
        next_step(accounts, account.stage, &facts)
    };
    AccountExplanation {
        at: t,
        stage: account.stage,
        aggregate: accounts.score.aggregate,
        engagement: facts.engagement,
        fit: facts.fit,
        coverage: coverage(accounts, &facts.group),
        group: facts.group,
        members,
        next,
    }
}

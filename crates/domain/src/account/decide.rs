//! An account's state and [`decide_account`]: a command and the facts of
//! the account at an instant go in; the transitions, triggers and the new
//! state come out.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::members::BuyingGroup;
use super::table::{
    AccountCommand, AccountEdge, AccountGuard, AccountMove, account_stages_entered, automatic_account_edges,
    manual_account_edge,
};
use crate::error::{DomainError, FieldViolation, InvalidKind};
use crate::lifecycle::show;
use crate::named::named_enum;
use crate::num::round6;
use crate::policy::{Accounts, Policy};
use crate::stage::AccountStage;
use crate::time::Timestamp;

/// Everything the domain needs to decide the next command for an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub stage: AccountStage,
    pub created_at: Timestamp,
    pub entered_stage_at: Timestamp,
    pub last_transition_at: Timestamp,
    pub entered_by: AccountMove,
    /// The last backward move (REJECT, RECYCLE, REQUALIFY): members'
    /// engagements count for the account only after it.
    pub window_start: Option<Timestamp>,
}

/// What an account's decision reads at its instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// The aggregate engagement, rounded to 6 decimals.
    pub engagement: f64,
    /// The account's fit (`[[accounts.fit]]`).
    pub fit: f64,
    pub group: BuyingGroup,
    /// A member (lead id) that entered SQL after the account's window
    /// started and is still there.
    pub member_sql: Option<String>,
    /// A member (lead id) that converted after the account's window started.
    pub member_customer: Option<String>,
}

named_enum! {
    /// Who or what caused an account's transition.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "kind")]
    pub enum AccountCause {
        /// `CreateAccount`.
        Create = "CREATE",
        /// A lead's match created the account.
        Matched { lead: String } = "MATCHED",
        /// A member's change: its lead id, and the engagement by event id
        /// when an engagement caused it.
        Member { lead: String, event_id: Option<String> } = "MEMBER",
        /// A caller's `TransitionAccount`.
        Manual = "MANUAL",
        /// A re-score under a newly active policy.
        PolicyChange = "POLICY_CHANGE",
    }
}

/// The outcome of one account guard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountGuardCheck {
    pub guard: AccountGuard,
    pub passed: bool,
    /// What was compared, e.g. `engaged members 2 < 3`.
    pub detail: String,
    pub actual: Option<f64>,
    pub required: Option<f64>,
}

impl fmt::Display for AccountGuardCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.guard, self.detail)
    }
}

/// One stage change of an account, with the facts it was decided on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountTransition {
    /// `None` for the creation.
    pub from: Option<AccountStage>,
    pub to: AccountStage,
    pub at: Timestamp,
    pub by: AccountMove,
    pub cause: AccountCause,
    pub reason: Option<String>,
    pub actor: Option<String>,
    pub engagement: f64,
    pub fit: f64,
    pub engaged_members: u32,
    pub guards: Vec<AccountGuardCheck>,
}

/// An `account_entered` workflow fired.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountTrigger {
    pub workflow_id: String,
    pub emit: String,
    /// The workflow's `on`, as written.
    pub on: String,
    pub at: Timestamp,
    pub stage: AccountStage,
}

/// What a decision leaves for the outbox, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum AccountEvent {
    Transition(AccountTransition),
    Trigger(AccountTrigger),
}

/// A decision: the account after it and what happened, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountDecision {
    pub account: Account,
    pub events: Vec<AccountEvent>,
    /// The account entered MQA under `promote_members_on_mqa`: its engaged
    /// members are to be promoted (by a background job, not in this commit).
    pub promote_members: bool,
    /// A backward move restarted the account's window here: every member's
    /// contribution is to be computed again over its engagements after it.
    pub window_reset: Option<Timestamp>,
}

impl AccountDecision {
    pub fn transitions(&self) -> impl Iterator<Item = &AccountTransition> {
        self.events.iter().filter_map(|e| match e {
            AccountEvent::Transition(t) => Some(t),
            AccountEvent::Trigger(_) => None,
        })
    }
}

/// A caller's account command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManualAccountTransition {
    pub command: AccountCommand,
    pub reason: Option<String>,
    pub actor: Option<String>,
}

/// Why an account command was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Invalid(#[from] DomainError),
    /// No edge of the account table leaves `stage` on `command`.
    #[error("{command} is not allowed from {stage}")]
    InvalidTransition {
        stage: AccountStage,
        command: AccountCommand,
    },
    /// The edge exists but a guard refused it.
    #[error("{command} refused: {}", failed.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    GuardFailed {
        command: AccountCommand,
        failed: Vec<AccountGuardCheck>,
    },
    /// The policy has no `[accounts]`: accounts are kept but not moved.
    #[error("the active policy has no [accounts]: accounts are not moved")]
    NoAccountsPolicy,
}

/// A new account in TARGET, with its CREATE transition at `at`.
pub fn create_account(at: Timestamp, cause: AccountCause, facts: &Facts) -> (Account, AccountTransition) {
    let account = Account {
        stage: AccountStage::Target,
        created_at: at,
        entered_stage_at: at,
        last_transition_at: at,
        entered_by: AccountMove::Create,
        window_start: None,
    };
    let record = AccountTransition {
        from: None,
        to: AccountStage::Target,
        at,
        by: AccountMove::Create,
        cause,
        reason: None,
        actor: None,
        engagement: facts.engagement,
        fit: facts.fit,
        engaged_members: facts.group.engaged,
        guards: Vec::new(),
    };
    (account, record)
}

/// The outcome of one guard against the facts; `None` for a guard the
/// policy does not set (`fit_at_least` without a threshold).
pub fn check(guard: AccountGuard, accounts: &Accounts, facts: &Facts) -> Option<AccountGuardCheck> {
    let mqa = &accounts.mqa;
    let numeric = |name: &str, actual: f64, required: f64| AccountGuardCheck {
        guard,
        passed: round6(actual) >= required,
        detail: format!(
            "{name} {} {} {}",
            show(actual, required),
            if round6(actual) >= required { "≥" } else { "<" },
            show(required, actual)
        ),
        actual: Some(round6(actual)),
        required: Some(required),
    };
    let engaged = f64::from(facts.group.engaged);
    Some(match guard {
        AccountGuard::MemberEngaged => numeric("engaged members", engaged, 1.0),
        AccountGuard::EngagementAtLeast => {
            numeric("account engagement", facts.engagement, mqa.engagement_at_least)
        }
        AccountGuard::EngagedMembersAtLeast => numeric(
            "engaged members",
            engaged,
            f64::from(mqa.engaged_members_at_least),
        ),
        AccountGuard::FitAtLeast => numeric("account fit", facts.fit, mqa.fit_at_least?),
        AccountGuard::PersonasRequired => {
            let missing: Vec<&str> = mqa
                .personas_required
                .iter()
                .filter(|p| !facts.group.has(p))
                .map(String::as_str)
                .collect();
            AccountGuardCheck {
                guard,
                passed: missing.is_empty(),
                detail: if mqa.personas_required.is_empty() {
                    "no persona required".to_owned()
                } else if missing.is_empty() {
                    format!("engaged {}", mqa.personas_required.join(", "))
                } else {
                    format!("no engaged {}", missing.join(", "))
                },
                actual: None,
                required: None,
            }
        }
        AccountGuard::MemberSql => member_check(guard, facts.member_sql.as_deref(), "entered SQL"),
        AccountGuard::MemberCustomer => member_check(guard, facts.member_customer.as_deref(), "converted"),
    })
}

fn member_check(guard: AccountGuard, member: Option<&str>, what: &str) -> AccountGuardCheck {
    AccountGuardCheck {
        guard,
        passed: member.is_some(),
        detail: member.map_or_else(
            || format!("no member {what}"),
            |lead| format!("member {lead} {what}"),
        ),
        actual: None,
        required: None,
    }
}

fn checks(edge: &AccountEdge, accounts: &Accounts, facts: &Facts) -> Vec<AccountGuardCheck> {
    edge.guards
        .iter()
        .filter_map(|g| check(*g, accounts, facts))
        .collect()
}

struct Recorder<'p> {
    accounts: &'p Accounts,
    account: Account,
    events: Vec<AccountEvent>,
    promote_members: bool,
}

impl Recorder<'_> {
    fn take(
        &mut self,
        edge: &AccountEdge,
        at: Timestamp,
        cause: &AccountCause,
        details: &ManualAccountTransition,
        facts: &Facts,
        guards: Vec<AccountGuardCheck>,
    ) {
        let from = self.account.stage;
        let mut previous = from;
        for stage in account_stages_entered(from, edge.to) {
            self.events.push(AccountEvent::Transition(AccountTransition {
                from: Some(previous),
                to: stage,
                at,
                by: edge.by,
                cause: cause.clone(),
                reason: details.reason.clone(),
                actor: details.actor.clone(),
                engagement: facts.engagement,
                fit: facts.fit,
                engaged_members: facts.group.engaged,
                guards: guards.clone(),
            }));
            previous = stage;
        }
        self.account.stage = edge.to;
        self.account.entered_stage_at = at;
        self.account.last_transition_at = at;
        self.account.entered_by = edge.by;
        if edge.backward {
            self.account.window_start = Some(at);
        }
        for wf in self.accounts.workflows.iter().filter(|w| w.stage == edge.to) {
            self.events.push(AccountEvent::Trigger(AccountTrigger {
                workflow_id: wf.id.clone(),
                emit: wf.emit.clone(),
                on: format!("account_entered:{}", wf.stage),
                at,
                stage: edge.to,
            }));
        }
        if edge.to == AccountStage::Mqa && self.accounts.promote_members_on_mqa {
            self.promote_members = true;
        }
    }

    fn done(self, window_reset: Option<Timestamp>) -> AccountDecision {
        AccountDecision {
            account: self.account,
            events: self.events,
            promote_members: self.promote_members,
            window_reset,
        }
    }
}

/// Re-decides an account after a change of one of its members (or a
/// policy change): the automatic moves up whose guards pass, the furthest
/// first, as many as pass in turn (a first engaged member who is also the
/// third decision maker makes a TARGET account ENGAGED, then MQA). The
/// decision is made at `at` or the account's last transition, whichever is
/// later. A disqualified or won account, or a policy without `[accounts]`,
/// does not move.
pub fn decide_account(
    policy: &Policy,
    account: &Account,
    facts: &Facts,
    cause: &AccountCause,
    at: Timestamp,
) -> AccountDecision {
    let mut rec = match &policy.accounts {
        Some(accounts) => Recorder {
            accounts,
            account: account.clone(),
            events: Vec::new(),
            promote_members: false,
        },
        None => {
            return AccountDecision {
                account: account.clone(),
                events: Vec::new(),
                promote_members: false,
                window_reset: None,
            };
        }
    };
    let at = at.max(account.last_transition_at);
    let details = ManualAccountTransition {
        command: AccountCommand::MemberChanged,
        reason: None,
        actor: None,
    };
    loop {
        let taken = automatic_account_edges(rec.account.stage).find_map(|edge| {
            let guards = checks(edge, rec.accounts, facts);
            guards.iter().all(|g| g.passed).then_some((edge, guards))
        });
        let Some((edge, guards)) = taken else { break };
        rec.take(edge, at, cause, &details, facts, guards);
    }
    rec.done(None)
}

/// A caller's command on an account at `at` (no earlier than its last
/// transition). A reason comes from the edge's `[reasons]` list; PROMOTE
/// takes one in the caller's words.
pub fn transition_account(
    policy: &Policy,
    account: &Account,
    facts: &Facts,
    command: &ManualAccountTransition,
    at: Timestamp,
) -> Result<AccountDecision, AccountError> {
    let accounts = policy.accounts.as_ref().ok_or(AccountError::NoAccountsPolicy)?;
    let edge =
        manual_account_edge(account.stage, command.command).ok_or(AccountError::InvalidTransition {
            stage: account.stage,
            command: command.command,
        })?;
    let reason = command.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    if edge.needs_reason && reason.is_none() {
        return Err(DomainError::invalid(FieldViolation::new(
            "reason",
            format!("required: {} records why", command.command),
        ))
        .into());
    }
    if let (Some(list), Some(reason)) = (edge.reasons, reason) {
        let allowed = policy.reasons_for(list);
        if !allowed.iter().any(|r| r == reason) {
            return Err(DomainError::invalid_as(
                InvalidKind::UnknownReason,
                FieldViolation::new(
                    "reason",
                    format!(
                        "unknown {} reason {reason:?}: expected one of [reasons] {}: {}",
                        command.command,
                        list.key(),
                        allowed.join(", ")
                    ),
                ),
            )
            .into());
        }
    }
    let guards = checks(edge, accounts, facts);
    let failed: Vec<AccountGuardCheck> = guards.iter().filter(|g| !g.passed).cloned().collect();
    if !failed.is_empty() {
        return Err(AccountError::GuardFailed {
            command: command.command,
            failed,
        });
    }
    let at = at.max(account.last_transition_at);
    let mut rec = Recorder {
        accounts,
        account: account.clone(),
        events: Vec::new(),
        promote_members: false,
    };
    let details = ManualAccountTransition {
        command: command.command,
        reason: reason.map(str::to_owned),
        actor: command.actor.clone(),
    };
    rec.take(edge, at, &AccountCause::Manual, &details, facts, guards);
    Ok(rec.done(edge.backward.then_some(at)))
}

/// The next stage up from `stage` and the guards in its way: the automatic
/// edge furthest up whose guards pass, else the MQA guards while below MQA
/// (what a team watches), else the member's SQL or conversion that moves
/// it, with ACCEPT beside it. `None` for an account that moves only by a
/// command (DISQUALIFIED) or no more (CUSTOMER).
pub fn next_step(accounts: &Accounts, stage: AccountStage, facts: &Facts) -> Option<NextAccountStep> {
    let edges: Vec<&AccountEdge> = automatic_account_edges(stage).collect();
    let pick = edges
        .iter()
        .find(|e| checks(e, accounts, facts).iter().all(|g| g.passed))
        .or_else(|| edges.iter().find(|e| e.by == AccountMove::Qualify))
        .or_else(|| edges.iter().find(|e| e.by == AccountMove::Engage))
        .or_else(|| edges.iter().find(|e| e.by == AccountMove::Open))
        .or_else(|| edges.first())?;
    let guards = checks(pick, accounts, facts);
    let manual: Vec<AccountMove> = if matches!(pick.by, AccountMove::Open) {
        vec![AccountMove::Accept]
    } else {
        Vec::new()
    };
    Some(NextAccountStep {
        to: pick.to,
        by: pick.by,
        guards,
        or_by: manual,
    })
}

/// The next stage an account can reach and what stands in the way.
#[derive(Clone, Debug, PartialEq)]
pub struct NextAccountStep {
    pub to: AccountStage,
    pub by: AccountMove,
    pub guards: Vec<AccountGuardCheck>,
    /// Commands that also take it there, guards aside (ACCEPT beside a
    /// member becoming SQL).
    pub or_by: Vec<AccountMove>,
}

/// The facts of a buying group, by persona: how many engaged members each
/// persona has and whether `[stages.MQA]` requires it.
pub fn coverage(accounts: &Accounts, group: &BuyingGroup) -> BTreeMap<String, (u32, bool)> {
    let mut out: BTreeMap<String, (u32, bool)> = group
        .personas
        .iter()
        .map(|(p, n)| (p.clone(), (*n, false)))
        .collect();
    for p in &accounts.mqa.personas_required {
        out.entry(p.clone()).or_insert((0, true)).1 = true;
    }
    out
}

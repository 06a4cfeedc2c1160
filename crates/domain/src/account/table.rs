//! The account transition table, as data: every edge an account can take,
//! what sets it off and the guards it must pass — the lead's table
//! ([`crate::lifecycle::TABLE`]) for accounts.

use serde::{Deserialize, Serialize};

use crate::named::named_enum;
use crate::policy::ReasonList;
use crate::stage::AccountStage;

named_enum! {
    /// What a caller (or the engine) asks of an account.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
    pub enum AccountCommand as "account command" {
        /// `CreateAccount`, or a lead's match that found no account.
        Create = "CREATE",
        Promote = "PROMOTE",
        Accept = "ACCEPT",
        Reject = "REJECT",
        Recycle = "RECYCLE",
        Disqualify = "DISQUALIFY",
        Requalify = "REQUALIFY",
        /// A member changed (an engagement, a profile change, a transition,
        /// a link or an unlink), or a policy change re-decides the account.
        MemberChanged = "MEMBER_CHANGED",
    }
}

impl AccountCommand {
    /// The commands a caller gives through `TransitionAccount`.
    pub const MANUAL: [Self; 6] = [
        Self::Promote,
        Self::Accept,
        Self::Reject,
        Self::Recycle,
        Self::Disqualify,
        Self::Requalify,
    ];
}

named_enum! {
    /// Which edge moved an account.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
    pub enum AccountMove as "account move" {
        Create = "CREATE",
        /// The first member engaged.
        Engage = "ENGAGE",
        /// The `[stages.MQA]` guards pass.
        Qualify = "QUALIFY",
        Promote = "PROMOTE",
        /// A member became SQL.
        Open = "OPEN",
        Accept = "ACCEPT",
        /// A member converted.
        Win = "WIN",
        Reject = "REJECT",
        Recycle = "RECYCLE",
        Disqualify = "DISQUALIFY",
        Requalify = "REQUALIFY",
    }
}

named_enum! {
    /// A condition an account edge checks.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
    pub enum AccountGuard as "account guard" {
        /// At least one member is engaged.
        MemberEngaged = "member_engaged",
        /// Aggregate engagement ≥ `[stages.MQA] engagement_at_least`.
        EngagementAtLeast = "engagement_at_least",
        /// Engaged members ≥ `[stages.MQA] engaged_members_at_least`.
        EngagedMembersAtLeast = "engaged_members_at_least",
        /// An engaged member of every `[stages.MQA] personas_required`.
        PersonasRequired = "personas_required",
        /// Account fit ≥ `[stages.MQA] fit_at_least`, where set.
        FitAtLeast = "fit_at_least",
        /// A member entered SQL after the account's last backward move.
        MemberSql = "member_sql",
        /// A member converted after the account's last backward move.
        MemberCustomer = "member_customer",
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct AccountEdge {
    pub by: AccountMove,
    pub command: AccountCommand,
    /// Stages it leaves from (empty: a new account).
    pub from: &'static [AccountStage],
    pub to: AccountStage,
    pub guards: &'static [AccountGuard],
    /// Set off by a member's change or a policy change, not asked for.
    pub automatic: bool,
    /// A backward move: members' engagements count again only after it.
    pub backward: bool,
    /// The `[reasons]` list the command's reason must come from.
    pub reasons: Option<ReasonList>,
    /// The command takes a reason, from a list or in the caller's words.
    pub needs_reason: bool,
}

use AccountGuard::{
    EngagedMembersAtLeast, EngagementAtLeast, FitAtLeast, MemberCustomer, MemberEngaged, MemberSql,
    PersonasRequired,
};
use AccountStage::{Customer, Disqualified, Engaged, Mqa, Opportunity, Target};

const OPEN_STAGES: &[AccountStage] = &[Target, Engaged, Mqa];
const FORWARD_STAGES: &[AccountStage] = &[Target, Engaged, Mqa, Opportunity];

const fn edge(
    by: AccountMove,
    command: AccountCommand,
    from: &'static [AccountStage],
    to: AccountStage,
    guards: &'static [AccountGuard],
) -> AccountEdge {
    AccountEdge {
        by,
        command,
        from,
        to,
        guards,
        automatic: matches!(command, AccountCommand::MemberChanged),
        backward: false,
        reasons: None,
        needs_reason: false,
    }
}

const fn back(
    by: AccountMove,
    command: AccountCommand,
    from: &'static [AccountStage],
    to: AccountStage,
    reasons: Option<ReasonList>,
) -> AccountEdge {
    AccountEdge {
        by,
        command,
        from,
        to,
        guards: &[],
        automatic: false,
        backward: true,
        reasons,
        needs_reason: reasons.is_some(),
    }
}

/// The account lifecycle. Any (stage, command) pair not here is an invalid
/// transition; CUSTOMER leaves on nothing.
pub const ACCOUNT_TABLE: &[AccountEdge] = &[
    edge(AccountMove::Create, AccountCommand::Create, &[], Target, &[]),
    edge(
        AccountMove::Engage,
        AccountCommand::MemberChanged,
        &[Target],
        Engaged,
        &[MemberEngaged],
    ),
    edge(
        AccountMove::Qualify,
        AccountCommand::MemberChanged,
        &[Engaged],
        Mqa,
        &[
            EngagementAtLeast,
            EngagedMembersAtLeast,
            PersonasRequired,
            FitAtLeast,
        ],
    ),
    AccountEdge {
        needs_reason: true,
        ..edge(
            AccountMove::Promote,
            AccountCommand::Promote,
            &[Engaged],
            Mqa,
            &[EngagedMembersAtLeast, PersonasRequired],
        )
    },
    edge(
        AccountMove::Open,
        AccountCommand::MemberChanged,
        OPEN_STAGES,
        Opportunity,
        &[MemberSql],
    ),
    edge(
        AccountMove::Accept,
        AccountCommand::Accept,
        OPEN_STAGES,
        Opportunity,
        &[],
    ),
    edge(
        AccountMove::Win,
        AccountCommand::MemberChanged,
        FORWARD_STAGES,
        Customer,
        &[MemberCustomer],
    ),
    back(
        AccountMove::Reject,
        AccountCommand::Reject,
        &[Mqa],
        Engaged,
        Some(ReasonList::RejectAccount),
    ),
    back(
        AccountMove::Recycle,
        AccountCommand::Recycle,
        &[Opportunity],
        Engaged,
        Some(ReasonList::RecycleAccount),
    ),
    AccountEdge {
        backward: false,
        ..back(
            AccountMove::Disqualify,
            AccountCommand::Disqualify,
            FORWARD_STAGES,
            Disqualified,
            Some(ReasonList::Disqualify),
        )
    },
    back(
        AccountMove::Requalify,
        AccountCommand::Requalify,
        &[Disqualified],
        Target,
        None,
    ),
];

/// The edge a manual command takes from `stage`, if any.
pub fn manual_account_edge(stage: AccountStage, command: AccountCommand) -> Option<&'static AccountEdge> {
    ACCOUNT_TABLE
        .iter()
        .find(|e| !e.automatic && e.command == command && e.from.contains(&stage))
}

/// The automatic edges up from `stage`, the furthest first: a member's
/// conversion wins over its SQL, which wins over the MQA guards.
pub fn automatic_account_edges(stage: AccountStage) -> impl Iterator<Item = &'static AccountEdge> {
    let mut edges: Vec<&'static AccountEdge> = ACCOUNT_TABLE
        .iter()
        .filter(|e| e.automatic && e.from.contains(&stage))
        .collect();
    edges.sort_by_key(|e| std::cmp::Reverse(e.to.rank()));
    edges.into_iter()
}

/// Every stage a move from `from` to `to` enters, in order: the forward
/// path for a forward jump, else just the target.
pub fn account_stages_entered(from: AccountStage, to: AccountStage) -> Vec<AccountStage> {
    let path = from.forward_path(to);
    if path.is_empty() { vec![to] } else { path.to_vec() }
}

/// Whether a decision on an account in `stage` can read `guard`: an
/// automatic move from it checks it. Automatic moves only go forward, and
/// each leaves from every stage before it, so no later stage of the same
/// decision reads a guard its first stage does not.
pub fn reads_guard(stage: AccountStage, guard: AccountGuard) -> bool {
    ACCOUNT_TABLE
        .iter()
        .any(|e| e.automatic && e.from.contains(&stage) && e.guards.contains(&guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_in_sql_or_customer_are_read_only_before_those_stages() {
        for stage in [Target, Engaged, Mqa, Opportunity, Customer, Disqualified] {
            assert_eq!(
                reads_guard(stage, MemberSql),
                OPEN_STAGES.contains(&stage),
                "{stage:?}"
            );
            assert_eq!(
                reads_guard(stage, MemberCustomer),
                FORWARD_STAGES.contains(&stage),
                "{stage:?}"
            );
        }
    }

    #[test]
    fn every_manual_command_has_an_edge_and_customer_leaves_on_nothing() {
        for command in AccountCommand::MANUAL {
            assert!(
                ACCOUNT_TABLE.iter().any(|e| e.command == command),
                "{command} has no edge"
            );
        }
        assert!(ACCOUNT_TABLE.iter().all(|e| !e.from.contains(&Customer)));
    }

    #[test]
    fn a_manual_command_has_one_edge_per_stage() {
        for command in AccountCommand::MANUAL {
            for stage in AccountStage::ALL {
                let n = ACCOUNT_TABLE
                    .iter()
                    .filter(|e| !e.automatic && e.command == command && e.from.contains(&stage))
                    .count();
                assert!(n <= 1, "{command} from {stage}: {n} edges");
            }
        }
    }

    #[test]
    fn automatic_edges_try_the_furthest_first() {
        let order: Vec<AccountMove> = automatic_account_edges(Engaged).map(|e| e.by).collect();
        assert_eq!(order, [AccountMove::Win, AccountMove::Open, AccountMove::Qualify]);
        assert_eq!(
            automatic_account_edges(Disqualified).count(),
            0,
            "a disqualified account moves only by REQUALIFY"
        );
    }
}

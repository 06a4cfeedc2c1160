//! Accounts, their members, their stage history and the history of each
//! lead's link: the records, their rows, and the reads outside a
//! transaction (the writes are in `tx/accounts.rs`).

use std::collections::BTreeMap;

use leadflow_domain::account::{
    Account, AccountCause, AccountGuardCheck, AccountMove, AccountTransition, BuyingGroup, Contribution,
    EngagedUntil, MatchedBy, Member, SumState,
};
use leadflow_domain::{AccountStage, Stage, Timestamp};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

use crate::convert::ts;
use crate::db::Store;
use crate::entity::{account, account_link, account_member, account_transition};
use crate::error::StoreError;

/// A stored account: the domain state and what the store keeps of its
/// members' aggregate.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountRecord {
    pub id: String,
    pub external_key: Option<String>,
    pub domain: Option<String>,
    /// Firmographic attributes.
    pub attributes: BTreeMap<String, String>,
    pub owner: Option<String>,
    pub account: Account,
    /// Changes with the stage and the account's own fields.
    pub version: i64,
    /// The policy version it was last decided under.
    pub policy_version: i64,
    /// Transitions recorded so far.
    pub history_len: i64,
    pub fit: f64,
    /// The aggregate at `updated_at`, and its search key.
    pub engagement: f64,
    pub engagement_key: f64,
    /// The counted members' sum.
    pub sum: SumState,
    /// The engaged members, as of `updated_at`.
    pub group: BuyingGroup,
    /// Members, disqualified ones included.
    pub members: i64,
    pub updated_at: Timestamp,
    /// When an engaged member's engagement next ends by decay alone (the
    /// account's timer): kept by [`crate::Tx::update_account`].
    pub engagement_ends_at: Option<Timestamp>,
}

/// A lead's membership of an account, as the account reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberRecord {
    pub account_id: String,
    pub matched_by: MatchedBy,
    pub matched_at: Timestamp,
    pub member: Member,
    /// Lead search's key of its contribution (the N highest come first).
    pub key: f64,
    pub engaged_until: EngagedUntil,
    /// Counted among the account's engaged members (`AccountRecord::group`).
    pub engaged: bool,
}

/// A stored account transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredAccountTransition {
    pub account_id: String,
    /// Position in the account's history, from 1.
    pub seq: i64,
    pub record: AccountTransition,
    pub policy_version: i64,
    pub principal: Option<String>,
}

/// One change of a lead's account: matched, re-matched, linked or unlinked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLink {
    pub lead_id: String,
    /// Position in the lead's link history, from 1.
    pub seq: i64,
    pub from_account: Option<String>,
    pub to_account: Option<String>,
    pub matched_by: MatchedBy,
    pub at: Timestamp,
    pub actor: Option<String>,
    pub principal: Option<String>,
}

impl StoredLink {
    /// An unlink by hand: the lead stays without an account until it is
    /// linked again by hand.
    pub fn is_manual_unlink(&self) -> bool {
        self.matched_by == MatchedBy::Manual && self.to_account.is_none()
    }
}

/// How an account is looked up.
#[derive(Clone, Copy, Debug)]
pub enum AccountLookup<'a> {
    Id(&'a str),
    ExternalKey(&'a str),
    Domain(&'a str),
}

/// What `ListAccounts` asks for.
#[derive(Clone, Debug, Default)]
pub struct AccountListing {
    pub stages: Vec<AccountStage>,
    /// Highest score first (by the engagement key); else newest first.
    pub by_score: bool,
    /// The last account of the previous page: its sort value and id.
    pub after: Option<(f64, String)>,
    pub limit: u64,
}

/// `EngagedUntil` as stored: `None` not engaged, `i64::MAX` always.
pub(crate) fn until_column(until: EngagedUntil) -> Option<i64> {
    match until {
        EngagedUntil::Not => None,
        EngagedUntil::Until(t) => Some(t.as_micros()),
        EngagedUntil::Always => Some(i64::MAX),
    }
}

fn until_of(column: Option<i64>) -> EngagedUntil {
    match column {
        None => EngagedUntil::Not,
        Some(i64::MAX) => EngagedUntil::Always,
        Some(t) => EngagedUntil::Until(ts(t)),
    }
}

fn named<T: std::str::FromStr>(table: &'static str, key: &str, text: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.parse::<T>().map_err(|e| StoreError::corrupt(table, key, e))
}

pub(crate) fn account_record(row: account::Model) -> Result<AccountRecord, StoreError> {
    let key = row.id.clone();
    let corrupt = |e: &dyn std::fmt::Display| StoreError::corrupt("accounts", &key, e);
    Ok(AccountRecord {
        attributes: serde_json::from_str(&row.attributes).map_err(|e| corrupt(&e))?,
        account: Account {
            stage: named("accounts", &row.id, &row.stage)?,
            created_at: ts(row.created_at),
            entered_stage_at: ts(row.entered_stage_at),
            last_transition_at: ts(row.last_transition_at),
            entered_by: named::<AccountMove>("accounts", &row.id, &row.entered_by)?,
            window_start: row.window_start.map(ts),
        },
        sum: SumState {
            epoch: ts(row.sum_epoch),
            units: row.sum_units.parse::<i128>().map_err(|e| corrupt(&e))?,
        },
        group: BuyingGroup {
            engaged: u32::try_from(row.engaged).unwrap_or(0),
            personas: serde_json::from_str(&row.personas).map_err(|e| corrupt(&e))?,
        },
        id: row.id,
        external_key: row.external_key,
        domain: row.domain,
        owner: row.owner,
        version: row.version,
        policy_version: row.policy_version,
        history_len: row.history_len,
        fit: row.fit,
        engagement: row.engagement,
        engagement_key: row.engagement_key,
        members: row.members,
        updated_at: ts(row.updated_at),
        engagement_ends_at: row.engagement_ends_at.map(ts),
    })
}

pub(crate) fn account_row(ws: &str, r: &AccountRecord) -> Result<account::Model, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::corrupt("accounts", &r.id, e);
    Ok(account::Model {
        workspace_id: ws.to_owned(),
        id: r.id.clone(),
        external_key: r.external_key.clone(),
        domain: r.domain.clone(),
        attributes: serde_json::to_string(&r.attributes).map_err(corrupt)?,
        owner: r.owner.clone(),
        stage: r.account.stage.as_str().to_owned(),
        version: r.version,
        policy_version: r.policy_version,
        created_at: r.account.created_at.as_micros(),
        entered_stage_at: r.account.entered_stage_at.as_micros(),
        last_transition_at: r.account.last_transition_at.as_micros(),
        entered_by: r.account.entered_by.as_str().to_owned(),
        window_start: r.account.window_start.map(Timestamp::as_micros),
        history_len: r.history_len,
        fit: r.fit,
        engagement: r.engagement,
        engagement_key: r.engagement_key,
        sum_epoch: r.sum.epoch.as_micros(),
        sum_units: r.sum.units.to_string(),
        engaged: i32::try_from(r.group.engaged).unwrap_or(i32::MAX),
        personas: serde_json::to_string(&r.group.personas).map_err(corrupt)?,
        members: r.members,
        updated_at: r.updated_at.as_micros(),
        engagement_ends_at: r.engagement_ends_at.map(Timestamp::as_micros),
    })
}

pub(crate) fn member_record(row: account_member::Model) -> Result<MemberRecord, StoreError> {
    Ok(MemberRecord {
        matched_by: named("account_members", &row.lead_id, &row.matched_by)?,
        matched_at: ts(row.matched_at),
        key: row.score_key,
        engaged_until: until_of(row.engaged_until),
        engaged: row.engaged,
        member: Member {
            stage: named::<Stage>("account_members", &row.lead_id, &row.stage)?,
            entered_stage_at: ts(row.entered_stage_at),
            persona: row.persona,
            score: Contribution {
                value: row.value,
                at: ts(row.value_at),
            },
            erased: row.erased,
            lead: row.lead_id,
        },
        account_id: row.account_id,
    })
}

pub(crate) fn member_row(ws: &str, m: &MemberRecord) -> account_member::Model {
    account_member::Model {
        workspace_id: ws.to_owned(),
        lead_id: m.member.lead.clone(),
        account_id: m.account_id.clone(),
        matched_by: m.matched_by.as_str().to_owned(),
        matched_at: m.matched_at.as_micros(),
        persona: m.member.persona.clone(),
        stage: m.member.stage.as_str().to_owned(),
        entered_stage_at: m.member.entered_stage_at.as_micros(),
        value: m.member.score.value,
        value_at: m.member.score.at.as_micros(),
        score_key: m.key,
        counts: m.member.counts(),
        engaged_until: until_column(m.engaged_until),
        engaged: m.engaged,
        erased: m.member.erased,
    }
}

/// An account cause as stored: its kind, the member and the reference.
pub(crate) fn account_cause_parts(cause: &AccountCause) -> (&'static str, Option<String>, Option<String>) {
    match cause {
        AccountCause::Matched { lead } => (cause.as_str(), Some(lead.clone()), None),
        AccountCause::Member { lead, event_id } => (cause.as_str(), Some(lead.clone()), event_id.clone()),
        _ => (cause.as_str(), None, None),
    }
}

fn account_cause(
    key: &str,
    kind: &str,
    lead: Option<String>,
    reference: Option<String>,
) -> Result<AccountCause, StoreError> {
    Ok(match (kind, lead) {
        ("CREATE", _) => AccountCause::Create,
        ("MANUAL", _) => AccountCause::Manual,
        ("POLICY_CHANGE", _) => AccountCause::PolicyChange,
        ("MATCHED", Some(lead)) => AccountCause::Matched { lead },
        ("MEMBER", Some(lead)) => AccountCause::Member {
            lead,
            event_id: reference,
        },
        (other, _) => {
            return Err(StoreError::corrupt(
                "account_transitions",
                key,
                format!("unknown cause {other:?}"),
            ));
        }
    })
}

pub(crate) fn account_transition(
    row: account_transition::Model,
) -> Result<StoredAccountTransition, StoreError> {
    let key = format!("{}/{}", row.account_id, row.seq);
    let guards: Vec<AccountGuardCheck> =
        serde_json::from_str(&row.guards).map_err(|e| StoreError::corrupt("account_transitions", &key, e))?;
    Ok(StoredAccountTransition {
        record: AccountTransition {
            from: row
                .from_stage
                .as_deref()
                .map(|s| named("account_transitions", &key, s))
                .transpose()?,
            to: named("account_transitions", &key, &row.to_stage)?,
            at: ts(row.at),
            by: named("account_transitions", &key, &row.by)?,
            cause: account_cause(&key, &row.cause, row.cause_lead, row.cause_ref)?,
            reason: row.reason,
            actor: row.actor,
            engagement: row.engagement,
            fit: row.fit,
            engaged_members: u32::try_from(row.engaged_members).unwrap_or(0),
            guards,
        },
        account_id: row.account_id,
        seq: row.seq,
        policy_version: row.policy_version,
        principal: row.principal,
    })
}

pub(crate) fn link(row: account_link::Model) -> Result<StoredLink, StoreError> {
    Ok(StoredLink {
        matched_by: named("account_links", &row.lead_id, &row.matched_by)?,
        lead_id: row.lead_id,
        seq: row.seq,
        from_account: row.from_account,
        to_account: row.to_account,
        at: ts(row.at),
        actor: row.actor,
        principal: row.principal,
    })
}

pub(crate) fn lookup_condition(ws: &str, by: AccountLookup<'_>) -> Condition {
    let c = Condition::all().add(account::Column::WorkspaceId.eq(ws));
    match by {
        AccountLookup::Id(id) => c.add(account::Column::Id.eq(id)),
        AccountLookup::ExternalKey(k) => c.add(account::Column::ExternalKey.eq(k)),
        AccountLookup::Domain(d) => c.add(account::Column::Domain.eq(d)),
    }
}

/// A lead's membership row.
pub(crate) fn member_of(ws: &str, lead_id: &str) -> sea_orm::Select<account_member::Entity> {
    account_member::Entity::find()
        .filter(account_member::Column::WorkspaceId.eq(ws))
        .filter(account_member::Column::LeadId.eq(lead_id))
}

/// An account's `n` highest counted members, highest first (then by lead id).
pub(crate) fn highest(ws: &str, account_id: &str, n: u64) -> sea_orm::Select<account_member::Entity> {
    account_member::Entity::find()
        .filter(account_member::Column::WorkspaceId.eq(ws))
        .filter(account_member::Column::AccountId.eq(account_id))
        .filter(account_member::Column::Counts.eq(true))
        .order_by_desc(account_member::Column::ScoreKey)
        .order_by_asc(account_member::Column::LeadId)
        .limit(n)
}

/// An account's members counted as engaged whose engagement ended by `t`.
pub(crate) fn ended_by(ws: &str, account_id: &str, t: Timestamp) -> sea_orm::Select<account_member::Entity> {
    account_member::Entity::find()
        .filter(account_member::Column::WorkspaceId.eq(ws))
        .filter(account_member::Column::AccountId.eq(account_id))
        .filter(account_member::Column::Engaged.eq(true))
        .filter(account_member::Column::EngagedUntil.lte(t.as_micros()))
}

/// The timer key of an account's soonest engagement end, in the timers
/// table under the account's id.
pub const ACCOUNT_ENGAGEMENT_END: &str = "account:engagement-end";

/// The soonest end by decay alone among an account's engaged members
/// (those engaged until their next change have none).
pub(crate) fn soonest_end(
    ws: &str,
    account_id: &str,
) -> sea_orm::Selector<sea_orm::SelectGetableTuple<Option<i64>>> {
    account_member::Entity::find()
        .select_only()
        .column(account_member::Column::EngagedUntil)
        .filter(account_member::Column::WorkspaceId.eq(ws))
        .filter(account_member::Column::AccountId.eq(account_id))
        .filter(account_member::Column::Engaged.eq(true))
        .filter(account_member::Column::EngagedUntil.lt(i64::MAX))
        .order_by_asc(account_member::Column::EngagedUntil)
        .limit(1)
        .into_tuple::<Option<i64>>()
}

/// A member row's contribution.
pub(crate) fn contribution(m: account_member::Model) -> Contribution {
    Contribution {
        value: m.value,
        at: ts(m.value_at),
    }
}

impl Store {
    /// An account by id, external key or domain.
    pub async fn account(
        &self,
        ws: &str,
        by: AccountLookup<'_>,
    ) -> Result<Option<AccountRecord>, StoreError> {
        account::Entity::find()
            .filter(lookup_condition(ws, by))
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(account_record)
            .transpose()
    }

    /// A page of accounts.
    pub async fn list_accounts(
        &self,
        ws: &str,
        q: &AccountListing,
    ) -> Result<Vec<AccountRecord>, StoreError> {
        let mut find = account::Entity::find().filter(account::Column::WorkspaceId.eq(ws));
        if !q.stages.is_empty() {
            find = find.filter(account::Column::Stage.is_in(q.stages.iter().map(|s| s.as_str())));
        }
        let (column, descending) = if q.by_score {
            (account::Column::EngagementKey, true)
        } else {
            (account::Column::EnteredStageAt, true)
        };
        if let Some((value, id)) = &q.after {
            let value = if q.by_score {
                sea_orm::Value::from(*value)
            } else {
                #[allow(clippy::cast_possible_truncation)] // a stored instant, sent back as given
                sea_orm::Value::from(*value as i64)
            };
            let before = if descending {
                Condition::any().add(column.lt(value.clone())).add(
                    Condition::all()
                        .add(column.eq(value))
                        .add(account::Column::Id.gt(id.as_str())),
                )
            } else {
                Condition::any().add(column.gt(value.clone())).add(
                    Condition::all()
                        .add(column.eq(value))
                        .add(account::Column::Id.gt(id.as_str())),
                )
            };
            find = find.filter(before);
        }
        let find = if descending {
            find.order_by_desc(column)
        } else {
            find.order_by_asc(column)
        };
        find.order_by_asc(account::Column::Id)
            .limit(q.limit)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(account_record)
            .collect()
    }

    /// An account's transitions after `after_seq`, oldest first.
    pub async fn account_history(
        &self,
        ws: &str,
        account_id: &str,
        after_seq: i64,
        limit: u64,
    ) -> Result<Vec<StoredAccountTransition>, StoreError> {
        account_transition::Entity::find()
            .filter(account_transition::Column::WorkspaceId.eq(ws))
            .filter(account_transition::Column::AccountId.eq(account_id))
            .filter(account_transition::Column::Seq.gt(after_seq))
            .order_by_asc(account_transition::Column::Seq)
            .limit(limit)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(account_transition)
            .collect()
    }

    /// A lead's membership, if it has an account.
    pub async fn membership(&self, ws: &str, lead_id: &str) -> Result<Option<MemberRecord>, StoreError> {
        member_of(ws, lead_id)
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(member_record)
            .transpose()
    }

    /// An account's members, highest score first (then by lead id), at
    /// most `limit`.
    pub async fn members_of(
        &self,
        ws: &str,
        account_id: &str,
        limit: u64,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        account_member::Entity::find()
            .filter(account_member::Column::WorkspaceId.eq(ws))
            .filter(account_member::Column::AccountId.eq(account_id))
            .order_by_desc(account_member::Column::ScoreKey)
            .order_by_asc(account_member::Column::LeadId)
            .limit(limit)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(member_record)
            .collect()
    }

    /// The accounts that have erased members, in id order.
    pub async fn accounts_with_erased_members(&self, ws: &str) -> Result<Vec<String>, StoreError> {
        account_member::Entity::find()
            .select_only()
            .column(account_member::Column::AccountId)
            .distinct()
            .filter(account_member::Column::WorkspaceId.eq(ws))
            .filter(account_member::Column::Erased.eq(true))
            .order_by_asc(account_member::Column::AccountId)
            .into_tuple::<String>()
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))
    }

    /// An account's erased members (their frozen parts), in lead id order.
    pub async fn erased_members(&self, ws: &str, account_id: &str) -> Result<Vec<MemberRecord>, StoreError> {
        account_member::Entity::find()
            .filter(account_member::Column::WorkspaceId.eq(ws))
            .filter(account_member::Column::AccountId.eq(account_id))
            .filter(account_member::Column::Erased.eq(true))
            .order_by_asc(account_member::Column::LeadId)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(member_record)
            .collect()
    }

    /// The `n` highest contributions of an account's counted members.
    pub async fn top_contributions(
        &self,
        ws: &str,
        account_id: &str,
        n: u64,
    ) -> Result<Vec<Contribution>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let rows = highest(ws, account_id, n)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?;
        Ok(rows.into_iter().map(contribution).collect())
    }

    /// The members counted among an account's engaged whose engagement
    /// ended by `t` (the group at `t` is the stored one without them).
    pub async fn engagement_ended(
        &self,
        ws: &str,
        account_id: &str,
        t: Timestamp,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        ended_by(ws, account_id, t)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(member_record)
            .collect()
    }

    /// The leads ever linked to an account (by any match or by hand), each
    /// once, in id order, at most `limit`.
    pub async fn leads_ever_in(
        &self,
        ws: &str,
        account_id: &str,
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        account_link::Entity::find()
            .select_only()
            .column(account_link::Column::LeadId)
            .distinct()
            .filter(account_link::Column::WorkspaceId.eq(ws))
            .filter(account_link::Column::ToAccount.eq(account_id))
            .order_by_asc(account_link::Column::LeadId)
            .limit(limit)
            .into_tuple::<String>()
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))
    }

    /// The whole histories of the accounts that moved in `period`.
    pub async fn account_histories(
        &self,
        ws: &str,
        period: leadflow_domain::analytics::Period,
    ) -> Result<Vec<leadflow_domain::analytics::AccountHistory>, StoreError> {
        use leadflow_domain::analytics::{AccountHistory, AccountStep};
        let ids: Vec<String> = account_transition::Entity::find()
            .select_only()
            .column(account_transition::Column::AccountId)
            .distinct()
            .filter(account_transition::Column::WorkspaceId.eq(ws))
            .filter(account_transition::Column::At.gte(period.start.as_micros()))
            .filter(account_transition::Column::At.lt(period.end.as_micros()))
            .into_tuple::<String>()
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?;
        let mut out: Vec<AccountHistory> = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1_000) {
            let rows = account_transition::Entity::find()
                .filter(account_transition::Column::WorkspaceId.eq(ws))
                .filter(account_transition::Column::AccountId.is_in(chunk.iter().map(String::as_str)))
                .order_by_asc(account_transition::Column::AccountId)
                .order_by_asc(account_transition::Column::Seq)
                .all(self.reader())
                .await
                .map_err(|e| self.on_reader(e))?;
            for row in rows {
                let t = account_transition(row)?;
                let step = AccountStep {
                    from: t.record.from,
                    to: t.record.to,
                    at: t.record.at,
                    by: t.record.by,
                    reason: t.record.reason,
                };
                match out.last_mut() {
                    Some(h) if h.account == t.account_id => h.steps.push(step),
                    _ => out.push(AccountHistory {
                        account: t.account_id,
                        steps: vec![step],
                    }),
                }
            }
        }
        Ok(out)
    }

    /// How many accounts are in each stage.
    pub async fn account_stage_counts(&self, ws: &str) -> Result<Vec<(AccountStage, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = account::Entity::find()
            .select_only()
            .column(account::Column::Stage)
            .column_as(account::Column::Id.count(), "n")
            .filter(account::Column::WorkspaceId.eq(ws))
            .group_by(account::Column::Stage)
            .into_tuple()
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?;
        rows.into_iter()
            .map(|(stage, n)| Ok((named("accounts", ws, &stage)?, n)))
            .collect()
    }

    /// The memberships of some leads.
    pub async fn memberships(&self, ws: &str, lead_ids: &[&str]) -> Result<Vec<MemberRecord>, StoreError> {
        let mut out = Vec::with_capacity(lead_ids.len());
        for chunk in lead_ids.chunks(1_000) {
            let rows = account_member::Entity::find()
                .filter(account_member::Column::WorkspaceId.eq(ws))
                .filter(account_member::Column::LeadId.is_in(chunk.iter().copied()))
                .all(self.reader())
                .await
                .map_err(|e| self.on_reader(e))?;
            for row in rows {
                out.push(member_record(row)?);
            }
        }
        Ok(out)
    }

    /// A lead's link history, oldest first.
    pub async fn links_of(&self, ws: &str, lead_id: &str) -> Result<Vec<StoredLink>, StoreError> {
        account_link::Entity::find()
            .filter(account_link::Column::WorkspaceId.eq(ws))
            .filter(account_link::Column::LeadId.eq(lead_id))
            .order_by_asc(account_link::Column::Seq)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(link)
            .collect()
    }
}

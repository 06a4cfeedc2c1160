//! Accounts on the write path: a lead's change re-matches it (at capture
//! and on a profile change), updates its membership — the account's sum,
//! buying group and member count by the member's change alone — and
//! re-decides the account, in the lead's transaction, its events after the
//! lead's.

use std::collections::BTreeMap;

use leadflow_domain::account::{
    AccountCause, AccountDecision, AccountEvent, AccountGuard, AccountTransition, AggregateInput,
    Contribution, Facts, Match, MatchKey, MatchedBy, Member, SumState, account_fit, create_account,
    created_domain, decide_account, inherited, match_lead, reads_guard, top_n,
};
use leadflow_domain::policy::Accounts;
use leadflow_domain::profile::Profile;
use leadflow_domain::score::key_of_score;
use leadflow_domain::{Lead, Policy, Stage, Timestamp};
use leadflow_store::{
    AccountLookup, AccountRecord, LeadRecord, MemberRecord, NewOutboxEvent, StoredAccountTransition,
    StoredLink, Subject, Tx,
};
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::persist::Target;

/// What an account's outbox event carries (`ACCOUNT_TRANSITION`,
/// `ACCOUNT_TRIGGER`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountPayload {
    pub account_id: String,
    pub external_key: Option<String>,
    pub domain: Option<String>,
    pub stage: leadflow_domain::AccountStage,
    pub account_version: i64,
    pub engagement: f64,
    pub fit: f64,
    pub engaged_members: u32,
    pub policy_version: i64,
    #[serde(default)]
    pub transition: Option<StoredAccountTransition>,
    #[serde(default)]
    pub trigger: Option<leadflow_domain::account::AccountTrigger>,
}

/// What writing an account decision did.
#[derive(Default)]
pub(crate) struct AccountWritten {
    pub(crate) transitions: Vec<StoredAccountTransition>,
    pub(crate) events: usize,
}

/// A member's contribution to an account whose window may have started
/// after the lead's own: over the lead's engagements after both.
pub(crate) async fn contribution(
    tx: &Tx,
    ws: &str,
    policy: &Policy,
    accounts: &Accounts,
    lead_id: &str,
    lead: &Lead,
    window: Option<Timestamp>,
) -> Result<Contribution, EngineError> {
    let model = accounts.score.model;
    if let Some(part) = Contribution::of_member(policy, model, lead, window, None, None) {
        return Ok(part);
    }
    // The account's window started after the lead's: its log, after it.
    let log = tx.engagements_of(ws, lead_id).await?;
    Ok(Contribution::of_member(policy, model, lead, window, Some(&log), None).unwrap_or(Contribution::ZERO))
}

/// The member a lead is in an account.
#[allow(clippy::too_many_arguments)]
async fn member_of(
    tx: &Tx,
    target: &Target<'_>,
    accounts: &Accounts,
    record: &LeadRecord,
    account: &AccountRecord,
    matched_by: MatchedBy,
    matched_at: Timestamp,
    erased: bool,
) -> Result<MemberRecord, EngineError> {
    let lead = &record.lead;
    let score = contribution(
        tx,
        target.ws,
        target.policy,
        accounts,
        &record.id,
        lead,
        account.account.window_start,
    )
    .await?;
    let member = Member {
        lead: record.id.clone(),
        stage: lead.stage,
        entered_stage_at: lead.entered_stage_at,
        persona: target.policy.persona(&lead.profile).map(str::to_owned),
        score,
        erased,
    };
    let engaged_until = member.engaged_until(target.policy, accounts);
    Ok(MemberRecord {
        account_id: account.id.clone(),
        matched_by,
        matched_at,
        key: score.key(target.policy, accounts.score.model),
        engaged_until,
        engaged: false,
        member,
    })
}

/// Brings the account of a lead up to date after a decision on the lead:
/// re-matches it when its profile changed (or it has no account yet),
/// updates its membership and re-decides the account at `at`. Returns the
/// outbox events written. Nothing happens under a policy without
/// `[accounts]`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn sync_lead(
    tx: &Tx,
    target: &Target<'_>,
    before: Option<&Lead>,
    policy_changed: bool,
    record: &LeadRecord,
    engagement: Option<&str>,
    at: Timestamp,
) -> Result<usize, EngineError> {
    let Some(accounts) = target.policy.accounts.as_ref() else {
        return Ok(0);
    };
    let ws = target.ws;
    let current = tx.member(ws, &record.id).await?;
    let profile_changed = before.is_none_or(|b| b.profile != record.lead.profile);
    let manual = current
        .as_ref()
        .is_some_and(|m| m.matched_by == MatchedBy::Manual);
    let cause = AccountCause::Member {
        lead: record.id.clone(),
        event_id: engagement.map(str::to_owned),
    };
    // A lead merged into another leaves its account (the survivor is
    // matched on its own).
    if record.lead.stage == Stage::Merged {
        let Some(current) = current else {
            return Ok(0);
        };
        let by = current.matched_by;
        return relink(
            tx,
            target,
            accounts,
            record,
            Some(current),
            None,
            by,
            None,
            at,
            &cause,
        )
        .await;
    }
    let mut events = 0;
    // A policy change re-matches too: its match rules may have changed.
    if !manual && (current.is_none() || profile_changed || policy_changed) {
        let mut found = match_lead(accounts, &record.lead.profile);
        // A lead unlinked by hand stays unmatched until linked again.
        if current.is_none()
            && found.is_some()
            && tx
                .last_link(ws, &record.id)
                .await?
                .is_some_and(|l| l.is_manual_unlink())
        {
            found = None;
        }
        if let Some(m) = &found {
            lock_in_order(tx, ws, current.as_ref(), lookup_of(&m.key)).await?;
        }
        let wanted = match &found {
            Some(m) => {
                resolve(
                    tx,
                    target,
                    accounts,
                    m,
                    &record.lead.profile,
                    &record.id,
                    at,
                    &mut events,
                )
                .await?
            }
            None => None,
        };
        let now_in = current.as_ref().map(|m| m.account_id.as_str());
        if wanted.as_ref().map(|a| a.id.as_str()) != now_in {
            // An unlink because no matcher applies any more records the
            // matcher that had linked it.
            let by = found
                .map(|m| m.by)
                .or(current.as_ref().map(|m| m.matched_by))
                .unwrap_or(MatchedBy::EmailDomain);
            events += relink(
                tx, target, accounts, record, current, wanted, by, None, at, &cause,
            )
            .await?;
            return Ok(events);
        }
    }
    let Some(current) = current else {
        return Ok(events);
    };
    let Some(account) = tx
        .lock_account(ws, AccountLookup::Id(&current.account_id))
        .await?
    else {
        return Ok(events);
    };
    // Read again under the account's lock on PostgreSQL: others' decisions
    // on the account (an engagement ending, a window reset) rewrite members'
    // rows. SQLite has one writer at a time: the first read stands.
    let current = if tx.backend() == leadflow_store::Backend::Postgres {
        match tx.member(ws, &record.id).await? {
            Some(current) => current,
            None => return Ok(events),
        }
    } else {
        current
    };
    let next = member_of(
        tx,
        target,
        accounts,
        record,
        &account,
        current.matched_by,
        current.matched_at,
        current.member.erased,
    )
    .await?;
    events += update_member(
        tx,
        target,
        accounts,
        account,
        Some(current),
        Some(next),
        &cause,
        at,
    )
    .await?;
    Ok(events)
}

fn lookup_of(key: &MatchKey) -> AccountLookup<'_> {
    match key {
        MatchKey::External(k) => AccountLookup::ExternalKey(k),
        MatchKey::Domain(d) => AccountLookup::Domain(d),
    }
}

/// Locks a lead's current account ahead of the one it moves to when its id
/// is the lower: two accounts are always locked in id order, so that two
/// leads moving between them in opposite directions never wait on each
/// other.
pub(crate) async fn lock_in_order(
    tx: &Tx,
    ws: &str,
    current: Option<&MemberRecord>,
    wanted: AccountLookup<'_>,
) -> Result<(), EngineError> {
    let Some(current) = current else { return Ok(()) };
    if let Some(id) = tx.account_id(ws, wanted).await?
        && current.account_id < id
    {
        tx.lock_account(ws, AccountLookup::Id(&current.account_id))
            .await?;
    }
    Ok(())
}

/// The account a match names, locked: found, or created (with `create`).
#[allow(clippy::too_many_arguments)]
async fn resolve(
    tx: &Tx,
    target: &Target<'_>,
    accounts: &Accounts,
    found: &Match,
    profile: &Profile,
    lead_id: &str,
    at: Timestamp,
    events: &mut usize,
) -> Result<Option<AccountRecord>, EngineError> {
    let ws = target.ws;
    let lookup = lookup_of(&found.key);
    if let Some(account) = tx.lock_account(ws, lookup).await? {
        return Ok(Some(account));
    }
    if !accounts.create {
        return Ok(None);
    }
    let mut domain = created_domain(accounts, found, profile);
    if let (MatchKey::External(_), Some(d)) = (&found.key, &domain)
        && tx.lock_account(ws, AccountLookup::Domain(d)).await?.is_some()
    {
        domain = None; // the domain is another account's
    }
    let external_key = match &found.key {
        MatchKey::External(k) => Some(k.clone()),
        MatchKey::Domain(_) => None,
    };
    let new = NewAccount {
        external_key,
        domain,
        attributes: inherited(accounts, profile),
        owner: None,
        created_at: at,
    };
    let cause = AccountCause::Matched {
        lead: lead_id.to_owned(),
    };
    match insert_account(tx, target, &new, cause).await? {
        Some((account, written)) => {
            *events += written.events;
            Ok(Some(account))
        }
        // Created meanwhile by another lead's match: that one.
        None => Ok(tx.lock_account(ws, lookup).await?),
    }
}

/// A new account's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NewAccount {
    pub(crate) external_key: Option<String>,
    pub(crate) domain: Option<String>,
    pub(crate) attributes: BTreeMap<String, String>,
    pub(crate) owner: Option<String>,
    pub(crate) created_at: Timestamp,
}

/// Inserts an account in TARGET with its CREATE transition; `None` when
/// its external key or domain is taken.
pub(crate) async fn insert_account(
    tx: &Tx,
    target: &Target<'_>,
    new: &NewAccount,
    cause: AccountCause,
) -> Result<Option<(AccountRecord, AccountWritten)>, EngineError> {
    let attributes = Profile::from_stored(new.attributes.clone());
    let fit = target
        .policy
        .accounts
        .as_ref()
        .map_or(0.0, |a| account_fit(a, &attributes));
    let facts = Facts {
        engagement: 0.0,
        fit,
        group: leadflow_domain::account::BuyingGroup::default(),
        member_sql: None,
        member_customer: None,
    };
    let (account, created) = create_account(new.created_at, cause, &facts);
    let model = target.policy.accounts.as_ref().map_or(0, |a| a.score.model);
    let record = AccountRecord {
        id: uuid::Uuid::now_v7().to_string(),
        external_key: new.external_key.clone(),
        domain: new.domain.clone(),
        attributes: new.attributes.clone(),
        owner: new.owner.clone(),
        account,
        version: 1,
        policy_version: target.policy_version,
        history_len: 0,
        fit,
        engagement: 0.0,
        engagement_key: 0.0,
        sum: SumState::of(target.policy, model, &[]),
        group: leadflow_domain::account::BuyingGroup::default(),
        members: 0,
        updated_at: target.now,
        engagement_ends_at: None,
    };
    // The row holds its CREATE transition already; the record starts
    // before it, so that writing the decision numbers it 1.
    if !tx
        .insert_account(
            target.ws,
            &AccountRecord {
                history_len: 1,
                ..record.clone()
            },
        )
        .await?
    {
        return Ok(None);
    }
    let decision = AccountDecision {
        account: record.account.clone(),
        events: vec![AccountEvent::Transition(created)],
        promote_members: false,
        window_reset: None,
    };
    let (record, written) = write_decision(tx, target, record, &decision, false).await?;
    Ok(Some((record, written)))
}

/// Moves a lead from its account (if any) to `wanted` (if any), recording
/// the change in its link history; both accounts are re-decided.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn relink(
    tx: &Tx,
    target: &Target<'_>,
    accounts: &Accounts,
    record: &LeadRecord,
    current: Option<MemberRecord>,
    wanted: Option<AccountRecord>,
    by: MatchedBy,
    actor: Option<&str>,
    at: Timestamp,
    cause: &AccountCause,
) -> Result<usize, EngineError> {
    let ws = target.ws;
    let mut events = 0;
    let from = current.as_ref().map(|m| m.account_id.clone());
    let erased = current.as_ref().is_some_and(|m| m.member.erased);
    let link = |to: Option<String>| StoredLink {
        lead_id: record.id.clone(),
        seq: 0,
        from_account: from.clone(),
        to_account: to,
        matched_by: by,
        at,
        actor: actor.map(str::to_owned),
        principal: target.principal.map(str::to_owned),
    };
    // The same account, linked another way (a match pinned by hand): its
    // part stays as it is.
    if let (Some(current), Some(account)) = (&current, &wanted)
        && current.account_id == account.id
    {
        if let Some(mut member) = tx.member(ws, &record.id).await? {
            member.matched_by = by;
            member.matched_at = at;
            tx.put_member(ws, &member).await?;
        }
        tx.insert_link(ws, &link(Some(account.id.clone()))).await?;
        return Ok(0);
    }
    if let Some(current) = current
        && let Some(old) = tx
            .lock_account(ws, AccountLookup::Id(&current.account_id))
            .await?
    {
        // Read again under the account's lock (see `sync_lead`).
        let current = tx.member(ws, &record.id).await?.unwrap_or(current);
        tx.delete_member(ws, &record.id).await?;
        events += update_member(tx, target, accounts, old, Some(current), None, cause, at).await?;
    }
    let to = wanted.as_ref().map(|a| a.id.clone());
    if let Some(account) = wanted {
        let next = member_of(tx, target, accounts, record, &account, by, at, erased).await?;
        events += update_member(tx, target, accounts, account, None, Some(next), cause, at).await?;
    }
    tx.insert_link(ws, &link(to)).await?;
    Ok(events)
}

/// Replaces a member's old part in a locked account with its new one
/// (either may be none: a member joining or leaving), brings the account's
/// sum, buying group and member count up to date without reading the other
/// members, re-decides it at `at` and writes it all.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn update_member(
    tx: &Tx,
    target: &Target<'_>,
    accounts: &Accounts,
    mut account: AccountRecord,
    old: Option<MemberRecord>,
    new: Option<MemberRecord>,
    cause: &AccountCause,
    at: Timestamp,
) -> Result<usize, EngineError> {
    let ws = target.ws;
    let policy = target.policy;
    let model = accounts.score.model;
    let at = at.max(account.account.last_transition_at);
    if account.policy_version == target.policy_version {
        let ended = catch_up(tx, ws, &mut account, at).await?;
        let old_was_engaged = old
            .as_ref()
            .is_some_and(|m| m.engaged && !ended.contains(&m.member.lead));
        if old_was_engaged && let Some(m) = &old {
            account.group.remove(m.member.persona.as_deref());
        }
        let mut new = new;
        if let Some(m) = &mut new {
            m.engaged = m.engaged_until.at(at);
            if m.engaged {
                account.group.add(m.member.persona.as_deref());
            }
        }
        let old_part = old.as_ref().filter(|m| m.member.counts()).map(|m| m.member.score);
        let new_part = new.as_ref().filter(|m| m.member.counts()).map(|m| m.member.score);
        if let Some(m) = &new {
            tx.put_member(ws, m).await?;
        }
        account.members += i64::from(new.is_some()) - i64::from(old.is_some());
        account.sum = match account.sum.replaced(policy, model, old_part, new_part) {
            Some(sum) => sum,
            None => {
                let all = tx.all_members(ws, &account.id).await?;
                SumState::of(policy, model, all.iter().map(|m| &m.member))
            }
        };
    } else {
        // The first change under another policy version: its members' parts
        // were kept under the old one (another half-life, another model),
        // so the account is computed whole once.
        if let Some(m) = &new {
            tx.put_member(ws, m).await?;
        }
        recompute(tx, target, accounts, &mut account, at).await?;
    }
    let (facts, input) = facts_with_input(tx, ws, policy, accounts, &account, at).await?;
    account.fit = facts.fit;
    // Kept as at the write, so that a read decays it from `updated_at`.
    account.engagement = input.value_at(policy, accounts, target.now);
    account.engagement_key = key_of_score(policy, model, account.engagement, target.now);
    if target.defer_accounts {
        // A re-score's first phase: the account is decided in the second,
        // after all its members.
        account.policy_version = target.policy_version;
        account.updated_at = target.now;
        tx.update_account(ws, &mut account).await?;
        return Ok(0);
    }
    let decision = decide_account(policy, &account.account, &facts, cause, at);
    let (_, written) = write_decision(tx, target, account, &decision, true).await?;
    Ok(written.events)
}

/// Brings a locked account's buying group up to `at`: the members whose
/// engagement ended by then leave it (and are marked so). Their ids.
pub(crate) async fn catch_up(
    tx: &Tx,
    ws: &str,
    account: &mut AccountRecord,
    at: Timestamp,
) -> Result<Vec<String>, EngineError> {
    let ended = tx.engagement_ended(ws, &account.id, at).await?;
    let ids: Vec<String> = ended.iter().map(|m| m.member.lead.clone()).collect();
    for m in &ended {
        account.group.remove(m.member.persona.as_deref());
    }
    tx.set_disengaged(ws, &ids).await?;
    Ok(ids)
}

/// A locked account computed whole from its members under the target's
/// policy: each member's order and engagement end, the sum, the buying
/// group at `at` and the member count.
pub(crate) async fn recompute(
    tx: &Tx,
    target: &Target<'_>,
    accounts: &Accounts,
    account: &mut AccountRecord,
    at: Timestamp,
) -> Result<(), EngineError> {
    let ws = target.ws;
    let policy = target.policy;
    let model = accounts.score.model;
    let mut group = leadflow_domain::account::BuyingGroup::default();
    let mut members = Vec::new();
    for mut m in tx.all_members(ws, &account.id).await? {
        let before = (m.key, m.engaged_until, m.engaged);
        m.key = m.member.score.key(policy, model);
        m.engaged_until = m.member.engaged_until(policy, accounts);
        m.engaged = m.engaged_until.at(at);
        if m.engaged {
            group.add(m.member.persona.as_deref());
        }
        if before != (m.key, m.engaged_until, m.engaged) {
            tx.put_member(ws, &m).await?;
        }
        members.push(m.member);
    }
    account.members = i64::try_from(members.len()).unwrap_or(i64::MAX);
    account.sum = SumState::of(policy, model, &members);
    account.group = group;
    Ok(())
}

/// A re-score's second phase for one account: its members' parts under the
/// new policy (their engagement ends, their order), its sum and buying
/// group computed whole, then the account decided at `at` (cause
/// POLICY_CHANGE). Returns the outbox events written.
pub(crate) async fn redecide(
    tx: &Tx,
    target: &Target<'_>,
    accounts: &Accounts,
    mut account: AccountRecord,
    at: Timestamp,
) -> Result<usize, EngineError> {
    let ws = target.ws;
    let policy = target.policy;
    let model = accounts.score.model;
    let at = at.max(account.account.last_transition_at);
    recompute(tx, target, accounts, &mut account, at).await?;
    let (facts, input) = facts_with_input(tx, ws, policy, accounts, &account, at).await?;
    let decision = decide_account(policy, &account.account, &facts, &AccountCause::PolicyChange, at);
    account.fit = facts.fit;
    account.engagement = input.value_at(policy, accounts, target.now);
    account.engagement_key = key_of_score(policy, model, account.engagement, target.now);
    let (_, written) = write_decision(tx, target, account, &decision, true).await?;
    Ok(written.events)
}

/// An account's facts at `at`, from what the store keeps of its members:
/// the sum, the N highest, the buying group, and the first member in SQL
/// and in CUSTOMER after the account's window.
pub(crate) async fn facts(
    tx: &Tx,
    ws: &str,
    policy: &Policy,
    accounts: &Accounts,
    account: &AccountRecord,
    at: Timestamp,
) -> Result<Facts, EngineError> {
    Ok(facts_with_input(tx, ws, policy, accounts, account, at).await?.0)
}

/// [`facts`], with what the aggregate read.
pub(crate) async fn facts_with_input(
    tx: &Tx,
    ws: &str,
    policy: &Policy,
    accounts: &Accounts,
    account: &AccountRecord,
    at: Timestamp,
) -> Result<(Facts, AggregateInput), EngineError> {
    let n = top_n(accounts.score.aggregate) as u64;
    let input = AggregateInput {
        sum: account.sum,
        top: tx.top_contributions(ws, &account.id, n).await?,
    };
    let window = account.account.window_start;
    // Only what a move from the account's stage reads: from OPPORTUNITY on
    // no member's SQL, from CUSTOMER (or DISQUALIFIED) nothing.
    let stage = account.account.stage;
    let facts = Facts {
        engagement: input.value_at(policy, accounts, at),
        fit: account_fit(accounts, &Profile::from_stored(account.attributes.clone())),
        group: account.group.clone(),
        member_sql: match reads_guard(stage, AccountGuard::MemberSql) {
            true => tx.first_member_in(ws, &account.id, Stage::Sql, window).await?,
            false => None,
        },
        member_customer: match reads_guard(stage, AccountGuard::MemberCustomer) {
            true => {
                tx.first_member_in(ws, &account.id, Stage::Customer, window)
                    .await?
            }
            false => None,
        },
    };
    Ok((facts, input))
}

/// Writes an account after a decision: its row, its transitions and its
/// outbox events, in order (a transition, then its triggers).
pub(crate) async fn write_decision(
    tx: &Tx,
    target: &Target<'_>,
    mut record: AccountRecord,
    decision: &AccountDecision,
    update: bool,
) -> Result<(AccountRecord, AccountWritten), EngineError> {
    let ws = target.ws;
    let records: Vec<&AccountTransition> = decision.transitions().collect();
    let first_seq = record.history_len + 1;
    let moved = !records.is_empty();
    record.account = decision.account.clone();
    record.history_len += i64::try_from(records.len()).unwrap_or(i64::MAX);
    if moved && update {
        record.version += 1;
    }
    record.policy_version = target.policy_version;
    record.updated_at = target.now;
    if update {
        tx.update_account(ws, &mut record).await?;
    }
    tx.insert_account_transitions(
        ws,
        &record.id,
        first_seq,
        &records,
        target.policy_version,
        target.principal,
    )
    .await?;
    let transitions: Vec<StoredAccountTransition> = (first_seq..)
        .zip(records)
        .map(|(seq, t)| StoredAccountTransition {
            account_id: record.id.clone(),
            seq,
            record: t.clone(),
            policy_version: target.policy_version,
            principal: target.principal.map(str::to_owned),
        })
        .collect();
    let mut outbox = Vec::with_capacity(decision.events.len());
    let mut next = transitions.iter();
    for event in &decision.events {
        let mut payload = AccountPayload {
            account_id: record.id.clone(),
            external_key: record.external_key.clone(),
            domain: record.domain.clone(),
            stage: record.account.stage,
            account_version: record.version,
            engagement: record.engagement,
            fit: record.fit,
            engaged_members: record.group.engaged,
            policy_version: target.policy_version,
            transition: None,
            trigger: None,
        };
        let (kind, at) = match event {
            AccountEvent::Transition(t) => {
                payload.transition = next.next().cloned();
                ("ACCOUNT_TRANSITION", t.at)
            }
            AccountEvent::Trigger(t) => {
                payload.trigger = Some(t.clone());
                ("ACCOUNT_TRIGGER", t.at)
            }
        };
        outbox.push(NewOutboxEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            lead_id: record.id.clone(),
            subject: Subject::Account,
            kind: kind.to_owned(),
            payload: serde_json::to_string(&payload).map_err(|e| EngineError::Internal(e.to_string()))?,
            occurred_at: at,
            created_at: target.now,
            traceparent: target.traceparent.map(str::to_owned),
            suppressed: false,
        });
    }
    let events = outbox.len();
    tx.append_outbox(ws, outbox);
    let routed = target
        .policy
        .routing
        .routes
        .iter()
        .any(|r| r.on == leadflow_domain::policy::RouteOn::AccountMqa);
    if (decision.promote_members || routed)
        && let Some(entered) = decision
            .transitions()
            .find(|t| t.to == leadflow_domain::AccountStage::Mqa)
    {
        tx.queue_promotion(ws, &record.id, entered.at, target.now).await?;
    }
    Ok((record, AccountWritten { transitions, events }))
}

/// Where a simulation's draft puts a lead.
enum Place {
    Existing(String),
    /// An account its matching would create, by match key.
    New(String),
}

/// A simulation's members, grouped by the account the draft puts them in.
#[derive(Default)]
pub(crate) struct SimulatedMembers {
    /// Existing accounts by id: their members under the draft.
    existing: BTreeMap<String, Vec<Member>>,
    /// Accounts the draft's matching would create, by match key: the first
    /// member's profile (what the account inherits), its name, its members.
    created: BTreeMap<String, (Profile, String, Vec<Member>)>,
    /// A match key's existing account (id, window), looked up once.
    found: std::collections::HashMap<String, Option<(String, Option<Timestamp>)>>,
    /// Existing accounts' windows, by id.
    windows: std::collections::HashMap<String, Option<Timestamp>>,
    /// The domain an account the draft creates by an explicit key takes
    /// (the lead's email domain, as the re-score gives it): domain key text
    /// → that account's key text, so that a later lead of the domain joins it.
    domains: std::collections::HashMap<String, String>,
}

fn key_text(key: &MatchKey) -> (String, String) {
    match key {
        MatchKey::External(k) => (format!("key:{k}"), k.clone()),
        MatchKey::Domain(d) => (format!("domain:{d}"), d.clone()),
    }
}

impl SimulatedMembers {
    /// A lead as the draft decided it, in the account the draft puts it in
    /// (a manual link stays; else the draft's match, which may create one).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn add(
        &mut self,
        engine: &crate::Engine,
        ws: &str,
        policy: &Policy,
        membership: Option<&MemberRecord>,
        lead_id: &str,
        lead: &Lead,
        log: &[leadflow_domain::Engagement],
        at: Timestamp,
    ) -> Result<(), EngineError> {
        let Some(accounts) = policy.accounts.as_ref() else {
            return Ok(());
        };
        if let Some(m) = membership {
            // Re-decided even if the draft moves every member elsewhere.
            self.existing.entry(m.account_id.clone()).or_default();
        }
        let place = match membership {
            Some(m) if m.matched_by == MatchedBy::Manual => Some(Place::Existing(m.account_id.clone())),
            _ => match match_lead(accounts, &lead.profile) {
                None => None,
                Some(_) if membership.is_none() && unlinked_by_hand(engine, ws, lead_id).await? => None,
                Some(found) => {
                    let (text, name) = key_text(&found.key);
                    if !self.found.contains_key(&text) {
                        let lookup = match &found.key {
                            MatchKey::External(k) => AccountLookup::ExternalKey(k),
                            MatchKey::Domain(d) => AccountLookup::Domain(d),
                        };
                        let account = engine.store.account(ws, lookup).await?;
                        self.found
                            .insert(text.clone(), account.map(|a| (a.id, a.account.window_start)));
                    }
                    match self.found.get(&text).cloned().flatten() {
                        Some((id, window)) => {
                            self.windows.insert(id.clone(), window);
                            Some(Place::Existing(id))
                        }
                        None if accounts.create => {
                            if let Some(created) = self.domains.get(&text) {
                                // Created by a key earlier, with this domain.
                                Some(Place::New(created.clone()))
                            } else {
                                if !self.created.contains_key(&text)
                                    && let MatchKey::External(_) = &found.key
                                    && let Some(domain) = created_domain(accounts, &found, &lead.profile)
                                {
                                    let domain_text = key_text(&MatchKey::Domain(domain.clone())).0;
                                    let taken = engine
                                        .store
                                        .account(ws, AccountLookup::Domain(&domain))
                                        .await?
                                        .is_some()
                                        || self.created.contains_key(&domain_text);
                                    if !taken {
                                        self.domains.entry(domain_text).or_insert_with(|| text.clone());
                                    }
                                }
                                self.created
                                    .entry(text.clone())
                                    .or_insert_with(|| (lead.profile.clone(), name, Vec::new()));
                                Some(Place::New(text))
                            }
                        }
                        None => None,
                    }
                }
            },
        };
        let Some(place) = place else { return Ok(()) };
        let window = match &place {
            Place::Existing(id) => match self.windows.get(id) {
                Some(w) => *w,
                None => {
                    let w = engine
                        .store
                        .account(ws, AccountLookup::Id(id))
                        .await?
                        .and_then(|a| a.account.window_start);
                    self.windows.insert(id.clone(), w);
                    w
                }
            },
            Place::New(_) => None,
        };
        let model = accounts.score.model;
        let score = Contribution::of_member(policy, model, lead, window, Some(log), Some(at))
            .unwrap_or(Contribution::ZERO);
        let member = Member {
            lead: lead_id.to_owned(),
            stage: lead.stage,
            entered_stage_at: lead.entered_stage_at,
            persona: policy.persona(&lead.profile).map(str::to_owned),
            score,
            erased: false,
        };
        match place {
            Place::Existing(id) => self.existing.entry(id).or_default().push(member),
            Place::New(text) => {
                if let Some((_, _, members)) = self.created.get_mut(&text) {
                    members.push(member);
                }
            }
        }
        Ok(())
    }

    /// Every account the draft's members are in, decided at `at` as the
    /// re-score's second phase would.
    pub(crate) async fn decide(
        self,
        engine: &crate::Engine,
        ws: &str,
        policy: &Policy,
        at: Timestamp,
    ) -> Result<crate::rescore::AccountSimulation, EngineError> {
        use crate::rescore::{AccountSimulation, MAX_SIMULATED_ACCOUNTS, SimulatedAccount};
        use leadflow_domain::AccountStage;
        let Some(accounts) = policy.accounts.as_ref() else {
            return Ok(AccountSimulation::default());
        };
        let mut stages: Vec<(AccountStage, i64, i64)> = engine
            .account_stage_counts(ws)
            .await?
            .into_iter()
            .map(|(s, n)| (s, n, n))
            .collect();
        let mut shift = |from: AccountStage, to: AccountStage, new: bool| {
            for (stage, before, after) in &mut stages {
                if *stage == from {
                    *before += i64::from(new);
                    *after += i64::from(new) - 1;
                }
                if *stage == to {
                    *after += 1;
                }
            }
        };
        let mut out = AccountSimulation::default();
        let mut existing = self.existing;
        // Accounts no lead is in any more but erased members: the re-score
        // decides them on their frozen parts too.
        for id in engine.store.accounts_with_erased_members(ws).await? {
            existing.entry(id).or_default();
        }
        for (id, mut members) in existing {
            let Some(record) = engine.store.account(ws, AccountLookup::Id(&id)).await? else {
                continue;
            };
            // Erased members keep their frozen parts, as the re-score does.
            members.extend(
                engine
                    .store
                    .erased_members(ws, &id)
                    .await?
                    .into_iter()
                    .map(|m| m.member),
            );
            let attributes = Profile::from_stored(record.attributes.clone());
            let facts = Facts::of(policy, accounts, &record.account, &attributes, &members, at);
            let decision = decide_account(policy, &record.account, &facts, &AccountCause::PolicyChange, at);
            let (from, to) = (record.account.stage, decision.account.stage);
            if from != to {
                shift(from, to, false);
                if out.moved.len() < MAX_SIMULATED_ACCOUNTS {
                    out.moved.push(SimulatedAccount {
                        name: record
                            .domain
                            .clone()
                            .or(record.external_key.clone())
                            .unwrap_or_else(|| record.id.clone()),
                        account_id: Some(record.id),
                        from,
                        to,
                        engagement: facts.engagement,
                        engaged_members: facts.group.engaged,
                    });
                }
            }
        }
        for (_, (profile, name, members)) in self.created {
            let attributes = Profile::from_stored(inherited(accounts, &profile));
            let empty = Facts {
                engagement: 0.0,
                fit: account_fit(accounts, &attributes),
                group: leadflow_domain::account::BuyingGroup::default(),
                member_sql: None,
                member_customer: None,
            };
            let (account, _) = create_account(at, AccountCause::PolicyChange, &empty);
            let facts = Facts::of(policy, accounts, &account, &attributes, &members, at);
            let decision = decide_account(policy, &account, &facts, &AccountCause::PolicyChange, at);
            let to = decision.account.stage;
            out.created += 1;
            shift(AccountStage::Target, to, true);
            if to != AccountStage::Target && out.moved.len() < MAX_SIMULATED_ACCOUNTS {
                out.moved.push(SimulatedAccount {
                    account_id: None,
                    name,
                    from: AccountStage::Target,
                    to,
                    engagement: facts.engagement,
                    engaged_members: facts.group.engaged,
                });
            }
        }
        out.stages = stages;
        Ok(out)
    }
}

/// Whether a lead's last link change was an unlink by hand.
async fn unlinked_by_hand(engine: &crate::Engine, ws: &str, lead_id: &str) -> Result<bool, EngineError> {
    Ok(engine
        .store
        .links_of(ws, lead_id)
        .await?
        .last()
        .is_some_and(StoredLink::is_manual_unlink))
}

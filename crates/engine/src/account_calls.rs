//! The account use cases: create and update (an upsert by external key),
//! link and unlink a lead, move an account by hand, and the reads — an
//! account, a page of them, its history, its explanation.

use std::collections::BTreeMap;

use leadflow_domain::account::{
    Account, AccountCause, AccountError, AccountExplanation, AccountMove, AggregateInput, BuyingGroup,
    Contribution, ManualAccountTransition, MatchedBy, Member, SumState, account_fit, decide_account,
    explain_account, top_n, transition_account,
};
use leadflow_domain::lifecycle::MAX_FUTURE;
use leadflow_domain::policy::Accounts;
use leadflow_domain::profile::Profile;
use leadflow_domain::score::{ScoreState, decay_factor};
use leadflow_domain::{AccountStage, DomainError, FieldViolation, Policy, Timestamp};
use leadflow_store::{
    AccountListing, AccountLookup, AccountRecord, MemberRecord, StoredAccountTransition, StoredLink, Tx,
};
use serde::{Deserialize, Serialize};

use crate::Engine;
use crate::accounts::{NewAccount, facts, insert_account, relink, write_decision};
use crate::error::EngineError;
use crate::idempotency::{replay, save};
use crate::leads::{Locked, retrying};
use crate::model::{LeadKey, Method, Request};
use crate::persist::Target;

/// The most members an explanation lists.
pub const MAX_EXPLAINED_MEMBERS: u64 = 10_000;
/// Characters an external key or an owner may have (a lead's
/// `account_key` too).
const MAX_KEY_CHARS: usize = leadflow_domain::profile::MAX_ACCOUNT_KEY_CHARS;
/// Bytes a domain may have (DNS).
const MAX_DOMAIN_BYTES: usize = 253;

/// How a caller names an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountKey {
    Id(String),
    ExternalKey(String),
    Domain(String),
}

impl AccountKey {
    fn lookup(&self) -> AccountLookup<'_> {
        match self {
            Self::Id(id) => AccountLookup::Id(id),
            Self::ExternalKey(k) => AccountLookup::ExternalKey(k),
            Self::Domain(d) => AccountLookup::Domain(d),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Id(id) => id.clone(),
            Self::ExternalKey(k) => format!("external_key {k}"),
            Self::Domain(d) => format!("domain {d}"),
        }
    }
}

/// An account's fields as a caller gives them. For an update, `None`
/// leaves a field as it is and an empty value clears it (an attribute with
/// an empty value is removed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountInput {
    pub external_key: Option<String>,
    pub domain: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub owner: Option<String>,
    /// A creation in the past (an import); now when left out.
    pub created_at: Option<Timestamp>,
}

/// An account as a caller sees it, scored at `scored_at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountView {
    pub id: String,
    pub external_key: Option<String>,
    pub domain: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub owner: Option<String>,
    pub stage: AccountStage,
    pub version: i64,
    pub policy_version: i64,
    pub created_at: Timestamp,
    pub entered_stage_at: Timestamp,
    pub last_transition_at: Timestamp,
    pub window_start: Option<Timestamp>,
    /// The aggregate engagement at `scored_at`, rounded to 6 decimals.
    pub engagement: f64,
    pub fit: f64,
    pub engaged_members: u32,
    /// Engaged members by persona.
    pub personas: BTreeMap<String, u32>,
    pub members: i64,
    pub scored_at: Timestamp,
}

/// What an account command did. Its JSON is the stored result of an
/// idempotent call: it does not change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountOutcome {
    pub account: AccountView,
    pub transitions: Vec<StoredAccountTransition>,
    /// `UpdateAccount` created it.
    pub created: bool,
}

/// What a link or an unlink did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkOutcome {
    pub lead_id: String,
    /// The lead's account after it; none after an unlink.
    pub account: Option<AccountView>,
    /// The change recorded; none when nothing changed.
    pub link: Option<StoredLink>,
}

/// A page of accounts.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountPage {
    pub accounts: Vec<AccountView>,
    /// The last account's sort value and id, when there may be more.
    pub next: Option<(f64, String)>,
}

fn violation(field: &str, description: impl Into<String>) -> EngineError {
    EngineError::Domain(DomainError::invalid(FieldViolation::new(field, description)))
}

/// A key, a domain or an owner: trimmed, bounded, printable.
fn text_field(field: &str, value: &str) -> Result<String, EngineError> {
    let value = value.trim();
    let chars = value.chars().count();
    if chars > MAX_KEY_CHARS {
        return Err(violation(
            field,
            format!("{chars} characters; at most {MAX_KEY_CHARS}"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(violation(field, "contains control characters"));
    }
    Ok(value.to_owned())
}

/// A domain as accounts keep it: lower-cased, like `example.com`.
fn domain_field(value: &str) -> Result<String, EngineError> {
    if value.trim().len() > MAX_DOMAIN_BYTES {
        return Err(violation(
            "domain",
            format!(
                "{} bytes; a domain has at most {MAX_DOMAIN_BYTES}",
                value.trim().len()
            ),
        ));
    }
    let domain = value.trim().to_lowercase();
    let ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-'));
    if !ok {
        return Err(violation(
            "domain",
            format!("{value:?} is not a domain (e.g. \"example.com\", without @ or a scheme)"),
        ));
    }
    Ok(domain)
}

/// A locked account's aggregate brought up to `at` before a decision: the
/// ended engagements out of its buying group, or, first under another
/// policy version, the account computed whole.
async fn bring_up(
    tx: &Tx,
    target: &Target<'_>,
    accounts: &Accounts,
    record: &mut AccountRecord,
    at: Timestamp,
) -> Result<(), EngineError> {
    if record.policy_version == target.policy_version {
        crate::accounts::catch_up(tx, target.ws, record, at).await?;
    } else {
        crate::accounts::recompute(tx, target, accounts, record, at).await?;
    }
    // The aggregate as at this write, as a member's change keeps it.
    let (facts, input) =
        crate::accounts::facts_with_input(tx, target.ws, target.policy, accounts, record, at).await?;
    record.fit = facts.fit;
    record.engagement = input.value_at(target.policy, accounts, target.now);
    record.engagement_key = leadflow_domain::score::key_of_score(
        target.policy,
        accounts.score.model,
        record.engagement,
        target.now,
    );
    Ok(())
}

fn no_accounts() -> EngineError {
    EngineError::Account(AccountError::NoAccountsPolicy)
}

fn scored(record: &AccountRecord, engagement: f64, group: BuyingGroup, now: Timestamp) -> AccountView {
    AccountView {
        id: record.id.clone(),
        external_key: record.external_key.clone(),
        domain: record.domain.clone(),
        attributes: record.attributes.clone(),
        owner: record.owner.clone(),
        stage: record.account.stage,
        version: record.version,
        policy_version: record.policy_version,
        created_at: record.account.created_at,
        entered_stage_at: record.account.entered_stage_at,
        last_transition_at: record.account.last_transition_at,
        window_start: record.account.window_start,
        engagement,
        fit: record.fit,
        engaged_members: group.engaged,
        personas: group.personas,
        members: record.members,
        scored_at: now,
    }
}

/// The account's buying group at `t`: the stored one without the members
/// whose engagement ended by then.
fn group_at(record: &AccountRecord, ended: &[MemberRecord]) -> BuyingGroup {
    let mut group = record.group.clone();
    for m in ended {
        group.remove(m.member.persona.as_deref());
    }
    group
}

/// The stored aggregate, decayed from when it was written to `t`: every
/// member decays alike, so it is exact until the next change.
fn engagement_at(policy: &Policy, record: &AccountRecord, t: Timestamp) -> f64 {
    let Some(accounts) = policy.accounts.as_ref() else {
        return record.engagement;
    };
    let half_life = policy.models.get(accounts.score.model).and_then(|m| m.half_life);
    leadflow_domain::score::round6(record.engagement * decay_factor(half_life, t.since(record.updated_at)))
}

impl Engine {
    /// An account in a transaction, scored at `now`.
    async fn view_in(
        &self,
        tx: &Tx,
        ws: &str,
        policy: &Policy,
        record: &AccountRecord,
        now: Timestamp,
    ) -> Result<AccountView, EngineError> {
        let Some(accounts) = policy.accounts.as_ref() else {
            return Ok(scored(record, record.engagement, record.group.clone(), now));
        };
        let ended = tx.engagement_ended(ws, &record.id, now).await?;
        let top = tx
            .top_contributions(ws, &record.id, top_n(accounts.score.aggregate) as u64)
            .await?;
        let engagement = AggregateInput { sum: record.sum, top }.value_at(policy, accounts, now);
        Ok(scored(record, engagement, group_at(record, &ended), now))
    }

    /// An account read outside a transaction, scored now.
    async fn view_now(&self, ws: &str, record: &AccountRecord) -> Result<AccountView, EngineError> {
        let now = self.now();
        let policy = self.policy_now(ws).await?;
        let Some(accounts) = policy.accounts.as_ref() else {
            return Ok(scored(record, record.engagement, record.group.clone(), now));
        };
        let ended = self.store.engagement_ended(ws, &record.id, now).await?;
        let top = self
            .store
            .top_contributions(ws, &record.id, top_n(accounts.score.aggregate) as u64)
            .await?;
        let engagement = AggregateInput { sum: record.sum, top }.value_at(&policy, accounts, now);
        Ok(scored(record, engagement, group_at(record, &ended), now))
    }

    /// The active policy, read outside a transaction.
    async fn policy_now(&self, ws: &str) -> Result<std::sync::Arc<Policy>, EngineError> {
        Ok(self.active_policy_read(ws).await?.1)
    }

    /// The new account's fields, checked.
    fn new_account(&self, input: &AccountInput, now: Timestamp) -> Result<NewAccount, EngineError> {
        let external_key = input
            .external_key
            .as_deref()
            .map(|k| text_field("external_key", k))
            .transpose()?
            .filter(|k| !k.is_empty());
        let domain = input
            .domain
            .as_deref()
            .filter(|d| !d.trim().is_empty())
            .map(domain_field)
            .transpose()?;
        let owner = input
            .owner
            .as_deref()
            .map(|o| text_field("owner", o))
            .transpose()?
            .filter(|o| !o.is_empty());
        let attributes = Profile::of_account(input.attributes.clone())?;
        let created_at = input.created_at.unwrap_or(now);
        if created_at > now.saturating_add(MAX_FUTURE) {
            return Err(violation(
                "created_at",
                format!("{created_at} is in the future (now is {now})"),
            ));
        }
        Ok(NewAccount {
            external_key,
            domain,
            attributes: attributes.as_map().clone(),
            owner,
            created_at,
        })
    }

    /// Refuses a key or a domain another account has.
    async fn taken(
        &self,
        tx: &Tx,
        ws: &str,
        new: &NewAccount,
        except: Option<&str>,
    ) -> Result<(), EngineError> {
        let checks = [
            new.external_key
                .as_deref()
                .map(|k| (AccountLookup::ExternalKey(k), k, "account")),
            new.domain
                .as_deref()
                .map(|d| (AccountLookup::Domain(d), d, "account domain")),
        ];
        for (lookup, key, what) in checks.into_iter().flatten() {
            if let Some(other) = tx.lock_account(ws, lookup).await?
                && except != Some(other.id.as_str())
            {
                return Err(EngineError::AlreadyExists {
                    what,
                    key: key.to_owned(),
                    id: other.id,
                });
            }
        }
        Ok(())
    }

    #[tracing::instrument(name = "engine.create_account", skip_all)]
    pub async fn create_account(
        &self,
        req: &Request,
        input: &AccountInput,
    ) -> Result<AccountOutcome, EngineError> {
        retrying!(self.try_create_account(req, input, Method::CreateAccount))
    }

    async fn try_create_account(
        &self,
        req: &Request,
        input: &AccountInput,
        method: Method,
    ) -> Result<AccountOutcome, EngineError> {
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        if let Some(done) = replay::<AccountOutcome>(&tx, req, method).await? {
            return Ok(done);
        }
        let (policy_version, policy) = self.active_policy(&tx, ws).await?;
        let now = self.now();
        let new = self.new_account(input, now)?;
        self.taken(&tx, ws, &new, None).await?;
        let target = self.target(req, &policy, policy_version, now);
        let Some((record, written)) = insert_account(&tx, &target, &new, AccountCause::Create).await? else {
            return Err(EngineError::Conflict(
                "the account's key or domain was taken meanwhile".to_owned(),
            ));
        };
        let outcome = AccountOutcome {
            account: self.view_in(&tx, ws, &policy, &record, now).await?,
            transitions: written.transitions,
            created: true,
        };
        save(&tx, req, method, &outcome, now).await?;
        tx.commit().await?;
        if written.events > 0 {
            self.announce(ws);
        }
        Ok(outcome)
    }

    /// Updates the account with `input.external_key`, or creates it.
    #[tracing::instrument(name = "engine.update_account", skip_all)]
    pub async fn update_account(
        &self,
        req: &Request,
        input: &AccountInput,
        expected_version: Option<i64>,
    ) -> Result<AccountOutcome, EngineError> {
        retrying!(self.try_update_account(req, input, expected_version))
    }

    async fn try_update_account(
        &self,
        req: &Request,
        input: &AccountInput,
        expected_version: Option<i64>,
    ) -> Result<AccountOutcome, EngineError> {
        let ws = req.workspace.as_str();
        let key = match input.external_key.as_deref().map(str::trim) {
            Some(k) if !k.is_empty() => text_field("external_key", k)?,
            _ => {
                return Err(violation(
                    "external_key",
                    "required: UpdateAccount finds (or creates) the account by its external key",
                ));
            }
        };
        let tx = self.store.begin().await?;
        let Some(mut record) = tx.lock_account(ws, AccountLookup::ExternalKey(&key)).await? else {
            drop(tx);
            if let Some(expected) = expected_version {
                return Err(EngineError::VersionConflict { expected, actual: 0 });
            }
            return match self.try_create_account(req, input, Method::UpdateAccount).await {
                // Created meanwhile by a concurrent upsert: again, as an update.
                Err(EngineError::AlreadyExists {
                    what: "account",
                    key: taken,
                    ..
                }) if taken == key => Err(EngineError::Conflict(format!(
                    "account {key:?} was created meanwhile"
                ))),
                other => other,
            };
        };
        if let Some(done) = replay::<AccountOutcome>(&tx, req, Method::UpdateAccount).await? {
            return Ok(done);
        }
        if let Some(expected) = expected_version
            && expected != record.version
        {
            return Err(EngineError::VersionConflict {
                expected,
                actual: record.version,
            });
        }
        let (policy_version, policy) = self.active_policy(&tx, ws).await?;
        let now = self.now();
        let mut changed = false;
        if let Some(domain) = &input.domain {
            let domain = if domain.trim().is_empty() {
                None
            } else {
                Some(domain_field(domain)?)
            };
            if domain != record.domain {
                let probe = NewAccount {
                    domain: domain.clone(),
                    ..NewAccount::default()
                };
                self.taken(&tx, ws, &probe, Some(&record.id)).await?;
                record.domain = domain;
                changed = true;
            }
        }
        if let Some(owner) = &input.owner {
            let owner = Some(text_field("owner", owner)?).filter(|o| !o.is_empty());
            if owner != record.owner {
                record.owner = owner;
                changed = true;
            }
        }
        if !input.attributes.is_empty() {
            let merged = Profile::from_stored(record.attributes.clone())
                .merge_account(input.attributes.clone())?
                .as_map()
                .clone();
            if merged != record.attributes {
                record.attributes = merged;
                changed = true;
            }
        }
        let target = self.target(req, &policy, policy_version, now);
        let mut transitions = Vec::new();
        let mut events = 0;
        if changed {
            record.version += 1;
            let decision = match policy.accounts.as_ref() {
                Some(accounts) => {
                    bring_up(&tx, &target, accounts, &mut record, now).await?;
                    let facts = facts(&tx, ws, &policy, accounts, &record, now).await?;
                    record.fit = facts.fit;
                    decide_account(&policy, &record.account, &facts, &AccountCause::Manual, now)
                }
                None => leadflow_domain::account::AccountDecision {
                    account: record.account.clone(),
                    events: Vec::new(),
                    promote_members: false,
                    window_reset: None,
                },
            };
            let (written_record, written) = write_decision(&tx, &target, record, &decision, true).await?;
            record = written_record;
            transitions = written.transitions;
            events = written.events;
        }
        let outcome = AccountOutcome {
            account: self.view_in(&tx, ws, &policy, &record, now).await?,
            transitions,
            created: false,
        };
        save(&tx, req, Method::UpdateAccount, &outcome, now).await?;
        tx.commit().await?;
        if events > 0 {
            self.announce(ws);
        }
        Ok(outcome)
    }

    /// An account, scored now.
    pub async fn get_account(&self, ws: &str, key: &AccountKey) -> Result<AccountView, EngineError> {
        let record = self.account_record(ws, key).await?;
        self.view_now(ws, &record).await
    }

    async fn account_record(&self, ws: &str, key: &AccountKey) -> Result<AccountRecord, EngineError> {
        let lookup = match key {
            AccountKey::Domain(d) => AccountKey::Domain(d.trim().to_lowercase()),
            other => other.clone(),
        };
        self.store
            .account(ws, lookup.lookup())
            .await?
            .ok_or_else(|| EngineError::NotFound {
                what: "account",
                key: key.describe(),
            })
    }

    /// A page of accounts, each scored now (the aggregate decayed from its
    /// last change; the buying group as of then).
    pub async fn list_accounts(&self, ws: &str, q: &AccountListing) -> Result<AccountPage, EngineError> {
        let now = self.now();
        let policy = self.policy_now(ws).await?;
        let records = self.store.list_accounts(ws, q).await?;
        let next = (records.len() as u64 == q.limit && q.limit > 0)
            .then(|| records.last())
            .flatten()
            .map(|r| {
                #[allow(clippy::cast_precision_loss)] // an instant in microseconds, sent back as given
                let value = if q.by_score {
                    r.engagement_key
                } else {
                    r.account.entered_stage_at.as_micros() as f64
                };
                (value, r.id.clone())
            });
        let accounts = records
            .iter()
            .map(|r| scored(r, engagement_at(&policy, r, now), r.group.clone(), now))
            .collect();
        Ok(AccountPage { accounts, next })
    }

    /// An account's transitions after `after_seq`, oldest first.
    pub async fn account_history(
        &self,
        ws: &str,
        key: &AccountKey,
        after_seq: i64,
        limit: u64,
    ) -> Result<(AccountView, Vec<StoredAccountTransition>), EngineError> {
        let record = self.account_record(ws, key).await?;
        let history = self
            .store
            .account_history(ws, &record.id, after_seq, limit)
            .await?;
        Ok((self.view_now(ws, &record).await?, history))
    }

    /// A lead's membership, if it has an account, and its persona under
    /// the active policy.
    pub async fn lead_membership(
        &self,
        ws: &str,
        lead: &crate::LeadView,
    ) -> Result<(Option<MemberRecord>, Option<String>), EngineError> {
        let policy = self.policy_now(ws).await?;
        let persona = policy.persona(&lead.lead.profile).map(str::to_owned);
        Ok((self.store.membership(ws, &lead.id).await?, persona))
    }

    /// The account funnel of `period`.
    #[tracing::instrument(name = "engine.account_funnel", skip_all)]
    pub async fn account_funnel(
        &self,
        ws: &str,
        period: leadflow_domain::analytics::Period,
    ) -> Result<leadflow_domain::analytics::AccountFunnel, EngineError> {
        let histories = self.store.account_histories(ws, period).await?;
        Ok(leadflow_domain::analytics::account_funnel(
            &histories,
            period,
            self.now(),
        ))
    }

    /// The personas the active policy's `[stages.MQA]` requires; `None`
    /// under a policy without `[accounts]`.
    pub async fn mqa_personas(&self, ws: &str) -> Result<Option<Vec<String>>, EngineError> {
        Ok(self
            .policy_now(ws)
            .await?
            .accounts
            .as_ref()
            .map(|a| a.mqa.personas_required.clone()))
    }

    /// How many accounts are in each stage, every stage listed.
    pub async fn account_stage_counts(&self, ws: &str) -> Result<Vec<(AccountStage, i64)>, EngineError> {
        let counts = self.store.account_stage_counts(ws).await?;
        Ok(AccountStage::ALL
            .iter()
            .map(|s| (*s, counts.iter().find(|(c, _)| c == s).map_or(0, |(_, n)| *n)))
            .collect())
    }

    /// Explains an account at `as_of` (default now): each member's part,
    /// the aggregate, the buying group and what blocks the next stage.
    pub async fn explain_account(
        &self,
        ws: &str,
        key: &AccountKey,
        as_of: Option<Timestamp>,
    ) -> Result<AccountExplanation, EngineError> {
        let record = self.account_record(ws, key).await?;
        let policy = self.policy_now(ws).await?;
        let accounts = policy.accounts.as_ref().ok_or_else(no_accounts)?;
        let now = self.now();
        let attributes = Profile::from_stored(record.attributes.clone());
        let (account, members, at) = match as_of.filter(|t| *t < now) {
            None => {
                let members = self
                    .store
                    .members_of(ws, &record.id, MAX_EXPLAINED_MEMBERS)
                    .await?;
                let members: Vec<Member> = members.into_iter().map(|m| m.member).collect();
                (record.account.clone(), members, now)
            }
            Some(t) => {
                let account = self.account_at(ws, &record, t).await?;
                let members = self
                    .members_at(ws, &policy, accounts, &record.id, &account, t)
                    .await?;
                (account, members, t)
            }
        };
        Ok(explain_account(
            &policy,
            accounts,
            &account,
            &attributes,
            &members,
            at,
        ))
    }

    /// The account as it stood at `t`, from its history.
    async fn account_at(
        &self,
        ws: &str,
        record: &AccountRecord,
        t: Timestamp,
    ) -> Result<Account, EngineError> {
        let history = self
            .store
            .account_history(ws, &record.id, 0, u64::MAX >> 1)
            .await?;
        let upto: Vec<&StoredAccountTransition> = history.iter().filter(|h| h.record.at <= t).collect();
        let (Some(first), Some(last)) = (upto.first(), upto.last()) else {
            return Err(violation(
                "as_of",
                format!(
                    "{t} is before the account was created ({})",
                    record.account.created_at
                ),
            ));
        };
        let window_start = upto
            .iter()
            .rev()
            .find(|h| {
                matches!(
                    h.record.by,
                    AccountMove::Reject | AccountMove::Recycle | AccountMove::Requalify
                )
            })
            .map(|h| h.record.at);
        Ok(Account {
            stage: last.record.to,
            created_at: first.record.at,
            entered_stage_at: last.record.at,
            last_transition_at: last.record.at,
            entered_by: last.record.by,
            window_start,
        })
    }

    /// The account's members at `t` (by each lead's link history), each as
    /// it stood then: its stage, and its qualifying engagement over its
    /// engagements up to `t` after its own last backward move and the
    /// account's. An erased member is its part as kept.
    async fn members_at(
        &self,
        ws: &str,
        policy: &Policy,
        accounts: &Accounts,
        account_id: &str,
        account: &Account,
        t: Timestamp,
    ) -> Result<Vec<Member>, EngineError> {
        let model = accounts.score.model;
        let mut members = Vec::new();
        for lead_id in self
            .store
            .leads_ever_in(ws, account_id, MAX_EXPLAINED_MEMBERS)
            .await?
        {
            let links = self.store.links_of(ws, &lead_id).await?;
            let linked = links
                .iter()
                .rev()
                .find(|l| l.at <= t)
                .is_some_and(|l| l.to_account.as_deref() == Some(account_id));
            if !linked {
                continue;
            }
            let Some(record) = self.store.lead(ws, &lead_id).await? else {
                // Erased: its part as kept, if it was there by then.
                if let Some(m) = self.store.membership(ws, &lead_id).await?
                    && m.account_id == account_id
                    && m.member.score.at <= t
                {
                    members.push(m.member);
                }
                continue;
            };
            let moves = self
                .store
                .transitions_page(ws, &lead_id, 0, u64::MAX >> 1)
                .await?;
            let upto: Vec<_> = moves.iter().filter(|m| m.record.at <= t).collect();
            let Some(last) = upto.last() else { continue };
            let own_window = upto
                .iter()
                .rev()
                .find(|m| m.record.from.is_some() && m.record.to == leadflow_domain::Stage::Iql)
                .map(|m| m.record.at);
            let since = own_window.max(account.window_start);
            let log = self.store.engagements_of(ws, &lead_id).await?;
            let state = ScoreState::replay(policy, &log, since, Some(t));
            members.push(Member {
                lead: lead_id.clone(),
                stage: last.record.to,
                entered_stage_at: last.record.at,
                persona: policy.persona(&record.lead.profile).map(str::to_owned),
                score: Contribution::of(policy, model, &state),
                erased: false,
            });
        }
        Ok(members)
    }

    /// Links a lead to an account by hand: never undone automatically.
    #[tracing::instrument(name = "engine.link_lead", skip_all)]
    pub async fn link_lead(
        &self,
        req: &Request,
        lead: &LeadKey,
        account: Option<&AccountKey>,
        actor: Option<&str>,
    ) -> Result<LinkOutcome, EngineError> {
        let method = if account.is_some() {
            Method::LinkLead
        } else {
            Method::UnlinkLead
        };
        retrying!(self.try_link_lead(req, lead, account, actor, method))
    }

    async fn try_link_lead(
        &self,
        req: &Request,
        lead: &LeadKey,
        account: Option<&AccountKey>,
        actor: Option<&str>,
        method: Method,
    ) -> Result<LinkOutcome, EngineError> {
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        let Locked {
            record,
            policy_version,
            policy,
            ..
        } = self.lock(&tx, ws, lead).await?;
        if let Some(done) = replay::<LinkOutcome>(&tx, req, method).await? {
            return Ok(done);
        }
        let accounts: &Accounts = policy.accounts.as_ref().ok_or_else(no_accounts)?;
        let now = self.now();
        let current = tx.member(ws, &record.id).await?;
        let wanted = match account {
            None => None,
            Some(key) => {
                let lookup_key = match key {
                    AccountKey::Domain(d) => AccountKey::Domain(d.trim().to_lowercase()),
                    other => other.clone(),
                };
                crate::accounts::lock_in_order(&tx, ws, current.as_ref(), lookup_key.lookup()).await?;
                Some(tx.lock_account(ws, lookup_key.lookup()).await?.ok_or_else(|| {
                    EngineError::NotFound {
                        what: "account",
                        key: key.describe(),
                    }
                })?)
            }
        };
        let unchanged = match (&current, &wanted) {
            (Some(m), Some(a)) => m.account_id == a.id && m.matched_by == MatchedBy::Manual,
            (None, None) => tx
                .last_link(ws, &record.id)
                .await?
                .is_some_and(|l| l.is_manual_unlink()),
            _ => false,
        };
        let target = self.target(req, &policy, policy_version, now);
        let mut events = 0;
        if !unchanged {
            let cause = AccountCause::Member {
                lead: record.id.clone(),
                event_id: None,
            };
            let at = now;
            events = relink(
                &tx,
                &target,
                accounts,
                &record,
                current,
                wanted,
                MatchedBy::Manual,
                actor,
                at,
                &cause,
            )
            .await?;
        }
        let link = if unchanged {
            None
        } else {
            tx.last_link(ws, &record.id).await?
        };
        let account = match tx.member(ws, &record.id).await? {
            Some(m) => match tx.lock_account(ws, AccountLookup::Id(&m.account_id)).await? {
                Some(a) => Some(self.view_in(&tx, ws, &policy, &a, now).await?),
                None => None,
            },
            None => None,
        };
        let outcome = LinkOutcome {
            lead_id: record.id.clone(),
            account,
            link,
        };
        save(&tx, req, method, &outcome, now).await?;
        tx.commit().await?;
        if events > 0 {
            self.announce(ws);
        }
        Ok(outcome)
    }

    /// Moves an account by hand (PROMOTE, ACCEPT, REJECT, RECYCLE,
    /// DISQUALIFY, REQUALIFY). A backward move restarts the account's
    /// window: every member's part is computed again over its engagements
    /// after it.
    #[tracing::instrument(name = "engine.transition_account", skip_all)]
    pub async fn transition_account(
        &self,
        req: &Request,
        key: &AccountKey,
        command: &ManualAccountTransition,
        expected_version: Option<i64>,
    ) -> Result<AccountOutcome, EngineError> {
        retrying!(self.try_transition_account(req, key, command, expected_version))
    }

    async fn try_transition_account(
        &self,
        req: &Request,
        key: &AccountKey,
        command: &ManualAccountTransition,
        expected_version: Option<i64>,
    ) -> Result<AccountOutcome, EngineError> {
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        let lookup_key = match key {
            AccountKey::Domain(d) => AccountKey::Domain(d.trim().to_lowercase()),
            other => other.clone(),
        };
        let record =
            tx.lock_account(ws, lookup_key.lookup())
                .await?
                .ok_or_else(|| EngineError::NotFound {
                    what: "account",
                    key: key.describe(),
                })?;
        if let Some(done) = replay::<AccountOutcome>(&tx, req, Method::TransitionAccount).await? {
            return Ok(done);
        }
        if let Some(expected) = expected_version
            && expected != record.version
        {
            return Err(EngineError::VersionConflict {
                expected,
                actual: record.version,
            });
        }
        let (policy_version, policy) = self.active_policy(&tx, ws).await?;
        let accounts = policy.accounts.as_ref().ok_or_else(no_accounts)?;
        let now = self.now();
        let mut record = record;
        let target = self.target(req, &policy, policy_version, now);
        bring_up(&tx, &target, accounts, &mut record, now).await?;
        let facts = facts(&tx, ws, &policy, accounts, &record, now).await?;
        let decision = transition_account(&policy, &record.account, &facts, command, now)?;
        let (mut record, written) = write_decision(&tx, &target, record, &decision, true).await?;
        if let Some(window) = decision.window_reset {
            record = self.rewindow(&tx, &target, accounts, record, window, now).await?;
        }
        let outcome = AccountOutcome {
            account: self.view_in(&tx, ws, &policy, &record, now).await?,
            transitions: written.transitions,
            created: false,
        };
        save(&tx, req, Method::TransitionAccount, &outcome, now).await?;
        tx.commit().await?;
        if written.events > 0 {
            self.announce(ws);
        }
        Ok(outcome)
    }

    /// Every member's part over its engagements after the account's new
    /// window, and the sum and buying group from them (a backward move:
    /// rare, and bounded by the account's size).
    async fn rewindow(
        &self,
        tx: &Tx,
        target: &Target<'_>,
        accounts: &Accounts,
        mut record: AccountRecord,
        window: Timestamp,
        now: Timestamp,
    ) -> Result<AccountRecord, EngineError> {
        let ws = target.ws;
        let policy = target.policy;
        let model = accounts.score.model;
        let mut group = BuyingGroup::default();
        let mut members = Vec::new();
        for mut m in tx.all_members(ws, &record.id).await? {
            if !m.member.erased
                && let Some(lead) = tx.lead_unlocked(ws, &m.member.lead).await?
            {
                m.member.score = crate::accounts::contribution(
                    tx,
                    ws,
                    policy,
                    accounts,
                    &lead.id,
                    &lead.lead,
                    Some(window),
                )
                .await?;
            } else if m.member.score.at <= window {
                // An erased member's frozen part: none of it after the window.
                m.member.score = leadflow_domain::account::Contribution::ZERO;
            }
            m.key = m.member.score.key(policy, model);
            m.engaged_until = m.member.engaged_until(policy, accounts);
            m.engaged = m.engaged_until.at(now);
            if m.engaged {
                group.add(m.member.persona.as_deref());
            }
            tx.put_member(ws, &m).await?;
            members.push(m.member);
        }
        record.sum = SumState::of(policy, model, &members);
        record.group = group;
        let input = AggregateInput::of(policy, accounts, &members);
        record.engagement = input.value_at(policy, accounts, now);
        record.engagement_key = leadflow_domain::score::key_of_score(policy, model, record.engagement, now);
        record.fit = account_fit(accounts, &Profile::from_stored(record.attributes.clone()));
        tx.update_account(ws, &mut record).await?;
        Ok(record)
    }

    /// Fires an account's engagement-end timer: the members whose
    /// engagement decay alone has ended by now leave its buying group, the
    /// account's aggregate is written as of now and the timer moves to the
    /// next end. Decay never moves an account (its automatic moves only go
    /// forward), so no transition is recorded. False when the timer was not
    /// taken here (gone, held by another worker, moved later).
    pub(crate) async fn end_account_engagements(
        &self,
        ws: &str,
        account_id: &str,
        now: Timestamp,
    ) -> Result<bool, EngineError> {
        let tx = self.store.begin().await?;
        let Some(mut record) = tx.lock_account(ws, AccountLookup::Id(account_id)).await? else {
            // The account is gone: so is its timer.
            tx.take_account_timer(ws, account_id).await?;
            tx.commit().await?;
            return Ok(false);
        };
        let Some(due) = tx.take_account_timer(ws, account_id).await? else {
            return Ok(false);
        };
        if due > now {
            return Ok(false); // moved later since it was listed; rolling back keeps it
        }
        // Taken: whatever the members say now is scheduled again.
        record.engagement_ends_at = None;
        let (policy_version, policy) = self.active_policy(&tx, ws).await?;
        if let Some(accounts) = policy.accounts.as_ref() {
            let req = Request::new(ws);
            let target = self.target(&req, &policy, policy_version, now);
            bring_up(&tx, &target, accounts, &mut record, now).await?;
            record.policy_version = policy_version;
            record.updated_at = now;
        } else {
            // A policy without `[accounts]` scores and moves no account, but
            // the members whose engagement ended leave the group all the
            // same, so that the timer moves on to the next end (or stops).
            crate::accounts::catch_up(&tx, ws, &mut record, now).await?;
        }
        tx.update_account(ws, &mut record).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Works, a batch at a time, the engaged members of accounts that
    /// entered MQA: under an `account_entered:MQA` route, hands those
    /// without an owner to the account's owner; under
    /// `promote_members_on_mqa`, promotes the IQL ones that pass the MQL
    /// guards other than the engagement score, each by a PROMOTE of its own
    /// (actor `leadflow`). Returns how many members were looked at (0:
    /// nothing queued).
    #[tracing::instrument(name = "engine.promote_account_members", skip_all)]
    pub async fn run_account_promotions(&self, batch: u64) -> Result<usize, EngineError> {
        retrying!(self.try_account_promotions(batch))
    }

    async fn try_account_promotions(&self, batch: u64) -> Result<usize, EngineError> {
        let tx = self.store.begin().await?;
        let Some((ws, account_id, cursor, _)) = tx.take_promotion().await? else {
            return Ok(0);
        };
        match self.promote_batch(tx, &ws, &account_id, &cursor, batch).await {
            Err(e) if !e.retryable() => {
                // Behind the others, so that one that keeps failing holds
                // none of them back; it is tried again after them.
                let tx = self.store.begin().await?;
                tx.postpone_promotion(&ws, &account_id, self.now()).await?;
                tx.commit().await?;
                Err(e)
            }
            other => other,
        }
    }

    /// An account that entered MQA under an `account_entered:MQA` route:
    /// its owner (kept, or chosen by the route and set), then each of the
    /// batch's members without an owner given to it. Under the routing lock
    /// and then the account's, taken after the members' (as a lead's
    /// decision takes them). Returns the events written.
    async fn route_account_members(
        &self,
        tx: &Tx,
        policy: &leadflow_domain::Policy,
        ws: &str,
        account_id: &str,
        members: &mut [leadflow_store::LeadRecord],
        now: Timestamp,
    ) -> Result<usize, EngineError> {
        tx.lock_routing(ws).await?;
        let Some(mut account) = tx
            .lock_account(ws, leadflow_store::AccountLookup::Id(account_id))
            .await?
        else {
            return Ok(0);
        };
        let pool = tx.routing_pool(ws).await?;
        let seen = leadflow_domain::handoff::RouteAccount {
            owner: account.owner.clone(),
            attributes: account.attributes.clone(),
        };
        let Some((route, handoff)) = leadflow_domain::handoff::account_handoff(policy, &seen, &pool.pool())
        else {
            return Ok(0);
        };
        if let Some((team, cursor)) = &handoff.cursor {
            tx.set_team_cursor(ws, team, cursor).await?;
        }
        let Some(owner) = handoff.owner else {
            tracing::info!(workspace = %ws, account_id, explanation = %handoff.explanation, "an account in MQA found no owner");
            return Ok(0);
        };
        if account.owner.as_deref() != Some(owner.as_str()) {
            account.owner = Some(owner.clone());
            account.version += 1;
            account.updated_at = now;
            tx.update_account(ws, &mut account).await?;
        }
        let mut events = 0;
        for member in members.iter_mut() {
            if member.owner.is_some() || !leadflow_domain::handoff::is_open(member.lead.stage) {
                continue;
            }
            let note = crate::assign::AssignmentNote {
                from: None,
                to: Some(owner.clone()),
                cause: "ROUTE".to_owned(),
                route_id: Some(route.id.clone()),
                explanation: format!(
                    "route {} on account_entered:MQA: {}",
                    route.id, handoff.explanation
                ),
                reason: None,
                principal: None,
            };
            let scores = member.lead.scores_at(policy, now);
            crate::assign::hand_over(tx, ws, member, &scores, &note, now, None).await?;
            member.owner = Some(owner.clone());
            events += 1;
        }
        Ok(events)
    }

    /// One batch of an account's promotion, in the transaction that took it.
    async fn promote_batch(
        &self,
        tx: Tx,
        ws: &str,
        account_id: &str,
        cursor: &str,
        batch: u64,
    ) -> Result<usize, EngineError> {
        let (ws, account_id, cursor) = (ws.to_owned(), account_id.to_owned(), cursor.to_owned());
        let now = self.now();
        let (policy_version, policy) = self.active_policy(&tx, &ws).await?;
        let routed = policy
            .routing
            .routes
            .iter()
            .any(|r| r.on == leadflow_domain::policy::RouteOn::AccountMqa);
        let promotes = policy.accounts.as_ref().is_some_and(|a| a.promote_members_on_mqa);
        let stages: &[leadflow_domain::Stage] = if routed {
            &[
                leadflow_domain::Stage::Iql,
                leadflow_domain::Stage::Mql,
                leadflow_domain::Stage::Sql,
            ]
        } else {
            &[leadflow_domain::Stage::Iql]
        };
        let ids = tx
            .engaged_members(&ws, &account_id, stages, &cursor, now, batch)
            .await?;
        let req = Request::new(ws.as_str());
        let target = self.target(&req, &policy, policy_version, now);
        // Every lead of the batch locked first, in id order: a lead is never
        // locked after an account (which a promotion's decision locks).
        let mut records = Vec::with_capacity(ids.len());
        for id in &ids {
            match self.lock(&tx, &ws, &LeadKey::Id(id.clone())).await {
                Ok(locked) => records.push(locked.record),
                Err(EngineError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut events = 0;
        if routed {
            events += self
                .route_account_members(&tx, &policy, &ws, &account_id, &mut records, now)
                .await?;
        }
        for record in records {
            if !promotes || record.lead.stage != leadflow_domain::Stage::Iql {
                continue;
            }
            let log = tx.engagements_of(&ws, &record.id).await?;
            if !leadflow_domain::account::promotes(&policy, &record.lead, &log, now) {
                continue;
            }
            let promote = leadflow_domain::Command::Transition(leadflow_domain::ManualTransition {
                command: leadflow_domain::CommandKind::Promote,
                reason: Some(format!("account {account_id} entered MQA")),
                actor: Some("leadflow".to_owned()),
                deal: None,
                occurred_at: None,
            });
            match self
                .apply(
                    &tx,
                    &target,
                    record,
                    promote,
                    None,
                    now,
                    &mut crate::log::Log::default(),
                )
                .await
            {
                Ok(applied) => events += applied.events,
                // A guard the decision checks that the look above did not.
                Err(EngineError::Domain(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let more = ids.len() as u64 == batch;
        tx.advance_promotion(
            &ws,
            &account_id,
            more.then(|| ids.last().map(String::as_str)).flatten(),
        )
        .await?;
        tx.commit().await?;
        if events > 0 {
            self.announce(&ws);
        }
        Ok(ids.len().max(1))
    }
}

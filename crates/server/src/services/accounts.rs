//! `leadflow.v1.AccountService`.

use leadflow_domain::AccountStage;
use leadflow_domain::account::{
    AccountCommand, AccountExplanation, AccountGuardCheck, EngagedUntil, ManualAccountTransition,
};
use leadflow_engine::{
    AccountInput, AccountKey, AccountListing, AccountOutcome, AccountView, Engine, Method,
    StoredAccountTransition,
};
use leadflow_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::engine_request;
use crate::convert::{lead_key, stage_out, timestamp_in, timestamp_out, token_in, token_out};
use crate::error::status;
use crate::limits::{Check, MAX_HISTORY_PAGE, MAX_ID_CHARS, MAX_PAGE, MAX_TEXT_CHARS};
use crate::observe::traceparent_of;

#[derive(Clone, Debug)]
pub struct AccountApi {
    engine: Engine,
}

impl AccountApi {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

pub(crate) fn account_stage_out(stage: AccountStage) -> pb::AccountStage {
    match stage {
        AccountStage::Target => pb::AccountStage::Target,
        AccountStage::Engaged => pb::AccountStage::Engaged,
        AccountStage::Mqa => pb::AccountStage::Mqa,
        AccountStage::Opportunity => pb::AccountStage::Opportunity,
        AccountStage::Customer => pb::AccountStage::Customer,
        AccountStage::Disqualified => pb::AccountStage::Disqualified,
    }
}

pub(crate) fn account_stage_in(check: &mut Check, field: &str, value: i32) -> Option<AccountStage> {
    match pb::AccountStage::try_from(value) {
        Ok(pb::AccountStage::Target) => Some(AccountStage::Target),
        Ok(pb::AccountStage::Engaged) => Some(AccountStage::Engaged),
        Ok(pb::AccountStage::Mqa) => Some(AccountStage::Mqa),
        Ok(pb::AccountStage::Opportunity) => Some(AccountStage::Opportunity),
        Ok(pb::AccountStage::Customer) => Some(AccountStage::Customer),
        Ok(pb::AccountStage::Disqualified) => Some(AccountStage::Disqualified),
        Ok(pb::AccountStage::Unspecified) => {
            check.fail(field, "an account stage is required here");
            None
        }
        Err(_) => {
            check.fail(field, format!("{value} is not an account stage"));
            None
        }
    }
}

fn command_in(check: &mut Check, value: i32) -> Option<AccountCommand> {
    match pb::AccountCommand::try_from(value) {
        Ok(pb::AccountCommand::Promote) => Some(AccountCommand::Promote),
        Ok(pb::AccountCommand::Accept) => Some(AccountCommand::Accept),
        Ok(pb::AccountCommand::Reject) => Some(AccountCommand::Reject),
        Ok(pb::AccountCommand::Recycle) => Some(AccountCommand::Recycle),
        Ok(pb::AccountCommand::Disqualify) => Some(AccountCommand::Disqualify),
        Ok(pb::AccountCommand::Requalify) => Some(AccountCommand::Requalify),
        Ok(pb::AccountCommand::Unspecified) => {
            check.fail(
                "command",
                "required: PROMOTE, ACCEPT, REJECT, RECYCLE, DISQUALIFY or REQUALIFY",
            );
            None
        }
        Err(_) => {
            check.fail("command", format!("{value} is not an account command"));
            None
        }
    }
}

/// An account reference, checked.
pub(crate) fn account_key(
    check: &mut Check,
    field: &str,
    account: Option<&pb::AccountRef>,
) -> Option<AccountKey> {
    let key = account.and_then(|a| a.key.as_ref());
    match key {
        None => {
            check.fail(field, "required: an id, an external_key or a domain");
            None
        }
        Some(pb::account_ref::Key::Id(id)) => {
            let id = check.key(&format!("{field}.id"), id, true);
            (!id.is_empty()).then_some(AccountKey::Id(id))
        }
        Some(pb::account_ref::Key::ExternalKey(k)) => {
            let k = check.key(&format!("{field}.external_key"), k, true);
            (!k.is_empty()).then_some(AccountKey::ExternalKey(k))
        }
        Some(pb::account_ref::Key::Domain(d)) => {
            let d = check.key(&format!("{field}.domain"), d, true);
            (!d.is_empty()).then_some(AccountKey::Domain(d))
        }
    }
}

fn i32_of(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub(crate) fn account_out(v: &AccountView) -> pb::Account {
    pb::Account {
        id: v.id.clone(),
        external_key: v.external_key.clone().unwrap_or_default(),
        domain: v.domain.clone().unwrap_or_default(),
        attributes: v.attributes.clone(),
        owner: v.owner.clone().unwrap_or_default(),
        stage: account_stage_out(v.stage).into(),
        version: v.version,
        engagement: v.engagement,
        fit: v.fit,
        engaged_members: i32_of(v.engaged_members),
        personas: v.personas.iter().map(|(p, n)| (p.clone(), i32_of(*n))).collect(),
        members: v.members,
        created_at: Some(timestamp_out(v.created_at)),
        entered_stage_at: Some(timestamp_out(v.entered_stage_at)),
        scored_at: Some(timestamp_out(v.scored_at)),
        window_start: v.window_start.map(timestamp_out),
        policy_version: v.policy_version,
    }
}

fn guard_out(g: &AccountGuardCheck) -> pb::AccountGuardResult {
    pb::AccountGuardResult {
        guard: g.guard.as_str().to_owned(),
        passed: g.passed,
        detail: g.detail.clone(),
        actual: g.actual,
        required: g.required,
    }
}

pub(crate) fn account_transition_out(t: &StoredAccountTransition) -> pb::AccountTransition {
    use leadflow_domain::account::AccountCause;
    let r = &t.record;
    let (cause_lead_id, cause_event_id) = match &r.cause {
        AccountCause::Matched { lead } => (lead.clone(), String::new()),
        AccountCause::Member { lead, event_id } => (lead.clone(), event_id.clone().unwrap_or_default()),
        _ => (String::new(), String::new()),
    };
    pb::AccountTransition {
        account_id: t.account_id.clone(),
        seq: t.seq,
        from: r
            .from
            .map_or(pb::AccountStage::Unspecified, account_stage_out)
            .into(),
        to: account_stage_out(r.to).into(),
        at: Some(timestamp_out(r.at)),
        r#move: r.by.as_str().to_owned(),
        cause: r.cause.as_str().to_owned(),
        cause_lead_id,
        cause_event_id,
        reason: r.reason.clone().unwrap_or_default(),
        actor: r.actor.clone().unwrap_or_default(),
        engagement: r.engagement,
        fit: r.fit,
        engaged_members: i32_of(r.engaged_members),
        guards: r.guards.iter().map(guard_out).collect(),
        policy_version: t.policy_version,
    }
}

fn explanation_out(view: &AccountView, x: &AccountExplanation) -> pb::ExplainAccountResponse {
    let next = x.next.as_ref();
    pb::ExplainAccountResponse {
        account: Some(account_out(view)),
        aggregate: x.aggregate.to_string(),
        members: x
            .members
            .iter()
            .map(|m| pb::AccountMember {
                lead_id: m.lead.clone(),
                persona: m.persona.clone().unwrap_or_default(),
                stage: stage_out(m.stage).into(),
                score: m.score,
                engaged: m.engaged,
                engaged_until: match m.engaged_until {
                    EngagedUntil::Until(t) if m.engaged => Some(timestamp_out(t)),
                    _ => None,
                },
                in_aggregate: m.in_aggregate,
                erased: m.erased,
            })
            .collect(),
        coverage: x
            .coverage
            .iter()
            .map(|(persona, (engaged, required))| pb::PersonaCoverage {
                persona: persona.clone(),
                engaged: i32_of(*engaged),
                required: *required,
            })
            .collect(),
        next_stage: next
            .map_or(pb::AccountStage::Unspecified, |n| account_stage_out(n.to))
            .into(),
        next_move: next.map(|n| n.by.as_str().to_owned()).unwrap_or_default(),
        next_guards: next
            .map(|n| n.guards.iter().map(guard_out).collect())
            .unwrap_or_default(),
        or_by: next
            .map(|n| n.or_by.iter().map(|m| m.as_str().to_owned()).collect())
            .unwrap_or_default(),
        as_of: Some(timestamp_out(x.at)),
    }
}

fn outcome_parts(o: &AccountOutcome) -> (Option<pb::Account>, Vec<pb::AccountTransition>) {
    (
        Some(account_out(&o.account)),
        o.transitions.iter().map(account_transition_out).collect(),
    )
}

/// The fields of an account a caller gives, checked.
#[allow(clippy::too_many_arguments)]
fn input(
    check: &mut Check,
    external_key: &str,
    domain: Option<&str>,
    attributes: &std::collections::BTreeMap<String, String>,
    owner: Option<&str>,
    created_at: Option<&prost_types::Timestamp>,
    key_required: bool,
) -> AccountInput {
    let external_key = check.key("external_key", external_key, key_required);
    if let Some(domain) = domain {
        check.text("domain", domain, MAX_ID_CHARS * 2, false);
    }
    if let Some(owner) = owner {
        check.text("owner", owner, MAX_ID_CHARS, false);
    }
    check.map("attributes", attributes);
    let created_at = timestamp_in(check, "created_at", created_at);
    AccountInput {
        external_key: (!external_key.is_empty()).then_some(external_key),
        domain: domain.map(str::to_owned),
        attributes: attributes.clone(),
        owner: owner.map(str::to_owned),
        created_at,
    }
}

/// A list page token: `value|id` after the last account of a page.
fn list_cursor(check: &mut Check, token: &str) -> Option<(f64, String)> {
    let text = token_in(check, "a", token)?;
    let parsed = text
        .split_once('|')
        .and_then(|(v, id)| v.parse::<f64>().ok().map(|v| (v, id.to_owned())));
    if parsed.is_none() {
        check.fail("page_token", "not a page token of this list");
    }
    parsed
}

fn actor_of(check: &mut Check, actor: &str) -> Option<String> {
    check.text("actor", actor, MAX_TEXT_CHARS, false);
    let actor = actor.trim();
    (!actor.is_empty()).then(|| actor.to_owned())
}

#[tonic::async_trait]
impl pb::account_service_server::AccountService for AccountApi {
    async fn create_account(
        &self,
        request: Request<pb::CreateAccountRequest>,
    ) -> Result<Response<pb::CreateAccountResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        let input = input(
            &mut check,
            &r.external_key,
            Some(&r.domain),
            &r.attributes,
            Some(&r.owner),
            r.created_at.as_ref(),
            false,
        );
        check.into_result()?;
        let req = engine_request(
            &caller,
            Method::CreateAccount,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let outcome = self.engine.create_account(&req, &input).await.map_err(status)?;
        let (account, transitions) = outcome_parts(&outcome);
        Ok(Response::new(pb::CreateAccountResponse { account, transitions }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let key = account_key(&mut check, "account", r.account.as_ref());
        check.into_result()?;
        let key = key.ok_or_else(|| Status::invalid_argument("account: required"))?;
        let view = self
            .engine
            .get_account(&caller.workspace, &key)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetAccountResponse {
            account: Some(account_out(&view)),
        }))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let mut stages = Vec::new();
        for (i, s) in r.stages.iter().enumerate() {
            if let Some(stage) = account_stage_in(&mut check, &format!("stages[{i}]"), *s) {
                stages.push(stage);
            }
        }
        let by_score = match pb::AccountOrder::try_from(r.order_by) {
            Ok(order) => order == pb::AccountOrder::Score,
            Err(_) => {
                check.fail("order_by", format!("{} is not an account order", r.order_by));
                false
            }
        };
        let limit = check.page_size("page_size", r.page_size, 50, MAX_PAGE);
        let after = if r.page_token.is_empty() {
            None
        } else {
            list_cursor(&mut check, &r.page_token)
        };
        check.into_result()?;
        let page = self
            .engine
            .list_accounts(
                &caller.workspace,
                &AccountListing {
                    stages,
                    by_score,
                    after,
                    limit,
                },
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: page.accounts.iter().map(account_out).collect(),
            next_page_token: page
                .next
                .map(|(v, id)| token_out("a", &format!("{v}|{id}")))
                .unwrap_or_default(),
        }))
    }

    async fn update_account(
        &self,
        request: Request<pb::UpdateAccountRequest>,
    ) -> Result<Response<pb::UpdateAccountResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        let input = input(
            &mut check,
            &r.external_key,
            r.domain.as_deref(),
            &r.attributes,
            r.owner.as_deref(),
            r.created_at.as_ref(),
            true,
        );
        check.into_result()?;
        let req = engine_request(
            &caller,
            Method::UpdateAccount,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let outcome = self
            .engine
            .update_account(&req, &input, r.expected_version)
            .await
            .map_err(status)?;
        let (account, transitions) = outcome_parts(&outcome);
        Ok(Response::new(pb::UpdateAccountResponse {
            account,
            transitions,
            created: outcome.created,
        }))
    }

    async fn link_lead(
        &self,
        request: Request<pb::LinkLeadRequest>,
    ) -> Result<Response<pb::LinkLeadResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        let lead = lead_key(&mut check, "lead", r.lead.as_ref());
        let account = account_key(&mut check, "account", r.account.as_ref());
        let actor = actor_of(&mut check, &r.actor);
        check.into_result()?;
        let (Some(lead), Some(account)) = (lead, account) else {
            return Err(Status::invalid_argument("lead and account are required"));
        };
        let req = engine_request(
            &caller,
            Method::LinkLead,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let outcome = self
            .engine
            .link_lead(&req, &lead, Some(&account), actor.as_deref())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::LinkLeadResponse {
            lead_id: outcome.lead_id,
            account: outcome.account.as_ref().map(account_out),
        }))
    }

    async fn unlink_lead(
        &self,
        request: Request<pb::UnlinkLeadRequest>,
    ) -> Result<Response<pb::UnlinkLeadResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        let lead = lead_key(&mut check, "lead", r.lead.as_ref());
        let actor = actor_of(&mut check, &r.actor);
        check.into_result()?;
        let lead = lead.ok_or_else(|| Status::invalid_argument("lead: required"))?;
        let req = engine_request(
            &caller,
            Method::UnlinkLead,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let outcome = self
            .engine
            .link_lead(&req, &lead, None, actor.as_deref())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UnlinkLeadResponse {
            lead_id: outcome.lead_id,
        }))
    }

    async fn transition_account(
        &self,
        request: Request<pb::TransitionAccountRequest>,
    ) -> Result<Response<pb::TransitionAccountResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        let key = account_key(&mut check, "account", r.account.as_ref());
        let command = command_in(&mut check, r.command);
        check.text("reason", &r.reason, MAX_TEXT_CHARS, false);
        let actor = actor_of(&mut check, &r.actor);
        check.into_result()?;
        let (Some(key), Some(command)) = (key, command) else {
            return Err(Status::invalid_argument("account and command are required"));
        };
        let req = engine_request(
            &caller,
            Method::TransitionAccount,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let transition = ManualAccountTransition {
            command,
            reason: Some(r.reason.trim().to_owned()).filter(|r| !r.is_empty()),
            actor,
        };
        let outcome = self
            .engine
            .transition_account(&req, &key, &transition, r.expected_version)
            .await
            .map_err(status)?;
        let (account, transitions) = outcome_parts(&outcome);
        Ok(Response::new(pb::TransitionAccountResponse {
            account,
            transitions,
        }))
    }

    async fn get_account_history(
        &self,
        request: Request<pb::GetAccountHistoryRequest>,
    ) -> Result<Response<pb::GetAccountHistoryResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let key = account_key(&mut check, "account", r.account.as_ref());
        let limit = check.page_size("page_size", r.page_size, 100, MAX_HISTORY_PAGE);
        let after = if r.page_token.is_empty() {
            0
        } else {
            token_in(&mut check, "ah", &r.page_token)
                .and_then(|t| t.parse::<i64>().ok())
                .unwrap_or_else(|| {
                    check.fail("page_token", "not a page token of this list");
                    0
                })
        };
        check.into_result()?;
        let key = key.ok_or_else(|| Status::invalid_argument("account: required"))?;
        let (_, history) = self
            .engine
            .account_history(&caller.workspace, &key, after, limit)
            .await
            .map_err(status)?;
        let next = (history.len() as u64 == limit)
            .then(|| history.last().map(|t| token_out("ah", &t.seq.to_string())))
            .flatten()
            .unwrap_or_default();
        Ok(Response::new(pb::GetAccountHistoryResponse {
            transitions: history.iter().map(account_transition_out).collect(),
            next_page_token: next,
        }))
    }

    async fn explain_account(
        &self,
        request: Request<pb::ExplainAccountRequest>,
    ) -> Result<Response<pb::ExplainAccountResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let key = account_key(&mut check, "account", r.account.as_ref());
        let as_of = timestamp_in(&mut check, "as_of", r.as_of.as_ref());
        let now = self.engine.now();
        if let Some(t) = as_of
            && t > now.saturating_add(leadflow_domain::lifecycle::MAX_FUTURE)
        {
            check.fail("as_of", format!("{t} is in the future (now is {now})"));
        }
        check.into_result()?;
        let key = key.ok_or_else(|| Status::invalid_argument("account: required"))?;
        let view = self
            .engine
            .get_account(&caller.workspace, &key)
            .await
            .map_err(status)?;
        let x = self
            .engine
            .explain_account(&caller.workspace, &key, as_of)
            .await
            .map_err(status)?;
        Ok(Response::new(explanation_out(&view, &x)))
    }
}

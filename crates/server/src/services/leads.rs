//! `leadflow.v1.LeadService`.

use leadflow_domain::lifecycle::{Deal, ManualTransition};
use leadflow_domain::{CommandKind, FieldViolation};
use leadflow_engine::{
    BatchItem, CreateLead, Engine, EngineError, HistoryCursor, HistoryEntry, Outcome,
    Request as EngineRequest,
};
use leadflow_proto::v1 as pb;
use tonic::{Request, Response, Status, Streaming};

use super::engine_request;
use crate::auth::Principal;
use crate::convert::{
    assignment_out, engagement_in, engagement_out, explanation_out, lead_key, lead_out, level_change_out,
    stage_in, timestamp_in, timestamp_out, token_in, token_out, transition_out, trigger_out,
};
use crate::error::{after_committed, from_stream, renamed, status, too_large};
use crate::limits::{Check, MAX_BATCH, MAX_HISTORY_PAGE, MAX_LIST_BYTES, MAX_PAGE, MAX_TEXT_CHARS};
use crate::observe::{record_lead, traceparent_of};
use leadflow_engine::Method;

#[derive(Clone, Debug)]
pub struct LeadApi {
    engine: Engine,
}

impl LeadApi {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

/// An engine request without an idempotency key.
fn plain(caller: &Principal, traceparent: Option<String>) -> EngineRequest {
    EngineRequest {
        workspace: caller.workspace.clone(),
        request_id: None,
        fingerprint: String::new(),
        traceparent,
        principal: caller.recorded_name(),
    }
}

struct Parts {
    lead: Option<pb::Lead>,
    transitions: Vec<pb::Transition>,
    triggers: Vec<pb::WorkflowTrigger>,
}

fn parts(outcome: &Outcome) -> Parts {
    if let Some(lead) = &outcome.lead {
        record_lead(&lead.id);
    }
    Parts {
        lead: outcome.lead.as_ref().map(lead_out),
        transitions: outcome.transitions.iter().map(transition_out).collect(),
        triggers: outcome.triggers.iter().map(trigger_out).collect(),
    }
}

/// The most anonymous ids one `CreateLead` joins.
const MAX_ANONYMOUS_IDS: usize = 20;

/// `CreateLead.anonymous_ids`: keys, each once, at most [`MAX_ANONYMOUS_IDS`].
fn anonymous_ids(check: &mut Check, ids: &[String]) -> Vec<String> {
    if ids.len() > MAX_ANONYMOUS_IDS {
        check.fail(
            "anonymous_ids",
            format!("{} anonymous ids; at most {MAX_ANONYMOUS_IDS}", ids.len()),
        );
        return Vec::new();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let field = format!("anonymous_ids[{i}]");
        let id = check.key(&field, id, true);
        if !id.is_empty() && !seen.insert(id.clone()) {
            check.fail(&field, format!("{id:?} is given twice"));
        }
        out.push(id);
    }
    out
}

fn action(check: &mut Check, value: i32) -> Option<CommandKind> {
    match pb::Action::try_from(value) {
        Ok(pb::Action::Promote) => Some(CommandKind::Promote),
        Ok(pb::Action::Accept) => Some(CommandKind::Accept),
        Ok(pb::Action::Reject) => Some(CommandKind::Reject),
        Ok(pb::Action::Recycle) => Some(CommandKind::Recycle),
        Ok(pb::Action::Convert) => Some(CommandKind::Convert),
        Ok(pb::Action::Disqualify) => Some(CommandKind::Disqualify),
        Ok(pb::Action::Requalify) => Some(CommandKind::Requalify),
        Ok(pb::Action::Unspecified) => {
            check.fail(
                "action",
                "required: PROMOTE, ACCEPT, REJECT, RECYCLE, CONVERT, DISQUALIFY or REQUALIFY",
            );
            None
        }
        Err(_) => {
            check.fail("action", format!("{value} is not an action"));
            None
        }
    }
}

/// A history page token: `transition:level:assignment|occurred_at|event_id`
/// (tokens made before levels existed have no `:level`, those made before
/// assignments no `:assignment`).
fn history_cursor(check: &mut Check, token: &str) -> HistoryCursor {
    let Some(text) = token_in(check, "h", token) else {
        return HistoryCursor::default();
    };
    let mut parts = text.splitn(3, '|');
    let (Some(t), Some(at), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        check.fail("page_token", "not a page token of this list");
        return HistoryCursor::default();
    };
    let mut seqs = t.split(':');
    let t = seqs.next().unwrap_or_default();
    let level = seqs.next().unwrap_or("0");
    let assignment = seqs.next().unwrap_or("0");
    let (Ok(t), Ok(level), Ok(assignment), Ok(at), None) = (
        t.parse::<i64>(),
        level.parse::<i64>(),
        assignment.parse::<i64>(),
        at.parse::<i64>(),
        seqs.next(),
    ) else {
        check.fail("page_token", "not a page token of this list");
        return HistoryCursor::default();
    };
    HistoryCursor {
        transition: t,
        engagement: (!id.is_empty()).then(|| (at, id.to_owned())),
        level,
        assignment,
    }
}

fn history_token(cursor: &HistoryCursor) -> String {
    let (at, id) = cursor.engagement.clone().unwrap_or((0, String::new()));
    token_out(
        "h",
        &format!(
            "{}:{}:{}|{at}|{id}",
            cursor.transition, cursor.level, cursor.assignment
        ),
    )
}

/// Engagements of a client stream committed in one transaction, at most.
const STREAM_BATCH: usize = 100;

impl LeadApi {
    /// A lead and an engagement from a request, checked; violations are
    /// reported under `prefix` (e.g. `engagements[3].`).
    fn item(
        &self,
        check: &mut Check,
        prefix: &str,
        lead: Option<&pb::LeadRef>,
        engagement: Option<&pb::Engagement>,
    ) -> Option<BatchItem> {
        let lead = lead_key(check, &format!("{prefix}lead"), lead);
        let engagement = engagement_in(
            check,
            &format!("{prefix}engagement"),
            engagement,
            self.engine.now(),
        );
        let (Some(lead), Some((engagement, occurred_at_given))) = (lead, engagement) else {
            return None;
        };
        Some(BatchItem {
            lead,
            engagement,
            occurred_at_given,
        })
    }

    /// One checked item, or the INVALID_ARGUMENT for it.
    fn one_item(
        &self,
        lead: Option<&pb::LeadRef>,
        engagement: Option<&pb::Engagement>,
    ) -> Result<BatchItem, Status> {
        let mut check = Check::default();
        let item = self.item(&mut check, "", lead, engagement);
        check.into_result()?;
        item.ok_or_else(|| Status::invalid_argument("lead and engagement are required"))
    }

    /// Commits a stream's batch; if it is refused, commits its items one by
    /// one up to the refused one, so the error can say how many went in.
    async fn commit_stream_batch(
        &self,
        req: &leadflow_engine::Request,
        items: &[BatchItem],
        response: &mut pb::StreamEngagementsResponse,
    ) -> Result<(), Status> {
        let count = |o: &Outcome, response: &mut pb::StreamEngagementsResponse| {
            response.committed += 1;
            response.duplicates += i64::from(o.duplicate);
            response.transitions += i64::try_from(o.transitions.len()).unwrap_or(0);
        };
        let mut rest = items;
        match items {
            [] => return Ok(()),
            [_, _, ..] => match self.engine.record_engagements(req, items).await {
                Ok(outcomes) => {
                    for o in &outcomes {
                        count(o, response);
                    }
                    return Ok(());
                }
                Err(EngineError::Committed { outcomes, .. }) => {
                    for o in &outcomes {
                        count(o, response);
                    }
                    rest = &items[outcomes.len()..];
                }
                Err(_) => {}
            },
            [_] => {}
        }
        for item in rest {
            let outcome = self
                .engine
                .record_engagement(req, &item.lead, &item.engagement, item.occurred_at_given)
                .await
                .map_err(|e| after_committed(status(e), response.committed))?;
            count(&outcome, response);
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl pb::lead_service_server::LeadService for LeadApi {
    async fn create_lead(
        &self,
        request: Request<pb::CreateLeadRequest>,
    ) -> Result<Response<pb::CreateLeadResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        let external_key = check.key("external_key", &r.external_key, false);
        check.map("profile", &r.profile);
        let captured_at = timestamp_in(&mut check, "captured_at", r.captured_at.as_ref());
        let anonymous_ids = anonymous_ids(&mut check, &r.anonymous_ids);
        check.into_result()?;
        let req = engine_request(
            &caller,
            Method::CreateLead,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let input = CreateLead {
            external_key: (!external_key.is_empty()).then_some(external_key),
            profile: r.profile,
            captured_at,
            anonymous_ids,
        };
        let outcome = self.engine.create_lead(&req, &input).await.map_err(status)?;
        let p = parts(&outcome);
        // An automatic merge moved the new lead into MERGED, naming the survivor.
        let merged_into = p
            .transitions
            .iter()
            .find(|t| t.to_stage == pb::Stage::Merged as i32)
            .map(|t| t.cause_ref.clone())
            .unwrap_or_default();
        Ok(Response::new(pb::CreateLeadResponse {
            lead: p.lead,
            transitions: p.transitions,
            triggers: p.triggers,
            merged_into,
        }))
    }

    async fn get_lead(
        &self,
        request: Request<pb::GetLeadRequest>,
    ) -> Result<Response<pb::GetLeadResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let key = lead_key(&mut check, "lead", r.lead.as_ref());
        check.into_result()?;
        let Some(key) = key else {
            return Err(Status::invalid_argument("lead: required"));
        };
        let view = self
            .engine
            .get_lead(&caller.workspace, &key)
            .await
            .map_err(status)?;
        record_lead(&view.id);
        let (membership, persona) = self
            .engine
            .lead_membership(&caller.workspace, &view)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetLeadResponse {
            lead: Some(lead_out(&view)),
            account_id: membership
                .as_ref()
                .map(|m| m.account_id.clone())
                .unwrap_or_default(),
            matched_by: membership
                .map(|m| m.matched_by.as_str().to_owned())
                .unwrap_or_default(),
            persona: persona.unwrap_or_default(),
        }))
    }

    async fn list_leads(
        &self,
        request: Request<pb::ListLeadsRequest>,
    ) -> Result<Response<pb::ListLeadsResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        if super::search::is_search(&r) {
            let size = check.page_size("page_size", r.page_size, 50, MAX_PAGE);
            let query = super::search::query_in(&mut check, &r, size);
            check.into_result()?;
            let page = self
                .engine
                .search_leads(&caller.workspace, &query)
                .await
                .map_err(status)?;
            // Bounded in bytes too, as below.
            let mut leads = Vec::with_capacity(page.leads.len());
            let mut bytes = 0;
            let mut next = page.next;
            let mut last: Option<&leadflow_engine::SearchCursor> = None;
            for (view, cursor) in &page.leads {
                let lead = lead_out(view);
                let size = prost::Message::encoded_len(&lead);
                if !leads.is_empty() && bytes + size > MAX_LIST_BYTES {
                    next = last.cloned();
                    break;
                }
                bytes += size;
                leads.push(lead);
                last = Some(cursor);
            }
            return Ok(Response::new(pb::ListLeadsResponse {
                leads,
                next_page_token: next.map(|c| super::search::token(&query, &c)).unwrap_or_default(),
            }));
        }
        let stage = stage_in(&mut check, "stage", r.stage);
        let size = check.page_size("page_size", r.page_size, 50, MAX_PAGE);
        let after = token_in(&mut check, "l", &r.page_token);
        check.into_result()?;
        let page = self
            .engine
            .list_leads(&caller.workspace, stage, after.as_deref(), size)
            .await
            .map_err(status)?;
        // A page is bounded in bytes as well as in leads: at least one lead,
        // then as many as fit, and the next page starts after the last.
        let mut leads = Vec::with_capacity(page.leads.len());
        let mut bytes = 0;
        let mut next_after = page.next_after;
        for view in &page.leads {
            let lead = lead_out(view);
            let size = prost::Message::encoded_len(&lead);
            if !leads.is_empty() && bytes + size > MAX_LIST_BYTES {
                next_after = leads.last().map(|l: &pb::Lead| l.id.clone());
                break;
            }
            bytes += size;
            leads.push(lead);
        }
        Ok(Response::new(pb::ListLeadsResponse {
            leads,
            next_page_token: next_after.map(|id| token_out("l", &id)).unwrap_or_default(),
        }))
    }

    async fn update_lead_profile(
        &self,
        request: Request<pb::UpdateLeadProfileRequest>,
    ) -> Result<Response<pb::UpdateLeadProfileResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        let key = lead_key(&mut check, "lead", r.lead.as_ref());
        check.map("attributes", &r.attributes);
        check.into_result()?;
        let Some(key) = key else {
            return Err(Status::invalid_argument("lead: required"));
        };
        let req = engine_request(
            &caller,
            Method::UpdateLeadProfile,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let outcome = self
            .engine
            .update_profile(&req, &key, &r.attributes, r.expected_version)
            .await
            .map_err(|e| status(renamed(e, "profile", "attributes")))?;
        let p = parts(&outcome);
        Ok(Response::new(pb::UpdateLeadProfileResponse {
            lead: p.lead,
            transitions: p.transitions,
            triggers: p.triggers,
        }))
    }

    async fn record_engagement(
        &self,
        request: Request<pb::RecordEngagementRequest>,
    ) -> Result<Response<pb::RecordEngagementResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let item = self.one_item(r.lead.as_ref(), r.engagement.as_ref())?;
        let outcome = self
            .engine
            .record_engagement(
                &plain(&caller, trace),
                &item.lead,
                &item.engagement,
                item.occurred_at_given,
            )
            .await
            .map_err(status)?;
        let p = parts(&outcome);
        Ok(Response::new(pb::RecordEngagementResponse {
            anonymous: outcome.lead.is_none(),
            lead: p.lead,
            duplicate: outcome.duplicate,
            transitions: p.transitions,
            triggers: p.triggers,
        }))
    }

    async fn record_engagements(
        &self,
        request: Request<pb::RecordEngagementsRequest>,
    ) -> Result<Response<pb::RecordEngagementsResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        if r.engagements.len() > MAX_BATCH {
            return Err(too_large(
                "engagements",
                format!(
                    "{} engagements in one call; at most {MAX_BATCH}",
                    r.engagements.len()
                ),
                MAX_BATCH,
                r.engagements.len(),
            ));
        }
        // Every item checked; an item refused here and one the engine would
        // refuse are answered together, with the code of the first.
        let mut items = Vec::with_capacity(r.engagements.len());
        let mut refusals = Vec::new();
        for (i, item) in r.engagements.iter().enumerate() {
            // Named as an item names its fields; the error puts them under
            // `engagements[i]`.
            let mut check = Check::default();
            let parsed = self.item(&mut check, "", item.lead.as_ref(), item.engagement.as_ref());
            match (check.into_refusal(), parsed) {
                (None, Some(parsed)) => items.push((i, parsed)),
                (refusal, _) => refusals.push((
                    i,
                    refusal.unwrap_or_else(|| EngineError::InvalidArgument {
                        reason: "INVALID_FIELD",
                        violations: vec![FieldViolation::new("engagement", "required")],
                    }),
                )),
            }
        }
        let req = plain(&caller, trace);
        if !refusals.is_empty() {
            let listed: Vec<(usize, &BatchItem)> = items.iter().map(|(i, item)| (*i, item)).collect();
            refusals.extend(self.engine.refusals(&req, &listed).await.map_err(status)?);
            refusals.sort_by_key(|(i, _)| *i);
            return Err(EngineError::batch(refusals)
                .map_or_else(|| Status::invalid_argument("engagements: refused"), status));
        }
        let items: Vec<BatchItem> = items.into_iter().map(|(_, item)| item).collect();
        let outcomes = self
            .engine
            .record_engagements(&req, &items)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RecordEngagementsResponse {
            results: outcomes
                .iter()
                .map(|o| {
                    let p = parts(o);
                    pb::EngagementResult {
                        anonymous: o.lead.is_none(),
                        lead: p.lead,
                        duplicate: o.duplicate,
                        transitions: p.transitions,
                        triggers: p.triggers,
                    }
                })
                .collect(),
        }))
    }

    async fn stream_engagements(
        &self,
        request: Request<Streaming<pb::StreamEngagementsRequest>>,
    ) -> Result<Response<pb::StreamEngagementsResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let mut stream = request.into_inner();
        let mut response = pb::StreamEngagementsResponse::default();
        let req = plain(&caller, trace);
        // What has arrived is committed together (one transaction for up to
        // STREAM_BATCH engagements); a client that sends one at a time gets
        // one at a time.
        let mut ended = false;
        while !ended {
            let mut pending = Vec::new();
            let mut refused = None;
            let first = stream
                .message()
                .await
                .map_err(|s| after_committed(from_stream(s), response.committed))?;
            let Some(first) = first else { break };
            let mut next = Some(first);
            loop {
                if let Some(m) = next.take() {
                    match self.one_item(m.lead.as_ref(), m.engagement.as_ref()) {
                        Ok(item) => pending.push(item),
                        Err(s) => {
                            refused = Some(s);
                            break;
                        }
                    }
                }
                if pending.len() >= STREAM_BATCH {
                    break;
                }
                // Only what is here already: never wait with engagements in hand.
                match tokio::time::timeout(std::time::Duration::ZERO, stream.message()).await {
                    Ok(Ok(Some(m))) => next = Some(m),
                    Ok(Ok(None)) => {
                        ended = true;
                        break;
                    }
                    Ok(Err(s)) => {
                        refused = Some(from_stream(s));
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_stream_batch(&req, &pending, &mut response).await?;
            if let Some(s) = refused {
                return Err(after_committed(s, response.committed));
            }
        }
        Ok(Response::new(response))
    }

    async fn transition(
        &self,
        request: Request<pb::TransitionRequest>,
    ) -> Result<Response<pb::TransitionResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        let key = lead_key(&mut check, "lead", r.lead.as_ref());
        let command = action(&mut check, r.action);
        check.text("reason", &r.reason, MAX_TEXT_CHARS, false);
        check.text("actor", &r.actor, MAX_TEXT_CHARS, false);
        check.text("currency", &r.currency, 3, false);
        if r.deal_value.is_none() && !r.currency.is_empty() {
            check.fail("currency", "given without deal_value");
        }
        let occurred_at = timestamp_in(&mut check, "occurred_at", r.occurred_at.as_ref());
        check.into_result()?;
        let (Some(key), Some(command)) = (key, command) else {
            return Err(Status::invalid_argument("lead and action are required"));
        };
        let transition = ManualTransition {
            command,
            reason: (!r.reason.is_empty()).then(|| r.reason.clone()),
            actor: (!r.actor.is_empty()).then(|| r.actor.clone()),
            deal: r.deal_value.map(|value| Deal {
                value,
                currency: r.currency.clone(),
            }),
            occurred_at,
        };
        let req = engine_request(
            &caller,
            Method::Transition,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let outcome = self
            .engine
            .transition(&req, &key, &transition, r.expected_version)
            .await
            .map_err(status)?;
        let p = parts(&outcome);
        Ok(Response::new(pb::TransitionResponse {
            lead: p.lead,
            transitions: p.transitions,
            triggers: p.triggers,
        }))
    }

    async fn get_lead_history(
        &self,
        request: Request<pb::GetLeadHistoryRequest>,
    ) -> Result<Response<pb::GetLeadHistoryResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let key = lead_key(&mut check, "lead", r.lead.as_ref());
        let size = check.page_size("page_size", r.page_size, 100, MAX_HISTORY_PAGE);
        let cursor = history_cursor(&mut check, &r.page_token);
        check.into_result()?;
        let Some(key) = key else {
            return Err(Status::invalid_argument("lead: required"));
        };
        let page = self
            .engine
            .history(&caller.workspace, &key, &cursor, size)
            .await
            .map_err(status)?;
        let entries = page
            .entries
            .iter()
            .map(|e| pb::HistoryEntry {
                entry: Some(match e {
                    HistoryEntry::Transition(t) => pb::history_entry::Entry::Transition(transition_out(t)),
                    HistoryEntry::Engagement(g) => pb::history_entry::Entry::Engagement(engagement_out(g)),
                    HistoryEntry::LevelChange(l) => pb::history_entry::Entry::LevelChange(level_change_out(
                        &l.change,
                        &l.lead_id,
                        l.policy_version,
                    )),
                    HistoryEntry::Assignment(a) => pb::history_entry::Entry::Assignment(assignment_out(a)),
                }),
            })
            .collect();
        Ok(Response::new(pb::GetLeadHistoryResponse {
            entries,
            next_page_token: page.next.as_ref().map(history_token).unwrap_or_default(),
        }))
    }

    async fn explain_score(
        &self,
        request: Request<pb::ExplainScoreRequest>,
    ) -> Result<Response<pb::ExplainScoreResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let key = lead_key(&mut check, "lead", r.lead.as_ref());
        let as_of = timestamp_in(&mut check, "as_of", r.as_of.as_ref());
        check.into_result()?;
        let Some(key) = key else {
            return Err(Status::invalid_argument("lead: required"));
        };
        let (view, explanation) = self
            .engine
            .explain(&caller.workspace, &key, as_of)
            .await
            .map_err(status)?;
        record_lead(&view.id);
        Ok(Response::new(explanation_out(&view, &explanation)))
    }

    async fn identify_lead(
        &self,
        request: Request<pb::IdentifyLeadRequest>,
    ) -> Result<Response<pb::IdentifyLeadResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        let key = lead_key(&mut check, "lead", r.lead.as_ref());
        let anonymous_id = check.key("anonymous_id", &r.anonymous_id, true);
        let occurred_at = timestamp_in(&mut check, "occurred_at", r.occurred_at.as_ref());
        check.into_result()?;
        let Some(key) = key else {
            return Err(Status::invalid_argument("lead: required"));
        };
        let req = engine_request(
            &caller,
            Method::IdentifyLead,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let identified = self
            .engine
            .identify_lead(&req, &key, &anonymous_id, occurred_at)
            .await
            .map_err(status)?;
        let p = parts(&identified.outcome);
        Ok(Response::new(pb::IdentifyLeadResponse {
            lead: p.lead,
            transitions: p.transitions,
            triggers: p.triggers,
            joined: i64::try_from(identified.joined).unwrap_or(i64::MAX),
            already: identified.already,
        }))
    }

    async fn merge_leads(
        &self,
        request: Request<pb::MergeLeadsRequest>,
    ) -> Result<Response<pb::MergeLeadsResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        let survivor = lead_key(&mut check, "survivor", r.survivor.as_ref());
        let duplicate = lead_key(&mut check, "duplicate", r.duplicate.as_ref());
        let occurred_at = timestamp_in(&mut check, "occurred_at", r.occurred_at.as_ref());
        check.into_result()?;
        let (Some(survivor), Some(duplicate)) = (survivor, duplicate) else {
            return Err(Status::invalid_argument("survivor and duplicate: required"));
        };
        let req = engine_request(
            &caller,
            Method::MergeLeads,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let merged = self
            .engine
            .merge_leads(&req, &survivor, &duplicate, occurred_at)
            .await
            .map_err(status)?;
        let p = parts(&merged.survivor);
        Ok(Response::new(pb::MergeLeadsResponse {
            survivor: p.lead,
            transitions: p.transitions,
            triggers: p.triggers,
            duplicate_id: merged.duplicate_id,
            duplicate_stage: crate::convert::stage_out(merged.duplicate_stage).into(),
            engagements_moved: i64::try_from(merged.engagements_moved).unwrap_or(i64::MAX),
            anonymous_ids: merged.anonymous_ids,
            attributes_taken: merged.attributes_taken,
        }))
    }

    async fn unmerge_lead(
        &self,
        request: Request<pb::UnmergeLeadRequest>,
    ) -> Result<Response<pb::UnmergeLeadResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        let duplicate_id = check.key("duplicate_id", &r.duplicate_id, true);
        check.into_result()?;
        let req = engine_request(
            &caller,
            Method::UnmergeLead,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let unmerged = self
            .engine
            .unmerge_lead(&req, &duplicate_id)
            .await
            .map_err(status)?;
        let p = parts(&unmerged.duplicate);
        let survivor = parts(&unmerged.survivor);
        Ok(Response::new(pb::UnmergeLeadResponse {
            duplicate: p.lead,
            transitions: p.transitions,
            triggers: p.triggers,
            survivor: survivor.lead,
            engagements_returned: i64::try_from(unmerged.engagements_returned).unwrap_or(i64::MAX),
            survivor_triggers: survivor.triggers,
        }))
    }

    async fn assign_lead(
        &self,
        request: Request<pb::AssignLeadRequest>,
    ) -> Result<Response<pb::AssignLeadResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        let key = lead_key(&mut check, "lead", r.lead.as_ref());
        let owner = match &r.target {
            Some(pb::assign_lead_request::Target::OwnerId(id)) => {
                check.key("owner_id", id, true);
                Some(id.trim().to_owned())
            }
            Some(pb::assign_lead_request::Target::Release(true)) => None,
            Some(pb::assign_lead_request::Target::Release(false)) | None => {
                check.fail("target", "required: an owner_id, or release = true");
                None
            }
        };
        check.text(
            "reason",
            &r.reason,
            leadflow_engine::MAX_ASSIGN_REASON_CHARS,
            false,
        );
        check.into_result()?;
        let Some(key) = key else {
            return Err(Status::invalid_argument("lead is required"));
        };
        let req = engine_request(
            &caller,
            Method::AssignLead,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let assigned = self
            .engine
            .assign_lead(
                &req,
                &key,
                owner.as_deref(),
                Some(r.reason.as_str()),
                r.expected_version,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AssignLeadResponse {
            lead: Some(lead_out(&assigned.lead)),
            assignment: assigned.assignment.as_ref().map(assignment_out),
        }))
    }

    async fn find_duplicates(
        &self,
        request: Request<pb::FindDuplicatesRequest>,
    ) -> Result<Response<pb::FindDuplicatesResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let key = lead_key(&mut check, "lead", r.lead.as_ref());
        let limit = match usize::try_from(r.limit) {
            Ok(0) => 20,
            Ok(n) if n <= leadflow_engine::MAX_CANDIDATES => n,
            _ => {
                check.fail(
                    "limit",
                    format!(
                        "{}: from 1 to {} (0: 20)",
                        r.limit,
                        leadflow_engine::MAX_CANDIDATES
                    ),
                );
                0
            }
        };
        check.into_result()?;
        let Some(key) = key else {
            return Err(Status::invalid_argument("lead: required"));
        };
        let found = self
            .engine
            .find_duplicates(&caller.workspace, &key, limit)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::FindDuplicatesResponse {
            candidates: found
                .iter()
                .map(|c| pb::DuplicateCandidate {
                    lead: Some(lead_out(&c.lead)),
                    matched: c.matched.clone(),
                })
                .collect(),
        }))
    }

    async fn erase_anonymous(
        &self,
        request: Request<pb::EraseAnonymousRequest>,
    ) -> Result<Response<pb::EraseAnonymousResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let anonymous_id = check.key("anonymous_id", &r.anonymous_id, true);
        check.into_result()?;
        let erased = self
            .engine
            .erase_anonymous(&plain(&caller, trace), &anonymous_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::EraseAnonymousResponse {
            events_erased: i64::try_from(erased).unwrap_or(i64::MAX),
        }))
    }

    async fn erase_lead(
        &self,
        request: Request<pb::EraseLeadRequest>,
    ) -> Result<Response<pb::EraseLeadResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let key = lead_key(&mut check, "lead", r.lead.as_ref());
        check.into_result()?;
        let Some(key) = key else {
            return Err(Status::invalid_argument("lead: required"));
        };
        let erasure = self
            .engine
            .erase_lead(&plain(&caller, trace), &key)
            .await
            .map_err(status)?;
        record_lead(&erasure.lead_id);
        Ok(Response::new(pb::EraseLeadResponse {
            lead_id: erasure.lead_id,
            erased_at: Some(timestamp_out(erasure.erased_at)),
            already_erased: erasure.already,
            engagements_scrubbed: i64::try_from(erasure.engagements).unwrap_or(i64::MAX),
            events_scrubbed: i64::try_from(erasure.events).unwrap_or(i64::MAX),
        }))
    }
}

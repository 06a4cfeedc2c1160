//! `leadflow.v1.PolicyService`.

use std::pin::Pin;
use std::time::Duration;

use leadflow_domain::policy::{Place, place_of};
use leadflow_engine::{Draft, Engine, RescoreJob, RescoreStatus, SimulatedLead};
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::policy_problem::Severity;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::engine_request;
use crate::convert::{
    guard_out, policy_out, stage_out, timestamp_in, timestamp_out, token_in, token_out, transition_out,
};
use crate::error::{status, too_large};
use crate::limits::{Check, MAX_PAGE, MAX_POLICY_BYTES};
use crate::observe::traceparent_of;
use leadflow_engine::Method;

#[derive(Clone, Debug)]
pub struct PolicyApi {
    engine: Engine,
}

impl PolicyApi {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

/// How often `WatchRescore` looks at its job.
const WATCH_EVERY: Duration = Duration::from_millis(250);

pub(crate) fn job_out(job: &RescoreJob, now: leadflow_domain::Timestamp) -> pb::RescoreJob {
    let status = match job.status {
        Some(RescoreStatus::Running) => pb::RescoreStatus::Running,
        Some(RescoreStatus::Done) => pb::RescoreStatus::Done,
        Some(RescoreStatus::Failed) => pb::RescoreStatus::Failed,
        Some(RescoreStatus::Superseded) => pb::RescoreStatus::Superseded,
        None => pb::RescoreStatus::Unspecified,
    };
    let until = job.finished_at.unwrap_or(now);
    #[allow(clippy::cast_precision_loss)] // rates and counts of leads
    let seconds = (until.since(job.started_at).as_micros() as f64 / 1e6).max(1e-3);
    #[allow(clippy::cast_precision_loss)]
    let rate = job.done as f64 / seconds;
    let left = (job.total - job.done).max(0);
    #[allow(clippy::cast_precision_loss)]
    let eta = if status == pb::RescoreStatus::Running && rate > 0.0 {
        left as f64 / rate
    } else {
        0.0
    };
    pb::RescoreJob {
        id: job.id,
        policy_version: job.policy_version,
        activated_at: Some(timestamp_out(job.activated_at)),
        status: status.into(),
        total: job.total,
        done: job.done,
        transitions: job.transitions,
        rate,
        eta_seconds: eta,
        started_at: Some(timestamp_out(job.started_at)),
        finished_at: job.finished_at.map(timestamp_out),
        error: job.error.clone().unwrap_or_default(),
    }
}

fn simulated_out(l: &SimulatedLead) -> pb::SimulatedLead {
    pb::SimulatedLead {
        lead_id: l.lead_id.clone(),
        external_key: l.external_key.clone().unwrap_or_default(),
        from_stage: stage_out(l.from).into(),
        to_stage: stage_out(l.to).into(),
        transitions: l.transitions.iter().map(transition_out).collect(),
        newly_failing: l.newly_failing.iter().map(guard_out).collect(),
        fit: l.fit,
        qualifying_engagement: l.qualifying_engagement,
    }
}

/// Problems a `ValidatePolicy` answer lists; the rest are only counted. A
/// document of thousands of bad rules would otherwise answer with megabytes.
const MAX_PROBLEMS: usize = 100;

struct Problems {
    listed: Vec<pb::PolicyProblem>,
    total: usize,
}

fn problem_list(
    problems: impl ExactSizeIterator<Item = (String, String, Option<Place>)>,
    severity: Severity,
) -> Problems {
    let total = problems.len();
    let listed = problems
        .take(MAX_PROBLEMS)
        .map(|(path, message, place)| {
            let (line, column) = place.map_or((0, 0), |p| (p.line, p.column));
            pb::PolicyProblem {
                path,
                message,
                severity: severity.into(),
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: u32::try_from(column).unwrap_or(u32::MAX),
            }
        })
        .collect();
    Problems { listed, total }
}

type JobStream = Pin<Box<dyn Stream<Item = Result<pb::WatchRescoreResponse, Status>> + Send>>;

fn check_source(source: &str) -> Result<(), Status> {
    if source.len() > MAX_POLICY_BYTES {
        return Err(too_large(
            "source",
            format!("a policy of {} bytes; at most {MAX_POLICY_BYTES}", source.len()),
            MAX_POLICY_BYTES,
            source.len(),
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::policy_service_server::PolicyService for PolicyApi {
    type WatchRescoreStream = JobStream;

    async fn simulate_policy(
        &self,
        request: Request<pb::SimulatePolicyRequest>,
    ) -> Result<Response<pb::SimulatePolicyResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let draft = match r.policy {
            Some(pb::simulate_policy_request::Policy::Source(source)) => {
                check_source(&source)?;
                Some(Draft::Source(source))
            }
            Some(pb::simulate_policy_request::Policy::Version(v)) if v > 0 => Some(Draft::Version(v)),
            Some(pb::simulate_policy_request::Policy::Version(v)) => {
                check.fail("version", format!("{v} is not a version"));
                None
            }
            None => {
                check.fail("policy", "required: a source or a version");
                None
            }
        };
        let as_of = timestamp_in(&mut check, "as_of", r.as_of.as_ref());
        let size = check.page_size("page_size", r.page_size, 100, 1_000);
        let after = token_in(&mut check, "sim", &r.page_token);
        check.into_result()?;
        let Some(draft) = draft else {
            return Err(Status::invalid_argument("policy: required"));
        };
        let size = usize::try_from(size).unwrap_or(100);
        let sim = self
            .engine
            .simulate(&caller.workspace, &draft, as_of, after.as_deref(), size)
            .await
            .map_err(status)?;
        let counts = sim.counts.unwrap_or_default();
        Ok(Response::new(pb::SimulatePolicyResponse {
            as_of: Some(timestamp_out(sim.as_of)),
            active_version: sim.active_version.unwrap_or_default(),
            leads: counts.leads,
            stages: counts
                .stages
                .iter()
                .map(|(stage, before, after)| pb::StageCount {
                    stage: stage_out(*stage).into(),
                    before: *before,
                    after: *after,
                })
                .collect(),
            movers: counts.movers,
            newly_failing: counts.newly_failing,
            levels: counts
                .levels
                .iter()
                .map(|(level, before, after)| pb::LevelCount {
                    level: level.clone(),
                    before: *before,
                    after: *after,
                })
                .collect(),
            changed: sim.changed.iter().map(simulated_out).collect(),
            next_page_token: sim.next_after.map(|id| token_out("sim", &id)).unwrap_or_default(),
            account_stages: sim
                .accounts
                .iter()
                .flat_map(|a| &a.stages)
                .map(|(stage, before, after)| pb::AccountStageCount {
                    stage: super::accounts::account_stage_out(*stage).into(),
                    before: *before,
                    after: *after,
                })
                .collect(),
            accounts_moved: sim
                .accounts
                .iter()
                .flat_map(|a| &a.moved)
                .map(|m| pb::SimulatedAccount {
                    account_id: m.account_id.clone().unwrap_or_default(),
                    name: m.name.clone(),
                    from: super::accounts::account_stage_out(m.from).into(),
                    to: super::accounts::account_stage_out(m.to).into(),
                    engagement: m.engagement,
                    engaged_members: i32::try_from(m.engaged_members).unwrap_or(i32::MAX),
                })
                .collect(),
            accounts_created: sim.accounts.as_ref().map_or(0, |a| a.created),
            owner_loads: sim
                .routing
                .iter()
                .flat_map(|r| &r.owners)
                .map(|o| pb::OwnerLoad {
                    owner_id: o.owner_id.clone(),
                    display_name: o.display_name.clone(),
                    open_before: o.open_before,
                    open_after: o.open_after,
                    given: o.given,
                    taken: o.taken,
                })
                .collect(),
            assignments: sim
                .routing
                .iter()
                .flat_map(|r| &r.assignments)
                .map(|a| pb::SimulatedAssignment {
                    lead_id: a.lead_id.clone(),
                    external_key: a.external_key.clone().unwrap_or_default(),
                    assignment: Some(crate::convert::assignment_out(&a.record)),
                    assigned: a.assigned,
                })
                .collect(),
            assigned: sim.routing.as_ref().map_or(0, |r| r.assigned),
            unrouted: sim.routing.as_ref().map_or(0, |r| r.unrouted),
        }))
    }

    async fn watch_rescore(
        &self,
        request: Request<pb::WatchRescoreRequest>,
    ) -> Result<Response<JobStream>, Status> {
        let caller = crate::auth::caller(&request)?;
        let id = request.into_inner().job_id;
        if id <= 0 {
            let mut check = Check::default();
            check.fail("job_id", "required: the job from ActivatePolicy");
            check.into_result()?;
        }
        let first = self
            .engine
            .rescore_job(&caller.workspace, id)
            .await
            .map_err(status)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let engine = self.engine.clone();
        let ws = caller.workspace.clone();
        let stopping = self.engine.stopping();
        self.engine.spawn(async move {
            let mut job = first;
            let mut sent: Option<(Option<RescoreStatus>, i64, i64)> = None;
            loop {
                let key = (job.status, job.done, job.transitions);
                if sent.as_ref() != Some(&key) {
                    let item = pb::WatchRescoreResponse {
                        job: Some(job_out(&job, engine.now())),
                    };
                    if tx.send(Ok(item)).await.is_err() {
                        return;
                    }
                    sent = Some(key);
                }
                if !job.is_running() {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(WATCH_EVERY) => {}
                    () = tx.closed() => return,
                    () = stopping.cancelled() => {
                        let message = format!(
                            "the server is shutting down; re-score job {id} goes on: WatchRescore follows it"
                        );
                        let _ = tx.send(Err(status(leadflow_engine::EngineError::ShuttingDown(message)))).await;
                        return;
                    }
                }
                job = match engine.rescore_job(&ws, id).await {
                    Ok(job) => job,
                    Err(e) => {
                        let _ = tx.send(Err(status(e))).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn validate_policy(
        &self,
        request: Request<pb::ValidatePolicyRequest>,
    ) -> Result<Response<pb::ValidatePolicyResponse>, Status> {
        crate::auth::principal(&request)?;
        let r = request.into_inner();
        check_source(&r.source)?;
        let (valid, name, problems) = match Engine::validate_policy(&r.source) {
            Ok(policy) => {
                let warnings = policy.warnings().into_iter().map(|w| {
                    let place = place_of(&r.source, &w.path);
                    (w.path, w.message, place)
                });
                (true, policy.name, problem_list(warnings, Severity::Warning))
            }
            Err(errors) => {
                let errors = errors.0.into_iter().map(|e| (e.path, e.message, e.place));
                (false, String::new(), problem_list(errors, Severity::Error))
            }
        };
        Ok(Response::new(pb::ValidatePolicyResponse {
            valid,
            problems_total: i32::try_from(problems.total).unwrap_or(i32::MAX),
            problems: problems.listed,
            name,
        }))
    }

    async fn create_policy_version(
        &self,
        request: Request<pb::CreatePolicyVersionRequest>,
    ) -> Result<Response<pb::CreatePolicyVersionResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        check_source(&r.source)?;
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        if r.source.trim().is_empty() {
            check.fail("source", "required: a TOML policy document");
        }
        check.into_result()?;
        let req = engine_request(
            &caller,
            Method::CreatePolicyVersion,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let record = self
            .engine
            .create_policy_version(&req, &r.source)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreatePolicyVersionResponse {
            policy: Some(policy_out(&record)),
        }))
    }

    async fn list_policy_versions(
        &self,
        request: Request<pb::ListPolicyVersionsRequest>,
    ) -> Result<Response<pb::ListPolicyVersionsResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let size = check.page_size("page_size", r.page_size, 50, MAX_PAGE);
        let before = token_in(&mut check, "pv", &r.page_token).map(|t| t.parse::<i64>());
        let before = match before {
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => {
                check.fail("page_token", "not a page token of this list");
                None
            }
            None => None,
        };
        check.into_result()?;
        let (versions, next) = self
            .engine
            .list_policy_versions(&caller.workspace, before, size)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListPolicyVersionsResponse {
            policies: versions.iter().map(policy_out).collect(),
            next_page_token: next.map(|v| token_out("pv", &v.to_string())).unwrap_or_default(),
        }))
    }

    async fn get_active_policy(
        &self,
        request: Request<pb::GetActivePolicyRequest>,
    ) -> Result<Response<pb::GetActivePolicyResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let record = self
            .engine
            .active_policy_version(&caller.workspace)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetActivePolicyResponse {
            policy: Some(policy_out(&record)),
        }))
    }

    async fn activate_policy(
        &self,
        request: Request<pb::ActivatePolicyRequest>,
    ) -> Result<Response<pb::ActivatePolicyResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        if r.version <= 0 {
            check.fail("version", "required: a version number from CreatePolicyVersion");
        }
        check.into_result()?;
        let req = engine_request(
            &caller,
            Method::ActivatePolicy,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let activation = self
            .engine
            .activate_policy(&req, r.version)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ActivatePolicyResponse {
            policy: Some(policy_out(&activation.policy)),
            note: activation.note,
            job: Some(job_out(&activation.job, self.engine.now())),
        }))
    }
}

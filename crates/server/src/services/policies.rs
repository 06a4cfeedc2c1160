//! `leadflow.v1.PolicyService`.

use leadflow_engine::Engine;
use leadflow_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::engine_request;
use crate::convert::{policy_out, token_in, token_out};
use crate::error::{status, too_large};
use crate::limits::{Check, MAX_ID_CHARS, MAX_PAGE, MAX_POLICY_BYTES};
use crate::observe::traceparent_of;

#[derive(Clone, Debug)]
pub struct PolicyApi {
    engine: Engine,
    workspace: String,
}

impl PolicyApi {
    pub fn new(engine: Engine, workspace: impl Into<String>) -> Self {
        Self {
            engine,
            workspace: workspace.into(),
        }
    }
}

fn check_source(source: &str) -> Result<(), Status> {
    if source.len() > MAX_POLICY_BYTES {
        return Err(too_large(
            "source",
            format!("a policy of {} bytes; at most {MAX_POLICY_BYTES}", source.len()),
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::policy_service_server::PolicyService for PolicyApi {
    async fn validate_policy(
        &self,
        request: Request<pb::ValidatePolicyRequest>,
    ) -> Result<Response<pb::ValidatePolicyResponse>, Status> {
        let r = request.into_inner();
        check_source(&r.source)?;
        Ok(Response::new(match Engine::validate_policy(&r.source) {
            Ok(policy) => pb::ValidatePolicyResponse {
                valid: true,
                problems: Vec::new(),
                name: policy.name,
            },
            Err(errors) => pb::ValidatePolicyResponse {
                valid: false,
                problems: errors
                    .0
                    .into_iter()
                    .map(|e| pb::PolicyProblem {
                        path: e.path,
                        message: e.message,
                    })
                    .collect(),
                name: String::new(),
            },
        }))
    }

    async fn create_policy_version(
        &self,
        request: Request<pb::CreatePolicyVersionRequest>,
    ) -> Result<Response<pb::CreatePolicyVersionResponse>, Status> {
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        check_source(&r.source)?;
        let mut check = Check::default();
        check.text("request_id", &r.request_id, MAX_ID_CHARS, false);
        if r.source.trim().is_empty() {
            check.fail("source", "required: a TOML policy document");
        }
        check.into_result()?;
        let req = engine_request(
            &self.workspace,
            "CreatePolicyVersion",
            &r.request_id,
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
            .list_policy_versions(&self.workspace, before, size)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListPolicyVersionsResponse {
            policies: versions.iter().map(policy_out).collect(),
            next_page_token: next.map(|v| token_out("pv", &v.to_string())).unwrap_or_default(),
        }))
    }

    async fn get_active_policy(
        &self,
        _request: Request<pb::GetActivePolicyRequest>,
    ) -> Result<Response<pb::GetActivePolicyResponse>, Status> {
        let record = self
            .engine
            .active_policy_record(&self.workspace)
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
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        check.text("request_id", &r.request_id, MAX_ID_CHARS, false);
        if r.version <= 0 {
            check.fail("version", "required: a version number from CreatePolicyVersion");
        }
        check.into_result()?;
        let req = engine_request(
            &self.workspace,
            "ActivatePolicy",
            &r.request_id,
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
        }))
    }
}

//! `OwnerService`: the sales reps and queues leads are handed to.

use leadflow_domain::routing::{MAX_LABEL_CHARS, MAX_LABELS, Owner};
use leadflow_engine::{Engine, Method, OwnerView};
use leadflow_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::engine_request;
use crate::convert::{timestamp_out, token_in, token_out};
use crate::error::status;
use crate::limits::{Check, MAX_PAGE};
use crate::observe::traceparent_of;

#[derive(Clone, Debug)]
pub struct OwnerApi {
    engine: Engine,
}

impl OwnerApi {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

fn owner_out(v: &OwnerView) -> pb::Owner {
    pb::Owner {
        id: v.owner.id.clone(),
        display_name: v.owner.display_name.clone(),
        teams: v.owner.teams.clone(),
        territories: v.owner.territories.clone(),
        capacity: v.owner.capacity.map(|c| i32::try_from(c).unwrap_or(i32::MAX)),
        weight: i32::try_from(v.owner.weight).unwrap_or(i32::MAX),
        available: v.owner.available,
        version: v.version,
        created_at: Some(timestamp_out(v.created_at)),
        updated_at: Some(timestamp_out(v.updated_at)),
        updated_by: v.updated_by.clone().unwrap_or_default(),
        open_leads: v.open_leads,
    }
}

/// The owner a request gives (checked for its wire form here, for its
/// meaning by the domain).
fn owner_in(check: &mut Check, o: Option<&pb::Owner>) -> Option<Owner> {
    let Some(o) = o else {
        check.fail("owner", "required");
        return None;
    };
    for (field, labels) in [("owner.teams", &o.teams), ("owner.territories", &o.territories)] {
        // Bounded before the domain reads them: a message can hold millions.
        if labels.len() > MAX_LABELS * 2 {
            check.fail(field, format!("{} labels; at most {MAX_LABELS}", labels.len()));
        }
        if labels.iter().any(|l| l.len() > MAX_LABEL_CHARS * 4) {
            check.fail(field, format!("a label longer than {MAX_LABEL_CHARS} characters"));
        }
    }
    let capacity = match o.capacity {
        None => None,
        Some(c) if c >= 0 => u32::try_from(c).ok(),
        Some(c) => {
            check.fail("owner.capacity", format!("{c}: at least 0 (unset: no limit)"));
            None
        }
    };
    let weight = match o.weight {
        0 => 1,
        w => u32::try_from(w).unwrap_or(0),
    };
    Some(Owner {
        id: o.id.clone(),
        display_name: o.display_name.clone(),
        teams: o.teams.clone(),
        territories: o.territories.clone(),
        capacity,
        weight,
        available: o.available,
    })
}

#[tonic::async_trait]
impl pb::owner_service_server::OwnerService for OwnerApi {
    async fn create_owner(
        &self,
        request: Request<pb::CreateOwnerRequest>,
    ) -> Result<Response<pb::CreateOwnerResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        let owner = owner_in(&mut check, r.owner.as_ref());
        check.into_result()?;
        let Some(owner) = owner else {
            return Err(Status::invalid_argument("owner: required"));
        };
        let req = engine_request(
            &caller,
            Method::CreateOwner,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let view = self.engine.create_owner(&req, owner).await.map_err(status)?;
        Ok(Response::new(pb::CreateOwnerResponse {
            owner: Some(owner_out(&view)),
        }))
    }

    async fn update_owner(
        &self,
        request: Request<pb::UpdateOwnerRequest>,
    ) -> Result<Response<pb::UpdateOwnerResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = traceparent_of(&request);
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        let owner = owner_in(&mut check, r.owner.as_ref());
        if r.expected_version < 0 {
            check.fail("expected_version", "at least 1 (0: any)");
        }
        check.into_result()?;
        let Some(owner) = owner else {
            return Err(Status::invalid_argument("owner: required"));
        };
        let req = engine_request(
            &caller,
            Method::UpdateOwner,
            &request_id,
            &r,
            |m| m.request_id.clear(),
            trace,
        );
        let expected = (r.expected_version > 0).then_some(r.expected_version);
        let view = self
            .engine
            .update_owner(&req, owner, expected)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateOwnerResponse {
            owner: Some(owner_out(&view)),
        }))
    }

    async fn get_owner(
        &self,
        request: Request<pb::GetOwnerRequest>,
    ) -> Result<Response<pb::GetOwnerResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let id = check.key("id", &r.id, true);
        check.into_result()?;
        let view = self
            .engine
            .get_owner(&caller.workspace, &id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetOwnerResponse {
            owner: Some(owner_out(&view)),
        }))
    }

    async fn list_owners(
        &self,
        request: Request<pb::ListOwnersRequest>,
    ) -> Result<Response<pb::ListOwnersResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let team = r.team.trim();
        check.text("team", team, MAX_LABEL_CHARS, false);
        let size = check.page_size("page_size", r.page_size, 50, MAX_PAGE);
        let after = token_in(&mut check, "o", &r.page_token);
        check.into_result()?;
        let page = self
            .engine
            .list_owners(
                &caller.workspace,
                (!team.is_empty()).then_some(team),
                after.as_deref(),
                usize::try_from(size).unwrap_or(usize::MAX),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListOwnersResponse {
            owners: page.owners.iter().map(owner_out).collect(),
            next_page_token: page.next_after.map(|id| token_out("o", &id)).unwrap_or_default(),
        }))
    }
}

//! Owners: the sales reps and queues of a workspace that leads are handed
//! to. Changes are idempotent by request id and record the token's
//! principal.

use leadflow_domain::Timestamp;
use leadflow_domain::routing::Owner;
use leadflow_store::OwnerRecord;
use serde::{Deserialize, Serialize};

use crate::Engine;
use crate::error::EngineError;
use crate::idempotency::{replay, save};
use crate::leads::retrying;
use crate::model::{Method, Request};

/// An owner as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OwnerView {
    pub owner: Owner,
    /// Changes with every update.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The token (by name) whose call made the last change.
    pub updated_by: Option<String>,
    /// Leads it owns in IQL, MQL or SQL.
    #[serde(default)]
    pub open_leads: i64,
}

impl From<OwnerRecord> for OwnerView {
    fn from(r: OwnerRecord) -> Self {
        Self {
            owner: r.owner,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            updated_by: r.updated_by,
            open_leads: r.open_leads,
        }
    }
}

/// A page of owners.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnerPage {
    pub owners: Vec<OwnerView>,
    /// The last id of the page, when more follow.
    pub next_after: Option<String>,
}

fn not_found(id: &str) -> EngineError {
    EngineError::NotFound {
        what: "owner",
        key: id.to_owned(),
    }
}

impl Engine {
    /// Creates an owner: ALREADY_EXISTS for an id the workspace has.
    #[tracing::instrument(name = "engine.create_owner", skip_all)]
    pub async fn create_owner(&self, req: &Request, owner: Owner) -> Result<OwnerView, EngineError> {
        let owner = owner.checked()?;
        retrying!(self.try_create_owner(req, &owner))
    }

    async fn try_create_owner(&self, req: &Request, owner: &Owner) -> Result<OwnerView, EngineError> {
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        // Routing's lock first, as a lead's decision takes it before the
        // owners' rows.
        tx.lock_routing(ws).await?;
        if let Some(done) = replay::<OwnerView>(&tx, req, Method::CreateOwner).await? {
            return Ok(done);
        }
        let now = self.now();
        let record = OwnerRecord {
            owner: owner.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
            updated_by: req.principal.clone(),
            open_leads: 0,
        };
        if !tx.insert_owner(ws, &record).await? {
            return Err(EngineError::AlreadyExists {
                what: "owner",
                key: owner.id.clone(),
                id: owner.id.clone(),
            });
        }
        if owner.available {
            crate::assign::owners_changed(&tx, ws, now).await?;
        }
        let view = OwnerView::from(record);
        save(&tx, req, Method::CreateOwner, &view, now).await?;
        tx.commit().await?;
        Ok(view)
    }

    /// Replaces an owner's fields; with `expected_version`, only at it.
    #[tracing::instrument(name = "engine.update_owner", skip_all)]
    pub async fn update_owner(
        &self,
        req: &Request,
        owner: Owner,
        expected_version: Option<i64>,
    ) -> Result<OwnerView, EngineError> {
        let owner = owner.checked()?;
        retrying!(self.try_update_owner(req, &owner, expected_version))
    }

    async fn try_update_owner(
        &self,
        req: &Request,
        owner: &Owner,
        expected_version: Option<i64>,
    ) -> Result<OwnerView, EngineError> {
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        // Routing's lock first, as a lead's decision takes it before the
        // owners' rows; then the owner: a retry waiting on it sees the
        // first result.
        tx.lock_routing(ws).await?;
        let current = tx.lock_owner(ws, &owner.id).await?;
        if let Some(done) = replay::<OwnerView>(&tx, req, Method::UpdateOwner).await? {
            return Ok(done);
        }
        let current = current.ok_or_else(|| not_found(&owner.id))?;
        if let Some(expected) = expected_version
            && expected != current.version
        {
            return Err(EngineError::VersionConflict {
                expected,
                actual: current.version,
            });
        }
        let now = self.now();
        let record = OwnerRecord {
            owner: owner.clone(),
            version: current.version + 1,
            created_at: current.created_at,
            updated_at: now,
            updated_by: req.principal.clone(),
            open_leads: current.open_leads,
        };
        tx.update_owner(ws, &record).await?;
        if owner.available {
            // Back in office, more capacity, other teams: leads waiting
            // for an owner may fit now.
            crate::assign::owners_changed(&tx, ws, now).await?;
        }
        let view = OwnerView::from(record);
        save(&tx, req, Method::UpdateOwner, &view, now).await?;
        tx.commit().await?;
        Ok(view)
    }

    #[tracing::instrument(name = "engine.get_owner", skip_all)]
    pub async fn get_owner(&self, ws: &str, id: &str) -> Result<OwnerView, EngineError> {
        self.store
            .owner(ws, id.trim())
            .await?
            .map(OwnerView::from)
            .ok_or_else(|| not_found(id))
    }

    /// Owners by id after `after`, only `team`'s when given.
    #[tracing::instrument(name = "engine.list_owners", skip_all)]
    pub async fn list_owners(
        &self,
        ws: &str,
        team: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OwnerPage, EngineError> {
        let (owners, more) = self.store.owners(ws, team, after, limit).await?;
        let next_after = more.then(|| owners.last().map(|o| o.owner.id.clone())).flatten();
        Ok(OwnerPage {
            owners: owners.into_iter().map(OwnerView::from).collect(),
            next_after,
        })
    }
}

//! Policy versions: validate, store, list, activate.

use leadflow_domain::{Policy, PolicyErrors};
use leadflow_store::PolicyRecord;

use crate::Engine;
use crate::error::EngineError;
use crate::fingerprint::fingerprint;
use crate::idempotency::{replay, save};
use crate::leads::retrying;
use crate::model::{Method, Request};
use crate::views::{PolicyActivation, PolicyVersion, StoredActivation};

/// What activation does to existing leads, said in every activation.
pub(crate) const ACTIVATION_NOTE: &str = "New decisions use this version at once. Every existing lead is re-scored \
under it in the background, decided at the activation instant (recorded as POLICY_CHANGE, forward moves only); a \
lead's own next command re-scores it first if the job has not reached it yet. Follow the job with WatchRescore.";

impl Engine {
    /// Parses and validates a document without storing it.
    pub fn validate_policy(source: &str) -> Result<Policy, PolicyErrors> {
        Policy::from_toml(source)
    }

    /// Creates the workspace if needed and, if it has no active policy,
    /// stores and activates `default_source`.
    pub async fn bootstrap(&self, ws: &str, default_source: &str) -> Result<(), EngineError> {
        let now = self.now();
        let tx = self.store.begin().await?;
        tx.ensure_workspace(ws, now).await?;
        if tx.lock_workspace(ws).await?.flatten().is_none() {
            let policy = Policy::from_toml(default_source).map_err(EngineError::InvalidPolicy)?;
            let record = self.store_version(&tx, ws, &policy, default_source, None).await?;
            tx.activate_policy(ws, record.version, now, None).await?;
            tracing::info!(workspace = ws, version = record.version, name = %policy.name, "activated the default policy");
        }
        tx.commit().await?;
        Ok(())
    }

    async fn store_version(
        &self,
        tx: &leadflow_store::Tx,
        ws: &str,
        policy: &Policy,
        source: &str,
        by: Option<&str>,
    ) -> Result<PolicyRecord, EngineError> {
        let checksum = fingerprint([source.as_bytes()]);
        if let Some(existing) = tx.policy_by_checksum(ws, &checksum).await? {
            return Ok(existing);
        }
        let record = tx
            .insert_policy(
                ws,
                &leadflow_store::NewPolicy {
                    name: &policy.name,
                    description: &policy.description,
                    source,
                    checksum: &checksum,
                    created_by: by,
                },
                self.now(),
            )
            .await?;
        Ok(record)
    }

    /// Stores a validated document as a new immutable version. The same
    /// document again gives back the version it is already stored as.
    #[tracing::instrument(name = "engine.create_policy_version", skip_all)]
    pub async fn create_policy_version(
        &self,
        req: &Request,
        source: &str,
    ) -> Result<PolicyVersion, EngineError> {
        let policy = Policy::from_toml(source).map_err(EngineError::InvalidPolicy)?;
        retrying!(self.try_create_policy_version(req, &policy, source))
    }

    async fn try_create_policy_version(
        &self,
        req: &Request,
        policy: &Policy,
        source: &str,
    ) -> Result<PolicyVersion, EngineError> {
        let tx = self.store.begin().await?;
        if let Some(done) = replay::<PolicyVersion>(&tx, req, Method::CreatePolicyVersion).await? {
            return Ok(done);
        }
        let version = PolicyVersion::from(
            self.store_version(&tx, &req.workspace, policy, source, req.principal.as_deref())
                .await?,
        );
        save(&tx, req, Method::CreatePolicyVersion, &version, self.now()).await?;
        tx.commit().await?;
        Ok(version)
    }

    #[tracing::instrument(name = "engine.list_policy_versions", skip_all)]
    pub async fn list_policy_versions(
        &self,
        ws: &str,
        before: Option<i64>,
        page_size: u64,
    ) -> Result<(Vec<PolicyVersion>, Option<i64>), EngineError> {
        let mut versions = self.store.list_policies(ws, before, page_size + 1).await?;
        let more = versions.len() as u64 > page_size;
        versions.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
        let next = more.then(|| versions.last().map(|p| p.version)).flatten();
        Ok((versions.into_iter().map(PolicyVersion::from).collect(), next))
    }

    /// The workspace's active version.
    pub async fn active_policy_version(&self, ws: &str) -> Result<PolicyVersion, EngineError> {
        let version = self
            .store
            .active_policy_version(ws)
            .await?
            .ok_or_else(|| EngineError::NotReady(format!("workspace {ws:?} has no active policy")))?;
        self.store
            .policy(ws, version)
            .await?
            .map(PolicyVersion::from)
            .ok_or_else(|| EngineError::NotFound {
                what: "policy version",
                key: version.to_string(),
            })
    }

    /// Makes a stored version the active one.
    #[tracing::instrument(name = "engine.activate_policy", skip_all)]
    pub async fn activate_policy(
        &self,
        req: &Request,
        version: i64,
    ) -> Result<PolicyActivation, EngineError> {
        retrying!(self.try_activate_policy(req, version))
    }

    async fn try_activate_policy(
        &self,
        req: &Request,
        version: i64,
    ) -> Result<PolicyActivation, EngineError> {
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        if let Some(done) = replay::<StoredActivation>(&tx, req, Method::ActivatePolicy).await? {
            return Ok(done.into());
        }
        tx.lock_workspace(ws).await?;
        if tx.policy(ws, version).await?.is_none() {
            return Err(EngineError::NotFound {
                what: "policy version",
                key: version.to_string(),
            });
        }
        let now = self.now();
        tx.activate_policy(ws, version, now, req.principal.as_deref())
            .await?;
        let job = tx
            .start_rescore(ws, version, now, req.traceparent.as_deref())
            .await?;
        let policy = tx
            .policy(ws, version)
            .await?
            .ok_or_else(|| EngineError::Internal("the activated policy vanished".to_owned()))?;
        let activation = StoredActivation {
            policy,
            note: ACTIVATION_NOTE.to_owned(),
            job,
        };
        save(&tx, req, Method::ActivatePolicy, &activation, now).await?;
        tx.commit().await?;
        Ok(activation.into())
    }

    /// Forgets idempotent results older than `keep` (they are kept at least
    /// 24 h; callers retry within minutes).
    pub async fn purge_idempotent_results(&self, keep: leadflow_domain::Span) -> Result<u64, EngineError> {
        let tx = self.store.begin().await?;
        let purged = tx.purge_results(self.now().saturating_sub(keep)).await?;
        tx.commit().await?;
        Ok(purged)
    }
}

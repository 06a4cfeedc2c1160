//! Running the service rather than the lifecycle: workspaces, API tokens,
//! the numbers metrics show, and following the events other replicas
//! commit.

use leadflow_domain::{Span, Timestamp};
use leadflow_store::TokenRecord;

use crate::Engine;
use crate::error::EngineError;
use crate::views::{Gauges, Token, Workspace};

/// A token to create: its secret is the caller's, and only its hash is
/// kept.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub workspace: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// How long it lives; `None`: until revoked.
    pub lifetime: Option<Span>,
    /// What is stored of the secret.
    pub secret_hash: String,
}

impl Engine {
    /// Creates `ws` with `default_policy` active; false if it exists.
    pub async fn create_workspace(&self, ws: &str, default_policy: &str) -> Result<bool, EngineError> {
        if self.store.workspace_exists(ws).await? {
            return Ok(false);
        }
        self.bootstrap(ws, default_policy).await?;
        Ok(true)
    }

    pub async fn workspaces(&self) -> Result<Vec<Workspace>, EngineError> {
        let workspaces = self.store.workspace_list().await?;
        Ok(workspaces.into_iter().map(Workspace::from).collect())
    }

    /// Stores a token of an existing workspace; `NotFound` for another.
    pub async fn create_token(&self, new: NewToken) -> Result<Token, EngineError> {
        if !self.store.workspace_exists(&new.workspace).await? {
            return Err(EngineError::NotFound {
                what: "workspace",
                key: new.workspace,
            });
        }
        let now = self.now();
        let record = TokenRecord {
            workspace: new.workspace,
            id: uuid::Uuid::now_v7().to_string(),
            name: new.name,
            scopes: new.scopes,
            created_at: now,
            expires_at: new.lifetime.map(|span| now.saturating_add(span)),
            revoked_at: None,
        };
        self.store.insert_token(&record, &new.secret_hash).await?;
        Ok(record.into())
    }

    /// The tokens of `ws`, or of every workspace.
    pub async fn tokens(&self, ws: Option<&str>) -> Result<Vec<Token>, EngineError> {
        let tokens = self.store.tokens(ws).await?;
        Ok(tokens.into_iter().map(Token::from).collect())
    }

    /// The token whose secret hashes to `secret_hash`, if any.
    pub async fn token_by_hash(&self, secret_hash: &str) -> Result<Option<Token>, EngineError> {
        Ok(self.store.token_by_hash(secret_hash).await?.map(Token::from))
    }

    /// Revokes the live tokens of `ws` with this id or name: how many.
    pub async fn revoke_token(&self, ws: &str, id_or_name: &str) -> Result<u64, EngineError> {
        Ok(self.store.revoke_token(ws, id_or_name, self.now()).await?)
    }

    /// The numbers metrics show, now.
    pub async fn gauges(&self) -> Result<Gauges, EngineError> {
        let now: Timestamp = self.now();
        Ok(self.store.gauges(now.as_micros()).await?.into())
    }

    /// On PostgreSQL, wakes this replica's event streams whenever another
    /// replica commits events (a hint: the streams poll as well), until
    /// the future is dropped. Returns at once on SQLite, where one process
    /// writes and wakes its streams itself.
    pub async fn follow_other_replicas(&self) {
        loop {
            let mut listener = match self.store.outbox_listener().await {
                Ok(Some(listener)) => listener,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN for events; polling only, retrying in 5 s");
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    continue;
                }
            };
            loop {
                match listener.recv().await {
                    Ok(notification) => self.wake_stream(notification.payload()),
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the event LISTEN connection");
                        break;
                    }
                }
            }
        }
    }
}

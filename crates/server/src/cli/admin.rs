//! Workspaces and tokens: commands that work on the database directly.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::config;

#[derive(Debug, Subcommand)]
pub(super) enum WorkspaceCommand {
    /// Creates a workspace, with the example lead definition active.
    Create {
        /// Letters, digits, `-` and `_`, at most 64.
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Lists the workspaces.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Creates a token and prints its secret, once: only a hash is kept.
    Create {
        #[arg(long)]
        workspace: String,
        /// What the token is for (shown in lists and recorded as the
        /// principal of what it does).
        #[arg(long)]
        name: String,
        /// Comma-separated: leads:read, leads:write, engagements:write,
        /// transitions:write, policy:admin, triggers:subscribe, analytics:read.
        #[arg(long)]
        scopes: String,
        /// Lifetime, e.g. `90d` or `12h`; none by default.
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Lists tokens (never their secrets).
    List {
        /// Only this workspace's.
        #[arg(long)]
        workspace: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revokes a token by id or name; refused on every replica within seconds.
    Revoke {
        #[arg(long)]
        workspace: String,
        id_or_name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Args)]
pub(super) struct DatabaseArgs {
    /// sqlite://PATH or postgres://USER@HOST/DB. A PostgreSQL on loopback
    /// is reached without TLS unless the URL sets sslmode.
    #[arg(long)]
    pub(super) database_url: Option<String>,
}

/// The engine on the configured database, for the management commands.
pub(super) async fn management_engine(
    file: Option<&Path>,
    database: DatabaseArgs,
) -> anyhow::Result<leadflow_engine::Engine> {
    let config = config(file, vec![("database_url", database.database_url)])?;
    crate::open_engine(&config, Arc::new(leadflow_engine::SystemClock)).await
}

pub(super) fn valid_workspace_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(super) async fn workspace_command(
    file: Option<&Path>,
    command: WorkspaceCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        WorkspaceCommand::Create { name, database } => {
            if !valid_workspace_name(&name) {
                eprintln!("workspace name {name:?}: letters, digits, '-' and '_', 1 to 64 of them");
                return Ok(ExitCode::from(2));
            }
            let engine = management_engine(file, database).await?;
            if !engine.create_workspace(&name, crate::DEFAULT_POLICY).await? {
                eprintln!("workspace {name:?} exists already");
                return Ok(ExitCode::FAILURE);
            }
            println!("created workspace {name}");
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::List { database } => {
            let engine = management_engine(file, database).await?;
            println!("{:<32} {:>14}  created", "workspace", "active policy");
            for w in engine.workspaces().await? {
                let active = w
                    .active_policy_version
                    .map_or("none".to_owned(), |v| format!("v{v}"));
                println!("{:<32} {active:>14}  {}", w.id, w.created_at);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(super) async fn token_command(file: Option<&Path>, command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create {
            workspace,
            name,
            scopes,
            expires,
            database,
        } => {
            let scopes = match crate::auth::parse_scopes(&scopes) {
                Ok(scopes) => scopes,
                Err(e) => {
                    eprintln!("--scopes: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let lifetime = match expires.as_deref().map(leadflow_domain::Span::parse).transpose() {
                Ok(lifetime) => lifetime,
                Err(e) => {
                    eprintln!("--expires: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            if name.trim().is_empty() || name.len() > 128 {
                eprintln!("--name: 1 to 128 characters");
                return Ok(ExitCode::from(2));
            }
            let engine = management_engine(file, database).await?;
            let secret = crate::auth::new_secret()?;
            let token = match engine
                .create_token(leadflow_engine::NewToken {
                    workspace,
                    name,
                    scopes,
                    lifetime,
                    secret_hash: crate::auth::secret_hash(&secret),
                })
                .await
            {
                Ok(token) => token,
                Err(leadflow_engine::EngineError::NotFound { key, .. }) => {
                    eprintln!("no workspace {key:?} (leadflow workspace create {key})");
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            };
            eprintln!(
                "token {} ({}) for workspace {} with scopes {}; the secret below is shown once",
                token.id,
                token.name,
                token.workspace,
                token.scopes.join(",")
            );
            println!("{secret}");
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { workspace, database } => {
            let engine = management_engine(file, database).await?;
            let now = engine.now();
            println!(
                "{:<36} {:<16} {:<24} {:<8} scopes",
                "id", "workspace", "name", "state"
            );
            for t in engine.tokens(workspace.as_deref()).await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if !t.is_live(now) {
                    "expired"
                } else {
                    "live"
                };
                println!(
                    "{:<36} {:<16} {:<24} {state:<8} {}",
                    t.id,
                    t.workspace,
                    t.name,
                    t.scopes.join(",")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke {
            workspace,
            id_or_name,
            database,
        } => {
            let engine = management_engine(file, database).await?;
            let n = engine.revoke_token(&workspace, &id_or_name).await?;
            if n == 0 {
                eprintln!("no live token {id_or_name:?} in workspace {workspace:?}");
                return Ok(ExitCode::FAILURE);
            }
            println!("revoked {n} token(s)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

//! Routing's state: a lead's owner, each owner's open leads, each team's
//! cursor, and the history of a lead's owners. Every change of them is
//! made under the workspace's routing lock ([`Tx::lock_routing`]), so the
//! choices of concurrent transactions (and replicas) follow one another.

use std::collections::{BTreeMap, BTreeSet};

use leadflow_domain::routing::TeamCursor;
use leadflow_domain::{Stage, Timestamp};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::Tx;
use crate::convert::{stage, ts};
use crate::entity::{assignment, lead, owner, routing_wait, sla_breach, team_cursor};
use crate::error::StoreError;

/// A workspace's owners as routing reads them.
pub type RoutingPool = leadflow_domain::handoff::PoolState;

/// A change of a lead's owner, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignmentRecord {
    pub lead_id: String,
    /// Position among the lead's assignments, from 1 (set when written).
    pub seq: i64,
    pub at: Timestamp,
    pub from: Option<String>,
    /// `None`: released, or left without an owner.
    pub to: Option<String>,
    /// `ROUTE`, `MANUAL`, `RELEASE`, `UNROUTED`, `SLA`, `MERGE`.
    pub cause: String,
    pub route_id: Option<String>,
    /// The owners considered and why ("team emea round_robin: ana (at
    /// capacity, 5/5) → ben"), or what the release was.
    pub explanation: String,
    pub reason: Option<String>,
    /// The token (by name) that made the change.
    pub principal: Option<String>,
    /// The lead's stage then.
    pub stage: Stage,
}

fn assignment_record(row: assignment::Model) -> Result<AssignmentRecord, StoreError> {
    Ok(AssignmentRecord {
        stage: stage("assignments", &row.lead_id, &row.stage)?,
        lead_id: row.lead_id,
        seq: row.seq,
        at: ts(row.at),
        from: row.from_owner,
        to: row.to_owner,
        cause: row.cause,
        route_id: row.route_id,
        explanation: row.explanation,
        reason: row.reason,
        principal: row.principal,
    })
}

impl Tx {
    /// Serialises routing in the workspace until commit (PostgreSQL: an
    /// advisory lock; SQLite: one writer at a time already). Taken after
    /// the leads' locks, before any owner's row.
    pub async fn lock_routing(&self, ws: &str) -> Result<(), StoreError> {
        if self.backend != crate::backend::Backend::Postgres {
            return Ok(());
        }
        let statement = sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 11))",
            [format!("{ws}\u{1f}routing").into()],
        );
        sea_orm::ConnectionTrait::query_one_raw(self.db().await?, statement).await?;
        Ok(())
    }

    /// The workspace's owners, their open leads and the teams' cursors.
    pub async fn routing_pool(&self, ws: &str) -> Result<RoutingPool, StoreError> {
        let db = self.db().await?;
        let rows = owner::Entity::find()
            .filter(owner::Column::WorkspaceId.eq(ws))
            .order_by_asc(owner::Column::Id)
            .all(db)
            .await?;
        let mut pool = RoutingPool::default();
        for row in rows {
            let open = u32::try_from(Ord::max(row.open_leads, 0)).unwrap_or(u32::MAX);
            let record = super::owners::owner_record(row)?;
            if open > 0 {
                pool.open.insert(record.owner.id.clone(), open);
            }
            pool.owners.push(record.owner);
        }
        for row in team_cursor::Entity::find()
            .filter(team_cursor::Column::WorkspaceId.eq(ws))
            .all(db)
            .await?
        {
            let running: BTreeMap<String, i64> = serde_json::from_str(&row.running)
                .map_err(|e| StoreError::corrupt("team_cursors", &row.team, e))?;
            pool.cursors.insert(
                row.team,
                TeamCursor {
                    last: row.last,
                    running,
                },
            );
        }
        Ok(pool)
    }

    pub async fn set_team_cursor(&self, ws: &str, team: &str, cursor: &TeamCursor) -> Result<(), StoreError> {
        let running = serde_json::to_string(&cursor.running)
            .map_err(|e| StoreError::corrupt("team_cursors", team, e))?;
        team_cursor::Entity::insert(team_cursor::ActiveModel {
            workspace_id: Set(ws.to_owned()),
            team: Set(team.to_owned()),
            last: Set(cursor.last.clone()),
            running: Set(running),
        })
        .on_conflict(
            OnConflict::columns([team_cursor::Column::WorkspaceId, team_cursor::Column::Team])
                .update_columns([team_cursor::Column::Last, team_cursor::Column::Running])
                .to_owned(),
        )
        .exec_without_returning(self.db().await?)
        .await?;
        Ok(())
    }

    pub async fn set_lead_owner(
        &self,
        ws: &str,
        lead_id: &str,
        owner_id: Option<&str>,
    ) -> Result<(), StoreError> {
        lead::Entity::update_many()
            .col_expr(lead::Column::OwnerId, Expr::value(owner_id.map(str::to_owned)))
            .filter(lead::Column::WorkspaceId.eq(ws))
            .filter(lead::Column::Id.eq(lead_id))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    /// Adds `delta` to an owner's open leads.
    pub async fn add_open_leads(&self, ws: &str, owner_id: &str, delta: i64) -> Result<(), StoreError> {
        if delta == 0 {
            return Ok(());
        }
        owner::Entity::update_many()
            .col_expr(
                owner::Column::OpenLeads,
                Expr::col(owner::Column::OpenLeads).add(delta),
            )
            .filter(owner::Column::WorkspaceId.eq(ws))
            .filter(owner::Column::Id.eq(owner_id))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    /// Appends to the lead's assignments (the record's `seq` is ignored):
    /// the seq it was given.
    pub async fn insert_assignment(&self, ws: &str, r: &AssignmentRecord) -> Result<i64, StoreError> {
        let db = self.db().await?;
        let last: Option<i64> = assignment::Entity::find()
            .select_only()
            .column_as(assignment::Column::Seq.max(), "seq")
            .filter(assignment::Column::WorkspaceId.eq(ws))
            .filter(assignment::Column::LeadId.eq(r.lead_id.as_str()))
            .into_tuple::<Option<i64>>()
            .one(db)
            .await?
            .flatten();
        let seq = last.unwrap_or(0) + 1;
        assignment::Entity::insert(assignment::ActiveModel {
            workspace_id: Set(ws.to_owned()),
            lead_id: Set(r.lead_id.clone()),
            seq: Set(seq),
            at: Set(r.at.as_micros()),
            from_owner: Set(r.from.clone()),
            to_owner: Set(r.to.clone()),
            cause: Set(r.cause.clone()),
            route_id: Set(r.route_id.clone()),
            explanation: Set(r.explanation.clone()),
            reason: Set(r.reason.clone()),
            principal: Set(r.principal.clone()),
            stage: Set(r.stage.as_str().to_owned()),
        })
        .exec_without_returning(db)
        .await?;
        Ok(seq)
    }

    /// The lead's account as routing reads it (its owner and attributes),
    /// unlocked: routing's lock may be taken after it.
    pub async fn route_account(
        &self,
        ws: &str,
        lead_id: &str,
    ) -> Result<Option<leadflow_domain::handoff::RouteAccount>, StoreError> {
        let Some(member) = self.member(ws, lead_id).await? else {
            return Ok(None);
        };
        let row = crate::entity::account::Entity::find()
            .filter(crate::entity::account::Column::WorkspaceId.eq(ws))
            .filter(crate::entity::account::Column::Id.eq(member.account_id))
            .one(self.db().await?)
            .await?;
        Ok(row.map(crate::accounts::account_record).transpose()?.map(|a| {
            leadflow_domain::handoff::RouteAccount {
                owner: a.owner,
                attributes: a.attributes,
            }
        }))
    }

    /// Records a lead's SLA breaches (id, instant, stage) with the owner it
    /// had then; one already recorded is left as it is.
    pub async fn insert_sla_breaches(
        &self,
        ws: &str,
        lead_id: &str,
        breaches: &[(&str, Timestamp, Stage)],
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        if breaches.is_empty() {
            return Ok(());
        }
        let rows = breaches.iter().map(|(sla, at, stage)| sla_breach::ActiveModel {
            workspace_id: Set(ws.to_owned()),
            lead_id: Set(lead_id.to_owned()),
            sla_id: Set((*sla).to_owned()),
            at: Set(at.as_micros()),
            stage: Set(stage.as_str().to_owned()),
            owner_id: Set(owner.map(str::to_owned)),
        });
        sla_breach::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([
                    sla_breach::Column::WorkspaceId,
                    sla_breach::Column::LeadId,
                    sla_breach::Column::SlaId,
                    sla_breach::Column::At,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(self.db().await?)
            .await?;
        Ok(())
    }

    /// The lead's latest change of owner, if any.
    pub async fn last_assignment(
        &self,
        ws: &str,
        lead_id: &str,
    ) -> Result<Option<AssignmentRecord>, StoreError> {
        assignment::Entity::find()
            .filter(assignment::Column::WorkspaceId.eq(ws))
            .filter(assignment::Column::LeadId.eq(lead_id))
            .order_by_desc(assignment::Column::Seq)
            .one(self.db().await?)
            .await?
            .map(assignment_record)
            .transpose()
    }

    /// The owners the lead was given at or after `since` (its current stay).
    pub async fn owners_since(
        &self,
        ws: &str,
        lead_id: &str,
        since: Timestamp,
    ) -> Result<BTreeSet<String>, StoreError> {
        let rows: Vec<Option<String>> = assignment::Entity::find()
            .select_only()
            .column(assignment::Column::ToOwner)
            .filter(assignment::Column::WorkspaceId.eq(ws))
            .filter(assignment::Column::LeadId.eq(lead_id))
            .filter(assignment::Column::At.gte(since.as_micros()))
            .into_tuple()
            .all(self.db().await?)
            .await?;
        Ok(rows.into_iter().flatten().collect())
    }
}

impl Tx {
    /// The lead waits for an owner, since `since` (kept if it waits
    /// already), asleep until capacity frees.
    pub async fn wait_for_owner(&self, ws: &str, lead_id: &str, since: Timestamp) -> Result<(), StoreError> {
        routing_wait::Entity::insert(routing_wait::ActiveModel {
            workspace_id: Set(ws.to_owned()),
            lead_id: Set(lead_id.to_owned()),
            since: Set(since.as_micros()),
            wake_at: Set(None),
        })
        .on_conflict(
            OnConflict::columns([routing_wait::Column::WorkspaceId, routing_wait::Column::LeadId])
                .update_column(routing_wait::Column::WakeAt)
                .to_owned(),
        )
        .exec_without_returning(self.db().await?)
        .await?;
        Ok(())
    }

    /// The lead no longer waits (it has an owner, or is gone).
    pub async fn stop_waiting(&self, ws: &str, lead_id: &str) -> Result<(), StoreError> {
        routing_wait::Entity::delete_many()
            .filter(routing_wait::Column::WorkspaceId.eq(ws))
            .filter(routing_wait::Column::LeadId.eq(lead_id))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    /// Capacity may have freed: wakes the `n` leads of the workspace that
    /// have waited longest and are asleep.
    pub async fn wake_waiting(&self, ws: &str, n: u64, now: Timestamp) -> Result<(), StoreError> {
        let db = self.db().await?;
        let ids: Vec<String> = routing_wait::Entity::find()
            .select_only()
            .column(routing_wait::Column::LeadId)
            .filter(routing_wait::Column::WorkspaceId.eq(ws))
            .filter(routing_wait::Column::WakeAt.is_null())
            .order_by_asc(routing_wait::Column::Since)
            .order_by_asc(routing_wait::Column::LeadId)
            .limit(n)
            .into_tuple()
            .all(db)
            .await?;
        if ids.is_empty() {
            return Ok(());
        }
        routing_wait::Entity::update_many()
            .col_expr(routing_wait::Column::WakeAt, Expr::value(now.as_micros()))
            .filter(routing_wait::Column::WorkspaceId.eq(ws))
            .filter(routing_wait::Column::LeadId.is_in(ids))
            .exec(db)
            .await?;
        Ok(())
    }

    /// Whether the lead is still awake (woken and not yet routed by another
    /// worker); call with the lead locked.
    pub async fn awake(&self, ws: &str, lead_id: &str) -> Result<bool, StoreError> {
        Ok(
            routing_wait::Entity::find_by_id((ws.to_owned(), lead_id.to_owned()))
                .one(self.db().await?)
                .await?
                .is_some_and(|w| w.wake_at.is_some()),
        )
    }

    /// Puts a woken lead that still found no owner back to sleep, at the
    /// back of the line (`now`), so that the next wakes reach the others.
    pub async fn sleep_waiting(&self, ws: &str, lead_id: &str, now: Timestamp) -> Result<(), StoreError> {
        routing_wait::Entity::update_many()
            .col_expr(routing_wait::Column::WakeAt, Expr::value(Option::<i64>::None))
            .col_expr(routing_wait::Column::Since, Expr::value(now.as_micros()))
            .filter(routing_wait::Column::WorkspaceId.eq(ws))
            .filter(routing_wait::Column::LeadId.eq(lead_id))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }
}

impl crate::Store {
    /// A lead's assignments after seq `after`, oldest first, at most `limit`.
    pub async fn assignments_page(
        &self,
        ws: &str,
        lead_id: &str,
        after: i64,
        limit: u64,
    ) -> Result<Vec<AssignmentRecord>, StoreError> {
        assignment::Entity::find()
            .filter(assignment::Column::WorkspaceId.eq(ws))
            .filter(assignment::Column::LeadId.eq(lead_id))
            .filter(assignment::Column::Seq.gt(after))
            .order_by_asc(assignment::Column::Seq)
            .limit(limit)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(assignment_record)
            .collect()
    }

    /// Woken leads to route again, (workspace, lead id), longest waiting
    /// first, at most `limit`.
    pub async fn woken_leads(&self, limit: u64) -> Result<Vec<(String, String)>, StoreError> {
        routing_wait::Entity::find()
            .select_only()
            .column(routing_wait::Column::WorkspaceId)
            .column(routing_wait::Column::LeadId)
            .filter(routing_wait::Column::WakeAt.is_not_null())
            .order_by_asc(routing_wait::Column::Since)
            .limit(limit)
            .into_tuple()
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))
    }
}

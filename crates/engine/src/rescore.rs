//! Policy lifecycle beyond versions: simulating a draft over every lead,
//! and the durable re-score an activation starts.
//!
//! Both run the same decision — the domain's `PolicyChanged` at one instant,
//! forward moves only — so a simulation `as_of` the activation instant is
//! what the activation then records.

use leadflow_domain::explain::newly_failing;
use leadflow_domain::lifecycle::{Context, GuardCheck};
use leadflow_domain::{Command, Policy, Stage, Timestamp};
use leadflow_store::{RESCORE_DONE, RESCORE_FAILED, RESCORE_RUNNING, RescoreJobRecord};

use crate::views::{RescoreJob, TransitionView};

use tracing::Instrument as _;

use crate::Engine;
use crate::error::EngineError;
use crate::model::Request;
use crate::persist::{Before, persist};

/// Batches of one re-score that may fail in a row before it is failed.
const MAX_BATCH_FAILURES: u32 = 10;

/// A re-score batch's error, with the job it was for (if one was taken).
struct BatchError {
    job: Option<RescoreJobRecord>,
    error: EngineError,
}

impl BatchError {
    fn before(e: leadflow_store::StoreError) -> Self {
        Self {
            job: None,
            error: e.into(),
        }
    }
}

/// Leads read per round of a simulation.
const SIMULATION_BATCH: u64 = 1_000;

/// What to simulate.
#[derive(Clone, Debug)]
pub enum Draft {
    /// A TOML document, not stored.
    Source(String),
    /// A stored version.
    Version(i64),
}

/// Counts over every lead (on a simulation's first page).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimulationCounts {
    pub leads: i64,
    /// Per stage: before, after.
    pub stages: Vec<(Stage, i64, i64)>,
    /// Per MQL level (the draft's in order, then the active policy's
    /// others): leads at it before, after.
    pub levels: Vec<(String, i64, i64)>,
    pub movers: i64,
    pub newly_failing: i64,
}

/// A lead the draft moves, or whose qualification it newly fails.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulatedLead {
    pub lead_id: String,
    pub external_key: Option<String>,
    pub from: Stage,
    pub to: Stage,
    pub transitions: Vec<TransitionView>,
    pub newly_failing: Vec<GuardCheck>,
    /// Of the model the draft's MQL stage reads.
    pub fit: f64,
    pub qualifying_engagement: f64,
}

/// An account the draft would move.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulatedAccount {
    /// `None` for an account the draft's matching would create.
    pub account_id: Option<String>,
    /// Its domain or external key (an id when it has neither).
    pub name: String,
    pub from: leadflow_domain::AccountStage,
    pub to: leadflow_domain::AccountStage,
    pub engagement: f64,
    pub engaged_members: u32,
}

/// Accounts under the draft (on a simulation's first page, for a draft
/// with `[accounts]`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountSimulation {
    /// Per stage: before, after.
    pub stages: Vec<(leadflow_domain::AccountStage, i64, i64)>,
    /// At most [`MAX_SIMULATED_ACCOUNTS`].
    pub moved: Vec<SimulatedAccount>,
    pub created: i64,
}

/// Moved accounts a simulation lists at most.
pub const MAX_SIMULATED_ACCOUNTS: usize = 100;

#[derive(Clone, Debug, PartialEq)]
pub struct Simulation {
    pub as_of: Timestamp,
    pub active_version: Option<i64>,
    pub counts: Option<SimulationCounts>,
    pub accounts: Option<AccountSimulation>,
    /// On the first page: what its activation would do to the owners.
    pub routing: Option<crate::assign::RoutingSimulation>,
    pub changed: Vec<SimulatedLead>,
    /// The last lead of this page, when more follow.
    pub next_after: Option<String>,
}

/// Counts a lead's level before and after (a level only the active policy
/// has joins the list).
fn count_levels(levels: &mut Vec<(String, i64, i64)>, was: Option<String>, will: Option<String>) {
    if let Some(was) = was {
        match levels.iter_mut().find(|(id, _, _)| *id == was) {
            Some((_, before, _)) => *before += 1,
            None => levels.push((was, 1, 0)),
        }
    }
    if let Some((_, _, after)) = will.and_then(|will| levels.iter_mut().find(|(id, _, _)| *id == will)) {
        *after += 1;
    }
}

impl Engine {
    /// A dry run of `draft` over every lead at `as_of` (default now). With
    /// no `after` it counts every lead; a page holds up to `page_size`
    /// changed leads after `after`. Writes nothing.
    #[tracing::instrument(name = "engine.simulate", skip_all)]
    pub async fn simulate(
        &self,
        ws: &str,
        draft: &Draft,
        as_of: Option<Timestamp>,
        after: Option<&str>,
        page_size: usize,
    ) -> Result<Simulation, EngineError> {
        let now = self.now();
        let at = as_of.unwrap_or(now);
        if at > now.saturating_add(leadflow_domain::lifecycle::MAX_FUTURE) {
            return Err(EngineError::invalid(
                "INVALID_FIELD",
                "as_of",
                format!("{at} is in the future"),
            ));
        }
        let (policy, version) = match draft {
            Draft::Source(source) => (
                std::sync::Arc::new(Policy::from_toml(source).map_err(EngineError::InvalidPolicy)?),
                0,
            ),
            Draft::Version(v) => {
                let record = self
                    .store
                    .policy(ws, *v)
                    .await?
                    .ok_or_else(|| EngineError::NotFound {
                        what: "policy version",
                        key: v.to_string(),
                    })?;
                (self.cache_policy(ws, *v, &record.source)?, *v)
            }
        };
        let counting = after.is_none();
        let mut counts = SimulationCounts {
            stages: Stage::LIFECYCLE.iter().map(|s| (*s, 0, 0)).collect(),
            levels: policy.mql.levels.iter().map(|l| (l.id.clone(), 0, 0)).collect(),
            ..SimulationCounts::default()
        };
        let mut changed = Vec::new();
        let mut next_after = None;
        let mut cursor = after.unwrap_or_default().to_owned();
        let ctx = Context { now };
        let mut grouped = counting
            .then(|| {
                policy
                    .accounts
                    .as_ref()
                    .map(|_| crate::accounts::SimulatedMembers::default())
            })
            .flatten();
        let mut routing = if counting {
            Some(crate::assign::RoutingTally::start(self, ws).await?)
        } else {
            None
        };
        'scan: loop {
            let batch = self.store.leads_with_logs(ws, &cursor, SIMULATION_BATCH).await?;
            let Some(last) = batch.last() else { break };
            cursor.clone_from(&last.0.id);
            let memberships: std::collections::HashMap<String, leadflow_store::MemberRecord> = match &grouped
            {
                Some(_) => {
                    let ids: Vec<&str> = batch.iter().map(|(r, _)| r.id.as_str()).collect();
                    self.store
                        .memberships(ws, &ids)
                        .await?
                        .into_iter()
                        .map(|m| (m.member.lead.clone(), m))
                        .collect()
                }
                None => std::collections::HashMap::new(),
            };
            for (record, log) in batch {
                let current = self.stored_policy(ws, record.policy_version).await?;
                let decision = leadflow_domain::decide(
                    &policy,
                    &record.lead,
                    Command::PolicyChanged { at },
                    &ctx,
                    Some(&log),
                )?;
                let (from, to) = (record.lead.stage, decision.lead.stage);
                if let Some(routing) = &mut routing {
                    routing
                        .add(self, &policy, version, &record, &decision, at)
                        .await?;
                }
                if let Some(grouped) = &mut grouped {
                    let membership = memberships.get(&record.id);
                    grouped
                        .add(
                            self,
                            ws,
                            &policy,
                            membership,
                            &record.id,
                            &decision.lead,
                            &log,
                            at,
                        )
                        .await?;
                }
                let newly_failing =
                    newly_failing((&current, &record.lead), (&policy, &decision.lead), &log, at);
                let moved = from != to;
                let failing: bool = !newly_failing.is_empty();
                if counting {
                    counts.leads += 1;
                    counts.movers += i64::from(moved);
                    counts.newly_failing += i64::from(failing);
                    for (stage, before, after) in &mut counts.stages {
                        *before += i64::from(*stage == from);
                        *after += i64::from(*stage == to);
                    }
                    let was = record.lead.scores_at(&current, at).level;
                    let will = decision.lead.scores_at(&policy, at).level;
                    count_levels(&mut counts.levels, was, will);
                }
                if !moved && !failing {
                    continue;
                }
                if changed.len() == page_size {
                    next_after = changed.last().map(|l: &SimulatedLead| l.lead_id.clone());
                    if counting {
                        continue;
                    }
                    break 'scan;
                }
                let scores = decision.lead.scores_at(&policy, at);
                // The scores the draft's MQL guards read: its MQL model's.
                let (fit, qualifying_engagement) = scores.mql_model(&policy);
                changed.push(SimulatedLead {
                    transitions: (record.history_len + 1..)
                        .zip(decision.transitions())
                        .map(|(seq, t)| TransitionView {
                            lead_id: record.id.clone(),
                            seq,
                            record: t.clone(),
                            policy_version: version,
                            principal: None,
                        })
                        .collect(),
                    lead_id: record.id,
                    external_key: record.external_key,
                    from,
                    to,
                    newly_failing,
                    fit,
                    qualifying_engagement,
                });
            }
        }
        let accounts = match grouped {
            Some(grouped) => Some(grouped.decide(self, ws, &policy, at).await?),
            None => None,
        };
        Ok(Simulation {
            as_of: at,
            active_version: self.store.active_policy_version(ws).await?,
            counts: counting.then_some(counts),
            accounts,
            routing: routing.map(crate::assign::RoutingTally::finish),
            changed,
            next_after,
        })
    }

    /// A stored version, parsed (cached), read outside a transaction.
    async fn stored_policy(&self, ws: &str, version: i64) -> Result<std::sync::Arc<Policy>, EngineError> {
        if let Some(p) = self.cached_policy(ws, version) {
            return Ok(p);
        }
        let record =
            self.store.policy(ws, version).await?.ok_or_else(|| {
                EngineError::Internal(format!("policy version {version} of {ws:?} is missing"))
            })?;
        self.cache_policy(ws, version, &record.source)
    }

    /// Re-scores the next batch of leads of a running re-score (any
    /// workspace), in one transaction with the job's progress: a restart
    /// resumes where the last commit left off, and each lead is re-scored
    /// once. `None` when no re-score is running.
    pub async fn run_rescore_batch(&self, batch: u64) -> Result<Option<RescoreJob>, EngineError> {
        Ok(self.rescore_batch(batch).await?.map(RescoreJob::from))
    }

    async fn rescore_batch(&self, batch: u64) -> Result<Option<RescoreJobRecord>, EngineError> {
        match self.try_rescore_batch(batch).await {
            Err(BatchError {
                job: Some(job),
                error,
            }) => {
                // A batch that keeps failing ends its job rather than holding
                // every later re-score up behind it.
                let key = (job.workspace.clone(), job.id);
                let failures = {
                    let mut counts = self
                        .rescore_failures
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let n = counts.entry(key.clone()).or_insert(0);
                    *n += 1;
                    *n
                };
                if failures >= MAX_BATCH_FAILURES {
                    self.rescore_failures
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&key);
                    return self
                        .fail_rescore(job, &format!("{failures} batches failed in a row: {error}"))
                        .await;
                }
                Err(error)
            }
            Err(BatchError { job: None, error }) => Err(error),
            Ok(job) => {
                if let Some(job) = &job {
                    self.rescore_failures
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&(job.workspace.clone(), job.id));
                }
                Ok(job)
            }
        }
    }

    async fn try_rescore_batch(&self, batch: u64) -> Result<Option<RescoreJobRecord>, BatchError> {
        let tx = self.store.begin().await.map_err(BatchError::before)?;
        let Some(job) = tx.take_running_rescore().await.map_err(BatchError::before)? else {
            return Ok(None);
        };
        let held = job.clone();
        // A trace of its own, linked to the activation that started the job.
        let span = crate::trace::linked(
            tracing::info_span!(
                parent: None,
                "rescore.batch",
                workspace = %job.workspace,
                job = job.id,
                policy_version = job.policy_version,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            ),
            job.traceparent.as_deref(),
        );
        let traceparent = crate::trace::traceparent(&span);
        self.rescore_batch_of(tx, job, batch, traceparent)
            .instrument(span)
            .await
            .map_err(|error| BatchError {
                job: Some(held),
                error,
            })
    }

    async fn rescore_batch_of(
        &self,
        mut tx: leadflow_store::Tx,
        mut job: RescoreJobRecord,
        batch: u64,
        traceparent: Option<String>,
    ) -> Result<Option<RescoreJobRecord>, EngineError> {
        tx.trace_here();
        let ws = job.workspace.clone();
        let now = self.now();
        let policy = match self.policy_version_of(&tx, &ws, job.policy_version).await {
            Ok(p) => p,
            Err(e) => {
                tx.advance_rescore(&job, now, RESCORE_FAILED, Some(&e.to_string()))
                    .await?;
                tx.commit().await?;
                job.status = RESCORE_FAILED.to_owned();
                return Ok(Some(job));
            }
        };
        let req = Request {
            traceparent,
            ..Request::new(ws.as_str())
        };
        let mut target = self.target(&req, &policy, job.policy_version, now);
        if let (Some(accounts), Some(after)) = (policy.accounts.as_ref(), job.account_cursor.clone()) {
            return self
                .rescore_accounts(tx, job, &target, accounts, &after, batch)
                .await;
        }
        // Accounts are decided once all their members are re-scored.
        target.defer_accounts = policy.accounts.is_some();
        let ctx = Context { now };
        let leads = tx
            .lock_leads_after(&ws, &job.cursor, &job.last_lead, batch)
            .await?;
        let finished = (leads.len() as u64) < batch;
        let mut events = 0;
        for mut record in leads {
            job.cursor.clone_from(&record.id);
            job.done += 1;
            if record.policy_version == job.policy_version {
                continue; // re-scored already, by a command that reached it first
            }
            // As a command would: timers due before the change fire first,
            // under the policy that armed them.
            let old_policy = self.policy_version_of(&tx, &ws, record.policy_version).await?;
            let old = crate::persist::Target {
                policy: &old_policy,
                policy_version: record.policy_version,
                sync_accounts: false,
                ..target
            };
            let mut acc = crate::leads::Acc::default();
            record = self
                .fire_overdue(
                    &tx,
                    &old,
                    record,
                    job.activated_at,
                    &mut acc,
                    &mut crate::log::Log::default(),
                )
                .await?;
            job.transitions += i64::try_from(acc.transitions.len()).unwrap_or(0);
            events += acc.events;
            let history = tx.engagements_of(&ws, &record.id).await?;
            let change = Command::PolicyChanged { at: job.activated_at };
            let decision = match leadflow_domain::decide(&policy, &record.lead, change, &ctx, Some(&history))
            {
                Ok(d) => d,
                Err(e) => {
                    drop(tx);
                    return self.fail_rescore(job, &format!("lead {}: {e}", record.id)).await;
                }
            };
            let written = persist(&tx, &target, Before::Existing(&record), None, &decision).await?;
            job.transitions += i64::try_from(written.transitions.len()).unwrap_or(0);
            events += written.events;
        }
        let accounts_next = finished && policy.accounts.is_some();
        if accounts_next {
            job.account_cursor = Some(String::new());
        }
        let status = if finished && !accounts_next {
            RESCORE_DONE
        } else {
            RESCORE_RUNNING
        };
        tx.advance_rescore(&job, now, status, None).await?;
        tx.commit().await?;
        job.status = status.to_owned();
        job.updated_at = now;
        if finished && !accounts_next {
            job.finished_at = Some(now);
            tracing::info!(workspace = %ws, job = job.id, leads = job.done, transitions = job.transitions, "re-score done");
        }
        if events > 0 {
            self.announce(&ws);
        }
        Ok(Some(job))
    }

    /// A batch of a re-score's second phase: the next accounts, each
    /// computed again from its members and decided at the activation.
    async fn rescore_accounts(
        &self,
        tx: leadflow_store::Tx,
        mut job: RescoreJobRecord,
        target: &crate::persist::Target<'_>,
        accounts: &leadflow_domain::policy::Accounts,
        after: &str,
        batch: u64,
    ) -> Result<Option<RescoreJobRecord>, EngineError> {
        let ws = job.workspace.clone();
        let now = target.now;
        let found = tx.lock_accounts_after(&ws, after, batch).await?;
        let finished = (found.len() as u64) < batch;
        let mut events = 0;
        for account in found {
            job.account_cursor = Some(account.id.clone());
            events += crate::accounts::redecide(&tx, target, accounts, account, job.activated_at).await?;
        }
        let status = if finished { RESCORE_DONE } else { RESCORE_RUNNING };
        tx.advance_rescore(&job, now, status, None).await?;
        tx.commit().await?;
        job.status = status.to_owned();
        job.updated_at = now;
        if finished {
            job.finished_at = Some(now);
            tracing::info!(workspace = %ws, job = job.id, leads = job.done, "re-score done, accounts decided");
        }
        if events > 0 {
            self.announce(&ws);
        }
        Ok(Some(job))
    }

    async fn fail_rescore(
        &self,
        mut job: RescoreJobRecord,
        error: &str,
    ) -> Result<Option<RescoreJobRecord>, EngineError> {
        tracing::error!(workspace = %job.workspace, job = job.id, error, "re-score failed");
        let tx = self.store.begin().await?;
        let now = self.now();
        tx.advance_rescore(&job, now, RESCORE_FAILED, Some(error)).await?;
        tx.commit().await?;
        job.status = RESCORE_FAILED.to_owned();
        job.error = Some(error.to_owned());
        Ok(Some(job))
    }

    pub async fn rescore_job(&self, ws: &str, id: i64) -> Result<RescoreJob, EngineError> {
        self.store
            .rescore_job(ws, id)
            .await?
            .map(RescoreJob::from)
            .ok_or_else(|| EngineError::NotFound {
                what: "re-score job",
                key: id.to_string(),
            })
    }
}

//! Group commit for single engagements: calls that arrive while a write is
//! in progress are committed together in the next transaction, each answered
//! only after that commit.
//!
//! A caller queues its engagement and, unless enough runners are busy
//! already, starts one. A runner takes what is queued (up to
//! [`GROUP_MAX`] of one workspace) and writes it as one batch. If any of
//! them is refused, the batch is rolled back and each is run alone, so
//! every caller gets exactly the answer it would have had on its own. One
//! waiting engagement runs alone straight away: at low load nothing waits
//! for company.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use leadflow_domain::Engagement;
use tokio::sync::oneshot;
use tracing::Instrument as _;

use crate::Engine;
use crate::batch::Logs;
use crate::error::EngineError;
use crate::leads::retrying;
use crate::model::{BatchItem, LeadKey, Recorded, Request};
use crate::views::Outcome;

/// The most engagements committed together.
pub(crate) const GROUP_MAX: usize = 100;

/// How long a runner waits for a group as large as the last one.
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);

/// Queued engagements and the runners writing them.
#[derive(Debug)]
pub(crate) struct Groups {
    state: Mutex<State>,
    /// Rung when a job is queued.
    queued: tokio::sync::Notify,
    /// The size of the last group: callers that were answered together
    /// tend to call again together.
    last: std::sync::atomic::AtomicUsize,
    /// Transactions of groups in flight at once: 1 for SQLite's one
    /// writer; more let PostgreSQL commit one group while another waits.
    max_runners: usize,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Job>,
    runners: usize,
}

#[derive(Debug)]
struct Job {
    req: Request,
    item: BatchItem,
    reply: oneshot::Sender<Result<Recorded, EngineError>>,
    /// The caller's span (its `engine.record_engagement`).
    span: tracing::Span,
}

impl Groups {
    pub(crate) fn new(max_runners: usize) -> Self {
        Self {
            state: Mutex::default(),
            queued: tokio::sync::Notify::new(),
            last: std::sync::atomic::AtomicUsize::new(0),
            max_runners: max_runners.max(1),
        }
    }

    /// Waits (briefly) until as many jobs are queued as the last group had:
    /// at low load the last group was one job and nothing waits; under load
    /// the callers answered together are back within a moment, and one
    /// transaction for all of them costs far less than one each.
    async fn gather(&self) {
        let want = self.last.load(std::sync::atomic::Ordering::Relaxed);
        if want <= 1 {
            return;
        }
        let deadline = tokio::time::Instant::now() + GATHER;
        while self.state().queue.len() < want {
            if tokio::time::timeout_at(deadline, self.queued.notified())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a job; true if the caller must start a runner.
    fn push(&self, job: Job) -> bool {
        let start = {
            let mut state = self.state();
            state.queue.push_back(job);
            if state.runners < self.max_runners {
                state.runners += 1;
                true
            } else {
                false
            }
        };
        self.queued.notify_one();
        start
    }

    /// The next group: queued jobs of the front job's workspace, in order.
    /// None (and the runner is counted out) when nothing is queued.
    fn next(&self) -> Option<Vec<Job>> {
        let mut state = self.state();
        let Some(front) = state.queue.front() else {
            state.runners -= 1;
            return None;
        };
        let ws = front.req.workspace.clone();
        let mut group = Vec::new();
        let mut rest = VecDeque::with_capacity(state.queue.len());
        while let Some(job) = state.queue.pop_front() {
            if group.len() < GROUP_MAX && job.req.workspace == ws {
                group.push(job);
            } else {
                rest.push_back(job);
            }
        }
        state.queue = rest;
        Some(group)
    }
}

/// Counts a runner out if it ends other than by finding the queue empty
/// (a panic), and starts another for what is still queued.
struct RunnerGuard {
    engine: Option<Engine>,
}

impl Drop for RunnerGuard {
    fn drop(&mut self) {
        let Some(engine) = self.engine.take() else {
            return;
        };
        let restart = {
            let mut state = engine.groups.state();
            state.runners -= 1;
            if state.queue.is_empty() {
                false
            } else {
                state.runners += 1;
                true
            }
        };
        if restart && tokio::runtime::Handle::try_current().is_ok() {
            engine.tasks.spawn(engine.clone().run_groups());
        }
    }
}

impl Engine {
    /// Records one engagement, committed together with those of concurrent
    /// callers; the answer comes after the commit.
    #[tracing::instrument(name = "engine.record_engagement", skip_all)]
    pub async fn record_engagement(
        &self,
        req: &Request,
        key: &LeadKey,
        engagement: &Engagement,
        occurred_at_given: bool,
    ) -> Result<Outcome, EngineError> {
        if let LeadKey::Anonymous(id) = key {
            return self
                .record_anonymous(req, id, engagement, occurred_at_given)
                .await;
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            req: req.clone(),
            item: BatchItem {
                lead: key.clone(),
                engagement: engagement.clone(),
                occurred_at_given,
            },
            reply,
            span: tracing::Span::current(),
        };
        if self.groups.push(job) {
            // The write goes on if the caller goes away: it was asked for.
            self.tasks.spawn(self.clone().run_groups());
        }
        answer
            .await
            .map_err(|_| EngineError::Internal("the engagement's write ended without an answer".into()))?
            .map(Outcome::from)
    }

    async fn run_groups(self) {
        let mut guard = RunnerGuard {
            engine: Some(self.clone()),
        };
        loop {
            self.groups.gather().await;
            let Some(group) = self.groups.next() else {
                break;
            };
            self.groups
                .last
                .store(group.len(), std::sync::atomic::Ordering::Relaxed);
            self.run_group(group).await;
        }
        // Counted out by `next`.
        guard.engine = None;
    }

    /// Commits a group under a span of the first caller's, linked to the
    /// other callers' (one transaction serves them all).
    async fn run_group(&self, group: Vec<Job>) {
        let Some(first) = group.first() else { return };
        let span = tracing::info_span!(parent: &first.span, "engine.engagement_group", size = group.len());
        for job in &group[1..] {
            crate::trace::link(&span, job.req.traceparent.as_deref());
        }
        self.run_group_in(group).instrument(span).await;
    }

    async fn run_group_in(&self, group: Vec<Job>) {
        if group.len() > 1 {
            let items: Vec<(&Request, &BatchItem)> = group.iter().map(|j| (&j.req, &j.item)).collect();
            if let Ok(outcomes) = retrying!(self.try_batch(&items, 0, &mut Logs::default())) {
                // Counted here: the write stands even if its caller left.
                self.count_recorded(&outcomes);
                for (job, outcome) in group.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
                return;
            }
            // One was refused (or the database failed): each on its own,
            // for its own answer.
        }
        for job in group {
            let Job { req, item, reply, .. } = job;
            let result = retrying!(self.try_record_engagement(
                &req,
                &item.lead,
                &item.engagement,
                item.occurred_at_given
            ));
            if let Ok(outcome) = &result {
                self.count_recorded(std::slice::from_ref(outcome));
            }
            let _ = reply.send(result);
        }
    }
}

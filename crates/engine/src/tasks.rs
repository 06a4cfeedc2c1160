//! Background work, owned (the engine's, and its server's). Every task the engine or its server
//! starts (event tails, the announcer, group-commit runners, subscription
//! producers, the timer and re-score workers…) is spawned here: a shutdown
//! asks them to stop, waits for them within a deadline, and aborts the rest.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
pub struct Tasks {
    running: Mutex<JoinSet<()>>,
    /// Cancelled when a shutdown is asked for; a fresh one then serves
    /// whatever starts after it (an engine served again).
    stop: Mutex<CancellationToken>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Tasks {
    /// Runs `task` to its end: work that was asked for (a write a caller
    /// waits on) finishes even while the service stops, within the
    /// shutdown's deadline.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut running = lock(&self.running);
        // What has ended is forgotten as new work comes in.
        while running.try_join_next().is_some() {}
        // Boxed: the runtime moves a task's future into its cell and its
        // stage through completion, and a command's future is many
        // kilobytes; a box is a pointer to move.
        running.spawn(Box::pin(task));
    }

    /// Runs `task` until it ends or a shutdown is asked for, whichever is
    /// first; `task` is dropped at its next wait.
    pub fn spawn_until_stopped(&self, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stopping();
        self.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Cancelled when a shutdown is asked for: for loops that finish what
    /// they are doing before they stop.
    pub fn stopping(&self) -> CancellationToken {
        lock(&self.stop).clone()
    }

    /// Asks every task to stop, waits for them within `deadline`, and
    /// aborts those still running then. Tasks started afterwards belong
    /// to the next shutdown.
    pub async fn shutdown(&self, deadline: Duration) {
        std::mem::take(&mut *lock(&self.stop)).cancel();
        let mut running = std::mem::take(&mut *lock(&self.running));
        let drained =
            tokio::time::timeout(deadline, async { while running.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                left = running.len(),
                deadline_ms = deadline.as_millis(),
                "background tasks still running at the deadline; aborting them"
            );
            running.abort_all();
            while running.join_next().await.is_some() {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_shutdown_stops_what_waits_finishes_what_works_and_aborts_the_rest() {
        let tasks = Tasks::default();
        let finished = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        // A loop that stops when asked, between its rounds.
        let stop = tasks.stopping();
        let s = Arc::clone(&stopped);
        tasks.spawn(async move {
            stop.cancelled().await;
            s.store(true, Ordering::SeqCst);
        });
        // Work that was asked for, finishing shortly.
        let f = Arc::clone(&finished);
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            f.store(true, Ordering::SeqCst);
        });
        // A task that would never end on its own.
        tasks.spawn(std::future::pending());
        // One dropped at its next wait.
        tasks.spawn_until_stopped(std::future::pending());
        // Returns although one task never ends: it is aborted at the deadline.
        tasks.shutdown(Duration::from_millis(200)).await;
        assert!(stopped.load(Ordering::SeqCst) && finished.load(Ordering::SeqCst));
        // The next run starts fresh.
        assert!(!tasks.stopping().is_cancelled());
    }
}

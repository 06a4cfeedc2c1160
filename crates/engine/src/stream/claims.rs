//! Consumer claims of streams opened together, written together: a
//! `Subscribe` queues its claim and, unless a writer is already at work,
//! starts one; the writer claims everything queued (one statement a
//! workspace) and answers each. A thousand subscribers connecting at once
//! cost a few statements, not a thousand commits; a lone subscriber's
//! claim is written at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use leadflow_domain::Timestamp;
use leadflow_store::{Claim, ConsumerRecord, Store, StoreError};
use tokio::sync::oneshot;

use super::lock;
use crate::tasks::Tasks;

/// The most claims in one statement.
const CLAIMS_MAX: usize = 500;

#[derive(Debug, Default)]
pub(super) struct Claims {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    queue: Vec<Queued>,
    writing: bool,
}

#[derive(Debug)]
struct Queued {
    ws: String,
    name: String,
    cursor: i64,
    session: String,
    now: Timestamp,
    reply: oneshot::Sender<Result<ConsumerRecord, StoreError>>,
}

impl Claims {
    /// Makes `session` the owner of the consumer (see
    /// [`Store::claim_consumer`]), together with the claims queued with it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn claim(
        self: &Arc<Self>,
        store: &Store,
        tasks: &Tasks,
        ws: &str,
        name: &str,
        cursor: i64,
        session: &str,
        now: Timestamp,
    ) -> Result<ConsumerRecord, crate::error::EngineError> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut state = lock(&self.state);
            state.queue.push(Queued {
                ws: ws.to_owned(),
                name: name.to_owned(),
                cursor,
                session: session.to_owned(),
                now,
                reply,
            });
            !std::mem::replace(&mut state.writing, true)
        };
        if start {
            // The writer's turn is held by a guard the task owns from its
            // creation: dropped unpolled (a shutdown), it still ends the turn.
            let turn = Writing {
                claims: Arc::clone(self),
                finished: false,
            };
            tasks.spawn(turn.write(store.clone()));
        }
        match answer.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(crate::error::EngineError::ShuttingDown(
                "the server is shutting down; subscribe again".to_owned(),
            )),
        }
    }

    /// The next group: queued claims of the front one's workspace, each
    /// consumer once (a second claim of one waits for the next group, so
    /// the later claim still wins), up to [`CLAIMS_MAX`].
    fn next(&self) -> Option<Vec<Queued>> {
        let mut state = lock(&self.state);
        let Some(front) = state.queue.first() else {
            // Under the lock that queues: a claim queued from now on
            // starts the next writer.
            state.writing = false;
            return None;
        };
        let ws = front.ws.clone();
        let mut names = HashSet::new();
        let (mut group, mut rest) = (Vec::new(), Vec::new());
        for q in std::mem::take(&mut state.queue) {
            if q.ws == ws && group.len() < CLAIMS_MAX && names.insert(q.name.clone()) {
                group.push(q);
            } else {
                rest.push(q);
            }
        }
        state.queue = rest;
        Some(group)
    }
}

/// The writer's turn: it ends when the writer finds the queue empty, or,
/// if the writer ends any other way (a panic, dropped at a shutdown),
/// when this is dropped: what is queued is dropped then, each claimant
/// answered by its channel closing, and the next claim starts a writer.
struct Writing {
    claims: Arc<Claims>,
    finished: bool,
}

impl Writing {
    /// Writes what is queued, a workspace at a time, until nothing is.
    async fn write(mut self, store: Store) {
        while let Some(group) = self.claims.next() {
            let Some(ws) = group.first().map(|q| q.ws.clone()) else {
                continue;
            };
            let claims: Vec<Claim<'_>> = group
                .iter()
                .map(|q| Claim {
                    name: &q.name,
                    cursor: q.cursor,
                    session: &q.session,
                    now: q.now,
                })
                .collect();
            match store.claim_consumers(&ws, &claims).await {
                Ok(records) => {
                    for (q, record) in group.into_iter().zip(records) {
                        let _ = q.reply.send(Ok(record));
                    }
                }
                Err(e) => {
                    for q in group {
                        // The database away or the pool full is everyone's
                        // answer; anything else, each alone for its own.
                        let result = match e.for_another_caller() {
                            Some(same) => Err(same),
                            None => {
                                store
                                    .claim_consumer(&q.ws, &q.name, q.cursor, &q.session, q.now)
                                    .await
                            }
                        };
                        let _ = q.reply.send(result);
                    }
                }
            }
        }
        self.finished = true;
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        if !self.finished {
            let mut state = lock(&self.claims.state);
            state.writing = false;
            state.queue.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(claims: &Claims, ws: &str, name: &str) -> oneshot::Receiver<Result<ConsumerRecord, StoreError>> {
        let (reply, answer) = oneshot::channel();
        lock(&claims.state).queue.push(Queued {
            ws: ws.to_owned(),
            name: name.to_owned(),
            cursor: 0,
            session: format!("{ws}/{name}"),
            now: Timestamp::from_secs(1),
            reply,
        });
        answer
    }

    fn names(group: &[Queued]) -> Vec<&str> {
        group.iter().map(|q| q.name.as_str()).collect()
    }

    #[test]
    fn a_group_is_one_workspace_each_consumer_once_in_order() {
        let claims = Claims::default();
        lock(&claims.state).writing = true;
        let _answers: Vec<_> = [("a", "x"), ("b", "y"), ("a", "z"), ("a", "x"), ("a", "w")]
            .into_iter()
            .map(|(ws, name)| queue(&claims, ws, name))
            .collect();
        let first = claims.next().expect("a group");
        assert_eq!(names(&first), ["x", "z", "w"]);
        // The second claim of x waits behind the first, after b's.
        let second = claims.next().expect("a group");
        assert_eq!((second[0].ws.as_str(), names(&second)), ("b", vec!["y"]));
        let third = claims.next().expect("a group");
        assert_eq!(names(&third), ["x"]);
        assert!(claims.next().is_none());
        assert!(
            !lock(&claims.state).writing,
            "an empty queue ends the writer's turn"
        );
    }

    #[test]
    fn a_group_holds_at_most_claims_max() {
        let claims = Claims::default();
        let _answers: Vec<_> = (0..CLAIMS_MAX + 3)
            .map(|i| queue(&claims, "a", &format!("c{i}")))
            .collect();
        assert_eq!(claims.next().expect("a group").len(), CLAIMS_MAX);
        assert_eq!(claims.next().expect("a group").len(), 3);
    }
}

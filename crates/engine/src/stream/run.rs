//! A subscription's producer: catches up from the outbox table, then
//! follows its workspace's tail, filtering, checkpointing, and ending when
//! a newer stream of the consumer takes over or the subscriber leaves.

use super::{
    Arc, BATCH, CHECKPOINT_EVERY, Duration, Engine, EngineError, Filter, Instant, Notify, Ordering,
    StreamEvent, StreamItem, Tail, broadcast, mpsc,
};

/// One subscription's producer.
pub(super) struct Run {
    pub(super) engine: Engine,
    pub(super) ws: String,
    pub(super) consumer: String,
    pub(super) session: String,
    pub(super) filter: Filter,
    /// The next sequence to deliver.
    pub(super) next: i64,
    pub(super) out: mpsc::Sender<Result<StreamItem, EngineError>>,
    /// Notified when a newer stream claims the consumer, or it is deleted.
    pub(super) taken: Arc<Notify>,
    pub(super) tail: Arc<Tail>,
    pub(super) checkpointed: Instant,
}

impl Run {
    pub(super) async fn go(mut self, mut events: broadcast::Receiver<Arc<StreamEvent>>) {
        // Catch up from the table, then follow the broadcast.
        let mut behind = true;
        loop {
            if behind {
                match self.catch_up().await {
                    Ok(Some(done)) => behind = !done,
                    Ok(None) => break,
                    Err(e) => {
                        self.end(e).await;
                        break;
                    }
                }
                if !self.checkpoint_if_due().await {
                    break;
                }
                continue;
            }
            let deadline = self.checkpointed + CHECKPOINT_EVERY;
            let (taken, out) = (Arc::clone(&self.taken), self.out.clone());
            tokio::select! {
                received = events.recv() => match received {
                    Ok(event) if event.seq < self.next => {}
                    // Something between: read it from the table.
                    Ok(event) if event.seq > self.next => behind = true,
                    Ok(event) => {
                        if !self.deliver(event).await {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => behind = true,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                () = tokio::time::sleep_until(deadline) => {
                    if !self.checkpoint_if_due().await {
                        break;
                    }
                    // Safety net: the tail has read past us without our hearing of it.
                    if self.tail.read.load(Ordering::SeqCst) >= self.next {
                        behind = true;
                    }
                }
                () = taken.notified() => {
                    if !self.still_owner().await {
                        break;
                    }
                }
                () = out.closed() => break,
            }
        }
        self.engine.hub.release(&self.ws, &self.consumer, &self.session);
    }

    /// Delivers the next batch the table holds: `Some(true)` when that was
    /// the end of what is committed, `None` when the stream must stop.
    async fn catch_up(&mut self) -> Result<Option<bool>, EngineError> {
        // What another subscriber or the tail has just read, first.
        let recalled = self.tail.recall(self.next, BATCH as usize);
        if !recalled.is_empty() {
            for event in recalled {
                if !self.deliver(event).await {
                    return Ok(None);
                }
            }
            return Ok(Some(false));
        }
        let batch = self
            .engine
            .store
            .outbox_after(&self.ws, self.next - 1, BATCH)
            .await?;
        let done = (batch.len() as u64) < BATCH;
        let events = super::decode_after(self.next - 1, batch)?;
        for event in self.tail.remember(events) {
            if !self.deliver(event).await {
                return Ok(None);
            }
        }
        Ok(Some(done))
    }

    async fn deliver(&mut self, event: Arc<StreamEvent>) -> bool {
        self.next = event.seq + 1;
        if !self.filter.admits(&event) {
            return true;
        }
        self.send(StreamItem::Event(event)).await
    }

    /// Sends an item, still listening for a takeover and the client going:
    /// a client that stops reading holds nothing but this bounded channel.
    async fn send(&mut self, item: StreamItem) -> bool {
        let taken = Arc::clone(&self.taken);
        let out = self.out.clone();
        loop {
            tokio::select! {
                biased;
                () = taken.notified() => {
                    if !self.still_owner().await {
                        return false;
                    }
                }
                permit = out.reserve() => {
                    return match permit {
                        Ok(permit) => {
                            permit.send(Ok(item));
                            true
                        }
                        Err(_) => false,
                    };
                }
            }
        }
    }

    /// At least every 5 s: where the stream stands, after checking it still
    /// owns its consumer.
    async fn checkpoint_if_due(&mut self) -> bool {
        if self.checkpointed.elapsed() < CHECKPOINT_EVERY {
            return true;
        }
        if !self.still_owner().await {
            return false;
        }
        self.checkpointed = Instant::now();
        let item = StreamItem::Checkpoint {
            head: self.next - 1,
            at: self.engine.now(),
        };
        self.send(item).await
    }

    /// Whether this stream still owns its consumer; if not, ends it with
    /// the reason (taken over: ABORTED; deleted: NOT_FOUND).
    async fn still_owner(&mut self) -> bool {
        let error = match self.engine.store.consumer(&self.ws, &self.consumer).await {
            Ok(Some(c)) if c.session == self.session => {
                let _ = self
                    .engine
                    .store
                    .touch_consumer(&self.ws, &self.consumer, self.engine.now())
                    .await;
                return true;
            }
            Ok(Some(_)) => EngineError::Aborted(format!(
                "a newer stream of consumer {:?} took over",
                self.consumer
            )),
            Ok(None) => EngineError::NotFound {
                what: "consumer",
                key: self.consumer.clone(),
            },
            // The database is away for a moment: keep streaming; the next look decides.
            Err(_) => return true,
        };
        self.end(error).await;
        false
    }

    /// Ends the stream with an error, unless the client has stopped reading.
    async fn end(&self, error: EngineError) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.out.send(Err(error))).await;
    }
}

//! Long-lived calls re-check their token. A `Subscribe` stream, a
//! `WatchRescore` or a `StreamEngagements` upload can stay open for hours;
//! the token that opened it is checked again every [`RECHECK_EVERY`] (the
//! look-up cache's own lifetime, so a revocation or an expiry ends the call
//! within two of them), and the call ends with UNAUTHENTICATED.
//!
//! The check wraps the call's bodies: a server stream ends with the
//! refusal in its trailers; a client stream's next message is the refusal,
//! which the service reports as it reports any broken upload (with what it
//! committed before).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::auth::{Authenticator, CACHE_TTL};

/// How often a long-lived call's token is checked again.
pub(crate) const RECHECK_EVERY: Duration = CACHE_TTL;

type Check = Pin<Box<dyn Future<Output = Option<&'static str>> + Send>>;

/// The token of one call, and how to check it.
#[derive(Clone, Debug)]
pub(crate) struct Watch {
    auth: Arc<Authenticator>,
    hash: String,
}

impl Watch {
    pub(crate) fn new(auth: Arc<Authenticator>, hash: String) -> Self {
        Self { auth, hash }
    }

    /// Why the call must end, if it must.
    fn check(&self) -> Check {
        let this = self.clone();
        Box::pin(async move { this.auth.refusal_now(&this.hash).await })
    }
}

/// When the next check is due, and the check under way.
struct Schedule {
    watch: Watch,
    tick: Pin<Box<tokio::time::Sleep>>,
    check: Option<Check>,
}

impl Schedule {
    fn new(watch: Watch) -> Self {
        Self {
            watch,
            tick: Box::pin(tokio::time::sleep(RECHECK_EVERY)),
            check: None,
        }
    }

    /// Ready with the refusal once a check finds the token dead; pending
    /// otherwise (the waker is registered for the next tick or check).
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<&'static str> {
        loop {
            if let Some(check) = &mut self.check {
                match check.as_mut().poll(cx) {
                    Poll::Ready(Some(refusal)) => return Poll::Ready(refusal),
                    Poll::Ready(None) => {
                        self.check = None;
                        self.tick
                            .as_mut()
                            .reset(tokio::time::Instant::now() + RECHECK_EVERY);
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            match self.tick.as_mut().poll(cx) {
                Poll::Ready(()) => self.check = Some(self.watch.check()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn unauthenticated(refusal: &'static str) -> tonic::Status {
    crate::auth::refusal_status(crate::auth::Refusal::Unauthenticated(refusal))
}

/// Where the refusal goes once the token is dead.
#[derive(Clone, Copy, Debug)]
enum End {
    /// A server stream: its headers went out with the first message, so
    /// the refusal ends it in the trailers.
    Trailers,
    /// A client stream: its next message is the refusal.
    Error,
}

/// A call's body (request or response) that ends with UNAUTHENTICATED once
/// its token is dead.
pub(crate) struct Watched {
    inner: tonic::body::Body,
    schedule: Schedule,
    end: End,
    ended: bool,
}

impl Watched {
    /// A server stream's response body.
    pub(crate) fn response(inner: tonic::body::Body, watch: Watch) -> Self {
        Self::new(inner, watch, End::Trailers)
    }

    /// A client stream's request body.
    pub(crate) fn request(inner: tonic::body::Body, watch: Watch) -> Self {
        Self::new(inner, watch, End::Error)
    }

    fn new(inner: tonic::body::Body, watch: Watch, end: End) -> Self {
        Self {
            inner,
            schedule: Schedule::new(watch),
            end,
            ended: false,
        }
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(refusal) = this.schedule.poll_refusal(cx) {
            this.ended = true;
            let status = unauthenticated(refusal);
            return Poll::Ready(Some(match this.end {
                End::Error => Err(status),
                End::Trailers => {
                    let mut trailers = http::HeaderMap::new();
                    status
                        .add_header(&mut trailers)
                        .map(|()| Frame::trailers(trailers))
                }
            }));
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

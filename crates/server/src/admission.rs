//! Admission: a bounded number of calls in flight. Past it, a call is
//! refused at once with RESOURCE_EXHAUSTED (and a retry hint) instead of
//! queueing without bound behind the database pool.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;

#[derive(Clone, Debug)]
pub(crate) struct AdmissionLayer {
    permits: Arc<Semaphore>,
}

impl AdmissionLayer {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_in_flight)),
        }
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            permits: Arc::clone(&self.permits),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Admission<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

/// The calls that do work in the database. Long-lived streams (event
/// subscriptions, re-score progress, engagement uploads) and health checks
/// are not counted: an upload stream may sit idle between messages, and it
/// applies one message at a time, so it never has more than one unit of
/// work in flight of its own.
fn counted(path: &str) -> bool {
    (path.starts_with("/leadflow.v1.LeadService/") || path.starts_with("/leadflow.v1.PolicyService/"))
        && path != "/leadflow.v1.PolicyService/WatchRescore"
        && path != "/leadflow.v1.LeadService/StreamEngagements"
}

fn overloaded() -> http::Response<tonic::body::Body> {
    crate::error::overloaded(
        "leadflow is at its limit of calls in flight; retry shortly",
        crate::error::RETRY_AFTER_OVERLOAD,
    )
    .into_http()
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Admission<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let permit = if counted(req.uri().path()) {
            match Arc::clone(&self.permits).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return Box::pin(async { Ok(overloaded()) }),
            }
        } else {
            None
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(req).await;
            drop(permit);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::counted;

    #[test]
    fn only_unary_database_calls_take_a_permit() {
        assert!(counted("/leadflow.v1.LeadService/RecordEngagement"));
        assert!(counted("/leadflow.v1.PolicyService/SimulatePolicy"));
        assert!(!counted("/leadflow.v1.LeadService/StreamEngagements"));
        assert!(!counted("/leadflow.v1.PolicyService/WatchRescore"));
        assert!(!counted("/leadflow.v1.TriggerService/Subscribe"));
        assert!(!counted("/grpc.health.v1.Health/Check"));
    }
}

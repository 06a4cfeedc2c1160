//! Admission: a bounded number of calls in flight. Past it, a call is
//! refused at once with RESOURCE_EXHAUSTED (and a retry hint) instead of
//! queueing without bound behind the database pool.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::layers::{Body, BoxFuture, Middleware};

/// At most so many counted calls in flight.
#[derive(Clone, Debug)]
pub(crate) struct Admission {
    permits: Arc<Semaphore>,
}

impl Admission {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_in_flight)),
        }
    }
}

/// The calls that take a permit: the method table's `Counted` ones.
fn counted(path: &str) -> bool {
    matches!(
        crate::methods::lookup(path),
        crate::methods::Lookup::Known(rpc) if rpc.admission == crate::methods::Admission::Counted
    )
}

fn overloaded() -> http::Response<Body> {
    crate::error::overloaded(
        "leadflow is at its limit of calls in flight; retry shortly",
        crate::error::RETRY_AFTER_OVERLOAD,
    )
    .into_http()
}

impl Middleware for Admission {
    fn call<S>(
        &self,
        request: http::Request<Body>,
        mut next: S,
    ) -> BoxFuture<Result<http::Response<Body>, S::Error>>
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
        S::Future: Send + 'static,
    {
        let permit = if counted(request.uri().path()) {
            match Arc::clone(&self.permits).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return Box::pin(async { Ok(overloaded()) }),
            }
        } else {
            None
        };
        Box::pin(async move {
            let response = next.call(request).await;
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

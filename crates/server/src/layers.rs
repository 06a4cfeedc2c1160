//! The plumbing the server's tower layers share (observation, tokens,
//! admission): each is a [`Middleware`], an async function of a call and
//! the service below it, and [`MiddlewareLayer`] makes it a tower layer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The body of a gRPC call, both ways.
pub(crate) type Body = tonic::body::Body;
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a layer does with a call: answer it itself, or pass it to `next`
/// (and look at what comes back).
pub(crate) trait Middleware: Clone + Send + Sync + 'static {
    fn call<S>(
        &self,
        request: http::Request<Body>,
        next: S,
    ) -> BoxFuture<Result<http::Response<Body>, S::Error>>
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
        S::Future: Send + 'static;
}

/// A [`Middleware`] as a tower layer.
#[derive(Clone, Debug)]
pub(crate) struct MiddlewareLayer<M>(pub(crate) M);

impl<S, M: Clone> tower::Layer<S> for MiddlewareLayer<M> {
    type Service = MiddlewareService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        MiddlewareService {
            inner,
            middleware: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct MiddlewareService<S, M> {
    inner: S,
    middleware: M,
}

impl<S, M> tower::Service<http::Request<Body>> for MiddlewareService<S, M>
where
    M: Middleware,
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The service that was polled ready goes with this call; a clone,
        // not yet ready, stays for the next.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        self.middleware.call(request, ready)
    }
}

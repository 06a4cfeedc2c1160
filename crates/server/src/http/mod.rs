//! The HTTP side: a funnel dashboard for people, server-rendered HTML with
//! inline SVG charts and a few lines of inline script for the live tail —
//! nothing fetched from elsewhere, so it works offline — and `/metrics` for
//! a Prometheus scrape.
//!
//! With authentication on, every page needs a token with `analytics:read`:
//! `authorization: Bearer …`, or the cookie `/login` sets from a form. The
//! page shows that token's workspace only, and no personal field: leads by
//! their opaque id.
//!
//! # Layout
//!
//! A request goes down the list, and a change usually touches one file:
//!
//! - `routes.rs`: the paths, what each answers, the response headers.
//! - `auth.rs`: who is calling — bearer header or cookie, and without
//!   tokens the loopback Host guard.
//! - `filters.rs`: the dashboard's query string as a funnel query.
//! - `load.rs`: the engine calls a page needs.
//! - `views/`: the HTML and SVG, as templates that escape what they are
//!   given; numbers are worded by [`crate::present`].

mod auth;
mod filters;
mod leads;
mod load;
mod routes;
mod views;

use std::sync::Arc;

use leadflow_engine::Engine;

use crate::auth::Authenticator;
use crate::metrics::Metrics;

pub(crate) use filters::{Filters, query_of};
pub(crate) use routes::router;

/// Pages rendered at once, at most: more wait for a free slot up to
/// [`routes::BUSY_WAIT`], then get 503.
const PAGES_AT_ONCE: usize = 4;

/// What every handler of the HTTP side shares.
#[derive(Debug)]
pub(crate) struct Http {
    engine: Engine,
    auth: Arc<Authenticator>,
    /// Listening on loopback only: the login cookie may go over plain HTTP.
    loopback: bool,
    pages: tokio::sync::Semaphore,
    metrics: Arc<Metrics>,
}

impl Http {
    pub(crate) fn new(
        engine: Engine,
        auth: Arc<Authenticator>,
        loopback: bool,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            engine,
            auth,
            loopback,
            pages: tokio::sync::Semaphore::new(PAGES_AT_ONCE),
            metrics,
        }
    }
}

//! The paths of the HTTP side and what each answers: who may ask is
//! `auth`'s, what is read `load`'s, how it looks `views`'.

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::Markup;
use serde::Deserialize;

use super::auth::{COOKIE, check_token, may_read_profiles, principal_of};
use super::filters::{Filters, query_of};
use super::{Http, load, views};
use crate::auth::Principal;

/// How long a page waits for a free slot before the dashboard says it is
/// busy.
pub(super) const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

const UNREADABLE: &str = "the data could not be read; retry";

pub(crate) fn router(state: Arc<Http>) -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard", get(dashboard))
        .route("/dashboard/tail", get(tail))
        .route("/dashboard/leads", get(lead_search))
        .route("/dashboard/leads/{id}", get(lead_page))
        .route("/dashboard/accounts", get(accounts_page))
        .route("/login", get(login_form).post(login))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::map_response(harden))
        .with_state(state)
}

/// Every page: nothing from elsewhere, never in a frame, never sniffed.
/// Inline styles and scripts are allowed: the page has a few of its own and
/// shows nothing a template did not escape.
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A page of the caller's data: never kept by a cache, which might show it
/// to someone else or after a sign-out.
fn private_html(markup: Markup) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        markup.into_string(),
    )
        .into_response()
}

/// A refusal or a failure as a page that says why; a 401 says how to
/// authenticate.
fn page_error(status: StatusCode, message: &str) -> Response {
    let body = views::error_page(message).into_string();
    let mut response = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    challenge(&mut response, status);
    response
}

fn challenge(response: &mut Response, status: StatusCode) {
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"leadflow\""),
        );
    }
}

/// The caller of a dashboard page; a refusal as a page.
async fn caller(state: &Http, headers: &HeaderMap) -> Result<Principal, Response> {
    principal_of(state, headers)
        .await
        .map_err(|(status, message)| page_error(status, &message))
}

async fn dashboard(
    State(state): State<Arc<Http>>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
) -> Response {
    let principal = match caller(&state, &headers).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let (query, by) =
        match query_of(&filters, state.engine.now()).and_then(|q| Ok((q, filters.attribution()?))) {
            Ok(asked) => asked,
            Err(message) => return page_error(StatusCode::BAD_REQUEST, &message),
        };
    let Ok(Ok(_slot)) = tokio::time::timeout(BUSY_WAIT, state.pages.acquire()).await else {
        return page_error(StatusCode::SERVICE_UNAVAILABLE, "the dashboard is busy; retry");
    };
    let ws = principal.workspace.as_str();
    match load::dashboard(&state.engine, ws, &query, by).await {
        Ok(data) => private_html(views::dashboard(ws, &query, &data)),
        Err(e) => {
            tracing::warn!(error = %e, "the dashboard could not be read");
            page_error(StatusCode::SERVICE_UNAVAILABLE, UNREADABLE)
        }
    }
}

/// The lead search page: the form, and the leads it finds now.
async fn lead_search(
    State(state): State<Arc<Http>>,
    headers: HeaderMap,
    Query(form): Query<super::leads::SearchForm>,
) -> Response {
    let principal = match caller(&state, &headers).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let query = match form.query() {
        Ok(q) => q,
        Err(message) => return page_error(StatusCode::BAD_REQUEST, &message),
    };
    let Ok(Ok(_slot)) = tokio::time::timeout(BUSY_WAIT, state.pages.acquire()).await else {
        return page_error(StatusCode::SERVICE_UNAVAILABLE, "the dashboard is busy; retry");
    };
    let profiles = may_read_profiles(&state, &headers).await;
    match state.engine.search_leads(&principal.workspace, &query).await {
        Ok(page) => private_html(views::lead_search(&form, &page, profiles)),
        Err(leadflow_engine::EngineError::InvalidArgument { violations, .. }) => {
            let message: Vec<String> = violations.iter().map(ToString::to_string).collect();
            page_error(StatusCode::BAD_REQUEST, &message.join("; "))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the lead search could not be read");
            page_error(StatusCode::SERVICE_UNAVAILABLE, UNREADABLE)
        }
    }
}

/// A lead's page: why it is where it is.
async fn lead_page(
    State(state): State<Arc<Http>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let principal = match caller(&state, &headers).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    if id.is_empty() || id.chars().count() > 200 {
        return page_error(StatusCode::BAD_REQUEST, "id: not a lead id");
    }
    let Ok(Ok(_slot)) = tokio::time::timeout(BUSY_WAIT, state.pages.acquire()).await else {
        return page_error(StatusCode::SERVICE_UNAVAILABLE, "the dashboard is busy; retry");
    };
    let key = leadflow_engine::LeadKey::Id(id);
    let profiles = may_read_profiles(&state, &headers).await;
    match state.engine.lead_page(&principal.workspace, &key, 500).await {
        Ok(detail) => private_html(views::lead_page(&detail, state.engine.now(), profiles)),
        Err(leadflow_engine::EngineError::NotFound { .. }) => {
            page_error(StatusCode::NOT_FOUND, "no such lead")
        }
        Err(e) => {
            tracing::warn!(error = %e, "the lead page could not be read");
            page_error(StatusCode::SERVICE_UNAVAILABLE, UNREADABLE)
        }
    }
}

/// The account view: accounts per stage, and the top accounts by score
/// with their buying group — nothing personal (no member is named).
async fn accounts_page(State(state): State<Arc<Http>>, headers: HeaderMap) -> Response {
    let principal = match caller(&state, &headers).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let Ok(Ok(_slot)) = tokio::time::timeout(BUSY_WAIT, state.pages.acquire()).await else {
        return page_error(StatusCode::SERVICE_UNAVAILABLE, "the dashboard is busy; retry");
    };
    let ws = principal.workspace.as_str();
    match load::accounts(&state.engine, ws).await {
        Ok(data) => private_html(views::accounts(ws, &data)),
        Err(e) => {
            tracing::warn!(error = %e, "the account view could not be read");
            page_error(StatusCode::SERVICE_UNAVAILABLE, UNREADABLE)
        }
    }
}

/// The live tail as an HTML fragment, for the page's script.
async fn tail(State(state): State<Arc<Http>>, headers: HeaderMap) -> Response {
    let principal = match caller(&state, &headers).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    match load::tail(&state.engine, &principal.workspace).await {
        Ok(tail) => private_html(views::tail_rows(&tail)),
        Err(e) => {
            tracing::warn!(error = %e, "the live tail could not be read");
            page_error(StatusCode::SERVICE_UNAVAILABLE, UNREADABLE)
        }
    }
}

async fn login_form() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        views::login_page().into_string(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct Login {
    token: String,
}

/// A token from the form becomes a cookie the browser sends back, for
/// pages only (`HttpOnly`: no script reads it; `SameSite=Strict`: no other
/// site's link or form carries it), over TLS only unless the side listens
/// on loopback.
async fn login(State(state): State<Arc<Http>>, Form(form): Form<Login>) -> Response {
    let token = form.token.trim();
    if let Err(message) = check_token(&state, token).await {
        return page_error(StatusCode::UNAUTHORIZED, &message);
    }
    let secure = if state.loopback { "" } else { "; Secure" };
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}");
    let mut response = Redirect::to("/dashboard").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The metrics of the caller's workspace, for a Prometheus scrape, let in
/// as a dashboard page is: with tokens, one with `analytics:read`; without,
/// a loopback host, for the workspace every call acts for. Counts per
/// stage, method and consumer, nothing about a lead.
async fn metrics(State(http): State<Arc<Http>>, headers: HeaderMap) -> Response {
    let principal = match principal_of(&http, &headers).await {
        Ok(p) => p,
        Err((status, message)) => {
            // a scraper reads text, not a page
            let mut response = (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{message}\n"),
            )
                .into_response();
            challenge(&mut response, status);
            return response;
        }
    };
    match http.metrics.render(&principal.workspace).await {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not render metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

//! Bearer tokens: who calls, for which workspace, with which scopes.
//!
//! A token is a 256-bit random secret shown once at creation; the database
//! keeps its SHA-256 only. Every call to a leadflow service carries it in
//! `authorization: Bearer …`; the layer here looks it up (a few seconds'
//! cache, so a revocation reaches every replica within [`CACHE_TTL`] of the
//! engine's clock),
//! checks the scope the method needs (the method table, `methods.rs`) and hands the
//! services a [`Principal`]. Health checks and reflection stay open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use leadflow_domain::{Span, Timestamp};
use leadflow_engine::Engine;
use leadflow_engine::Token;
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::layers::{Body, BoxFuture, Middleware};
use crate::methods::{self, Lookup, Scope};
use crate::watch::{Watch, Watched};
use tonic_types::{ErrorDetails, StatusExt};

/// How long a looked-up token is trusted before it is read again, on the
/// engine's clock.
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// What a token may do.
pub const SCOPES: [&str; 11] = [
    "leads:read",
    "leads:write",
    "engagements:write",
    "transitions:write",
    "policy:admin",
    "triggers:subscribe",
    "analytics:read",
    "accounts:read",
    "accounts:write",
    "owners:admin",
    "webhooks:admin",
];

/// The caller of a request, as the services see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub workspace: String,
    /// The token's name (recorded beside the caller-supplied actor), or
    /// `anonymous` when auth is off.
    pub name: String,
    /// The token's id; `None` when auth is off.
    pub token: Option<String>,
}

impl Principal {
    /// What is recorded as the principal of what the call does: the
    /// token's name; nothing when auth is off.
    pub fn recorded_name(&self) -> Option<String> {
        self.token.as_ref().map(|_| self.name.clone())
    }
}

/// A new secret: `lft_` and 256 random bits, base64url.
pub fn new_secret() -> anyhow::Result<String> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    Ok(format!("lft_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// What is stored of a secret.
pub fn secret_hash(secret: &str) -> String {
    leadflow_engine::hex(&Sha256::digest(secret.as_bytes()))
}

/// Checks scopes given on the command line: every one known, at least one.
pub fn parse_scopes(list: &str) -> Result<Vec<String>, String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in list.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
        if !SCOPES.contains(&scope) {
            return Err(format!("unknown scope {scope:?}: one of {}", SCOPES.join(", ")));
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    if scopes.is_empty() {
        return Err(format!("at least one scope: {}", SCOPES.join(", ")));
    }
    Ok(scopes)
}

/// Looks tokens up, with a short cache.
#[derive(Debug)]
pub struct Authenticator {
    engine: Engine,
    /// Per token; `None`: unlimited.
    rate: Option<RateLimit>,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// `None`: auth is off and every call acts for this workspace.
    open_workspace: Option<String>,
    /// When each secret was looked up (the engine's clock), and what was found.
    cache: Mutex<HashMap<String, (Timestamp, Option<Token>)>>,
}

/// Why a call is refused.
#[derive(Debug, PartialEq)]
pub(crate) enum Refusal {
    Unauthenticated(&'static str),
    PermissionDenied(String),
    Unavailable,
    /// Over the token's rate; a call may succeed after this long.
    RateLimited(Duration),
}

/// Calls a token may make: `per_second` on average, `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl RateLimit {
    /// `per_second` calls a second, bursts of as many again.
    pub fn per_second(per_second: u32) -> Option<Self> {
        (per_second > 0).then(|| Self {
            per_second: f64::from(per_second),
            burst: f64::from(per_second),
        })
    }
}

/// A token bucket, filling on the engine's clock.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

/// How long from `earlier` to `later`; nothing when the clock went back.
fn elapsed(earlier: Timestamp, later: Timestamp) -> Duration {
    Duration::from_micros(u64::try_from(later.since(earlier).as_micros()).unwrap_or(0))
}

impl Bucket {
    /// Takes one call's worth, or says how long until one is there.
    fn take(&mut self, limit: RateLimit, now: Timestamp) -> Result<(), Duration> {
        let refill = elapsed(self.at, now).as_secs_f64() * limit.per_second;
        self.tokens = (self.tokens + refill).min(limit.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / limit.per_second))
        }
    }
}

impl Authenticator {
    /// Tokens required.
    pub fn new(engine: Engine, rate: Option<RateLimit>) -> Self {
        Self {
            engine,
            rate,
            buckets: Mutex::default(),
            open_workspace: None,
            cache: Mutex::default(),
        }
    }

    /// No tokens: every call acts for `workspace` (loopback only).
    pub fn open(engine: Engine, workspace: &str) -> Self {
        Self {
            engine,
            rate: None,
            buckets: Mutex::default(),
            open_workspace: Some(workspace.to_owned()),
            cache: Mutex::default(),
        }
    }

    async fn token(&self, hash: &str) -> Result<Option<Token>, Refusal> {
        if let Some((at, token)) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
            && fresh(*at, self.engine.now())
        {
            return Ok(token.clone());
        }
        let token = self.engine.token_by_hash(hash).await.map_err(|e| {
            tracing::warn!(error = %e, "token look-up failed");
            Refusal::Unavailable
        })?;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        // Unknown secrets are cached too (a flood of bad tokens stays off
        // the database); the map is cleared when it grows large.
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(hash.to_owned(), (self.engine.now(), token.clone()));
        Ok(token)
    }

    async fn principal(&self, path: &str, authorization: Option<&str>) -> Result<Option<Principal>, Refusal> {
        // Every leadflow method has its scope in the method table; one
        // missing from it is refused to every token.
        let scope = match methods::lookup(path) {
            Lookup::Known(rpc) => match rpc.scope {
                Scope::Open => return Ok(None),
                Scope::Needs(scope) => Some(scope),
            },
            Lookup::Unlisted => None,
            Lookup::Unknown => return Ok(None),
        };
        if let Some(ws) = &self.open_workspace {
            return Ok(Some(Principal {
                workspace: ws.clone(),
                name: "anonymous".to_owned(),
                token: None,
            }));
        }
        let secret = bearer(authorization).ok_or(Refusal::Unauthenticated(
            "a bearer token is required (authorization: Bearer …)",
        ))?;
        let token = self
            .token(&secret_hash(secret))
            .await?
            .ok_or(Refusal::Unauthenticated("the token is not valid"))?;
        if !token.is_live(self.engine.now()) {
            return Err(Refusal::Unauthenticated("the token is revoked or expired"));
        }
        match scope {
            Some(scope) if !token.scopes.iter().any(|s| s == scope) => {
                return Err(Refusal::PermissionDenied(format!(
                    "token {:?} lacks the scope {scope} that {path} needs",
                    token.name
                )));
            }
            Some(_) => {}
            None => {
                return Err(Refusal::PermissionDenied(format!(
                    "{path} is not a method any scope grants"
                )));
            }
        }
        if let Some(limit) = self.rate {
            let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
            let now = self.engine.now();
            let bucket = buckets.entry(token.id.clone()).or_insert_with(|| Bucket {
                tokens: limit.burst,
                at: now,
            });
            bucket.take(limit, now).map_err(Refusal::RateLimited)?;
        }
        Ok(Some(Principal {
            workspace: token.workspace,
            name: token.name,
            token: Some(token.id),
        }))
    }
}

/// Whether a look-up made at `at` may still be used at `now`: younger than
/// [`CACHE_TTL`], and not from the future (a clock set back reads again).
fn fresh(at: Timestamp, now: Timestamp) -> bool {
    now.since(at) >= Span::ZERO && elapsed(at, now) < CACHE_TTL
}

/// The secret of an `authorization: Bearer …` header.
fn bearer(authorization: Option<&str>) -> Option<&str> {
    authorization
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl Authenticator {
    /// Why a call made with the token of `hash` must end now (revoked,
    /// expired, gone), if it must. A failed look-up does not end it: the
    /// next check looks again.
    pub(crate) async fn refusal_now(&self, hash: &str) -> Option<&'static str> {
        match self.token(hash).await {
            Ok(Some(token)) if token.is_live(self.engine.now()) => None,
            Ok(Some(_)) => Some("the token was revoked or has expired"),
            Ok(None) => Some("the token is not valid"),
            Err(_) => None,
        }
    }

    /// Auth is off: every call acts for one workspace.
    pub(crate) fn is_open(&self) -> bool {
        self.open_workspace.is_some()
    }

    /// The caller of a dashboard page: as for `GetFunnel`, a token with
    /// `analytics:read` unless auth is off. The refusal's code and message.
    /// Whether the dashboard's caller may read leads' profiles: its token
    /// has `leads:read` (or tokens are off, as for `GetLead`).
    pub(crate) async fn may_read_profiles(&self, authorization: Option<&str>) -> bool {
        matches!(
            self.principal("/leadflow.v1.LeadService/GetLead", authorization)
                .await,
            Ok(Some(_))
        )
    }

    pub(crate) async fn dashboard_principal(
        &self,
        authorization: Option<&str>,
    ) -> Result<Principal, (Code, String)> {
        match self
            .principal("/leadflow.v1.AnalyticsService/GetFunnel", authorization)
            .await
        {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err((Code::Internal, "the dashboard has no scope".to_owned())),
            Err(Refusal::Unauthenticated(m)) => Err((Code::Unauthenticated, m.to_owned())),
            Err(Refusal::PermissionDenied(m)) => Err((Code::PermissionDenied, m)),
            Err(Refusal::Unavailable) => Err((
                Code::Unavailable,
                "the token could not be checked; retry".to_owned(),
            )),
            Err(Refusal::RateLimited(after)) => Err((
                Code::ResourceExhausted,
                format!("over the token's rate limit; retry in {} ms", after.as_millis()),
            )),
        }
    }
}

/// The status of a refusal.
pub(crate) fn refusal_status(refusal: Refusal) -> tonic::Status {
    let mut retry = None;
    let (code, reason, message) = match refusal {
        Refusal::Unauthenticated(m) => (Code::Unauthenticated, "UNAUTHENTICATED", m.to_owned()),
        Refusal::PermissionDenied(m) => (Code::PermissionDenied, "MISSING_SCOPE", m),
        Refusal::Unavailable => (
            Code::Unavailable,
            "TOKEN_LOOKUP_FAILED",
            "the token could not be checked; retry shortly".to_owned(),
        ),
        Refusal::RateLimited(wait) => {
            retry = Some(wait);
            (
                Code::ResourceExhausted,
                "RATE_LIMITED",
                "this token is over its rate of calls; retry after the delay given".to_owned(),
            )
        }
    };
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, crate::error::ERROR_DOMAIN, HashMap::new());
    if retry.is_some() {
        details.set_retry_info(retry);
    }
    tonic::Status::with_error_details(code, message, details)
}

/// Tokens on every call, as the method table asks.
#[derive(Clone, Debug)]
pub(crate) struct Auth {
    auth: Arc<Authenticator>,
}

impl Auth {
    pub(crate) fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl Middleware for Auth {
    fn call<S>(
        &self,
        mut req: http::Request<Body>,
        mut inner: S,
    ) -> BoxFuture<Result<http::Response<Body>, S::Error>>
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
        S::Future: Send + 'static,
    {
        let auth = Arc::clone(&self.auth);
        Box::pin(async move {
            let authorization = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let path = req.uri().path().to_owned();
            let watch = match auth.principal(&path, authorization.as_deref()).await {
                Ok(Some(principal)) => {
                    let watch = principal
                        .token
                        .is_some()
                        .then(|| bearer(authorization.as_deref()))
                        .flatten()
                        .filter(|_| matches!(methods::lookup(&path), Lookup::Known(rpc) if rpc.long_lived))
                        .map(|secret| Watch::new(Arc::clone(&auth), secret_hash(secret)));
                    req.extensions_mut().insert(principal);
                    watch
                }
                Ok(None) => None,
                Err(refusal) => return Ok(refusal_status(refusal).into_http()),
            };
            let Some(watch) = watch else {
                return inner.call(req).await;
            };
            let req = req.map(|body| Body::new(Watched::request(body, watch.clone())));
            let response = inner.call(req).await?;
            Ok(response.map(|body| Body::new(Watched::response(body, watch))))
        })
    }
}

/// The caller of a request that passed the auth layer.
pub(crate) fn principal<T>(request: &tonic::Request<T>) -> Result<&Principal, tonic::Status> {
    request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| tonic::Status::unauthenticated("no caller: the request did not pass authentication"))
}

/// Who calls, for the services.
pub(crate) fn caller<T>(request: &tonic::Request<T>) -> Result<Principal, tonic::Status> {
    Ok(principal(request)?.clone())
}

#[cfg(test)]
mod tests {
    use super::{parse_scopes, secret_hash};

    #[test]
    fn scopes_are_checked_and_deduplicated() {
        assert_eq!(
            parse_scopes("leads:read, engagements:write,leads:read").expect("valid"),
            ["leads:read", "engagements:write"]
        );
        assert!(
            parse_scopes("leads:reed")
                .expect_err("unknown")
                .contains("leads:read")
        );
        assert!(parse_scopes(" , ").is_err());
    }

    #[test]
    fn a_cached_look_up_lasts_its_ttl_on_the_engine_s_clock() {
        use super::{CACHE_TTL, fresh};
        use leadflow_domain::{Span, Timestamp};
        let at = Timestamp::from_secs(1_767_603_600);
        let ttl = Span::from_micros(i64::try_from(CACHE_TTL.as_micros()).unwrap_or(i64::MAX));
        assert!(fresh(at, at));
        assert!(fresh(
            at,
            at.saturating_add(ttl).saturating_sub(Span::from_micros(1))
        ));
        assert!(!fresh(at, at.saturating_add(ttl)), "stale at the TTL");
        assert!(
            !fresh(at, at.saturating_sub(Span::from_secs(1))),
            "a clock set back reads again"
        );
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        use super::{Bucket, RateLimit};
        use leadflow_domain::{Span, Timestamp};
        use std::time::Duration;
        let limit = RateLimit {
            per_second: 10.0,
            burst: 3.0,
        };
        let start = Timestamp::from_secs(1_767_603_600);
        let later = start.saturating_add(Span::from_micros(100_000));
        let mut bucket = Bucket {
            tokens: limit.burst,
            at: start,
        };
        for _ in 0..3 {
            assert!(bucket.take(limit, start).is_ok());
        }
        let wait = bucket.take(limit, start).expect_err("over the burst");
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert!(bucket.take(limit, later).is_ok(), "refilled");
        assert!(bucket.take(limit, later).is_err());
    }

    #[test]
    fn a_secret_is_stored_as_its_sha256() {
        assert_eq!(
            secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

//! Who calls a page or a scrape: a bearer header or the cookie `/login`
//! sets, checked as `GetFunnel` checks a call (`analytics:read`); without
//! tokens, a loopback host only.

use axum::http::{HeaderMap, StatusCode, header};

use super::Http;
use crate::auth::Principal;

/// The cookie `/login` sets.
pub(super) const COOKIE: &str = "leadflow_token";

/// A refusal: the status to answer with, and why, for the caller to read.
pub(super) type Refusal = (StatusCode, String);

/// The caller of a page or a scrape, from a bearer header or the login
/// cookie: as for `GetFunnel`, a token with `analytics:read` unless auth is
/// off, when the host must be a loopback one.
pub(super) async fn principal_of(state: &Http, headers: &HeaderMap) -> Result<Principal, Refusal> {
    let authorization = authorization(headers);
    if state.auth.is_open() && !loopback_host(headers) {
        return Err((
            StatusCode::FORBIDDEN,
            "without tokens the HTTP side answers to a loopback host only (localhost, 127.0.0.1, [::1])"
                .to_owned(),
        ));
    }
    state
        .auth
        .dashboard_principal(authorization.as_deref())
        .await
        .map_err(|(code, message)| (status_of(code), message))
}

/// Whether the caller (already a principal of the dashboard) may see
/// leads' profiles: its token has `leads:read`.
pub(super) async fn may_read_profiles(state: &Http, headers: &HeaderMap) -> bool {
    state
        .auth
        .may_read_profiles(authorization(headers).as_deref())
        .await
}

/// The bearer header, else the login cookie, as a bearer header.
fn authorization(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let from_cookie = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| format!("Bearer {value}"))
    };
    bearer.or_else(from_cookie)
}

/// A token the login form was given, if it is one: checked as a bearer
/// header would be, so a token that could not read the dashboard never
/// becomes a cookie.
pub(super) async fn check_token(state: &Http, token: &str) -> Result<(), String> {
    let well_formed = token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !well_formed {
        return Err("the token is not valid".to_owned());
    }
    state
        .auth
        .dashboard_principal(Some(&format!("Bearer {token}")))
        .await
        .map(drop)
        .map_err(|(_, message)| message)
}

/// The HTTP status of a gRPC refusal: a page is refused as the call would
/// be.
fn status_of(code: tonic::Code) -> StatusCode {
    match code {
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Without tokens (loopback only), a page is served for a loopback host
/// only: another site's name resolving to 127.0.0.1 (DNS rebinding) gets
/// nothing.
fn loopback_host(headers: &HeaderMap) -> bool {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(names_loopback)
}

/// Whether a Host header names this machine's loopback: an IPv4 literal in
/// 127.0.0.0/8, `[::1]`, or `localhost` (any case, with or without the root's
/// trailing dot, which names the same host and which no other site can
/// claim), each with or without a port. Anything else — a name that merely
/// starts like one (`127.0.0.1.nip.io`), another spelling of an address
/// (`2130706433`, `127.0.0.01`) — is refused: only the forms a browser sends
/// for a loopback address are known to be one.
fn names_loopback(host: &str) -> bool {
    let port_ok = |port: &str| {
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
    };
    if let Some(rest) = host.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        let port_fits = after.is_empty() || after.strip_prefix(':').is_some_and(port_ok);
        return port_fits
            && address
                .parse::<std::net::Ipv6Addr>()
                .is_ok_and(|a| a.is_loopback());
    }
    let name = match host.split_once(':') {
        Some((name, port)) if port_ok(port) => name,
        Some(_) => return false,
        None => host,
    };
    name.eq_ignore_ascii_case("localhost")
        || name.eq_ignore_ascii_case("localhost.")
        || name.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_count_as_loopback() {
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:65535",
            "127.1.2.3",
            "127.255.255.254:80",
            "[::1]",
            "[::1]:8080",
            "[0:0:0:0:0:0:0:1]",
        ] {
            assert!(names_loopback(host), "{host}");
        }
        for host in [
            "",
            "127.evil.example",
            "127.0.0.1.nip.io",
            "127.0.0.1.nip.io:8080",
            "localhost.evil.example",
            "evil.localhost",
            "localhost..",
            "128.0.0.1",
            "0.0.0.0",
            "127.0.0.01",
            "127.1",
            "2130706433",
            "0x7f000001",
            "127.0.0.1:",
            "127.0.0.1:+80",
            "127.0.0.1:65536",
            "127.0.0.1:80:80",
            "127.0.0.1 ",
            "::1",
            "[::1",
            "[::1]8080",
            "[::1]:",
            "[::1].evil.example",
            "[::2]",
            "[::ffff:127.0.0.1]",
            "[::1%25lo]",
        ] {
            assert!(!names_loopback(host), "{host:?}");
        }
    }

    #[test]
    fn refusals_keep_their_meaning_over_http() {
        assert_eq!(status_of(tonic::Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(tonic::Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(
            status_of(tonic::Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status_of(tonic::Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}

//! One webhook request: `POST` to the endpoint's URL on a connection
//! leadflow opens itself, so that the address it connects to is the one it
//! checked. Loopback, private, link-local and the other addresses of
//! [`refused_address`] are refused after resolution, unless allowed;
//! `http://` only when allowed; redirects are not followed (a 3xx is a
//! failed attempt); the response body is read up to [`MAX_BODY`] bytes;
//! the whole exchange is bounded by [`TIMEOUT`].

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use leadflow_domain::webhook::refused_address;

/// A request's whole exchange, from resolving the host to the response's head.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long the start of a response body is waited for, after its head:
/// the status decides, the body is only kept for `ListDeliveries`.
const BODY_WAIT: Duration = Duration::from_secs(2);
/// Bytes of a response body kept (for `ListDeliveries`); the rest is not read.
pub const MAX_BODY: usize = 1_024;

/// What requests may reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// `http://` URLs too (`webhooks_allow_http`).
    pub http: bool,
    /// Loopback, private and link-local addresses too
    /// (`webhooks_allow_private_addresses`).
    pub private: bool,
}

/// A response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Its first [`MAX_BODY`] bytes, as text (lossy).
    pub body: String,
}

/// Why a request got no response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The URL, or every address it resolves to, is not allowed.
    #[error("refused: {0}")]
    Refused(String),
    #[error("no connection: {0}")]
    Connect(String),
    #[error("no response within {}s", TIMEOUT.as_secs())]
    TimedOut,
    #[error("{0}")]
    Http(String),
}

/// Checks a URL as `CreateWebhook` takes it: `https://` (or `http://` when
/// allowed) with a host; the addresses are checked at every request.
pub fn check_url(url: &str, reach: Reach) -> Result<http::Uri, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if reach.http => {}
        Some("http") => return Err("http:// is not allowed: use https://".to_owned()),
        _ => return Err("not an https:// URL".to_owned()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("no host".to_owned());
    }
    if url.contains('@') && uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("credentials in the URL are not allowed: sign with the webhook's secret".to_owned());
    }
    Ok(uri)
}

/// Posts `body` with `headers` to `url`.
pub async fn post(
    url: &str,
    headers: &[(&str, String)],
    body: Bytes,
    reach: Reach,
) -> Result<Answer, Failure> {
    let response = tokio::time::timeout(TIMEOUT, exchange(url, headers, body, reach))
        .await
        .unwrap_or(Err(Failure::TimedOut))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut kept = Vec::new();
    let read = async {
        while kept.len() < MAX_BODY {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        kept.extend_from_slice(&data[..data.len().min(MAX_BODY - kept.len())]);
                    }
                }
                _ => break,
            }
        }
    };
    // A slow or broken body does not undo the answer.
    let _ = tokio::time::timeout(BODY_WAIT, read).await;
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&kept).into_owned(),
    })
}

async fn exchange(
    url: &str,
    headers: &[(&str, String)],
    body: Bytes,
    reach: Reach,
) -> Result<http::Response<hyper::body::Incoming>, Failure> {
    let uri = check_url(url, reach).map_err(Failure::Refused)?;
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let stream = connect(&host, port, reach).await?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = http::Request::post(path)
        .header(
            http::header::HOST,
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        )
        .header(
            http::header::USER_AGENT,
            concat!("leadflow/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| Failure::Http(e.to_string()))?;
    let response = if https {
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| Failure::Refused(format!("{host} is not a TLS server name: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, stream)
            .await
            .map_err(|e| Failure::Connect(format!("TLS: {e}")))?;
        send(TokioIo::new(tls), request).await?
    } else {
        send(TokioIo::new(stream), request).await?
    };
    Ok(response)
}

async fn send<T>(
    io: T,
    request: http::Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, Failure>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Failure::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| Failure::Http(e.to_string()))
}

/// A TCP connection to the first address of `host` that may be reached.
async fn connect(host: &str, port: u16, reach: Reach) -> Result<tokio::net::TcpStream, Failure> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Failure::Connect(format!("{host} does not resolve: {e}")))?
        .collect();
    let mut refused = None;
    let mut last_error = None;
    for address in addresses {
        if !reach.private
            && let Some(why) = refused_address(address.ip())
        {
            refused = Some(format!("{host} resolves to {} ({why})", address.ip()));
            continue;
        }
        match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last_error = Some(format!("{address}: {e}")),
        }
    }
    match (last_error, refused) {
        (Some(e), _) => Err(Failure::Connect(e)),
        (None, Some(why)) => Err(Failure::Refused(why)),
        (None, None) => Err(Failure::Connect(format!("{host} has no address"))),
    }
}

/// The TLS client: the Mozilla roots (webpki-roots), TLS 1.2 and 1.3.
fn tls_config() -> Arc<tokio_rustls::rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<tokio_rustls::rustls::ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        Arc::new(config.unwrap_or_else(|_| {
            tokio_rustls::rustls::ClientConfig::builder()
                .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
                .with_no_client_auth()
        }))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A one-request HTTP server on loopback answering `response`: its URL,
    /// and the request it got.
    async fn answering(response: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/hooks/leadflow?x=1",
            listener.local_addr().expect("address")
        );
        let got = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buffer = vec![0u8; 8192];
            let mut request = Vec::new();
            loop {
                let n = socket.read(&mut buffer).await.unwrap_or(0);
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if n == 0 || (text.contains("\r\n\r\n") && text.ends_with("}")) {
                    break;
                }
            }
            let _ = socket.write_all(response.as_bytes()).await;
            String::from_utf8_lossy(&request).into_owned()
        });
        (url, got)
    }

    const ALLOWED: Reach = Reach {
        http: true,
        private: true,
    };

    #[tokio::test]
    async fn a_request_is_posted_with_its_headers_and_the_answer_kept() {
        let (url, got) =
            answering("HTTP/1.1 202 Accepted\r\ncontent-length: 5\r\nconnection: close\r\n\r\nthanks").await;
        let answer = post(
            &url,
            &[("webhook-id", "e1".to_owned())],
            Bytes::from_static(b"{\"a\":1}"),
            ALLOWED,
        )
        .await
        .expect("answered");
        assert_eq!(
            answer,
            Answer {
                status: 202,
                body: "thank".to_owned()
            }
        );
        let request = got.await.expect("request");
        assert!(
            request.starts_with("POST /hooks/leadflow?x=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.to_ascii_lowercase().contains("webhook-id: e1\r\n"),
            "{request}"
        );
        assert!(request.ends_with("{\"a\":1}"), "{request}");
    }

    #[tokio::test]
    async fn a_redirect_is_an_answer_not_followed() {
        let (url, _got) =
            answering("HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\n\r\n")
                .await;
        let answer = post(&url, &[], Bytes::from_static(b"{}"), ALLOWED)
            .await
            .expect("answered");
        assert_eq!(answer.status, 302);
    }

    #[tokio::test]
    async fn private_addresses_and_plain_http_are_refused_unless_allowed() {
        let strict = Reach::default();
        for url in [
            "http://127.0.0.1:9/",
            "https://127.0.0.1:9/",
            "https://localhost:9/",
            "https://[::1]:9/",
            "https://10.0.0.1/",
        ] {
            let refused = post(
                url,
                &[],
                Bytes::new(),
                Reach {
                    http: true,
                    private: false,
                },
            )
            .await;
            assert!(matches!(refused, Err(Failure::Refused(_))), "{url}: {refused:?}");
        }
        assert!(check_url("http://example.com/", strict).is_err());
        assert!(check_url("https://example.com/", strict).is_ok());
        assert!(check_url("ftp://example.com/", strict).is_err());
        assert!(check_url("https://user:pw@example.com/", strict).is_err());
        assert!(check_url("example.com", strict).is_err());
    }
}

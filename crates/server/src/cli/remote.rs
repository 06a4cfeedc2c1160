//! The one client of every command that talks to a running server: the
//! same flags, TLS when asked, the token on every call.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

/// How a command reaches a running server: the same flags for every
/// command that talks to one.
#[derive(Debug, Args)]
pub(super) struct Remote {
    /// The server's gRPC address; https://… for a server with TLS.
    #[arg(
        long = "against",
        alias = "server",
        env = "LEADFLOW_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// A bearer token (`leadflow token create`), needed unless the server
    /// runs without tokens. The variable keeps it out of process lists.
    #[arg(long, env = "LEADFLOW_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// TLS: the CA certificate (PEM) that signed the server's certificate.
    #[arg(long, env = "LEADFLOW_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Mutual TLS: this client's certificate (PEM), with --client-key.
    #[arg(long, env = "LEADFLOW_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Mutual TLS: this client's private key (PEM), with --client-cert.
    #[arg(long, env = "LEADFLOW_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<PathBuf>,
}

/// Puts the caller's bearer token, if any, on every call.
#[derive(Clone, Debug)]
pub(super) struct Bearer(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connection to a server, with the token.
pub(super) type Connection =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

impl Remote {
    /// Connects as the flags say: TLS for an https:// address (with the CA
    /// and the client certificate given), the token on every call.
    pub(super) async fn connect(&self) -> anyhow::Result<Connection> {
        let server = self.server.as_str();
        let bearer = match &self.token {
            Some(token) => {
                let mut value: tonic::metadata::AsciiMetadataValue = format!("Bearer {}", token.trim())
                    .parse()
                    .context("the token has characters no header can carry")?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut endpoint = tonic::transport::Endpoint::from_shared(server.to_owned())
            .with_context(|| format!("bad server address {server:?}"))?
            .connect_timeout(std::time::Duration::from_secs(10));
        let https = endpoint.uri().scheme_str() == Some("https");
        if https {
            // Only the CA given is trusted: the client carries no system roots.
            let ca = self.ca_cert.as_deref().with_context(|| {
                format!("{server} is https://: --ca-cert names the CA that signed its certificate")
            })?;
            let read =
                |path: &Path| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
            let mut tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
            if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
                tls = tls.identity(tonic::transport::Identity::from_pem(read(cert)?, read(key)?));
            }
            endpoint = endpoint.tls_config(tls).context("cannot set up TLS")?;
        } else if self.ca_cert.is_some() || self.client_cert.is_some() {
            anyhow::bail!("--ca-cert and --client-cert are for https:// servers, and {server} is not one");
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach leadflow at {server}"))?;
        Ok(tonic::service::interceptor::InterceptedService::new(
            channel,
            Bearer(bearer),
        ))
    }
}

pub(super) fn rpc_error(s: tonic::Status) -> anyhow::Error {
    let hint = match s.code() {
        tonic::Code::Unauthenticated => " (give a token with --token or LEADFLOW_TOKEN)",
        _ => "",
    };
    anyhow::anyhow!("{:?}: {}{hint}", s.code(), s.message())
}

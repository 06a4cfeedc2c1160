//! TLS and mutual TLS, with certificates made for the test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A CA, a server certificate for localhost and a client certificate, in PEM.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
    /// A client certificate from a CA the server does not trust.
    stranger: (String, String),
}

/// A certificate authority of the test's own.
pub(crate) fn authority(name: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

/// A certificate for `names` signed by `issuer`, and its key (PEM).
pub(crate) fn leaf(
    names: &[&str],
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn pki() -> anyhow::Result<Pki> {
    let ca = authority("leadflow test CA")?;
    let other = authority("someone else's CA")?;
    Ok(Pki {
        ca: ca.pem(),
        server: leaf(&["localhost", "127.0.0.1"], &ca)?,
        client: leaf(&["nurture-engine"], &ca)?,
        stranger: leaf(&["intruder"], &other)?,
    })
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

async fn call(endpoint: Endpoint) -> Result<pb::CreateLeadResponse, String> {
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    LeadServiceClient::new(channel)
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit("tls@acme.com"),
            ..pb::CreateLeadRequest::default()
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| format!("{:?}: {}", e.code(), e.message()))
}

async fn mutual_tls_admits_only_clients_the_ca_signed(db: Db) -> anyhow::Result<()> {
    let database = fresh_database(db).await?;
    let pki = pki()?;
    let dir = std::env::temp_dir().join(format!("leadflow-tls-{}-{db:?}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = leadflow_server::Config {
        tls_cert: Some(write(&dir, "server.pem", &pki.server.0)?),
        tls_key: Some(write(&dir, "server.key", &pki.server.1)?),
        tls_client_ca: Some(write(&dir, "ca.pem", &pki.ca)?),
        ..loopback(&database.url)
    };
    let engine = engine_on(&database.url).await?;
    let running = leadflow_server::start(&config, engine.clone(), NO_HTTP).await?;
    let port = running.addr.port();
    let https = || Endpoint::from_shared(format!("https://localhost:{port}")).expect("endpoint");
    let trust = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pki.ca))
            .domain_name("localhost")
    };

    // A client with a certificate the CA signed gets through.
    let admitted =
        call(https().tls_config(trust().identity(Identity::from_pem(&pki.client.0, &pki.client.1)))?).await;
    assert!(admitted.is_ok(), "{admitted:?}");
    // Without a client certificate, with one of another CA, or in plain text: refused.
    let anonymous = call(https().tls_config(trust())?).await;
    assert!(anonymous.is_err(), "no client certificate");
    let stranger =
        call(https().tls_config(trust().identity(Identity::from_pem(&pki.stranger.0, &pki.stranger.1)))?)
            .await;
    assert!(stranger.is_err(), "a certificate of another CA");
    let plain = call(Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?).await;
    assert!(plain.is_err(), "plain text");
    assert_eq!(
        engine
            .store()
            .row_counts(leadflow_server::DEFAULT_WORKSPACE)
            .await?[0],
        1,
        "one lead, the admitted one"
    );

    running.shutdown(Duration::from_secs(2)).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

scenarios! {
    mutual_tls_admits_only_clients_the_ca_signed = each_database(),
}

//! PostgreSQL goes away under load and comes back: calls fail with
//! UNAVAILABLE meanwhile (never INTERNAL), the service recovers by itself,
//! and every engagement it acknowledged is stored.
//!
//! The outage is a proxy between leadflow and PostgreSQL that drops every
//! connection and refuses new ones for a while, as a restart does, without
//! disturbing the other tests that share the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use leadflow_store::testing::TestDatabase;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards connections to `upstream` while `up`; `cut` drops them all.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, links2) = (Arc::clone(&up), Arc::clone(&links));
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                links2.lock().expect("links").push(link);
            }
        });
        Ok(Self {
            port,
            up,
            links,
            accept,
        })
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// `postgres://user@host:port/db?…` → (`host:port`, the URL through `proxy_port`).
fn through_proxy(url: &str, proxy_port: u16) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (credentials, rest) = rest.rsplit_once('@').map_or(("", rest), |(c, r)| (c, r));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host_port, tail) = rest.split_at(end);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let at = if credentials.is_empty() {
        String::new()
    } else {
        format!("{credentials}@")
    };
    Some((host_port, format!("{scheme}://{at}127.0.0.1:{proxy_port}{tail}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_unavailable_and_loses_nothing_acknowledged() -> anyhow::Result<()> {
    let Some(database) = TestDatabase::new(Db::Postgres).await else {
        return Ok(());
    };
    let upstream = through_proxy(&database.url, 0)
        .map(|(h, _)| h)
        .expect("a postgres URL");
    let proxy = Proxy::start(upstream).await?;
    let (_, url) = through_proxy(&database.url, proxy.port).expect("a postgres URL");
    let engine = engine_on(&url).await?;
    let (running, channel) = serve(&engine, &leadflow_server::Workers::default()).await?;
    let mut leads = LeadServiceClient::new(channel);
    let lead = leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit("outage@acme.com"),
            ..pb::CreateLeadRequest::default()
        })
        .await?
        .into_inner()
        .lead
        .expect("lead");

    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    let started = Instant::now();
    let mut cut_at = None;
    let mut restored_at = None;
    let mut n = 0;
    // Before, during (2 s) and after the outage, until calls succeed again.
    loop {
        let elapsed = started.elapsed();
        if cut_at.is_none() && elapsed > Duration::from_millis(500) {
            proxy.cut();
            cut_at = Some(Instant::now());
        }
        if let Some(at) = cut_at
            && restored_at.is_none()
            && at.elapsed() > Duration::from_secs(2)
        {
            proxy.restore();
            restored_at = Some(Instant::now());
        }
        let id = format!("o-{n}");
        n += 1;
        let call = leads.record_engagement(pb::RecordEngagementRequest {
            lead: by_id(&lead.id),
            engagement: Some(engagement(&id, "webinar_attended")),
        });
        match tokio::time::timeout(Duration::from_secs(15), call).await {
            Ok(Ok(_)) => {
                acknowledged.push(id);
                if let Some(at) = restored_at
                    && at.elapsed() > Duration::from_millis(500)
                {
                    break;
                }
            }
            Ok(Err(status)) => refused.push(status),
            Err(_) => anyhow::bail!("a call hung for 15 s"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the service did not recover"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!refused.is_empty(), "the outage was felt");
    for status in &refused {
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }
    // Every acknowledged engagement is stored (read without the proxy).
    let store =
        leadflow_store::Store::connect(&database.url, &leadflow_store::StoreOptions::default()).await?;
    let stored: std::collections::HashSet<String> = store
        .engagements_of(leadflow_server::DEFAULT_WORKSPACE, &lead.id)
        .await?
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    for id in &acknowledged {
        assert!(stored.contains(id), "acknowledged {id} is missing");
    }
    assert!(
        acknowledged.len() > 10,
        "calls before and after the outage succeeded"
    );
    store.close().await;
    running.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

#[test]
fn urls_are_routed_through_the_proxy() {
    assert_eq!(
        through_proxy("postgres://postgres@127.0.0.1:5432/db_1?x=y", 7000),
        Some((
            "127.0.0.1:5432".to_owned(),
            "postgres://postgres@127.0.0.1:7000/db_1?x=y".to_owned()
        ))
    );
    assert_eq!(
        through_proxy("postgres://localhost/db", 7000).map(|(h, _)| h),
        Some("localhost:5432".to_owned())
    );
}

//! PostgreSQL goes away under load and comes back: calls fail with
//! UNAVAILABLE meanwhile (never INTERNAL), the service recovers by itself,
//! and every engagement it acknowledged is stored.
//!
//! Two outages: a proxy between leadflow and PostgreSQL that drops every
//! connection and refuses new ones for a while, and a real restart (an
//! immediate stop, as a crash, then a start with recovery) of a PostgreSQL
//! cluster the test runs itself — neither disturbs the server that the
//! other tests share.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
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

/// Records engagements on one lead through leadflow on `service_url`, one
/// call after another, while `outage` runs beside them; keeps going until
/// calls have succeeded for 500 ms after it ended. Then checks, on
/// `check_url`, that every acknowledged engagement is stored and that every
/// refusal was UNAVAILABLE; returns the refusals.
async fn calls_through<F>(service_url: &str, check_url: &str, outage: F) -> anyhow::Result<Vec<tonic::Status>>
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    // a call waits half a second for the database, then is refused
    let config = leadflow_server::Config {
        db_acquire_timeout_ms: 500,
        ..loopback(service_url)
    };
    let engine = leadflow_server::open_engine(&config, Arc::new(leadflow_engine::SystemClock)).await?;
    let (running, channel) = serve(&engine, &config, NO_HTTP).await?;
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
    let over = Arc::new(Mutex::new(None::<Instant>));
    let outage = {
        let over = Arc::clone(&over);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let result = outage.await;
            *over.lock().expect("lock") = Some(Instant::now());
            result
        })
    };
    let mut n = 0;
    loop {
        let id = format!("o-{n}");
        n += 1;
        let call = leads.record_engagement(pb::RecordEngagementRequest {
            lead: by_id(&lead.id),
            engagement: Some(engagement(&id, "webinar_attended")),
        });
        match tokio::time::timeout(Duration::from_secs(15), call).await {
            Ok(Ok(_)) => {
                acknowledged.push(id);
                if over
                    .lock()
                    .expect("lock")
                    .is_some_and(|at| at.elapsed() > Duration::from_millis(500))
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
    outage.await??;
    running.shutdown(Duration::from_secs(2)).await;

    let store = leadflow_store::Store::connect(check_url, &leadflow_store::StoreOptions::default()).await?;
    let stored: std::collections::HashSet<String> = store
        .engagements_of(leadflow_server::DEFAULT_WORKSPACE, &lead.id)
        .await?
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    store.close().await;
    for id in &acknowledged {
        assert!(stored.contains(id), "acknowledged {id} is missing");
    }
    assert!(
        acknowledged.len() > 10,
        "calls before and after the outage succeeded"
    );
    assert!(!refused.is_empty(), "the outage was felt");
    for status in &refused {
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }
    Ok(refused)
}

async fn a_database_outage_is_unavailable_and_loses_nothing_acknowledged() -> anyhow::Result<()> {
    let database = fresh_database(Db::Postgres).await?;
    let upstream = through_proxy(&database.url, 0)
        .map(|(h, _)| h)
        .expect("a postgres URL");
    let proxy = Arc::new(Proxy::start(upstream).await?);
    let (_, url) = through_proxy(&database.url, proxy.port).expect("a postgres URL");
    let cutter = Arc::clone(&proxy);
    calls_through(&url, &database.url, async move {
        cutter.cut();
        tokio::time::sleep(Duration::from_secs(2)).await;
        cutter.restore();
        Ok(())
    })
    .await?;
    Ok(())
}

async fn a_postgres_restart_is_unavailable_and_loses_nothing_acknowledged() -> anyhow::Result<()> {
    let cluster = Arc::new(Cluster::create()?);
    let restarter = Arc::clone(&cluster);
    let refused = calls_through(&cluster.url(), &cluster.url(), async move {
        // as a crash does: no checkpoint, connections dropped, recovery at start
        tokio::task::spawn_blocking(move || {
            restarter.stop("immediate")?;
            std::thread::sleep(Duration::from_secs(2));
            restarter.start()
        })
        .await?
    })
    .await?;
    assert!(
        refused.len() > 1,
        "calls were refused all through the outage, not only those it cut"
    );
    Ok(())
}

/// A PostgreSQL cluster of the test's own, in a scratch directory on a free
/// port, that the test may stop and start. Needs the server's binaries
/// (`initdb`, `pg_ctl`); as root it runs them as the `postgres` user.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    /// An error when no PostgreSQL binaries are installed (the harness
    /// ignores the test then, see [`INITDB`]).
    fn create() -> anyhow::Result<Self> {
        let bin =
            postgres_binaries().ok_or_else(|| anyhow::anyhow!("no initdb under /usr/lib/postgresql"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("leadflow-pg-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let as_postgres = std::fs::metadata("/proc/self")?.uid() == 0;
        let cluster = Self {
            bin,
            dir,
            port,
            as_postgres,
        };
        if as_postgres {
            // initdb refuses to run as root
            cluster.run("chown", &["-R", "postgres:", &cluster.dir.display().to_string()])?;
        }
        let data = cluster.data();
        cluster.pg(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        )?;
        cluster.start()?;
        Ok(cluster)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn start(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").display().to_string();
        self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "start"],
        )
    }

    fn stop(&self, mode: &str) -> anyhow::Result<()> {
        self.pg("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "stop"])
    }

    fn pg(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(tool).display().to_string();
        if self.as_postgres {
            let mut all = vec!["-u", "postgres", "--", path.as_str()];
            all.extend_from_slice(args);
            self.run("runuser", &all)
        } else {
            self.run(&path, args)
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let out = std::process::Command::new(program)
            .args(args)
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn urls_are_routed_through_the_proxy() {
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

scenarios! {
    a_database_outage_is_unavailable_and_loses_nothing_acknowledged = once().needs(&POSTGRES),
    a_postgres_restart_is_unavailable_and_loses_nothing_acknowledged = once().needs(&INITDB),
    urls_are_routed_through_the_proxy = once(),
}

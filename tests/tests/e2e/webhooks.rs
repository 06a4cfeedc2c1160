//! Webhooks end to end: a receiver in the test takes the POSTs; their
//! signatures are verified by an independent implementation of Standard
//! Webhooks (the Python `standardwebhooks` library); retries after a 500
//! and a time-out keep each lead's order while other leads go on; a
//! delivery given up lets its lead go on; private addresses are refused
//! where not allowed; bad input is refused field by field.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use leadflow_proto::v1::webhook_service_client::WebhookServiceClient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::transport::Channel;

use crate::replicas::Replica;

/// A request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    headers: BTreeMap<String, String>,
    body: String,
    /// The status answered (none: the receiver hung).
    answered: Option<u16>,
}

impl Got {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }

    fn lead(&self) -> String {
        self.json()["lead"]["id"].as_str().unwrap_or_default().to_owned()
    }

    fn sequence(&self) -> i64 {
        // proto3 JSON writes 64-bit integers as strings.
        self.json()["sequence"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// What the receiver answers a request: a status, or nothing for a while.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    Hang(Duration),
}

type Script = Arc<Mutex<Box<dyn FnMut(&Got) -> Reply + Send>>>;

/// An HTTP/1.1 receiver on loopback that answers per its script and keeps
/// every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    async fn start(script: impl FnMut(&Got) -> Reply + Send + 'static) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hooks/leadflow", listener.local_addr()?);
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let script: Script = Arc::new(Mutex::new(Box::new(script)));
        let kept = Arc::clone(&got);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, Arc::clone(&kept), Arc::clone(&script)));
            }
        });
        Ok(Self { url, got })
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// The requests answered 2xx… in fact every request; waits until `n`
    /// distinct events were received.
    async fn wait_for(&self, n: usize, within: Duration) -> anyhow::Result<Vec<Got>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.got();
            let distinct: std::collections::HashSet<String> = got
                .iter()
                .filter_map(|g| g.headers.get("webhook-id").cloned())
                .collect();
            if distinct.len() >= n {
                return Ok(got);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} events arrived",
                distinct.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn serve(mut socket: tokio::net::TcpStream, got: Arc<Mutex<Vec<Got>>>, script: Script) {
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let (head, mut body) = loop {
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break (
                String::from_utf8_lossy(&buffer[..at]).into_owned(),
                buffer[at + 4..].to_vec(),
            );
        }
    };
    let mut headers = BTreeMap::new();
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    while body.len() < length {
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let mut request = Got {
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        answered: None,
    };
    let reply = script
        .lock()
        .map(|mut s| s(&request))
        .unwrap_or(Reply::Status(500));
    if let Reply::Status(code) = reply {
        request.answered = Some(code);
    }
    if let Ok(mut g) = got.lock() {
        g.push(request);
    }
    match reply {
        Reply::Status(code) => {
            let _ = socket
                .write_all(
                    format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                        .as_bytes(),
                )
                .await;
        }
        Reply::Hang(d) => tokio::time::sleep(d).await,
    }
}

const ALLOW: [&str; 2] = ["--webhooks-allow-http", "--webhooks-allow-private-addresses"];

fn hooks(replica: &Replica) -> WebhookServiceClient<Channel> {
    WebhookServiceClient::new(replica.channel.clone())
}

async fn create(
    replica: &Replica,
    url: &str,
    filter: Option<pb::EventFilter>,
) -> anyhow::Result<pb::CreateWebhookResponse> {
    Ok(hooks(replica)
        .create_webhook(pb::CreateWebhookRequest {
            url: url.to_owned(),
            description: "crm sync".to_owned(),
            filter,
            ..Default::default()
        })
        .await?
        .into_inner())
}

/// A lead taken to MQL: its id (a capture, an MQL transition, a trigger).
async fn mql(leads: &mut LeadServiceClient<Channel>, email: &str) -> anyhow::Result<String> {
    let lead = leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit(email),
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .ok_or_else(|| anyhow::anyhow!("no lead"))?;
    for (j, kind) in TO_MQL.iter().enumerate() {
        leads
            .record_engagement(record(&lead.id, engagement(&format!("{email}-{j}"), kind)))
            .await?;
    }
    Ok(lead.id)
}

/// Each lead's events arrive in sequence order (the first time each arrives).
fn in_order_per_lead(got: &[Got]) -> anyhow::Result<()> {
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for g in got {
        if !seen.insert(g.headers.get("webhook-id").cloned().unwrap_or_default()) {
            continue;
        }
        let before = last.insert(g.lead(), g.sequence()).unwrap_or(0);
        anyhow::ensure!(
            g.sequence() > before,
            "lead {}: {} after {before}",
            g.lead(),
            g.sequence()
        );
    }
    Ok(())
}

/// Verifies every request with the Python `standardwebhooks` library and
/// each of `secrets`: how many requests each verifies.
fn verified_by_standardwebhooks(got: &[Got], secrets: &[&str]) -> anyhow::Result<Vec<usize>> {
    let python = python().ok_or_else(|| anyhow::anyhow!("no Python"))?;
    let requests: Vec<serde_json::Value> = got
        .iter()
        .map(|g| serde_json::json!({"headers": g.headers, "body": g.body}))
        .collect();
    let input = serde_json::json!({"requests": requests, "secrets": secrets}).to_string();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
data = json.load(sys.stdin)
counts = []
for secret in data["secrets"]:
    ok = 0
    for r in data["requests"]:
        try:
            Webhook(secret).verify(r["body"], r["headers"])
            ok += 1
        except Exception:
            pass
    counts.append(ok)
print(json.dumps(counts))
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "standardwebhooks: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn events_arrive_signed_and_in_order(db: Db) -> anyhow::Result<()> {
    let receiver = Receiver::start(|_| Reply::Status(204)).await?;
    let database = fresh_database(db).await?;
    let replica = Replica::start_with(&database.url, &ALLOW).await?;
    let created = create(
        &replica,
        &receiver.url,
        Some(pb::EventFilter {
            kinds: vec![pb::EventKind::Transition.into(), pb::EventKind::Trigger.into()],
            ..Default::default()
        }),
    )
    .await?;
    let hook = created.webhook.ok_or_else(|| anyhow::anyhow!("no webhook"))?;
    assert!(created.secret.starts_with("whsec_"));
    let mut leads = replica.leads();
    for i in 0..4 {
        mql(&mut leads, &format!("h{i}@acme.com")).await?;
    }
    // Each lead: IQL, MQL, the MQL trigger.
    let got = receiver.wait_for(12, Duration::from_secs(30)).await?;
    in_order_per_lead(&got)?;
    for g in &got {
        assert_eq!(
            g.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
        assert_eq!(
            g.headers.get("webhook-id"),
            g.json()["eventId"].as_str().map(str::to_owned).as_ref()
        );
        assert!(matches!(
            g.json()["kind"].as_str(),
            Some("EVENT_KIND_TRANSITION" | "EVENT_KIND_TRIGGER")
        ));
    }
    assert_eq!(
        verified_by_standardwebhooks(&got, &[&created.secret])?,
        [got.len()]
    );
    // Another secret verifies none.
    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert_eq!(verified_by_standardwebhooks(&got, &[other])?, [0]);

    // A rotation: both secrets sign for a day.
    let rotated = hooks(&replica)
        .rotate_webhook_secret(pb::RotateWebhookSecretRequest { id: hook.id.clone() })
        .await?
        .into_inner();
    mql(&mut leads, "after@acme.com").await?;
    let got = receiver.wait_for(15, Duration::from_secs(30)).await?;
    let late: Vec<Got> = got[12..].to_vec();
    assert_eq!(
        verified_by_standardwebhooks(&late, &[&created.secret, &rotated.secret])?,
        [late.len(), late.len()]
    );
    let deliveries = hooks(&replica)
        .list_deliveries(pb::ListDeliveriesRequest {
            webhook_id: hook.id.clone(),
            status: pb::DeliveryStatus::Delivered.into(),
            page_size: 10,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(deliveries.deliveries.len(), 10);
    assert!(
        deliveries
            .deliveries
            .iter()
            .all(|d| d.last_status_code == 204 && d.attempts == 1)
    );
    let rest = hooks(&replica)
        .list_deliveries(pb::ListDeliveriesRequest {
            webhook_id: hook.id.clone(),
            page_size: 10,
            page_token: deliveries.next_page_token,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(rest.deliveries.len(), 5);
    // Its cursor is among the workspace's consumers, past every delivery.
    let consumers =
        leadflow_proto::v1::trigger_service_client::TriggerServiceClient::new(replica.channel.clone())
            .list_consumers(pb::ListConsumersRequest {})
            .await?
            .into_inner()
            .consumers;
    let cursor = consumers
        .iter()
        .find(|c| c.name == format!("webhook:{}", hook.id))
        .ok_or_else(|| anyhow::anyhow!("no consumer for the webhook: {consumers:?}"))?;
    assert_eq!(cursor.kind, i32::from(pb::ConsumerKind::Webhook));
    Ok(())
}

async fn a_failing_delivery_holds_its_lead_and_no_other(db: Db) -> anyhow::Result<()> {
    // The slow lead's first delivery gets a 500, then hangs past the
    // time-out, then is taken; everything else is taken at once.
    let failures: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let seen = Arc::clone(&failures);
    let slow_lead: Arc<Mutex<String>> = Arc::default();
    let slow = Arc::clone(&slow_lead);
    let receiver = Receiver::start(move |g| {
        let lead = g.lead();
        if slow.lock().map(|s| *s == lead).unwrap_or(false) {
            let mut f = seen.lock().expect("lock");
            let id = g.headers.get("webhook-id").cloned().unwrap_or_default();
            // Only the lead's first event fails.
            if f.is_empty() || f.contains_key(&id) {
                let n = f.entry(id).or_default();
                *n += 1;
                return match *n {
                    1 => Reply::Status(500),
                    2 => Reply::Hang(Duration::from_secs(12)),
                    _ => Reply::Status(200),
                };
            }
        }
        Reply::Status(200)
    })
    .await?;
    let database = fresh_database(db).await?;
    let replica = Replica::start_with(&database.url, &ALLOW).await?;
    let hook = create(&replica, &receiver.url, None)
        .await?
        .webhook
        .ok_or_else(|| anyhow::anyhow!("no webhook"))?;
    let mut leads = replica.leads();
    let lead = leads
        .create_lead(pb::CreateLeadRequest {
            profile: good_fit("slow@acme.com"),
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .ok_or_else(|| anyhow::anyhow!("no lead"))?;
    if let Ok(mut s) = slow_lead.lock() {
        *s = lead.id.clone();
    }
    // The slow lead's capture is refused…
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for (j, kind) in TO_MQL.iter().enumerate() {
        leads
            .record_engagement(record(&lead.id, engagement(&format!("slow-{j}"), kind)))
            .await?;
    }
    // …while another lead's events go through.
    let other = mql(&mut leads, "quick@acme.com").await?;
    let got = receiver.got();
    let quick: Vec<&Got> = got.iter().filter(|g| g.lead() == other).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = receiver.got();
    let slow_later: Vec<&Got> = got
        .iter()
        .filter(|g| g.lead() == lead.id && g.sequence() > 1)
        .collect();
    anyhow::ensure!(
        got.iter().filter(|g| g.lead() == other).count() >= 3,
        "the other lead waited: {quick:?}"
    );
    assert!(slow_later.is_empty(), "the slow lead's later events went first");
    // While the endpoint does not answer the slow lead's retry (a 10 s
    // time-out), a third lead's events still go through at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while receiver.got().iter().filter(|g| g.lead() == lead.id).count() < 2 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the slow lead was not tried again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = mql(&mut leads, "during@acme.com").await?;
    let hang_started = tokio::time::Instant::now();
    loop {
        let n = receiver.got().iter().filter(|g| g.lead() == during).count();
        if n >= 3 {
            break;
        }
        anyhow::ensure!(
            hang_started.elapsed() < Duration::from_secs(5),
            "a lead waited behind another lead's unanswered request ({n} of 3)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The retries (after 5 s, a 10 s time-out, after 30 s) deliver
    // everything, each lead's in order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let deliveries = loop {
        let all = hooks(&replica)
            .list_deliveries(pb::ListDeliveriesRequest {
                webhook_id: hook.id.clone(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .deliveries;
        if all
            .iter()
            .all(|d| d.status == i32::from(pb::DeliveryStatus::Delivered))
            && all.len() >= 6
        {
            break all;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "not all delivered: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    in_order_per_lead(&receiver.got())?;
    let first = deliveries
        .iter()
        .find(|d| d.attempts == 3)
        .ok_or_else(|| anyhow::anyhow!("no delivery took three attempts: {deliveries:?}"))?;
    assert_eq!(first.last_status_code, 200);
    assert!(deliveries.iter().filter(|d| d.attempts == 1).count() >= 8);
    Ok(())
}

async fn a_skipped_delivery_lets_its_lead_go_on(db: Db) -> anyhow::Result<()> {
    // The capture of every lead fails, forever.
    let receiver = Receiver::start(|g| {
        if g.json()["kind"].as_str() == Some("EVENT_KIND_TRANSITION") && g.sequence() == 1 {
            Reply::Status(503)
        } else {
            Reply::Status(200)
        }
    })
    .await?;
    let database = fresh_database(db).await?;
    let replica = Replica::start_with(&database.url, &ALLOW).await?;
    let hook = create(&replica, &receiver.url, None)
        .await?
        .webhook
        .ok_or_else(|| anyhow::anyhow!("no webhook"))?;
    let mut leads = replica.leads();
    mql(&mut leads, "stuck@acme.com").await?;
    let mut api = hooks(&replica);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let failing = loop {
        let retrying = api
            .list_deliveries(pb::ListDeliveriesRequest {
                webhook_id: hook.id.clone(),
                status: pb::DeliveryStatus::Retrying.into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .deliveries;
        if let Some(d) = retrying.into_iter().next() {
            break d;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no delivery failed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((failing.sequence, failing.last_status_code), (1, 503));
    assert!(failing.last_error.contains("503"), "{failing:?}");
    // Nothing else of the lead went meanwhile.
    assert!(receiver.got().iter().all(|g| g.sequence() == 1));
    let skipped = api
        .skip_delivery(pb::SkipDeliveryRequest {
            webhook_id: hook.id.clone(),
            sequence: 1,
        })
        .await?
        .into_inner()
        .delivery
        .ok_or_else(|| anyhow::anyhow!("no delivery"))?;
    assert_eq!(skipped.status, i32::from(pb::DeliveryStatus::Skipped));
    // Skipped twice: not a failed delivery any more.
    let again = api
        .skip_delivery(pb::SkipDeliveryRequest {
            webhook_id: hook.id.clone(),
            sequence: 1,
        })
        .await;
    assert_eq!(
        again.map(drop).err().map(|s| s.code()),
        Some(tonic::Code::FailedPrecondition)
    );
    let got = receiver.wait_for(3, Duration::from_secs(20)).await?;
    assert!(got.iter().any(|g| g.sequence() > 1));
    Ok(())
}

async fn private_addresses_and_bad_input_are_refused(db: Db) -> anyhow::Result<()> {
    let receiver = Receiver::start(|_| Reply::Status(200)).await?;
    let database = fresh_database(db).await?;
    // No allowances: https only, and no private address.
    let replica = Replica::start_with(&database.url, &[]).await?;
    let mut api = hooks(&replica);
    let refused = api
        .create_webhook(pb::CreateWebhookRequest {
            url: receiver.url.clone(),
            ..Default::default()
        })
        .await;
    assert_invalid(refused, "url", &receiver.url);
    // An https URL to loopback is taken, and every request to it refused.
    let https = receiver.url.replace("http://", "https://");
    let hook = api
        .create_webhook(pb::CreateWebhookRequest {
            url: https.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .webhook
        .ok_or_else(|| anyhow::anyhow!("no webhook"))?;
    let mut leads = replica.leads();
    mql(&mut leads, "ssrf@acme.com").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let failed = api
            .list_deliveries(pb::ListDeliveriesRequest {
                webhook_id: hook.id.clone(),
                status: pb::DeliveryStatus::Retrying.into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .deliveries;
        if let Some(d) = failed.first() {
            assert!(d.last_error.contains("loopback"), "{d:?}");
            assert_eq!(d.last_status_code, 0);
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no refused delivery");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(receiver.got().is_empty(), "a request reached a loopback address");

    for (request, field) in [
        (pb::CreateWebhookRequest::default(), "url"),
        (
            pb::CreateWebhookRequest {
                url: "ftp://example.com/".to_owned(),
                ..Default::default()
            },
            "url",
        ),
        (
            pb::CreateWebhookRequest {
                url: "https://user:pw@example.com/".to_owned(),
                ..Default::default()
            },
            "url",
        ),
        (
            pb::CreateWebhookRequest {
                url: "https://example.com/".to_owned(),
                description: "x".repeat(501),
                ..Default::default()
            },
            "description",
        ),
        (
            pb::CreateWebhookRequest {
                url: "https://example.com/".to_owned(),
                filter: Some(pb::EventFilter {
                    kinds: vec![99],
                    ..Default::default()
                }),
                ..Default::default()
            },
            "filter.kinds[0]",
        ),
        (
            pb::CreateWebhookRequest {
                url: "https://example.com/".to_owned(),
                start: pb::StartPosition::AtTime.into(),
                ..Default::default()
            },
            "at_time",
        ),
        (
            pb::CreateWebhookRequest {
                url: "https://example.com/".to_owned(),
                start: pb::StartPosition::Resume.into(),
                ..Default::default()
            },
            "start",
        ),
    ] {
        let result = api.create_webhook(request.clone()).await;
        assert_invalid(result, field, &request);
    }
    let listed = api.list_deliveries(pb::ListDeliveriesRequest {
        webhook_id: hook.id.clone(),
        page_size: -1,
        ..Default::default()
    });
    assert_invalid(listed.await, "page_size", &"page_size -1");
    // A token of this list's tag whose position is not a sequence.
    let forged = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, "deliveries:-5");
    let listed = api.list_deliveries(pb::ListDeliveriesRequest {
        webhook_id: hook.id.clone(),
        page_token: forged,
        ..Default::default()
    });
    assert_invalid(listed.await, "page_token", &"page_token deliveries:-5");
    for status in [
        api.delete_webhook(pb::DeleteWebhookRequest {
            id: "nope".to_owned(),
        })
        .await
        .map(drop),
        api.rotate_webhook_secret(pb::RotateWebhookSecretRequest {
            id: "nope".to_owned(),
        })
        .await
        .map(drop),
        api.retry_delivery(pb::RetryDeliveryRequest {
            webhook_id: hook.id.clone(),
            sequence: 999,
        })
        .await
        .map(drop),
    ] {
        assert_eq!(status.err().map(|s| s.code()), Some(tonic::Code::NotFound));
    }
    // Idempotent by request_id: the same call gets the same webhook and
    // secret; the same id for another endpoint is refused.
    let first = pb::CreateWebhookRequest {
        request_id: "make-1".to_owned(),
        url: "https://example.com/a".to_owned(),
        ..Default::default()
    };
    let a = api.create_webhook(first.clone()).await?.into_inner();
    let b = api.create_webhook(first.clone()).await?.into_inner();
    assert_eq!(
        (a.webhook.map(|w| w.id), a.secret),
        (b.webhook.map(|w| w.id), b.secret)
    );
    let other = api
        .create_webhook(pb::CreateWebhookRequest {
            url: "https://example.com/b".to_owned(),
            ..first
        })
        .await;
    assert_eq!(other.err().map(|s| s.code()), Some(tonic::Code::AlreadyExists));
    // Deleted: gone, with its deliveries.
    api.delete_webhook(pb::DeleteWebhookRequest { id: hook.id.clone() })
        .await?;
    let listed = api
        .list_webhooks(pb::ListWebhooksRequest {})
        .await?
        .into_inner()
        .webhooks;
    assert!(listed.iter().all(|w| w.id != hook.id));
    Ok(())
}

/// The system clock now: where a hand-moved clock starts.
fn now() -> leadflow_domain::Timestamp {
    use leadflow_engine::Clock as _;
    leadflow_engine::SystemClock.now()
}

/// The endpoint's deliveries of one status.
async fn deliveries(
    api: &mut WebhookServiceClient<Channel>,
    hook: &str,
    status: pb::DeliveryStatus,
) -> anyhow::Result<Vec<pb::Delivery>> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = api
            .list_deliveries(pb::ListDeliveriesRequest {
                webhook_id: hook.to_owned(),
                status: status.into(),
                page_size: 500,
                page_token,
            })
            .await?
            .into_inner();
        all.extend(page.deliveries);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}

/// Waits until the endpoint has at least `n` deliveries of `status`.
async fn wait_deliveries(
    api: &mut WebhookServiceClient<Channel>,
    hook: &str,
    status: pb::DeliveryStatus,
    n: usize,
) -> anyhow::Result<Vec<pb::Delivery>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = deliveries(api, hook, status).await?;
        if found.len() >= n {
            return Ok(found);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} deliveries {status:?}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The endpoint as `ListWebhooks` shows it.
async fn listed(api: &mut WebhookServiceClient<Channel>, hook: &str) -> anyhow::Result<pb::Webhook> {
    api.list_webhooks(pb::ListWebhooksRequest {})
        .await?
        .into_inner()
        .webhooks
        .into_iter()
        .find(|w| w.id == hook)
        .ok_or_else(|| anyhow::anyhow!("webhook {hook} not listed"))
}

/// The requests answered 2xx, in arrival order.
fn answered_ok(got: &[Got]) -> Vec<Got> {
    got.iter()
        .filter(|g| g.answered.is_some_and(|c| (200..300).contains(&c)))
        .cloned()
        .collect()
}

/// A receiver that answers 500 to the requests `fails` picks until
/// `healed` is set, and 200 to everything else.
async fn failing_until(
    healed: &Arc<std::sync::atomic::AtomicBool>,
    fails: impl Fn(&Got) -> bool + Send + 'static,
) -> anyhow::Result<Receiver> {
    let healed = Arc::clone(healed);
    Receiver::start(move |g| {
        if fails(g) && !healed.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    })
    .await
}

/// A new endpoint at `url`.
async fn new_hook(
    api: &mut WebhookServiceClient<Channel>,
    url: &str,
    filter: Option<pb::EventFilter>,
) -> anyhow::Result<pb::Webhook> {
    api.create_webhook(pb::CreateWebhookRequest {
        url: url.to_owned(),
        description: "crm sync".to_owned(),
        filter,
        ..Default::default()
    })
    .await?
    .into_inner()
    .webhook
    .ok_or_else(|| anyhow::anyhow!("no webhook"))
}

async fn a_delivery_failing_for_24_h_is_parked_then_retried(db: Db) -> anyhow::Result<()> {
    // Every request about the lead "broken@" fails until `fixed`.
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = failing_until(&fixed, |g| g.body.contains("broken@")).await?;
    let mut server = TestServer::start_with_clock_and_local_webhooks(db, now()).await?;
    let mut api = WebhookServiceClient::new(server.channel.clone());
    let hook = new_hook(&mut api, &receiver.url, None).await?;
    // The external key carries the address into every event of the lead.
    let stuck = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            external_key: "broken@acme.com".to_owned(),
            profile: good_fit("broken@acme.com"),
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .ok_or_else(|| anyhow::anyhow!("no lead"))?;
    let first = wait_deliveries(&mut api, &hook.id, pb::DeliveryStatus::Retrying, 1).await?;
    // A later event of the same lead waits behind it.
    server
        .leads
        .transition(transition(&stuck.id, pb::Action::Disqualify, "spam"))
        .await?;
    // Another lead's delivery succeeds: the endpoint is not failing as a whole.
    let other = leadflow_e2e::create(&mut server, "fine@acme.com").await?;
    receiver.wait_for(2, Duration::from_secs(20)).await?;

    // 25 hours later the failing delivery's next attempt fails too: it is parked.
    server
        .manual_clock()
        .advance(leadflow_domain::Span::from_hours(25));
    let parked = wait_deliveries(&mut api, &hook.id, pb::DeliveryStatus::Parked, 1).await?;
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].sequence, parked[0].attempts, parked[0].last_status_code),
        (first[0].sequence, 2, 500)
    );
    let shown = listed(&mut api, &hook.id).await?;
    assert_eq!((shown.parked_deliveries, shown.enabled), (1, true), "{shown:?}");
    // Other leads go on meanwhile; the parked lead's later event waits.
    let later = leadflow_e2e::create(&mut server, "later@acme.com").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !receiver.got().iter().any(|g| g.lead() == later.id) {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no event of another lead");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        receiver
            .got()
            .iter()
            .filter(|g| g.lead() == stuck.id)
            .all(|g| g.sequence() == first[0].sequence),
        "an event of the parked lead went ahead"
    );

    // Retried by hand once the receiver is fixed: delivered, then its lead goes on.
    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    let retried = api
        .retry_delivery(pb::RetryDeliveryRequest {
            webhook_id: hook.id.clone(),
            sequence: parked[0].sequence,
        })
        .await?
        .into_inner()
        .delivery
        .ok_or_else(|| anyhow::anyhow!("no delivery"))?;
    assert_ne!(retried.status, i32::from(pb::DeliveryStatus::Parked));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ok: Vec<Got> = answered_ok(&receiver.got())
            .into_iter()
            .filter(|g| g.lead() == stuck.id)
            .collect();
        if ok.len() >= 2 {
            in_order_per_lead(&ok)?;
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the retried lead did not go on"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The outcome is written just after the receiver answered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let shown = listed(&mut api, &hook.id).await?;
        if (shown.parked_deliveries, shown.open_deliveries) == (0, 0) {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "still open: {shown:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(receiver.got().iter().any(|g| g.lead() == other.id));
    Ok(())
}

async fn an_endpoint_failing_for_24_h_is_disabled_and_says_so(db: Db) -> anyhow::Result<()> {
    let down = Receiver::start(|_| Reply::Status(503)).await?;
    let watcher = Receiver::start(|_| Reply::Status(204)).await?;
    let mut server = TestServer::start_with_clock_and_local_webhooks(db, now()).await?;
    let mut api = WebhookServiceClient::new(server.channel.clone());
    let only_disabled = pb::EventFilter {
        kinds: vec![pb::EventKind::WebhookDisabled.into()],
        ..Default::default()
    };
    let mut stream = subscribe(
        &mut server,
        "ops",
        pb::StartPosition::Latest,
        0,
        Some(only_disabled.clone()),
    )
    .await?;
    let failing = new_hook(&mut api, &down.url, None).await?;
    let watching = new_hook(&mut api, &watcher.url, Some(only_disabled)).await?;
    leadflow_e2e::create(&mut server, "first@acme.com").await?;
    wait_deliveries(&mut api, &failing.id, pb::DeliveryStatus::Retrying, 1).await?;
    // Noted just after the failed attempt's outcome.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let since = loop {
        if let Some(since) = listed(&mut api, &failing.id).await?.failing_since {
            break since;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "not failing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Within 24 h of failures it stays enabled.
    server
        .manual_clock()
        .advance(leadflow_domain::Span::from_hours(23));
    leadflow_e2e::create(&mut server, "second@acme.com").await?;
    wait_deliveries(&mut api, &failing.id, pb::DeliveryStatus::Retrying, 2).await?;
    assert!(listed(&mut api, &failing.id).await?.enabled);

    server
        .manual_clock()
        .advance(leadflow_domain::Span::from_hours(2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let shown = loop {
        let shown = listed(&mut api, &failing.id).await?;
        if !shown.enabled {
            break shown;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "not disabled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(shown.disabled_reason.contains("24 h"), "{shown:?}");
    // The stream says so, with the endpoint and its open deliveries.
    let said = next_event(&mut stream, Duration::from_secs(10))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no WEBHOOK_DISABLED on the stream"))?;
    assert_eq!(said.kind, i32::from(pb::EventKind::WebhookDisabled));
    assert!(said.lead.is_none() && said.account.is_none());
    let Some(pb::event::Payload::WebhookDisabled(d)) = said.payload else {
        anyhow::bail!("no webhook_disabled payload: {said:?}");
    };
    assert_eq!(
        (
            d.webhook_id.as_str(),
            d.url.as_str(),
            d.failing_since,
            d.open_deliveries
        ),
        (failing.id.as_str(), down.url.as_str(), Some(since), 2)
    );
    // So does the other endpoint, and the disabled one holds nothing any more.
    let got = watcher.wait_for(1, Duration::from_secs(20)).await?;
    let json = got[0].json();
    assert_eq!(json["kind"], "EVENT_KIND_WEBHOOK_DISABLED");
    assert_eq!(json["webhookDisabled"]["webhookId"], failing.id.as_str());
    assert_eq!(got[0].headers.get("webhook-id"), Some(&said.event_id));
    let consumers = server
        .triggers
        .list_consumers(pb::ListConsumersRequest {})
        .await?
        .into_inner()
        .consumers;
    let names: Vec<&str> = consumers.iter().map(|c| c.name.as_str()).collect();
    assert!(
        !names.contains(&format!("webhook:{}", failing.id).as_str()),
        "{names:?}"
    );
    assert!(
        names.contains(&format!("webhook:{}", watching.id).as_str()),
        "{names:?}"
    );
    // A retry cannot revive a delivery of a disabled endpoint (nothing
    // would attempt it).
    let open = deliveries(&mut api, &failing.id, pb::DeliveryStatus::Parked).await?;
    let stuck = open
        .first()
        .or(deliveries(&mut api, &failing.id, pb::DeliveryStatus::Retrying)
            .await?
            .first())
        .map(|d| d.sequence)
        .ok_or_else(|| anyhow::anyhow!("no open delivery"))?;
    let refused = api
        .retry_delivery(pb::RetryDeliveryRequest {
            webhook_id: failing.id.clone(),
            sequence: stuck,
        })
        .await;
    assert_eq!(
        refused.map(drop).err().map(|s| s.code()),
        Some(tonic::Code::FailedPrecondition)
    );
    // Nothing more is attempted (an attempt in flight at the moment has ended).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts = down.got().len();
    server
        .manual_clock()
        .advance(leadflow_domain::Span::from_hours(7));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(down.got().len(), attempts);
    Ok(())
}

async fn an_endpoint_with_1000_open_deliveries_stalls_then_drains(db: Db) -> anyhow::Result<()> {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = failing_until(&healthy, |_| true).await?;
    let mut server = TestServer::start_with_clock_and_local_webhooks(db, now()).await?;
    let mut api = WebhookServiceClient::new(server.channel.clone());
    let hook = new_hook(&mut api, &receiver.url, None).await?;
    // 1,050 leads, one capture event each.
    const LEADS: usize = 1_050;
    for i in 0..LEADS {
        leadflow_e2e::create(&mut server, &format!("lead{i}@acme.com")).await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let stalled = loop {
        let shown = listed(&mut api, &hook.id).await?;
        if shown.stalled
            && deliveries(&mut api, &hook.id, pb::DeliveryStatus::Retrying)
                .await?
                .len()
                == 1_000
        {
            break shown;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "not stalled: {shown:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(stalled.open_deliveries, 1_000, "{stalled:?}");
    // It reads nothing more: the newest 50 events have no delivery, and
    // its cursor stays below the first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(listed(&mut api, &hook.id).await?.open_deliveries, 1_000);
    let consumer = server
        .triggers
        .list_consumers(pb::ListConsumersRequest {})
        .await?
        .into_inner()
        .consumers
        .into_iter()
        .find(|c| c.name == format!("webhook:{}", hook.id))
        .ok_or_else(|| anyhow::anyhow!("no consumer"))?;
    assert_eq!(consumer.cursor, 0);
    let head = consumer.head;
    assert!(head >= i64::try_from(LEADS)?, "{consumer:?}");

    // The receiver recovers; the retries come due; everything drains.
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    server
        .manual_clock()
        .advance(leadflow_domain::Span::from_secs(10));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let shown = listed(&mut api, &hook.id).await?;
        if shown.open_deliveries == 0
            && !shown.stalled
            && i64::try_from(
                deliveries(&mut api, &hook.id, pb::DeliveryStatus::Delivered)
                    .await?
                    .len(),
            )? == head
        {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "not drained: {shown:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

scenarios! {
    events_arrive_signed_and_in_order = each_database().needs(&PYTHON),
    a_failing_delivery_holds_its_lead_and_no_other = each_database(),
    a_skipped_delivery_lets_its_lead_go_on = each_database(),
    private_addresses_and_bad_input_are_refused = each_database(),
    a_delivery_failing_for_24_h_is_parked_then_retried = each_database(),
    an_endpoint_failing_for_24_h_is_disabled_and_says_so = each_database(),
    an_endpoint_with_1000_open_deliveries_stalls_then_drains = each_database(),
}

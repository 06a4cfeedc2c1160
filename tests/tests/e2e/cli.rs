//! The `leadflow` command against a server that requires tokens, and one
//! with mutual TLS: every remote command takes the same connection flags.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;

use crate::tls::{authority, leaf};

/// A scratch directory, removed on drop.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str, db: Db) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("leadflow-e2e-{name}-{db:?}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> anyhow::Result<String> {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the `leadflow` command off the runtime (the server under test runs
/// on it), with `LEADFLOW_TOKEN` set to `token` if given.
pub(crate) async fn leadflow(args: &[&str], token: Option<&str>) -> anyhow::Result<Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadflow-e2e-server"));
    command.args(args);
    for var in ["LEADFLOW_TOKEN", "LEADFLOW_SERVER", "LEADFLOW_CA_CERT"] {
        command.env_remove(var);
    }
    if let Some(token) = token {
        command.env("LEADFLOW_TOKEN", token);
    }
    Ok(tokio::task::spawn_blocking(move || command.output()).await??)
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A lead with `key` (none if empty), `title` and engagements now.
async fn seed(
    leads: &mut LeadServiceClient<tonic::transport::Channel>,
    secret: &str,
    (key, email): (&str, &str),
    title: &str,
) -> anyhow::Result<String> {
    let lead = leads
        .create_lead(with_token(
            secret,
            pb::CreateLeadRequest {
                external_key: key.to_owned(),
                profile: profile(&[
                    ("email", email),
                    ("company", "Acme"),
                    ("title", title),
                    ("company_size", "250"),
                    ("industry", "software"),
                ]),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .lead
        .expect("lead");
    for kind in ["trial_started", "webinar_attended"] {
        leads
            .record_engagement(with_token(
                secret,
                record(&lead.id, engagement(&format!("{}-{kind}", lead.id), kind)),
            ))
            .await?;
    }
    Ok(lead.id)
}

/// A server on a fresh database that requires tokens, and a token with
/// `scopes` (named `name`) for the default workspace.
async fn served_with_token(
    db: Db,
    name: &str,
    scopes: &[&str],
) -> anyhow::Result<(
    leadflow_store::testing::TestDatabase,
    String,
    leadflow_server::Running,
    LeadServiceClient<tonic::transport::Channel>,
)> {
    let database = fresh_database(db).await?;
    let engine = engine_on(&database.url).await?;
    let secret = token(&engine, leadflow_server::DEFAULT_WORKSPACE, name, scopes, None).await?;
    let config = leadflow_server::Config {
        require_auth: true,
        ..loopback(&database.url)
    };
    let (running, channel) = serve(&engine, &config, NO_HTTP).await?;
    Ok((database, secret, running, LeadServiceClient::new(channel)))
}

async fn policy_commands_list_leads_by_key_and_need_a_token(db: Db) -> anyhow::Result<()> {
    let (_database, secret, running, mut leads) =
        served_with_token(db, "admin", &["leads:write", "engagements:write", "policy:admin"]).await?;
    // Engagement 45 each. The draft moves the VPs (fit 40) to MQL at 40,
    // and newly fails the analysts' fit (25) at 30.
    let mut keyless = String::new();
    for i in 0..5 {
        let key = if i == 4 {
            String::new()
        } else {
            format!("crm-vp-{i}")
        };
        let id = seed(
            &mut leads,
            &secret,
            (&key, &format!("vp{i}@acme.com")),
            "VP Sales",
        )
        .await?;
        if key.is_empty() {
            keyless = id;
        }
    }
    for i in 0..3 {
        let key = format!("crm-analyst-{i}");
        seed(
            &mut leads,
            &secret,
            (&key, &format!("analyst{i}@acme.com")),
            "Analyst",
        )
        .await?;
    }
    let dir = Scratch::new("simulate", db)?;
    let draft = dir.write(
        "draft.toml",
        &leadflow_server::DEFAULT_POLICY
            .replace("engagement_at_least = 60", "engagement_at_least = 40")
            .replace("fit_at_least = 20", "fit_at_least = 30"),
    )?;
    let against = format!("http://{}", running.addr);
    let simulate = [
        "policy",
        "simulate",
        draft.as_str(),
        "--against",
        against.as_str(),
    ];

    let refused = leadflow(&simulate, None).await?;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("Unauthenticated") && text(&refused).contains("--token"),
        "{}",
        text(&refused)
    );

    let top = leadflow(&[&simulate[..], &["--top", "2"]].concat(), Some(&secret)).await?;
    let out = text(&top);
    assert!(top.status.success(), "{out}");
    assert!(out.contains("5 would move; 3 would newly fail"), "{out}");
    for listed in ["crm-vp-0", "crm-vp-1", "crm-analyst-0", "crm-analyst-1"] {
        assert!(out.contains(listed), "{listed} not in {out}");
    }
    for unlisted in ["crm-vp-2", "crm-analyst-2", keyless.as_str()] {
        assert!(!out.contains(unlisted), "{unlisted} in {out}");
    }
    assert!(
        out.contains("… and 3 more (--top 5 or --all lists them)"),
        "{out}"
    );
    assert!(
        out.contains("… and 1 more (--top 3 or --all lists them)"),
        "{out}"
    );
    let analyst = out
        .lines()
        .find(|l| l.starts_with("crm-analyst-0"))
        .expect("an analyst");
    assert!(
        analyst.contains("IQL") && analyst.contains("fit 25 < 30"),
        "{analyst}"
    );

    // --all reads every page; a lead without a key shows its id.
    let all = leadflow(&[&simulate[..], &["--all"]].concat(), Some(&secret)).await?;
    let out = text(&all);
    assert!(all.status.success(), "{out}");
    for listed in ["crm-vp-3", "crm-analyst-2", keyless.as_str()] {
        assert!(out.contains(listed), "{listed} not in {out}");
    }
    assert!(!out.contains("more (--top"), "{out}");

    // Activation with the flag rather than the variable.
    let activate = [
        "policy",
        "activate",
        draft.as_str(),
        "--against",
        against.as_str(),
    ];
    let refused = leadflow(&activate, None).await?;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("Unauthenticated"), "{}", text(&refused));
    let activated = leadflow(&[&activate[..], &["--token", secret.as_str()]].concat(), None).await?;
    let out = text(&activated);
    assert!(activated.status.success(), "{out}");
    assert!(out.contains("is version 2 and active"), "{out}");
    assert!(out.contains("re-scored 8 leads: 5 transitions"), "{out}");

    running.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

async fn remote_commands_speak_mutual_tls(db: Db) -> anyhow::Result<()> {
    let database = fresh_database(db).await?;
    let dir = Scratch::new("tls", db)?;
    let ca = authority("leadflow test CA")?;
    let (server_cert, server_key) = leaf(&["localhost"], &ca)?;
    let (client_cert, client_key) = leaf(&["reports"], &ca)?;
    let ca_file = dir.write("ca.pem", &ca.pem())?;
    let client = [
        dir.write("client.pem", &client_cert)?,
        dir.write("client.key", &client_key)?,
    ];
    let engine = engine_on(&database.url).await?;
    let config = leadflow_server::Config {
        tls_cert: Some(PathBuf::from(dir.write("server.pem", &server_cert)?)),
        tls_key: Some(PathBuf::from(dir.write("server.key", &server_key)?)),
        tls_client_ca: Some(Path::new(&ca_file).to_owned()),
        ..loopback(&database.url)
    };
    let running = leadflow_server::start(&config, engine, NO_HTTP).await?;
    let against = format!("https://localhost:{}", running.addr.port());
    let funnel = [
        "funnel",
        "--against",
        against.as_str(),
        "--ca-cert",
        ca_file.as_str(),
    ];

    let admitted = leadflow(
        &[
            &funnel[..],
            &["--client-cert", &client[0], "--client-key", &client[1]],
        ]
        .concat(),
        None,
    )
    .await?;
    assert!(admitted.status.success(), "{}", text(&admitted));
    assert!(text(&admitted).starts_with("Funnel "), "{}", text(&admitted));

    // Without a client certificate the server refuses; without the CA the
    // client will not go on.
    let anonymous = leadflow(&funnel, None).await?;
    assert_eq!(anonymous.status.code(), Some(1), "{}", text(&anonymous));
    let untrusted = leadflow(&["funnel", "--against", &against], None).await?;
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(text(&untrusted).contains("--ca-cert"), "{}", text(&untrusted));

    running.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

/// `leadflow policy test --record --against … ARGS` with the token.
async fn record_cases(against: &str, secret: &str, args: &[&str]) -> anyhow::Result<Output> {
    let command = [&["policy", "test", "--record", "--against", against][..], args].concat();
    leadflow(&command, Some(secret)).await
}

async fn recorded_cases_pin_what_real_leads_are(db: Db) -> anyhow::Result<()> {
    let scopes = [
        "leads:read",
        "leads:write",
        "engagements:write",
        "transitions:write",
        "policy:admin",
    ];
    let (_database, secret, running, mut leads) = served_with_token(db, "recorder", &scopes).await?;
    // a: an MQL (65) with a personal first name and a pricing view carrying a
    // campaign no rule reads; b: the same, then rejected by sales.
    for key in ["crm-a", "crm-b", "crm-c", "crm-d"] {
        let id = seed(&mut leads, &secret, (key, &format!("{key}@acme.com")), "VP Sales").await?;
        leads
            .update_lead_profile(with_token(
                &secret,
                pb::UpdateLeadProfileRequest {
                    lead: by_id(&id),
                    attributes: profile(&[("first_name", "Annabel")]),
                    ..Default::default()
                },
            ))
            .await?;
        let mut view = engagement(&format!("{key}-view"), "page_viewed");
        view.properties = profile(&[("path", "/pricing/teams"), ("utm_campaign", "secret-campaign")]);
        leads
            .record_engagement(with_token(&secret, record(&id, view)))
            .await?;
        leads
            .record_engagement(with_token(
                &secret,
                record(&id, engagement(&format!("{key}-ebook"), "ebook_downloaded")),
            ))
            .await?;
    }
    let mut reject = transition("", pb::Action::Reject, "not_ready");
    reject.lead = by_key("crm-b");
    let b = leads.transition(with_token(&secret, reject)).await?.into_inner();
    assert_eq!(b.lead.map(|l| stage(&l)), Some(pb::Stage::Iql));
    // c: won straight from MQL (a jump through SQL: two records, one move);
    // d: accepted with a note that names someone
    let mut convert = transition("", pb::Action::Convert, "");
    convert.lead = by_key("crm-c");
    convert.deal_value = Some(12_000.0);
    convert.currency = "EUR".to_owned();
    let c = leads.transition(with_token(&secret, convert)).await?.into_inner();
    assert_eq!(c.transitions.len(), 2);
    let mut accept = transition("", pb::Action::Accept, "met Annabel at the fair");
    accept.lead = by_key("crm-d");
    leads.transition(with_token(&secret, accept)).await?;

    let dir = Scratch::new("record", db)?;
    let cases = dir.0.join("cases");
    let cases_arg = cases.display().to_string();
    let against = format!("http://{}", running.addr);
    let recorded = record_cases(
        &against,
        &secret,
        &[
            "--lead", "crm-a", "--lead", "crm-b", "--lead", "crm-c", "--lead", "crm-d", "--cases", &cases_arg,
        ],
    )
    .await?;
    assert!(recorded.status.success(), "{}", text(&recorded));
    assert!(text(&recorded).contains("recorded "), "{}", text(&recorded));
    let a = std::fs::read_to_string(cases.join("crm-a.toml"))?;
    for kept in [
        "@acme.com",
        "VP Sales",
        "/pricing/teams",
        "stage = \"MQL\"",
        "policy version 1",
    ] {
        assert!(a.contains(kept), "{kept} in\n{a}");
    }
    for hidden in ["Annabel", "crm-a@", "secret-campaign"] {
        assert!(!a.contains(hidden), "{hidden} in\n{a}");
    }
    assert!(a.contains("pseudo-"), "{a}");
    let b = std::fs::read_to_string(cases.join("crm-b.toml"))?;
    assert!(
        b.contains("action = \"REJECT\"") && b.contains("reason = \"not_ready\""),
        "{b}"
    );
    let c = std::fs::read_to_string(cases.join("crm-c.toml"))?;
    assert_eq!(c.matches("[[transition]]").count(), 1, "{c}");
    assert!(
        c.contains("action = \"CONVERT\"") && c.contains("deal_value = 12000.0"),
        "{c}"
    );
    let d = std::fs::read_to_string(cases.join("crm-d.toml"))?;
    assert!(d.contains("action = \"ACCEPT\"") && !d.contains("Annabel"), "{d}");

    // the recorded cases pass under the policy they were recorded under …
    let example = dir.write("policy.toml", leadflow_server::DEFAULT_POLICY)?;
    let run = leadflow(&["policy", "test", &example, "--cases", &cases_arg], None).await?;
    assert!(run.status.success(), "{}", text(&run));
    assert!(text(&run).contains("4 passed, 0 failed"), "{}", text(&run));
    // … and tell what a stricter one changes
    let stricter = dir.write(
        "stricter.toml",
        &leadflow_server::DEFAULT_POLICY.replace("engagement_at_least = 60", "engagement_at_least = 80"),
    )?;
    let run = leadflow(&["policy", "test", &stricter, "--cases", &cases_arg], None).await?;
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(
        text(&run).contains("stage: expected MQL, got IQL"),
        "{}",
        text(&run)
    );
    assert!(
        text(&run).contains("REJECT refused: REJECT is not allowed from IQL"),
        "the rejected lead never qualifies: {}",
        text(&run)
    );
    // a win from IQL is a win still
    assert!(text(&run).contains("1 passed, 3 failed"), "{}", text(&run));

    // --keep-personal keeps what the policy does not read
    let kept = dir.0.join("kept");
    let kept_arg = kept.display().to_string();
    let recorded = record_cases(
        &against,
        &secret,
        &["--keep-personal", "--lead", "crm-a", "--cases", &kept_arg],
    )
    .await?;
    assert!(recorded.status.success(), "{}", text(&recorded));
    let a = std::fs::read_to_string(kept.join("crm-a.toml"))?;
    assert!(
        a.contains("Annabel") && a.contains("crm-a@acme.com") && a.contains("secret-campaign"),
        "{a}"
    );

    // an unknown lead is named
    let missing = record_cases(&against, &secret, &["--lead", "nobody", "--cases", &kept_arg]).await?;
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(text(&missing).contains("\"nobody\""), "{}", text(&missing));
    running.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

scenarios! {
    recorded_cases_pin_what_real_leads_are = each_database(),
    policy_commands_list_leads_by_key_and_need_a_token = each_database(),
    remote_commands_speak_mutual_tls = each_database(),
}

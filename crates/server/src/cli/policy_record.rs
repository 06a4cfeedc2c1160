//! `leadflow policy test --record`: cases written from real leads of a
//! running server, pinning what they are today before a policy changes.
//! Cases are meant for a repository, so what the policy does not read is
//! pseudonymised unless asked otherwise.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use leadflow_domain::{CommandKind, Policy};
use leadflow_proto::v1 as pb;
use sha2::{Digest, Sha256};

use super::funnel::stage_name;
use super::policy_test::{Case, CaseEngagement, CaseTransition, Expect, ModelExpect, Range};
use super::remote::{Connection, Remote, rpc_error};

/// How far a recorded score may move (rounding, the instant).
const SLACK: f64 = 0.001;

/// Replaces text by a stable stand-in: the same text gives the same
/// stand-in within one recording (a random salt, never written), and
/// nothing of it can be read back.
struct Pseudonyms {
    salt: [u8; 16],
    keep: bool,
}

impl Pseudonyms {
    fn new(keep: bool) -> anyhow::Result<Self> {
        let mut salt = [0_u8; 16];
        getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness for the pseudonyms: {e}"))?;
        Ok(Self { salt, keep })
    }

    fn of(&self, text: &str) -> String {
        if self.keep {
            return text.to_owned();
        }
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        hasher.update(text.as_bytes());
        let digest = leadflow_engine::hex(&hasher.finalize());
        format!("pseudo-{}", &digest[..12])
    }

    /// An email keeps its domain (rules read `email_domain`).
    fn email(&self, email: &str) -> String {
        match email.rsplit_once('@') {
            Some((local, domain)) if !self.keep => format!("{}@{domain}", self.of(local)),
            _ => self.of(email),
        }
    }
}

/// The values the policy reads: profile attributes its rules compare and
/// engagement properties its `where`s compare. (An attribute that
/// `requires_attributes` only needs present stays present under a
/// pseudonym.)
fn read_by(policy: &Policy) -> (BTreeSet<String>, BTreeSet<String>) {
    let attributes: BTreeSet<String> = policy
        .attribute_rules
        .iter()
        .map(|r| r.attribute.clone())
        .collect();
    let properties = policy
        .event_rules
        .iter()
        .flat_map(|r| r.conditions.iter().map(|c| c.property().to_owned()))
        .collect();
    (attributes, properties)
}

fn rfc3339(t: Option<&prost_types::Timestamp>) -> anyhow::Result<String> {
    let t = t.context("an instant missing from the server's answer")?;
    let at = chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
        .context("an instant out of range")?;
    Ok(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

fn around(x: f64) -> Option<Range> {
    Some(Range {
        at_least: Some(x - SLACK),
        at_most: Some(x + SLACK),
    })
}

async fn find(
    leads: &mut pb::lead_service_client::LeadServiceClient<Connection>,
    key: &str,
) -> anyhow::Result<pb::Lead> {
    let by = |k: pb::lead_ref::Key| pb::GetLeadRequest {
        lead: Some(pb::LeadRef { key: Some(k) }),
    };
    let found = match leads
        .get_lead(by(pb::lead_ref::Key::ExternalKey(key.to_owned())))
        .await
    {
        Err(status) if status.code() == tonic::Code::NotFound => {
            leads.get_lead(by(pb::lead_ref::Key::Id(key.to_owned()))).await
        }
        other => other,
    };
    found
        .map_err(rpc_error)
        .with_context(|| format!("lead {key:?}"))?
        .into_inner()
        .lead
        .context("no lead in the answer")
}

async fn history(
    leads: &mut pb::lead_service_client::LeadServiceClient<Connection>,
    id: &str,
) -> anyhow::Result<Vec<pb::HistoryEntry>> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = leads
            .get_lead_history(pb::GetLeadHistoryRequest {
                lead: Some(pb::LeadRef {
                    key: Some(pb::lead_ref::Key::Id(id.to_owned())),
                }),
                page_size: 500,
                page_token,
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return Ok(entries);
        }
        page_token = page.next_page_token;
    }
}

/// The case of one lead as the server shows it now.
async fn case_of(
    leads: &mut pb::lead_service_client::LeadServiceClient<Connection>,
    key: &str,
    reads: &(BTreeSet<String>, BTreeSet<String>),
    pseudonyms: &Pseudonyms,
) -> anyhow::Result<Case> {
    let lead = find(leads, key).await?;
    let scores = lead.scores.clone().unwrap_or_default();
    let as_of = scores.as_of;
    let explained = leads
        .explain_score(pb::ExplainScoreRequest {
            lead: Some(pb::LeadRef {
                key: Some(pb::lead_ref::Key::Id(lead.id.clone())),
            }),
            as_of,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let (attributes, properties) = reads;
    let profile = lead
        .profile
        .iter()
        .filter(|(k, _)| k.as_str() != "email_domain")
        .map(|(k, v)| {
            let v = match k.as_str() {
                _ if attributes.contains(k) => v.clone(),
                "email" => pseudonyms.email(v),
                _ => pseudonyms.of(v),
            };
            (k.clone(), v)
        })
        .collect();
    let mut engagement = Vec::new();
    let mut transition: Vec<CaseTransition> = Vec::new();
    let mut manual_step: Option<(CommandKind, String)> = None;
    for entry in history(leads, &lead.id).await? {
        match entry.entry {
            Some(pb::history_entry::Entry::Engagement(e)) => engagement.push(CaseEngagement {
                id: e.event_id,
                kind: e.r#type,
                at: rfc3339(e.occurred_at.as_ref())?,
                channel: (!e.channel.is_empty()).then_some(e.channel),
                properties: e
                    .properties
                    .into_iter()
                    .map(|(k, v)| {
                        let v = if properties.contains(&k) {
                            v
                        } else {
                            pseudonyms.of(&v)
                        };
                        (k, v)
                    })
                    .collect(),
            }),
            Some(pb::history_entry::Entry::Transition(t)) if t.cause == pb::Cause::Manual as i32 => {
                let by = pb::Move::try_from(t.r#move)
                    .map_or("?", |m| m.as_str_name())
                    .trim_start_matches("MOVE_");
                // A manual command also records the automatic move it sets
                // off (same cause): only the caller's own moves are replayed.
                let Some(command) = by
                    .parse::<CommandKind>()
                    .ok()
                    .filter(|c| CommandKind::MANUAL.contains(c))
                else {
                    continue;
                };
                let at = rfc3339(t.occurred_at.as_ref())?;
                // A forward jump records every stage it enters, under one
                // command: its last record (the one with the deal) stands for it.
                if let Some(last) = transition.last_mut()
                    && manual_step == Some((command, at.clone()))
                {
                    *last = manual_move(&t, command, at, pseudonyms);
                    continue;
                }
                manual_step = Some((command, at.clone()));
                transition.push(manual_move(&t, command, at, pseudonyms));
            }
            _ => {}
        }
    }
    let up = stage_name(lead.stage)
        .parse::<leadflow_domain::Stage>()
        .ok()
        .and_then(leadflow_domain::lifecycle::automatic_move_up)
        .and_then(|m| pb::Move::from_str_name(&format!("MOVE_{}", m.as_str())));
    let blocked_by = explained
        .next
        .iter()
        .filter(|n| up.is_some_and(|m| n.r#move == m as i32))
        .flat_map(|n| n.guards.iter())
        .filter(|g| !g.passed)
        .map(|g| g.guard.clone())
        .collect();
    Ok(Case {
        description: format!("lead {key}, recorded"),
        now: rfc3339(as_of.as_ref())?,
        captured_at: Some(rfc3339(lead.captured_at.as_ref())?),
        profile,
        engagement,
        transition,
        expect: Expect {
            stage: Some(stage_name(lead.stage).to_owned()),
            level: Some(scores.level.clone()),
            grade: Some(scores.grade.clone()),
            fit: around(scores.fit),
            engagement: around(scores.engagement),
            qualifying_engagement: around(scores.qualifying_engagement),
            models: scores
                .models
                .iter()
                .map(|(id, m)| {
                    let expect = ModelExpect {
                        fit: around(m.fit),
                        engagement: around(m.engagement),
                        qualifying_engagement: around(m.qualifying_engagement),
                    };
                    (id.clone(), expect)
                })
                .collect(),
            triggers: None,
            blocked_by: Some(blocked_by),
        },
    })
}

/// A manual move of the history as a case's `[[transition]]`: a reason
/// from the policy's lists as it is, a free-text one pseudonymised.
fn manual_move(
    t: &pb::Transition,
    command: CommandKind,
    at: String,
    pseudonyms: &Pseudonyms,
) -> CaseTransition {
    let listed = command
        .as_str()
        .parse::<leadflow_domain::Move>()
        .is_ok_and(leadflow_domain::lifecycle::reason_from_policy);
    let reason = (!t.reason.is_empty()).then(|| {
        if listed {
            t.reason.clone()
        } else {
            pseudonyms.of(&t.reason)
        }
    });
    CaseTransition {
        action: command.as_str().to_owned(),
        at,
        reason,
        deal_value: t.deal_value,
        currency: t.deal_value.map(|_| t.currency.clone()),
    }
}

/// A lead key as a file name: letters, digits, `-`, `_` and `.` kept, the
/// rest `_`.
fn file_name(key: &str) -> String {
    let name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    format!("{}.toml", name.trim_start_matches('.'))
}

/// Writes a case for each lead of `keys` (an external key, else an id) into
/// `dir`, read from the server under its active policy.
pub(super) async fn record(
    dir: &Path,
    remote: &Remote,
    keys: &[String],
    keep_personal: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !keys.is_empty(),
        "name the leads to record with --lead KEY (an external key or an id)"
    );
    let connection = remote.connect().await?;
    let active = pb::policy_service_client::PolicyServiceClient::new(connection.clone())
        .get_active_policy(pb::GetActivePolicyRequest {})
        .await
        .map_err(rpc_error)?
        .into_inner()
        .policy
        .context("the server has no active policy")?;
    let policy = Policy::from_toml(&active.source)
        .map_err(|e| anyhow::anyhow!("the server's active policy does not parse here: {e}"))?;
    let reads = read_by(&policy);
    let pseudonyms = Pseudonyms::new(keep_personal)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut leads = pb::lead_service_client::LeadServiceClient::new(connection);
    let mut written = BTreeMap::new();
    for key in keys {
        let case = case_of(&mut leads, key, &reads, &pseudonyms).await?;
        let path = dir.join(file_name(key));
        let text = format!(
            "# Recorded from a running server under policy version {} ({:?}).\n{}",
            active.version,
            active.name,
            toml::to_string_pretty(&case).context("a case as TOML")?
        );
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.insert(key.clone(), path);
    }
    for path in written.values() {
        println!("recorded {}", path.display());
    }
    if !keep_personal {
        let kept: Vec<&str> = reads.0.iter().map(String::as_str).collect();
        println!(
            "profile attributes the policy reads were kept as they are ({}); every other attribute, the email's \
             local part and the properties no rule reads were pseudonymised",
            kept.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

//! `leadflow policy test`: a policy file against fixture cases, decided by
//! the service's own domain, with no server. Each case is a TOML file: a
//! profile, an engagement log with absolute times, an instant to look at
//! the lead (`now`) and what it should be then (`[expect]`).

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use leadflow_domain::life::{Happening, Life, live};
use leadflow_domain::lifecycle::{Deal, automatic_move_up};
use leadflow_domain::workflow::Event;
use leadflow_domain::{CommandKind, Engagement, ManualTransition, Policy, Timestamp};
use serde::{Deserialize, Serialize};

use super::funnel::printable;
use super::policy::policy_file;

/// Exit status when a policy or a case cannot be read.
const UNUSABLE: u8 = 2;

/// One case file.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Case {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) description: String,
    /// RFC 3339; the instant the expectations are checked at.
    pub(super) now: String,
    /// RFC 3339; default: the first engagement's or move's time, else `now`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) captured_at: Option<String>,
    #[serde(default)]
    pub(super) profile: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) engagement: Vec<CaseEngagement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) transition: Vec<CaseTransition>,
    pub(super) expect: Expect,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CaseEngagement {
    pub(super) id: String,
    #[serde(rename = "type")]
    pub(super) kind: String,
    /// RFC 3339.
    pub(super) at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) channel: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) properties: BTreeMap<String, String>,
}

/// A manual move (`Transition`), at its instant.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CaseTransition {
    /// PROMOTE, ACCEPT, REJECT, RECYCLE, CONVERT, DISQUALIFY or REQUALIFY.
    pub(super) action: String,
    /// RFC 3339.
    pub(super) at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reason: Option<String>,
    /// CONVERT only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) deal_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) currency: Option<String>,
}

/// What the lead should be at `now`; what is left out is not checked.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Expect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) stage: Option<String>,
    /// A level id; `""` for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) grade: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) fit: Option<Range>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) engagement: Option<Range>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) qualifying_engagement: Option<Range>,
    /// The `[[model]]`s' scores, by model id (`[expect.models.<id>]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) models: BTreeMap<String, ModelExpect>,
    /// The workflows' `emit`s fired over the whole life, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) triggers: Option<Vec<String>>,
    /// The guards that fail on the lead's next automatic move up (IQL →
    /// MQL, MQL → SQL), in the order they are evaluated; `[]` for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) blocked_by: Option<Vec<String>>,
}

/// One model's scores, as `Expect` has the default model's.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelExpect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) fit: Option<Range>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) engagement: Option<Range>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) qualifying_engagement: Option<Range>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Range {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) at_least: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) at_most: Option<f64>,
}

impl Range {
    fn holds(&self, x: f64) -> bool {
        self.at_least.is_none_or(|min| x >= min) && self.at_most.is_none_or(|max| x <= max)
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.at_least, self.at_most) {
            (Some(min), Some(max)) => write!(f, "{min} ≤ x ≤ {max}"),
            (Some(min), None) => write!(f, "x ≥ {min}"),
            (None, Some(max)) => write!(f, "x ≤ {max}"),
            (None, None) => f.write_str("any"),
        }
    }
}

fn instant(field: &str, text: &str) -> anyhow::Result<Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("{field}: {text:?} is not an RFC 3339 instant (2026-01-05T09:00:00Z)"))?;
    Ok(Timestamp::from_micros(t.timestamp_micros()))
}

/// A case read from its file, with its instants parsed.
struct Ready {
    now: Timestamp,
    captured_at: Timestamp,
    profile: BTreeMap<String, String>,
    happenings: Vec<Happening>,
    description: String,
    expect: Expect,
}

fn read_case(file: &Path) -> anyhow::Result<Ready> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let case: Case = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    let now = instant("now", &case.now)?;
    let mut engagements = Vec::with_capacity(case.engagement.len());
    for (i, e) in case.engagement.into_iter().enumerate() {
        engagements.push(Engagement {
            occurred_at: instant(&format!("engagement[{i}].at"), &e.at)?,
            event_id: e.id,
            kind: e.kind,
            channel: e.channel,
            properties: e.properties,
        });
    }
    let mut ids = std::collections::BTreeSet::new();
    for (i, e) in engagements.iter().enumerate() {
        anyhow::ensure!(
            e.occurred_at <= now,
            "engagement[{i}].at: after `now` (the case looks at the lead at `now`)"
        );
        anyhow::ensure!(
            ids.insert(e.event_id.as_str()),
            "engagement[{i}].id: {:?} is used twice (an event id counts once)",
            e.event_id
        );
    }
    let mut first = engagements.iter().map(|e| e.occurred_at).min();
    let mut happenings: Vec<Happening> = engagements.into_iter().map(Happening::Engagement).collect();
    for (i, t) in case.transition.into_iter().enumerate() {
        let at = instant(&format!("transition[{i}].at"), &t.at)?;
        anyhow::ensure!(
            at <= now,
            "transition[{i}].at: after `now` (the case looks at the lead at `now`)"
        );
        first = Some(first.map_or(at, |f| f.min(at)));
        let command = t
            .action
            .parse::<CommandKind>()
            .ok()
            .filter(|c| CommandKind::MANUAL.contains(c))
            .with_context(|| {
                let manual: Vec<&str> = CommandKind::MANUAL.iter().map(|c| c.as_str()).collect();
                format!(
                    "transition[{i}].action: {:?} is not one of {}",
                    t.action,
                    manual.join(", ")
                )
            })?;
        happenings.push(Happening::Transition(ManualTransition {
            command,
            reason: t.reason,
            actor: None,
            deal: t.deal_value.map(|value| Deal {
                value,
                currency: t.currency.unwrap_or_default(),
            }),
            occurred_at: Some(at),
        }));
    }
    let captured_at = match &case.captured_at {
        Some(text) => instant("captured_at", text)?,
        None => first.unwrap_or(now),
    };
    Ok(Ready {
        now,
        captured_at,
        profile: case.profile,
        happenings,
        description: case.description,
        expect: case.expect,
    })
}

/// The guards failing on the lead's next automatic move up, with what each
/// compared.
fn blocking(policy: &Policy, life: &Life, now: Timestamp) -> Vec<(String, String)> {
    let Some(up) = automatic_move_up(life.lead.stage) else {
        return Vec::new();
    };
    leadflow_domain::explain::explain(policy, &life.lead, &life.log, now)
        .next
        .into_iter()
        .filter(|n| n.by == up)
        .flat_map(|n| n.guards)
        .filter(|g| !g.passed)
        .map(|g| (g.guard.to_string(), g.detail))
        .collect()
}

/// The differences between what the case expects and what the lead is.
fn differences(policy: &Policy, case: &Ready, life: &Life) -> Vec<String> {
    let mut out = Vec::new();
    let e = &case.expect;
    let scores = life.lead.scores_at(policy, case.now);
    if let Some(stage) = &e.stage
        && life.lead.stage.as_str() != stage
    {
        out.push(format!("stage: expected {stage}, got {}", life.lead.stage));
    }
    let level = scores.level.clone().unwrap_or_default();
    if let Some(expected) = &e.level
        && *expected != level
    {
        let name = |l: &str| {
            if l.is_empty() {
                "none".to_owned()
            } else {
                l.to_owned()
            }
        };
        out.push(format!(
            "level: expected {}, got {}",
            name(expected),
            name(&level)
        ));
    }
    if let Some(grade) = &e.grade
        && *grade != scores.grade
    {
        out.push(format!("grade: expected {grade}, got {}", scores.grade));
    }
    let mut ranges = vec![
        ("fit".to_owned(), &e.fit, scores.fit),
        ("engagement".to_owned(), &e.engagement, scores.engagement),
        (
            "qualifying_engagement".to_owned(),
            &e.qualifying_engagement,
            scores.qualifying_engagement,
        ),
    ];
    let default = leadflow_domain::lifecycle::ModelScores {
        fit: scores.fit,
        engagement: scores.engagement,
        qualifying_engagement: scores.qualifying_engagement,
    };
    for (id, expected) in &e.models {
        let actual = if id == leadflow_domain::policy::DEFAULT_MODEL {
            Some(&default)
        } else {
            scores.models.get(id)
        };
        let Some(actual) = actual else {
            let known: Vec<&str> = scores.models.keys().map(String::as_str).collect();
            let known = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            out.push(format!(
                "models.{id}: the policy has no such model (its models: {known})"
            ));
            continue;
        };
        ranges.extend([
            (format!("models.{id}.fit"), &expected.fit, actual.fit),
            (
                format!("models.{id}.engagement"),
                &expected.engagement,
                actual.engagement,
            ),
            (
                format!("models.{id}.qualifying_engagement"),
                &expected.qualifying_engagement,
                actual.qualifying_engagement,
            ),
        ]);
    }
    for (name, range, actual) in ranges {
        if let Some(range) = range
            && !range.holds(actual)
        {
            out.push(format!("{name}: expected {range}, got {actual}"));
        }
    }
    if let Some(expected) = &e.triggers {
        let fired: Vec<&str> = life
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Trigger(t) => Some(t.emit.as_str()),
                _ => None,
            })
            .collect();
        if fired != *expected {
            out.push(format!("triggers: expected {expected:?}, got {fired:?}"));
        }
    }
    if let Some(expected) = &e.blocked_by {
        let failing = blocking(policy, life, case.now);
        let names: Vec<&str> = failing.iter().map(|(g, _)| g.as_str()).collect();
        if names != *expected {
            let details: Vec<&str> = failing.iter().map(|(_, d)| d.as_str()).collect();
            let mut line = format!("blocked_by: expected {expected:?}, got {names:?}");
            if !details.is_empty() {
                let _ = write!(line, " ({})", details.join("; "));
            }
            out.push(line);
        }
    }
    out
}

/// The case files of `dir`: its `*.toml`, by name.
fn case_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the cases in {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Runs every case of `cases` against the policy in `file`. Exit status 0
/// when all pass, 1 when one fails (a difference, or an engagement or move
/// the policy refuses), 2 when the policy or a case cannot be read.
pub(super) fn run(file: &Path, cases: &Path) -> anyhow::Result<ExitCode> {
    let Some((_, policy, _)) = policy_file(file)? else {
        return Ok(ExitCode::from(UNUSABLE));
    };
    let files = case_files(cases)?;
    if files.is_empty() {
        eprintln!("no cases (*.toml) in {}", cases.display());
        return Ok(ExitCode::from(UNUSABLE));
    }
    let (mut passed, mut failed, mut unusable) = (0, 0, 0);
    for path in &files {
        let name = path.display();
        let case = match read_case(path) {
            Ok(case) => case,
            Err(e) => {
                println!("ERROR {name}");
                for line in format!("{e:#}").lines() {
                    println!("      {}", printable(line));
                }
                unusable += 1;
                continue;
            }
        };
        let life = match live(
            &policy,
            case.profile.clone(),
            case.captured_at,
            &case.happenings,
            case.now,
        ) {
            Ok(life) => life,
            Err(refused) => {
                // the policy decides otherwise than the case was written for
                println!("FAIL  {name}");
                println!(
                    "      {} refused: {}",
                    printable(&refused.at),
                    printable(&refused.error)
                );
                failed += 1;
                continue;
            }
        };
        let differences = differences(&policy, &case, &life);
        let about = if case.description.is_empty() {
            String::new()
        } else {
            format!(" — {}", printable(&case.description))
        };
        if differences.is_empty() {
            println!("ok    {name}{about}");
            passed += 1;
        } else {
            println!("FAIL  {name}{about}");
            for d in differences {
                println!("      {}", printable(&d));
            }
            failed += 1;
        }
    }
    println!("\n{passed} passed, {failed} failed, {unusable} could not be read");
    Ok(if unusable > 0 {
        ExitCode::from(UNUSABLE)
    } else if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

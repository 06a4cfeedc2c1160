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
use leadflow_domain::life::{Life, live};
use leadflow_domain::transition::Move;
use leadflow_domain::workflow::Event;
use leadflow_domain::{Engagement, Policy, Stage, Timestamp};
use serde::Deserialize;

use super::funnel::printable;
use super::policy::policy_file;

/// Exit status when a policy or a case cannot be read or run.
const UNUSABLE: u8 = 2;

/// One case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    description: String,
    /// RFC 3339; the instant the expectations are checked at.
    now: String,
    /// RFC 3339; default: the first engagement's time, else `now`.
    captured_at: Option<String>,
    #[serde(default)]
    profile: BTreeMap<String, String>,
    #[serde(default)]
    engagement: Vec<CaseEngagement>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseEngagement {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    /// RFC 3339.
    at: String,
    channel: Option<String>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

/// What the lead should be at `now`; what is left out is not checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    stage: Option<String>,
    /// A level id; `""` for none.
    level: Option<String>,
    grade: Option<String>,
    fit: Option<Range>,
    engagement: Option<Range>,
    qualifying_engagement: Option<Range>,
    /// The workflows' `emit`s fired over the whole life, in order.
    triggers: Option<Vec<String>>,
    /// The guards that fail on the lead's next automatic move up (IQL →
    /// MQL, MQL → SQL), in the order they are evaluated; `[]` for none.
    blocked_by: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    at_least: Option<f64>,
    at_most: Option<f64>,
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
    engagements: Vec<Engagement>,
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
    let captured_at = match &case.captured_at {
        Some(text) => instant("captured_at", text)?,
        None => engagements
            .iter()
            .map(|e| e.occurred_at)
            .min()
            .unwrap_or(now)
            .min(now),
    };
    Ok(Ready {
        now,
        captured_at,
        profile: case.profile,
        engagements,
        description: case.description,
        expect: case.expect,
    })
}

/// The guards failing on the lead's next automatic move up, with what each
/// compared.
fn blocking(policy: &Policy, life: &Life, now: Timestamp) -> Vec<(String, String)> {
    let up = match life.lead.stage {
        Stage::Iql => Move::AutoQualify,
        Stage::Mql => Move::SalesReady,
        _ => return Vec::new(),
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
    for (name, range, actual) in [
        ("fit", &e.fit, scores.fit),
        ("engagement", &e.engagement, scores.engagement),
        (
            "qualifying_engagement",
            &e.qualifying_engagement,
            scores.qualifying_engagement,
        ),
    ] {
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
/// when all pass, 1 when one fails, 2 when the policy or a case cannot be
/// read or run.
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
            &case.engagements,
            case.now,
        ) {
            Ok(life) => life,
            Err(refused) => {
                println!("ERROR {name}");
                println!(
                    "      {} refused: {}",
                    printable(&refused.at),
                    printable(&refused.error.to_string())
                );
                unusable += 1;
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
    println!("\n{passed} passed, {failed} failed, {unusable} could not run");
    Ok(if unusable > 0 {
        ExitCode::from(UNUSABLE)
    } else if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

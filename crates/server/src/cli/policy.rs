//! Policy files: checked here, simulated and activated on a server.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use leadflow_proto::v1 as pb;

use super::funnel::{printable, stage_name};
use super::remote::{Remote, rpc_error};

#[derive(Debug, Subcommand)]
pub(super) enum PolicyCommand {
    /// Checks a policy file; prints every problem with its path. Warnings
    /// (e.g. a threshold no lead can reach) do not fail it.
    Validate { file: PathBuf },
    /// Shows what a policy file would do to every current lead on a running
    /// server: counts per stage before and after, the leads that would move
    /// and those that would newly fail a guard. Writes nothing.
    Simulate {
        file: PathBuf,
        // A token needs policy:admin, as for every policy command.
        #[command(flatten)]
        remote: Remote,
        /// Leads to list of each kind (movers, newly failing).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        top: u32,
        /// List every lead that would move or newly fail.
        #[arg(long, conflicts_with = "top")]
        all: bool,
    },
    /// Runs a policy file against fixture cases (one TOML file each: a
    /// profile, engagements with their times, `now` and `[expect]`), with
    /// the service's own decisions and no server. Prints a difference per
    /// failing case; exits 1 if one fails, 2 if a case cannot be read.
    ///
    /// With --record, writes instead a case for each lead named by --lead
    /// from a running server (its profile and history, and what it is
    /// now), to pin today's behaviour before a change.
    Test {
        /// The policy file (not with --record: the server's active policy
        /// is recorded under).
        #[arg(required_unless_present = "record", conflicts_with = "record")]
        file: Option<PathBuf>,
        /// The directory of case files (`*.toml`).
        #[arg(long)]
        cases: PathBuf,
        /// Write cases from leads of a running server into --cases.
        #[arg(long)]
        record: bool,
        /// A lead to record: its external key, else its id (repeatable).
        #[arg(long = "lead", value_name = "KEY", requires = "record")]
        leads: Vec<String>,
        /// Record the profile and properties as they are: by default what
        /// the policy does not read is pseudonymised, since cases are meant
        /// for a repository.
        #[arg(long, requires = "record")]
        keep_personal: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Learns a draft of the active policy (or --base-version) from the
    /// outcomes of the leads captured in a period on a running server: the
    /// rules' points weighed by what led to the outcome, new rules where
    /// the data supports them, and an MQL bar calibrated for a precision.
    /// The draft goes to stdout (`> draft.toml`), the report to stderr;
    /// exits 1 when there is too little data.
    Learn(super::policy_learn::LearnArgs),
    /// Stores a policy file as a new version on a running server, activates
    /// it and follows the re-score of every lead; fails if the re-score does.
    #[command(alias = "apply")]
    Activate {
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
}

pub(super) fn read(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

/// Reads a policy file and reports its problems: `None` if it has errors,
/// else its text, the policy and how many warnings were printed.
pub(super) fn policy_file(file: &Path) -> anyhow::Result<Option<(String, leadflow_domain::Policy, usize)>> {
    let source = read(file)?;
    match leadflow_domain::Policy::from_toml(&source) {
        Ok(policy) => {
            let warnings = policy.warnings();
            for w in &warnings {
                let at = located(file, leadflow_domain::policy::place_of(&source, &w.path));
                eprintln!("{at} warning: {w}");
            }
            Ok(Some((source, policy, warnings.len())))
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{} {e}", located(file, e.place));
            }
            eprintln!("{} problem(s) in {}", errors.0.len(), file.display());
            Ok(None)
        }
    }
}

/// `file:line:column`, as editors and compilers write a place (`file:`
/// when the problem has none).
pub(super) fn located(file: &Path, place: Option<leadflow_domain::policy::Place>) -> String {
    match place {
        Some(place) => format!("{}:{place}", file.display()),
        None => format!("{}:", file.display()),
    }
}

/// Simulated leads a page; the server takes up to 1000, but each comes with
/// its transitions and guards, and a page must stay well inside a message.
pub(super) const SIMULATION_PAGE: i32 = 250;

pub(super) async fn simulate(file: &Path, remote: &Remote, top: usize) -> anyhow::Result<ExitCode> {
    let Some((source, _, _)) = policy_file(file)? else {
        return Ok(ExitCode::FAILURE);
    };
    let mut client = pb::policy_service_client::PolicyServiceClient::new(remote.connect().await?);
    let request = |as_of: Option<prost_types::Timestamp>, page_token: String| pb::SimulatePolicyRequest {
        policy: Some(pb::simulate_policy_request::Policy::Source(source.clone())),
        as_of,
        page_size: SIMULATION_PAGE,
        page_token,
    };
    let sim = client
        .simulate_policy(request(None, String::new()))
        .await
        .map_err(rpc_error)?
        .into_inner();
    println!(
        "{} leads under the active version {} against {}:\n",
        sim.leads,
        sim.active_version,
        file.display()
    );
    println!(
        "{:<14} {:>10} {:>10} {:>10}",
        "stage", "before", "after", "change"
    );
    for c in &sim.stages {
        println!(
            "{:<14} {:>10} {:>10} {:>+10}",
            stage_name(c.stage),
            c.before,
            c.after,
            c.after - c.before
        );
    }
    if !sim.levels.is_empty() {
        println!(
            "\n{:<14} {:>10} {:>10} {:>10}",
            "MQL level", "before", "after", "change"
        );
        for l in &sim.levels {
            println!(
                "{:<14} {:>10} {:>10} {:>+10}",
                printable(&l.level),
                l.before,
                l.after,
                l.after - l.before
            );
        }
    }
    println!(
        "\n{} would move; {} would newly fail a qualification guard.",
        sim.movers, sim.newly_failing
    );
    if sim.assigned + sim.unrouted > 0 {
        println!(
            "\n{:<24} {:>10} {:>10} {:>10} {:>10}",
            "owner", "open now", "after", "given", "lost"
        );
        for o in &sim.owner_loads {
            println!(
                "{:<24} {:>10} {:>10} {:>10} {:>10}",
                printable(&o.owner_id),
                o.open_before,
                o.open_after,
                o.given,
                o.taken
            );
        }
        println!(
            "{} change(s) of owner; {} lead(s) no owner could take.",
            sim.assigned, sim.unrouted
        );
    }
    // Leads come a page at a time, movers and newly failing mixed, by id:
    // read on until both lists are as long as asked (or all there is).
    let want = |total: i64| usize::try_from(total).unwrap_or(0).min(top);
    let (want_movers, want_failing) = (want(sim.movers), want(sim.newly_failing));
    let mut movers: Vec<pb::SimulatedLead> = Vec::new();
    let mut failing: Vec<pb::SimulatedLead> = Vec::new();
    let as_of = sim.as_of;
    let mut page = (sim.changed, sim.next_page_token);
    loop {
        for lead in page.0 {
            if lead.from_stage != lead.to_stage && movers.len() < want_movers {
                movers.push(lead.clone());
            }
            if !lead.newly_failing.is_empty() && failing.len() < want_failing {
                failing.push(lead);
            }
        }
        if page.1.is_empty() || (movers.len() >= want_movers && failing.len() >= want_failing) {
            break;
        }
        let next = client
            .simulate_policy(request(as_of, page.1))
            .await
            .map_err(rpc_error)?
            .into_inner();
        page = (next.changed, next.next_page_token);
    }
    if !movers.is_empty() {
        println!("\nWould move:");
        println!("{:<38} {:<24} deciding guards", "lead", "move");
        for l in &movers {
            let last = l.transitions.last();
            let guards: Vec<String> = last
                .map(|t| t.guards.iter().map(|g| printable(&g.detail)).collect())
                .unwrap_or_default();
            let why = if guards.is_empty() {
                last.map(|t| printable(&t.reason)).unwrap_or_default()
            } else {
                guards.join(", ")
            };
            println!(
                "{:<38} {:<24} {why}",
                lead_label(l),
                format!("{} -> {}", stage_name(l.from_stage), stage_name(l.to_stage))
            );
        }
        more(movers.len(), sim.movers);
    }
    if !failing.is_empty() {
        println!("\nWould newly fail a guard:");
        println!("{:<38} {:<14} failing guards", "lead", "stage");
        for l in &failing {
            let guards: Vec<String> = l
                .newly_failing
                .iter()
                .map(|g| printable(if g.detail.is_empty() { &g.guard } else { &g.detail }))
                .collect();
            println!(
                "{:<38} {:<14} {}",
                lead_label(l),
                stage_name(l.to_stage),
                guards.join(", ")
            );
        }
        more(failing.len(), sim.newly_failing);
    }
    Ok(ExitCode::SUCCESS)
}

/// A simulated lead by its external key where it has one, else its id.
pub(super) fn lead_label(lead: &pb::SimulatedLead) -> String {
    if lead.external_key.is_empty() {
        lead.lead_id.clone()
    } else {
        printable(&lead.external_key)
    }
}

/// The line under a list cut at `listed` of `total`.
pub(super) fn more(listed: usize, total: i64) {
    let listed = i64::try_from(listed).unwrap_or(i64::MAX);
    if total > listed {
        println!(
            "… and {} more (--top {total} or --all lists them)",
            total - listed
        );
    }
}

pub(super) async fn activate(file: &Path, remote: &Remote) -> anyhow::Result<ExitCode> {
    let Some((source, _, _)) = policy_file(file)? else {
        return Ok(ExitCode::FAILURE);
    };
    let mut client = pb::policy_service_client::PolicyServiceClient::new(remote.connect().await?);
    let created = client
        .create_policy_version(pb::CreatePolicyVersionRequest {
            request_id: String::new(),
            source,
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .policy
        .context("the server returned no policy")?;
    let activated = client
        .activate_policy(pb::ActivatePolicyRequest {
            request_id: String::new(),
            version: created.version,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    println!(
        "policy {:?} is version {} and active",
        created.name, created.version
    );
    println!("{}", activated.note);
    let job = activated.job.context("the server started no re-score")?;
    let mut progress = client
        .watch_rescore(pb::WatchRescoreRequest { job_id: job.id })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let mut last = job;
    while let Some(update) = progress.message().await.map_err(rpc_error)? {
        if let Some(job) = update.job {
            eprint!("\r{}", progress_bar(&job));
            last = job;
        }
    }
    eprintln!();
    match pb::RescoreStatus::try_from(last.status) {
        Ok(pb::RescoreStatus::Done) => {
            println!("re-scored {} leads: {} transitions", last.done, last.transitions);
            Ok(ExitCode::SUCCESS)
        }
        Ok(pb::RescoreStatus::Superseded) => {
            eprintln!("the re-score was superseded by a later activation");
            Ok(ExitCode::FAILURE)
        }
        _ => {
            eprintln!("the re-score failed: {}", last.error);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `[#########...........]  45%  4500/10000 leads  120 transitions  900/s  ETA 6s`
pub(super) fn progress_bar(job: &pb::RescoreJob) -> String {
    const WIDTH: i64 = 30;
    let total = job.total.max(1);
    let done = job.done.min(total);
    let filled = usize::try_from(done * WIDTH / total).unwrap_or(0);
    let empty = usize::try_from(WIDTH).unwrap_or(30).saturating_sub(filled);
    format!(
        "[{}{}] {:>3}%  {}/{} leads  {} transitions  {:.0}/s  ETA {:.0}s ",
        "#".repeat(filled),
        ".".repeat(empty),
        done * 100 / total,
        job.done,
        job.total,
        job.transitions,
        job.rate,
        job.eta_seconds
    )
}

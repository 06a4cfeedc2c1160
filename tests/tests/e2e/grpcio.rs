//! A stock client reads every error, whatever the input. grpcio (gRPC
//! C-core, as in Python, Ruby and PHP) refuses metadata past 8 KiB by
//! default and then shows its own RESOURCE_EXHAUSTED instead of the
//! server's answer, a failure the tonic clients of the other tests do not
//! show. Stubs generated from `proto/` by grpc_tools.protoc drive
//! `tests/python/error_sizes.py` over a channel with default options: it
//! sends hostile input to every RPC that can fail with many violations or
//! echo a large value, and checks each error's code, its rich details and
//! that its trailers stay under 7 KiB.
//!
//! The Python is `$LEADFLOW_TEST_PYTHON`, with grpcio-tools installed
//! (`python3 -m venv venv && venv/bin/pip install grpcio-tools`); without
//! it the test is ignored, marked `[no python]`, unless
//! `LEADFLOW_REQUIRE_PYTHON=1`, where it fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use leadflow_e2e::*;

/// Trailers a case may answer with, in bytes as HTTP/2 counts them: under
/// the 8 KiB a stock client accepts, with room for what a proxy adds.
const MAX_TRAILERS: u64 = 7 * 1024;

/// Every RPC that can fail with many violations or echo a large value: the
/// script must try each.
const COVERED: &[&str] = &[
    "LeadService.CreateLead",
    "LeadService.GetLead",
    "LeadService.ListLeads",
    "LeadService.UpdateLeadProfile",
    "LeadService.RecordEngagement",
    "LeadService.RecordEngagements",
    "LeadService.StreamEngagements",
    "LeadService.Transition",
    "LeadService.GetLeadHistory",
    "LeadService.ExplainScore",
    "LeadService.EraseLead",
    "PolicyService.ValidatePolicy",
    "PolicyService.CreatePolicyVersion",
    "PolicyService.SimulatePolicy",
    "PolicyService.ListPolicyVersions",
    "PolicyService.ActivatePolicy",
    "TriggerService.Subscribe",
    "TriggerService.Ack",
    "TriggerService.DeleteConsumer",
    "AnalyticsService.GetFunnel",
    "AnalyticsService.LearnPolicy",
    "AnalyticsService.GetLearnReport",
];

/// A scratch directory for the generated stubs, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `python` with `args` off the runtime (the server under test runs on it).
async fn run_python(python: &str, args: Vec<String>) -> anyhow::Result<Output> {
    let mut command = Command::new(python);
    command.args(args);
    Ok(tokio::task::spawn_blocking(move || command.output()).await??)
}

fn ensure_success(what: &str, out: &Output) -> anyhow::Result<()> {
    anyhow::ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Python stubs for every proto file, generated into `dir`.
async fn generate_stubs(python: &str, dir: &Path) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let mut args = vec![
        "-m".to_owned(),
        "grpc_tools.protoc".to_owned(),
        format!("-I{}", root.display()),
        format!("--python_out={}", dir.display()),
        format!("--grpc_python_out={}", dir.display()),
    ];
    let mut protos: Vec<String> = std::fs::read_dir(root.join("leadflow/v1"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .map(|p| p.display().to_string())
        .collect();
    anyhow::ensure!(!protos.is_empty(), "no proto files under {}", root.display());
    protos.sort();
    args.extend(protos);
    ensure_success("grpc_tools.protoc", &run_python(python, args).await?)
}

/// One line of the script's report: a case and what came back.
fn describe_case(case: &serde_json::Value) -> String {
    let text = |name: &str| case[name].as_str().unwrap_or("?");
    let size = case
        .get("trailers")
        .map(|t| format!("trailers {t:>5} B"))
        .or_else(|| case.get("response").map(|r| format!("body     {r:>5} B")))
        .unwrap_or_default();
    let failures = case
        .get("failures")
        .map(|f| format!(": FAILED {f}"))
        .unwrap_or_default();
    format!(
        "{:<34} {:<19} {size:<16} {}{failures}",
        text("rpc"),
        text("code"),
        text("case"),
    )
}

/// Every case with its trailers' size: what a stock client is sent.
#[allow(clippy::print_stderr)] // the sizes, for whoever watches the test
fn print_cases(db: Db, cases: &[serde_json::Value]) {
    eprintln!("{} cases on {db:?}:", cases.len());
    for case in cases {
        eprintln!("  {}", describe_case(case));
    }
}

async fn a_stock_grpcio_client_reads_every_error(server: TestServer) -> anyhow::Result<()> {
    let python = python().ok_or_else(|| anyhow::anyhow!("LEADFLOW_TEST_PYTHON is not set"))?;
    let scratch =
        Scratch(std::env::temp_dir().join(format!("leadflow-grpcio-{:?}-{}", server.db, std::process::id())));
    std::fs::create_dir_all(&scratch.0)?;
    generate_stubs(&python, &scratch.0).await?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/error_sizes.py");
    let out = run_python(
        &python,
        vec![
            script.display().to_string(),
            server.grpc_addr().to_string(),
            scratch.0.display().to_string(),
        ],
    )
    .await?;
    let cases: Result<Vec<serde_json::Value>, _> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect();
    if let Ok(cases) = &cases {
        print_cases(server.db, cases);
    }
    ensure_success("the grpcio client", &out)?;
    let cases = cases?;

    for case in &cases {
        anyhow::ensure!(case.get("failures").is_none(), "{}", describe_case(case));
        if let Some(trailers) = case.get("trailers") {
            let trailers = trailers.as_u64().unwrap_or(u64::MAX);
            anyhow::ensure!(trailers < MAX_TRAILERS, "{}", describe_case(case));
        }
    }
    let tried: BTreeSet<&str> = cases.iter().filter_map(|c| c["rpc"].as_str()).collect();
    let untried: Vec<&&str> = COVERED.iter().filter(|rpc| !tried.contains(**rpc)).collect();
    anyhow::ensure!(untried.is_empty(), "no case for {untried:?}");
    Ok(())
}

scenarios! {
    a_stock_grpcio_client_reads_every_error = system_clock().needs(&PYTHON),
}

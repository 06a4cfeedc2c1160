//! The `leadflow` command, built into this package so that multi-process
//! tests can start replicas of their own.

fn main() -> std::process::ExitCode {
    leadflow_server::cli::main()
}

//! `leadflow`: see `leadflow --help`.

fn main() -> std::process::ExitCode {
    leadflow_server::cli::main()
}

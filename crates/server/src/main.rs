//! `leadflow`: see `leadflow --help`.

// A command allocates a few hundred small values (rows, strings, spans):
// mimalloc serves them in a fraction of the instructions the system
// allocator takes (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    leadflow_server::cli::main()
}

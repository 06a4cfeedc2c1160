//! Compiles proto/leadflow/v1 with protox (no system protoc) and writes the
//! encoded descriptor set next to the generated code, for reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "leadflow/v1/analytics_service.proto",
        "leadflow/v1/lead.proto",
        "leadflow/v1/lead_service.proto",
        "leadflow/v1/policy_service.proto",
        "leadflow/v1/trigger_service.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("leadflow_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Deterministic encoding: idempotency fingerprints hash request bytes.
        .btree_map(".")
        .compile_fds(fds)?;
    Ok(())
}

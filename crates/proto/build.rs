//! Compiles proto/leadflow/v1 with protox (no system protoc) and writes the
//! encoded descriptor set next to the generated code, for reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "leadflow/v1/account_service.proto",
        "leadflow/v1/analytics_service.proto",
        "leadflow/v1/lead.proto",
        "leadflow/v1/lead_service.proto",
        "leadflow/v1/owner_service.proto",
        "leadflow/v1/webhook_service.proto",
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
        .compile_fds(fds.clone())?;

    // The event stream's server again, sending `SubscribeResponse` as
    // bytes encoded once per event (`crate::frame`) instead of a message
    // encoded once per subscriber; every other type is the one above.
    let framed = out.join("framed");
    std::fs::create_dir_all(&framed)?;
    let mut only_triggers = fds;
    for file in &mut only_triggers.file {
        if file.name() != "leadflow/v1/trigger_service.proto" {
            file.service.clear();
        }
    }
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&framed)
        .extern_path(".leadflow.v1", "crate::v1")
        .extern_path(".leadflow.v1.SubscribeResponse", "crate::frame::SubscribeFrame")
        .compile_fds(only_triggers)?;
    Ok(())
}

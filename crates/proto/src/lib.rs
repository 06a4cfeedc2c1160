//! leadflow-proto: the gRPC API (`leadflow.v1`), generated at build time from
//! `proto/leadflow/v1` by protox and tonic-prost-build, and the encoded file
//! descriptor set that server reflection serves.
//!
//! Only the server and the tests depend on this crate; the domain, the store
//! and the engine never see a proto type.

#![allow(unreachable_pub, missing_debug_implementations, clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("leadflow.v1");
}

pub mod frame;

/// `leadflow.v1.TriggerService`'s server sending pre-encoded
/// `SubscribeResponse`s ([`frame::SubscribeFrame`]); the wire is the same
/// as `v1::trigger_service_server`'s.
pub mod framed {
    include!(concat!(env!("OUT_DIR"), "/framed/leadflow.v1.rs"));
}

/// The encoded `FileDescriptorSet` of every leadflow proto.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/leadflow_descriptor.bin"));

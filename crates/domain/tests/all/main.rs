//! leadflow-domain's tests, in one binary.

mod accounts;
mod common;
mod handoff;
mod identity;
mod layers;
mod learn;
mod levels;
mod life;
mod lifecycle;
mod lifecycle_doc;
mod meaning;
mod merge;
mod models;
mod names;
mod policy;
mod properties;
mod routing;
mod scoring;
mod transition_coverage;
mod workflows;

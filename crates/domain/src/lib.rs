//! leadflow-domain: the pure heart of leadflow.
//!
//! It owns the lifecycle — stages, the transition table and its guards —
//! scoring with caps and decay, policy parsing and validation, and workflow
//! and SLA decisions. A command and a lead's state go in; a decision (the new
//! state, the events for the outbox, the timer changes) comes out.
//!
//! # Layout
//!
//! Each module uses only those listed before it, so none is part of a cycle:
//!
//! - [`named`], [`time`], [`num`], [`stage`]: enums named once for the wire,
//!   instants and spans, how scores compare, the stages.
//! - [`engagement`]: what a lead did.
//! - [`transition`]: commands, moves, guards and the record a transition leaves.
//! - [`error`], [`profile`]: the domain's error; a lead's attributes.
//! - [`policy`]: the TOML lead definition, parsed and validated with paths.
//! - [`score`]: the engagement score as a fold over the sorted log.
//! - [`workflow`]: triggers, durable timers, score crossings.
//! - [`lifecycle`]: the transition table, guards, a lead's state, [`lifecycle::decide`].
//! - [`explain`]: a lead's scores rule by rule and the guards ahead of it.
//! - [`account`]: accounts — matching leads to them, scores from their
//!   members, buying groups, their stages and decisions.
//! - [`analytics`]: the funnel of a period, from the leads' stage histories.
//! - [`diagram`]: `docs/lifecycle.md`, generated from the table.
//! - [`webhook`]: webhook deliveries — retries, order per subject, an
//!   endpoint's position, addresses never reached.
//!
//! This crate must never import tonic, prost, sea-orm, sqlx or tokio, nor read
//! a clock, a file or the network: every instant comes in through a command
//! or a [`lifecycle::Context`]. That is what makes a re-score a replay and
//! property tests cheap.

pub mod account;
pub mod analytics;
pub mod diagram;
pub mod engagement;
pub mod error;
pub mod explain;
pub mod handoff;
pub mod life;
pub mod lifecycle;
pub mod named;
pub mod num;
pub mod policy;
pub mod profile;
pub mod routing;
pub mod score;
pub mod stage;
pub mod time;
pub mod transition;
pub mod webhook;
pub mod workflow;

pub use engagement::{Engagement, EventKey};
pub use error::{DomainError, FieldViolation, InvalidKind};
pub use lifecycle::{
    Cause, Command, CommandKind, Context, Decision, Lead, ManualTransition, Move, Scores, TransitionRecord,
    capture, decide, decide_since,
};
pub use policy::{Policy, PolicyError, PolicyErrors};
pub use stage::{AccountStage, Stage};
pub use time::{Span, Timestamp};

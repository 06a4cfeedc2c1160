//! The checks that read one part of a policy against another: an
//! engagement type against the vocabulary, a grade against `[grades]`, a
//! reason against `[reasons]`, an SLA by its id, a rule id against those
//! before it, and a delayed workflow against the stage it can fire in.
//!
//! Each reports at the place that refers, and says whether it holds.

use std::collections::{BTreeMap, BTreeSet};

use super::reader::{Cx, Loc};
use super::suggestions::did_you_mean;
use super::{Grade, Level, Model, Persona, Reasons, Sla, WorkflowOn};
use crate::stage::Stage;

/// Where each rule id was first used, to report duplicates.
pub(super) type Ids = BTreeMap<String, String>;

/// An id used once only among `ids`.
pub(super) fn unique_id(cx: &mut Cx<'_>, at: &Loc, id: &str, ids: &mut Ids) -> bool {
    if let Some(first) = ids.get(id) {
        cx.err(at, format!("duplicate rule id {id:?} (first used at {first})"));
        return false;
    }
    ids.insert(id.to_owned(), at.path.clone());
    true
}

/// An engagement type of the vocabulary.
pub(super) fn engagement_type(cx: &mut Cx<'_>, at: &Loc, ty: &str, types: &BTreeSet<String>) -> bool {
    if types.contains(ty) {
        return true;
    }
    let hint = did_you_mean(ty, types.iter().map(String::as_str));
    cx.err(at, format!("unknown engagement type {ty:?}{hint}"));
    false
}

/// A grade letter of `[grades]`.
pub(super) fn grade(cx: &mut Cx<'_>, at: &Loc, letter: &str, grades: &[Grade]) -> bool {
    if grades.iter().any(|g| g.letter == letter) {
        return true;
    }
    let known: Vec<&str> = grades.iter().map(|g| g.letter.as_str()).collect();
    cx.err(
        at,
        format!(
            "unknown grade {letter:?} (the [grades] table has: {})",
            known.join(", ")
        ),
    );
    false
}

/// A model of `[[model]]`, or the default: its index.
pub(super) fn model(cx: &mut Cx<'_>, at: &Loc, id: &str, models: &[Model]) -> Option<usize> {
    if let Some(i) = models.iter().position(|m| m.id == id) {
        return Some(i);
    }
    let hint = did_you_mean(id, models.iter().map(|m| m.id.as_str()));
    let known: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
    cx.err(
        at,
        format!(
            "unknown model {id:?}{hint} (the models are: {})",
            known.join(", ")
        ),
    );
    None
}

/// A level of `[[stages.MQL.levels]]`.
pub(super) fn level(cx: &mut Cx<'_>, at: &Loc, id: &str, levels: &[Level]) -> bool {
    if levels.iter().any(|l| l.id == id) {
        return true;
    }
    let message = if levels.is_empty() {
        format!("no level {id:?}: [stages.MQL] has no levels")
    } else {
        let hint = did_you_mean(id, levels.iter().map(|l| l.id.as_str()));
        format!("no level {id:?} in [[stages.MQL.levels]]{hint}")
    };
    cx.err(at, message);
    false
}

/// A persona of `[[persona]]`.
pub(super) fn persona(cx: &mut Cx<'_>, at: &Loc, id: &str, personas: &[Persona]) -> bool {
    if personas.iter().any(|p| p.id == id) {
        return true;
    }
    let message = if personas.is_empty() {
        format!("no persona {id:?}: the policy has no [[persona]]")
    } else {
        let hint = did_you_mean(id, personas.iter().map(|p| p.id.as_str()));
        format!("no persona {id:?} in [[persona]]{hint}")
    };
    cx.err(at, message);
    false
}

/// A reason of the `[reasons]` list `name` (`reject`, `recycle`).
pub(super) fn reason(cx: &mut Cx<'_>, at: &Loc, reason: &str, list: &[String], name: &str) -> bool {
    if list.iter().any(|r| r == reason) {
        return true;
    }
    let hint = did_you_mean(reason, list.iter().map(String::as_str));
    cx.err(
        at,
        format!("unknown {name} reason {reason:?}{hint}: it must be in [reasons] {name}"),
    );
    false
}

/// The id of an `[sla.<id>]` section.
pub(super) fn sla(cx: &mut Cx<'_>, at: &Loc, id: &str, slas: &[Sla]) -> bool {
    if slas.iter().any(|s| s.id == id) {
        return true;
    }
    cx.err(at, format!("unknown SLA {id:?} (no [sla.{id}] section)"));
    false
}

/// An SLA with `then = "recycle"` (reported at `then`): only a qualified
/// lead can be recycled, and the reason the recycle records must be one a
/// caller could give.
pub(super) fn sla_recycle(cx: &mut Cx<'_>, then: &Loc, sla: &Sla, reasons: &Reasons) {
    if !matches!(sla.stage, Stage::Mql | Stage::Sql) {
        cx.err(
            then,
            format!("only an MQL or SQL can be recycled, not {}", sla.stage),
        );
    }
    let reason = sla.recycle_reason();
    if !reasons.recycle.iter().any(|r| r == reason) {
        cx.err(
            then,
            format!("a recycle by this SLA gives the reason {reason:?}: add it to [reasons] recycle"),
        );
    }
}

/// An SLA with `then = "reassign"` (reported at `then`): the lead goes back
/// through the route of the stage it watches, so there must be one.
pub(super) fn sla_reassign(cx: &mut Cx<'_>, then: &Loc, sla: &Sla, routing: &super::Routing) {
    let on = super::RouteOn::Entered(sla.stage);
    if !routing.routes.iter().any(|r| r.on == on) {
        cx.err(
            then,
            format!("a reassign goes back through routing: add a [[route]] with on = \"{on}\""),
        );
    }
}

/// A delayed workflow's `if_still` (reported there) is the stage the lead is
/// in when the workflow is set off: it leaves that stage before the delay
/// ends otherwise, which cancels the workflow.
pub(super) fn can_fire(cx: &mut Cx<'_>, if_still: &Loc, on: &WorkflowOn, still: Stage, slas: &[Sla]) {
    if let Some(arming) = arming_stage(on, slas)
        && arming != still
    {
        cx.err(
            if_still,
            format!(
                "can never fire: after {on} the lead is in {arming}, and a delayed workflow is cancelled when the lead leaves that stage"
            ),
        );
    }
}

/// The stage a lead is in right after a workflow's event, where it is fixed.
fn arming_stage(on: &WorkflowOn, slas: &[Sla]) -> Option<Stage> {
    match on {
        WorkflowOn::Entered(stage) => Some(*stage),
        WorkflowOn::Rejected(_) | WorkflowOn::Recycled(_) => Some(Stage::Iql),
        WorkflowOn::Level(_) => Some(Stage::Mql),
        WorkflowOn::SlaBreached(id) => slas
            .iter()
            .find(|s| s.id == *id)
            .map(|s| if s.recycles() { Stage::Iql } else { s.stage }),
        WorkflowOn::EngagementBelow(..) | WorkflowOn::EngagementAbove(..) => None,
    }
}

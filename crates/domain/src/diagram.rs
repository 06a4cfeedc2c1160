//! The Mermaid diagram and table of `docs/lifecycle.md`, generated from
//! [`crate::lifecycle::TABLE`].

use std::fmt::Write as _;

use crate::lifecycle::{AUTOMATIC_TRIGGERS, Edge, TABLE};
use crate::stage::Stage;

/// The whole of `docs/lifecycle.md`.
pub fn lifecycle_markdown() -> String {
    let mut out = String::new();
    out.push_str("# The lead lifecycle\n\n");
    out.push_str(
        "<!-- Generated from crates/domain/src/lifecycle/table.rs. Do not edit: run\n     \
         `LEADFLOW_UPDATE_DOCS=1 cargo test -p leadflow-domain --test all lifecycle_doc` -->\n\n",
    );
    out.push_str(
        "Every edge a lead can take. Manual moves are asked for with `Transition`; automatic ones \
         are taken by leadflow when an engagement, a profile change, a policy change or a timer \
         makes their guards pass. Any other (stage, command) pair is refused with \
         `FAILED_PRECONDITION` / `INVALID_TRANSITION`; CUSTOMER is terminal.\n\n",
    );
    out.push_str("```mermaid\nstateDiagram-v2\n");
    for edge in TABLE {
        for line in edge_lines(edge) {
            let _ = writeln!(out, "    {line}");
        }
    }
    out.push_str("    CUSTOMER --> [*]\n```\n\n");
    out.push_str("| move | command | from | to | guards | kind |\n| --- | --- | --- | --- | --- | --- |\n");
    for edge in TABLE {
        let from = if edge.from.is_empty() {
            "(new lead)".to_owned()
        } else {
            edge.from
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let guards = if edge.guards.is_empty() {
            "—".to_owned()
        } else {
            edge.guards
                .iter()
                .map(|g| format!("`{g}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut kind = if edge.automatic {
            "automatic".to_owned()
        } else {
            "manual".to_owned()
        };
        if edge.backward {
            kind.push_str(", backward (new qualifying window)");
        }
        if let Some(list) = edge.reasons {
            let _ = write!(kind, ", reason from `[reasons] {}`", list.key());
        }
        let _ = writeln!(
            out,
            "| {} | {} | {from} | {} | {guards} | {kind} |",
            edge.by, edge.command, edge.to
        );
    }
    let triggers: Vec<&str> = AUTOMATIC_TRIGGERS.iter().map(|c| c.as_str()).collect();
    let _ = writeln!(
        out,
        "\nAutomatic moves are re-checked after {}, in this order: disqualify, sales-ready, qualify; \
         at most one is taken per command, and only forward.\n\nA forward jump records every stage \
         it passes through as its own transition at the same instant: {}.",
        triggers.join(", "),
        jumps()
    );
    out
}

fn edge_lines(edge: &Edge) -> Vec<String> {
    let mut label = edge.by.as_str().to_owned();
    if !edge.guards.is_empty() {
        let guards: Vec<&str> = edge.guards.iter().map(|g| g.as_str()).collect();
        let _ = write!(label, " [{}]", guards.join(", "));
    }
    if edge.from.is_empty() {
        return vec![format!("[*] --> {}: {label}", edge.to)];
    }
    edge.from
        .iter()
        .map(|from| {
            let via = from.forward_path(edge.to);
            let mut label = label.clone();
            if via.len() > 1 {
                let stops: Vec<&str> = via[..via.len() - 1].iter().map(|s| s.as_str()).collect();
                let _ = write!(label, " via {}", stops.join(", "));
            }
            format!("{from} --> {}: {label}", edge.to)
        })
        .collect()
}

fn jumps() -> String {
    let mut out = Vec::new();
    for edge in TABLE {
        for from in edge.from {
            let path = from.forward_path(edge.to);
            if path.len() > 1 {
                let stops: Vec<&str> = std::iter::once(*from)
                    .chain(path.iter().copied())
                    .map(Stage::as_str)
                    .collect();
                out.push(format!("{} ({})", stops.join(" → "), edge.by));
            }
        }
    }
    out.join("; ")
}

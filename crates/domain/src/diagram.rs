//! The Mermaid diagrams and tables of `docs/lifecycle.md` and
//! `docs/account-lifecycle.md`, generated from [`crate::lifecycle::TABLE`]
//! and [`crate::account::ACCOUNT_TABLE`].

use std::fmt::Write as _;

use crate::lifecycle::{AUTOMATIC_TRIGGERS, Edge, TABLE};
use crate::stage::Stage;
use crate::transition::CommandKind;

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
        let from = cell(edge.from.iter().map(|s| s.as_str().to_owned()), "(new lead)");
        let guards = cell(edge.guards.iter().map(|g| format!("`{g}`")), "—");
        let merging = matches!(edge.command, CommandKind::Merge | CommandKind::Unmerge);
        let mut kind = if edge.automatic {
            "automatic".to_owned()
        } else if merging {
            "by MergeLeads / UnmergeLead".to_owned()
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

/// The whole of `docs/account-lifecycle.md`, from
/// [`crate::account::ACCOUNT_TABLE`].
pub fn account_lifecycle_markdown() -> String {
    use crate::account::{ACCOUNT_TABLE, account_stages_entered};

    let mut out = String::new();
    out.push_str("# The account lifecycle\n\n");
    out.push_str(
        "<!-- Generated from crates/domain/src/account/table.rs. Do not edit: run\n     \
         `LEADFLOW_UPDATE_DOCS=1 cargo test -p leadflow-domain --test all lifecycle_doc` -->\n\n",
    );
    out.push_str(
        "Every edge an account can take (see [accounts.md](accounts.md)). Manual moves are asked \
         for with `TransitionAccount`; automatic ones are taken when a member's change (an \
         engagement, a profile change, a transition, a link or an unlink) or a policy change makes \
         their guards pass, the furthest first, as many in turn as pass. Any other (stage, command) \
         pair is refused with `FAILED_PRECONDITION` / `INVALID_TRANSITION`; CUSTOMER is terminal, \
         and a DISQUALIFIED account moves only by REQUALIFY.\n\n",
    );
    out.push_str("```mermaid\nstateDiagram-v2\n");
    for edge in ACCOUNT_TABLE {
        let mut label = edge.by.as_str().to_owned();
        if !edge.guards.is_empty() {
            let guards: Vec<&str> = edge.guards.iter().map(|g| g.as_str()).collect();
            let _ = write!(label, " [{}]", guards.join(", "));
        }
        if edge.from.is_empty() {
            let _ = writeln!(out, "    [*] --> {}: {label}", edge.to);
        }
        for from in edge.from {
            let path = account_stages_entered(*from, edge.to);
            let mut label = label.clone();
            if path.len() > 1 {
                let stops: Vec<&str> = path[..path.len() - 1].iter().map(|s| s.as_str()).collect();
                let _ = write!(label, " via {}", stops.join(", "));
            }
            let _ = writeln!(out, "    {from} --> {}: {label}", edge.to);
        }
    }
    out.push_str("    CUSTOMER --> [*]\n```\n\n");
    out.push_str("| move | command | from | to | guards | kind |\n| --- | --- | --- | --- | --- | --- |\n");
    for edge in ACCOUNT_TABLE {
        let from = cell(edge.from.iter().map(|s| s.as_str().to_owned()), "(new account)");
        let guards = cell(edge.guards.iter().map(|g| format!("`{g}`")), "—");
        let mut kind = if edge.automatic { "automatic" } else { "manual" }.to_owned();
        if edge.backward {
            kind.push_str(", backward (members' engagements count again only after it)");
        }
        match edge.reasons {
            Some(list) => {
                let _ = write!(kind, ", reason from `[reasons] {}`", list.key());
            }
            None if edge.needs_reason => kind.push_str(", reason required"),
            None => {}
        }
        let _ = writeln!(
            out,
            "| {} | {} | {from} | {} | {guards} | {kind} |",
            edge.by, edge.command, edge.to
        );
    }
    out.push_str(
        "\nA forward jump records every stage it passes through as its own transition at the same \
         instant, with the same move.\n",
    );
    out
}

/// A table cell listing `items`, or `empty` for none.
fn cell(items: impl Iterator<Item = String>, empty: &str) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        empty.to_owned()
    } else {
        items.join(", ")
    }
}

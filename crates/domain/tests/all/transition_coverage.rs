//! Every edge of the transition table, manual and automatic, is taken by
//! `decide`: for each edge and each stage it leaves from, a lead is brought
//! to that stage and the edge is set off the way the engine sets it off (a
//! command, an engagement, a timer). An edge added to the table that no
//! scenario here takes fails the test, and so does a decision that takes an
//! edge the table does not have.

use std::collections::BTreeSet;

use leadflow_domain::lifecycle::{Deal, Duplicate, Edge, ManualTransition, TABLE, reason_from_policy};
use leadflow_domain::workflow::TimerKind;
use leadflow_domain::{Command, CommandKind, Move, Policy, Stage, Timestamp, TransitionRecord};

use crate::common::{Harness, T0, ev, example_toml, good_fit, hours};

/// An edge as taken: the move, the stage it left (`None` for a new lead)
/// and the stage it entered.
type Taken = (Move, Option<Stage>, Stage);

/// The example policy, with the SQL first-contact SLA recycling too, so that
/// an SLA recycles from every stage the table lets it.
fn policy() -> Policy {
    let toml = example_toml()
        .replacen(
            "until = \"sales_contacted\"\n",
            "until = \"sales_contacted\"\nthen = \"recycle\"\n",
            1,
        )
        .replacen(
            "recycle = [\"went_dark\", \"timing\", \"idle\"]",
            "recycle = [\"went_dark\", \"timing\", \"idle\", \"sql_first_contact\"]",
            1,
        );
    let policy = Policy::from_toml(&toml).expect("the edited policy is valid");
    assert!(policy.slas.iter().all(|s| s.recycles()), "both SLAs recycle");
    policy
}

/// Every edge of the table, once per stage it leaves from.
fn table_edges() -> BTreeSet<Taken> {
    TABLE
        .iter()
        .flat_map(|e| {
            let from: Vec<Option<Stage>> = if e.from.is_empty() {
                vec![None]
            } else {
                e.from.iter().copied().map(Some).collect()
            };
            from.into_iter().map(move |f| (e.by, f, e.to))
        })
        .collect()
}

/// The edges a run of transitions took. A forward jump records every stage
/// it passes as its own transition, at one instant; together they are one
/// edge.
fn taken(records: &[&TransitionRecord]) -> Vec<Taken> {
    let mut out: Vec<(Taken, Timestamp)> = Vec::new();
    for t in records {
        match out.last_mut() {
            Some((edge, at)) if edge.0 == t.by && t.from == Some(edge.2) && *at == t.at => edge.2 = t.to,
            _ => out.push(((t.by, t.from, t.to), t.at)),
        }
    }
    out.into_iter().map(|(edge, _)| edge).collect()
}

/// A caller's command for a manual edge, with what the command needs
/// besides the table: a reason from the edge's list (any words where it has
/// none), and a deal for a CONVERT.
fn manual_command(policy: &Policy, edge: &Edge) -> Command {
    let reason = match edge.reasons {
        Some(list) => policy.reasons_for(list).first().cloned(),
        None => Some("asked for by sales".to_owned()),
    };
    Command::Transition(ManualTransition {
        command: edge.command,
        reason,
        actor: Some("sam@sales".to_owned()),
        deal: (edge.command == CommandKind::Convert).then(|| Deal {
            value: 12_000.0,
            currency: "EUR".to_owned(),
        }),
        occurred_at: None,
    })
}

/// A new lead brought to `stage` by commands, an hour apart.
fn lead_in(policy: &Policy, stage: Stage) -> Harness {
    let mut h = Harness::capture(policy.clone(), good_fit(), T0);
    let steps: &[CommandKind] = match stage {
        Stage::Iql => &[],
        Stage::Mql => &[CommandKind::Promote],
        Stage::Sql => &[CommandKind::Promote, CommandKind::Accept],
        Stage::Customer => &[CommandKind::Promote, CommandKind::Accept, CommandKind::Convert],
        Stage::Disqualified => &[CommandKind::Disqualify],
        Stage::Merged => {
            h.now = hours(1);
            h.decide(Command::MergedInto {
                survivor_id: "survivor".to_owned(),
                at: hours(1),
            });
            h.now = hours(10);
            return h;
        }
    };
    for (hour, step) in (1..).zip(steps) {
        h.now = hours(hour);
        let edge = TABLE
            .iter()
            .find(|e| !e.automatic && e.command == *step)
            .expect("a manual edge");
        h.decide(manual_command(policy, edge));
    }
    assert_eq!(h.stage(), stage);
    h.now = hours(10);
    h
}

/// Sets `edge` off for a lead in `from` the way the engine would.
fn set_off(policy: &Policy, h: &mut Harness, edge: &Edge, from: Stage) {
    match edge.by {
        Move::Merge => {
            // A duplicate in the stage the edge jumps to.
            let dup = lead_in(policy, edge.to);
            h.decide(Command::Merge {
                duplicate: Duplicate {
                    lead_id: "dup".to_owned(),
                    stage: dup.stage(),
                    deal: None,
                    attributes: dup.lead.profile.as_map().clone(),
                    events: dup.log.clone(),
                },
                at: h.now,
            });
            return;
        }
        Move::MergedInto => {
            h.decide(Command::MergedInto {
                survivor_id: "survivor".to_owned(),
                at: h.now,
            });
            return;
        }
        Move::Unmerge => {
            h.decide(Command::Unmerge {
                survivor_id: "survivor".to_owned(),
                stage: edge.to,
                at: h.now,
            });
            return;
        }
        _ => {}
    }
    if !edge.automatic {
        h.decide(manual_command(policy, edge));
        return;
    }
    match edge.by {
        Move::AutoQualify => {
            // Engagement past the MQL threshold, none of it sales-ready or
            // disqualifying: a trial, a webinar, two registrations (65).
            let events = [
                ("trial_started", 1),
                ("webinar_attended", 2),
                ("webinar_registered", 3),
                ("webinar_registered", 4),
            ];
            for (kind, hour) in events {
                h.engage(ev(&format!("{kind}-{hour}"), kind, hours(10 + hour)));
            }
        }
        Move::SalesReady => {
            h.engage(ev("demo", "demo_requested", hours(11)));
        }
        Move::AutoDisqualify => {
            h.engage(ev("bounce", "email_bounced", hours(11)));
        }
        Move::SlaRecycle => {
            let sla = policy
                .slas
                .iter()
                .find(|s| s.stage == from && s.recycles())
                .unwrap_or_else(|| panic!("no recycling SLA on {from} in the test policy"));
            h.fire(&TimerKind::Sla(sla.id.clone()));
        }
        Move::Capture
        | Move::Promote
        | Move::Accept
        | Move::Reject
        | Move::Recycle
        | Move::Convert
        | Move::Disqualify
        | Move::Requalify
        | Move::Merge
        | Move::MergedInto
        | Move::Unmerge => {
            panic!("{} is automatic in the table: say here what sets it off", edge.by)
        }
    }
}

/// Takes the edge from `from` (`None`: captures a lead), and returns the
/// edges taken on the way (once the lead is in `from`).
fn drive(policy: &Policy, edge: &Edge, from: Option<Stage>) -> Vec<Taken> {
    let (h, before) = match from {
        None => (Harness::capture(policy.clone(), good_fit(), T0), 0),
        Some(from) => {
            let mut h = lead_in(policy, from);
            let before = h.transitions().len();
            set_off(policy, &mut h, edge, from);
            (h, before)
        }
    };
    let records = &h.transitions()[before..];
    check_reasons(policy, records);
    taken(records)
}

/// A move whose reason is the policy's records only the policy's words: a
/// `[reasons]` entry, a rule's id or an SLA's recycle reason.
fn check_reasons(policy: &Policy, records: &[&TransitionRecord]) {
    let words: BTreeSet<&str> = [
        &policy.reasons.reject,
        &policy.reasons.recycle,
        &policy.reasons.disqualify,
    ]
    .into_iter()
    .flatten()
    .map(String::as_str)
    .chain(policy.attribute_rules.iter().map(|r| r.id.as_str()))
    .chain(policy.event_rules.iter().map(|r| r.id.as_str()))
    .chain(policy.slas.iter().map(|s| s.recycle_reason()))
    .collect();
    for t in records {
        if let Some(reason) = &t.reason
            && reason_from_policy(t.by)
        {
            assert!(words.contains(reason.as_str()), "{} recorded {reason:?}", t.by);
        }
    }
}

#[test]
fn every_edge_of_the_table_is_taken() {
    let policy = policy();
    let table = table_edges();
    let mut covered = BTreeSet::new();
    let mut outside = BTreeSet::new();
    for edge in TABLE {
        let from: Vec<Option<Stage>> = if edge.from.is_empty() {
            vec![None]
        } else {
            edge.from.iter().copied().map(Some).collect()
        };
        for from in from {
            for t in drive(&policy, edge, from) {
                if table.contains(&t) {
                    covered.insert(t);
                } else {
                    outside.insert(t);
                }
            }
        }
    }
    let uncovered: Vec<&Taken> = table.difference(&covered).collect();
    assert!(
        uncovered.is_empty(),
        "edges of the table no scenario takes (move, from, to): {uncovered:?}"
    );
    assert!(
        outside.is_empty(),
        "decisions took edges the table does not have: {outside:?}"
    );
}

#[test]
fn a_forward_jump_is_one_edge_and_moves_in_a_row_are_two() {
    let policy = policy();
    let edge = |by: Move| TABLE.iter().find(|e| e.by == by).expect("in the table");
    assert_eq!(
        drive(&policy, edge(Move::SalesReady), Some(Stage::Iql)),
        [(Move::SalesReady, Some(Stage::Iql), Stage::Sql)]
    );
    assert_eq!(
        drive(&policy, edge(Move::Convert), Some(Stage::Iql)),
        [(Move::Convert, Some(Stage::Iql), Stage::Customer)]
    );
    // A competitor is captured and disqualified at the same instant: two
    // edges, one after the other.
    let mut profile = good_fit();
    profile.insert("email".to_owned(), "eve@rivalsoft.io".to_owned());
    let h = Harness::capture(policy, profile, T0);
    assert_eq!(
        taken(&h.transitions()),
        [
            (Move::Capture, None, Stage::Iql),
            (Move::AutoDisqualify, Some(Stage::Iql), Stage::Disqualified)
        ]
    );
}

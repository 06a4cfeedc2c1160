//! The transition table edge by edge, guards by name, automatic moves, and
//! when decisions are made.

use leadflow_domain::lifecycle::{Deal, Guard, ManualTransition, manual_edge};
use leadflow_domain::{
    Cause, Command, CommandKind, DomainError, InvalidKind, Move, Span, Stage, Timestamp, explain::explain,
};

use crate::common::{Harness, T0, attrs, days, ev, good_fit, hours, manual, path, policy};

fn valid_command(command: CommandKind) -> Command {
    let reason = match command {
        CommandKind::Promote => Some("met at the booth"),
        CommandKind::Reject => Some("not_ready"),
        CommandKind::Recycle => Some("went_dark"),
        CommandKind::Disqualify => Some("spam"),
        _ => None,
    };
    let mut cmd = ManualTransition {
        command,
        reason: reason.map(str::to_owned),
        actor: Some("sam@sales".to_owned()),
        deal: None,
        occurred_at: None,
    };
    if command == CommandKind::Convert {
        cmd.deal = Some(Deal {
            value: 12_000.0,
            currency: "EUR".to_owned(),
        });
    }
    Command::Transition(cmd)
}

/// A well-fitting lead brought to `stage` by manual commands.
fn lead_in(stage: Stage) -> Harness {
    let mut h = Harness::capture(policy(), good_fit(), T0);
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
    for (i, step) in steps.iter().enumerate() {
        h.now = hours(i64::try_from(i).unwrap_or(0) + 1);
        h.decide(valid_command(*step));
    }
    assert_eq!(h.stage(), stage);
    h.now = hours(10);
    h
}

#[test]
fn a_deal_is_recorded_within_its_bounds_and_minus_zero_as_zero() {
    for (value, currency, recorded) in [(-0.0, "EUR", 0.0_f64), (1e15, "JPY", 1e15), (0.5, "CHF", 0.5)] {
        let mut h = lead_in(Stage::Sql);
        let decision = h
            .try_decide(Command::Transition(ManualTransition {
                command: CommandKind::Convert,
                reason: None,
                actor: None,
                deal: Some(Deal {
                    value,
                    currency: currency.to_owned(),
                }),
                occurred_at: None,
            }))
            .unwrap_or_else(|e| panic!("{value} {currency}: {e}"));
        let deal = decision
            .transitions()
            .find_map(|t| t.deal.clone())
            .expect("the deal is on the transition");
        assert_eq!(deal.currency, currency);
        assert_eq!(
            deal.value.to_bits(),
            recorded.to_bits(),
            "{value} is recorded as {recorded}"
        );
    }
}

#[test]
fn every_stage_and_manual_command_is_an_edge_or_a_typed_refusal() {
    let mut legal = 0;
    for stage in Stage::ALL {
        for command in CommandKind::MANUAL {
            let mut h = lead_in(stage);
            let result = h.try_decide(valid_command(command));
            match manual_edge(stage, command) {
                Some(edge) => {
                    let decision = result.unwrap_or_else(|e| panic!("{command} from {stage}: {e}"));
                    assert_eq!(decision.lead.stage, edge.to, "{command} from {stage}");
                    let records: Vec<_> = decision.transitions().filter(|t| t.by == edge.by).collect();
                    assert_eq!(records.first().and_then(|t| t.from), Some(stage));
                    assert_eq!(records.last().map(|t| t.to), Some(edge.to));
                    assert!(
                        records
                            .iter()
                            .all(|t| t.cause == Cause::Manual && t.at == hours(10))
                    );
                    assert!(decision.bumps_version());
                    legal += 1;
                }
                None => assert_eq!(
                    result,
                    Err(DomainError::InvalidTransition { stage, command }),
                    "{command} from {stage}"
                ),
            }
        }
    }
    // PROMOTE, ACCEPT, REJECT, RECYCLE×2, CONVERT×3, DISQUALIFY×3, REQUALIFY
    assert_eq!(legal, 12);
}

#[test]
fn customer_is_terminal() {
    for command in CommandKind::MANUAL {
        let mut h = lead_in(Stage::Customer);
        assert_eq!(
            h.try_decide(valid_command(command)),
            Err(DomainError::InvalidTransition {
                stage: Stage::Customer,
                command
            })
        );
    }
    let mut h = lead_in(Stage::Customer);
    let d = h.engage(ev("bounce", "email_bounced", hours(11)));
    assert_eq!(
        d.lead.stage,
        Stage::Customer,
        "a disqualifying event does not touch a customer"
    );
    assert_eq!(d.transitions().count(), 0);
}

fn failed_guards(result: Result<leadflow_domain::Decision, DomainError>) -> Vec<(Guard, String)> {
    match result {
        Err(DomainError::GuardFailed { failed, .. }) => {
            failed.into_iter().map(|c| (c.guard, c.detail)).collect()
        }
        other => panic!("expected GuardFailed, got {other:?}"),
    }
}

#[test]
fn promote_checks_required_attributes_but_not_scores() {
    let mut h = Harness::capture(policy(), attrs(&[("email", "ann@acme.com")]), T0);
    h.now = hours(1);
    assert_eq!(
        failed_guards(h.try_decide(manual(CommandKind::Promote, Some("booth")))),
        [(Guard::RequiresAttributes, "missing company".to_owned())]
    );
    h.decide(Command::UpdateProfile(attrs(&[("company", "Acme")])));
    // fit 0 < 20 and engagement 0 < 60: manual promotion skips them
    let d = h.decide(manual(CommandKind::Promote, Some("booth")));
    assert_eq!(path(&d), [(Some(Stage::Iql), Stage::Mql)]);
    assert_eq!(
        d.transitions().next().map(|t| t.reason.as_deref()),
        Some(Some("booth"))
    );
}

#[test]
fn requalify_is_refused_while_a_disqualifying_attribute_matches() {
    let mut h = Harness::capture(
        policy(),
        attrs(&[("email", "spy@rivalsoft.io"), ("company", "Rival")]),
        T0,
    );
    assert_eq!(
        h.stage(),
        Stage::Disqualified,
        "a competitor is disqualified at capture"
    );
    let captured = h.transitions();
    assert_eq!(captured.len(), 2);
    assert_eq!((captured[0].from, captured[0].to), (None, Stage::Iql));
    assert_eq!(
        (captured[1].by, captured[1].reason.as_deref()),
        (Move::AutoDisqualify, Some("competitor"))
    );
    h.now = hours(1);
    assert_eq!(
        failed_guards(h.try_decide(manual(CommandKind::Requalify, None))),
        [(
            Guard::NoDisqualifyingAttribute,
            "profile matches disqualifying rule competitor".to_owned()
        )]
    );
    h.decide(Command::UpdateProfile(attrs(&[("email", "spy@acme.com")])));
    assert_eq!(
        h.stage(),
        Stage::Disqualified,
        "automatic moves never leave DISQUALIFIED"
    );
    let d = h.decide(manual(CommandKind::Requalify, None));
    assert_eq!(path(&d), [(Some(Stage::Disqualified), Stage::Iql)]);
}

#[test]
fn engagement_and_fit_promote_an_iql_to_mql_at_the_event_time() {
    let mut h = Harness::capture(policy(), good_fit(), T0);
    for (i, kind) in ["trial_started", "webinar_attended", "ebook_downloaded"]
        .iter()
        .enumerate()
    {
        let d = h.engage(ev(&format!("e{i}"), kind, hours(1)));
        assert_eq!(d.transitions().count(), 0, "55 points is not enough");
        assert!(
            !d.bumps_version(),
            "an engagement alone does not change the version"
        );
    }
    let d = h.engage(ev("e3", "ebook_downloaded", hours(2)));
    assert_eq!(path(&d), [(Some(Stage::Iql), Stage::Mql)]);
    let t = d.transitions().next().expect("a transition");
    assert_eq!(t.at, hours(2));
    assert_eq!(t.by, Move::AutoQualify);
    assert_eq!(
        t.cause,
        Cause::Engagement {
            event_id: "e3".to_owned()
        }
    );
    assert_eq!(t.fit, 40.0);
    assert!(t.engagement >= 60.0 && t.engagement < 65.0, "{}", t.engagement);
    let names: Vec<Guard> = t.guards.iter().map(|g| g.guard).collect();
    assert_eq!(
        names,
        [
            Guard::EngagementAtLeast,
            Guard::FitAtLeast,
            Guard::RequiresAttributes,
            Guard::NotDisqualified
        ]
    );
    assert!(t.guards.iter().all(|g| g.passed));
    assert_eq!(t.guards[1].detail, "fit 40 ≥ 20");
}

#[test]
fn a_poor_fit_stays_iql_and_the_explanation_names_the_guard() {
    let mut h = Harness::capture(
        policy(),
        attrs(&[
            ("email", "ann@acme.com"),
            ("company", "Acme"),
            ("industry", "fintech"),
        ]),
        T0,
    );
    h.engage(ev("t", "trial_started", hours(1)));
    h.engage(ev("w", "webinar_attended", hours(1)));
    h.engage(ev("r", "webinar_registered", hours(1)));
    h.engage(ev("b", "ebook_downloaded", hours(1)));
    assert_eq!(h.stage(), Stage::Iql);
    let x = explain(&h.policy, &h.lead, &h.log, hours(1));
    assert_eq!(x.scores.fit, 10.0);
    assert_eq!(x.scores.engagement, 65.0);
    let to_mql = x
        .next
        .iter()
        .find(|n| n.by == Move::AutoQualify)
        .expect("the MQL step");
    let fit = to_mql
        .guards
        .iter()
        .find(|g| g.guard == Guard::FitAtLeast)
        .expect("fit guard");
    assert!(!fit.passed);
    assert_eq!(fit.detail, "fit 10 < 20");
    assert_eq!((fit.actual, fit.required), (Some(10.0), Some(20.0)));
    assert!(
        to_mql
            .guards
            .iter()
            .find(|g| g.guard == Guard::EngagementAtLeast)
            .is_some_and(|g| g.passed)
    );
}

#[test]
fn a_sales_ready_action_jumps_an_iql_through_mql_to_sql() {
    let mut h = Harness::capture(policy(), good_fit(), T0);
    let d = h.engage(ev("demo", "demo_requested", hours(3)));
    assert_eq!(
        path(&d),
        [(Some(Stage::Iql), Stage::Mql), (Some(Stage::Mql), Stage::Sql)]
    );
    assert!(
        d.transitions()
            .all(|t| t.at == hours(3) && t.by == Move::SalesReady)
    );
    assert_eq!(h.stage(), Stage::Sql);
}

#[test]
fn a_sales_ready_action_waits_for_the_required_attributes() {
    let mut h = Harness::capture(policy(), attrs(&[("email", "ann@acme.com")]), T0);
    let d = h.engage(ev("demo", "demo_requested", hours(3)));
    assert_eq!(d.transitions().count(), 0);
    h.now = hours(5);
    let d = h.decide(Command::UpdateProfile(attrs(&[("company", "Acme")])));
    assert_eq!(
        path(&d),
        [(Some(Stage::Iql), Stage::Mql), (Some(Stage::Mql), Stage::Sql)]
    );
    assert!(
        d.transitions()
            .all(|t| t.at == hours(5) && t.cause == Cause::ProfileUpdate)
    );
    assert!(d.bumps_version());
}

#[test]
fn convert_from_iql_records_every_stage_once_with_the_deal_on_the_last() {
    let mut h = lead_in(Stage::Iql);
    let d = h.decide(valid_command(CommandKind::Convert));
    assert_eq!(
        path(&d),
        [
            (Some(Stage::Iql), Stage::Mql),
            (Some(Stage::Mql), Stage::Sql),
            (Some(Stage::Sql), Stage::Customer)
        ]
    );
    let deals: Vec<_> = d.transitions().map(|t| t.deal.is_some()).collect();
    assert_eq!(deals, [false, false, true]);
}

#[test]
fn a_disqualifying_event_moves_any_open_stage_to_disqualified() {
    for stage in [Stage::Iql, Stage::Mql, Stage::Sql] {
        let mut h = lead_in(stage);
        let d = h.engage(ev("bounce", "email_bounced", hours(11)));
        assert_eq!(path(&d), [(Some(stage), Stage::Disqualified)]);
        let t = d.transitions().next().expect("transition");
        assert_eq!(
            (t.by, t.reason.as_deref()),
            (Move::AutoDisqualify, Some("hard-bounce"))
        );
    }
}

#[test]
fn after_a_rejection_only_new_evidence_promotes_again() {
    let mut h = Harness::capture(policy(), good_fit(), T0);
    h.engage(ev("t", "trial_started", hours(1)));
    h.engage(ev("w", "webinar_attended", hours(1)));
    h.engage(ev("b1", "ebook_downloaded", hours(1)));
    h.engage(ev("b2", "ebook_downloaded", hours(1)));
    assert_eq!(h.stage(), Stage::Mql);
    h.now = hours(2);
    let d = h.decide(manual(CommandKind::Reject, Some("not_ready")));
    assert_eq!(path(&d), [(Some(Stage::Mql), Stage::Iql)]);
    assert_eq!(h.lead.window_start, Some(hours(2)));
    let scores = h.lead.scores_at(&h.policy, hours(2));
    assert!(
        scores.engagement > 60.0 && scores.qualifying_engagement == 0.0,
        "{scores:?}"
    );
    // a profile change does not promote on the old evidence
    h.now = hours(3);
    assert_eq!(
        h.decide(Command::UpdateProfile(attrs(&[("phone", "+1 555")])))
            .transitions()
            .count(),
        0
    );
    // new evidence does: the caps start afresh in the new window
    h.engage(ev("t2", "trial_started", hours(4)));
    h.engage(ev("b3", "ebook_downloaded", hours(4)));
    assert_eq!(h.stage(), Stage::Iql);
    let d = h.engage(ev("w2", "webinar_attended", hours(5)));
    assert_eq!(h.stage(), Stage::Iql, "30 + 10 + 15 = 55 < 60");
    assert_eq!(d.transitions().count(), 0);
    let d = h.engage(ev("b4", "ebook_downloaded", hours(5)));
    assert_eq!(path(&d), [(Some(Stage::Iql), Stage::Mql)]);
}

#[test]
fn an_old_bounce_does_not_disqualify_a_requalified_lead() {
    let mut h = lead_in(Stage::Iql);
    h.engage(ev("bounce", "email_bounced", hours(11)));
    assert_eq!(h.stage(), Stage::Disqualified);
    h.now = hours(12);
    h.decide(manual(CommandKind::Requalify, Some("address fixed")));
    assert_eq!(h.stage(), Stage::Iql);
    let d = h.engage(ev("p", "page_viewed", hours(13)));
    assert_eq!(d.transitions().count(), 0);
    assert_eq!(h.stage(), Stage::Iql);
    let d = h.engage(ev("bounce-2", "email_bounced", hours(14)));
    assert_eq!(path(&d), [(Some(Stage::Iql), Stage::Disqualified)]);
}

#[test]
fn a_history_imported_in_order_promotes_at_the_moments_it_happened() {
    let now = days(100);
    let captured = days(1);
    let decision = leadflow_domain::capture(
        &policy(),
        good_fit(),
        Some(captured),
        &leadflow_domain::Context { now },
    )
    .expect("capture");
    let mut h = Harness::capture(policy(), good_fit(), now);
    h.lead = decision.lead;
    h.events.clear();
    h.engage(ev("t", "trial_started", days(2)));
    h.engage(ev("w", "webinar_attended", days(3)));
    h.engage(ev("d", "demo_requested", days(4)));
    h.now = now;
    let moments: Vec<(Stage, Timestamp)> = h.transitions().iter().map(|t| (t.to, t.at)).collect();
    assert_eq!(moments, [(Stage::Mql, days(4)), (Stage::Sql, days(4))]);
}

#[test]
fn a_late_event_is_decided_at_its_own_time_never_before_the_last_transition() {
    let mut h = lead_in(Stage::Iql);
    h.now = hours(20);
    h.decide(manual(CommandKind::Promote, Some("booth")));
    h.now = hours(21);
    h.decide(manual(CommandKind::Reject, Some("no_budget")));
    // in the new window: a trial at 30h, then a late one (occurred at 25h)
    h.engage(ev("t-late-order-1", "trial_started", hours(30)));
    h.now = hours(31);
    let mut late = ev("w-late", "webinar_attended", hours(25));
    late.occurred_at = hours(25);
    let d = h.decide(Command::RecordEngagement(late));
    assert_eq!(
        d.transitions().count(),
        0,
        "as of 25h the window holds only 15 points"
    );
    // the whole log now scores 45: an import in time order would give the same state
    let replay = leadflow_domain::score::ScoreState::replay(&h.policy, &h.log, h.lead.window_start, None);
    assert_eq!(h.lead.qualifying, replay);
    // an event from before the last transition is decided at that transition
    let d = h.engage(ev("e-old", "ebook_downloaded", hours(15)));
    assert!(d.transitions().all(|t| t.at >= hours(21)));
}

#[test]
fn bad_commands_are_refused_with_the_field_and_change_nothing() {
    let h = lead_in(Stage::Mql);
    let check = |command: Command, field: &str, kind: InvalidKind, text: &str| {
        let mut h2 = Harness {
            policy: policy(),
            lead: h.lead.clone(),
            log: Vec::new(),
            now: h.now,
            events: Vec::new(),
            timers: Default::default(),
            last: None,
            checkpoints: Vec::new(),
        };
        match h2.try_decide(command) {
            Err(DomainError::InvalidArgument { kind: k, violations }) => {
                assert_eq!(k, kind);
                assert_eq!(violations[0].field, field);
                assert!(
                    violations[0].description.contains(text),
                    "{}",
                    violations[0].description
                );
            }
            other => panic!("expected INVALID_ARGUMENT on {field}, got {other:?}"),
        }
        assert_eq!(h2.lead, h.lead);
    };
    let future = h.now.saturating_add(Span::from_secs(6));
    let mut e = ev("e", "webinar_atended", h.now);
    check(
        Command::RecordEngagement(e.clone()),
        "engagement.type",
        InvalidKind::UnknownEngagementType,
        "did you mean \"webinar_attended\"",
    );
    e.kind = "webinar_attended".to_owned();
    e.occurred_at = future;
    check(
        Command::RecordEngagement(e.clone()),
        "engagement.occurred_at",
        InvalidKind::Field,
        "in the future",
    );
    e.occurred_at = h.now;
    e.event_id = " ".to_owned();
    check(
        Command::RecordEngagement(e),
        "engagement.event_id",
        InvalidKind::Field,
        "required",
    );
    check(
        manual(CommandKind::Reject, Some("because")),
        "reason",
        InvalidKind::UnknownReason,
        "not a reject reason",
    );
    check(
        manual(CommandKind::Reject, None),
        "reason",
        InvalidKind::UnknownReason,
        "needs a reason",
    );
    // a pair outside the table is refused as such before its arguments are read
    let mut mql = lead_in(Stage::Mql);
    assert_eq!(
        mql.try_decide(manual(CommandKind::Promote, None)),
        Err(DomainError::InvalidTransition {
            stage: Stage::Mql,
            command: CommandKind::Promote
        })
    );
    let mut iql = lead_in(Stage::Iql);
    match iql.try_decide(manual(CommandKind::Promote, None)) {
        Err(DomainError::InvalidArgument { violations, .. }) => assert_eq!(violations[0].field, "reason"),
        other => panic!("expected INVALID_ARGUMENT on reason, got {other:?}"),
    }
    check(
        manual(CommandKind::Convert, None),
        "deal_value",
        InvalidKind::Field,
        "needs the deal",
    );
    let transition = |deal: Option<Deal>, command: CommandKind, occurred_at: Option<Timestamp>| {
        Command::Transition(ManualTransition {
            command,
            reason: None,
            actor: None,
            deal,
            occurred_at,
        })
    };
    let deal = |value: f64, currency: &str| {
        Some(Deal {
            value,
            currency: currency.to_owned(),
        })
    };
    for bad in [
        -1.0,
        -1e-9,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1.000_000_1e15,
        f64::MAX,
    ] {
        check(
            transition(deal(bad, "EUR"), CommandKind::Convert, None),
            "deal_value",
            InvalidKind::Field,
            "from 0 to 1e15",
        );
    }
    // Three capitals are not enough: the code must be on the ISO 4217 list.
    for bad in ["euro", "eur", "XYZ", "", "EU", "EURO"] {
        check(
            transition(deal(5.0, bad), CommandKind::Convert, None),
            "currency",
            InvalidKind::Field,
            "ISO 4217",
        );
    }
    check(
        transition(deal(5.0, "EUR"), CommandKind::Accept, None),
        "deal_value",
        InvalidKind::Field,
        "only CONVERT",
    );
    check(
        transition(None, CommandKind::Accept, Some(future)),
        "occurred_at",
        InvalidKind::Field,
        "in the future",
    );
    check(
        transition(None, CommandKind::Accept, Some(hours(0))),
        "occurred_at",
        InvalidKind::Field,
        "before the lead's last transition",
    );
    check(
        Command::UpdateProfile(attrs(&[("email", "")])),
        "profile.email",
        InvalidKind::Field,
        "required",
    );
}

#[test]
fn a_profile_change_that_changes_nothing_is_a_no_op() {
    let mut h = lead_in(Stage::Iql);
    let d = h.decide(Command::UpdateProfile(attrs(&[("company", "Acme")])));
    assert!(!d.bumps_version());
    assert!(d.events.is_empty() && d.timers.is_empty());
}

#[test]
fn transitions_can_be_imported_with_their_true_dates() {
    let mut h = lead_in(Stage::Iql);
    let d = h.decide(Command::Transition(ManualTransition {
        command: CommandKind::Promote,
        reason: Some("imported".to_owned()),
        actor: None,
        deal: None,
        occurred_at: Some(hours(5)),
    }));
    assert_eq!(d.transitions().next().map(|t| t.at), Some(hours(5)));
    assert_eq!(h.lead.entered_stage_at, hours(5));
}

#[test]
fn the_table_says_whose_reasons_are_shown_what_sends_back_and_where_the_threshold_is() {
    use leadflow_domain::lifecycle::{has_score_threshold, reason_from_policy, sends_back};

    let back = [
        Move::Reject,
        Move::Recycle,
        Move::Disqualify,
        Move::AutoDisqualify,
        Move::SlaRecycle,
    ];
    for by in Move::ALL {
        assert_eq!(sends_back(by), back.contains(&by), "{by}");
        // A reason given in the caller's own words is never the policy's.
        let own_words = matches!(
            by,
            Move::Capture
                | Move::Promote
                | Move::Accept
                | Move::Convert
                | Move::Requalify
                | Move::Merge
                | Move::MergedInto
                | Move::Unmerge
        );
        assert_eq!(reason_from_policy(by), !own_words, "{by}");
    }
    let thresholds: Vec<Stage> = Stage::ALL
        .into_iter()
        .filter(|s| has_score_threshold(*s))
        .collect();
    assert_eq!(thresholds, [Stage::Mql]);
}

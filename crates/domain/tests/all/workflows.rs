//! Workflow triggers, durable timers, SLAs and score crossings as decisions.

use leadflow_domain::workflow::{Crossing, Event, TimerChange, TimerKind};
use leadflow_domain::{Cause, Command, CommandKind, Move, Span, Stage, Timestamp};

use crate::common::{Harness, T0, days, ev, good_fit, hours, manual, path, policy, policy_with};

fn workflow(id: &str) -> TimerKind {
    TimerKind::Workflow(id.to_owned())
}

fn sla(id: &str) -> TimerKind {
    TimerKind::Sla(id.to_owned())
}

const COOLING: TimerKind = TimerKind::Crossing(Crossing::Below(30.0));

/// A lead that entered MQL automatically at 1h with 65 points.
fn mql() -> Harness {
    let mut h = Harness::capture(policy(), good_fit(), T0);
    h.engage(ev("t", "trial_started", hours(1)));
    h.engage(ev("w", "webinar_attended", hours(1)));
    h.engage(ev("b1", "ebook_downloaded", hours(1)));
    h.engage(ev("b2", "ebook_downloaded", hours(1)));
    assert_eq!(h.stage(), Stage::Mql);
    h
}

#[test]
fn entering_mql_fires_the_welcome_and_arms_the_delayed_step_and_the_idle_sla() {
    let h = mql();
    let d = h.last.as_ref().expect("a decision");
    // the transition's own event first, then its triggers in policy order
    assert!(matches!(&d.events[0], Event::Transition(t) if t.to == Stage::Mql));
    assert!(
        matches!(&d.events[1], Event::Trigger(t) if t.emit == "mql_welcome_sequence" && t.at == hours(1))
    );
    assert_eq!(d.events.len(), 2);
    assert!(
        !d.timers.contains(&TimerChange::CancelStageBound),
        "IQL armed no timer, so there is nothing to cancel"
    );
    let day3 = h.timer(&workflow("mql-day-3")).expect("the day-3 step is armed");
    assert_eq!(day3.due_at, hours(1).saturating_add(Span::from_days(3)));
    assert_eq!(day3.bound, Some((Stage::Mql, hours(1))));
    let idle = h.timer(&sla("mql_idle")).expect("the idle SLA is armed");
    assert_eq!(idle.due_at, hours(1).saturating_add(Span::from_days(30)));
}

#[test]
fn a_delayed_step_fires_when_the_lead_is_still_in_the_stage() {
    let mut h = mql();
    let d = h.fire(&workflow("mql-day-3"));
    let emitted: Vec<_> = d
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Trigger(t) => Some((t.emit.as_str(), t.at)),
            _ => None,
        })
        .collect();
    assert_eq!(
        emitted,
        [("mql_followup_day3", hours(1).saturating_add(Span::from_days(3)))]
    );
}

#[test]
fn leaving_the_stage_cancels_the_delayed_step_and_a_stale_firing_does_nothing() {
    let mut h = mql();
    let stale = h.timer(&workflow("mql-day-3")).cloned().expect("armed");
    h.now = hours(5);
    let d = h.decide(manual(CommandKind::Accept, None));
    assert_eq!(d.timers.first(), Some(&TimerChange::CancelStageBound));
    assert!(h.timer(&workflow("mql-day-3")).is_none());
    assert!(h.timer(&sla("mql_idle")).is_none());
    assert!(h.timer(&sla("sql_first_contact")).is_some());
    // a firing that raced the cancel finds the lead gone from the stage
    h.now = stale.due_at;
    let d = h.decide(Command::TimerFired(stale));
    assert!(d.events.iter().all(|e| !matches!(e, Event::Trigger(_))));
    assert_eq!(d.transitions().count(), 0);
}

#[test]
fn an_sql_not_contacted_in_time_breaches_and_contact_in_time_cancels() {
    let mut h = Harness::capture(policy(), good_fit(), T0);
    h.engage(ev("demo", "demo_requested", hours(1)));
    assert_eq!(h.stage(), Stage::Sql);
    let timer = h.timer(&sla("sql_first_contact")).cloned().expect("armed");
    assert_eq!(timer.due_at, hours(25));
    let mut contacted = Harness::capture(policy(), good_fit(), T0);
    contacted.engage(ev("demo", "demo_requested", hours(1)));
    let d = contacted.engage(ev("call", "sales_contacted", hours(20)));
    assert!(d.timers.contains(&TimerChange::Cancel(sla("sql_first_contact"))));
    assert!(contacted.timer(&sla("sql_first_contact")).is_none());

    let d = h.fire(&sla("sql_first_contact"));
    assert!(
        matches!(&d.events[..], [Event::SlaBreached(b)] if b.sla_id == "sql_first_contact" && b.at == hours(25))
    );
    assert_eq!(h.stage(), Stage::Sql, "this SLA only reports");
}

#[test]
fn a_late_contact_does_not_meet_the_sla() {
    let mut h = Harness::capture(policy(), good_fit(), T0);
    h.engage(ev("demo", "demo_requested", hours(1)));
    let d = h.engage(ev("call", "sales_contacted", hours(30)));
    assert!(!d.timers.contains(&TimerChange::Cancel(sla("sql_first_contact"))));
}

#[test]
fn an_idle_mql_breaches_and_is_recycled_with_reason_idle() {
    let mut h = mql();
    h.engage(ev("p", "page_viewed", days(10)));
    let idle = h.timer(&sla("mql_idle")).expect("armed");
    assert_eq!(idle.due_at, days(40), "each engagement restarts the clock");
    let d = h.fire(&sla("mql_idle"));
    // decay took the score below 30 on day 34 or so: cooling-off fired at that
    // instant, before the breach on day 40
    let kinds: Vec<_> = d
        .events
        .iter()
        .map(|e| match e {
            Event::Trigger(t) => format!("trigger {} at {}", t.emit, t.at > days(34) && t.at < days(35)),
            Event::SlaBreached(b) => format!("breach {} at {}", b.sla_id, b.at == days(40)),
            Event::LevelChanged(l) => format!("level {:?}", l.to),
            Event::Transition(t) => format!(
                "{} -> {}",
                t.from.map(|s| s.to_string()).unwrap_or_default(),
                t.to
            ),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "trigger re_engagement_campaign at true",
            "breach mql_idle at true",
            "MQL -> IQL"
        ]
    );
    assert_eq!(path(&d), [(Some(Stage::Mql), Stage::Iql)]);
    let t = d.transitions().next().expect("recycle");
    assert_eq!((t.by, t.reason.as_deref()), (Move::SlaRecycle, Some("idle")));
    assert_eq!(
        t.cause,
        Cause::Timer {
            key: "sla:mql_idle".to_owned()
        }
    );
    assert_eq!(h.lead.window_start, Some(days(40)));
    assert!(h.timer(&workflow("mql-day-3")).is_none());
}

#[test]
fn a_rejection_with_a_reason_fires_its_workflow() {
    let mut h = mql();
    h.now = hours(2);
    let d = h.decide(manual(CommandKind::Reject, Some("not_ready")));
    assert!(matches!(&d.events[0], Event::Transition(t) if t.to == Stage::Iql));
    assert!(
        matches!(&d.events[1], Event::Trigger(t) if t.emit == "long_term_nurture" && t.on == "rejected:not_ready")
    );
    let mut other = mql();
    other.now = hours(2);
    let d = other.decide(manual(CommandKind::Reject, Some("no_budget")));
    assert!(d.events.iter().all(|e| !matches!(e, Event::Trigger(_))));
}

/// An MQL (promoted by hand) with 40 points at 1h: decay takes it below 30
/// after 30d · log2(40/30) ≈ 12.45 days.
fn cooling() -> Harness {
    let mut h = Harness::capture(policy(), good_fit(), T0);
    h.engage(ev("t", "trial_started", hours(1)));
    h.engage(ev("b", "ebook_downloaded", hours(1)));
    h.now = hours(2);
    h.decide(manual(CommandKind::Promote, Some("booth")));
    h
}

fn crossing_instant() -> Timestamp {
    #[allow(clippy::cast_possible_truncation)]
    let micros = (30.0 * (40.0_f64 / 30.0).log2() * 86_400e6) as i64;
    hours(1).saturating_add(Span::from_micros(micros))
}

#[test]
fn decay_alone_fires_cooling_off_on_time_through_a_timer() {
    let mut h = cooling();
    let timer = h.timer(&COOLING).expect("the decay crossing is armed").clone();
    assert!(timer.bound.is_none());
    assert!((timer.due_at.as_micros() - crossing_instant().as_micros()).abs() < 1_000_000);
    let d = h.fire(&COOLING);
    let t = h
        .triggers()
        .into_iter()
        .find(|t| t.emit == "re_engagement_campaign")
        .expect("fired")
        .clone();
    assert_eq!((t.at, t.stage), (timer.due_at, Stage::Mql));
    assert!(h.timer(&COOLING).is_none(), "below now: nothing more to arm");
    assert!(d.timers.is_empty(), "and nothing to write");
}

#[test]
fn a_crossing_noticed_late_fires_at_the_instant_it_happened() {
    let mut h = cooling();
    let due = h.timer(&COOLING).expect("armed").due_at;
    // the timer has not fired yet when a new engagement arrives, days later
    let d = h.engage(ev("late", "webinar_attended", days(20)));
    let fired: Vec<_> = d
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Trigger(t) => Some((t.emit.as_str(), t.at)),
            _ => None,
        })
        .collect();
    assert_eq!(fired, [("re_engagement_campaign", due)]);
    // the firing that comes afterwards finds the crossing done
    let stale = leadflow_domain::workflow::Timer {
        kind: COOLING,
        due_at: due,
        bound: None,
        suppressed: false,
    };
    let d = h.decide(Command::TimerFired(stale));
    assert!(d.events.is_empty());
}

#[test]
fn cooling_off_re_arms_when_the_score_is_back_above_the_threshold() {
    let mut h = cooling();
    let cooled = |h: &Harness| {
        h.emitted()
            .iter()
            .filter(|e| **e == "re_engagement_campaign")
            .count()
    };
    h.fire(&COOLING);
    assert_eq!(cooled(&h), 1);
    h.engage(ev("t2", "webinar_attended", days(14)));
    h.engage(ev("t3", "webinar_registered", days(14)));
    assert!(
        h.timer(&COOLING).is_some(),
        "above 30 again: a new crossing is armed"
    );
    h.fire(&COOLING);
    assert_eq!(cooled(&h), 2);
}

#[test]
fn if_still_gates_an_immediate_trigger() {
    let mut h = Harness::capture(policy(), good_fit(), T0);
    h.engage(ev("t", "trial_started", hours(1)));
    h.engage(ev("b", "ebook_downloaded", hours(1)));
    assert_eq!(h.stage(), Stage::Iql);
    let d = h.fire(&COOLING);
    assert!(d.events.is_empty(), "cooling-off is for MQLs only");
    assert!(
        h.lead
            .crossings
            .iter()
            .filter(|c| c.model.is_none())
            .all(|c| c.reached),
        "the crossing happened all the same"
    );
}

#[test]
fn a_history_import_suppresses_old_triggers_but_keeps_their_stage_effects() {
    let now = days(200);
    let decision = leadflow_domain::capture(
        &policy(),
        good_fit(),
        Some(days(1)),
        &leadflow_domain::Context { now },
    )
    .expect("capture");
    let mut h = Harness::capture(policy(), good_fit(), now);
    h.lead = decision.lead;
    h.timers.clear();
    h.events.clear();
    for (i, kind) in [
        "trial_started",
        "webinar_attended",
        "ebook_downloaded",
        "ebook_downloaded",
    ]
    .iter()
    .enumerate()
    {
        h.engage(ev(&format!("e{i}"), kind, days(2)));
    }
    h.now = now;
    assert_eq!(h.stage(), Stage::Mql);
    let welcome = h
        .triggers()
        .into_iter()
        .find(|t| t.emit == "mql_welcome_sequence")
        .expect("recorded")
        .clone();
    assert!(welcome.suppressed);
    let idle = h.timer(&sla("mql_idle")).expect("armed").clone();
    assert!(idle.suppressed);
    let d = h.fire(&sla("mql_idle"));
    assert!(
        d.events
            .iter()
            .filter(|e| !matches!(e, Event::Transition(_)))
            .all(Event::suppressed)
    );
    assert!(matches!(&d.events[0], Event::SlaBreached(b) if b.suppressed));
    assert_eq!(h.stage(), Stage::Iql, "the recycle still applies");
}

#[test]
fn a_policy_change_rescores_moves_forward_and_replans_timers() {
    let mut h = Harness::capture(policy(), good_fit(), T0);
    h.engage(ev("t", "trial_started", hours(1)));
    h.engage(ev("w", "webinar_attended", hours(1)));
    assert_eq!(h.stage(), Stage::Iql);
    h.policy = policy_with("engagement_at_least = 60", "engagement_at_least = 40");
    h.now = hours(3);
    let d = h.decide(Command::PolicyChanged { at: hours(3) });
    assert_eq!(path(&d), [(Some(Stage::Iql), Stage::Mql)]);
    let t = d.transitions().next().expect("transition");
    assert_eq!((t.cause.clone(), t.at), (Cause::PolicyChange, hours(3)));
    assert!(
        h.triggers()
            .iter()
            .any(|t| t.emit == "mql_welcome_sequence" && t.at == hours(3))
    );
    assert!(h.timer(&workflow("mql-day-3")).is_some());

    // a stricter policy never moves a lead back
    h.policy = policy_with("engagement_at_least = 60", "engagement_at_least = 85");
    h.now = hours(4);
    let d = h.decide(Command::PolicyChanged { at: hours(4) });
    assert_eq!(d.transitions().count(), 0);
    assert_eq!(h.stage(), Stage::Mql);
    let day3 = h.timer(&workflow("mql-day-3")).expect("re-planned");
    assert_eq!(day3.due_at, hours(3).saturating_add(Span::from_days(3)));
}

#[test]
fn timer_keys_round_trip() {
    for kind in [
        workflow("mql-day-3"),
        sla("mql_idle"),
        COOLING,
        TimerKind::Crossing(Crossing::Above(-12.5)),
        TimerKind::Level,
    ] {
        assert_eq!(kind.key().parse::<TimerKind>(), Ok(kind));
    }
    assert!("nope".parse::<TimerKind>().is_err());
}

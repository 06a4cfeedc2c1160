//! MQL levels: parsed against the MQL bar and each other, recomputed with
//! the score (by engagements, profile changes, policy changes and decay
//! alone), recorded as history entries, and set off workflows.

use leadflow_domain::workflow::{Event, LevelChange, TimerKind};
use leadflow_domain::{Cause, Command, Policy, Span, Stage, Timestamp};

use crate::common::{Harness, T0, attrs, ev, example_toml, good_fit, hours, page};

/// The example's levels, as shipped.
const EXAMPLE_LEVELS: &str = "[[stages.MQL.levels]]\nid = \"warm\"\nengagement_at_least = 90\n\n\
    [[stages.MQL.levels]]\nid = \"hot\"\nengagement_at_least = 120\ngrade_at_least = \"A\"\n";

/// Lower ones, for short tests.
const LEVELS: &str = "[[stages.MQL.levels]]\nid = \"warm\"\nengagement_at_least = 70\n\n\
    [[stages.MQL.levels]]\nid = \"hot\"\nengagement_at_least = 100\ngrade_at_least = \"A\"\n";

/// The example with `levels` in place of its own, and its workflow on
/// `level:hot` (`sales_hot_lead_alert`, if still MQL) on `on` instead.
fn with_levels(levels: &str, on: &str) -> String {
    let toml = example_toml();
    assert!(toml.contains(EXAMPLE_LEVELS) && toml.contains("on = \"level:hot\""));
    toml.replacen(EXAMPLE_LEVELS, levels, 1)
        .replacen("on = \"level:hot\"", &format!("on = \"{on}\""), 1)
}

fn levelled() -> Policy {
    Policy::from_toml(&with_levels(LEVELS, "level:hot")).expect("valid")
}

fn errors(levels: &str, on: &str) -> Vec<String> {
    match Policy::from_toml(&with_levels(levels, on)) {
        Ok(_) => panic!("expected {levels} with {on} to be refused"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn level_changes(events: &[Event]) -> Vec<&LevelChange> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::LevelChanged(l) => Some(l),
            _ => None,
        })
        .collect()
}

fn change(l: &LevelChange) -> (Option<&str>, Option<&str>) {
    (l.from.as_deref(), l.to.as_deref())
}

/// `n` trials at `at`: 30 points each, uncapped.
fn trials(h: &mut Harness, prefix: &str, n: usize, at: Timestamp) {
    for i in 0..n {
        h.engage(ev(&format!("{prefix}{i}"), "trial_started", at));
    }
}

#[test]
fn levels_inherit_what_they_leave_out_and_must_ask_for_more() {
    let p = levelled();
    let levels = &p.mql.levels;
    assert_eq!(levels.len(), 2);
    assert_eq!(
        (
            levels[0].id.as_str(),
            levels[0].engagement_at_least,
            levels[0].fit_at_least,
            levels[0].grade_at_least.as_deref()
        ),
        ("warm", 70.0, 20.0, None),
        "fit from the MQL bar"
    );
    assert_eq!(
        (
            levels[1].engagement_at_least,
            levels[1].fit_at_least,
            levels[1].grade_at_least.as_deref()
        ),
        (100.0, 20.0, Some("A"))
    );
    assert!(p.workflows.iter().any(|w| w.on.to_string() == "level:hot"));
}

#[test]
fn bad_levels_are_refused_at_their_paths() {
    let one = |body: &str| format!("\n[[stages.MQL.levels]]\n{body}\n");
    for (levels, expected) in [
        (
            one("id = \"warm\"\nengagement_at_least = 50"),
            "stages.MQL.levels[0].engagement_at_least: 50 is below the MQL bar's 60",
        ),
        (
            one("id = \"warm\"\nfit_at_least = 10"),
            "stages.MQL.levels[0].fit_at_least: 10 is below the MQL bar's 20",
        ),
        (
            one("id = \"warm\""),
            "stages.MQL.levels[0]: a level needs at least one of engagement_at_least, fit_at_least, grade_at_least",
        ),
        (
            one("engagement_at_least = 70"),
            "stages.MQL.levels[0].id: required",
        ),
        (
            one("id = \"warm\"\nengagement_at_least = 60"),
            "stages.MQL.levels[0]: asks for no more than the MQL bar",
        ),
        (
            one("id = \"warm\"\ngrade_at_least = \"Z\""),
            "stages.MQL.levels[0].grade_at_least: unknown grade \"Z\"",
        ),
        (
            one("id = \"warm\"\nengagement_at_least = \"70\""),
            "stages.MQL.levels[0].engagement_at_least: expected a number",
        ),
        (
            one("id = \"warm\"\nhot = true"),
            "stages.MQL.levels[0].hot: unknown key",
        ),
        (
            format!(
                "{}{}",
                one("id = \"warm\"\nengagement_at_least = 80"),
                one("id = \"hot\"\nengagement_at_least = 70")
            ),
            "stages.MQL.levels[1].engagement_at_least: 70 is below level warm's 80",
        ),
        (
            format!(
                "{}{}",
                one("id = \"warm\"\ngrade_at_least = \"A\""),
                one("id = \"hot\"\ngrade_at_least = \"B\"")
            ),
            "stages.MQL.levels[1].grade_at_least: B is below level warm's A",
        ),
        (
            format!(
                "{}{}",
                one("id = \"warm\"\nengagement_at_least = 80"),
                one("id = \"warm\"\nengagement_at_least = 90")
            ),
            "stages.MQL.levels[1].id: ",
        ),
        (
            format!(
                "{}{}",
                one("id = \"warm\"\nengagement_at_least = 80"),
                one("id = \"hot\"\nfit_at_least = 20")
            ),
            "stages.MQL.levels[1]: asks for no more than level warm",
        ),
    ] {
        let errs = errors(&levels, "level:hot");
        assert!(
            errs.iter().any(|e| e.starts_with(expected)),
            "expected {expected:?}, got:\n{}",
            errs.join("\n")
        );
    }
    let errs = errors(LEVELS, "level:hott");
    assert!(
        errs.iter()
            .any(|e| e.contains("no level \"hott\" in [[stages.MQL.levels]] (did you mean \"hot\"?)")),
        "{errs:?}"
    );
    let errs = errors("", "level:hot");
    assert!(
        errs.iter()
            .any(|e| e.contains("no level \"hot\": [stages.MQL] has no levels")),
        "{errs:?}"
    );
}

#[test]
fn engagements_raise_the_level_one_change_at_a_time_and_each_fires_its_workflows() {
    let mut h = Harness::capture(levelled(), good_fit(), T0);
    trials(&mut h, "t", 2, hours(1)); // 60: MQL, below warm
    assert_eq!((h.stage(), h.lead.level.as_deref()), (Stage::Mql, None));
    h.engage(ev("b", "ebook_downloaded", hours(1))); // 70: warm
    let d = h.last.clone().expect("decision");
    let changes = level_changes(&d.events);
    assert_eq!(
        changes.iter().map(|l| change(l)).collect::<Vec<_>>(),
        [(None, Some("warm"))]
    );
    assert_eq!(
        changes[0].cause,
        Cause::Engagement {
            event_id: "b".to_owned()
        }
    );
    assert_eq!(
        (changes[0].at, changes[0].stage, changes[0].fit),
        (hours(1), Stage::Mql, 40.0)
    );
    assert!(!d.bumps_version(), "a level is not a stage: the version stays");
    h.engage(ev("t9", "trial_started", hours(1))); // 100: hot (fit 40 is grade A)
    let d = h.last.clone().expect("decision");
    assert_eq!(
        level_changes(&d.events)
            .iter()
            .map(|l| change(l))
            .collect::<Vec<_>>(),
        [(Some("warm"), Some("hot"))]
    );
    assert!(
        d.events.iter().any(
            |e| matches!(e, Event::Trigger(t) if t.emit == "sales_hot_lead_alert" && t.on == "level:hot")
        )
    );
    assert_eq!(h.lead.scores_at(&h.policy, h.now).level.as_deref(), Some("hot"));
}

#[test]
fn a_lead_entering_mql_at_hot_records_the_move_then_the_level() {
    let mut profile = good_fit();
    profile.remove("company");
    let mut h = Harness::capture(levelled(), profile, T0);
    trials(&mut h, "t", 4, hours(1)); // 120 but no company: IQL
    assert_eq!((h.stage(), h.lead.level.as_deref()), (Stage::Iql, None));
    h.now = hours(2);
    let d = h.decide(Command::UpdateProfile(attrs(&[("company", "Acme")])));
    let shape: Vec<String> = d
        .events
        .iter()
        .map(|e| match e {
            Event::Transition(t) => format!("->{}", t.to),
            Event::Trigger(t) => t.emit.clone(),
            Event::LevelChanged(l) => format!("level {:?}", l.to),
            Event::SlaBreached(b) => b.sla_id.clone(),
        })
        .collect();
    assert_eq!(
        shape,
        [
            "->MQL",
            "mql_welcome_sequence",
            "level Some(\"hot\")",
            "sales_hot_lead_alert"
        ]
    );
    assert_eq!(level_changes(&d.events)[0].cause, Cause::ProfileUpdate);
}

#[test]
fn decay_lowers_the_level_at_the_instant_computed_in_closed_form() {
    let mut h = Harness::capture(levelled(), good_fit(), T0);
    trials(&mut h, "t", 4, hours(1)); // 120: hot
    assert_eq!(h.lead.level.as_deref(), Some("hot"));
    // 120 halves every 30 days: below 100 after 30 × log2(1.2) days
    let timer = h.timer(&TimerKind::Level).expect("a level timer").clone();
    let days = 30.0 * (120.0_f64 / 100.0).log2();
    let expected = hours(1).saturating_add(Span::from_micros((days * 86_400e6) as i64));
    assert!(
        (timer.due_at.as_micros() - expected.as_micros()).abs() < 1_000_000,
        "{} vs {expected}",
        timer.due_at
    );
    let d = h.fire(&TimerKind::Level);
    let changes = level_changes(&d.events);
    assert_eq!(
        changes.iter().map(|l| change(l)).collect::<Vec<_>>(),
        [(Some("hot"), Some("warm"))]
    );
    assert_eq!(
        (changes[0].at, changes[0].cause.clone()),
        (timer.due_at, Cause::Decay)
    );
    assert!(changes[0].engagement < 100.0);
    assert!(d.transitions().next().is_none());
    // and the next one: below 70
    let next = h.timer(&TimerKind::Level).expect("re-armed").due_at;
    assert!(next > timer.due_at);
    assert_eq!(
        h.lead
            .scores_at(&h.policy, next.saturating_add(Span::from_secs(1)))
            .level,
        None
    );
}

#[test]
fn a_late_look_records_every_level_decay_passed_at_its_own_instant() {
    let mut h = Harness::capture(levelled(), good_fit(), T0);
    trials(&mut h, "t", 4, hours(1));
    let hot_to_warm = h.timer(&TimerKind::Level).expect("armed").due_at;
    // no timer fires (an outage); 60 days later a page view arrives
    let later = hours(1).saturating_add(Span::from_days(60));
    let d = h.engage(page("p", "/blog", later));
    let changes = level_changes(&d.events);
    assert_eq!(
        changes.iter().map(|l| change(l)).collect::<Vec<_>>(),
        [(Some("hot"), Some("warm")), (Some("warm"), None)]
    );
    assert_eq!(changes[0].at, hot_to_warm);
    assert!(changes[1].at > hot_to_warm && changes[1].at < later);
    assert!(changes.iter().all(|l| l.cause == Cause::Decay));
}

#[test]
fn leaving_mql_ends_the_level() {
    let mut h = Harness::capture(levelled(), good_fit(), T0);
    trials(&mut h, "t", 3, hours(1));
    assert_eq!(h.lead.level.as_deref(), Some("warm"));
    let d = h.engage(ev("demo", "demo_requested", hours(2)));
    assert_eq!(h.stage(), Stage::Sql);
    let changes = level_changes(&d.events);
    assert_eq!(
        changes.iter().map(|l| change(l)).collect::<Vec<_>>(),
        [(Some("warm"), None)]
    );
    assert_eq!(changes[0].stage, Stage::Sql);
    assert!(h.timer(&TimerKind::Level).is_none(), "no level outside MQL");
}

#[test]
fn a_policy_change_recomputes_the_level() {
    let mut h = Harness::capture(levelled(), good_fit(), T0);
    trials(&mut h, "t", 3, hours(1));
    assert_eq!(h.lead.level.as_deref(), Some("warm"));
    h.policy = Policy::from_toml(&with_levels(&LEVELS.replace("= 100", "= 85"), "level:hot")).expect("valid");
    h.now = hours(2);
    let d = h.decide(Command::PolicyChanged { at: hours(2) });
    let changes = level_changes(&d.events);
    assert_eq!(
        changes.iter().map(|l| change(l)).collect::<Vec<_>>(),
        [(Some("warm"), Some("hot"))]
    );
    assert_eq!(changes[0].cause, Cause::PolicyChange);
    assert!(
        !d.events.iter().any(|e| matches!(e, Event::Trigger(_))),
        "a new policy rebases levels without setting off their workflows: {:?}",
        d.events
    );
}

#[test]
fn explain_names_the_next_levels_guards() {
    let mut h = Harness::capture(levelled(), good_fit(), T0);
    trials(&mut h, "t", 2, hours(1));
    h.engage(ev("b", "ebook_downloaded", hours(1)));
    let x = leadflow_domain::explain::explain(&h.policy, &h.lead, &h.log, hours(1));
    assert_eq!(x.scores.level.as_deref(), Some("warm"));
    let next = x.next_level.expect("hot is next");
    assert_eq!(next.id, "hot");
    let details: Vec<(String, bool)> = next.guards.iter().map(|g| (g.detail.clone(), g.passed)).collect();
    assert_eq!(
        details,
        [
            ("engagement 70 < 100".to_owned(), false),
            ("fit 40 ≥ 20".to_owned(), true),
            ("grade A ≥ A".to_owned(), true)
        ]
    );
}

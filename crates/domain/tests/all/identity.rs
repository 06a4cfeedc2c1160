//! Identification: anonymous activity joins a lead's log at its own
//! instants, scores as if it had been recorded then, and what it causes is
//! decided at the identification's instant with cause IDENTIFY.

use leadflow_domain::score::{ScoreState, round6};
use leadflow_domain::{Cause, Command, DomainError, Engagement, Span, Stage, Timestamp};
use proptest::prelude::*;

use crate::common::{Harness, T0, ev, good_fit, policy};

fn identify(id: &str, events: Vec<Engagement>, at: Option<Timestamp>) -> Command {
    Command::Identify {
        anonymous_id: id.to_owned(),
        events,
        at,
    }
}

fn days(n: i64) -> Span {
    Span::from_hours(24 * n)
}

/// A visitor's activity over its first days, before any form.
fn visits() -> Vec<Engagement> {
    vec![
        ev("v1", "webinar_attended", T0),
        ev("v2", "trial_started", T0.saturating_add(days(1))),
        ev("v3", "webinar_attended", T0.saturating_add(days(2))),
    ]
}

#[test]
fn joined_activity_scores_as_if_it_had_been_recorded_then() {
    let captured = T0.saturating_add(days(10));
    let mut h = Harness::capture(policy(), good_fit(), captured);
    h.now = captured.saturating_add(Span::from_hours(1));
    h.decide(identify("cookie-1", visits(), None));
    let replay = ScoreState::replay(&h.policy, &visits(), None, None);
    assert_eq!(h.lead.lifetime, replay);
    // The same events arriving for the lead after its capture, late.
    let mut g = Harness::capture(policy(), good_fit(), captured);
    g.now = h.now;
    for e in visits() {
        g.decide(Command::RecordEngagement(e));
    }
    assert_eq!(g.lead.lifetime, h.lead.lifetime);
    assert_eq!(g.lead.qualifying, h.lead.qualifying);
}

#[test]
fn what_the_activity_causes_is_decided_at_the_identification() {
    // 15 + 30 + 15 + 30 points within two days: past the MQL bar of 60,
    // once decayed over the week before the form.
    let mut events = visits();
    events.push(ev("v4", "trial_started", T0.saturating_add(days(2))));
    let captured = T0.saturating_add(days(7));
    let mut h = Harness::capture(policy(), good_fit(), captured);
    assert_eq!(h.lead.stage, Stage::Iql);
    let at = captured.saturating_add(Span::from_hours(2));
    h.now = at.saturating_add(Span::from_hours(1));
    let decision = h.decide(identify("cookie-2", events, Some(at)));
    let moves: Vec<(Stage, Timestamp, Cause)> = decision
        .transitions()
        .map(|t| (t.to, t.at, t.cause.clone()))
        .collect();
    assert_eq!(
        moves,
        [(
            Stage::Mql,
            at,
            Cause::Identify {
                anonymous_id: "cookie-2".to_owned()
            }
        )]
    );
    let engagement = decision.transitions().next().map(|t| t.engagement);
    let expected = round6(h.lead.qualifying.value_at(&h.policy, 0, at));
    assert_eq!(engagement, Some(expected));
    assert!((60.0..90.0).contains(&expected), "decayed: {expected}");
}

#[test]
fn activity_after_the_identification_s_instant_is_decided_when_it_happened() {
    // Identified (as an import would place it) right at capture, with
    // activity from the days after: the MQL comes at the last event.
    let mut events = visits();
    events.push(ev("v4", "trial_started", T0.saturating_add(days(2))));
    let mut h = Harness::capture(policy(), good_fit(), T0);
    h.now = T0.saturating_add(days(3));
    let decision = h.decide(identify("cookie-3", events, Some(T0)));
    let moves: Vec<(Stage, Timestamp)> = decision.transitions().map(|t| (t.to, t.at)).collect();
    assert_eq!(moves, [(Stage::Mql, T0.saturating_add(days(2)))]);
}

#[test]
fn an_identification_in_the_future_or_before_the_last_move_is_refused() {
    let mut h = Harness::capture(policy(), good_fit(), T0);
    let early = h.try_decide(identify("c", visits(), Some(T0.saturating_sub(days(1)))));
    let Err(DomainError::InvalidArgument { violations, .. }) = early else {
        panic!("refused: {early:?}");
    };
    assert_eq!(violations[0].field, "occurred_at");
    assert!(
        violations[0]
            .description
            .contains("before the lead's last transition")
    );
    let late = h.try_decide(identify("c", visits(), Some(T0.saturating_add(days(1)))));
    let Err(DomainError::InvalidArgument { violations, .. }) = late else {
        panic!("refused: {late:?}");
    };
    assert!(violations[0].description.contains("in the future"));
}

#[test]
fn an_identification_without_activity_changes_no_score() {
    let mut h = Harness::capture(policy(), good_fit(), T0);
    h.engage(ev("own", "trial_started", T0.saturating_add(Span::from_hours(1))));
    let before = (h.lead.lifetime.clone(), h.lead.stage);
    h.now = T0.saturating_add(days(1));
    let decision = h.decide(identify("empty", Vec::new(), None));
    assert_eq!((h.lead.lifetime.clone(), h.lead.stage), before);
    assert_eq!(decision.transitions().count(), 0);
}

fn kinds() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "webinar_attended",
        "ebook_downloaded",
        "page_viewed",
        "trial_started",
        "ad_clicked",
        "email_clicked",
    ])
}

/// A log over two months, each event with its own id.
fn log() -> impl Strategy<Value = Vec<Engagement>> {
    prop::collection::vec((kinds(), 0_i64..(60 * 24)), 0..40).prop_map(|events| {
        events
            .into_iter()
            .enumerate()
            .map(|(i, (kind, minutes))| {
                ev(
                    &format!("e{i}"),
                    kind,
                    T0.saturating_add(Span::from_secs(minutes * 3600)),
                )
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever part of a log arrives anonymously, and whether it joins by
    /// identification or arrives for the lead afterwards, the lead's scores
    /// are those of the whole log.
    #[test]
    fn identification_is_a_replay_of_the_joined_log(log in log(), split in any::<prop::sample::Index>(), anon_mask in any::<u64>()) {
        let end = T0.saturating_add(days(61));
        let (mut own, mut anon) = (Vec::new(), Vec::new());
        for (i, e) in log.iter().enumerate() {
            if anon_mask >> (i % 64) & 1 == 1 { anon.push(e.clone()) } else { own.push(e.clone()) }
        }
        let half = split.index(own.len() + 1);
        let mut h = Harness::capture(policy(), good_fit(), T0);
        h.now = end;
        for e in &own[..half] {
            h.decide(Command::RecordEngagement(e.clone()));
        }
        h.decide(identify("visitor", anon.clone(), None));
        for e in &own[half..] {
            h.decide(Command::RecordEngagement(e.clone()));
        }
        let whole = ScoreState::replay(&h.policy, &log, None, None);
        prop_assert_eq!(&h.lead.lifetime, &whole);
        // The anonymous part recorded for the lead instead, in any order.
        let mut g = Harness::capture(policy(), good_fit(), T0);
        g.now = end;
        for e in anon.iter().rev().chain(own.iter()) {
            g.decide(Command::RecordEngagement(e.clone()));
        }
        prop_assert_eq!(&g.lead.lifetime, &h.lead.lifetime);
        prop_assert_eq!(
            round6(g.lead.qualifying.value_at(&g.policy, 0, end)),
            round6(h.lead.qualifying.value_at(&h.policy, 0, end))
        );
    }
}

#[test]
fn the_identity_table_sets_how_long_anonymous_activity_is_kept() {
    use leadflow_domain::Policy;
    use leadflow_domain::policy::Identity;
    let example = policy();
    assert_eq!(example.identity.anonymous_ttl, Identity::DEFAULT_ANONYMOUS_TTL);
    let toml = crate::common::example_toml();
    let week = Policy::from_toml(&format!("{toml}\n[identity]\nanonymous_ttl = \"7d\"\n")).expect("valid");
    assert_eq!(week.identity.anonymous_ttl, days(7));
    for (bad, expected) in [
        ("anonymous_ttl = \"0s\"", "identity.anonymous_ttl"),
        ("anonymous_ttl = \"soon\"", "identity.anonymous_ttl"),
        ("anonymous_ttl = 7", "identity.anonymous_ttl"),
        ("keep = \"7d\"", "identity.keep"),
    ] {
        let refused = Policy::from_toml(&format!("{toml}\n[identity]\n{bad}\n")).expect_err(bad);
        let messages: Vec<String> = refused.0.iter().map(ToString::to_string).collect();
        assert!(
            messages.iter().any(|m| m.starts_with(expected)),
            "{bad}: {messages:?}"
        );
    }
}

//! Scoring exactly as the comments of examples/policy.toml define it.

use leadflow_domain::score::{ScoreState, fit_score, round6};
use leadflow_domain::{Engagement, Policy, Timestamp};

use crate::common::{T0, attrs, days, ev, hours, page, policy, policy_with};

fn score(policy: &Policy, log: &[Engagement], at: Timestamp) -> f64 {
    round6(ScoreState::replay(policy, log, None, Some(at)).value_at(policy, 0, at))
}

#[test]
fn every_matching_rule_counts() {
    let p = policy();
    // a pricing page matches both "any-page" (1) and "pricing-page" (10)
    assert_eq!(
        score(&p, &[page("e1", "/pricing/teams", hours(1))], hours(1)),
        11.0
    );
    // a careers page matches "any-page" (1) and the "careers-page" undesirable (-5)
    assert_eq!(score(&p, &[page("e1", "/careers", hours(1))], hours(1)), -4.0);
}

#[test]
fn max_per_day_counts_the_first_events_of_each_utc_day() {
    let p = policy();
    let log: Vec<_> = (0..4)
        .map(|i| page(&format!("p{i}"), "/pricing", hours(0)))
        .collect();
    // pricing-page: 2 a day → 20; any-page: 4 → 4
    assert_eq!(score(&p, &log, hours(0)), 24.0);
    // the next UTC day counts again
    let mut log = log;
    log.push(page("p-next", "/pricing", hours(24)));
    let at = hours(24);
    let expected = (20.0 + 4.0) * 0.5_f64.powf(1.0 / 30.0) + 11.0;
    assert!((score(&p, &log, at) - round6(expected)).abs() < 1e-6);
}

#[test]
fn max_points_counts_the_crossing_event_up_to_the_cap() {
    let p = policy_with("points = 10\nmax_points = 20", "points = 7\nmax_points = 20");
    let log: Vec<_> = (0..4)
        .map(|i| ev(&format!("w{i}"), "webinar_registered", T))
        .collect();
    // 7 + 7 + 6 (up to the cap) + 0
    assert_eq!(score(&p, &log, T), 20.0);
    let state = ScoreState::replay(&p, &log, None, None);
    assert_eq!(state.rules[0].matched, 4);
    assert_eq!(state.rules[0].counted, 3);
    assert_eq!(state.rules[0].raw, 20.0);
}

const T: Timestamp = crate::common::T0;

#[test]
fn max_points_is_a_lifetime_undecayed_budget() {
    let p = policy();
    // ebooks: 10 each, max 30 — months apart, the fourth still counts nothing
    let log: Vec<_> = (0..4)
        .map(|i| ev(&format!("b{i}"), "ebook_downloaded", days(i * 60)))
        .collect();
    let state = ScoreState::replay(&p, &log, None, None);
    let ebook = p
        .event_rules
        .iter()
        .position(|r| r.id == "ebook")
        .expect("ebook rule");
    assert_eq!(state.rules[ebook].counted, 3);
    assert_eq!(state.rules[ebook].raw, 30.0);
}

#[test]
fn max_per_day_applies_before_max_points() {
    let p = policy_with(
        "points = 1\nmax_points = 10",
        "points = 4\nmax_points = 10\nmax_per_day = 1",
    );
    // two views a day for three days: one a day counts (4, 4, then 2 up to the cap)
    let mut log = Vec::new();
    for d in 0..3 {
        log.push(page(&format!("a{d}"), "/blog", days(d)));
        log.push(page(
            &format!("b{d}"),
            "/blog",
            days(d).saturating_add(leadflow_domain::Span::from_hours(1)),
        ));
    }
    let state = ScoreState::replay(&p, &log, None, None);
    let any = p
        .event_rules
        .iter()
        .position(|r| r.id == "any-page")
        .expect("rule");
    assert_eq!(state.rules[any].matched, 6);
    assert_eq!(state.rules[any].counted, 3);
    assert_eq!(state.rules[any].raw, 10.0);
}

#[test]
fn engagement_decays_with_the_half_life_and_fit_does_not() {
    let p = policy();
    let log = [ev("t", "trial_started", days(0))];
    assert_eq!(score(&p, &log, days(0)), 30.0);
    assert_eq!(score(&p, &log, days(30)), 15.0);
    assert_eq!(score(&p, &log, days(60)), 7.5);
    let profile = leadflow_domain::profile::Profile::capture(attrs(&[
        ("email", "a@acme.com"),
        ("title", "Head of Data"),
    ]))
    .expect("valid");
    assert_eq!(fit_score(&p, 0, &profile), 15.0);
}

#[test]
fn negative_contributions_decay_toward_zero_too() {
    let p = policy();
    let log = [ev("u", "email_unsubscribed", days(0))];
    assert_eq!(score(&p, &log, days(0)), -20.0);
    assert_eq!(score(&p, &log, days(30)), -10.0);
}

#[test]
fn channel_and_where_narrow_a_rule() {
    let p = policy();
    let mut paid = ev("a1", "ad_clicked", T);
    paid.channel = Some(" Paid_Social ".to_owned());
    let mut organic = ev("a2", "ad_clicked", T);
    organic.channel = Some("search".to_owned());
    let bare = ev("a3", "ad_clicked", T);
    assert_eq!(score(&p, &[paid], T), 3.0);
    assert_eq!(score(&p, &[organic], T), 0.0);
    assert_eq!(score(&p, &[bare], T), 0.0, "a missing channel does not match");
    // a missing property does not match a `where`
    assert_eq!(score(&p, &[ev("p", "page_viewed", T)], T), 1.0);
    // prefixes compare case-sensitively, as paths do
    assert_eq!(score(&p, &[page("p", "/Pricing", T)], T), 1.0);
}

#[test]
fn fit_rules_compare_text_case_insensitively_and_numbers_only_as_numbers() {
    let p = policy();
    let fit = |pairs: &[(&str, &str)]| {
        let mut all = vec![("email", "a@acme.com")];
        all.extend_from_slice(pairs);
        fit_score(
            &p,
            0,
            &leadflow_domain::profile::Profile::capture(attrs(&all)).expect("valid"),
        )
    };
    assert_eq!(fit(&[("industry", "  SOFTWARE ")]), 10.0);
    assert_eq!(fit(&[("company_size", "200")]), 15.0);
    assert_eq!(fit(&[("company_size", "199.5")]), 0.0);
    assert_eq!(fit(&[("company_size", "lots")]), 0.0);
    assert_eq!(fit(&[("title", "CTO & co-founder")]), 15.0);
    assert_eq!(fit(&[("title", "Director-level")]), 15.0);
    assert_eq!(fit(&[("title", "Directory assistant")]), 0.0);
    // the undesirable reads the derived domain
    assert_eq!(
        fit_score(
            &p,
            0,
            &leadflow_domain::profile::Profile::capture(attrs(&[("email", "x@GMail.com")])).expect("valid")
        ),
        -15.0
    );
}

#[test]
fn events_after_the_instant_do_not_count() {
    let p = policy();
    let log = [
        ev("t1", "trial_started", days(0)),
        ev("t2", "trial_started", days(10)),
    ];
    assert_eq!(score(&p, &log, days(5)), round6(30.0 * 0.5_f64.powf(5.0 / 30.0)));
}

#[test]
fn decay_crossing_has_a_closed_form() {
    let p = policy();
    let state = ScoreState::replay(
        &p,
        &[
            ev("t", "trial_started", days(0)),
            ev("w", "webinar_attended", days(0)),
        ],
        None,
        None,
    );
    // 45 points fall below 30 after 30d · log2(45/30) ≈ 17.55 days
    let at = state
        .decay_reaches(&p, 0, days(0), 30.0 - 6e-7)
        .expect("it decays");
    assert!(round6(state.value_at(&p, 0, at)) < 30.0);
    let just_before = Timestamp::from_micros(at.as_micros() - 1_000_000);
    assert!(round6(state.value_at(&p, 0, just_before)) >= 30.0);
    let expected_days = 30.0 * (45.0_f64 / 30.0).log2();
    #[allow(clippy::cast_precision_loss)]
    let got_days = (at.as_micros() - days(0).as_micros()) as f64 / 86_400e6;
    assert!(
        (got_days - expected_days).abs() < 1e-6,
        "{got_days} vs {expected_days}"
    );
    // no decay, no crossing; already below, no crossing
    assert_eq!(state.decay_reaches(&p, 0, days(0), 50.0), None);
}

/// The example with "3 pricing page views within a day" (one firing a day
/// counts) and "4 careers pages within a week" disqualifying.
fn counting() -> Policy {
    counting_capped("max_per_day = 1")
}

fn counting_capped(caps: &str) -> Policy {
    policy_with(
        "[[undesirable]]\nid = \"careers-page\"",
        &format!(
            "[[engagement]]\nid = \"pricing-thrice\"\ntype = \"page_viewed\"\nwhere = {{ path_prefix = \"/pricing\" }}\n\
         at_count = 3\nwithin = \"1d\"\npoints = 10\n{caps}\n\n\
         [[undesirable]]\nid = \"job-hunter\"\ntype = \"page_viewed\"\nwhere = {{ path_prefix = \"/careers\" }}\n\
         at_count = 4\nwithin = \"7d\"\ndisqualify = true\n\n\
         [[undesirable]]\nid = \"careers-page\""
        ),
    )
}

/// The state of the rule `id` after the pricing views at these hours.
fn counted(
    policy: &Policy,
    id: &str,
    views: &[i64],
    since: Option<Timestamp>,
) -> leadflow_domain::score::RuleState {
    let log: Vec<_> = views
        .iter()
        .enumerate()
        .map(|(i, h)| page(&format!("v{i:02}"), "/pricing", hours(*h)))
        .collect();
    let state = ScoreState::replay(policy, &log, since, None);
    let i = policy
        .event_rules
        .iter()
        .position(|r| r.id == id)
        .expect("the rule");
    state.rules[i].clone()
}

#[test]
fn a_counting_rule_fires_at_the_nth_matching_event_within_its_window() {
    let p = counting();
    let r = counted(&p, "pricing-thrice", &[0, 1, 2], None);
    assert_eq!((r.matched, r.fired, r.counted, r.raw), (3, 1, 1, 10.0));
    assert!(r.kept.is_empty(), "a firing clears the kept events");
    assert_eq!(r.anchor, hours(2), "it fires at the third");

    // two, then one 29 hours after the second: the first two fall out
    let r = counted(&p, "pricing-thrice", &[0, 1, 30], None);
    assert_eq!((r.matched, r.fired, r.kept.len()), (3, 0, 1));
    let r = counted(&p, "pricing-thrice", &[0, 1, 30, 31, 32], None);
    assert_eq!((r.fired, r.anchor), (1, hours(32)));

    // exactly `within` apart still counts
    assert_eq!(counted(&p, "pricing-thrice", &[0, 12, 24], None).fired, 1);
    // and a firing starts the count again: six views are two firings
    assert_eq!(
        counted(&p, "pricing-thrice", &[48, 49, 50, 51, 52], None).fired,
        1
    );
    assert_eq!(
        counted(&p, "pricing-thrice", &[48, 49, 50, 51, 52, 53], None).fired,
        2
    );
}

#[test]
fn max_per_day_counts_firings_and_caps_limit_their_points() {
    let p = counting();
    // six views in a day fire twice; one firing a day gives points
    let r = counted(&p, "pricing-thrice", &[0, 1, 2, 3, 4, 5], None);
    assert_eq!((r.fired, r.counted, r.raw), (2, 1, 10.0));
    // the next day's firing counts again
    let r = counted(&p, "pricing-thrice", &[0, 1, 2, 3, 4, 5, 24, 25, 26], None);
    assert_eq!((r.fired, r.counted, r.raw), (3, 2, 20.0));

    let capped = counting_capped("max_points = 15");
    let r = counted(&capped, "pricing-thrice", &[0, 1, 2, 3, 4, 5, 6, 7, 8], None);
    assert_eq!(
        (r.fired, r.counted, r.raw),
        (3, 2, 15.0),
        "10, then 5 up to the cap, then nothing"
    );
}

#[test]
fn after_a_backward_move_only_later_events_count() {
    let p = counting();
    // the window opens after hour 1: the views at 0 and 1 are not kept
    let r = counted(&p, "pricing-thrice", &[0, 1, 2, 3], Some(hours(1)));
    assert_eq!((r.matched, r.fired, r.kept.len()), (2, 0, 2));
    let r = counted(&p, "pricing-thrice", &[0, 1, 2, 3, 4], Some(hours(1)));
    assert_eq!((r.matched, r.fired), (3, 1));
}

#[test]
fn a_counting_undesirable_disqualifies_when_it_fires_not_before() {
    let p = counting();
    let careers = |n: i64| -> Vec<Engagement> {
        (0..n)
            .map(|i| page(&format!("c{i}"), "/careers", days(i)))
            .collect()
    };
    let three = ScoreState::replay(&p, &careers(3), None, None);
    assert_eq!(three.disqualified_by, None);
    let four = ScoreState::replay(&p, &careers(4), None, None);
    assert_eq!(four.disqualified_by.as_deref(), Some("job-hunter"));
    // four spread over more than a week never fire
    let spread: Vec<_> = (0..4)
        .map(|i| page(&format!("c{i}"), "/careers", days(i * 3)))
        .collect();
    assert_eq!(ScoreState::replay(&p, &spread, None, None).disqualified_by, None);
}

#[test]
fn search_keys_stay_finite_and_ordered_far_from_the_epoch_and_without_decay() {
    use leadflow_domain::score::key_of_score;
    let fast = policy_with("half_life = \"30d\"", "half_life = \"1h\"");
    let far = Timestamp::from_secs(1_767_225_600 + 60 * 365 * 86_400); // sixty years on
    for (at, points) in [(far, 10.0), (Timestamp::from_secs(1_767_225_600 - 86_400), 10.0)] {
        let state = ScoreState::replay(&fast, &[ev("t", "trial_started", at)], None, None);
        let key = state.search_key(&fast, 0);
        assert!(key.is_finite(), "{key}");
        let score = state.value_at(&fast, 0, at);
        assert_eq!(score, points * 3.0);
        assert!((key - key_of_score(&fast, 0, score, at)).abs() < 1e-6 * key.abs().max(1.0));
        assert!(key_of_score(&fast, 0, score + 1.0, at) > key);
        assert!(key_of_score(&fast, 0, -score, at) < 0.0);
    }
    // Without decay the key is the signed log of the score itself.
    let still = policy_with("[decay]\nhalf_life = \"30d\"\n", "");
    let state = ScoreState::replay(&still, &[ev("t", "trial_started", T0)], None, None);
    assert!((state.search_key(&still, 0) - 31.0_f64.log2()).abs() < 1e-12);
    assert_eq!(ScoreState::new(&still, None).search_key(&still, 0), 0.0);
}

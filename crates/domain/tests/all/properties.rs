//! Property tests: scoring is a pure function of the sorted, de-duplicated
//! log; the incremental path equals the replay; caps hold; decay only fades;
//! the lifecycle's invariants hold for any sequence of commands.

use std::collections::BTreeMap;

use leadflow_domain::score::{ScoreState, decay_factor, key_of_score, round6};
use leadflow_domain::{Command, CommandKind, Engagement, Policy, Span, Stage, Timestamp};
use proptest::prelude::*;

use crate::common::{Harness, T0, good_fit, manual, modelled, policy, policy_with};

/// The example with a rule that reads a numeric bound and counting rules:
/// one with a window (capped per day and in all), one without, and a
/// disqualifying one.
fn bounded() -> Policy {
    policy_with(
        "[[undesirable]]\nid = \"careers-page\"",
        "[[engagement]]\nid = \"long-read\"\ntype = \"page_viewed\"\nwhere = { seconds_at_least = 120, seconds_at_most = 900 }\npoints = 4\nmax_points = 24\nmax_per_day = 3\n\n\
         [[engagement]]\nid = \"pricing-twice\"\ntype = \"page_viewed\"\nwhere = { path_prefix = \"/pricing\" }\nat_count = 2\nwithin = \"7d\"\npoints = 10\nmax_points = 30\nmax_per_day = 1\n\n\
         [[engagement]]\nid = \"clicks-thrice\"\ntype = \"email_clicked\"\nat_count = 3\npoints = 6\n\n\
         [[undesirable]]\nid = \"blog-binge\"\ntype = \"page_viewed\"\nwhere = { path = \"/blog\" }\nat_count = 4\nwithin = \"3d\"\ndisqualify = true\n\n\
         [[undesirable]]\nid = \"careers-page\"",
    )
}

const KINDS: [&str; 9] = [
    "contact_requested",
    "webinar_registered",
    "webinar_attended",
    "ebook_downloaded",
    "page_viewed",
    "ad_clicked",
    "trial_started",
    "email_unsubscribed",
    "email_clicked",
];
const PATHS: [&str; 4] = ["/pricing", "/pricing/teams", "/careers", "/blog"];
const CHANNELS: [Option<&str>; 3] = [None, Some("paid_social"), Some("search")];
/// Time on a page, as callers send it: numbers, spaced, or not numbers.
const SECONDS: [&str; 6] = ["30", "120", " 600 ", "119.5", "n/a", "1e3"];

fn engagement() -> impl Strategy<Value = Engagement> {
    (
        0..KINDS.len(),
        0..PATHS.len(),
        0..CHANNELS.len(),
        0_i64..(60 * 24 * 3600),
        0_u32..1_000_000,
        0..SECONDS.len(),
    )
        .prop_map(|(k, p, c, secs, id, seconds)| {
            let mut properties = BTreeMap::new();
            if KINDS[k] == "page_viewed" {
                properties.insert("path".to_owned(), PATHS[p].to_owned());
                properties.insert("seconds".to_owned(), SECONDS[seconds].to_owned());
            }
            Engagement {
                event_id: format!("e{id}"),
                kind: KINDS[k].to_owned(),
                channel: CHANNELS[c].map(str::to_owned),
                properties,
                occurred_at: T0.saturating_add(Span::from_secs(secs)),
            }
        })
}

/// A log with unique event ids.
fn log() -> impl Strategy<Value = Vec<Engagement>> {
    prop::collection::vec(engagement(), 0..60).prop_map(|mut events| {
        let mut seen = std::collections::HashSet::new();
        events.retain(|e| seen.insert(e.event_id.clone()));
        events
    })
}

fn sorted(log: &[Engagement]) -> Vec<Engagement> {
    let mut s = log.to_vec();
    s.sort_by(|a, b| a.cmp_key(b));
    s
}

/// `log` with `burst`'s events squeezed into its first two days (with
/// their own ids), so that counting rules' windows fill.
fn with_burst(mut log: Vec<Engagement>, burst: Vec<Engagement>) -> Vec<Engagement> {
    log.extend(burst.into_iter().map(|mut e| {
        e.event_id = format!("burst-{}", e.event_id);
        e.occurred_at = T0.saturating_add(Span::from_micros(
            e.occurred_at.since(T0).as_micros() % (2 * 86_400_000_000),
        ));
        e
    }));
    log
}

/// How many times a counting rule fires over `log`, written out directly.
fn reference_firings(rule: &leadflow_domain::policy::EventRule, log: &[Engagement]) -> u32 {
    let Some(count) = rule.count else { return 0 };
    let mut kept: Vec<Timestamp> = Vec::new();
    let mut fired = 0;
    for e in sorted(log).iter().filter(|e| rule.matches(e)) {
        kept.retain(|t| count.within.is_none_or(|w| e.occurred_at.since(*t) <= w));
        kept.push(e.occurred_at);
        if kept.len() == count.at as usize {
            kept.clear();
            fired += 1;
        }
    }
    fired
}

/// A deterministic shuffle from the seed (xorshift).
fn shuffle(events: &mut [Engagement], seed: u64) {
    let mut state = seed | 1;
    for i in (1..events.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        #[allow(clippy::cast_possible_truncation)]
        events.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

fn end_of(log: &[Engagement]) -> Timestamp {
    log.iter().map(|e| e.occurred_at).max().unwrap_or(T0)
}

/// The semantics of examples/policy.toml written out directly: a model's
/// sum over counted events of its rules, each decayed from its own time by
/// the model's half-life.
fn reference_score(policy: &Policy, model: usize, log: &[Engagement], at: Timestamp) -> f64 {
    let log = sorted(log);
    let mut total = 0.0;
    let half_life = policy.models[model].half_life;
    for rule in policy.event_rules.iter().filter(|r| r.model == model) {
        let mut per_day: BTreeMap<i64, u32> = BTreeMap::new();
        let mut spent = 0.0_f64;
        let mut kept: Vec<Timestamp> = Vec::new();
        for e in log.iter().filter(|e| rule.matches(e) && e.occurred_at <= at) {
            if let Some(count) = rule.count {
                // the matching events since the last firing, inside the window
                kept.retain(|t| count.within.is_none_or(|w| e.occurred_at.since(*t) <= w));
                kept.push(e.occurred_at);
                if kept.len() < count.at as usize {
                    continue;
                }
                kept.clear();
            }
            let day = per_day.entry(e.occurred_at.utc_day()).or_default();
            if rule.max_per_day.is_some_and(|m| *day >= m) {
                continue;
            }
            *day += 1;
            let mut points = rule.points;
            if let Some(cap) = rule.max_points {
                let room = cap - spent.abs();
                if room <= 1e-9 {
                    continue;
                }
                points = points.signum() * points.abs().min(room);
            }
            spent += points;
            total += points * decay_factor(half_life, at.since(e.occurred_at));
        }
    }
    total
}

/// Engagements taken one by one, in time order (the incremental path) and
/// in any order (late ones replay), leave the states a replay gives.
fn incremental_equals_replay(policy: &Policy, log: &[Engagement], seed: u64) -> Result<(), TestCaseError> {
    let mut h = Harness::capture(policy.clone(), good_fit(), T0);
    for e in sorted(log) {
        h.engage(e);
    }
    let replay = ScoreState::replay(&h.policy, log, h.lead.window_start, None);
    prop_assert_eq!(&h.lead.qualifying, &replay);
    let full = ScoreState::replay(&h.policy, log, None, None);
    prop_assert_eq!(&h.lead.lifetime, &full);

    let mut shuffled = log.to_vec();
    shuffle(&mut shuffled, seed);
    let mut g = Harness::capture(policy.clone(), good_fit(), T0);
    g.now = end_of(log);
    for e in shuffled {
        g.decide(Command::RecordEngagement(e));
    }
    prop_assert_eq!(&g.lead.lifetime, &full);
    let at = end_of(log);
    for model in 0..g.policy.models.len() {
        prop_assert_eq!(
            round6(g.lead.lifetime.value_at(&g.policy, model, at)),
            round6(full.value_at(&g.policy, model, at))
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn permuted_and_duplicated_logs_score_identically(log in log(), seed in any::<u64>(), dups in prop::collection::vec(any::<prop::sample::Index>(), 0..10)) {
        let p = policy();
        let mut shuffled = log.clone();
        for d in &dups {
            if !log.is_empty() {
                shuffled.push(log[d.index(log.len())].clone());
            }
        }
        shuffle(&mut shuffled, seed);
        let a = ScoreState::replay(&p, &sorted(&log), None, None);
        let b = ScoreState::replay(&p, &shuffled, None, None);
        prop_assert_eq!(&a, &b);
        let at = end_of(&log);
        prop_assert_eq!(a.value_at(&p, 0, at).to_bits(), b.value_at(&p, 0, at).to_bits());
    }

    #[test]
    fn bounded_rules_score_permuted_logs_identically_and_as_the_direct_sum(log in log(), burst in log(), seed in any::<u64>()) {
        let p = bounded();
        let log = with_burst(log, burst);
        let mut shuffled = log.clone();
        shuffle(&mut shuffled, seed);
        let a = ScoreState::replay(&p, &sorted(&log), None, None);
        let b = ScoreState::replay(&p, &shuffled, None, None);
        prop_assert_eq!(&a, &b);
        let at = end_of(&log);
        prop_assert!((a.value_at(&p, 0, at) - reference_score(&p, 0, &log, at)).abs() < 1e-6);
        let long = p.event_rules.iter().position(|r| r.id == "long-read").expect("the rule");
        let in_range = log.iter().filter(|e| {
            e.kind == "page_viewed"
                && e.properties.get("seconds").and_then(|s| s.trim().parse::<f64>().ok()).is_some_and(|n| (120.0..=900.0).contains(&n))
        }).count();
        prop_assert_eq!(a.rules[long].matched as usize, in_range);
        for (i, rule) in p.event_rules.iter().enumerate() {
            prop_assert_eq!(a.rules[i].fired, reference_firings(rule, &log), "{}", rule.id);
        }
        let binge = p.event_rules.iter().position(|r| r.id == "blog-binge").expect("the rule");
        prop_assert_eq!(a.rules[binge].fired > 0, a.disqualified_by.as_deref() == Some("blog-binge"));
    }

    #[test]
    fn the_fold_equals_the_direct_sum(log in log(), extra_days in 0_i64..90) {
        let p = policy();
        let at = end_of(&log).saturating_add(Span::from_days(extra_days));
        let state = ScoreState::replay(&p, &log, None, None);
        let folded = state.value_at(&p, 0, at);
        let direct = reference_score(&p, 0, &log, at);
        prop_assert!((folded - direct).abs() < 1e-6, "fold {} vs direct {}", folded, direct);
    }

    #[test]
    fn every_model_folds_to_its_own_direct_sum_and_permuted_logs_agree(log in log(), extra_days in 0_i64..90, seed in any::<u64>()) {
        let p = modelled(Some("platform"));
        let at = end_of(&log).saturating_add(Span::from_days(extra_days));
        let state = ScoreState::replay(&p, &log, None, None);
        let mut shuffled = log.clone();
        shuffle(&mut shuffled, seed);
        let permuted = ScoreState::replay(&p, &shuffled, None, None);
        prop_assert_eq!(&state, &permuted);
        for model in 0..p.models.len() {
            let folded = state.value_at(&p, model, at);
            let direct = reference_score(&p, model, &log, at);
            prop_assert!((folded - direct).abs() < 1e-6, "model {}: fold {} vs direct {}", p.models[model].id, folded, direct);
        }
        // the default model's score is the example's: the models' rules add to theirs only
        let example = policy();
        let alone = ScoreState::replay(&example, &log, None, None);
        prop_assert_eq!(round6(state.value_at(&p, 0, at)), round6(alone.value_at(&example, 0, at)));
    }

    #[test]
    fn search_keys_order_leads_as_their_scores_do_at_every_instant(a in log(), b in log(), later in 0_i64..(3 * 365 * 24)) {
        let p = modelled(Some("platform"));
        let (sa, sb) = (ScoreState::replay(&p, &a, None, None), ScoreState::replay(&p, &b, None, None));
        let t = end_of(&a).max(end_of(&b)).saturating_add(Span::from_hours(later));
        for model in 0..p.models.len() {
            let (ka, kb) = (sa.search_key(&p, model), sb.search_key(&p, model));
            let (va, vb) = (sa.value_at(&p, model, t), sb.value_at(&p, model, t));
            // the key is the score at t, rebased: key_of_score gives it back
            for (k, v) in [(ka, va), (kb, vb)] {
                let again = key_of_score(&p, model, v, t);
                prop_assert!((k - again).abs() <= 1e-9 * k.abs().max(1.0), "model {}: {} vs {}", model, k, again);
            }
            if va < vb - 1e-9 * vb.abs().max(1.0) {
                prop_assert!(ka < kb, "model {}: scores {} < {} but keys {} >= {}", model, va, vb, ka, kb);
            }
            // a score range at t is a key range
            let x = (va + vb) / 2.0;
            let bound = key_of_score(&p, model, x, t);
            if (va - x).abs() > 1e-9 * x.abs().max(1.0) {
                prop_assert_eq!(va >= x, ka >= bound);
            }
        }
    }

    #[test]
    fn caps_are_never_exceeded(log in log()) {
        let p = policy();
        let state = ScoreState::replay(&p, &log, None, None);
        for (rule, s) in p.event_rules.iter().zip(&state.rules) {
            if let Some(cap) = rule.max_points {
                prop_assert!(s.raw.abs() <= cap + 1e-9, "{}: {} > {}", rule.id, s.raw, cap);
            }
            prop_assert!(s.counted <= s.matched);
        }
        // per day, per rule: at most max_per_day events counted
        for (i, rule) in p.event_rules.iter().enumerate() {
            let Some(max) = rule.max_per_day else { continue };
            let mut days: BTreeMap<i64, Vec<Engagement>> = BTreeMap::new();
            for e in sorted(&log).into_iter().filter(|e| rule.matches(e)) {
                days.entry(e.occurred_at.utc_day()).or_default().push(e);
            }
            for (_, events) in days {
                let day_state = ScoreState::replay(&p, &events, None, None);
                prop_assert!(day_state.rules[i].counted <= max);
            }
        }
    }

    #[test]
    fn decay_never_increases_a_score(log in log(), a in 0_i64..(400 * 24), b in 0_i64..(400 * 24)) {
        let p = policy();
        let state = ScoreState::replay(&p, &log, None, None);
        let end = end_of(&log);
        let (early, late) = (a.min(b), a.max(b));
        let s1 = state.value_at(&p, 0, end.saturating_add(Span::from_hours(early)));
        let s2 = state.value_at(&p, 0, end.saturating_add(Span::from_hours(late)));
        prop_assert!(s2.abs() <= s1.abs() + 1e-12);
        prop_assert!(s1 == 0.0 || s2 == 0.0 || s1.signum() == s2.signum());
    }

    #[test]
    fn incremental_decisions_equal_the_replay(log in log(), burst in log(), seed in any::<u64>()) {
        incremental_equals_replay(&policy(), &log, seed)?;
        incremental_equals_replay(&modelled(Some("platform")), &log, seed)?;
        incremental_equals_replay(&bounded(), &with_burst(log, burst), seed)?;
    }

    #[test]
    fn lifecycle_invariants_hold_for_any_command_sequence(steps in prop::collection::vec((0_usize..12, engagement()), 1..40)) {
        let mut h = Harness::capture(policy(), good_fit(), T0);
        let mut was_customer = false;
        let mut level_before = h.lead.level.clone();
        for (i, (choice, mut e)) in steps.into_iter().enumerate() {
            let now = T0.saturating_add(Span::from_hours(i64::try_from(i).unwrap_or(0) + 1));
            h.now = now;
            e.occurred_at = now;
            e.event_id = format!("s{i}");
            let before = h.stage();
            let command = match choice {
                0 => manual(CommandKind::Promote, Some("booth")),
                1 => manual(CommandKind::Accept, None),
                2 => manual(CommandKind::Reject, Some("not_ready")),
                3 => manual(CommandKind::Recycle, Some("timing")),
                4 => Command::Transition(leadflow_domain::ManualTransition {
                    command: CommandKind::Convert,
                    reason: None,
                    actor: None,
                    deal: Some(leadflow_domain::lifecycle::Deal { value: 10.0, currency: "USD".to_owned() }),
                    occurred_at: None,
                }),
                5 => manual(CommandKind::Disqualify, Some("spam")),
                6 => manual(CommandKind::Requalify, None),
                7 => { e.kind = "demo_requested".to_owned(); Command::RecordEngagement(e) }
                8 => { e.kind = "email_bounced".to_owned(); Command::RecordEngagement(e) }
                _ => Command::RecordEngagement(e),
            };
            let automatic = matches!(command, Command::RecordEngagement(_));
            let Ok(d) = h.try_decide(command) else {
                prop_assert_eq!(h.stage(), before, "a refused command changes nothing");
                continue;
            };
            // transitions chain, each forward jump one stage at a time
            let mut at = before;
            for t in d.transitions() {
                prop_assert_eq!(t.from, Some(at));
                if let (Some(a), Some(b)) = (at.rank(), t.to.rank())
                    && b > a
                {
                    prop_assert_eq!(b, a + 1, "a jump records every stage it passes");
                }
                if automatic {
                    prop_assert!(t.to == Stage::Disqualified || t.to.rank() > at.rank(), "automatic moves only go forward");
                }
                at = t.to;
            }
            prop_assert_eq!(at, d.lead.stage);
            // the level a decision leaves is the one its scores give, only
            // an MQL has one, and each change chains from the one before
            let scores = d.lead.scores_at(&h.policy, d.lead.evaluated_at);
            prop_assert_eq!(&d.lead.level, &scores.level);
            prop_assert!(d.lead.stage == Stage::Mql || d.lead.level.is_none());
            let mut level = level_before.clone();
            for e in &d.events {
                if let leadflow_domain::workflow::Event::LevelChanged(c) = e {
                    prop_assert_eq!(&c.from, &level);
                    prop_assert_ne!(&c.from, &c.to);
                    level.clone_from(&c.to);
                }
            }
            prop_assert_eq!(&level, &d.lead.level);
            level_before = d.lead.level.clone();
            if was_customer {
                prop_assert_eq!(d.lead.stage, Stage::Customer, "CUSTOMER is terminal");
                prop_assert_eq!(d.transitions().count(), 0);
            }
            was_customer = d.lead.stage == Stage::Customer;
        }
    }
}

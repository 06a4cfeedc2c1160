//! Several score models: `[[model]]` with its own decay, rules that join a
//! model, the fit a model without fit rules borrows, the model the MQL
//! stage (and its levels) reads, workflows on a model's score, and every
//! model explained.

use leadflow_domain::explain::explain;
use leadflow_domain::policy::Model;
use leadflow_domain::score::{decay_factor, round6};
use leadflow_domain::workflow::{Crossing, Event, TimerKind};
use leadflow_domain::{Cause, Policy, Span, Stage};

use crate::common::{Harness, T0, attrs, ev, example_toml, hours, modelled, modelled_toml};

/// A fintech buyer: the default fit is 40 (grade A), the `platform`
/// model's own fit rule gives 40 too.
fn fintech() -> std::collections::BTreeMap<String, String> {
    attrs(&[
        ("email", "ann@acme.com"),
        ("company", "Acme"),
        ("title", "VP Engineering"),
        ("company_size", "250"),
        ("industry", "Fintech"),
    ])
}

const WATCHES: &str = "\n[[workflow]]\nid = \"platform-surge\"\non = \"engagement_above:platform:80\"\nemit = \"platform_alert\"\n\n\
    [[workflow]]\nid = \"platform-cooling\"\non = \"engagement_below:platform:30\"\nemit = \"platform_cooling\"\n";

fn errors(toml: &str) -> Vec<String> {
    match Policy::from_toml(toml) {
        Ok(_) => panic!("expected the policy to be refused"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn assert_has(errors: &[String], expected: &str) {
    assert!(
        errors.iter().any(|e| e == expected),
        "expected {expected:?} among {errors:#?}"
    );
}

#[test]
fn models_have_their_own_decay_or_the_policys_and_rules_join_them() {
    let p = modelled(None);
    let ids: Vec<(&str, Option<Span>, bool)> = p
        .models
        .iter()
        .map(
            |Model {
                 id,
                 half_life,
                 own_fit,
             }| (id.as_str(), *half_life, *own_fit),
        )
        .collect();
    assert_eq!(
        ids,
        [
            ("default", Some(Span::from_days(30)), true),
            ("analytics", Some(Span::from_days(14)), false),
            ("platform", Some(Span::from_days(7)), true),
            ("services", Some(Span::from_days(30)), false),
        ]
    );
    let model_of = |id: &str| {
        let rule = p.event_rules.iter().find(|r| r.id == id).expect("the rule");
        p.models[rule.model].id.as_str()
    };
    assert_eq!(model_of("trial"), "default");
    assert_eq!(model_of("platform-trial"), "platform");
    assert_eq!(model_of("services-contact"), "services");
    assert_eq!(p.mql.model, 0);
    assert_eq!(modelled(Some("platform")).mql.model, 2);
    assert_eq!(
        modelled(Some("default")).mql.model,
        0,
        "default names the default model"
    );
    // A policy without models has the default alone, decaying by [decay].
    let stored = include_str!("../policies/example-levels.toml");
    let before = Policy::from_toml(stored).expect("valid");
    assert_eq!(before.models.len(), 1);
    assert_eq!(before.models[0].half_life, before.half_life);
}

#[test]
fn each_model_scores_its_own_rules_with_its_own_half_life() {
    let p = modelled(None);
    let mut h = Harness::capture(p, fintech(), T0);
    h.engage(ev("w1", "webinar_attended", hours(1)));
    h.engage(ev("c1", "contact_requested", hours(2)));
    let at = hours(2).saturating_add(Span::from_days(7));
    let scores = h.lead.scores_at(&h.policy, at);
    let age = |from| at.since(from);
    let thirty = Some(Span::from_days(30));
    // default: the example's webinar attendance only
    assert_eq!(
        scores.engagement,
        round6(15.0 * decay_factor(thirty, age(hours(1))))
    );
    let platform = &scores.models["platform"];
    assert_eq!(
        platform.engagement,
        round6(50.0 * decay_factor(Some(Span::from_days(7)), age(hours(1))))
    );
    assert!(
        (platform.engagement - 25.0).abs() < 0.2,
        "a week is one half-life"
    );
    assert_eq!(platform.fit, 40.0, "its own fit rule");
    let services = &scores.models["services"];
    assert_eq!(
        services.engagement,
        round6(25.0 * decay_factor(thirty, age(hours(2))))
    );
    assert_eq!(services.fit, scores.fit, "no fit rules: the default model's fit");
    assert_eq!(scores.fit, 40.0);
    assert_eq!(scores.grade, "A");
    assert_eq!(scores.models.len(), 3, "the example's analytics model too");
    // Not fintech: the platform fit rule does not match, the default's fit stays.
    let mut other = Harness::capture(modelled(None), crate::common::good_fit(), T0);
    other.engage(ev("w1", "webinar_attended", hours(1)));
    let scores = other.lead.scores_at(&other.policy, hours(1));
    assert_eq!((scores.fit, scores.models["platform"].fit), (40.0, 0.0));
}

#[test]
fn the_mql_stage_reads_its_model_and_transitions_record_that_models_scores() {
    let mut h = Harness::capture(modelled(Some("platform")), fintech(), T0);
    h.engage(ev("w1", "webinar_attended", hours(1)));
    assert_eq!(h.stage(), Stage::Iql, "platform 50 < 60");
    h.engage(ev("w2", "webinar_attended", hours(2)));
    assert_eq!(h.stage(), Stage::Mql, "platform ~100 >= 60, the default only ~30");
    let expected = round6(50.0 * decay_factor(Some(Span::from_days(7)), Span::from_hours(1)) + 50.0);
    let mql = h.transitions().into_iter().last().expect("the move").clone();
    assert_eq!((mql.to, mql.fit, mql.engagement), (Stage::Mql, 40.0, expected));
    let engagement = mql
        .guards
        .iter()
        .find(|g| g.detail.starts_with("engagement"))
        .expect("the engagement guard");
    assert_eq!(engagement.actual, Some(expected));
    let scores = h.lead.scores_at(&h.policy, hours(2));
    assert!(
        scores.qualifying_engagement < 31.0,
        "the default model is not what qualified"
    );
    // Levels read the platform model too: warm (90) now, none once it
    // decays below 90, the drop recorded at its own instant.
    assert_eq!(scores.level.as_deref(), Some("warm"));
    let due = h.timer(&TimerKind::Level).expect("the level timer").due_at;
    let fade = Span::from_micros((f64::log2(expected / 90.0) * 7.0 * 86_400e6).ceil() as i64);
    assert!(due.since(hours(2)).as_micros().abs_diff(fade.as_micros()) < 2_000_000);
    h.fire(&TimerKind::Level);
    let change = h
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::LevelChanged(l) => Some(l.clone()),
            _ => None,
        })
        .expect("a level change");
    assert_eq!((change.from.as_deref(), change.to), (Some("warm"), None));
    assert_eq!(change.cause, Cause::Decay);
    assert!(change.engagement < 90.0 && change.engagement > 89.9);
    assert_eq!(h.stage(), Stage::Mql);
}

#[test]
fn workflows_watch_a_models_score_and_its_decay() {
    let p = Policy::from_toml(&(modelled_toml(None) + WATCHES)).expect("valid");
    assert_eq!(
        p.workflows
            .iter()
            .map(|w| w.on.to_string())
            .filter(|on| on.contains("platform"))
            .collect::<Vec<_>>(),
        ["engagement_above:platform:80", "engagement_below:platform:30"]
    );
    let mut h = Harness::capture(p, fintech(), T0);
    h.engage(ev("w1", "webinar_attended", hours(1)));
    assert!(!h.emitted().contains(&"platform_alert"));
    h.engage(ev("w2", "webinar_attended", hours(2)));
    assert_eq!(
        h.triggers()
            .iter()
            .filter(|t| t.emit == "platform_alert")
            .map(|t| t.at)
            .collect::<Vec<_>>(),
        [hours(2)],
        "the platform score rose past 80; the default's (30) did not"
    );
    let cooling = TimerKind::ModelCrossing("platform".to_owned(), Crossing::Below(30.0));
    assert_eq!(cooling.key(), "crossing:platform:below:30");
    assert_eq!(
        "crossing:platform:below:30".parse::<TimerKind>(),
        Ok(cooling.clone())
    );
    assert_eq!(
        "crossing:below:30".parse::<TimerKind>(),
        Ok(TimerKind::Crossing(Crossing::Below(30.0)))
    );
    let due = h.timer(&cooling).expect("the decay crossing is armed").due_at;
    let level = round6(50.0 * decay_factor(Some(Span::from_days(7)), Span::from_hours(1)) + 50.0);
    let expected = f64::log2(level / (30.0 - 6e-7)) * 7.0 * 86_400e6;
    assert!((due.since(hours(2)).as_micros() as f64 - expected).abs() < 2e6);
    h.fire(&cooling);
    let fired = h.triggers().into_iter().last().expect("a trigger").clone();
    assert_eq!((fired.emit.as_str(), fired.at), ("platform_cooling", due));
    assert_eq!(fired.on, "engagement_below:platform:30");
}

#[test]
fn explanations_name_each_rules_model() {
    let mut h = Harness::capture(modelled(Some("platform")), fintech(), T0);
    h.engage(ev("w1", "webinar_attended", hours(1)));
    h.engage(ev("t1", "trial_started", hours(1)));
    let x = explain(&h.policy, &h.lead, &h.log, hours(2));
    let model = |id: &str| {
        x.engagement
            .iter()
            .find(|r| r.rule_id == id)
            .map(|r| r.model.as_deref())
            .expect("the rule contributes")
    };
    assert_eq!(model("webinar-attendance"), None);
    assert_eq!(model("platform-webinar"), Some("platform"));
    assert_eq!(model("platform-trial"), Some("platform"));
    let fits: Vec<(&str, Option<&str>)> = x
        .fit
        .iter()
        .map(|f| (f.rule_id.as_str(), f.model.as_deref()))
        .collect();
    assert!(fits.contains(&("platform-fintech", Some("platform"))));
    assert!(fits.contains(&("senior-title", None)));
    assert_eq!(x.scores, h.lead.scores_at(&h.policy, hours(2)));
    assert!(x.scores.models["platform"].engagement > 69.0);
    // The MQL guards read the platform model: 70 >= 60 passes.
    let to_mql = x.next.iter().find(|n| n.to == Stage::Mql);
    assert!(to_mql.is_none(), "already an MQL: {:?}", x.next);
    assert_eq!(h.stage(), Stage::Mql);
}

#[test]
fn bad_models_are_refused_at_their_paths() {
    let base = modelled_toml(None);
    let cases: Vec<(String, &str)> = vec![
        (
            base.replacen("model = \"services\"", "model = \"servics\"", 1),
            "engagement[14].model: unknown model \"servics\" (did you mean \"services\"?) (the models are: default, analytics, platform, services)",
        ),
        (
            base.replacen("[stages.MQL]\n", "[stages.MQL]\nmodel = \"nope\"\n", 1),
            "stages.MQL.model: unknown model \"nope\" (the models are: default, analytics, platform, services)",
        ),
        (
            base.clone() + "\n[[workflow]]\nid = \"x\"\non = \"engagement_above:nope:5\"\nemit = \"x\"\n",
            "workflow[6].on: unknown model \"nope\" (the models are: default, analytics, platform, services)",
        ),
        (
            base.clone()
                + "\n[[workflow]]\nid = \"x\"\non = \"engagement_above:platform:lots\"\nemit = \"x\"\n",
            "workflow[6].on: \"lots\" is not a score threshold (a number)",
        ),
        (
            base.replacen("id = \"services\"", "id = \"default\"", 1),
            "model[2].id: \"default\" is the model of rules that name none: give this model another id",
        ),
        (
            base.replacen("id = \"services\"", "id = \"platform\"", 1),
            "model[2].id: duplicate rule id \"platform\" (first used at model[1].id)",
        ),
        (
            base.replacen(
                "[model.decay]\nhalf_life = \"7d\"",
                "[model.decay]\nhalf_life = \"soon\"",
                1,
            ),
            "model[1].decay.half_life: bad duration \"soon\": expected a whole number followed by s, m, h, d or w (e.g. \"30d\")",
        ),
        (
            base.replacen("id = \"services\"", "id = \"services\"\npoints = 3", 1),
            "model[2].points: unknown key (expected one of: id, decay)",
        ),
        (
            base.replacen("model = \"services\"", "model = 3", 1),
            "engagement[14].model: expected a string, found an integer",
        ),
    ];
    for (toml, expected) in &cases {
        assert_has(&errors(toml), expected);
    }
    let many: String = (0..17).map(|i| format!("\n[[model]]\nid = \"m{i}\"\n")).collect();
    assert_has(
        &errors(&(example_toml() + &many)),
        "model[16]: too many models: at most 16 besides the default",
    );
}

#[test]
fn the_timeline_samples_every_models_score_and_the_log_says_what_each_rule_gave() {
    let mut h = Harness::capture(modelled(None), fintech(), T0);
    h.engage(ev("w1", "webinar_attended", hours(1)));
    let mut trial = ev("t1", "trial_started", hours(2));
    trial
        .properties
        .insert("product".to_owned(), "analytics".to_owned());
    h.engage(trial);
    let end = hours(2).saturating_add(Span::from_days(7));
    let (at, series) = leadflow_domain::explain::timeline(&h.policy, &h.log, T0, end, 5);
    assert_eq!((at.len(), at[0], at[4]), (5, T0, end));
    assert_eq!(series.len(), h.policy.models.len());
    let scores = h.lead.scores_at(&h.policy, end);
    assert_eq!(series[0][4], scores.engagement, "the default model at the end");
    assert_eq!(series[0][0], 0.0, "nothing at capture");
    let platform = h.policy.model_index("platform").expect("the model");
    assert_eq!(series[platform][4], scores.models["platform"].engagement);
    let logged = leadflow_domain::explain::log_points(&h.policy, &h.log, 10);
    let gave: Vec<Vec<(&str, Option<&str>, f64)>> = logged
        .iter()
        .map(|(_, g)| g.iter().map(|(r, m, p)| (r.as_str(), m.as_deref(), *p)).collect())
        .collect();
    assert_eq!(
        gave,
        [
            vec![
                ("webinar-attendance", None, 15.0),
                ("platform-webinar", Some("platform"), 50.0)
            ],
            vec![
                ("trial", None, 30.0),
                ("analytics-trial", Some("analytics"), 40.0),
                ("platform-trial", Some("platform"), 20.0)
            ],
        ]
    );
    assert_eq!(
        leadflow_domain::explain::log_points(&h.policy, &h.log, 1).len(),
        1,
        "the latest only"
    );
}

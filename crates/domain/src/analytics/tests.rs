use super::funnel::*;
use crate::lifecycle::Move;
use crate::stage::Stage;
use crate::time::{Span, Timestamp};

const DAY: i64 = 86_400;

fn at(day: i64, secs: i64) -> Timestamp {
    Timestamp::from_secs(day * DAY + secs)
}

fn step(from: Option<Stage>, to: Stage, t: Timestamp, by: Move) -> Step {
    Step {
        from,
        to,
        at: t,
        by,
        reason: None,
        policy_version: 1,
        caused_by: StepCause::Command,
    }
}

fn lead(id: &str, source: Option<&str>, steps: Vec<Step>) -> History {
    History {
        lead_id: id.to_owned(),
        source_channel: source.map(str::to_owned),
        steps,
        levels: Vec::new(),
        touches: Vec::new(),
        erased: false,
        owners: Vec::new(),
        sales_touches: Vec::new(),
        sla_breaches: Vec::new(),
    }
}

fn query(start: i64, end: i64) -> Query {
    Query {
        period: Period {
            start: at(start, 0),
            end: at(end, 0),
        },
        grouping: Grouping::None,
        bucket: Bucket::Day,
        source_channel: None,
        attribution: None,
        top: super::attribution::DEFAULT_TOP,
        teams: std::collections::BTreeMap::new(),
    }
}

/// a: captured day 0, MQL day 1 (by webinar), SQL day 3, CUSTOMER day 10.
/// b: captured day 0, demo day 2: a jump through MQL to SQL, recycled day 5.
/// c: captured day 1, MQL day 2 (promoted), rejected day 4, MQL again day 6.
/// d: captured day 20 (outside a 0..10 period).
fn histories() -> Vec<History> {
    use Stage::*;
    let mut a = vec![
        step(None, Iql, at(0, 0), Move::Capture),
        step(Some(Iql), Mql, at(1, 0), Move::AutoQualify),
        step(Some(Mql), Sql, at(3, 0), Move::Accept),
        step(Some(Sql), Customer, at(10, 0), Move::Convert),
    ];
    a[1].caused_by = StepCause::Engagement {
        channel: Some("webinar".into()),
        event_id: "a-webinar".into(),
    };
    let mut b = vec![
        step(None, Iql, at(0, 100), Move::Capture),
        step(Some(Iql), Mql, at(2, 0), Move::SalesReady),
        step(Some(Mql), Sql, at(2, 0), Move::SalesReady),
        step(Some(Sql), Iql, at(5, 0), Move::Recycle),
    ];
    b[1].caused_by = StepCause::Engagement {
        channel: Some("web".into()),
        event_id: "b-demo".into(),
    };
    b[3].reason = Some("no_response".into());
    let mut c = vec![
        step(None, Iql, at(1, 0), Move::Capture),
        step(Some(Iql), Mql, at(2, 0), Move::Promote),
        step(Some(Mql), Iql, at(4, 0), Move::Reject),
        step(Some(Iql), Mql, at(6, 0), Move::Promote),
    ];
    c[2].reason = Some("not_ready".into());
    c[3].policy_version = 2;
    let d = vec![step(None, Iql, at(20, 0), Move::Capture)];
    vec![
        lead("a", Some("webinar"), a),
        lead("b", Some("web"), b),
        lead("c", None, c),
        lead("d", Some("web"), d),
    ]
}

fn touch(id: &str, day: i64, campaign: Option<&str>) -> super::Touch {
    super::Touch {
        event_id: id.to_owned(),
        at: at(day, 0),
        value: campaign.map(str::to_owned),
    }
}

/// [`histories`] with campaigns: a saw "spring" first, qualified on a
/// "webinar-q1" engagement, and touched "late" only after its win; b's
/// first engagement has no campaign, its demo came from "spring"; c is
/// erased.
fn attributed(property: &str, top: usize) -> (Vec<History>, Query) {
    let mut leads = histories();
    leads[0].touches = vec![
        touch("a-ad", 0, Some("spring")),
        touch("a-webinar", 1, Some(" webinar-q1 ")),
        touch("a-late", 11, Some("late")),
    ];
    leads[1].touches = vec![touch("b-page", 0, None), touch("b-demo", 2, Some("spring"))];
    leads[2].erased = true;
    leads[2].touches = vec![touch("c-x", 1, Some("spring"))];
    let query = Query {
        attribution: Some(property.parse().expect("an attribution")),
        top,
        ..query(0, 10)
    };
    (leads, query)
}

fn keys(f: &Funnel) -> Vec<&str> {
    f.groups.iter().map(|g| g.key.as_str()).collect()
}

#[test]
fn attribution_groups_by_the_first_the_mql_or_every_touch() {
    let (leads, q) = attributed("first:campaign", 20);
    let f = funnel(&leads, &q);
    assert_eq!(keys(&f), ["(erased)", "(none)", "spring"]);
    assert!(!f.overlapping);
    let (leads, q) = attributed("mql:campaign", 20);
    let f = funnel(&leads, &q);
    assert_eq!(
        keys(&f),
        ["(erased)", "spring", "webinar-q1"],
        "the engagement of the MQL move"
    );
    let (leads, q) = attributed("touched:campaign", 20);
    let f = funnel(&leads, &q);
    assert!(f.overlapping);
    assert_eq!(
        keys(&f),
        ["(erased)", "spring", "webinar-q1"],
        "not \"late\": after a's win"
    );
    let group = |key: &str| f.groups.iter().find(|g| g.key == key).expect("the group");
    // MQL → CUSTOMER: 1 of 3 overall; spring 1 of 2 (a and b), webinar-q1 1 of 1
    let spring = conversion(group("spring"), Stage::Mql, Stage::Customer);
    assert_eq!((spring.cohort, spring.converted, spring.lift), (2, 1, Some(1.5)));
    let webinar = conversion(group("webinar-q1"), Stage::Mql, Stage::Customer);
    assert_eq!((webinar.cohort, webinar.lift), (1, Some(3.0)));
    let erased = conversion(group("(erased)"), Stage::Mql, Stage::Customer);
    assert_eq!((erased.cohort, erased.lift), (1, Some(0.0)));
    assert_eq!(entries(group("spring"), Stage::Iql), (2, 3), "a and b, b twice");
    // Never an MQL: its own group under mql:
    let mut never = histories();
    never.truncate(1);
    never[0].steps.truncate(1);
    let q = Query {
        attribution: Some("mql:campaign".parse().expect("valid")),
        ..query(0, 10)
    };
    assert_eq!(keys(&funnel(&never, &q)), ["(not MQL)"]);
}

#[test]
fn attribution_keeps_the_top_groups_and_folds_the_rest_into_other() {
    let (leads, q) = attributed("touched:campaign", 1);
    let f = funnel(&leads, &q);
    assert_eq!(keys(&f), ["(other)", "spring"]);
    let other = f.groups.iter().find(|g| g.key == "(other)").expect("other");
    assert_eq!(
        entries(other, Stage::Iql).0,
        2,
        "a (webinar-q1) and c (erased), each once"
    );
    for bad in ["campaign", "last:campaign", "first:", "first:   "] {
        assert!(bad.parse::<super::Attribution>().is_err(), "{bad}");
    }
    assert!(
        format!("first:{}", "p".repeat(129))
            .parse::<super::Attribution>()
            .is_err()
    );
    assert_eq!(
        "touched:utm_campaign"
            .parse::<super::Attribution>()
            .map(|a| a.to_string()),
        Ok("touched:utm_campaign".to_owned())
    );
}

fn entries(g: &Group, stage: Stage) -> (u64, u64) {
    let e = g.entries.iter().find(|e| e.stage == stage).expect("stage");
    (e.leads, e.entries)
}

fn conversion(g: &Group, from: Stage, to: Stage) -> &Conversion {
    g.conversions
        .iter()
        .find(|c| c.from == from && c.to == to)
        .expect("pair")
}

#[test]
fn entries_count_every_stage_passed_and_each_lead_once() {
    let f = funnel(&histories(), &query(0, 10));
    assert_eq!(f.groups.len(), 1);
    let g = &f.groups[0];
    assert_eq!(entries(g, Stage::Iql), (3, 5)); // 3 captures, b recycled, c rejected
    assert_eq!(entries(g, Stage::Mql), (3, 4)); // c twice
    assert_eq!(entries(g, Stage::Sql), (2, 2));
    assert_eq!(entries(g, Stage::Customer), (0, 0)); // day 10 is outside [0, 10)
    let f = funnel(&histories(), &query(0, 11));
    assert_eq!(entries(&f.groups[0], Stage::Customer), (1, 1));
}

#[test]
fn cohorts_convert_after_the_period_too() {
    let g = &funnel(&histories(), &query(0, 10)).groups[0];
    let mql_sql = conversion(g, Stage::Mql, Stage::Sql);
    assert_eq!((mql_sql.cohort, mql_sql.converted), (3, 2));
    // a: 2 days, b: 0 (a jump)
    assert_eq!(mql_sql.p50, Some(Span::ZERO));
    assert_eq!(mql_sql.p90, Some(Span::from_days(2)));
    let mql_customer = conversion(g, Stage::Mql, Stage::Customer);
    assert_eq!((mql_customer.cohort, mql_customer.converted), (3, 1));
    assert_eq!(mql_customer.p50, Some(Span::from_days(9)));
    assert!((mql_customer.rate - 1.0 / 3.0).abs() < 1e-12);
    let iql_mql = conversion(g, Stage::Iql, Stage::Mql);
    assert_eq!((iql_mql.cohort, iql_mql.converted), (3, 3));
}

#[test]
fn stays_ending_in_the_period_are_timed() {
    let g = &funnel(&histories(), &query(0, 10)).groups[0];
    let mql = g
        .time_in_stage
        .iter()
        .find(|t| t.stage == Stage::Mql)
        .expect("MQL");
    // a: 2 days, b: 0, c: 2 days
    assert_eq!(mql.stays, 3);
    assert_eq!(mql.p50, Some(Span::from_days(2)));
    let iql = g
        .time_in_stage
        .iter()
        .find(|t| t.stage == Stage::Iql)
        .expect("IQL");
    // a 1 d, b 2 d − 100 s, c 1 d, c again 2 d
    assert_eq!(iql.stays, 4);
    assert_eq!(iql.p50, Some(Span::from_days(1)));
    assert_eq!(iql.p90, Some(Span::from_days(2)));
}

#[test]
fn rates_and_reasons() {
    let g = &funnel(&histories(), &query(0, 10)).groups[0];
    assert_eq!((g.rejected.cohort, g.rejected.count), (3, 1));
    assert_eq!((g.recycled.cohort, g.recycled.count), (3, 1));
    let reasons: Vec<_> = g
        .reasons
        .iter()
        .map(|r| (r.by, r.reason.as_str(), r.count))
        .collect();
    assert!(reasons.contains(&(Move::Reject, "not_ready", 1)));
    assert!(reasons.contains(&(Move::Recycle, "no_response", 1)));
    assert_eq!(reasons.len(), 2);
}

#[test]
fn velocity_is_entries_per_bucket() {
    let f = funnel(&histories(), &query(0, 7));
    assert_eq!(f.buckets.len(), 7);
    let g = &f.groups[0];
    let mql = &g.velocity.series(f.buckets.len())[1];
    assert_eq!(mql, &vec![0, 1, 2, 0, 0, 0, 1]);
    let weekly = funnel(
        &histories(),
        &Query {
            bucket: Bucket::Week,
            ..query(0, 10)
        },
    );
    assert_eq!(weekly.buckets.len(), 2);
    assert_eq!(weekly.groups[0].velocity.series(2)[0], vec![5, 0]);
}

#[test]
fn groupings() {
    let by_source = funnel(
        &histories(),
        &Query {
            grouping: Grouping::SourceChannel,
            ..query(0, 10)
        },
    );
    let keys: Vec<_> = by_source.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, [NO_CHANNEL, "web", "webinar"]);
    let by_mql = funnel(
        &histories(),
        &Query {
            grouping: Grouping::MqlChannel,
            ..query(0, 10)
        },
    );
    let keys: Vec<_> = by_mql.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, [MANUAL, "web", "webinar"]);
    let by_version = funnel(
        &histories(),
        &Query {
            grouping: Grouping::PolicyVersion,
            ..query(0, 10)
        },
    );
    let keys: Vec<_> = by_version.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["1", "2"]);
    assert_eq!(entries(&by_version.groups[1], Stage::Mql), (1, 1));
    // the cohort goes by the version of the first entry
    assert_eq!(
        conversion(&by_version.groups[1], Stage::Mql, Stage::Sql).cohort,
        0
    );
    let filtered = funnel(
        &histories(),
        &Query {
            source_channel: Some("web".into()),
            ..query(0, 10)
        },
    );
    assert_eq!(entries(&filtered.groups[0], Stage::Iql), (1, 2));
}

#[test]
fn an_empty_period_is_zeros() {
    let f = funnel(&[], &query(0, 3));
    assert_eq!(f.groups.len(), 1);
    let g = &f.groups[0];
    assert!(g.entries.iter().all(|e| e.entries == 0 && e.leads == 0));
    assert!(
        g.conversions
            .iter()
            .all(|c| c.cohort == 0 && c.rate == 0.0 && c.p50.is_none())
    );
    assert_eq!(g.velocity.series(3)[0], vec![0, 0, 0]);
}

#[test]
fn nearest_rank_percentiles() {
    assert_eq!(percentile(&[], 50), None);
    assert_eq!(percentile(&[7], 90), Some(7));
    let v: Vec<i64> = (1..=10).collect();
    assert_eq!(percentile(&v, 50), Some(5));
    assert_eq!(percentile(&v, 90), Some(9));
    assert_eq!(percentile(&v, 100), Some(10));
    assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
}

// ---- evidence: rule lift and calibration ------------------------------------

mod evidence {
    use std::collections::BTreeMap;

    use super::at;
    use crate::analytics::evidence::*;
    use crate::engagement::Engagement;
    use crate::lifecycle::Move;
    use crate::policy::Policy;
    use crate::profile::Profile;
    use crate::stage::Stage;
    use crate::time::Timestamp;

    fn every(step: f64, max: f64) -> Cutoffs {
        Cutoffs { step, max: Some(max) }
    }

    fn policy() -> Policy {
        let source = include_str!("../../../../examples/policy.toml");
        Policy::from_toml(source).expect("the example policy")
    }

    fn profile(senior: bool) -> Profile {
        let mut a = BTreeMap::new();
        a.insert("email".to_owned(), "x@acme.com".to_owned());
        a.insert("company".to_owned(), "Acme".to_owned());
        a.insert("company_size".to_owned(), "250".to_owned());
        if senior {
            a.insert("title".to_owned(), "VP Sales".to_owned());
        }
        Profile::capture(a).expect("a profile")
    }

    fn event(id: &str, kind: &str, t: Timestamp) -> Engagement {
        Engagement {
            event_id: id.to_owned(),
            kind: kind.to_owned(),
            channel: None,
            properties: BTreeMap::new(),
            occurred_at: t,
        }
    }

    fn lead(id: &str, senior: bool, log: Vec<Engagement>, moves: Vec<(Stage, Move, Timestamp)>) -> Evidence {
        Evidence {
            lead_id: id.to_owned(),
            profile: profile(senior),
            log,
            moves,
            mql_by: None,
            erased: false,
        }
    }

    /// won: senior, trial + webinar, SQL d2, customer d5
    /// won: senior, trial ×2, SQL d3, customer d9
    /// lost: not senior, webinar, rejected d2, then a trial on d3 (after the outcome)
    /// lost: senior, ebook, disqualified d1
    /// open: not senior, page view
    fn leads() -> Vec<Evidence> {
        use Stage::*;
        vec![
            lead(
                "w1",
                true,
                vec![
                    event("a", "trial_started", at(1, 0)),
                    event("b", "webinar_attended", at(1, 60)),
                ],
                vec![
                    (Iql, Move::Capture, at(0, 0)),
                    (Sql, Move::Accept, at(2, 0)),
                    (Customer, Move::Convert, at(5, 0)),
                ],
            ),
            lead(
                "w2",
                true,
                vec![
                    event("c", "trial_started", at(1, 0)),
                    event("d", "trial_started", at(1, 0)),
                ],
                vec![
                    (Iql, Move::Capture, at(0, 0)),
                    (Sql, Move::Accept, at(3, 0)),
                    (Customer, Move::Convert, at(9, 0)),
                ],
            ),
            lead(
                "l1",
                false,
                vec![
                    event("e", "webinar_attended", at(1, 0)),
                    event("f", "trial_started", at(3, 0)),
                ],
                vec![
                    (Iql, Move::Capture, at(0, 0)),
                    (Mql, Move::Promote, at(1, 0)),
                    (Iql, Move::Reject, at(2, 0)),
                ],
            ),
            lead(
                "l2",
                true,
                vec![event("g", "ebook_downloaded", at(0, 60))],
                vec![
                    (Iql, Move::Capture, at(0, 0)),
                    (Disqualified, Move::Disqualify, at(1, 0)),
                ],
            ),
            lead(
                "o1",
                false,
                vec![event("h", "page_viewed", at(0, 60))],
                vec![(Iql, Move::Capture, at(0, 0))],
            ),
        ]
    }

    #[test]
    fn rules_are_tallied_by_outcome_with_lift() {
        let report = rule_report(&policy(), &leads());
        assert_eq!(
            (report.leads.won, report.leads.lost, report.leads.open),
            (2, 2, 1)
        );
        let rule = |id: &str| report.rules.iter().find(|r| r.rule_id == id).expect(id);
        // trial: both wins; l1's trial came after its rejection
        let trial = rule("trial");
        assert_eq!((trial.fired.won, trial.fired.lost, trial.fired.open), (2, 0, 0));
        assert_eq!(trial.lift, Some(2.0));
        let webinar = rule("webinar-attendance");
        assert_eq!((webinar.fired.won, webinar.fired.lost), (1, 1));
        assert_eq!(webinar.lift, Some(1.0));
        let senior = rule("senior-title");
        assert_eq!(senior.kind, RuleKind::Fit);
        assert_eq!(
            (senior.fired.won, senior.fired.lost, senior.fired.open),
            (2, 1, 0)
        );
        assert_eq!(
            (senior.not_fired.won, senior.not_fired.lost, senior.not_fired.open),
            (0, 1, 1)
        );
        assert!((senior.lift.expect("lift") - 4.0 / 3.0).abs() < 1e-6);
        let ebook = rule("ebook");
        assert_eq!(ebook.lift, Some(0.0));
        // never fired: no lift
        assert_eq!(rule("hard-bounce").lift, None);
        assert_eq!(rule("hard-bounce").kind, RuleKind::Undesirable);
    }

    #[test]
    fn a_counting_rule_fires_for_a_lead_at_its_nth_engagement_only() {
        use Stage::*;
        let story = |id: &str, t: Timestamp| {
            let mut e = event(id, "page_viewed", t);
            e.properties
                .insert("path".to_owned(), "/customers/acme".to_owned());
            e
        };
        let won = |id: &str, log: Vec<Engagement>| {
            lead(
                id,
                true,
                log,
                vec![
                    (Iql, Move::Capture, at(0, 0)),
                    (Customer, Move::Convert, at(9, 0)),
                ],
            )
        };
        // the example's case-study-research: 3 stories within 7 days
        let two = won("two", vec![story("a", at(1, 0)), story("b", at(2, 0))]);
        let spread = won(
            "spread",
            vec![story("c", at(1, 0)), story("d", at(2, 0)), story("e", at(8, 1))],
        );
        let three = won(
            "three",
            vec![story("f", at(1, 0)), story("g", at(2, 0)), story("h", at(3, 0))],
        );
        let report = rule_report(&policy(), &[two, spread, three]);
        let rule = report
            .rules
            .iter()
            .find(|r| r.rule_id == "case-study-research")
            .expect("the rule");
        assert_eq!((rule.fired.won, rule.not_fired.won), (1, 2));
        let any_page = report
            .rules
            .iter()
            .find(|r| r.rule_id == "any-page")
            .expect("the rule");
        assert_eq!(any_page.fired.won, 3);
    }

    #[test]
    fn a_lead_sent_back_then_won_is_won() {
        use Stage::*;
        let comeback = lead(
            "c",
            true,
            vec![event("x", "trial_started", at(3, 0))],
            vec![
                (Iql, Move::Capture, at(0, 0)),
                (Mql, Move::Promote, at(1, 0)),
                (Iql, Move::Reject, at(2, 0)),
                (Customer, Move::Convert, at(4, 0)),
            ],
        );
        assert_eq!(comeback.outcome(), (Outcome::Won, Some(at(4, 0))));
        // the trial after the rejection and before the win counts
        let report = rule_report(&policy(), &[comeback]);
        let trial = report.rules.iter().find(|r| r.rule_id == "trial").expect("trial");
        assert_eq!(trial.fired.won, 1);
    }

    #[test]
    fn a_profile_that_fails_the_other_guards_never_qualifies() {
        let mut no_company = leads()[1].clone();
        no_company.profile = {
            let mut a = BTreeMap::new();
            a.insert("email".to_owned(), "x@acme.com".to_owned());
            a.insert("title".to_owned(), "VP Sales".to_owned());
            a.insert("company_size".to_owned(), "250".to_owned());
            Profile::capture(a).expect("a profile")
        };
        // fit 30 passes, but `company` is required
        let c = calibrate(
            &policy(),
            Target::default(),
            &[no_company],
            every(10.0, 60.0),
            None,
        );
        assert!(c.points.iter().all(|p| p.qualified == 0));
        assert_eq!(c.suggested, None);
    }

    #[test]
    fn calibration_reads_peaks_before_the_outcome() {
        let policy = policy();
        let leads = leads();
        // peaks: w1 45 (trial 30 + webinar 15 a minute later, barely decayed),
        // w2 60, l1 15 (its trial came after the rejection), l2 10, o1 1
        let peaks: Vec<f64> = leads
            .iter()
            .map(|l| {
                let c = calibrate(
                    &policy,
                    Target::default(),
                    std::slice::from_ref(l),
                    every(5.0, 0.0),
                    None,
                );
                c.max_peak
            })
            .collect();
        assert!((peaks[0] - 45.0).abs() < 1e-3, "{peaks:?}");
        assert_eq!(&peaks[1..], &[60.0, 15.0, 10.0, 1.0]);

        let c = calibrate(&policy, Target::default(), &leads, every(20.0, 60.0), None);
        assert_eq!((c.leads, c.reached_sql, c.customers), (5, 2, 2));
        let at = |cut: f64| c.points.iter().find(|p| p.cutoff == cut).expect("a cut-off");
        // fit ≥ 20 passes for the seniors (w1, w2, l2: 30) and not for the others (15)
        assert_eq!(at(0.0).qualified, 3);
        assert_eq!(at(0.0).precision, Some(0.666_667));
        assert_eq!(at(0.0).recall, Some(1.0));
        assert_eq!(at(20.0).qualified, 2);
        assert_eq!(at(20.0).precision, Some(1.0));
        assert_eq!(at(60.0).qualified, 1);
        assert_eq!(at(60.0).recall, Some(0.5));
        // best F1: 20 (precision 1, recall 1)
        assert_eq!(c.suggested.as_ref().map(|p| p.cutoff), Some(20.0));
        let targeted = calibrate(&policy, Target::default(), &leads, every(20.0, 60.0), Some(0.9));
        assert_eq!(targeted.suggested.map(|p| p.cutoff), Some(20.0));
        let impossible = calibrate(
            &policy,
            Target::default(),
            &leads[2..],
            every(20.0, 60.0),
            Some(0.9),
        );
        assert_eq!(impossible.suggested, None);
    }

    #[test]
    fn cutoffs_and_drafts() {
        assert_eq!(cutoff_list(12.0, 5.0), vec![0.0, 5.0, 10.0, 15.0]);
        assert_eq!(cutoff_list(0.0, 5.0), vec![0.0]);
        assert_eq!(cutoff_list(1e9, 1.0).len(), MAX_CUTOFFS);
        assert_eq!(cutoff_list(10.0, 1e-9), vec![0.0]);
        let source = include_str!("../../../../examples/policy.toml");
        let example = Policy::from_toml(source).expect("the example");
        let mql = Target::default();
        let draft = with_threshold(source, &example, mql, 42.5).expect("a draft");
        let policy = Policy::from_toml(&draft).expect("a valid draft");
        assert_eq!(policy.mql.engagement_at_least, 42.5);
        let whole = with_threshold(source, &example, mql, 40.0).expect("a draft");
        assert_eq!(
            Policy::from_toml(&whole).expect("valid").mql.engagement_at_least,
            40.0
        );
        assert_eq!(with_threshold("name = \"x\"", &example, mql, 1.0), None);
        // A level's threshold, kept between the levels around it.
        let warm = Target {
            model: 0,
            level: Some(0),
        };
        let draft = with_threshold(source, &example, warm, 100.0).expect("a draft");
        let policy = Policy::from_toml(&draft).expect("a valid draft");
        assert_eq!(policy.mql.levels[0].engagement_at_least, 100.0);
        assert_eq!(policy.mql.engagement_at_least, example.mql.engagement_at_least);
        assert_eq!(with_threshold(source, &example, warm, 500.0), None, "above hot");
        assert_eq!(
            with_threshold(source, &example, warm, 1.0),
            None,
            "below the MQL bar"
        );
        // Keys are added under a table's own header only, in the
        // document's line endings.
        use crate::policy::with_value;
        assert_eq!(
            with_value("[a]\nx = 1\n", "a", "y", "2").as_deref(),
            Some("[a]\ny = 2\nx = 1\n")
        );
        assert_eq!(
            with_value("[a]\r\nx = 1\r\n", "a", "y", "2").as_deref(),
            Some("[a]\r\ny = 2\r\nx = 1\r\n")
        );
        assert_eq!(
            with_value("[s.m]\nz = 1\n", "s.m", "z", "5").as_deref(),
            Some("[s.m]\nz = 5\n")
        );
        assert_eq!(
            with_value("[[a.b]]\nid = \"x\"\n", "a", "y", "2"),
            None,
            "a only named by a deeper header"
        );
        assert_eq!(
            with_value("[s]\nm.z = 1\n", "s.m", "y", "2"),
            None,
            "a dotted key"
        );
        assert_eq!(
            with_value("[s]\nm = { z = 1 }\n", "s.m", "y", "2"),
            None,
            "an inline table"
        );
        // A level that leaves its engagement threshold out gets one.
        let inherited = source.replacen("engagement_at_least = 90\n", "fit_at_least = 30\n", 1);
        let example = Policy::from_toml(&inherited).expect("valid without warm's threshold");
        let draft = with_threshold(&inherited, &example, warm, 80.0).expect("a draft");
        assert_eq!(
            Policy::from_toml(&draft).expect("valid").mql.levels[0].engagement_at_least,
            80.0
        );
    }
}

fn reached(level: &str, t: Timestamp) -> LevelStep {
    LevelStep {
        level: level.to_owned(),
        at: t,
        policy_version: 1,
    }
}

#[test]
fn levels_count_each_lead_once_and_what_went_on_to_sql() {
    use Stage::*;
    let mut histories = histories();
    // a: warm day 1, hot day 2, SQL day 3; warm again day 2 counts once
    histories[0].levels = vec![
        reached("warm", at(1, 10)),
        reached("hot", at(2, 0)),
        reached("warm", at(2, 1)),
    ];
    // c: warm day 2, never SQL; and warm again day 12 (outside the period)
    histories[2].levels = vec![reached("warm", at(2, 0)), reached("warm", at(12, 0))];
    // e: no move in the period, hot on day 5 (its level changed in it)
    let mut e = lead(
        "e",
        None,
        vec![
            step(None, Iql, at(-9, 0), Move::Capture),
            step(Some(Iql), Mql, at(-8, 0), Move::AutoQualify),
        ],
    );
    e.levels = vec![reached("hot", at(5, 0))];
    histories.push(e);
    let mut f = funnel(&histories, &query(0, 10));
    let shape = |f: &Funnel| -> Vec<(String, u64, u64)> {
        f.groups[0]
            .levels
            .iter()
            .map(|l| (l.level.clone(), l.leads, l.to_sql))
            .collect()
    };
    assert_eq!(
        shape(&f),
        [("hot".to_owned(), 2, 1), ("warm".to_owned(), 2, 1)],
        "by id until ordered"
    );
    let hot = &f.groups[0].levels[0];
    assert_eq!((hot.rate, hot.p50), (0.5, Some(Span::from_secs(DAY))));
    f.order_levels(&["warm".to_owned(), "hot".to_owned()]);
    assert_eq!(shape(&f)[0].0, "warm");
    // the stage counts are those of the moves alone
    assert_eq!(
        f.groups[0].entries,
        funnel(&histories[..4], &query(0, 10)).groups[0].entries
    );
}

fn owned(at_: Timestamp, from: Option<&str>, to: Option<&str>, cause: &str) -> OwnerStep {
    OwnerStep {
        at: at_,
        from: from.map(str::to_owned),
        to: to.map(str::to_owned),
        cause: cause.to_owned(),
    }
}

/// [`histories`] with owners: a is ana's from SQL (touched 2 h later, won);
/// b went to ben at SQL, an SLA's reassign gave it to ana on day 3
/// (touched then), then it was recycled and released; c has none.
fn handed() -> Vec<History> {
    let mut leads = histories();
    leads[0].owners = vec![owned(at(3, 0), None, Some("ana"), "ROUTE")];
    leads[0].sales_touches = vec![at(3, 7_200)];
    leads[1].owners = vec![
        owned(at(2, 0), None, Some("ben"), "ROUTE"),
        owned(at(3, 0), Some("ben"), Some("ana"), "SLA"),
        owned(at(5, 0), Some("ana"), None, "RELEASE"),
    ];
    leads[1].sales_touches = vec![at(1, 0), at(3, 3_600)];
    // b's SLA breached while ben owned it (which reassigned it).
    leads[1].sla_breaches = vec![(at(3, 0), Some("ben".to_owned()))];
    leads
}

#[test]
fn a_funnel_by_owner_gives_each_owner_its_handoff() {
    let q = Query {
        grouping: Grouping::Owner,
        ..query(0, 30)
    };
    let f = funnel(&handed(), &q);
    let keys: Vec<&str> = f.groups.iter().map(|g| g.key.as_str()).collect();
    // By the owner at the period's end (b was released, c never had one),
    // and ben, who has a handoff though no lead at the end.
    assert_eq!(keys, ["(none)", "ana", "ben"]);
    let ana = f.groups[1].handoff.clone().expect("a handoff");
    assert_eq!((ana.assigned, ana.sla_breaches), (2, 0));
    // a entered SQL as ana's; b entered SQL as ben's.
    assert_eq!((ana.sql, ana.touched, ana.converted), (1, 1, 1));
    assert_eq!(ana.first_touch_p50, Some(Span::from_secs(7_200)));
    assert!((ana.conversion_rate - 1.0).abs() < 1e-9);
    // Nobody entered SQL without an owner.
    assert_eq!(f.groups[0].handoff, None);
    // ben has no lead at the end, but a handoff: one given, one breach, an
    // SQL touched a day and an hour after it entered (the touch before
    // SQL does not count).
    let ben = f.groups[2].handoff.clone().expect("a handoff");
    assert_eq!(f.groups[2].entries.iter().map(|e| e.leads).sum::<u64>(), 0);
    assert_eq!(
        (ben.assigned, ben.sla_breaches, ben.sql, ben.touched),
        (1, 1, 1, 1)
    );
    assert_eq!(ben.first_touch_p90, Some(Span::from_secs(DAY + 3_600)));
    assert_eq!(ben.converted, 0);
    // Narrowed to a source channel: b (from "web") is left out, and with it
    // ben's handoff.
    let narrowed = Query {
        source_channel: Some("webinar".to_owned()),
        ..q
    };
    let keys: Vec<String> = funnel(&handed(), &narrowed)
        .groups
        .into_iter()
        .filter(|g| g.handoff.is_some())
        .map(|g| g.key)
        .collect();
    assert_eq!(keys, ["ana"]);
}

#[test]
fn a_funnel_by_team_counts_a_lead_in_each_team_of_its_owner() {
    let mut q = Query {
        grouping: Grouping::Team,
        ..query(0, 30)
    };
    q.teams
        .insert("ana".into(), vec!["emea".into(), "enterprise".into()]);
    q.teams.insert("ben".into(), Vec::new());
    let f = funnel(&handed(), &q);
    let keys: Vec<&str> = f.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["(no team)", "(none)", "emea", "enterprise"]);
    assert!(f.overlapping);
    let emea = f.groups[2].handoff.clone().expect("a handoff");
    assert_eq!((emea.assigned, emea.sql, emea.converted), (2, 1, 1));
    let no_team = f.groups[0].handoff.clone().expect("a handoff");
    assert_eq!((no_team.assigned, no_team.sla_breaches), (1, 1));
}

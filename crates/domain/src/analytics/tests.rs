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
    };
    let mut b = vec![
        step(None, Iql, at(0, 100), Move::Capture),
        step(Some(Iql), Mql, at(2, 0), Move::SalesReady),
        step(Some(Mql), Sql, at(2, 0), Move::SalesReady),
        step(Some(Sql), Iql, at(5, 0), Move::Recycle),
    ];
    b[1].caused_by = StepCause::Engagement {
        channel: Some("web".into()),
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
    let mql = &g.velocity[1];
    assert_eq!(mql, &vec![0, 1, 2, 0, 0, 0, 1]);
    let weekly = funnel(
        &histories(),
        &Query {
            bucket: Bucket::Week,
            ..query(0, 10)
        },
    );
    assert_eq!(weekly.buckets.len(), 2);
    assert_eq!(weekly.groups[0].velocity[0], vec![5, 0]);
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
    assert_eq!(g.velocity[0], vec![0, 0, 0]);
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

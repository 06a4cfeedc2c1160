//! Scoring cost: a full replay of a lead with 1,000 engagements against one
//! incremental engagement decided through the lifecycle.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use leadflow_domain::score::ScoreState;
use leadflow_domain::{Command, Context, Engagement, Policy, Span, Timestamp};

const T0: Timestamp = Timestamp::from_secs(1_767_571_200);
const KINDS: [&str; 6] = [
    "page_viewed",
    "email_clicked",
    "webinar_registered",
    "ebook_downloaded",
    "ad_clicked",
    "email_unsubscribed",
];

fn policy() -> Policy {
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policy.toml"))
        .expect("examples/policy.toml");
    Policy::from_toml(&toml).expect("valid policy")
}

fn log(n: usize) -> Vec<Engagement> {
    (0..n)
        .map(|i| {
            let mut properties = BTreeMap::new();
            properties.insert(
                "path".to_owned(),
                if i % 3 == 0 { "/pricing" } else { "/docs" }.to_owned(),
            );
            Engagement {
                event_id: format!("evt-{i:06}"),
                kind: KINDS[i % KINDS.len()].to_owned(),
                channel: (i % 4 == 0).then(|| "paid_social".to_owned()),
                properties,
                occurred_at: T0.saturating_add(Span::from_secs(i64::try_from(i).unwrap_or(0) * 3_600)),
            }
        })
        .collect()
}

fn scoring(c: &mut Criterion) {
    let policy = policy();
    let events = log(1_000);
    c.bench_function("replay 1000 engagements", |b| {
        b.iter(|| ScoreState::replay(&policy, black_box(&events), None, None));
    });

    let mut profile = BTreeMap::new();
    profile.insert("email".to_owned(), "ann@acme.com".to_owned());
    profile.insert("company".to_owned(), "Acme".to_owned());
    let now = T0.saturating_add(Span::from_days(60));
    let ctx = Context { now };
    let mut lead = leadflow_domain::capture(&policy, profile, Some(T0), &ctx)
        .expect("capture")
        .lead;
    for e in &events[..999] {
        lead = leadflow_domain::decide(&policy, &lead, Command::RecordEngagement(e.clone()), &ctx, None)
            .expect("decision")
            .lead;
    }
    let next = events[999].clone();
    c.bench_function("one incremental engagement (decide)", |b| {
        b.iter(|| {
            leadflow_domain::decide(
                &policy,
                black_box(&lead),
                Command::RecordEngagement(next.clone()),
                &ctx,
                None,
            )
            .expect("decision")
        });
    });
}

criterion_group!(benches, scoring);
criterion_main!(benches);

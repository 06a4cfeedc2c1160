//! The cost of choosing the draft's MQL bars over 80,000 training leads
//! (the training side of a 100,000-lead learning) with 1,000 distinct fit
//! scores: the engagement bar alone (one calibration) against the fit bar
//! too (a calibration for each of the 100 fit bars tried).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use leadflow_domain::Policy;
use leadflow_domain::analytics::learn::SplitMix64;
use leadflow_domain::analytics::learn::bars::{Aim, Trained, choose};

fn unit(r: &mut SplitMix64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let u = (r.next_u64() >> 11) as f64 / (1_u64 << 53) as f64;
    u
}

/// Leads more likely to reach the outcome the higher their peak and fit.
fn trained(n: usize) -> Vec<Trained> {
    let mut r = SplitMix64::new(7);
    (0..n)
        .map(|_| {
            let peak = (unit(&mut r) * 1_500.0).round() / 10.0;
            let fit = (unit(&mut r) * 1_000.0).round() / 20.0;
            let logit = -4.0 + peak / 30.0 + fit / 15.0;
            Trained {
                peak,
                fit,
                guards: unit(&mut r) < 0.95,
                positive: unit(&mut r) < 1.0 / (1.0 + (-logit).exp()),
            }
        })
        .collect()
}

/// A policy without MQL levels: no bar is ever capped.
const SOURCE: &str = r#"
name = "bench"

[engagements]
types = ["demo_watched"]

[[fit]]
id = "big"
attribute = "company_size"
at_least = 200
points = 10

[[engagement]]
id = "demo"
type = "demo_watched"
points = 10

[stages.MQL]
engagement_at_least = 60
fit_at_least = 0

[reasons]
disqualify = ["spam"]
"#;

fn bars(c: &mut Criterion) {
    let source = SOURCE;
    let policy = Policy::from_toml(source).expect("valid policy");
    let leads = trained(80_000);
    let aim = |choose_fit| Aim {
        model: 0,
        precision: 0.7,
        step: 1.0,
        choose_fit,
    };
    let mut group = c.benchmark_group("learn bars, 80000 training leads");
    group.sample_size(10);
    group.bench_function("engagement bar (fit bar kept)", |b| {
        b.iter(|| choose(source, &policy, black_box(&leads), aim(false), 60.0).expect("bars"));
    });
    group.bench_function("fit bar chosen too (100 fit bars)", |b| {
        b.iter(|| choose(source, &policy, black_box(&leads), aim(true), 60.0).expect("bars"));
    });
    group.finish();
}

criterion_group!(benches, bars);
criterion_main!(benches);

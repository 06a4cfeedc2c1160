//! A history whose truth is known, for the tests and benchmarks of the
//! learning: a lead reaches the outcome more often the more demos and
//! pricing views it had before, and when its company is large; newsletters,
//! blog posts and the region are noise. [`WRONG`] is a policy that gets it
//! backwards (the noise worth 20 points, what matters 2).

use std::collections::BTreeMap;

use super::rng::SplitMix64;

/// Deliberately wrong: the two engagements that matter get 2 points, two
/// that do not get 20.
pub const WRONG: &str = r#"
name = "wrong"

[decay]
half_life = "30d"

[engagements]
types = ["demo_watched", "pricing_viewed", "newsletter_opened", "blog_read"]

[[fit]]
id = "big"
attribute = "company_size"
at_least = 200
points = 10

[[engagement]]
id = "demo"
type = "demo_watched"
points = 2

[[engagement]]
id = "pricing"
type = "pricing_viewed"
points = 2

[[engagement]]
id = "newsletter"
type = "newsletter_opened"
points = 20

[[engagement]]
id = "blog"
type = "blog_read"
points = 20

[stages.MQL]
engagement_at_least = 30
fit_at_least = 0

[reasons]
disqualify = ["spam"]
"#;

/// The engagement types, in the order they are drawn.
pub const TYPES: [&str; 4] = ["demo_watched", "pricing_viewed", "newsletter_opened", "blog_read"];
/// Leads are captured over this many days.
pub const CAPTURE_DAYS: f64 = 100.0;
/// A lead's outcome is decided this many days after its capture.
pub const OUTCOME_DAYS: f64 = 40.0;

/// An engagement of a synthetic lead.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticEngagement {
    pub event_id: String,
    pub kind: &'static str,
    pub channel: &'static str,
    /// Days after the history's start.
    pub day: f64,
}

/// A synthetic lead: its profile, what it did, and whether it reached
/// the outcome ([`OUTCOME_DAYS`] after its capture).
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticLead {
    /// Days after the history's start.
    pub captured: f64,
    pub profile: BTreeMap<String, String>,
    pub engagements: Vec<SyntheticEngagement>,
    pub positive: bool,
}

fn unit(r: &mut SplitMix64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let u = (r.next_u64() >> 11) as f64 / (1_u64 << 53) as f64;
    u
}

/// `n` leads, the same for the same `seed`.
pub fn history(seed: u64, n: usize) -> Vec<SyntheticLead> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|i| {
            let captured = unit(&mut r) * CAPTURE_DAYS;
            let big = unit(&mut r) < 0.5;
            let region = ["emea", "amer", "apac"][r.below(3)];
            let mut profile = BTreeMap::new();
            profile.insert("email".to_owned(), format!("p{i}@example.com"));
            profile.insert(
                "company_size".to_owned(),
                if big { "500" } else { "50" }.to_owned(),
            );
            profile.insert("region".to_owned(), region.to_owned());
            let mut engagements = Vec::new();
            let mut counts = [0.0_f64; 4];
            for (k, kind) in TYPES.into_iter().enumerate() {
                for j in 0..r.below(3) {
                    counts[k] += 1.0;
                    engagements.push(SyntheticEngagement {
                        event_id: format!("{i}-{kind}-{j}"),
                        kind,
                        channel: if k % 2 == 0 { "web" } else { "email" },
                        day: captured + 0.5 + unit(&mut r) * 10.0,
                    });
                }
            }
            let logit: f64 = -3.0 + 1.4 * counts[0] + 1.2 * counts[1] + if big { 1.5 } else { 0.0 };
            let positive = unit(&mut r) < 1.0 / (1.0 + (-logit).exp());
            SyntheticLead {
                captured,
                profile,
                engagements,
                positive,
            }
        })
        .collect()
}

/// `leads` where small companies never reach the outcome: only a fit bar
/// lets engagement qualify the big ones without the small ones that engage
/// as much.
pub fn small_never_convert(leads: Vec<SyntheticLead>) -> Vec<SyntheticLead> {
    leads
        .into_iter()
        .map(|mut lead| {
            lead.positive &= lead.profile.get("company_size").is_some_and(|s| s == "500");
            lead
        })
        .collect()
}

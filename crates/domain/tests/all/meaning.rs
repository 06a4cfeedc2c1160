//! Every policy already stored keeps its meaning: the example as shipped
//! now (`examples/policy.toml`, every new workspace's first version), the
//! example as it was shipped before (`tests/policies/example.toml`) and the
//! stored shapes beside it decide a fixed set of histories exactly as
//! recorded in `tests/golden/decisions.txt` (written by a run with
//! `LEADFLOW_BLESS=1`, from the code before a change to the format). A
//! change to the example keeps the version it replaces in
//! `tests/policies/` (stored workspaces hold it) before blessing the new
//! one's lines.

use std::fmt::Write as _;

use leadflow_domain::workflow::Event;
use leadflow_domain::{Engagement, Policy, Span};

use crate::common::{Harness, T0, example_toml, good_fit};

/// Paths, durations, percents and topics the histories draw from.
const PATHS: [&str; 5] = ["/pricing", "/docs/api", "/careers", "/blog", "/docs"];
const NUMBERS: [&str; 7] = ["30", "120", "120.0", " 300 ", "abc", "50", "-1"];
const TOPICS: [&str; 3] = ["pricing", "Security", "hiring"];
const CHANNELS: [Option<&str>; 3] = [None, Some("newsletter"), Some("paid_social")];

/// A small deterministic generator (xorshift), the same on every machine.
struct Draw(u64);

impl Draw {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        #[allow(clippy::cast_possible_truncation)]
        let n = (self.0 % below as u64) as usize;
        n
    }
}

/// `count` engagements of the policy's types over about 60 days, one in
/// eight of them late (before the latest so far). Types that disqualify or
/// are sales-ready come rarely (after them most decisions would be alike).
fn history(policy: &Policy, seed: u64, count: usize) -> Vec<Engagement> {
    let decisive = |kind: &String| {
        policy.sql.sales_ready_actions.contains(kind)
            || policy.event_rules.iter().any(|r| r.disqualify && r.kind == *kind)
    };
    let (rare, common): (Vec<&String>, Vec<&String>) =
        policy.engagement_types.iter().partition(|k| decisive(k));
    let mut draw = Draw(seed);
    let mut at = T0;
    (0..count)
        .map(|i| {
            let kind = if draw.next(40) == 0 && !rare.is_empty() {
                rare[draw.next(rare.len())].clone()
            } else {
                common[draw.next(common.len())].clone()
            };
            let step = Span::from_secs(i64::try_from(draw.next(36 * 3600)).unwrap_or(0));
            at = at.saturating_add(step);
            let occurred_at = if draw.next(8) == 0 {
                at.saturating_add(Span::from_secs(
                    -i64::try_from(draw.next(10 * 86_400)).unwrap_or(0),
                ))
            } else {
                at
            };
            let mut properties = std::collections::BTreeMap::new();
            properties.insert("path".to_owned(), PATHS[draw.next(PATHS.len())].to_owned());
            properties.insert("seconds".to_owned(), NUMBERS[draw.next(NUMBERS.len())].to_owned());
            properties.insert("percent".to_owned(), NUMBERS[draw.next(NUMBERS.len())].to_owned());
            properties.insert("topic".to_owned(), TOPICS[draw.next(TOPICS.len())].to_owned());
            if draw.next(4) == 0 {
                properties.insert("seconds_at_least".to_owned(), "120".to_owned());
                properties.insert("percent_at_most".to_owned(), "50".to_owned());
            }
            Engagement {
                event_id: format!("e{i:04}"),
                kind,
                channel: CHANNELS[draw.next(CHANNELS.len())].map(str::to_owned),
                properties,
                occurred_at,
            }
        })
        .collect()
}

/// One line a decision: stage, scores and what it emitted.
fn decisions(name: &str, source: &str) -> String {
    let policy = Policy::from_toml(source).unwrap_or_else(|e| panic!("{name} is valid: {e:?}"));
    let mut out = String::new();
    for seed in [1_u64, 7, 42] {
        let mut h = Harness::capture(policy.clone(), good_fit(), T0);
        for e in history(&policy, seed, 120) {
            let id = e.event_id.clone();
            let before = h.events.len();
            let d = h.engage(e);
            let s = d.lead.scores_at(&h.policy, h.now);
            let emitted: Vec<String> = h.events[before..]
                .iter()
                .map(|e| match e {
                    Event::Transition(t) => format!("{:?}>{:?}", t.by, t.to),
                    Event::Trigger(t) => t.emit.clone(),
                    Event::SlaBreached(b) => format!("sla:{}", b.sla_id),
                    Event::LevelChanged(l) => format!("level:{:?}", l.to),
                })
                .collect();
            // Other models, when the policy has any (lines of policies
            // without stay as they were).
            let models: String = s
                .models
                .iter()
                .map(|(id, m)| format!(" {id}=({},{},{})", m.fit, m.engagement, m.qualifying_engagement))
                .collect();
            let _ = writeln!(
                out,
                "{name} {seed} {id} {:?} fit={} eng={} q={}{models} [{}]",
                h.stage(),
                s.fit,
                s.engagement,
                s.qualifying_engagement,
                emitted.join(",")
            );
        }
    }
    out
}

fn all_decisions() -> String {
    let mut out = String::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/policies");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/policies is readable")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for file in files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push_str(&decisions(
            &name,
            &std::fs::read_to_string(&file).expect("readable"),
        ));
    }
    out.push_str(&decisions("shipped", &example_toml()));
    out
}

#[test]
fn stored_policies_decide_as_they_did() {
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/decisions.txt");
    let now = all_decisions();
    if std::env::var_os("LEADFLOW_BLESS").is_some() {
        std::fs::write(golden, &now).expect("the golden file is writable");
        return;
    }
    let recorded = std::fs::read_to_string(golden).expect("tests/golden/decisions.txt exists");
    for (i, (a, b)) in recorded.lines().zip(now.lines()).enumerate() {
        assert_eq!(a, b, "line {} of tests/golden/decisions.txt differs", i + 1);
    }
    assert_eq!(
        recorded.lines().count(),
        now.lines().count(),
        "decisions added or lost"
    );
}

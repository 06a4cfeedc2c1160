//! Learning a policy: whatever a lead did at or after its observation
//! instant never changes what it is learned from.

use std::collections::BTreeMap;

use leadflow_domain::analytics::evidence::Evidence;
use leadflow_domain::analytics::learn::{FeatureSpace, LearnOutcome, Observed, observed_at};
use leadflow_domain::lifecycle::Move;
use leadflow_domain::profile::Profile;
use leadflow_domain::{Engagement, Span, Stage, Timestamp};
use proptest::prelude::*;

use crate::common::{T0, policy};

/// Types the example policy gives points (none takes any away, none
/// disqualifies, none is sales-ready): planting one at the instant cannot
/// stop the MQL that set it.
const POSITIVE: [&str; 5] = [
    "trial_started",
    "webinar_attended",
    "ebook_downloaded",
    "webinar_registered",
    "email_clicked",
];
/// Any type of the vocabulary, for what happens after the instant.
const ANY: [&str; 8] = [
    "trial_started",
    "webinar_attended",
    "ebook_downloaded",
    "page_viewed",
    "email_unsubscribed",
    "demo_requested",
    "ad_clicked",
    "email_bounced",
];

fn engagement(id: String, kind: &str, at: Timestamp, channel: u8) -> Engagement {
    Engagement {
        event_id: id,
        kind: kind.to_owned(),
        channel: Some(["web", "email", "paid"][usize::from(channel % 3)].to_owned()),
        properties: BTreeMap::new(),
        occurred_at: at,
    }
}

fn lead(log: Vec<Engagement>) -> Evidence {
    let mut a = BTreeMap::new();
    a.insert("email".to_owned(), "p@acme.com".to_owned());
    a.insert("company".to_owned(), "Acme".to_owned());
    a.insert("title".to_owned(), "VP Sales".to_owned());
    a.insert("company_size".to_owned(), "250".to_owned());
    Evidence {
        lead_id: "l".to_owned(),
        profile: Profile::capture(a).expect("a profile"),
        log,
        moves: vec![(Stage::Iql, Move::Capture, T0)],
        mql_by: None,
        erased: false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn what_happens_at_or_after_the_instant_is_never_a_feature(
        history in prop::collection::vec((0usize..POSITIVE.len(), 0i64..40 * 24, any::<u8>()), 0..12),
        at_instant in prop::collection::vec((0usize..POSITIVE.len(), any::<u8>()), 0..3),
        after in prop::collection::vec((0usize..ANY.len(), 0i64..60 * 24, any::<u8>()), 0..6),
        sql in any::<bool>(),
    ) {
        let p = policy();
        let outcome = if sql { LearnOutcome::Sql } else { LearnOutcome::Customer };
        let log: Vec<Engagement> = history
            .iter()
            .enumerate()
            .map(|(i, &(k, hours, c))| engagement(format!("h{i:02}"), POSITIVE[k], T0.saturating_add(Span::from_hours(hours)), c))
            .collect();
        let e = lead(log);
        let at = observed_at(&p, &e, T0);
        let space = FeatureSpace::build(&p, 0, outcome, &[Observed { evidence: &e, at }]);
        let row = space.row(&p, &e, at);

        let mut planted = e.clone();
        for (i, &(k, c)) in at_instant.iter().enumerate() {
            // Ids that sort after the log's, so the instant's own event stays first.
            planted.log.push(engagement(format!("z{i}"), POSITIVE[k], at, c));
        }
        for (i, &(k, hours, c)) in after.iter().enumerate() {
            planted.log.push(engagement(format!("a{i}"), ANY[k], at.saturating_add(Span::from_hours(hours + 1)), c));
        }
        prop_assert_eq!(observed_at(&p, &planted, T0), at);
        prop_assert_eq!(space.row(&p, &planted, at), row);
    }
}

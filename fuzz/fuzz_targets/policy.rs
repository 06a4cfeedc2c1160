//! Any text as a lead definition: it parses or is refused with errors, never
//! a panic; a definition that parses scores a lead through every
//! engagement type it knows and a stage move.

#![no_main]

use std::collections::BTreeMap;

use leadflow_domain::{Command, Context, Engagement, Policy, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::from_toml(source) else {
        return;
    };
    let ctx = Context {
        now: Timestamp::from_secs(1_800_000_000),
    };
    let mut profile = BTreeMap::new();
    profile.insert("email".to_owned(), "jane@acme.com".to_owned());
    profile.insert("company_size".to_owned(), "250".to_owned());
    let Ok(decision) = leadflow_domain::capture(&policy, profile, None, &ctx) else {
        return;
    };
    let mut lead = decision.lead;
    let mut log: Vec<Engagement> = Vec::new();
    for (i, kind) in policy.engagement_types.iter().enumerate() {
        let event = Engagement {
            event_id: format!("e{i}"),
            kind: kind.clone(),
            channel: None,
            properties: BTreeMap::new(),
            occurred_at: Timestamp::from_secs(1_799_990_000 + i64::try_from(i).unwrap_or(0)),
        };
        if let Ok(d) = leadflow_domain::decide(
            &policy,
            &lead,
            Command::RecordEngagement(event.clone()),
            &ctx,
            Some(&log),
        ) {
            lead = d.lead;
            log.push(event);
        }
    }
    let _ = lead.scores_at(&policy, ctx.now);
});

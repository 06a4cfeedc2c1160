//! A life decided as a live feed: engagements in time order whatever order
//! they come in, timers firing at their instants in between.

use leadflow_domain::Stage;
use leadflow_domain::life::{Happening, live};
use leadflow_domain::workflow::Event;

use crate::common::{days, ev, good_fit, hours, policy};

fn emitted(events: &[Event]) -> Vec<(String, leadflow_domain::Timestamp)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Trigger(t) => Some((t.emit.clone(), t.at)),
            _ => None,
        })
        .collect()
}

#[test]
fn engagements_are_decided_in_time_order_with_timers_firing_between() {
    let p = policy();
    let log = [
        ev("late-page", "page_viewed", days(5)),
        ev("t", "trial_started", hours(1)),
        ev("w", "webinar_attended", hours(1)),
        ev("b1", "ebook_downloaded", hours(1)),
        ev("b2", "ebook_downloaded", hours(1)),
    ];
    let happenings: Vec<Happening> = log.iter().cloned().map(Happening::Engagement).collect();
    let life = live(&p, good_fit(), hours(0), &happenings, days(6)).expect("lived");
    assert_eq!(life.lead.stage, Stage::Mql);
    assert_eq!(
        life.log.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        ["b1", "b2", "t", "w", "late-page"],
        "scoring order"
    );
    // the day-3 step fired at its instant, before the page view of day 5
    assert_eq!(
        emitted(&life.events),
        [
            ("mql_welcome_sequence".to_owned(), hours(1)),
            (
                "mql_followup_day3".to_owned(),
                hours(1).saturating_add(leadflow_domain::Span::from_days(3))
            )
        ]
    );
    // the idle SLA is pending, restarted by the page view
    assert!(life.timers.contains_key("sla:mql_idle"));

    let mut reversed = happenings.clone();
    reversed.reverse();
    assert_eq!(live(&p, good_fit(), hours(0), &reversed, days(6)), Ok(life));
}

#[test]
fn a_refused_engagement_names_itself() {
    let refused = live(
        &policy(),
        good_fit(),
        hours(0),
        &[Happening::Engagement(ev("x", "webinar_atended", hours(1)))],
        hours(2),
    )
    .expect_err("an unknown type");
    assert_eq!(refused.at, "x");
    assert!(refused.error.contains("webinar_atended"), "{}", refused.error);
}

#[test]
fn manual_moves_happen_at_their_instants() {
    use leadflow_domain::{CommandKind, ManualTransition};
    let reject = |at| {
        Happening::Transition(ManualTransition {
            command: CommandKind::Reject,
            reason: Some("not_ready".to_owned()),
            actor: None,
            deal: None,
            occurred_at: Some(at),
        })
    };
    let mut happenings = vec![reject(hours(2))];
    for (id, kind) in [
        ("t", "trial_started"),
        ("w", "webinar_attended"),
        ("b1", "ebook_downloaded"),
        ("b2", "ebook_downloaded"),
    ] {
        happenings.push(Happening::Engagement(ev(id, kind, hours(1))));
    }
    let life = live(&policy(), good_fit(), hours(0), &happenings, hours(3)).expect("lived");
    assert_eq!(life.lead.stage, Stage::Iql, "rejected after qualifying");
    assert_eq!(life.lead.window_start, Some(hours(2)));
    assert!(
        emitted(&life.events)
            .iter()
            .any(|(e, at)| e == "long_term_nurture" && *at == hours(2))
    );
    // a move the lead cannot take is refused, named
    let refused = live(&policy(), good_fit(), hours(0), &[reject(hours(1))], hours(3))
        .expect_err("IQL cannot be rejected");
    assert_eq!(refused.at, "transition[0] REJECT");
}

//! A life decided as a live feed: engagements in time order whatever order
//! they come in, timers firing at their instants in between.

use leadflow_domain::Stage;
use leadflow_domain::life::live;
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
    let log = vec![
        ev("late-page", "page_viewed", days(5)),
        ev("t", "trial_started", hours(1)),
        ev("w", "webinar_attended", hours(1)),
        ev("b1", "ebook_downloaded", hours(1)),
        ev("b2", "ebook_downloaded", hours(1)),
    ];
    let life = live(&p, good_fit(), hours(0), &log, days(6)).expect("lived");
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

    let mut reversed = log.clone();
    reversed.reverse();
    assert_eq!(live(&p, good_fit(), hours(0), &reversed, days(6)), Ok(life));
}

#[test]
fn a_refused_engagement_names_itself() {
    let refused = live(
        &policy(),
        good_fit(),
        hours(0),
        &[ev("x", "webinar_atended", hours(1))],
        hours(2),
    )
    .expect_err("an unknown type");
    assert_eq!(refused.at, "x");
    assert!(
        refused.error.to_string().contains("webinar_atended"),
        "{}",
        refused.error
    );
}

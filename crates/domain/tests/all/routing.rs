//! Routing among a team's owners: each strategy, capacity and availability,
//! exclusions, determinism and the explanation.

use std::collections::{BTreeMap, BTreeSet};

use leadflow_domain::DomainError;
use leadflow_domain::routing::{Choice, Owner, Strategy, TeamCursor, Verdict, choose};

fn owner(id: &str, weight: u32) -> Owner {
    Owner {
        id: id.to_owned(),
        display_name: id.to_uppercase(),
        teams: vec!["emea".to_owned()],
        territories: Vec::new(),
        capacity: None,
        weight,
        available: true,
    }
}

fn team() -> Vec<Owner> {
    // Given out of order, with one of another team.
    let mut other = owner("zed", 1);
    other.teams = vec!["amer".to_owned()];
    vec![owner("chloe", 1), owner("ana", 1), other, owner("ben", 1)]
}

/// `n` leads in a row, each choice's cursor and load carried to the next.
fn run(strategy: Strategy, owners: &[Owner], n: usize) -> Vec<String> {
    let (mut cursor, mut open) = (TeamCursor::default(), BTreeMap::new());
    let mut out = Vec::new();
    for _ in 0..n {
        let c = choose("emea", strategy, owners, &open, &cursor, &BTreeSet::new());
        let id = c.chosen.clone().expect("an owner");
        *open.entry(id.clone()).or_insert(0) += 1;
        cursor = c.cursor;
        out.push(id);
    }
    out
}

#[test]
fn round_robin_takes_each_in_turn_after_the_last() {
    assert_eq!(
        run(Strategy::RoundRobin, &team(), 7),
        ["ana", "ben", "chloe", "ana", "ben", "chloe", "ana"]
    );
    // After ben, with chloe gone from the team: back to ana.
    let cursor = TeamCursor {
        last: Some("ben".to_owned()),
        ..TeamCursor::default()
    };
    let owners: Vec<Owner> = team().into_iter().filter(|o| o.id != "chloe").collect();
    let c = choose(
        "emea",
        Strategy::RoundRobin,
        &owners,
        &BTreeMap::new(),
        &cursor,
        &BTreeSet::new(),
    );
    assert_eq!(c.chosen.as_deref(), Some("ana"));
}

#[test]
fn weighted_gives_each_its_share_spread_evenly() {
    let owners = vec![owner("ana", 3), owner("ben", 1), owner("chloe", 2)];
    let chosen = run(Strategy::Weighted, &owners, 12);
    let count = |id: &str| chosen.iter().filter(|c| *c == id).count();
    assert_eq!((count("ana"), count("ben"), count("chloe")), (6, 2, 4));
    // Spread, not in blocks: no owner twice in a row beyond its share.
    assert_eq!(&chosen[..6], ["ana", "chloe", "ana", "ben", "chloe", "ana"]);
}

#[test]
fn least_loaded_takes_the_fewest_open_leads_ties_by_id() {
    let open = BTreeMap::from([
        ("ana".to_owned(), 4),
        ("ben".to_owned(), 2),
        ("chloe".to_owned(), 2),
    ]);
    let c = choose(
        "emea",
        Strategy::LeastLoaded,
        &team(),
        &open,
        &TeamCursor::default(),
        &BTreeSet::new(),
    );
    assert_eq!(c.chosen.as_deref(), Some("ben"));
}

#[test]
fn out_of_office_at_capacity_and_excluded_owners_are_passed_over_and_said_so() {
    let mut owners = team();
    owners[1].capacity = Some(5); // ana
    owners[3].available = false; // ben
    let open = BTreeMap::from([("ana".to_owned(), 5)]);
    let c: Choice = choose(
        "emea",
        Strategy::RoundRobin,
        &owners,
        &open,
        &TeamCursor::default(),
        &BTreeSet::new(),
    );
    assert_eq!(c.chosen.as_deref(), Some("chloe"));
    assert_eq!(
        c.considered,
        [
            ("ana".to_owned(), Verdict::AtCapacity { open: 5, capacity: 5 }),
            ("ben".to_owned(), Verdict::Unavailable),
            ("chloe".to_owned(), Verdict::Chosen),
        ]
    );
    assert_eq!(
        c.explain(),
        "team emea round_robin: ana (at capacity, 5/5), ben (out of office) → chloe"
    );
    assert_eq!(c.cursor.last.as_deref(), Some("chloe"));
    // chloe had it before: nobody left, the cursor stays.
    let excluded = BTreeSet::from(["chloe".to_owned()]);
    let none = choose(
        "emea",
        Strategy::RoundRobin,
        &owners,
        &open,
        &TeamCursor::default(),
        &excluded,
    );
    assert_eq!(none.chosen, None);
    assert_eq!(none.cursor, TeamCursor::default());
    assert_eq!(
        none.explain(),
        "team emea round_robin: ana (at capacity, 5/5), ben (out of office), chloe (had it before) → no owner"
    );
}

#[test]
fn the_same_state_gives_the_same_choice() {
    let owners = vec![owner("ana", 3), owner("ben", 1), owner("chloe", 2)];
    for strategy in [Strategy::RoundRobin, Strategy::Weighted, Strategy::LeastLoaded] {
        let mut reversed = owners.clone();
        reversed.reverse();
        assert_eq!(
            run(strategy, &owners, 20),
            run(strategy, &reversed, 20),
            "{strategy:?}"
        );
    }
}

#[test]
fn an_owner_is_checked_field_by_field() {
    let kept = Owner {
        id: " ana ".to_owned(),
        teams: vec![" emea ".to_owned(), "emea".to_owned()],
        ..owner("x", 1)
    }
    .checked()
    .expect("valid");
    assert_eq!(
        (kept.id.as_str(), kept.teams.as_slice()),
        ("ana", ["emea".to_owned()].as_slice())
    );
    let bad = Owner {
        id: " ".to_owned(),
        display_name: String::new(),
        teams: vec![String::new()],
        territories: vec!["x".repeat(201)],
        capacity: Some(3),
        weight: 0,
        available: true,
    }
    .checked()
    .expect_err("invalid");
    let DomainError::InvalidArgument { violations, .. } = bad else {
        panic!("{bad:?}");
    };
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "owner.id",
            "owner.display_name",
            "owner.teams[0]",
            "owner.territories[0]",
            "owner.weight"
        ]
    );
    assert_eq!("weighted".parse::<Strategy>(), Ok(Strategy::Weighted));
    assert!("fastest".parse::<Strategy>().is_err());
}

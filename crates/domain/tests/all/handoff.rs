//! The handoff: `[[route]]` and `[routing]` as the parser takes them, the
//! route a decision sets off, and whom it gives the lead to.

use std::collections::{BTreeMap, BTreeSet};

use leadflow_domain::handoff::{
    ChangeCause, Occasions, Pool, PoolState, Situation, hand_off, occasions, plan, reads_pool, route_for,
};
use leadflow_domain::policy::{Release, RouteOn, RouteTarget};
use leadflow_domain::profile::Profile;
use leadflow_domain::routing::{Owner, Strategy, TeamCursor};
use leadflow_domain::{CommandKind, Policy, Stage};

use crate::common::{Harness, T0, attrs, ev, example_toml, good_fit, hours, manual};

const ROUTES: &str = r#"
[routing]
release_on = ["rejected", "disqualified", "converted"]

[[route]]
id = "big-sql"
on = "entered:SQL"
team = "enterprise"
strategy = "least_loaded"
territory = "country"
fallback = "queue-ent"
reassign = true
[[route.when]]
attribute = "company_size"
at_least = 1000
[[route.when]]
score = "fit"
at_least = 30

[[route]]
id = "sql"
on = "entered:SQL"
team = "emea"
strategy = "round_robin"
fallback = "queue"

[[route]]
id = "hot"
on = "level:hot"
owner = "ana"
"#;

fn routed() -> Policy {
    Policy::from_toml(&format!("{}{ROUTES}", example_toml())).expect("the routes are valid")
}

fn errors(extra: &str) -> Vec<String> {
    match Policy::from_toml(&format!("{}{extra}", example_toml())) {
        Ok(_) => panic!("expected the policy to be refused:\n{extra}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn assert_has(errors: &[String], expected: &str) {
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "expected an error containing {expected:?}, got:\n{}",
        errors.join("\n")
    );
}

fn profile(pairs: &[(&str, &str)]) -> Profile {
    Profile::from_stored(attrs(pairs))
}

fn owner(id: &str, teams: &[&str]) -> Owner {
    Owner {
        id: id.to_owned(),
        display_name: id.to_uppercase(),
        teams: teams.iter().map(|t| (*t).to_owned()).collect(),
        territories: Vec::new(),
        capacity: None,
        weight: 1,
        available: true,
    }
}

#[test]
fn routes_parse_in_document_order_with_their_targets() {
    let p = routed();
    let ids: Vec<&str> = p.routing.routes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["big-sql", "sql", "hot"]);
    assert_eq!(
        p.routing.release_on,
        [Release::Rejected, Release::Disqualified, Release::Converted]
    );
    let big = &p.routing.routes[0];
    assert_eq!(big.on, RouteOn::Entered(Stage::Sql));
    assert_eq!(big.when.len(), 2);
    assert!(big.reassign);
    assert_eq!(big.fallback.as_deref(), Some("queue-ent"));
    assert_eq!(
        big.target,
        RouteTarget::Team {
            team: "enterprise".to_owned(),
            strategy: Strategy::LeastLoaded,
            territory: Some("country".to_owned()),
        }
    );
    assert_eq!(p.routing.routes[2].target, RouteTarget::Owner("ana".to_owned()));
    assert_eq!(p.routing.routes[2].on, RouteOn::Level("hot".to_owned()));
    // Without [routing], the default releases.
    let plain = Policy::from_toml(&example_toml()).expect("valid");
    assert_eq!(plain.routing.release_on, Release::DEFAULT);
    assert!(plain.routing.routes.is_empty());
}

#[test]
fn bad_routes_are_refused_with_their_path() {
    let e = errors("[[route]]\nid = \"r\"\non = \"entered:CUSTOMER\"\nowner = \"a\"\n");
    assert_has(&e, "route[0].on");
    assert_has(&e, "not worked by an owner");
    let e = errors("[[route]]\nid = \"r\"\non = \"level:boiling\"\nowner = \"a\"\n");
    assert_has(&e, "no level \"boiling\"");
    let e = errors("[[route]]\nid = \"r\"\non = \"entered:SQL\"\n");
    assert_has(&e, "needs a target");
    let e = errors("[[route]]\nid = \"r\"\non = \"entered:SQL\"\nowner = \"a\"\nteam = \"t\"\n");
    assert_has(&e, "not both");
    let e = errors("[[route]]\nid = \"r\"\non = \"entered:SQL\"\nteam = \"t\"\n");
    assert_has(&e, "route[0].strategy: required with team");
    let e = errors("[[route]]\nid = \"r\"\non = \"entered:SQL\"\nteam = \"t\"\nstrategy = \"random\"\n");
    assert_has(&e, "unknown strategy \"random\"");
    let e = errors("[[route]]\nid = \"r\"\non = \"entered:SQL\"\nowner = \"a\"\nstrategy = \"weighted\"\n");
    assert_has(&e, "goes with team");
    let e = errors("[[route]]\nid = \"r\"\non = \"entered:SQL\"\nowner = \" \"\n");
    assert_has(&e, "route[0].owner: must not be blank");
    let e = errors("[[route]]\nid = \"r\"\non = \"entered:SQL\"\nowner = \"a\"\nfallback = \"\"\n");
    assert_has(&e, "route[0].fallback: must not be blank");
    let e = errors(
        "[[route]]\nid = \"r\"\non = \"entered:SQL\"\nowner = \"a\"\n[[route]]\nid = \"r\"\non = \"entered:MQL\"\nowner = \"b\"\n",
    );
    assert_has(&e, "route[1].id");
    let e = errors(
        "[[route]]\nid = \"r\"\non = \"entered:SQL\"\nowner = \"a\"\n[[route.when]]\nscore = \"fit\"\n",
    );
    assert_has(&e, "needs at_least, at_most or both");
    let e = errors(
        "[[route]]\nid = \"r\"\non = \"entered:SQL\"\nowner = \"a\"\n[[route.when]]\nscore = \"karma\"\nat_least = 1\n",
    );
    assert_has(&e, "unknown score \"karma\"");
    let e = errors(
        "[[route]]\nid = \"r\"\non = \"entered:SQL\"\nowner = \"a\"\n[[route.when]]\nattribute = \"x\"\nscore = \"fit\"\n",
    );
    assert_has(&e, "route[0].when[0]");
    let e = errors(
        "[[route]]\nid = \"r\"\non = \"entered:SQL\"\nowner = \"a\"\n[[route.when]]\nattribute = \"x\"\n",
    );
    assert_has(&e, "needs exactly one of equals");
    let e = errors("[[route]]\nid = \"r\"\non = \"entered:SQL\"\nowner = \"a\"\nreassing = true\n");
    assert_has(&e, "reassing");
    let e = errors("[routing]\nrelease_on = [\"lost\"]\n");
    assert_has(&e, "unknown move \"lost\"");
    let e = errors("[routing]\nreassign_on_policy_change = \"yes\"\n");
    assert_has(&e, "routing.reassign_on_policy_change");
}

#[test]
fn a_forward_jump_sets_off_only_its_final_stage() {
    let p = routed();
    let mut h = Harness::capture(p.clone(), good_fit(), T0);
    let d = h.engage(ev("demo", "demo_requested", hours(1)));
    // IQL → MQL → SQL at once: one occasion, SQL.
    let o = occasions(&p, &d.events);
    assert_eq!(o.on, [RouteOn::Entered(Stage::Sql)]);
    assert_eq!(o.release, None);
    assert!(!o.policy_change);
}

#[test]
fn the_capture_sets_off_iql_and_a_rejection_releases() {
    let p = routed();
    let capture = leadflow_domain::capture(&p, good_fit(), None, &leadflow_domain::Context { now: T0 })
        .expect("capture");
    assert_eq!(occasions(&p, &capture.events).on, [RouteOn::Entered(Stage::Iql)]);

    let mut h = Harness::capture(p.clone(), good_fit(), T0);
    for i in 0..3 {
        h.engage(ev(&format!("t{i}"), "trial_started", hours(1 + i)));
    }
    assert_eq!(h.stage(), Stage::Mql);
    h.now = hours(10);
    let d = h.decide(manual(CommandKind::Reject, Some("not_ready")));
    let o = occasions(&p, &d.events);
    assert_eq!(o.release, Some(Some(Release::Rejected)));
    // Recycling is not in this policy's release_on.
    let mut h = Harness::capture(p.clone(), good_fit(), T0);
    h.engage(ev("demo", "demo_requested", hours(1)));
    h.now = hours(2);
    let d = h.decide(manual(CommandKind::Recycle, Some("timing")));
    assert_eq!(
        occasions(&p, &d.events),
        Occasions {
            release: None,
            on: vec![RouteOn::Entered(Stage::Iql)],
            policy_change: false,
            reassign: Vec::new(),
        }
    );
}

#[test]
fn the_first_route_whose_conditions_hold_applies() {
    let p = routed();
    let on = RouteOn::Entered(Stage::Sql);
    let mut h = Harness::capture(p.clone(), good_fit(), T0);
    h.engage(ev("demo", "demo_requested", hours(1)));
    let scores = h.lead.scores_at(&p, hours(1));
    // good_fit has no company_size: not big-sql.
    assert_eq!(
        route_for(&p, &on, &h.lead.profile, None, &scores).map(|r| r.id.as_str()),
        Some("sql")
    );
    let mut profile = good_fit();
    profile.insert("company_size".to_owned(), "5000".to_owned());
    let mut h = Harness::capture(p.clone(), profile, T0);
    h.engage(ev("demo", "demo_requested", hours(1)));
    let scores = h.lead.scores_at(&p, hours(1));
    let expected = if scores.fit >= 30.0 { "big-sql" } else { "sql" };
    assert_eq!(
        route_for(&p, &on, &h.lead.profile, None, &scores).map(|r| r.id.as_str()),
        Some(expected)
    );
    assert!(route_for(&p, &RouteOn::Entered(Stage::Mql), &h.lead.profile, None, &scores).is_none());
}

#[test]
fn an_owner_target_falls_back_when_its_owner_cannot_take_the_lead() {
    let p = routed();
    let hot = &p.routing.routes[2];
    let mut ana = owner("ana", &[]);
    let owners = vec![ana.clone()];
    let (open, cursors) = (BTreeMap::new(), BTreeMap::new());
    let pool = Pool {
        owners: &owners,
        open: &open,
        cursors: &cursors,
    };
    let h = hand_off(hot, &profile(&[]), None, &pool, &BTreeSet::new());
    assert_eq!(h.owner.as_deref(), Some("ana"));
    assert_eq!(h.explanation, "owner ana");
    ana.available = false;
    let owners = vec![ana];
    let pool = Pool {
        owners: &owners,
        ..pool
    };
    let h = hand_off(hot, &profile(&[]), None, &pool, &BTreeSet::new());
    assert_eq!(h.owner, None);
    assert_eq!(h.explanation, "owner ana (out of office) → no owner");
    // Unknown owners are said so.
    let none: Vec<Owner> = Vec::new();
    let pool = Pool {
        owners: &none,
        ..pool
    };
    assert_eq!(
        hand_off(hot, &profile(&[]), None, &pool, &BTreeSet::new()).explanation,
        "owner ana (no such owner) → no owner"
    );
}

#[test]
fn a_team_route_takes_turns_skips_capacity_and_uses_the_fallback_last() {
    let p = routed();
    let sql = &p.routing.routes[1];
    let mut ben = owner("ben", &["emea"]);
    ben.capacity = Some(1);
    let owners = vec![
        owner("chloe", &["emea"]),
        owner("ana", &["emea"]),
        ben,
        owner("queue", &[]),
    ];
    let mut open = BTreeMap::new();
    let mut cursors: BTreeMap<String, TeamCursor> = BTreeMap::new();
    let mut given = Vec::new();
    for _ in 0..5 {
        let pool = Pool {
            owners: &owners,
            open: &open,
            cursors: &cursors,
        };
        let h = hand_off(sql, &profile(&[]), None, &pool, &BTreeSet::new());
        // The same state gives the same choice.
        assert_eq!(h, hand_off(sql, &profile(&[]), None, &pool, &BTreeSet::new()));
        let id = h.owner.clone().expect("an owner");
        *open.entry(id.clone()).or_insert(0u32) += 1;
        if let Some((team, cursor)) = h.cursor {
            cursors.insert(team, cursor);
        }
        given.push((id, h.explanation));
    }
    let ids: Vec<&str> = given.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["ana", "ben", "chloe", "ana", "chloe"]);
    assert_eq!(given[3].1, "team emea round_robin: ben (at capacity, 1/1) → ana");
    // Everyone out: the fallback, said so.
    let away: Vec<Owner> = owners
        .iter()
        .cloned()
        .map(|mut o| {
            o.available = o.id == "queue";
            o
        })
        .collect();
    let pool = Pool {
        owners: &away,
        open: &open,
        cursors: &cursors,
    };
    let h = hand_off(sql, &profile(&[]), None, &pool, &BTreeSet::new());
    assert_eq!(h.owner.as_deref(), Some("queue"));
    assert_eq!(
        h.explanation,
        "team emea round_robin: ana (out of office), ben (out of office), chloe (out of office) → no owner; fallback queue"
    );
    // Excluded owners (an SLA's reassign) are passed over too.
    let pool = Pool {
        owners: &owners,
        open: &BTreeMap::new(),
        cursors: &BTreeMap::new(),
    };
    let excluded: BTreeSet<String> = ["ana".to_owned()].into();
    let h = hand_off(sql, &profile(&[]), None, &pool, &excluded);
    assert_eq!(h.owner.as_deref(), Some("ben"));
    assert_eq!(h.explanation, "team emea round_robin: ana (had it before) → ben");
    // Everyone in the team excluded: the fallback still takes it, even if
    // it had the lead (the queue of last resort).
    let excluded: BTreeSet<String> = ["ana", "ben", "chloe", "queue"].map(str::to_owned).into();
    let h = hand_off(sql, &profile(&[]), None, &pool, &excluded);
    assert_eq!(h.owner.as_deref(), Some("queue"));
    assert_eq!(
        h.explanation,
        "team emea round_robin: ana (had it before), ben (had it before), chloe (had it before) → no owner; fallback queue"
    );
}

fn reassigning() -> Policy {
    let toml = format!("{}{ROUTES}", example_toml()).replace(
        "until = \"sales_contacted\"\n",
        "until = \"sales_contacted\"\nthen = \"reassign\"\n",
    );
    Policy::from_toml(&toml).expect("the reassigning SLA is valid")
}

#[test]
fn an_sla_that_reassigns_sets_off_a_reassign_when_it_breaches() {
    use leadflow_domain::policy::SlaAction;
    use leadflow_domain::workflow::TimerKind;
    let p = reassigning();
    let sla = p
        .slas
        .iter()
        .find(|s| s.id == "sql_first_contact")
        .expect("the SLA");
    assert_eq!(sla.then, SlaAction::Reassign);
    assert!(!sla.recycles());
    let mut h = Harness::capture(p.clone(), good_fit(), T0);
    h.engage(ev("demo", "demo_requested", hours(1)));
    assert_eq!(h.stage(), Stage::Sql);
    let d = h.fire(&TimerKind::Sla("sql_first_contact".to_owned()));
    // The lead stays in SQL: no route of a stage, only the reassign.
    assert_eq!(
        occasions(&p, &d.events),
        Occasions {
            release: None,
            on: Vec::new(),
            policy_change: false,
            reassign: vec!["sql_first_contact".to_owned()],
        }
    );
    assert_eq!(h.stage(), Stage::Sql);
    // The same breach under an SLA that only notifies asks nothing.
    let mut h = Harness::capture(routed(), good_fit(), T0);
    h.engage(ev("demo", "demo_requested", hours(1)));
    let d = h.fire(&TimerKind::Sla("sql_first_contact".to_owned()));
    assert!(matches!(
        &d.events[..],
        [leadflow_domain::workflow::Event::SlaBreached(_)]
    ));
    assert!(occasions(&routed(), &d.events).reassign.is_empty());
}

#[test]
fn a_reassign_needs_a_route_of_its_stage() {
    let toml = example_toml().replace(
        "until = \"sales_contacted\"\n",
        "until = \"sales_contacted\"\nthen = \"reassign\"\n",
    );
    let e = match Policy::from_toml(&toml) {
        Ok(_) => panic!("a reassign without a route is refused"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert_has(&e, "sla.sql_first_contact.then");
    assert_has(&e, "add a [[route]] with on = \"entered:SQL\"");
    let toml = example_toml().replace(
        "until = \"sales_contacted\"\n",
        "until = \"sales_contacted\"\nthen = \"escalate\"\n",
    );
    let e = match Policy::from_toml(&toml) {
        Ok(_) => panic!("an unknown action is refused"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert_has(
        &e,
        "unknown action \"escalate\" (one of \"recycle\", \"reassign\")",
    );
}

#[test]
fn a_territory_keeps_the_team_to_owners_of_the_leads_value() {
    let p = routed();
    let big = &p.routing.routes[0];
    let mut de = owner("dora", &["enterprise"]);
    de.territories = vec!["DE".to_owned(), "AT".to_owned()];
    let mut fr = owner("felix", &["enterprise"]);
    fr.territories = vec!["FR".to_owned()];
    let owners = vec![de, fr, owner("queue-ent", &[])];
    let (open, cursors) = (BTreeMap::new(), BTreeMap::new());
    let pool = Pool {
        owners: &owners,
        open: &open,
        cursors: &cursors,
    };
    let h = hand_off(
        big,
        &profile(&[("country", " fr ")]),
        None,
        &pool,
        &BTreeSet::new(),
    );
    assert_eq!(h.owner.as_deref(), Some("felix"));
    assert_eq!(
        h.explanation,
        "territory country = fr: team enterprise least_loaded: felix"
    );
    let h = hand_off(big, &profile(&[("country", "US")]), None, &pool, &BTreeSet::new());
    assert_eq!(h.owner.as_deref(), Some("queue-ent"));
    let h = hand_off(big, &profile(&[]), None, &pool, &BTreeSet::new());
    assert_eq!(h.owner.as_deref(), Some("queue-ent"));
    assert_eq!(
        h.explanation,
        "team enterprise least_loaded: the lead has no country to match a territory → no owner; fallback queue-ent"
    );
}

/// A pool of these owners, none with open leads.
fn sql_pool(owners: Vec<Owner>) -> PoolState {
    PoolState {
        owners,
        ..PoolState::default()
    }
}

#[test]
fn a_plan_releases_routes_and_counts_in_one_go() {
    let p = routed();
    let mut h = Harness::capture(p.clone(), good_fit(), T0);
    let d = h.engage(ev("demo", "demo_requested", hours(1)));
    let scores = h.lead.scores_at(&p, hours(1));
    let stay = BTreeSet::new();
    let mut pool = sql_pool(vec![owner("ana", &["emea"]), owner("ben", &["emea"])]);
    pool.open.insert("ana".to_owned(), 3);
    let s = Situation {
        policy: &p,
        owner: None,
        stage_before: Some(Stage::Iql),
        stage: Stage::Sql,
        profile: &h.lead.profile,
        scores: &scores,
        policy_change: false,
        stay: &stay,
        account: None,
    };
    let found = occasions(&p, &d.events);
    assert!(reads_pool(&s, &found));
    let planned = plan(&s, &found, &mut pool);
    assert_eq!(
        planned.owner.as_deref(),
        Some("ana"),
        "round robin starts at the first id"
    );
    assert_eq!(planned.counts, BTreeMap::from([("ana".to_owned(), 1)]));
    assert_eq!(pool.open["ana"], 4, "the pool moved as it went");
    assert_eq!(planned.changes.len(), 1);
    assert_eq!(planned.changes[0].cause, ChangeCause::Route);
    assert_eq!(
        planned.changes[0].explanation,
        "route sql on entered:SQL: team emea round_robin: ana"
    );
    assert_eq!(planned.cursors["emea"].last.as_deref(), Some("ana"));

    // Disqualified with an owner: released, counted down, no route read.
    let mut h = Harness::capture(p.clone(), good_fit(), T0);
    h.engage(ev("demo", "demo_requested", hours(1)));
    let d = h.decide(manual(CommandKind::Disqualify, Some("competitor")));
    let found = occasions(&p, &d.events);
    let s = Situation {
        policy: &p,
        owner: Some("ana"),
        stage_before: Some(Stage::Sql),
        stage: h.lead.stage,
        profile: &h.lead.profile,
        scores: &scores,
        policy_change: false,
        stay: &stay,
        account: None,
    };
    assert!(!reads_pool(&s, &found));
    let planned = plan(&s, &found, &mut PoolState::default());
    assert_eq!(planned.owner, None);
    assert_eq!(planned.counts, BTreeMap::from([("ana".to_owned(), -1)]));
    assert_eq!(planned.changes[0].cause, ChangeCause::Release);
    assert_eq!(planned.changes[0].explanation, "released: disqualified");
}

#[test]
fn a_policy_change_routes_open_leads_without_an_owner_and_refits_only_when_asked() {
    let p = routed();
    let h = {
        let mut h = Harness::capture(p.clone(), good_fit(), T0);
        h.engage(ev("demo", "demo_requested", hours(1)));
        h
    };
    let scores = h.lead.scores_at(&p, hours(1));
    let stay = BTreeSet::new();
    let owners = vec![owner("ana", &["emea"]), owner("zed", &["apac"])];
    let s = Situation {
        policy: &p,
        owner: None,
        stage_before: Some(Stage::Sql),
        stage: Stage::Sql,
        profile: &h.lead.profile,
        scores: &scores,
        policy_change: true,
        stay: &stay,
        account: None,
    };
    // No event: the change itself routes the SQL without an owner.
    let none = Occasions::default();
    let planned = plan(&s, &none, &mut sql_pool(owners.clone()));
    assert_eq!(planned.owner.as_deref(), Some("ana"));
    assert_eq!(
        planned.changes[0].explanation,
        "policy change: route sql on entered:SQL: team emea round_robin: ana"
    );
    // An owner out of the route's team keeps the lead, unless asked.
    let owned = Situation {
        owner: Some("zed"),
        ..s
    };
    assert!(!reads_pool(&owned, &none));
    assert!(plan(&owned, &none, &mut sql_pool(owners.clone())).is_empty());
    let mut refit = p.clone();
    refit.routing.reassign_on_policy_change = true;
    let asked = Situation {
        policy: &refit,
        ..owned
    };
    assert!(reads_pool(&asked, &none));
    let planned = plan(&asked, &none, &mut sql_pool(owners.clone()));
    assert_eq!(planned.owner.as_deref(), Some("ana"));
    assert_eq!(
        planned.counts,
        BTreeMap::from([("ana".to_owned(), 1), ("zed".to_owned(), -1)])
    );
    // One the route could give it to keeps it.
    let fits = Situation {
        owner: Some("ana"),
        ..asked
    };
    assert!(plan(&fits, &none, &mut sql_pool(owners)).is_empty());
    // Without the policy change, nothing.
    let plain = Situation {
        policy_change: false,
        ..s
    };
    assert!(!reads_pool(&plain, &none));
}

#[test]
fn an_sla_reassign_passes_the_stay_and_keeps_the_late_owner_when_no_one_else_can() {
    let p = reassigning();
    let h = {
        let mut h = Harness::capture(p.clone(), good_fit(), T0);
        h.engage(ev("demo", "demo_requested", hours(1)));
        h
    };
    let scores = h.lead.scores_at(&p, hours(1));
    let stay: BTreeSet<String> = ["ana".to_owned()].into();
    let found = Occasions {
        reassign: vec!["sql_first_contact".to_owned()],
        ..Occasions::default()
    };
    let s = Situation {
        policy: &p,
        owner: Some("ana"),
        stage_before: Some(Stage::Sql),
        stage: Stage::Sql,
        profile: &h.lead.profile,
        scores: &scores,
        policy_change: false,
        stay: &stay,
        account: None,
    };
    let planned = plan(
        &s,
        &found,
        &mut sql_pool(vec![owner("ana", &["emea"]), owner("ben", &["emea"])]),
    );
    assert_eq!(planned.owner.as_deref(), Some("ben"));
    assert_eq!(planned.changes[0].cause, ChangeCause::Sla);
    assert_eq!(
        planned.changes[0].explanation,
        "sla sql_first_contact breached: route sql on entered:SQL: team emea round_robin: ana (had it before) → ben"
    );
    // An owner given at MQL (not in the SQL stay) is passed over too.
    let none = BTreeSet::new();
    let kept_from_mql = Situation { stay: &none, ..s };
    let planned = plan(
        &kept_from_mql,
        &found,
        &mut sql_pool(vec![owner("ana", &["emea"]), owner("ben", &["emea"])]),
    );
    assert_eq!(planned.owner.as_deref(), Some("ben"));
    // The fallback that has it already keeps it, said so.
    let queue_has_it = Situation {
        owner: Some("queue"),
        ..s
    };
    let planned = plan(
        &queue_has_it,
        &found,
        &mut sql_pool(vec![owner("ana", &["emea"]), owner("queue", &[])]),
    );
    assert_eq!(planned.owner.as_deref(), Some("queue"));
    assert!(!planned.changes[0].assigned);
    assert!(
        planned.changes[0]
            .explanation
            .ends_with("→ no owner; fallback queue; kept by queue"),
        "{}",
        planned.changes[0].explanation
    );
    let mut queue = owner("queue", &[]);
    queue.available = false;
    let planned = plan(&s, &found, &mut sql_pool(vec![owner("ana", &["emea"]), queue]));
    assert_eq!(planned.owner.as_deref(), Some("ana"));
    assert!(!planned.changes[0].assigned);
    assert_eq!(planned.changes[0].to.as_deref(), Some("ana"));
    assert!(
        planned.changes[0]
            .explanation
            .ends_with("fallback queue (out of office) → no owner; kept by ana")
    );
    assert!(planned.counts.is_empty());
}

const ACCOUNT_ROUTES: &str = r#"
[[route]]
id = "named"
on = "entered:SQL"
account_owner = true
fallback = "queue"
[[route.when]]
account_attribute = "tier"
equals = "named"

[[route]]
id = "sql"
on = "entered:SQL"
account_owner = true
team = "emea"
strategy = "round_robin"
fallback = "queue"
"#;

#[test]
fn the_account_owner_comes_first_then_the_team_then_the_fallback() {
    use leadflow_domain::handoff::RouteAccount;
    let p = Policy::from_toml(&format!("{}{ACCOUNT_ROUTES}", example_toml())).expect("valid");
    assert!(p.routing.reads_account());
    assert_eq!(p.routing.routes[0].target, RouteTarget::AccountOwner);
    assert!(p.routing.routes[1].account_owner);
    let mut h = Harness::capture(p.clone(), good_fit(), T0);
    h.engage(ev("demo", "demo_requested", hours(1)));
    let scores = h.lead.scores_at(&p, hours(1));
    let on = RouteOn::Entered(Stage::Sql);
    let named = RouteAccount {
        owner: Some("dora".to_owned()),
        attributes: BTreeMap::from([("tier".to_owned(), "named".to_owned())]),
    };
    let plain = RouteAccount {
        owner: Some("dora".to_owned()),
        attributes: BTreeMap::new(),
    };
    // The account's attributes choose the route; a lead without an
    // account matches no account condition.
    let id = |account: Option<&RouteAccount>| {
        route_for(&p, &on, &h.lead.profile, account, &scores).map(|r| r.id.clone())
    };
    assert_eq!(id(Some(&named)).as_deref(), Some("named"));
    assert_eq!(id(Some(&plain)).as_deref(), Some("sql"));
    assert_eq!(id(None).as_deref(), Some("sql"));
    let mut dora = owner("dora", &[]);
    let owners = vec![owner("ana", &["emea"]), dora.clone(), owner("queue", &[])];
    let (open, cursors) = (BTreeMap::new(), BTreeMap::new());
    let pool = Pool {
        owners: &owners,
        open: &open,
        cursors: &cursors,
    };
    let sql = &p.routing.routes[1];
    let given = hand_off(sql, &h.lead.profile, Some("dora"), &pool, &BTreeSet::new());
    assert_eq!(given.owner.as_deref(), Some("dora"));
    assert_eq!(given.explanation, "account owner dora");
    // Out of office: the team.
    dora.available = false;
    let owners = vec![owner("ana", &["emea"]), dora, owner("queue", &[])];
    let pool = Pool {
        owners: &owners,
        ..pool
    };
    let given = hand_off(sql, &h.lead.profile, Some("dora"), &pool, &BTreeSet::new());
    assert_eq!(given.owner.as_deref(), Some("ana"));
    assert_eq!(
        given.explanation,
        "account owner dora (out of office); team emea round_robin: ana"
    );
    // The account owner alone, and none: the fallback.
    let only = &p.routing.routes[0];
    let given = hand_off(only, &h.lead.profile, None, &pool, &BTreeSet::new());
    assert_eq!(given.owner.as_deref(), Some("queue"));
    assert_eq!(given.explanation, "account owner: none; fallback queue");
    // A refit keeps a lead with its account's owner.
    assert!(leadflow_domain::handoff::admits(
        sql,
        &h.lead.profile,
        Some("dora"),
        &pool,
        "dora"
    ));
    assert!(!leadflow_domain::handoff::admits(
        only,
        &h.lead.profile,
        None,
        &pool,
        "ana"
    ));
    // Bad keys are refused with their path.
    let e = errors("[[route]]\nid = \"r\"\non = \"entered:SQL\"\naccount_owner = \"yes\"\n");
    assert_has(&e, "route[0].account_owner");
    let e = errors(
        "[[route]]\nid = \"r\"\non = \"entered:SQL\"\naccount_owner = true\n[[route.when]]\naccount_attribute = \"tier\"\nattribute = \"x\"\nequals = \"y\"\n",
    );
    assert_has(&e, "exactly one");
}

#[test]
fn an_account_route_keeps_the_account_owner_or_chooses_one() {
    use leadflow_domain::handoff::{RouteAccount, account_handoff};
    let p = crate::common::accounted(
        "\n[[route]]\nid = \"abm\"\non = \"account_entered:MQA\"\naccount_owner = true\nteam = \"abm\"\nstrategy = \"round_robin\"\n[[route.when]]\naccount_attribute = \"tier\"\none_of = [\"named\", \"strategic\"]\n",
    );
    assert_eq!(p.routing.routes[0].on, RouteOn::AccountMqa);
    let owners = vec![owner("ana", &["abm"]), owner("ben", &["abm"]), owner("dora", &[])];
    let (open, cursors) = (BTreeMap::new(), BTreeMap::new());
    let pool = Pool {
        owners: &owners,
        open: &open,
        cursors: &cursors,
    };
    let mut account = RouteAccount {
        owner: None,
        attributes: BTreeMap::from([("tier".to_owned(), "named".to_owned())]),
    };
    let (route, chosen) = account_handoff(&p, &account, &pool).expect("the route matches");
    assert_eq!(route.id, "abm");
    assert_eq!(chosen.owner.as_deref(), Some("ana"));
    assert_eq!(
        chosen.explanation,
        "account owner: none; team abm round_robin: ana"
    );
    account.owner = Some("dora".to_owned());
    let (_, kept) = account_handoff(&p, &account, &pool).expect("the route matches");
    assert_eq!(
        (kept.owner.as_deref(), kept.explanation.as_str()),
        (Some("dora"), "account owner dora")
    );
    // An id no owner has is replaced by the route's choice.
    account.owner = Some("ghost".to_owned());
    let (_, replaced) = account_handoff(&p, &account, &pool).expect("the route matches");
    assert_eq!(replaced.owner.as_deref(), Some("ana"));
    assert_eq!(
        replaced.explanation,
        "account owner ghost (no such owner); account owner: none; team abm round_robin: ana"
    );
    account.attributes.clear();
    assert!(
        account_handoff(&p, &account, &pool).is_none(),
        "its conditions fail"
    );
    // Refused: without accounts, on another account stage, lead conditions.
    let e = errors("[[route]]\nid = \"r\"\non = \"account_entered:MQA\"\nowner = \"a\"\n");
    assert_has(&e, "needs [accounts] and [stages.MQA]");
    let e = errors("[[route]]\nid = \"r\"\non = \"account_entered:ENGAGED\"\nowner = \"a\"\n");
    assert_has(&e, "an account route starts on MQA");
    let e = match Policy::from_toml(&crate::common::accounted_toml(
        "\n[[route]]\nid = \"r\"\non = \"account_entered:MQA\"\nowner = \"a\"\nreassign = true\n[[route.when]]\nscore = \"fit\"\nat_least = 1\n",
    )) {
        Ok(_) => panic!("refused"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert_has(&e, "account_attribute conditions only");
    let t = match Policy::from_toml(&crate::common::accounted_toml(
        "\n[[route]]\nid = \"r\"\non = \"account_entered:MQA\"\nteam = \"t\"\nstrategy = \"round_robin\"\nterritory = \"country\"\n",
    )) {
        Ok(_) => panic!("refused"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert_has(&t, "no lead to read a territory from");
    assert_has(&e, "never takes a member from its owner");
}

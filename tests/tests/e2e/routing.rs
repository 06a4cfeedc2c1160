//! Routing over the API: leads entering a stage are handed to a team's
//! owners by the policy's `[[route]]` (round robin exactly, even when they
//! arrive at once; never past an owner's capacity; then the fallback; else
//! unrouted and said so), released on the moves `[routing] release_on`
//! names, and assigned by hand with `AssignLead`; every change is in the
//! lead's history and on the stream.

use std::collections::BTreeMap;
use std::time::Duration;

use leadflow_domain::{Span, Timestamp};
use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::owner_service_client::OwnerServiceClient;
use tonic::transport::Channel;

/// 2026-01-05T09:00:00Z.
const T0: Timestamp = Timestamp::from_secs(1_767_603_600);

fn owners(server: &TestServer) -> OwnerServiceClient<Channel> {
    OwnerServiceClient::new(server.channel.clone())
}

/// The default policy with `routes` appended.
pub(crate) fn routed(routes: &str) -> String {
    format!("{}\n{routes}", leadflow_server::DEFAULT_POLICY)
}

const ROUND_ROBIN: &str = r#"
[[route]]
id = "sql-emea"
on = "entered:SQL"
team = "emea"
strategy = "round_robin"
"#;

pub(crate) async fn add_owner(
    client: &mut OwnerServiceClient<Channel>,
    id: &str,
    teams: &[&str],
    capacity: Option<i32>,
) -> anyhow::Result<()> {
    client
        .create_owner(pb::CreateOwnerRequest {
            owner: Some(pb::Owner {
                id: id.to_owned(),
                display_name: format!("Rep {id}"),
                teams: teams.iter().map(|t| (*t).to_owned()).collect(),
                capacity,
                weight: 1,
                available: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// `n` leads, created one by one, then made sales-ready all at once (each
/// by its own call, at most 16 in flight): their ids.
async fn sales_ready_at_once(server: &mut TestServer, prefix: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(create(server, &format!("{prefix}{i}@acme.com")).await?.id);
    }
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut calls = tokio::task::JoinSet::new();
    for id in &ids {
        let mut leads = server.leads.clone();
        let gate = gate.clone();
        let request = record(id, engagement(&format!("demo-{id}"), "demo_requested"));
        calls.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            leads.record_engagement(request).await?;
            anyhow::Ok(())
        });
    }
    while let Some(done) = calls.join_next().await {
        done??;
    }
    Ok(ids)
}

/// Each lead's owner ("" for none), by lead id.
async fn owners_of(server: &mut TestServer, ids: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for id in ids {
        out.insert(id.clone(), server.lead(id).await?.owner_id);
    }
    Ok(out)
}

fn counts(owners: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for o in owners.values() {
        *out.entry(o.clone()).or_insert(0) += 1;
    }
    out
}

/// Every lead of a page of ListLeads filtered by `filter`.
async fn listed(server: &mut TestServer, filter: pb::LeadFilter) -> anyhow::Result<Vec<pb::Lead>> {
    Ok(server
        .leads
        .list_leads(pb::ListLeadsRequest {
            filter: Some(filter),
            page_size: 500,
            ..Default::default()
        })
        .await?
        .into_inner()
        .leads)
}

async fn open_leads(client: &mut OwnerServiceClient<Channel>, id: &str) -> anyhow::Result<i64> {
    Ok(client
        .get_owner(pb::GetOwnerRequest { id: id.to_owned() })
        .await?
        .into_inner()
        .owner
        .map_or(0, |o| o.open_leads))
}

async fn leads_entering_sql_at_once_are_spread_round_robin_exactly(
    mut server: TestServer,
) -> anyhow::Result<()> {
    activate_policy(&mut server, routed(ROUND_ROBIN)).await?;
    let mut admin = owners(&server);
    for id in ["ana", "ben", "chloe"] {
        add_owner(&mut admin, id, &["emea"], None).await?;
    }
    add_owner(&mut admin, "zed", &["amer"], None).await?;
    let ids = sales_ready_at_once(&mut server, "rr", 100).await?;
    let given = owners_of(&mut server, &ids).await?;
    let spread = counts(&given);
    assert_eq!(
        spread.keys().collect::<Vec<_>>(),
        ["ana", "ben", "chloe"],
        "{spread:?}"
    );
    let (min, max) = (
        spread.values().min().copied().unwrap_or(0),
        spread.values().max().copied().unwrap_or(0),
    );
    assert!(max - min <= 1, "round robin is exact: {spread:?}");
    // One assignment per lead, each in its history with the route and the
    // owners considered; the open counts follow.
    for id in ids.iter().take(10) {
        let history = full_history(&mut server, id, 0).await?;
        let assigned: Vec<&pb::Assignment> = history
            .iter()
            .filter_map(|e| match &e.entry {
                Some(pb::history_entry::Entry::Assignment(a)) => Some(a),
                _ => None,
            })
            .collect();
        assert_eq!(assigned.len(), 1, "{id}: {assigned:?}");
        let a = assigned[0];
        assert_eq!(a.route_id, "sql-emea");
        assert_eq!(a.cause, i32::from(pb::AssignmentCause::Route));
        assert_eq!(a.to_owner, given[id]);
        assert_eq!(a.stage, i32::from(pb::Stage::Sql));
        assert!(
            a.explanation
                .starts_with("route sql-emea on entered:SQL: team emea round_robin: "),
            "{}",
            a.explanation
        );
    }
    for (owner, n) in &spread {
        assert_eq!(open_leads(&mut admin, owner).await?, i64::try_from(*n)?);
        let theirs = listed(
            &mut server,
            pb::LeadFilter {
                owner_ids: vec![owner.clone()],
                ..Default::default()
            },
        )
        .await?;
        assert_eq!(theirs.len(), *n, "ListLeads by owner {owner}");
        assert!(theirs.iter().all(|l| l.owner_id == *owner));
    }
    // A lead that was not routed (it stays in IQL) is unassigned.
    let quiet = create(&mut server, "quiet@acme.com").await?;
    let unassigned = listed(
        &mut server,
        pb::LeadFilter {
            unassigned: true,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(
        unassigned.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        [quiet.id.as_str()]
    );
    Ok(())
}

async fn capacity_is_never_passed_then_the_fallback_then_unrouted(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let routes = r#"
[[route]]
id = "sql-emea"
on = "entered:SQL"
team = "emea"
strategy = "least_loaded"
fallback = "queue"
"#;
    activate_policy(&mut server, routed(routes)).await?;
    let mut admin = owners(&server);
    add_owner(&mut admin, "ana", &["emea"], Some(2)).await?;
    add_owner(&mut admin, "ben", &["emea"], Some(1)).await?;
    add_owner(&mut admin, "queue", &[], Some(2)).await?;
    let mut stream = subscribe(&mut server, "router", pb::StartPosition::Latest, 0, None).await?;
    let ids = sales_ready_at_once(&mut server, "cap", 7).await?;
    let spread = counts(&owners_of(&mut server, &ids).await?);
    assert_eq!(
        spread,
        BTreeMap::from([
            (String::new(), 2),
            ("ana".to_owned(), 2),
            ("ben".to_owned(), 1),
            ("queue".to_owned(), 2),
        ])
    );
    // The stream says who got each lead, and why the last two got no one.
    let mut assigned = 0;
    let mut unrouted = Vec::new();
    while let Some(e) = next_event(&mut stream, Duration::from_secs(5)).await? {
        match pb::EventKind::try_from(e.kind) {
            Ok(pb::EventKind::LeadAssigned) => assigned += 1,
            Ok(pb::EventKind::LeadUnrouted) => unrouted.push(e),
            _ => {}
        }
        if assigned + unrouted.len() == 7 {
            break;
        }
    }
    assert_eq!((assigned, unrouted.len()), (5, 2));
    let Some(pb::event::Payload::Assignment(why)) = &unrouted[0].payload else {
        anyhow::bail!("an unrouted event without its assignment: {:?}", unrouted[0]);
    };
    assert_eq!(why.to_owner, "");
    assert_eq!(
        why.explanation,
        "route sql-emea on entered:SQL: team emea least_loaded: ana (at capacity, 2/2), ben (at capacity, 1/1) → no owner; fallback queue (at capacity, 2/2) → no owner"
    );
    // A recycled lead is released (the default release_on): its owner's
    // open leads fall, and the history says so.
    let ana_lead = server
        .leads
        .list_leads(pb::ListLeadsRequest {
            filter: Some(pb::LeadFilter {
                owner_ids: vec!["ana".to_owned()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .leads
        .remove(0);
    server
        .leads
        .transition(transition(&ana_lead.id, pb::Action::Recycle, "timing"))
        .await?;
    assert_eq!(server.lead(&ana_lead.id).await?.owner_id, "");
    assert_eq!(open_leads(&mut admin, "ana").await?, 1);
    let shapes: Vec<String> = full_history(&mut server, &ana_lead.id, 0)
        .await?
        .iter()
        .map(entry_shape)
        .filter(|s| s.starts_with("owner:"))
        .collect();
    assert_eq!(shapes, ["owner:>ana", "owner:ana>"]);
    Ok(())
}

async fn a_lead_is_assigned_and_released_by_hand(mut server: TestServer) -> anyhow::Result<()> {
    let mut admin = owners(&server);
    add_owner(&mut admin, "ana", &["emea"], Some(1)).await?;
    add_owner(&mut admin, "ben", &["emea"], None).await?;
    let lead = create(&mut server, "hand@acme.com").await?;
    let mut stream = subscribe(
        &mut server,
        "sales",
        pb::StartPosition::Latest,
        0,
        Some(pb::EventFilter {
            kinds: vec![pb::EventKind::LeadAssigned.into()],
            ..Default::default()
        }),
    )
    .await?;
    let request = pb::AssignLeadRequest {
        request_id: "a-1".to_owned(),
        lead: by_id(&lead.id),
        target: Some(pb::assign_lead_request::Target::OwnerId("ana".to_owned())),
        reason: "asked for by the account team".to_owned(),
        ..Default::default()
    };
    let first = server.leads.assign_lead(request.clone()).await?.into_inner();
    let change = first.assignment.clone().expect("a change");
    assert_eq!(
        (change.from_owner.as_str(), change.to_owner.as_str()),
        ("", "ana")
    );
    assert_eq!(change.cause, i32::from(pb::AssignmentCause::Manual));
    assert_eq!(change.reason, "asked for by the account team");
    assert_eq!(first.lead.as_ref().map(|l| l.owner_id.as_str()), Some("ana"));
    // A retry answers the first result and changes nothing more.
    let again = server.leads.assign_lead(request).await?.into_inner();
    assert_eq!(again, first);
    assert_eq!(open_leads(&mut admin, "ana").await?, 1);
    // A person may go past a capacity; the same owner again is no change.
    let lead2 = create(&mut server, "hand2@acme.com").await?;
    let to_ana = |id: &str| pb::AssignLeadRequest {
        lead: by_id(id),
        target: Some(pb::assign_lead_request::Target::OwnerId("ana".to_owned())),
        ..Default::default()
    };
    server.leads.assign_lead(to_ana(&lead2.id)).await?;
    assert_eq!(open_leads(&mut admin, "ana").await?, 2);
    let same = server.leads.assign_lead(to_ana(&lead.id)).await?.into_inner();
    assert_eq!(same.assignment, None);
    // Released: the owner's count falls.
    let released = server
        .leads
        .assign_lead(pb::AssignLeadRequest {
            lead: by_id(&lead.id),
            target: Some(pb::assign_lead_request::Target::Release(true)),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        released.assignment.map(|a| (a.from_owner, a.to_owner)),
        Some(("ana".to_owned(), String::new()))
    );
    assert_eq!(open_leads(&mut admin, "ana").await?, 1);
    let got = events(&mut stream, 3, Duration::from_secs(5)).await?;
    assert_eq!(
        got.iter().map(describe).collect::<Vec<_>>(),
        ["LEAD_ASSIGNED:>ana", "LEAD_ASSIGNED:>ana", "LEAD_ASSIGNED:ana>"]
    );
    let shapes: Vec<String> = full_history(&mut server, &lead.id, 2)
        .await?
        .iter()
        .map(entry_shape)
        .collect();
    assert_eq!(shapes, ["->1", "owner:>ana", "owner:ana>"]);
    Ok(())
}

async fn bad_assignments_are_refused_with_their_fields(mut server: TestServer) -> anyhow::Result<()> {
    let lead = create(&mut server, "bad@acme.com").await?;
    let good = pb::AssignLeadRequest {
        lead: by_id(&lead.id),
        target: Some(pb::assign_lead_request::Target::OwnerId("nobody".to_owned())),
        ..Default::default()
    };
    let missing = server
        .leads
        .assign_lead(good.clone())
        .await
        .expect_err("no such owner");
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    for (request, field) in [
        (
            pb::AssignLeadRequest {
                target: None,
                ..good.clone()
            },
            "target",
        ),
        (
            pb::AssignLeadRequest {
                target: Some(pb::assign_lead_request::Target::Release(false)),
                ..good.clone()
            },
            "target",
        ),
        (
            pb::AssignLeadRequest {
                target: Some(pb::assign_lead_request::Target::OwnerId(" ".to_owned())),
                ..good.clone()
            },
            "owner_id",
        ),
        (
            pb::AssignLeadRequest {
                target: Some(pb::assign_lead_request::Target::OwnerId("o".repeat(200))),
                ..good.clone()
            },
            "owner_id",
        ),
        (
            pb::AssignLeadRequest {
                reason: "r".repeat(1_001),
                ..good.clone()
            },
            "reason",
        ),
        (
            pb::AssignLeadRequest {
                lead: None,
                ..good.clone()
            },
            "lead",
        ),
        (
            pb::AssignLeadRequest {
                request_id: "x".repeat(200),
                ..good.clone()
            },
            "request_id",
        ),
    ] {
        assert_invalid(server.leads.assign_lead(request.clone()).await, field, &request);
    }
    let stale = server
        .leads
        .assign_lead(pb::AssignLeadRequest {
            expected_version: Some(7),
            target: Some(pb::assign_lead_request::Target::Release(true)),
            ..good.clone()
        })
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), tonic::Code::Aborted);
    let request = pb::ListLeadsRequest {
        filter: Some(pb::LeadFilter {
            owner_ids: vec!["ana".to_owned()],
            unassigned: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_invalid(
        server.leads.list_leads(request.clone()).await,
        "filter.unassigned",
        &request,
    );
    let request = pb::ListLeadsRequest {
        filter: Some(pb::LeadFilter {
            owner_ids: vec![String::new()],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_invalid(
        server.leads.list_leads(request.clone()).await,
        "filter.owner_ids[0]",
        &request,
    );
    // A policy with a bad route is refused with its path.
    let refused = server
        .policies
        .create_policy_version(pb::CreatePolicyVersionRequest {
            source: routed("[[route]]\nid = \"r\"\non = \"entered:SQL\"\nteam = \"emea\"\n"),
            ..Default::default()
        })
        .await
        .expect_err("no strategy");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(fields(&refused), ["source"]);
    assert!(
        refused
            .message()
            .contains("route[0].strategy: required with team"),
        "{refused:?}"
    );
    Ok(())
}

/// The default policy, its SQL SLA reassigning, with a round robin route.
fn reassigning() -> String {
    routed(
        r#"
[[route]]
id = "sql-emea"
on = "entered:SQL"
team = "emea"
strategy = "round_robin"
fallback = "queue"
"#,
    )
    .replace(
        "until = \"sales_contacted\"\n",
        "until = \"sales_contacted\"\nthen = \"reassign\"\n",
    )
}

/// The lead's owner changes in its history: `owner:<from>><to>`.
async fn owner_changes(server: &mut TestServer, lead: &str) -> anyhow::Result<Vec<String>> {
    Ok(full_history(server, lead, 0)
        .await?
        .iter()
        .map(entry_shape)
        .filter(|s| s.starts_with("owner:"))
        .collect())
}

async fn a_breached_sla_reassigns_past_the_owners_of_the_stay_once(
    mut server: TestServer,
) -> anyhow::Result<()> {
    activate_policy(&mut server, reassigning()).await?;
    let mut admin = owners(&server);
    add_owner(&mut admin, "ana", &["emea"], None).await?;
    add_owner(&mut admin, "ben", &["emea"], Some(2)).await?;
    add_owner(&mut admin, "queue", &[], None).await?;
    let mut stream = subscribe(&mut server, "router", pb::StartPosition::Latest, 0, None).await?;
    // slow → ana, quick → ben (contacted in time), later → ana an hour on.
    let slow = create(&mut server, "slow@acme.com").await?.id;
    let quick = create(&mut server, "quick@acme.com").await?.id;
    let later = create(&mut server, "later@acme.com").await?.id;
    for lead in [&slow, &quick] {
        server
            .leads
            .record_engagement(record(
                lead,
                engagement(&format!("demo-{lead}"), "demo_requested"),
            ))
            .await?;
    }
    server.manual_clock().advance(Span::from_hours(1));
    server
        .leads
        .record_engagement(record(&later, engagement("demo-later", "demo_requested")))
        .await?;
    server
        .leads
        .record_engagement(record(&quick, engagement("call", "sales_contacted")))
        .await?;
    let given = owners_of(&mut server, &[slow.clone(), quick.clone(), later.clone()]).await?;
    assert_eq!(
        [&given[&slow], &given[&quick], &given[&later]],
        ["ana", "ben", "ana"]
    );
    // slow's SLA breaches: two replicas' workers fire it at once, once.
    server
        .manual_clock()
        .advance(Span::from_hours(23) + Span::from_secs(1));
    let url = server.database_url().to_owned();
    let other = leadflow_engine::Engine::new(
        leadflow_store::Store::connect(&url, &leadflow_store::StoreOptions::default()).await?,
        server.clock.clone().expect("clock"),
    );
    let mine = server.engine.clone();
    let (a, b) = tokio::join!(mine.fire_due_timers(100), other.fire_due_timers(100));
    assert_eq!(a? + b?, 1, "only slow's SLA is due");
    assert_eq!(server.lead(&slow).await?.owner_id, "ben");
    assert_eq!(
        owner_changes(&mut server, &slow).await?,
        ["owner:>ana", "owner:ana>ben"]
    );
    assert_eq!(
        owner_changes(&mut server, &quick).await?,
        ["owner:>ben"],
        "contacted in time"
    );
    let mut seen = Vec::new();
    while let Some(e) = next_event(&mut stream, Duration::from_secs(5)).await? {
        if e.lead.as_ref().is_some_and(|l| l.id == slow) {
            seen.push(e.clone());
        }
        if matches!(&e.payload, Some(pb::event::Payload::Assignment(a)) if a.cause == pb::AssignmentCause::Sla as i32)
        {
            break;
        }
    }
    let shapes: Vec<String> = seen.iter().map(describe).collect();
    assert_eq!(
        shapes[shapes.len() - 2..],
        ["SLA_BREACHED:sql_first_contact", "LEAD_ASSIGNED:ana>ben"]
    );
    let Some(pb::event::Payload::Assignment(why)) = &seen.last().expect("an event").payload else {
        anyhow::bail!("no assignment");
    };
    assert_eq!(
        why.explanation,
        "sla sql_first_contact breached: route sql-emea on entered:SQL: team emea round_robin: ana (had it before) → ben"
    );
    assert_eq!(why.route_id, "sql-emea");
    assert_eq!(
        (
            open_leads(&mut admin, "ana").await?,
            open_leads(&mut admin, "ben").await?
        ),
        (1, 2)
    );

    // later's SLA: ana had it, ben is at capacity, the fallback queue is
    // out of office: it keeps ana, and LEAD_UNROUTED says why.
    admin
        .update_owner(pb::UpdateOwnerRequest {
            owner: Some(pb::Owner {
                id: "queue".to_owned(),
                display_name: "Rep queue".to_owned(),
                available: false,
                weight: 1,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    server.manual_clock().advance(Span::from_hours(1));
    assert_eq!(server.engine.fire_due_timers(100).await?, 1);
    assert_eq!(server.lead(&later).await?.owner_id, "ana");
    let unrouted = loop {
        let Some(e) = next_event(&mut stream, Duration::from_secs(5)).await? else {
            anyhow::bail!("no LEAD_UNROUTED for later");
        };
        if e.lead.as_ref().is_some_and(|l| l.id == later) && e.kind == pb::EventKind::LeadUnrouted as i32 {
            break e;
        }
    };
    let Some(pb::event::Payload::Assignment(why)) = &unrouted.payload else {
        anyhow::bail!("no assignment");
    };
    assert_eq!((why.from_owner.as_str(), why.to_owner.as_str()), ("ana", "ana"));
    assert_eq!(
        why.explanation,
        "sla sql_first_contact breached: route sql-emea on entered:SQL: team emea round_robin: ana (had it before), ben (at capacity, 2/2) → no owner; fallback queue (out of office) → no owner; kept by ana"
    );
    assert_eq!(open_leads(&mut admin, "ana").await?, 1);
    // Fired once: nothing is left to fire.
    server.manual_clock().advance(Span::from_days(2));
    assert_eq!(server.engine.fire_due_timers(100).await?, 0);
    Ok(())
}

/// Activates `source` and runs its re-score to its end.
async fn activate_and_rescore(server: &mut TestServer, source: String) -> anyhow::Result<()> {
    activate_policy(server, source).await?;
    while let Some(job) = server.engine.run_rescore_batch(50).await? {
        if !job.is_running() {
            break;
        }
    }
    Ok(())
}

async fn a_new_policy_routes_the_open_leads_it_finds_and_refits_only_when_asked(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let mut admin = owners(&server);
    for id in ["ana", "ben", "chloe"] {
        add_owner(&mut admin, id, &["emea"], None).await?;
    }
    add_owner(&mut admin, "zed", &["apac"], None).await?;
    // Three SQLs and an IQL before any route.
    let ids = sales_ready_at_once(&mut server, "before", 3).await?;
    let iql = create(&mut server, "iql@acme.com").await?.id;
    assert!(owners_of(&mut server, &ids).await?.values().all(String::is_empty));
    activate_and_rescore(&mut server, routed(ROUND_ROBIN)).await?;
    let given = owners_of(&mut server, &ids).await?;
    assert_eq!(
        counts(&given),
        BTreeMap::from([
            ("ana".to_owned(), 1),
            ("ben".to_owned(), 1),
            ("chloe".to_owned(), 1)
        ])
    );
    assert_eq!(server.lead(&iql).await?.owner_id, "", "no route for IQL");
    let first = &ids[0];
    let changes = owner_changes(&mut server, first).await?;
    assert_eq!(changes.len(), 1, "{changes:?}");
    // Another team's route: the owners stay without reassign_on_policy_change…
    let apac = ROUND_ROBIN.replace("team = \"emea\"", "team = \"apac\"");
    activate_and_rescore(&mut server, routed(&apac)).await?;
    assert_eq!(owners_of(&mut server, &ids).await?, given);
    // …and move to the route's team with it.
    activate_and_rescore(
        &mut server,
        routed(&format!("[routing]\nreassign_on_policy_change = true\n{apac}")),
    )
    .await?;
    let moved = owners_of(&mut server, &ids).await?;
    assert!(moved.values().all(|o| o == "zed"), "{moved:?}");
    assert_eq!(
        (
            open_leads(&mut admin, "zed").await?,
            open_leads(&mut admin, "ana").await?
        ),
        (3, 0)
    );
    let shapes = owner_changes(&mut server, first).await?;
    assert_eq!(
        shapes.last().map(String::as_str),
        Some(format!("owner:{}>zed", given[first]).as_str())
    );
    Ok(())
}

async fn a_simulation_foretells_the_owners_activation_gives(mut server: TestServer) -> anyhow::Result<()> {
    let mut admin = owners(&server);
    add_owner(&mut admin, "ana", &["emea"], Some(1)).await?;
    add_owner(&mut admin, "ben", &["emea"], None).await?;
    let ids = sales_ready_at_once(&mut server, "sim", 4).await?;
    let draft = routed(ROUND_ROBIN);
    let sim = server
        .policies
        .simulate_policy(pb::SimulatePolicyRequest {
            policy: Some(pb::simulate_policy_request::Policy::Source(draft.clone())),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!((sim.assigned, sim.unrouted), (4, 0));
    let loads: Vec<(&str, i64, i64, i64, i64)> = sim
        .owner_loads
        .iter()
        .map(|o| (o.owner_id.as_str(), o.open_before, o.open_after, o.given, o.taken))
        .collect();
    assert_eq!(loads, [("ana", 0, 1, 1, 0), ("ben", 0, 3, 3, 0)]);
    let foretold: BTreeMap<String, String> = sim
        .assignments
        .iter()
        .map(|a| {
            let to = a
                .assignment
                .as_ref()
                .map(|x| x.to_owner.clone())
                .unwrap_or_default();
            (a.lead_id.clone(), to)
        })
        .collect();
    assert_eq!(foretold.len(), 4);
    let second = sim.assignments[2].assignment.clone().unwrap_or_default();
    assert_eq!(
        second.explanation,
        "policy change: route sql-emea on entered:SQL: team emea round_robin: ana (at capacity, 1/1) → ben"
    );
    // Nothing was written: no owner yet.
    assert!(owners_of(&mut server, &ids).await?.values().all(String::is_empty));
    assert_eq!(open_leads(&mut admin, "ben").await?, 0);
    // Activation gives exactly what the simulation said.
    activate_and_rescore(&mut server, draft).await?;
    assert_eq!(owners_of(&mut server, &ids).await?, foretold);
    Ok(())
}

async fn a_waiting_lead_is_routed_when_capacity_frees(mut server: TestServer) -> anyhow::Result<()> {
    activate_policy(&mut server, routed(ROUND_ROBIN)).await?;
    let mut admin = owners(&server);
    add_owner(&mut admin, "ana", &["emea"], Some(1)).await?;
    let ids = sales_ready_at_once(&mut server, "wait", 1).await?;
    let first = &ids[0];
    let mut waiting = Vec::new();
    for i in 0..3 {
        let id = create(&mut server, &format!("waiting{i}@acme.com")).await?.id;
        server
            .leads
            .record_engagement(record(&id, engagement(&format!("demo-w{i}"), "demo_requested")))
            .await?;
        waiting.push(id);
    }
    assert_eq!(server.lead(first).await?.owner_id, "ana");
    assert!(
        owners_of(&mut server, &waiting)
            .await?
            .values()
            .all(String::is_empty)
    );
    assert_eq!(server.engine.route_woken(50).await?, 0, "nothing freed yet");
    let mut stream = subscribe(&mut server, "router", pb::StartPosition::Latest, 0, None).await?;

    // ana's lead is recycled: the longest waiting lead takes its place.
    server
        .leads
        .transition(transition(first, pb::Action::Recycle, "timing"))
        .await?;
    assert_eq!(server.engine.route_woken(50).await?, 1, "one place freed");
    assert_eq!(server.lead(&waiting[0]).await?.owner_id, "ana");
    assert_eq!(
        owner_changes(&mut server, &waiting[0]).await?,
        ["owner:>", "owner:>ana"]
    );
    assert_eq!(server.engine.route_woken(50).await?, 0, "the others sleep again");
    let assigned = loop {
        let Some(e) = next_event(&mut stream, Duration::from_secs(5)).await? else {
            anyhow::bail!("no LEAD_ASSIGNED for the waiting lead");
        };
        if e.kind == pb::EventKind::LeadAssigned as i32 && e.lead.as_ref().is_some_and(|l| l.id == waiting[0])
        {
            break e;
        }
    };
    let Some(pb::event::Payload::Assignment(why)) = &assigned.payload else {
        anyhow::bail!("no assignment");
    };
    assert_eq!(
        why.explanation,
        "capacity freed: route sql-emea on entered:SQL: team emea round_robin: ana"
    );

    // More capacity: the next waiting lead.
    admin
        .update_owner(pb::UpdateOwnerRequest {
            owner: Some(pb::Owner {
                id: "ana".to_owned(),
                display_name: "Rep ana".to_owned(),
                teams: vec!["emea".to_owned()],
                capacity: Some(2),
                weight: 1,
                available: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    assert_eq!(server.engine.route_woken(50).await?, 1);
    assert_eq!(server.lead(&waiting[1]).await?.owner_id, "ana");
    // A new owner of the team: the last one.
    add_owner(&mut admin, "ben", &["emea"], None).await?;
    assert_eq!(server.engine.route_woken(50).await?, 1);
    assert_eq!(server.lead(&waiting[2]).await?.owner_id, "ben");
    assert_eq!(server.engine.route_woken(50).await?, 0);
    assert_eq!(
        (
            open_leads(&mut admin, "ana").await?,
            open_leads(&mut admin, "ben").await?
        ),
        (2, 1)
    );
    Ok(())
}

async fn assign(server: &mut TestServer, lead: &str, owner: &str) -> anyhow::Result<()> {
    server
        .leads
        .assign_lead(pb::AssignLeadRequest {
            lead: by_id(lead),
            target: Some(pb::assign_lead_request::Target::OwnerId(owner.to_owned())),
            ..Default::default()
        })
        .await?;
    Ok(())
}

async fn a_merge_keeps_one_owner(mut server: TestServer) -> anyhow::Result<()> {
    let mut admin = owners(&server);
    add_owner(&mut admin, "ana", &["emea"], None).await?;
    add_owner(&mut admin, "ben", &["emea"], None).await?;
    // The survivor has no owner: the duplicate's passes to it.
    let survivor = create(&mut server, "survivor@acme.com").await?.id;
    let duplicate = create(&mut server, "duplicate@acme.com").await?.id;
    assign(&mut server, &duplicate, "ana").await?;
    server
        .leads
        .merge_leads(pb::MergeLeadsRequest {
            survivor: by_id(&survivor),
            duplicate: by_id(&duplicate),
            ..Default::default()
        })
        .await?;
    assert_eq!(server.lead(&survivor).await?.owner_id, "ana");
    assert_eq!(owner_changes(&mut server, &survivor).await?, ["owner:>ana"]);
    let history = full_history(&mut server, &survivor, 0).await?;
    let Some(pb::history_entry::Entry::Assignment(taken)) = history.iter().rev().find_map(|h| {
        h.entry
            .clone()
            .filter(|e| matches!(e, pb::history_entry::Entry::Assignment(_)))
    }) else {
        anyhow::bail!("no assignment in the survivor's history");
    };
    assert_eq!(taken.cause, i32::from(pb::AssignmentCause::Merge));
    assert_eq!(
        taken.explanation,
        format!("merged: takes ana, the owner of {duplicate}")
    );
    assert_eq!(open_leads(&mut admin, "ana").await?, 1, "one lead now, not two");
    // The survivor has one: it keeps it, the duplicate's owner lets go.
    let other = create(&mut server, "other@acme.com").await?.id;
    assign(&mut server, &other, "ben").await?;
    server
        .leads
        .merge_leads(pb::MergeLeadsRequest {
            survivor: by_id(&survivor),
            duplicate: by_id(&other),
            ..Default::default()
        })
        .await?;
    assert_eq!(server.lead(&survivor).await?.owner_id, "ana");
    assert_eq!(
        (
            open_leads(&mut admin, "ana").await?,
            open_leads(&mut admin, "ben").await?
        ),
        (1, 0)
    );
    Ok(())
}

fn ts(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_micros() / 1_000_000,
        nanos: 0,
    }
}

async fn the_funnel_by_owner_and_team_measures_the_handoff(mut server: TestServer) -> anyhow::Result<()> {
    activate_policy(&mut server, routed(ROUND_ROBIN)).await?;
    let mut admin = owners(&server);
    add_owner(&mut admin, "ana", &["emea"], None).await?;
    add_owner(&mut admin, "ben", &["emea"], None).await?;
    // Two SQLs, ana's then ben's; ana's touched two hours later.
    let ids = sales_ready_at_once(&mut server, "funnel", 1).await?;
    let more = sales_ready_at_once(&mut server, "funnel-b", 1).await?;
    assert_eq!(server.lead(&ids[0]).await?.owner_id, "ana");
    assert_eq!(server.lead(&more[0]).await?.owner_id, "ben");
    server.manual_clock().advance(Span::from_hours(2));
    server
        .leads
        .record_engagement(record(&ids[0], engagement("call-1", "sales_contacted")))
        .await?;
    // ben's lead is not contacted within a day: its SLA breaches.
    server.manual_clock().advance(Span::from_hours(23));
    assert_eq!(server.engine.fire_due_timers(100).await?, 1);
    let mut analytics =
        leadflow_proto::v1::analytics_service_client::AnalyticsServiceClient::new(server.channel.clone());
    let funnel = |group_by: pb::FunnelGrouping| pb::GetFunnelRequest {
        period: Some(pb::Period {
            start: Some(ts(T0.saturating_add(Span::from_hours(-24)))),
            end: Some(ts(T0.saturating_add(Span::from_hours(48)))),
        }),
        group_by: group_by.into(),
        ..Default::default()
    };
    let by_owner = analytics
        .get_funnel(funnel(pb::FunnelGrouping::Owner))
        .await?
        .into_inner();
    let handoffs: Vec<(String, pb::Handoff)> = by_owner
        .groups
        .iter()
        .map(|g| (g.key.clone(), g.handoff.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        handoffs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["ana", "ben"]
    );
    let (ana, ben) = (&handoffs[0].1, &handoffs[1].1);
    assert_eq!(ana.display_name, "Rep ana");
    assert_eq!(
        (ana.assigned, ana.sql, ana.touched, ana.sla_breaches),
        (1, 1, 1, 0)
    );
    assert_eq!(
        ana.first_touch_p50,
        Some(prost_types::Duration {
            seconds: 7_200,
            nanos: 0
        })
    );
    assert_eq!(
        (ben.assigned, ben.sql, ben.touched, ben.sla_breaches),
        (1, 1, 0, 1)
    );
    assert_eq!(ben.first_touch_p50, None);
    // By team: both in emea.
    let by_team = analytics
        .get_funnel(funnel(pb::FunnelGrouping::Team))
        .await?
        .into_inner();
    assert_eq!(by_team.groups.len(), 1);
    assert_eq!(by_team.groups[0].key, "emea");
    let emea = by_team.groups[0].handoff.clone().unwrap_or_default();
    assert_eq!(
        (emea.assigned, emea.sql, emea.touched, emea.sla_breaches),
        (2, 2, 1, 1)
    );
    assert!(!by_team.groups_overlap);
    Ok(())
}

async fn the_account_owner_works_the_account(mut server: TestServer) -> anyhow::Result<()> {
    let routes = r#"
[accounts]
engaged_at_least = 20

[stages.MQA]
engagement_at_least = 500
engaged_members_at_least = 3

[[route]]
id = "named"
on = "entered:SQL"
owner = "vip"
[[route.when]]
account_attribute = "tier"
equals = "named"

[[route]]
id = "sql"
on = "entered:SQL"
account_owner = true
team = "emea"
strategy = "round_robin"
"#;
    activate_policy(&mut server, routed(routes)).await?;
    let mut admin = owners(&server);
    add_owner(&mut admin, "dora", &[], None).await?;
    add_owner(&mut admin, "ana", &["emea"], None).await?;
    add_owner(&mut admin, "vip", &[], None).await?;
    for (domain, owner, tier) in [("acme.com", "dora", ""), ("initech.com", "", "named")] {
        server
            .accounts
            .create_account(pb::CreateAccountRequest {
                domain: domain.to_owned(),
                owner: owner.to_owned(),
                attributes: if tier.is_empty() {
                    Default::default()
                } else {
                    [("tier".to_owned(), tier.to_owned())].into()
                },
                ..Default::default()
            })
            .await?;
    }
    let mut ids = Vec::new();
    for email in ["a@acme.com", "b@initech.com", "c@solo.io"] {
        let id = create(&mut server, email).await?.id;
        server
            .leads
            .record_engagement(record(
                &id,
                engagement(&format!("demo-{email}"), "demo_requested"),
            ))
            .await?;
        ids.push(id);
    }
    let given = owners_of(&mut server, &ids).await?;
    assert_eq!(
        [&given[&ids[0]], &given[&ids[1]], &given[&ids[2]]],
        ["dora", "vip", "ana"]
    );
    let explanation = |history: Vec<pb::HistoryEntry>| {
        history.iter().find_map(|h| match &h.entry {
            Some(pb::history_entry::Entry::Assignment(a)) => Some(a.explanation.clone()),
            _ => None,
        })
    };
    assert_eq!(
        explanation(full_history(&mut server, &ids[0], 0).await?).as_deref(),
        Some("route sql on entered:SQL: account owner dora")
    );
    assert_eq!(
        explanation(full_history(&mut server, &ids[2], 0).await?).as_deref(),
        Some("route sql on entered:SQL: account owner: none; team emea round_robin: ana")
    );
    Ok(())
}

fn account_id(id: &str) -> Option<pb::AccountRef> {
    Some(pb::AccountRef {
        key: Some(pb::account_ref::Key::Id(id.to_owned())),
    })
}

async fn an_account_entering_mqa_gets_an_owner_who_takes_its_members(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let routes = r#"
[accounts]
engaged_at_least = 20

[stages.MQA]
engagement_at_least = 30
engaged_members_at_least = 2

[[route]]
id = "abm"
on = "account_entered:MQA"
account_owner = true
team = "abm"
strategy = "round_robin"
"#;
    activate_policy(&mut server, routed(routes)).await?;
    let mut admin = owners(&server);
    add_owner(&mut admin, "ana", &["abm"], None).await?;
    add_owner(&mut admin, "ben", &["abm"], None).await?;
    let account = server
        .accounts
        .create_account(pb::CreateAccountRequest {
            domain: "acme.com".to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .account
        .expect("an account");
    let mut ids = Vec::new();
    for email in ["a@acme.com", "b@acme.com"] {
        let id = create(&mut server, email).await?.id;
        for kind in ["webinar_attended", "ebook_downloaded"] {
            server
                .leads
                .record_engagement(record(&id, engagement(&format!("{kind}-{email}"), kind)))
                .await?;
        }
        ids.push(id);
    }
    let mql = server
        .accounts
        .get_account(pb::GetAccountRequest {
            account: account_id(&account.id),
        })
        .await?
        .into_inner()
        .account
        .expect("the account");
    assert_eq!(mql.stage, pb::AccountStage::Mqa as i32, "{mql:?}");
    // The worker routes the account, then its members.
    while server.engine.run_account_promotions(50).await? > 0 {}
    let routed_account = server
        .accounts
        .get_account(pb::GetAccountRequest {
            account: account_id(&account.id),
        })
        .await?
        .into_inner()
        .account
        .expect("the account");
    assert_eq!(routed_account.owner, "ana");
    let given = owners_of(&mut server, &ids).await?;
    let mut stages = Vec::new();
    for id in &ids {
        stages.push(server.lead(id).await?.stage);
    }
    assert!(
        given.values().all(|o| o == "ana"),
        "{given:?} {stages:?} {routed_account:?}"
    );
    let history = full_history(&mut server, &ids[0], 0).await?;
    let why = history.iter().find_map(|h| match &h.entry {
        Some(pb::history_entry::Entry::Assignment(a)) => Some(a.explanation.clone()),
        _ => None,
    });
    assert_eq!(
        why.as_deref(),
        Some("route abm on account_entered:MQA: account owner: none; team abm round_robin: ana")
    );
    assert_eq!(open_leads(&mut admin, "ana").await?, 2);
    Ok(())
}

async fn a_weighted_team_shares_leads_by_weight(mut server: TestServer) -> anyhow::Result<()> {
    let routes = ROUND_ROBIN.replace("round_robin", "weighted");
    activate_policy(&mut server, routed(&routes)).await?;
    let mut admin = owners(&server);
    for (id, weight) in [("ana", 3), ("ben", 1)] {
        admin
            .create_owner(pb::CreateOwnerRequest {
                owner: Some(pb::Owner {
                    id: id.to_owned(),
                    display_name: format!("Rep {id}"),
                    teams: vec!["emea".to_owned()],
                    weight,
                    available: true,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?;
    }
    let ids = sales_ready_at_once(&mut server, "weighted", 12).await?;
    let spread = counts(&owners_of(&mut server, &ids).await?);
    assert_eq!(
        spread,
        BTreeMap::from([("ana".to_owned(), 9), ("ben".to_owned(), 3)])
    );
    Ok(())
}

scenarios! {
    leads_entering_sql_at_once_are_spread_round_robin_exactly,
    capacity_is_never_passed_then_the_fallback_then_unrouted,
    a_lead_is_assigned_and_released_by_hand,
    bad_assignments_are_refused_with_their_fields,
    a_breached_sla_reassigns_past_the_owners_of_the_stay_once = clock_at(T0),
    a_new_policy_routes_the_open_leads_it_finds_and_refits_only_when_asked,
    a_simulation_foretells_the_owners_activation_gives,
    a_waiting_lead_is_routed_when_capacity_frees = clock_at(T0),
    a_merge_keeps_one_owner,
    the_funnel_by_owner_and_team_measures_the_handoff = clock_at(T0),
    the_account_owner_works_the_account,
    an_account_entering_mqa_gets_an_owner_who_takes_its_members = clock_at(T0),
    a_weighted_team_shares_leads_by_weight,
}

//! Policy lifecycle: simulation equals what activation then does, writes
//! nothing; a re-score resumes after a restart and touches each lead once.

use std::collections::{BTreeMap, BTreeSet};

use leadflow_domain::{Span, Timestamp};
use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

/// 2026-01-05T09:00:00Z.
const T0: Timestamp = Timestamp::from_secs(1_767_603_600);

/// engagement 40 is enough, but fit must reach 30.
fn draft() -> String {
    leadflow_server::DEFAULT_POLICY
        .replace("engagement_at_least = 60", "engagement_at_least = 40")
        .replace("fit_at_least = 20", "fit_at_least = 30")
}

/// A lead with a profile and engagements at `T0`.
async fn seed(server: &mut TestServer, email: &str, title: &str, kinds: &[&str]) -> anyhow::Result<String> {
    let lead = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: profile(&[
                ("email", email),
                ("company", "Acme"),
                ("title", title),
                ("company_size", "250"),
                ("industry", "software"),
            ]),
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .expect("lead");
    for (i, kind) in kinds.iter().enumerate() {
        server
            .leads
            .record_engagement(record(&lead.id, engagement(&format!("{email}-{i}"), kind)))
            .await?;
    }
    Ok(lead.id)
}

/// 10 leads the draft moves (fit 40, engagement 45); 8 IQLs (fit 25,
/// engagement 45) and 5 MQLs (fit 25) whose fit guard it newly fails; 5 cold.
async fn population(server: &mut TestServer) -> anyhow::Result<(BTreeSet<String>, BTreeSet<String>)> {
    let warm = ["trial_started", "webinar_attended"];
    let hot = [
        "trial_started",
        "webinar_attended",
        "ebook_downloaded",
        "ebook_downloaded",
    ];
    let mut movers = BTreeSet::new();
    let mut failing = BTreeSet::new();
    for i in 0..10 {
        movers.insert(seed(server, &format!("a{i}@acme.com"), "VP Sales", &warm).await?);
    }
    for i in 0..8 {
        failing.insert(seed(server, &format!("b{i}@acme.com"), "Analyst", &warm).await?);
    }
    for i in 0..5 {
        failing.insert(seed(server, &format!("c{i}@acme.com"), "Analyst", &hot).await?);
    }
    for i in 0..5 {
        seed(server, &format!("d{i}@acme.com"), "CTO", &["page_viewed"]).await?;
    }
    Ok((movers, failing))
}

async fn simulate_all(
    server: &mut TestServer,
    source: &str,
) -> anyhow::Result<(pb::SimulatePolicyResponse, Vec<pb::SimulatedLead>)> {
    let mut first = None;
    let mut changed = Vec::new();
    let mut token = String::new();
    loop {
        let page = server
            .policies
            .simulate_policy(pb::SimulatePolicyRequest {
                policy: Some(pb::simulate_policy_request::Policy::Source(source.to_owned())),
                page_size: 4,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(page.changed.len() <= 4);
        changed.extend(page.changed.clone());
        token = page.next_page_token.clone();
        first.get_or_insert(page);
        if token.is_empty() {
            break;
        }
    }
    Ok((first.expect("a page"), changed))
}

async fn stage_counts(server: &mut TestServer) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut counts = BTreeMap::new();
    let leads = server
        .leads
        .list_leads(pb::ListLeadsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await?
        .into_inner()
        .leads;
    for l in leads {
        *counts.entry(l.stage).or_default() += 1;
    }
    Ok(counts)
}

/// Every POLICY_CHANGE transition recorded, per lead.
async fn policy_changes(server: &mut TestServer) -> anyhow::Result<BTreeMap<String, Vec<(i32, i32)>>> {
    let mut out: BTreeMap<String, Vec<(i32, i32)>> = BTreeMap::new();
    let leads = server
        .leads
        .list_leads(pb::ListLeadsRequest {
            page_size: 1_000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .leads;
    for l in leads {
        let h = server
            .leads
            .get_lead_history(pb::GetLeadHistoryRequest {
                lead: by_id(&l.id),
                page_size: 1_000,
                ..Default::default()
            })
            .await?
            .into_inner();
        for e in h.entries {
            if let Some(pb::history_entry::Entry::Transition(t)) = e.entry
                && t.cause == pb::Cause::PolicyChange as i32
            {
                out.entry(l.id.clone())
                    .or_default()
                    .push((t.from_stage, t.to_stage));
            }
        }
    }
    Ok(out)
}

async fn simulation_equals_what_activation_does_and_writes_nothing(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let (movers, failing) = population(&mut server).await?;
    let before_rows = server.rows().await;
    let before_counts = stage_counts(&mut server).await?;
    let (summary, changed) = simulate_all(&mut server, &draft()).await?;
    assert_eq!(server.rows().await, before_rows, "a simulation writes nothing");
    assert_eq!(stage_counts(&mut server).await?, before_counts);

    assert_eq!(summary.leads, 28);
    assert_eq!((summary.movers, summary.newly_failing), (10, 13));
    let simulated_movers: BTreeSet<String> = changed
        .iter()
        .filter(|l| l.from_stage != l.to_stage)
        .map(|l| l.lead_id.clone())
        .collect();
    assert_eq!(simulated_movers, movers);
    let simulated_failing: BTreeSet<String> = changed
        .iter()
        .filter(|l| !l.newly_failing.is_empty())
        .map(|l| l.lead_id.clone())
        .collect();
    assert_eq!(simulated_failing, failing);
    assert!(changed.iter().filter(|l| failing.contains(&l.lead_id)).all(|l| {
        l.newly_failing
            .iter()
            .any(|g| g.guard == "fit_at_least" && g.detail == "fit 25 < 30")
    }));
    let mover = changed
        .iter()
        .find(|l| l.from_stage != l.to_stage)
        .expect("a mover");
    let guards = &mover.transitions.last().expect("a transition").guards;
    assert!(
        guards
            .iter()
            .any(|g| g.detail.starts_with("engagement 45") && g.detail.ends_with("≥ 40")),
        "{guards:?}"
    );
    let after: BTreeMap<i32, i64> = summary
        .stages
        .iter()
        .filter(|c| c.after > 0)
        .map(|c| (c.stage, c.after))
        .collect();

    // activate at the simulated instant and run the re-score to its end
    let activated = activate_source(&mut server.policies, draft()).await?;
    let version = activated.policy.as_ref().expect("policy").version;
    let job = activated.job.expect("a job");
    assert_eq!(
        (job.status, job.total, job.done),
        (pb::RescoreStatus::Running as i32, 28, 0)
    );
    let mut rounds = 0;
    while let Some(job) = server.engine.run_rescore_batch(6).await? {
        rounds += 1;
        if !job.is_running() {
            assert_eq!(job.status, Some(leadflow_engine::RescoreStatus::Done));
            assert_eq!((job.done, job.transitions), (28, 10));
            break;
        }
    }
    assert_eq!(rounds, 5, "28 leads, 6 a batch");
    assert!(
        server.engine.run_rescore_batch(6).await?.is_none(),
        "nothing left running"
    );

    assert_eq!(
        stage_counts(&mut server).await?,
        after,
        "activation ends where the simulation said"
    );
    let changes = policy_changes(&mut server).await?;
    assert_eq!(changes.keys().cloned().collect::<BTreeSet<_>>(), movers);
    assert!(
        changes
            .values()
            .all(|moves| moves == &[(pb::Stage::Iql as i32, pb::Stage::Mql as i32)])
    );
    // the same workflow triggers a live engagement would have set off
    let events = server
        .engine
        .store()
        .outbox_after(server.workspace(), 0, 10_000)
        .await?;
    for id in &movers {
        let welcomes = events
            .iter()
            .filter(|r| &r.event.lead_id == id && r.event.payload.contains("\"mql_welcome_sequence\""))
            .count();
        assert_eq!(welcomes, 1, "lead {id}");
        let timers = server.engine.store().timers_of(server.workspace(), id).await?;
        assert!(
            timers.iter().any(|t| t.timer.kind.key() == "workflow:mql-day-3"),
            "lead {id}: day-3 step armed"
        );
    }
    // the explanation names the version that scored each lead
    let any = movers.iter().next().expect("a mover");
    let x = server
        .leads
        .explain_score(pb::ExplainScoreRequest {
            lead: by_id(any),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(x.policy_version, version);
    Ok(())
}

async fn a_restarted_rescore_finishes_and_touches_each_lead_once(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let (movers, _) = population(&mut server).await?;
    let job = activate_source(&mut server.policies, draft())
        .await?
        .job
        .expect("job");
    server.engine.run_rescore_batch(4).await?;
    server.engine.run_rescore_batch(4).await?;
    // a command reaches one lead before the job does
    let ahead = movers.iter().next_back().expect("a mover").clone();
    server.manual_clock().advance(Span::from_secs(1));
    server
        .leads
        .record_engagement(record(&ahead, engagement("ahead", "page_viewed")))
        .await?;
    // "restart": a new engine on the same database carries on
    let other = leadflow_engine::Engine::new(
        leadflow_store::Store::connect(server.database_url(), &leadflow_store::StoreOptions::default())
            .await?,
        server.clock.clone().expect("clock"),
    );
    while let Some(job) = other.run_rescore_batch(4).await? {
        if !job.is_running() {
            break;
        }
    }
    let done = server.engine.rescore_job(server.workspace(), job.id).await?;
    assert_eq!(
        (done.status, done.done),
        (Some(leadflow_engine::RescoreStatus::Done), 28)
    );
    assert_eq!(
        done.transitions, 9,
        "the lead its own command re-scored is not done twice"
    );
    let changes = policy_changes(&mut server).await?;
    assert_eq!(changes.keys().cloned().collect::<BTreeSet<_>>(), movers);
    assert!(changes.values().all(|moves| moves.len() == 1), "{changes:?}");
    Ok(())
}

async fn a_rescore_first_fires_the_lead_s_overdue_timers(mut server: TestServer) -> anyhow::Result<()> {
    // an MQL whose 30-day idle recycle is due when no timer worker ran
    let lead = mql_lead(&mut server, "idle@acme.com").await?;
    server.manual_clock().advance(Span::from_days(31));
    let version = activate_policy(&mut server, draft()).await?;
    while let Some(job) = server.engine.run_rescore_batch(10).await? {
        if !job.is_running() {
            break;
        }
    }
    // the recycle happened at its own time, under the policy that armed it
    let h = server
        .leads
        .get_lead_history(pb::GetLeadHistoryRequest {
            lead: by_id(&lead),
            ..Default::default()
        })
        .await?
        .into_inner();
    let transitions: Vec<pb::Transition> = h
        .entries
        .iter()
        .filter_map(|e| match &e.entry {
            Some(pb::history_entry::Entry::Transition(t)) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let recycle = transitions.last().expect("transitions");
    assert_eq!(
        moves(&transitions),
        [
            (pb::Stage::Unspecified, pb::Stage::Iql),
            (pb::Stage::Iql, pb::Stage::Mql),
            (pb::Stage::Mql, pb::Stage::Iql)
        ]
    );
    assert_eq!(
        (recycle.cause, recycle.policy_version),
        (pb::Cause::Timer as i32, 1)
    );
    let due = T0.saturating_add(Span::from_days(30));
    assert_eq!(
        recycle.occurred_at.map(|t| t.seconds),
        Some(due.as_micros() / 1_000_000)
    );
    let got = server
        .leads
        .get_lead(pb::GetLeadRequest { lead: by_id(&lead) })
        .await?
        .into_inner();
    assert_eq!(
        got.lead.map(|l| (stage(&l), l.policy_version)),
        Some((pb::Stage::Iql, version))
    );
    Ok(())
}

/// A shutdown ends a WatchRescore stream with UNAVAILABLE and says the
/// job goes on, rather than ending it as if it were over.
async fn a_shutdown_ends_a_rescore_watch_with_unavailable(mut server: TestServer) -> anyhow::Result<()> {
    population(&mut server).await?;
    let job = activate_source(&mut server.policies, draft())
        .await?
        .job
        .expect("job");
    let mut watch = server
        .policies
        .watch_rescore(pb::WatchRescoreRequest { job_id: job.id })
        .await?
        .into_inner();
    let first = watch.message().await?.and_then(|u| u.job).expect("progress");
    assert_eq!(first.status, pb::RescoreStatus::Running as i32);
    let stopping = tokio::spawn(server.stop());
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), end_of(&mut watch))
        .await?
        .expect_err("the watch ends with a status, not as if the job were over");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), "SHUTTING_DOWN", "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("re-score job {} goes on", job.id)),
        "{status:?}"
    );
    stopping.await?;
    Ok(())
}

scenarios! {
    a_shutdown_ends_a_rescore_watch_with_unavailable = clock_at(T0),
    simulation_equals_what_activation_does_and_writes_nothing = clock_at(T0),
    a_restarted_rescore_finishes_and_touches_each_lead_once = clock_at(T0),
    a_rescore_first_fires_the_lead_s_overdue_timers = clock_at(T0),
}

//! The fit grade: shown on the lead, and a guard when the policy's MQL
//! stage names `grade_at_least`.

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;

async fn a_grade_guard_holds_back_a_lower_grade(mut server: TestServer) -> anyhow::Result<()> {
    // A = 40 and above, B = 30
    let source = leadflow_server::DEFAULT_POLICY
        .replace("fit_at_least = 20", "fit_at_least = 20\ngrade_at_least = \"A\"");
    activate_policy(&mut server, source).await?;

    let a = create(&mut server, "a@acme.com").await?;
    let mut b_profile = good_fit("b@acme.com");
    b_profile.remove("industry"); // fit 30: grade B
    let b = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: b_profile,
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .expect("lead");
    for (lead, tag) in [(&a.id, "a"), (&b.id, "b")] {
        for n in 0..2 {
            server
                .leads
                .record_engagement(record(lead, engagement(&format!("{tag}{n}"), "trial_started")))
                .await?;
        }
    }
    let get = |id: &str| pb::GetLeadRequest { lead: by_id(id) };
    let a = server
        .leads
        .get_lead(get(&a.id))
        .await?
        .into_inner()
        .lead
        .expect("lead");
    let b = server
        .leads
        .get_lead(get(&b.id))
        .await?
        .into_inner()
        .lead
        .expect("lead");
    let grade = |l: &pb::Lead| l.scores.as_ref().map(|s| s.grade.clone()).unwrap_or_default();
    assert_eq!((grade(&a), stage(&a)), ("A".to_owned(), pb::Stage::Mql));
    assert_eq!((grade(&b), stage(&b)), ("B".to_owned(), pb::Stage::Iql));

    let explained = server
        .leads
        .explain_score(pb::ExplainScoreRequest {
            lead: by_id(&b.id),
            ..Default::default()
        })
        .await?
        .into_inner();
    let guard = explained
        .next
        .iter()
        .flat_map(|n| &n.guards)
        .find(|g| g.guard == "grade_at_least")
        .expect("the grade guard");
    assert!(!guard.passed);
    assert_eq!(guard.detail, "grade B < A");
    assert_eq!((guard.actual, guard.required), (Some(30.0), Some(40.0)));

    // the MQL move of A records the grade guard it passed
    let history = server
        .leads
        .get_lead_history(pb::GetLeadHistoryRequest {
            lead: by_id(&a.id),
            ..Default::default()
        })
        .await?
        .into_inner();
    let passed = history
        .entries
        .iter()
        .filter_map(|e| match &e.entry {
            Some(pb::history_entry::Entry::Transition(t)) => Some(t),
            _ => None,
        })
        .flat_map(|t| &t.guards)
        .any(|g| g.guard == "grade_at_least" && g.passed);
    assert!(passed, "{history:?}");
    Ok(())
}

scenarios! {
    a_grade_guard_holds_back_a_lower_grade,
}

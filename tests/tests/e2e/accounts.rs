//! Accounts over the API: matching at capture, an account reaching MQA in
//! the commit of the engagement that makes it one (events in order), the
//! explanation, manual links, hand moves with their reasons, concurrent
//! members, an erased member, and bad input.

use std::time::Duration;

use leadflow_domain::Span;
use leadflow_e2e::*;
use leadflow_engine::Clock as _;
use leadflow_proto::v1 as pb;

/// The example policy with accounts: personas, `[accounts]` (engaged at
/// 20, the sum of the default model), an account fit rule, `[stages.MQA]`
/// at `mqa_at` with three engaged members and a decision maker, account
/// reasons, and a workflow on `account_entered:MQA`.
fn accounted(mqa_at: u32) -> String {
    let policy = leadflow_server::DEFAULT_POLICY.replacen(
        "[reasons]\n",
        "[reasons]\nreject_account = [\"not_ready\", \"no_buying_group\"]\nrecycle_account = [\"lost\"]\n",
        1,
    );
    assert!(policy.contains("reject_account"));
    format!(
        r#"{policy}
[[persona]]
id = "decision_maker"
attribute = "title"
matches = "(?i)\\b(vp|head|director|chief)\\b"

[[persona]]
id = "practitioner"
attribute = "title"
matches = "(?i)engineer|developer|analyst"

[accounts]
ignore_domains = ["partner-mail.net"]
inherit = ["industry", "company_size"]
engaged_at_least = 20

[[accounts.fit]]
id = "target-industry"
attribute = "industry"
one_of = ["software", "fintech"]
points = 20

[stages.MQA]
engagement_at_least = {mqa_at}
engaged_members_at_least = 3
personas_required = ["decision_maker"]

[[workflow]]
id = "mqa-alert"
on = "account_entered:MQA"
emit = "sales.mqa_alert"
"#
    )
}

/// A good-fit lead at `email` with `title`.
async fn person(server: &mut TestServer, email: &str, title: &str) -> anyhow::Result<pb::Lead> {
    let mut profile = good_fit(email);
    profile.insert("title".to_owned(), title.to_owned());
    server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile,
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .ok_or_else(|| anyhow::anyhow!("no lead"))
}

async fn trial(
    server: &mut TestServer,
    lead: &str,
    id: &str,
) -> anyhow::Result<pb::RecordEngagementResponse> {
    Ok(server
        .leads
        .record_engagement(record(lead, engagement(id, "trial_started")))
        .await?
        .into_inner())
}

fn by_domain(domain: &str) -> Option<pb::AccountRef> {
    Some(pb::AccountRef {
        key: Some(pb::account_ref::Key::Domain(domain.to_owned())),
    })
}

fn account_id(id: &str) -> Option<pb::AccountRef> {
    Some(pb::AccountRef {
        key: Some(pb::account_ref::Key::Id(id.to_owned())),
    })
}

async fn account(server: &mut TestServer, domain: &str) -> anyhow::Result<pb::Account> {
    server
        .accounts
        .get_account(pb::GetAccountRequest {
            account: by_domain(domain),
        })
        .await?
        .into_inner()
        .account
        .ok_or_else(|| anyhow::anyhow!("no account"))
}

fn account_stage(a: &pb::Account) -> pb::AccountStage {
    pb::AccountStage::try_from(a.stage).unwrap_or(pb::AccountStage::Unspecified)
}

async fn history(server: &mut TestServer, id: &str) -> anyhow::Result<Vec<pb::AccountTransition>> {
    Ok(server
        .accounts
        .get_account_history(pb::GetAccountHistoryRequest {
            account: account_id(id),
            ..Default::default()
        })
        .await?
        .into_inner()
        .transitions)
}

async fn three_people_make_an_mqa_in_one_commit_with_the_events_in_order(
    mut server: TestServer,
) -> anyhow::Result<()> {
    // 145: five trials (150) decayed over the seconds the test takes.
    activate_policy(&mut server, accounted(145)).await?;
    let ann = person(&mut server, "ann@acme.com", "VP Engineering").await?;
    let acme = account(&mut server, "acme.com").await?;
    assert_eq!(account_stage(&acme), pb::AccountStage::Target);
    assert_eq!(
        acme.attributes.get("industry").map(String::as_str),
        Some("software")
    );
    assert_eq!(acme.fit, 20.0, "its fit rule reads the inherited industry");
    let got = server
        .leads
        .get_lead(pb::GetLeadRequest { lead: by_id(&ann.id) })
        .await?
        .into_inner();
    assert_eq!(
        (
            got.account_id.as_str(),
            got.matched_by.as_str(),
            got.persona.as_str()
        ),
        (acme.id.as_str(), "email_domain", "decision_maker")
    );
    let bob = person(&mut server, "bob@acme.com", "Software Engineer").await?;
    let cat = person(&mut server, "cat@ACME.com", "Data Analyst").await?;
    trial(&mut server, &ann.id, "ann-1").await?;
    trial(&mut server, &ann.id, "ann-2").await?; // 60: ann is an MQL
    assert_eq!(
        account_stage(&account(&mut server, "acme.com").await?),
        pb::AccountStage::Engaged
    );
    trial(&mut server, &bob.id, "bob-1").await?;
    trial(&mut server, &cat.id, "cat-1").await?; // 120 from three engaged members
    let before = account(&mut server, "acme.com").await?;
    assert_eq!(account_stage(&before), pb::AccountStage::Engaged);
    assert_eq!((before.engaged_members, before.members), (3, 3));
    assert!((before.engagement - 120.0).abs() < 0.01, "{}", before.engagement);

    let mut stream = subscribe(&mut server, "accounts", pb::StartPosition::Latest, 0, None).await?;
    let answer = trial(&mut server, &cat.id, "cat-2").await?; // cat: an MQL; acme: about 150
    assert!(
        moves(&answer.transitions).contains(&(pb::Stage::Iql, pb::Stage::Mql)),
        "{:?}",
        answer.transitions
    );
    let mqa = account(&mut server, "acme.com").await?;
    assert_eq!(account_stage(&mqa), pb::AccountStage::Mqa);
    let qualify = history(&mut server, &mqa.id)
        .await?
        .into_iter()
        .find(|t| t.r#move == "QUALIFY")
        .expect("a QUALIFY transition");
    assert_eq!(
        (
            qualify.cause.as_str(),
            qualify.cause_lead_id.as_str(),
            qualify.cause_event_id.as_str()
        ),
        ("MEMBER", cat.id.as_str(), "cat-2")
    );
    assert!(qualify.guards.iter().all(|g| g.passed), "{:?}", qualify.guards);
    // One commit: the lead's events first, then the account's transition and
    // its trigger, in consecutive sequences.
    let mut seen = Vec::new();
    while let Some(e) = next_event(&mut stream, Duration::from_millis(800)).await? {
        seen.push(e);
    }
    let shapes: Vec<String> = seen.iter().map(describe).collect();
    let first_account = seen
        .iter()
        .position(|e| e.account.is_some())
        .expect("account events");
    assert!(
        seen[..first_account].iter().all(|e| e.lead.is_some()),
        "{shapes:?}"
    );
    assert!(
        shapes[..first_account].contains(&"TRANSITION:MQL".to_owned()),
        "{shapes:?}"
    );
    assert_eq!(
        shapes[first_account..],
        ["ACCOUNT_TRANSITION:MQA", "ACCOUNT_TRIGGER:sales.mqa_alert"],
        "{shapes:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[1].sequence == w[0].sequence + 1),
        "one commit's events are consecutive"
    );
    let snapshot = seen[first_account].account.as_ref().expect("a snapshot");
    assert_eq!(
        (snapshot.id.as_str(), snapshot.stage),
        (mqa.id.as_str(), pb::AccountStage::Mqa as i32)
    );
    Ok(())
}

async fn an_explanation_shows_each_member_and_what_blocks(mut server: TestServer) -> anyhow::Result<()> {
    activate_policy(&mut server, accounted(150)).await?;
    let ann = person(&mut server, "ann@initech.io", "Head of Data").await?;
    let bob = person(&mut server, "bob@initech.io", "Engineer").await?;
    trial(&mut server, &ann.id, "a1").await?;
    trial(&mut server, &bob.id, "b1").await?;
    trial(&mut server, &bob.id, "b2").await?;
    let x = server
        .accounts
        .explain_account(pb::ExplainAccountRequest {
            account: by_domain("INITECH.io"),
            as_of: None,
        })
        .await?
        .into_inner();
    assert_eq!(x.aggregate, "sum");
    let members: Vec<(&str, &str, f64, bool)> = x
        .members
        .iter()
        .map(|m| (m.lead_id.as_str(), m.persona.as_str(), m.score, m.engaged))
        .collect();
    assert_eq!(
        members,
        [
            (bob.id.as_str(), "practitioner", 60.0, true),
            (ann.id.as_str(), "decision_maker", 30.0, true)
        ]
    );
    assert!(
        x.members
            .iter()
            .all(|m| m.engaged_until.is_some() && m.in_aggregate)
    );
    assert_eq!(x.next_stage, pb::AccountStage::Mqa as i32);
    let failing: Vec<(&str, &str)> = x
        .next_guards
        .iter()
        .filter(|g| !g.passed)
        .map(|g| (g.guard.as_str(), g.detail.as_str()))
        .collect();
    assert_eq!(
        failing,
        [
            ("engagement_at_least", "account engagement 90 < 150"),
            ("engaged_members_at_least", "engaged members 2 < 3")
        ]
    );
    let coverage: Vec<(&str, i32, bool)> = x
        .coverage
        .iter()
        .map(|c| (c.persona.as_str(), c.engaged, c.required))
        .collect();
    assert_eq!(
        coverage,
        [("decision_maker", 1, true), ("practitioner", 1, false)]
    );
    Ok(())
}

async fn keys_free_mail_and_manual_links_decide_the_account(mut server: TestServer) -> anyhow::Result<()> {
    activate_policy(&mut server, accounted(150)).await?;
    let loaded = server
        .accounts
        .create_account(pb::CreateAccountRequest {
            external_key: "crm-42".to_owned(),
            domain: "Globex.com".to_owned(),
            attributes: profile(&[("industry", "Fintech")]),
            ..Default::default()
        })
        .await?
        .into_inner();
    let globex = loaded.account.expect("an account");
    assert_eq!((globex.domain.as_str(), globex.fit), ("globex.com", 20.0));
    assert_eq!(
        loaded
            .transitions
            .iter()
            .map(|t| (t.r#move.as_str(), t.cause.as_str()))
            .collect::<Vec<_>>(),
        [("CREATE", "CREATE")]
    );
    // An explicit key wins over a free-mail address.
    let mut keyed = good_fit("hank@gmail.com");
    keyed.insert("account_key".to_owned(), "crm-42".to_owned());
    let hank = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: keyed,
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .expect("a lead");
    let membership = |server: &mut TestServer, id: String| {
        let mut leads = server.leads.clone();
        async move {
            let r = leads
                .get_lead(pb::GetLeadRequest { lead: by_id(&id) })
                .await?
                .into_inner();
            anyhow::Ok((r.account_id, r.matched_by))
        }
    };
    assert_eq!(
        membership(&mut server, hank.id.clone()).await?,
        (globex.id.clone(), "account_key".to_owned())
    );
    let err = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: profile(&[("email", "k@x.com"), ("account_key", &"k".repeat(129))]),
            ..Default::default()
        })
        .await;
    assert_invalid(err, "profile.account_key", &"a key too long");
    // Free mail alone matches nothing, and creates nothing.
    let solo = create(&mut server, "solo@gmail.com").await?;
    assert_eq!(
        membership(&mut server, solo.id.clone()).await?,
        (String::new(), String::new())
    );
    let listed = server
        .accounts
        .list_accounts(pb::ListAccountsRequest::default())
        .await?
        .into_inner();
    assert_eq!(
        listed
            .accounts
            .iter()
            .map(|a| a.domain.as_str())
            .collect::<Vec<_>>(),
        ["globex.com"],
        "no account for free mail"
    );
    // A manual link moves it, and a profile change does not undo it.
    let linked = server
        .accounts
        .link_lead(pb::LinkLeadRequest {
            lead: by_id(&solo.id),
            account: account_id(&globex.id),
            actor: "ops@globex.com".to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(linked.account.map(|a| a.members), Some(2));
    server
        .leads
        .update_lead_profile(pb::UpdateLeadProfileRequest {
            lead: by_id(&solo.id),
            attributes: profile(&[("email", "solo@initrode.com")]),
            ..Default::default()
        })
        .await?;
    assert_eq!(
        membership(&mut server, solo.id.clone()).await?,
        (globex.id.clone(), "manual".to_owned())
    );
    // An unlink sticks too: the new domain does not match it again.
    server
        .accounts
        .unlink_lead(pb::UnlinkLeadRequest {
            lead: by_id(&solo.id),
            ..Default::default()
        })
        .await?;
    trial(&mut server, &solo.id, "solo-1").await?;
    assert_eq!(
        membership(&mut server, solo.id.clone()).await?,
        (String::new(), String::new())
    );
    // A profile change re-matches a lead that was not linked by hand.
    server
        .leads
        .update_lead_profile(pb::UpdateLeadProfileRequest {
            lead: by_id(&hank.id),
            attributes: profile(&[("account_key", ""), ("email", "hank@umbrella.org")]),
            ..Default::default()
        })
        .await?;
    let umbrella = account(&mut server, "umbrella.org").await?;
    assert_eq!(
        membership(&mut server, hank.id.clone()).await?,
        (umbrella.id.clone(), "email_domain".to_owned())
    );
    assert_eq!(account(&mut server, "globex.com").await?.members, 0);
    // Linking it by hand where it already is pins it: nothing counts twice.
    let pinned = server
        .accounts
        .link_lead(pb::LinkLeadRequest {
            lead: by_id(&hank.id),
            account: account_id(&umbrella.id),
            ..Default::default()
        })
        .await?
        .into_inner()
        .account
        .expect("its account");
    assert_eq!(pinned.members, 1);
    assert_eq!(
        membership(&mut server, hank.id.clone()).await?,
        (umbrella.id.clone(), "manual".to_owned())
    );
    Ok(())
}

async fn hand_moves_check_reasons_and_guards(mut server: TestServer) -> anyhow::Result<()> {
    activate_policy(&mut server, accounted(150)).await?;
    let ann = person(&mut server, "ann@hooli.com", "VP Sales").await?;
    trial(&mut server, &ann.id, "h1").await?;
    let hooli = account(&mut server, "hooli.com").await?;
    let move_it = |command: pb::AccountCommand, reason: &str| pb::TransitionAccountRequest {
        account: account_id(&hooli.id),
        command: command.into(),
        reason: reason.to_owned(),
        actor: "rep@hooli.com".to_owned(),
        ..Default::default()
    };
    // PROMOTE skips the score, not the buying group.
    let err = server
        .accounts
        .transition_account(move_it(pb::AccountCommand::Promote, "board asked"))
        .await
        .expect_err("one engaged member of three");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&err), "GUARD_FAILED");
    // A lead's reason is not an account's.
    let accepted = server
        .accounts
        .transition_account(move_it(pb::AccountCommand::Accept, ""))
        .await?
        .into_inner();
    let stages: Vec<(i32, i32)> = accepted.transitions.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        stages,
        [
            (pb::AccountStage::Engaged as i32, pb::AccountStage::Mqa as i32),
            (pb::AccountStage::Mqa as i32, pb::AccountStage::Opportunity as i32)
        ]
    );
    let err = server
        .accounts
        .transition_account(move_it(pb::AccountCommand::Recycle, "went_dark"))
        .await
        .expect_err("a lead's recycle reason");
    assert_eq!(
        (err.code(), reason(&err)),
        (tonic::Code::InvalidArgument, "UNKNOWN_REASON".to_owned())
    );
    let recycled = server
        .accounts
        .transition_account(move_it(pb::AccountCommand::Recycle, "lost"))
        .await?
        .into_inner()
        .account
        .expect("an account");
    assert_eq!(account_stage(&recycled), pb::AccountStage::Engaged);
    assert!(
        recycled.window_start.is_some(),
        "a backward move restarts the window"
    );
    assert_eq!(
        recycled.engaged_members, 0,
        "members' engagements before the recycle no longer count"
    );
    let err = server
        .accounts
        .transition_account(move_it(pb::AccountCommand::Reject, "not_ready"))
        .await
        .expect_err("REJECT leaves from MQA only");
    assert_eq!(
        (err.code(), reason(&err)),
        (tonic::Code::FailedPrecondition, "INVALID_TRANSITION".to_owned())
    );
    let err = server
        .accounts
        .transition_account(pb::TransitionAccountRequest {
            expected_version: Some(1),
            ..move_it(pb::AccountCommand::Disqualify, "spam")
        })
        .await
        .expect_err("a stale version");
    assert_eq!(err.code(), tonic::Code::Aborted);
    Ok(())
}

async fn members_engaging_at_once_lose_no_update_and_qualify_once(
    mut server: TestServer,
) -> anyhow::Result<()> {
    activate_policy(&mut server, accounted(300)).await?;
    let mut leads = Vec::new();
    for (i, title) in [
        "VP Product",
        "Engineer",
        "Analyst",
        "Developer",
        "Engineer",
        "Engineer",
    ]
    .iter()
    .enumerate()
    {
        leads.push(person(&mut server, &format!("p{i}@massive.dynamic.com"), title).await?);
    }
    let mut tasks = Vec::new();
    for (i, lead) in leads.iter().enumerate() {
        for n in 0..2 {
            let mut client = server.leads.clone();
            let request = record(&lead.id, engagement(&format!("m{i}-{n}"), "trial_started"));
            tasks.push(tokio::spawn(
                async move { client.record_engagement(request).await },
            ));
        }
    }
    for task in tasks {
        task.await??;
    }
    let acct = account(&mut server, "massive.dynamic.com").await?;
    assert!(
        (acct.engagement - 360.0).abs() < 0.05,
        "every engagement counts once: {}",
        acct.engagement
    );
    assert_eq!((acct.engaged_members, acct.members), (6, 6));
    assert_eq!(account_stage(&acct), pb::AccountStage::Mqa);
    let moves: Vec<String> = history(&mut server, &acct.id)
        .await?
        .into_iter()
        .map(|t| t.r#move)
        .collect();
    assert_eq!(moves, ["CREATE", "ENGAGE", "QUALIFY"], "promoted once");
    Ok(())
}

async fn an_erased_member_keeps_its_numbers(mut server: TestServer) -> anyhow::Result<()> {
    activate_policy(&mut server, accounted(150)).await?;
    let ann = person(&mut server, "ann@soylent.com", "Director of IT").await?;
    let bob = person(&mut server, "bob@soylent.com", "Engineer").await?;
    trial(&mut server, &ann.id, "s1").await?;
    trial(&mut server, &bob.id, "s2").await?;
    server
        .leads
        .erase_lead(pb::EraseLeadRequest { lead: by_id(&ann.id) })
        .await?;
    let x = server
        .accounts
        .explain_account(pb::ExplainAccountRequest {
            account: by_domain("soylent.com"),
            as_of: None,
        })
        .await?
        .into_inner();
    let erased: Vec<(bool, f64)> = x
        .members
        .iter()
        .filter(|m| m.lead_id == ann.id)
        .map(|m| (m.erased, m.score))
        .collect();
    assert_eq!(erased, [(true, 30.0)]);
    let acct = x.account.expect("an account");
    assert!((acct.engagement - 60.0).abs() < 0.01, "{}", acct.engagement);
    Ok(())
}

async fn bad_account_requests_are_refused_with_their_fields(mut server: TestServer) -> anyhow::Result<()> {
    // Without [accounts], nothing is linked or moved.
    let lead = create(&mut server, "x@acme.com").await?;
    let created = server
        .accounts
        .create_account(pb::CreateAccountRequest {
            domain: "acme.com".to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .account
        .expect("accounts can be loaded before the policy asks for them");
    let err = server
        .accounts
        .link_lead(pb::LinkLeadRequest {
            lead: by_id(&lead.id),
            account: account_id(&created.id),
            ..Default::default()
        })
        .await
        .expect_err("no [accounts]");
    assert_eq!(
        (err.code(), reason(&err)),
        (tonic::Code::FailedPrecondition, "NO_ACCOUNTS_POLICY".to_owned())
    );

    activate_policy(&mut server, accounted(150)).await?;
    let cases: Vec<(pb::CreateAccountRequest, &str)> = vec![
        (
            pb::CreateAccountRequest {
                domain: "not a domain".to_owned(),
                ..Default::default()
            },
            "domain",
        ),
        (
            pb::CreateAccountRequest {
                domain: "x@y.com".to_owned(),
                ..Default::default()
            },
            "domain",
        ),
        (
            pb::CreateAccountRequest {
                external_key: "k".repeat(200),
                ..Default::default()
            },
            "external_key",
        ),
        (
            pb::CreateAccountRequest {
                created_at: Some(seconds_ago(-3_600)),
                ..Default::default()
            },
            "created_at",
        ),
        (
            pb::CreateAccountRequest {
                attributes: profile(&[("", "x")]),
                ..Default::default()
            },
            "attributes[\"\"]",
        ),
    ];
    for (request, field) in cases {
        let result = server.accounts.create_account(request.clone()).await;
        assert_invalid(result, field, &request);
    }
    let err = server
        .accounts
        .create_account(pb::CreateAccountRequest {
            domain: "ACME.com".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("the domain is taken");
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    let result = server
        .accounts
        .update_account(pb::UpdateAccountRequest::default())
        .await;
    assert_invalid(result, "external_key", &"an update without a key");
    let result = server
        .accounts
        .transition_account(pb::TransitionAccountRequest {
            account: account_id(&created.id),
            ..Default::default()
        })
        .await;
    assert_invalid(result, "command", &"no command");
    let result = server
        .accounts
        .get_account(pb::GetAccountRequest { account: None })
        .await;
    assert_invalid(result, "account", &"no account");
    let err = server
        .accounts
        .get_account(pb::GetAccountRequest {
            account: account_id("nope"),
        })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let result = server
        .accounts
        .list_accounts(pb::ListAccountsRequest {
            stages: vec![42],
            ..Default::default()
        })
        .await;
    assert_invalid(result, "stages[0]", &"a stage that is none");
    let result = server
        .accounts
        .list_accounts(pb::ListAccountsRequest {
            page_token: "garbage".to_owned(),
            ..Default::default()
        })
        .await;
    assert_invalid(result, "page_token", &"a token of nothing");
    // A retry with the same request id answers the first result.
    let request = pb::UpdateAccountRequest {
        request_id: "upsert-1".to_owned(),
        external_key: "crm-7".to_owned(),
        owner: Some("owner-1".to_owned()),
        ..Default::default()
    };
    let first = server
        .accounts
        .update_account(request.clone())
        .await?
        .into_inner();
    let again = server.accounts.update_account(request).await?.into_inner();
    assert!(first.created);
    assert_eq!(first, again);
    Ok(())
}

/// 2026-01-05T09:00:00Z.
const T0: leadflow_domain::Timestamp = leadflow_domain::Timestamp::from_secs(1_767_603_600);

async fn rescore_all(server: &mut TestServer) -> anyhow::Result<()> {
    while let Some(job) = server.engine.run_rescore_batch(2).await? {
        if !job.is_running() {
            break;
        }
    }
    Ok(())
}

async fn a_policy_change_matches_leads_then_decides_their_accounts(
    mut server: TestServer,
) -> anyhow::Result<()> {
    // Under the example (no [accounts]), three people of one company engage.
    let mut people = Vec::new();
    for (name, title) in [("ann", "VP Sales"), ("bob", "Engineer"), ("cat", "Analyst")] {
        let lead = person(&mut server, &format!("{name}@stark.com"), title).await?;
        trial(&mut server, &lead.id, &format!("{name}-1")).await?;
        people.push(lead);
    }
    let err = server
        .accounts
        .get_account(pb::GetAccountRequest {
            account: by_domain("stark.com"),
        })
        .await
        .expect_err("no account without [accounts]");
    assert_eq!(err.code(), tonic::Code::NotFound);

    // Activating [accounts] matches them in the re-score; the account is
    // decided once, after all three.
    activate_source(&mut server.policies, accounted(80)).await?;
    rescore_all(&mut server).await?;
    let stark = account(&mut server, "stark.com").await?;
    assert_eq!((stark.members, stark.engaged_members), (3, 3));
    assert_eq!(account_stage(&stark), pb::AccountStage::Mqa);
    let moves: Vec<(String, String)> = history(&mut server, &stark.id)
        .await?
        .into_iter()
        .map(|t| (t.r#move, t.cause))
        .collect();
    assert_eq!(
        moves,
        [
            ("CREATE".to_owned(), "MATCHED".to_owned()),
            ("ENGAGE".to_owned(), "POLICY_CHANGE".to_owned()),
            ("QUALIFY".to_owned(), "POLICY_CHANGE".to_owned())
        ]
    );

    // A version whose matching no longer applies to them takes them out
    // (each change in their link history); the account keeps its stage.
    let by_key_only = accounted(80).replacen("[accounts]\n", "[accounts]\nmatch = [\"account_key\"]\n", 1);
    activate_source(&mut server.policies, by_key_only).await?;
    rescore_all(&mut server).await?;
    let stark = account(&mut server, "stark.com").await?;
    assert_eq!((stark.members, account_stage(&stark)), (0, pb::AccountStage::Mqa));
    let got = server
        .leads
        .get_lead(pb::GetLeadRequest {
            lead: by_id(&people[0].id),
        })
        .await?
        .into_inner();
    assert_eq!(got.account_id, "");

    // Without [accounts], accounts and their history stay, and are not moved.
    activate_source(&mut server.policies, leadflow_server::DEFAULT_POLICY.to_owned()).await?;
    rescore_all(&mut server).await?;
    assert_eq!(history(&mut server, &stark.id).await?.len(), 3);
    let err = server
        .accounts
        .transition_account(pb::TransitionAccountRequest {
            account: account_id(&stark.id),
            command: pb::AccountCommand::Accept.into(),
            ..Default::default()
        })
        .await
        .expect_err("no [accounts]");
    assert_eq!(reason(&err), "NO_ACCOUNTS_POLICY");
    Ok(())
}

async fn an_explanation_in_the_past_reads_the_account_and_its_members_then(
    mut server: TestServer,
) -> anyhow::Result<()> {
    activate_policy(&mut server, accounted(150)).await?;
    let ann = person(&mut server, "ann@wayne.com", "Director of Ops").await?;
    let bob = person(&mut server, "bob@wayne.com", "Engineer").await?;
    trial(&mut server, &ann.id, "w1").await?;
    let then = server.engine.now();
    server.manual_clock().advance(Span::from_days(30));
    trial(&mut server, &bob.id, "w2").await?;
    trial(&mut server, &bob.id, "w3").await?;
    let explain = |server: &mut TestServer, as_of: Option<leadflow_domain::Timestamp>| {
        let mut client = server.accounts.clone();
        async move {
            client
                .explain_account(pb::ExplainAccountRequest {
                    account: by_domain("wayne.com"),
                    as_of: as_of.map(|t| prost_types::Timestamp {
                        seconds: t.as_micros() / 1_000_000,
                        nanos: 0,
                    }),
                })
                .await
        }
    };
    let past = explain(&mut server, Some(then)).await?.into_inner();
    let parts: Vec<(&str, f64, bool)> = past
        .members
        .iter()
        .map(|m| (m.lead_id.as_str(), m.score, m.engaged))
        .collect();
    assert_eq!(
        parts,
        [(ann.id.as_str(), 30.0, true), (bob.id.as_str(), 0.0, false)]
    );
    let next: Vec<(&str, bool)> = past
        .next_guards
        .iter()
        .map(|g| (g.guard.as_str(), g.passed))
        .collect();
    assert!(next.contains(&("engaged_members_at_least", false)), "{next:?}");
    // Now: ann's 30 decayed over the 30-day half-life, bob's 60 fresh.
    let now = explain(&mut server, None).await?.into_inner();
    let parts: Vec<(&str, f64)> = now
        .members
        .iter()
        .map(|m| (m.lead_id.as_str(), m.score))
        .collect();
    assert_eq!(parts, [(bob.id.as_str(), 60.0), (ann.id.as_str(), 15.0)]);
    let before = leadflow_domain::Timestamp::from_micros(then.as_micros() - 3_600_000_000);
    let result = explain(&mut server, Some(before)).await;
    assert_invalid(result, "as_of", &"before the account existed");
    let future = leadflow_domain::Timestamp::from_micros(server.engine.now().as_micros() + 3_600_000_000);
    let result = explain(&mut server, Some(future)).await;
    assert_invalid(result, "as_of", &"in the future");
    Ok(())
}

async fn entering_mqa_promotes_engaged_members_in_the_background(
    mut server: TestServer,
) -> anyhow::Result<()> {
    let policy = accounted(80).replacen("[accounts]\n", "[accounts]\npromote_members_on_mqa = true\n", 1);
    activate_policy(&mut server, policy).await?;
    let ann = person(&mut server, "ann@cyberdyne.io", "Chief of Staff").await?;
    let bob = person(&mut server, "bob@cyberdyne.io", "Engineer").await?;
    // No company: the MQL guards other than the score refuse him.
    let mut bare = good_fit("cal@cyberdyne.io");
    bare.remove("company");
    let cal = server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: bare,
            ..Default::default()
        })
        .await?
        .into_inner()
        .lead
        .expect("a lead");
    for (lead, id) in [(&ann, "c1"), (&bob, "c2"), (&cal, "c3")] {
        trial(&mut server, &lead.id, id).await?;
    }
    let acct = account(&mut server, "cyberdyne.io").await?;
    assert_eq!(account_stage(&acct), pb::AccountStage::Mqa);
    // Not in the commit that made it an MQA: in the background.
    assert_eq!(stage(&server.lead(&ann.id).await?), pb::Stage::Iql);
    while server.engine.run_account_promotions(2).await? > 0 {}
    for (lead, expected) in [
        (&ann, pb::Stage::Mql),
        (&bob, pb::Stage::Mql),
        (&cal, pb::Stage::Iql),
    ] {
        assert_eq!(stage(&server.lead(&lead.id).await?), expected, "{}", lead.id);
    }
    let history = full_history(&mut server, &ann.id, 100).await?;
    let promote = history
        .iter()
        .find_map(|e| match &e.entry {
            Some(pb::history_entry::Entry::Transition(t)) if t.to_stage == pb::Stage::Mql as i32 => {
                Some(t.clone())
            }
            _ => None,
        })
        .expect("a move to MQL");
    assert_eq!(
        (promote.actor.as_str(), promote.reason.as_str()),
        ("leadflow", format!("account {} entered MQA", acct.id).as_str())
    );
    Ok(())
}

async fn the_account_funnel_counts_stages_and_conversions(mut server: TestServer) -> anyhow::Result<()> {
    activate_policy(&mut server, accounted(80)).await?;
    let start = seconds_ago(60);
    for (name, title) in [("ann", "VP Sales"), ("bob", "Engineer"), ("cat", "Analyst")] {
        let lead = person(&mut server, &format!("{name}@tyrell.com"), title).await?;
        trial(&mut server, &lead.id, &format!("t-{name}")).await?;
    }
    person(&mut server, "dan@oscorp.com", "Engineer").await?; // a target, never engaged
    let mut analytics =
        leadflow_proto::v1::analytics_service_client::AnalyticsServiceClient::new(server.channel.clone());
    let period = pb::Period {
        start: Some(start),
        end: Some(seconds_ago(-60)),
    };
    let f = analytics
        .get_funnel(pb::GetFunnelRequest {
            period: Some(period),
            subject: pb::FunnelSubject::Accounts.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(f.groups.is_empty());
    let f = f.account_funnel.expect("an account funnel");
    let entries: Vec<(i32, i64)> = f.entries.iter().map(|e| (e.stage, e.accounts)).collect();
    assert_eq!(
        entries[..3],
        [
            (pb::AccountStage::Target as i32, 2),
            (pb::AccountStage::Engaged as i32, 1),
            (pb::AccountStage::Mqa as i32, 1)
        ]
    );
    let target_to_engaged = &f.conversions[0];
    assert_eq!(
        (
            target_to_engaged.cohort,
            target_to_engaged.converted,
            target_to_engaged.rate
        ),
        (2, 1, 0.5)
    );
    let err = analytics
        .get_funnel(pb::GetFunnelRequest {
            period: Some(period),
            subject: pb::FunnelSubject::Accounts.into(),
            group_by_property: "first:channel".to_owned(),
            ..Default::default()
        })
        .await;
    assert_invalid(err, "group_by_property", &"grouped accounts");
    let err = analytics
        .get_funnel(pb::GetFunnelRequest {
            period: Some(period),
            subject: 9,
            ..Default::default()
        })
        .await;
    assert_invalid(err, "subject", &"no such subject");
    Ok(())
}

async fn the_account_view_shows_stages_and_top_accounts_without_people(
    mut server: TestServer,
) -> anyhow::Result<()> {
    activate_policy(&mut server, accounted(80)).await?;
    for (name, title) in [("ann", "VP Sales"), ("bob", "Engineer"), ("cat", "Analyst")] {
        let lead = person(&mut server, &format!("{name}@umbrella.io"), title).await?;
        trial(&mut server, &lead.id, &format!("u-{name}")).await?;
    }
    person(&mut server, "dan@oscorp.com", "Engineer").await?;
    let http = super::dashboard::with_http(&server, false).await?;
    let addr = http.http_addr.expect("the HTTP side");
    let (status, page) = super::dashboard::get(addr, "/dashboard/accounts", &[]).await?;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<tr data-stage=\"MQA\"><td>MQA</td><td class=\"n\">1</td>"),
        "{page}"
    );
    assert!(
        page.contains("<tr data-stage=\"TARGET\"><td>TARGET</td><td class=\"n\">1</td>"),
        "{page}"
    );
    let umbrella = page.find("umbrella.io").expect("the top account");
    let oscorp = page.find("oscorp.com").expect("the target");
    assert!(umbrella < oscorp, "highest score first");
    assert!(page.contains("decision_maker 1"), "its buying group");
    for person in ["ann@", "bob@", "VP Sales", "Engineer"] {
        assert!(!page.contains(person), "no one is named: {person}");
    }
    http.shutdown(std::time::Duration::from_secs(1)).await;
    Ok(())
}

async fn a_simulation_reports_the_accounts_a_draft_would_create_and_move(
    mut server: TestServer,
) -> anyhow::Result<()> {
    for (name, title) in [("ann", "VP Sales"), ("bob", "Engineer"), ("cat", "Analyst")] {
        let lead = person(&mut server, &format!("{name}@initrode.com"), title).await?;
        trial(&mut server, &lead.id, &format!("i-{name}")).await?;
    }
    person(&mut server, "solo@gmail.com", "Engineer").await?;
    let before = server.rows().await;
    let sim = server
        .policies
        .simulate_policy(pb::SimulatePolicyRequest {
            policy: Some(pb::simulate_policy_request::Policy::Source(accounted(80))),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(server.rows().await, before, "a simulation writes nothing");
    assert_eq!(sim.accounts_created, 1, "initrode.com; none for free mail");
    let stages: Vec<(i32, i64, i64)> = sim
        .account_stages
        .iter()
        .filter(|s| s.before != 0 || s.after != 0)
        .map(|s| (s.stage, s.before, s.after))
        .collect();
    assert_eq!(
        stages,
        [
            (pb::AccountStage::Target as i32, 1, 0),
            (pb::AccountStage::Mqa as i32, 0, 1)
        ]
    );
    let moved: Vec<(&str, i32, i32, i32)> = sim
        .accounts_moved
        .iter()
        .map(|m| (m.name.as_str(), m.from, m.to, m.engaged_members))
        .collect();
    assert_eq!(
        moved,
        [(
            "initrode.com",
            pb::AccountStage::Target as i32,
            pb::AccountStage::Mqa as i32,
            3
        )]
    );
    assert!(sim.accounts_moved[0].account_id.is_empty(), "one it would create");
    // What the activation then does.
    activate_source(&mut server.policies, accounted(80)).await?;
    rescore_all(&mut server).await?;
    assert_eq!(
        account_stage(&account(&mut server, "initrode.com").await?),
        pb::AccountStage::Mqa
    );
    Ok(())
}

/// The members' engagement ends, as `ExplainAccount` gives them, soonest first.
async fn engagement_ends(server: &mut TestServer, domain: &str) -> anyhow::Result<Vec<(String, i64)>> {
    let x = server
        .accounts
        .explain_account(pb::ExplainAccountRequest {
            account: by_domain(domain),
            as_of: None,
        })
        .await?
        .into_inner();
    let mut ends: Vec<(String, i64)> = x
        .members
        .iter()
        .filter_map(|m| {
            let t = m.engaged_until.as_ref()?;
            Some((
                m.lead_id.clone(),
                t.seconds * 1_000_000 + i64::from(t.nanos / 1_000),
            ))
        })
        .collect();
    ends.sort_by_key(|(_, t)| *t);
    Ok(ends)
}

/// Engaged members as `ListAccounts` shows them: as stored.
async fn listed_engaged(server: &mut TestServer) -> anyhow::Result<Vec<i32>> {
    Ok(server
        .accounts
        .list_accounts(pb::ListAccountsRequest::default())
        .await?
        .into_inner()
        .accounts
        .iter()
        .map(|a| a.engaged_members)
        .collect())
}

async fn decay_takes_members_out_of_the_buying_group_on_a_durable_timer(
    mut server: TestServer,
) -> anyhow::Result<()> {
    activate_policy(&mut server, accounted(1000)).await?;
    let ann = person(&mut server, "ann@globex.com", "VP Sales").await?;
    let bob = person(&mut server, "bob@globex.com", "Engineer").await?;
    trial(&mut server, &ann.id, "g1").await?;
    trial(&mut server, &bob.id, "g2").await?;
    trial(&mut server, &bob.id, "g3").await?;
    let ends = engagement_ends(&mut server, "globex.com").await?;
    let ids: Vec<&str> = ends.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [ann.id.as_str(), bob.id.as_str()], "30 points end before 60");
    assert_eq!(listed_engaged(&mut server).await?, [2]);
    let clock = server.manual_clock();
    let now = clock.now().as_micros();
    // A second before ann's end: nothing changes.
    clock.advance(Span::from_micros(ends[0].1 - now - 1_000_000));
    server.engine.fire_due_timers(100).await?;
    assert_eq!(listed_engaged(&mut server).await?, [2]);
    // At it, the account's timer takes her out, with no call on the account.
    server.manual_clock().advance(Span::from_secs(1));
    server.engine.fire_due_timers(100).await?;
    assert_eq!(listed_engaged(&mut server).await?, [1]);
    let acct = account(&mut server, "globex.com").await?;
    assert_eq!(acct.engaged_members, 1);
    assert_eq!(
        account_stage(&acct),
        pb::AccountStage::Engaged,
        "decay moves no account"
    );
    // Then bob's: the timer had moved on to it.
    let now = server.manual_clock().now().as_micros();
    server.manual_clock().advance(Span::from_micros(ends[1].1 - now));
    server.engine.fire_due_timers(100).await?;
    assert_eq!(listed_engaged(&mut server).await?, [0]);
    // An engagement makes bob engaged again, and schedules his end anew.
    trial(&mut server, &bob.id, "g4").await?;
    assert_eq!(listed_engaged(&mut server).await?, [1]);
    let again = engagement_ends(&mut server, "globex.com").await?;
    assert_eq!(again.len(), 1);
    // Under a policy without `[accounts]` its end still comes, once.
    activate_policy(&mut server, leadflow_server::DEFAULT_POLICY.to_owned()).await?;
    let now = server.manual_clock().now().as_micros();
    server.manual_clock().advance(Span::from_micros(again[0].1 - now));
    server.engine.fire_due_timers(100).await?;
    assert_eq!(listed_engaged(&mut server).await?, [0]);
    assert_eq!(server.engine.fire_due_timers(100).await?, 0, "nothing left due");
    Ok(())
}

async fn a_simulation_counts_erased_members_and_gives_a_keyed_account_its_domain(
    mut server: TestServer,
) -> anyhow::Result<()> {
    // Accounts on, none created by a match, MQA out of reach: three
    // engaged members of a loaded account leave it ENGAGED.
    let no_create = accounted(1000).replacen("[accounts]\n", "[accounts]\ncreate = false\n", 1);
    assert!(no_create.contains("create = false"));
    activate_policy(&mut server, no_create).await?;
    server
        .accounts
        .create_account(pb::CreateAccountRequest {
            domain: "hooli.com".to_owned(),
            ..Default::default()
        })
        .await?;
    let mut cat = None;
    for (name, title) in [("ann", "VP Sales"), ("bob", "Engineer"), ("cat", "Analyst")] {
        let lead = person(&mut server, &format!("{name}@hooli.com"), title).await?;
        trial(&mut server, &lead.id, &format!("h-{name}")).await?;
        cat = Some(lead.id);
    }
    let cat = cat.expect("three leads");
    server
        .leads
        .erase_lead(pb::EraseLeadRequest { lead: by_id(&cat) })
        .await?;
    // Two people of another company, left unmatched: the first names the
    // CRM's account by key, the second only has the same email domain.
    let mut dee = good_fit("dee@piedpiper.com");
    dee.insert("account_key".to_owned(), "crm-pp".to_owned());
    dee.insert("title".to_owned(), "Director of IT".to_owned());
    server
        .leads
        .create_lead(pb::CreateLeadRequest {
            profile: dee,
            ..Default::default()
        })
        .await?;
    person(&mut server, "eve@piedpiper.com", "Engineer").await?;
    let sim = server
        .policies
        .simulate_policy(pb::SimulatePolicyRequest {
            policy: Some(pb::simulate_policy_request::Policy::Source(accounted(80))),
            ..Default::default()
        })
        .await?
        .into_inner();
    // Hooli reaches MQA only with the erased member's frozen part: three
    // engaged members, 90 points.
    let moved: Vec<(&str, i32, i32, i32)> = sim
        .accounts_moved
        .iter()
        .map(|m| (m.name.as_str(), m.from, m.to, m.engaged_members))
        .collect();
    assert_eq!(
        moved,
        [(
            "hooli.com",
            pb::AccountStage::Engaged as i32,
            pb::AccountStage::Mqa as i32,
            3
        )]
    );
    assert_eq!(sim.accounts_created, 1, "crm-pp, which eve joins by its domain");
    // As the activation then does.
    activate_policy(&mut server, accounted(80)).await?;
    rescore_all(&mut server).await?;
    let listed = server
        .accounts
        .list_accounts(pb::ListAccountsRequest::default())
        .await?
        .into_inner()
        .accounts;
    assert_eq!(listed.len(), 2, "hooli.com and crm-pp: {listed:?}");
    let pp = listed
        .iter()
        .find(|a| a.external_key == "crm-pp")
        .expect("the keyed account");
    assert_eq!(pp.domain, "piedpiper.com");
    assert_eq!(pp.members, 2);
    assert_eq!(
        account_stage(&account(&mut server, "hooli.com").await?),
        pb::AccountStage::Mqa
    );
    Ok(())
}

scenarios! {
    decay_takes_members_out_of_the_buying_group_on_a_durable_timer = clock_at(T0),
    a_simulation_counts_erased_members_and_gives_a_keyed_account_its_domain = clock_at(T0),
    three_people_make_an_mqa_in_one_commit_with_the_events_in_order,
    an_explanation_shows_each_member_and_what_blocks = clock_at(T0),
    keys_free_mail_and_manual_links_decide_the_account,
    hand_moves_check_reasons_and_guards,
    members_engaging_at_once_lose_no_update_and_qualify_once,
    an_erased_member_keeps_its_numbers = clock_at(T0),
    bad_account_requests_are_refused_with_their_fields,
    a_policy_change_matches_leads_then_decides_their_accounts = clock_at(T0),
    an_explanation_in_the_past_reads_the_account_and_its_members_then = clock_at(T0),
    entering_mqa_promotes_engaged_members_in_the_background = clock_at(T0),
    the_account_funnel_counts_stages_and_conversions,
    the_account_view_shows_stages_and_top_accounts_without_people,
    a_simulation_reports_the_accounts_a_draft_would_create_and_move = clock_at(T0),
}

//! Accounts: the policy's `[accounts]`, matching, personas, aggregates and
//! the buying group, and the account transition table with its guards.

use leadflow_domain::account::{
    Account, AccountCause, AccountCommand, AccountError, AccountEvent, AccountGuard, AccountMove,
    AggregateInput, BuyingGroup, Contribution, EngagedUntil, Facts, ManualAccountTransition, MatchKey,
    MatchedBy, Member, SumState, create_account, decide_account, explain_account, inherited, match_lead,
    transition_account,
};
use leadflow_domain::policy::{Aggregate, Matcher};
use leadflow_domain::profile::Profile;
use leadflow_domain::{AccountStage, DomainError, Policy, Span, Stage, Timestamp};

use crate::common::{ACCOUNTS, T0, accounted, accounted_toml, attrs, days, example_toml, hours};

fn errors(toml: &str) -> Vec<String> {
    match Policy::from_toml(toml) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn refused(extra: &str, replace: Option<(&str, &str)>, expect: &str) {
    let mut toml = accounted_toml(extra);
    if let Some((from, to)) = replace {
        assert!(toml.contains(from), "no {from:?}");
        toml = toml.replacen(from, to, 1);
    }
    let errors = errors(&toml);
    assert!(
        errors.iter().any(|e| e.contains(expect)),
        "expected {expect:?} among {errors:#?}"
    );
}

#[test]
fn the_accounts_section_reads_with_its_defaults() {
    let p = accounted("");
    let a = p.accounts.as_ref().expect("[accounts]");
    assert_eq!(a.matchers, [Matcher::AccountKey, Matcher::EmailDomain]);
    assert!(a.create);
    assert!(a.ignore_domains.contains("partner-mail.net"), "lower-cased");
    assert_eq!(a.inherit, ["industry", "company_size", "country"]);
    assert_eq!(a.engaged_at_least, 20.0);
    assert_eq!(a.score.aggregate, Aggregate::Sum);
    assert_eq!(a.score.model, 0);
    assert!(!a.promote_members_on_mqa);
    assert_eq!(a.mqa.engaged_members_at_least, 3);
    assert_eq!(a.mqa.personas_required, ["decision_maker"]);
    assert_eq!(a.mqa.fit_at_least, None);
    assert_eq!(a.workflows.len(), 1);
    assert_eq!(a.workflows[0].stage, AccountStage::Mqa);
    assert!(
        p.workflows.iter().all(|w| w.id != "mqa-alert"),
        "an account workflow is not a lead's"
    );
    assert_eq!(p.reasons.reject_account, ["not_ready", "no_buying_group"]);
    assert_eq!(p.personas.len(), 2);
    // A policy without [accounts] has none, and personas need no accounts.
    assert!(crate::common::policy().accounts.is_none());
}

#[test]
fn aggregates_and_matchers_read_every_form() {
    for (text, aggregate) in [
        ("sum", Aggregate::Sum),
        ("max", Aggregate::Max),
        ("top:3", Aggregate::Top(3)),
    ] {
        let p = accounted(&format!("[accounts.score]\naggregate = \"{text}\"\n"));
        assert_eq!(p.accounts.expect("accounts").score.aggregate, aggregate);
    }
    let p = Policy::from_toml(&accounted_toml("").replacen(
        "[accounts]\n",
        "[accounts]\nmatch = [\"email_domain\"]\ncreate = false\npromote_members_on_mqa = true\n",
        1,
    ))
    .expect("valid");
    let a = p.accounts.expect("accounts");
    assert_eq!(a.matchers, [Matcher::EmailDomain]);
    assert!(!a.create);
    assert!(a.promote_members_on_mqa);
}

#[test]
fn bad_accounts_sections_are_refused_with_their_paths() {
    refused(
        "[accounts.score]\naggregate = \"median\"\n",
        None,
        "accounts.score.aggregate: unknown aggregate \"median\"",
    );
    refused(
        "[accounts.score]\naggregate = \"top:0\"\n",
        None,
        "expected sum, max or top:N",
    );
    refused(
        "[accounts.score]\nmodel = \"nope\"\n",
        None,
        "accounts.score.model: unknown model \"nope\"",
    );
    refused(
        "",
        Some(("[accounts]\n", "[accounts]\nmatch = [\"company\"]\n")),
        "accounts.match[0]: unknown matcher \"company\"",
    );
    refused(
        "",
        Some((
            "ignore_domains = [\"Partner-Mail.net\"]",
            "ignore_domains = [\"a@b.com\"]",
        )),
        "accounts.ignore_domains[0]: \"a@b.com\" is not a domain",
    );
    refused(
        "",
        Some(("engaged_at_least = 20", "engaged_at_least = 0")),
        "accounts.engaged_at_least: must be more than zero",
    );
    refused(
        "",
        Some(("engaged_at_least = 20\n", "")),
        "accounts.engaged_at_least: required",
    );
    refused(
        "",
        Some(("[accounts]\n", "[accounts]\nowner = \"x\"\n")),
        "accounts.owner: unknown key",
    );
    refused(
        "",
        Some((
            "personas_required = [\"decision_maker\"]",
            "personas_required = [\"champion\"]",
        )),
        "stages.MQA.personas_required[0]: no persona \"champion\"",
    );
    refused(
        "",
        Some(("engaged_members_at_least = 3", "engaged_members_at_least = -1")),
        "stages.MQA.engaged_members_at_least",
    );
    refused(
        "",
        Some((
            "engagement_at_least = 100\n",
            "engagement_at_least = 100\nfit_at_least = 10\nfit = 3\n",
        )),
        "stages.MQA.fit: unknown key",
    );
    refused(
        "",
        Some(("on = \"account_entered:MQA\"", "on = \"account_entered:MQL\"")),
        "unknown account stage \"MQL\"",
    );
    refused(
        "",
        Some((
            "on = \"account_entered:MQA\"",
            "on = \"account_entered:MQA\"\nafter = \"1d\"",
        )),
        "workflow[6].after: an account_entered workflow fires when the account enters the stage",
    );
    // Without [accounts]: no MQA stage, no account workflow.
    let plain = example_toml();
    let errs = errors(&format!("{plain}\n[stages.MQA]\nengagement_at_least = 10\n"));
    assert!(
        errs.iter()
            .any(|e| e.contains("stages.MQA: an MQA is a marketing-qualified account")),
        "{errs:#?}"
    );
    let errs = errors(&format!(
        "{plain}\n[[workflow]]\nid = \"x\"\non = \"account_entered:MQA\"\nemit = \"y\"\n"
    ));
    assert!(
        errs.iter()
            .any(|e| e.contains("account_entered needs [accounts]")),
        "{errs:#?}"
    );
    // [accounts] needs [stages.MQA], and an account fit threshold needs fit rules.
    let without_mqa = accounted_toml("").replacen(
        "[stages.MQA]\nengagement_at_least = 100\nengaged_members_at_least = 3\npersonas_required = [\"decision_maker\"]\n",
        "",
        1,
    );
    assert!(
        errors(&without_mqa)
            .iter()
            .any(|e| e.contains("stages.MQA: required with [accounts]")),
    );
    let no_fit_rules = accounted_toml("")
        .replacen("[[accounts.fit]]\nid = \"target-industry\"\nattribute = \"industry\"\none_of = [\"software\", \"fintech\"]\npoints = 20\n", "", 1)
        .replacen("engagement_at_least = 100\n", "engagement_at_least = 100\nfit_at_least = 10\n", 1);
    assert!(
        errors(&no_fit_rules)
            .iter()
            .any(|e| e.contains("stages.MQA.fit_at_least: an account's fit comes from [[accounts.fit]]")),
        "{:#?}",
        errors(&no_fit_rules)
    );
    // A persona needs exactly one matcher; its id is an id.
    refused(
        "[[persona]]\nid = \"x y\"\nattribute = \"title\"\nequals = \"CTO\"\n",
        None,
        "persona[2].id: \"x y\" is not an id",
    );
    refused(
        "[[persona]]\nid = \"z\"\nattribute = \"title\"\n",
        None,
        "persona[2]: needs exactly one of equals",
    );
    // An unknown account reason in a reasons list is only a list entry;
    // the ACCOUNTS text itself is valid.
    assert!(ACCOUNTS.contains("[accounts]"));
}

fn profile(pairs: &[(&str, &str)]) -> Profile {
    Profile::capture(attrs(pairs)).expect("a valid profile")
}

#[test]
fn a_lead_is_matched_by_key_then_domain_never_by_free_mail() {
    let p = accounted("");
    let a = p.accounts.as_ref().expect("accounts");
    let by_domain = match_lead(a, &profile(&[("email", "Ann@Acme.COM")])).expect("a match");
    assert_eq!(by_domain.by, MatchedBy::EmailDomain);
    assert_eq!(by_domain.key, MatchKey::Domain("acme.com".to_owned()));
    let by_key = match_lead(
        a,
        &profile(&[("email", "ann@acme.com"), ("account_key", " crm-42 ")]),
    )
    .expect("a match");
    assert_eq!(by_key.by, MatchedBy::AccountKey);
    assert_eq!(by_key.key, MatchKey::External("crm-42".to_owned()));
    for free in [
        "bob@gmail.com",
        "bob@GMAIL.com",
        "x@proton.me",
        "y@partner-mail.net",
    ] {
        assert_eq!(match_lead(a, &profile(&[("email", free)])), None, "{free}");
    }
    // A blank key is no key: the domain decides.
    let blank = match_lead(a, &profile(&[("email", "c@acme.com"), ("account_key", "  ")]));
    assert_eq!(blank.map(|m| m.by), Some(MatchedBy::EmailDomain));
    // The order is the policy's.
    let domain_first = Policy::from_toml(&accounted_toml("").replacen(
        "[accounts]\n",
        "[accounts]\nmatch = [\"email_domain\", \"account_key\"]\n",
        1,
    ))
    .expect("valid");
    let a2 = domain_first.accounts.as_ref().expect("accounts");
    let m = match_lead(
        a2,
        &profile(&[("email", "ann@acme.com"), ("account_key", "crm-42")]),
    )
    .expect("a match");
    assert_eq!(m.by, MatchedBy::EmailDomain);
    // A free-mail lead with a key is matched by its key under either order.
    let m = match_lead(
        a2,
        &profile(&[("email", "ann@gmail.com"), ("account_key", "crm-42")]),
    )
    .expect("a match");
    assert_eq!(m.by, MatchedBy::AccountKey);
    // An account created by a match copies only the listed attributes.
    let copied = inherited(
        a,
        &profile(&[
            ("email", "ann@acme.com"),
            ("industry", "Software"),
            ("title", "CTO"),
            ("country", "DE"),
        ]),
    );
    assert_eq!(copied, attrs(&[("industry", "Software"), ("country", "DE")]));
}

#[test]
fn an_account_key_is_a_key_and_a_workflow_on_may_be_spaced() {
    let long = "k".repeat(129);
    let err =
        Profile::capture(attrs(&[("email", "a@acme.com"), ("account_key", &long)])).expect_err("too long");
    assert!(err.to_string().contains("profile.account_key"), "{err}");
    let err = Profile::capture(attrs(&[("email", "a@acme.com"), ("account_key", "a\u{7}b")]))
        .expect_err("a control character");
    assert!(err.to_string().contains("profile.account_key"), "{err}");
    let ok = Profile::capture(attrs(&[
        ("email", "a@acme.com"),
        ("account_key", &"k".repeat(128)),
    ]))
    .expect("128 is a key");
    let err = ok
        .merge(attrs(&[("account_key", &long)]))
        .expect_err("a change is checked too");
    assert!(err.to_string().contains("profile.account_key"), "{err}");
    // A domain longer than any there is matches nothing.
    let p = accounted("");
    let a = p.accounts.as_ref().expect("accounts");
    let huge = format!("x@{}.com", "d".repeat(300));
    assert_eq!(match_lead(a, &profile(&[("email", &huge)])), None);
    let spaced = accounted_toml("").replacen(
        "on = \"account_entered:MQA\"",
        "on = \" account_entered : MQA \"",
        1,
    );
    let p = Policy::from_toml(&spaced).expect("spaces around the parts are ignored");
    assert_eq!(p.accounts.expect("accounts").workflows.len(), 1);
}

#[test]
fn a_lead_has_the_first_persona_that_matches() {
    let p = accounted("");
    assert_eq!(
        p.persona(&profile(&[("email", "a@acme.com"), ("title", "VP Engineering")])),
        Some("decision_maker"),
        "both match: the first in policy order"
    );
    assert_eq!(
        p.persona(&profile(&[("email", "a@acme.com"), ("title", "Data Analyst")])),
        Some("practitioner")
    );
    assert_eq!(
        p.persona(&profile(&[("email", "a@acme.com"), ("title", "Intern")])),
        None
    );
    assert_eq!(p.persona(&profile(&[("email", "a@acme.com")])), None);
}

fn member(lead: &str, value: f64, at: Timestamp, persona: Option<&str>) -> Member {
    Member {
        lead: lead.to_owned(),
        stage: Stage::Iql,
        entered_stage_at: T0,
        persona: persona.map(str::to_owned),
        score: Contribution { value, at },
        erased: false,
    }
}

#[test]
fn aggregates_sum_max_and_top_n_at_one_instant() {
    let members = vec![
        member("a", 40.0, T0, None),
        member("b", 30.0, T0, None),
        member("c", -10.0, T0, None),
        Member {
            stage: Stage::Disqualified,
            ..member("d", 500.0, T0, None)
        },
    ];
    for (aggregate, expected) in [("sum", 60.0), ("max", 40.0), ("top:2", 70.0), ("top:10", 60.0)] {
        let p = accounted(&format!("[accounts.score]\naggregate = \"{aggregate}\"\n"));
        let a = p.accounts.as_ref().expect("accounts");
        let input = AggregateInput::of(&p, a, &members);
        assert_eq!(input.value_at(&p, a, T0), expected, "{aggregate}");
        // Thirty days on (the example's half-life), every member halves.
        assert_eq!(input.value_at(&p, a, days(30)), expected / 2.0, "{aggregate}");
    }
}

#[test]
fn engagement_ends_at_the_closed_form_instant() {
    let p = accounted("");
    let c = Contribution { value: 80.0, at: T0 };
    // 80 → 20 takes two half-lives (60 days) and a hair.
    let EngagedUntil::Until(end) = c.engaged_until(&p, 0, 20.0) else {
        panic!("decays");
    };
    assert!(
        end > days(60) && end < days(60).saturating_add(Span::from_secs(1)),
        "{end}"
    );
    let before = Timestamp::from_micros(end.as_micros() - 1);
    assert!(leadflow_domain::score::round6(c.value_at(&p, 0, before)) >= 20.0);
    assert!(leadflow_domain::score::round6(c.value_at(&p, 0, end)) < 20.0);
    assert_eq!(
        Contribution { value: 19.9, at: T0 }.engaged_until(&p, 0, 20.0),
        EngagedUntil::Not
    );
    let no_decay = accounted("").clone();
    let mut no_decay = no_decay;
    no_decay.models[0].half_life = None;
    assert_eq!(c.engaged_until(&no_decay, 0, 20.0), EngagedUntil::Always);
}

fn facts(engagement: f64, engaged: &[Option<&str>]) -> Facts {
    let mut group = BuyingGroup::default();
    for persona in engaged {
        group.add(*persona);
    }
    Facts {
        engagement,
        fit: 0.0,
        group,
        member_sql: None,
        member_customer: None,
    }
}

fn new_account() -> Account {
    create_account(T0, AccountCause::Create, &facts(0.0, &[])).0
}

fn moves(events: &[AccountEvent]) -> Vec<(Option<AccountStage>, AccountStage, AccountMove)> {
    events
        .iter()
        .filter_map(|e| match e {
            AccountEvent::Transition(t) => Some((t.from, t.to, t.by)),
            AccountEvent::Trigger(_) => None,
        })
        .collect()
}

fn member_cause() -> AccountCause {
    AccountCause::Member {
        lead: "lead-1".to_owned(),
        event_id: Some("e1".to_owned()),
    }
}

#[test]
fn a_target_account_engages_then_qualifies_in_one_decision_with_its_trigger_last() {
    use AccountStage::*;
    let p = accounted("");
    let account = new_account();
    let dm = Some("decision_maker");
    // One engaged member: ENGAGED only.
    let d = decide_account(&p, &account, &facts(30.0, &[None]), &member_cause(), hours(1));
    assert_eq!(moves(&d.events), [(Some(Target), Engaged, AccountMove::Engage)]);
    // Three engaged, a decision maker among them, 120 points: ENGAGED then MQA.
    let d = decide_account(
        &p,
        &account,
        &facts(120.0, &[None, None, dm]),
        &member_cause(),
        hours(1),
    );
    assert_eq!(
        moves(&d.events),
        [
            (Some(Target), Engaged, AccountMove::Engage),
            (Some(Engaged), Mqa, AccountMove::Qualify)
        ]
    );
    assert!(matches!(d.events.last(), Some(AccountEvent::Trigger(t)) if t.emit == "sales.mqa_alert"));
    assert_eq!(d.account.stage, Mqa);
    assert!(!d.promote_members, "promote_members_on_mqa is off");
    let AccountEvent::Transition(t) = &d.events[1] else {
        panic!("a transition");
    };
    assert_eq!(t.cause, member_cause());
    assert_eq!(t.engaged_members, 3);
    assert!(t.guards.iter().all(|g| g.passed));
}

#[test]
fn each_mqa_guard_blocks_on_its_own() {
    use AccountStage::*;
    let p = accounted("");
    let engaged = Account {
        stage: Engaged,
        ..new_account()
    };
    let dm = Some("decision_maker");
    for (facts, blocking) in [
        (facts(99.0, &[None, None, dm]), AccountGuard::EngagementAtLeast),
        (facts(150.0, &[None, dm]), AccountGuard::EngagedMembersAtLeast),
        (
            facts(150.0, &[None, None, Some("practitioner")]),
            AccountGuard::PersonasRequired,
        ),
    ] {
        let d = decide_account(&p, &engaged, &facts, &member_cause(), hours(1));
        assert!(d.events.is_empty(), "{blocking} should block");
        let explanation =
            leadflow_domain::account::next_step(p.accounts.as_ref().expect("a"), Engaged, &facts)
                .expect("a next step");
        assert_eq!(explanation.to, Mqa);
        let failed: Vec<AccountGuard> = explanation
            .guards
            .iter()
            .filter(|g| !g.passed)
            .map(|g| g.guard)
            .collect();
        assert_eq!(failed, [blocking]);
    }
    // The account fit guard, when set.
    let p = Policy::from_toml(&accounted_toml("").replacen(
        "engagement_at_least = 100\n",
        "engagement_at_least = 100\nfit_at_least = 20\n",
        1,
    ))
    .expect("valid");
    let mut f = facts(150.0, &[None, None, dm]);
    let d = decide_account(&p, &engaged, &f, &member_cause(), hours(1));
    assert!(d.events.is_empty(), "fit 0 < 20");
    f.fit = 20.0;
    let d = decide_account(&p, &engaged, &f, &member_cause(), hours(1));
    assert_eq!(d.account.stage, Mqa);
}

#[test]
fn a_member_sql_opens_and_a_member_customer_wins_recording_each_stage() {
    use AccountStage::*;
    let p = accounted("");
    let mut f = facts(0.0, &[]);
    f.member_sql = Some("lead-7".to_owned());
    let d = decide_account(&p, &new_account(), &f, &member_cause(), hours(2));
    assert_eq!(
        moves(&d.events),
        [
            (Some(Target), Engaged, AccountMove::Open),
            (Some(Engaged), Mqa, AccountMove::Open),
            (Some(Mqa), Opportunity, AccountMove::Open)
        ]
    );
    f.member_customer = Some("lead-7".to_owned());
    let d = decide_account(&p, &d.account, &f, &member_cause(), hours(3));
    assert_eq!(
        moves(&d.events),
        [(Some(Opportunity), Customer, AccountMove::Win)]
    );
    // CUSTOMER is terminal: nothing moves it.
    let again = decide_account(&p, &d.account, &f, &member_cause(), hours(4));
    assert!(again.events.is_empty());
    let err = transition_account(
        &p,
        &d.account,
        &f,
        &ManualAccountTransition {
            command: AccountCommand::Disqualify,
            reason: Some("spam".to_owned()),
            actor: None,
        },
        hours(4),
    )
    .expect_err("terminal");
    assert!(
        matches!(err, AccountError::InvalidTransition { stage: Customer, .. }),
        "{err}"
    );
}

fn cmd(command: AccountCommand, reason: Option<&str>) -> ManualAccountTransition {
    ManualAccountTransition {
        command,
        reason: reason.map(str::to_owned),
        actor: Some("rep@acme.com".to_owned()),
    }
}

#[test]
fn manual_account_moves_check_reasons_and_guards() {
    use AccountStage::*;
    let p = accounted("");
    let engaged = Account {
        stage: Engaged,
        ..new_account()
    };
    let dm = Some("decision_maker");
    // PROMOTE skips the score threshold, not the buying group.
    let err = transition_account(
        &p,
        &engaged,
        &facts(0.0, &[None]),
        &cmd(AccountCommand::Promote, Some("board asked")),
        hours(1),
    )
    .expect_err("one engaged member");
    let AccountError::GuardFailed { failed, .. } = err else {
        panic!("guards");
    };
    let names: Vec<AccountGuard> = failed.iter().map(|g| g.guard).collect();
    assert_eq!(
        names,
        [
            AccountGuard::EngagedMembersAtLeast,
            AccountGuard::PersonasRequired
        ]
    );
    let err = transition_account(
        &p,
        &engaged,
        &facts(0.0, &[None, None, dm]),
        &cmd(AccountCommand::Promote, None),
        hours(1),
    )
    .expect_err("a reason is required");
    assert!(
        matches!(err, AccountError::Invalid(DomainError::InvalidArgument { .. })),
        "{err}"
    );
    let mqa = transition_account(
        &p,
        &engaged,
        &facts(0.0, &[None, None, dm]),
        &cmd(AccountCommand::Promote, Some("board asked")),
        hours(1),
    )
    .expect("promoted");
    assert_eq!(mqa.account.stage, Mqa);
    assert_eq!(mqa.window_reset, None);
    // REJECT takes a reason from [reasons] reject_account and restarts the window.
    let err = transition_account(
        &p,
        &mqa.account,
        &facts(0.0, &[]),
        &cmd(AccountCommand::Reject, Some("bad_fit")),
        hours(2),
    )
    .expect_err("a lead's reason, not an account's");
    assert!(err.to_string().contains("reject_account"), "{err}");
    let rejected = transition_account(
        &p,
        &mqa.account,
        &facts(0.0, &[]),
        &cmd(AccountCommand::Reject, Some("no_buying_group")),
        hours(2),
    )
    .expect("rejected");
    assert_eq!(rejected.account.stage, Engaged);
    assert_eq!(rejected.account.window_start, Some(hours(2)));
    assert_eq!(rejected.window_reset, Some(hours(2)));
    // A member that entered SQL before the reject does not reopen it.
    let before = Member {
        stage: Stage::Sql,
        entered_stage_at: hours(1),
        ..member("lead-9", 10.0, hours(1), None)
    };
    let f = Facts::of(
        &p,
        p.accounts.as_ref().expect("a"),
        &rejected.account,
        &Profile::default(),
        std::slice::from_ref(&before),
        hours(3),
    );
    assert_eq!(f.member_sql, None);
    let after = Member {
        entered_stage_at: hours(3),
        ..before
    };
    let f = Facts::of(
        &p,
        p.accounts.as_ref().expect("a"),
        &rejected.account,
        &Profile::default(),
        std::slice::from_ref(&after),
        hours(3),
    );
    assert_eq!(f.member_sql.as_deref(), Some("lead-9"));
    // DISQUALIFY from anywhere but CUSTOMER, REQUALIFY back to TARGET.
    let dq = transition_account(
        &p,
        &rejected.account,
        &facts(0.0, &[]),
        &cmd(AccountCommand::Disqualify, Some("competitor")),
        hours(4),
    )
    .expect("disqualified");
    assert_eq!(dq.account.stage, Disqualified);
    let still = decide_account(
        &p,
        &dq.account,
        &facts(500.0, &[None, None, dm]),
        &member_cause(),
        hours(5),
    );
    assert!(
        still.events.is_empty(),
        "a disqualified account moves only by REQUALIFY"
    );
    let back = transition_account(
        &p,
        &dq.account,
        &facts(0.0, &[]),
        &cmd(AccountCommand::Requalify, None),
        hours(5),
    )
    .expect("requalified");
    assert_eq!(back.account.stage, Target);
    assert_eq!(back.window_reset, Some(hours(5)));
    // ACCEPT jumps from ENGAGED to OPPORTUNITY through MQA; RECYCLE goes back.
    let accepted = transition_account(
        &p,
        &engaged,
        &facts(0.0, &[]),
        &cmd(AccountCommand::Accept, None),
        hours(1),
    )
    .expect("accepted");
    assert_eq!(
        moves(&accepted.events),
        [
            (Some(Engaged), Mqa, AccountMove::Accept),
            (Some(Mqa), Opportunity, AccountMove::Accept)
        ]
    );
    let err = transition_account(
        &p,
        &accepted.account,
        &facts(0.0, &[]),
        &cmd(AccountCommand::Recycle, None),
        hours(2),
    )
    .expect_err("a reason is required");
    assert!(err.to_string().contains("reason"), "{err}");
    let recycled = transition_account(
        &p,
        &accepted.account,
        &facts(0.0, &[]),
        &cmd(AccountCommand::Recycle, Some("lost")),
        hours(2),
    )
    .expect("recycled");
    assert_eq!(recycled.account.stage, Engaged);
    // REJECT from ENGAGED is not an edge.
    let err = transition_account(
        &p,
        &engaged,
        &facts(0.0, &[]),
        &cmd(AccountCommand::Reject, Some("not_ready")),
        hours(1),
    )
    .expect_err("not an edge");
    assert!(
        matches!(err, AccountError::InvalidTransition { stage: Engaged, .. }),
        "{err}"
    );
    // A decision is never earlier than the account's last transition.
    let late = Account {
        last_transition_at: hours(10),
        ..engaged.clone()
    };
    let d = transition_account(
        &p,
        &late,
        &facts(0.0, &[]),
        &cmd(AccountCommand::Accept, None),
        hours(1),
    )
    .expect("accepted");
    assert_eq!(d.account.last_transition_at, hours(10));
}

#[test]
fn a_policy_without_accounts_moves_no_account() {
    let p = crate::common::policy();
    let d = decide_account(
        &p,
        &new_account(),
        &facts(500.0, &[None, None, None]),
        &member_cause(),
        hours(1),
    );
    assert!(d.events.is_empty());
    let err = transition_account(
        &p,
        &new_account(),
        &facts(0.0, &[]),
        &cmd(AccountCommand::Accept, None),
        hours(1),
    )
    .expect_err("no accounts");
    assert!(matches!(err, AccountError::NoAccountsPolicy));
}

#[test]
fn promote_members_on_mqa_asks_for_the_background_promotion() {
    let p = Policy::from_toml(&accounted_toml("").replacen(
        "[accounts]\n",
        "[accounts]\npromote_members_on_mqa = true\n",
        1,
    ))
    .expect("valid");
    let dm = Some("decision_maker");
    let d = decide_account(
        &p,
        &new_account(),
        &facts(120.0, &[None, None, dm]),
        &member_cause(),
        hours(1),
    );
    assert_eq!(d.account.stage, AccountStage::Mqa);
    assert!(d.promote_members);
}

#[test]
fn an_explanation_lists_members_their_part_and_what_blocks() {
    let p = accounted("[accounts.score]\naggregate = \"top:2\"\n");
    let a = p.accounts.as_ref().expect("accounts");
    let account = Account {
        stage: AccountStage::Engaged,
        ..new_account()
    };
    let members = vec![
        member("a", 50.0, T0, Some("decision_maker")),
        member("b", 30.0, T0, None),
        member("c", 25.0, T0, Some("practitioner")),
        member("d", 5.0, T0, None),
        Member {
            erased: true,
            ..member("e", 60.0, T0, None)
        },
    ];
    let x = explain_account(&p, a, &account, &Profile::default(), &members, T0);
    assert_eq!(x.engagement, 110.0, "the two highest: 60 and 50");
    let order: Vec<(&str, bool, bool)> = x
        .members
        .iter()
        .map(|m| (m.lead.as_str(), m.in_aggregate, m.engaged))
        .collect();
    assert_eq!(
        order,
        [
            ("e", true, true),
            ("a", true, true),
            ("b", false, true),
            ("c", false, true),
            ("d", false, false)
        ]
    );
    assert!(x.members[0].erased);
    assert_eq!(x.group.engaged, 4);
    assert_eq!(x.coverage.get("decision_maker"), Some(&(1, true)));
    assert_eq!(x.coverage.get("practitioner"), Some(&(1, false)));
    let next = x.next.expect("a next step");
    assert_eq!(next.to, AccountStage::Mqa);
    assert!(next.guards.iter().all(|g| g.passed), "{:?}", next.guards);
    // Past MQA the next step is a member's SQL, or ACCEPT.
    let mqa = Account {
        stage: AccountStage::Mqa,
        ..account
    };
    let x = explain_account(&p, a, &mqa, &Profile::default(), &members, T0);
    let next = x.next.expect("a next step");
    assert_eq!(next.to, AccountStage::Opportunity);
    assert_eq!(next.by, AccountMove::Open);
    assert_eq!(next.or_by, [AccountMove::Accept]);
    assert_eq!(next.guards[0].guard, AccountGuard::MemberSql);
    assert!(!next.guards[0].passed);
}

#[test]
fn a_sum_rebases_past_its_window_and_equals_its_recompute() {
    let p = accounted("");
    let model = 0;
    let a = member("a", 40.0, T0, None);
    let mut sum = SumState::of(&p, model, std::slice::from_ref(&a));
    // Within 16 half-lives (480 days): replaced in place.
    let b = member("b", 30.0, days(100), None);
    sum = sum
        .replaced(&p, model, None, Some(b.score))
        .expect("within the window");
    assert_eq!(sum, SumState::of(&p, model, &[a.clone(), b.clone()]));
    // Far past it: the sum must be computed whole.
    let c = member("c", 10.0, days(600), None);
    assert_eq!(sum.replaced(&p, model, None, Some(c.score)), None);
    let whole = SumState::of(&p, model, &[a, b, c]);
    assert!(whole.epoch > sum.epoch);
    let expected = 40.0 * 0.5f64.powf(600.0 / 30.0) + 30.0 * 0.5f64.powf(500.0 / 30.0) + 10.0;
    assert!((whole.value_at(&p, model, days(600)) - expected).abs() < 1e-9);
    assert!((sum.value_at(&p, model, days(100)) - (40.0 * 0.5f64.powf(100.0 / 30.0) + 30.0)).abs() < 1e-9);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// A member update: which member, its new score and when, its persona
    /// and whether it is disqualified.
    fn updates() -> impl Strategy<Value = Vec<(usize, f64, i64, Option<usize>, bool)>> {
        prop::collection::vec(
            (
                0usize..8,
                -50.0f64..250.0,
                0i64..1_200,
                prop::option::of(0usize..2),
                prop::bool::weighted(0.15),
            ),
            1..40,
        )
    }

    const PERSONAS: [&str; 2] = ["decision_maker", "practitioner"];

    fn to_member(i: usize, value: f64, day: i64, persona: Option<usize>, dq: bool) -> Member {
        Member {
            stage: if dq { Stage::Disqualified } else { Stage::Iql },
            ..member(
                &format!("lead-{i}"),
                (value * 100.0).round() / 100.0,
                days(day),
                persona.map(|p| PERSONAS[p]),
            )
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Updating the sum member by member (recomputing whole only when
        /// it must) gives exactly what computing it whole at the same
        /// epoch gives, and the value at any later instant to 1e-9.
        #[test]
        fn the_incremental_sum_equals_its_recompute(updates in updates()) {
            let p = accounted("");
            let model = 0;
            let mut current: std::collections::BTreeMap<usize, Member> = Default::default();
            let mut sum = SumState::of(&p, model, &[]);
            for (i, value, day, persona, dq) in updates {
                let next = to_member(i, value, day, persona, dq);
                let old = current.get(&i).filter(|m| m.counts()).map(|m| m.score);
                let new = next.counts().then_some(next.score);
                current.insert(i, next);
                sum = match sum.replaced(&p, model, old, new) {
                    Some(sum) => sum,
                    None => SumState::of(&p, model, current.values()),
                };
            }
            let members: Vec<Member> = current.into_values().collect();
            let whole = SumState::of(&p, model, &members);
            let at_same_epoch = members
                .iter()
                .filter(|m| m.counts())
                .fold(0i128, |s, m| s + SumState::units_of(&p, model, m.score, sum.epoch));
            prop_assert_eq!(sum.units, at_same_epoch);
            let t = days(1_300);
            let a = sum.value_at(&p, model, t);
            let b = whole.value_at(&p, model, t);
            prop_assert!((a - b).abs() < 1e-9, "{} vs {}", a, b);
        }

        /// The order members come in, and a member delivered twice, change
        /// neither the aggregate, the buying group nor the decision.
        #[test]
        fn member_order_and_duplicates_change_nothing(
            updates in updates(),
            seed in any::<u64>(),
            aggregate in prop::sample::select(vec!["sum", "max", "top:2"]),
        ) {
            let p = accounted(&format!("[accounts.score]\naggregate = \"{aggregate}\"\n"));
            let a = p.accounts.as_ref().expect("accounts");
            let mut latest: std::collections::BTreeMap<usize, Member> = Default::default();
            for (i, value, day, persona, dq) in updates {
                latest.insert(i, to_member(i, value, day, persona, dq));
            }
            let members: Vec<Member> = latest.into_values().collect();
            let mut shuffled = members.clone();
            // A deterministic shuffle by the seed, then one member again.
            let mut state = seed | 1;
            for k in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                #[allow(clippy::cast_possible_truncation)]
                shuffled.swap(k, (state % (k as u64 + 1)) as usize);
            }
            let t = days(1_250);
            let account = new_account();
            let one = Facts::of(&p, a, &account, &Profile::default(), &members, t);
            let other = Facts::of(&p, a, &account, &Profile::default(), &shuffled, t);
            prop_assert_eq!(&one, &other);
            let mut group = BuyingGroup::default();
            for m in &shuffled {
                if m.engaged_until(&p, a).at(t) {
                    group.add(m.persona.as_deref());
                }
            }
            prop_assert_eq!(&group, &one.group);
            let d1 = decide_account(&p, &account, &one, &member_cause(), t);
            let d2 = decide_account(&p, &account, &other, &member_cause(), t);
            prop_assert_eq!(d1, d2);
            // Adding then removing a member leaves the group as it was.
            let mut g = one.group.clone();
            g.add(Some("practitioner"));
            g.remove(Some("practitioner"));
            prop_assert_eq!(g, one.group);
        }
    }
}

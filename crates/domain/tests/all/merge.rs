//! Merges: the survivor's scores are those of the union log, its stage
//! the further of the two along the forward path (cause MERGE), then the
//! usual automatic moves; the duplicate enters MERGED. Undone, each lead's
//! scores are again those of its own log.

use std::collections::BTreeMap;

use leadflow_domain::lifecycle::{Duplicate, merge_attributes, merge_instant};
use leadflow_domain::score::ScoreState;
use leadflow_domain::transition::Deal;
use leadflow_domain::{Cause, Command, CommandKind, DomainError, Engagement, Move, Span, Stage, Timestamp};
use proptest::prelude::*;

use crate::common::{Harness, T0, attrs, days, ev, good_fit, hours, policy, policy_with};

fn duplicate_of(h: &Harness, id: &str, deal: Option<Deal>) -> Duplicate {
    Duplicate {
        lead_id: id.to_owned(),
        stage: h.lead.stage,
        deal,
        attributes: h.lead.profile.as_map().clone(),
        events: h.log.clone(),
    }
}

/// Merges `dup` into `survivor` as the engine does: one instant for both,
/// the duplicate's events moved to the survivor's log.
fn merge(survivor: &mut Harness, dup: &mut Harness, dup_id: &str, at: Option<Timestamp>) -> Timestamp {
    let now = survivor.now.max(dup.now);
    survivor.now = now;
    dup.now = now;
    let brought = duplicate_of(dup, dup_id, None);
    let ctx = survivor.ctx();
    let t = merge_instant(at, &survivor.lead, &dup.lead, &brought.events, &ctx).expect("instant");
    survivor.decide(Command::Merge {
        duplicate: brought,
        at: t,
    });
    dup.decide(Command::MergedInto {
        survivor_id: "survivor".to_owned(),
        at: t,
    });
    t
}

fn merge_moves(h: &Harness) -> Vec<(Option<Stage>, Stage, Move)> {
    h.transitions()
        .iter()
        .filter(|t| matches!(t.cause, Cause::Merge { .. }))
        .map(|t| (t.from, t.to, t.by))
        .collect()
}

#[test]
fn two_leads_below_the_bar_make_an_mql_together() {
    let mut a = Harness::capture(policy(), good_fit(), T0);
    let mut b = Harness::capture(policy(), attrs(&[("email", "ann@gmail.com")]), T0);
    // 15 + 30 for one, 15 + 10 for the other: neither reaches 60 alone.
    a.engage(ev("a1", "webinar_attended", hours(1)));
    a.engage(ev("a2", "trial_started", hours(2)));
    b.engage(ev("b1", "webinar_attended", hours(3)));
    b.engage(ev("b2", "ebook_downloaded", hours(4)));
    assert_eq!((a.stage(), b.stage()), (Stage::Iql, Stage::Iql));
    let t = merge(&mut a, &mut b, "dup", None);
    assert_eq!(a.stage(), Stage::Mql);
    let last = a.transitions().last().cloned().cloned().expect("a move");
    assert_eq!((last.by, last.at), (Move::AutoQualify, t));
    assert_eq!(
        last.cause,
        Cause::Merge {
            lead_id: "dup".to_owned()
        }
    );
    // The union log's scores, and the survivor's email kept.
    let union = ScoreState::replay(&a.policy, &a.log, None, None);
    assert_eq!(a.lead.lifetime, union);
    assert_eq!(a.lead.profile.get("email"), Some("ann@acme.com"));
    // The duplicate is MERGED, with nothing left to fire.
    assert_eq!(b.stage(), Stage::Merged);
    assert!(b.timers.is_empty());
    assert_eq!(
        merge_moves(&b),
        [(Some(Stage::Iql), Stage::Merged, Move::MergedInto)]
    );
}

#[test]
fn a_sales_qualified_duplicate_takes_the_survivor_to_sql_in_one_jump() {
    let mut a = Harness::capture(policy(), good_fit(), T0);
    let mut b = Harness::capture(policy(), good_fit(), T0);
    b.engage(ev("b1", "demo_requested", hours(1)));
    assert_eq!(b.stage(), Stage::Sql);
    merge(&mut a, &mut b, "dup", None);
    assert_eq!(
        merge_moves(&a),
        [
            (Some(Stage::Iql), Stage::Mql, Move::Merge),
            (Some(Stage::Mql), Stage::Sql, Move::Merge),
        ]
    );
    assert_eq!(a.stage(), Stage::Sql);
    // The SQL stage's SLA is armed for the survivor as for any entry.
    assert!(
        a.timers.keys().any(|k| k.starts_with("sla:")),
        "{:?}",
        a.timers.keys()
    );
}

#[test]
fn a_customer_duplicate_brings_its_deal() {
    let mut a = Harness::capture(policy(), good_fit(), T0);
    let b = Harness::capture(policy(), good_fit(), T0);
    let deal = Deal {
        value: 1200.0,
        currency: "EUR".to_owned(),
    };
    let mut brought = duplicate_of(&b, "dup", Some(deal.clone()));
    brought.stage = Stage::Customer;
    a.decide(Command::Merge {
        duplicate: brought,
        at: hours(1),
    });
    a.now = hours(1);
    assert_eq!(a.stage(), Stage::Customer);
    let last = a.transitions().last().cloned().cloned().expect("a move");
    assert_eq!((last.to, last.deal), (Stage::Customer, Some(deal)));
}

#[test]
fn a_disqualified_survivor_stays_and_a_disqualified_duplicate_counts_only_by_its_rules() {
    // A disqualified survivor stays, whatever the duplicate was.
    let mut a = Harness::capture(policy(), good_fit(), T0);
    a.engage(ev("a1", "email_bounced", hours(1)));
    assert_eq!(a.stage(), Stage::Disqualified);
    let mut b = Harness::capture(policy(), good_fit(), T0);
    b.engage(ev("b1", "demo_requested", hours(2)));
    merge(&mut a, &mut b, "dup", None);
    assert_eq!(a.stage(), Stage::Disqualified);

    // A duplicate disqualified by hand: no rule matches the merged lead.
    let mut c = Harness::capture(policy(), good_fit(), T0);
    let mut d = Harness::capture(policy(), good_fit(), T0);
    d.decide(crate::common::manual(CommandKind::Disqualify, Some("spam")));
    assert_eq!(d.stage(), Stage::Disqualified);
    merge(&mut c, &mut d, "dup", None);
    assert_eq!(c.stage(), Stage::Iql);

    // A duplicate disqualified by a bounce: the merged log has it.
    let mut e = Harness::capture(policy(), good_fit(), T0);
    let mut f = Harness::capture(policy(), good_fit(), T0);
    f.engage(ev("f1", "email_bounced", hours(1)));
    merge(&mut e, &mut f, "dup", None);
    assert_eq!(e.stage(), Stage::Disqualified);
    assert_eq!(
        merge_moves(&e),
        [(Some(Stage::Iql), Stage::Disqualified, Move::AutoDisqualify)]
    );
}

#[test]
fn the_survivor_wins_attribute_conflicts_unless_the_policy_prefers_the_duplicate() {
    let survivor = Harness::capture(policy(), attrs(&[("email", "a@acme.com"), ("title", "CTO")]), T0);
    let duplicate = attrs(&[("email", "ann@acme.com"), ("title", "VP"), ("phone", "+33 1 23")]);
    let plain = merge_attributes(&survivor.lead.profile, &duplicate, &[]);
    assert_eq!(plain.set, attrs(&[("phone", "+33 1 23")]));
    assert_eq!(plain.before, attrs(&[("phone", "")]));
    let prefer = merge_attributes(&survivor.lead.profile, &duplicate, &["title".to_owned()]);
    assert_eq!(prefer.set, attrs(&[("phone", "+33 1 23"), ("title", "VP")]));
    assert_eq!(prefer.before, attrs(&[("phone", ""), ("title", "CTO")]));
    // Undone: what still holds the merged value goes back; a later edit stays.
    let (merged, _) = survivor.lead.profile.merge(prefer.set.clone()).expect("merge");
    let (edited, _) = merged.merge(attrs(&[("title", "CEO")])).expect("edit");
    assert_eq!(prefer.undo(&merged), attrs(&[("phone", ""), ("title", "CTO")]));
    assert_eq!(prefer.undo(&edited), attrs(&[("phone", "")]));
}

#[test]
fn a_policy_reads_prefer_duplicate_and_the_unmerge_window() {
    let p = policy_with(
        "[decay]",
        "[identity]\nprefer_duplicate = [\"title\", \"phone\"]\nunmerge_window = \"7d\"\n\n[decay]",
    );
    assert_eq!(p.identity.prefer_duplicate, ["title", "phone"]);
    assert_eq!(p.identity.unmerge_window, Span::from_days(7));
    for (bad, path) in [
        ("unmerge_window = \"0s\"", "identity.unmerge_window"),
        (
            "prefer_duplicate = [\"email_domain\"]",
            "identity.prefer_duplicate",
        ),
        ("prefer_duplicate = \"title\"", "identity.prefer_duplicate"),
    ] {
        let toml =
            crate::common::example_toml().replacen("[decay]", &format!("[identity]\n{bad}\n\n[decay]"), 1);
        let err = leadflow_domain::Policy::from_toml(&toml).expect_err(bad);
        assert!(err.to_string().contains(path), "{bad}: {err}");
    }
    for bad in [
        "[[workflow]]\nid = \"w\"\non = \"entered:MERGED\"\nemit = \"x\"\n",
        "[sla.merged]\nstage = \"MERGED\"\nwithin = \"1d\"\n",
    ] {
        let toml = format!("{}\n{bad}", crate::common::example_toml());
        let err = leadflow_domain::Policy::from_toml(&toml).expect_err(bad);
        assert!(err.to_string().contains("MERGED"), "{bad}: {err}");
    }
}

#[test]
fn the_merge_instant_follows_both_leads() {
    let mut a = Harness::capture(policy(), good_fit(), T0);
    let mut b = Harness::capture(policy(), good_fit(), T0);
    b.engage(ev("b1", "demo_requested", hours(5)));
    a.now = hours(6);
    let events = b.log.clone();
    let ctx = a.ctx();
    // Default: now.
    assert_eq!(merge_instant(None, &a.lead, &b.lead, &events, &ctx), Ok(hours(6)));
    // Before the duplicate's last transition: refused, naming it.
    let err = merge_instant(Some(hours(4)), &a.lead, &b.lead, &events, &ctx).expect_err("before");
    assert!(err.to_string().contains("duplicate's last transition"), "{err}");
    // In the future: refused.
    assert!(merge_instant(Some(days(3)), &a.lead, &b.lead, &events, &ctx).is_err());
}

#[test]
fn a_merged_lead_takes_no_command_but_its_unmerge_and_a_policy_change() {
    let mut a = Harness::capture(policy(), good_fit(), T0);
    let mut b = Harness::capture(policy(), good_fit(), T0);
    merge(&mut a, &mut b, "dup", None);
    for command in [
        Command::RecordEngagement(ev("late", "webinar_attended", hours(1))),
        Command::UpdateProfile(attrs(&[("title", "CTO")])),
        crate::common::manual(CommandKind::Disqualify, Some("spam")),
        Command::MergedInto {
            survivor_id: "other".to_owned(),
            at: b.now,
        },
    ] {
        let err = b.try_decide(command.clone()).expect_err("refused");
        assert!(
            matches!(
                err,
                DomainError::InvalidTransition {
                    stage: Stage::Merged,
                    ..
                }
            ),
            "{command:?}: {err:?}"
        );
    }
    // A new policy re-scores it and moves nothing.
    let changed = b.decide(Command::PolicyChanged { at: b.now });
    assert_eq!(changed.lead.stage, Stage::Merged);
    assert_eq!(changed.transitions().count(), 0);
}

/// Unmerges as the engine does: the duplicate's events go back to its log.
fn unmerge(survivor: &mut Harness, dup: &mut Harness, own: &[Engagement], stage: Stage, at: Timestamp) {
    let ids: Vec<&str> = own.iter().map(|e| e.event_id.as_str()).collect();
    survivor.log.retain(|e| !ids.contains(&e.event_id.as_str()));
    survivor.checkpoints.clear();
    survivor.now = at;
    survivor.decide(Command::Unmerged {
        duplicate_id: "dup".to_owned(),
        attributes: BTreeMap::new(),
        at,
    });
    dup.log = own.to_vec();
    dup.checkpoints.clear();
    dup.now = at;
    dup.decide(Command::Unmerge {
        survivor_id: "survivor".to_owned(),
        stage,
        at,
    });
}

#[test]
fn an_unmerge_gives_the_duplicate_its_stage_and_both_their_own_scores() {
    let mut a = Harness::capture(policy(), good_fit(), T0);
    let mut b = Harness::capture(policy(), good_fit(), T0);
    a.engage(ev("a1", "webinar_attended", hours(1)));
    b.engage(ev("b1", "trial_started", hours(2)));
    b.engage(ev("b2", "trial_started", hours(3)));
    let mut own = b.log.clone();
    merge(&mut a, &mut b, "dup", None);
    assert_eq!(a.stage(), Stage::Mql);
    // Recorded under the duplicate's old key since the merge: the
    // survivor's until the unmerge, the duplicate's after it.
    own.push(ev("b3", "webinar_attended", days(1)));
    let at = days(2);
    unmerge(&mut a, &mut b, &own, Stage::Iql, at);
    // The survivor keeps its stage; its scores are its own log's again.
    assert_eq!(a.stage(), Stage::Mql);
    assert_eq!(a.lead.lifetime, ScoreState::replay(&a.policy, &a.log, None, None));
    // The duplicate is back in IQL by a MERGED → IQL move, then qualifies
    // on its own log with the webinar (30 + 30 + 15, decayed over two days).
    let moves: Vec<(Option<Stage>, Stage, Move)> = b
        .transitions()
        .iter()
        .filter(|t| matches!(t.cause, Cause::Unmerge { .. }))
        .map(|t| (t.from, t.to, t.by))
        .collect();
    assert_eq!(
        moves,
        [
            (Some(Stage::Merged), Stage::Iql, Move::Unmerge),
            (Some(Stage::Iql), Stage::Mql, Move::AutoQualify),
        ]
    );
    assert_eq!(b.lead.lifetime, ScoreState::replay(&b.policy, &own, None, None));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the two logs, the survivor's scores after a merge are those
    /// of the union log, and after an unmerge those of its own log again.
    #[test]
    fn merge_is_a_union_and_unmerge_restores_it(
        mine in prop::collection::vec((0usize..5, 0i64..240), 0..8),
        theirs in prop::collection::vec((0usize..5, 0i64..240), 0..8),
    ) {
        const TYPES: [&str; 5] = ["webinar_attended", "ebook_downloaded", "page_viewed", "ad_clicked", "email_clicked"];
        let mut a = Harness::capture(policy(), good_fit(), T0);
        let mut b = Harness::capture(policy(), good_fit(), T0);
        let events = |prefix: &str, list: &[(usize, i64)]| -> Vec<Engagement> {
            let mut out: Vec<Engagement> = list
                .iter()
                .enumerate()
                .map(|(i, (ty, h))| ev(&format!("{prefix}{i}"), TYPES[*ty], hours(*h)))
                .collect();
            out.sort_by_key(|e| e.occurred_at);
            out
        };
        let (ours, dups) = (events("a", &mine), events("b", &theirs));
        for e in &ours {
            a.engage(e.clone());
        }
        for e in &dups {
            b.engage(e.clone());
        }
        let stage_before = a.stage();
        merge(&mut a, &mut b, "dup", None);
        let union = ScoreState::replay(&a.policy, &a.log, None, None);
        prop_assert_eq!(&a.lead.lifetime, &union);
        let at = a.now.saturating_add(Span::from_hours(1));
        let dup_stage = b.transitions().iter().rev().find(|t| t.to == Stage::Merged).and_then(|t| t.from).unwrap_or(Stage::Iql);
        unmerge(&mut a, &mut b, &dups, dup_stage, at);
        prop_assert_eq!(&a.lead.lifetime, &ScoreState::replay(&a.policy, &ours, None, None));
        prop_assert_eq!(&b.lead.lifetime, &ScoreState::replay(&b.policy, &dups, None, None));
        prop_assert!(a.stage().rank() >= stage_before.rank());
    }
}

#[test]
fn duplicates_are_found_by_the_normalised_email_or_every_match_attribute() {
    use leadflow_domain::policy::MatchOn;
    use leadflow_domain::profile::{Profile, normalised_email};

    assert_eq!(
        normalised_email(" Ann+News@Initech.COM "),
        Some("ann@initech.com".to_owned())
    );
    assert_eq!(normalised_email("not-an-email"), None);
    // A separator in a value cannot make two lists of values one key.
    assert_eq!(
        leadflow_domain::profile::normalised_value(" A\u{1f}b\tC "),
        "a b c"
    );
    let p = policy_with(
        "[decay]",
        "[identity]\nmatch_attributes = [\"company\", \"last_name\"]\nauto_merge_on = [\"email\", \"match_attributes\"]\n\n[decay]",
    );
    assert_eq!(p.identity.auto_merge_on, [MatchOn::Email, MatchOn::Attributes]);
    let full = Profile::capture(attrs(&[
        ("email", "Ann@Initech.com"),
        ("company", "  Initech   Corp "),
        ("last_name", "Smith"),
    ]))
    .expect("profile");
    assert_eq!(
        p.identity.match_keys(&full),
        [
            (MatchOn::Email, "ann@initech.com".to_owned()),
            (MatchOn::Attributes, "initech corp\u{1f}smith".to_owned()),
        ]
    );
    // Without one of the attributes: by the email only (AND, never OR).
    let partial = Profile::capture(attrs(&[("email", "bo@initech.com"), ("company", "Initech Corp")]))
        .expect("profile");
    assert_eq!(
        p.identity.match_keys(&partial),
        [(MatchOn::Email, "bo@initech.com".to_owned())]
    );
    for (bad, path) in [
        ("match_attributes = [\"email\"]", "identity.match_attributes"),
        ("match_attributes = []", "identity.match_attributes"),
        ("auto_merge_on = [\"phone\"]", "identity.auto_merge_on"),
        ("auto_merge_on = [\"match_attributes\"]", "identity.auto_merge_on"),
    ] {
        let toml =
            crate::common::example_toml().replacen("[decay]", &format!("[identity]\n{bad}\n\n[decay]"), 1);
        let err = leadflow_domain::Policy::from_toml(&toml).expect_err(bad);
        assert!(err.to_string().contains(path), "{bad}: {err}");
    }
}

//! The account funnel of a period, from the accounts' stage histories: how
//! many accounts entered each stage, how the cohorts converted and how
//! fast, how long stays lasted, and why accounts were sent back.

use std::collections::{BTreeMap, BTreeSet};

use super::funnel::{Period, percentile};
use crate::account::AccountMove;
use crate::stage::AccountStage;
use crate::time::Timestamp;

/// One move of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountStep {
    pub from: Option<AccountStage>,
    pub to: AccountStage,
    pub at: Timestamp,
    pub by: AccountMove,
    pub reason: Option<String>,
}

/// An account's whole history, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountHistory {
    pub account: String,
    pub steps: Vec<AccountStep>,
}

/// The pairs whose conversion the funnel reports, in order.
pub const ACCOUNT_CONVERSIONS: [(AccountStage, AccountStage); 5] = [
    (AccountStage::Target, AccountStage::Engaged),
    (AccountStage::Engaged, AccountStage::Mqa),
    (AccountStage::Mqa, AccountStage::Opportunity),
    (AccountStage::Opportunity, AccountStage::Customer),
    (AccountStage::Mqa, AccountStage::Customer),
];

/// Moves into a stage during the period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountEntries {
    pub stage: AccountStage,
    pub accounts: u64,
    pub entries: u64,
}

/// Of the accounts whose first entry into `from` lies in the period, how
/// many have entered `to` since (up to the funnel's `now`), and how long
/// it took them (microseconds, nearest-rank).
#[derive(Clone, Debug, PartialEq)]
pub struct AccountConversion {
    pub from: AccountStage,
    pub to: AccountStage,
    pub cohort: u64,
    pub converted: u64,
    pub rate: f64,
    pub p50: Option<i64>,
    pub p90: Option<i64>,
}

/// The stays in a stage that ended in the period (microseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountStay {
    pub stage: AccountStage,
    pub stays: u64,
    pub p50: Option<i64>,
    pub p90: Option<i64>,
}

/// The account funnel of a period.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountFunnel {
    /// Every stage, in stage order.
    pub entries: Vec<AccountEntries>,
    pub conversions: Vec<AccountConversion>,
    /// Every stage but CUSTOMER, in stage order.
    pub time_in_stage: Vec<AccountStay>,
    /// Reasons of rejections, recycles and disqualifications in the period,
    /// most frequent first (then by move and reason).
    pub reasons: Vec<(AccountMove, String, u64)>,
}

/// The funnel of `period` over `histories` (each an account's whole
/// history; accounts without a move in the period add only to cohorts of
/// the period, which they are not in).
pub fn account_funnel(histories: &[AccountHistory], period: Period, now: Timestamp) -> AccountFunnel {
    let mut entries: BTreeMap<AccountStage, (u64, BTreeSet<usize>)> = BTreeMap::new();
    let mut cohorts: BTreeMap<(AccountStage, AccountStage), (u64, Vec<i64>)> = BTreeMap::new();
    let mut stays: BTreeMap<AccountStage, Vec<i64>> = BTreeMap::new();
    let mut reasons: BTreeMap<(AccountMove, String), u64> = BTreeMap::new();
    for (i, h) in histories.iter().enumerate() {
        let mut first: BTreeMap<AccountStage, Timestamp> = BTreeMap::new();
        let mut entered: Option<(AccountStage, Timestamp)> = None;
        for step in &h.steps {
            first.entry(step.to).or_insert(step.at);
            if period.contains(step.at) {
                let e = entries.entry(step.to).or_default();
                e.0 += 1;
                e.1.insert(i);
                if let (Some((stage, since)), true) = (entered, step.from.is_some()) {
                    stays
                        .entry(stage)
                        .or_default()
                        .push(step.at.since(since).as_micros());
                }
                if let Some(reason) = &step.reason
                    && matches!(
                        step.by,
                        AccountMove::Reject | AccountMove::Recycle | AccountMove::Disqualify
                    )
                {
                    *reasons.entry((step.by, reason.clone())).or_default() += 1;
                }
            }
            // A forward jump's stages share one instant: each is its own stay.
            entered = Some((step.to, step.at));
        }
        for (from, to) in ACCOUNT_CONVERSIONS {
            let Some(start) = first.get(&from).copied().filter(|t| period.contains(*t)) else {
                continue;
            };
            let c = cohorts.entry((from, to)).or_default();
            c.0 += 1;
            if let Some(done) = h
                .steps
                .iter()
                .find(|s| s.to == to && s.at >= start && s.at <= now)
            {
                c.1.push(done.at.since(start).as_micros());
            }
        }
    }
    let entries = AccountStage::ALL
        .iter()
        .map(|stage| {
            let (n, accounts) = entries.remove(stage).unwrap_or_default();
            AccountEntries {
                stage: *stage,
                accounts: accounts.len() as u64,
                entries: n,
            }
        })
        .collect();
    let conversions = ACCOUNT_CONVERSIONS
        .iter()
        .map(|(from, to)| {
            let (cohort, mut times) = cohorts.remove(&(*from, *to)).unwrap_or_default();
            times.sort_unstable();
            let converted = times.len() as u64;
            #[allow(clippy::cast_precision_loss)] // counts far below 2^52
            let rate = if cohort == 0 {
                0.0
            } else {
                converted as f64 / cohort as f64
            };
            AccountConversion {
                from: *from,
                to: *to,
                cohort,
                converted,
                rate,
                p50: percentile(&times, 50),
                p90: percentile(&times, 90),
            }
        })
        .collect();
    let time_in_stage = AccountStage::ALL
        .iter()
        .filter(|s| !s.is_terminal())
        .map(|stage| {
            let mut times = stays.remove(stage).unwrap_or_default();
            times.sort_unstable();
            AccountStay {
                stage: *stage,
                stays: times.len() as u64,
                p50: percentile(&times, 50),
                p90: percentile(&times, 90),
            }
        })
        .collect();
    let mut reasons: Vec<(AccountMove, String, u64)> =
        reasons.into_iter().map(|((by, r), n)| (by, r, n)).collect();
    reasons.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (a.0, &a.1).cmp(&(b.0, &b.1))));
    AccountFunnel {
        entries,
        conversions,
        time_in_stage,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Span;

    fn t(h: i64) -> Timestamp {
        Timestamp::from_secs(1_767_225_600).saturating_add(Span::from_hours(h))
    }

    fn step(
        from: Option<AccountStage>,
        to: AccountStage,
        h: i64,
        by: AccountMove,
        reason: Option<&str>,
    ) -> AccountStep {
        AccountStep {
            from,
            to,
            at: t(h),
            by,
            reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn entries_cohorts_stays_and_reasons_of_a_period() {
        use AccountStage::*;
        let a = AccountHistory {
            account: "a".to_owned(),
            steps: vec![
                step(None, Target, 0, AccountMove::Create, None),
                step(Some(Target), Engaged, 10, AccountMove::Engage, None),
                step(Some(Engaged), Mqa, 30, AccountMove::Qualify, None),
                step(
                    Some(Mqa),
                    Engaged,
                    40,
                    AccountMove::Reject,
                    Some("no_buying_group"),
                ),
                step(Some(Engaged), Mqa, 50, AccountMove::Qualify, None),
                step(Some(Mqa), Opportunity, 200, AccountMove::Open, None),
            ],
        };
        let b = AccountHistory {
            account: "b".to_owned(),
            steps: vec![
                step(None, Target, 5, AccountMove::Create, None),
                step(Some(Target), Engaged, 20, AccountMove::Engage, None),
            ],
        };
        let period = Period {
            start: t(0),
            end: t(100),
        };
        let f = account_funnel(&[a, b], period, t(300));
        let mqa = f.entries.iter().find(|e| e.stage == Mqa).expect("MQA");
        assert_eq!((mqa.accounts, mqa.entries), (1, 2));
        let engaged = f.entries.iter().find(|e| e.stage == Engaged).expect("ENGAGED");
        assert_eq!((engaged.accounts, engaged.entries), (2, 3));
        let to_mqa = &f.conversions[1];
        assert_eq!((to_mqa.cohort, to_mqa.converted, to_mqa.rate), (2, 1, 0.5));
        assert_eq!(to_mqa.p50, Some(Span::from_hours(20).as_micros()));
        let to_opp = &f.conversions[2];
        assert_eq!(
            (to_opp.cohort, to_opp.converted),
            (1, 1),
            "converted after the period"
        );
        assert_eq!(to_opp.p50, Some(Span::from_hours(170).as_micros()));
        let target_stays = f
            .time_in_stage
            .iter()
            .find(|s| s.stage == Target)
            .expect("TARGET");
        assert_eq!(target_stays.stays, 2);
        assert_eq!(
            f.reasons,
            [(AccountMove::Reject, "no_buying_group".to_owned(), 1)]
        );
        // Nothing before its start counts in a later period.
        let later = account_funnel(
            &f_histories(),
            Period {
                start: t(100),
                end: t(150),
            },
            t(300),
        );
        assert!(later.entries.iter().all(|e| e.entries == 0));
        assert!(later.conversions.iter().all(|c| c.cohort == 0 && c.rate == 0.0));
    }

    fn f_histories() -> Vec<AccountHistory> {
        vec![AccountHistory {
            account: "x".to_owned(),
            steps: vec![step(None, AccountStage::Target, 0, AccountMove::Create, None)],
        }]
    }
}

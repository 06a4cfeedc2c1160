//! How well a policy separates the held-out leads that reached the
//! outcome from those that did not: precision, recall and lift of its MQL
//! bar, and the area under its ROC curve (AUC).

use serde::{Deserialize, Serialize};

use crate::analytics::funnel::ratio;

/// A held-out lead under one policy: its score (any order-preserving
/// number: leads not qualifying on their profile rank below every lead that
/// does), whether it clears the policy's MQL bar, and its outcome.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub score: f64,
    pub qualified: bool,
    pub positive: bool,
}

/// A policy's figures on the held-out leads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub leads: u64,
    pub positives: u64,
    pub qualified: u64,
    /// Of the qualified leads, the share that reached the outcome.
    pub precision: f64,
    /// Of the leads that reached the outcome, the share that qualified.
    pub recall: f64,
    /// Precision over the share of all leads that reached the outcome.
    pub lift: f64,
    /// The chance that a lead that reached the outcome scores above one
    /// that did not (ties count half); 0.5 is no better than chance.
    pub auc: f64,
}

pub fn metrics(leads: &[Scored]) -> Metrics {
    let n = leads.len() as u64;
    let positives = leads.iter().filter(|l| l.positive).count() as u64;
    let qualified = leads.iter().filter(|l| l.qualified).count() as u64;
    let hits = leads.iter().filter(|l| l.qualified && l.positive).count() as u64;
    let precision = ratio(hits, qualified);
    let base = ratio(positives, n);
    Metrics {
        leads: n,
        positives,
        qualified,
        precision,
        recall: ratio(hits, positives),
        lift: if base > 0.0 { precision / base } else { 0.0 },
        auc: auc(leads),
    }
}

/// The Mann–Whitney statistic over the leads' scores: ranks from 1 by
/// score, tied scores sharing their mean rank.
pub fn auc(leads: &[Scored]) -> f64 {
    let mut sorted: Vec<&Scored> = leads.iter().collect();
    sorted.sort_by(|a, b| a.score.total_cmp(&b.score));
    let positives = sorted.iter().filter(|l| l.positive).count();
    let negatives = sorted.len() - positives;
    if positives == 0 || negatives == 0 {
        return 0.5;
    }
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1].score.total_cmp(&sorted[i].score).is_eq() {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        #[allow(clippy::cast_precision_loss)]
        let mean = (i + j + 2) as f64 / 2.0;
        let tied_positives = sorted[i..=j].iter().filter(|l| l.positive).count();
        #[allow(clippy::cast_precision_loss)]
        {
            rank_sum += mean * tied_positives as f64;
        }
        i = j + 1;
    }
    #[allow(clippy::cast_precision_loss)]
    let (p, q) = (positives as f64, negatives as f64);
    (rank_sum - p * (p + 1.0) / 2.0) / (p * q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(score: f64, positive: bool) -> Scored {
        Scored {
            score,
            qualified: score >= 10.0,
            positive,
        }
    }

    #[test]
    fn a_perfect_ranking_a_reversed_one_and_ties() {
        let perfect = [
            lead(1.0, false),
            lead(2.0, false),
            lead(11.0, true),
            lead(12.0, true),
        ];
        assert_eq!(auc(&perfect), 1.0);
        let reversed = [
            lead(1.0, true),
            lead(2.0, true),
            lead(11.0, false),
            lead(12.0, false),
        ];
        assert_eq!(auc(&reversed), 0.0);
        let tied = [lead(5.0, true), lead(5.0, false)];
        assert_eq!(auc(&tied), 0.5);
        // One of four pairs misordered.
        let one_off = [
            lead(1.0, false),
            lead(3.0, true),
            lead(4.0, false),
            lead(5.0, true),
        ];
        assert_eq!(auc(&one_off), 0.75);
        assert_eq!(auc(&[lead(1.0, true)]), 0.5);
    }

    #[test]
    fn precision_recall_and_lift_at_the_bar() {
        // 10 leads, 4 positive; 5 qualify, 3 of them positive.
        let leads: Vec<Scored> = [
            (12.0, true),
            (15.0, true),
            (11.0, true),
            (13.0, false),
            (10.0, false),
            (9.0, true),
            (1.0, false),
            (2.0, false),
            (3.0, false),
            (4.0, false),
        ]
        .into_iter()
        .map(|(s, p)| lead(s, p))
        .collect();
        let m = metrics(&leads);
        assert_eq!((m.leads, m.positives, m.qualified), (10, 4, 5));
        assert!((m.precision - 0.6).abs() < 1e-12);
        assert!((m.recall - 0.75).abs() < 1e-12);
        assert!((m.lift - 1.5).abs() < 1e-12);
        assert_eq!(
            metrics(&[]),
            Metrics {
                auc: 0.5,
                ..Metrics::default()
            }
        );
    }
}

//! The charts over time and over a score: velocity (entries per day or
//! week, stacked by stage) and the MQL threshold's calibration curve.

use leadflow_domain::analytics::evidence::{Calibration, CutPoint};
use leadflow_domain::analytics::funnel::{Bucket, Group};
use leadflow_domain::{Stage, Timestamp};
use maud::{Markup, html};

use super::charts::{Axes, COLORS, Frame, count_axis, tenths};
use crate::present;

/// One stage's part of a bucket's bar.
struct Part {
    stage: &'static str,
    day: String,
    n: u64,
    x: f64,
    top: f64,
    height: f64,
    color: &'static str,
}

/// Entries per bucket as bars, one per bucket, stacked by stage: counts of
/// separate days or weeks, which a line between them would misstate.
pub(super) fn velocity(g: &Group, buckets: &[Timestamp], bucket: Bucket) -> Markup {
    let (unit, x_title) = match bucket {
        Bucket::Day => ("day", "day (UTC)"),
        Bucket::Week => ("week", "week, by its first day (UTC)"),
    };
    let series = g.velocity.series(buckets.len());
    let totals = (0..buckets.len()).map(|i| series.iter().map(|s| s[i]).sum::<u64>());
    let y_ticks = count_axis(totals.max().unwrap_or(0));
    let frame = Frame::new(1000.0, &y_ticks);
    #[allow(clippy::cast_precision_loss)]
    let slot = frame.width / buckets.len().max(1) as f64;
    // about seven dates along the axis, whatever the number of bars
    let every = buckets.len().div_ceil(7).max(1);
    #[allow(clippy::cast_precision_loss)]
    let x_labels: Vec<(f64, String)> = buckets
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, &t)| (frame.left + (i as f64 + 0.5) * slot, present::date(t)))
        .collect();
    let width = (slot * 0.8).max(0.5);
    let mut parts = Vec::new();
    for (i, &start) in buckets.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let x = frame.left + i as f64 * slot + (slot - width) / 2.0;
        let mut below = 0_u64;
        for ((stage, counts), color) in Stage::LIFECYCLE.iter().zip(&series).zip(COLORS) {
            let n = counts[i];
            if n == 0 {
                continue;
            }
            #[allow(clippy::cast_precision_loss)]
            let (bottom, top) = (frame.y(below as f64), frame.y((below + n) as f64));
            below += n;
            parts.push(Part {
                stage: stage.as_str(),
                day: present::date(start),
                n,
                x,
                top,
                height: bottom - top,
                color,
            });
        }
    }
    let bars = html! {
        @for p in &parts {
            rect class="bar" data-bar=(p.stage) data-bucket=(p.day) data-n=(p.n) x=(tenths(p.x))
                y=(tenths(p.top)) width=(tenths(width)) height=(tenths(p.height)) fill=(p.color) {
                title { (p.day) " " (p.stage) ": " (p.n) }
            }
        }
    };
    let axes = Axes {
        id: "velocity",
        y_ticks: &y_ticks,
        x_labels: &x_labels,
        x_title,
        y_title: &format!("entries per {unit}"),
    };
    html! {
        section {
            h2 { "Velocity " span class="muted" { "entries into each stage per " (unit) } }
            (frame.chart(&axes, &bars))
            p class="muted" {
                @for (stage, color) in Stage::LIFECYCLE.iter().zip(COLORS) {
                    span style=(format!("color:{color}")) { "■" } " " (stage.as_str()) " "
                }
            }
        }
    }
}

/// Precision and recall of the MQL threshold at each cut-off of peak
/// engagement, with the suggested one; a note where it cannot be made now.
pub(super) fn calibration(c: Option<&Calibration>) -> Markup {
    html! {
        section {
            h2 {
                "MQL threshold calibration "
                span class="muted" {
                    "leads captured in the period, all channels; peak engagement before the outcome"
                }
            }
            @if let Some(c) = c {
                p class="muted" {
                    (c.leads) " leads, " (c.reached_sql) " reached SQL, " (c.customers) " customers."
                    @if let Some(s) = &c.suggested {
                        " Best F1 at " b id="suggested" data-v=(s.cutoff) { (s.cutoff) }
                        " (precision " (or_none(s.precision)) ", recall " (or_none(s.recall)) ")."
                    }
                }
                (curve(c))
                p class="muted" {
                    span style=(format!("color:{}", COLORS[0])) { "■" }
                    " precision: of the leads at or above the cut-off, the share that reached SQL"
                    br;
                    span style=(format!("color:{}", COLORS[1])) { "■" }
                    " recall: of the customers, the share at or above it"
                }
            } @else {
                p class="muted" { "not available now; retry" }
            }
        }
    }
}

fn or_none(rate: Option<f64>) -> String {
    rate.map_or_else(|| present::NONE.to_owned(), present::percent)
}

/// The two lines over the cut-offs, on one 0–100% axis.
fn curve(c: &Calibration) -> Markup {
    let first = c.points.first().map_or(0.0, |p| p.cutoff);
    let last = c.points.last().map_or(0.0, |p| p.cutoff);
    let span = if last > first { last - first } else { 1.0 };
    let y_ticks: Vec<(f64, String)> = [0.0, 0.25, 0.5, 0.75, 1.0]
        .iter()
        .map(|&v| (v, present::round_percent(v)))
        .collect();
    let frame = Frame::new(500.0, &y_ticks);
    let x = |cutoff: f64| frame.left + (cutoff - first) / span * frame.width;
    let marks: &[f64] = if last > first {
        &[first, (first + last) / 2.0, last]
    } else {
        &[first]
    };
    let x_labels: Vec<(f64, String)> = marks.iter().map(|&v| (x(v), present::score(v))).collect();
    type Pick = fn(&CutPoint) -> Option<f64>;
    let series: [(&str, &str, Pick); 2] = [
        ("precision", COLORS[0], |p| p.precision),
        ("recall", COLORS[1], |p| p.recall),
    ];
    let lines = series.map(|(name, color, pick)| {
        // a cut-off no lead passes has no precision: the line stops there
        let points: Vec<String> = c
            .points
            .iter()
            .filter_map(|p| Some(format!("{:.1},{:.1}", x(p.cutoff), frame.y(pick(p)?))))
            .collect();
        (name, color, points.join(" "))
    });
    let lines = html! {
        @for (name, color, points) in lines {
            polyline fill="none" stroke=(color) stroke-width="2" points=(points) data-series=(name) {}
        }
    };
    let axes = Axes {
        id: "calibration",
        y_ticks: &y_ticks,
        x_labels: &x_labels,
        x_title: "MQL cut-off: peak engagement score",
        y_title: "precision, recall",
    };
    frame.chart(&axes, &lines)
}

//! The dashboard's SVG charts: horizontal bars, and a frame with a value
//! axis for the charts that draw their own data in it. Positions are in the
//! SVG's units, which the page scales to its width.

use maud::{Markup, html};

/// One colour per series, in the order of [`leadflow_domain::Stage::LIFECYCLE`]
/// where a chart has one per stage.
pub(super) const COLORS: [&str; 5] = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759"];

/// A coordinate to a tenth of a unit, far finer than a pixel and a shorter
/// page than every digit.
pub(super) fn tenths(v: f64) -> String {
    format!("{v:.1}")
}

/// Integer ticks from 0 that cover `max`: steps of 1, 2 or 5 times a power
/// of ten, at most five of them.
pub(super) fn count_ticks(max: u64) -> Vec<u64> {
    let max = max.max(1);
    let mut power = 1_u64;
    loop {
        for step in [power, power.saturating_mul(2), power.saturating_mul(5)] {
            let steps = max.div_ceil(step);
            if steps <= 5 {
                return (0..=steps).map(|i| i.saturating_mul(step)).collect();
            }
        }
        power = power.saturating_mul(10);
    }
}

/// Count ticks as an axis's marks.
pub(super) fn count_axis(max: u64) -> Vec<(f64, String)> {
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    count_ticks(max)
        .into_iter()
        .map(|t| (t as f64, t.to_string()))
        .collect()
}

/// What a bar stands for, in a `data-` attribute for whoever reads the page
/// (the browser test does): a number of leads, or a rate.
pub(super) enum Measure {
    Leads(u64),
    Rate(f64),
}

/// A bar of [`hbars`]: its key (`data-bar`), what it measures, its row's
/// label, its value on the axis, and the text beside it.
pub(super) struct HBar {
    pub(super) key: String,
    pub(super) measure: Measure,
    pub(super) label: String,
    pub(super) value: f64,
    pub(super) text: String,
    pub(super) color: &'static str,
}

/// A horizontal bar chart: one row per bar, from 0 up to the last tick.
pub(super) fn hbars(id: &str, bars: &[HBar], ticks: &[(f64, String)], x_title: &str) -> Markup {
    let (left, plot, row, top) = (130.0, 680.0, 30.0, 6.0);
    let end = ticks.last().map_or(1.0, |t| t.0).max(f64::MIN_POSITIVE);
    #[allow(clippy::cast_precision_loss)]
    let axis = top + bars.len() as f64 * row + 4.0;
    #[allow(clippy::cast_precision_loss)]
    let row_top = |i: usize| top + i as f64 * row;
    html! {
        svg id=(id) viewBox=(format!("0 0 1000 {}", axis + 40.0)) width="100%" role="img" aria-label=(x_title) {
            @for (x, label) in ticks {
                @let x = tenths(left + x / end * plot);
                line x1=(x) y1=(top) x2=(x) y2=(axis) stroke="#eef0f3" {}
                text x=(x) y=(axis + 15.0) text-anchor="middle" { (label) }
            }
            @for (i, bar) in bars.iter().enumerate() {
                @let y = row_top(i);
                @let w = (bar.value / end).clamp(0.0, 1.0) * plot;
                @let text_y = y + row / 2.0 + 1.0;
                text x="0" y=(text_y) { (bar.label) }
                rect class="bar" data-bar=(bar.key) data-leads=[bar.measure.leads()]
                    data-rate=[bar.measure.rate()] x=(left) y=(y) width=(tenths(w)) height=(row - 8.0)
                    fill=(bar.color) rx="2" {
                    title { (bar.label) ": " (bar.text) }
                }
                text class="value" x=(tenths(left + w + 8.0)) y=(text_y) { (bar.text) }
            }
            line class="x-axis" x1=(left) y1=(axis) x2=(left + plot) y2=(axis) stroke="#99a" {}
            text class="axis-title" data-axis="x" x=(left + plot / 2.0) y=(axis + 34.0) text-anchor="middle" {
                (x_title)
            }
        }
    }
}

impl Measure {
    fn leads(&self) -> Option<u64> {
        match self {
            Self::Leads(n) => Some(*n),
            Self::Rate(_) => None,
        }
    }

    fn rate(&self) -> Option<f64> {
        match self {
            Self::Rate(r) => Some(*r),
            Self::Leads(_) => None,
        }
    }
}

/// The plot area of a chart with a vertical value axis, in the SVG's
/// units, with room on the left for the value labels and the axis title.
/// Values from 0 to `y_end` map to heights through [`Frame::y`].
pub(super) struct Frame {
    view_width: f64,
    pub(super) left: f64,
    top: f64,
    pub(super) width: f64,
    height: f64,
    y_end: f64,
}

/// A chart in a [`Frame`]: its id, its value axis's marks, the labels along
/// its x axis at their x, and the two axes' titles.
pub(super) struct Axes<'a> {
    pub(super) id: &'a str,
    pub(super) y_ticks: &'a [(f64, String)],
    pub(super) x_labels: &'a [(f64, String)],
    pub(super) x_title: &'a str,
    pub(super) y_title: &'a str,
}

impl Frame {
    /// A frame `view_width` wide whose value axis ends at the last of
    /// `y_ticks`.
    pub(super) fn new(view_width: f64, y_ticks: &[(f64, String)]) -> Self {
        Self {
            view_width,
            left: 62.0,
            top: 8.0,
            width: view_width - 62.0 - 14.0,
            height: 200.0,
            y_end: y_ticks.last().map_or(1.0, |t| t.0).max(f64::MIN_POSITIVE),
        }
    }

    pub(super) fn y(&self, value: f64) -> f64 {
        self.top + self.height - (value / self.y_end).clamp(0.0, 1.0) * self.height
    }

    /// The chart: the frame — grid lines and labels at the ticks, the x
    /// labels, the axes and their titles — with `data` drawn over it.
    pub(super) fn chart(&self, axes: &Axes<'_>, data: &Markup) -> Markup {
        let base = self.top + self.height;
        let (left, right) = (self.left, self.left + self.width);
        html! {
            svg id=(axes.id) viewBox=(format!("0 0 {} {}", self.view_width, base + 42.0)) width="100%"
                role="img" aria-label=(format!("{} by {}", axes.y_title, axes.x_title)) {
                @for (value, label) in axes.y_ticks {
                    @let y = self.y(*value);
                    line x1=(left) y1=(tenths(y)) x2=(right) y2=(tenths(y)) stroke="#eef0f3" {}
                    text x=(left - 6.0) y=(tenths(y + 4.0)) text-anchor="end" { (label) }
                }
                @for (x, label) in axes.x_labels {
                    text x=(tenths(*x)) y=(base + 15.0) text-anchor="middle" { (label) }
                }
                line class="x-axis" x1=(left) y1=(base) x2=(right) y2=(base) stroke="#99a" {}
                line class="y-axis" x1=(left) y1=(self.top) x2=(left) y2=(base) stroke="#99a" {}
                text class="axis-title" data-axis="x" x=(left + self.width / 2.0) y=(base + 36.0)
                    text-anchor="middle" { (axes.x_title) }
                text class="axis-title" data-axis="y" transform="rotate(-90)"
                    x=(tenths(-(self.top + self.height / 2.0))) y="12" text-anchor="middle" { (axes.y_title) }
                (data)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_axes_end_on_a_round_number() {
        assert_eq!(count_ticks(0), [0, 1]);
        assert_eq!(count_ticks(5), [0, 1, 2, 3, 4, 5]);
        assert_eq!(count_ticks(6), [0, 2, 4, 6]);
        assert_eq!(count_ticks(11), [0, 5, 10, 15]);
        assert_eq!(count_ticks(26), [0, 10, 20, 30]);
        assert_eq!(count_ticks(4_321), [0, 1_000, 2_000, 3_000, 4_000, 5_000]);
        assert_eq!(count_ticks(u64::MAX).last(), Some(&u64::MAX));
    }

    #[test]
    fn bars_are_as_long_as_their_values_and_their_labels_are_text() {
        let bars = [
            HBar {
                key: "IQL".to_owned(),
                measure: Measure::Leads(5),
                label: "<IQL>".to_owned(),
                value: 5.0,
                text: "5".to_owned(),
                color: COLORS[0],
            },
            HBar {
                key: "MQL".to_owned(),
                measure: Measure::Rate(0.5),
                label: "MQL".to_owned(),
                value: 2.5,
                text: "2.5".to_owned(),
                color: COLORS[1],
            },
        ];
        let svg = hbars("c", &bars, &count_axis(5), "a \"title\"").into_string();
        assert!(
            svg.contains("data-bar=\"IQL\" data-leads=\"5\" x=\"130\""),
            "{svg}"
        );
        assert!(
            svg.contains("data-bar=\"MQL\" data-rate=\"0.5\" x=\"130\""),
            "{svg}"
        );
        assert!(
            svg.contains("width=\"680.0\"") && svg.contains("width=\"340.0\""),
            "{svg}"
        );
        assert!(svg.contains("&lt;IQL&gt;") && !svg.contains("<IQL>"), "{svg}");
        assert!(svg.contains("aria-label=\"a &quot;title&quot;\""), "{svg}");
    }
}

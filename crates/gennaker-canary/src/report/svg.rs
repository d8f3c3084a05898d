//! The report's charts as inline SVG, drawn here (no script, no external resource):
//! a time series of baseline and canary, and their overlaid distributions.
//!
//! Drawing is bounded whatever the series' length: lines are reduced to the minimum
//! and maximum of each of [`BUCKETS`] buckets (so spikes stay visible) and histograms
//! have [`BINS`] bins. The statistics shown beside the charts are the judge's, exact.

use std::fmt::Write as _;

use super::SideReport;
use super::html::escape;
use crate::render::number;

/// Buckets a drawn line is reduced to (at most two points each).
pub(crate) const BUCKETS: usize = 150;
/// Histogram bins.
const BINS: usize = 24;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 40.0;

/// A point to draw: its index in the series and its value; `None` breaks the line.
type Point = Option<(usize, f64)>;

/// The points of `values` to draw: all of them when short, else the minimum and
/// maximum of each bucket in time order. Non-finite values break the line.
pub(crate) fn downsample(values: &[f64]) -> Vec<Point> {
    if values.len() <= 2 * BUCKETS {
        return values
            .iter()
            .enumerate()
            .map(|(i, v)| v.is_finite().then_some((i, *v)))
            .collect();
    }
    let size = values.len().div_ceil(BUCKETS);
    let mut points = Vec::with_capacity(2 * BUCKETS);
    for (b, bucket) in values.chunks(size).enumerate() {
        let base = b * size;
        let finite = bucket
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| (base + i, *v));
        let mut low: Option<(usize, f64)> = None;
        let mut high: Option<(usize, f64)> = None;
        for (i, v) in finite {
            if low.is_none_or(|(_, l)| v < l) {
                low = Some((i, v));
            }
            if high.is_none_or(|(_, h)| v > h) {
                high = Some((i, v));
            }
        }
        match (low, high) {
            (Some(l), Some(h)) if l.0 == h.0 => points.push(Some(l)),
            (Some(l), Some(h)) if l.0 < h.0 => points.extend([Some(l), Some(h)]),
            (Some(l), Some(h)) => points.extend([Some(h), Some(l)]),
            _ => points.push(None),
        }
    }
    points
}

/// About `count` round tick values covering `[low, high]`.
fn ticks(low: f64, high: f64, count: usize) -> Vec<f64> {
    let span = high - low;
    if !(span.is_finite() && span > 0.0) {
        return vec![low];
    }
    let raw = span / count.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (low / step).ceil() as i64;
    let last = (high / step).floor() as i64;
    (first..=last)
        .take(count * 3)
        .map(|k| k as f64 * step)
        .collect()
}

/// Seconds as `1h2m`, `90s` → `1m30s`.
fn duration(seconds: f64) -> String {
    let s = seconds.round() as i64;
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if sec > 0 || out.is_empty() {
        let _ = write!(out, "{sec}s");
    }
    out
}

/// The value range of the finite values of `sides`, widened when flat.
fn range(sides: &[&[f64]]) -> Option<(f64, f64)> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in sides
        .iter()
        .flat_map(|s| s.iter())
        .filter(|v| v.is_finite())
    {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    if lo > hi {
        return None;
    }
    if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return Some((lo - pad, hi + pad));
    }
    Some((lo, hi))
}

struct Frame {
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x.0) / (self.x.1 - self.x.0) * (WIDTH - LEFT - RIGHT)
    }
    fn py(&self, y: f64) -> f64 {
        HEIGHT - BOTTOM - (y - self.y.0) / (self.y.1 - self.y.0) * (HEIGHT - TOP - BOTTOM)
    }
}

/// The opening of a chart: `role="img"` with an escaped title for screen readers.
fn open(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r#"<svg class="gk-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = escape(title)
    );
}

/// Both axes with labelled ticks; `x_label` formats an x tick.
fn axes(
    out: &mut String,
    frame: &Frame,
    x_ticks: &[f64],
    x_label: impl Fn(f64) -> String,
    y_ticks: &[f64],
    x_title: &str,
) {
    let (x0, x1) = (LEFT, WIDTH - RIGHT);
    let (y0, y1) = (HEIGHT - BOTTOM, TOP);
    let _ = write!(
        out,
        r#"<g class="gk-axis"><line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}"/>"#
    );
    for &t in y_ticks {
        let y = frame.py(t);
        let _ = write!(
            out,
            r#"<line class="gk-grid" x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            x0 - 6.0,
            y + 4.0,
            escape(&number(t))
        );
    }
    for &t in x_ticks {
        let x = frame.px(t);
        let _ = write!(
            out,
            r#"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{:.1}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            y0 + 4.0,
            y0 + 16.0,
            escape(&x_label(t))
        );
    }
    let _ = write!(
        out,
        r#"<text class="gk-axis-title" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text></g>"#,
        (x0 + x1) / 2.0,
        HEIGHT - 6.0,
        escape(x_title)
    );
}

/// One side's line as a path (gaps start a new segment).
fn line(out: &mut String, frame: &Frame, side: &SideReport, class: &str) {
    let step = side.step_seconds.max(1) as f64;
    let mut d = String::new();
    let mut pen_down = false;
    for point in downsample(&side.values) {
        match point {
            Some((i, v)) => {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1}",
                    if pen_down { "L" } else { "M" },
                    frame.px(i as f64 * step),
                    frame.py(v)
                );
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    if !d.is_empty() {
        let _ = write!(out, r#"<path class="gk-line {class}" d="{d}"/>"#);
    }
}

/// The legend: baseline and canary swatches.
fn legend(out: &mut String) {
    let y = TOP + 4.0;
    let x = WIDTH - RIGHT - 150.0;
    let _ = write!(
        out,
        r#"<g class="gk-legend"><rect class="gk-base" x="{x}" y="{y}" width="12" height="4"/><text x="{:.1}" y="{:.1}">baseline</text><rect class="gk-can" x="{:.1}" y="{y}" width="12" height="4"/><text x="{:.1}" y="{:.1}">canary</text></g>"#,
        x + 16.0,
        y + 6.0,
        x + 80.0,
        x + 96.0,
        y + 6.0
    );
}

/// Baseline and canary over time since each side's window start (the baseline's
/// window may be shifted back by the stage's baseline offset).
pub(crate) fn time_series(title: &str, control: &SideReport, experiment: &SideReport) -> String {
    let mut out = String::new();
    open(&mut out, title);
    let Some(y) = range(&[&control.values, &experiment.values]) else {
        let _ = write!(
            out,
            r#"<text class="gk-empty" x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return out;
    };
    let span = |s: &SideReport| s.values.len().saturating_sub(1) as f64 * s.step_seconds as f64;
    let x_max = span(control).max(span(experiment)).max(1.0);
    let frame = Frame { x: (0.0, x_max), y };
    axes(
        &mut out,
        &frame,
        &ticks(0.0, x_max, 6),
        duration,
        &ticks(y.0, y.1, 5),
        "time since window start",
    );
    line(&mut out, &frame, control, "gk-base");
    line(&mut out, &frame, experiment, "gk-can");
    legend(&mut out);
    out.push_str("</svg>");
    out
}

/// Overlaid histograms of both sides' finite samples over one set of bins.
pub(crate) fn histogram(title: &str, control: &SideReport, experiment: &SideReport) -> String {
    let mut out = String::new();
    open(&mut out, title);
    let Some((lo, hi)) = range(&[&control.values, &experiment.values]) else {
        let _ = write!(
            out,
            r#"<text class="gk-empty" x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return out;
    };
    let width = (hi - lo) / BINS as f64;
    let count = |values: &[f64]| {
        let mut bins = [0usize; BINS];
        for v in values.iter().filter(|v| v.is_finite()) {
            let b = (((v - lo) / width) as usize).min(BINS - 1);
            bins[b] += 1;
        }
        bins
    };
    let (c, e) = (count(&control.values), count(&experiment.values));
    let top = c.iter().chain(e.iter()).copied().max().unwrap_or(1).max(1) as f64;
    let frame = Frame {
        x: (lo, hi),
        y: (0.0, top),
    };
    let y_ticks: Vec<f64> = ticks(0.0, top, 4)
        .into_iter()
        .filter(|t| t.fract() == 0.0)
        .collect();
    axes(
        &mut out,
        &frame,
        &ticks(lo, hi, 6),
        number,
        &y_ticks,
        "value (bars: number of samples)",
    );
    for (bins, class) in [(c, "gk-base"), (e, "gk-can")] {
        for (b, n) in bins.iter().enumerate().filter(|(_, n)| **n > 0) {
            let x = frame.px(lo + b as f64 * width);
            let w = frame.px(lo + (b + 1) as f64 * width) - x;
            let y = frame.py(*n as f64);
            let _ = write!(
                out,
                r#"<rect class="gk-bar {class}" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}"/>"#,
                (w - 1.0).max(0.5),
                (HEIGHT - BOTTOM - y).max(0.0)
            );
        }
    }
    legend(&mut out);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_extremes_and_bounds_points() {
        let mut values: Vec<f64> = (0..100_000).map(|i| (i % 7) as f64).collect();
        values[54_321] = 1000.0;
        values[77_777] = f64::NAN;
        let points = downsample(&values);
        assert!(points.len() <= 2 * BUCKETS, "{}", points.len());
        assert!(points.contains(&Some((54_321, 1000.0))), "the spike stays");
        let short = downsample(&[1.0, f64::NAN, 3.0]);
        assert_eq!(short, [Some((0, 1.0)), None, Some((2, 3.0))]);
    }

    #[test]
    fn ticks_are_round() {
        let labels = |t: Vec<f64>| t.into_iter().map(number).collect::<Vec<_>>();
        assert_eq!(labels(ticks(0.0, 10.0, 5)), ["0", "2", "4", "6", "8", "10"]);
        assert_eq!(
            labels(ticks(9.97, 10.43, 5)),
            ["10", "10.1", "10.2", "10.3", "10.4"]
        );
        assert_eq!(duration(90.0), "1m30s");
        assert_eq!(duration(0.0), "0s");
    }
}

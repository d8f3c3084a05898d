//! Plain-text rendering of a judgement for the CLI.

use crate::result::JudgeResult;
use std::fmt::Write as _;

/// Renders one line per metric (metric, classification, ratio, interval, reason)
/// as an aligned table, followed by the group scores and the summary score.
pub fn render_table(result: &JudgeResult) -> String {
    let header = [
        "METRIC",
        "CLASSIFICATION",
        "RATIO",
        "INTERVAL (ESTIMATE)",
        "REASON",
    ];
    let rows: Vec<[String; 5]> = result
        .results
        .iter()
        .map(|r| {
            let mut name = r.name.clone();
            if !r.tags.is_empty() {
                let tags: Vec<String> = r.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                name = format!("{name}{{{}}}", tags.join(","));
            }
            let mut class = r.classification.to_string();
            if r.critical {
                class.push_str(" (critical)");
            }
            if r.muted {
                class.push_str(" (muted)");
            }
            let ratio = r
                .result_metadata
                .ratio
                .map_or_else(|| "-".to_owned(), number);
            let interval = r.interval.map_or_else(
                || "-".to_owned(),
                |i| {
                    format!(
                        "[{}, {}] ({})",
                        number(i.lower),
                        number(i.upper),
                        number(i.estimate)
                    )
                },
            );
            let mut reason = r.classification_reason.clone().unwrap_or_default();
            for w in &r.warnings {
                if !reason.is_empty() {
                    reason.push_str("; ");
                }
                reason.push_str("warning: ");
                reason.push_str(w);
            }
            [name, class, ratio, interval, reason]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    if !result.group_scores.is_empty() {
        let groups: Vec<String> = result
            .group_scores
            .iter()
            .map(|g| format!("{} {}", g.name, number(g.score)))
            .collect();
        let _ = writeln!(out, "\nGroups: {}", groups.join(", "));
    }
    let s = &result.score;
    let _ = write!(out, "Score: {} ({})", number(s.score), s.classification);
    if !s.classification_reason.is_empty() {
        let _ = write!(out, " - {}", s.classification_reason);
    }
    out.push('\n');
    out
}

/// Up to 6 significant digits, without trailing noise.
pub(crate) fn number(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".to_owned()
        } else if v > 0.0 {
            "Infinity".to_owned()
        } else {
            "-Infinity".to_owned()
        };
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-4..6).contains(&magnitude) {
        return format!("{v:.4e}");
    }
    let decimals = (5 - magnitude).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn numbers_are_compact() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(1.23456789), "1.23457");
        assert_eq!(number(-0.5), "-0.5");
        assert_eq!(number(12345.678), "12345.7");
        assert_eq!(number(1e-9), "1.0000e-9");
        assert_eq!(number(f64::NAN), "NaN");
    }
}

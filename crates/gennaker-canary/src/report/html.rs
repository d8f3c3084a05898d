//! The report as HTML: a standalone page ([`render_html`]: inline CSS, inline SVG, no
//! script and no external resource, readable in light and dark schemes) built around
//! a fragment a web UI can embed ([`render_html_body`] with [`REPORT_CSS`]).
//!
//! Every text that comes from the execution (names, tags, queries, reasons, messages)
//! goes through [`escape`]; the page also carries a Content-Security-Policy that
//! allows no script at all, so a lapse could not run one.

use std::fmt::Write as _;

use super::svg;
use super::{CanaryReport, IntervalReport, MetricReport, SideReport, Verdict};
use crate::render::number;

/// Metrics (of all intervals together) drawn as charts; beyond it, tables only, so a
/// config with hundreds of metrics still gives a page of bounded size.
const MAX_CHARTED: usize = 60;

/// The report's style sheet, scoped to `.gk-canary` (for a web UI's page head).
pub const REPORT_CSS: &str = r#"
.gk-canary{--gk-fg:#1f2328;--gk-muted:#59636e;--gk-bg:#ffffff;--gk-panel:#f6f8fa;--gk-line:#d1d9e0;
--gk-base:#2563eb;--gk-can:#c2410c;--gk-pass:#1a7f37;--gk-marginal:#9a6700;--gk-fail:#cf222e;
color:var(--gk-fg);background:var(--gk-bg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;padding:1rem 1.25rem;max-width:1100px}
@media (prefers-color-scheme:dark){.gk-canary{--gk-fg:#e6edf3;--gk-muted:#9198a1;--gk-bg:#0d1117;--gk-panel:#151b23;--gk-line:#3d444d;
--gk-base:#60a5fa;--gk-can:#fb923c;--gk-pass:#3fb950;--gk-marginal:#d29922;--gk-fail:#f85149}}
.gk-canary h1{font-size:1.4rem;margin:0 0 .25rem}.gk-canary h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
.gk-canary h3{font-size:1rem;margin:1rem 0 .25rem}.gk-canary .gk-meta{color:var(--gk-muted);margin:.1rem 0}
.gk-canary table{border-collapse:collapse;width:100%;margin:.25rem 0}.gk-canary th,.gk-canary td{border-bottom:1px solid var(--gk-line);padding:.3rem .5rem;text-align:left;vertical-align:top}
.gk-canary th{color:var(--gk-muted);font-weight:600}.gk-canary td.gk-num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.gk-canary code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--gk-panel);padding:.1rem .25rem;border-radius:3px;word-break:break-all}
.gk-canary .gk-score{display:inline-flex;align-items:baseline;gap:.6rem;padding:.4rem .8rem;border-radius:6px;border:2px solid currentColor;margin:.5rem 0}
.gk-canary .gk-score b{font-size:2rem}.gk-canary .gk-pill{display:inline-block;padding:0 .45rem;border-radius:1rem;border:1px solid currentColor;font-weight:600;font-size:.85em;white-space:nowrap}
.gk-canary .gk-Pass{color:var(--gk-pass)}.gk-canary .gk-Marginal{color:var(--gk-marginal)}.gk-canary .gk-Fail,.gk-canary .gk-High,.gk-canary .gk-Low,.gk-canary .gk-NodataFailMetric,.gk-canary .gk-Error{color:var(--gk-fail)}
.gk-canary .gk-Nodata,.gk-canary .gk-none{color:var(--gk-muted)}
.gk-canary .gk-groups{display:flex;gap:2px;margin:.25rem 0}.gk-canary .gk-group{flex:1;padding:.35rem .5rem;border-top:4px solid currentColor;background:var(--gk-panel)}
.gk-canary details{border:1px solid var(--gk-line);border-radius:6px;padding:.4rem .8rem;margin:.6rem 0}.gk-canary summary{cursor:pointer;font-weight:600}
.gk-canary .gk-metric{border-top:1px solid var(--gk-line);padding:.5rem 0}.gk-canary .gk-charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:.5rem}
.gk-canary .gk-chart{width:100%;height:auto;background:var(--gk-panel);border-radius:4px}
.gk-canary .gk-chart text{fill:var(--gk-muted);font-size:11px}.gk-canary .gk-axis line{stroke:var(--gk-muted);stroke-width:1}.gk-canary .gk-axis .gk-grid{stroke:var(--gk-line);stroke-dasharray:2 3}
.gk-canary .gk-line{fill:none;stroke-width:1.5}.gk-canary path.gk-base{stroke:var(--gk-base)}.gk-canary path.gk-can{stroke:var(--gk-can)}
.gk-canary rect.gk-base{fill:var(--gk-base)}.gk-canary rect.gk-can{fill:var(--gk-can)}.gk-canary .gk-bar{fill-opacity:.45}
.gk-canary .gk-warn{color:var(--gk-marginal)}.gk-canary dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .75rem;margin:.4rem 0}.gk-canary dt{color:var(--gk-muted)}.gk-canary dd{margin:0}
"#;

/// HTML-escapes text for element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The report as a standalone HTML page.
pub fn render_html(report: &CanaryReport) -> String {
    format!(
        concat!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
            "<meta name=\"color-scheme\" content=\"light dark\">",
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            "<title>Canary report: {title}</title><style>{css}body{{margin:0}}",
            "@media (prefers-color-scheme:dark){{body{{background:#0d1117}}}}</style></head>",
            "<body>{body}</body></html>\n"
        ),
        title = escape(&format!("{} / {}", report.pipeline, report.stage_name)),
        css = REPORT_CSS,
        body = render_html_body(report)
    )
}

fn verdict_class(verdict: Option<Verdict>) -> &'static str {
    verdict.map_or("gk-none", |v| match v {
        Verdict::Pass => "gk-Pass",
        Verdict::Marginal => "gk-Marginal",
        Verdict::Fail => "gk-Fail",
    })
}

fn score(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), number)
}

fn time(t: Option<jiff::Timestamp>) -> String {
    t.map_or_else(
        || "–".to_owned(),
        |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// `name{k=v,…}`.
fn metric_label(m: &MetricReport) -> String {
    if m.tags.is_empty() {
        return m.name.clone();
    }
    let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}{{{}}}", m.name, tags.join(","))
}

/// The report as an HTML fragment (`<div class="gk-canary">…</div>`) styled by
/// [`REPORT_CSS`].
pub fn render_html_body(report: &CanaryReport) -> String {
    let mut out = String::from(r#"<div class="gk-canary">"#);
    header(&mut out, report);
    intervals_table(&mut out, report);
    groups(&mut out, report);
    let mut charted = 0;
    // Charts go to the latest judgements first: they cover the most data.
    let budget: Vec<usize> = report
        .intervals
        .iter()
        .rev()
        .map(|i| {
            let n = i.metrics.len().min(MAX_CHARTED - charted);
            charted += n;
            n
        })
        .collect();
    let last_judged = report.intervals.iter().rposition(|i| !i.metrics.is_empty());
    for (index, (interval, charts)) in report
        .intervals
        .iter()
        .zip(budget.into_iter().rev())
        .enumerate()
    {
        interval_section(&mut out, interval, charts, Some(index) == last_judged);
    }
    out.push_str("</div>");
    out
}

fn header(out: &mut String, r: &CanaryReport) {
    let verdict = r.overall.verdict;
    let _ = write!(
        out,
        r#"<header><h1>Canary analysis: {}</h1><p class="gk-meta">Pipeline <b>{}</b> of application <b>{}</b> · execution <code>{}</code> · stage status {}</p>"#,
        escape(&r.stage_name),
        escape(&r.pipeline),
        escape(&r.application),
        escape(&r.execution_id),
        escape(r.status.as_str())
    );
    if r.canary_config_name.is_some() || r.metrics_account_name.is_some() {
        let _ = write!(
            out,
            r#"<p class="gk-meta">Canary config <b>{}</b> (<code>{}</code>) · metrics account <b>{}</b></p>"#,
            escape(r.canary_config_name.as_deref().unwrap_or("–")),
            escape(r.canary_config_id.as_deref().unwrap_or("–")),
            escape(r.metrics_account_name.as_deref().unwrap_or("–"))
        );
    }
    let _ = write!(
        out,
        r#"<div class="gk-score {}"><b>{}</b><span>{}</span></div>"#,
        verdict_class(verdict),
        escape(&score(r.overall.score)),
        verdict.map_or("no score yet", Verdict::as_str)
    );
    if let Some(message) = &r.overall.message {
        let _ = write!(out, "<p>{}</p>", escape(message));
    }
    let _ = write!(
        out,
        r#"<p class="gk-meta">Thresholds: pass at {} or above; fail at {} or below. Scores so far: {}</p></header>"#,
        escape(&score(r.thresholds.pass)),
        escape(&score(r.thresholds.marginal)),
        escape(
            &r.overall
                .scores
                .iter()
                .map(|s| number(*s))
                .collect::<Vec<_>>()
                .join(", ")
        )
    );
}

fn intervals_table(out: &mut String, r: &CanaryReport) {
    out.push_str("<section><h2>Intervals</h2><table><thead><tr><th>#</th><th>Status</th><th>Score</th><th>Verdict</th><th>Baseline window</th><th>Canary window</th><th>Judged at</th><th>Warnings</th></tr></thead><tbody>");
    for i in &r.intervals {
        let window = |start, end| format!("{} – {}", time(Some(start)), time(Some(end)));
        let (base, canary) = i.window.map_or_else(
            || ("–".to_owned(), "–".to_owned()),
            |w| {
                (
                    window(w.control_start, w.control_end),
                    window(w.experiment_start, w.experiment_end),
                )
            },
        );
        let mut warnings: Vec<String> = i.warnings.clone();
        if let Some(error) = &i.error {
            warnings.push(error.clone());
        }
        let _ = write!(
            out,
            r#"<tr><td class="gk-num">{}</td><td>{}</td><td class="gk-num">{}</td><td><span class="gk-pill {}">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td class="gk-warn">{}</td></tr>"#,
            i.number,
            escape(i.status.as_str()),
            escape(&score(i.score)),
            verdict_class(i.verdict),
            i.verdict.map_or("–", Verdict::as_str),
            escape(&base),
            escape(&canary),
            escape(i.last_updated_iso.as_deref().unwrap_or("–")),
            escape(&warnings.join(" "))
        );
    }
    out.push_str("</tbody></table></section>");
}

fn groups(out: &mut String, r: &CanaryReport) {
    let Some(last) = r
        .intervals
        .iter()
        .rev()
        .find(|i| !i.group_scores.is_empty())
    else {
        return;
    };
    let _ = write!(
        out,
        r#"<section><h2>Group scores (interval #{})</h2><div class="gk-groups">"#,
        last.number
    );
    for g in &last.group_scores {
        let verdict = Verdict::of(g.score, &r.thresholds);
        let _ = write!(
            out,
            r#"<div class="gk-group {}"><b>{}</b> {}</div>"#,
            verdict_class(Some(verdict)),
            escape(&g.name),
            escape(&number(g.score))
        );
    }
    out.push_str("</div></section>");
}

fn stats_cell(s: &SideReport) -> String {
    format!(
        "n {} · mean {} · min {} · max {}",
        s.stats.count,
        number(s.stats.mean),
        number(s.stats.min),
        number(s.stats.max)
    )
}

fn classification_pill(m: &MetricReport) -> String {
    let mut label = m.classification.to_string();
    if m.critical {
        label.push_str(" (critical)");
    }
    if m.muted {
        label.push_str(" (muted)");
    }
    format!(
        r#"<span class="gk-pill gk-{}">{}</span>"#,
        m.classification,
        escape(&label)
    )
}

fn interval_section(out: &mut String, i: &IntervalReport, charts: usize, open: bool) {
    let _ = write!(
        out,
        r#"<section><details{}><summary>{} · score {} <span class="gk-pill {}">{}</span></summary>"#,
        if open { " open" } else { "" },
        escape(&i.name),
        escape(&score(i.score)),
        verdict_class(i.verdict),
        i.verdict.map_or("not judged", Verdict::as_str)
    );
    if let Some(reason) = &i.classification_reason {
        let _ = write!(out, r#"<p class="gk-warn">{}</p>"#, escape(reason));
    }
    if let Some(error) = &i.error {
        let _ = write!(out, r#"<p class="gk-warn">{}</p>"#, escape(error));
    }
    if i.metrics.is_empty() {
        out.push_str(
            "<p class=\"gk-meta\">No metrics judged in this interval.</p></details></section>",
        );
        return;
    }
    out.push_str("<table><thead><tr><th>Metric</th><th>Result</th><th>Deviation</th><th>Baseline</th><th>Canary</th></tr></thead><tbody>");
    for m in &i.metrics {
        let deviation = m
            .deviation_percent
            .map_or_else(|| "N/A".to_owned(), |d| format!("{d:+.1}%"));
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td>{}</td><td class="gk-num">{}</td><td>{}</td><td>{}</td></tr>"#,
            escape(&metric_label(m)),
            classification_pill(m),
            escape(&deviation),
            escape(&stats_cell(&m.control)),
            escape(&stats_cell(&m.experiment))
        );
    }
    out.push_str("</tbody></table>");
    if i.series_truncated {
        out.push_str("<p class=\"gk-meta\">The judgement had more series than the report keeps; only the first ones are shown.</p>");
    }
    for (k, m) in i.metrics.iter().enumerate() {
        metric_detail(out, m, k < charts);
    }
    if charts < i.metrics.len() {
        out.push_str("<p class=\"gk-meta\">Charts of further metrics are left out to keep the page small; the JSON report has every series.</p>");
    }
    out.push_str("</details></section>");
}

fn metric_detail(out: &mut String, m: &MetricReport, chart: bool) {
    let label = metric_label(m);
    let _ = write!(
        out,
        r#"<div class="gk-metric"><h3>{} {}</h3><p>{}</p>"#,
        escape(&label),
        classification_pill(m),
        escape(&m.why)
    );
    if chart {
        let _ = write!(
            out,
            r#"<div class="gk-charts">{}{}</div>"#,
            svg::time_series(
                &format!("{label}: baseline and canary over time"),
                &m.control,
                &m.experiment
            ),
            svg::histogram(
                &format!("{label}: distribution of baseline and canary samples"),
                &m.control,
                &m.experiment
            )
        );
    }
    out.push_str("<dl>");
    for (side, s) in [("Baseline", &m.control), ("Canary", &m.experiment)] {
        let mut notes = format!(
            "{} values from {}, every {} s",
            s.values.len(),
            time(s.start),
            s.step_seconds
        );
        if s.truncated {
            notes.push_str(" (more were judged than kept)");
        }
        let _ = write!(
            out,
            "<dt>{side} query</dt><dd><code>{}</code></dd><dt>{side} samples</dt><dd>{}; {}</dd>",
            escape(s.query.as_deref().unwrap_or("–")),
            escape(&notes),
            escape(&stats_cell(s))
        );
    }
    if let Some(iv) = m.interval {
        let _ = write!(
            out,
            "<dt>Interval</dt><dd>[{}, {}], estimate {}, tolerance ±{}</dd>",
            escape(&number(iv.lower)),
            escape(&number(iv.upper)),
            escape(&number(iv.estimate)),
            escape(&score(m.tolerance))
        );
    }
    out.push_str("</dl></div>");
}

//! The HTML report of a check (`driftwatch check --format html`): one self-contained file —
//! no external scripts, styles, fonts or images — with the verdict, a sortable feature
//! table, reference-vs-current distribution plots drawn as inline SVG, data quality and
//! performance. Every text from the data is escaped.

use std::fmt::Write as _;

use crate::engine::report::{FeatureReport, Report};

use crate::engine::text::{fmt_compact, fmt_num as num, truncate};

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |r| format!("{:.2}%", r * 100.0))
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// A bar chart of the two sides' shares, reference grey and current coloured.
fn plot(f: &FeatureReport) -> String {
    let Some(d) = f.distribution.as_ref().filter(|d| !d.labels.is_empty()) else {
        return "<p class=\"muted\">No values to plot.</p>".into();
    };
    let (w, h, left, bottom, top) = (760.0, 240.0, 44.0, 50.0, 24.0);
    let n = d.labels.len() as f64;
    let max = d.reference.iter().chain(&d.current).fold(0.0f64, |a, b| a.max(*b)).max(1e-12);
    let slot = (w - left - 8.0) / n;
    let bar = (slot * 0.42).max(1.0);
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / max);
    let colour = if f.drift { "#c62828" } else { "#1565c0" };
    let mut svg = format!(
        "<svg class=\"plot\" role=\"img\" viewBox=\"0 0 {w} {h}\" width=\"100%\" style=\"max-width:{w}px\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title>{} distribution: reference (grey) and current</title>",
        escape(&f.name)
    );
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e0e0e0\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">{:.0}%</text>",
            w - 8.0,
            left - 4.0,
            y(v) + 3.0,
            v * 100.0,
            y = y(v)
        );
    }
    for (i, label) in d.labels.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - 2.0 * bar) / 2.0;
        for (j, (value, fill)) in [(d.reference[i], "#9e9e9e"), (d.current[i], colour)].into_iter().enumerate() {
            let side = if j == 0 { "reference" } else { "current" };
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{fill}\"><title>{} {side}: {:.2}%</title></rect>",
                x + bar * j as f64,
                y(value),
                (h - bottom) - y(value),
                escape(label),
                value * 100.0
            );
        }
        if d.range.is_none() {
            let tx = x + bar;
            let _ = write!(
                svg,
                "<text x=\"{tx:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#333\" text-anchor=\"end\" transform=\"rotate(-35 {tx:.1} {:.1})\">{}</text>",
                h - bottom + 12.0,
                h - bottom + 12.0,
                escape(&truncate(label, 14))
            );
        }
    }
    if let Some((lo, hi)) = d.range {
        let _ = write!(
            svg,
            "<text x=\"{left}\" y=\"{:.1}\" font-size=\"11\" fill=\"#333\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#333\" text-anchor=\"end\">{}</text>",
            h - bottom + 14.0,
            escape(&fmt_compact(lo)),
            w - 8.0,
            h - bottom + 14.0,
            escape(&fmt_compact(hi))
        );
    }
    // The axis, and the legend in the top right corner.
    let lx = w - 170.0;
    let _ = write!(
        svg,
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>\
         <rect x=\"{lx}\" y=\"4\" width=\"10\" height=\"10\" fill=\"#9e9e9e\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">reference</text>\
         <rect x=\"{}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">current</text></svg>",
        w - 8.0,
        h - bottom,
        h - bottom,
        lx + 14.0,
        13.0,
        lx + 85.0,
        lx + 99.0,
        13.0,
    );
    svg
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#212121;background:#fafafa}\
main{max-width:1100px;margin:0 auto;padding:1.5em 2em 3em}h1{margin:.2em 0}h2{margin-top:2em;border-bottom:2px solid #e0e0e0;padding-bottom:.2em}\
.banner{padding:1em 1.2em;border-radius:6px;color:#fff;font-size:1.2em}.banner.drift{background:#c62828}.banner.ok{background:#2e7d32}\
.cards{display:flex;gap:1em;flex-wrap:wrap;margin:1em 0}.card{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:.8em 1.2em;min-width:9em}\
.card b{display:block;font-size:1.6em}table{border-collapse:collapse;background:#fff;width:100%}\
th,td{padding:.35em .7em;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}th{background:#f5f5f5;cursor:pointer;user-select:none}\
th.text,td.text{text-align:left}th[aria-sort=ascending]::after{content:' ▲'}th[aria-sort=descending]::after{content:' ▼'}\
tr.drift td.verdict{color:#c62828;font-weight:bold}tr.ok td.verdict{color:#2e7d32}tr.skip td{color:#888}\
.feature{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:.8em 1.2em;margin:1em 0}.feature h3{margin:.2em 0 .5em}\
.feature .tag{font-size:.8em;padding:.1em .5em;border-radius:3px;margin-left:.5em;color:#fff}.tag.drift{background:#c62828}.tag.ok{background:#2e7d32}\
.muted{color:#777}.note{color:#8a6d00}.bad{color:#c62828;font-weight:bold}footer{margin-top:3em;color:#777;font-size:.9em}";

/// Sorting by a header click: numbers by their `data-v`, text otherwise. Errors are shown
/// on the page (and so in a test that reads it).
const SCRIPT: &str = "window.addEventListener('error',function(e){document.body.setAttribute('data-error',String(e.message));});\
document.querySelectorAll('table.sortable').forEach(function(table){\
var heads=table.querySelectorAll('th');heads.forEach(function(th,col){th.addEventListener('click',function(){\
var asc=th.getAttribute('aria-sort')!=='ascending';heads.forEach(function(h){h.removeAttribute('aria-sort');});\
th.setAttribute('aria-sort',asc?'ascending':'descending');var body=table.tBodies[0];\
var rows=Array.prototype.slice.call(body.rows);rows.sort(function(a,b){\
var x=a.cells[col],y=b.cells[col];var p=parseFloat(x.getAttribute('data-v')),q=parseFloat(y.getAttribute('data-v'));\
var c=(!isNaN(p)&&!isNaN(q))?p-q:x.textContent.localeCompare(y.textContent);return asc?c:-c;});\
rows.forEach(function(r){body.appendChild(r);});});});});\
document.body.setAttribute('data-ready','1');";

fn cell(value: Option<f64>, text: String) -> String {
    match value {
        Some(v) if v.is_finite() => format!("<td data-v=\"{v}\">{text}</td>"),
        _ => format!("<td data-v=\"\">{text}</td>"),
    }
}

/// The whole report page; `context` (escaped here) says what was compared, e.g. a window's
/// time span.
pub fn render(report: &Report, context: &str) -> String {
    let d = &report.drift;
    let mut out = String::with_capacity(64 * 1024);
    let verdict = if d.detected { "DATASET DRIFT" } else { "No dataset drift" };
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>driftwatch: {model}</title><style>{STYLE}</style></head><body><main>\n\
         <h1>driftwatch report: {model}</h1>\n<p class=\"muted\">{context}</p>\n<div class=\"banner {class}\">{verdict}: {drifted} of {total} features drifted \
         ({share:.1}%; the data set drifts at {threshold:.0}%)</div>\n",
        model = escape(&report.model),
        context = escape(context),
        class = if d.detected { "drift" } else { "ok" },
        drifted = d.drifted_features,
        total = d.total_features,
        share = d.share * 100.0,
        threshold = d.drift_share * 100.0,
    );
    // Summary cards.
    let quality_issues =
        report.features.iter().filter(|f| f.quality.rates().iter().any(|r| r.is_some_and(|r| r > 0.0))).count();
    let _ = write!(
        out,
        "<section class=\"cards\"><div class=\"card\">reference rows<b>{}</b></div><div class=\"card\">current rows<b>{}</b></div>\
         <div class=\"card\">features drifted<b>{} / {}</b></div><div class=\"card\">features with quality findings<b>{quality_issues}</b></div>",
        report.reference.rows, report.current.rows, d.drifted_features, d.total_features
    );
    if let Some((name, Some(value))) = report.performance.metrics.iter().next() {
        let how = if report.performance.estimated == Some(true) { "estimated" } else { "realised" };
        let _ = write!(out, "<div class=\"card\">{} ({how})<b>{}</b></div>", escape(name), num(*value));
    }
    out.push_str("</section>\n");
    for n in &report.notes {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(n));
    }
    if !report.impact.is_empty() {
        out.push_str("<h2>Likely impact on accuracy</h2>\n<ol>");
        for i in &report.impact {
            let _ = write!(out, "<li>{}: {:+.4}</li>", escape(&i.feature), i.accuracy_change);
        }
        out.push_str("</ol>\n");
    }

    // The feature table, drifted first.
    out.push_str(
        "<h2>Features</h2>\n<p class=\"muted\">Click a column to sort.</p>\n<table class=\"sortable\" id=\"features\"><thead><tr>\
         <th class=\"text\">feature</th><th class=\"text\">type</th><th class=\"text\">test</th><th>statistic</th><th>p-value</th>\
         <th>threshold</th><th>null rate</th><th class=\"text\">verdict</th></tr></thead><tbody>\n",
    );
    let mut order: Vec<&FeatureReport> = report.features.iter().collect();
    order.sort_by_key(|f| !f.drift);
    for f in &order {
        for t in &f.tests {
            let (class, verdict) = match (&t.reason, t.drift) {
                (Some(reason), _) => ("skip", format!("skipped: {}", escape(reason))),
                (None, true) => ("drift", "DRIFT".to_string()),
                (None, false) => ("ok", "ok".to_string()),
            };
            let p = t.p_adjusted.or(t.p_value);
            let _ = writeln!(
                out,
                "<tr class=\"{class}\"><td class=\"text\"><a href=\"#f-{anchor}\">{name}</a></td><td class=\"text\">{kind}</td>\
                 <td class=\"text\">{test}</td>{stat}{p}{threshold}{nulls}<td class=\"text verdict\">{verdict}</td></tr>",
                anchor = escape(&anchor(&f.name)),
                name = escape(&f.name),
                kind = f.kind.as_str(),
                test = t.test.name(),
                stat = cell(t.statistic, t.statistic.map_or("–".into(), num)),
                p = cell(p, p.map_or("–".into(), num)),
                threshold = cell(Some(t.threshold), num(t.threshold)),
                nulls = cell(f.quality.null_rate, pct(f.quality.null_rate)),
            );
        }
    }
    out.push_str("</tbody></table>\n");

    // Distributions.
    out.push_str("<h2>Distributions</h2>\n");
    for f in &order {
        let tests: Vec<String> = f
            .tests
            .iter()
            .filter(|t| t.reason.is_none())
            .map(|t| {
                let value = t.p_adjusted.or(t.p_value).or(t.statistic);
                format!("{} {}", t.test.name(), value.map_or("–".into(), num))
            })
            .collect();
        let _ = writeln!(
            out,
            "<section class=\"feature\" id=\"f-{}\"><h3>{}<span class=\"tag {}\">{}</span></h3><p class=\"muted\">{} · {}</p>{}</section>",
            escape(&anchor(&f.name)),
            escape(&f.name),
            if f.drift { "drift" } else { "ok" },
            if f.drift { "drift" } else { "no drift" },
            f.kind.as_str(),
            escape(&tests.join(", ")),
            plot(f)
        );
    }

    // Data quality.
    out.push_str(
        "<h2>Data quality</h2>\n<table class=\"sortable\" id=\"quality\"><thead><tr><th class=\"text\">feature</th><th>null</th>\
         <th>non-finite</th><th>wrong type</th><th>out of range</th><th>new category</th><th>constraint violations</th></tr></thead><tbody>\n",
    );
    for f in &report.features {
        let _ = write!(out, "<tr><td class=\"text\">{}</td>", escape(&f.name));
        for r in f.quality.rates() {
            let text =
                if r.is_some_and(|r| r > 0.0) { format!("<span class=\"bad\">{}</span>", pct(r)) } else { pct(r) };
            out.push_str(&cell(r, text));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
    if !report.quality.is_empty() {
        out.push_str("<h3>Whole data set</h3><table><tbody>");
        for (check, value) in &report.quality {
            let _ = write!(out, "<tr><td class=\"text\">{}</td><td>{}</td></tr>", escape(check), num(*value));
        }
        out.push_str("</tbody></table>\n");
    }

    // Performance.
    out.push_str("<h2>Performance</h2>\n");
    let perf = &report.performance;
    if perf.metrics.is_empty() {
        out.push_str(
            "<p class=\"muted\">No performance: give the label column (realised metrics) or a score column and a labelled \
             reference (estimated without labels).</p>\n",
        );
    } else {
        let how = match perf.estimated {
            Some(true) => format!(
                "Estimated without labels (CBPE{}) on {} rows; the band is ±3 sampling errors.",
                if perf.calibrated == Some(true) { ", calibrated scores" } else { "" },
                perf.rows.unwrap_or(0)
            ),
            _ => format!("Realised from the labels of {} rows.", perf.rows.unwrap_or(0)),
        };
        let _ = write!(
            out,
            "<p>{how}</p><table id=\"performance\"><thead><tr><th class=\"text\">metric</th><th>value</th><th>band</th></tr></thead><tbody>"
        );
        for (name, value) in &perf.metrics {
            let band = match (value, perf.sampling_error.get(name)) {
                (Some(v), Some(se)) => format!("{} – {}", num(v - 3.0 * se), num(v + 3.0 * se)),
                _ => "–".into(),
            };
            let _ = write!(
                out,
                "<tr><td class=\"text\">{}</td>{}<td>{band}</td></tr>",
                escape(name),
                cell(*value, value.map_or("undefined".into(), num))
            );
        }
        out.push_str("</tbody></table>\n");
    }
    let _ = write!(
        out,
        "<footer>driftwatch {} · generated {}</footer>\n</main><script>{SCRIPT}</script></body></html>\n",
        env!("CARGO_PKG_VERSION"),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    out
}

/// An element id for a feature (letters, digits, `-` and `_`).
fn anchor(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
    }
}

//! Renders a digest — every queued notice of one model for one set of recipients — as an
//! email: subject with severity, model and counts; a plain-text and an HTML body with, per
//! alert, the feature, test, statistic, threshold, window bounds, sample sizes, reference
//! and current summaries, and a dashboard link. Names from configuration and data are
//! cleaned of control characters before they reach a header (no header injection) and
//! HTML-escaped in the HTML body.

use std::fmt::Write as _;

use lettre::Message;
use lettre::message::{Mailbox, MultiPart, header};

use super::Notice;
use crate::engine::alert::Transition;
use crate::engine::rules::{Severity, Summary};
use crate::engine::text::fmt_compact as num;
use crate::engine::text::rfc3339;
use crate::runtime::html::escape as html;

/// A digest ready to send.
pub(crate) struct Digest {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub recipients: Vec<String>,
}

/// Control characters (CR, LF, tabs, …) become spaces: safe in headers and one-line fields.
pub(crate) fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The dashboard link of a notice: `{model}`, `{feature}`, `{rule}`, `{from}`, `{to}` filled in.
pub(crate) fn link(template: &str, n: &Notice) -> String {
    template
        .replace("{model}", &url_encode(&n.model))
        .replace("{feature}", &url_encode(&n.feature))
        .replace("{rule}", &url_encode(&n.rule))
        .replace("{from}", &n.window_start.to_string())
        .replace("{to}", &n.window_end.to_string())
}

fn opt(x: Option<f64>) -> String {
    x.map_or("–".to_string(), num)
}

fn summary(s: &Summary) -> String {
    let mut out = format!("{} values ({} rows, null rate {})", s.valid, s.rows, num(s.null_rate));
    if let (Some(mean), Some(std)) = (s.mean, s.std) {
        let _ = write!(out, ", mean {}, std {}, min {}, max {}", num(mean), num(std), opt(s.min), opt(s.max));
    }
    if !s.top.is_empty() {
        let top: Vec<String> = s.top.iter().map(|(k, v)| format!("{} {:.1}%", one_line(k), v * 100.0)).collect();
        let _ = write!(out, ", top: {}", top.join(", "));
    }
    out
}

fn comparison(n: &Notice) -> String {
    let below = n.direction_below;
    match n.threshold {
        Some(t) => format!("{} {}", if below { "<" } else { "≥" }, num(t)),
        None => "–".into(),
    }
}

fn headline(n: &Notice) -> String {
    let state = match n.transition {
        Transition::Firing => "FIRING",
        Transition::Escalated => "ESCALATED",
        Transition::Repeat => "STILL FIRING",
        Transition::Resolved => "RESOLVED",
    };
    let on = if n.feature == crate::engine::rules::DATASET_FEATURE {
        "the whole model".to_string()
    } else {
        format!("feature \"{}\"", one_line(&n.feature))
    };
    format!("[{}] {state} {} on {on}", n.severity.as_str().to_uppercase(), one_line(&n.rule))
}

/// The current state of each alert of a digest (its last notice) and how many of its
/// transitions the digest holds, in order of first appearance.
fn current(notices: &[Notice]) -> Vec<(&Notice, usize)> {
    let mut alerts: Vec<(&Notice, usize)> = Vec::new();
    for n in notices {
        match alerts.iter_mut().find(|(a, _)| a.rule == n.rule && a.feature == n.feature) {
            Some(entry) => *entry = (n, entry.1 + 1),
            None => alerts.push((n, 1)),
        }
    }
    alerts
}

/// Alerts named in a subject at most; the rest are counted.
const SUBJECT_ALERTS: usize = 3;

/// Builds the digest of `notices` (all of one model, oldest first). The subject says where
/// each alert stands now (its last transition), not how many transitions the digest holds:
/// an alert that flapped during an outage is one alert, firing or resolved, with the
/// transitions folded into it counted.
pub(crate) fn digest(model: &str, notices: &[Notice], recipients: Vec<String>, dashboard: Option<&str>) -> Digest {
    let alerts = current(notices);
    let firing: Vec<&Notice> =
        alerts.iter().map(|(n, _)| *n).filter(|n| n.transition != Transition::Resolved).collect();
    let resolved = alerts.len() - firing.len();
    let worst = firing.iter().map(|n| n.severity).max();
    let level = match worst {
        Some(Severity::Critical) => "CRITICAL",
        Some(Severity::Warning) => "WARNING",
        None => "RESOLVED",
    };
    let mut counts = Vec::new();
    if !firing.is_empty() {
        counts.push(format!("{} firing", firing.len()));
    }
    if resolved > 0 {
        counts.push(format!("{resolved} resolved"));
    }
    let mut states: Vec<String> = alerts
        .iter()
        .take(SUBJECT_ALERTS)
        .map(|(n, _)| {
            let name = if n.feature == crate::engine::rules::DATASET_FEATURE {
                n.rule.clone()
            } else {
                format!("{} ({})", n.rule, n.feature)
            };
            let state = if n.transition == Transition::Resolved { "resolved" } else { "firing" };
            format!("{name} {state}")
        })
        .collect();
    if alerts.len() > SUBJECT_ALERTS {
        states.push(format!("+{} more", alerts.len() - SUBJECT_ALERTS));
    }
    let folded = notices.len() - alerts.len();
    let folded = if folded > 0 { format!("; {folded} earlier transitions folded in") } else { String::new() };
    let subject =
        one_line(&format!("[{level}] driftwatch: {model} - {}: {}{folded}", counts.join(", "), states.join(", ")));

    let mut text = format!("driftwatch — model {}\n{}\n\n", one_line(model), counts.join(", "));
    let mut body = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><h2>driftwatch — model {}</h2><p>{}</p>",
        html(model),
        html(&counts.join(", "))
    );
    for n in notices {
        let head = headline(n);
        let window = format!("{} – {}", rfc3339(n.window_start), rfc3339(n.window_end));
        let _ = writeln!(text, "{head}");
        let _ = writeln!(
            text,
            "  {}: {} (threshold {}; resolves past {})",
            n.target,
            opt(n.value),
            comparison(n),
            num(n.resolve)
        );
        if let Some(adj) = n.adjusted {
            let _ =
                writeln!(text, "  p-value {} before Benjamini–Hochberg adjustment (adjusted {})", opt(n.raw), num(adj));
        }
        if let Some(s) = n.statistic {
            let _ = writeln!(text, "  statistic: {}", num(s));
        }
        if let Some((test, s)) = &n.effect {
            let _ = writeln!(text, "  effect size: {test} {} (floor {})", opt(*s), opt(n.effect_floor));
        }
        let _ = writeln!(text, "  window: {window}, {} values (reference {})", n.samples, n.reference_samples);
        if let Some(r) = &n.reference {
            let _ = writeln!(text, "  reference: {}", summary(r));
        }
        if let Some(c) = &n.current {
            let _ = writeln!(text, "  current:   {}", summary(c));
        }
        if n.transition != Transition::Firing {
            let _ = writeln!(text, "  firing since {}", rfc3339(n.since));
        }
        if !n.impact.is_empty() {
            let _ = writeln!(text, "  likely impact on accuracy: {}", impact(&n.impact));
        }
        for (k, v) in n.labels.iter().chain(&n.annotations) {
            let _ = writeln!(text, "  {}: {}", one_line(k), one_line(v));
        }
        let url = dashboard.map(|d| link(d, n));
        if let Some(u) = &url {
            let _ = writeln!(text, "  dashboard: {u}");
        }
        text.push('\n');

        let colour = match (n.transition, n.severity) {
            (Transition::Resolved, _) => "#2e7d32",
            (_, Severity::Critical) => "#c62828",
            (_, Severity::Warning) => "#ef6c00",
        };
        let _ = write!(
            body,
            "<h3 style=\"color:{colour}\">{}</h3><table cellpadding=\"3\" style=\"border-collapse:collapse\">",
            html(&head)
        );
        let mut row = |k: &str, v: String| {
            let _ = write!(body, "<tr><th align=\"left\">{}</th><td>{}</td></tr>", html(k), html(&v));
        };
        row("feature", n.feature.clone());
        row(&n.target, format!("{} (threshold {}; resolves past {})", opt(n.value), comparison(n), num(n.resolve)));
        if let Some(s) = n.statistic {
            row("statistic", num(s));
        }
        if let Some((test, s)) = &n.effect {
            row("effect size", format!("{test} {} (floor {})", opt(*s), opt(n.effect_floor)));
        }
        row("window", window);
        row("sample sizes", format!("current {}, reference {}", n.samples, n.reference_samples));
        if let Some(r) = &n.reference {
            row("reference", summary(r));
        }
        if let Some(c) = &n.current {
            row("current", summary(c));
        }
        if !n.impact.is_empty() {
            row("likely impact on accuracy", impact(&n.impact));
        }
        for (k, v) in n.labels.iter().chain(&n.annotations) {
            row(k, v.clone());
        }
        body.push_str("</table>");
        if let Some(u) = &url {
            let _ = write!(body, "<p><a href=\"{}\">Open the dashboard</a></p>", html(u));
        }
    }
    body.push_str("<p style=\"color:#777\">Sent by driftwatch.</p></body></html>");
    Digest { subject, text, html: body, recipients }
}

/// Drifted features by their expected effect on accuracy, e.g. `income −0.031, age −0.004`.
fn impact(list: &[crate::engine::impact::Impact]) -> String {
    list.iter()
        .take(5)
        .map(|i| format!("{} {}", one_line(&i.feature), format!("{:+.3}", i.accuracy_change).replace('-', "−")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The digest as an email message.
pub(crate) fn message(d: &Digest, from: &str) -> Result<Message, MessageError> {
    let address = |role, text: &str| {
        text.parse::<Mailbox>().map_err(|source| MessageError::Address { role, text: text.to_string(), source })
    };
    let mut b =
        Message::builder().from(address("sender", from)?).subject(d.subject.clone()).header(header::MIME_VERSION_1_0);
    for r in &d.recipients {
        b = b.to(address("recipient", r)?);
    }
    Ok(b.multipart(MultiPart::alternative_plain_html(d.text.clone(), d.html.clone()))?)
}

/// A digest that cannot become a message (fix the address in the configuration).
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("{role} \"{text}\": {source}")]
    Address { role: &'static str, text: String, source: lettre::address::AddressError },
    #[error(transparent)]
    Build(#[from] lettre::error::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_line_breaks_cannot_add_headers() {
        let n = Notice::example("m\r\nBcc: evil@example.com", "inc\r\nome");
        let d = digest(&n.model, std::slice::from_ref(&n), vec!["a@example.com".into()], Some("https://g/d?m={model}"));
        let m = message(&d, "driftwatch@example.com").unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        let headers = &raw[..raw.find("\r\n\r\n").unwrap()];
        assert!(!headers.lines().any(|l| l.to_ascii_lowercase().starts_with("bcc:")), "{headers}");
        assert!(d.subject.contains("m  Bcc: evil@example.com"), "{}", d.subject);
        assert!(d.text.contains("https://g/d?m=m%0D%0ABcc%3A%20evil%40example.com"), "{}", d.text);
    }

    #[test]
    fn the_subject_says_where_each_alert_stands_and_counts_what_was_folded_in() {
        use crate::engine::alert::Transition::{Firing, Resolved};
        // Two alerts that flapped during an outage: 28 transitions of two alerts; income
        // ends resolved, age (the very last notice) firing.
        let mut notices = Vec::new();
        for i in 0..14 {
            for feature in ["income", "age"] {
                let mut n = Notice::example("credit-risk", feature);
                n.transition = if i % 2 == 0 { Firing } else { Resolved };
                notices.push(n);
            }
        }
        if let Some(n) = notices.last_mut() {
            n.transition = Firing;
        }
        let d = digest("credit-risk", &notices, vec![], None);
        assert_eq!(
            d.subject,
            "[CRITICAL] driftwatch: credit-risk - 1 firing, 1 resolved: income-drift (income) resolved, income-drift (age) firing; 26 earlier transitions folded in"
        );
        // One transition of one alert: nothing folded.
        let d = digest("credit-risk", &notices[..1], vec![], None);
        assert_eq!(d.subject, "[CRITICAL] driftwatch: credit-risk - 1 firing: income-drift (income) firing");
    }

    #[test]
    fn html_is_escaped() {
        let n = Notice::example("<script>", "a&b");
        let d = digest(&n.model, std::slice::from_ref(&n), vec![], None);
        assert!(!d.html.contains("<script>"));
        assert!(d.html.contains("&lt;script&gt;") && d.html.contains("a&amp;b"));
    }

    #[test]
    fn the_likely_impact_of_drifted_features_is_in_both_parts() {
        let mut n = Notice::example("m", "income");
        n.impact = vec![
            crate::engine::impact::Impact { feature: "debt-ratio".into(), accuracy_change: -0.0314 },
            crate::engine::impact::Impact { feature: "age".into(), accuracy_change: 0.002 },
        ];
        let d = digest(&n.model, std::slice::from_ref(&n), vec![], None);
        assert!(d.text.contains("likely impact on accuracy: debt-ratio −0.031, age +0.002"), "{}", d.text);
        assert!(d.html.contains("debt-ratio −0.031, age +0.002"), "{}", d.html);
    }
}

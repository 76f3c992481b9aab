//! `[notify]` with its `[notify.smtp]`: where alert digests go and how they are sent.
//! Secrets are named here (a variable or a file) and read when the agent starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Reporter, duration_of, suggestion};

/// `[notify]`: where alert digests go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Directory of the durable outbox (default "driftwatch-outbox", relative to the working
    /// directory); without `[notify.smtp]` digests are written there as `.eml` files.
    pub outbox: Option<Spanned<String>>,
    /// Sender address (default "driftwatch@localhost").
    pub from: Option<Spanned<String>>,
    /// Recipients of rules without `recipients`.
    #[serde(default)]
    pub to: Vec<Spanned<String>>,
    /// How long the first alert of a model waits for others to share its digest (default "30s").
    pub group_wait: Option<Spanned<String>>,
    /// Least time between two digests of one model (default "5m").
    pub group_interval: Option<Spanned<String>>,
    /// Link in every alert; `{model}`, `{feature}`, `{rule}`, `{from}`, `{to}` (epoch ms) are
    /// replaced, URL-encoded.
    pub dashboard_url: Option<Spanned<String>>,
    /// First retry delay after a failed delivery (default "1s"); doubles up to `retry_max`.
    pub retry_initial: Option<Spanned<String>>,
    /// Longest delay between retries (default "5m").
    pub retry_max: Option<Spanned<String>>,
    pub smtp: Option<SmtpConfig>,
}

/// `[notify.smtp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: Spanned<String>,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub port: Option<Spanned<i64>>,
    /// `starttls` (default), `tls` (implicit TLS) or `none`.
    pub tls: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    /// Extra CA certificate (PEM) trusted for the server, besides the system's.
    pub ca: Option<Spanned<String>>,
    /// Connect and command timeout (default "10s").
    pub timeout: Option<Spanned<String>>,
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    StartTls,
    Implicit,
    None,
}

/// `[notify.smtp]` after validation.
#[derive(Clone, Debug)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub timeout: Duration,
}

/// `[notify]` after validation.
#[derive(Clone, Debug)]
pub struct Notify {
    pub outbox: PathBuf,
    pub from: String,
    pub to: Vec<String>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub dashboard_url: Option<String>,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// `None`: digests are written to the outbox as `.eml` files.
    pub smtp: Option<Smtp>,
}

/// Default outbox directory, relative to the working directory.
pub const DEFAULT_OUTBOX: &str = "driftwatch-outbox";

impl Default for Notify {
    fn default() -> Notify {
        Notify {
            outbox: PathBuf::from(DEFAULT_OUTBOX),
            from: "driftwatch@localhost".into(),
            to: Vec::new(),
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            dashboard_url: None,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            smtp: None,
        }
    }
}

pub(super) fn check_address(r: &mut Reporter, v: &Spanned<String>) {
    if v.get_ref().parse::<lettre::message::Mailbox>().is_err() || v.get_ref().contains(['\r', '\n']) {
        r.at(
            v.span(),
            format!(
                "\"{}\" is not an email address; write \"oncall@example.com\" or \"On call <oncall@example.com>\"",
                v.get_ref().escape_debug()
            ),
        );
    }
}

pub(super) fn notify_of(r: &mut Reporter, n: Option<&NotifyConfig>, base: &Path) -> Notify {
    let mut out = Notify::default();
    let Some(n) = n else {
        return out;
    };
    if let Some(v) = &n.outbox {
        if v.get_ref().trim().is_empty() {
            r.at(v.span(), "outbox must name a directory");
        }
        out.outbox = base.join(v.get_ref());
    }
    if let Some(v) = &n.from {
        check_address(r, v);
        out.from = v.get_ref().clone();
    }
    for v in &n.to {
        check_address(r, v);
        out.to.push(v.get_ref().clone());
    }
    out.group_wait = duration_of(r, n.group_wait.as_ref(), out.group_wait);
    out.group_interval = duration_of(r, n.group_interval.as_ref(), out.group_interval);
    out.retry_initial = duration_of(r, n.retry_initial.as_ref(), out.retry_initial);
    out.retry_max = duration_of(r, n.retry_max.as_ref(), out.retry_max);
    if out.retry_initial.is_zero() {
        if let Some(v) = &n.retry_initial {
            r.at(v.span(), "retry_initial must be longer than 0s");
        }
        out.retry_initial = Duration::from_millis(100);
    }
    if out.retry_max < out.retry_initial {
        if let Some(v) = &n.retry_max {
            r.at(v.span(), "retry_max must be at least retry_initial");
        }
        out.retry_max = out.retry_initial;
    }
    if let Some(v) = &n.dashboard_url {
        let url = v.get_ref();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains(['\r', '\n', ' ']) {
            r.at(v.span(), "dashboard_url must be an http(s) URL such as \"https://grafana.example.com/d/driftwatch-model?var-model={model}\"");
        }
        out.dashboard_url = Some(url.clone());
    }
    if let Some(s) = &n.smtp {
        let tls = match s.tls.as_ref().map(|t| t.get_ref().as_str()) {
            None | Some("starttls") => SmtpTls::StartTls,
            Some("tls") => SmtpTls::Implicit,
            Some("none") => SmtpTls::None,
            Some(other) => {
                let t = s.tls.as_ref().map(|t| t.span()).unwrap_or(0..0);
                r.at(t, format!("unknown tls mode \"{other}\"{}", suggestion(other, &["starttls", "tls", "none"])));
                SmtpTls::StartTls
            }
        };
        let host = s.host.get_ref().trim().to_string();
        if host.is_empty() {
            r.at(s.host.span(), "host must name the SMTP server, e.g. \"smtp.example.com\"");
        }
        let port = match &s.port {
            Some(p) if !(1..=65535).contains(p.get_ref()) => {
                r.at(p.span(), format!("port must be between 1 and 65535, got {}", p.get_ref()));
                587
            }
            Some(p) => *p.get_ref() as u16,
            None => match tls {
                SmtpTls::StartTls => 587,
                SmtpTls::Implicit => 465,
                SmtpTls::None => 25,
            },
        };
        if let (Some(a), Some(_)) = (&s.password_env, &s.password_file) {
            r.at(a.span(), "give the SMTP password by `password_env` or `password_file`, not both");
        }
        if s.username.is_some() && s.password_env.is_none() && s.password_file.is_none() {
            let span = s.username.as_ref().map(|u| u.span()).unwrap_or(0..0);
            r.at(span, "`username` needs `password_env` (a variable) or `password_file` (a mounted secret)");
        }
        if (s.password_env.is_some() || s.password_file.is_some()) && s.username.is_none() {
            let span = s.password_env.as_ref().or(s.password_file.as_ref()).map(|v| v.span()).unwrap_or(0..0);
            r.at(span, "a password needs `username`");
        }
        if tls == SmtpTls::None && s.username.is_some() {
            let span = s.tls.as_ref().map(|t| t.span()).unwrap_or(0..0);
            r.at(span, "tls = \"none\" would send the SMTP password in clear text; use \"starttls\" or \"tls\"");
        }
        if tls == SmtpTls::None && !is_loopback(&host) {
            let span = s.tls.as_ref().map(|t| t.span()).unwrap_or(0..0);
            r.at(
                span,
                format!("tls = \"none\" is allowed only for a server on this machine (localhost, 127.0.0.1, ::1), not \"{host}\"; use \"starttls\" or \"tls\""),
            );
        }
        let timeout = duration_of(r, s.timeout.as_ref(), Duration::from_secs(10));
        out.smtp = Some(Smtp {
            host,
            port,
            tls,
            username: s.username.as_ref().map(|v| v.get_ref().clone()),
            password_env: s.password_env.as_ref().map(|v| v.get_ref().clone()),
            password_file: s.password_file.as_ref().map(|v| base.join(v.get_ref())),
            ca: s.ca.as_ref().map(|v| base.join(v.get_ref())),
            timeout,
        });
    }
    out
}

pub(super) fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

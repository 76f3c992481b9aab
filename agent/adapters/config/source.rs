//! `[source]`: where `driftwatch run` reads events (a Kafka consumer group, or a replayed
//! NDJSON file), validated like the rest of the file.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Reporter, duration_of, positive_of, suggestion};

/// `[source]`: a Kafka consumer group or a replay of NDJSON events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `kafka` or `replay`.
    pub kind: Spanned<String>,
    /// Kafka: bootstrap servers, `host:port[,host:port]`.
    pub brokers: Option<Spanned<String>>,
    /// Kafka: consumer group (default "driftwatch").
    pub group_id: Option<Spanned<String>>,
    /// Kafka: client id (default "driftwatch").
    pub client_id: Option<Spanned<String>>,
    /// Kafka: this agent's static group member id (`group.instance.id`): a restarted agent
    /// takes its partitions back at once instead of after the session timeout. Default: the
    /// `DRIFTWATCH_INSTANCE_ID` environment variable (the DaemonSet sets the node name);
    /// without either, membership is dynamic. Unique per agent of a group.
    pub instance_id: Option<Spanned<String>>,
    /// Kafka: `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: Option<Spanned<String>>,
    /// Kafka: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<Spanned<String>>,
    /// Kafka: SASL user name.
    pub sasl_username: Option<Spanned<String>>,
    /// Kafka: environment variable holding the SASL password.
    pub sasl_password_env: Option<Spanned<String>>,
    /// Kafka: file holding the SASL password (a mounted Secret).
    pub sasl_password_file: Option<Spanned<String>>,
    /// Kafka: CA certificate file (PEM).
    pub ssl_ca: Option<Spanned<String>>,
    /// Kafka: client certificate file (PEM), for mutual TLS.
    pub ssl_cert: Option<Spanned<String>>,
    /// Kafka: client key file (PEM), for mutual TLS.
    pub ssl_key: Option<Spanned<String>>,
    /// Kafka: topic that receives bad events with the reason in the `driftwatch-reason` header.
    pub dead_letter_topic: Option<Spanned<String>>,
    /// Kafka: further librdkafka properties, passed through as written.
    #[serde(default)]
    pub properties: BTreeMap<String, Spanned<String>>,
    /// Replay: NDJSON file to read, or "-" for standard input.
    pub path: Option<Spanned<String>>,
    /// Replay: 0 reads as fast as possible; otherwise event time runs this many times faster
    /// than wall-clock time.
    pub speed: Option<Spanned<f64>>,
    /// Events decoded into one Arrow batch at most (default 8192).
    pub batch_rows: Option<Spanned<i64>>,
    /// Longest wait for a batch to fill before it is processed anyway (default "100ms").
    pub linger: Option<Spanned<String>>,
    /// Events larger than this many bytes are rejected as `too_large` (default 1 MiB).
    pub max_event_bytes: Option<Spanned<i64>>,
}

/// `[source]` after validation.
#[derive(Clone, Debug)]
pub struct Source {
    pub kind: SourceKind,
    pub batch_rows: usize,
    pub linger: Duration,
    pub max_event_bytes: usize,
}

#[derive(Clone, Debug)]
pub enum SourceKind {
    Kafka(Kafka),
    Replay(Replay),
}

/// Kafka settings. Secrets are named here (variable or file) and read when the agent starts.
#[derive(Clone, Debug, Default)]
pub struct Kafka {
    /// librdkafka properties, all but the secret ones.
    pub properties: BTreeMap<String, String>,
    pub sasl_password_env: Option<String>,
    pub sasl_password_file: Option<PathBuf>,
    pub dead_letter_topic: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Replay {
    /// `None` reads standard input.
    pub path: Option<PathBuf>,
    /// 0: as fast as possible; otherwise event time runs `speed` times wall-clock time.
    pub speed: f64,
}

pub(super) fn source_of(r: &mut Reporter, s: &SourceConfig, base: &Path) -> Source {
    let batch_rows = positive_of(r, &s.batch_rows, "batch_rows", 8192);
    let max_event_bytes = positive_of(r, &s.max_event_bytes, "max_event_bytes", 1 << 20);
    let linger = duration_of(r, s.linger.as_ref(), Duration::from_millis(100));
    let kind = match s.kind.get_ref().as_str() {
        "kafka" => {
            let mut k = Kafka::default();
            let mut set = |key: &str, v: &Option<Spanned<String>>| {
                if let Some(v) = v {
                    k.properties.insert(key.to_string(), v.get_ref().clone());
                }
            };
            set("bootstrap.servers", &s.brokers);
            set("group.id", &s.group_id);
            set("client.id", &s.client_id);
            set("group.instance.id", &s.instance_id);
            set("security.protocol", &s.security_protocol);
            set("sasl.mechanism", &s.sasl_mechanism);
            set("sasl.username", &s.sasl_username);
            for (key, v) in [
                ("ssl.ca.location", &s.ssl_ca),
                ("ssl.certificate.location", &s.ssl_cert),
                ("ssl.key.location", &s.ssl_key),
            ] {
                if let Some(v) = v {
                    k.properties.insert(key.to_string(), base.join(v.get_ref()).display().to_string());
                }
            }
            if s.brokers.is_none() {
                r.at(s.kind.span(), "a kafka source needs `brokers`, e.g. brokers = \"kafka:9092\"");
            }
            if let Some(v) = &s.security_protocol {
                const PROTOCOLS: &[&str] = &["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
                if !PROTOCOLS.contains(&v.get_ref().to_ascii_lowercase().as_str()) {
                    r.at(
                        v.span(),
                        format!("unknown security_protocol \"{}\"{}", v.get_ref(), suggestion(v.get_ref(), PROTOCOLS)),
                    );
                }
            }
            if let (Some(a), Some(_)) = (&s.sasl_password_env, &s.sasl_password_file) {
                r.at(a.span(), "give the SASL password by `sasl_password_env` or `sasl_password_file`, not both");
            }
            for (key, v) in &s.properties {
                if key.contains("password") || key.contains("secret") {
                    r.at(v.span(), format!("property \"{key}\" holds a secret: put it in a file or environment variable (sasl_password_file, sasl_password_env), never in the configuration"));
                } else if key == "partition.assignment.strategy" && v.get_ref().contains("cooperative") {
                    r.at(v.span(), "driftwatch follows eager rebalancing (each assignment is the whole new one): use \"range\" or \"roundrobin\", not a cooperative strategy");
                } else if !key.contains('.') {
                    r.at(
                        v.span(),
                        format!("\"{key}\" is not a librdkafka property (they look like \"fetch.min.bytes\")"),
                    );
                }
                k.properties.insert(key.clone(), v.get_ref().clone());
            }
            k.sasl_password_env = s.sasl_password_env.as_ref().map(|v| v.get_ref().clone());
            k.sasl_password_file = s.sasl_password_file.as_ref().map(|v| base.join(v.get_ref()));
            k.dead_letter_topic = s.dead_letter_topic.as_ref().map(|v| v.get_ref().clone());
            for (name, v) in
                [("path", s.path.as_ref().map(|v| v.span())), ("speed", s.speed.as_ref().map(|v| v.span()))]
            {
                if let Some(span) = v {
                    r.at(span, format!("`{name}` belongs to a replay source, not to kind = \"kafka\""));
                }
            }
            SourceKind::Kafka(k)
        }
        "replay" => {
            let named: [(&str, Option<Range<usize>>); 13] = [
                ("brokers", s.brokers.as_ref().map(|v| v.span())),
                ("instance_id", s.instance_id.as_ref().map(|v| v.span())),
                ("group_id", s.group_id.as_ref().map(|v| v.span())),
                ("client_id", s.client_id.as_ref().map(|v| v.span())),
                ("security_protocol", s.security_protocol.as_ref().map(|v| v.span())),
                ("sasl_mechanism", s.sasl_mechanism.as_ref().map(|v| v.span())),
                ("sasl_username", s.sasl_username.as_ref().map(|v| v.span())),
                ("sasl_password_env", s.sasl_password_env.as_ref().map(|v| v.span())),
                ("sasl_password_file", s.sasl_password_file.as_ref().map(|v| v.span())),
                ("ssl_ca", s.ssl_ca.as_ref().map(|v| v.span())),
                ("ssl_cert", s.ssl_cert.as_ref().map(|v| v.span())),
                ("ssl_key", s.ssl_key.as_ref().map(|v| v.span())),
                ("dead_letter_topic", s.dead_letter_topic.as_ref().map(|v| v.span())),
            ];
            for (name, span) in named {
                if let Some(span) = span {
                    r.at(span, format!("`{name}` belongs to a kafka source, not to kind = \"replay\""));
                }
            }
            let speed = s.speed.as_ref().map_or(0.0, |v| {
                let x = *v.get_ref();
                if !(x >= 0.0 && x.is_finite()) {
                    r.at(v.span(), format!("speed must be 0 (as fast as possible) or a positive factor, got {x}"));
                }
                x.max(0.0)
            });
            let path = match &s.path {
                None => {
                    r.at(s.kind.span(), "a replay source needs `path`: an NDJSON file, or \"-\" for standard input");
                    None
                }
                Some(p) if p.get_ref() == "-" => None,
                Some(p) => Some(base.join(p.get_ref())),
            };
            SourceKind::Replay(Replay { path, speed })
        }
        other => {
            r.at(s.kind.span(), format!("unknown source kind \"{other}\"{}", suggestion(other, &["kafka", "replay"])));
            SourceKind::Replay(Replay { path: None, speed: 0.0 })
        }
    };
    Source { kind, batch_rows, linger, max_event_bytes }
}

//! Secrets stay secret: with an SMTP password and a SASL password set to canary values, an
//! agent that fails to reach both servers (debug logging on) never shows either canary in
//! its log, `/api/v1/status`, `/metrics` or error messages. Kafka TLS settings are applied:
//! against a loopback TLS endpoint (`openssl s_server`) the agent's requests arrive encrypted
//! when `ssl_ca` names the endpoint's CA, and the handshake is refused when it does not.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::agent::{Reaper, credit_events, free_port, http_get, root, wait_for};

const SMTP_CANARY: &str = "canary-smtp-9f3b2e71";
const SASL_CANARY: &str = "canary-sasl-4c1d8a06";

fn assert_clean(what: &str, text: &str) {
    for canary in [SMTP_CANARY, SASL_CANARY] {
        assert!(!text.contains(canary), "{what} shows a secret:\n{text}");
    }
}

#[test]
fn passwords_never_appear_in_logs_status_metrics_or_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let http = free_port();
    let closed = free_port();
    let baseline = root().join("fixtures/credit/reference.csv");
    // 1. An SMTP server that is not there, with credentials: alerts fire and fail to go out.
    let config = dir.path().join("smtp.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nlisten = \"127.0.0.1:{http}\"\n[source]\nkind = \"replay\"\npath = \"-\"\n\
             [[model]]\nid = \"credit-risk\"\nbaseline = {:?}\nexclude = [\"event_id\"]\n[model.window]\nsize = \"10m\"\n\
             [[model.rule]]\nname = \"drift\"\ntest = \"ks\"\nwarn = 0.05\n\
             [notify]\noutbox = {:?}\nfrom = \"dw@example.com\"\nto = [\"oncall@example.com\"]\ngroup_wait = \"0s\"\nretry_initial = \"100ms\"\n\
             [notify.smtp]\nhost = \"127.0.0.1\"\nport = {closed}\ntls = \"starttls\"\nusername = \"dw\"\npassword_env = \"DW_SMTP_PASSWORD\"\ntimeout = \"1s\"\n",
            baseline.display().to_string(),
            dir.path().join("outbox").display().to_string()
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["run", "--config"])
        .arg(&config)
        .env("DRIFTWATCH_LOG", "debug")
        .env("DW_SMTP_PASSWORD", SMTP_CANARY)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("smtp.log")).expect("log"))
        .spawn()
        .expect("agent starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let agent = Reaper(child);
    for e in credit_events("fixtures/credit/current_drift.csv", "credit-risk") {
        writeln!(stdin, "{e}").expect("write");
    }
    stdin.flush().expect("flush");
    // The idle timeout (the window size) is long: a second batch from later closes the window.
    let later = credit_events("fixtures/credit/current_ok.csv", "credit-risk")
        .into_iter()
        .map(|e| e.replace("2026-11-27T0", "2026-11-27T1"))
        .take(10);
    for e in later {
        writeln!(stdin, "{e}").expect("write");
    }
    stdin.flush().expect("flush");
    let metrics = wait_for("a failed delivery", Duration::from_secs(60), || {
        http_get(http, "/metrics").map(|r| r.1).filter(|m| {
            m.lines().any(|l| l.starts_with("driftwatch_notification_failures_total{") && !l.ends_with(" 0"))
        })
    });
    assert_clean("/metrics", &metrics);
    assert_clean("/api/v1/status", &http_get(http, "/api/v1/status").expect("status").1);
    drop(stdin);
    drop(agent);
    let log = std::fs::read_to_string(dir.path().join("smtp.log")).expect("log");
    assert!(log.contains("connection") || log.contains("refused"), "the failure is logged:\n{log}");
    assert_clean("the log", &log);

    // 2. A Kafka broker that is not there, with SASL credentials.
    let http = free_port();
    let config = dir.path().join("kafka.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nlisten = \"127.0.0.1:{http}\"\nshutdown_timeout = \"2s\"\n[source]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:{closed}\"\n\
             group_id = \"g\"\nsecurity_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"dw\"\n\
             sasl_password_env = \"DW_SASL_PASSWORD\"\n\
             [[model]]\nid = \"credit-risk\"\nbaseline = {:?}\nexclude = [\"event_id\"]\ntopics = [\"predictions\"]\n",
            baseline.display().to_string()
        ),
    )
    .expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["run", "--config"])
        .arg(&config)
        .env("DRIFTWATCH_LOG", "debug")
        .env("DW_SASL_PASSWORD", SASL_CANARY)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("kafka.log")).expect("log"))
        .spawn()
        .expect("agent starts");
    let agent = Reaper(child);
    let metrics = wait_for("/metrics", Duration::from_secs(30), || http_get(http, "/metrics").map(|r| r.1));
    std::thread::sleep(Duration::from_secs(3));
    assert_clean("/metrics", &metrics);
    assert_clean("/api/v1/status", &http_get(http, "/api/v1/status").expect("status").1);
    drop(agent);
    let log = std::fs::read_to_string(dir.path().join("kafka.log")).expect("log");
    assert!(!log.is_empty());
    assert_clean("the log", &log);

    // 3. A password file that cannot be read: the error names the file, not a value.
    let out = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("DW_SASL_PASSWORD")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("DW_SASL_PASSWORD"), "names the variable: {err}");
    assert_clean("the error", &err);
}

/// Runs the agent against a loopback TLS endpoint for a few seconds with `ssl_ca`; returns
/// (what the endpoint received in clear, the agent's log).
fn against_tls_endpoint(dir: &std::path::Path, certs: &crate::alerts::Certs, ca: &std::path::Path) -> (String, String) {
    let port = free_port();
    let server = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
        .arg(&certs.cert)
        .arg("-key")
        .arg(&certs.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(std::fs::File::create(dir.join("s_server.out")).expect("out")))
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl");
    let server = Reaper(server);
    wait_for("the TLS endpoint", Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    let http = free_port();
    let config = dir.join("tls.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nlisten = \"127.0.0.1:{http}\"\nshutdown_timeout = \"2s\"\n[source]\nkind = \"kafka\"\nbrokers = \"localhost:{port}\"\n\
             group_id = \"g\"\nsecurity_protocol = \"ssl\"\nssl_ca = {:?}\n\
             [[model]]\nid = \"credit-risk\"\nbaseline = {:?}\nexclude = [\"event_id\"]\ntopics = [\"predictions\"]\n",
            ca.display().to_string(),
            root().join("fixtures/credit/reference.csv").display().to_string()
        ),
    )
    .expect("config");
    let agent = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["run", "--config"])
        .arg(&config)
        .env("DRIFTWATCH_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("tls.log")).expect("log"))
        .spawn()
        .expect("agent");
    let agent = Reaper(agent);
    let read = || {
        let received =
            String::from_utf8_lossy(&std::fs::read(dir.join("s_server.out")).unwrap_or_default()).into_owned();
        (received, std::fs::read_to_string(dir.join("tls.log")).unwrap_or_default())
    };
    // Until the request arrives through TLS or the agent refuses the endpoint; the caller's
    // assertions say which of the two (or neither, after 20 s) it was.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (mut received, mut log) = read();
    while !received.contains("driftwatch")
        && !log.contains("certificate verify failed")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
        (received, log) = read();
    }
    drop(agent);
    drop(server);
    read()
}

#[test]
fn kafka_tls_trusts_the_configured_ca_only() {
    let dir = tempfile::tempdir().expect("tmp");
    let certs = crate::alerts::make_certs(dir.path(), "broker");
    let other = crate::alerts::make_certs(dir.path(), "other");
    // The right CA: the handshake completes and the Kafka request (client id "driftwatch")
    // arrives through it.
    let (received, log) = against_tls_endpoint(dir.path(), &certs, &certs.ca);
    assert!(received.contains("driftwatch"), "nothing arrived over TLS:\n{received}\n{log}");
    assert!(!log.contains("certificate verify failed"), "{log}");
    // Another CA: the agent refuses the endpoint and says why.
    let (received, log) = against_tls_endpoint(dir.path(), &certs, &other.ca);
    assert!(!received.contains("driftwatch"), "data went to an untrusted endpoint:\n{received}");
    assert!(log.contains("certificate verify failed"), "{log}");
}

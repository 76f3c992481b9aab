//! Alerts end to end with real servers: the agent binary sends its digests to an aiosmtpd
//! SMTP server (scripts/smtp-sink.py) in plain, STARTTLS+AUTH and implicit-TLS+AUTH modes;
//! keeps them in its outbox while the server is down, after a restart, on a wrong password
//! and on an untrusted certificate; and a real Prometheus evaluating the shipped alert rules
//! hands a firing alert to a real Alertmanager that mails it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::agent::{Reaper, T0, credit_events, free_port, http_get, root, start_prometheus, wait_for};

/// A throwaway CA and a certificate for localhost/127.0.0.1 signed by it.
pub(crate) struct Certs {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

pub(crate) fn make_certs(dir: &Path, name: &str) -> Certs {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("mkdir");
    openssl(
        &d,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=driftwatch test CA",
        ],
    );
    openssl(
        &d,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(d.join("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext");
    openssl(
        &d,
        &[
            "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            "server.pem", "-days", "2", "-extfile", "ext",
        ],
    );
    Certs { ca: d.join("ca.pem"), cert: d.join("server.pem"), key: d.join("server.key") }
}

/// scripts/smtp-sink.py on a port; every accepted message lands in `out` as JSON.
pub(crate) struct Sink {
    _process: Reaper,
    out: PathBuf,
}

impl Sink {
    pub(crate) fn start(port: u16, mode: &str, certs: Option<&Certs>, out: &Path) -> Sink {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(root().join("scripts/smtp-sink.py"))
            .args(["--port", &port.to_string(), "--mode", mode, "--password", "s3cret", "--out"])
            .arg(out)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(c) = certs {
            cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
        }
        let mut child = cmd.spawn().expect("python3-aiosmtpd is installed by scripts/install-deps.sh");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
        assert!(line.starts_with("ready"), "smtp-sink did not start: {line:?}");
        Sink { _process: Reaper(child), out: out.to_path_buf() }
    }
}

pub(crate) fn mails(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).expect("read mail")).expect("mail JSON"))
        .collect()
}

fn queued(outbox: &Path) -> usize {
    std::fs::read_dir(outbox.join("queue"))
        .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "json")).count())
        .unwrap_or(0)
}

/// An agent reading events from its standard input, with one rule on income's KS p-value.
struct Agent {
    process: Reaper,
    stdin: Option<ChildStdin>,
    port: u16,
    stderr: PathBuf,
}

fn agent_config(dir: &Path, port: u16, notify: &str) -> PathBuf {
    let baseline = root().join("fixtures/credit/reference.csv");
    let text = format!(
        r#"[agent]
listen = "127.0.0.1:{port}"
shutdown_timeout = "20s"

[source]
kind = "replay"
path = "-"

[[model]]
id = "credit-risk"
baseline = {baseline:?}
exclude = ["event_id", "score"]

[model.window]
size = "10m"
idle_timeout = "1s"

[[model.rule]]
name = "income-drift"
features = ["income"]
test = "ks"
warn = 0.05
critical = 0.001
resolve = 0.1
labels = {{ team = "risk" }}
annotations = {{ runbook = "https://runbooks.example.com/income" }}
recipients = ["risk-team@example.com"]

[notify]
outbox = "outbox"
from = "driftwatch@example.com"
to = ["ml-oncall@example.com"]
group_wait = "0s"
group_interval = "0s"
retry_initial = "200ms"
retry_max = "1s"
dashboard_url = "https://grafana.example.com/d/dw?var-model={{model}}&var-feature={{feature}}&from={{from}}&to={{to}}"
{notify}
"#,
        baseline = baseline.display().to_string()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("config");
    path
}

impl Agent {
    fn start(dir: &Path, port: u16, env: &[(&str, &str)]) -> Agent {
        let stderr = dir.join(format!("agent-{}.log", free_port()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_driftwatch"));
        cmd.args(["run", "--config"])
            .arg(dir.join("agent.toml"))
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("log"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child: Child = cmd.spawn().expect("agent starts");
        let stdin = child.stdin.take();
        let agent = Agent { process: Reaper(child), stdin, port, stderr };
        wait_for("the agent's /healthz", Duration::from_secs(30), || http_get(port, "/healthz").filter(|r| r.0 == 200));
        agent
    }

    /// The drifting credit stream: four ten-minute windows, income drifts in each.
    fn feed_drift(&mut self) {
        self.feed("fixtures/credit/current_drift.csv");
    }

    fn feed(&mut self, csv: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        for e in credit_events(csv, "credit-risk") {
            writeln!(stdin, "{e}").expect("write event");
        }
        stdin.flush().expect("flush");
    }

    fn metric(&self, line_start: &str) -> Option<f64> {
        let (_, text) = http_get(self.port, "/metrics")?;
        text.lines().find(|l| l.starts_with(line_start))?.rsplit(' ').next()?.parse().ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Closes stdin (the replay ends) and waits for a clean exit.
    fn stop(mut self) -> String {
        drop(self.stdin.take());
        let status = self.process.0.wait().expect("exit");
        assert!(status.success(), "agent exit {status:?}:\n{}", self.log());
        self.log()
    }
}

/// Non-empty income values in a credit CSV's first `rows` rows.
fn income_values(csv: &str, rows: usize) -> usize {
    let text = std::fs::read_to_string(root().join(csv)).expect("csv");
    text.lines().skip(1).take(rows).filter(|l| l.split(',').nth(2).is_some_and(|v| !v.is_empty())).count()
}

fn assert_digest(mail: &serde_json::Value) {
    let data = mail["data"].as_str().expect("data");
    let current = income_values("fixtures/credit/current_drift.csv", 600);
    let reference = income_values("fixtures/credit/reference.csv", usize::MAX);
    assert_eq!(mail["from"], "driftwatch@example.com");
    assert_eq!(mail["to"], serde_json::json!(["risk-team@example.com"]), "the rule's recipients, not the default");
    // The header unfolded (lettre folds long ones onto indented lines).
    let unfolded = data.replace("\r\n ", " ");
    assert!(
        unfolded.contains("Subject: [CRITICAL] driftwatch: credit-risk - 1 firing: income-drift (income) firing\r\n"),
        "{data}"
    );
    let text = decoded_text(data);
    for expected in [
        "[CRITICAL] FIRING income-drift on feature \"income\"",
        "ks p-value:",
        "threshold < 0.001",
        "statistic:",
        &format!("window: {} – ", driftwatch::text::rfc3339(T0)),
        &format!("{current} values (reference {reference})"),
        &format!("reference: {reference} values (5000 rows"),
        &format!("current:   {current} values (600 rows"),
        "team: risk",
        "runbook: https://runbooks.example.com/income",
        &format!(
            "dashboard: https://grafana.example.com/d/dw?var-model=credit-risk&var-feature=income&from={T0}&to={}",
            T0 + 600_000
        ),
    ] {
        assert!(text.contains(expected), "digest lacks {expected:?}:\n{text}");
    }
    assert!(data.contains("Content-Type: text/html"), "an HTML part too");
}

/// The plain-text part, quoted-printable or base64 decoded.
fn decoded_text(data: &str) -> String {
    let part = data.split("Content-Type: text/plain").nth(1).expect("text part");
    let (head, body) = part.split_once("\r\n\r\n").expect("part body");
    let body = body.split("\r\n--").next().expect("part end");
    if head.contains("base64") {
        use std::io::Read;
        let clean: String = body.split_whitespace().collect();
        let mut out = Vec::new();
        let mut dec = base64_decoder(clean.as_bytes());
        dec.read_to_end(&mut out).expect("base64");
        String::from_utf8(out).expect("utf-8")
    } else if head.contains("quoted-printable") {
        quoted_printable(body)
    } else {
        body.replace("\r\n", "\n")
    }
}

fn quoted_printable(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() + 1 {
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            if let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..(i + 3).min(b.len())]).unwrap_or(""), 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        if b[i] != b'\r' {
            out.push(b[i]);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64_decoder(input: &[u8]) -> std::io::Cursor<Vec<u8>> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in input {
        let Some(v) = T.iter().position(|&t| t == c) else { continue };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    std::io::Cursor::new(out)
}

#[test]
fn digests_reach_a_real_smtp_server_in_plain_starttls_and_tls_modes() {
    let dir = tempfile::tempdir().expect("tmp");
    let certs = make_certs(dir.path(), "ca");
    let ca = certs.ca.display().to_string();
    std::fs::write(dir.path().join("smtp-password"), "s3cret\n").expect("secret file");
    for (mode, notify, user) in [
        ("plain", "tls = \"none\"", None),
        (
            "starttls",
            &*format!(
                "tls = \"starttls\"\nusername = \"driftwatch\"\npassword_env = \"DW_SMTP_PASSWORD\"\nca = {ca:?}"
            ),
            Some("driftwatch"),
        ),
        (
            "tls",
            &*format!("tls = \"tls\"\nusername = \"driftwatch\"\npassword_file = \"smtp-password\"\nca = {ca:?}"),
            Some("driftwatch"),
        ),
    ] {
        let work = dir.path().join(mode);
        std::fs::create_dir_all(&work).expect("mkdir");
        std::fs::copy(dir.path().join("smtp-password"), work.join("smtp-password")).expect("copy");
        let smtp_port = free_port();
        let sink = Sink::start(smtp_port, mode, Some(&certs), &work.join("mail"));
        let port = free_port();
        let smtp = format!("[notify.smtp]\nhost = \"localhost\"\nport = {smtp_port}\ntimeout = \"5s\"\n{notify}\n");
        agent_config(&work, port, &smtp);
        let mut agent = Agent::start(&work, port, &[("DW_SMTP_PASSWORD", "s3cret")]);
        agent.feed_drift();
        let got = wait_for(&format!("a digest over {mode}"), Duration::from_secs(30), || {
            Some(mails(&sink.out)).filter(|m| !m.is_empty())
        });
        assert_digest(&got[0]);
        assert_eq!(got[0]["tls"], serde_json::json!(mode != "plain"), "{mode}");
        assert_eq!(got[0]["user"], serde_json::json!(user), "{mode}");
        wait_for("sent on /metrics", Duration::from_secs(10), || {
            agent.metric("driftwatch_notifications_total{outcome=\"sent\"}").filter(|v| *v >= 1.0)
        });
        let (_, status) = http_get(port, "/api/v1/status").expect("status");
        let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
        let alert = &status["models"][0]["alerts"][0];
        assert_eq!(
            (&alert["rule"], &alert["feature"], &alert["phase"]),
            (&"income-drift".into(), &"income".into(), &"firing".into()),
            "{status}"
        );
        assert_eq!(alert["severity"], "critical");
        assert_eq!(
            agent.metric(
                "driftwatch_alert_transitions_total{model=\"credit-risk\",rule=\"income-drift\",transition=\"firing\"}"
            ),
            Some(1.0),
            "fired once over four drifting windows"
        );
        let log = agent.stop();
        assert!(!log.contains("s3cret"), "the password never reaches the log");
        assert_eq!(queued(&work.join("outbox")), 0, "{mode}: the outbox is empty once delivered");
        assert_eq!(mails(&sink.out).len(), 1, "{mode}: one digest, not one mail per window or feature");
    }
}

#[test]
fn a_digest_waits_while_the_server_is_down_and_arrives_exactly_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let smtp_port = free_port();
    let port = free_port();
    let smtp = format!("[notify.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\ntimeout = \"2s\"\n");
    agent_config(dir.path(), port, &smtp);
    let outbox = dir.path().join("outbox");

    // The server is down while the alert fires: the digest is kept and retried.
    let mut agent = Agent::start(dir.path(), port, &[]);
    agent.feed_drift();
    wait_for("failed deliveries", Duration::from_secs(30), || {
        agent.metric("driftwatch_notifications_total{outcome=\"failed\"}").filter(|v| *v >= 2.0)
    });
    assert!(queued(&outbox) >= 1, "the notification waits in the outbox");
    assert_eq!(agent.metric("driftwatch_notifications_queued"), Some(queued(&outbox) as f64));
    assert!(agent.metric("driftwatch_notification_failures_total{reason=\"connection\"}").is_some_and(|v| v >= 2.0));

    // It survives the agent: killed outright, started again, still queued.
    drop(agent);
    let pending = queued(&outbox);
    assert!(pending >= 1);
    let agent = Agent::start(dir.path(), port, &[]);
    wait_for("retries after the restart", Duration::from_secs(20), || {
        agent.metric("driftwatch_notifications_total{outcome=\"failed\"}").filter(|v| *v >= 1.0)
    });

    // The server comes back: delivered exactly once, outbox empty.
    let sink = Sink::start(smtp_port, "plain", None, &dir.path().join("mail"));
    wait_for("the digest after the server returns", Duration::from_secs(20), || {
        Some(mails(&sink.out)).filter(|m| !m.is_empty())
    });
    std::thread::sleep(Duration::from_secs(3));
    let got = mails(&sink.out);
    assert_eq!(got.len(), 1, "exactly one digest");
    assert_digest(&got[0]);
    assert_eq!(queued(&outbox), 0, "the outbox is empty");
    assert_eq!(agent.metric("driftwatch_notifications_queued"), Some(0.0));
    assert_eq!(agent.metric("driftwatch_notifications_retrying"), Some(0.0));
    agent.stop();
    assert_eq!(mails(&sink.out).len(), 1, "nothing sent twice at shutdown");
}

fn eml_files(outbox: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(outbox)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "eml")).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().map(|f| std::fs::read_to_string(f).expect("eml")).collect()
}

#[test]
fn alert_states_survive_a_restart_so_the_next_run_resolves_instead_of_firing_again() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    agent_config(dir.path(), port, "");
    let outbox = dir.path().join("outbox");

    let mut agent = Agent::start(dir.path(), port, &[]);
    agent.feed_drift();
    wait_for("the firing digest", Duration::from_secs(30), || Some(eml_files(&outbox)).filter(|m| m.len() == 1));
    agent.stop();
    let saved = std::fs::read_to_string(outbox.join("alert-state.json")).expect("alert states saved");
    assert!(saved.contains("\"phase\": \"firing\""), "{saved}");

    // The next run sees clean data: the alert it inherited resolves; nothing fires again.
    let mut agent = Agent::start(dir.path(), port, &[]);
    assert!(agent.log().contains("alert states of the last run restored"), "{}", agent.log());
    agent.feed("fixtures/credit/current_ok.csv");
    let mails =
        wait_for("the resolved digest", Duration::from_secs(30), || Some(eml_files(&outbox)).filter(|m| m.len() == 2));
    agent.stop();
    assert!(mails[0].contains("Subject: [CRITICAL] driftwatch: credit-risk - 1 firing:"), "{}", mails[0]);
    assert!(mails[1].contains("Subject: [RESOLVED] driftwatch: credit-risk - 1 resolved:"), "{}", mails[1]);
    assert_eq!(eml_files(&outbox).len(), 2, "no second firing");
}

#[test]
fn a_wrong_password_or_an_untrusted_certificate_is_a_counted_error_and_the_digest_stays_queued() {
    let dir = tempfile::tempdir().expect("tmp");
    let trusted = make_certs(dir.path(), "trusted");
    let other = make_certs(dir.path(), "other");
    for (case, server_certs, password, reason, message) in
        [("auth", &trusted, "wrong", "auth", "535"), ("tls", &other, "s3cret", "tls", "certificate verify failed")]
    {
        let work = dir.path().join(case);
        std::fs::create_dir_all(&work).expect("mkdir");
        let smtp_port = free_port();
        let sink = Sink::start(smtp_port, "starttls", Some(server_certs), &work.join("mail"));
        let port = free_port();
        let smtp = format!(
            "[notify.smtp]\nhost = \"localhost\"\nport = {smtp_port}\ntls = \"starttls\"\nusername = \"driftwatch\"\npassword_env = \"DW_SMTP_PASSWORD\"\nca = {:?}\ntimeout = \"3s\"\n",
            trusted.ca.display().to_string()
        );
        agent_config(&work, port, &smtp);
        let mut agent = Agent::start(&work, port, &[("DW_SMTP_PASSWORD", password)]);
        agent.feed_drift();
        let line = format!("driftwatch_notification_failures_total{{reason=\"{reason}\"}}");
        wait_for(&format!("{case} failures counted"), Duration::from_secs(30), || {
            agent.metric(&line).filter(|v| *v >= 2.0)
        });
        assert!(queued(&work.join("outbox")) >= 1, "{case}: the digest stays queued");
        assert!(mails(&sink.out).is_empty(), "{case}: nothing was accepted");
        let log = agent.log();
        assert!(
            log.contains("alert digest not delivered, kept in the outbox") && log.contains(message),
            "{case}: a clear error in the log:\n{log}"
        );
        assert!(!log.contains("s3cret"), "the password never reaches the log");
        agent.stop();
        assert!(queued(&work.join("outbox")) >= 1, "{case}: still queued after shutdown, for the next start");
    }
}

#[test]
fn prometheus_evaluates_the_shipped_rules_and_alertmanager_mails_the_alert() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let smtp_port = free_port();
    let sink = Sink::start(smtp_port, "plain", None, &d.join("mail"));

    // The agent: digests to .eml files (no SMTP), so every mail in the sink is Alertmanager's.
    let port = free_port();
    agent_config(d, port, "");
    let mut agent = Agent::start(d, port, &[]);

    let am_port = free_port();
    std::fs::write(
        d.join("alertmanager.yml"),
        format!(
            "global:\n  smtp_smarthost: 127.0.0.1:{smtp_port}\n  smtp_from: alertmanager@example.com\n  smtp_require_tls: false\n\
             route:\n  receiver: oncall\n  group_by: [alertname, model]\n  group_wait: 1s\n  group_interval: 1s\n\
             receivers:\n  - name: oncall\n    email_configs:\n      - to: oncall@example.com\n"
        ),
    )
    .expect("alertmanager.yml");
    let am = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", d.join("alertmanager.yml").display()))
        .arg(format!("--storage.path={}", d.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("alertmanager.log")).expect("log"))
        .spawn()
        .expect("prometheus-alertmanager is installed by scripts/install-deps.sh");
    let _am = Reaper(am);

    let (_, _prom) = start_prometheus(
        d,
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {:?}\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n\
             scrape_configs:\n  - job_name: driftwatch\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n",
            root().join("rules/prometheus/driftwatch.rules.yml").display().to_string()
        ),
    );
    wait_for("Alertmanager ready", Duration::from_secs(30), || http_get(am_port, "/-/ready").filter(|r| r.0 == 200));

    agent.feed_drift();
    wait_for("the agent's alert firing", Duration::from_secs(30), || {
        agent.metric("driftwatch_alert_state{feature=\"income\",model=\"credit-risk\",rule=\"income-drift\",severity=\"critical\"}").filter(|v| *v == 2.0)
    });
    let got =
        wait_for("Alertmanager's email", Duration::from_secs(90), || Some(mails(&sink.out)).filter(|m| !m.is_empty()));
    let data = got[0]["data"].as_str().expect("data");
    assert_eq!(got[0]["to"], serde_json::json!(["oncall@example.com"]));
    assert!(data.contains("DriftwatchAlertFiring"), "{data}");
    assert!(data.contains("credit-risk"), "{data}");
    assert!(data.contains("income-drift"), "{data}");
    // The agent wrote its own digest to the outbox as an .eml file.
    let eml = wait_for("the agent's .eml digest", Duration::from_secs(10), || {
        std::fs::read_dir(d.join("outbox"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "eml"))
    });
    let text = std::fs::read_to_string(eml).expect("eml");
    assert!(text.contains("Subject: [CRITICAL] driftwatch: credit-risk"), "{text}");
    agent.stop();
}

fn run_tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{program} (installed by scripts/install-deps.sh): {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

#[test]
fn shipped_prometheus_rules_pass_promtool_and_use_only_agent_metrics() {
    let rules = "rules/prometheus/driftwatch.rules.yml";
    let text = run_tool("promtool", &["check", "rules", rules]);
    assert!(text.contains("SUCCESS: 14 rules found"), "{text}");
    let tests: Vec<String> = std::fs::read_dir(root().join("rules/prometheus/tests"))
        .expect("tests dir")
        .flatten()
        .map(|e| format!("rules/prometheus/tests/{}", e.file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".test.yml"))
        .collect();
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let text = run_tool("promtool", &args);
    assert_eq!(text.matches("SUCCESS").count(), tests.len(), "{text}");

    // Every alert has a unit test; every metric a rule reads is one the agent registers.
    let yaml = std::fs::read_to_string(root().join(rules)).expect("rules");
    let all_tests: String = tests.iter().map(|t| std::fs::read_to_string(root().join(t)).expect("test")).collect();
    for line in yaml.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            assert!(all_tests.contains(&format!("alertname: {name}")), "alert {name} has no promtool test");
        }
    }
    let mut used = std::collections::BTreeSet::new();
    let bytes = yaml.as_bytes();
    let mut i = 0;
    while let Some(at) = yaml[i..].find("driftwatch_") {
        let start = i + at;
        let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
        used.insert(yaml[start..end].to_string());
        i = end;
    }
    assert!(used.len() >= 10, "{used:?}");
    for name in &used {
        let family = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(driftwatch::metrics::NAMES.contains(&family), "rules use {name}, which the agent does not export");
    }
}

#[test]
fn the_example_alertmanager_configuration_is_valid() {
    let text = run_tool("amtool", &["check-config", "rules/prometheus/alertmanager.yml"]);
    assert!(text.contains("SUCCESS") && text.contains("3 receivers"), "{text}");
}

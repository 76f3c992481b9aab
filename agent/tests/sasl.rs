//! Kafka SASL settings reach the wire. No SASL-enabled broker installs on this machine
//! (Tansu speaks no SASL), so a loopback responder speaks the first Kafka exchanges a broker
//! has with a SASL client — ApiVersions, SaslHandshake, SaslAuthenticate (KIP-43, KIP-152) —
//! records what the agent's librdkafka sends, and refuses the credentials. The recorded
//! mechanism and first SASL message show that `sasl_mechanism`, `sasl_username` and the
//! password from `sasl_password_env` or `sasl_password_file` are what the client uses; the
//! agent reports the refusal without ever showing the password.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::agent::{Reaper, free_port, http_get, root, wait_for};

const CANARY: &str = "canary-sasl-7e52c0d9";

/// What a client sent: (mechanism of SaslHandshake, bytes of SaslAuthenticate).
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

fn read_i16(b: &[u8], at: &mut usize) -> i16 {
    let v = i16::from_be_bytes([b[*at], b[*at + 1]]);
    *at += 2;
    v
}

fn read_i32(b: &[u8], at: &mut usize) -> i32 {
    let v = i32::from_be_bytes([b[*at], b[*at + 1], b[*at + 2], b[*at + 3]]);
    *at += 4;
    v
}

fn read_string(b: &[u8], at: &mut usize) -> String {
    let n = read_i16(b, at);
    if n < 0 {
        return String::new();
    }
    let s = String::from_utf8_lossy(&b[*at..*at + n as usize]).into_owned();
    *at += n as usize;
    s
}

/// One connection: answers until the client hangs up.
fn serve(mut stream: TcpStream, seen: &Seen) -> std::io::Result<()> {
    let mut mechanism = String::new();
    loop {
        let mut size = [0u8; 4];
        stream.read_exact(&mut size)?;
        let mut req = vec![0u8; u32::from_be_bytes(size) as usize];
        stream.read_exact(&mut req)?;
        let mut at = 0;
        let (key, version, correlation) = (read_i16(&req, &mut at), read_i16(&req, &mut at), read_i32(&req, &mut at));
        let _client = read_string(&req, &mut at);
        let mut body = Vec::new();
        match key {
            // ApiVersions: the versions this responder speaks. v3 answers in the flexible
            // form (compact array, tagged fields); its response header is always v0.
            18 => {
                let apis: [(i16, i16, i16); 3] = [(18, 0, 3), (17, 0, 1), (36, 0, 1)];
                body.extend(0i16.to_be_bytes());
                if version >= 3 {
                    body.push(apis.len() as u8 + 1);
                    for (k, lo, hi) in apis {
                        body.extend(k.to_be_bytes());
                        body.extend(lo.to_be_bytes());
                        body.extend(hi.to_be_bytes());
                        body.push(0);
                    }
                    body.extend(0i32.to_be_bytes());
                    body.push(0);
                } else {
                    body.extend((apis.len() as i32).to_be_bytes());
                    for (k, lo, hi) in apis {
                        body.extend(k.to_be_bytes());
                        body.extend(lo.to_be_bytes());
                        body.extend(hi.to_be_bytes());
                    }
                    if version >= 1 {
                        body.extend(0i32.to_be_bytes());
                    }
                }
            }
            // SaslHandshake: note the mechanism, offer all three.
            17 => {
                mechanism = read_string(&req, &mut at);
                body.extend(0i16.to_be_bytes());
                let offered = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
                body.extend((offered.len() as i32).to_be_bytes());
                for m in offered {
                    body.extend((m.len() as i16).to_be_bytes());
                    body.extend(m.as_bytes());
                }
            }
            // SaslAuthenticate: record the client's first message, refuse it.
            36 => {
                let n = read_i32(&req, &mut at).max(0) as usize;
                let auth = req[at..at + n].to_vec();
                if let Ok(mut s) = seen.lock() {
                    s.push((mechanism.clone(), auth));
                }
                let message = "test responder: credentials recorded, access refused";
                body.extend(58i16.to_be_bytes()); // SASL_AUTHENTICATION_FAILED
                body.extend((message.len() as i16).to_be_bytes());
                body.extend(message.as_bytes());
                body.extend(0i32.to_be_bytes());
                if version >= 1 {
                    body.extend(0i64.to_be_bytes());
                }
            }
            // Nothing else is reached before authentication; hang up.
            _ => return Ok(()),
        }
        let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        out.extend(correlation.to_be_bytes());
        out.extend(body);
        stream.write_all(&out)?;
    }
}

fn responder() -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let s = s.clone();
            std::thread::spawn(move || {
                let _ = serve(stream, &s);
            });
        }
    });
    (port, seen)
}

/// Runs an agent against the responder with `sasl` settings until its client has
/// authenticated once; returns what the responder saw and the agent's log.
fn attempt(sasl: &str, env: &[(&str, &str)]) -> ((String, Vec<u8>), String) {
    let (port, seen) = responder();
    let dir = tempfile::tempdir().expect("tmp");
    let http = free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nlisten = \"127.0.0.1:{http}\"\n[source]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:{port}\"\n{sasl}\n\
             [[model]]\nid = \"credit-risk\"\nbaseline = {:?}\nexclude = [\"event_id\"]\ntopics = [\"predictions\"]\n",
            root().join("fixtures/credit/reference.csv").display().to_string()
        ),
    )
    .expect("config");
    std::fs::write(dir.path().join("sasl-password"), format!("{CANARY}\n")).expect("password file");
    let log = dir.path().join("agent.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_driftwatch"));
    cmd.args(["run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("DRIFTWATCH_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let agent = Reaper(cmd.spawn().expect("agent starts"));
    let first = wait_for("the client's SASL authentication", Duration::from_secs(30), || {
        seen.lock().ok().and_then(|s| s.first().cloned())
    });
    // The refusal is reported: not ready, and logged.
    let text = wait_for("the refusal in the log", Duration::from_secs(30), || {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        t.contains("SASL authentication error: test responder: credentials recorded, access refused").then_some(t)
    });
    assert_eq!(http_get(http, "/readyz").map(|r| r.0), Some(503), "not ready without partitions");
    let (_, metrics) = http_get(http, "/metrics").expect("metrics");
    let (_, status) = http_get(http, "/api/v1/status").expect("status");
    for (what, t) in [("log", &text), ("/metrics", &metrics), ("/api/v1/status", &status)] {
        assert!(!t.contains(CANARY), "{what} shows the password:\n{t}");
    }
    drop(agent);
    (first, text)
}

#[test]
fn sasl_plain_sends_the_configured_user_and_the_password_from_the_environment() {
    let ((mechanism, auth), _) = attempt(
        "security_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"dw-agent\"\nsasl_password_env = \"DW_SASL\"",
        &[("DW_SASL", CANARY)],
    );
    assert_eq!(mechanism, "PLAIN");
    // RFC 4616: authzid NUL authcid NUL passwd.
    assert_eq!(auth, format!("\0dw-agent\0{CANARY}").into_bytes());
}

#[test]
fn sasl_scram_sha_256_and_512_start_their_exchange_with_the_configured_user() {
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let ((seen, auth), _) = attempt(
            &format!(
                "security_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"{mechanism}\"\nsasl_username = \"dw-agent\"\nsasl_password_file = \"sasl-password\""
            ),
            &[],
        );
        assert_eq!(seen, mechanism);
        // RFC 5802 client-first message: no channel binding, the user, a fresh nonce. The
        // password never crosses the wire in SCRAM.
        let first = String::from_utf8(auth).expect("text");
        assert!(first.starts_with("n,,n=dw-agent,r="), "{first}");
        assert!(first.len() > "n,,n=dw-agent,r=".len() + 8, "a nonce: {first}");
        assert!(!first.contains(CANARY));
    }
}

//! `driftwatch check --format html`: one self-contained page, rendered by a real headless
//! Chromium (installed by `scripts/install-deps.sh`): it loads without a console message or
//! script error, its script ran, and its screenshot is not blank.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::agent::root;

fn chromium(dir: &Path, args: &[&str], page: &Path) -> (String, String) {
    let profile = tempfile::tempdir().expect("profile");
    let out = Command::new("chromium")
        .args([
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .current_dir(dir)
        .output()
        .expect("chromium is installed by scripts/install-deps.sh");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_html_report_is_self_contained_and_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let reference = super::performance::labelled_reference(d);
    let page = d.join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["check", "--format", "html", "--score-column", "score", "--label-column", "label", "--reference"])
        .arg(&reference)
        .arg("--current")
        .arg(root().join("fixtures/credit/current_drift.csv"))
        .args(["--exclude", "event_id", "--output"])
        .arg(&page)
        .output()
        .expect("driftwatch");
    // Exit 1: drift was found.
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).expect("report written");

    // Self-contained: nothing is fetched.
    for outside in ["<link", "src=", "url(", "@import", "href=\"http"] {
        assert!(!html.contains(outside), "the report refers to something outside it ({outside})");
    }
    // Every section, one plot per feature, the performance estimate with its band.
    for part in
        ["DATASET DRIFT", "id=\"features\"", "class=\"sortable\"", "<h2>Distributions</h2>", "<h2>Data quality</h2>"]
    {
        assert!(html.contains(part), "missing {part}");
    }
    // The score column is the performance input, not a feature of the check.
    let features = ["age", "income", "debt_ratio", "country", "open_accounts"];
    assert_eq!(html.matches("<svg class=\"plot\"").count(), features.len());
    for f in features {
        assert!(html.contains(&format!("id=\"f-{f}\"")), "no plot section for {f}");
    }
    assert!(html.contains("Estimated without labels (CBPE"), "performance section");
    assert!(html.contains("<td class=\"text\">accuracy</td>"), "accuracy row");

    // Rendered: the script ran to its end, no error, no console message.
    let (dom, log) = chromium(d, &["--dump-dom"], &page);
    assert!(dom.contains("data-ready=\"1\""), "the page's script did not finish:\n{log}");
    assert!(!dom.contains("data-error=\""), "script error: {dom}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");

    // The screenshot shows a page: mostly light background, a good share of ink, and the
    // drift colour of the banner and bars.
    let shot = d.join("report.png");
    chromium(d, &["--window-size=1200,1600", &format!("--screenshot={}", shot.display())], &page);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).expect("screenshot")));
    let mut reader = decoder.read_info().expect("png");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("frame");
    assert_eq!((info.width, info.height), (1200, 1600));
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    let ink = pixels.iter().filter(|p| p[..3].iter().any(|c| *c < 200)).count();
    let red = pixels.iter().filter(|p| p[0] > 150 && p[1] < 80 && p[2] < 80).count();
    let share = |n: usize| n as f64 / pixels.len() as f64;
    assert!(share(ink) > 0.03, "the screenshot is nearly blank ({:.3} ink)", share(ink));
    assert!(share(red) > 0.005, "no drift colour on the screenshot ({:.4})", share(red));
}

/// A running agent serves its last window of a model as the same HTML page.
#[test]
fn the_agent_serves_each_models_last_window_as_an_html_report() {
    use std::io::Write as _;
    use std::process::Stdio;

    use super::agent::{Reaper, credit_events, free_port, http_get, wait_for};
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nlisten = \"127.0.0.1:{port}\"\n[source]\nkind = \"replay\"\npath = \"-\"\n\
             [[model]]\nid = \"credit-risk\"\nbaseline = {:?}\nexclude = [\"event_id\", \"score\"]\n\
             [model.window]\nsize = \"10m\"\nidle_timeout = \"1s\"\n",
            root().join("fixtures/credit/reference.csv").display().to_string()
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("agent starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let _agent = Reaper(child);
    wait_for("the agent", Duration::from_secs(30), || http_get(port, "/healthz").filter(|r| r.0 == 200));
    assert_eq!(http_get(port, "/report/credit-risk").map(|r| r.0), Some(404), "no window yet");
    for e in credit_events("fixtures/credit/current_drift.csv", "credit-risk") {
        writeln!(stdin, "{e}").expect("write");
    }
    stdin.flush().expect("flush");
    let page =
        wait_for("a report", Duration::from_secs(30), || http_get(port, "/report/credit-risk").filter(|r| r.0 == 200));
    assert!(page.1.contains("driftwatch report: credit-risk") && page.1.contains("DATASET DRIFT"), "{}", page.1);
    assert!(page.1.contains("<p class=\"muted\">window 2026-11-27T00:"), "the window's time span");
    assert_eq!(page.1.matches("<svg class=\"plot\"").count(), 5, "one plot per feature");
    let missing = http_get(port, "/report/nope").expect("answer");
    assert_eq!(missing.0, 404);
    assert!(missing.1.contains("models are: credit-risk"), "{}", missing.1);
}

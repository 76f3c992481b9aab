//! `driftwatch demo`: the whole pipeline with no external service.
//!
//! Writes the embedded sample model (`fixtures/demo/agent.toml`) and its baseline
//! (`fixtures/credit/reference.csv`) into a temporary folder, then generates a stream of
//! credit-risk events — one-minute event-time windows, played about forty times faster than
//! real time — that drifts part-way: windows 3–5 of every twelve shift the income mean,
//! 6–8 add a new country, 9–11 add a null spike in `debt_ratio`. Every stage after the
//! source is the agent's own: decode, windows, tests, `/metrics` and the status API.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::engine::chunk::Chunk;
use crate::engine::evaluate::Evaluation;
use crate::engine::rng::SplitMix64;
use crate::runtime::input::Input;

const CONFIG: &str = include_str!("../../fixtures/demo/agent.toml");
const BASELINE: &str = include_str!("../../fixtures/credit/reference.csv");
const COUNTRIES: [&str; 5] = ["DE", "FR", "NL", "PL", "ES"];
const WINDOW_MS: i64 = 60_000;

/// Demo settings.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub events_per_window: usize,
    /// Wall-clock seconds per one-minute window.
    pub seconds_per_window: f64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions { events_per_window: 2500, seconds_per_window: 1.5 }
    }
}

/// A temporary folder with the demo's configuration and baseline, removed on drop.
pub struct DemoFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl DemoFiles {
    pub fn write() -> std::io::Result<DemoFiles> {
        let dir = std::env::temp_dir().join(format!("driftwatch-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("reference.csv"), BASELINE)?;
        let config = dir.join("agent.toml");
        std::fs::write(&config, CONFIG)?;
        Ok(DemoFiles { dir, config })
    }
}

impl Drop for DemoFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What drifts in window `k`.
fn phase(k: u64) -> (bool, bool, bool) {
    let p = k % 12;
    (p >= 3, p >= 6, p >= 9)
}

/// Describes the drift of window `k`, for the banner printed when it changes.
fn phase_name(k: u64) -> &'static str {
    match phase(k) {
        (false, _, _) => "no drift",
        (true, false, _) => "income mean shifts up",
        (true, true, false) => "income shift + new country \"BR\"",
        (true, true, true) => "income shift + new country + debt_ratio nulls",
    }
}

/// The demo's draws on top of SplitMix64.
struct Rng(SplitMix64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0.open_unit()
    }
    fn normal(&mut self) -> f64 {
        self.0.normal()
    }
    fn gamma_int(&mut self, k: u32) -> f64 {
        (0..k).map(|_| -self.uniform().ln()).sum()
    }
    fn poisson(&mut self, lambda: f64) -> u32 {
        let (l, mut k, mut p) = ((-lambda).exp(), 0, 1.0);
        loop {
            p *= self.uniform();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
}

/// One event of window `k` as JSON.
fn event(rng: &mut Rng, k: u64, i: u64, time_ms: i64, out: &mut String) {
    let (shift, new_country, nulls) = phase(k);
    let age = (41.0 + 11.0 * rng.normal()).round().clamp(18.0, 90.0);
    let income = ((10.8 + if shift { 0.35 } else { 0.0 }) + 0.45 * rng.normal()).exp();
    let (g2, g5) = (rng.gamma_int(2), rng.gamma_int(5));
    let debt = g2 / (g2 + g5);
    let u = rng.uniform();
    let country = if new_country && u < 0.25 {
        "BR"
    } else {
        let u = rng.uniform();
        COUNTRIES[[0.35, 0.6, 0.8, 0.9, 1.0].iter().position(|c| u < *c).unwrap_or(4)]
    };
    let accounts = rng.poisson(3.0);
    let score = 1.0 / (1.0 + (-(0.03 * (age - 40.0) + 2.0 * debt - 1.0)).exp());
    let debt = if nulls && rng.uniform() < 0.3 { "null".to_string() } else { format!("{debt:.4}") };
    let _ = write!(
        out,
        r#"{{"model_id":"credit-risk","model_version":"3.2.0","event_id":"demo-{k}-{i}","timestamp":{time_ms},"features":{{"age":{age},"income":{income:.2},"debt_ratio":{debt},"country":"{country}","open_accounts":{accounts}}},"prediction":{{"score":{score:.4}}}}}"#
    );
}

/// The generator: sends events window by window until stopped.
pub fn generate(options: DemoOptions, tx: mpsc::Sender<Input>, stop: Arc<AtomicBool>) {
    let mut rng = Rng(SplitMix64(20_261_127));
    let start = chrono::Utc::now().timestamp_millis().div_euclid(WINDOW_MS) * WINDOW_MS;
    let per_window = options.events_per_window.max(10) as u64;
    let slices = 10u64;
    let pause = Duration::from_secs_f64(options.seconds_per_window / slices as f64);
    let mut line = String::new();
    let mut offset = 0i64;
    for k in 0.. {
        if k == 0 || phase_name(k) != phase_name(k - 1) {
            println!("── events from window {} on: {}", k + 1, phase_name(k));
        }
        for s in 0..slices {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let mut chunk = Chunk::with_capacity((per_window / slices) as usize + 1);
            for i in (s * per_window / slices)..((s + 1) * per_window / slices) {
                let t = start + k as i64 * WINDOW_MS + (i as i64 * WINDOW_MS) / per_window as i64;
                line.clear();
                event(&mut rng, k, i, t, &mut line);
                chunk.push(0, 0, offset, None, line.as_bytes());
                offset += 1;
            }
            if tx.blocking_send(Input::Chunk(chunk)).is_err() {
                return;
            }
            std::thread::sleep(pause);
        }
    }
}

/// Prints one line per closed window.
pub fn summary(colour: bool) -> impl FnMut(&Evaluation) + Send {
    let paint =
        move |code: &str, text: &str| if colour { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() };
    let mut n = 0;
    move |e: &Evaluation| {
        n += 1;
        let span = format!("{}–{}", clock(e.start), clock(e.end));
        let Some(r) = &e.report else {
            println!("window {n:>3} {span}  {:>5} events  {}", e.events, paint("33", "insufficient data"));
            return;
        };
        let verdict = if r.drift.detected {
            paint("1;31", &format!("DRIFT {}/{}", r.drift.drifted_features, r.drift.total_features))
        } else {
            paint("32", &format!("ok    {}/{}", r.drift.drifted_features, r.drift.total_features))
        };
        let mut notes = Vec::new();
        for f in &r.features {
            if let Some(t) = f.tests.iter().find(|t| t.drift) {
                let value = t.statistic.map_or("-".into(), |s| format!("{s:.3}"));
                notes.push(format!("{} {} {}", f.name, t.test.name(), value));
            }
            if let Some(q) = f.quality.null_rate.filter(|q| *q > 0.05) {
                notes.push(format!("{} nulls {:.0}%", f.name, q * 100.0));
            }
            if let Some(q) = f.quality.new_category_rate.filter(|q| *q >= 0.005) {
                notes.push(format!("{} new categories {:.0}%", f.name, q * 100.0));
            }
        }
        println!("window {n:>3} {span}  {:>5} events  {verdict}  {}", e.events, notes.join(", "));
        for a in e.notices() {
            let line = format!(
                "           alert {} {} {} on {} ({})",
                a.transition.as_str(),
                a.severity.as_str(),
                a.rule,
                a.feature,
                a.target
            );
            println!(
                "{}",
                paint(if a.transition == crate::engine::alert::Transition::Resolved { "32" } else { "1;35" }, &line)
            );
        }
    }
}

fn clock(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%H:%M").to_string()).unwrap_or_default()
}

/// Whether to colour the summary.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

//! Fuzzing the event scanner and decoder on stable Rust: seeded random inputs of two kinds,
//! pushed through a [`TopicDecoder`] of two models that watch nested features, event ids,
//! unknown fields and required features (every code path of the scanner and decoder):
//!
//! * random bytes (printable-heavy, with JSON punctuation), and
//! * structured JSON mutations: a valid event with one to four edits (a byte flipped,
//!   inserted or removed, a cut, a value swapped for another JSON value — huge numbers,
//!   deep nesting, arrays where objects belong, escapes, invalid UTF-8 — a key duplicated).
//!
//! Every input must come back accepted or rejected with a reason, never a panic (a panic
//! aborts the run with the seed and input). Decoded rows are flushed every 4096 inputs, so
//! the Arrow assembly runs too. Prints the count, the verdicts by reason and the rate.
//!
//! `cargo bench --bench fuzz -- [--inputs N] [--seed S]` (default 10 000 000 inputs).

use std::collections::BTreeMap;
use std::time::Instant;

use driftwatch::decode::{FieldPath, ModelFields, Position, TimestampFormat, TopicDecoder};
use driftwatch::profile::FeatureKind;
use driftwatch::rng::SplitMix64;

fn fields(id: &str) -> ModelFields {
    let mut f =
        ModelFields::new(id, FieldPath::parse("model_id"), FieldPath::parse("timestamp"), TimestampFormat::Auto);
    f.features = vec![
        ("income".into(), FieldPath::parse("features.income"), FeatureKind::Numerical),
        ("country".into(), FieldPath::parse("features.country"), FeatureKind::Categorical),
        ("score".into(), FieldPath::parse("prediction.score"), FeatureKind::Numerical),
    ];
    f.required = vec![true, false, false];
    f.known_fields = Some(FieldPath::parse("features"));
    f.event_id = Some(FieldPath::parse("event_id"));
    f.duplicates = Some((60_000, 10_000));
    f
}

const VALUES: &[&str] = &[
    "1e400",
    "-1e400",
    "99999999999999999999999999999999999999999999",
    "-0",
    "0.1e-400",
    "null",
    "true",
    "[1,2,3]",
    "{\"a\":{\"b\":[{}]}}",
    "\"\\ud83d\\ude00\"",
    "\"\\ud800\"",
    "\"\\u00zz\"",
    "\"\u{e9}\"",
    "[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]",
    "\"2026-11-27T10:15:00.123Z\"",
    "\"2026-02-30T00:00:00Z\"",
    "1795774500123",
    "-9223372036854775808",
    "18446744073709551616",
    "\"m\"",
    "\"other\"",
    "{}",
];

fn valid(rng: &mut SplitMix64, i: u64) -> Vec<u8> {
    let model = if rng.next_u64().is_multiple_of(2) { "m" } else { "n" };
    format!(
        r#"{{"model_id":"{model}","event_id":"e{}","timestamp":{},"features":{{"income":{},"country":"{}"}},"prediction":{{"score":{}}}}}"#,
        i % 5000,
        1_795_774_500_000 + (rng.next_u64() % 100_000) as i64,
        rng.unit() * 1e5,
        ["DE", "FR", "PL"][(rng.next_u64() % 3) as usize],
        rng.unit()
    )
    .into_bytes()
}

fn mutate(rng: &mut SplitMix64, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.next_u64() % 4 {
        let at = if bytes.is_empty() { 0 } else { (rng.next_u64() % bytes.len() as u64) as usize };
        match rng.next_u64() % 7 {
            0 if !bytes.is_empty() => bytes[at] = rng.next_u64() as u8,
            1 => bytes.insert(at, b"{}[]\",:\\ue0-9."[(rng.next_u64() % 14) as usize]),
            2 if !bytes.is_empty() => {
                bytes.remove(at);
            }
            3 => bytes.truncate(at),
            4 => {
                // Replace the value after a colon with another JSON value.
                if let Some(colon) = bytes[at..].iter().position(|&b| b == b':').map(|p| p + at + 1) {
                    let end =
                        bytes[colon..].iter().position(|&b| b == b',' || b == b'}').map_or(bytes.len(), |p| p + colon);
                    let v = VALUES[(rng.next_u64() % VALUES.len() as u64) as usize].as_bytes();
                    bytes.splice(colon..end, v.iter().copied());
                }
            }
            5 => {
                // Duplicate a key: insert `"features":V,` after the opening brace.
                let v = VALUES[(rng.next_u64() % VALUES.len() as u64) as usize];
                let text = format!("\"features\":{v},");
                if !bytes.is_empty() {
                    bytes.splice(1..1, text.bytes());
                }
            }
            _ => bytes.push(0xff),
        }
    }
    bytes
}

fn random_bytes(rng: &mut SplitMix64) -> Vec<u8> {
    const ALPHABET: &[u8] = b"{}[]\":,.-+eE0123456789 truefalsnl\\u";
    let n = (rng.next_u64() % 200) as usize;
    (0..n)
        .map(|_| match rng.next_u64() % 10 {
            0 => rng.next_u64() as u8,
            _ => ALPHABET[(rng.next_u64() % ALPHABET.len() as u64) as usize],
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let inputs = arg("--inputs", 10_000_000);
    let seed = arg("--seed", 0x00F0_22ED);
    let mut rng = SplitMix64(seed);
    let mut decoder = TopicDecoder::new(vec![fields("m"), fields("n")], 1 << 12).expect("decoder");
    let mut verdicts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let started = Instant::now();
    for i in 0..inputs {
        let input = match i % 3 {
            0 => random_bytes(&mut rng),
            _ => {
                let v = valid(&mut rng, i);
                mutate(&mut rng, v)
            }
        };
        let verdict = match decoder.push(&input, Some(1_795_774_500_000), Position { partition: 0, offset: i as i64 }) {
            Ok(_) => {
                if decoder.take_misshapen().is_some() {
                    "kept, misshapen"
                } else {
                    "kept"
                }
            }
            Err(r) => r.reason.as_str(),
        };
        *verdicts.entry(verdict).or_default() += 1;
        if i % 4096 == 4095 {
            for model in 0..2 {
                let _ = decoder.flush(model);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "fuzz: {inputs} inputs (seed {seed:#x}) without a panic in {seconds:.1} s ({:.2} M inputs/s)",
        inputs as f64 / seconds / 1e6
    );
    for (verdict, n) in verdicts {
        println!("  {verdict:>18}: {n}");
    }
}

//! The replay source: NDJSON events, one per line, from a file or standard input.
//!
//! Every line is one event on topic 0, partition 0, with its line number (from 0) as offset.
//! Blank lines are skipped. `speed = 0` reads as fast as the pipeline takes events; a
//! positive speed paces events by their event time (`speed = 10` replays ten minutes of
//! events in one minute), reading the time from the given field path (RFC 3339 or epoch ms).
//! Standard input is flushed to the pipeline whenever no more input is waiting, so a
//! trickle of events is processed as it arrives.
//!
//! Memory is bounded whatever the input: a line longer than `max_event_bytes` is not read
//! whole; its first `max_event_bytes + 1` bytes go on (the decoder rejects them as
//! `too_large`) and the rest is skipped as it streams past. A chunk is sent on once it holds
//! [`MAX_CHUNK_BYTES`] of payload, so its offsets always fit.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::engine::chunk::{Chunk, MAX_CHUNK_BYTES};
use crate::engine::decode::FieldPath;
use crate::runtime::input::Input;

/// What to replay and how.
#[derive(Clone, Debug)]
pub(crate) struct ReplayOptions {
    /// `None` reads standard input.
    pub path: Option<PathBuf>,
    pub speed: f64,
    /// Event-time field, for pacing.
    pub time_field: FieldPath,
    pub batch_rows: usize,
    /// Longer lines are cut here (and rejected as `too_large` by the decoder).
    pub max_event_bytes: usize,
}

/// Reads every event and sends it on; returns the number of lines read. Runs on a blocking
/// thread; stops early when `stop` is set or the pipeline has gone.
pub(crate) fn run(options: ReplayOptions, tx: mpsc::Sender<Input>, stop: Arc<AtomicBool>) -> std::io::Result<u64> {
    let (input, interactive): (Box<dyn Read>, bool) = match &options.path {
        Some(p) => (
            Box::new(
                std::fs::File::open(p).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?,
            ),
            false,
        ),
        None => (Box::new(std::io::stdin()), true),
    };
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut chunk = Chunk::with_capacity(options.batch_rows);
    let mut offset = 0i64;
    let mut pace: Option<(i64, Instant)> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Read the line straight into the chunk's buffer: one copy per event, at most
        // `max_event_bytes + 1` bytes of it.
        let start = chunk.data.len();
        if read_line(&mut reader, &mut chunk.data, options.max_event_bytes.saturating_add(1))? == 0 {
            break;
        }
        let line = &chunk.data[start..];
        let skip = line.len() - line.trim_ascii_start().len();
        let len = line.trim_ascii().len();
        if len == 0 {
            chunk.data.truncate(start);
        } else if options.speed > 0.0 {
            let line = chunk.data[start + skip..start + skip + len].to_vec();
            chunk.data.truncate(start);
            if let Some(t) = event_time(&line, &options.time_field) {
                let (t0, w0) = *pace.get_or_insert((t, Instant::now()));
                let due = w0 + Duration::from_secs_f64(((t - t0).max(0) as f64 / 1000.0) / options.speed);
                if due > Instant::now() {
                    if !chunk.is_empty() && tx.blocking_send(Input::Chunk(std::mem::take(&mut chunk))).is_err() {
                        break;
                    }
                    std::thread::sleep(due - Instant::now());
                }
            }
            chunk.push(0, 0, offset, None, &line);
        } else {
            chunk.push_stored(0, 0, offset, None, start + skip, len);
        }
        offset += 1;
        let idle = interactive && reader.buffer().is_empty();
        if chunk.len() >= options.batch_rows || chunk.data.len() >= MAX_CHUNK_BYTES || (idle && !chunk.is_empty()) {
            let full = std::mem::replace(&mut chunk, Chunk::with_capacity(options.batch_rows));
            if tx.blocking_send(Input::Chunk(full)).is_err() {
                break;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Input::Chunk(chunk));
    }
    Ok(offset as u64)
}

/// Reads one line (through its newline) into `out`, keeping at most `keep` bytes of it;
/// returns the line's whole length (0 at the end of the input).
fn read_line(reader: &mut impl BufRead, out: &mut Vec<u8>, keep: usize) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut kept = 0usize;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(total);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let copy = take.min(keep - kept);
        out.extend_from_slice(&buf[..copy]);
        kept += copy;
        total += take as u64;
        reader.consume(take);
        if done {
            return Ok(total);
        }
    }
}

/// Event time of a line, for pacing only (the decoder reads it again properly).
fn event_time(line: &[u8], path: &FieldPath) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let mut v = &value;
    for s in path.segments() {
        v = v.get(s)?;
    }
    match v {
        serde_json::Value::Number(n) => n.as_f64().map(|x| x as i64),
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_while_reading_and_the_next_line_is_whole() {
        let long = "x".repeat(10_000);
        let text = format!("{long}\nshort\n{long}");
        // A small buffer makes the long lines span many reads.
        let mut reader = BufReader::with_capacity(64, text.as_bytes());
        let mut out = Vec::new();
        assert_eq!(read_line(&mut reader, &mut out, 101).unwrap(), 10_001);
        assert_eq!(out.len(), 101);
        out.clear();
        assert_eq!(read_line(&mut reader, &mut out, 101).unwrap(), 6);
        assert_eq!(out, b"short\n");
        out.clear();
        assert_eq!(read_line(&mut reader, &mut out, 101).unwrap(), 10_000);
        assert_eq!(out.len(), 101);
        assert_eq!(read_line(&mut reader, &mut out, 101).unwrap(), 0);
    }
}

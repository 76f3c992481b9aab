//! Sources: where event payloads come from. Each source fills [`Chunk`](crate::engine::chunk::Chunk)s — up to
//! `batch_rows` records, or fewer once `linger` has passed since the first — and sends them
//! as [`Input`](crate::runtime::input::Input)s through the pipeline's one bounded channel, so a slow pipeline slows the source down
//! (backpressure) instead of growing memory. Every stage after the source is shared.
//!
//! * [`kafka`]: a consumer group (offsets stored late, see `frontier`).
//! * [`replay`]: NDJSON from a file or standard input, as fast as possible or paced.

pub(crate) mod kafka;
pub(crate) mod replay;

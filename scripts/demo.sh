#!/usr/bin/env bash
# The README's first command: builds driftwatch (installing the C build tools the bundled
# librdkafka needs, when missing) and runs `driftwatch demo` — the whole pipeline on a
# generated credit-risk stream that drifts part-way, /metrics on 127.0.0.1:9464, one summary
# line per closed window. Arguments go to `driftwatch demo` (try --help, --duration 30s).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 2; }
scripts/install-deps.sh build
exec cargo run --release --locked --quiet -- demo "$@"

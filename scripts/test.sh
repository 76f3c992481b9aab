#!/usr/bin/env bash
# The whole test suite: unit tests, golden statistics against SciPy, property tests and the
# command-line tests. Tests and benches share the release profile, so the (large)
# dependency graph is built once. Set CARGO_TARGET_DIR to reuse a build cache.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 2; }
cargo test --release --locked "$@"

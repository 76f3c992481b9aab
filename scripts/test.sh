#!/usr/bin/env bash
# The whole test suite: unit tests, golden statistics against SciPy, property tests,
# configuration fixtures, the command-line tests, and the agent against a real Kafka-wire
# broker (Tansu, started per test on a free loopback port) and promtool. Tests and benches share the release
# profile, so the (large) dependency graph is built once. Set CARGO_TARGET_DIR to reuse a
# build cache. Ends with one line "N passed, N failed" over every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 2; }
# cmake (bundled librdkafka), promtool and the Tansu broker, each installed only when missing.
scripts/install-deps.sh
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check || { echo "code is not formatted: run cargo fmt --all" >&2; exit 1; }
fi
# Clippy clean on every target; agent/lib.rs denies unwrap/expect outside tests and unsafe code.
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --release --locked --all-targets --quiet -- -D warnings || { echo "clippy: fix the findings above (unwrap/expect are denied outside tests)" >&2; exit 1; }
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --locked "$@" 2>&1 | tee "$log" || status=$?
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo
echo "$passed passed, $failed failed"
exit "$status"

#!/usr/bin/env bash
# Installs the Tansu Kafka-compatible broker (crates.io, pinned) into ~/.cargo/bin unless
# that exact version is already there. About 10 minutes on 2 cores the first time; a no-op
# afterwards. Tansu needs the dynostore feature for the memory engine and libsql for the
# sqlite engine used by broker-restart tests (see shared RECIPES.md).
set -euo pipefail
VERSION=0.6.0
if command -v tansu >/dev/null && tansu --version 2>/dev/null | grep -q "$VERSION"; then
  exit 0
fi
cargo install tansu --locked --version "$VERSION" --features dynostore,libsql

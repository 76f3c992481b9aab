#!/usr/bin/env bash
# Starts a Tansu broker on loopback for tests and prints "PORT PID" once it accepts
# connections. Usage: scripts/start-tansu.sh [DATA_DIR] [memory|sqlite] [PORT]
#   memory (default): messages live in the broker process;
#   sqlite: messages and committed offsets survive a broker restart (DATA_DIR/tansu.db).
# The port is chosen free by the kernel unless given (a restart reuses the old one).
# Stop the broker with `kill PID`.
set -euo pipefail
dir=${1:-$(mktemp -d)}
mkdir -p "$dir"
engine=${2:-memory}
command -v tansu >/dev/null || "$(dirname "$0")/install-tansu.sh"
port=${3:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
case "$engine" in
  memory) storage="memory://tansu/" ;;
  # The sqlite path is taken relative to the broker's working directory (RECIPES.md).
  sqlite) storage="sqlite://tansu.db" ;;
  *) echo "unknown storage engine: $engine (memory or sqlite)" >&2; exit 2 ;;
esac
cd "$dir"
tansu broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine "$storage" > "$dir/tansu.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "$port $pid"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || { cat "$dir/tansu.log" >&2; exit 1; }
  sleep 0.1
done
echo "tansu did not start listening on 127.0.0.1:$port; log: $dir/tansu.log" >&2
kill "$pid" 2>/dev/null || true
exit 1

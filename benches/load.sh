#!/usr/bin/env bash
# Load benchmark: Veneer against a bare nginx pass-through, on the same fixed SOAP backend,
# interleaved in rounds (benches/load/run.sh, the team's harness). One command:
#
#   benches/load.sh                 # Veneer, nginx direct, nginx pass-through
#   PEERS=1 benches/load.sh         # also the Node.js and Python facades (installs them)
#
# Veneer runs the full path on every call: bearer-token check (cached verified token),
# rate-limit check, JSON→SOAP encode, backend call, SOAP→JSON decode. Loopback only.
# Tunables are run.sh's: ROUNDS (3), DURATION (10s), CONNS (64), THREADS (2), LAT_RATE (100).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOAD="$ROOT/benches/load"
PORT=${VENEER_BENCH_PORT:-18090}

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk curl >/dev/null
fi
if [[ -n "${PEERS:-}" ]]; then
  bash "$LOAD/setup.sh"
fi
# VENEER_BIN: a binary to measure instead of building the release one.
if [[ -z "${VENEER_BIN:-}" ]]; then (cd "$ROOT" && cargo build --profile release-lto --locked -q); fi
BIN=${VENEER_BIN:-$ROOT/target/release-lto/veneer}
# FLOOR=1: measure examples/floor.rs (bare hyper in and out, fixed body) in Veneer's place.
if [[ -n "${FLOOR:-}" ]]; then
  (cd "$ROOT" && cargo build --profile release-lto --locked -q --example floor)
  FLOOR_BIN="$ROOT/target/release-lto/examples/floor"
fi

# A config for the harness's backend: its WSDL, one route, a client, limits that never bind.
CONF="$(mktemp -d)"
trap 'rm -rf "$CONF"' EXIT
# shellcheck source=benches/config.sh
source "$ROOT/benches/config.sh"
bench_credentials "$CONF" "$BIN"
bench_config "$CONF" "$PORT" "http://127.0.0.1:$PORT" "$HASH" "$BIN"

# A token, fetched from a short-lived instance; the benchmark instance shares its keys.
RUST_LOG=error "$BIN" serve --config "$CONF" & PID=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
TOKEN=$(curl -fs -u "bench:$SECRET" -d grant_type=client_credentials "http://127.0.0.1:$PORT/oauth2/token" | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
kill "$PID"; wait "$PID" 2>/dev/null || true
[[ -n "$TOKEN" ]] || { echo "could not get a token" >&2; exit 1; }

if [[ -n "${FLOOR:-}" ]]; then
  G_NAME=floor G_CMD="FLOOR_LISTEN=127.0.0.1:$PORT FLOOR_CLIENT=${FLOOR_CLIENT:-hyper} FLOOR_SERVER=${FLOOR_SERVER:-hyper} FLOOR_RUNTIME=${FLOOR_RUNTIME:-multi} exec $FLOOR_BIN"
else
  G_NAME=veneer G_CMD="RUST_LOG=error exec $BIN serve --config $CONF"
fi
TARGETS=${TARGETS:-$([[ -n "${PEERS:-}" ]] && echo "direct passthrough node-1 node-2 python-2" || echo "direct passthrough")} \
GATEWAY_NAME=$G_NAME \
GATEWAY_CMD=$G_CMD \
GATEWAY_URL="http://127.0.0.1:$PORT/items/1000" \
GATEWAY_AUTH="Bearer $TOKEN" \
OUT=${OUT:-$LOAD/results/$(date +%Y%m%d-%H%M%S)} \
  bash "$LOAD/run.sh"

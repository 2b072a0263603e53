#!/usr/bin/env bash
# Instructions per request: the gateway's own user-space work on the full path, counted
# under callgrind, which does not vary with the machine's load the way timings do here.
#
#   benches/instructions.sh                       # the release build
#   VENEER_BIN=old/veneer benches/instructions.sh # another build
#   TOP=40 benches/instructions.sh                # more of the per-function table
#   CG_OUT=/tmp/cg benches/instructions.sh        # keep the callgrind dump
#
# The gateway runs the route of benches/load.sh on the harness's nginx backend. Counting is
# switched on after a warm-up, wrk sends requests for DUR (20s) over a few connections, and
# the count is divided by the requests wrk completed. Kernel time (the two loopback hops)
# is not in the count. Prints the total per request and the top functions (inclusive).
# Loopback only; needs valgrind, nginx, wrk, curl.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOAD="$ROOT/benches/load"
PORT=${VENEER_BENCH_PORT:-18093}
DUR=${DUR:-20s}
TOP=${TOP:-25}
for bin in valgrind callgrind_control callgrind_annotate nginx wrk curl; do
  command -v "$bin" >/dev/null || { echo "instructions.sh needs $bin" >&2; exit 1; }
done
if [[ -z "${VENEER_BIN:-}" ]]; then (cd "$ROOT" && cargo build --profile release-lto --locked -q); fi
BIN=${VENEER_BIN:-$ROOT/target/release-lto/veneer}
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# shellcheck source=benches/config.sh
source "$ROOT/benches/config.sh"
bench_credentials "$WORK" "$BIN"
bench_config "$WORK" "$PORT" "http://127.0.0.1:$PORT" "$HASH" "$BIN"

(cd "$LOAD" && mkdir -p run && exec nginx -p "$LOAD/" -c nginx/backend.conf -e run/backend-error.log) &
RUST_LOG=error valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.%p" \
  "$BIN" serve --config "$WORK" 2>"$WORK/valgrind.log" &
GW=$!
trap 'kill $GW 2>/dev/null; pkill -f "nginx -p $LOAD/"; rm -rf "$WORK"' EXIT
for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
TOKEN=$(curl -fs -u "bench:$SECRET" -d grant_type=client_credentials "http://127.0.0.1:$PORT/oauth2/token" |
  sed 's/.*"access_token":"\([^"]*\)".*/\1/')
[[ -n "$TOKEN" ]] || { echo "could not get a token" >&2; exit 1; }
URL="http://127.0.0.1:$PORT/items/1000"
curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "$URL"
# Warm-up: connections, pools and caches settle before counting starts.
wrk -t1 -c4 -d3s --timeout 10s -H "Authorization: Bearer $TOKEN" "$URL" >/dev/null
callgrind_control -i on "$GW" >/dev/null 2>&1
OUT=$(wrk -t1 -c4 -d"$DUR" --timeout 10s -H "Authorization: Bearer $TOKEN" "$URL")
callgrind_control -i off "$GW" >/dev/null 2>&1
callgrind_control --dump=measured "$GW" >/dev/null 2>&1
N=$(awk '/requests in/{print $1}' <<<"$OUT")
if grep -q "Non-2xx" <<<"$OUT"; then echo "$OUT" >&2; echo "some requests failed" >&2; exit 1; fi
DUMP=$(ls -t "$WORK"/cg.* | head -1)
[[ -z "${CG_OUT:-}" ]] || cp "$DUMP" "$CG_OUT" # for callgrind_annotate or kcachegrind
TOTAL=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
printf 'requests: %d\ninstructions per request: %d\n\n' "$N" $((TOTAL / N))
callgrind_annotate --inclusive=yes "$DUMP" 2>/dev/null |
  awk -v n="$N" -v top="$TOP" '
    /^-+$/ { dash++; next }
    dash >= 3 && NF >= 2 && shown < top {
      ir = $1; gsub(",", "", ir); $1 = ""; sub(/\([^)]*\)/, "");
      printf "%8d  %s\n", ir / n, substr($0, 1, 110); shown++ }'

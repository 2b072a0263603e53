#!/usr/bin/env bash
# A/B on the load harness's backend: two gateways side by side, timed in alternating rounds,
# so a change (a binary, or a backend setting) is compared within one run on a noisy machine.
#
#   BIN_A=old/veneer BIN_B=target/release-lto/veneer benches/ab.sh      # two builds
#   EXTRA_B='    circuit_breaker: { enabled: false }' benches/ab.sh     # two configs
#
# EXTRA_A/EXTRA_B: YAML lines added to the backend's settings. ROUNDS (3), DUR (8s), WT/WC
# (wrk threads and connections, 2/64). Prints req/s and gateway CPU per request per round,
# and the means. Loopback only; nginx and wrk as for benches/load.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOAD="$ROOT/benches/load"
BIN_A=${BIN_A:-$ROOT/target/release-lto/veneer}
BIN_B=${BIN_B:-$BIN_A}
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-8s}
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# shellcheck source=benches/config.sh
source "$ROOT/benches/config.sh"
bench_credentials "$WORK" "$BIN_A"
for side in a b; do mkdir -p "$WORK/$side" && cp -r "$WORK/keys" "$WORK/$side/keys"; done
bench_config "$WORK/a" 18091 http://127.0.0.1:18091 "$HASH" "$BIN_A" "${EXTRA_A:-}"
bench_config "$WORK/b" 18092 http://127.0.0.1:18091 "$HASH" "$BIN_B" "${EXTRA_B:-}"
(cd "$LOAD" && mkdir -p run && exec nginx -p "$LOAD/" -c nginx/backend.conf -e run/backend-error.log) &
RUST_LOG=error "$BIN_A" serve --config "$WORK/a" & A=$!
RUST_LOG=error "$BIN_B" serve --config "$WORK/b" & B=$!
trap 'kill $A $B 2>/dev/null; pkill -f "nginx -p $LOAD/"; rm -rf "$WORK"' EXIT
for port in 18091 18092; do
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
done
TOKEN=$(curl -fs -u "bench:$SECRET" -d grant_type=client_credentials http://127.0.0.1:18091/oauth2/token |
  sed 's/.*"access_token":"\([^"]*\)".*/\1/')
for port in 18091 18092; do
  curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/items/1000"
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
declare -A CPU RPS
for r in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    if [[ $side == A ]]; then pid=$A port=18091; else pid=$B port=18092; fi
    url="http://127.0.0.1:$port/items/1000"
    wrk -t2 -c64 -d2s -H "Authorization: Bearer $TOKEN" "$url" >/dev/null
    t0=$(ticks $pid)
    out=$(wrk -t"${WT:-2}" -c"${WC:-64}" -d"$DUR" -H "Authorization: Bearer $TOKEN" "$url")
    t1=$(ticks $pid)
    n=$(awk '/requests in/{print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    cpu=$(echo "($t1 - $t0) * 1000000 / $HZ / $n" | bc -l)
    printf 'round %d %s  %9.0f req/s  %5.1f us CPU/req\n' "$r" "$side" "$rps" "$cpu"
    CPU[$side]="${CPU[$side]:-0} + $cpu"
    RPS[$side]="${RPS[$side]:-0} + $rps"
  done
done
for side in A B; do
  printf 'mean %s  %9.0f req/s  %5.1f us CPU/req\n' "$side" \
    "$(echo "(${RPS[$side]}) / $ROUNDS" | bc -l)" "$(echo "(${CPU[$side]}) / $ROUNDS" | bc -l)"
done

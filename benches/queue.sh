#!/usr/bin/env bash
# Queued delivery benchmark (loopback only). In one run, against the release binary:
#   1. floor:     GET /healthz                      (the HTTP stack alone)
#   2. accept:    POST of a queued route, ERP down  (validate + store + 202; the queue grows)
#   3. direct:    POST of the same route, direct    (through to a fast ERP stub, for contrast)
#   4. drain:     the queue from step 2 delivered to the fast ERP stub (items/s)
# and prints req/s, p99, the store's size per item and the gateway's peak RSS.
#
# Usage: benches/queue.sh        Env: DURATION (10s) CONNS (64) THREADS (2) VENEER_BIN
#        STORE=redis benches/queue.sh   the fleet store: redis-server with appendfsync always
# Needs wrk and nginx (apt-get install wrk nginx-light), and redis-server for STORE=redis.
STORE=${STORE:-redb}
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}

command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "needs wrk and nginx" >&2; exit 1; }
# VENEER_BIN: a binary to measure instead of building the release one.
if [ -z "${VENEER_BIN:-}" ]; then cargo build --profile release-lto --quiet; fi
BIN=${VENEER_BIN:-$PWD/target/release-lto/veneer}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ERP_PORT=$(free_port)
GW_PORT=$(free_port)

# The fast ERP stub: nginx answering every POST with a PostSensorReadingResponse.
mkdir -p "$WORK/nginx/tmp"
cat > "$WORK/nginx/erp.conf" <<EOF
daemon off; worker_processes 1; pid $WORK/nginx/pid; error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000; client_body_temp_path $WORK/nginx/tmp;
  server { listen 127.0.0.1:$ERP_PORT;
    location / { default_type "text/xml; charset=utf-8";
      return 200 '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><PostSensorReadingResponse xmlns="urn:veneer:sample-erp"><Entry_No>1</Entry_No><Accepted>true</Accepted></PostSensorReadingResponse></soap:Body></soap:Envelope>'; } } }
EOF

# The gateway: one queued and one direct route on PostSensorReading, no auth (the store is
# what is measured).
mkdir -p "$WORK/config/wsdl" "$WORK/config/routes"
cp config/wsdl/sample-erp.wsdl "$WORK/config/wsdl/"
if [ "$STORE" = redis ]; then
  REDIS_PORT=$(free_port)
  mkdir -p "$WORK/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always --dir "$WORK/redis" >/dev/null &
  PIDS+=("$!")
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  STORE_YAML="redis: { url: \"redis://127.0.0.1:$REDIS_PORT/\" }"
else
  STORE_YAML="data_dir: data"
fi
cat > "$WORK/config/gateway.yaml" <<EOF
server: { max_connections: 10000 }
delivery: { $STORE_YAML, backoff: 200ms, max_backoff: 1s }
backends:
  erp: { url: "http://127.0.0.1:$ERP_PORT/soap", wsdl: wsdl/sample-erp.wsdl, max_concurrency: 64, connect_timeout: 200ms }
EOF
cat > "$WORK/config/routes/readings.yaml" <<'EOF'
routes:
  - { route: "POST /queued", backend: erp, operation: PostSensorReading, delivery: queued }
  - { route: "POST /direct", backend: erp, operation: PostSensorReading }
EOF
cat > "$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"sensorId":"T-100","machineId":"M-7","timestamp":"2026-11-28T10:00:00Z","value":21.5,"unit":"Cel"}'
EOF

RUST_LOG=warn "$BIN" serve --config "$WORK/config" --listen "127.0.0.1:$GW_PORT" 2>"$WORK/gateway.log" &
GW_PID=$!; PIDS+=("$GW_PID")
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$GW_PORT/healthz" >/dev/null && break; sleep 0.1; done

run() { # name, method-script, path
  local out
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency ${2:+-s "$2"} "http://127.0.0.1:$GW_PORT$3")
  local rps p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  printf '| %-8s | %10s | %8s | %s |\n' "$1" "$rps" "$p99" "${non2xx:-0}"
}
accepted() { curl -fs "http://127.0.0.1:$GW_PORT/metrics" | awk '/^veneer_deliveries_total.*event="accepted"/ {s+=$2} END {printf "%d", s}'; }

echo "| step     |      req/s |      p99 | non-2xx |"
echo "|----------|------------|----------|---------|"
run floor "" /healthz
run accept "$WORK/post.lua" /queued
QUEUED=$(accepted)
if [ "$STORE" = redis ]; then
  DB_BYTES=$(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/ {print $2+0}')
else
  DB_BYTES=$(stat -c %s "$WORK/config/data/veneer.redb")
fi
echo
echo "queued while the ERP was down ($STORE): $QUEUED items; store $((DB_BYTES / 1024 / 1024)) MiB ($((DB_BYTES / (QUEUED > 0 ? QUEUED : 1))) bytes/item)"

# The ERP comes up: the queue drains; then the direct route for contrast.
nginx -p "$WORK/nginx/" -c "$WORK/nginx/erp.conf" &
PIDS+=("$!")
START=$(date +%s.%N)
while :; do
  # The gauge lags by up to 10 s; the delivered counter does not.
  DELIVERED=$(curl -fs "http://127.0.0.1:$GW_PORT/metrics" | awk '/^veneer_deliveries_total.*event="delivered"/ {s+=$2} END {print s+0}')
  [ "${DELIVERED%.*}" -ge "$QUEUED" ] && break
  sleep 0.2
done
END=$(date +%s.%N)
echo "drained $QUEUED items in $(python3 -c "print(f'{$END-$START:.1f}')") s: $(python3 -c "print(int($QUEUED/($END-$START)))") items/s"
echo
echo "| step     |      req/s |      p99 | non-2xx |"
echo "|----------|------------|----------|---------|"
run direct "$WORK/post.lua" /direct
echo
echo "gateway peak RSS: $(awk '/VmHWM/ {print int($2/1024)}' "/proc/$GW_PID/status") MiB"

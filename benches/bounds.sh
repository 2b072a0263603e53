#!/usr/bin/env bash
# What the stores' bounds hold, measured (loopback only). In one run:
#   1. idempotency, large answers: keyed POSTs whose answer is a 1 000-order list (~220 KB),
#      in-memory records (no data_dir), with the defaults (answers above 64 KiB kept as a
#      digest) and with the bound lifted (the behaviour before it): the gateway's RSS;
#   2. idempotency, many small records: keyed POSTs with small answers and
#      idempotency_max_bytes: 2MiB, against 1GiB: RSS and requests sent;
#   3. the embedded queue at max_items 5000 with the ERP down: accepted, refused (503)
#      and the store file's size.
#
# Usage: benches/bounds.sh     Env: DURATION (10s) CONNS (32) THREADS (2) VENEER_BIN
# Needs wrk and nginx (apt-get install wrk nginx-light).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}

command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "needs wrk and nginx" >&2; exit 1; }
if [ -z "${VENEER_BIN:-}" ]; then cargo build --profile release-lto --quiet; fi
BIN=${VENEER_BIN:-$PWD/target/release-lto/veneer}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ERP_PORT=$(free_port)

# The ERP stub: nginx answering ListProductionOrders with 1 000 orders, and
# PostSensorReading with one entry.
mkdir -p "$WORK/nginx/tmp"
python3 - "$WORK/nginx" <<'EOF'
import sys
orders = "".join(
    f"<ProductionOrder><No>PO-{i:05}</No><Status>Released</Status><Source_No>ITEM-{i % 97:04}</Source_No>"
    f"<Quantity>{i % 50 + 1}.000</Quantity><Finished_Quantity>0</Finished_Quantity><Due_Date>2026-12-{i % 28 + 1:02}</Due_Date></ProductionOrder>"
    for i in range(1000))
env = lambda body: ('<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
                    + body + '</soap:Body></soap:Envelope>')
open(f"{sys.argv[1]}/list.xml", "w").write(env(f'<ListProductionOrdersResponse xmlns="urn:veneer:sample-erp">{orders}</ListProductionOrdersResponse>'))
open(f"{sys.argv[1]}/post.xml", "w").write(env('<PostSensorReadingResponse xmlns="urn:veneer:sample-erp"><Entry_No>1</Entry_No><Accepted>true</Accepted></PostSensorReadingResponse>'))
EOF
# The files are in a private temporary directory: as root, nginx's worker reads them as
# root too (run as another user, the directive is ignored and the user owns them).
cat > "$WORK/nginx/erp.conf" <<EOF
user root; daemon off; worker_processes 1; pid $WORK/nginx/pid; error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000; client_body_temp_path $WORK/nginx/tmp;
  server { listen 127.0.0.1:$ERP_PORT; default_type "text/xml; charset=utf-8";
    # nginx serves static files to GET only; a POST's 405 is turned into the file, 200.
    location /list { error_page 405 =200 \$uri; alias $WORK/nginx/list.xml; }
    location /post { error_page 405 =200 \$uri; alias $WORK/nginx/post.xml; } } }
EOF
nginx -p "$WORK/nginx/" -c "$WORK/nginx/erp.conf" &
NGINX_PID=$!; PIDS+=("$NGINX_PID")

cat > "$WORK/keyed.lua" <<'EOF'
-- A fresh Idempotency-Key for every request (thread id and a counter).
local n, id = 0, 0
function setup(thread) id = id + 1; thread:set("tid", id) end
function request()
  n = n + 1
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "k-" .. tid .. "-" .. n }, wrk.body)
end
EOF

# gateway NAME DELIVERY_YAML: starts the gateway with one list route and one write route.
gateway() {
  local dir="$WORK/$1" port
  port=$(free_port)
  mkdir -p "$dir/wsdl" "$dir/routes"
  cp config/wsdl/sample-erp.wsdl "$dir/wsdl/"
  cat > "$dir/gateway.yaml" <<EOF
server: { max_connections: 10000 }
delivery: { $2 }
backends:
  list: { url: "http://127.0.0.1:$ERP_PORT/list", wsdl: wsdl/sample-erp.wsdl, max_concurrency: 64, max_response: 4MiB }
  erp: { url: "http://127.0.0.1:$ERP_PORT/post", wsdl: wsdl/sample-erp.wsdl, max_concurrency: 64, connect_timeout: 200ms }
EOF
  cat > "$dir/routes/bench.yaml" <<'EOF'
routes:
  - { route: "POST /orders/search", backend: list, operation: ListProductionOrders, request: { Status: "{body.status}" } }
  - { route: "POST /readings", backend: erp, operation: PostSensorReading }
EOF
  case "$2" in *data_dir*) echo '  - { route: "POST /queued", backend: erp, operation: PostSensorReading, delivery: queued }' >> "$dir/routes/bench.yaml" ;; esac
  RUST_LOG=warn "$BIN" serve --config "$dir" --listen "127.0.0.1:$port" 2>"$dir/gateway.log" &
  GW_PID=$!; PIDS+=("$GW_PID")
  GW="http://127.0.0.1:$port"
  for _ in $(seq 200); do curl -fs "$GW/readyz" >/dev/null && break; sleep 0.1; done
}
rss() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$GW_PID/status"; }
load() { # body, path: wrk's requests and non-2xx
  { printf 'wrk.body = [[%s]]\n' "$1"; cat "$WORK/keyed.lua"; } > "$WORK/run.lua"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$WORK/run.lua" "$GW$2" |
    awk '/requests in/ {r=$1} /Non-2xx/ {n=$NF} END {printf "%s requests, %s non-2xx", r, n+0}'
}

LIST='{"status":"Released"}'
READING='{"sensorId":"T-100","machineId":"M-7","timestamp":"2026-11-28T10:00:00Z","value":21.5,"unit":"Cel"}'

echo "1. keyed POSTs with a ~220 KB answer, records in memory"
for mode in "bounded (defaults)|idempotency_ttl: 24h" \
            "unbounded (before)|idempotency_max_answer: 16MiB, idempotency_max_bytes: 64GiB"; do
  name=${mode%%|*}
  gateway "idem-${name%% *}" "${mode#*|}"
  before=$(rss)
  sent=$(load "$LIST" /orders/search)
  echo "   $name: $sent; RSS $before → $(rss) MiB"
  kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
done

echo "2. keyed POSTs with a small answer"
for mode in "idempotency_max_bytes: 2MiB" "idempotency_max_bytes: 1GiB"; do
  gateway "small-${mode##* }" "$mode"
  before=$(rss)
  sent=$(load "$READING" /readings)
  sleep 1 # a trim started by the last requests finishes
  echo "   $mode: $sent; RSS $before → $(rss) MiB"
  kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
done

echo "3. the embedded queue at max_items 5000, the ERP down"
kill "$NGINX_PID"
gateway queue "data_dir: data, max_items: 5000"
sent=$(load "$READING" /queued)
accepted=$(curl -fs "$GW/metrics" | awk '/^veneer_deliveries_total.*event="accepted"/ {s+=$2} END {printf "%d", s}')
refused=$(curl -fs "$GW/metrics" | awk '/^veneer_deliveries_total.*event="refused_full"/ {s+=$2} END {printf "%d", s}')
echo "   $sent; accepted $accepted, refused full $refused; store $(du -k "$WORK/queue/data/veneer.redb" | cut -f1) KiB on disk; RSS $(rss) MiB"

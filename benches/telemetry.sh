#!/usr/bin/env bash
# Telemetry ingest benchmark (loopback only). In one run, against the release binary, with
# a fast ERP stub (nginx) behind a queued route and a °F→Cel sensor pattern T-*:
#   1. telemetry: POST /telemetry, 100 readings per request (wrk)
#   2. mqtt:      N readings published at QoS 1 (mosquitto_pub -l, PUBS topics), until the
#                 gateway has acknowledged them all (stored first, then acked)
#   3. node:      the same N messages through the integration guide's Node bridge
#                 (benches/node-bridge: mqtt.js + axios, one POST per reading to the
#                 per-reading queued route), until it has had N 202s
# and prints readings/s, CPU µs per reading (the gateway's, and the bridge's), p99, peak RSS
# and the ratios Veneer MQTT vs Node bridge. Each mode gets a fresh gateway and store.
# The ERP stub is down while readings come in (so every mode's CPU figure is ingest alone,
# not a share of the deliveries that happened to run alongside; the admin pause needs a
# token, and auth would tax the HTTP modes), then up: the mqtt and node backlogs are
# drained and the delivery's own cost is printed.
#
# Usage: benches/telemetry.sh    Env: DURATION (10s) CONNS (16) THREADS (2) N (50000)
#        PUBS (4 publishers) SOCKETS (64, the bridge's) ERP_DURING (down; up delivers during ingest)
#        TIMEOUT (300 s per wait) VENEER_BIN
# Needs wrk, nginx, mosquitto (+ mosquitto_pub), node and npm; `npm ci` runs in
# benches/node-bridge when its node_modules is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
THREADS=${THREADS:-2}
N=${N:-50000}
PUBS=${PUBS:-4}
SOCKETS=${SOCKETS:-64}
ERP_DURING=${ERP_DURING:-down}
TIMEOUT=${TIMEOUT:-300}

MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
for tool in wrk nginx "$MOSQUITTO" mosquitto_pub node npm curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
# VENEER_BIN: a binary to measure instead of building the release one.
if [ -z "${VENEER_BIN:-}" ]; then cargo build --profile release-lto --quiet; fi
BIN=${VENEER_BIN:-$PWD/target/release-lto/veneer}
if [ ! -d benches/node-bridge/node_modules ]; then
  (cd benches/node-bridge && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
TICK=$(getconf CLK_TCK)
cpu_us() { awk -v t="$TICK" '{printf "%d", ($14 + $15) * 1000000 / t}' "/proc/$1/stat"; }
peak_mib() { awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }
calc() { python3 -c "print($1)"; }
ERP_PORT=$(free_port)
MQTT_PORT=$(free_port)

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
ERP_PID=""
erp_up() { if [ -z "$ERP_PID" ]; then nginx -p "$WORK/nginx/" -c "$WORK/nginx/erp.conf" & ERP_PID=$!; PIDS+=("$ERP_PID"); fi; }
erp_down() { if [ -n "$ERP_PID" ]; then stop "$ERP_PID"; ERP_PID=""; fi; }

# The edge broker (as tests/common Mosquitto).
mkdir -p "$WORK/mosquitto"
cat > "$WORK/mosquitto/mosquitto.conf" <<EOF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
max_inflight_messages 1000
max_queued_messages 100000
persistence false
log_dest stderr
log_type error
EOF
"$MOSQUITTO" -c "$WORK/mosquitto/mosquitto.conf" 2>"$WORK/mosquitto/mosquitto.log" &
PIDS+=("$!")
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && break; sleep 0.1; done

# The config: a queued route on PostSensorReading, a T-* sensor pattern (°F in, Cel to the
# ERP) whose body maps to it, MQTT topics factory/{plant}/{machine}/{sensor}; no auth.
mkdir -p "$WORK/config/wsdl" "$WORK/config/routes" "$WORK/config/sensors"
cp config/wsdl/sample-erp.wsdl "$WORK/config/wsdl/"
cat > "$WORK/config/routes/queued.yaml" <<'EOF'
routes:
  - route: "POST /sensor-readings/queued"
    backend: erp
    operation: PostSensorReading
    summary: Record a machine sensor reading, delivered to the ERP in the background
    delivery: queued
EOF
cat > "$WORK/config/sensors/bench.yaml" <<'EOF'
topics:
  - "factory/{plant}/{machine}/{sensor}"
sensors:
  - id: "T-*"
    quantity: temperature
    unit: "[degF]"
    erp_unit: Cel
    erp_unit_label: C
    range: [-40, 900]
    decimals: 2
    machine: PRESS-01
    route: "POST /sensor-readings/queued"
    body:
      sensorId: "{sensor}"
      machineId: "{machine}"
      timestamp: "{timestamp}"
      value: "{value}"
      unit: "{unit}"
EOF
gateway_yaml() { # with_mqtt(0|1) client_id
  cat > "$WORK/config/gateway.yaml" <<EOF
server: { max_connections: 10000 }
delivery: { data_dir: data, backoff: 200ms, max_backoff: 1s }
telemetry: { max_age: 3650d }
backends:
  erp: { url: "http://127.0.0.1:$ERP_PORT/soap", wsdl: wsdl/sample-erp.wsdl, max_concurrency: 64, connect_timeout: 200ms }
EOF
  if [ "$1" = 1 ]; then
    echo "mqtt: { url: \"mqtt://127.0.0.1:$MQTT_PORT\", client_id: \"$2\" }" >> "$WORK/config/gateway.yaml"
  fi
}

GW_PID=""
GW_PORT=""
metrics() { curl -fs "http://127.0.0.1:$GW_PORT/metrics"; }
metric() { # name, label filter (a regex on the line), summed
  metrics | awk -v n="$1" -v f="$2" '$1 ~ "^"n"[{ ]" || $1 == n { if ($0 ~ f) s += $NF } END {printf "%d", s}'
}
retried() { metric veneer_deliveries_total 'event="retried"'; }  # delivery attempts that failed (the ERP is down during ingest)
start_gateway() { # with_mqtt client_id
  stop_gateway
  rm -rf "$WORK/config/data"
  gateway_yaml "$1" "${2:-}"
  GW_PORT=$(free_port)
  RUST_LOG=warn,veneer::ingest::mqtt=info "$BIN" serve --config "$WORK/config" --listen "127.0.0.1:$GW_PORT" \
    2>"$WORK/gateway-$MODE.log" &
  GW_PID=$!; PIDS+=("$GW_PID")
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$GW_PORT/healthz" >/dev/null && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:$GW_PORT/healthz" >/dev/null || { cat "$WORK/gateway-$MODE.log" >&2; exit 1; }
  if [ "$ERP_DURING" = down ]; then erp_down; else erp_up; fi
}
stop_gateway() { if [ -n "$GW_PID" ]; then stop "$GW_PID"; GW_PID=""; fi; }
wait_until() { # description, command: polls every 0.1 s up to TIMEOUT s
  local what=$1; shift
  local deadline=$(($(date +%s) + TIMEOUT))
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "timed out after ${TIMEOUT}s waiting for $what" >&2; return 1; fi
    sleep 0.1
  done
}
# The readings counted: veneer_readings_total{origin,outcome} for telemetry and MQTT; the
# route's accepted deliveries for the bridge (it does not go through the dictionary).
outcomes() { # origin
  metrics | awk -v o="origin=\"$1\"" '/^veneer_readings_total/ && index($0, o) {
      match($0, /outcome="[a-z]+"/); k = substr($0, RSTART + 9, RLENGTH - 10); s[k] += $NF }
    END { printf "queued=%d rejected=%d failed=%d delivered=%d", s["queued"], s["rejected"], s["failed"], s["delivered"] }'
}
# Brings the ERP up and waits until the backlog reached it: items/s and CPU µs/item,
# counted from the first delivery (the backend is held back for up to max_backoff after
# it was found down).
drain() { # items
  local items=$1 t0 c0 t1 c1 d0
  erp_up
  delivered() { [ "$(metric veneer_deliveries_total 'event="delivered"')" -ge "$1" ]; }
  if wait_until "the first delivery" delivered 1; then
    t0=$(now_ms); c0=$(cpu_us "$GW_PID"); d0=$(metric veneer_deliveries_total 'event="delivered"')
  fi
  if [ -n "${t0:-}" ] && wait_until "$items deliveries" delivered "$items"; then
    t1=$(now_ms); c1=$(cpu_us "$GW_PID")
    DRAIN["$MODE"]="$(calc "int(($items - $d0) * 1000 / max(1, $t1 - $t0))") items/s, $(calc "round(($c1 - $c0) / max(1, $items - $d0), 1)") µs gateway CPU/item ($(retried) retries in all while the ERP was down)"
  else
    DRAIN["$MODE"]="not drained: $(metric veneer_deliveries_total 'event="delivered"') of $items in ${TIMEOUT}s"
  fi
}

declare -A RPS P99 GWCPU NODECPU GWRSS NODERSS COUNTED DRAIN NOTE
NOW_ISO=$(date -u -d '-1 min' +%Y-%m-%dT%H:%M:%SZ)

# 1. POST /telemetry, 100 readings per request (the same 100, T-0..T-99, one timestamp).
MODE=telemetry
python3 - "$NOW_ISO" > "$WORK/post.lua" <<'EOF'
import json, sys
body = json.dumps([{"sensor": f"T-{i}", "value": round(60 + i * 0.5, 1), "timestamp": sys.argv[1]} for i in range(100)],
                  separators=(",", ":"))
print('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = ' + json.dumps(body))
EOF
start_gateway 0
r0=$(retried)
c0=$(cpu_us "$GW_PID")
out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$WORK/post.lua" "http://127.0.0.1:$GW_PORT/telemetry")
c1=$(cpu_us "$GW_PID")
secs=$(awk '/requests in/ {sub(/,$/, "", $4); print $4}' <<<"$out")
case $secs in *ms) secs=$(calc "${secs%ms} / 1000") ;; *m) secs=$(calc "${secs%m} * 60") ;; *s) secs=${secs%s} ;; esac
non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
counts=$(outcomes http)
queued=$(sed -E 's/.*queued=([0-9]+).*/\1/' <<<"$counts")
RPS[$MODE]="$(calc "int($queued / $secs)") ($(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out") req/s)"
P99[$MODE]="$(awk '$1=="99%" {print $2}' <<<"$out") /request"
GWCPU[$MODE]=$(calc "round(($c1 - $c0) / max(1, $queued), 2)")
NODECPU[$MODE]="-"; NODERSS[$MODE]="-"
GWRSS[$MODE]=$(peak_mib "$GW_PID")
COUNTED[$MODE]="$counts non-2xx=${non2xx:-0}"
NOTE[$MODE]="$(($(retried) - r0)) delivery retries (ERP down) in the window"
DRAIN[$MODE]="not drained (a backlog of $queued)"
stop_gateway

# The MQTT messages: N readings in °F, PUBS topics factory/P1/M{k}/T-{k}, distinct timestamps.
python3 - "$N" "$PUBS" "$WORK" <<'EOF'
import sys, time
n, pubs, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = int(time.time() * 1000) - 3_600_000
for k in range(pubs):
    with open(f"{work}/pub-{k}.txt", "w") as f:
        for i in range(k, n, pubs):
            f.write('{"value":%.1f,"timestamp":%d}\n' % (60 + (i % 400) * 0.5, base + i))
EOF
publish() { # starts the publishers; PUB_PIDS
  PUB_PIDS=()
  for k in $(seq 0 $((PUBS - 1))); do
    mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -M 100 -t "factory/P1/M$k/T-$k" -l <"$WORK/pub-$k.txt" \
      2>>"$WORK/pub.log" &
    PUB_PIDS+=("$!"); PIDS+=("$!")
  done
}
publishing() { # called while polling: PUB_MS is set once every publisher has exited
  local p
  [ -n "$PUB_MS" ] && return 0
  for p in "${PUB_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done
  PUB_MS=$(now_ms)
}
published() { # waits for the publishers (they have exited when the readings are all in)
  for p in "${PUB_PIDS[@]}"; do wait "$p" || { echo "mosquitto_pub failed: $(cat "$WORK/pub.log")" >&2; exit 1; }; done
  [ -n "$PUB_MS" ] || PUB_MS=$(now_ms)
}

# 2. MQTT into the gateway.
MODE=mqtt
start_gateway 1 "veneer-bench-$$"
wait_until "the gateway's MQTT subscription" grep -q "MQTT subscribed" "$WORK/gateway-$MODE.log"
sleep 1 # logged when the SUBSCRIBE is queued, not when the broker has it
acked() { publishing; [ "$(metric veneer_mqtt_messages_total 'event="acked"')" -ge "$N" ]; }
r0=$(retried); PUB_MS=""
t0=$(now_ms); c0=$(cpu_us "$GW_PID")
publish
wait_until "$N MQTT acks" acked
t1=$(now_ms); c1=$(cpu_us "$GW_PID")
r1=$(retried)
published
counts=$(outcomes mqtt)
queued=$(sed -E 's/.*queued=([0-9]+).*/\1/' <<<"$counts")
RPS[$MODE]=$(calc "int($queued * 1000 / ($t1 - $t0))")
P99[$MODE]="-"
GWCPU[$MODE]=$(calc "round(($c1 - $c0) / max(1, $queued), 2)")
NODECPU[$MODE]="-"; NODERSS[$MODE]="-"
GWRSS[$MODE]=$(peak_mib "$GW_PID")
COUNTED[$MODE]="$counts acked=$(metric veneer_mqtt_messages_total 'event="acked"') mqtt-rejected=$(metric veneer_mqtt_messages_total 'event="rejected"')"
NOTE[$MODE]="published in $(calc "round(($PUB_MS - $t0) / 1000, 2)") s, all acked in $(calc "round(($t1 - $t0) / 1000, 2)") s; $((r1 - r0)) delivery retries (ERP down) in the window"
MQTT_QUEUED=$queued
drain "$queued"
stop_gateway
# The broker keeps the gateway's session (and would queue the bridge's messages for it):
# a clean-session connect under its client id ends it.
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -i "veneer-bench-$$" -t bench/none -E

# 3. The Node bridge: the same messages, one POST each to the per-reading queued route.
MODE=node
start_gateway 0
BROKER="mqtt://127.0.0.1:$MQTT_PORT" URL="http://127.0.0.1:$GW_PORT/sensor-readings/queued" COUNT=$N SOCKETS=$SOCKETS \
  node benches/node-bridge/bridge.mjs >"$WORK/bridge.out" 2>"$WORK/bridge.err" &
BRIDGE=$!; PIDS+=("$BRIDGE")
wait_until "the bridge's subscription" grep -q subscribed "$WORK/bridge.out"
r0=$(retried); PUB_MS=""
t0=$(now_ms); c0=$(cpu_us "$GW_PID")
publish
bridged() { publishing; grep -q finished_ms "$WORK/bridge.out" || ! kill -0 "$BRIDGE" 2>/dev/null; }
wait_until "the bridge's $N POSTs" bridged
c1=$(cpu_us "$GW_PID")
r1=$(retried)
published
grep -q finished_ms "$WORK/bridge.out" || { echo "the bridge failed: $(cat "$WORK/bridge.err")" >&2; exit 1; }
stop "$BRIDGE"
summary=$(grep finished_ms "$WORK/bridge.out")
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$summary" "$1"; }
t1=$(field finished_ms)
ok=$(field ok)
accepted=$(metric veneer_deliveries_total 'event="accepted"')
RPS[$MODE]=$(calc "int($accepted * 1000 / ($t1 - $t0))")
P99[$MODE]="$(field p99_ms | xargs printf '%.0f')ms message->202"
GWCPU[$MODE]=$(calc "round(($c1 - $c0) / max(1, $accepted), 2)")
NODECPU[$MODE]=$(calc "round($(field cpu_us) / max(1, $ok), 2)")
GWRSS[$MODE]=$(peak_mib "$GW_PID")
NODERSS[$MODE]=$(calc "int($(field max_rss_kb) / 1024)")
COUNTED[$MODE]="202s=$ok failed=$(field failed) $(field errors) accepted=$accepted"
NOTE[$MODE]="published in $(calc "round(($PUB_MS - $t0) / 1000, 2)") s, all POSTed in $(calc "round(($t1 - $t0) / 1000, 2)") s; $((r1 - r0)) delivery retries (ERP down) in the window; node peak RSS from its backlog of pending POSTs"
NODE_OK=$accepted
drain "$accepted"
stop_gateway

echo "readings: telemetry ${DURATION} x ${CONNS} connections; mqtt and node N=$N on $PUBS topics (QoS 1)"
echo
echo "| mode      | readings/s             | p99                    | gw CPU µs/rdg    | node CPU µs/rdg  | total CPU µs/rdg | gw peak RSS  | node peak RSS |"
echo "|-----------|------------------------|------------------------|------------------|------------------|------------------|--------------|---------------|"
for m in telemetry mqtt node; do
  total=${GWCPU[$m]}
  [ "${NODECPU[$m]}" != "-" ] && total=$(calc "round(${GWCPU[$m]} + ${NODECPU[$m]}, 2)")
  rss=${NODERSS[$m]}; [ "$rss" != "-" ] && rss="$rss MiB"
  printf '| %-9s | %-22s | %-22s | %-16s | %-16s | %-16s | %-12s | %-13s |\n' "$m" "${RPS[$m]}" "${P99[$m]}" \
    "${GWCPU[$m]}" "${NODECPU[$m]}" "$total" "${GWRSS[$m]} MiB" "$rss"
done
echo
for m in telemetry mqtt node; do echo "$m: ${COUNTED[$m]}${NOTE[$m]:+; ${NOTE[$m]}}"; done
if [ "$ERP_DURING" = down ]; then echo "the ERP was down during ingest; then up, drained:"; else echo "deliveries ran during ingest; the rest drained:"; fi
for m in telemetry mqtt node; do echo "  $m: ${DRAIN[$m]}"; done
echo
NODE_TOTAL=$(calc "${GWCPU[node]} + ${NODECPU[node]}")
echo "Veneer MQTT vs Node bridge: $(calc "round(${RPS[mqtt]} / max(1, ${RPS[node]}), 1)")x the readings/s," \
  "$(calc "round($NODE_TOTAL / max(0.01, ${GWCPU[mqtt]}), 1)")x less CPU per reading (gateway vs gateway + node)," \
  "$(calc "round(${GWCPU[node]} / max(0.01, ${GWCPU[mqtt]}), 1)")x less gateway CPU per reading"
if [ "$MQTT_QUEUED" -ne "$N" ] || [ "$NODE_OK" -ne "$N" ]; then
  echo "NOTE: not every reading was accepted (mqtt $MQTT_QUEUED, node $NODE_OK of $N); the figures count accepted ones"
fi

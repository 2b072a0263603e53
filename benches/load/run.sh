#!/usr/bin/env bash
# Benchmark harness for the REST/JSON -> SOAP facade gateway (see RESULTS.md).
#
# Starts the fixed SOAP backend (nginx), the nginx pass-through limit, the hand-written
# peers (Node.js express+soap with 1 and 2 processes, Python FastAPI+zeep with 2 workers)
# and, when GATEWAY_CMD and GATEWAY_URL are set, the gateway under test. Checks each
# target's answer for GET /items/1000, then times them interleaved (A B C A B C ...),
# prints a table and stops every process it started (and nothing else).
#
# Usage:  bench/run.sh
#   GATEWAY_CMD='/path/to/gateway --listen 127.0.0.1:18090' \
#   GATEWAY_URL='http://127.0.0.1:18090/items/1000' bench/run.sh
#
# Env (defaults):
#   GATEWAY_CMD, GATEWAY_URL  extra target: command (run with bash -c in the caller's cwd, must
#                             stay in the foreground) and its URL for GET /items/1000
#   GATEWAY_NAME (gateway)    its name in the table
#   TARGETS ("direct passthrough node-1 node-2 python-2")  targets and their order
#   ROUNDS (3)  DURATION (10s)  WARMUP (3s)  THREADS (2)  CONNS (64)
#   LAT_RATE (100)  LAT_CONNS (8)  LAT_DURATION (10s)   paced latency run, req/s in total
#   READY_TIMEOUT (60)        seconds a target may take to answer after start
#   OUT (results/<timestamp>) where raw output, logs and summary.md go
# Loopback only: every address used is 127.0.0.1. Needs nginx, wrk, curl, python3 and
# bench/setup.sh having installed the peers.

set -uo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CALLER_DIR="$PWD"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
LAT_RATE=${LAT_RATE:-100}
LAT_CONNS=${LAT_CONNS:-8}
LAT_DURATION=${LAT_DURATION:-10s}
READY_TIMEOUT=${READY_TIMEOUT:-60}
TARGETS=${TARGETS:-"direct passthrough node-1 node-2 python-2"}
GATEWAY_CMD=${GATEWAY_CMD:-}
GATEWAY_URL=${GATEWAY_URL:-}
GATEWAY_NAME=${GATEWAY_NAME:-gateway}
OUT=${OUT:-$BENCH/results/$(date +%Y%m%d-%H%M%S)}

BACKEND_URL="http://127.0.0.1:18080/erp/soap"
PY_VENV="$BENCH/peers/python/venv"
NODE_DIR="$BENCH/peers/node"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- targets
declare -A T_CMD T_URL T_CHECK T_POST T_PORT T_DESC T_PID T_OK T_READY T_IDLE
T_URL[direct]="$BACKEND_URL";               T_CHECK[direct]=soap;  T_POST[direct]=1; T_PORT[direct]=18080
T_DESC[direct]="nginx fixed SOAP responder, POSTed directly (no proxy)"
T_CMD[passthrough]="nginx -p $BENCH/ -c nginx/passthrough.conf -e run/passthrough-error.log"
T_URL[passthrough]="http://127.0.0.1:18081/items/1000"; T_CHECK[passthrough]=xml; T_PORT[passthrough]=18081
T_DESC[passthrough]="nginx reverse proxy GET->POST, no translation (the limit)"
T_CMD[node-1]="env PORT=18082 WORKERS=1 node $NODE_DIR/server.js"
T_URL[node-1]="http://127.0.0.1:18082/items/1000"; T_CHECK[node-1]=json; T_PORT[node-1]=18082
T_DESC[node-1]="Node.js express + soap, 1 process"
T_CMD[node-2]="env PORT=18083 WORKERS=2 node $NODE_DIR/server.js"
T_URL[node-2]="http://127.0.0.1:18083/items/1000"; T_CHECK[node-2]=json; T_PORT[node-2]=18083
T_DESC[node-2]="Node.js express + soap, cluster primary + 2 workers"
T_CMD[python-2]="$PY_VENV/bin/uvicorn --app-dir $BENCH/peers/python app:app --host 127.0.0.1 --port 18084 --workers 2 --no-access-log --log-level warning"
T_URL[python-2]="http://127.0.0.1:18084/items/1000"; T_CHECK[python-2]=json; T_PORT[python-2]=18084
T_DESC[python-2]="Python FastAPI + uvicorn + zeep AsyncClient, 2 workers"

read -r -a ORDER <<< "$TARGETS"
if [[ -n "$GATEWAY_CMD" || -n "$GATEWAY_URL" ]]; then
  [[ -n "$GATEWAY_CMD" && -n "$GATEWAY_URL" ]] || die "set both GATEWAY_CMD and GATEWAY_URL"
  [[ "$GATEWAY_URL" =~ ^http://(127\.[0-9.]+|localhost|\[::1\]):([0-9]+)/ ]] \
    || die "GATEWAY_URL must be a loopback http URL, e.g. http://127.0.0.1:18090/items/1000"
  T_CMD[$GATEWAY_NAME]="$GATEWAY_CMD"; T_URL[$GATEWAY_NAME]="$GATEWAY_URL"
  T_CHECK[$GATEWAY_NAME]=json; T_PORT[$GATEWAY_NAME]="${BASH_REMATCH[2]}"
  T_DESC[$GATEWAY_NAME]="gateway under test: $GATEWAY_CMD"
  ORDER+=("$GATEWAY_NAME")
fi
for t in "${ORDER[@]}"; do
  [[ -n "${T_URL[$t]:-}" ]] || die "unknown target '$t' (known: direct passthrough node-1 node-2 python-2, or set GATEWAY_CMD/GATEWAY_URL)"
done

# ---------------------------------------------------------------- prerequisites
for bin in nginx wrk curl python3 setsid; do
  command -v "$bin" >/dev/null || die "$bin not found (run bench/setup.sh)"
done
[[ " ${ORDER[*]} " == *" node-"* && ! -d "$NODE_DIR/node_modules" ]] && die "peers/node/node_modules missing (run bench/setup.sh)"
[[ " ${ORDER[*]} " == *" python-"* && ! -x "$PY_VENV/bin/uvicorn" ]] && die "peers/python/venv missing (run bench/setup.sh)"

mkdir -p "$BENCH/run/tmp" "$OUT/raw" "$OUT/logs"
exec 9>"$BENCH/run/lock"
flock -n 9 || die "another bench/run.sh is running"

# ports must be free: we never stop a process we did not start
ports_in_use=$(ss -Htln 2>/dev/null | awk '{print $4}')
for t in direct "${ORDER[@]}"; do
  p=${T_PORT[$t]}
  if grep -Eq "(^|[:.])${p}\$" <<< "$ports_in_use"; then
    die "port $p (for $t) is already in use; stop whatever listens there first"
  fi
done

# ---------------------------------------------------------------- process control
STARTED=()   # PIDs we started; each is the leader of its own process group (setsid)

start_proc() {   # name dir command-string
  local name=$1 dir=$2 cmd=$3
  # setsid: the target leads its own process group (PID = PGID), so its workers can be
  # measured and stopped by that ID. fd 9 (the run lock) is not passed on.
  ( cd "$dir" && exec setsid bash -c "$cmd" ) > "$OUT/logs/$name.log" 2>&1 9>&- &
  local pid=$!
  STARTED+=("$pid")
  T_PID[$name]=$pid
  echo "$name $pid $cmd" >> "$OUT/pids.txt"
  log "started $name: pid $pid ($cmd)"
}

group_pids() {   # pgid -> PIDs of every live process in that group (the target's process tree)
  ps -eo pid=,pgid=,stat= | awk -v g="$1" '$2 == g && $3 !~ /^Z/ { print $1 }'
}

alive() {        # pid -> 0 while it runs (not a zombie)
  local s
  s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n "$s" && "$s" != Z* ]]
}

group_cpu_s() {  # pgid -> user+sys CPU seconds of the group's live processes
  local total=0 p v
  for p in $(group_pids "$1"); do
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }') || continue
    total=$((total + ${v:-0}))
  done
  awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", t / hz }'
}

group_mem_kb() {  # pgid field(VmHWM|VmRSS) -> "count sum_kb"
  local n=0 sum=0 p v
  for p in $(group_pids "$1"); do
    v=$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
    [[ -n "$v" ]] || continue
    n=$((n + 1)); sum=$((sum + v))
  done
  echo "$n $sum"
}

sys_busy_s() {   # busy CPU seconds of the whole machine so far (/proc/stat)
  awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat
}

cleanup() {
  local pid i alive
  trap - EXIT INT TERM
  ((${#STARTED[@]})) || return 0
  log "stopping ${#STARTED[@]} started process groups: ${STARTED[*]}"
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    pid=${STARTED[$i]}
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  done
  for _ in $(seq 1 50); do
    alive=0
    for pid in "${STARTED[@]}"; do [[ -n "$(group_pids "$pid")" ]] && alive=1; done
    ((alive)) || break
    sleep 0.2
  done
  for pid in "${STARTED[@]}"; do
    if [[ -n "$(group_pids "$pid")" ]]; then
      log "group $pid did not stop on SIGTERM; sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null
    fi
  done
  wait 2>/dev/null
  STARTED=()
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

wait_ready() {   # name -> 0 when the target answers its check (retried), 1 otherwise
  local name=$1 url=${T_URL[$1]} pid=${T_PID[$1]} start=$SECONDS code
  while :; do
    code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$url" 2>/dev/null)
    [[ "$code" != "000" ]] && break
    if ! alive "$pid"; then
      log "$name exited during startup; see $OUT/logs/$name.log"; tail -5 "$OUT/logs/$name.log" >&2; return 1
    fi
    (( SECONDS - start > READY_TIMEOUT )) && { log "$name not answering after ${READY_TIMEOUT}s"; return 1; }
    sleep 0.2
  done
  T_READY[$name]=$((SECONDS - start))
  return 0
}

check_target() {  # name -> runs lib/check.py (3 tries), records T_OK
  local name=$1 try
  for try in 1 2 3; do
    if python3 "$BENCH/lib/check.py" "${T_CHECK[$name]}" "${T_URL[$name]}" >> "$OUT/logs/checks.log" 2>&1; then
      T_OK[$name]=ok; return 0
    fi
    sleep 0.5
  done
  T_OK[$name]=FAIL
  log "CHECK FAILED for $name:"; tail -n 20 "$OUT/logs/checks.log" | grep FAIL >&2
  return 1
}

# ---------------------------------------------------------------- wrk
run_wrk() {   # name outfile wrk-args... ; writes wrk's stdout to outfile, its CPU to outfile.cpu
  local name=$1 outfile=$2; shift 2
  local TIMEFORMAT='%3U %3S'
  local -a envs=()
  if [[ -n "${T_POST[$name]:-}" ]]; then
    envs=(WRK_METHOD=POST "WRK_BODY_FILE=$BENCH/backend/getitem-request.xml"
          "WRK_CONTENT_TYPE=text/xml; charset=utf-8" 'WRK_SOAPACTION="urn:example:erp/GetItem"')
  fi
  # The gateway under test checks a bearer token on every call (Veneer: GATEWAY_AUTH).
  if [[ "$name" == "$GATEWAY_NAME" && -n "${GATEWAY_AUTH:-}" ]]; then
    envs+=("WRK_AUTHORIZATION=$GATEWAY_AUTH")
  fi
  { time env "${envs[@]}" "$@" -s "$BENCH/lib/wrk.lua" "${T_URL[$name]}" > "$outfile" 2>&1 ; } 2> "$outfile.cpu"
}

result_field() { # file key -> value from the RESULT line
  sed -n 's/^RESULT //p' "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'
}

# ---------------------------------------------------------------- environment record
{
  echo "date=$(date -Is)"
  echo "nproc=$(nproc)"
  echo "cpu_model=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "kernel=$(uname -r)"
  echo "nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///')"
  echo "wrk=$(wrk -v 2>&1 | awk 'NR == 1 { print $2 }')"
  echo "node=$(node --version 2>/dev/null)"
  echo "python=$("$PY_VENV/bin/python" --version 2>/dev/null | awk '{ print $2 }')"
  echo "rounds=$ROUNDS"; echo "duration=$DURATION"; echo "warmup=$WARMUP"
  echo "threads=$THREADS"; echo "conns=$CONNS"
  echo "lat_rate=$LAT_RATE"; echo "lat_conns=$LAT_CONNS"; echo "lat_duration=$LAT_DURATION"
  echo "targets=${ORDER[*]}"
  echo "gateway_cmd=$GATEWAY_CMD"; echo "gateway_url=$GATEWAY_URL"
  echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/meta.txt"
log "results in $OUT"

# ---------------------------------------------------------------- start
start_proc backend "$BENCH" "nginx -p $BENCH/ -c nginx/backend.conf -e run/backend-error.log"
T_PID[direct]=${T_PID[backend]}
T_PID_BACKEND=${T_PID[backend]}
T_URL[backend]=$BACKEND_URL
wait_ready backend || die "backend did not start"
python3 "$BENCH/lib/check.py" wsdl "$BACKEND_URL?wsdl" >> "$OUT/logs/checks.log" 2>&1 || die "backend WSDL check failed"
python3 "$BENCH/lib/check.py" soap "$BACKEND_URL" >> "$OUT/logs/checks.log" 2>&1 || die "backend SOAP answer check failed"

for t in "${ORDER[@]}"; do
  [[ "$t" == direct ]] && continue
  if [[ "$t" == "$GATEWAY_NAME" && -n "$GATEWAY_CMD" ]]; then
    start_proc "$t" "$CALLER_DIR" "$GATEWAY_CMD"
  else
    start_proc "$t" "$BENCH" "${T_CMD[$t]}"
  fi
done

# ---------------------------------------------------------------- correctness before timing
log "correctness checks (GET /items/1000 must give the right typed values)"
T_READY[direct]=0
TIMED=()
for t in "${ORDER[@]}"; do
  if [[ "$t" != direct ]] && ! wait_ready "$t"; then
    T_OK[$t]="FAIL (no start)"
    continue
  fi
  if check_target "$t"; then
    TIMED+=("$t")
  fi
  read -r _ idle <<< "$(group_mem_kb "${T_PID[$t]}" VmRSS)"
  T_IDLE[$t]=$idle
done
cat "$OUT/logs/checks.log" >&2
((${#TIMED[@]})) || die "no target passed its check"

# ---------------------------------------------------------------- timed rounds (interleaved)
printf 'round\ttarget\tphase\trps\tp50_us\tp99_us\tmax_us\trequests\terrors\ttarget_cpu_s\tbackend_cpu_s\twrk_cpu_s\tsys_busy_s\tduration_s\tloadavg1\n' \
  > "$OUT/measurements.tsv"

record() {  # round name phase file cpu_t cpu_b sysbusy
  local f=$4 errs k
  errs=0
  for k in err_connect err_read err_write err_status err_timeout; do
    errs=$((errs + $(result_field "$f" $k)))
  done
  local wcpu
  wcpu=$(awk '{ printf "%.3f", $1 + $2 }' "$f.cpu")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$1" "$2" "$3" "$(result_field "$f" rps)" "$(result_field "$f" p50_us)" "$(result_field "$f" p99_us)" \
    "$(result_field "$f" max_us)" "$(result_field "$f" requests)" "$errs" "$5" "$6" "$wcpu" "$7" \
    "$(awk -v d="$(result_field "$f" duration_us)" 'BEGIN { printf "%.3f", d / 1e6 }')" \
    "$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/measurements.tsv"
}

for ((round = 1; round <= ROUNDS; round++)); do
  for t in "${TIMED[@]}"; do
    pg=${T_PID[$t]}
    log "round $round/$ROUNDS  $t"
    run_wrk "$t" "$OUT/raw/r${round}_${t}_warmup.txt" wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP"

    c0=$(group_cpu_s "$pg"); b0=$(group_cpu_s "$T_PID_BACKEND"); s0=$(sys_busy_s)
    f="$OUT/raw/r${round}_${t}_throughput.txt"
    run_wrk "$t" "$f" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency
    c1=$(group_cpu_s "$pg"); b1=$(group_cpu_s "$T_PID_BACKEND"); s1=$(sys_busy_s)
    dc=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }')
    if [[ "$t" == direct ]]; then db=0; else db=$(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.3f", b - a }'); fi
    ds=$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.3f", b - a }')
    if grep -q '^RESULT ' "$f"; then
      record "$round" "$t" throughput "$f" "$dc" "$db" "$ds"
      log "    $(result_field "$f" rps) req/s  p50 $(result_field "$f" p50_us)us  p99 $(result_field "$f" p99_us)us  target CPU ${dc}s"
    else
      log "    wrk failed: $(tail -2 "$f")"
    fi

    f="$OUT/raw/r${round}_${t}_latency.txt"
    c0=$(group_cpu_s "$pg"); b0=$(group_cpu_s "$T_PID_BACKEND"); s0=$(sys_busy_s)
    WRK_RATE=$LAT_RATE run_wrk "$t" "$f" wrk -t1 -c"$LAT_CONNS" -d"$LAT_DURATION" --latency
    c1=$(group_cpu_s "$pg"); b1=$(group_cpu_s "$T_PID_BACKEND"); s1=$(sys_busy_s)
    dc=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }')
    if [[ "$t" == direct ]]; then db=0; else db=$(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.3f", b - a }'); fi
    ds=$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.3f", b - a }')
    if grep -q '^RESULT ' "$f"; then
      record "$round" "$t" latency "$f" "$dc" "$db" "$ds"
      log "    paced $(result_field "$f" rps) req/s  p50 $(result_field "$f" p50_us)us  p99 $(result_field "$f" p99_us)us"
    else
      log "    wrk failed: $(tail -2 "$f")"
    fi
  done
done

# ---------------------------------------------------------------- after: re-check, memory, stop
log "re-checking answers after load"
for t in "${TIMED[@]}"; do
  python3 "$BENCH/lib/check.py" "${T_CHECK[$t]}" "${T_URL[$t]}" >> "$OUT/logs/checks.log" 2>&1 \
    || { T_OK[$t]="FAIL after load"; log "$t answers wrongly after load"; }
done

printf 'target\tprocs\tpeak_rss_kb\tidle_rss_kb\tready_s\tcheck\turl\tdescription\n' > "$OUT/targets.tsv"
for t in "${ORDER[@]}"; do
  if [[ -n "${T_PID[$t]:-}" ]]; then
    read -r n hwm <<< "$(group_mem_kb "${T_PID[$t]}" VmHWM)"
  else
    n=0; hwm=n/a
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$n" "$hwm" "${T_IDLE[$t]:-n/a}" "${T_READY[$t]:-n/a}" \
    "${T_OK[$t]:-n/a}" "${T_URL[$t]}" "${T_DESC[$t]}" >> "$OUT/targets.tsv"
done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/meta.txt"

cleanup

python3 "$BENCH/lib/summarize.py" "$OUT" | tee "$OUT/summary.md"
log "raw wrk output, logs and summary.md in $OUT"

for t in "${ORDER[@]}"; do
  [[ "${T_OK[$t]:-}" == ok ]] || exit 1
done
exit 0

#!/usr/bin/env bash
# Ingest benchmark: hookwise's verified + committed webhook path against a bare axum route that
# returns 200, measured in the same run with wrk on loopback, in two modes:
#
#   hookwise   no handler loaded: verify, parse, dedupe, store (the ack path alone)
#   handlers   the five bundled handlers loaded (handlers/), every request a HappyFox
#              `ticket.created` that the triage handler matches, so each event is routed and creates or
#              folds into a job: what every real event pays
#
#   bench/ingest.sh                      # SQLite (a fresh file per mode in a temp dir)
#   STORE=postgres://127.0.0.1/test bench/ingest.sh
#   MODES="handlers" bench/ingest.sh     # one mode only (default: "hookwise handlers")
#   BEFORE=/path/to/hookwise bench/ingest.sh
#                                        # also each mode on another build (say, of the commit
#                                        # before a change), right after this build's, same run
#
# The server is pinned to core 0 and wrk to core 1 (2-core machine); each target gets a warm-up
# and RUNS measured runs; the median is reported. Server CPU per request comes from /proc.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
RUNS=${RUNS:-3}
STORE=${STORE:-}
MODES=${MODES:-"hookwise handlers"}
BEFORE=${BEFORE:-}
SECRET="bench-secret-not-for-production"

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
cargo build --release --quiet --bin hookwise --example bare

tmp=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

store_for() {  # a fresh SQLite file per mode; PostgreSQL gets one schema per mode
  if [ -z "$STORE" ]; then echo "sqlite://$tmp/$1.db"
  elif [[ "$STORE" == *\?* ]]; then echo "$STORE&schema=hw_bench_$1"
  else echo "$STORE?schema=hw_bench_$1"; fi
}
store=${STORE:-"sqlite (a fresh file per mode)"}

# hookwise: a generic source, no handler. handlers: a HappyFox source (GitHub-style signature, so
# one signature covers every request and X-GitHub-Delivery makes each a new event) and the
# bundled handlers.
mkdir -p "$tmp/no-handlers"
cat > "$tmp/hookwise.toml" <<TOML
listen = "127.0.0.1:18091"
store = "$(store_for hookwise)"
handlers_dir = "$tmp/no-handlers"

[sources.bench]
kind = "generic"
scheme = "github"
secrets = ["$SECRET"]
account = "acme"
event_pointer = "/type"
subject_pointer = "/data/object/id"
TOML
cat > "$tmp/handlers.toml" <<TOML
listen = "127.0.0.1:18092"
store = "$(store_for handlers)"
handlers_dir = "$PWD/handlers"

[sources.bench]
kind = "happyfox"
scheme = "github"
secrets = ["$SECRET"]
account = "acme"
TOML

signature() {  # signature CONFIG BODY
  ./target/release/hookwise --config "$1" sign --source bench "$2" | sed -n 's/^x-hub-signature-256: //Ip'
}
body_hookwise="$PWD/bench/body.json"
body_handlers="$PWD/fixtures/happyfox/ticket_created.json"
sig_hookwise=$(signature "$tmp/hookwise.toml" "$body_hookwise")
sig_handlers=$(signature "$tmp/handlers.toml" "$body_handlers")

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server on port $1 did not start" >&2; return 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run_target NAME PORT CMD... : prints one RESULT line per measured run, with cpu_us_per_req added.
run_target() {
  local name=$1 port=$2; shift 2
  case "$name" in
    handlers*) export BENCH_BODY=$body_handlers BENCH_SIGNATURE=$sig_handlers ;;
    *) export BENCH_BODY=$body_hookwise BENCH_SIGNATURE=$sig_hookwise ;;
  esac
  HOOKWISE_LOG=warn taskset -c 0 "$@" >"$tmp/$name.log" 2>&1 &
  server_pid=$!
  wait_port "$port"
  local url="http://127.0.0.1:$port/webhooks/bench"
  taskset -c 1 wrk -t1 -c"$CONNS" -d3s -s bench/delivery.lua "$url" >/dev/null   # warm-up
  local peaks=() p50s=()
  for _ in $(seq 1 "$RUNS"); do
    local before after line
    before=$(cpu_ticks "$server_pid")
    line=$(BENCH_DELAY_MS=0 taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s bench/delivery.lua "$url" | grep '^RESULT')
    after=$(cpu_ticks "$server_pid")
    echo "$name $line cpu_ticks=$((after - before))"
    peaks+=("$(echo "$line" | awk '{for(i=1;i<=NF;i++){split($i,kv,"="); v[kv[1]]=kv[2]} printf "%d", v["requests"]/(v["duration_us"]/1e6)}')")
    p50s+=("$(echo "$line" | awk '{for(i=1;i<=NF;i++){split($i,kv,"="); v[kv[1]]=kv[2]} printf "%d", v["p50_us"]/1000}')")
  done
  # Half load: each connection paced so that together they offer about half the median peak
  # (the pause between a connection's requests is the cycle for that rate less the latency).
  if [ "$name" != bare ]; then
    local median p50 delay_ms before after line
    median=$(printf '%s\n' "${peaks[@]}" | sort -n | sed -n "$(( (${#peaks[@]} + 1) / 2 ))p")
    p50=$(printf '%s\n' "${p50s[@]}" | sort -n | sed -n "$(( (${#p50s[@]} + 1) / 2 ))p")
    delay_ms=$(( CONNS * 1000 * 2 / (median > 0 ? median : 1) - p50 ))
    delay_ms=$(( delay_ms > 1 ? delay_ms : 1 ))
    before=$(cpu_ticks "$server_pid")
    line=$(BENCH_DELAY_MS=$delay_ms taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s bench/delivery.lua "$url" | grep '^RESULT')
    after=$(cpu_ticks "$server_pid")
    echo "$name@half $line cpu_ticks=$((after - before))"
  fi
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

{
  run_target bare 18090 ./target/release/examples/bare 127.0.0.1:18090
  for mode in $MODES; do
    case "$mode" in
      hookwise) run_target hookwise 18091 ./target/release/hookwise --config "$tmp/hookwise.toml" serve ;;
      handlers) run_target handlers 18092 ./target/release/hookwise --config "$tmp/handlers.toml" serve ;;
      *) echo "unknown mode $mode (expected hookwise, handlers)" >&2; exit 2 ;;
    esac
    if [ -n "$BEFORE" ]; then  # the same mode on the other build: its own port and store
      sed -e 's/:1809\([12]\)"/:1819\1"/' -e "s#/$mode.db#/$mode-before.db#" \
        -e "s#hw_bench_$mode\b#hw_bench_${mode}_before#" "$tmp/$mode.toml" >"$tmp/$mode-before.toml"
      port=$(sed -n 's/^listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$tmp/$mode-before.toml")
      run_target "$mode-before" "$port" "$BEFORE" --config "$tmp/$mode-before.toml" serve
    fi
  done
} | tee "$tmp/results.txt"

if [ -z "$STORE" ]; then
  for mode in $MODES; do
    python3 - "$tmp/$mode.db" "$mode" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
events = db.execute("select count(*) from events").fetchone()[0]
jobs = db.execute("select count(*) from jobs").fetchone()[0]
print(f"{sys.argv[2]}: events stored {events}, jobs {jobs}")
PY
  done
fi

python3 - "$tmp/results.txt" "$(getconf CLK_TCK)" "$store" <<'PY'
import sys, statistics, re
rows = {}
for line in open(sys.argv[1]):
    name, *fields = line.split()
    kv = dict(f.split("=") for f in fields if "=" in f)
    kv = {k: int(v) for k, v in kv.items()}
    rows.setdefault(name, []).append(kv)
tick_us = 1e6 / int(sys.argv[2])
def summary(runs):
    rps = [r["requests"] / (r["duration_us"] / 1e6) for r in runs]
    i = rps.index(statistics.median(rps))
    r = runs[i]
    return dict(rps=rps[i], p50=r["p50_us"] / 1000, p99=r["p99_us"] / 1000,
                cpu=r["cpu_ticks"] * tick_us / r["requests"], errors=r["errors"] + r["non2xx"])
bare = summary(rows["bare"])
store = re.sub(r"//[^@/]*@", "//***@", sys.argv[3])
print(f"\nstore: {store}")
print(f"{'route':<16} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>11} {'errors':>7} {'ratio':>6}")
for name in ["bare"] + [n for n in ("hookwise", "hookwise-before", "handlers", "handlers-before") if n in rows]:
    s = summary(rows[name])
    print(f"{name:<16} {s['rps']:>9.0f} {s['p50']:>7.2f} {s['p99']:>7.2f} {s['cpu']:>11.1f} {s['errors']:>7} {s['rps'] / bare['rps']:>6.2f}")
    if name + "@half" in rows:
        h = summary(rows[name + "@half"])
        print(f"{'  @half':<16} {h['rps']:>9.0f} {h['p50']:>7.2f} {h['p99']:>7.2f} {h['cpu']:>11.1f} {h['errors']:>7} {h['rps'] / s['rps']:>6.2f}")
print("ratio: throughput against the bare route in this run; for @half, the rate held against the"
      " mode's own peak (each connection paced to offer about half of it)")
PY

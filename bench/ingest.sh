#!/usr/bin/env bash
# Ingest benchmark: hookwise's verified + committed webhook path against a bare axum route that
# returns 200, measured in the same run with wrk on loopback.
#
#   bench/ingest.sh                      # SQLite (a fresh file in a temp dir)
#   STORE=postgres://127.0.0.1/test bench/ingest.sh
#
# The server is pinned to core 0 and wrk to core 1 (2-core machine); each target gets a warm-up
# and RUNS measured runs; the median is reported. Server CPU per request comes from /proc.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
RUNS=${RUNS:-3}
STORE=${STORE:-}
SECRET="bench-secret-not-for-production"

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
cargo build --release --quiet --bin hookwise --example bare

tmp=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

store=${STORE:-"sqlite://$tmp/bench.db"}
cat > "$tmp/hookwise.toml" <<TOML
listen = "127.0.0.1:18091"
store = "$store"
handlers_dir = "$tmp/handlers"

[sources.bench]
kind = "generic"
scheme = "github"
secrets = ["$SECRET"]
account = "acme"
event_pointer = "/type"
subject_pointer = "/data/object/id"
TOML
mkdir -p "$tmp/handlers"

export BENCH_BODY="$PWD/bench/body.json"
export BENCH_SIGNATURE=$(./target/release/hookwise --config "$tmp/hookwise.toml" sign --source bench "$BENCH_BODY" \
  | sed -n 's/^x-hub-signature-256: //Ip')

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
  HOOKWISE_LOG=warn taskset -c 0 "$@" >"$tmp/$name.log" 2>&1 &
  server_pid=$!
  wait_port "$port"
  local url="http://127.0.0.1:$port/webhooks/bench"
  taskset -c 1 wrk -t1 -c"$CONNS" -d3s -s bench/delivery.lua "$url" >/dev/null   # warm-up
  for _ in $(seq 1 "$RUNS"); do
    local before after line
    before=$(cpu_ticks "$server_pid")
    line=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s bench/delivery.lua "$url" | grep '^RESULT')
    after=$(cpu_ticks "$server_pid")
    echo "$name $line cpu_ticks=$((after - before))"
  done
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

{
  run_target bare 18090 ./target/release/examples/bare 127.0.0.1:18090
  run_target hookwise 18091 ./target/release/hookwise --config "$tmp/hookwise.toml" serve
} | tee "$tmp/results.txt"

if [[ "$store" == sqlite:* ]]; then
  stored=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from events').fetchone()[0])" "$tmp/bench.db")
  echo "events stored: $stored"
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
bare, hw = summary(rows["bare"]), summary(rows["hookwise"])
store = re.sub(r"//[^@/]*@", "//***@", sys.argv[3])
print(f"\nstore: {store}")
print(f"{'route':<10} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>11} {'errors':>7}")
for name, s in (("bare", bare), ("hookwise", hw)):
    print(f"{name:<10} {s['rps']:>9.0f} {s['p50']:>7.2f} {s['p99']:>7.2f} {s['cpu']:>11.1f} {s['errors']:>7}")
print(f"throughput ratio hookwise/bare: {hw['rps'] / bare['rps']:.2f}")
print(f"CPU-per-request ratio bare/hookwise: {bare['cpu'] / hw['cpu']:.2f}")
PY

#!/usr/bin/env bash
# Ingest latency while retention prunes a large backlog (SQLite): the same store file, holding
# EVENTS old events (60 days, past the 30-day default), served twice in one run: once with
# retention off (the baseline), once with the pruner deleting the backlog while wrk sends
# webhooks. Reports p50/p99 and throughput of both, and how many old events went meanwhile.
#
#   bench/prune.sh                 # 1,000,000 old events
#   EVENTS=200000 bench/prune.sh
#
# wrk runs at a modest concurrency (CONNS=8), well below the peak, so latency is about waiting
# for the store, not queueing. Server on core 0, wrk on core 1, as bench/ingest.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-1000000}
DURATION=${DURATION:-15s}
CONNS=${CONNS:-8}
SECRET="bench-secret-not-for-production"

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
cargo build --release --quiet --bin hookwise

tmp=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

config() { # config FILE DB ENABLED
  cat > "$1" <<TOML
listen = "127.0.0.1:18092"
store = "sqlite://$2"
handlers_dir = "$tmp/handlers"

[sources.bench]
kind = "generic"
scheme = "github"
secrets = ["$SECRET"]
account = "acme"
event_pointer = "/type"
subject_pointer = "/data/object/id"

[retention]
enabled = $3
interval = "1s"
TOML
}
mkdir -p "$tmp/handlers"
config "$tmp/seed.toml" "$tmp/seed.db" false
./target/release/hookwise --config "$tmp/seed.toml" migrate >/dev/null

echo "seeding $EVENTS events received 60 days ago..."
python3 - "$tmp/seed.db" "$EVENTS" <<'PY'
import sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
old = int((time.time() - 60 * 86400) * 1000)
conn = sqlite3.connect(db)
payload = '{"type":"invoice.paid","data":{"object":{"id":"in_1","customer":"cus_1"}}}'
rows = ((f"old-{i}", old + i % 86_400_000) for i in range(n))
conn.executemany(
    "INSERT INTO events (source, event_id, kind, account, subject, occurred_at, received_at, status, payload) "
    "VALUES ('bench', ?, 'invoice.paid', 'acme', 'in_1', ?2, ?2, 'unrouted', '" + payload + "')",
    rows)
conn.commit()
PY

export BENCH_BODY="$PWD/bench/body.json"
export BENCH_SIGNATURE=$(./target/release/hookwise --config "$tmp/seed.toml" sign --source bench "$BENCH_BODY" \
  | sed -n 's/^x-hub-signature-256: //Ip')

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server on port $1 did not start" >&2; return 1
}
old_events() {
  python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from events where event_id like 'old-%'\").fetchone()[0])" "$1"
}

# run NAME ENABLED: serves a copy of the seeded file and measures ingest for DURATION.
run() {
  local name=$1 db="$tmp/$1.db"
  cp "$tmp/seed.db" "$db"
  config "$tmp/$name.toml" "$db" "$2"
  HOOKWISE_LOG=warn taskset -c 0 ./target/release/hookwise --config "$tmp/$name.toml" serve >"$tmp/$name.log" 2>&1 &
  server_pid=$!
  wait_port 18092
  # A warm-up (the file's pages into the cache, connections open); the pruner's first pass
  # starts after `interval` (1 s), so it is well under way when the measurement begins.
  taskset -c 1 wrk -t1 -c"$CONNS" -d3s -s bench/delivery.lua http://127.0.0.1:18092/webhooks/bench >/dev/null
  local before line after
  before=$(old_events "$db")
  line=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s bench/delivery.lua \
    http://127.0.0.1:18092/webhooks/bench | grep '^RESULT')
  after=$(old_events "$db")
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  server_pid=""
  echo "$name $line old_before=$before old_after=$after"
}

{
  run baseline false
  run pruning true
} | tee "$tmp/results.txt"

python3 - "$tmp/results.txt" <<'PY'
import sys
print(f"\n{'run':<10} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>7} {'old events before -> after':>28}")
for line in open(sys.argv[1]):
    name, *fields = line.split()
    kv = {k: int(v) for k, v in (f.split("=") for f in fields if "=" in f)}
    rps = kv["requests"] / (kv["duration_us"] / 1e6)
    print(f"{name:<10} {rps:>8.0f} {kv['p50_us'] / 1000:>7.2f} {kv['p99_us'] / 1000:>7.2f} "
          f"{kv['errors'] + kv['non2xx']:>7} {kv['old_before']:>13} -> {kv['old_after']}")
PY

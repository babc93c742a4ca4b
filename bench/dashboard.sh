#!/usr/bin/env bash
# How fast the dashboard's pages answer over a large store: EVENTS events (default 1,000,000) and
# JOBS jobs (default 100,000, each with one run and its event), 1,000 held writes, on SQLite and,
# when HOOKWISE_TEST_POSTGRES_URL is set, on PostgreSQL (a schema of its own, dropped after).
# Rows are written straight into a migrated store with SQL (seeding through the webhook path
# would take minutes and measure something else). Each page is fetched RUNS times after one
# warm-up; the table gives the median and the slowest, in ms.
#
#   bench/dashboard.sh
#   EVENTS=200000 JOBS=20000 bench/dashboard.sh
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-1000000}
JOBS=${JOBS:-100000}
RUNS=${RUNS:-5}
PORT=${PORT:-18093}

cargo build --release --quiet --bin hookwise
tmp=$(mktemp -d)
server_pid=""
schema="dashbench_$$"
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  wait 2>/dev/null || true
  if [ -n "${HOOKWISE_TEST_POSTGRES_URL:-}" ]; then
    psql -q "$HOOKWISE_TEST_POSTGRES_URL" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/handlers"
cp handlers/*.toml "$tmp/handlers/"

config() { # config STORE_URL
  cat > "$tmp/hookwise.toml" <<TOML
listen = "127.0.0.1:$PORT"
store = "$1"
handlers_dir = "$tmp/handlers"
TOML
}

# The seed, as one SQL script that both backends run: a numbers table, then every table from it.
seed_sql() { # seed_sql SERIES_SQL
  cat <<SQL
CREATE TEMP TABLE n AS $1;
INSERT INTO events (seq, source, event_id, kind, account, subject, occurred_at, received_at, status, status_reason, payload)
SELECT i, CASE WHEN i % 3 = 0 THEN 'planhat' ELSE 'happyfox' END, 'ev-' || i,
       CASE i % 4 WHEN 0 THEN 'happyfox.ticket.created' WHEN 1 THEN 'happyfox.ticket.updated'
                  WHEN 2 THEN 'planhat.nps.submitted' ELSE 'planhat.company.updated' END,
       'acct-' || (i % 50), 't-' || (i % 20000), $NOW - ($EVENTS - i) * 100, $NOW - ($EVENTS - i) * 100,
       CASE WHEN i % 50 = 0 THEN 'ignored' WHEN i % 10 = 0 THEN 'unrouted' ELSE 'routed' END,
       CASE WHEN i % 50 = 0 THEN 'our own echo' ELSE NULL END,
       '{"id":' || i || ',"subject":"Ticket ' || i || '","status":{"name":"New"},"priority":{"name":"Medium"}}'
FROM n WHERE i <= $EVENTS;
INSERT INTO jobs (id, handler, account, subject, state, run_at, first_seen, deadline_at, attempts, max_attempts, last_error, created_at, updated_at, finished_at)
SELECT j, CASE j % 5 WHEN 0 THEN 'triage' WHEN 1 THEN 'sla-escalation' WHEN 2 THEN 'reply-draft' WHEN 3 THEN 'nps-detractor' ELSE 'renewal-risk' END,
       'acct-' || (j % 50), 's-' || j,
       CASE WHEN j % 20 = 0 THEN 'dead' WHEN j > $JOBS - 2000 THEN 'pending' ELSE 'done' END,
       $NOW - ($JOBS - j) * 1000, $NOW - ($JOBS - j) * 1000, $NOW, CASE WHEN j % 20 = 0 THEN 3 ELSE 1 END, 3,
       CASE WHEN j % 20 = 0 THEN 'LLM: HTTP 503: overloaded' ELSE NULL END,
       $NOW - ($JOBS - j) * 1000, $NOW - ($JOBS - j) * 1000,
       CASE WHEN j > $JOBS - 2000 THEN NULL ELSE $NOW - ($JOBS - j) * 1000 + 500 END
FROM (SELECT i AS j FROM n WHERE i <= $JOBS) jj;
INSERT INTO job_events (job_id, event_seq) SELECT i, i * ($EVENTS / $JOBS) FROM n WHERE i <= $JOBS;
INSERT INTO runs (job_id, handler, account, attempt, mode, model, started_at, finished_at, outcome, error, input_tokens, output_tokens, steps)
SELECT id, handler, account, 1, 'live', 'gpt-4o-mini', finished_at - 500, finished_at,
       CASE WHEN state = 'dead' THEN 'failed' ELSE 'done' END, last_error, 1800, 120,
       '[{"type":"system","text":"You triage."},{"type":"user","text":"Ticket"},{"type":"assistant","text":"","tool_calls":[{"id":"c1","name":"happyfox.get_ticket","arguments":{"ticket_id":1}}]},{"type":"tool_result","call_id":"c1","name":"happyfox.get_ticket","result":{"status":"open"}},{"type":"assistant","text":"Done."}]'
FROM jobs WHERE finished_at IS NOT NULL;
INSERT INTO approvals (job_id, attempt, call_id, handler, account, subject, tool, arguments, idempotency_key, state, created_at, updated_at)
SELECT 1 + (i * 7) % $JOBS, 1, 'c2', 'triage', 'acct-' || (i % 50), 't-' || i, 'happyfox.add_private_note',
       '{"ticket_id":' || i || ',"html":"<p>note</p>"}', 'job-' || (i * 7) || '/step-2/call-0',
       CASE WHEN i % 2 = 0 THEN 'pending' ELSE 'approved' END, $NOW, $NOW
FROM n WHERE i <= 1000;
SQL
}

pages=(
  "/ui" "/ui/events" "/ui/events?before=$((EVENTS / 2))" "/ui/events?status=ignored" "/ui/events?account=acct-7"
  "/ui/events?subject=t-1234" "/ui/events/$((EVENTS / 2))" "/ui/jobs" "/ui/jobs?state=dead" "/ui/jobs?handler=triage&before=$((JOBS / 2))"
  "/ui/jobs/$((JOBS / 2))" "/ui/dead" "/ui/dead/retry" "/ui/approvals" "/ui/handlers"
)

measure() { # measure LABEL
  ./target/release/hookwise --config "$tmp/hookwise.toml" serve >"$tmp/serve.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  printf '\n%s (%s events, %s jobs): ms per page, median and slowest of %s\n' "$1" "$EVENTS" "$JOBS" "$RUNS"
  printf '%-44s %8s %8s %6s\n' page median max status
  for p in "${pages[@]}"; do
    curl -s -o /dev/null "http://127.0.0.1:$PORT$p"
    times=()
    for _ in $(seq 1 "$RUNS"); do
      t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "http://127.0.0.1:$PORT$p")
      status=${t% *}
      times+=("$(awk -v s="${t#* }" 'BEGIN { printf "%.1f", s * 1000 }')")
    done
    sorted=$(printf '%s\n' "${times[@]}" | sort -n)
    printf '%-44s %8s %8s %6s\n' "$p" "$(echo "$sorted" | sed -n "$(( (RUNS + 1) / 2 ))p")" "$(echo "$sorted" | tail -n 1)" "$status"
  done
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
}

NOW=$(($(date +%s) * 1000))

config "sqlite://$tmp/dash.db"
./target/release/hookwise --config "$tmp/hookwise.toml" migrate >/dev/null 2>&1
echo "seeding SQLite..."
{ echo "PRAGMA journal_mode=WAL; BEGIN;"
  seed_sql "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $EVENTS) SELECT i FROM c"
  echo "COMMIT; ANALYZE;"; } | python3 -c '
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.executescript(sys.stdin.read())' "$tmp/dash.db"
measure "SQLite"

if [ -n "${HOOKWISE_TEST_POSTGRES_URL:-}" ]; then
  url="$HOOKWISE_TEST_POSTGRES_URL"
  sep='?'; case "$url" in *\?*) sep='&';; esac
  config "$url${sep}schema=$schema"
  ./target/release/hookwise --config "$tmp/hookwise.toml" migrate >/dev/null 2>&1
  echo "seeding PostgreSQL..."
  { echo "SET search_path TO $schema; BEGIN;"
    seed_sql "SELECT generate_series(1, $EVENTS) AS i"
    echo "SELECT setval(pg_get_serial_sequence('events', 'seq'), $EVENTS);"
    echo "SELECT setval(pg_get_serial_sequence('jobs', 'id'), $JOBS);"
    echo "COMMIT; ANALYZE;"; } | psql -q -v ON_ERROR_STOP=1 "$url" >/dev/null
  measure "PostgreSQL"
fi

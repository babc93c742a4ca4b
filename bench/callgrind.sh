#!/usr/bin/env bash
# Where the instructions of one webhook go: the release binary under valgrind's callgrind, N
# signed requests sent one at a time over one keep-alive connection, counters zeroed after a
# warm-up and dumped after the N, so the totals are the requests' alone. Prints instructions per
# request for the bare route and for hookwise (no handler, and the bundled handlers), and the
# inclusive cost per request of each stage's function. Instruction counts are repeatable to a
# fraction of a percent from run to run, unlike wall-clock on a shared machine.
#
#   bench/callgrind.sh                 # N=2000, SQLite
#   N=500 bench/callgrind.sh
#   KEEP=1 bench/callgrind.sh          # keep the callgrind.out files (printed) for callgrind_annotate
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-2000}
WARMUP=${WARMUP:-200}
SECRET="bench-secret-not-for-production"
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }
cargo build --release --quiet --bin hookwise --example bare

tmp=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  wait 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/no-handlers"
cat > "$tmp/hookwise.toml" <<TOML
listen = "127.0.0.1:18191"
store = "sqlite://$tmp/hookwise.db"
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
listen = "127.0.0.1:18192"
store = "sqlite://$tmp/handlers.db"
handlers_dir = "$PWD/handlers"
[sources.bench]
kind = "happyfox"
scheme = "github"
secrets = ["$SECRET"]
account = "acme"
TOML
signature() {
  ./target/release/hookwise --config "$1" sign --source bench "$2" | sed -n 's/^x-hub-signature-256: //Ip'
}

# profile NAME PORT BODY SIGNATURE CMD...
profile() {
  local name=$1 port=$2 body=$3 sig=$4; shift 4
  HOOKWISE_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.$name" \
    "$@" >"$tmp/$name.log" 2>&1 &
  server_pid=$!
  python3 - "$port" "$body" "$sig" "$WARMUP" "$N" "$server_pid" "$name" <<'PY'
import http.client, subprocess, sys, time
port, body, sig, warmup, n, pid, name = sys.argv[1], open(sys.argv[2], "rb").read(), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
for _ in range(600):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60); conn.connect(); break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit(f"{name} did not listen")
def send(i):
    conn.request("POST", "/webhooks/bench", body, {
        "Content-Type": "application/json", "X-Hub-Signature-256": sig,
        "X-GitHub-Delivery": f"{name}-{i}"})
    r = conn.getresponse(); r.read()
    if r.status >= 300:
        sys.exit(f"{name}: HTTP {r.status}")
for i in range(warmup):
    send(i)
subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
for i in range(warmup, warmup + n):
    send(i)
subprocess.run(["callgrind_control", "-d", "measured", pid], check=True, capture_output=True)
PY
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

profile bare 18190 bench/body.json "$(signature "$tmp/hookwise.toml" bench/body.json)" \
  ./target/release/examples/bare 127.0.0.1:18190
profile hookwise 18191 bench/body.json "$(signature "$tmp/hookwise.toml" bench/body.json)" \
  ./target/release/hookwise --config "$tmp/hookwise.toml" serve
profile handlers 18192 fixtures/happyfox/ticket_created.json \
  "$(signature "$tmp/handlers.toml" fixtures/happyfox/ticket_created.json)" \
  ./target/release/hookwise --config "$tmp/handlers.toml" serve

python3 - "$tmp" "$N" <<'PY'
import glob, re, subprocess, sys
tmp, n = sys.argv[1], int(sys.argv[2])
# Stage: the functions whose inclusive cost it is (the first that appears in the profile counts).
STAGES = [
    ("route with its layers", [r"<tower_http::request_id::PropagateRequestIdResponseFuture<F> as core::future::future::Future>::poll$"]),
    ("webhook handler (all below)", [r"^<F as axum::handler::Handler<\(M,T1,T2,T3,T4,T5,T6\),S>>::call::\{\{closure\}\}$", r"hookwise::http::webhooks::receive\b"]),
    ("  verify signature", [r"hookwise::ingress::verify::Verifier::verify\b"]),
    ("  JSON parse", [r"hookwise::ingress::select::Reads::parse\b", r"serde_json::de::from_(slice|trait)\b", r"<serde_json::value::Value as serde::de::Deserialize>::deserialize"]),
    ("  adapter (normalize)", [r"hookwise::ingress::sources::normalize\b", r"as hookwise::ingress::sources::Adapter>::normalize$"]),
    ("  route (handlers, when)", [r"hookwise::ingress::route::EventRouter::decide\b"]),
    ("  hand-off to the writer", [r"hookwise::store::batcher::IngestQueue::submit\b"]),
    ("store writer: ingest batch", [r"hookwise::store::sqlite::.*ingest"]),
    ("  SQLite statements (step)", [r"^sqlite3_step$"]),
    ("  commit", [r"rusqlite::transaction::Transaction::commit\b", r"sqlite3VdbeHalt"]),
]
for name in ("bare", "hookwise", "handlers"):
    files = sorted(glob.glob(f"{tmp}/callgrind.{name}*measured*")) or sorted(glob.glob(f"{tmp}/callgrind.{name}.*"))
    if not files:
        print(f"{name}: no profile"); continue
    f = files[-1]
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", f],
                         capture_output=True, text=True).stdout
    total = None
    costs = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(?:\*\s+)?(.*)$", line)
        if not m:
            continue
        value, what = int(m.group(1).replace(",", "")), m.group(2)
        if "PROGRAM TOTALS" in what:
            total = value; continue
        fn = what.split(":", 1)[1] if ":" in what.split(" [")[0] else what
        fn = fn.split(" [")[0].strip()
        costs.append((value, fn))
    if total is None:
        total = max(v for v, _ in costs)
    print(f"\n{name}: {total / n:,.0f} instructions per request ({f})")
    if name == "bare":
        continue
    for stage, patterns in STAGES:
        for p in patterns:
            hits = [v for v, fn in costs if re.search(p, fn)]
            if hits:
                print(f"  {stage:<32} {max(hits) / n:>10,.0f}")
                break
        else:
            print(f"  {stage:<32} {'(inlined or absent)':>10}")
PY
[ -n "${KEEP:-}" ] && echo "profiles kept in $tmp"
exit 0

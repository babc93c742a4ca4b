#!/usr/bin/env bash
# Checks /api/openapi.json against the running server with schemathesis: the real `hookwise serve`
# on a loopback port with an api_token, a few events delivered through the signed webhook path
# (`hookwise replay`, each a pending job), then a bounded run of generated requests (valid and
# invalid) to every documented operation. Fails on a 5xx, an answer that does not match its
# documented schema, status code, content type or headers, or a panic in the server's log.
# Once on a temporary SQLite store, and once more on PostgreSQL (a schema of its own, dropped
# after) when HOOKWISE_TEST_POSTGRES_URL is set, as .ci/run sets it. Reuses the venv (set
# HOOKWISE_SCHEMATHESIS_VENV to move it); a minute or two in all once the binary is built.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

version=4.32.5
venv="${HOOKWISE_SCHEMATHESIS_VENV:-$HOME/.cache/hookwise/schemathesis-venv}"
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $version" ]; then
    echo "installing schemathesis $version into $venv" >&2
    if ! python3 -m venv --clear "$venv" >&2; then
        echo "error: 'python3 -m venv $venv' failed: schemathesis needs Python 3 with venv (Debian/Ubuntu: apt-get install python3 python3-venv)." >&2
        exit 1
    fi
    "$venv/bin/pip" install -q "schemathesis==$version" >&2
fi

cargo build -q --bin hookwise
bin="$PWD/target/debug/hookwise"

dir=$(mktemp -d)
server=""
pg_schema=""
cleanup() {
    stop_server
    if [ -n "$pg_schema" ]; then
        psql -q "$HOOKWISE_TEST_POSTGRES_URL" -c "DROP SCHEMA IF EXISTS $pg_schema CASCADE" >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}
stop_server() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
        server=""
    fi
}
trap cleanup EXIT

token="schemathesis-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
mkdir "$dir/handlers"
# No [llm]: the handler's jobs stay pending, so the job routes have rows to answer with.
cat > "$dir/handlers/triage.toml" <<'EOF'
name = "triage"
on = ["happyfox.ticket.*"]

[agent]
prompt = "Triage the ticket."
EOF

# check LABEL STORE_URL: one server on that store, seeded, then one schemathesis run against it.
check() {
    local label=$1 store=$2 work="$dir/$1" port status=0
    mkdir "$work"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat > "$work/hookwise.toml" <<EOF
listen = "127.0.0.1:$port"
store = "$store"
handlers_dir = "$dir/handlers"
api_token = "$token"

[sources.happyfox]
kind = "happyfox"
scheme = "standard-webhooks"
secrets = ["whsec_c2NoZW1hdGhlc2lzIG9ubHksIG5vdCBhIHNlY3JldA=="]
account = "acme"
EOF
    HOOKWISE_LOG=warn "$bin" --config "$work/hookwise.toml" serve 2> "$work/serve.log" &
    server=$!
    for _ in $(seq 1 300); do
        if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=1)" 2>/dev/null; then
            break
        fi
        if ! kill -0 "$server" 2>/dev/null; then
            echo "error: hookwise serve ($label) exited:" >&2
            cat "$work/serve.log" >&2
            return 1
        fi
        sleep 0.1
    done
    # (errexit does not apply inside a function called with ||: each failure returns itself.)
    if ! "$bin" --config "$work/hookwise.toml" replay --new-id fixtures/happyfox/*.json > "$work/replay.log"; then
        echo "error: seeding through the webhook path failed ($label):" >&2
        cat "$work/replay.log" "$work/serve.log" >&2
        return 1
    fi

    echo "== schemathesis against $label" >&2
    # From the work directory: schemathesis keeps a cache in its working directory.
    (cd "$work" && "$venv/bin/schemathesis" run "http://127.0.0.1:$port/api/openapi.json" \
        --header "Authorization: Bearer $token" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
        --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-30}" \
        --seed "${SCHEMATHESIS_SEED:-20261203}" \
        --request-timeout 10 \
        --generation-database none \
        --warnings off \
        --no-color) || status=$?
    stop_server
    if grep -n "panicked" "$work/serve.log" >&2; then
        echo "error: the server ($label) panicked during the run (above)" >&2
        status=1
    fi
    return "$status"
}

failed=0
check sqlite "sqlite://$dir/sqlite/hookwise.db" || failed=1
if [ -n "${HOOKWISE_TEST_POSTGRES_URL:-}" ]; then
    pg_schema="schemathesis_$(python3 -c 'import secrets; print(secrets.token_hex(6))')"
    case "$HOOKWISE_TEST_POSTGRES_URL" in
        *\?*) pg_url="$HOOKWISE_TEST_POSTGRES_URL&schema=$pg_schema" ;;
        *) pg_url="$HOOKWISE_TEST_POSTGRES_URL?schema=$pg_schema" ;;
    esac
    check postgres "$pg_url" || failed=1
else
    echo "schemathesis: PostgreSQL skipped (HOOKWISE_TEST_POSTGRES_URL not set)" >&2
fi
echo "schemathesis: $([ "$failed" = 0 ] && echo passed || echo FAILED) after $((SECONDS - started)) s" >&2
exit "$failed"

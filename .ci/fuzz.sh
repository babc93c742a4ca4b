#!/usr/bin/env bash
# Fuzzing (cargo-fuzz, libFuzzer): builds every target in fuzz/ once, then runs each for SECONDS
# (default 30) from its committed seeds (fuzz/seeds/TARGET) plus the corpus earlier runs grew
# (fuzz/corpus/TARGET, not committed), with the dictionary fuzz/dicts/TARGET.dict if there is one. Fails if any target crashes; the input is then in
# fuzz/artifacts/TARGET/ (`cargo fuzz run TARGET FILE` reproduces it; fix it and add a regression
# test in the module at fault).
#
#   bash .ci/fuzz.sh          # the short run .ci/run does, 30 s per target
#   bash .ci/fuzz.sh 1800     # the long run: 30 min per target
#   TARGETS="verify accept" bash .ci/fuzz.sh 60
#
# The toolchain is stable: cargo-fuzz's flags (-Zsanitizer=..., sancov passes) are nightly-only,
# so RUSTC_BOOTSTRAP=1 lets stable rustc accept them. No sanitizer (-s none): the code under test
# is safe Rust, whose faults are panics libFuzzer already catches, and an ASan build of the whole
# dependency tree doubles the build. Debug assertions and overflow checks are on (cargo-fuzz's
# default). 16 codegen units: a much shorter build on two cores, for somewhat slower runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export RUSTC_BOOTSTRAP=1

seconds=${1:-30}
targets=${TARGETS:-"verify accept handler ratelimit llm_openai llm_anthropic tool_arguments"}
flags=(--sanitizer none --codegen-units 16)

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

echo "== cargo fuzz build (all targets)"
cargo fuzz build "${flags[@]}"

failed=()
for target in $targets; do
    echo "== cargo fuzz run $target (${seconds}s)"
    mkdir -p "fuzz/corpus/$target"
    dict=()
    if [[ -f "fuzz/dicts/$target.dict" ]]; then
        dict=(-dict="fuzz/dicts/$target.dict")
    fi
    # The corpus directory first: new inputs are written there, never into the seeds.
    if ! cargo fuzz run "${flags[@]}" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -print_final_stats=1 "${dict[@]}" 2>&1 | grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE) '; then
        # (Each new and reduced input is a line: pulses and the final stats stay.)
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: no crashes in $targets"

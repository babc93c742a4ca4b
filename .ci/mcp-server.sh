#!/usr/bin/env bash
# Installs what the MCP tests (tests/it/mcp.rs) need, once per machine: a Python venv with the
# official MCP SDK from PyPI, whose server the tests run as hookwise's peer. Prints the variable
# the tests read; `.ci/run` evaluates it. Reuses the venv when it already has the package.
set -euo pipefail
venv="${HOOKWISE_MCP_VENV:-$HOME/.cache/hookwise/mcp-venv}"
# The version the tests were written against; the server script uses its `MCPServer` API (mcp 2).
version=2.3.0
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$version')" 2>/dev/null; then
    echo "installing the mcp package $version into $venv" >&2
    if ! python3 -m venv --clear "$venv" >&2; then
        echo "error: 'python3 -m venv $venv' failed. The MCP tests need Python 3's venv and ensurepip modules; Debian and Ubuntu ship them separately: apt-get install python3-venv." >&2
        exit 1
    fi
    "$venv/bin/pip" install -q "mcp==$version" >&2
fi
echo "export HOOKWISE_TEST_MCP_PYTHON=$venv/bin/python"

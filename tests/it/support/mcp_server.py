"""A small CRM as an MCP server, for hookwise's MCP tests.

Built on the official Python SDK (the `mcp` package from PyPI), so the peer hookwise talks to is
one none of us wrote: its streamable HTTP transport, sessions, tool listing and errors are the
SDK's own. Usage:

    python mcp_server.py PORT CALLS_FILE TOKEN

Serves http://127.0.0.1:PORT/mcp. Requests without `Authorization: Bearer TOKEN` get a 401;
while CALLS_FILE.429 holds a number N > 0, the next N POSTs get a 429 with `Retry-After: 1`
(each noted in CALLS_FILE as the tool "(429)").
Every tool call that reaches a tool is appended to CALLS_FILE as one JSON line
{"tool": ..., "arguments": {...}}, which is what the tests compare with what hookwise sent.
"""

import json
import sys
from typing import Literal

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from starlette.responses import JSONResponse

port, calls_file, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
server = MCPServer("crm")


def record(tool: str, **arguments) -> None:
    with open(calls_file, "a", encoding="utf-8") as f:
        f.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")
        f.flush()


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def get_account(account_id: str) -> dict:
    """One customer account: its name, plan, health score and renewal date."""
    record("get_account", account_id=account_id)
    return {
        "id": account_id,
        "name": "Northwind Traders",
        "plan": "enterprise",
        "health": 38,
        "renewal": "2027-02-01",
    }


@server.tool()
def log_risk(account_id: str, level: Literal["low", "medium", "high"], reason: str) -> dict:
    """Records a churn risk on the account, visible to its owner."""
    record("log_risk", account_id=account_id, level=level, reason=reason)
    return {"logged": True, "account_id": account_id, "level": level}


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def list_invoices(account_id: str) -> dict:
    """The account's open invoices (the billing backend is down in these tests)."""
    record("list_invoices", account_id=account_id)
    raise ToolError("the billing backend did not answer")


app = server.streamable_http_app()


class Gate:
    """Refuses every request without the bearer token, as a hosted MCP server would, and
    answers the next N POSTs with 429 and `Retry-After: 1` when CALLS_FILE.429 holds N."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization", b"") != f"Bearer {token}".encode():
                response = JSONResponse({"error": "invalid_token"}, status_code=401)
                await response(scope, receive, send)
                return
            if scope["method"] == "POST" and take_429():
                response = JSONResponse(
                    {"error": "rate_limited"}, status_code=429, headers={"Retry-After": "1"}
                )
                await response(scope, receive, send)
                return
        await self.inner(scope, receive, send)


def take_429() -> bool:
    try:
        with open(calls_file + ".429", encoding="utf-8") as f:
            left = int(f.read().strip() or 0)
    except FileNotFoundError:
        return False
    if left <= 0:
        return False
    with open(calls_file + ".429", "w", encoding="utf-8") as f:
        f.write(str(left - 1))
    with open(calls_file, "a", encoding="utf-8") as f:
        f.write(json.dumps({"tool": "(429)", "arguments": {}}) + "\n")
    return True


uvicorn.run(Gate(app), host="127.0.0.1", port=port, log_level="warning")

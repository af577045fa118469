"""An MCP client for Sandstep's tests, built on the official MCP Python SDK.

Usage: client.py URL TOKEN OPS_JSON [MODE]

Connects to URL over Streamable HTTP (with `Authorization: Bearer TOKEN`
unless TOKEN is empty), in MODE (the SDK's `auto`, the default: the current
protocol; or `legacy`: the initialize handshake and a session), runs each operation of OPS_JSON in one session and
prints one JSON line per operation:

- {"op": "protocol"}: the protocol version the session negotiated.
- {"op": "list"}: the tools, each {name, description, inputSchema}.
- {"op": "call", "name", "arguments"}: the tool's result (isError,
  structuredContent, text, meta) and the progress messages it sent, or
  {"error": {code, message}} when the server answered a JSON-RPC error.
- {"op": "listen"}: prints {"listening": true}, then waits (up to 30 s) for
  notifications/tools/list_changed and prints {"changed": true} and the
  tool names listed after it.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def emit(value):
    print(json.dumps(value), flush=True)


def tool_result(result, progress):
    return {
        "isError": bool(result.is_error),
        "structuredContent": result.structured_content,
        "text": [block.text for block in result.content if getattr(block, "type", None) == "text"],
        "meta": result.meta,
        "progress": progress,
    }


async def run(url, token, ops, mode):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            for op in ops:
                kind = op["op"]
                if kind == "list":
                    tools = await client.list_tools()
                    emit({
                        "protocol": client.protocol_version,
                        "tools": [
                            {"name": t.name, "description": t.description, "inputSchema": t.input_schema}
                            for t in tools.tools
                        ],
                    })
                elif kind == "protocol":
                    emit({"protocol": client.protocol_version})
                elif kind == "call":
                    progress = []

                    async def on_progress(done, total, message):
                        progress.append(message)

                    try:
                        result = await client.call_tool(
                            op["name"], op.get("arguments", {}), progress_callback=on_progress
                        )
                        emit(tool_result(result, progress))
                    except MCPError as error:
                        emit({"error": {"code": error.code, "message": error.message}})
                elif kind == "listen":
                    async with client.listen(tools_list_changed=True) as subscription:
                        emit({"listening": True})
                        async with asyncio.timeout(30):
                            async for _event in subscription:
                                break
                    tools = await client.list_tools(cache_mode="refresh")
                    emit({"changed": True, "tools": [t.name for t in tools.tools]})
                else:
                    raise SystemExit(f"unknown op {kind!r}")


def innermost(error):
    """The first error inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def main():
    url, token, ops = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else "auto"
    try:
        asyncio.run(run(url, token, ops, mode))
    except BaseException as error:  # noqa: BLE001 - reported, then the exit status says it failed
        cause = innermost(error)
        print(f"client error: {type(cause).__name__}: {cause}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

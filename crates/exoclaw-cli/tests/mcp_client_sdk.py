"""The official MCP Python SDK as a client of exoclaw's MCP server.

Usage: python mcp_client_sdk.py stdio EXOCLAW_BINARY WORKSPACE
       python mcp_client_sdk.py http URL TOKEN
`stdio` starts `exoclaw mcp serve`; `http` connects to a gateway's `/mcp` with the bearer TOKEN.
Prints one JSON line: the tool names offered, `read_file`'s answer, its answer for a path the
workspace's rules deny, the `ask_default` agent's answer, and whether calling a tool that is not
offered came back as an error.
"""
import asyncio
import contextlib
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def text_of(result):
    return "".join(block.text for block in result.content if getattr(block, "type", "") == "text")


@contextlib.asynccontextmanager
async def connect(mode, first, second):
    if mode == "stdio":
        params = StdioServerParameters(
            command=first, args=["mcp", "serve", "--workspace", second], env=dict(os.environ), cwd=second
        )
        async with stdio_client(params) as (read, write):
            yield read, write
    else:
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {second}"})
        async with client, streamable_http_client(first, http_client=client) as (read, write):
            yield read, write


async def main(mode, first, second):
    async with connect(mode, first, second) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            names = sorted(tool.name for tool in listed.tools)
            read_file = await session.call_tool("read_file", {"path": "notes.txt"})
            denied = await session.call_tool("read_file", {"path": "secret/key.txt"})
            answer = await session.call_tool("ask_default", {"message": "What is the capital of France?"})
            try:
                missing = await session.call_tool("shell", {"command": "echo hi"})
                missing_is_error = bool(missing.is_error)
            except Exception:  # the SDK raises on a JSON-RPC error
                missing_is_error = True
            print(json.dumps({
                "tools": names,
                "read_file": text_of(read_file),
                "denied": text_of(denied),
                "denied_is_error": bool(denied.is_error),
                "ask_default": text_of(answer),
                "ask_default_error": bool(answer.is_error),
                "missing_is_error": missing_is_error,
            }))


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))

"""The `websockets` Python library against a running exoclaw gateway's /ws JSON-RPC endpoint.

Run by `tests/ws.rs` (`the_python_websockets_client_chats_end_to_end`) with the WebSocket URL and
a token; the default agent answers every message with "hello there world". Exits non-zero (an
AssertionError with what was received) on the first surprise.
"""

import asyncio
import json
import sys

from websockets.asyncio.client import connect

url, token = sys.argv[1], sys.argv[2]


async def call(ws, id, method, params=None):
    """Sends a request; returns (notifications for it, the response)."""
    request = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        request["params"] = params
    await ws.send(json.dumps(request))
    notes = []
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        if "id" in message:
            assert message["id"] == id, message
            return notes, message
        assert message["method"] == "chat.event", message
        assert message["params"]["request_id"] == id, message
        notes.append(message["params"]["event"])


async def main():
    async with connect(url) as ws:
        # Before `connect`, a gateway with a token refuses everything but connect and ping.
        _, refused = await call(ws, 1, "status")
        assert refused["error"]["code"] == -32000, refused
        assert refused["error"]["data"]["code"] == "unauthenticated", refused

        _, hello = await call(
            ws, 2, "connect", {"protocol": 1, "token": token, "client": {"name": "ws_client.py", "version": "1"}}
        )
        assert hello["result"]["protocol"] == 1, hello
        assert hello["result"]["server"]["name"] == "exoclaw", hello
        assert hello["result"]["session"]["caller"] == "operator", hello

        message = {"channel": "ws", "account": "python", "peer": "tester", "content": "hi"}
        events, answer = await call(ws, 3, "chat.send", message)
        kinds = [e["type"] for e in events]
        assert kinds[0] == "turn_started" and kinds[-1] == "done", kinds
        assert "".join(e["text"] for e in events if e["type"] == "text") == "hello there world", events
        result = answer["result"]
        assert result["outcome"] == "completed", answer
        assert result["text"] == "hello there world", answer
        assert result["session_key"] == "default:ws:python:tester", answer
        assert result["usage"]["input_tokens"] == 10, answer

        # The same peer continues the same session.
        _, again = await call(ws, "second", "chat.send", dict(message, content="and again"))
        assert again["result"]["session_id"] == result["session_id"], again
        _, history = await call(ws, 5, "sessions.history", {"session_id": result["session_id"]})
        roles = [m["role"] for m in history["result"]["messages"]]
        assert roles == ["user", "assistant", "user", "assistant"], history

        await ws.send("{not json")
        parse = json.loads(await ws.recv())
        assert parse["id"] is None and parse["error"]["code"] == -32700, parse

        _, unknown = await call(ws, 6, "no.such.method")
        assert unknown["error"]["code"] == -32601, unknown
    print("ok")


asyncio.run(main())

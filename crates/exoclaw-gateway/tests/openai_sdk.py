"""The official `openai` Python SDK against a running exoclaw gateway.

Run by `tests/v1.rs` (`the_official_python_sdk_talks_to_the_gateway`) with the gateway's base URL
and token; the model `fast` answers "hello there world", `tools` answers with a get_weather call,
`limited` is rate limited.
"""

import sys

import openai

base_url, token = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)

ids = [m.id for m in client.models.list()]
assert "fast" in ids, ids

answer = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
assert answer.choices[0].message.content == "hello there world", answer
assert answer.choices[0].finish_reason == "stop", answer
assert answer.usage is not None and answer.usage.total_tokens == 13, answer.usage

chunks = list(
    client.chat.completions.create(
        model="fast",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text == "hello there world", text
assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3, chunks[-1]

tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
call = client.chat.completions.create(
    model="tools", messages=[{"role": "user", "content": "weather?"}], tools=tools
).choices[0].message.tool_calls[0]
assert call.function.name == "get_weather" and call.function.arguments == '{"city":"Oslo"}', call

with client.chat.completions.stream(
    model="tools", messages=[{"role": "user", "content": "weather?"}], tools=tools
) as stream:
    final = stream.get_final_completion()
assert final.choices[0].message.tool_calls[0].function.arguments == '{"city":"Oslo"}', final

try:
    client.chat.completions.create(model="limited", messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("expected a rate limit")
except openai.RateLimitError as e:
    assert e.status_code == 429 and e.response.headers["retry-after"] == "3", e

try:
    client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("expected not found")
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e.body

try:
    openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
    raise AssertionError("expected 401")
except openai.AuthenticationError as e:
    assert e.code == "invalid_api_key", e.body

print("openai sdk ok")

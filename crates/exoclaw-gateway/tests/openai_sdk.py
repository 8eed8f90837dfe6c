"""The official `openai` Python SDK against a running exoclaw gateway.

Run by `tests/v1.rs` (`the_official_python_sdk_talks_to_the_gateway`) with the gateway's base URL
and token; the model `fast` answers "hello there world", `tools` answers with a get_weather call,
`limited` is rate limited, `capital` answers `{"city": "Paris", "country": "France"}`, `local`
is the embedded SmolLM2 and `embed` embeds text number i as `[i + 0.5, -1.25, len(text)]` (two
tokens a text).
"""

import json
import sys

import openai
import pydantic

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



class Capital(pydantic.BaseModel):
    city: str
    country: str


question = [{"role": "user", "content": "What is the capital of France?"}]
# Structured outputs: `parse` sends the Pydantic model as a strict JSON schema and validates the
# answer into it, from a scripted upstream and from the embedded model, whose decoding is
# constrained to the schema.
parsed = client.chat.completions.parse(model="capital", messages=question, response_format=Capital)
assert parsed.choices[0].message.parsed == Capital(city="Paris", country="France"), parsed
for _ in range(2):
    local = client.chat.completions.parse(
        model="local", messages=question, response_format=Capital, temperature=0, max_tokens=64
    )
    capital = local.choices[0].message.parsed
    assert isinstance(capital, Capital) and capital.city, local
    print("embedded model:", local.choices[0].message.content)
with client.chat.completions.stream(
    model="local", messages=question, response_format=Capital, temperature=0, max_tokens=64
) as stream:
    streamed = stream.get_final_completion()
assert streamed.choices[0].message.parsed == capital, streamed

# What the gateway would otherwise drop is refused, naming the field.
for extra in [{"logprobs": True}, {"n": 2}, {"extra_body": {"logit_bias": {"1": 5}}}]:
    try:
        client.chat.completions.create(model="fast", messages=question, **extra)
        raise AssertionError(f"expected a 400 for {extra}")
    except openai.BadRequestError as e:
        field = "logit_bias" if "extra_body" in extra else next(iter(extra))
        assert e.body["param"] == field and field in e.body["message"], e.body

# Embeddings. Without `encoding_format` the SDK asks for base64 and decodes the little-endian
# float32 bytes itself; the gateway must answer in kind.
raw = client.embeddings.with_raw_response.create(model="embed", input=["hello", "hi"])
assert json.loads(raw.http_request.content)["encoding_format"] == "base64", raw.http_request.content
wire = raw.http_response.json()
assert all(isinstance(d["embedding"], str) for d in wire["data"]), wire
vectors = raw.parse()
assert [d.embedding for d in vectors.data] == [[0.5, -1.25, 5.0], [1.5, -1.25, 2.0]], vectors
assert [d.index for d in vectors.data] == [0, 1], vectors
assert vectors.model == "embed" and vectors.usage.prompt_tokens == 4 == vectors.usage.total_tokens, vectors
default = client.embeddings.create(model="embed", input="hello")
assert default.data[0].embedding == [0.5, -1.25, 5.0], default
floats = client.embeddings.create(model="embed", input=["hello"], encoding_format="float", user="alice")
assert floats.data[0].embedding == [0.5, -1.25, 5.0], floats
packed = client.embeddings.create(model="embed", input="hello", encoding_format="base64")
assert isinstance(packed.data[0].embedding, str), packed
for kwargs, param in [
    ({"model": "embed", "input": "x", "dimensions": 8}, "dimensions"),
    ({"model": "embed", "input": [[1, 2, 3]]}, "input"),
    ({"model": "fast", "input": "x"}, "model"),
]:
    try:
        client.embeddings.create(**kwargs)
        raise AssertionError(f"expected a 400 for {kwargs}")
    except openai.BadRequestError as e:
        assert e.body["param"] == param, e.body

print("openai sdk ok")

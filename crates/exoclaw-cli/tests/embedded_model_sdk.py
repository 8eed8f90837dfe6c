"""The official `openai` Python SDK against `exoclaw gateway` serving the embedded model with no
configuration file. Run by `suite/local_model.rs`
(`a_gateway_with_no_configuration_serves_the_embedded_model_to_the_openai_sdk`) with the gateway's
`/v1` base URL. No key: the gateway is open on loopback until a key is made.
"""

import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
question = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]

ids = [m.id for m in client.models.list()]
assert "local/smollm2" in ids, ids

answer = client.chat.completions.create(model="local/smollm2", messages=question, max_tokens=32, temperature=0)
assert "Paris" in answer.choices[0].message.content, answer
assert answer.usage is not None and answer.usage.completion_tokens > 0, answer.usage

chunks = list(
    client.chat.completions.create(
        model="local/smollm2",
        messages=question,
        max_tokens=32,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert "Paris" in text, text
assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 3, "streamed in pieces"
assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0, chunks[-1]

# An unknown embedded model is the client's mistake: 404 model_not_found naming it, every time,
# and never a reason to refuse the real one.
for _ in range(4):
    try:
        client.chat.completions.create(model="local/bogus", messages=question, max_tokens=4)
        raise AssertionError("local/bogus was served")
    except openai.NotFoundError as e:
        assert e.code == "model_not_found", e.body
        assert "bogus" in str(e.body), e.body
again = client.chat.completions.create(model="local/smollm2", messages=question, max_tokens=32, temperature=0)
assert "Paris" in again.choices[0].message.content, again

print("embedded model via the openai sdk ok")

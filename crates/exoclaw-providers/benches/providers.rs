//! Provider-layer benchmarks (no network):
//! - `sse_decode/*`: SSE parsing + vendor decoding + event assembly throughput, in bytes of SSE text
//!   per second, on a long realistic streamed answer (target ≥ 200 MB/s on one core);
//! - `overhead/*`: building and serialising a request plus decoding a ~1 KB streamed answer — the
//!   work exoclaw adds to one model call (target ≤ 50 µs).
//!
//! Run: `cargo bench -p exoclaw-providers --bench providers`.

#![allow(clippy::expect_used)] // a benchmark over fixed inputs; failing loudly is right

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exoclaw_core::ResponseAssembler;
use exoclaw_providers::{SseParser, WireFormat};
use exoclaw_types::{ChatRequest, GenerationParams, Message, ToolSpec};
use serde_json::json;
use std::hint::black_box;

/// Words the synthetic answers are made of: short tokens, like a real model's.
const WORDS: [&str; 8] = ["The", " capital", " of", " France", " is", " Paris", ".", " Indeed"];

fn openai_answer(tokens: usize) -> String {
    let mut out = String::new();
    for i in 0..tokens {
        let chunk = json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
            "model": "gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb",
            "choices": [{"index": 0, "delta": {"content": WORDS[i % WORDS.len()]}, "logprobs": null, "finish_reason": null}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    out.push_str(&format!("data: {}\n\n", json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})));
    out.push_str(&format!("data: {}\n\n", json!({"id": "chatcmpl-123", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": tokens, "total_tokens": tokens + 12}})));
    out.push_str("data: [DONE]\n\n");
    out
}

fn anthropic_answer(tokens: usize) -> String {
    let event = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
    let mut out = event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
        "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 1}}}),
    );
    out.push_str(&event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    for i in 0..tokens {
        out.push_str(&event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": WORDS[i % WORDS.len()]}}),
        ));
    }
    out.push_str(&event("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
    out.push_str(&event("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": tokens}})));
    out.push_str(&event("message_stop", json!({"type": "message_stop"})));
    out
}

fn gemini_answer(tokens: usize) -> String {
    let mut out = String::new();
    for i in 0..tokens {
        let last = i + 1 == tokens;
        let mut chunk = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": WORDS[i % WORDS.len()]}]}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": i + 1, "totalTokenCount": 13 + i},
            "modelVersion": "gemini-2.5-flash", "responseId": "abc123"});
        if last {
            chunk["candidates"][0]["finishReason"] = json!("STOP");
        }
        out.push_str(&format!("data: {chunk}\r\n\r\n"));
    }
    out
}

/// Bodies for every wire format, each a streamed answer of `tokens` text deltas.
fn answers(tokens: usize) -> Vec<(WireFormat, String)> {
    vec![
        (WireFormat::Anthropic, anthropic_answer(tokens)),
        (WireFormat::OpenAi, openai_answer(tokens)),
        (WireFormat::Gemini, gemini_answer(tokens)),
    ]
}

fn request() -> ChatRequest {
    ChatRequest::new(
        "test-model",
        vec![Message::user("What is the capital of France?"), Message::assistant("Paris."), Message::user("And of Italy?")],
    )
    .with_system("You are a helpful assistant.")
    .with_tools(vec![ToolSpec {
        name: "get_weather".into(),
        description: "Current weather in a city".into(),
        input_schema: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }])
    .with_params(GenerationParams { temperature: Some(0.2), max_tokens: Some(256), ..GenerationParams::default() })
}

fn sse_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("sse_decode");
    for (format, body) in answers(8_000) {
        group.throughput(Throughput::Bytes(body.len() as u64));
        // Network-sized chunks, as a socket delivers them.
        let chunks: Vec<&[u8]> = body.as_bytes().chunks(16 * 1024).collect();
        group.bench_function(format.name(), |b| {
            b.iter(|| {
                let events = format.decode_stream(chunks.iter().copied()).expect("decodes");
                let mut assembler = ResponseAssembler::new();
                for event in events {
                    assembler.push(event);
                }
                black_box(assembler.finish("bench").expect("complete"))
            })
        });
    }
    let body = openai_answer(8_000);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("sse_parser_only", |b| {
        b.iter(|| {
            let mut parser = SseParser::new();
            let mut n = 0usize;
            let mut count = |e: exoclaw_providers::SseEvent<'_>| {
                n += e.data.len();
                Ok::<(), ()>(())
            };
            for chunk in body.as_bytes().chunks(16 * 1024) {
                parser.feed(chunk, &mut count).expect("parses");
            }
            parser.finish(&mut count).expect("parses");
            black_box(n)
        })
    });
    group.finish();
}

fn overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("overhead");
    let request = request();
    for (format, body) in answers(5) {
        assert!((800..2_000).contains(&body.len()), "{}: {} bytes", format.name(), body.len());
        group.bench_function(format.name(), |b| {
            b.iter(|| {
                let wire = serde_json::to_vec(&format.encode_request(black_box(&request), true))
                    .expect("serialises");
                let events = format.decode_stream([body.as_bytes()]).expect("decodes");
                let mut assembler = ResponseAssembler::new();
                for event in events {
                    assembler.push(event);
                }
                black_box((wire, assembler.finish("bench").expect("complete")))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sse_decode, overhead);
criterion_main!(benches);

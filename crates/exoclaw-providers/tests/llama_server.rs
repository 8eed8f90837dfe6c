//! The OpenAI-compatible provider against a real llama.cpp `llama-server` running SmolLM2-135M.
//! The peer is built and fetched by `scripts/peers/` (cached); it is never skipped.

#![allow(clippy::unwrap_used)]

use exoclaw_core::{Embedder, Provider};
use exoclaw_providers::{OpenAiCompatible, ProviderOptions, presets::LLAMACPP};
use exoclaw_testkit::{conformance::drain, peers::LlamaServer};
use exoclaw_types::{
    ChatRequest, EmbeddingRequest, GenerationParams, JsonSchemaFormat, Message, ResponseFormat, StopReason,
    StreamEvent,
};

/// Each test owns its server (it starts in well under a second), so it is killed when the test
/// ends, pass or fail; nextest runs every test in its own process, where a shared static would
/// never be dropped.
fn provider(server: &LlamaServer) -> OpenAiCompatible {
    OpenAiCompatible::new(&LLAMACPP, ProviderOptions::default().base_url(format!("{}/v1", server.url())))
        .unwrap()
}

/// With no system prompt, SmolLM2's chat template injects its own ("You are … SmolLM, trained by
/// Hugging Face"), which derails the 135M model; exoclaw always sends one.
fn capital_question(max_tokens: u32) -> ChatRequest {
    ChatRequest::new("smollm2", vec![Message::user("What is the capital of France?")])
        .with_system("You are a helpful assistant.")
        .with_params(GenerationParams {
            temperature: Some(0.0),
            max_tokens: Some(max_tokens),
            seed: Some(42),
            ..GenerationParams::default()
        })
}

#[tokio::test]
async fn streams_a_real_answer_with_finish_reason_and_usage() {
    let server = LlamaServer::start();
    let provider = provider(&server);
    let (events, error) = drain(provider.stream(capital_question(48)).await.unwrap()).await;
    assert!(error.is_none(), "{error:?}");
    exoclaw_testkit::conformance::assert_order("llama-server", &events);
    let text: String = events
        .iter()
        .filter_map(|e| if let StreamEvent::TextDelta { text } = e { Some(text.as_str()) } else { None })
        .collect();
    let deltas = events.iter().filter(|e| matches!(e, StreamEvent::TextDelta { .. })).count();
    assert!(text.contains("Paris"), "answer: {text:?}");
    assert!(deltas > 3, "the answer should stream token by token, got {deltas} deltas");
    assert_eq!(events.last(), Some(&StreamEvent::Finish { reason: StopReason::EndTurn }));
    let usage = events.iter().find_map(|e| if let StreamEvent::Usage(u) = e { Some(*u) } else { None });
    let usage = usage.expect("llama-server reports usage with stream_options.include_usage");
    let (input, output) = (usage.input_tokens.unwrap(), usage.output_tokens.unwrap());
    assert!((10..200).contains(&input), "prompt tokens: {input}");
    assert!(output > 0 && output <= 48, "completion tokens: {output}");
    assert!(output as usize >= deltas / 2, "usage {output} does not match {deltas} streamed deltas");
}

#[tokio::test]
async fn a_whole_answer_and_the_token_limit() {
    let server = LlamaServer::start();
    let provider = provider(&server);
    let whole = provider.complete(capital_question(48)).await.unwrap();
    assert!(whole.message.text().contains("Paris"), "{:?}", whole.message.text());
    assert_eq!(whole.stop_reason, StopReason::EndTurn);
    assert!(whole.usage.output_tokens.is_some_and(|n| n > 0));

    let cut = provider.complete(capital_question(2)).await.unwrap();
    assert_eq!(cut.stop_reason, StopReason::MaxTokens);
    assert_eq!(cut.usage.output_tokens, Some(2));
}

#[tokio::test]
async fn lists_the_served_model() {
    let server = LlamaServer::start();
    let models = provider(&server).models().await.unwrap();
    assert!(!models.is_empty(), "llama-server lists the model it serves");
    provider(&server).health().await.unwrap();
}

#[tokio::test]
async fn a_json_schema_format_shapes_the_answer() {
    let server = LlamaServer::start();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": false,
    });
    let mut request = capital_question(64);
    request.params.response_format = Some(ResponseFormat::JsonSchema(JsonSchemaFormat {
        name: "capital".into(),
        description: None,
        schema,
        strict: true,
    }));
    let whole = provider(&server).complete(request).await.unwrap();
    let text = whole.message.text();
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    for field in ["city", "country"] {
        assert!(answer[field].is_string(), "{field} is not a string in {answer}");
    }
}

#[tokio::test]
async fn embeddings_come_back_one_per_input_in_order_across_batches() {
    let server = LlamaServer::start_with(&["--embeddings", "--pooling", "mean"]);
    let provider = provider(&server);
    let sentences =
        ["The cat sat on the mat.", "Stock markets fell sharply today.", "A kitten rests on a rug."];
    // More inputs than one call carries: the provider splits them and keeps their order.
    let count = exoclaw_providers::EMBEDDING_BATCH + 4;
    let inputs: Vec<String> = (0..count).map(|i| sentences[i % 3].to_owned()).collect();
    let answer = provider.embed(EmbeddingRequest::new("smollm2", inputs)).await.unwrap();
    assert_eq!(answer.vectors.len(), count);
    let dim = answer.vectors[0].len();
    assert_eq!(dim, 576, "SmolLM2's hidden size");
    assert!(answer.vectors.iter().all(|v| v.len() == dim && v.iter().all(|x| x.is_finite())));
    let cosine = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
    };
    // The same sentence, wherever it sits (the last batch included), gets the same vector.
    for i in [3, count - 3, count - 1] {
        assert!(cosine(&answer.vectors[i % 3], &answer.vectors[i]) > 0.9999, "input {i}");
    }
    assert!(cosine(&answer.vectors[0], &answer.vectors[1]) < 0.9999, "different sentences differ");
    assert!(answer.input_tokens.is_some_and(|t| t > count as u64), "{:?}", answer.input_tokens);
}

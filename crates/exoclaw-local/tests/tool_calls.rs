//! Constrained tool calls with the real model: SmolLM2-135M-Instruct (fetched by
//! `scripts/peers/smollm2.sh` when missing) must answer a forced tool call with a call that parses
//! and fits the tool's schema, whatever the seed and temperature. (Too small to call tools on its
//! own, it is shown beginning a call in `Auto` by a unit test in `src/tool_calls.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use exoclaw_core::Provider;
use exoclaw_local::{LocalModel, LocalOptions, LocalProvider};
use exoclaw_testkit::conformance::{assert_order, drain};
use exoclaw_types::{
    ChatRequest, GenerationParams, Message, StopReason, StreamEvent, ToolCall, ToolChoice, ToolSpec,
};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};

fn model() -> Arc<LocalModel> {
    static MODEL: OnceLock<Arc<LocalModel>> = OnceLock::new();
    MODEL.get_or_init(|| Arc::new(LocalModel::load(&exoclaw_testkit::peers::smollm2_gguf()).unwrap())).clone()
}

fn provider() -> LocalProvider {
    LocalProvider::with_model(LocalOptions::default(), model())
}

fn get_weather() -> ToolSpec {
    ToolSpec {
        name: "get_weather".into(),
        description: "The current weather in a city.".into(),
        input_schema: json!({
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city's name"}},
            "required": ["city"],
        }),
    }
}

fn get_time() -> ToolSpec {
    ToolSpec {
        name: "get_time".into(),
        description: "The current time in a time zone.".into(),
        input_schema: json!({
            "type": "object",
            "properties": {
                "timezone": {"type": "string", "description": "IANA name, e.g. Europe/Paris"},
                "format_24h": {"type": "boolean"},
            },
            "required": ["timezone"],
        }),
    }
}

fn ask(question: &str, choice: ToolChoice, params: GenerationParams) -> ChatRequest {
    let mut request = ChatRequest::new("smollm2", vec![Message::user(question)])
        .with_system("You are a helpful assistant with tools.")
        .with_tools(vec![get_weather(), get_time()])
        .with_params(params);
    request.tool_choice = Some(choice);
    request
}

fn params(temperature: f32, seed: u64) -> GenerationParams {
    GenerationParams {
        temperature: Some(temperature),
        max_tokens: Some(192),
        seed: Some(seed),
        ..Default::default()
    }
}

/// Streams `request`; checks the event order and that the answer is exactly tool calls (start,
/// arguments, call, each argument fragment the call's arguments), then usage and `ToolUse`.
async fn calls_for(request: ChatRequest) -> Vec<ToolCall> {
    let (events, error) = drain(provider().stream(request).await.unwrap()).await;
    assert!(error.is_none(), "{error:?}");
    assert_order("local", &events);
    assert!(!events.iter().any(|e| matches!(e, StreamEvent::TextDelta { .. })), "no text: {events:#?}");
    assert_eq!(events.last(), Some(&StreamEvent::Finish { reason: StopReason::ToolUse }), "{events:#?}");
    assert!(matches!(events[events.len() - 2], StreamEvent::Usage(_)), "{events:#?}");
    let mut calls = Vec::new();
    for (i, event) in events.iter().enumerate() {
        if let StreamEvent::ToolCall { index, call } = event {
            let fragments: String = events[..i]
                .iter()
                .filter_map(|e| match e {
                    StreamEvent::ToolCallArgsDelta { index: j, fragment } if j == index => {
                        Some(fragment.as_str())
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(serde_json::from_str::<Value>(&fragments).unwrap(), call.arguments);
            assert_eq!(call.id, format!("call_{index}"));
            calls.push(call.clone());
        }
    }
    calls
}

/// Whether `call` is a valid call of `get_weather` or `get_time`, checked by hand against their
/// schemas: required keys present, types right, nothing else.
fn assert_valid(call: &ToolCall) {
    let args = call.arguments.as_object().unwrap_or_else(|| panic!("arguments not an object: {call:?}"));
    match call.name.as_str() {
        "get_weather" => {
            assert!(args.get("city").is_some_and(Value::is_string), "{call:?}");
            assert!(args.keys().all(|k| k == "city"), "{call:?}");
        }
        "get_time" => {
            assert!(args.get("timezone").is_some_and(Value::is_string), "{call:?}");
            assert!(args.get("format_24h").is_none_or(Value::is_boolean), "{call:?}");
            assert!(args.keys().all(|k| k == "timezone" || k == "format_24h"), "{call:?}");
        }
        other => panic!("no tool is called `{other}`: {call:?}"),
    }
}

#[tokio::test]
async fn a_named_tool_choice_gives_exactly_that_call_with_valid_arguments() {
    let request = ask(
        "What's the weather in Paris?",
        ToolChoice::Tool { name: "get_weather".into() },
        GenerationParams { temperature: Some(0.0), max_tokens: Some(96), ..Default::default() },
    );
    let calls = calls_for(request).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].name, "get_weather");
    assert_valid(&calls[0]);
    println!("greedy: {:?}", calls[0].arguments);
}

#[tokio::test]
async fn a_required_tool_choice_gives_a_valid_call_to_one_of_the_tools() {
    let request = ask("What time is it in Tokyo?", ToolChoice::Required, params(0.0, 0));
    let calls = calls_for(request).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_valid(&calls[0]);
    println!("required: {calls:?}");
}

#[tokio::test]
async fn every_seed_at_temperature_one_gives_a_parseable_valid_call() {
    for seed in 1..=5 {
        let request = if seed % 2 == 1 {
            ask(
                "What's the weather in Paris?",
                ToolChoice::Tool { name: "get_weather".into() },
                params(1.0, seed),
            )
        } else {
            ask("Is it raining in Oslo, and what time is it there?", ToolChoice::Required, params(1.0, seed))
        };
        // One answer may hold several calls (parallel tool calls); each one is valid.
        let calls = calls_for(request).await;
        assert!(!calls.is_empty(), "seed {seed}");
        for call in &calls {
            assert_valid(call);
            if seed % 2 == 1 {
                assert_eq!(call.name, "get_weather");
            }
        }
        println!("seed {seed}: {calls:?}");
    }
}

#[tokio::test]
async fn tool_choice_none_answers_in_plain_text() {
    let request = ask("What is the capital of France?", ToolChoice::None, params(0.0, 0));
    let (events, error) = drain(provider().stream(request).await.unwrap()).await;
    assert!(error.is_none(), "{error:?}");
    assert_order("local", &events);
    assert!(
        !events.iter().any(|e| matches!(
            e,
            StreamEvent::ToolCallStart { .. }
                | StreamEvent::ToolCallArgsDelta { .. }
                | StreamEvent::ToolCall { .. }
        )),
        "{events:#?}"
    );
    let text: String = events
        .iter()
        .filter_map(|e| if let StreamEvent::TextDelta { text } = e { Some(text.as_str()) } else { None })
        .collect();
    assert!(text.contains("Paris"), "{text:?}");
    assert!(matches!(
        events.last(),
        Some(StreamEvent::Finish { reason: StopReason::EndTurn | StopReason::MaxTokens })
    ));
}

#[tokio::test]
async fn auto_leaves_a_plain_answer_unconstrained_and_streamed() {
    let request = ask("What is the capital of France?", ToolChoice::Auto, params(0.0, 0));
    let (events, error) = drain(provider().stream(request).await.unwrap()).await;
    assert!(error.is_none(), "{error:?}");
    assert_order("local", &events);
    let deltas = events.iter().filter(|e| matches!(e, StreamEvent::TextDelta { .. })).count();
    assert!(deltas >= 3, "plain text streams token by token: {events:#?}");
    assert!(!events.iter().any(|e| matches!(e, StreamEvent::ToolCall { .. })), "{events:#?}");
}

#[tokio::test]
async fn a_tool_choice_naming_no_offered_tool_is_an_invalid_request() {
    let request = ask("Hi", ToolChoice::Tool { name: "launch_rocket".into() }, params(0.0, 0));
    let error = provider().stream(request).await.err().expect("refused before streaming");
    assert_eq!(error.kind, exoclaw_core::ErrorKind::InvalidRequest, "{error}");
    assert!(error.to_string().contains("launch_rocket"), "{error}");
}

#[tokio::test]
async fn one_answer_may_call_two_tools_and_parallel_tool_calls_false_allows_one() {
    let question = "Is it raining in Oslo, and what time is it there?";
    let calls = calls_for(ask(question, ToolChoice::Required, params(0.0, 0))).await;
    println!("parallel: {calls:?}");
    assert!(calls.len() >= 2, "{calls:?}");
    calls.iter().for_each(assert_valid);
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"get_weather") && names.contains(&"get_time"), "{names:?}");

    let mut one = ask(question, ToolChoice::Required, params(0.0, 0));
    one.params.parallel_tool_calls = Some(false);
    let calls = calls_for(one).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_valid(&calls[0]);
}

//! Tests of the Anthropic provider: request encoding, both decoders, errors, structured outputs.

use super::answer::ANSWER_TOOL;
use super::*;
use exoclaw_core::ResponseAssembler;
use exoclaw_types::{GenerationParams, ResponseFormat, ToolResult, ToolSpec};
use http::header::HeaderValue;
use pretty_assertions::assert_eq;

fn decode(events: &[Value]) -> (Vec<StreamEvent>, Result<(), WireError>) {
    let mut d = AnthropicDecoder::default();
    let mut out = Vec::new();
    for e in events {
        if let Err(err) = d.event("ignored", &e.to_string(), &mut out) {
            return (out, Err(err));
        }
    }
    let end = d.end(&mut out);
    (out, end)
}

fn start(input_tokens: u64) -> Value {
    json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
        "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1}}})
}

fn stop(reason: &str, output_tokens: u64) -> [Value; 2] {
    [
        json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null},
               "usage": {"output_tokens": output_tokens}}),
        json!({"type": "message_stop"}),
    ]
}

#[test]
fn request_carries_system_params_tools_and_no_seed() {
    let request = ChatRequest::new("claude", vec![Message::user("Hi")])
        .with_system("Be brief.")
        .with_tools(vec![ToolSpec {
            name: "get_weather".into(),
            description: "Weather".into(),
            input_schema: json!({"type": "object"}),
        }])
        .with_params(GenerationParams {
            temperature: Some(0.5),
            max_tokens: Some(64),
            top_p: Some(0.5),
            stop: vec!["END".into()],
            seed: Some(3),
            ..GenerationParams::default()
        });
    let body = encode_request(&request, true);
    assert_eq!(body["system"], "Be brief.");
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(body["stream"], true);
    assert_eq!(body["stop_sequences"], json!(["END"]));
    assert_eq!((body["temperature"].clone(), body["top_p"].clone()), (json!(0.5), json!(0.5)));
    assert!(body.get("seed").is_none() && body.get("stop").is_none());
    assert_eq!(
        body["tools"][0],
        json!({"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}})
    );
    assert_eq!(body["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]));

    let plain = encode_request(&ChatRequest::new("claude", vec![Message::user("Hi")]), false);
    assert_eq!(plain["max_tokens"], DEFAULT_MAX_TOKENS);
    assert!(plain.get("stream").is_none() && plain.get("system").is_none() && plain.get("tools").is_none());
    for absent in ["tool_choice", "metadata", "output_config"] {
        assert!(body.get(absent).is_none() && plain.get(absent).is_none(), "{absent}");
    }
}

fn weather_tool(name: &str) -> ToolSpec {
    ToolSpec { name: name.into(), description: "Weather".into(), input_schema: json!({"type": "object"}) }
}

fn city_schema() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"], "additionalProperties": false})
}

/// A request for `model` whose answer must follow [`city_schema`].
fn structured(model: &str, strict: bool) -> ChatRequest {
    let format = ResponseFormat::JsonSchema(exoclaw_types::JsonSchemaFormat {
        name: "place".into(),
        description: Some("The capital.".into()),
        schema: city_schema(),
        strict,
    });
    let params = GenerationParams { response_format: Some(format), ..GenerationParams::default() };
    ChatRequest::new(model, vec![Message::user("Capital of France?")]).with_params(params)
}

#[test]
fn the_end_user_goes_in_metadata() {
    let mut request = ChatRequest::new("claude", vec![Message::user("Hi")]);
    request.user = Some("user-7f3a".into());
    assert_eq!(encode_request(&request, false)["metadata"], json!({"user_id": "user-7f3a"}));
}

#[test]
fn parallel_calls_off_disables_parallel_tool_use_when_there_are_tools() {
    let params = GenerationParams { parallel_tool_calls: Some(false), ..GenerationParams::default() };
    let bare = ChatRequest::new("claude", vec![Message::user("Hi")]).with_params(params);
    assert!(encode_request(&bare, false).get("tool_choice").is_none(), "no tools, nothing to disable");

    let mut request = bare.with_tools(vec![weather_tool("get_weather")]);
    assert_eq!(
        encode_request(&request, false)["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    request.tool_choice = Some(ToolChoice::Required);
    assert_eq!(
        encode_request(&request, false)["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    request.tool_choice = Some(ToolChoice::None);
    assert_eq!(encode_request(&request, false)["tool_choice"], json!({"type": "none"}));
    request.tool_choice = None;
    request.params.parallel_tool_calls = Some(true);
    assert!(encode_request(&request, false).get("tool_choice").is_none(), "parallel is the default");
}

#[test]
fn a_schema_without_native_support_is_answered_through_a_forced_answer_tool() {
    // Claude 3.5 Haiku has no native structured outputs: strict or not, the fallback.
    let body = encode_request(&structured("claude-3-5-haiku-20241022", true), true);
    assert_eq!(body["tools"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["tools"][0]["name"], ANSWER_TOOL);
    assert_eq!(body["tools"][0]["input_schema"], city_schema());
    assert!(body["tools"][0]["description"].as_str().unwrap().ends_with("The capital."));
    assert_eq!(body["tool_choice"], json!({"type": "tool", "name": ANSWER_TOOL}));
    assert!(body.get("output_config").is_none());
}

#[test]
fn beside_real_tools_the_answer_tool_takes_a_free_name_and_any_tool_must_be_called() {
    let request = structured("claude-3-7-sonnet-latest", false).with_tools(vec![weather_tool(ANSWER_TOOL)]);
    let body = encode_request(&request, false);
    let names: Vec<&str> =
        body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, [ANSWER_TOOL, "json_answer_1"]);
    assert_eq!(body["tool_choice"], json!({"type": "any"}));
    assert_eq!(body["tools"][1]["input_schema"], city_schema());

    // Real tools the model may not call leave the answer tool as the only way to answer.
    let mut request = request;
    request.tool_choice = Some(ToolChoice::None);
    assert_eq!(
        encode_request(&request, false)["tool_choice"],
        json!({"type": "tool", "name": "json_answer_1"})
    );
    // A turn that must call a real tool has no answer to shape.
    request.tool_choice = Some(ToolChoice::Required);
    let body = encode_request(&request, false);
    assert_eq!(
        (body["tools"].as_array().map(Vec::len), &body["tool_choice"]),
        (Some(1), &json!({"type": "any"}))
    );
}

#[test]
fn a_json_object_format_is_an_any_object_answer_tool() {
    let params =
        GenerationParams { response_format: Some(ResponseFormat::JsonObject), ..GenerationParams::default() };
    // Even on a model with native structured outputs: those need a closed schema.
    let request = ChatRequest::new("claude-sonnet-4-5", vec![Message::user("Hi")]).with_params(params);
    let body = encode_request(&request, false);
    assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
    assert_eq!(body["tool_choice"], json!({"type": "tool", "name": ANSWER_TOOL}));
    let text = ChatRequest::new("claude", vec![Message::user("Hi")]).with_params(GenerationParams {
        response_format: Some(ResponseFormat::Text),
        ..GenerationParams::default()
    });
    assert!(encode_request(&text, false).get("tools").is_none());
}

#[test]
fn strict_schemas_use_output_config_on_the_models_that_take_it() {
    for model in ["claude-sonnet-4-5-20250929", "claude-haiku-4-5", "claude-opus-4-6"] {
        let body = encode_request(&structured(model, true), false);
        assert_eq!(
            body["output_config"],
            json!({"format": {"type": "json_schema", "schema": city_schema()}}),
            "{model}"
        );
        assert!(body.get("tools").is_none() && body.get("tool_choice").is_none(), "{model}: {body}");
    }
    // Not strict: the schema may hold keywords constrained decoding refuses.
    let body = encode_request(&structured("claude-sonnet-4-5-20250929", false), false);
    assert!(body.get("output_config").is_none());
    assert_eq!(body["tools"][0]["name"], ANSWER_TOOL);
    // Claude Sonnet 4 is not Sonnet 4.5.
    assert!(
        encode_request(&structured("claude-sonnet-4-20250514", true), false).get("output_config").is_none()
    );
}

#[test]
fn a_schema_the_answer_tool_cannot_carry_is_refused_naming_the_field() {
    let mut request = structured("claude-3-5-haiku-latest", true);
    let Some(ResponseFormat::JsonSchema(format)) = &mut request.params.response_format else {
        unreachable!()
    };
    format.schema = json!({"type": "array", "items": {"type": "string"}});
    let err = OutputPlan::new(&request).check(&request).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert!(err.message.starts_with("response_format:"), "{}", err.message);
    // Natively, the vendor decides.
    let mut native = request.clone();
    native.model = "claude-sonnet-4-5".into();
    assert!(OutputPlan::new(&native).check(&native).is_ok());
}

/// Decodes a recorded SSE body (named events, as the API sends them) for a request that used
/// `answer`.
fn decode_sse(answer: AnswerTool, body: &str) -> Vec<StreamEvent> {
    let mut decoding = crate::transport::Decoding::new(AnthropicDecoder::new(Some(answer)));
    let mut out = Vec::new();
    let done = decoding.feed(body.as_bytes(), &mut out).unwrap();
    assert!(done, "message_stop ends the answer");
    out
}

fn sse(events: &[Value]) -> String {
    events.iter().map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap())).collect()
}

fn tool_block(index: u32, id: &str, name: &str, fragments: &[&str]) -> Vec<Value> {
    let mut events = vec![json!({"type": "content_block_start", "index": index,
        "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})];
    for f in fragments {
        events.push(json!({"type": "content_block_delta", "index": index,
            "delta": {"type": "input_json_delta", "partial_json": f}}));
    }
    events.push(json!({"type": "content_block_stop", "index": index}));
    events
}

#[test]
fn a_streamed_answer_tool_call_is_answer_text_and_ends_the_turn() {
    let mut events = vec![start(20)];
    events.extend(tool_block(
        0,
        "toolu_01",
        ANSWER_TOOL,
        &["", "{\"city\": \"Par", "is\", \"country\": \"France\"}"],
    ));
    events.extend(stop("tool_use", 14));
    let answer = AnswerTool { name: ANSWER_TOOL.into(), beside_real_tools: false };
    let out = decode_sse(answer, &sse(&events));
    assert_eq!(
        out,
        vec![
            StreamEvent::TextDelta { text: "{\"city\": \"Par".into() },
            StreamEvent::TextDelta { text: "is\", \"country\": \"France\"}".into() },
            StreamEvent::Usage(Usage { input_tokens: Some(20), output_tokens: Some(14), ..Usage::default() }),
            StreamEvent::Finish { reason: StopReason::EndTurn },
        ]
    );
}

#[test]
fn an_answer_beside_a_real_call_is_dropped_and_the_real_call_kept() {
    let answer = AnswerTool { name: ANSWER_TOOL.into(), beside_real_tools: true };
    let mut events = vec![start(20)];
    events.extend(tool_block(0, "toolu_01", ANSWER_TOOL, &["{\"city\": \"Paris\"}"]));
    events.extend(tool_block(1, "toolu_02", "get_weather", &["{\"city\": \"Paris\"}"]));
    events.extend(stop("tool_use", 30));
    let out = decode_sse(answer.clone(), &sse(&events));
    assert!(!out.iter().any(|e| matches!(e, StreamEvent::TextDelta { .. })), "{out:#?}");
    let calls: Vec<&ToolCall> = out
        .iter()
        .filter_map(|e| if let StreamEvent::ToolCall { call, .. } = e { Some(call) } else { None })
        .collect();
    assert_eq!(
        calls,
        [&ToolCall {
            id: "toolu_02".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"})
        }]
    );
    assert!(out.contains(&StreamEvent::ToolCallStart {
        index: 0,
        id: "toolu_02".into(),
        name: "get_weather".into()
    }));
    assert_eq!(out.last(), Some(&StreamEvent::Finish { reason: StopReason::ToolUse }));

    // Alone, the held answer goes out whole before usage; an empty input is the empty object.
    let mut events = vec![start(20)];
    events.extend(tool_block(0, "toolu_01", ANSWER_TOOL, &[]));
    events.extend(stop("tool_use", 3));
    let out = decode_sse(answer, &sse(&events));
    assert_eq!(out[0], StreamEvent::TextDelta { text: "{}".into() });
    assert_eq!(out.last(), Some(&StreamEvent::Finish { reason: StopReason::EndTurn }));
}

#[test]
fn a_whole_answer_tool_call_is_answer_text_unless_a_real_call_is_beside_it() {
    let answer = AnswerTool { name: "json_answer_1".into(), beside_real_tools: true };
    let call = |id: &str, name: &str| json!({"type": "tool_use", "id": id, "name": name, "input": {"city": "Paris", "country": "France"}});
    let message = |content: Value| {
        json!({"type": "message", "role": "assistant", "content": content, "stop_reason": "tool_use",
            "usage": {"input_tokens": 9, "output_tokens": 5}})
    };
    let mut assembler = ResponseAssembler::new();
    for event in decode_message(&message(json!([call("toolu_1", "json_answer_1")])), Some(&answer)).unwrap() {
        assembler.push(event);
    }
    let response = assembler.finish("anthropic").unwrap();
    assert_eq!(response.message.parts, vec![Part::text("{\"city\":\"Paris\",\"country\":\"France\"}")]);
    assert_eq!(response.stop_reason, StopReason::EndTurn);

    let both = message(json!([call("toolu_1", "json_answer_1"), call("toolu_2", "json_answer")]));
    let events = decode_message(&both, Some(&answer)).unwrap();
    assert!(!events.iter().any(|e| matches!(e, StreamEvent::TextDelta { .. })), "{events:#?}");
    assert!(
        events.iter().any(|e| matches!(e, StreamEvent::ToolCall { call, .. } if call.name == "json_answer"))
    );
    assert_eq!(events.last(), Some(&StreamEvent::Finish { reason: StopReason::ToolUse }));
    // Without the request (replayed traffic), the answer tool is a tool like any other.
    assert_eq!(
        decode_response(&both).unwrap().iter().filter(|e| matches!(e, StreamEvent::ToolCall { .. })).count(),
        2
    );
}

#[test]
fn tool_choice_maps_to_anthropic_shapes() {
    let cases = [
        (ToolChoice::Auto, json!({"type": "auto"})),
        (ToolChoice::Required, json!({"type": "any"})),
        (ToolChoice::None, json!({"type": "none"})),
        (ToolChoice::Tool { name: "f".into() }, json!({"type": "tool", "name": "f"})),
    ];
    for (choice, wire) in cases {
        let mut request = ChatRequest::new("m", vec![Message::user("x")]);
        request.tool_choice = Some(choice);
        assert_eq!(encode_request(&request, false)["tool_choice"], wire);
    }
}

#[test]
fn tool_results_go_in_one_user_turn_and_same_roles_merge() {
    let call = |id: &str, arguments: Value| {
        Part::ToolCall(ToolCall { id: id.into(), name: "get_weather".into(), arguments })
    };
    let request = ChatRequest::new(
        "m",
        vec![
            Message::user("Weather?"),
            Message::user("In Paris."),
            Message::new(
                Role::Assistant,
                vec![
                    Part::Thinking { text: "Let me look.".into(), signature: Some("sig".into()) },
                    Part::Thinking { text: "unsigned".into(), signature: None },
                    Part::text("Checking."),
                    call("call_1", json!({"city": "Paris"})),
                    call("call_2", Value::String("{\"city\":".into())),
                ],
            ),
            Message::tool_results([ToolResult {
                call_id: "call_1".into(),
                content: "sunny".into(),
                is_error: false,
            }]),
            Message::user("And tomorrow?"),
            Message::tool_results([ToolResult {
                call_id: "call_2".into(),
                content: "bad arguments".into(),
                is_error: true,
            }]),
        ],
    );
    let body = encode_request(&request, false);
    let messages = body["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(
        messages[0]["content"],
        json!([{"type": "text", "text": "Weather?"}, {"type": "text", "text": "In Paris."}])
    );
    assert_eq!(
        messages[1]["content"],
        json!([
            {"type": "thinking", "thinking": "Let me look.", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
        ])
    );
    assert_eq!(
        messages[2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny", "is_error": false},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "bad arguments", "is_error": true},
            {"type": "text", "text": "And tomorrow?"},
        ])
    );
}

#[test]
fn system_messages_join_the_system_prompt_and_images_use_sources() {
    let request = ChatRequest::new(
        "m",
        vec![
            Message::new(Role::System, vec![Part::text("Use metric.")]),
            Message::new(
                Role::User,
                vec![
                    Part::text(""),
                    Part::Image {
                        source: ImageSource::Base64 { media_type: "image/png".into(), data: "AAA".into() },
                    },
                    Part::Image { source: ImageSource::Url { url: "https://x/y.png".into() } },
                ],
            ),
            Message::new(
                Role::Assistant,
                vec![Part::Thinking { text: String::new(), signature: Some("enc".into()) }],
            ),
        ],
    )
    .with_system("Be brief.");
    let body = encode_request(&request, false);
    assert_eq!(body["system"], "Be brief.\n\nUse metric.");
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
        ])
    );
    assert_eq!(body["messages"][1]["content"], json!([{"type": "redacted_thinking", "data": "enc"}]));
}

#[test]
fn text_stream_with_normalised_usage() {
    let mut events = vec![
        json!({"type": "message_start", "message": {"usage": {"input_tokens": 12,
            "cache_creation_input_tokens": 4, "cache_read_input_tokens": 3, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "some_future_event", "index": 0}),
    ];
    events.extend(stop("end_turn", 5));
    let (out, end) = decode(&events);
    end.unwrap();
    assert_eq!(
        out,
        vec![
            StreamEvent::TextDelta { text: "Hi".into() },
            StreamEvent::Usage(Usage {
                input_tokens: Some(19),
                output_tokens: Some(5),
                cache_read_tokens: Some(3),
                cache_write_tokens: Some(4),
            }),
            StreamEvent::Finish { reason: StopReason::EndTurn },
        ]
    );
}

#[test]
fn omitted_cache_fields_stay_unreported_and_no_usage_means_no_usage_event() {
    let mut events = vec![start(7)];
    events.extend(stop("max_tokens", 2));
    let (out, _) = decode(&events);
    assert_eq!(
        out,
        vec![
            StreamEvent::Usage(Usage { input_tokens: Some(7), output_tokens: Some(2), ..Usage::default() }),
            StreamEvent::Finish { reason: StopReason::MaxTokens },
        ]
    );
    let (out, _) = decode(&[
        json!({"type": "message_start", "message": {"id": "m"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "pause_turn"}}),
        json!({"type": "message_stop"}),
    ]);
    assert_eq!(out, vec![StreamEvent::Finish { reason: StopReason::Other("pause_turn".into()) }]);
}

#[test]
fn tool_calls_are_numbered_by_call_not_by_content_block() {
    let mut events = vec![
        start(10),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Ok."}}),
        json!({"type": "content_block_stop", "index": 0}),
    ];
    for (block, id, name, fragments) in
        [(1, "toolu_a", "f", ["", "{\"a\"", ": 1}"]), (2, "toolu_b", "g", ["{}", "", ""])]
    {
        events.push(json!({"type": "content_block_start", "index": block,
            "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}));
        for f in fragments {
            events.push(json!({"type": "content_block_delta", "index": block,
                "delta": {"type": "input_json_delta", "partial_json": f}}));
        }
        events.push(json!({"type": "content_block_stop", "index": block}));
    }
    events.extend(stop("tool_use", 9));
    let (out, end) = decode(&events);
    end.unwrap();
    let calls: Vec<&StreamEvent> = out
        .iter()
        .filter(|e| matches!(e, StreamEvent::ToolCallStart { .. } | StreamEvent::ToolCall { .. }))
        .collect();
    assert_eq!(
        calls,
        [
            &StreamEvent::ToolCallStart { index: 0, id: "toolu_a".into(), name: "f".into() },
            &StreamEvent::ToolCall {
                index: 0,
                call: ToolCall { id: "toolu_a".into(), name: "f".into(), arguments: json!({"a": 1}) },
            },
            &StreamEvent::ToolCallStart { index: 1, id: "toolu_b".into(), name: "g".into() },
            &StreamEvent::ToolCall {
                index: 1,
                call: ToolCall { id: "toolu_b".into(), name: "g".into(), arguments: json!({}) },
            },
        ]
    );
    let fragments = out.iter().filter(|e| matches!(e, StreamEvent::ToolCallArgsDelta { .. })).count();
    assert_eq!(fragments, 3, "empty fragments are not events");
    assert_eq!(out.last(), Some(&StreamEvent::Finish { reason: StopReason::ToolUse }));
}

#[test]
fn thinking_signatures_and_redacted_thinking() {
    let mut events = vec![
        start(1),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "enc"}}),
        json!({"type": "content_block_stop", "index": 1}),
    ];
    events.extend(stop("end_turn", 3));
    let (out, _) = decode(&events);
    assert_eq!(
        out[..3],
        [
            StreamEvent::ThinkingDelta { text: "Hmm.".into() },
            StreamEvent::ThinkingSignature { signature: "sig".into() },
            StreamEvent::ThinkingSignature { signature: "enc".into() },
        ]
    );
}

#[test]
fn error_events_truncation_and_garbage() {
    let (out, end) = decode(&[
        start(1),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ]);
    assert_eq!(out, vec![StreamEvent::TextDelta { text: "Hel".into() }]);
    let err = end.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Overloaded);
    assert!(err.message.contains("Overloaded"), "{}", err.message);

    let (out, end) = decode(&[start(1)]);
    assert!(out.is_empty());
    assert_eq!(end.unwrap_err().kind, ErrorKind::Protocol);

    let mut d = AnthropicDecoder::default();
    let err = d.event("content_block_delta", "{\"type\": \"content_block_delta\", \"ind", &mut Vec::new());
    assert_eq!(err.unwrap_err().kind, ErrorKind::Protocol);
}

#[test]
fn whole_response_with_tool_call_and_usage() {
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 3,
                  "output_tokens": 5},
    });
    let mut assembler = ResponseAssembler::new();
    for event in decode_response(&body).unwrap() {
        assembler.push(event);
    }
    let response = assembler.finish("anthropic").unwrap();
    assert_eq!(
        response.message.parts,
        vec![
            Part::Thinking { text: "Hmm.".into(), signature: Some("sig".into()) },
            Part::text("Checking."),
            Part::ToolCall(ToolCall {
                id: "toolu_1".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"}),
            }),
        ]
    );
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: Some(15),
            output_tokens: Some(5),
            cache_read_tokens: Some(3),
            cache_write_tokens: Some(0)
        }
    );
    assert!(decode_response(&json!({"type": "message"})).is_err());
}

#[test]
fn errors_are_typed_by_their_type() {
    let body = |kind: &str, message: &str| {
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"})
            .to_string()
    };
    let none = HeaderMap::new();
    let mut retry = HeaderMap::new();
    retry.insert("retry-after", HeaderValue::from_static("7"));
    let cases = [
        (400, body("invalid_request_error", "max_tokens: Field required"), ErrorKind::InvalidRequest),
        (
            400,
            body("invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
            ErrorKind::ContextLength,
        ),
        (401, body("authentication_error", "invalid x-api-key"), ErrorKind::Auth),
        (403, body("permission_error", "no access"), ErrorKind::Permission),
        (404, body("not_found_error", "model: claude-9"), ErrorKind::ModelNotFound),
        (413, body("request_too_large", "Request exceeds the maximum size"), ErrorKind::InvalidRequest),
        (500, body("api_error", "Internal server error"), ErrorKind::Server),
        (529, body("overloaded_error", "Overloaded"), ErrorKind::Overloaded),
        (502, "<html>Bad Gateway</html>".to_owned(), ErrorKind::Server),
    ];
    for (status, text, kind) in cases {
        let err = classify_error(status, &none, &text);
        assert_eq!(err.kind, kind, "{text}");
    }
    let err = classify_error(429, &retry, &body("rate_limit_error", "Number of requests exceeded"));
    assert_eq!(err.kind, ErrorKind::RateLimited { retry_after: Some(Duration::from_secs(7)) });
    assert_eq!(err.message, "Number of requests exceeded [rate_limit_error] (request_id req_1)");
    assert_eq!(classify_error(502, &none, "<html>Bad Gateway</html>").message, "<html>Bad Gateway</html>");
}

#[test]
fn a_key_is_required_and_the_base_has_no_trailing_slash() {
    let err = Anthropic::new(ProviderOptions::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert!(err.message.contains("ANTHROPIC_API_KEY"), "{}", err.message);
    let p =
        Anthropic::new(ProviderOptions::default().api_key("sk-ant-secret").base_url("http://x/")).unwrap();
    assert_eq!((p.name(), p.base_url()), ("anthropic", "http://x"));
    assert!(!format!("{p:?}").contains("sk-ant-secret"));
    let p = Anthropic::new(ProviderOptions::default().api_key("k")).unwrap();
    assert_eq!(p.base_url(), DEFAULT_BASE_URL);
}

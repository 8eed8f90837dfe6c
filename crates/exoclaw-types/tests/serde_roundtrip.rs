//! Every wire type survives a trip through JSON unchanged, and has a JSON schema.

use exoclaw_types::*;
use pretty_assertions::assert_eq;
use serde_json::json;

fn every_part() -> Vec<Part> {
    vec![
        Part::text("hello"),
        Part::Image {
            source: ImageSource::Base64 { media_type: "image/png".into(), data: "iVBORw0K".into() },
        },
        Part::Image { source: ImageSource::Url { url: "https://example.com/cat.jpg".into() } },
        Part::ToolCall(ToolCall {
            id: "call_1".into(),
            name: "read_file".into(),
            arguments: json!({"path": "a.txt"}),
        }),
        Part::ToolResult(ToolResult {
            call_id: "call_1".into(),
            content: "contents".into(),
            is_error: false,
        }),
        Part::Thinking { text: "hmm".into(), signature: Some("sig".into()) },
        Part::Thinking { text: "hmm".into(), signature: None },
    ]
}

#[test]
fn messages_round_trip() {
    for role in [Role::System, Role::User, Role::Assistant, Role::Tool] {
        let m = Message::new(role, every_part());
        let back: Message = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}

#[test]
fn parts_are_tagged_by_type() {
    let v = serde_json::to_value(Part::ToolCall(ToolCall {
        id: "c".into(),
        name: "shell".into(),
        arguments: json!({"cmd": "ls"}),
    }))
    .unwrap();
    assert_eq!(v, json!({"type": "tool_call", "id": "c", "name": "shell", "arguments": {"cmd": "ls"}}));
}

#[test]
fn stream_events_round_trip() {
    let events = vec![
        StreamEvent::TextDelta { text: "Hi".into() },
        StreamEvent::ThinkingDelta { text: "so".into() },
        StreamEvent::ThinkingSignature { signature: "abc".into() },
        StreamEvent::ToolCallStart { index: 0, id: "c".into(), name: "t".into() },
        StreamEvent::ToolCallArgsDelta { index: 0, fragment: "{\"a\"".into() },
        StreamEvent::ToolCall {
            index: 0,
            call: ToolCall { id: "c".into(), name: "t".into(), arguments: json!({"a": 1}) },
        },
        StreamEvent::Usage(Usage {
            input_tokens: Some(3),
            output_tokens: None,
            cache_read_tokens: Some(0),
            cache_write_tokens: None,
        }),
        StreamEvent::Finish { reason: StopReason::ToolUse },
        StreamEvent::Finish { reason: StopReason::Other("weird".into()) },
    ];
    for e in events {
        let back: StreamEvent = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}

#[test]
fn unreported_usage_stays_absent_not_zero() {
    let u = Usage { input_tokens: Some(10), ..Usage::default() };
    let v = serde_json::to_value(u).unwrap();
    assert_eq!(v, json!({"input_tokens": 10}));
    let back: Usage = serde_json::from_value(json!({})).unwrap();
    assert!(back.is_unreported());
    assert_eq!(back.output_tokens, None);
}

#[test]
fn usage_update_keeps_earlier_counts_the_later_report_omits() {
    let mut u = Usage { input_tokens: Some(25), cache_read_tokens: Some(5), ..Usage::default() };
    u.update(Usage { output_tokens: Some(12), ..Usage::default() });
    assert_eq!(
        u,
        Usage {
            input_tokens: Some(25),
            output_tokens: Some(12),
            cache_read_tokens: Some(5),
            cache_write_tokens: None
        }
    );
}

#[test]
fn chat_request_round_trips_and_finds_tool_names() {
    let call = ToolCall { id: "call_9".into(), name: "get_weather".into(), arguments: json!({}) };
    let req = ChatRequest::new(
        "gpt-4o-mini",
        vec![
            Message::user("weather?"),
            Message::new(Role::Assistant, vec![Part::ToolCall(call)]),
            Message::tool_results([ToolResult {
                call_id: "call_9".into(),
                content: "sunny".into(),
                is_error: false,
            }]),
        ],
    )
    .with_system("be brief")
    .with_tools(vec![ToolSpec {
        name: "get_weather".into(),
        description: "weather".into(),
        input_schema: json!({"type": "object"}),
    }])
    .with_params(GenerationParams {
        temperature: Some(0.5),
        max_tokens: Some(100),
        top_p: None,
        stop: vec!["\n\n".into()],
        seed: Some(7),
        response_format: Some(ResponseFormat::JsonSchema(JsonSchemaFormat {
            name: "answer".into(),
            description: Some("the answer".into()),
            schema: serde_json::json!({"type": "object"}),
            strict: true,
        })),
        parallel_tool_calls: Some(false),
    });
    let back: ChatRequest = serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
    assert_eq!(back, req);
    assert_eq!(req.tool_name_for_call("call_9"), Some("get_weather"));
    assert_eq!(req.tool_name_for_call("nope"), None);
}

#[test]
fn json_schemas_describe_the_wire_types() {
    let schema = serde_json::to_value(schemars::schema_for!(StreamEvent)).unwrap();
    let text = schema.to_string();
    for variant in ["text_delta", "tool_call_args_delta", "finish", "usage"] {
        assert!(text.contains(variant), "schema lacks {variant}: {text}");
    }
    let schema = serde_json::to_value(schemars::schema_for!(ChatRequest)).unwrap();
    assert!(schema["properties"]["messages"].is_object());
}

#[test]
fn an_error_event_keeps_its_code_as_the_string_clients_match_on() {
    let event = AgentEvent::Error { code: ErrorCode::BudgetExceeded, message: "over".into() };
    let value = serde_json::to_value(&event).unwrap();
    assert_eq!(value, json!({"type": "error", "code": "budget_exceeded", "message": "over"}));
    assert_eq!(serde_json::from_value::<AgentEvent>(value).unwrap(), event);
    let unknown = json!({"type": "error", "code": "no_such_code", "message": "?"});
    assert!(serde_json::from_value::<AgentEvent>(unknown).is_err());
}

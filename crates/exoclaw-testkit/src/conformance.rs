//! The provider conformance suite: the same scenarios, with the same expected outcome, for every
//! provider, each against a real HTTP server on loopback replaying the vendor's wire traffic from
//! [`crate::fixtures`].
//!
//! Instantiate it in a provider crate's tests with [`conformance_suite!`](crate::conformance_suite):
//!
//! ```ignore
//! mod openai {
//!     exoclaw_testkit::conformance_suite!(exoclaw_testkit::fixtures::OpenAiWire, |t: &Target| { /* build */ });
//! }
//! ```

use crate::fixtures::WireFixtures;
use crate::server::{Ending, Reply, ScriptedServer};
use exoclaw_core::{ErrorKind, EventStream, Provider, ProviderError};
use exoclaw_types::{
    ChatRequest, GenerationParams, ImageSource, Message, Part, Role, StopReason, StreamEvent, ToolCall,
    ToolResult, ToolSpec, Usage,
};
use futures::StreamExt;
use serde_json::{Value, json};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// Where and how the factory should point the provider under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// The scripted server's root URL (`http://127.0.0.1:PORT`); add the API's path prefix.
    pub base_url: String,
    /// The key to configure.
    pub api_key: String,
    /// First-byte timeout to configure.
    pub first_byte: Duration,
    /// Idle (between chunks) timeout to configure.
    pub idle: Duration,
}

/// Builds the provider under test.
pub type Factory = Arc<dyn Fn(&Target) -> Arc<dyn Provider> + Send + Sync>;

/// A vendor's fixtures and a way to build its provider.
pub struct Harness {
    fixtures: Box<dyn WireFixtures>,
    factory: Factory,
}

const KEY: &str = "sk-test-0123456789abcdef";
const RELAXED: Duration = Duration::from_secs(10);

impl Harness {
    /// A harness for one provider.
    pub fn new(fixtures: Box<dyn WireFixtures>, factory: Factory) -> Self {
        Self { fixtures, factory }
    }

    fn provider(&self, server: &ScriptedServer) -> Arc<dyn Provider> {
        self.provider_with(&server.url(), RELAXED, RELAXED)
    }

    fn provider_with(&self, base_url: &str, first_byte: Duration, idle: Duration) -> Arc<dyn Provider> {
        (self.factory)(&Target { base_url: base_url.to_owned(), api_key: KEY.to_owned(), first_byte, idle })
    }

    fn vendor(&self) -> &'static str {
        self.fixtures.vendor()
    }
}

/// The request every text scenario sends.
pub fn hello_request() -> ChatRequest {
    ChatRequest::new("test-model", vec![Message::user("Say hello.")]).with_system("Be brief.").with_params(
        GenerationParams {
            temperature: Some(0.5),
            max_tokens: Some(64),
            top_p: Some(0.9),
            stop: vec!["END".into()],
            ..GenerationParams::default()
        },
    )
}

fn weather_tools() -> Vec<ToolSpec> {
    let schema = |field: &str| json!({"type": "object", "properties": {field: {"type": "string"}}, "required": [field]});
    vec![
        ToolSpec {
            name: "get_weather".into(),
            description: "Current weather in a city".into(),
            input_schema: schema("city"),
        },
        ToolSpec {
            name: "get_time".into(),
            description: "Current time in a zone".into(),
            input_schema: schema("timezone"),
        },
    ]
}

/// A conversation in which the model called two tools and got one result and one error back.
pub fn tool_round_trip_request() -> ChatRequest {
    let calls = vec![
        Part::ToolCall(ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"}),
        }),
        Part::ToolCall(ToolCall {
            id: "call_2".into(),
            name: "get_time".into(),
            arguments: json!({"timezone": "Mars/Olympus"}),
        }),
    ];
    ChatRequest::new(
        "test-model",
        vec![
            Message::user("Weather in Paris, and the time on Mars?"),
            Message::new(Role::Assistant, calls),
            Message::tool_results([
                ToolResult { call_id: "call_1".into(), content: "sunny, 21°C".into(), is_error: false },
                ToolResult { call_id: "call_2".into(), content: "no such zone".into(), is_error: true },
            ]),
        ],
    )
    .with_tools(weather_tools())
}

/// Reads a stream to its end: the events, and the error that ended it, if any.
pub async fn drain(mut stream: EventStream) -> (Vec<StreamEvent>, Option<ProviderError>) {
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => events.push(event),
            Err(error) => {
                assert!(stream.next().await.is_none(), "a stream must end after its error");
                return (events, Some(error));
            }
        }
    }
    (events, None)
}

async fn stream_ok(vendor: &str, provider: &dyn Provider, request: ChatRequest) -> Vec<StreamEvent> {
    let stream = provider.stream(request).await.unwrap_or_else(|e| panic!("{vendor}: stream failed: {e}"));
    let (events, error) = drain(stream).await;
    if let Some(error) = error {
        panic!("{vendor}: stream ended with an error: {error}\nevents: {events:#?}");
    }
    assert_order(vendor, &events);
    events
}

/// The event-order contract of [`StreamEvent`]: one Finish, last; at most one Usage, just before it;
/// every assembled tool call announced by a start with the same index, ids unique.
pub fn assert_order(vendor: &str, events: &[StreamEvent]) {
    let finishes = events.iter().filter(|e| matches!(e, StreamEvent::Finish { .. })).count();
    assert_eq!(finishes, 1, "{vendor}: exactly one Finish expected: {events:#?}");
    assert!(
        matches!(events.last(), Some(StreamEvent::Finish { .. })),
        "{vendor}: Finish must be last: {events:#?}"
    );
    let usages: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, StreamEvent::Usage(_)))
        .map(|(i, _)| i)
        .collect();
    assert!(usages.len() <= 1, "{vendor}: at most one Usage: {events:#?}");
    if let Some(&i) = usages.first() {
        assert_eq!(i, events.len() - 2, "{vendor}: Usage must come just before Finish: {events:#?}");
    }
    let mut ids = Vec::new();
    for (i, event) in events.iter().enumerate() {
        if let StreamEvent::ToolCall { index, call } = event {
            let announced = events[..i].iter().any(
                |e| matches!(e, StreamEvent::ToolCallStart { index: s, id, .. } if s == index && *id == call.id),
            );
            assert!(announced, "{vendor}: tool call {index} was never started: {events:#?}");
            assert!(!ids.contains(&call.id), "{vendor}: duplicate tool call id {}", call.id);
            ids.push(call.id.clone());
        }
    }
}

/// The answer text of `events`: every text delta, joined.
pub fn text_of(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn finish_of(events: &[StreamEvent]) -> Option<&StopReason> {
    events.iter().find_map(|e| match e {
        StreamEvent::Finish { reason } => Some(reason),
        _ => None,
    })
}

fn usage_of(events: &[StreamEvent]) -> Option<Usage> {
    events.iter().find_map(|e| match e {
        StreamEvent::Usage(u) => Some(*u),
        _ => None,
    })
}

fn calls_of(events: &[StreamEvent]) -> Vec<(u32, ToolCall)> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCall { index, call } => Some((*index, call.clone())),
            _ => None,
        })
        .collect()
}

/// Plain text streams in several deltas, with usage (cache tokens included) and a clean stop; the
/// request carries system prompt, parameters, key and streaming flag as the vendor wants them.
pub async fn text_stream(h: &Harness) {
    let (chunks, usage) = h.fixtures.text_stream();
    let server = ScriptedServer::start([Reply::sse(chunks)]).await;
    let events = stream_ok(h.vendor(), &*h.provider(&server), hello_request()).await;
    let deltas = events.iter().filter(|e| matches!(e, StreamEvent::TextDelta { .. })).count();
    assert!(deltas >= 2, "{}: text should arrive in pieces: {events:#?}", h.vendor());
    assert_eq!(text_of(&events), "Hello, world!", "{}", h.vendor());
    assert_eq!(finish_of(&events), Some(&StopReason::EndTurn), "{}", h.vendor());
    assert_eq!(usage_of(&events), Some(usage), "{}", h.vendor());
    h.fixtures.check_stream_request(&server.request(), KEY);
}

/// When the vendor reports no usage, none is made up: no Usage event, and `None` counts, not 0.
pub async fn text_stream_without_usage(h: &Harness) {
    let reply = Reply::sse(h.fixtures.text_stream_without_usage());
    let server = ScriptedServer::start([reply.clone(), reply]).await;
    let provider = h.provider(&server);
    let events = stream_ok(h.vendor(), &*provider, hello_request()).await;
    assert_eq!(text_of(&events), "Hi");
    assert_eq!(usage_of(&events), None, "{}: usage was invented: {events:#?}", h.vendor());
    // `complete` derived from the stream reports the same absence.
    let stream = provider.stream(hello_request()).await.unwrap();
    let response = exoclaw_core::collect_response(provider.name(), stream).await.unwrap();
    assert!(response.usage.is_unreported(), "{}: {:?}", h.vendor(), response.usage);
}

/// A whole (non-streamed) answer through `complete`.
pub async fn complete_whole_answer(h: &Harness) {
    let (body, usage) = h.fixtures.text_response();
    let server = ScriptedServer::start([Reply::json(200, &body)]).await;
    let response = h.provider(&server).complete(hello_request()).await.unwrap();
    assert_eq!(response.message.role, Role::Assistant);
    assert_eq!(response.message.text(), "Hello, world!", "{}", h.vendor());
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert_eq!(response.usage, usage, "{}", h.vendor());
    h.fixtures.check_complete_request(&server.request());
}

/// One tool call whose JSON arguments arrive in fragments is assembled whole.
pub async fn tool_call_fragmented(h: &Harness) {
    let server = ScriptedServer::start([Reply::sse(h.fixtures.tool_call_stream())]).await;
    let request = hello_request().with_tools(weather_tools());
    let events = stream_ok(h.vendor(), &*h.provider(&server), request).await;
    let fragments: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallArgsDelta { index: 0, fragment } => Some(fragment.as_str()),
            _ => None,
        })
        .collect();
    let expected = json!({"city": "Paris", "unit": "celsius"});
    assert_eq!(
        serde_json::from_str::<Value>(&fragments).ok(),
        Some(expected.clone()),
        "{}: fragments {fragments:?}",
        h.vendor()
    );
    let calls = calls_of(&events);
    assert_eq!(calls.len(), 1, "{}: {events:#?}", h.vendor());
    assert_eq!((calls[0].0, calls[0].1.name.as_str()), (0, "get_weather"));
    assert_eq!(calls[0].1.arguments, expected);
    assert!(!calls[0].1.id.is_empty());
    assert_eq!(finish_of(&events), Some(&StopReason::ToolUse), "{}", h.vendor());
}

/// Two tool calls in one answer keep their own ids, names and arguments.
pub async fn parallel_tool_calls(h: &Harness) {
    let server = ScriptedServer::start([Reply::sse(h.fixtures.parallel_tool_calls_stream())]).await;
    let events =
        stream_ok(h.vendor(), &*h.provider(&server), hello_request().with_tools(weather_tools())).await;
    let calls = calls_of(&events);
    assert_eq!(calls.len(), 2, "{}: {events:#?}", h.vendor());
    assert_eq!(
        (calls[0].0, calls[0].1.name.as_str(), &calls[0].1.arguments),
        (0, "get_weather", &json!({"city": "Paris"}))
    );
    assert_eq!(
        (calls[1].0, calls[1].1.name.as_str(), &calls[1].1.arguments),
        (1, "get_time", &json!({"timezone": "Europe/Paris"}))
    );
    assert_ne!(calls[0].1.id, calls[1].1.id);
    assert_eq!(finish_of(&events), Some(&StopReason::ToolUse));
}

/// A whole answer holding a tool call.
pub async fn tool_call_whole_answer(h: &Harness) {
    let server = ScriptedServer::start([Reply::json(200, &h.fixtures.tool_call_response())]).await;
    let response = h.provider(&server).complete(hello_request().with_tools(weather_tools())).await.unwrap();
    let calls: Vec<&ToolCall> = response.message.tool_calls().collect();
    assert_eq!(calls.len(), 1, "{}: {response:#?}", h.vendor());
    assert_eq!(calls[0].name, "get_weather");
    assert_eq!(calls[0].arguments, json!({"city": "Paris", "unit": "celsius"}));
    assert_eq!(response.stop_reason, StopReason::ToolUse);
}

/// Tool calls and their results (one an error) go back to the model in the vendor's shape, and the
/// answer that follows streams normally.
pub async fn tool_result_round_trip(h: &Harness) {
    let (chunks, _) = h.fixtures.text_stream();
    let server = ScriptedServer::start([Reply::sse(chunks)]).await;
    let events = stream_ok(h.vendor(), &*h.provider(&server), tool_round_trip_request()).await;
    assert_eq!(text_of(&events), "Hello, world!");
    h.fixtures.check_tool_round_trip_request(&server.request().body);
}

/// An image in a user message is sent in the vendor's form.
pub async fn image_input(h: &Harness) {
    let (chunks, _) = h.fixtures.text_stream();
    let server = ScriptedServer::start([Reply::sse(chunks)]).await;
    let message = Message::new(
        Role::User,
        vec![
            Part::text("What is in this picture?"),
            Part::Image {
                source: ImageSource::Base64 { media_type: "image/png".into(), data: "iVBORw0KGgo=".into() },
            },
        ],
    );
    stream_ok(h.vendor(), &*h.provider(&server), ChatRequest::new("test-model", vec![message])).await;
    h.fixtures.check_image_request(&server.request().body);
}

/// Every HTTP error the vendor can send maps to its typed kind, keeps the vendor's message and the
/// status, and honours the requested retry delay.
pub async fn http_error_kinds(h: &Harness) {
    let kinds = [
        ErrorKind::Auth,
        ErrorKind::Permission,
        ErrorKind::ModelNotFound,
        ErrorKind::InvalidRequest,
        ErrorKind::ContextLength,
        ErrorKind::RateLimited { retry_after: Some(Duration::from_secs(7)) },
        ErrorKind::Overloaded,
        ErrorKind::Server,
    ];
    let mut covered = 0;
    for kind in kinds {
        let Some(fixture) = h.fixtures.error(kind) else { continue };
        covered += 1;
        let mut reply = Reply::json(fixture.status, &fixture.body);
        for (name, value) in &fixture.headers {
            reply = reply.header(name, value);
        }
        let server = ScriptedServer::start([reply]).await;
        let error = match h.provider(&server).stream(hello_request()).await {
            Ok(stream) => {
                drain(stream).await.1.unwrap_or_else(|| panic!("{}: {kind} fixture succeeded", h.vendor()))
            }
            Err(error) => error,
        };
        assert_eq!(error.kind, kind, "{}: {error}", h.vendor());
        assert_eq!(error.status, Some(fixture.status), "{}: {error}", h.vendor());
        assert!(
            error.message.contains(fixture.message_contains),
            "{}: {kind}: message lost: {error}",
            h.vendor()
        );
    }
    assert!(covered >= 7, "{}: only {covered} error kinds have fixtures", h.vendor());
}

/// An error reported inside a 200 stream ends it with the typed error, after the text so far.
pub async fn mid_stream_error(h: &Harness) {
    let Some((chunks, kind)) = h.fixtures.mid_stream_error() else { return };
    let server = ScriptedServer::start([Reply::sse(chunks)]).await;
    let (events, error) = drain(h.provider(&server).stream(hello_request()).await.unwrap()).await;
    assert_eq!(text_of(&events), "Hel", "{}", h.vendor());
    assert_eq!(error.map(|e| e.kind), Some(kind), "{}", h.vendor());
}

/// A payload that is not valid JSON is a protocol error, after the text so far.
pub async fn malformed_stream(h: &Harness) {
    let server = ScriptedServer::start([Reply::sse(h.fixtures.malformed_stream())]).await;
    let (events, error) = drain(h.provider(&server).stream(hello_request()).await.unwrap()).await;
    assert_eq!(text_of(&events), "Hel", "{}", h.vendor());
    let error = error.unwrap_or_else(|| panic!("{}: malformed stream accepted: {events:#?}", h.vendor()));
    assert_eq!(error.kind, ErrorKind::Protocol, "{}: {error}", h.vendor());
    assert!(error.message.contains("malformed"), "{}: {error}", h.vendor());
}

/// The connection breaking mid-answer: the text so far, then a connection error — no Finish.
pub async fn disconnect_mid_stream(h: &Harness) {
    let server =
        ScriptedServer::start([Reply::sse(h.fixtures.truncated_stream()).ending(Ending::Abort)]).await;
    let (events, error) = drain(h.provider(&server).stream(hello_request()).await.unwrap()).await;
    assert_eq!(text_of(&events), "Hel", "{}", h.vendor());
    assert!(finish_of(&events).is_none());
    let error = error.unwrap_or_else(|| panic!("{}: a cut connection looked like success", h.vendor()));
    assert_eq!(error.kind, ErrorKind::Connect, "{}: {error}", h.vendor());
}

/// A body that ends cleanly before the vendor's end of answer is a protocol error, not success.
pub async fn truncated_stream(h: &Harness) {
    let server = ScriptedServer::start([Reply::sse(h.fixtures.truncated_stream())]).await;
    let (events, error) = drain(h.provider(&server).stream(hello_request()).await.unwrap()).await;
    assert_eq!(text_of(&events), "Hel", "{}", h.vendor());
    let error =
        error.unwrap_or_else(|| panic!("{}: a cut-off answer looked complete: {events:#?}", h.vendor()));
    assert_eq!(error.kind, ErrorKind::Protocol, "{}: {error}", h.vendor());
}

/// Nothing listening: a connect error naming what to check.
pub async fn connect_refused(h: &Harness) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let provider = h.provider_with(&format!("http://127.0.0.1:{port}"), RELAXED, RELAXED);
    let error = provider
        .stream(hello_request())
        .await
        .err()
        .unwrap_or_else(|| panic!("{}: connected to nothing", h.vendor()));
    assert_eq!(error.kind, ErrorKind::Connect, "{}: {error}", h.vendor());
    assert!(error.to_string().contains("base_url"), "{}: no advice: {error}", h.vendor());
}

/// No answer within the first-byte deadline — neither headers nor, after headers, a first chunk.
pub async fn first_byte_timeout(h: &Harness) {
    let (chunks, _) = h.fixtures.text_stream();
    let slow_headers = Reply::sse(chunks).delayed(Duration::from_secs(5));
    let silent_body = Reply::sse(Vec::<String>::new()).ending(Ending::Hang);
    let server = ScriptedServer::start([slow_headers, silent_body]).await;
    let provider = h.provider_with(&server.url(), Duration::from_millis(300), RELAXED);
    for case in ["slow headers", "silent body"] {
        let started = Instant::now();
        let error = match provider.stream(hello_request()).await {
            Err(error) => error,
            Ok(stream) => {
                drain(stream).await.1.unwrap_or_else(|| panic!("{}: {case}: no timeout", h.vendor()))
            }
        };
        assert_eq!(error.kind, ErrorKind::Timeout, "{}: {case}: {error}", h.vendor());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{}: {case}: took {:?}",
            h.vendor(),
            started.elapsed()
        );
    }
}

/// A stream that goes silent mid-answer ends with a timeout after the idle deadline.
pub async fn idle_timeout(h: &Harness) {
    let server =
        ScriptedServer::start([Reply::sse(h.fixtures.truncated_stream()).ending(Ending::Hang)]).await;
    let provider = h.provider_with(&server.url(), RELAXED, Duration::from_millis(300));
    let started = Instant::now();
    let (events, error) = drain(provider.stream(hello_request()).await.unwrap()).await;
    assert_eq!(text_of(&events), "Hel", "{}", h.vendor());
    assert_eq!(error.map(|e| e.kind), Some(ErrorKind::Timeout), "{}", h.vendor());
    assert!(started.elapsed() < Duration::from_secs(3), "{}: took {:?}", h.vendor(), started.elapsed());
}

/// Dropping the stream closes the connection: the server sees the client hang up.
pub async fn dropping_the_stream_cancels(h: &Harness) {
    let mut chunks = h.fixtures.truncated_stream();
    chunks.extend(std::iter::repeat_n(": keep-alive\n\n".to_owned(), 400));
    let server = ScriptedServer::start([Reply::sse(chunks).paced(Duration::from_millis(25))]).await;
    let mut stream = h.provider(&server).stream(hello_request()).await.unwrap();
    let first = stream.next().await;
    assert!(matches!(first, Some(Ok(StreamEvent::TextDelta { .. }))), "{}: {first:?}", h.vendor());
    drop(stream);
    assert!(
        server.hung_up(Duration::from_secs(3)).await,
        "{}: the request went on after the stream was dropped",
        h.vendor()
    );
}

/// The API key never shows in an error's text or debug form, nor in the provider's debug form,
/// even when the vendor's error body repeats it.
pub async fn key_never_leaks(h: &Harness) {
    let fixture = h.fixtures.error_echoing_key(KEY);
    let server = ScriptedServer::start([Reply::json(fixture.status, &fixture.body)]).await;
    let provider = h.provider(&server);
    assert!(!format!("{provider:?}").contains(KEY), "{}: key in provider Debug", h.vendor());
    let error =
        provider.stream(hello_request()).await.err().unwrap_or_else(|| panic!("{}: no error", h.vendor()));
    for shown in [error.to_string(), format!("{error:?}"), error.message.clone()] {
        assert!(!shown.contains(KEY), "{}: key leaked: {shown}", h.vendor());
    }
    assert!(error.message.contains(fixture.message_contains), "{}: {error}", h.vendor());
    assert!(error.message.contains("[REDACTED]"), "{}: {error}", h.vendor());
}

/// Declares one `#[tokio::test]` per conformance scenario for a provider.
///
/// `$fixtures`: a [`WireFixtures`] value; `$factory`: a closure `|t: &Target| -> Arc<dyn Provider>`.
#[macro_export]
macro_rules! conformance_suite {
    ($fixtures:expr, $factory:expr) => {
        $crate::conformance_suite!(@each $fixtures, $factory;
            text_stream, text_stream_without_usage, complete_whole_answer, tool_call_fragmented,
            parallel_tool_calls, tool_call_whole_answer, tool_result_round_trip, image_input,
            http_error_kinds, mid_stream_error, malformed_stream, disconnect_mid_stream,
            truncated_stream, connect_refused, first_byte_timeout, idle_timeout,
            dropping_the_stream_cancels, key_never_leaks);
    };
    (@each $fixtures:expr, $factory:expr; $($scenario:ident),*) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                let harness = $crate::conformance::Harness::new(Box::new($fixtures), ::std::sync::Arc::new($factory));
                $crate::conformance::$scenario(&harness).await;
            }
        )*
    };
}

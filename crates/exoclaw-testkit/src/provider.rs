//! An in-process scripted [`Provider`]: each call takes the next [`Outcome`] (an answer, a failure
//! before or after the first event, a stall), and every call's model is recorded. For testing what
//! sits above providers (the router, the agent loop) without HTTP.

use async_trait::async_trait;
use exoclaw_core::{ErrorKind, EventStream, Provider, ProviderError};
use exoclaw_types::{ChatRequest, StopReason, StreamEvent, Usage};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What one call does.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Streams this text in words, then usage and a finish.
    Text(String),
    /// Fails before any stream is returned.
    FailOpen(ErrorKind),
    /// Returns a stream whose first item is this error.
    FailFirst(ErrorKind),
    /// Returns a stream that never yields.
    Stall,
    /// Streams this text, then fails with this error instead of finishing.
    TextThenFail(String, ErrorKind),
    /// Calls one tool.
    ToolCall(exoclaw_types::ToolCall),
}

/// A provider that follows a script, then repeats its default outcome.
#[derive(Debug)]
pub struct ScriptedProvider {
    name: String,
    script: Mutex<VecDeque<Outcome>>,
    default: Mutex<Outcome>,
    calls: AtomicUsize,
    models: Mutex<Vec<String>>,
}

impl ScriptedProvider {
    /// A provider called `name` answering `script` in order, then `Text("ok")`.
    pub fn new(name: &str, script: impl IntoIterator<Item = Outcome>) -> Self {
        Self {
            name: name.to_owned(),
            script: Mutex::new(script.into_iter().collect()),
            default: Mutex::new(Outcome::Text("ok".to_owned())),
            calls: AtomicUsize::new(0),
            models: Mutex::new(Vec::new()),
        }
    }

    /// Sets what calls past the script do.
    pub fn with_default(self, outcome: Outcome) -> Self {
        *self.default.lock().unwrap() = outcome;
        self
    }

    /// How many calls were made.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The model each call asked for.
    pub fn models(&self) -> Vec<String> {
        self.models.lock().unwrap().clone()
    }

    fn error(&self, kind: ErrorKind) -> ProviderError {
        ProviderError::new(kind, &self.name, format!("scripted {}", kind.code()))
    }
}

fn text_events(text: &str) -> Vec<StreamEvent> {
    let mut events: Vec<StreamEvent> =
        text.split_inclusive(' ').map(|piece| StreamEvent::TextDelta { text: piece.to_owned() }).collect();
    events.push(StreamEvent::Usage(Usage {
        input_tokens: Some(10),
        output_tokens: Some(text.split(' ').count() as u64),
        ..Usage::default()
    }));
    events
}

#[async_trait]
impl Provider for ScriptedProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.models.lock().unwrap().push(request.model.0.clone());
        let outcome = self.script.lock().unwrap().pop_front();
        let outcome = outcome.unwrap_or_else(|| self.default.lock().unwrap().clone());
        outcome_stream(outcome, |kind| self.error(kind))
    }
}

/// The stream (or the failure) an [`Outcome`] makes.
fn outcome_stream(
    outcome: Outcome,
    error: impl Fn(ErrorKind) -> ProviderError,
) -> Result<EventStream, ProviderError> {
    {
        let items: Vec<Result<StreamEvent, ProviderError>> = match outcome {
            Outcome::FailOpen(kind) => return Err(error(kind)),
            Outcome::Stall => return Ok(Box::pin(futures::stream::pending())),
            Outcome::FailFirst(kind) => vec![Err(error(kind))],
            Outcome::Text(text) => text_events(&text)
                .into_iter()
                .map(Ok)
                .chain([Ok(StreamEvent::Finish { reason: StopReason::EndTurn })])
                .collect(),
            Outcome::ToolCall(call) => vec![
                Ok(StreamEvent::ToolCallStart { index: 0, id: call.id.clone(), name: call.name.clone() }),
                Ok(StreamEvent::ToolCall { index: 0, call }),
                Ok(StreamEvent::Finish { reason: StopReason::ToolUse }),
            ],
            Outcome::TextThenFail(text, kind) => {
                let mut items: Vec<_> = text_events(&text).into_iter().map(Ok).collect();
                items.pop(); // no usage: the stream broke
                items.push(Err(error(kind)));
                items
            }
        };
        Ok(Box::pin(futures::stream::iter(items)))
    }
}

/// What a [`RespondingProvider`] answers a request with.
pub type Respond = dyn Fn(&ChatRequest) -> Outcome + Send + Sync;

/// A provider that answers each request with the [`Outcome`] a function picks for it, and
/// keeps every request: for tests where the answer depends on what was asked (a summary, a
/// fact extraction, a chat turn) and that check what the model was sent.
pub struct RespondingProvider {
    name: String,
    respond: Box<Respond>,
    requests: Mutex<Vec<ChatRequest>>,
}

impl std::fmt::Debug for RespondingProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespondingProvider").field("name", &self.name).finish_non_exhaustive()
    }
}

impl RespondingProvider {
    /// A provider called `name` answering with `respond`.
    pub fn new(name: &str, respond: impl Fn(&ChatRequest) -> Outcome + Send + Sync + 'static) -> Self {
        Self { name: name.to_owned(), respond: Box::new(respond), requests: Mutex::new(Vec::new()) }
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait]
impl Provider for RespondingProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        let outcome = (self.respond)(&request);
        self.requests.lock().unwrap().push(request);
        outcome_stream(outcome, |kind| {
            ProviderError::new(kind, &self.name, format!("scripted {}", kind.code()))
        })
    }
}

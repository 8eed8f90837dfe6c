//! What the WebSocket tests share: scripted providers, a gateway on `127.0.0.1:0` with an
//! in-memory store, and a JSON-RPC client over tokio-tungstenite.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use exoclaw_core::{AgentRunner, EventStream, Provider, ProviderError};
use exoclaw_core::{AgentRuntime, Bindings};
use exoclaw_gateway::metrics::Metrics;
use exoclaw_gateway::{Gateway, GatewayBuilder, StaticModels, app};
use exoclaw_memory::{Memory, MemoryOptions};
use exoclaw_store::Store;
use exoclaw_testkit::runtime::ScriptedRuntime;
use exoclaw_types::{ChatRequest, Role, StopReason, StreamEvent, Usage};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Answers `{prefix}{the last user message}` word by word, then usage (10 in, words out); with a
/// gate, each answer waits for a permit ([`Echo::release`]). Records every request.
#[derive(Debug)]
pub struct Echo {
    prefix: String,
    gate: Option<Semaphore>,
    /// After this text, the stream stalls forever (a model still thinking).
    stall_after: Option<String>,
    /// Answers this whatever the message.
    fixed: Option<String>,
    pub requests: Mutex<Vec<ChatRequest>>,
}

impl Echo {
    pub fn new(prefix: &str) -> Arc<Self> {
        Arc::new(Self {
            prefix: prefix.into(),
            gate: None,
            stall_after: None,
            fixed: None,
            requests: Mutex::default(),
        })
    }

    /// Answers `text` to everything.
    pub fn fixed(text: &str) -> Arc<Self> {
        Arc::new(Self {
            prefix: String::new(),
            gate: None,
            stall_after: None,
            fixed: Some(text.into()),
            requests: Mutex::default(),
        })
    }

    pub fn gated(prefix: &str) -> Arc<Self> {
        Arc::new(Self {
            prefix: prefix.into(),
            gate: Some(Semaphore::new(0)),
            stall_after: None,
            fixed: None,
            requests: Mutex::default(),
        })
    }

    /// Streams `text`, then never finishes.
    pub fn stalling(text: &str) -> Arc<Self> {
        Arc::new(Self {
            prefix: String::new(),
            gate: None,
            stall_after: Some(text.into()),
            fixed: None,
            requests: Mutex::default(),
        })
    }

    /// Lets `n` held answers go.
    pub fn release(&self, n: usize) {
        self.gate.as_ref().unwrap().add_permits(n);
    }

    /// How many calls arrived.
    pub fn calls(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Waits until `n` calls arrived.
    pub async fn wait_calls(&self, n: usize) {
        for _ in 0..500 {
            if self.calls() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the provider got {} calls, not {n}", self.calls());
    }
}

#[async_trait]
impl Provider for Echo {
    fn name(&self) -> &str {
        "echo"
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        let last = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.text())
            .unwrap_or_default();
        self.requests.lock().unwrap().push(request);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        if let Some(text) = &self.stall_after {
            let first = futures::stream::iter([Ok(StreamEvent::TextDelta { text: text.clone() })]);
            return Ok(Box::pin(first.chain(futures::stream::pending())));
        }
        let text = self.fixed.clone().unwrap_or_else(|| format!("{}{last}", self.prefix));
        let mut events: Vec<Result<StreamEvent, ProviderError>> = text
            .split_inclusive(' ')
            .map(|piece| Ok(StreamEvent::TextDelta { text: piece.to_owned() }))
            .collect();
        events.push(Ok(StreamEvent::Usage(Usage {
            input_tokens: Some(10),
            output_tokens: Some(text.split(' ').count() as u64),
            ..Usage::default()
        })));
        events.push(Ok(StreamEvent::Finish { reason: StopReason::EndTurn }));
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

/// An agent called `name` answering with `provider`.
pub fn agent(name: &str, provider: Arc<dyn Provider>) -> (String, AgentRunner) {
    (name.to_owned(), AgentRunner::new(provider, "m", format!("echo/{name}")).with_agent(name))
}

/// The agents (and bindings) a test gateway serves.
#[derive(Default)]
pub struct Agents {
    agents: Vec<(String, AgentRunner)>,
    bindings: Option<Bindings>,
    /// The gateway is given no memory (`[memory] enabled = false`).
    no_memory: bool,
}

impl Agents {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, agent: (String, AgentRunner)) -> Self {
        self.agents.push(agent);
        self
    }

    pub fn bindings(mut self, bindings: Bindings) -> Self {
        self.bindings = Some(bindings);
        self
    }

    /// Serves them on a gateway with no memory.
    pub fn without_memory(mut self) -> Self {
        self.no_memory = true;
        self
    }
}

/// A gateway on loopback.
pub struct Server {
    pub addr: std::net::SocketAddr,
    pub gateway: Arc<Gateway>,
    pub store: Arc<Store>,
    /// The memory on `store` that `memory.*` reads (unless [`Agents::without_memory`]).
    pub memory: Arc<Memory>,
    pub server: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serves `agents` with an in-memory store; `configure` sets the rest.
    pub async fn start(agents: Agents, configure: impl FnOnce(GatewayBuilder) -> GatewayBuilder) -> Self {
        let store = Arc::new(Store::open("sqlite::memory:").await.unwrap());
        // Turns are counted by the runtime's agents, as `exoclaw gateway` registers them.
        let metrics = Metrics::new();
        let turns = metrics.turn_metrics();
        let mut runtime = ScriptedRuntime::new(store.clone());
        for (name, runner) in agents.agents {
            let runner = runner.with_monitor(turns.clone()).with_hook(turns.clone());
            runtime = runtime.agent(&name, Some(format!("the {name} agent")), runner);
        }
        if let Some(bindings) = agents.bindings {
            runtime = runtime.with_bindings(bindings);
        }
        let runtime = Arc::new(runtime);
        // Memory on the same store, as `exoclaw gateway` has it with `[memory]` on; the
        // `memory.*` methods ask it no model.
        let memory =
            Arc::new(Memory::new(store.clone(), store.clone(), Echo::new(""), MemoryOptions::default()));
        let mut builder = Gateway::builder(Arc::new(StaticModels::new()))
            .runtime(runtime.clone() as Arc<dyn AgentRuntime>)
            .store(store.clone(), store.clone())
            .metrics(metrics);
        if !agents.no_memory {
            builder = builder.memory(Arc::clone(&memory));
        }
        let gateway = Arc::new(configure(builder).build());
        runtime.set_session_queue(gateway.limits().session_queue);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = gateway.shutdown_token();
        let router = app(gateway.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await.unwrap();
        });
        Self { addr, gateway, store, memory, server }
    }

    /// One default agent answering with `provider`.
    pub async fn with(provider: Arc<dyn Provider>) -> Self {
        Self::start(Agents::new().with(agent("default", provider)), |b| b).await
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.url()).await
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A JSON-RPC client.
pub struct Client {
    pub ws: Socket,
    next: i64,
    /// Notifications read while waiting for a response.
    pub notes: Vec<Value>,
}

/// How long a test waits for any one message.
pub const WAIT: Duration = Duration::from_secs(10);

impl Client {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self::over(ws)
    }

    pub fn over(ws: Socket) -> Self {
        Self { ws, next: 0, notes: Vec::new() }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.unwrap();
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    /// Sends a request with a fresh numeric id; returns the id.
    pub async fn request(&mut self, method: &str, params: Value) -> i64 {
        self.next += 1;
        let id = self.next;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        id
    }

    /// The next text message, as JSON; `None` when the server closed (the close frame, if any, in
    /// the error).
    pub async fn next(&mut self) -> Result<Value, Option<CloseFrame>> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next()).await.expect("a message in time");
            match message {
                Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(frame))) => return Err(frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(None),
            }
        }
    }

    /// Reads until the response to `id`, keeping notifications in `notes`.
    pub async fn response(&mut self, id: impl Into<Value>) -> Value {
        let id = id.into();
        loop {
            let message =
                self.next().await.unwrap_or_else(|close| panic!("closed waiting for {id}: {close:?}"));
            if message.get("id") == Some(&id) {
                return message;
            }
            assert!(message.get("method").is_some(), "a response to another request: {message}");
            self.notes.push(message);
        }
    }

    /// Sends a request and waits for its response.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params).await;
        self.response(id).await
    }

    /// A successful call's result.
    pub async fn ok(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params).await;
        assert!(response.get("error").is_none(), "{method} failed: {response}");
        response["result"].clone()
    }

    /// The events streamed for request `id`, in order.
    pub fn events(&self, id: i64) -> Vec<Value> {
        self.notes
            .iter()
            .filter(|n| n["method"] == "chat.event" && n["params"]["request_id"] == id)
            .map(|n| n["params"]["event"].clone())
            .collect()
    }

    /// Waits for the server to close, returning its close frame.
    pub async fn closed(&mut self) -> CloseFrame {
        loop {
            match self.next().await {
                Ok(message) => self.notes.push(message),
                Err(frame) => return frame.expect("a close frame"),
            }
        }
    }
}

/// `chat.send` params from `peer` on the `ws` channel.
pub fn message(peer: &str, content: &str) -> Value {
    json!({"channel": "ws", "account": "acct", "peer": peer, "content": content})
}

/// The error's stable name (`error.data.code`), with the number checked against it.
pub fn error_name(response: &Value) -> &str {
    let error = &response["error"];
    assert!(error["code"].is_i64(), "not an error: {response}");
    error["data"]["code"].as_str().unwrap()
}

//! Agent turns for WebSocket clients (`chat.send`): each message is submitted to the gateway's
//! [`AgentRuntime`] (which routes it by the bindings, queues it behind the session's running turn,
//! runs and commits it), its events are streamed to the client, and the answer is sent when the
//! turn is stored. Also what shutdown waits for ([`ChatRuntime`], [`drain`]).
//!
//! A turn belongs to the gateway, not to the connection that asked for it: a client that
//! disconnects mid-turn stops receiving events, but the turn runs to its end and is stored, so
//! the next message on that session sees it. Only `chat.cancel` (or the end of the shutdown grace
//! period) cuts a turn short, and then its partial answer is stored.

use crate::Gateway;
use crate::keys::Caller;
use crate::payer::KeyPayer;
use crate::rpc::error::{Code, RpcError};
use crate::rpc::frame;
use crate::rpc::protocol::{ChatEventParams, ChatResult, ChatSendParams};
use exoclaw_core::runtime::Route;
use exoclaw_core::{AgentRuntime, Target, TurnError, TurnFailure, TurnHandle, TurnInput, TurnReport};
use exoclaw_types::{AgentEvent, ErrorCode, Inbound, TurnOutcome, Usage, UsageRecord};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// How long turns cancelled at the end of the grace period get to commit their partial answers.
const COMMIT_GRACE: Duration = Duration::from_secs(10);

/// How long closing connections get, after the turns, to send their close frames.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the WebSocket side of a gateway has running: the session queues, the turn tasks and the
/// open connections, and the token that cancels every turn when the grace period is over.
#[derive(Debug, Default)]
pub struct ChatRuntime {
    turns: AtomicUsize,
    connections: AtomicUsize,
    /// What the `busy_sessions` gauge was last brought to.
    reported_busy: AtomicI64,
    changed: Notify,
    stop: CancellationToken,
}

/// What a [`Live`] counts.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Turn,
    Connection,
}

/// Counts one turn task or connection while it lives, and tells [`drain`] when it ends.
#[derive(Debug)]
pub(crate) struct Live {
    gateway: Arc<Gateway>,
    kind: Kind,
}

impl Live {
    fn new(gateway: &Arc<Gateway>, kind: Kind) -> Self {
        gateway.chat.counter(kind).fetch_add(1, Ordering::SeqCst);
        Self { gateway: Arc::clone(gateway), kind }
    }

    /// Counts a connection until dropped.
    pub(crate) fn connection(gateway: &Arc<Gateway>) -> Self {
        Self::new(gateway, Kind::Connection)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let chat = &self.gateway.chat;
        chat.counter(self.kind).fetch_sub(1, Ordering::SeqCst);
        chat.sync_busy_gauge(self.gateway.runtime.as_deref(), &self.gateway.metrics);
        chat.changed.notify_waiters();
    }
}

impl ChatRuntime {
    /// Nothing running.
    pub fn new() -> Self {
        Self::default()
    }

    /// Turn tasks alive (running or waiting for their session).
    pub fn turns(&self) -> usize {
        self.turns.load(Ordering::SeqCst)
    }

    /// Open WebSocket connections.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn counter(&self, kind: Kind) -> &AtomicUsize {
        match kind {
            Kind::Turn => &self.turns,
            Kind::Connection => &self.connections,
        }
    }

    /// Brings the `busy_sessions` gauge to the number of busy sessions now. Every caller swaps in
    /// what it saw, so the deltas always add up to the last count, whatever the interleaving.
    pub(crate) fn sync_busy_gauge(
        &self,
        runtime: Option<&dyn AgentRuntime>,
        metrics: &crate::metrics::Metrics,
    ) {
        let busy = runtime.map_or(0, |r| r.queues().busy());
        let now = i64::try_from(busy).unwrap_or(i64::MAX);
        let before = self.reported_busy.swap(now, Ordering::SeqCst);
        if now != before {
            metrics.busy_sessions(now - before);
        }
    }

    /// Waits until `done` holds, re-checking whenever a turn or connection ends.
    async fn until(&self, done: impl Fn(&Self) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so an end between the check and the wait is not missed.
            changed.as_mut().enable();
            if done(self) {
                return;
            }
            changed.await;
        }
    }
}

/// What [`drain`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Whether every turn and connection ended within the grace period.
    pub in_time: bool,
    /// Turns still running when the grace period ended, cancelled (their partial answers
    /// committed).
    pub cancelled: usize,
    /// Turns or connections still alive when `drain` gave up waiting.
    pub abandoned: usize,
}

/// Shuts the WebSocket side down: marks the gateway as shutting down (new `chat.send` requests
/// get `shutting_down`; connections without running requests are told with a `gateway.shutdown`
/// notification and closed), waits up to `limits.shutdown_grace` for running turns to finish and
/// their connections to close, then cancels the turns still running, waits for them to commit
/// their partial answers (up to 10 s more), and for their connections to close (2 s).
///
/// Call it after axum's graceful shutdown returns (upgraded WebSocket connections are not
/// awaited by it); it is idempotent.
pub async fn drain(gateway: &Gateway) -> Drained {
    gateway.shutdown.cancel();
    let runtime = &gateway.chat;
    let grace = gateway.limits.shutdown_grace;
    let idle = |r: &ChatRuntime| r.turns() == 0 && r.connections() == 0;
    if tokio::time::timeout(grace, runtime.until(idle)).await.is_ok() {
        return Drained { in_time: true, cancelled: 0, abandoned: 0 };
    }
    let cancelled = runtime.turns();
    tracing::warn!(
        turns = cancelled,
        grace_secs = grace.as_secs(),
        "cancelling turns still running after the grace period"
    );
    runtime.stop.cancel();
    let _ = tokio::time::timeout(COMMIT_GRACE, runtime.until(|r| r.turns() == 0)).await;
    let _ = tokio::time::timeout(CLOSE_GRACE, runtime.until(idle)).await;
    let abandoned = runtime.turns() + runtime.connections();
    if abandoned > 0 {
        tracing::error!(abandoned, "turns or connections did not end in time");
    }
    Drained { in_time: false, cancelled, abandoned }
}

/// What a connection is sent by the turns it started.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A frame to send (an event).
    Frame(String),
    /// A request is over: stop tracking it (`request` is [`request_key`] of its id) and send
    /// `frame`, its answer (none for a notification).
    Finished { request: String, frame: Option<String> },
}

/// A key for a request id, telling `1` from `"1"`.
pub(crate) fn request_key(id: &Value) -> String {
    id.to_string()
}

/// A virtual key's token, kept to re-check the key (revoked? over budget? over its rate?) on each
/// `chat.send`. Never printed.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Who sent a `chat.send`, and where its answer goes.
#[derive(Debug, Clone)]
pub(crate) struct Requester {
    pub caller: Caller,
    pub out: mpsc::UnboundedSender<Outbound>,
}

/// The error a refused or failed submission is answered with.
fn refused(e: TurnError) -> RpcError {
    match e {
        TurnError::NoAgent { ref name, .. } => {
            let name = name.clone();
            RpcError::new(Code::NotFound, e.to_string()).with("agent", name)
        }
        TurnError::InvalidTarget { field, limit, .. } => {
            let error = RpcError::invalid_params("chat.send", e.to_string()).with("field", field);
            match limit {
                Some(limit) => error.with("limit", limit),
                None => error,
            }
        }
        TurnError::SessionBusy(busy) => RpcError::new(Code::SessionBusy, busy.to_string())
            .with("session_key", busy.key)
            .with("waiting", busy.waiting),
        TurnError::ShuttingDown => RpcError::new(
            Code::ShuttingDown,
            "the gateway is shutting down and accepts no new messages; reconnect once it is back",
        ),
        TurnError::CancelledBeforeStart => RpcError::new(Code::Cancelled, e.to_string()),
        TurnError::SessionLocked { session, .. } => {
            RpcError::new(Code::SessionBusy, e.to_string()).with("session_id", session.to_string())
        }
        TurnError::Store { session, .. } => {
            let mut error = RpcError::new(Code::InternalError, format!("the turn could not be stored: {e}"));
            if let Some(session) = session {
                error = error.with("session_id", session.to_string());
            }
            error
        }
        other => RpcError::new(Code::InternalError, other.to_string()),
    }
}

/// Accepts a `chat.send`: routes it, checks the caller may use the agent's model, submits it to
/// the runtime (which takes its place in the session's queue now, in the order requests are read)
/// and starts the task that streams its events. Returns the token that cancels it
/// (`chat.cancel`), or why it was refused.
pub(crate) fn start(
    gateway: &Arc<Gateway>,
    requester: Requester,
    id: Option<Value>,
    params: ChatSendParams,
) -> Result<tokio_util::sync::CancellationToken, RpcError> {
    if gateway.shutdown.is_cancelled() {
        return Err(refused(TurnError::ShuttingDown));
    }
    let Some(runtime) = gateway.runtime.clone() else {
        return Err(RpcError::new(
            Code::Unavailable,
            "this gateway runs no agents, so it cannot hold conversations; it serves `/v1` only",
        ));
    };
    let inbound = Inbound {
        channel: params.channel.clone(),
        account: params.account.clone(),
        peer: params.peer.clone(),
        guild: params.guild.clone(),
        team: params.team.clone(),
    };
    let route = runtime.route(&Target::Inbound { inbound, agent: params.agent.clone() }).map_err(refused)?;
    requester.caller.check_model(&route.model)?;
    if let Caller::Key(key) = &requester.caller
        && let Some(rpm) = key.rpm
    {
        // A message is a request against the key's rate, like a `/v1` call.
        gateway.rate.check(&key.id, rpm).map_err(|retry_after| {
            RpcError::from(crate::GatewayError::RateLimited { key: key.name.clone(), rpm, retry_after })
        })?;
    }
    let mut input = TurnInput::message(params.content);
    if let Caller::Key(key) = &requester.caller {
        // The key pays for each of the turn's model calls as it is made, holding what a call may
        // cost first: concurrent turns and `/v1` requests of one key never overspend its budget.
        input = input.with_payer(Arc::new(KeyPayer::new(gateway, key, &route.model)));
    }
    let handle = runtime.submit_routed(route.clone(), input).map_err(refused)?;
    gateway.chat.sync_busy_gauge(Some(&*runtime), &gateway.metrics);
    let cancel = handle.cancel_token();
    let live = Live::new(gateway, Kind::Turn);
    let task = Task { gateway: Arc::clone(gateway), requester, id, route };
    let stop = gateway.chat.stop.clone();
    tokio::spawn(async move {
        let _live = live;
        // The end of the shutdown grace period cancels every turn (their partial answers are
        // stored).
        let stopping = {
            let cancel = handle.cancel_token();
            tokio::spawn(async move {
                stop.cancelled().await;
                cancel.cancel();
            })
        };
        task.run(handle).await;
        stopping.abort();
    });
    Ok(cancel)
}

struct Task {
    gateway: Arc<Gateway>,
    requester: Requester,
    id: Option<Value>,
    route: Route,
}

impl Task {
    async fn run(self, handle: TurnHandle) {
        let started = Instant::now();
        let answer = self.turn(handle).await;
        let status = match &answer {
            Ok(_) => "ok",
            Err(e) => {
                self.gateway.metrics.error(e.code.name());
                e.code.name()
            }
        };
        self.gateway.metrics.request("ws:chat.send", status, started.elapsed());
        let frame = self.id.as_ref().map(|id| match &answer {
            Ok(result) => frame::result(id, result),
            Err(e) => frame::error(id, e),
        });
        let request = self.id.as_ref().map(request_key).unwrap_or_default();
        // The client may be gone; the turn is stored either way.
        let _ = self.requester.out.send(Outbound::Finished { request, frame });
    }

    async fn turn(&self, handle: TurnHandle) -> Result<ChatResult, RpcError> {
        let sink = |event: AgentEvent| {
            if let Some(id) = &self.id {
                let params = ChatEventParams { request_id: id.clone(), event };
                let _ = self.requester.out.send(Outbound::Frame(frame::notification("chat.event", &params)));
            }
        };
        // The runtime's monitors count the turn into the metrics; its payer (the key) was
        // charged as each model call was settled.
        let report = handle.finish(&sink).await.map_err(refused)?;
        let session_id = report.session_id;
        if report.outcome == TurnOutcome::Failed {
            let TurnFailure { code, message } = report.error.clone().unwrap_or_else(|| TurnFailure {
                code: ErrorCode::Internal,
                message: "the turn failed".to_owned(),
            });
            return Err(failed(code, message)
                .with("session_id", session_id.to_string())
                .with("outcome", "failed"));
        }
        Ok(chat_result(&report, &self.route))
    }
}

fn chat_result(report: &TurnReport, route: &Route) -> ChatResult {
    ChatResult {
        session_id: report.session_id,
        session_key: report.session_key.as_ref().map_or_else(|| route.queue_key(), ToString::to_string),
        agent: report.agent.clone(),
        binding: report.binding,
        outcome: report.outcome,
        text: report.text(),
        usage: total_usage(&report.usage),
    }
}

/// The error a failed turn is answered with, from its `error` event's code.
fn failed(code: ErrorCode, message: String) -> RpcError {
    let kind = match code {
        ErrorCode::BudgetExceeded | ErrorCode::BudgetUnpriced => Code::BudgetExceeded,
        ErrorCode::Internal => Code::InternalError,
        ErrorCode::InvalidRequest | ErrorCode::ContextLength => Code::ProviderRejected,
        ErrorCode::Auth
        | ErrorCode::Permission
        | ErrorCode::ModelNotFound
        | ErrorCode::RateLimited
        | ErrorCode::Overloaded
        | ErrorCode::Server
        | ErrorCode::Timeout
        | ErrorCode::Connect
        | ErrorCode::Protocol => Code::ProviderUnavailable,
        ErrorCode::Cancelled => Code::Cancelled,
        ErrorCode::MaxIterations | ErrorCode::HookStopped | ErrorCode::ToolAborted => Code::TurnStopped,
    };
    RpcError::new(kind, message).with("kind", code.as_str())
}

fn total_usage(records: &[UsageRecord]) -> Usage {
    fn add(total: Option<u64>, more: Option<u64>) -> Option<u64> {
        match (total, more) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            (a, b) => a.or(b),
        }
    }
    records.iter().fold(Usage::default(), |total, r| Usage {
        input_tokens: add(total.input_tokens, r.usage.input_tokens),
        output_tokens: add(total.output_tokens, r.usage.output_tokens),
        cache_read_tokens: add(total.cache_read_tokens, r.usage.cache_read_tokens),
        cache_write_tokens: add(total.cache_write_tokens, r.usage.cache_write_tokens),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_adds_up_over_calls_keeping_unreported_counts_absent() {
        let record = |input, output| UsageRecord {
            at: chrono::Utc::now(),
            session_id: None,
            agent: "a".into(),
            provider: "p".into(),
            model: "m".into(),
            usage: Usage { input_tokens: input, output_tokens: output, ..Usage::default() },
            latency_ms: 0,
            ttft_ms: None,
            cost_usd: None,
            estimated: false,
            purpose: exoclaw_types::CallPurpose::Answer,
        };
        let total = total_usage(&[record(Some(3), None), record(Some(4), Some(5))]);
        assert_eq!(
            (total.input_tokens, total.output_tokens, total.cache_read_tokens),
            (Some(7), Some(5), None)
        );
    }

    #[test]
    fn failed_turns_map_to_codes_by_their_event_code() {
        let code = |error| failed(error, String::new()).code;
        assert_eq!(code(ErrorCode::BudgetExceeded), Code::BudgetExceeded);
        assert_eq!(code(ErrorCode::BudgetUnpriced), Code::BudgetExceeded);
        assert_eq!(code(ErrorCode::ContextLength), Code::ProviderRejected);
        assert_eq!(code(ErrorCode::Timeout), Code::ProviderUnavailable);
        assert_eq!(code(ErrorCode::Internal), Code::InternalError);
        assert_eq!(code(ErrorCode::MaxIterations), Code::TurnStopped);
        assert_eq!(code(ErrorCode::HookStopped), Code::TurnStopped);
        let error = failed(ErrorCode::MaxIterations, "stopped".into());
        assert_eq!(error.to_json()["data"]["kind"], "max_iterations");
    }
}

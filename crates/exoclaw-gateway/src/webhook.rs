//! `POST /webhook/{channel}`: where chat platforms deliver events. Each channel registers a
//! [`Webhook`] that verifies a delivery (signature, timestamp) before anything reads it and then
//! takes it; an unknown channel is a 404, a failed verification a 401. The channels themselves
//! (exoclaw-channels' Slack and Telegram, WASM channel plugins) come from the runtime.
//! [`SharedSecret`] verifies an HMAC-SHA256 signature of the body ([`verify_signature`]), the
//! scheme most platforms use in some form.

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::HeaderMap;
pub use exoclaw_core::runtime::Webhook;
pub use exoclaw_core::runtime::webhook::{SIGNATURE_HEADER, sign_body, verify_signature};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Webhooks by channel name.
#[derive(Clone, Default)]
pub struct Webhooks {
    channels: BTreeMap<String, Arc<dyn Webhook>>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.channels.keys()).finish()
    }
}

impl Webhooks {
    /// No channels: every delivery is a 404.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `hook` for `/webhook/{channel}`.
    pub fn with(mut self, channel: impl Into<String>, hook: Arc<dyn Webhook>) -> Self {
        self.channels.insert(channel.into(), hook);
        self
    }

    /// The webhook for `channel`.
    pub fn get(&self, channel: &str) -> Option<&Arc<dyn Webhook>> {
        self.channels.get(channel)
    }

    /// The channels, sorted.
    pub fn channels(&self) -> Vec<String> {
        self.channels.keys().cloned().collect()
    }
}

/// Verifies `X-Exoclaw-Signature: sha256=<hex HMAC-SHA256 of the body>` with a shared secret, and
/// hands verified bodies to a function.
pub struct SharedSecret {
    secret: Vec<u8>,
    deliver: Box<dyn Fn(Bytes) -> serde_json::Value + Send + Sync>,
}

impl SharedSecret {
    /// The header carrying the signature.
    pub const HEADER: &'static str = SIGNATURE_HEADER;

    /// Verifies with `secret`, then calls `deliver`.
    pub fn new(
        secret: impl Into<Vec<u8>>,
        deliver: impl Fn(Bytes) -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        Self { secret: secret.into(), deliver: Box::new(deliver) }
    }

    /// The header value a sender puts on `body`.
    pub fn sign(secret: &[u8], body: &[u8]) -> String {
        sign_body(secret, body)
    }
}

#[async_trait]
impl Webhook for SharedSecret {
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
        verify_signature(&self.secret, headers, body)
    }

    async fn receive(&self, _headers: &HeaderMap, body: Bytes) -> Result<serde_json::Value, String> {
        Ok((self.deliver)(body))
    }
}

//! `POST /webhook/{channel}`: where chat platforms deliver events. Each channel registers a
//! [`Webhook`] that verifies a delivery (signature, timestamp) before anything reads it and then
//! takes it; an unknown channel is a 404, a failed verification a 401. Channel plugins (WASM) are
//! served here; the built-in platform adapters (Slack, Discord, Telegram) come later.
//! [`SharedSecret`] verifies an HMAC-SHA256 signature of the body ([`verify_signature`]), the
//! scheme most platforms use in some form.

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One channel's webhook.
#[async_trait]
pub trait Webhook: Send + Sync {
    /// Checks that the delivery really comes from the platform; the error says why not (it is
    /// logged, not sent back).
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), String>;

    /// Takes a verified delivery; the JSON answered to the platform, or why it could not be
    /// taken (answered as a 400 with the reason, and logged).
    async fn receive(&self, headers: &HeaderMap, body: Bytes) -> Result<serde_json::Value, String>;
}

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
    pub const HEADER: &'static str = "x-exoclaw-signature";

    /// Verifies with `secret`, then calls `deliver`.
    pub fn new(
        secret: impl Into<Vec<u8>>,
        deliver: impl Fn(Bytes) -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        Self { secret: secret.into(), deliver: Box::new(deliver) }
    }

    /// The header value a sender puts on `body`.
    pub fn sign(secret: &[u8], body: &[u8]) -> String {
        let digest = match mac(secret) {
            Ok(mut mac) => {
                mac.update(body);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        };
        format!("sha256={}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }
}

/// HMAC-SHA256 keyed with `secret` (HMAC takes keys of any length, so this does not fail).
fn mac(secret: &[u8]) -> Result<Hmac<Sha256>, String> {
    Hmac::<Sha256>::new_from_slice(secret).map_err(|e| format!("the webhook secret cannot be used: {e}"))
}

/// Checks `X-Exoclaw-Signature: sha256=<hex>` on `body` against `secret` (in constant time).
pub fn verify_signature(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let signature = headers
        .get(SharedSecret::HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("no {} header", SharedSecret::HEADER))?;
    let hex = signature.strip_prefix("sha256=").ok_or("the signature is not `sha256=<hex>`")?;
    let expected = decode_hex(hex).ok_or("the signature is not hex")?;
    let mut mac = mac(secret)?;
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| "the signature does not match the body".to_owned())
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

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_the_signed_body_with_the_right_secret() {
        let hook = SharedSecret::new("s3cret", |_| serde_json::json!({}));
        let mut headers = HeaderMap::new();
        headers.insert(SharedSecret::HEADER, SharedSecret::sign(b"s3cret", b"{\"a\":1}").parse().unwrap());
        assert!(hook.verify(&headers, b"{\"a\":1}").is_ok());
        assert!(hook.verify(&headers, b"{\"a\":2}").is_err());
        headers.insert(SharedSecret::HEADER, SharedSecret::sign(b"other", b"{\"a\":1}").parse().unwrap());
        assert!(hook.verify(&headers, b"{\"a\":1}").is_err());
        assert!(hook.verify(&HeaderMap::new(), b"{}").unwrap_err().contains("no x-exoclaw-signature"));
    }
}

//! What a chat channel offers the gateway's `POST /webhook/{channel}`: a [`Webhook`] checks that a
//! delivery comes from its platform, then takes it (usually: answers at once, submits turns to the
//! runtime and replies when they end). Channel adapters (the built-in ones, WASM channel plugins)
//! implement it; the gateway only routes to it, so none of them depends on the gateway.

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderMap;

/// One channel's webhook.
#[async_trait]
pub trait Webhook: Send + Sync {
    /// Checks that the delivery really comes from the platform (signature, timestamp); the error
    /// says why not (it is logged, never sent back).
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), String>;

    /// Takes a verified delivery: the JSON answered to the platform, or why it could not be taken
    /// (answered as a 400 with the reason, and logged).
    async fn receive(&self, headers: &HeaderMap, body: Bytes) -> Result<serde_json::Value, String>;
}

/// The header exoclaw's own signature scheme uses: `sha256=<hex HMAC-SHA256 of the body>`, keyed
/// with a secret the sender and exoclaw share (channel plugins, channels of your own).
pub const SIGNATURE_HEADER: &str = "x-exoclaw-signature";

/// HMAC-SHA256 of `data` keyed with `secret`.
pub fn hmac_sha256(secret: &[u8], data: &[&[u8]]) -> Vec<u8> {
    use hmac::Mac;
    // HMAC takes keys of any length: this never fails.
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else { return Vec::new() };
    for part in data {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Whether `expected` is the HMAC-SHA256 of `data` keyed with `secret` (compared in constant time).
pub fn hmac_sha256_matches(secret: &[u8], data: &[&[u8]], expected: &[u8]) -> bool {
    use hmac::Mac;
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else { return false };
    for part in data {
        mac.update(part);
    }
    mac.verify_slice(expected).is_ok()
}

/// The [`SIGNATURE_HEADER`] value a sender puts on `body`.
pub fn sign_body(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex(&hmac_sha256(secret, &[body])))
}

/// Checks the [`SIGNATURE_HEADER`] on `body` against `secret`.
pub fn verify_signature(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("no {SIGNATURE_HEADER} header"))?;
    let hex = signature.strip_prefix("sha256=").ok_or("the signature is not `sha256=<hex>`")?;
    let expected = decode_hex(hex).ok_or("the signature is not hex")?;
    match hmac_sha256_matches(secret, &[body], &expected) {
        true => Ok(()),
        false => Err("the signature does not match the body".to_owned()),
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string, if it is one.
pub fn decode_hex(hex: &str) -> Option<Vec<u8>> {
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
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, sign_body(b"s3cret", b"{\"a\":1}").parse().unwrap());
        assert!(verify_signature(b"s3cret", &headers, b"{\"a\":1}").is_ok());
        assert!(verify_signature(b"s3cret", &headers, b"{\"a\":2}").is_err());
        headers.insert(SIGNATURE_HEADER, sign_body(b"other", b"{\"a\":1}").parse().unwrap());
        assert!(verify_signature(b"s3cret", &headers, b"{\"a\":1}").is_err());
        let missing = verify_signature(b"s3cret", &HeaderMap::new(), b"{}").unwrap_err();
        assert!(missing.contains("no x-exoclaw-signature"), "{missing}");
    }
}

//! Bearer-token access: the accepted tokens are kept only as SHA-256 hashes, a request's token is
//! hashed and compared to every one in constant time, and [`check_bind`] refuses to expose a
//! gateway without tokens beyond loopback. Tokens never reach a log line or an error message.

use crate::GatewayError;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

/// The tokens a gateway accepts, as SHA-256 hashes. Empty: no token is required.
#[derive(Clone, Default)]
pub struct TokenSet {
    hashes: Vec<[u8; 32]>,
}

// Hand-written so a hash never shows up in a `{:?}` of the gateway's configuration.
impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet").field("tokens", &self.hashes.len()).finish()
    }
}

/// The SHA-256 of `token` as 64 lowercase hex digits: what the configuration stores.
pub fn hash_token(token: &str) -> String {
    lower_hex(&Sha256::digest(token.as_bytes()))
}

/// `bytes` as lowercase hex digits, two per byte.
pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    hex
}

fn parse_hex_hash(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *slot = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

/// Whether two hashes are equal, looking at every byte whatever the others are (no early exit),
/// so the time taken says nothing about how much of a guess was right.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl TokenSet {
    /// No tokens: every request is let in.
    pub fn open() -> Self {
        Self::default()
    }

    /// From stored hashes (64 hex digits each, any case).
    pub fn from_hashes<S: AsRef<str>>(hashes: impl IntoIterator<Item = S>) -> Result<Self, GatewayError> {
        let hashes = hashes
            .into_iter()
            .enumerate()
            .map(|(index, h)| parse_hex_hash(h.as_ref()).ok_or(GatewayError::BadTokenHash { index }))
            .collect::<Result<_, _>>()?;
        Ok(Self { hashes })
    }

    /// From plaintext tokens, hashed at once (tests, and tokens passed on the command line).
    pub fn from_tokens<S: AsRef<str>>(tokens: impl IntoIterator<Item = S>) -> Self {
        Self { hashes: tokens.into_iter().map(|t| Sha256::digest(t.as_ref().as_bytes()).into()).collect() }
    }

    /// Whether any token is configured, so one is required.
    pub fn is_required(&self) -> bool {
        !self.hashes.is_empty()
    }

    /// Checks an `Authorization` header value against the set.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), GatewayError> {
        if !self.is_required() {
            return Ok(());
        }
        let Some(token) = crate::keys::bearer(authorization)? else {
            return Err(GatewayError::Unauthorized {
                reason: "this gateway requires a token and none was sent",
            });
        };
        if self.matches(token) {
            Ok(())
        } else {
            Err(GatewayError::Unauthorized { reason: "the token is not one of this gateway's tokens" })
        }
    }

    /// Whether `token` is one of the set's, comparing its hash against every one in constant time
    /// (no early exit at a match, so timing does not reveal which, or how close a guess was).
    pub fn matches(&self, token: &str) -> bool {
        let candidate: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.hashes.iter().fold(false, |ok, h| ok | constant_time_eq(h, &candidate))
    }
}

/// Refuses to listen on a non-loopback address when no token is configured: such a gateway would
/// hand the providers' keys to anyone on the network.
pub fn check_bind(addr: SocketAddr, has_tokens: bool) -> Result<(), GatewayError> {
    if has_tokens || addr.ip().is_loopback() { Ok(()) } else { Err(GatewayError::InsecureBind { addr }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_hashes_accept_their_token_only() {
        let set = TokenSet::from_hashes([hash_token("s3cret").to_uppercase()]).unwrap();
        assert!(set.check(Some("Bearer s3cret")).is_ok());
        assert!(set.check(Some("Bearer s3cre")).is_err());
        assert!(set.check(Some("Basic s3cret")).is_err());
        assert!(set.check(None).is_err());
        assert!(TokenSet::open().check(None).is_ok());
    }

    #[test]
    fn bad_hashes_are_named_by_position() {
        let err = TokenSet::from_hashes([hash_token("a").as_str(), "zz"]).unwrap_err();
        assert_eq!(err, GatewayError::BadTokenHash { index: 1 });
    }

    #[test]
    fn errors_and_debug_never_show_the_token() {
        let set = TokenSet::from_tokens(["s3cret"]);
        let err = set.check(Some("Bearer wrong-guess")).unwrap_err();
        assert!(!err.to_string().contains("wrong-guess"));
        assert!(!format!("{set:?}").contains(&hash_token("s3cret")));
    }
}

//! Who is calling: an operator (one of the configured tokens), the holder of a virtual key (with
//! its model allow-list, budget and requests-per-minute limit), or anyone, on a gateway that
//! requires no token. Virtual keys are made here ([`generate_key`]) and checked on every request;
//! the key is shown once and only its SHA-256 is stored.

use crate::accounting::BudgetRefusal;
use crate::auth::lower_hex;
use crate::{Gateway, GatewayError, hash_token};
use exoclaw_types::ApiKey;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The start of every virtual key, so a leaked one is recognisable (and scannable) as exoclaw's.
pub const KEY_PREFIX: &str = "exo-";

/// Characters of a key kept (besides [`KEY_PREFIX`]) to tell keys apart in lists.
const SHOWN_CHARS: usize = 8;

/// A fresh virtual key: [`KEY_PREFIX`] and 64 hex digits (256 random bits from the operating
/// system's generator), its SHA-256, and the prefix to show in lists. Fails only when the
/// operating system cannot give random bytes.
pub fn generate_key() -> Result<GeneratedKey, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let secret = format!("{KEY_PREFIX}{}", lower_hex(&bytes));
    let hash = hash_token(&secret);
    let prefix = format!("{}…", &secret[..KEY_PREFIX.len() + SHOWN_CHARS]);
    Ok(GeneratedKey { secret, hash, prefix })
}

/// A key just made: print `secret` once, store `hash` and `prefix`.
pub struct GeneratedKey {
    /// The key itself.
    pub secret: String,
    /// Its SHA-256, 64 lowercase hex digits.
    pub hash: String,
    /// Its first characters, for lists.
    pub prefix: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// No token is required on this gateway.
    Anyone,
    /// One of the configured operator tokens: every model, every method, no limits.
    Operator,
    /// A virtual key.
    Key(ApiKey),
}

impl Caller {
    /// The key's name, for logs and the usage ledger.
    pub fn label(&self) -> &str {
        match self {
            Caller::Anyone => "anyone",
            Caller::Operator => "operator",
            Caller::Key(key) => &key.name,
        }
    }

    /// Whether the caller may use `model`.
    pub fn check_model(&self, model: &str) -> Result<(), GatewayError> {
        match self {
            Caller::Key(key) if !key.allows(model) => Err(GatewayError::ModelNotAllowed {
                model: model.to_owned(),
                key: key.name.clone(),
                allowed: key.models.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// The bearer token of an `Authorization` header value. The scheme is case-insensitive
/// (`Bearer`, `bearer`, `BEARER`: RFC 9110 §11.1), and may be followed by more than one space.
pub fn bearer(header: Option<&str>) -> Result<Option<&str>, GatewayError> {
    let Some(header) = header else { return Ok(None) };
    let (scheme, token) = header.trim_start().split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Some(token.trim()))
    } else {
        Err(GatewayError::Unauthorized { reason: "the Authorization header is not a bearer token" })
    }
}

/// Who holds `token` (from an `Authorization: Bearer` header or a `connect` request), or why they
/// are refused. Checks the operator tokens first (in constant time), then the virtual keys by
/// hash; a key that is revoked, over its budget or over its rate is refused with its reason.
pub async fn authenticate(gateway: &Gateway, token: Option<&str>) -> Result<Caller, GatewayError> {
    gateway.notice_new_keys().await;
    if !gateway.requires_auth() {
        return Ok(Caller::Anyone);
    }
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(GatewayError::Unauthorized { reason: "this gateway requires a token and none was sent" });
    };
    if gateway.tokens.matches(token) {
        return Ok(Caller::Operator);
    }
    let key = live_key(gateway, token).await?;
    if let Some(rpm) = key.rpm {
        gateway.rate.check(&key.id, rpm).map_err(|retry_after| GatewayError::RateLimited {
            key: key.name.clone(),
            rpm,
            retry_after,
        })?;
    }
    Ok(Caller::Key(key))
}

/// Checks again, for a connection that authenticated earlier, that its caller may still call:
/// a virtual key not revoked nor over its budget since (`token` is the key), and a caller let in
/// as `anyone` not on a gateway that has required keys since. Unlike [`authenticate`] this does
/// not count against the key's requests per minute; the key is read from the one-second cache.
pub async fn recheck(gateway: &Gateway, caller: &Caller, token: Option<&str>) -> Result<(), GatewayError> {
    match caller {
        Caller::Operator => Ok(()),
        Caller::Anyone => {
            gateway.notice_new_keys().await;
            if gateway.requires_auth() {
                Err(GatewayError::Unauthorized { reason: "this gateway requires a token now" })
            } else {
                Ok(())
            }
        }
        Caller::Key(key) => match token {
            Some(token) => live_key(gateway, token).await.map(drop),
            None => Err(GatewayError::KeyRevoked { key: key.name.clone() }),
        },
    }
}

/// The virtual key `token` is, if it exists, is not revoked and has budget left.
async fn live_key(gateway: &Gateway, token: &str) -> Result<ApiKey, GatewayError> {
    let Some(keys) = &gateway.keys else {
        return Err(GatewayError::Unauthorized { reason: "the token is not one of this gateway's tokens" });
    };
    let hash = hash_token(token);
    let key = match gateway.key_cache.get(&hash) {
        Some(cached) => cached,
        None => {
            let stored = keys
                .key_by_hash(&hash)
                .await
                .map_err(|e| GatewayError::Unavailable { what: format!("the key store failed: {e}") })?;
            gateway.key_cache.put(hash, stored)
        }
    }
    .ok_or(GatewayError::Unauthorized { reason: "the token is not one of this gateway's tokens" })?;
    if key.revoked_at.is_some() {
        return Err(GatewayError::KeyRevoked { key: key.name });
    }
    if let Some(budget) = key.budget_usd
        && key.spent_usd >= budget
    {
        return Err(GatewayError::BudgetExceeded(BudgetRefusal::KeySpent {
            key: key.name,
            budget_usd: budget,
            spent_usd: key.spent_usd,
        }));
    }
    Ok(key)
}

/// How long a key looked up in the store is trusted before it is read again: a key revoked (or a
/// budget raised) by `exoclaw keys` in another process takes effect within this.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// Dollar sums are floating point: a request that lands exactly on a key's budget must not be
/// refused for a rounding error.
const USD_EPSILON: f64 = 1e-9;

/// Keys by hash, as last read from the store, and each key's books: what it has spent (the store
/// lags by the spend not yet written in a batch) and what requests in progress hold. A busy
/// gateway reads each key about once a second instead of once a request.
#[derive(Debug, Default)]
pub struct KeyCache {
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    /// Keys by hash, with when they were read (`None`: no such key).
    entries: HashMap<String, (Instant, Option<ApiKey>)>,
    /// Each key's books, by key id. Kept apart from `entries`, which may be swept, so the spend
    /// not yet written is never forgotten; bounded by the number of keys.
    books: HashMap<String, Book>,
}

impl CacheInner {
    /// Runs `f` on the key `id`'s books (fresh ones if it has none yet), without allocating for a
    /// key that has them.
    fn with_book<R>(&mut self, id: &str, f: impl FnOnce(&mut Book) -> R) -> R {
        if let Some(book) = self.books.get_mut(id) {
            return f(book);
        }
        f(self.books.entry(id.to_owned()).or_default())
    }
}

/// One key's spend as this process knows it.
#[derive(Debug, Default, Clone, Copy)]
struct Book {
    /// Dollars spent: what the store said, plus what was settled here since.
    spent: f64,
    /// Dollars reserved by requests still running.
    held: f64,
    /// How many requests hold them: with none, `held` is exactly 0 (not the rounding error that
    /// adding and taking away dollar amounts leaves).
    holds: u32,
}

/// A key's budget refused a reservation: what it had spent and what was held then.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Short {
    pub(crate) spent_usd: f64,
    pub(crate) held_usd: f64,
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The key with this hash (`Some(None)`: known not to exist), while fresh, with the spend this
    /// process knows of.
    fn get(&self, hash: &str) -> Option<Option<ApiKey>> {
        let inner = self.lock();
        let (at, key) = inner.entries.get(hash)?;
        if at.elapsed() >= KEY_CACHE_TTL {
            return None;
        }
        Some(key.clone().map(|mut key| {
            if let Some(book) = inner.books.get(&key.id) {
                key.spent_usd = book.spent;
            }
            key
        }))
    }

    /// Remembers what the store said, keeping the spend settled but perhaps not yet written.
    fn put(&self, hash: String, key: Option<ApiKey>) -> Option<ApiKey> {
        let mut inner = self.lock();
        // Unknown hashes are remembered too (a client retrying a wrong key costs one read a
        // second), but the map is kept from growing without bound by wrong guesses.
        if inner.entries.len() > 10_000 {
            inner.entries.retain(|_, (at, _)| at.elapsed() < KEY_CACHE_TTL);
        }
        let key = key.map(|mut fresh| {
            // The store lags these books by the batches not yet written.
            let book = inner.books.entry(fresh.id.clone()).or_default();
            book.spent = book.spent.max(fresh.spent_usd);
            fresh.spent_usd = book.spent;
            fresh
        });
        inner.entries.insert(hash, (Instant::now(), key.clone()));
        key
    }

    /// Holds `usd` of the key `id`'s `budget_usd` for a request about to run, if what it has
    /// spent, what requests in progress hold and `usd` fit in the budget; else says what was
    /// spent and held. Atomic: concurrent requests cannot all see room and overspend together.
    pub(crate) fn reserve(&self, id: &str, budget_usd: f64, usd: f64) -> Result<(), Short> {
        self.lock().with_book(id, |book| {
            if book.spent + book.held + usd > budget_usd + USD_EPSILON {
                return Err(Short { spent_usd: book.spent, held_usd: book.held });
            }
            book.held += usd;
            book.holds += 1;
            Ok(())
        })
    }

    /// Ends a hold of `held` dollars taken by [`KeyCache::reserve`] and adds what the request
    /// really cost, so the budget applies to it at once (the store is written in batches).
    pub(crate) fn settle(&self, id: &str, held: f64, usd: f64) {
        self.lock().with_book(id, |book| {
            book.holds = book.holds.saturating_sub(1);
            book.held = if book.holds == 0 { 0.0 } else { (book.held - held).max(0.0) };
            book.spent += usd;
        });
    }

    /// Adds the cost of a request that held nothing to the key's spend, so its budget applies at
    /// once.
    pub(crate) fn add_spend(&self, id: &str, usd: f64) {
        self.lock().with_book(id, |book| book.spent += usd);
    }

    /// Charges key `id` `usd` for a request that is over: ends its hold of `held` dollars if it
    /// took one ([`KeyCache::settle`]), else adds the cost ([`KeyCache::add_spend`]).
    pub(crate) fn charge(&self, id: &str, held: Option<f64>, usd: f64) {
        match held {
            Some(held) => self.settle(id, held, usd),
            None if usd > 0.0 => self.add_spend(id, usd),
            None => {}
        }
    }
}

/// Requests-per-minute limits, one token bucket per key: `rpm` requests at once, refilled at
/// `rpm` a minute. Kept in memory: a restart forgives the current minute.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// Takes one request from `id`'s bucket, or says how long until one is free.
    pub fn check(&self, id: &str, rpm: u32) -> Result<(), Duration> {
        self.check_at(id, rpm, Instant::now())
    }

    fn check_at(&self, id: &str, rpm: u32, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(rpm.max(1));
        let per_sec = capacity / 60.0;
        let mut buckets = match self.buckets.lock() {
            Ok(buckets) => buckets,
            Err(poisoned) => poisoned.into_inner(),
        };
        let bucket = buckets.entry(id.to_owned()).or_insert(Bucket { tokens: capacity, at: now });
        let refilled = bucket.tokens + now.saturating_duration_since(bucket.at).as_secs_f64() * per_sec;
        bucket.tokens = refilled.min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_shown_only_by_prefix() {
        let (a, b) = (generate_key().unwrap(), generate_key().unwrap());
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), KEY_PREFIX.len() + 64);
        assert!(a.secret.starts_with(KEY_PREFIX) && a.prefix.starts_with(&a.secret[..12]));
        assert_eq!(a.hash, hash_token(&a.secret));
        assert!(!format!("{a:?}").contains(&a.secret));
        assert!(
            a.secret[KEY_PREFIX.len()..].bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer tok", "bearer tok", "BEARER tok", "BeArEr   tok "] {
            assert_eq!(bearer(Some(header)).unwrap(), Some("tok"), "{header}");
        }
        assert!(bearer(Some("Basic dG9r")).is_err());
        assert!(bearer(Some("Bearertok")).is_err());
        assert_eq!(bearer(None).unwrap(), None);
    }

    #[test]
    fn key_holds_are_atomic_settle_to_real_cost_and_leave_no_rounding_behind() {
        let cache = KeyCache::default();
        // Three holds of $0.1 fit a $0.3 budget; a fourth does not.
        for _ in 0..3 {
            cache.reserve("k", 0.3, 0.1).unwrap();
        }
        let short = cache.reserve("k", 0.3, 0.1).unwrap_err();
        assert!((short.held_usd - 0.3).abs() < 1e-12 && short.spent_usd == 0.0, "{short:?}");
        // Settling one at its real cost frees the difference.
        cache.settle("k", 0.1, 0.07);
        cache.reserve("k", 0.3, 0.03).unwrap();
        for held in [0.1, 0.1, 0.03] {
            cache.settle("k", held, 0.0);
        }
        let short = cache.reserve("k", 0.07, 1.0).unwrap_err();
        assert_eq!(short.held_usd, 0.0, "nothing is held once every hold is settled");
        assert!((short.spent_usd - 0.07).abs() < 1e-12);
        // Spend from the store never lowers what was settled here.
        let mut key = ApiKey {
            id: "k".into(),
            name: "n".into(),
            prefix: "exo-…".into(),
            models: Vec::new(),
            budget_usd: Some(1.0),
            spent_usd: 0.01,
            rpm: None,
            created_at: chrono::Utc::now(),
            revoked_at: None,
        };
        assert!((cache.put("h".into(), Some(key.clone())).unwrap().spent_usd - 0.07).abs() < 1e-12);
        key.spent_usd = 0.5;
        assert_eq!(cache.put("h".into(), Some(key)).unwrap().spent_usd, 0.5);
        assert_eq!(cache.get("h").unwrap().unwrap().spent_usd, 0.5);
    }

    #[test]
    fn a_bucket_allows_its_rpm_then_refills_steadily() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("k", 3, start).is_ok());
        }
        let wait = limiter.check_at("k", 3, start).unwrap_err();
        assert!((19.0..=20.0).contains(&wait.as_secs_f64()), "{wait:?}");
        // Another key has its own bucket.
        assert!(limiter.check_at("other", 3, start).is_ok());
        // 20 s later one request is free again, not more.
        let later = start + Duration::from_secs(20);
        assert!(limiter.check_at("k", 3, later).is_ok());
        assert!(limiter.check_at("k", 3, later).is_err());
    }
}

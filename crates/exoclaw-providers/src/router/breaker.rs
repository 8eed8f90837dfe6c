//! A circuit breaker per provider that opens on the failure *rate* of recent requests, not on a
//! run of failures.
//!
//! # What it decides, and why this way
//!
//! A breaker exists to stop paying for a provider that is down — waiting on its timeouts and
//! retries before every fallback — not to refuse one that answers most of the time. The earlier
//! rule, "three failed attempts in a row open it", failed at exactly that: at a 30 % error rate
//! three failures in a row come every few dozen attempts, so a busy route opened its breakers over
//! and over, and once every provider on it was open, every request failed at once.
//!
//! - **One outcome per request, not per attempt.** The router reports a request that got an answer
//!   from the provider, after however many retries there, as one success, and a request that gave
//!   up on it (its retries spent, or sent on to a fallback) as one failure. The question a breaker
//!   answers is "will a request sent there get an answer?": a provider failing 30 % of attempts
//!   answers 97.3 % of requests with two retries (1 − 0.3³), and that is what the breaker sees.
//! - **A failure rate over a sliding time window, with a minimum volume** (resilience4j's
//!   `TIME_BASED` sliding window with `minimumNumberOfCalls`; Envoy's outlier detection
//!   `failure_percentage` with its request volume): it opens when, over the last
//!   [`BreakerPolicy::window`], at least [`BreakerPolicy::min_failures`] requests failed *and*
//!   failures are at least [`BreakerPolicy::failure_rate`] of all requests. The minimum keeps a few
//!   unlucky requests from opening it while traffic is light; the rate keeps a busy provider that
//!   fails now and then from opening it however many failures a busy minute holds. With the
//!   defaults (5 failures, 50 %, 30 s), a provider that is down opens after five requests; one
//!   failing 30 % of attempts (2.7 % of requests) never comes near 50 %; one failing about 80 % of
//!   attempts (half its requests, even with two retries) opens.
//! - **Half-open with one probe.** After [`BreakerPolicy::cool_down`] exactly one request is let
//!   through: its success closes the breaker with an empty window (the failures that opened it say
//!   nothing about the provider now), its failure reopens it for another cool-down.
//! - **Never a route with nothing to try.** The breaker only ranks; when every provider of a route
//!   is open, the router tries them anyway, in order (Envoy's panic threshold). See the router.
//!
//! Which failures count — those of the server itself, never a bad request or a missing key — is
//! the router's decision (`counts_against_breaker`).
//!
//! # Cost
//!
//! The state sits in atomics: [`Breaker::admit`] on a closed breaker is one load. The window is ten
//! buckets, each one `AtomicU64` packing its time slot with its success and failure counts, so
//! recording an outcome is one compare-and-swap, and a failure adds a scan of the ten buckets. Only
//! the last error's text, written on failure, is behind a mutex. A time window (rather than "the
//! last N calls") is what lets the buckets be lock-free, and it forgets an old outage at the same
//! pace whatever the traffic.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The default [`BreakerPolicy::min_failures`].
pub const DEFAULT_MIN_FAILURES: u32 = 5;
/// The default [`BreakerPolicy::failure_rate`].
pub const DEFAULT_FAILURE_RATE: f64 = 0.5;
/// The default [`BreakerPolicy::window`].
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
/// The default [`BreakerPolicy::cool_down`].
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(30);

/// When a breaker opens and how long it stays open. See the module docs for how it decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Failed requests within the window needed before the rate is judged at all (default 5; at
    /// least 1).
    pub min_failures: u32,
    /// The share of the window's requests that must have failed, in `0.0..=1.0` (default 0.5).
    pub failure_rate: f64,
    /// How far back the window reaches (default 30 s), in ten slots of a tenth each.
    pub window: Duration,
    /// How long an open breaker waits before admitting a probe (default 30 s).
    pub cool_down: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            min_failures: DEFAULT_MIN_FAILURES,
            failure_rate: DEFAULT_FAILURE_RATE,
            window: DEFAULT_WINDOW,
            cool_down: DEFAULT_COOL_DOWN,
        }
    }
}

impl BreakerPolicy {
    /// The policy with its values brought into range: at least one failure, a rate in `0..=1`
    /// (the default when not a number), a window of at least one millisecond per slot.
    fn normalized(self) -> Self {
        let failure_rate =
            if self.failure_rate.is_nan() { DEFAULT_FAILURE_RATE } else { self.failure_rate.clamp(0.0, 1.0) };
        Self {
            min_failures: self.min_failures.max(1),
            failure_rate,
            window: self.window.max(Duration::from_millis(SLOTS as u64)),
            cool_down: self.cool_down,
        }
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Slots in the window.
const SLOTS: usize = 10;
/// A slot packs its time slot's number (low 16 bits) and two 24-bit counts: failures, successes.
const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const EPOCH_BITS: u32 = 16;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;

fn pack(epoch: u64, failures: u64, successes: u64) -> u64 {
    (successes << (EPOCH_BITS + COUNT_BITS)) | (failures << EPOCH_BITS) | (epoch & EPOCH_MASK)
}

fn unpack(slot: u64) -> (u64, u64, u64) {
    (slot & EPOCH_MASK, (slot >> EPOCH_BITS) & COUNT_MAX, slot >> (EPOCH_BITS + COUNT_BITS))
}

/// What a breaker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows.
    Closed,
    /// The provider is skipped until the cool-down ends (unless nothing else is left to try).
    Open,
    /// One probe request is in flight; everyone else skips the provider.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Whether a request may go to the provider.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Yes, normally.
    Admitted,
    /// Yes, as the single probe of a half-open breaker.
    Probe,
    /// No: the breaker is open (or a probe is already in flight).
    Rejected {
        /// Time left until a probe is admitted (zero while a probe is in flight).
        retry_in: Duration,
    },
}

/// One provider's breaker.
#[derive(Debug)]
pub struct Breaker {
    state: AtomicU8,
    /// When the breaker last opened, in milliseconds since `base`.
    opened_at_ms: AtomicU64,
    base: Instant,
    policy: BreakerPolicy,
    slot_ms: u64,
    slots: [AtomicU64; SLOTS],
    last_error: Mutex<Option<String>>,
}

impl Breaker {
    /// A closed breaker deciding by `policy`.
    pub fn new(policy: BreakerPolicy) -> Self {
        let policy = policy.normalized();
        let slot_ms = u64::try_from(policy.window.as_millis() / SLOTS as u128).unwrap_or(u64::MAX).max(1);
        Self {
            state: AtomicU8::new(CLOSED),
            opened_at_ms: AtomicU64::new(0),
            base: Instant::now(),
            policy,
            slot_ms,
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            last_error: Mutex::new(None),
        }
    }

    /// The policy it decides by.
    pub fn policy(&self) -> BreakerPolicy {
        self.policy
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Requests recorded within the window, and how many of them failed. The window keeps what
    /// opened an open breaker until it ages out; closing empties it.
    pub fn window(&self) -> (u32, u32) {
        let (failures, successes) = self.totals(self.epoch());
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        (clamp(failures + successes), clamp(failures))
    }

    /// Failed requests within the window.
    pub fn failures(&self) -> u32 {
        self.window().1
    }

    /// The last failure's message.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The number of the time slot now.
    fn epoch(&self) -> u64 {
        self.now_ms() / self.slot_ms
    }

    /// Failures and successes over the window ending in slot `epoch`.
    fn totals(&self, epoch: u64) -> (u64, u64) {
        self.slots.iter().fold((0, 0), |(failures, successes), slot| {
            let (slot_epoch, f, s) = unpack(slot.load(Ordering::Acquire));
            // A slot is current when it was last written within the last SLOTS slots; 16 bits of
            // slot number wrap after weeks, long after any slot is rewritten.
            if epoch.wrapping_sub(slot_epoch) & EPOCH_MASK < SLOTS as u64 {
                (failures + f, successes + s)
            } else {
                (failures, successes)
            }
        })
    }

    /// Counts one outcome in the current slot, starting the slot afresh if it last held an older
    /// time slot; returns the window's totals (failures, successes) after it.
    fn count(&self, failed: bool) -> (u64, u64) {
        let epoch = self.epoch();
        let slot = &self.slots[usize::try_from(epoch % SLOTS as u64).unwrap_or(0)];
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
            let (old_epoch, f, s) = unpack(old);
            let (f, s) = if old_epoch == epoch & EPOCH_MASK { (f, s) } else { (0, 0) };
            let (f, s) = if failed { ((f + 1).min(COUNT_MAX), s) } else { (f, (s + 1).min(COUNT_MAX)) };
            Some(pack(epoch, f, s))
        });
        self.totals(epoch)
    }

    /// Closes the breaker with an empty window.
    fn close(&self) {
        for slot in &self.slots {
            slot.store(0, Ordering::Release);
        }
        self.state.store(CLOSED, Ordering::Release);
    }

    fn open(&self) {
        self.opened_at_ms.store(self.now_ms(), Ordering::Release);
        self.state.store(OPEN, Ordering::Release);
    }

    /// Asks to send a request. An open breaker whose cool-down is over admits exactly one caller
    /// as its probe; that caller must report [`Breaker::recovered`] or [`Breaker::failure`] (or
    /// [`Breaker::abandon`] if it never got an answer either way).
    pub fn admit(&self) -> Admission {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Admission::Admitted,
            HALF_OPEN => Admission::Rejected { retry_in: Duration::ZERO },
            _ => {
                let open_for = Duration::from_millis(
                    self.now_ms().saturating_sub(self.opened_at_ms.load(Ordering::Acquire)),
                );
                if open_for < self.policy.cool_down {
                    return Admission::Rejected { retry_in: self.policy.cool_down - open_for };
                }
                match self.state.compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => Admission::Probe,
                    Err(CLOSED) => Admission::Admitted,
                    Err(_) => Admission::Rejected { retry_in: Duration::ZERO },
                }
            }
        }
    }

    /// A request admitted normally got an answer: counted in the window. It also closes a
    /// half-open breaker (the provider answered). An open breaker ignores it: the request was
    /// admitted before the breaker opened, and one late answer does not outweigh the failures
    /// that opened it.
    pub fn success(&self) {
        match self.state.load(Ordering::Acquire) {
            CLOSED => {
                self.count(false);
            }
            HALF_OPEN => self.close(),
            _ => {}
        }
    }

    /// Fresh evidence that the provider answers — a probe's answer, a passed health check, an
    /// answer from a provider tried while open because nothing else was left: closes the breaker
    /// with an empty window whatever its state (a closed one counts a success).
    pub fn recovered(&self) {
        match self.state.load(Ordering::Acquire) {
            CLOSED => {
                self.count(false);
            }
            _ => self.close(),
        }
    }

    /// A request failed at the provider with `error`. A closed breaker counts it and opens when
    /// the window's failures reach both the minimum and the rate; a half-open one (its probe
    /// failed) reopens for another cool-down; an open one only keeps the message.
    pub fn failure(&self, error: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error.to_owned());
        }
        match self.state.load(Ordering::Acquire) {
            CLOSED => {
                let (failures, successes) = self.count(true);
                let calls = failures + successes;
                // Counts stay far below 2^52: exact as floats.
                let rate_reached = failures as f64 >= self.policy.failure_rate * calls as f64;
                if failures >= u64::from(self.policy.min_failures) && rate_reached {
                    self.open();
                }
            }
            HALF_OPEN => self.open(),
            _ => {}
        }
    }

    /// A probe ended without an answer either way (the caller gave up, or the failure said
    /// nothing about the provider's health): the breaker goes back to open with its cool-down
    /// already over, so the next caller probes.
    pub fn abandon(&self) {
        let _ = self.state.compare_exchange(HALF_OPEN, OPEN, Ordering::AcqRel, Ordering::Acquire);
    }
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new(BreakerPolicy::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min_failures: u32, cool_down_secs: u64) -> BreakerPolicy {
        BreakerPolicy {
            min_failures,
            cool_down: Duration::from_secs(cool_down_secs),
            ..BreakerPolicy::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_that_is_down_opens_after_the_minimum_then_admits_exactly_one_probe() {
        let breaker = Breaker::new(policy(5, 30));
        for _ in 0..4 {
            breaker.failure("500");
        }
        assert_eq!(breaker.admit(), Admission::Admitted, "four failures are below the minimum");
        breaker.failure("503 overloaded");
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.window(), (5, 5));
        assert_eq!(breaker.last_error().as_deref(), Some("503 overloaded"));
        assert!(matches!(breaker.admit(), Admission::Rejected { .. }));

        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(breaker.admit(), Admission::Probe);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        for _ in 0..10 {
            assert!(matches!(breaker.admit(), Admission::Rejected { .. }), "only one probe");
        }
        breaker.recovered();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.window(), (0, 0), "closing empties the window");
        assert_eq!(breaker.admit(), Admission::Admitted);
    }

    /// The partial outage at the breaker: 30 % of attempts fail, two retries per request,
    /// so a request fails only when all three of its attempts do. 100,000 requests at 1,000 a
    /// second, seeded: the breaker never opens.
    #[tokio::test(start_paused = true)]
    async fn thirty_percent_failed_attempts_with_retries_never_open_it() {
        let breaker = Breaker::default();
        let mut rng = fastrand::Rng::with_seed(17);
        for request in 0..100_000 {
            let answered = (0..3).any(|_| rng.f64() >= 0.3);
            if answered {
                breaker.success();
            } else {
                breaker.failure("503");
            }
            assert_eq!(breaker.state(), BreakerState::Closed, "opened at request {request}");
            if request % 10 == 0 {
                tokio::time::advance(Duration::from_millis(10)).await;
            }
        }
        let (calls, failures) = breaker.window();
        assert!(
            calls > 20_000 && failures > 0,
            "the window holds the last 30 s: {calls} calls, {failures} failed"
        );
    }

    /// Even counting every attempt (no retries), a 30 % failure rate stays closed once there is
    /// traffic to judge it by.
    #[tokio::test(start_paused = true)]
    async fn thirty_percent_failed_requests_under_load_stay_closed() {
        let breaker = Breaker::default();
        let mut rng = fastrand::Rng::with_seed(5);
        // A first second of healthy traffic, then the partial outage.
        for _ in 0..100 {
            breaker.success();
        }
        for request in 0..50_000 {
            if rng.f64() < 0.3 {
                breaker.failure("503");
            } else {
                breaker.success();
            }
            assert_eq!(breaker.state(), BreakerState::Closed, "opened at request {request}");
            if request % 20 == 0 {
                tokio::time::advance(Duration::from_millis(10)).await;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_mostly_failing_provider_opens_and_a_busy_one_needs_the_rate_too() {
        let breaker = Breaker::default();
        for _ in 0..20 {
            breaker.success();
        }
        for _ in 0..19 {
            breaker.failure("500");
        }
        assert_eq!(breaker.state(), BreakerState::Closed, "19 of 39 is under half");
        breaker.failure("500");
        assert_eq!(breaker.state(), BreakerState::Open, "20 of 40 is half");
    }

    #[tokio::test(start_paused = true)]
    async fn old_outcomes_age_out_of_the_window() {
        let breaker = Breaker::default();
        for _ in 0..4 {
            breaker.failure("500");
        }
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(breaker.window(), (0, 0));
        breaker.failure("500");
        assert_eq!(breaker.state(), BreakerState::Closed, "the four earlier failures are forgotten");
        tokio::time::advance(Duration::from_secs(15)).await;
        for _ in 0..4 {
            breaker.failure("500");
        }
        assert_eq!(breaker.state(), BreakerState::Open, "five within 30 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_a_whole_cool_down() {
        let breaker = Breaker::new(policy(1, 10));
        breaker.failure("connect refused");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(breaker.admit(), Admission::Probe);
        breaker.failure("still refused");
        assert_eq!(breaker.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(matches!(breaker.admit(), Admission::Rejected { .. }));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(breaker.admit(), Admission::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_the_next_caller_probe() {
        let breaker = Breaker::new(policy(1, 5));
        breaker.failure("timeout");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(breaker.admit(), Admission::Probe);
        breaker.abandon();
        assert_eq!(breaker.admit(), Admission::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_answer_does_not_close_an_open_breaker_but_fresh_evidence_does() {
        let breaker = Breaker::new(policy(2, 30));
        breaker.failure("a");
        breaker.failure("b");
        assert_eq!(breaker.state(), BreakerState::Open);
        breaker.success();
        assert_eq!(breaker.state(), BreakerState::Open, "admitted before it opened");
        breaker.recovered();
        assert_eq!(breaker.state(), BreakerState::Closed, "a health check or a last-resort answer");
    }

    #[test]
    fn the_policy_is_brought_into_range() {
        let odd = BreakerPolicy {
            min_failures: 0,
            failure_rate: f64::NAN,
            window: Duration::ZERO,
            ..Default::default()
        };
        let breaker = Breaker::new(odd);
        assert_eq!(breaker.policy().min_failures, 1);
        assert_eq!(breaker.policy().failure_rate, DEFAULT_FAILURE_RATE);
        assert_eq!(
            Breaker::new(BreakerPolicy { failure_rate: 7.0, ..Default::default() }).policy().failure_rate,
            1.0
        );
    }

    #[test]
    fn slots_pack_and_unpack() {
        let packed = pack(0x1_2345, COUNT_MAX, 7);
        assert_eq!(unpack(packed), (0x2345, COUNT_MAX, 7));
    }
}

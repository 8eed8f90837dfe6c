//! Counting tokens for the context budget: [`TokenCounter`]; the counter of each model,
//! [`Counters`]; OpenAI's encodings, [`Tiktoken`]; and the documented [`Estimate`] used where
//! exoclaw does not have the model's own tokenizer.
//!
//! The memory is shared by agents on different models, so a turn is counted with the counter of
//! the model answering it: [`Counters::for_model`]. An exact counter takes time to build (0.2 s
//! for `o200k_base`'s tables, under 0.2 s to read SmolLM2's vocabulary from its GGUF), so it is
//! built on a thread of its own the first time a model is asked for, and the [`Estimate`] counts
//! until it is ready: no turn waits for a tokenizer.

use exoclaw_types::{Message, Part};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Tokens a message costs beyond its text: the role and the separators every chat format adds
/// (OpenAI's format costs 3 to 4; ChatML `<|im_start|>role\n…<|im_end|>\n` costs 4 to 5).
pub const MESSAGE_OVERHEAD: usize = 5;

/// Tokens counted for an image: OpenAI's high-detail 512×512 tile costs 255, a whole image at
/// most about 1,100; other vendors are in that range.
pub const IMAGE_TOKENS: usize = 1_100;

/// Counts tokens the way a model would.
pub trait TokenCounter: Send + Sync + std::fmt::Debug {
    /// The tokens `text` costs.
    fn count(&self, text: &str) -> usize;

    /// The tokens `message` costs: its parts' text, its tool calls' names and arguments, its
    /// tool results, and [`MESSAGE_OVERHEAD`].
    fn message(&self, message: &Message) -> usize {
        let parts: usize = message
            .parts
            .iter()
            .map(|part| match part {
                Part::Text { text } | Part::Thinking { text, .. } => self.count(text),
                Part::Image { .. } => IMAGE_TOKENS,
                Part::ToolCall(call) => self.count(&call.name) + self.count(&call.arguments.to_string()) + 3,
                Part::ToolResult(result) => self.count(&result.content) + 3,
            })
            .sum();
        parts + MESSAGE_OVERHEAD
    }
}

/// The estimate used when the model's tokenizer is not at hand — Anthropic's and Gemini's
/// models (whose tokenizers are not published), any other model exoclaw has no tokenizer for,
/// and every model while its exact counter is being built: one token per three bytes of UTF-8,
/// rounded up.
///
/// It errs on the side of too many: English prose is about four bytes a token with every
/// current vendor's tokenizer (so this counts a third or more too many; `o200k_base` gives 5
/// bytes a token on the prose of this module's tests, where 60% more history fits counted
/// exactly), code and JSON about three, and CJK text
/// three bytes a character at about one token a character. A budget counted this way is
/// therefore kept, at the price of sending less history than would fit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Estimate;

impl TokenCounter for Estimate {
    fn count(&self, text: &str) -> usize {
        text.len().div_ceil(3)
    }
}

/// Why an exact counter could not be built; the model is counted with the [`Estimate`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CounterError {
    /// An OpenAI encoding's tables could not be built (a defect of the bundled data).
    #[error("the {encoding} token encoding cannot be built: {source}")]
    Encoding {
        /// The encoding.
        encoding: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A model's tokenizer could not be read (its file missing, unreadable, or of a tokenizer
    /// model exoclaw does not implement).
    #[error("the tokenizer of `{model}` cannot be read: {source}")]
    Tokenizer {
        /// The `provider/model`.
        model: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// An OpenAI tokenizer encoding exoclaw counts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoding {
    /// GPT-4o, GPT-4.1, GPT-4.5, GPT-5, o1, o3, o4-mini, gpt-oss (whose `o200k_harmony` counts
    /// text as `o200k_base` does).
    O200kBase,
    /// GPT-4, GPT-3.5 Turbo, the OpenAI embedding models.
    Cl100kBase,
}

impl Encoding {
    /// The encoding of `model`, named as exoclaw names it (`openai/gpt-4o`), as OpenRouter does
    /// (`openrouter/openai/gpt-4o`), or bare (`gpt-4o-mini`, `ft:gpt-4o-mini:org::id`); `None`
    /// for a model that is not OpenAI's, or whose encoding (`r50k_base`, `p50k_base` of the
    /// retired completion models) exoclaw does not carry. Whichever provider serves it: a model
    /// name decides its tokenizer.
    pub fn for_model(model: &str) -> Option<Self> {
        let name = model.split_once('/').map_or(model, |(_, name)| name);
        let name = name.strip_prefix("openai/").unwrap_or(name);
        use tiktoken_rs::tokenizer::Tokenizer;
        match tiktoken_rs::tokenizer::get_tokenizer(name)? {
            Tokenizer::O200kBase | Tokenizer::O200kHarmony => Some(Self::O200kBase),
            Tokenizer::Cl100kBase => Some(Self::Cl100kBase),
            Tokenizer::P50kBase | Tokenizer::R50kBase | Tokenizer::P50kEdit | Tokenizer::Gpt2 => None,
        }
    }

    /// Its name, as tiktoken names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::O200kBase => "o200k_base",
            Self::Cl100kBase => "cl100k_base",
        }
    }
}

/// Counts with one of OpenAI's encodings, as `tiktoken` does (`encode_ordinary`: text that
/// spells a special token, `<|endoftext|>`, is counted as the ordinary text the API takes it
/// for).
#[derive(Clone)]
pub struct Tiktoken {
    encoding: Encoding,
    bpe: Arc<tiktoken_rs::CoreBPE>,
}

impl std::fmt::Debug for Tiktoken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Tiktoken").field(&self.encoding.name()).finish()
    }
}

/// Each encoding's tables, built once a process: they are the same for every runtime.
static O200K: OnceLock<Result<Arc<tiktoken_rs::CoreBPE>, String>> = OnceLock::new();
static CL100K: OnceLock<Result<Arc<tiktoken_rs::CoreBPE>, String>> = OnceLock::new();

impl Tiktoken {
    /// The counter of `encoding`. The first call in a process builds its tables, which takes
    /// about 0.2 s for `o200k_base` (0.07 s for `cl100k_base`) in a release build, several
    /// times that in a debug one: off a turn's path, [`Counters`] does it on a thread of its
    /// own.
    pub fn new(encoding: Encoding) -> Result<Self, CounterError> {
        // An error is kept as text: tiktoken-rs's `anyhow::Error` cannot be shared.
        let built =
            match encoding {
                Encoding::O200kBase => O200K
                    .get_or_init(|| tiktoken_rs::o200k_base().map(Arc::new).map_err(|e| format!("{e:#}"))),
                Encoding::Cl100kBase => CL100K
                    .get_or_init(|| tiktoken_rs::cl100k_base().map(Arc::new).map_err(|e| format!("{e:#}"))),
            };
        match built {
            Ok(bpe) => Ok(Self { encoding, bpe: Arc::clone(bpe) }),
            Err(reason) => {
                Err(CounterError::Encoding { encoding: encoding.name(), source: reason.clone().into() })
            }
        }
    }

    /// Its encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }
}

impl TokenCounter for Tiktoken {
    fn count(&self, text: &str) -> usize {
        self.bpe.count_ordinary(text)
    }
}

/// Builds a model's exact counter; may be slow (it runs on a thread of its own).
pub type Prepare = Box<dyn FnOnce() -> Result<Arc<dyn TokenCounter>, CounterError> + Send>;

/// Where the exact counters of some models come from, beside the OpenAI encodings [`Counters`]
/// knows itself: the runtime adds one for the embedded model, whose tokenizer it reads from the
/// GGUF.
pub trait CounterSource: Send + Sync + std::fmt::Debug {
    /// How to build the counter of `model` (`provider/model`), when this source knows its
    /// tokenizer; called once a model (again a minute after a failed build). Quick: the work
    /// goes in the returned [`Prepare`].
    fn prepare(&self, model: &str) -> Option<Prepare>;
}

/// How long a model whose exact counter failed to build is counted with the [`Estimate`]
/// before it is tried again (its GGUF may be downloading).
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// The counter of each model: its own tokenizer where exoclaw has it — the OpenAI encodings
/// ([`Encoding::for_model`]) and what the [`CounterSource`]s added know — and the [`Estimate`]
/// otherwise. Built once per model, in the background, and kept.
pub struct Counters {
    sources: Vec<Arc<dyn CounterSource>>,
    /// Every model asked for; `None` for one counted alike whatever the model
    /// ([`Counters::same`]).
    models: Option<Mutex<HashMap<String, Slot>>>,
    /// What models are counted with while their counter is built, or when they have none.
    fallback: Arc<dyn TokenCounter>,
}

/// A model's counter: set once built (the estimate when that failed).
struct Slot {
    built: Arc<OnceLock<Built>>,
    started: Instant,
}

#[derive(Clone)]
struct Built {
    counter: Arc<dyn TokenCounter>,
    exact: bool,
}

/// The one estimate handed out, so that a caller can tell by pointer whether a counter changed.
static ESTIMATE: LazyLock<Arc<dyn TokenCounter>> = LazyLock::new(|| Arc::new(Estimate));

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let models: Vec<(String, String)> = self.models.as_ref().map_or_else(Vec::new, |models| {
            lock(models)
                .iter()
                .map(|(model, slot)| {
                    let counter = slot
                        .built
                        .get()
                        .map_or_else(|| "building".to_owned(), |b| format!("{:?}", b.counter));
                    (model.clone(), counter)
                })
                .collect()
        });
        f.debug_struct("Counters")
            .field("sources", &self.sources)
            .field("models", &models)
            .field("fallback", &self.fallback)
            .finish()
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

impl Counters {
    /// The OpenAI encodings for OpenAI-family models, the [`Estimate`] for every other.
    pub fn new() -> Self {
        Self {
            sources: Vec::new(),
            models: Some(Mutex::new(HashMap::new())),
            fallback: Arc::clone(&ESTIMATE),
        }
    }

    /// Every model counted by `counter` (a test's, or a deliberate choice of one counter).
    pub fn same(counter: Arc<dyn TokenCounter>) -> Self {
        Self { sources: Vec::new(), models: None, fallback: counter }
    }

    /// Asks `source` too, before the OpenAI encodings.
    pub fn with_source(mut self, source: Arc<dyn CounterSource>) -> Self {
        self.sources.push(source);
        self
    }

    /// The counter of `model` (`provider/model`) now, never waiting: its exact counter once
    /// built, the [`Estimate`] until then — the first call for a model starts building it on a
    /// thread of its own — and for a model without one. The same counter (by pointer) is
    /// returned until it changes.
    pub fn for_model(&self, model: &str) -> Arc<dyn TokenCounter> {
        match self.slot(model) {
            Some(built) => built.get().map_or_else(|| Arc::clone(&self.fallback), |b| Arc::clone(&b.counter)),
            None => Arc::clone(&self.fallback),
        }
    }

    /// The counter of `model`, waiting for it to be built: for a benchmark, a test, or a tool
    /// that counts off a turn's path.
    pub fn exact(&self, model: &str) -> Arc<dyn TokenCounter> {
        match self.slot(model) {
            Some(built) => Arc::clone(&built.wait().counter),
            None => Arc::clone(&self.fallback),
        }
    }

    /// The cell `model`'s counter is (or will be) in, its build started when it is new or
    /// failed a while ago.
    fn slot(&self, model: &str) -> Option<Arc<OnceLock<Built>>> {
        let models = self.models.as_ref()?;
        let mut models = lock(models);
        if let Some(slot) = models.get(model) {
            let failed = slot.built.get().is_some_and(|b| !b.exact);
            if !failed || slot.started.elapsed() < RETRY_AFTER {
                return Some(Arc::clone(&slot.built));
            }
        }
        let built = Arc::new(OnceLock::new());
        models.insert(model.to_owned(), Slot { built: Arc::clone(&built), started: Instant::now() });
        drop(models);
        match self.prepare(model) {
            Some(prepare) => {
                build_in_background(model, prepare, Arc::clone(&built), Arc::clone(&self.fallback))
            }
            // No tokenizer: the estimate for good (`exact` marks a settled choice, not a
            // failure to retry).
            None => drop(built.set(Built { counter: Arc::clone(&self.fallback), exact: true })),
        }
        Some(built)
    }

    /// How to build `model`'s exact counter, if anyone knows.
    fn prepare(&self, model: &str) -> Option<Prepare> {
        if let Some(prepare) = self.sources.iter().find_map(|source| source.prepare(model)) {
            return Some(prepare);
        }
        let encoding = Encoding::for_model(model)?;
        Some(Box::new(move || Ok(Arc::new(Tiktoken::new(encoding)?) as Arc<dyn TokenCounter>)))
    }
}

/// Runs `prepare` on a thread of its own and puts what it built (or, when it fails or panics,
/// `fallback`) in `cell`.
fn build_in_background(
    model: &str,
    prepare: Prepare,
    cell: Arc<OnceLock<Built>>,
    fallback: Arc<dyn TokenCounter>,
) {
    let name = model.to_owned();
    let failed = {
        let (cell, fallback) = (Arc::clone(&cell), Arc::clone(&fallback));
        move || drop(cell.set(Built { counter: fallback, exact: false }))
    };
    let spawned = std::thread::Builder::new().name("exoclaw-tokenizer".into()).spawn(move || {
        let started = Instant::now();
        // A panic in a tokenizer library must not leave waiters on `cell` waiting for ever.
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(prepare));
        let built = match built {
            Ok(Ok(counter)) => {
                tracing::debug!(model = %name, ?counter, took_ms = started.elapsed().as_millis() as u64, "token counter ready");
                Built { counter, exact: true }
            }
            Ok(Err(e)) => {
                tracing::warn!(model = %name, error = %e, "counting this model's tokens with the estimate");
                Built { counter: fallback, exact: false }
            }
            Err(_) => {
                tracing::warn!(model = %name, "building the token counter crashed; counting with the estimate");
                Built { counter: fallback, exact: false }
            }
        };
        drop(cell.set(built));
    });
    if let Err(e) = spawned {
        tracing::warn!(model, error = %e, "cannot start a thread to build the token counter; counting with the estimate");
        failed();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoclaw_types::{Role, ToolCall, ToolResult};
    use serde_json::json;

    #[test]
    fn the_estimate_rounds_up_and_never_counts_text_as_free() {
        assert_eq!(Estimate.count(""), 0);
        assert_eq!(Estimate.count("a"), 1);
        assert_eq!(Estimate.count("abcd"), 2);
        // "Lyon" in Japanese: 3 characters, 9 bytes.
        assert_eq!(Estimate.count("リヨン"), 3);
    }

    #[test]
    fn a_message_counts_every_part_and_its_overhead() {
        let call = Message::new(
            Role::Assistant,
            vec![
                Part::text("abc"),
                Part::ToolCall(ToolCall { id: "1".into(), name: "read".into(), arguments: json!({"p": 1}) }),
            ],
        );
        // "abc" 1 + "read" 2 + `{"p":1}` 3 + 3, and the overhead.
        assert_eq!(Estimate.message(&call), 1 + 2 + 3 + 3 + MESSAGE_OVERHEAD);
        let result = Message::new(
            Role::Tool,
            vec![Part::ToolResult(ToolResult {
                call_id: "1".into(),
                content: "x".repeat(30),
                is_error: false,
            })],
        );
        assert_eq!(Estimate.message(&result), 10 + 3 + MESSAGE_OVERHEAD);
    }

    #[test]
    fn openai_models_are_mapped_to_their_encodings_whoever_serves_them() {
        let o200k = Some(Encoding::O200kBase);
        for model in [
            "openai/gpt-4o",
            "openai/gpt-4o-mini",
            "openai/gpt-4.1",
            "openai/gpt-4.1-nano",
            "openai/gpt-5",
            "openai/gpt-5-mini",
            "openai/o1",
            "openai/o3-mini",
            "openai/o4-mini",
            "openrouter/openai/gpt-4o",
            "work/gpt-4o",
            "gpt-4o",
            "openai/ft:gpt-4o-mini:acme::abc123",
            "groq/openai/gpt-oss-20b",
        ] {
            assert_eq!(Encoding::for_model(model), o200k, "{model}");
        }
        for model in ["openai/gpt-4", "openai/gpt-4-turbo", "openai/gpt-3.5-turbo", "azure/gpt-35-turbo"] {
            assert_eq!(Encoding::for_model(model), Some(Encoding::Cl100kBase), "{model}");
        }
        for model in [
            "anthropic/claude-sonnet-4-5",
            "gemini/gemini-2.5-flash",
            "local/smollm2",
            "xai/grok-4",
            "openai/text-davinci-003",
            "script/m",
        ] {
            assert_eq!(Encoding::for_model(model), None, "{model}");
        }
    }

    // Expected counts from OpenAI's `tiktoken` 0.14.0 (Python, from PyPI), `encode_ordinary`,
    // given the `.tiktoken` rank files bundled in tiktoken-rs 0.12.1, whose SHA-256 equal the
    // `expected_hash` tiktoken's `openai_public.py` checks its downloads against (o200k_base
    // 446a9538…, cl100k_base 223921b7…). The first four are also in OpenAI's cookbook "How to
    // count tokens with tiktoken".
    const KNOWN: &[(&str, usize, usize)] = &[
        ("tiktoken is great!", 6, 6),
        ("antidisestablishmentarianism", 6, 6),
        ("2 + 2 = 4", 7, 7),
        ("お誕生日おめでとう", 8, 9),
        ("hello world", 2, 2),
        ("The quick brown fox jumps over the lazy dog.", 10, 10),
        ("Remind me: in which city does my sister Alice teach piano?", 14, 14),
        ("fn main() {\n    println!(\"Hello, world!\");\n}\n", 12, 12),
        ("{\"path\": \"src/lib.rs\", \"line\": 42}", 14, 14),
        ("Café déjà vu 🦀🎉 naïve", 11, 13),
        ("<|endoftext|> is ordinary text here", 11, 11),
    ];

    #[test]
    fn o200k_and_cl100k_counts_equal_tiktoken() {
        let o200k = Tiktoken::new(Encoding::O200kBase).unwrap();
        let cl100k = Tiktoken::new(Encoding::Cl100kBase).unwrap();
        for &(text, o, c) in KNOWN {
            assert_eq!((o200k.count(text), cl100k.count(text)), (o, c), "{text:?}");
        }
        assert_eq!(o200k.count(""), 0);
    }

    #[test]
    fn a_model_is_counted_with_the_estimate_until_its_encoding_is_built_then_exactly() {
        let counters = Counters::new();
        let first = counters.for_model("openai/gpt-4o");
        let exact = counters.exact("openai/gpt-4o");
        assert_eq!(exact.count("antidisestablishmentarianism"), 6);
        let later = counters.for_model("openai/gpt-4o");
        assert!(Arc::ptr_eq(&later, &exact), "kept: {later:?}");
        // Whichever the first call got, it was one of the two.
        assert!(
            Arc::ptr_eq(&first, &exact) || first.count("antidisestablishmentarianism") == 10,
            "{first:?}"
        );
        // The two models share the encoding's tables.
        assert_eq!(counters.exact("openai/gpt-4.1-mini").count("hello world"), 2);
    }

    #[test]
    fn other_models_are_counted_with_the_estimate_at_once() {
        let counters = Counters::new();
        for model in ["anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-pro", "script/m"] {
            let counter = counters.for_model(model);
            assert_eq!(counter.count("abcd"), 2, "{model}");
            assert!(Arc::ptr_eq(&counter, &counters.exact(model)));
        }
    }

    /// English prose, a different message each turn.
    fn conversation(messages: usize) -> Vec<Message> {
        const SENTENCES: &[&str] = &[
            "The committee met on Tuesday to discuss the proposed changes to the recycling programme.",
            "Most residents said they would rather have paper and plastic collected in the same week.",
            "My sister has been teaching piano in Lisbon for almost eleven years now.",
            "Water the tomatoes early in the morning, before the soil has had time to warm up.",
            "Compound interest means that the interest you earn starts earning interest of its own.",
            "If the door hinge still squeaks after cleaning, a drop of light machine oil usually helps.",
            "Lentil soup tastes better the next day, once the spices have had a night to settle.",
            "The Roman empire lasted far longer in the east than most people remember from school.",
        ];
        (0..messages)
            .map(|i| {
                let text: Vec<&str> = (0..3).map(|k| SENTENCES[(i * 3 + k) % SENTENCES.len()]).collect();
                let text = format!("({i}) {}", text.join(" "));
                if i % 2 == 0 { Message::user(text) } else { Message::assistant(text) }
            })
            .collect()
    }

    #[test]
    fn more_english_history_fits_with_o200k_than_with_the_estimate_and_the_budget_holds() {
        use crate::compose::{Parts, compose};
        let history = conversation(400);
        let input = "Remind me: in which city does my sister teach piano?";
        let parts = Parts { history: &history, input, ..Parts::default() };
        let o200k = Tiktoken::new(Encoding::O200kBase).unwrap();
        let now = chrono::Utc::now();
        let budget = 4_000;
        let exact = compose(&parts, budget, &o200k, now);
        let estimated = compose(&parts, budget, &Estimate, now);
        let sent = |counter: &dyn TokenCounter, messages: &[Message]| {
            messages.iter().map(|m| counter.message(m)).sum::<usize>()
                + counter.count(input)
                + MESSAGE_OVERHEAD
        };
        assert!(sent(&o200k, &exact.messages) <= budget, "{}", sent(&o200k, &exact.messages));
        assert!(sent(&o200k, &exact.messages) > budget - 100, "the budget is used");
        let (exact_n, estimated_n) = (exact.messages.len(), estimated.messages.len());
        // 5 bytes a token with o200k_base against the estimate's 3, less the per-message
        // overhead both count: 69 messages against 43 when this was written.
        assert!(exact_n * 10 >= estimated_n * 14, "{exact_n} messages against {estimated_n}");
        let bytes: usize = exact.messages.iter().map(|m| m.text().len()).sum();
        let tokens: usize = exact.messages.iter().map(|m| o200k.count(&m.text())).sum();
        let per_token = bytes as f64 / tokens as f64;
        assert!((4.0..6.0).contains(&per_token), "{per_token:.2} bytes a token");
    }

    #[derive(Debug)]
    struct Broken;

    impl CounterSource for Broken {
        fn prepare(&self, model: &str) -> Option<Prepare> {
            let model = model.to_owned();
            match model.starts_with("broken/") {
                true => Some(Box::new(move || {
                    Err(CounterError::Tokenizer { model, source: "no such file".into() })
                })),
                false => None,
            }
        }
    }

    #[derive(Debug)]
    struct Panicking;

    impl CounterSource for Panicking {
        fn prepare(&self, model: &str) -> Option<Prepare> {
            model.starts_with("panics/").then(|| -> Prepare { Box::new(|| panic!("tokenizer bug")) })
        }
    }

    #[test]
    fn a_counter_that_cannot_be_built_leaves_the_estimate() {
        let counters = Counters::new().with_source(Arc::new(Broken)).with_source(Arc::new(Panicking));
        assert_eq!(counters.exact("broken/model").count("abcdef"), 2);
        assert_eq!(counters.exact("panics/model").count("abcdef"), 2);
        // Sources are asked first; the others' models are unaffected.
        assert_eq!(counters.exact("openai/gpt-4o").count("hello world"), 2);
    }

    #[test]
    fn the_same_counter_for_every_model() {
        #[derive(Debug)]
        struct Chars;
        impl TokenCounter for Chars {
            fn count(&self, text: &str) -> usize {
                text.chars().count()
            }
        }
        let counters = Counters::same(Arc::new(Chars));
        assert_eq!(counters.for_model("openai/gpt-4o").count("hello"), 5);
        assert_eq!(counters.exact("local/smollm2").count("hé"), 2);
    }
}

//! Constrained answers: tool calls and response formats decoded under an llguidance grammar, so
//! they always parse.
//!
//! A tool call is `<tool_call>`, a JSON object `{"name": <a tool's name>, "arguments": <that
//! tool's input schema>}`, `</tool_call>` (the Hermes / Qwen format the chat template writes calls
//! in); several may follow each other. An answer in a response format is JSON that validates
//! against its schema. Plain answers stay unconstrained.
//!
//! - [`guide_for`]: the [`AnswerGuide`] for a request, if tools are offered or a format is set;
//! - [`parse_tool_calls`]: the calls in a generated answer;
//! - [`classify`]: whether answer text so far is a tool call, plain text, or still undecided;
//! - [`Holdback`]: answer text held back while it may be a call, then text or tool-call events.

use crate::LocalError;
use crate::guide::TokenGuide;
use crate::tokenizer::GgufTokenizer;
use crate::toktrie_env::GgufTokEnv;
use exoclaw_types::{ChatRequest, ResponseFormat, StreamEvent, ToolCall, ToolChoice, ToolSpec};
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// Opens a tool call.
pub(crate) const OPEN: &str = "<tool_call>";
/// Closes a tool call.
pub(crate) const CLOSE: &str = "</tool_call>";

/// JSON layout: Python's separators (as the chat template writes calls), no other whitespace, so
/// a small model cannot wander. `lenient` ignores schema keywords llguidance cannot enforce (for
/// tools' schemas; a response format's schema must be enforced whole).
fn json_options(lenient: bool) -> Value {
    json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": ",
        "coerce_one_of": true, "lenient": lenient})
}

/// What answer text so far is, leading whitespace ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Empty or a proper prefix of `<tool_call>`: it may still become a call.
    Undecided,
    /// It starts with `<tool_call>`.
    ToolCall,
    /// It can no longer become a tool call.
    Plain,
}

/// The [`Shape`] of answer text (bytes, as tokens may split characters).
pub(crate) fn classify(text: &[u8]) -> Shape {
    let trimmed = text.trim_ascii_start();
    if trimmed.starts_with(OPEN.as_bytes()) {
        Shape::ToolCall
    } else if OPEN.as_bytes().starts_with(trimmed) {
        Shape::Undecided
    } else {
        Shape::Plain
    }
}

/// What constrained decoding needs once per vocabulary: llguidance's parser factory and, for each
/// number `k` of `<tool_call>` bytes already written, the tokens that would complete it.
struct Shared {
    factory: ParserFactory,
    /// `completing[k]`: tokens after which text holding the first `k` bytes of `<tool_call>`
    /// (`k = 0`: only whitespace) starts with all of it.
    completing: Vec<Vec<u32>>,
    vocab_size: usize,
}

impl Shared {
    fn new(tokenizer: &GgufTokenizer) -> Result<Self, LocalError> {
        let env = GgufTokEnv::tok_env(tokenizer)?;
        let mut factory = ParserFactory::new_simple(&env).map_err(grammar_error)?;
        factory.quiet();
        let trie = env.tok_trie();
        let open = OPEN.as_bytes();
        let completing = (0..open.len())
            .map(|k| {
                (0..trie.vocab_size() as u32)
                    .filter(|&t| {
                        let bytes = trie.token(t);
                        match k {
                            0 => bytes.trim_ascii_start().starts_with(open),
                            _ => bytes.starts_with(&open[k..]),
                        }
                    })
                    .collect()
            })
            .collect();
        Ok(Self { factory, completing, vocab_size: tokenizer.vocab_size() })
    }

    /// The shared state for `tokenizer`'s vocabulary, built once per vocabulary (a few tenths of a
    /// second; about 10 ms per request after that for the fingerprint and the grammar).
    fn get(tokenizer: &GgufTokenizer) -> Result<Arc<Self>, LocalError> {
        static CACHE: Mutex<Vec<(u64, Arc<Shared>)>> = Mutex::new(Vec::new());
        let key = fingerprint(tokenizer);
        let mut cache = CACHE.lock().map_err(|_| LocalError::Grammar("grammar cache poisoned".into()))?;
        if let Some((_, shared)) = cache.iter().find(|(k, _)| *k == key) {
            return Ok(shared.clone());
        }
        let shared = Arc::new(Self::new(tokenizer)?);
        if cache.len() >= 4 {
            cache.remove(0);
        }
        cache.push((key, shared.clone()));
        Ok(shared)
    }
}

/// Identifies a vocabulary: its tokens and special ids.
fn fingerprint(tokenizer: &GgufTokenizer) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (tokenizer.vocab_size(), tokenizer.eos_id(), tokenizer.bos_id()).hash(&mut h);
    for id in 0..tokenizer.vocab_size() as u32 {
        tokenizer.token_text(id).hash(&mut h);
    }
    h.finish()
}

/// What a guided answer may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Free text, or tool calls once the answer starts with `<tool_call>` (tools offered, `Auto`).
    TextOrCalls,
    /// Tool calls only (`Required`, `Tool`).
    Calls,
    /// JSON in the response format only (no tools offered).
    Json,
    /// Tool calls, or JSON in the response format (tools offered with `Auto`, and a format).
    CallsOrJson,
}

/// The guide for `request`, or `None` when the answer is free: no tools offered (or `tool_choice`
/// `None`) and no response format. `Required` and `Tool` constrain the answer to tool calls from
/// the first token; `Auto` (or unset) only once it starts with `<tool_call>`. A response format
/// constrains the answer from the first token: JSON in that format, or (tools offered, `Auto`) a
/// tool call. Several calls may follow each other unless `parallel_tool_calls` is `false`.
/// `stop_tokens` end the answer wherever the grammar may end.
pub(crate) fn guide_for(
    request: &ChatRequest,
    tokenizer: &GgufTokenizer,
    stop_tokens: &[u32],
) -> Result<Option<AnswerGuide>, LocalError> {
    let answer = request.params.response_format.as_ref().and_then(ResponseFormat::schema);
    let (tools, forced): (Vec<&ToolSpec>, bool) = match &request.tool_choice {
        _ if request.tools.is_empty() => (Vec::new(), false),
        Some(ToolChoice::None) => (Vec::new(), false),
        None | Some(ToolChoice::Auto) => (request.tools.iter().collect(), false),
        Some(ToolChoice::Required) => (request.tools.iter().collect(), true),
        Some(ToolChoice::Tool { name }) => {
            let tool = request.tools.iter().find(|t| &t.name == name).ok_or_else(|| {
                LocalError::Grammar(format!(
                    "tool_choice names `{name}`, which is not among the tools offered"
                ))
            })?;
            (vec![tool], true)
        }
    };
    let mode = match (tools.is_empty(), forced, answer.is_some()) {
        (true, _, false) => return Ok(None),
        (true, _, true) => Mode::Json,
        (false, true, _) => Mode::Calls,
        (false, false, false) => Mode::TextOrCalls,
        (false, false, true) => Mode::CallsOrJson,
    };
    let shared = Shared::get(tokenizer)?;
    let grammar = Grammar {
        mode,
        calls: tools.iter().map(|t| call_schema(&t.name, &t.input_schema)).collect(),
        answer,
        parallel: request.params.parallel_tool_calls != Some(false),
    };
    let matcher = grammar.matcher(&shared.factory, &tools)?;
    let state = match mode {
        Mode::TextOrCalls => State::Undecided,
        Mode::Calls | Mode::Json | Mode::CallsOrJson => State::Constrained(Box::new(matcher.clone())),
    };
    Ok(Some(AnswerGuide {
        shared,
        matcher,
        state,
        mode,
        stop_tokens: stop_tokens.to_vec(),
        generated: Vec::new(),
    }))
}

/// The grammar of a guided answer.
struct Grammar {
    mode: Mode,
    /// The schema of a call to each tool offered (see [`call_schema`]).
    calls: Vec<Value>,
    /// The schema of a JSON answer (the response format).
    answer: Option<Value>,
    /// Whether several calls may follow each other.
    parallel: bool,
}

impl Grammar {
    /// Compiles the grammar. A tool whose schema llguidance cannot compile gets "any object" as
    /// arguments rather than failing the request; a response format's schema that cannot be
    /// enforced is an error, since its answer must always validate.
    fn matcher(mut self, factory: &ParserFactory, tools: &[&ToolSpec]) -> Result<Matcher, LocalError> {
        let compile = |lark: String| {
            let matcher = Matcher::new(factory.create_parser(TopLevelGrammar::from_lark(lark)));
            match matcher.get_error() {
                Some(e) => Err(LocalError::Grammar(e)),
                None => Ok(matcher),
            }
        };
        let e = match compile(self.lark()) {
            Ok(matcher) => return Ok(matcher),
            Err(e) => e,
        };
        if let Some(answer) = &self.answer
            && let Err(e) = compile(lark(Mode::Json, &[], Some(answer), false))
        {
            return Err(LocalError::Grammar(format!(
                "the response format's JSON schema cannot be enforced: {e}"
            )));
        }
        self.calls = tools
            .iter()
            .zip(std::mem::take(&mut self.calls))
            .map(|(tool, schema)| match compile(lark(Mode::Calls, std::slice::from_ref(&schema), None, false)) {
                Ok(_) => schema,
                Err(e) => {
                    tracing::warn!(tool = %tool.name, error = %e, "tool schema not enforceable; any object allowed");
                    call_schema(&tool.name, &json!({"type": "object"}))
                }
            })
            .collect();
        compile(self.lark()).map_err(|_| e)
    }

    fn lark(&self) -> String {
        lark(self.mode, &self.calls, self.answer.as_ref(), self.parallel)
    }
}

/// The Lark grammar of an answer in `mode`: calls (to the tools whose call schemas are `calls`)
/// are `<tool_call>`, the JSON (optionally on its own line), `</tool_call>`, separated by
/// whitespace, several when `parallel`; a JSON answer is the JSON alone.
fn lark(mode: Mode, calls: &[Value], answer: Option<&Value>, parallel: bool) -> String {
    let json_rule = |schema: Value, lenient: bool| {
        let mut schema = schema;
        if let Value::Object(o) = &mut schema {
            o.insert("x-guidance".into(), json_options(lenient));
        }
        format!("%json {schema}")
    };
    let mut rules = String::new();
    let start = match mode {
        Mode::TextOrCalls => "WS? calls",
        Mode::Calls => "calls",
        Mode::Json => "answer",
        Mode::CallsOrJson => "calls | answer",
    };
    rules.push_str(&format!("start: {start}\n"));
    if mode != Mode::Json {
        let call = match calls {
            [one] => one.clone(),
            many => json!({"anyOf": many}),
        };
        let more = if parallel { " (WS? block)* WS?" } else { "" };
        rules.push_str(&format!(
            "calls: block{more}\nblock: {open} NL? call NL? {close}\ncall: {json}\n",
            open = json!(OPEN),
            close = json!(CLOSE),
            json = json_rule(call, true),
        ));
    }
    if let Some(answer) = answer {
        rules.push_str(&format!("answer: {}\n", json_rule(answer.clone(), false)));
    }
    rules.push_str("WS: /[ \\t\\r\\n\\f]+/\nNL: \"\\n\"\n");
    rules
}

/// The schema of a call to `name`: `{"name": name, "arguments": …}` in that order. An arguments
/// object with listed properties and no word on others gets no others (a stricter schema, so a
/// valid call is still valid against the tool's own).
fn call_schema(name: &str, input_schema: &Value) -> Value {
    let mut arguments = match input_schema {
        Value::Object(o) if !o.is_empty() => input_schema.clone(),
        _ => json!({"type": "object"}),
    };
    if let Value::Object(o) = &mut arguments
        && o.contains_key("properties")
        && !o.contains_key("additionalProperties")
    {
        o.insert("additionalProperties".into(), false.into());
    }
    json!({
        "type": "object",
        "properties": {"name": {"const": name}, "arguments": arguments},
        "required": ["name", "arguments"],
        "additionalProperties": false,
    })
}

/// Where a guided answer stands.
enum State {
    /// `Auto`: nothing but (a prefix of) `<tool_call>` so far.
    Undecided,
    /// A plain answer: never constrained.
    Plain,
    /// Every token goes through the grammar (a begun call, or an answer constrained from the
    /// start).
    Constrained(Box<Matcher>),
    /// The grammar allows nothing more.
    Complete,
}

/// Constrains an answer to tool calls or to a response format, leaving plain answers free where
/// they are allowed (see [`guide_for`]).
pub(crate) struct AnswerGuide {
    shared: Arc<Shared>,
    /// A fresh matcher of the grammar, cloned when a call begins.
    matcher: Matcher,
    state: State,
    mode: Mode,
    /// Tokens that end the answer; allowed wherever the grammar may end.
    stop_tokens: Vec<u32>,
    generated: Vec<u32>,
}

impl AnswerGuide {
    /// What the answer may be.
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the answer is constrained (or complete) by the grammar.
    #[cfg(test)]
    fn in_call(&self) -> bool {
        matches!(self.state, State::Constrained(_) | State::Complete)
    }

    /// Whether the answer may end here: the grammar is complete or accepting.
    #[cfg(test)]
    fn may_end(&mut self) -> bool {
        match &mut self.state {
            State::Complete => true,
            State::Constrained(matcher) => matcher.is_accepting().unwrap_or(false),
            State::Undecided | State::Plain => false,
        }
    }

    fn text(&self) -> Vec<u8> {
        let trie = self.shared.factory.tok_env().tok_trie();
        self.generated.iter().flat_map(|&t| trie.token(t).iter().copied()).collect()
    }

    /// Whether the latest token closed a call that repeats an earlier one of this answer: the
    /// answer ends there (the repeat is left out, see [`distinct`]).
    fn closes_a_repeated_call(&self) -> bool {
        if self.mode == Mode::Json {
            return false;
        }
        let trie = self.shared.factory.tok_env().tok_trie();
        let Some(&last) = self.generated.last() else { return false };
        if trie.token(last).trim_ascii().is_empty() {
            return false; // whitespace after a call closed earlier
        }
        let text = self.text();
        text.trim_ascii_end().ends_with(CLOSE.as_bytes()) && repeats_a_call(&String::from_utf8_lossy(&text))
    }

    fn has_special(&self) -> bool {
        let trie = self.shared.factory.tok_env().tok_trie();
        self.generated.iter().any(|&t| trie.is_special_token(t))
    }
}

/// The tokens `matcher` allows next, as a mask over the vocabulary.
fn mask_of(matcher: &mut Matcher, vocab_size: usize) -> Result<Vec<bool>, LocalError> {
    let mask = matcher.compute_mask().map_err(grammar_error)?;
    Ok((0..vocab_size).map(|t| mask.get(t)).collect())
}

impl TokenGuide for AnswerGuide {
    fn allowed(&mut self, _generated: &[u32]) -> Result<Option<Vec<bool>>, LocalError> {
        match &mut self.state {
            State::Plain | State::Complete => Ok(None),
            State::Constrained(matcher) => {
                let mut allowed = mask_of(matcher, self.shared.vocab_size)?;
                // Where the grammar may end (after a call, when more may follow), the model's
                // own end-of-turn token ends the answer.
                if matcher.is_accepting().map_err(grammar_error)? {
                    for &t in &self.stop_tokens {
                        if let Some(slot) = allowed.get_mut(t as usize) {
                            *slot = true;
                        }
                    }
                }
                Ok(Some(allowed))
            }
            State::Undecided => {
                // Free, except that a token completing `<tool_call>` must also fit the grammar
                // (it may carry the start of the JSON), so a begun call always parses.
                let k = self.text().trim_ascii_start().len();
                let completing = &self.shared.completing[k.min(OPEN.len() - 1)];
                if completing.is_empty() {
                    return Ok(None);
                }
                let mut matcher = self.matcher.clone();
                matcher.consume_tokens(&self.generated).map_err(grammar_error)?;
                let grammar = mask_of(&mut matcher, self.shared.vocab_size)?;
                let mut allowed = vec![true; self.shared.vocab_size];
                for &t in completing {
                    allowed[t as usize] = grammar[t as usize];
                }
                Ok(Some(allowed))
            }
        }
    }

    fn accept(&mut self, token: u32) -> Result<(), LocalError> {
        self.generated.push(token);
        match &mut self.state {
            State::Plain | State::Complete => {}
            State::Constrained(_) if self.stop_tokens.contains(&token) => self.state = State::Complete,
            State::Constrained(matcher) => {
                matcher.consume_token(token).map_err(grammar_error)?;
                let stopped = matcher.is_stopped();
                if stopped || self.closes_a_repeated_call() {
                    self.state = State::Complete;
                }
            }
            State::Undecided => match classify(&self.text()) {
                _ if self.has_special() => self.state = State::Plain,
                Shape::Plain => self.state = State::Plain,
                Shape::Undecided => {}
                Shape::ToolCall => {
                    let mut matcher = self.matcher.clone();
                    matcher.consume_tokens(&self.generated).map_err(grammar_error)?;
                    self.state = State::Constrained(Box::new(matcher));
                }
            },
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete)
    }
}

fn grammar_error(e: impl std::fmt::Display) -> LocalError {
    LocalError::Grammar(e.to_string())
}

/// The tool calls at the start of `text` (leading whitespace ignored), as far as they are
/// complete blocks, and the text after them (trimmed at its start).
fn leading_calls(text: &str) -> (Vec<ToolCall>, &str) {
    let mut rest = text.trim_start();
    let mut calls = Vec::new();
    while let Some((call, after)) = one_call(rest) {
        calls.push(ToolCall { id: format!("call_{}", calls.len()), ..call });
        rest = after.trim_start();
    }
    (calls, rest)
}

/// One `<tool_call>…</tool_call>` block at the start of `text`, and the text after it.
fn one_call(text: &str) -> Option<(ToolCall, &str)> {
    // The JSON is read as JSON, not up to the first `</tool_call>`: a string may hold that.
    let body = text.strip_prefix(OPEN)?.trim_start();
    let mut values = serde_json::Deserializer::from_str(body).into_iter::<Value>();
    let Some(Ok(Value::Object(mut call))) = values.next() else { return None };
    let after = body[values.byte_offset()..].trim_start().strip_prefix(CLOSE)?;
    let Some(Value::String(name)) = call.remove("name") else { return None };
    let arguments = match call.remove("arguments").or_else(|| call.remove("parameters")) {
        None | Some(Value::Null) => json!({}),
        // Some models write the arguments as a JSON string.
        Some(Value::String(s)) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        Some(v) => v,
    };
    Some((ToolCall { id: String::new(), name, arguments }, after))
}

/// `calls` with each call said again word for word (same tool, same arguments) left out — a
/// small model that has made its calls tends to start over — numbered `call_0`, `call_1`, …
fn distinct(calls: Vec<ToolCall>) -> Vec<ToolCall> {
    let mut kept: Vec<ToolCall> = Vec::with_capacity(calls.len());
    for call in calls {
        if !kept.iter().any(|k| same_call(k, &call)) {
            kept.push(ToolCall { id: format!("call_{}", kept.len()), ..call });
        }
    }
    kept
}

/// Whether the last of the complete calls at the start of `text` repeats an earlier one.
fn repeats_a_call(text: &str) -> bool {
    let (calls, _) = leading_calls(text);
    calls.split_last().is_some_and(|(last, earlier)| earlier.iter().any(|c| same_call(c, last)))
}

/// Whether two calls are the same call word for word: same tool, same arguments (ids aside).
fn same_call(a: &ToolCall, b: &ToolCall) -> bool {
    a.name == b.name && a.arguments == b.arguments
}

/// The tool calls in a generated answer: one or more `<tool_call>{"name": …, "arguments": …}
/// </tool_call>` blocks with nothing but whitespace around them, repeated calls left out
/// (see [`distinct`]). `None` for anything else (a plain answer, or a call cut short).
pub(crate) fn parse_tool_calls(text: &str) -> Option<Vec<ToolCall>> {
    match leading_calls(text) {
        (calls, "") if !calls.is_empty() => Some(distinct(calls)),
        _ => None,
    }
}

/// The calls of an answer that was constrained to calls and may have been cut short (by
/// `max_tokens`, or by the repetition guard) inside a later call: the complete calls before it.
fn calls_before_a_cut(text: &str) -> Option<Vec<ToolCall>> {
    match leading_calls(text) {
        (calls, rest) if !calls.is_empty() && (rest.is_empty() || rest.starts_with(OPEN)) => {
            Some(distinct(calls))
        }
        _ => None,
    }
}

/// Answer text on its way to the caller: held back while it may still become a tool call (or,
/// when a call is forced, all along), streamed as soon as it is known to be plain.
#[derive(Debug)]
pub(crate) struct Holdback {
    shape: Shape,
    held: String,
}

impl Holdback {
    /// For an answer generated with `guide` (none: plain text, streamed as it comes). A JSON
    /// answer streams; once it starts with `{` it can no longer be a call.
    pub(crate) fn new(guide: Option<&AnswerGuide>) -> Self {
        let shape = match guide.map(AnswerGuide::mode) {
            None | Some(Mode::Json) => Shape::Plain,
            Some(Mode::Calls) => Shape::ToolCall,
            Some(Mode::TextOrCalls | Mode::CallsOrJson) => Shape::Undecided,
        };
        Self { shape, held: String::new() }
    }

    /// Adds answer text; returns what can be shown now.
    pub(crate) fn push(&mut self, text: String) -> Option<String> {
        if self.shape == Shape::Plain {
            return Some(text);
        }
        self.held.push_str(&text);
        if self.shape == Shape::Undecided {
            self.shape = classify(self.held.as_bytes());
        }
        (self.shape == Shape::Plain).then(|| std::mem::take(&mut self.held))
    }

    /// The events the held text ends as — per call `ToolCallStart`, `ToolCallArgsDelta` and
    /// `ToolCall`, or the text itself when it is no (complete) call — and whether it was calls.
    pub(crate) fn finish(self) -> (Vec<StreamEvent>, bool) {
        // Text held as a call was generated under the grammar: only its end can be missing.
        let calls = match self.shape {
            Shape::ToolCall => calls_before_a_cut(&self.held),
            Shape::Undecided | Shape::Plain => parse_tool_calls(&self.held),
        };
        match calls {
            Some(calls) => {
                let events = calls
                    .into_iter()
                    .zip(0u32..)
                    .flat_map(|(call, index)| {
                        [
                            StreamEvent::ToolCallStart {
                                index,
                                id: call.id.clone(),
                                name: call.name.clone(),
                            },
                            StreamEvent::ToolCallArgsDelta { index, fragment: call.arguments.to_string() },
                            StreamEvent::ToolCall { index, call },
                        ]
                    })
                    .collect();
                (events, true)
            }
            None if self.held.is_empty() => (Vec::new(), false),
            None => (vec![StreamEvent::TextDelta { text: self.held }], false),
        }
    }
}

#[cfg(test)]
mod tests;

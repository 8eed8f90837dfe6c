//! Constrained tool calls: when tools are offered, a tool call is decoded under an llguidance
//! grammar — `<tool_call>`, a JSON object `{"name": <a tool's name>, "arguments": <that tool's
//! input schema>}`, `</tool_call>` (the Hermes / Qwen format the chat template writes calls in) —
//! so it always parses into a valid [`ToolCall`]. Plain answers stay unconstrained.
//!
//! - [`guide_for`]: the [`ToolCallGuide`] for a request, if tools are offered;
//! - [`parse_tool_calls`]: the calls in a generated answer;
//! - [`classify`]: whether answer text so far is a tool call, plain text, or still undecided;
//! - [`Holdback`]: answer text held back while it may be a call, then text or tool-call events.

use crate::LocalError;
use crate::guide::TokenGuide;
use crate::tokenizer::GgufTokenizer;
use crate::toktrie_env::GgufTokEnv;
use exoclaw_types::{ChatRequest, StreamEvent, ToolCall, ToolChoice, ToolSpec};
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// Opens a tool call.
pub(crate) const OPEN: &str = "<tool_call>";
/// Closes a tool call.
pub(crate) const CLOSE: &str = "</tool_call>";

/// JSON layout inside a call: Python's separators (as the chat template writes calls), no other
/// whitespace, so a small model cannot wander; unsupported schema keywords are ignored.
fn json_options() -> Value {
    json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": ",
        "coerce_one_of": true, "lenient": true})
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

/// The guide for `request`: `None` when no tools are offered or `tool_choice` is `None`.
/// `Required` and `Tool` constrain from the first token; `Auto` (or unset) only once the answer
/// starts with `<tool_call>`.
pub(crate) fn guide_for(
    request: &ChatRequest,
    tokenizer: &GgufTokenizer,
) -> Result<Option<ToolCallGuide>, LocalError> {
    if request.tools.is_empty() {
        return Ok(None);
    }
    let (tools, forced): (Vec<&ToolSpec>, bool) = match &request.tool_choice {
        Some(ToolChoice::None) => return Ok(None),
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
    let shared = Shared::get(tokenizer)?;
    let matcher = call_matcher(&shared.factory, &tools, !forced)?;
    let state = if forced { State::Constrained(Box::new(matcher.clone())) } else { State::Undecided };
    Ok(Some(ToolCallGuide { shared, matcher, state, forced, generated: Vec::new() }))
}

/// A matcher for one call to one of `tools`. A tool whose schema llguidance cannot compile gets
/// "any object" as arguments rather than failing the request.
fn call_matcher(
    factory: &ParserFactory,
    tools: &[&ToolSpec],
    leading_ws: bool,
) -> Result<Matcher, LocalError> {
    let compile = |lark: String| {
        let matcher = Matcher::new(factory.create_parser(TopLevelGrammar::from_lark(lark)));
        match matcher.get_error() {
            Some(e) => Err(LocalError::Grammar(e)),
            None => Ok(matcher),
        }
    };
    let schemas: Vec<Value> = tools.iter().map(|t| call_schema(&t.name, &t.input_schema)).collect();
    match compile(lark(&schemas, leading_ws)) {
        Ok(matcher) => Ok(matcher),
        Err(e) => {
            let schemas = tools
                .iter()
                .zip(schemas)
                .map(|(tool, schema)| match compile(lark(std::slice::from_ref(&schema), false)) {
                    Ok(_) => schema,
                    Err(e) => {
                        tracing::warn!(tool = %tool.name, error = %e, "tool schema not enforceable; any object allowed");
                        call_schema(&tool.name, &json!({"type": "object"}))
                    }
                })
                .collect::<Vec<_>>();
            compile(lark(&schemas, leading_ws)).map_err(|_| e)
        }
    }
}

/// The Lark grammar of one call: optional leading whitespace (when the model chose to call),
/// `<tool_call>`, the JSON (optionally on its own line), `</tool_call>`.
fn lark(schemas: &[Value], leading_ws: bool) -> String {
    let mut schema = match schemas {
        [one] => one.clone(),
        many => json!({"anyOf": many}),
    };
    schema["x-guidance"] = json_options();
    let ws = if leading_ws { "WS? " } else { "" };
    format!(
        "start: {ws}{open} NL? call NL? {close}\ncall: %json {schema}\nWS: /[ \\t\\r\\n\\f]+/\nNL: \"\\n\"\n",
        open = json!(OPEN),
        close = json!(CLOSE),
    )
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
    /// Inside a tool call: every token goes through the grammar.
    Constrained(Box<Matcher>),
    /// The call is closed.
    Complete,
}

/// Constrains tool calls while leaving plain answers free (see the module docs).
pub(crate) struct ToolCallGuide {
    shared: Arc<Shared>,
    /// A fresh matcher of the call grammar, cloned when a call begins.
    matcher: Matcher,
    state: State,
    forced: bool,
    generated: Vec<u32>,
}

impl ToolCallGuide {
    /// Whether the answer must be a tool call (`Required`, `Tool`): constrained from the start.
    pub(crate) fn is_forced(&self) -> bool {
        self.forced
    }

    /// Whether the answer is constrained (or complete) as a tool call.
    #[cfg(test)]
    fn in_call(&self) -> bool {
        matches!(self.state, State::Constrained(_) | State::Complete)
    }

    fn text(&self) -> Vec<u8> {
        let trie = self.shared.factory.tok_env().tok_trie();
        self.generated.iter().flat_map(|&t| trie.token(t).iter().copied()).collect()
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

impl TokenGuide for ToolCallGuide {
    fn allowed(&mut self, _generated: &[u32]) -> Result<Option<Vec<bool>>, LocalError> {
        match &mut self.state {
            State::Plain | State::Complete => Ok(None),
            State::Constrained(matcher) => mask_of(matcher, self.shared.vocab_size).map(Some),
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
            State::Constrained(matcher) => {
                matcher.consume_token(token).map_err(grammar_error)?;
                if matcher.is_accepting().map_err(grammar_error)? {
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

/// The tool calls in a generated answer: one or more `<tool_call>{"name": …, "arguments": …}
/// </tool_call>` blocks with nothing but whitespace around them, numbered `call_0`, `call_1`, …
/// `None` for anything else (a plain answer, or a call cut short).
pub(crate) fn parse_tool_calls(text: &str) -> Option<Vec<ToolCall>> {
    let mut rest = text.trim();
    let mut calls = Vec::new();
    while !rest.is_empty() {
        // The JSON is read as JSON, not up to the first `</tool_call>`: a string may hold that.
        let body = rest.strip_prefix(OPEN)?.trim_start();
        let mut values = serde_json::Deserializer::from_str(body).into_iter::<Value>();
        let Some(Ok(Value::Object(mut call))) = values.next() else { return None };
        rest = body[values.byte_offset()..].trim_start().strip_prefix(CLOSE)?.trim_start();
        let Some(Value::String(name)) = call.remove("name") else { return None };
        let arguments = match call.remove("arguments").or_else(|| call.remove("parameters")) {
            None | Some(Value::Null) => json!({}),
            // Some models write the arguments as a JSON string.
            Some(Value::String(s)) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
            Some(v) => v,
        };
        calls.push(ToolCall { id: format!("call_{}", calls.len()), name, arguments });
    }
    (!calls.is_empty()).then_some(calls)
}

/// Answer text on its way to the caller: held back while it may still become a tool call (or,
/// when a call is forced, all along), streamed as soon as it is known to be plain.
#[derive(Debug)]
pub(crate) struct Holdback {
    shape: Shape,
    held: String,
}

impl Holdback {
    /// For an answer generated with `guide` (none: plain text, streamed as it comes).
    pub(crate) fn new(guide: Option<&ToolCallGuide>) -> Self {
        let shape = match guide {
            None => Shape::Plain,
            Some(g) if g.is_forced() => Shape::ToolCall,
            Some(_) => Shape::Undecided,
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
        match parse_tool_calls(&self.held) {
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

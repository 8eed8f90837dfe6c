//! [`ChatTemplate`]: a GGUF model's chat template (`tokenizer.chat_template`, Jinja), rendered with
//! minijinja the way Hugging Face `transformers` renders it: `trim_blocks` and `lstrip_blocks`,
//! `raise_exception`, a Python-style `tojson` (`{"a": 1}`, no HTML escaping) and the Python string
//! and dict methods chat templates use (`.strip()`, `.startswith()`, `.items()`, …).
//!
//! Conversations are handed to the template as HF-style messages (`role`, `content`, `tool_calls`,
//! role `tool` results). Templates that know nothing of tools (SmolLM2's ChatML) also get the calls
//! written into the assistant's text as `<tool_call>{…}</tool_call>` and the results as a user turn
//! of `<tool_response>…</tool_response>`, so the model sees them.

use crate::LocalError;
use crate::gguf::{Metadata, md_str};
use crate::tokenizer::GgufTokenizer;
use exoclaw_types::{Message, Part, Role, ToolSpec};
use minijinja::value::{Kwargs, ValueKind, from_args};
use minijinja::{Environment, Error, ErrorKind, State, Value};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::io::{self, Write};

/// The name the template is stored under in its environment (it shows in error messages).
const NAME: &str = "chat_template";

/// ChatML, for GGUFs without `tokenizer.chat_template` whose vocabulary has its markers.
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + \
    message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ \
    '<|im_start|>assistant\\n' }}{% endif %}";

/// Gemma's turn format (its instruction-tuned models' template: the system prompt opens the first
/// user turn), for GGUFs without a template whose vocabulary has `<start_of_turn>` — Gemma's base
/// models.
const GEMMA_TURNS: &str = "{{ bos_token }}{% set ns = namespace(system='') %}{% for message in messages %}\
    {% if message['role'] == 'system' %}{% set ns.system = message['content'] + '\\n\\n' %}{% else %}\
    {{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\\n' + ns.system + \
    message['content'] | trim + '<end_of_turn>\\n' }}{% set ns.system = '' %}{% endif %}{% endfor %}\
    {% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}";

/// The built-in templates for GGUFs without one, by a marker their vocabulary must have.
const DEFAULT_TEMPLATES: [(&str, &str); 2] = [("<|im_start|>", CHATML), ("<start_of_turn>", GEMMA_TURNS)];

/// Tokens that end a turn in the common chat formats.
const END_OF_TURN: [&str; 5] = ["<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "<end_of_turn>"];

/// A model's chat template, ready to render conversations into prompt text.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Whether the template handles `tool_calls` and role `tool` itself.
    native_tools: bool,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Loads `tokenizer.chat_template` from the metadata and compiles it. A GGUF without one (a
    /// base model) gets the built-in format its vocabulary has the markers of: ChatML
    /// (`<|im_start|>`), else Gemma's turns (`<start_of_turn>`); with neither, an error, since
    /// any other guess would feed the model a format it does not know.
    pub fn from_metadata(md: &Metadata, tokenizer: &GgufTokenizer) -> Result<Self, LocalError> {
        if let Some(source) = md_str(md, "tokenizer.chat_template") {
            return Self::from_source(source, tokenizer);
        }
        let Some((_, source)) =
            DEFAULT_TEMPLATES.iter().find(|(marker, _)| tokenizer.token_id(marker).is_some())
        else {
            return Err(LocalError::Template(
                "the model has no chat template (`tokenizer.chat_template`) and its vocabulary has none of the turn \
                 markers of the built-in ones (ChatML's `<|im_start|>`, Gemma's `<start_of_turn>`): use a GGUF of an \
                 instruction-tuned model, which carries its template"
                    .into(),
            ));
        };
        Self::from_source(source, tokenizer)
    }

    /// Compiles a template given as Jinja source.
    pub fn from_source(source: &str, tokenizer: &GgufTokenizer) -> Result<Self, LocalError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.set_unknown_method_callback(pycompat);
        env.add_template_owned(NAME, source.to_owned()).map_err(template_error)?;
        let text =
            |id: Option<u32>| id.and_then(|id| tokenizer.token_text(id)).unwrap_or_default().to_owned();
        Ok(Self {
            env,
            native_tools: source.contains("tool"),
            bos_token: text(tokenizer.bos_id()),
            eos_token: text(tokenizer.eos_id()),
        })
    }

    /// Whether the template renders tool calls and tool results itself; when not, they are written
    /// into the messages' text.
    pub fn supports_tools(&self) -> bool {
        self.native_tools
    }

    /// Renders a conversation: the system prompt first, then the messages; `tools` are passed as
    /// the template's `tools` (OpenAI function format) when there are any. With
    /// `add_generation_prompt` the text ends where the assistant's answer begins.
    pub fn render(
        &self,
        system: Option<&str>,
        messages: &[Message],
        tools: &[ToolSpec],
        add_generation_prompt: bool,
    ) -> Result<String, LocalError> {
        // A template without tool support never shows the model its tools: describe them in the
        // system prompt instead, in the Hermes/Qwen convention its tool calls are parsed in.
        let with_tools;
        let system = if !tools.is_empty() && !self.supports_tools() {
            with_tools = tool_preamble(system, tools);
            Some(with_tools.as_str())
        } else {
            system
        };
        let mut ctx = serde_json::Map::new();
        ctx.insert("messages".into(), Json::Array(self.hf_messages(system, messages)));
        ctx.insert("add_generation_prompt".into(), add_generation_prompt.into());
        ctx.insert("bos_token".into(), self.bos_token.clone().into());
        ctx.insert("eos_token".into(), self.eos_token.clone().into());
        if !tools.is_empty() {
            let tools = tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.input_schema}})
                })
                .collect();
            ctx.insert("tools".into(), Json::Array(tools));
        }
        let template = self.env.get_template(NAME).map_err(template_error)?;
        template.render(Value::from_serialize(&ctx)).map_err(template_error)
    }

    /// The tokens that end the assistant's turn: EOS and whichever of `<|im_end|>`, `<|eot_id|>`,
    /// `<|end|>`, `<|endoftext|>` the vocabulary has.
    pub fn stop_tokens(&self, tokenizer: &GgufTokenizer) -> Vec<u32> {
        let mut ids: Vec<u32> = tokenizer.eos_id().into_iter().collect();
        for id in END_OF_TURN.iter().filter_map(|t| tokenizer.token_id(t)) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// The conversation as HF-style message objects.
    fn hf_messages(&self, system: Option<&str>, messages: &[Message]) -> Vec<Json> {
        let call_names: HashMap<&str, &str> =
            messages.iter().flat_map(Message::tool_calls).map(|c| (c.id.as_str(), c.name.as_str())).collect();
        let mut out = Vec::with_capacity(messages.len() + 1);
        if let Some(system) = system {
            out.push(json!({"role": "system", "content": system}));
        }
        for message in messages {
            let mut texts = Vec::new();
            let mut calls = Vec::new();
            let mut responses = Vec::new();
            for part in &message.parts {
                match part {
                    Part::Text { text } => texts.push(text.as_str()),
                    Part::Image { .. } => texts.push("[image]"),
                    Part::ToolCall(call) => calls.push(call),
                    Part::ToolResult(result) if self.native_tools => out.push(json!({
                        "role": "tool",
                        "tool_call_id": result.call_id,
                        "name": call_names.get(result.call_id.as_str()).copied().unwrap_or_default(),
                        "content": result.content,
                    })),
                    Part::ToolResult(result) => {
                        responses.push(format!("<tool_response>{}</tool_response>", result.content));
                    }
                    Part::Thinking { .. } => {}
                }
            }
            if !responses.is_empty() {
                out.push(json!({"role": "user", "content": responses.join("\n")}));
            }
            let had_results = message.parts.iter().any(|p| matches!(p, Part::ToolResult(_)));
            if had_results && texts.is_empty() && calls.is_empty() {
                continue;
            }
            let mut content = texts.join("\n");
            let role = match message.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool if self.native_tools => "tool",
                Role::Tool => "user",
            };
            let mut hf = json!({"role": role});
            if !calls.is_empty() {
                if !self.native_tools {
                    for call in &calls {
                        if !content.is_empty() {
                            content.push('\n');
                        }
                        // Written by hand: `name` first, as models are trained to write it.
                        let name = python_json(&Json::from(call.name.as_str()), None);
                        let arguments = python_json(&call.arguments, None);
                        content.push_str(&format!(
                            "<tool_call>{{\"name\": {name}, \"arguments\": {arguments}}}</tool_call>"
                        ));
                    }
                }
                hf["tool_calls"] = calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments}})
                    })
                    .collect();
            }
            hf["content"] = content.into();
            out.push(hf);
        }
        out
    }
}

fn template_error(e: Error) -> LocalError {
    LocalError::Template(e.to_string())
}

/// `raise_exception(msg)`: HF templates' way of refusing a conversation.
fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// `tojson` as in `transformers`: `json.dumps(x, ensure_ascii=False, indent=…)`, so `{"a": 1}` with
/// Python's separators and no HTML escaping (minijinja's own escapes `<` as `\u003c`).
fn tojson(value: &Value, indent: Option<usize>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent {
        Some(indent) => Some(indent),
        None => kwargs.get::<Option<usize>>("indent")?,
    };
    // Accepted for compatibility; keys keep their order and non-ASCII is never escaped.
    for ignored in ["ensure_ascii", "sort_keys", "separators"] {
        let _: Option<Value> = kwargs.get(ignored)?;
    }
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("cannot serialize to JSON: {e}")))?;
    Ok(Value::from_safe_string(python_json(&json, indent)))
}

/// JSON the way Python's `json.dumps` writes it: `", "` and `": "` separators, or pretty-printed
/// with `indent` spaces.
fn python_json(value: &Json, indent: Option<usize>) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let written = match indent {
        Some(n) => {
            let indent = " ".repeat(n);
            let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
            value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, formatter))
        }
        None => value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, PythonFormatter)),
    };
    match written {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => value.to_string(),
    }
}

/// serde_json formatter with Python's default separators.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// Python methods that HF chat templates call on strings and dicts (a small version of
/// `minijinja-contrib`'s `pycompat`).
fn pycompat(_state: &State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        return string_method(s, method, args);
    }
    if value.kind() == ValueKind::Map {
        return map_method(value, method, args);
    }
    Err(Error::from(ErrorKind::UnknownMethod))
}

fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Value, Error> {
    match method {
        "strip" | "lstrip" | "rstrip" => {
            let (chars,): (Option<&str>,) = from_args(args)?;
            let strip = |c: char| chars.map_or(c.is_whitespace(), |cs| cs.contains(c));
            Ok(Value::from(match method {
                "strip" => s.trim_matches(strip),
                "lstrip" => s.trim_start_matches(strip),
                _ => s.trim_end_matches(strip),
            }))
        }
        "startswith" | "endswith" => {
            let (affix,): (Value,) = from_args(args)?;
            let test = |a: &str| if method == "startswith" { s.starts_with(a) } else { s.ends_with(a) };
            if let Some(a) = affix.as_str() {
                return Ok(Value::from(test(a)));
            }
            // A tuple of alternatives.
            Ok(Value::from(affix.try_iter()?.any(|a| a.as_str().is_some_and(test))))
        }
        "split" => {
            let (sep, maxsplit): (Option<&str>, Option<i64>) = from_args(args)?;
            let max = maxsplit.and_then(|m| usize::try_from(m).ok());
            Ok(Value::from(python_split(s, sep, max)?))
        }
        "upper" => Ok(Value::from(s.to_uppercase())),
        "lower" => Ok(Value::from(s.to_lowercase())),
        "replace" => {
            let (old, new, count): (&str, &str, Option<i64>) = from_args(args)?;
            Ok(Value::from(match count.and_then(|c| usize::try_from(c).ok()) {
                Some(count) => s.replacen(old, new, count),
                None => s.replace(old, new),
            }))
        }
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

/// Python's `str.split(sep, maxsplit)`; `sep = None` splits on runs of whitespace.
fn python_split(s: &str, sep: Option<&str>, max: Option<usize>) -> Result<Vec<String>, Error> {
    match sep {
        Some("") => Err(Error::new(ErrorKind::InvalidOperation, "split: empty separator")),
        Some(sep) => Ok(match max {
            Some(max) => s.splitn(max + 1, sep).map(str::to_owned).collect(),
            None => s.split(sep).map(str::to_owned).collect(),
        }),
        None => {
            let mut out = Vec::new();
            let mut rest = s.trim_start();
            while !rest.is_empty() {
                if max.is_some_and(|max| out.len() == max) {
                    out.push(rest.to_owned());
                    break;
                }
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                out.push(rest[..end].to_owned());
                rest = rest[end..].trim_start();
            }
            Ok(out)
        }
    }
}

fn map_method(map: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    match method {
        "get" => {
            let (key, default): (Value, Option<Value>) = from_args(args)?;
            let found = map.get_item(&key)?;
            Ok(if found.is_undefined() { default.unwrap_or(Value::from(())) } else { found })
        }
        "keys" => {
            let _: () = from_args(args)?;
            Ok(Value::from(map.try_iter()?.collect::<Vec<_>>()))
        }
        "values" | "items" => {
            let _: () = from_args(args)?;
            let mut out = Vec::new();
            for key in map.try_iter()? {
                let value = map.get_item(&key)?;
                out.push(if method == "items" { Value::from(vec![key, value]) } else { value });
            }
            Ok(Value::from(out))
        }
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

/// `system` followed by the tool list and how to call a tool, for templates without tool support.
fn tool_preamble(system: Option<&str>, tools: &[ToolSpec]) -> String {
    let mut out = system.map(|s| format!("{s}\n\n")).unwrap_or_default();
    out.push_str("You can call these tools:\n<tools>\n");
    for tool in tools {
        let spec =
            json!({"name": tool.name, "description": tool.description, "parameters": tool.input_schema});
        out.push_str(&spec.to_string());
        out.push('\n');
    }
    out.push_str(
        "</tools>\nTo call a tool, answer with only <tool_call>{\"name\": \"tool name\", \"arguments\": {...}}</tool_call>. \
         Otherwise answer normally.",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::tests::smollm2;
    use exoclaw_types::{ToolCall, ToolResult};

    fn smol() -> ChatTemplate {
        let (md, tok) = smollm2();
        ChatTemplate::from_metadata(md, tok).unwrap()
    }

    fn custom(source: &str) -> ChatTemplate {
        ChatTemplate::from_source(source, &smollm2().1).unwrap()
    }

    #[test]
    fn smollm2_renders_system_and_user() {
        let text = smol().render(Some("Be brief."), &[Message::user("Hi there")], &[], true).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn smollm2_default_system_prompt() {
        let messages = [Message::user("Hi"), Message::assistant("Hello!"), Message::user("Bye")];
        let text = smol().render(None, &messages, &[], false).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face\
             <|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n\
             <|im_start|>user\nBye<|im_end|>\n"
        );
    }

    fn tool_conversation() -> Vec<Message> {
        vec![
            Message::user("Weather in Paris?"),
            Message::new(
                Role::Assistant,
                vec![
                    Part::text("Let me check."),
                    Part::ToolCall(ToolCall {
                        id: "call_1".into(),
                        name: "get_weather".into(),
                        arguments: json!({"city": "Paris"}),
                    }),
                ],
            ),
            Message::tool_results([ToolResult {
                call_id: "call_1".into(),
                content: "18°C, sunny".into(),
                is_error: false,
            }]),
        ]
    }

    fn weather_tool() -> ToolSpec {
        ToolSpec {
            name: "get_weather".into(),
            description: "Weather <now>".into(),
            input_schema: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }
    }

    #[test]
    fn tools_are_described_in_the_system_prompt_when_the_template_cannot_show_them() {
        let out = smol()
            .render(Some("Be brief."), &[Message::user("Weather in Paris?")], &[weather_tool()], true)
            .unwrap();
        let system = out.split("<|im_end|>").next().unwrap();
        assert!(system.starts_with("<|im_start|>system\nBe brief.\n\nYou can call these tools:\n<tools>\n{\"name\":\"get_weather\""), "{out}");
        assert!(system.contains("<tool_call>{\"name\": \"tool name\""), "{out}");
        let plain = smol().render(Some("Be brief."), &[Message::user("Hi")], &[], true).unwrap();
        assert!(!plain.contains("<tools>"));
    }

    #[test]
    fn tool_round_trip_without_template_support() {
        let t = smol();
        assert!(!t.supports_tools());
        let text = t.render(Some("S"), &tool_conversation(), &[weather_tool()], true).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nS\n\nYou can call these tools:\n<tools>\n{\"name\":\"get_weather\",\
             \"description\":\"Weather <now>\",\"parameters\":{\"type\":\"object\",\"properties\":\
             {\"city\":{\"type\":\"string\"}}}}\n</tools>\nTo call a tool, answer with only <tool_call>\
             {\"name\": \"tool name\", \"arguments\": {...}}</tool_call>. Otherwise answer normally.\
             <|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n\
             <|im_start|>assistant\nLet me check.\n<tool_call>{\"name\": \"get_weather\", \
             \"arguments\": {\"city\": \"Paris\"}}</tool_call><|im_end|>\n<|im_start|>user\n\
             <tool_response>18°C, sunny</tool_response><|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn tool_round_trip_with_template_support() {
        // The tool parts of Qwen2.5's template, abridged (`{{ nl }}` for the newlines).
        let t = custom(
            "{% set nl = '\\n' %}{% for tool in tools or [] %}{{ tool | tojson }}{{ nl }}{% endfor %}\
             {% for message in messages %}\
             {% if message.role == 'assistant' and message.tool_calls %}{{ message.content }}{{ nl }}\
             {% for tool_call in message.tool_calls %}{% set f = tool_call.function %}\
             <tool_call>{{ {'name': f.name, 'arguments': f.arguments} | tojson }}</tool_call>{{ nl }}\
             {% endfor %}\
             {% elif message.role == 'tool' %}<tool_response {{ message.name }} \
             {{ message.tool_call_id }}>{{ message.content }}</tool_response>{{ nl }}\
             {% else %}{{ message.role }}: {{ message.content }}{{ nl }}{% endif %}\
             {% endfor %}",
        );
        assert!(t.supports_tools());
        let text = t.render(None, &tool_conversation(), &[weather_tool()], false).unwrap();
        // Keys keep the order they were written in (`preserve_order`), as in HF's Python.
        assert_eq!(
            text,
            "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \
             \"Weather <now>\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": \
             {\"type\": \"string\"}}}}}\nuser: Weather in Paris?\nLet me check.\n<tool_call>{\"name\": \
             \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>\n\
             <tool_response get_weather call_1>18°C, sunny</tool_response>\n"
        );
    }

    #[test]
    fn raise_exception_is_a_template_error() {
        let t = custom("{{ raise_exception('Conversation roles must alternate') }}");
        match t.render(None, &[Message::user("x")], &[], true) {
            Err(LocalError::Template(msg)) => {
                assert!(msg.contains("Conversation roles must alternate"), "{msg}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_template_errors() {
        let e = ChatTemplate::from_source("{% for %}", &smollm2().1).unwrap_err();
        assert!(matches!(e, LocalError::Template(_)), "{e:?}");
    }

    #[test]
    fn llama3_style_template_with_python_methods() {
        let t = custom(
            "{{ bos_token }}{% for message in messages %}\
             {{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'].strip() + '<|eot_id|>' }}\
             {% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
        );
        let text = t.render(Some("  Be kind. \n"), &[Message::user("\n Hi ")], &[], true).unwrap();
        assert_eq!(
            text,
            "<|im_start|><|start_header_id|>system<|end_header_id|>\n\nBe kind.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn python_methods() {
        let t = custom(
            "{{ 'xxhixx'.strip('x') }}|{{ '  a b  c '.split() }}|{{ 'a,b,c'.split(',', 1) }}|\
             {{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}|\
             {{ 'aaa'.replace('a', 'b', 2) }}|{% set d = {'k': 1} %}{{ d.get('k') }}{{ d.get('z', 2) }}{{ d.get('z') }}|\
             {% for k, v in d.items() %}{{ k }}={{ v }}{% endfor %}{{ d.keys() }}{{ d.values() }}|\
             {{ {'x': '<b>', 'y': [1, 2.5]} | tojson(indent=2) }}",
        );
        let text = t.render(None, &[], &[], false).unwrap();
        assert_eq!(
            text,
            "hi|[\"a\", \"b\", \"c\"]|[\"a\", \"b,c\"]|TrueTrue|ABab|bba|12None|k=1[\"k\"][1]|\
             {\n  \"x\": \"<b>\",\n  \"y\": [\n    1,\n    2.5\n  ]\n}"
        );
    }

    #[test]
    fn images_become_placeholders_and_thinking_is_dropped() {
        let message = Message::new(
            Role::User,
            vec![
                Part::text("Look:"),
                Part::Image { source: exoclaw_types::ImageSource::Url { url: "http://x/y.png".into() } },
                Part::Thinking { text: "hmm".into(), signature: None },
            ],
        );
        let text = custom(CHATML).render(None, &[message], &[], false).unwrap();
        assert_eq!(text, "<|im_start|>user\nLook:\n[image]<|im_end|>\n");
    }

    #[test]
    fn stop_tokens_of_smollm2() {
        let (_, tok) = smollm2();
        assert_eq!(smol().stop_tokens(tok), [2, 0]);
    }
}

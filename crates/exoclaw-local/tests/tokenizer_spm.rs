//! Gemma 3's SentencePiece-style tokenizer (`tokenizer.ggml.model = llama`) against llama.cpp's
//! own, in `llama-server` on the same GGUF: `/tokenize` (special tokens parsed, no BOS added, with
//! each token's piece) against [`GgufTokenizer::encode`], `/detokenize` against
//! [`GgufTokenizer::decode`], on hand-picked texts (prose, code, whitespace runs, digits, CJK,
//! emoji, accents, control-token strings, characters that need byte fallback) and on random
//! mixtures of their parts, and every token of the vocabulary decoded. Every one must match.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use exoclaw_local::gguf::read_content;
use exoclaw_local::tokenizer::GgufTokenizer;
use exoclaw_testkit::peers::{LlamaServer, gemma3_gguf};
use serde_json::{Value, json};

/// Hand-picked texts: each exercises one thing llama.cpp's tokenizer does.
fn hand_picked() -> Vec<String> {
    let mut texts: Vec<String> = [
        // Prose.
        "Hello world",
        "The quick brown fox jumps over the lazy dog.",
        "The capital of France is",
        "It's a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
        "don't won't I'LL we'd they're",
        "Mr. Smith went to Washington D.C. on Jan. 5th, 2024 — at 3:45 p.m.",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "HELLO WORLD, Hello World, hello world",
        "e-mail: someone@example.com, url: https://example.com/a/b?c=d&e=f#g",
        // Code with indentation.
        "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
        "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n    println!(\"{v:?}\");\n}\n",
        "{\n  \"name\": \"exoclaw\",\n  \"version\": [1, 2, 3],\n  \"ok\": true\n}",
        "<!DOCTYPE html>\n<html>\n  <body>\n    <div class=\"x\"><b>bold</b> <i>it</i></div>\n  </body>\n</html>",
        "<table><tr><td>1</td><td>2</td></tr></table>",
        "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
        "if (a && b || !c) { x += 1; } else { y -= 2; }",
        "\tindented with a tab\n\t\ttwo tabs\n\t\t\tthree",
        "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
        // Whitespace.
        " ",
        "  ",
        "\n",
        "\t",
        "\r\n",
        " leading space",
        "trailing space ",
        "  two leading and two trailing  ",
        "a  b   c    d     e",
        "line\n\nparagraph\n\n\nthree\n\n\n\nfour",
        " \n \n\t \t\n  \n",
        "x\r\ny\r\n\r\nz",
        "mixed \t\n whitespace\u{a0}nbsp\u{2003}em\u{3000}ideographic",
        // Digits and punctuation.
        "0123456789",
        "3.14159265358979 2.71828 1,000,000 -42 +7 1e-10 0x1F",
        "2024-01-31T12:34:56Z",
        "!!! ??? ... ,,, ;;; ::: --- ___ *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}}",
        "\"quoted\" 'single' `backtick` «guillemets» „German“ ‘curly’",
        "a/b\\c|d~e`f",
        // Ties: `nn` is a token and `nnn` is not, so both pairs of `nnn` score the same and the
        // leftmost merges first.
        "jjj kkk nnn qqq uuu vvv yyy YYY ZZZ",
        "nnnnn jjjjjjj",
        // CJK and other scripts.
        "日本語のテキストです。東京は日本の首都です。",
        "中文文本：你好，世界！",
        "한국어 텍스트입니다. 안녕하세요!",
        "Русский текст: Привет, мир!",
        "Ελληνικά: Γειά σου Κόσμε",
        "العربية: مرحبا بالعالم",
        "עברית: שלום עולם",
        "हिन्दी: नमस्ते दुनिया",
        "ภาษาไทย: สวัสดีชาวโลก",
        // Emoji.
        "🦀🎉🚀",
        "I ❤️ Rust 🦀!",
        "👨‍👩‍👧‍👦 family, 👍🏽 thumbs, 🇫🇷 flag",
        // Accents.
        "Café déjà vu naïve façade résumé Über straße",
        "Tiếng Việt có dấu: Xin chào thế giới",
        "e\u{301} vs é, A\u{30a} vs Å",
        "Ångström, Øresund, Łódź, Dvořák",
        // Control and other special tokens written in the text.
        "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
        "<bos><start_of_turn>user\nHi<end_of_turn>\n",
        "<bos>",
        "<eos>",
        "<pad><unk><mask>",
        "[multimodal]",
        "<start_of_image><end_of_image>",
        "<unused0> <unused1><unused6241>",
        "</s> and <s> and <|im_start|> and <|endoftext|>",
        "<0x41><0x0A>",
        "hello<end_of_turn>world",
        "<start_of_turn><start_of_turn>",
        "<start_of_turn",
        "start_of_turn>",
        "<<start_of_turn>>",
        "<h1>Title</h1><h2>Sub</h2><p>para</p><code>x</code><strong>s</strong><em>e</em>",
        // Byte fallback: characters the vocabulary lacks.
        "\u{e000}\u{f8ff}",
        "\u{1}\u{2}\u{7f}",
        "𓀀𓀁𓀂",
        "𐀀 Linear B",
        "\u{10ffff}",
        "a\u{fffd}b",
        "\u{200b}zero\u{200d}width\u{feff}",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙",
        // The SentencePiece space marker itself.
        "▁",
        "a▁b ▁ c",
        // Empty.
        "",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    // Runs of one whitespace character, longer than the longest user-defined run of it.
    for n in [1, 2, 3, 5, 8, 16, 31, 32, 33, 40] {
        texts.push(format!("a{}b", " ".repeat(n)));
        texts.push(format!("a{}b", "\n".repeat(n)));
        texts.push(format!("{}x", "\t".repeat(n)));
    }
    // Indented code, deeper and deeper.
    texts.push((0..12).map(|d| format!("{}level {d}\n", "    ".repeat(d))).collect());
    // A long text: the continuation prompt of the Gemma tests.
    texts.push(
        (1..=120).map(|i| format!("Item {i}: the value is {}.", i * 7 % 13)).collect::<Vec<_>>().join(" "),
    );
    texts
}

/// Parts that [`random_mixtures`] joins: words, whitespace, special tokens, rare characters.
const PARTS: [&str; 40] = [
    "the",
    " the",
    "The",
    "hello",
    " world",
    "tokenizer",
    "ing",
    "▁",
    " ",
    "  ",
    "   ",
    "\n",
    "\n\n",
    "\t",
    "\t\t",
    "\r",
    "<start_of_turn>",
    "<end_of_turn>",
    "<bos>",
    "</s>",
    "<b>",
    "</b>",
    "<",
    ">",
    "/",
    "123",
    "4",
    "é",
    "ß",
    "日本",
    "語",
    "🦀",
    "👍🏽",
    "\u{e000}",
    "𓀀",
    "\u{1}",
    "'",
    "\"",
    ".",
    "[multimodal]",
];

/// Random mixtures of [`PARTS`], from a fixed seed.
fn random_mixtures(count: usize) -> Vec<String> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    (0..count)
        .map(|_| {
            let len = 1 + (next() % 12) as usize;
            (0..len).map(|_| PARTS[(next() % PARTS.len() as u64) as usize]).collect()
        })
        .collect()
}

fn tokenizer() -> GgufTokenizer {
    let (content, _) = read_content(&gemma3_gguf()).unwrap();
    GgufTokenizer::from_metadata(&content.metadata).unwrap()
}

async fn post(client: &reqwest::Client, server: &LlamaServer, path: &str, body: Value) -> Value {
    let response = client.post(format!("{}{path}", server.url())).json(&body).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// llama.cpp's tokens of `text`, as (id, piece bytes): special tokens parsed, no BOS.
async fn llama_tokenize(client: &reqwest::Client, server: &LlamaServer, text: &str) -> Vec<(u32, Vec<u8>)> {
    let body = json!({"content": text, "add_special": false, "parse_special": true, "with_pieces": true});
    let answer = post(client, server, "/tokenize", body).await;
    answer["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let id = u32::try_from(t["id"].as_u64().unwrap()).unwrap();
            // A piece that is not UTF-8 comes as its bytes.
            let piece = match &t["piece"] {
                Value::String(s) => s.as_bytes().to_vec(),
                Value::Array(bytes) => {
                    bytes.iter().map(|b| u8::try_from(b.as_u64().unwrap()).unwrap()).collect()
                }
                other => panic!("unexpected piece {other}"),
            };
            (id, piece)
        })
        .collect()
}

async fn llama_detokenize(client: &reqwest::Client, server: &LlamaServer, ids: &[u32]) -> String {
    let answer = post(client, server, "/detokenize", json!({"tokens": ids})).await;
    answer["content"].as_str().unwrap().to_owned()
}

/// Whether our decoding never shows the token (control tokens); llama-server's `/detokenize` and
/// its pieces show every token's text.
fn hidden(t: &GgufTokenizer, id: u32) -> bool {
    t.decode(&[id]).unwrap().is_empty()
}

#[tokio::test]
async fn encode_matches_llama_cpp_token_for_token() {
    let server = LlamaServer::serving(&gemma3_gguf(), &[]);
    let client = reqwest::Client::new();
    let t = tokenizer();
    let texts: Vec<String> = hand_picked().into_iter().chain(random_mixtures(200)).collect();
    let mut mismatches = Vec::new();
    let mut total_tokens = 0;
    for text in &texts {
        let theirs = llama_tokenize(&client, &server, text).await;
        let ours = t.encode(text).unwrap();
        total_tokens += ours.len();
        let their_ids: Vec<u32> = theirs.iter().map(|(id, _)| *id).collect();
        if ours != their_ids {
            let names = |ids: &[u32]| {
                ids.iter().map(|&id| t.token_text(id).unwrap_or("?").to_owned()).collect::<Vec<_>>()
            };
            mismatches.push(format!(
                "{text:?}\n  ours:  {ours:?} {:?}\n  llama: {their_ids:?} {:?}",
                names(&ours),
                names(&their_ids)
            ));
            continue;
        }
        // Each token's piece: our decoding of it, or its text for the tokens we never show.
        for (id, piece) in &theirs {
            let expected = if hidden(&t, *id) {
                t.token_text(*id).unwrap().to_owned()
            } else {
                t.decode(&[*id]).unwrap()
            };
            if String::from_utf8_lossy(piece) != expected {
                mismatches.push(format!("{text:?}: token {id} is {piece:?} in llama.cpp, {expected:?} here"));
            }
        }
    }
    println!("{} texts, {total_tokens} tokens compared", texts.len());
    assert!(texts.len() >= 100);
    assert!(
        mismatches.is_empty(),
        "{} of {} texts differ:\n{}",
        mismatches.len(),
        texts.len(),
        mismatches.join("\n")
    );
}

#[tokio::test]
async fn decode_matches_llama_cpp() {
    let server = LlamaServer::serving(&gemma3_gguf(), &[]);
    let client = reqwest::Client::new();
    let t = tokenizer();
    let mut mismatches = Vec::new();

    // The texts' tokens: decoding drops the control tokens, llama-server shows them.
    let texts: Vec<String> = hand_picked().into_iter().chain(random_mixtures(100)).collect();
    for text in &texts {
        let ids = t.encode(text).unwrap();
        let shown: Vec<u32> = ids.iter().copied().filter(|&id| !hidden(&t, id)).collect();
        let theirs = llama_detokenize(&client, &server, &shown).await;
        let ours = t.decode(&ids).unwrap();
        if ours != theirs {
            mismatches.push(format!("{text:?}: {ours:?} here, {theirs:?} in llama.cpp"));
        }
        let mut stream = t.stream_decoder();
        let mut streamed = String::new();
        for &id in &ids {
            streamed.extend(stream.push(id).unwrap());
        }
        streamed.extend(stream.finish());
        assert_eq!(streamed, ours, "{text:?}: streamed");
    }

    // The whole vocabulary but the byte tokens (one byte alone is not UTF-8), in chunks.
    let vocab = 0..u32::try_from(t.vocab_size()).unwrap();
    let is_byte = |text: &str| text.len() == 6 && text.starts_with("<0x") && text.ends_with('>');
    let ids: Vec<u32> = vocab.clone().filter(|&id| !is_byte(t.token_text(id).unwrap())).collect();
    let (hidden_ids, shown): (Vec<u32>, Vec<u32>) = ids.iter().partition(|&&id| hidden(&t, id));
    for chunk in shown.chunks(8192) {
        let theirs = llama_detokenize(&client, &server, chunk).await;
        let ours = t.decode(chunk).unwrap();
        if ours != theirs {
            let at = ours.chars().zip(theirs.chars()).take_while(|(a, b)| a == b).count();
            mismatches.push(format!("tokens {}..: first difference at character {at}", chunk[0]));
        }
    }
    // The tokens we never show are the ones llama.cpp does not cut out of text when asked not to
    // parse special tokens: control (and unknown) ones. All the user-defined ones it still cuts.
    // Gemma's special tokens all look like `<…>`, `[…]` or whitespace.
    let specials: Vec<u32> = vocab
        .filter(|&id| {
            let text = t.token_text(id).unwrap();
            let bracketed = |open, close| text.len() > 2 && text.starts_with(open) && text.ends_with(close);
            !is_byte(text) && (bracketed('<', '>') || bracketed('[', ']') || text.trim().is_empty())
        })
        .collect();
    let joined = specials.iter().map(|&id| t.token_text(id).unwrap()).collect::<Vec<_>>().join("\u{1}");
    let body = json!({"content": joined, "add_special": false, "parse_special": false});
    let unparsed: std::collections::HashSet<u64> = post(&client, &server, "/tokenize", body).await["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    for &id in &specials {
        let cut_by_llama = unparsed.contains(&u64::from(id));
        if cut_by_llama == hidden(&t, id) {
            mismatches.push(format!(
                "token {id} {:?}: hidden here: {}, cut by llama.cpp without parse_special: {cut_by_llama}",
                t.token_text(id).unwrap(),
                hidden(&t, id)
            ));
        }
    }
    println!(
        "{} texts, {} shown tokens, {} hidden, {} special-looking tokens compared",
        texts.len(),
        shown.len(),
        hidden_ids.len(),
        specials.len()
    );
    assert!(mismatches.is_empty(), "{} differences:\n{}", mismatches.len(), mismatches.join("\n"));
}

//! The SentencePiece-style algorithm on a hand-built vocabulary, and Gemma 3's real one against
//! ids llama.cpp gave (`llama-server` `/tokenize`; `tests/tokenizer_spm.rs` compares many more
//! texts with a running server).

use super::*;
use crate::tokenizer::GgufTokenizer;
use candle_core::quantized::gguf_file::Value;
use std::sync::OnceLock;

/// A GGUF-like vocabulary: `<unk>` 0, `<s>` 1, `</s>` 2, the 256 byte tokens from 3, then `extra`
/// (text, score, GGUF token type).
fn tiny(extra: &[(&str, f32, i32)], add_space_prefix: bool) -> GgufTokenizer {
    let mut entries: Vec<(String, f32, i32)> =
        vec![("<unk>".into(), 0.0, 2), ("<s>".into(), 0.0, 3), ("</s>".into(), 0.0, 3)];
    entries.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 0.0, 6)));
    entries.extend(extra.iter().map(|&(t, s, k)| (t.to_owned(), s, k)));
    let mut md = Metadata::new();
    let array = |f: &dyn Fn(&(String, f32, i32)) -> Value| Value::Array(entries.iter().map(f).collect());
    md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
    md.insert("tokenizer.ggml.tokens".into(), array(&|e| Value::String(e.0.clone())));
    md.insert("tokenizer.ggml.scores".into(), array(&|e| Value::F32(e.1)));
    md.insert("tokenizer.ggml.token_type".into(), array(&|e| Value::I32(e.2)));
    md.insert("tokenizer.ggml.add_space_prefix".into(), Value::Bool(add_space_prefix));
    GgufTokenizer::from_metadata(&md).unwrap()
}

/// The vocabulary strings of `text`'s tokens.
fn texts<'a>(t: &'a GgufTokenizer, text: &str) -> Vec<&'a str> {
    t.encode(text).unwrap().into_iter().map(|id| t.token_text(id).unwrap()).collect()
}

const NORMAL: i32 = 1;

#[test]
fn the_higher_score_merges_first() {
    let vocab = |ab: f32, bc: f32| {
        tiny(
            &[
                ("a", -10.0, NORMAL),
                ("b", -10.0, NORMAL),
                ("c", -10.0, NORMAL),
                ("ab", ab, NORMAL),
                ("bc", bc, NORMAL),
            ],
            false,
        )
    };
    assert_eq!(texts(&vocab(-1.0, -2.0), "abc"), ["ab", "c"]);
    assert_eq!(texts(&vocab(-2.0, -1.0), "abc"), ["a", "bc"]);
    // A tie goes to the leftmost pair.
    assert_eq!(texts(&vocab(-1.0, -1.0), "abc"), ["ab", "c"]);
    assert_eq!(texts(&vocab(-1.0, -1.0), "abcabc"), ["ab", "c", "ab", "c"]);
}

#[test]
fn merges_build_on_merges_and_never_skip_a_step() {
    let t = tiny(
        &[
            ("a", -10.0, NORMAL),
            ("b", -10.0, NORMAL),
            ("c", -10.0, NORMAL),
            ("ab", -1.0, NORMAL),
            ("abc", -3.0, NORMAL),
            // Not reachable: neither "xy" nor "yz" is a token, so "xyz" is never formed.
            ("x", -10.0, NORMAL),
            ("y", -10.0, NORMAL),
            ("z", -10.0, NORMAL),
            ("xyz", -0.5, NORMAL),
        ],
        false,
    );
    assert_eq!(texts(&t, "abc"), ["abc"]);
    assert_eq!(texts(&t, "xyz"), ["x", "y", "z"]);
    assert_eq!(texts(&t, "abcxyzab"), ["abc", "x", "y", "z", "ab"]);
}

#[test]
fn characters_outside_the_vocabulary_fall_back_to_bytes() {
    let t = tiny(&[("a", -1.0, NORMAL)], false);
    // é = C3 A9; 🦀 = F0 9F A6 80.
    assert_eq!(texts(&t, "aéa🦀"), ["a", "<0xC3>", "<0xA9>", "a", "<0xF0>", "<0x9F>", "<0xA6>", "<0x80>"]);
    assert_eq!(t.decode(&t.encode("aéa🦀").unwrap()).unwrap(), "aéa🦀");
    // Without byte tokens, the error names what is missing.
    let mut md = Metadata::new();
    md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
    md.insert("tokenizer.ggml.tokens".into(), Value::Array(vec![Value::String("a".into())]));
    let t = GgufTokenizer::from_metadata(&md).unwrap();
    // Llama 2's default: a leading space, and `▁` is not in this vocabulary.
    let e = t.encode("a").unwrap_err().to_string();
    assert!(e.contains("`▁`") && e.contains("<0xE2>"), "{e}");
    md.insert("tokenizer.ggml.add_space_prefix".into(), Value::Bool(false));
    let t = GgufTokenizer::from_metadata(&md).unwrap();
    assert_eq!(t.encode("aa").unwrap(), [0, 0]); // "aa" is not a token
    let e = t.encode("ab").unwrap_err().to_string();
    assert!(e.contains("`b`") && e.contains("<0x62>"), "{e}");
}

#[test]
fn spaces_become_the_sentencepiece_marker_and_the_prefix_is_optional() {
    let extra = [
        ("▁", -5.0, NORMAL),
        ("a", -5.0, NORMAL),
        ("b", -5.0, NORMAL),
        ("▁a", -1.0, NORMAL),
        ("▁b", -1.0, NORMAL),
        ("▁▁", -2.0, NORMAL),
    ];
    let with_prefix = tiny(&extra, true);
    assert_eq!(texts(&with_prefix, "a b"), ["▁a", "▁b"]);
    // "▁a" (-1) outscores "▁▁" (-2).
    assert_eq!(texts(&with_prefix, " a"), ["▁", "▁a"]);
    assert_eq!(texts(&with_prefix, "  "), ["▁▁", "▁"]);
    // The prefix goes on the text after a special token as well.
    assert_eq!(texts(&with_prefix, "a</s>b"), ["▁a", "</s>", "▁b"]);
    let without = tiny(&extra, false);
    assert_eq!(texts(&without, "a b"), ["a", "▁b"]);
    assert_eq!(texts(&without, "a</s>b  "), ["a", "</s>", "b", "▁▁"]);
    assert_eq!(without.encode("").unwrap(), [] as [u32; 0]);
    // Decoding: `▁` is a space, the leading one included; control tokens are not shown.
    assert_eq!(with_prefix.decode(&with_prefix.encode("a</s>b").unwrap()).unwrap(), " a b");
    assert_eq!(without.decode(&without.encode("a</s>b  ").unwrap()).unwrap(), "ab  ");
}

#[test]
fn special_tokens_are_cut_out_longest_first() {
    const USER_DEFINED: i32 = 4;
    let t = tiny(
        &[
            ("a", -1.0, NORMAL),
            ("<", -1.0, NORMAL),
            (">", -1.0, NORMAL),
            ("\n", 0.0, USER_DEFINED),
            ("\n\n", 0.0, USER_DEFINED),
            ("<a>", 0.0, USER_DEFINED),
            ("<a><a>", 0.0, USER_DEFINED),
        ],
        false,
    );
    assert_eq!(texts(&t, "\n\n\n"), ["\n\n", "\n"]);
    assert_eq!(texts(&t, "a<a><a><a>a"), ["a", "<a><a>", "<a>", "a"]);
    assert_eq!(texts(&t, "<s>a</s>"), ["<s>", "a", "</s>"]);
    assert_eq!(texts(&t, "<a"), ["<", "a"]);
    // User-defined tokens are shown verbatim, control ones not at all.
    assert_eq!(t.decode(&t.encode("<s>a<a>\n\n</s>").unwrap()).unwrap(), "a<a>\n\n");
}

#[test]
fn bos_and_eos_default_to_llama_cpp_s() {
    let t = tiny(&[], true);
    assert_eq!((t.bos_id(), t.eos_id(), t.pad_id()), (Some(1), Some(2), None));
    assert!(t.add_bos_token());
    assert_eq!(t.token_id("<0x41>"), Some(3 + 0x41));
    assert_eq!(t.decode(&[3 + 0x41, 0]).unwrap(), "A"); // <unk> is not shown
}

#[test]
fn partition_drops_whitespace_after_phi3_specials() {
    let fragments = |rstrip: bool| {
        let tokens: Vec<String> = ["x", "<|end|>"].map(String::from).to_vec();
        let a = attr::CONTROL | if rstrip { attr::RSTRIP } else { 0 };
        Specials::new(&tokens, &[attr::NORMAL, a]).partition("a<|end|> \n b<|end|>")
    };
    use Fragment::{Text, Token};
    assert_eq!(fragments(false), [Text(0..1), Token(1), Text(8..12), Token(1)]);
    assert_eq!(fragments(true), [Text(0..1), Token(1), Text(11..12), Token(1)]);
}

/// Gemma 3 270M's tokenizer, loaded once.
fn gemma3() -> &'static GgufTokenizer {
    static CELL: OnceLock<GgufTokenizer> = OnceLock::new();
    CELL.get_or_init(|| {
        let home = std::env::var("HOME").expect("HOME");
        let path = std::path::Path::new(&home).join(".cache/exoclaw/models/gemma-3-270m-q4_k_m.gguf");
        let (content, _) = crate::gguf::read_content(&path)
            .unwrap_or_else(|e| panic!("{e} (fetch it with `bash scripts/peers/gemma3.sh`)"));
        GgufTokenizer::from_metadata(&content.metadata).unwrap()
    })
}

// Expected ids below come from llama.cpp (llama-server 0.5.0-dev, commit 0c1e570, `/tokenize`
// with `parse_special`).

#[test]
fn gemma3_matches_llama_cpp() {
    let t = gemma3();
    assert_eq!(
        t.encode("Hello  world\n\n<start_of_turn>user </s> x").unwrap(),
        [9259, 138, 12392, 108, 105, 2364, 236743, 212, 1123]
    );
    assert_eq!(t.encode("<start_of_turn>").unwrap(), [105]);
    assert_eq!(t.vocab_size(), 262_144);
    assert_eq!((t.bos_id(), t.eos_id(), t.pad_id()), (Some(2), Some(1), Some(0)));
    assert!(t.add_bos_token());
    assert_eq!(t.token_id("<end_of_turn>"), Some(106));
    assert_eq!(t.token_text(236743), Some("▁"));
}

#[test]
fn gemma3_decodes_like_llama_cpp() {
    let t = gemma3();
    // `</s>` (212) is user-defined in the GGUF, but llama.cpp makes it a control token, not shown.
    assert_eq!(t.decode(&[2, 105, 1, 212, 9259, 107, 0, 3, 6, 248, 1123]).unwrap(), "Hello\n\n x");
    let text = "Café déjà vu 🦀🎉 naïve, 日本語のテキスト\n\tx = [1, 2];  ";
    assert_eq!(t.decode(&t.encode(text).unwrap()).unwrap(), text);
}

#[test]
fn gemma3_load_and_encode_time() {
    let home = std::env::var("HOME").unwrap();
    let path = std::path::Path::new(&home).join(".cache/exoclaw/models/gemma-3-270m-q4_k_m.gguf");
    let (content, _) = crate::gguf::read_content(&path).unwrap();
    let start = std::time::Instant::now();
    let t = GgufTokenizer::from_metadata(&content.metadata).unwrap();
    println!("gemma3 from_metadata: {:?}", start.elapsed());
    let paragraph = "The quick brown fox jumps over the lazy dog in 2024; naïve café 🦀.\n    <b>bold</b> ";
    let text = paragraph.repeat(100);
    let start = std::time::Instant::now();
    let ids = t.encode(&text).unwrap();
    println!("gemma3 encode: {} bytes, {} tokens in {:?}", text.len(), ids.len(), start.elapsed());
    assert_eq!(t.decode(&ids).unwrap(), text);
}

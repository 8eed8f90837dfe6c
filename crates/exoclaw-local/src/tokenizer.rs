//! [`GgufTokenizer`]: the byte-level BPE tokenizer of a GGUF model, rebuilt from its metadata with
//! the `tokenizers` crate.
//!
//! Only `tokenizer.ggml.model = gpt2` (byte-level BPE, as in SmolLM2, Llama 3 and Qwen2) is
//! supported. The pre-tokenizer follows `tokenizer.ggml.pre` the way llama.cpp's
//! `src/llama-vocab.cpp` (`llm_tokenizer_bpe`) does, which is what the model was trained with:
//! candle's own `TokenizerFromGguf` gets `smollm` wrong (it adds a leading space).
//!
//! Decoding does not go through `tokenizers`: every token's bytes are precomputed, so
//! [`GgufTokenizer::decode`] and the incremental [`StreamDecoder`] agree byte for byte.

use crate::LocalError;
use crate::gguf::{Metadata, md_str, md_u64};
use candle_core::quantized::gguf_file::Value;
use std::collections::HashMap;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// GGUF `token_type` of control tokens (`<|im_start|>`): special, never shown.
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF `token_type` of user-defined tokens: matched verbatim in text, decoded verbatim.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Llama 3's split pattern (`tokenizer.ggml.pre = llama-bpe`), as adapted in llama.cpp
/// `src/llama-vocab.cpp`, `LLAMA_VOCAB_PRE_TYPE_LLAMA3` (the `(?i:…)` contractions of
/// `tokenizer.json` spelled out).
const LLAMA3_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's split pattern (`tokenizer.ggml.pre = qwen2`): Llama 3's with single digits; llama.cpp
/// `src/llama-vocab.cpp`, `LLAMA_VOCAB_PRE_TYPE_QWEN2`.
const QWEN2_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A GGUF model's tokenizer: text ↔ token ids.
#[derive(Clone)]
pub struct GgufTokenizer {
    inner: Tokenizer,
    /// The raw vocabulary strings, by id.
    tokens: Vec<String>,
    /// The bytes each token decodes to, by id; `None` for control tokens (never shown).
    pieces: Vec<Option<Box<[u8]>>>,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .finish_non_exhaustive()
    }
}

impl GgufTokenizer {
    /// Builds the tokenizer from GGUF metadata (`tokenizer.ggml.*`). Fails on tokenizer models other
    /// than `gpt2` (byte-level BPE) and on missing or malformed vocabulary data.
    pub fn from_metadata(md: &Metadata) -> Result<Self, LocalError> {
        let model = md_str(md, "tokenizer.ggml.model")
            .ok_or_else(|| err("the GGUF has no `tokenizer.ggml.model`"))?;
        if model != "gpt2" {
            return Err(err(format!(
                "tokenizer model `{model}` is not supported; only `gpt2` (byte-level BPE: SmolLM2, \
                 Llama 3, Qwen2) is"
            )));
        }
        let tokens = string_array(md, "tokenizer.ggml.tokens")?;
        let types = match md.get("tokenizer.ggml.token_type") {
            None => vec![1; tokens.len()],
            Some(v) => array(v, "tokenizer.ggml.token_type")?
                .iter()
                .map(|t| t.to_i32().map_err(|e| err(format!("`tokenizer.ggml.token_type`: {e}"))))
                .collect::<Result<Vec<_>, _>>()?,
        };
        if types.len() != tokens.len() {
            return Err(err(format!("{} token types for {} tokens", types.len(), tokens.len())));
        }
        let merges = string_array(md, "tokenizer.ggml.merges")?
            .iter()
            .map(|m| split_merge(m).ok_or_else(|| err(format!("malformed merge `{m}`"))))
            .collect::<Result<Vec<_>, _>>()?;

        let pre = md_str(md, "tokenizer.ggml.pre");
        let (pre_tokenizer, ignore_merges) = pre_tokenizer(pre)?;
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), id_of(i))).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| err(format!("cannot build the BPE model: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        let added = |kind: i32, special: bool| -> Vec<AddedToken> {
            tokens
                .iter()
                .zip(&types)
                .filter(|&(_, &t)| t == kind)
                .map(|(tok, _)| AddedToken::from(tok.clone(), special))
                .collect()
        };
        inner.add_special_tokens(&added(TOKEN_TYPE_CONTROL, true));
        inner.add_tokens(&added(TOKEN_TYPE_USER_DEFINED, false));

        let unicode_to_byte = unicode_to_byte();
        let pieces = tokens
            .iter()
            .zip(&types)
            .map(|(tok, &t)| match t {
                TOKEN_TYPE_CONTROL => None,
                TOKEN_TYPE_USER_DEFINED => Some(tok.as_bytes().into()),
                _ => Some(byte_level_bytes(tok, &unicode_to_byte)),
            })
            .collect();
        let special_id = |key: &str| {
            md_u64(md, key).and_then(|id| u32::try_from(id).ok()).filter(|&id| (id as usize) < tokens.len())
        };
        let (bos, eos, pad) = (
            special_id("tokenizer.ggml.bos_token_id"),
            special_id("tokenizer.ggml.eos_token_id"),
            special_id("tokenizer.ggml.padding_token_id"),
        );
        Ok(Self { inner, tokens, pieces, bos, eos, pad })
    }

    /// Encodes text. Special tokens written in the text (`<|im_start|>` from a rendered chat
    /// template) become single tokens; no BOS is added (chat templates add it).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        let encoding = self.inner.encode(text, false).map_err(|e| err(format!("cannot encode: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes token ids to text, skipping special (control) tokens. Bytes that are not valid
    /// UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, LocalError> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            if let Some(piece) = self.piece(id)? {
                bytes.extend_from_slice(piece);
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The id of a vocabulary entry, written as in the vocabulary (`<|im_end|>`, `Ġthe`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The raw vocabulary string of a token (byte-level form: `Ġthe` for ` the`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The beginning-of-sequence token, if the model declares one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence token, if the model declares one.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// The padding token, if the model declares one.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    /// An incremental decoder for generated tokens.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder { tokenizer: self, pending: Vec::new() }
    }

    /// The bytes of token `id`; `None` for control tokens.
    pub(crate) fn piece(&self, id: u32) -> Result<Option<&[u8]>, LocalError> {
        match self.pieces.get(id as usize) {
            Some(piece) => Ok(piece.as_deref()),
            None => Err(err(format!("token id {id} is outside the vocabulary of {}", self.tokens.len()))),
        }
    }
}

/// Decodes generated tokens one at a time. A byte-level BPE token can end in the middle of a UTF-8
/// character; such bytes are held back until the character is complete, so no U+FFFD is emitted
/// for a split character. Pushing every id and then [`finish`](Self::finish) yields exactly
/// [`GgufTokenizer::decode`] of all of them.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tokenizer: &'a GgufTokenizer,
    pending: Vec<u8>,
}

impl StreamDecoder<'_> {
    /// Adds a token; returns the text it completes, if any. Special tokens produce no text.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, LocalError> {
        let Some(piece) = self.tokenizer.piece(id)? else { return Ok(None) };
        self.pending.extend_from_slice(piece);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // An incomplete character at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            break;
                        }
                        // Invalid bytes: what `decode` does (`from_utf8_lossy`).
                        Some(len) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + len);
                        }
                    }
                }
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// Ends the stream: bytes of an unfinished character held back, as U+FFFD.
    pub fn finish(self) -> Option<String> {
        (!self.pending.is_empty()).then(|| String::from_utf8_lossy(&self.pending).into_owned())
    }
}

fn err(msg: impl Into<String>) -> LocalError {
    LocalError::Tokenizer(msg.into())
}

fn id_of(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

fn array<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>, LocalError> {
    v.to_vec().map_err(|e| err(format!("`{key}` is not an array: {e}")))
}

fn string_array(md: &Metadata, key: &str) -> Result<Vec<String>, LocalError> {
    let v = md.get(key).ok_or_else(|| err(format!("the GGUF has no `{key}`")))?;
    array(v, key)?.iter().map(|s| s.to_string().cloned().map_err(|e| err(format!("`{key}`: {e}")))).collect()
}

/// `"Ġ t"` → `("Ġ", "t")`; the separating space is the first one after the first character (as
/// llama.cpp splits them).
fn split_merge(merge: &str) -> Option<(String, String)> {
    let first = merge.chars().next()?.len_utf8();
    let at = first + merge[first..].find(' ')?;
    Some((merge[..at].to_owned(), merge[at + 1..].to_owned()))
}

/// The pre-tokenizer for `tokenizer.ggml.pre`, and whether BPE skips merges for whole-vocabulary
/// words (llama.cpp's `ignore_merges`, set for Llama 3).
fn pre_tokenizer(pre: Option<&str>) -> Result<(PreTokenizerWrapper, bool), LocalError> {
    let byte_level = |use_regex| ByteLevel::new(false, true, use_regex);
    let split = |pattern: &str| {
        Split::new(SplitPattern::Regex(pattern.to_owned()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| err(format!("bad split pattern: {e}")))
    };
    Ok(match pre {
        // llama.cpp: these share `LLAMA_VOCAB_PRE_TYPE_SMOLLM`'s expressions: digits one by one,
        // then GPT-2's.
        Some("smollm" | "starcoder" | "refact" | "codeshell" | "exaone" | "minerva") => {
            (Sequence::new(vec![Digits::new(true).into(), byte_level(true).into()]).into(), false)
        }
        Some("llama-bpe" | "llama3" | "llama-v3") => {
            (Sequence::new(vec![split(LLAMA3_PATTERN)?.into(), byte_level(false).into()]).into(), true)
        }
        Some("qwen2" | "deepseek-r1-qwen") => {
            (Sequence::new(vec![split(QWEN2_PATTERN)?.into(), byte_level(false).into()]).into(), false)
        }
        None | Some("gpt2" | "gpt-2" | "default") => (byte_level(true).into(), false),
        Some(other) => {
            tracing::warn!(pre = other, "unknown GGUF pre-tokenizer; using GPT-2's, tokens may be off");
            (byte_level(true).into(), false)
        }
    })
}

/// GPT-2's byte-level alphabet, reversed: the character standing for each byte → the byte.
fn unicode_to_byte() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 256u32;
    (0..=255u8)
        .filter_map(|b| {
            let code = if printable(b) {
                u32::from(b)
            } else {
                next += 1;
                next - 1
            };
            char::from_u32(code).map(|c| (c, b))
        })
        .collect()
}

/// A byte-level token's bytes; characters outside the alphabet are kept as their UTF-8.
fn byte_level_bytes(token: &str, map: &HashMap<char, u8>) -> Box<[u8]> {
    let mut out = Vec::with_capacity(token.len());
    for c in token.chars() {
        match map.get(&c) {
            Some(&b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out.into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_alphabet_covers_every_byte_once() {
        let alphabet = unicode_to_byte();
        assert_eq!(alphabet.len(), 256);
        assert_eq!(alphabet[&'Ġ'], b' ');
        assert_eq!(alphabet[&'Ċ'], b'\n');
        assert_eq!(alphabet[&'ĉ'], b'\t');
        assert_eq!(alphabet[&'A'], b'A');
        assert_eq!(alphabet[&'Ã'], 0xC3);
    }
    use std::sync::OnceLock;

    /// SmolLM2-135M-Instruct's metadata and tokenizer, loaded once.
    pub(crate) fn smollm2() -> &'static (Metadata, GgufTokenizer) {
        static CELL: OnceLock<(Metadata, GgufTokenizer)> = OnceLock::new();
        CELL.get_or_init(|| {
            let home = std::env::var("HOME").expect("HOME");
            let path =
                std::path::Path::new(&home).join(".cache/exoclaw/models/SmolLM2-135M-Instruct.Q4_1.gguf");
            let (content, _) = crate::gguf::read_content(&path)
                .unwrap_or_else(|e| panic!("{e} (fetch it with `bash scripts/peers/smollm2.sh`)"));
            let tokenizer = GgufTokenizer::from_metadata(&content.metadata).unwrap();
            (content.metadata, tokenizer)
        })
    }

    fn tok() -> &'static GgufTokenizer {
        &smollm2().1
    }

    // Expected ids below come from llama.cpp's tokenizer (llama-server 0.3.36 `/tokenize`).

    #[test]
    fn chatml_turn_matches_llama_cpp() {
        let ids = tok().encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n").unwrap();
        assert_eq!(ids, [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198]);
        assert_eq!(tok().encode("hello<|im_end|>world").unwrap(), [28120, 2, 6693]);
    }

    #[test]
    fn digits_are_split_one_by_one() {
        assert_eq!(tok().encode("2024").unwrap(), [34, 32, 34, 36]);
        assert_eq!(tok().encode("In 2024 we").unwrap(), [788, 216, 34, 32, 34, 36, 392]);
        assert_eq!(
            tok().encode("3.14159 and 1,000").unwrap(),
            [35, 30, 33, 36, 33, 37, 41, 284, 216, 33, 28, 32, 32, 32]
        );
    }

    #[test]
    fn spaces_contractions_and_code() {
        assert_eq!(tok().encode(" hello world").unwrap(), [33662, 905]);
        assert_eq!(tok().encode("a  b").unwrap(), [81, 216, 278]);
        assert_eq!(tok().encode("  indented\n\tcode()").unwrap(), [216, 641, 6574, 198, 197, 4635, 1000]);
        assert_eq!(tok().encode("don't I'LL").unwrap(), [12420, 982, 339, 23, 16421]);
    }

    #[test]
    fn accents_and_emoji_round_trip() {
        let text = "Café déjà vu 🦀🎉 naïve";
        let ids = tok().encode(text).unwrap();
        assert_eq!(
            ids,
            [51, 1939, 2756, 32564, 90, 16739, 386, 101, 15107, 116, 218, 10813, 232, 227, 15486, 46494]
        );
        assert_eq!(tok().decode(&ids).unwrap(), text);
        let text = "日本語のテキスト, x², ça";
        assert_eq!(tok().decode(&tok().encode(text).unwrap()).unwrap(), text);
    }

    #[test]
    fn vocabulary_accessors_and_decode() {
        let t = tok();
        assert_eq!(t.decode(&[1, 4093, 198, 28120, 2, 0]).unwrap(), "user\nhello"); // specials skipped
        assert!(t.decode(&[49_152]).is_err());
        assert_eq!(t.vocab_size(), 49_152);
        assert_eq!((t.bos_id(), t.eos_id(), t.pad_id()), (Some(1), Some(2), Some(2)));
        assert_eq!(t.token_id("<|im_end|>"), Some(2));
        assert_eq!(t.token_id("Ġuser"), Some(2914));
        assert_eq!(t.token_text(4093), Some("user"));
        assert_eq!(t.token_text(49_152), None);
    }

    #[test]
    fn stream_decoder_holds_back_split_characters() {
        let t = tok();
        let (c3, a9) = (t.token_id("Ã").unwrap(), t.token_id("©").unwrap()); // é = C3 A9
        let mut s = t.stream_decoder();
        assert_eq!(s.push(c3).unwrap(), None);
        assert_eq!(s.push(2).unwrap(), None); // <|im_end|>: no text, the pending byte stays
        assert_eq!(s.push(a9).unwrap().as_deref(), Some("é"));
        // 🦀 = [F0 9F] [A6] [80]
        assert_eq!(s.push(10813).unwrap(), None);
        assert_eq!(s.push(116).unwrap(), None);
        assert_eq!(s.push(218).unwrap().as_deref(), Some("🦀"));
        assert_eq!(s.finish(), None);

        let text = "Café déjà vu 🦀🎉 naïve, 日本語のテキスト, ça";
        let ids = t.encode(text).unwrap();
        let mut s = t.stream_decoder();
        let mut streamed = String::new();
        for &id in &ids {
            if let Some(piece) = s.push(id).unwrap() {
                assert!(!piece.contains(char::REPLACEMENT_CHARACTER), "{piece:?}");
                streamed.push_str(&piece);
            }
        }
        assert_eq!(s.finish(), None);
        assert_eq!(streamed, t.decode(&ids).unwrap());
        assert_eq!(streamed, text);

        // A character left unfinished comes out of `finish` as U+FFFD, as `decode` has it.
        let mut s = t.stream_decoder();
        assert_eq!(s.push(c3).unwrap(), None);
        assert_eq!(s.finish().as_deref(), Some("\u{FFFD}"));
        assert_eq!(t.decode(&[c3]).unwrap(), "\u{FFFD}");
    }

    #[test]
    fn other_tokenizer_models_are_refused() {
        let mut md = smollm2().0.clone();
        md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        let e = GgufTokenizer::from_metadata(&md).unwrap_err().to_string();
        assert!(e.contains("`llama` is not supported") && e.contains("gpt2"), "{e}");
    }

    fn pieces(pre: Option<&str>, text: &str) -> Vec<String> {
        use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};
        let (pre_tokenizer, _) = pre_tokenizer(pre).unwrap();
        let mut s = PreTokenizedString::from(text);
        pre_tokenizer.pre_tokenize(&mut s).unwrap();
        s.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(p, _, _)| p.to_owned())
            .collect()
    }

    #[test]
    fn pre_tokenizer_choice_and_merges() {
        assert_eq!(split_merge("Ġt he"), Some(("Ġt".into(), "he".into())));
        assert_eq!(split_merge("nospace"), None);
        let text = "a 12345 don't";
        let single_digits = ["a", "Ġ", "1", "2", "3", "4", "5", "Ġdon", "'t"];
        assert_eq!(pieces(Some("smollm"), text), single_digits);
        assert_eq!(pieces(Some("qwen2"), text), single_digits);
        assert_eq!(pieces(Some("llama-bpe"), text), ["a", "Ġ", "123", "45", "Ġdon", "'t"]);
        let gpt2 = ["a", "Ġ12345", "Ġdon", "'t"];
        for pre in [None, Some("gpt2"), Some("default"), Some("something-new")] {
            assert_eq!(pieces(pre, text), gpt2, "{pre:?}");
        }
        assert_eq!(pieces(Some("llama-bpe"), "x\n\n  y"), ["x", "ĊĊ", "Ġ", "Ġy"]);

        let mut md = smollm2().0.clone();
        for pre in ["llama-bpe", "qwen2", "something-new"] {
            md.insert("tokenizer.ggml.pre".into(), Value::String(pre.into()));
            let t = GgufTokenizer::from_metadata(&md).unwrap();
            let text = "Hello, world! 12345 don't\n\n  x";
            assert_eq!(t.decode(&t.encode(text).unwrap()).unwrap(), text, "{pre}");
        }
    }

    #[test]
    fn encode_speed_on_a_long_prompt() {
        let start = std::time::Instant::now();
        let t = GgufTokenizer::from_metadata(&smollm2().0).unwrap();
        println!("from_metadata: {:?}", start.elapsed());
        let paragraph = "The quick brown fox jumps over the lazy dog in 2024; naïve café 🦀. ";
        let text = paragraph.repeat(100);
        let start = std::time::Instant::now();
        let ids = t.encode(&text).unwrap();
        let elapsed = start.elapsed();
        println!("encode: {} tokens in {elapsed:?}", ids.len());
        assert!(ids.len() > 2_000);
    }
}

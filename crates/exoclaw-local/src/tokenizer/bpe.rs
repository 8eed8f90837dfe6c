//! Byte-level BPE (`tokenizer.ggml.model = gpt2`: SmolLM2, Llama 3, Qwen2), rebuilt with the
//! `tokenizers` crate.
//!
//! The pre-tokenizer follows `tokenizer.ggml.pre` the way llama.cpp's `src/llama-vocab.cpp`
//! (`llm_tokenizer_bpe`) does, which is what the model was trained with: candle's own
//! `TokenizerFromGguf` gets `smollm` wrong (it adds a leading space).

use super::{Pieces, TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED, err, id_of, string_array};
use crate::LocalError;
use crate::gguf::{Metadata, md_str};
use std::collections::HashMap;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// Llama 3's split pattern (`tokenizer.ggml.pre = llama-bpe`), as adapted in llama.cpp
/// `src/llama-vocab.cpp`, `LLAMA_VOCAB_PRE_TYPE_LLAMA3` (the `(?i:…)` contractions of
/// `tokenizer.json` spelled out).
const LLAMA3_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's split pattern (`tokenizer.ggml.pre = qwen2`): Llama 3's with single digits; llama.cpp
/// `src/llama-vocab.cpp`, `LLAMA_VOCAB_PRE_TYPE_QWEN2`.
const QWEN2_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The byte-level BPE model of a GGUF.
#[derive(Clone)]
pub(super) struct Bpe {
    inner: Tokenizer,
}

impl Bpe {
    /// Builds the model from `tokenizer.ggml.merges` and `tokenizer.ggml.pre`; returns it with the
    /// bytes every token decodes to (`None` for control tokens).
    pub(super) fn from_metadata(
        md: &Metadata,
        tokens: &[String],
        types: &[i32],
    ) -> Result<(Self, Pieces), LocalError> {
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
                .zip(types)
                .filter(|&(_, &t)| t == kind)
                .map(|(tok, _)| AddedToken::from(tok.clone(), special))
                .collect()
        };
        inner.add_special_tokens(&added(TOKEN_TYPE_CONTROL, true));
        inner.add_tokens(&added(TOKEN_TYPE_USER_DEFINED, false));

        let unicode_to_byte = unicode_to_byte();
        let pieces = tokens
            .iter()
            .zip(types)
            .map(|(tok, &t)| match t {
                TOKEN_TYPE_CONTROL => None,
                TOKEN_TYPE_USER_DEFINED => Some(tok.as_bytes().into()),
                _ => Some(byte_level_bytes(tok, &unicode_to_byte)),
            })
            .collect();
        Ok((Self { inner }, pieces))
    }

    /// Encodes text; control tokens written in it become single tokens.
    pub(super) fn encode(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        let encoding = self.inner.encode(text, false).map_err(|e| err(format!("cannot encode: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The id of a vocabulary entry.
    pub(super) fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
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
mod tests {
    use super::*;
    use crate::tokenizer::GgufTokenizer;
    use crate::tokenizer::tests::smollm2;
    use candle_core::quantized::gguf_file::Value;

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
}

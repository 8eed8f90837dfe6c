//! [`GgufTokEnv`]: a GGUF vocabulary as toktrie's [`TokenizerEnv`], the token trie llguidance
//! computes masks over.
//!
//! This mirrors `toktrie_hf_tokenizers` (which pins `tokenizers` 0.21) for byte-level BPE: each
//! token's bytes are its vocabulary string with GPT-2's byte-level alphabet mapped back to raw bytes
//! (`Ġ` → space), and control tokens (`<|im_end|>`) are marked special: their bytes are
//! [`TokTrie::SPECIAL_TOKEN_MARKER`] followed by their text, so no grammar text can produce them.

use crate::LocalError;
use crate::tokenizer::GgufTokenizer;
use std::sync::Arc;
use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

/// End-of-turn tokens of the common chat formats (as `toktrie_hf_tokenizers` recognises them).
const END_OF_TURN: [&str; 3] = ["<|end|>", "<|eot_id|>", "<|im_end|>"];

/// A [`GgufTokenizer`] with the token trie over its vocabulary.
pub(crate) struct GgufTokEnv {
    tokenizer: GgufTokenizer,
    trie: TokTrie,
}

impl GgufTokEnv {
    /// The environment for `tokenizer`'s vocabulary.
    pub(crate) fn tok_env(tokenizer: &GgufTokenizer) -> Result<TokEnv, LocalError> {
        let words = token_bytes(tokenizer)?;
        let vocab_size = u32::try_from(words.len()).map_err(|_| grammar("vocabulary too large"))?;
        let eos = tokenizer.eos_id().ok_or_else(|| grammar("the model declares no end-of-sequence token"))?;
        let mut info = TokRxInfo::new(vocab_size, eos);
        info.tok_bos = tokenizer.bos_id();
        info.tok_pad = tokenizer.pad_id();
        info.tok_end_of_turn = END_OF_TURN.iter().find_map(|t| tokenizer.token_id(t));
        let trie = TokTrie::from(&info, &words);
        Ok(Arc::new(Self { tokenizer: tokenizer.clone(), trie }))
    }
}

impl TokenizerEnv for GgufTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// Tokenizes with the model's own BPE; bytes that are not UTF-8 fall back to the trie's
    /// greedy tokenization (as `toktrie_hf_tokenizers` does).
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |s| {
            self.tokenizer.encode(s).unwrap_or_else(|_| self.trie.greedy_tokenize(s.as_bytes()))
        })
    }
}

/// Every token's bytes, by id: the tokenizer's raw bytes for ordinary tokens, the special-token
/// marker and the token's text for control tokens.
pub(crate) fn token_bytes(tokenizer: &GgufTokenizer) -> Result<Vec<Vec<u8>>, LocalError> {
    (0..tokenizer.vocab_size())
        .map(|id| {
            let id = u32::try_from(id).map_err(|_| grammar("vocabulary too large"))?;
            if let Some(bytes) = tokenizer.piece(id)? {
                return Ok(bytes.to_vec());
            }
            let text = tokenizer
                .token_text(id)
                .ok_or_else(|| grammar(format!("token {id} has no vocabulary entry")))?;
            let mut bytes = Vec::with_capacity(text.len() + 1);
            bytes.push(TokTrie::SPECIAL_TOKEN_MARKER);
            bytes.extend_from_slice(text.as_bytes());
            Ok(bytes)
        })
        .collect()
}

fn grammar(msg: impl Into<String>) -> LocalError {
    LocalError::Grammar(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::tests::smollm2;

    #[test]
    fn token_bytes_are_raw_bytes_and_control_tokens_are_special() {
        let tokenizer = &smollm2().1;
        let env = GgufTokEnv::tok_env(tokenizer).unwrap();
        let trie = env.tok_trie();
        assert_eq!(trie.vocab_size(), 49_152);
        let paris = tokenizer.encode(" Paris").unwrap();
        assert_eq!(paris.len(), 1, "{paris:?}");
        assert_eq!(trie.token(paris[0]), b" Paris");
        assert_eq!(trie.token(tokenizer.token_id("Ċ").unwrap()), b"\n");
        // é is C3 A9: two byte-level tokens.
        assert_eq!(trie.token(tokenizer.token_id("Ã").unwrap()), [0xC3]);
        let im_end = tokenizer.token_id("<|im_end|>").unwrap();
        assert!(trie.is_special_token(im_end));
        assert_eq!(trie.token(im_end), b"\xff<|im_end|>");
        assert_eq!(trie.eos_token(), im_end);
        assert!(!trie.is_special_token(paris[0]));
        // Every ordinary token's bytes are what the tokenizer decodes it to.
        for id in (0..49_152).step_by(97) {
            if !trie.is_special_token(id) {
                let decoded = tokenizer.decode(&[id]).unwrap();
                assert_eq!(String::from_utf8_lossy(trie.token(id)), decoded, "token {id}");
            }
        }
    }

    #[test]
    fn tokenize_bytes_uses_the_model_tokenizer() {
        let tokenizer = &smollm2().1;
        let env = GgufTokEnv::tok_env(tokenizer).unwrap();
        let text = "What's the weather in Paris? 2024";
        assert_eq!(env.tokenize_bytes(text.as_bytes()), tokenizer.encode(text).unwrap());
        // Invalid UTF-8 still tokenizes (greedily) to the same bytes.
        let ids = env.tokenize_bytes(b"a\xC3");
        assert_eq!(env.tok_trie().decode(&ids), b"a\xC3");
    }
}

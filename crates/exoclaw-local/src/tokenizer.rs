//! [`GgufTokenizer`]: a GGUF model's tokenizer, rebuilt from its metadata, with the same tokens
//! as llama.cpp gives.
//!
//! Two tokenizer models are supported, each in its own module:
//! - [`bpe`]: `tokenizer.ggml.model = gpt2`, byte-level BPE (SmolLM2, Llama 3, Qwen2), built with
//!   the `tokenizers` crate;
//! - [`spm`]: `tokenizer.ggml.model = llama`, SentencePiece-style merges by score with byte
//!   fallback (Gemma, Llama 2, Mistral, TinyLlama), written after llama.cpp.
//!
//! Decoding is shared: every token's bytes are precomputed, so [`GgufTokenizer::decode`] and the
//! incremental [`StreamDecoder`] agree byte for byte.

mod bpe;
mod spm;

use crate::LocalError;
use crate::gguf::{Metadata, md_str, md_u64};
use candle_core::quantized::gguf_file::Value;
use std::path::Path;

/// The bytes each token decodes to, by id; `None` for tokens never shown (control tokens).
type Pieces = Vec<Option<Box<[u8]>>>;

/// GGUF `token_type` of control tokens (`<|im_start|>`): special, never shown.
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF `token_type` of user-defined tokens: matched verbatim in text, decoded verbatim.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// A GGUF model's tokenizer: text ↔ token ids.
#[derive(Clone)]
pub struct GgufTokenizer {
    model: Model,
    /// The raw vocabulary strings, by id.
    tokens: Vec<String>,
    /// The bytes each token decodes to.
    pieces: Pieces,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
}

/// The tokenizer model proper: what turns text into ids.
#[derive(Clone)]
enum Model {
    /// `gpt2`: byte-level BPE (boxed: the `tokenizers` model is large).
    Bpe(Box<bpe::Bpe>),
    /// `llama`: SentencePiece-style.
    Spm(spm::Spm),
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let model = match self.model {
            Model::Bpe(_) => "gpt2",
            Model::Spm(_) => "llama",
        };
        f.debug_struct("GgufTokenizer")
            .field("model", &model)
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

impl GgufTokenizer {
    /// Builds the tokenizer from GGUF metadata (`tokenizer.ggml.*`). Fails on tokenizer models other
    /// than `gpt2` (byte-level BPE) and `llama` (SentencePiece-style), and on missing or malformed
    /// vocabulary data.
    pub fn from_metadata(md: &Metadata) -> Result<Self, LocalError> {
        let kind = md_str(md, "tokenizer.ggml.model")
            .ok_or_else(|| err("the GGUF has no `tokenizer.ggml.model`"))?;
        let mut tokens = string_array(md, "tokenizer.ggml.tokens")?;
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
        // llama.cpp's defaults where the GGUF names no BOS/EOS, and whether it adds BOS.
        let (model, pieces, default_bos, default_eos, default_add_bos) = match kind {
            "gpt2" => {
                let (model, pieces) = bpe::Bpe::from_metadata(md, &tokens, &types)?;
                let llama3 =
                    matches!(md_str(md, "tokenizer.ggml.pre"), Some("llama-bpe" | "llama3" | "llama-v3"));
                (Model::Bpe(Box::new(model)), pieces, None, None, llama3)
            }
            "llama" => {
                let (model, pieces) = spm::Spm::from_metadata(md, &mut tokens, &types)?;
                (Model::Spm(model), pieces, Some(1), Some(2), true)
            }
            other => {
                return Err(err(format!(
                    "tokenizer model `{other}` is not supported; only `gpt2` (byte-level BPE: SmolLM2, \
                     Llama 3, Qwen2) and `llama` (SentencePiece: Gemma, Llama 2, Mistral) are"
                )));
            }
        };
        let in_vocab = |id: u32| (id as usize) < tokens.len();
        let special_id = |key: &str, default: Option<u32>| match md_u64(md, key) {
            Some(id) => u32::try_from(id).ok().filter(|&id| in_vocab(id)),
            None => default.filter(|&id| in_vocab(id)),
        };
        let bos = special_id("tokenizer.ggml.bos_token_id", default_bos);
        let eos = special_id("tokenizer.ggml.eos_token_id", default_eos);
        let pad = special_id("tokenizer.ggml.padding_token_id", None);
        let add_bos = match md.get("tokenizer.ggml.add_bos_token") {
            Some(v) => v.to_bool().map_err(|e| err(format!("`tokenizer.ggml.add_bos_token`: {e}")))?,
            None => default_add_bos,
        };
        Ok(Self { model, tokens, pieces, bos, eos, pad, add_bos })
    }

    /// Reads the tokenizer of the GGUF at `path` from its header alone (the vocabulary, no
    /// weights): for counting a model's tokens without loading it. Under 0.2 s for SmolLM2's
    /// 49,152 tokens in a debug build.
    pub fn from_file(path: &Path) -> Result<Self, LocalError> {
        let (content, _) = crate::gguf::read_content(path)?;
        Self::from_metadata(&content.metadata)
    }

    /// How many tokens `text` is, as [`Self::encode`] gives them (special tokens written in the
    /// text count as one; no BOS): what a context budget is counted in.
    pub fn count(&self, text: &str) -> Result<usize, LocalError> {
        self.encode(text).map(|ids| ids.len())
    }

    /// Encodes text. Special tokens written in the text (`<|im_start|>`, `<start_of_turn>`, `<bos>`
    /// from a rendered chat template) become single tokens; no BOS is added (chat templates add
    /// it; see [`Self::add_bos_token`]).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        match &self.model {
            Model::Bpe(bpe) => bpe.encode(text),
            Model::Spm(spm) => spm.encode(text),
        }
    }

    /// Decodes token ids to text, skipping special (control) tokens. Bytes that are not valid
    /// UTF-8 become U+FFFD. The pieces are joined as they are: a leading space of a
    /// SentencePiece-style model's first token is kept (as llama.cpp's `token_to_piece` does).
    pub fn decode(&self, ids: &[u32]) -> Result<String, LocalError> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            if let Some(piece) = self.piece(id)? {
                bytes.extend_from_slice(piece);
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The id of a vocabulary entry, written as in the vocabulary (`<|im_end|>`, `Ġthe`, `▁the`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        match &self.model {
            Model::Bpe(bpe) => bpe.token_id(token),
            Model::Spm(spm) => spm.token_id(token),
        }
    }

    /// The raw vocabulary string of a token (byte-level form: `Ġthe` for ` the`; SentencePiece
    /// form: `▁the`).
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

    /// Whether the model expects BOS before a prompt (`tokenizer.ggml.add_bos_token`, else
    /// llama.cpp's default for the tokenizer model). [`Self::encode`] never adds it: a caller
    /// tokenizing raw text rather than a rendered chat template prepends [`Self::bos_id`] itself.
    pub fn add_bos_token(&self) -> bool {
        self.add_bos
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

/// A tokenizer error.
fn err(msg: impl Into<String>) -> LocalError {
    LocalError::Tokenizer(msg.into())
}

/// A vocabulary index as a token id (vocabularies are far below `u32::MAX`).
fn id_of(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// A metadata value that must be an array.
fn array<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>, LocalError> {
    v.to_vec().map_err(|e| err(format!("`{key}` is not an array: {e}")))
}

/// A metadata array of strings.
fn string_array(md: &Metadata, key: &str) -> Result<Vec<String>, LocalError> {
    let v = md.get(key).ok_or_else(|| err(format!("the GGUF has no `{key}`")))?;
    array(v, key)?.iter().map(|s| s.to_string().cloned().map_err(|e| err(format!("`{key}`: {e}")))).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
    fn counting_reads_the_header_alone_and_matches_encode() {
        let home = std::env::var("HOME").expect("HOME");
        let path = std::path::Path::new(&home).join(".cache/exoclaw/models/SmolLM2-135M-Instruct.Q4_1.gguf");
        let t = GgufTokenizer::from_file(&path).unwrap();
        // 12 ids from llama.cpp (`chatml_turn_matches_llama_cpp`).
        assert_eq!(t.count("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n").unwrap(), 12);
        for text in ["", "Café déjà vu 🦀🎉 naïve", "In 2024 we", "  indented\n\tcode()"] {
            assert_eq!(t.count(text).unwrap(), tok().encode(text).unwrap().len(), "{text:?}");
        }
        let missing = GgufTokenizer::from_file(std::path::Path::new("/nonexistent/model.gguf")).unwrap_err();
        assert!(matches!(missing, LocalError::Io { .. }), "{missing}");
    }

    #[test]
    fn other_tokenizer_models_are_refused() {
        let mut md = smollm2().0.clone();
        md.insert("tokenizer.ggml.model".into(), Value::String("t5".into()));
        let e = GgufTokenizer::from_metadata(&md).unwrap_err().to_string();
        assert!(e.contains("`t5` is not supported") && e.contains("gpt2") && e.contains("llama"), "{e}");
    }

    #[test]
    fn add_bos_token_comes_from_the_metadata() {
        assert!(!tok().add_bos_token());
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

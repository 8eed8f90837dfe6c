//! The SentencePiece-style tokenizer of `tokenizer.ggml.model = llama` GGUFs (Gemma, Llama 2,
//! Mistral, TinyLlama), written after llama.cpp's `src/llama-vocab.cpp` so that it gives the same
//! tokens as llama.cpp bit for bit:
//!
//! 1. `tokenizer_st_partition`: control, user-defined and unknown tokens written verbatim in the
//!    text are cut out first, longest first (Gemma's user-defined tokens include runs of spaces,
//!    tabs and newlines and HTML tags, so `"\n\n"` is always its own token);
//! 2. every other fragment gets a leading space when `add_space_prefix` is set and it follows a
//!    cut token or starts the text, and its spaces become `▁` (U+2581);
//! 3. `llm_tokenizer_spm`: the fragment's characters are merged pairwise, the adjacent pair whose
//!    concatenation is the vocabulary entry of highest score first (leftmost on a tie), until no
//!    adjacent pair is in the vocabulary;
//! 4. a piece left that is not in the vocabulary (a character it lacks) falls back to its bytes,
//!    as `<0xXX>` tokens.
//!
//! Token attributes follow llama.cpp's load, including its fix-ups by token text: end-of-generation
//! and fill-in-the-middle names (`</s>`, `<end_of_turn>`, `<|fim_prefix|>`…) become control tokens,
//! and Phi-3's special tokens swallow the whitespace after them (`rstrip`).

use super::{Pieces, err, id_of};
use crate::LocalError;
use crate::gguf::{Metadata, md_str, md_u64};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::ops::Range;

/// llama.cpp's `LLAMA_TOKEN_ATTR_*`, the bits that decide tokenizing and decoding.
mod attr {
    /// No type, or a type llama.cpp does not know: decoded as nothing.
    pub(super) const UNDEFINED: u16 = 0;
    /// `<unk>`-like.
    pub(super) const UNKNOWN: u16 = 1 << 0;
    /// Reserved, never produced by training: decoded as nothing.
    pub(super) const UNUSED: u16 = 1 << 1;
    /// Ordinary vocabulary piece, `▁` for a space.
    pub(super) const NORMAL: u16 = 1 << 2;
    /// Special: never shown, matched verbatim in text.
    pub(super) const CONTROL: u16 = 1 << 3;
    /// Matched verbatim in text, decoded verbatim.
    pub(super) const USER_DEFINED: u16 = 1 << 4;
    /// `<0xXX>`: one byte.
    pub(super) const BYTE: u16 = 1 << 5;
    /// Whitespace after the token in the text is dropped.
    pub(super) const RSTRIP: u16 = 1 << 8;
}

/// Token texts llama.cpp makes control tokens whatever their GGUF type, because they end
/// generation (`special_eog_ids` in `llama_vocab::impl::load`).
const END_OF_GENERATION: [&str; 22] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle token texts llama.cpp makes control tokens when the GGUF does not name that
/// token by id (its metadata keys, then the texts).
const FILL_IN_THE_MIDDLE: [(&[&str], &[&str]); 6] = [
    (
        &["tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"],
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    ),
    (
        &["tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"],
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    ),
    (
        &["tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"],
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    ),
    (&["tokenizer.ggml.fim_pad_token_id"], &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]),
    (
        &["tokenizer.ggml.fim_rep_token_id"],
        &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
    ),
    (&["tokenizer.ggml.fim_sep_token_id"], &["<|file_sep|>"]),
];

/// A SentencePiece-style vocabulary, ready to encode.
#[derive(Clone)]
pub(super) struct Spm {
    /// Every vocabulary entry → its id.
    ids: HashMap<Box<str>, u32>,
    /// Merge priority of each token, by id.
    scores: Box<[f32]>,
    /// The tokens cut out of the text before merging.
    specials: Specials,
    /// Whether a fragment at the start of the text or after a cut token gets a leading space.
    add_space_prefix: bool,
    /// The token of each byte, for characters outside the vocabulary.
    byte_tokens: Box<[Option<u32>; 256]>,
}

impl Spm {
    /// Builds the tokenizer from the vocabulary (`tokens`, whose empty entries are renamed
    /// `[EMPTY_<id>]` as llama.cpp does), the GGUF token types and `tokenizer.ggml.scores`; returns
    /// it with the bytes every token decodes to (`None` for those never shown).
    pub(super) fn from_metadata(
        md: &Metadata,
        tokens: &mut [String],
        types: &[i32],
    ) -> Result<(Self, Pieces), LocalError> {
        for (i, token) in tokens.iter_mut().enumerate() {
            if token.is_empty() {
                *token = format!("[EMPTY_{i}]");
            }
        }
        let scores = scores(md, tokens.len())?;
        let mut ids = HashMap::with_capacity(tokens.len());
        for (i, token) in tokens.iter().enumerate() {
            if let Some(first) = ids.insert(Box::<str>::from(token.as_str()), id_of(i)) {
                return Err(err(format!("duplicate token `{token}` in the vocabulary: ids {first} and {i}")));
            }
        }
        let mut attrs: Vec<u16> = types
            .iter()
            .map(|&t| match t {
                1 => attr::NORMAL,
                2 => attr::UNKNOWN,
                3 => attr::CONTROL,
                4 => attr::USER_DEFINED,
                5 => attr::UNUSED,
                6 => attr::BYTE,
                _ => attr::UNDEFINED,
            })
            .collect();
        fix_attributes(md, &ids, &mut attrs);

        let specials = Specials::new(tokens, &attrs);
        let add_space_prefix = md
            .get("tokenizer.ggml.add_space_prefix")
            .map(|v| v.to_bool().map_err(|e| err(format!("`tokenizer.ggml.add_space_prefix`: {e}"))))
            .transpose()?
            .unwrap_or(true);
        let byte_tokens = Box::new(std::array::from_fn(|b| {
            let b = u8::try_from(b).unwrap_or_default();
            ids.get(format!("<0x{b:02X}>").as_str())
                .or_else(|| ids.get(char::from(b).to_string().as_str()).filter(|_| b.is_ascii()))
                .copied()
        }));
        let pieces = tokens.iter().zip(&attrs).map(|(token, &a)| piece(token, a)).collect();
        let spm = Self { ids, scores, specials, add_space_prefix, byte_tokens };
        Ok((spm, pieces))
    }

    /// Encodes text: special tokens written in it are cut out, the rest merged by score.
    pub(super) fn encode(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        let mut after_special = true;
        let mut escaped = String::new();
        for fragment in self.specials.partition(text) {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(range) => {
                    let fragment = text.get(range).ok_or_else(|| err("a special token split a character"))?;
                    escaped.clear();
                    if self.add_space_prefix && after_special {
                        escaped.push('▁');
                    }
                    escaped.extend(fragment.chars().map(|c| if c == ' ' { '▁' } else { c }));
                    self.merge(&escaped, &mut out)?;
                    after_special = false;
                }
            }
        }
        Ok(out)
    }

    /// The id of a vocabulary entry.
    pub(super) fn token_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// `llm_tokenizer_spm_session::tokenize`: one fragment (spaces already `▁`) merged pair by pair,
    /// then each piece as its token or its bytes.
    fn merge(&self, text: &str, out: &mut Vec<u32>) -> Result<(), LocalError> {
        let mut symbols: Vec<Symbol> = text
            .char_indices()
            .map(|(start, c)| Symbol { start, len: c.len_utf8(), prev: None, next: None })
            .collect();
        let count = symbols.len();
        for (i, symbol) in symbols.iter_mut().enumerate() {
            symbol.prev = i.checked_sub(1);
            symbol.next = Some(i + 1).filter(|&n| n < count);
        }
        let mut queue = BinaryHeap::new();
        for right in 1..count {
            self.push_bigram(text, &symbols, Some(right - 1), Some(right), &mut queue);
        }
        while let Some(bigram) = queue.pop() {
            let (left, right) = (bigram.left, bigram.right);
            let (left_len, right_len) = (symbols[left].len, symbols[right].len);
            // One side has been merged since: the pair is stale.
            if left_len == 0 || right_len == 0 || left_len + right_len != bigram.size {
                continue;
            }
            symbols[left].len += right_len;
            symbols[right].len = 0;
            symbols[left].next = symbols[right].next;
            if let Some(next) = symbols[right].next {
                symbols[next].prev = Some(left);
            }
            self.push_bigram(text, &symbols, symbols[left].prev, Some(left), &mut queue);
            self.push_bigram(text, &symbols, Some(left), symbols[left].next, &mut queue);
        }
        let mut at = (count > 0).then_some(0);
        while let Some(i) = at {
            let Symbol { start, len, next, .. } = symbols[i];
            let piece = &text[start..start + len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        let id = self.byte_tokens[usize::from(b)].ok_or_else(|| {
                            err(format!(
                                "`{piece}` is not in the vocabulary and neither is the byte token `<0x{b:02X}>`"
                            ))
                        })?;
                        out.push(id);
                    }
                }
            }
            at = next;
        }
        Ok(())
    }

    /// `try_add_bigram`: queues the merge of two neighbours when their concatenation is a token.
    fn push_bigram(
        &self,
        text: &str,
        symbols: &[Symbol],
        left: Option<usize>,
        right: Option<usize>,
        queue: &mut BinaryHeap<Bigram>,
    ) {
        let (Some(left), Some(right)) = (left, right) else { return };
        let start = symbols[left].start;
        let size = symbols[left].len + symbols[right].len;
        let Some(&id) = text.get(start..start + size).and_then(|s| self.ids.get(s)) else { return };
        let score = self.scores.get(id as usize).copied().unwrap_or_default();
        queue.push(Bigram { score, left, right, size });
    }
}

/// A run of the fragment's characters: a piece being built by merges.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    /// Byte offset in the fragment.
    start: usize,
    /// Length in bytes; 0 once merged into its left neighbour.
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of two neighbouring symbols.
#[derive(Debug, Clone, Copy)]
struct Bigram {
    /// The score of the token they would form.
    score: f32,
    left: usize,
    right: usize,
    /// The merged length, to recognise a pair that has changed since it was queued.
    size: usize,
}

/// The queue's order, llama.cpp's `llm_bigram_spm::comparator`: highest score first, then the
/// leftmost pair. Scores compare as C++'s `<` does (NaN ties with everything).
impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

/// A piece of the text after special tokens are cut out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fragment {
    /// Text to merge (a byte range of the input).
    Text(Range<usize>),
    /// A special token found verbatim.
    Token(u32),
}

/// The tokens cut out of the text before merging: control, user-defined and unknown ones
/// (`cache_special_tokens`), longest first, with a byte trie to find them all in one pass.
#[derive(Clone)]
struct Specials {
    /// In llama.cpp's order: longest text first. Ties keep id order (llama.cpp's `std::sort` is
    /// not stable; the order of two tokens of one length matters only where one's end is the
    /// other's start, which no vocabulary seen so far has).
    list: Vec<Special>,
    /// Node 0 is the root.
    trie: Vec<TrieNode>,
}

#[derive(Debug, Clone, Copy)]
struct Special {
    id: u32,
    len: usize,
    /// Whitespace after the token is dropped (Phi-3).
    rstrip: bool,
}

#[derive(Debug, Clone, Default)]
struct TrieNode {
    /// (byte, child node), sorted by byte.
    children: Vec<(u8, u32)>,
    /// The special token (its index in `list`) whose text ends here.
    special: Option<u32>,
}

impl Specials {
    fn new(tokens: &[String], attrs: &[u16]) -> Self {
        let mut ids: Vec<usize> = (0..tokens.len())
            .filter(|&i| attrs[i] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
            .collect();
        ids.sort_by_key(|&i| std::cmp::Reverse(tokens[i].len()));
        let mut trie = vec![TrieNode::default()];
        let mut list = Vec::with_capacity(ids.len());
        for (rank, &i) in ids.iter().enumerate() {
            let mut node = 0usize;
            for &b in tokens[i].as_bytes() {
                node = match trie[node].children.binary_search_by_key(&b, |&(c, _)| c) {
                    Ok(at) => trie[node].children[at].1 as usize,
                    Err(at) => {
                        let child = trie.len();
                        trie[node].children.insert(at, (b, id_of(child)));
                        trie.push(TrieNode::default());
                        child
                    }
                };
            }
            trie[node].special = Some(id_of(rank));
            list.push(Special { id: id_of(i), len: tokens[i].len(), rstrip: attrs[i] & attr::RSTRIP != 0 });
        }
        Self { list, trie }
    }

    /// `tokenizer_st_partition`: for each special token, longest first, every occurrence in what is
    /// still text, left to right, becomes that token. Done from one scan of the text: an occurrence
    /// is taken when none of its bytes was taken by an earlier (longer, or same token further
    /// left) one, which is what llama.cpp's repeated searches of the remaining fragments amount to.
    fn partition(&self, text: &str) -> Vec<Fragment> {
        let bytes = text.as_bytes();
        let mut found: Vec<(u32, usize)> = Vec::new();
        for start in 0..bytes.len() {
            let mut node = &self.trie[0];
            for &b in &bytes[start..] {
                let Ok(at) = node.children.binary_search_by_key(&b, |&(c, _)| c) else { break };
                node = &self.trie[node.children[at].1 as usize];
                if let Some(rank) = node.special {
                    found.push((rank, start));
                }
            }
        }
        if found.is_empty() {
            return if text.is_empty() { Vec::new() } else { vec![Fragment::Text(0..text.len())] };
        }
        found.sort_unstable();

        // Per byte: free text, taken by a cut token, or dropped whitespace.
        let mut taken = vec![false; bytes.len()];
        let mut cuts: Vec<(usize, usize, u32)> = Vec::new();
        for (rank, start) in found {
            let special = self.list[rank as usize];
            let end = start + special.len;
            if taken[start..end].iter().any(|&t| t) {
                continue;
            }
            taken[start..end].fill(true);
            cuts.push((start, end, special.id));
            if special.rstrip {
                let mut at = end;
                // C's `isspace`, within the fragment (up to the next taken byte).
                while at < bytes.len() && !taken[at] && matches!(bytes[at], b' ' | b'\t'..=b'\r') {
                    taken[at] = true;
                    at += 1;
                }
            }
        }
        cuts.sort_unstable();

        let mut fragments = Vec::with_capacity(2 * cuts.len() + 1);
        let mut cuts = cuts.into_iter().peekable();
        let mut text_start = None;
        let mut at = 0;
        while at < bytes.len() {
            if !taken[at] {
                text_start.get_or_insert(at);
                at += 1;
                continue;
            }
            if let Some(start) = text_start.take() {
                fragments.push(Fragment::Text(start..at));
            }
            match cuts.next_if(|&(start, _, _)| start == at) {
                Some((_, end, id)) => {
                    fragments.push(Fragment::Token(id));
                    at = end;
                }
                None => at += 1, // dropped whitespace
            }
        }
        if let Some(start) = text_start {
            fragments.push(Fragment::Text(start..bytes.len()));
        }
        fragments
    }
}

/// `tokenizer.ggml.scores` (floats, or integers in some conversions); all 0 when absent.
fn scores(md: &Metadata, count: usize) -> Result<Box<[f32]>, LocalError> {
    let key = "tokenizer.ggml.scores";
    let Some(v) = md.get(key) else { return Ok(vec![0.0; count].into()) };
    let values = v.to_vec().map_err(|e| err(format!("`{key}` is not an array: {e}")))?;
    if values.len() < count {
        return Err(err(format!("{} scores for {count} tokens", values.len())));
    }
    values[..count]
        .iter()
        .map(|s| {
            s.to_f32().or_else(|_| s.to_i32().map(|i| i as f32)).map_err(|e| err(format!("`{key}`: {e}")))
        })
        .collect()
}

/// llama.cpp's changes to the GGUF's token types, by token text.
fn fix_attributes(md: &Metadata, ids: &HashMap<Box<str>, u32>, attrs: &mut [u16]) {
    let id = |text: &str| ids.get(text).map(|&id| id as usize);
    // Only the first of each kind in llama.cpp's hash-map order is made control there; a vocabulary
    // has at most one of each in practice.
    for (keys, names) in FILL_IN_THE_MIDDLE {
        if keys.iter().all(|k| md_u64(md, k).is_none()) {
            for i in names.iter().filter_map(|n| id(n)) {
                attrs[i] |= attr::CONTROL;
            }
        }
    }
    for i in END_OF_GENERATION.iter().filter_map(|n| id(n)) {
        attrs[i] |= attr::CONTROL;
    }
    // gpt-oss: these are always shown.
    for i in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"].iter().filter_map(|n| id(n)) {
        attrs[i] = attr::USER_DEFINED;
    }
    // o200k_harmony and solar-open: `<|end|>` does not end generation there.
    let has = |text: &str| ids.contains_key(text);
    let call = has("<|call|>") || has("<|calls|>");
    if let Some(end) = id("<|end|>")
        && call
        && (has("<|return|>") || has("<|flush|>"))
    {
        attrs[end] = attr::USER_DEFINED;
    }
    // Gemma 4: `</s>` is ordinary text.
    if let Some(s) = id("</s>")
        && has("<|tool_response>")
    {
        attrs[s] = attr::NORMAL;
    }
    // Phi-3: special tokens swallow the whitespace after them, except these.
    let name = md_str(md, "general.name").unwrap_or_default().to_lowercase();
    if name.contains("phi-3") || name.contains("phi3") {
        for a in attrs.iter_mut() {
            if *a & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0 {
                *a |= attr::RSTRIP;
            }
        }
        if let Some(i) = id("</s>") {
            attrs[i] |= attr::RSTRIP;
        }
        for i in ["<unk>", "<s>", "<|endoftext|>"].iter().filter_map(|n| id(n)) {
            attrs[i] &= !attr::RSTRIP;
        }
    }
}

/// What a token decodes to (llama.cpp's `token_to_piece` without `special`): nothing for control,
/// unknown, unused and untyped tokens; user-defined ones verbatim; `▁` as a space; byte tokens as
/// their byte.
fn piece(text: &str, a: u16) -> Option<Box<[u8]>> {
    if a & (attr::CONTROL | attr::UNKNOWN) != 0 {
        None
    } else if a & attr::USER_DEFINED != 0 {
        Some(text.as_bytes().into())
    } else if a & attr::NORMAL != 0 {
        Some(text.replace('▁', " ").into_bytes().into())
    } else if a & attr::BYTE != 0 {
        // `strtol` of the two hex digits of `<0xXX>`, which gives 0 on garbage.
        let byte = text.get(3..5).and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(0);
        Some(Box::new([byte]))
    } else {
        None
    }
}

#[cfg(test)]
mod tests;

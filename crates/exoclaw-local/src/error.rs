//! [`LocalError`]: what can go wrong finding, loading and running an embedded model.

use exoclaw_core::ErrorKind;
use std::path::PathBuf;

/// A failure of the embedded model.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A request named a model the embedded provider does not serve.
    #[error(
        "the embedded provider `{provider}` has no model `{requested}`; it serves {}, and any GGUF file named by its path (`{provider}/PATH.gguf`)",
        served.iter().map(|name| format!("`{provider}/{name}`")).collect::<Vec<_>>().join(", ")
    )]
    UnknownModel {
        /// The provider instance's name.
        provider: String,
        /// The model asked for.
        requested: String,
        /// The models it serves by name: its default and the GGUFs in the model cache.
        served: Vec<String>,
    },
    /// A request named an embedding model the local embedder does not serve.
    #[error("the local embedder `{provider}` has no model `{requested}`; it serves `{served}` only")]
    UnknownEmbeddingModel {
        /// The embedder instance's name.
        provider: String,
        /// The model asked for.
        requested: String,
        /// The model it serves.
        served: String,
    },
    /// A request asked for vectors of another length than the embedding model makes.
    #[error(
        "`{model}` makes vectors of {native} dimensions and cannot shorten them; ask for {native} or leave `dimensions` out, not {requested}"
    )]
    Dimensions {
        /// The embedding model.
        model: String,
        /// The length asked for.
        requested: u32,
        /// The length it makes.
        native: usize,
    },
    /// The model file is not on this machine and could not be downloaded.
    #[error("model `{name}` is not available: {reason}\n{how_to_get}")]
    ModelUnavailable {
        /// The model's file name.
        name: String,
        /// Why it could not be found or fetched.
        reason: String,
        /// Exactly how to get the file onto this machine.
        how_to_get: String,
    },
    /// The file exists but is not a usable GGUF model.
    #[error("cannot load model {path}: {reason}")]
    BadModel {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A downloaded or cached file's SHA-256 is not the expected one.
    #[error("{path} is corrupt: SHA-256 {actual}, expected {expected}; delete it and fetch it again")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The expected digest.
        expected: String,
        /// The digest found.
        actual: String,
    },
    /// The GGUF's tokenizer metadata is missing or unusable.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The GGUF's chat template could not be parsed or rendered.
    #[error("chat template: {0}")]
    Template(String),
    /// The conversation does not fit the model's context window.
    #[error(
        "the prompt is {prompt} tokens and the answer may take {max_new}, but the model's context window is {window} tokens"
    )]
    ContextOverflow {
        /// Prompt length in tokens.
        prompt: usize,
        /// Tokens reserved for the answer.
        max_new: usize,
        /// The context window.
        window: usize,
    },
    /// The tool-call grammar could not be built or was violated.
    #[error("tool-call grammar: {0}")]
    Grammar(String),
    /// The inference engine failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl LocalError {
    /// How the rest of exoclaw (retries, fallbacks, circuit breakers) treats this failure. Only
    /// failures of the engine itself are [`ErrorKind::Server`]; a name or a file that is not
    /// there is [`ErrorKind::ModelNotFound`], which never counts against a breaker.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LocalError::ContextOverflow { .. } => ErrorKind::ContextLength,
            LocalError::Template(_) | LocalError::Tokenizer(_) | LocalError::Dimensions { .. } => {
                ErrorKind::InvalidRequest
            }
            LocalError::UnknownModel { .. }
            | LocalError::UnknownEmbeddingModel { .. }
            | LocalError::ModelUnavailable { .. } => ErrorKind::ModelNotFound,
            LocalError::BadModel { .. }
            | LocalError::Checksum { .. }
            | LocalError::Grammar(_)
            | LocalError::Inference(_)
            | LocalError::Io { .. } => ErrorKind::Server,
        }
    }
}

impl From<candle_core::Error> for LocalError {
    fn from(e: candle_core::Error) -> Self {
        LocalError::Inference(e.to_string())
    }
}

//! `POST /v1/embeddings`: OpenAI's embeddings API in front of the embedders a
//! [`ModelSource`](crate::ModelSource) serves ([`ModelSource::embedder_for`]).
//!
//! The request is decoded as strictly as chat completions are: every field OpenAI documents is
//! carried out or refused by name (400), never silently dropped. `input` is one text or up to
//! [`MAX_INPUTS`] texts; token arrays are refused (exoclaw's embedders take text, and a token id
//! means nothing across tokenizers). The vectors come back as JSON floats, or with
//! `encoding_format: "base64"` (what OpenAI's Python SDK asks for by default) as the
//! little-endian `f32` bytes of each vector, base64-encoded.
//!
//! A request is authorised, reserved against its key's budget and the `[budgets]`, settled and
//! recorded exactly as a chat completion is ([`crate::accounting`]), priced as its input tokens
//! alone: embeddings have no answer tokens.
//!
//! [`ModelSource::embedder_for`]: crate::ModelSource::embedder_for

use crate::accounting::Bill;
use crate::keys::Caller;
use crate::server::{JsonApi, json_request};
use crate::text::Escaped;
use crate::{Gateway, GatewayError};
use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use exoclaw_core::{ErrorKind, Estimate, ProviderError};
use exoclaw_types::EmbeddingRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// The embeddings endpoint, as routed and as its metrics are labelled.
pub(crate) const EMBEDDINGS: &str = "/v1/embeddings";

/// Most texts one request may carry: OpenAI's own limit. The embedders split them into the
/// batches their APIs take.
pub const MAX_INPUTS: usize = 2048;

/// A `POST /v1/embeddings` body. Unknown fields are refused by name, as chat completions refuse
/// theirs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbeddingsRequest {
    model: String,
    input: Input,
    /// `float` (the default) or `base64`.
    #[serde(default)]
    encoding_format: Option<String>,
    /// The vectors' length, for models that can shorten theirs.
    #[serde(default)]
    dimensions: Option<u32>,
    /// The end user. Accepted and not forwarded: it is for the vendor's abuse monitoring and
    /// changes nothing in the answer (exoclaw's embedding requests carry no such field).
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

/// OpenAI's `input`: a text, a list of texts, or token arrays (refused).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
    /// Token arrays (`[1, 2]`, `[[1, 2], [3]]`), or anything else; refused with the reason.
    Other(Value),
}

impl Input {
    /// The texts to embed, or why they are refused: none, more than [`MAX_INPUTS`], an empty one,
    /// token arrays, or something that is not text at all.
    fn into_texts(self) -> Result<Vec<String>, GatewayError> {
        let texts = match self {
            Input::One(text) => {
                if text.is_empty() {
                    return Err(GatewayError::invalid(
                        "`input` is empty; send the text to embed",
                        Some("input"),
                    ));
                }
                return Ok(vec![text]);
            }
            Input::Many(texts) => texts,
            Input::Other(value) => return Err(not_text(&value)),
        };
        if texts.is_empty() {
            return Err(GatewayError::invalid(
                "`input` is an empty list; send at least one text to embed",
                Some("input"),
            ));
        }
        if texts.len() > MAX_INPUTS {
            return Err(GatewayError::invalid(
                format!(
                    "`input` holds {} texts, more than the {MAX_INPUTS} one request may carry; send them in several requests",
                    texts.len()
                ),
                Some("input"),
            ));
        }
        if let Some(at) = texts.iter().position(String::is_empty) {
            return Err(GatewayError::invalid(
                format!("`input[{at}]` is empty; every text to embed must hold at least one character"),
                Some(&format!("input[{at}]")),
            ));
        }
        Ok(texts)
    }
}

/// Why an `input` that is neither a text nor a list of texts is refused.
fn not_text(value: &Value) -> GatewayError {
    let tokens = match value {
        Value::Array(items) => items.iter().all(|item| match item {
            Value::Number(_) => true,
            Value::Array(inner) => inner.iter().all(Value::is_number),
            _ => false,
        }),
        _ => false,
    };
    let message = if tokens {
        "`input` holds token arrays, which exoclaw does not take: its embedding models each have \
         their own tokenizer, so token ids mean nothing across them; send the text itself (a \
         string or a list of strings)"
    } else {
        "`input` must be a string or a list of strings"
    };
    GatewayError::invalid(message, Some("input"))
}

/// How the vectors are written in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EncodingFormat {
    /// JSON numbers.
    Float,
    /// Each vector's little-endian `f32` bytes, base64-encoded (standard alphabet, padded).
    Base64,
}

impl EncodingFormat {
    fn parse(format: Option<&str>) -> Result<Self, GatewayError> {
        match format {
            None | Some("float") => Ok(Self::Float),
            Some("base64") => Ok(Self::Base64),
            Some(other) => Err(GatewayError::invalid(
                format!(
                    "`encoding_format` is `{}`; it must be \"float\" (the default) or \"base64\"",
                    Escaped(other)
                ),
                Some("encoding_format"),
            )),
        }
    }
}

/// The answer: `{object: "list", data: [...], model, usage}`.
#[derive(Serialize)]
struct ListBody<'a> {
    object: &'static str,
    data: Vec<EmbeddingBody<'a>>,
    model: &'a str,
    usage: UsageBody,
}

#[derive(Serialize)]
struct EmbeddingBody<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

/// One vector, as the request's `encoding_format` asks.
#[derive(Serialize)]
#[serde(untagged)]
enum Vector<'a> {
    Float(&'a [f32]),
    Base64(String),
}

#[derive(Serialize)]
struct UsageBody {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// `POST /v1/embeddings`.
pub(crate) async fn handler(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    request: Request,
) -> Response {
    let started = Instant::now();
    let response = match json_request::<EmbeddingsRequest>(request, JsonApi::Embeddings).await {
        Ok(request) => match embed(&gateway, caller, request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::info!(error = %Escaped(&e), "embeddings failed");
                gateway.metrics.error(e.kind_name());
                e.into_response()
            }
        },
        Err(response) => response,
    };
    gateway.metrics.request(EMBEDDINGS, response.status().as_str(), started.elapsed());
    response
}

async fn embed(
    gateway: &Arc<Gateway>,
    caller: Caller,
    request: EmbeddingsRequest,
) -> Result<Response, GatewayError> {
    let format = EncodingFormat::parse(request.encoding_format.as_deref())?;
    let inputs = request.input.into_texts()?;
    if request.dimensions == Some(0) {
        return Err(GatewayError::invalid("`dimensions` must be at least 1", Some("dimensions")));
    }
    caller.check_model(&request.model)?;
    let served = gateway.source.embedder_for(&request.model).await?;
    if request.dimensions.is_some() && !served.dimensions {
        return Err(GatewayError::invalid(
            format!(
                "`dimensions` is not supported by the model `{}` (served by `{}`): it cannot shorten its vectors, or exoclaw does not know that it can; leave `dimensions` out",
                request.model, served.provider
            ),
            Some("dimensions"),
        ));
    }
    let input_chars: usize = inputs.iter().map(|text| text.chars().count()).sum();
    let count = inputs.len();
    // Budgets are reserved here, before anything goes upstream; a refusal costs nothing.
    let mut bill =
        Bill::open_embeddings(gateway, caller, &request.model, &served.provider, &served.model, input_chars)?;
    tracing::debug!(
        model = %Escaped(&request.model),
        upstream = %Escaped(&served.model),
        provider = %Escaped(&served.provider),
        inputs = count,
        "embeddings"
    );
    let mut upstream = EmbeddingRequest::new(served.model.as_str(), inputs);
    upstream.dimensions = request.dimensions;
    bill.sent();
    let embeddings = served.embedder.embed(upstream).await?;
    if embeddings.vectors.len() != count {
        // The embedders check this themselves; one that does not must not misnumber the answer.
        return Err(ProviderError::new(
            ErrorKind::Protocol,
            &served.provider,
            format!("{} texts were sent and {} vectors came back", count, embeddings.vectors.len()),
        )
        .into());
    }
    bill.embedded(embeddings.input_tokens);
    bill.settle();
    // A provider that does not count (Gemini) is reported as the bill estimated it.
    let tokens = embeddings.input_tokens.unwrap_or_else(|| Estimate::tokens_for_chars(input_chars));
    let data = embeddings
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingBody {
            object: "embedding",
            index,
            embedding: match format {
                EncodingFormat::Float => Vector::Float(vector),
                EncodingFormat::Base64 => Vector::Base64(base64_f32(vector)),
            },
        })
        .collect();
    let body = ListBody {
        object: "list",
        data,
        model: &request.model,
        usage: UsageBody { prompt_tokens: tokens, total_tokens: tokens },
    };
    Ok(Json(body).into_response())
}

/// `vector`'s little-endian `f32` bytes in standard base64 (RFC 4648 §4, padded): what OpenAI
/// answers with `encoding_format: "base64"`, and what its SDKs decode (`array("f", …)`,
/// `np.frombuffer(…, dtype="float32")`).
fn base64_f32(vector: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    let sextet = |n: u32, shift: u32| char::from(ALPHABET[usize::try_from((n >> shift) & 63).unwrap_or(0)]);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        out.push(sextet(n, 18));
        out.push(sextet(n, 12));
        out.push(if chunk.len() > 1 { sextet(n, 6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(n, 0) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(body: Value) -> Result<Vec<String>, GatewayError> {
        let request: EmbeddingsRequest = serde_json::from_value(body).map_err(|e| {
            let message = e.to_string();
            match crate::openai::unknown_field(&message) {
                Some(field) => crate::openai::unsupported_in(JsonApi::Embeddings, field),
                None => GatewayError::invalid(message, None),
            }
        })?;
        request.input.into_texts()
    }

    fn param(result: Result<Vec<String>, GatewayError>) -> String {
        match result {
            Err(GatewayError::InvalidRequest { param: Some(param), .. }) => param,
            other => panic!("expected a 400 naming a field: {other:?}"),
        }
    }

    #[test]
    fn one_text_or_a_list_of_texts() {
        assert_eq!(decode(json!({"model": "m", "input": "hi"})).unwrap(), ["hi"]);
        assert_eq!(decode(json!({"model": "m", "input": ["a", "b"]})).unwrap(), ["a", "b"]);
    }

    #[test]
    fn empty_too_many_tokens_and_unknown_fields_are_refused_by_name() {
        assert_eq!(param(decode(json!({"model": "m", "input": ""}))), "input");
        assert_eq!(param(decode(json!({"model": "m", "input": []}))), "input");
        assert_eq!(param(decode(json!({"model": "m", "input": ["a", ""]}))), "input[1]");
        let many = vec!["x"; MAX_INPUTS + 1];
        assert_eq!(param(decode(json!({"model": "m", "input": many}))), "input");
        assert_eq!(decode(json!({"model": "m", "input": vec!["x"; MAX_INPUTS]})).unwrap().len(), MAX_INPUTS);
        for tokens in [json!([1, 2, 3]), json!([[1, 2], [3]])] {
            match decode(json!({"model": "m", "input": tokens})) {
                Err(GatewayError::InvalidRequest { message, .. }) => {
                    assert!(message.contains("token arrays"), "{message}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(param(decode(json!({"model": "m", "input": {"text": "x"}}))), "input");
        match decode(json!({"model": "m", "input": "x", "truncate": true})) {
            Err(GatewayError::InvalidRequest { message, param }) => {
                assert_eq!(param.as_deref(), Some("truncate"));
                assert!(message.contains("embeddings API"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encoding_formats() {
        assert_eq!(EncodingFormat::parse(None).unwrap(), EncodingFormat::Float);
        assert_eq!(EncodingFormat::parse(Some("float")).unwrap(), EncodingFormat::Float);
        assert_eq!(EncodingFormat::parse(Some("base64")).unwrap(), EncodingFormat::Base64);
        assert!(matches!(
            EncodingFormat::parse(Some("int8")),
            Err(GatewayError::InvalidRequest { param: Some(p), .. }) if p == "encoding_format"
        ));
    }

    #[test]
    fn base64_is_the_little_endian_f32_bytes() {
        // 1.0 is 00 00 80 3f; -2.5 is 00 00 20 c0 (checked with Python's
        // `base64.b64encode(array.array("f", [1.0, -2.5]).tobytes())`).
        assert_eq!(base64_f32(&[1.0, -2.5]), "AACAPwAAIMA=");
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[]), "");
        // Three floats: 12 bytes, no padding.
        assert_eq!(base64_f32(&[0.0, 0.0, 0.0]), "AAAAAAAAAAAAAAAA");
    }
}

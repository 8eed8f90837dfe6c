//! JSON-RPC 2.0 framing: reading one request from a WebSocket message, and writing responses,
//! errors and notifications. One message holds one request; batches are refused.

use super::error::{Code, RpcError};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// A request (or, without `id`, a notification) that is well-formed JSON-RPC 2.0.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    /// `None`: a notification, never answered. `Some(Value::Null)` is a request with a null id.
    pub id: Option<Value>,
    /// The method's name.
    pub method: String,
    /// The params: always an object (absent params are `{}`).
    pub params: Value,
}

/// Why a message is not a request: the error to answer, with the id when one could be read
/// (otherwise null, as the specification says).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Malformed {
    pub id: Value,
    pub error: RpcError,
}

fn malformed(id: Value, code: Code, message: impl Into<String>) -> Malformed {
    Malformed { id, error: RpcError::new(code, message) }
}

/// Reads one JSON-RPC 2.0 request from a message's bytes.
// The error is built at most once per message and answered at once; boxing it buys nothing.
#[allow(clippy::result_large_err)]
pub(crate) fn parse(bytes: &[u8]) -> Result<Request, Malformed> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        malformed(
            Value::Null,
            Code::ParseError,
            format!("the message is not valid JSON ({e}); send one JSON-RPC 2.0 request object per message"),
        )
    })?;
    let mut object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err(malformed(
                Value::Null,
                Code::InvalidRequest,
                "batches are not supported; send one JSON-RPC request object per message",
            ));
        }
        _ => {
            return Err(malformed(
                Value::Null,
                Code::InvalidRequest,
                "a JSON-RPC request must be a JSON object",
            ));
        }
    };
    let id = match object.remove("id") {
        None => None,
        Some(id @ (Value::Null | Value::Number(_) | Value::String(_))) => Some(id),
        Some(_) => {
            return Err(malformed(
                Value::Null,
                Code::InvalidRequest,
                "`id` must be a string, a number or null",
            ));
        }
    };
    let answer_id = id.clone().unwrap_or(Value::Null);
    match object.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        Some(other) => {
            return Err(malformed(
                answer_id,
                Code::InvalidRequest,
                format!("`jsonrpc` is {other}; this gateway speaks JSON-RPC 2.0: send \"jsonrpc\": \"2.0\""),
            ));
        }
        None => {
            return Err(malformed(
                answer_id,
                Code::InvalidRequest,
                "`jsonrpc` is missing; this gateway speaks JSON-RPC 2.0: send \"jsonrpc\": \"2.0\"",
            ));
        }
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        Some(_) => return Err(malformed(answer_id, Code::InvalidRequest, "`method` must be a string")),
        None => return Err(malformed(answer_id, Code::InvalidRequest, "`method` is missing")),
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(params @ Value::Object(_)) => params,
        Some(_) => {
            return Err(Malformed {
                id: answer_id,
                error: RpcError::invalid_params(
                    &method,
                    "params must be an object (by-name), not by-position",
                ),
            });
        }
    };
    Ok(Request { id, method, params })
}

/// A success response.
pub(crate) fn result(id: &Value, result: &impl Serialize) -> String {
    match serde_json::to_value(result) {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string(),
        Err(e) => error(id, &RpcError::internal(format!("the result could not be encoded: {e}"))),
    }
}

/// An error response.
pub(crate) fn error(id: &Value, error: &RpcError) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()}).to_string()
}

/// A notification from the server.
pub(crate) fn notification(method: &str, params: &impl Serialize) -> String {
    let params = serde_json::to_value(params).unwrap_or(Value::Null);
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(bytes: &str) -> (Value, i64) {
        let e = parse(bytes.as_bytes()).unwrap_err();
        (e.id, e.error.code.number())
    }

    #[test]
    fn requests_and_notifications_are_read() {
        let r = parse(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#).unwrap();
        assert_eq!((r.id, r.method.as_str(), r.params), (Some(json!(7)), "ping", json!({})));
        let n = parse(br#"{"jsonrpc":"2.0","method":"chat.cancel","params":{"request_id":"a"}}"#).unwrap();
        assert_eq!((n.id, n.params), (None, json!({"request_id": "a"})));
        let null_id = parse(br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).unwrap();
        assert_eq!(null_id.id, Some(Value::Null));
    }

    #[test]
    fn each_malformation_gets_its_code_and_the_id_when_known() {
        assert_eq!(code("{nope"), (Value::Null, -32700));
        assert_eq!(code("[]"), (Value::Null, -32600));
        assert_eq!(code("3"), (Value::Null, -32600));
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#), (Value::Null, -32600));
        assert_eq!(code(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#), (json!(1), -32600));
        assert_eq!(code(r#"{"id":"x","method":"ping"}"#), (json!("x"), -32600));
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1}"#), (json!(1), -32600));
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#), (json!(1), -32602));
        let e = parse(br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#).unwrap_err();
        assert!(e.error.message.contains("send \"jsonrpc\": \"2.0\""), "{}", e.error.message);
    }

    #[test]
    fn responses_are_json_rpc() {
        let ok: Value = serde_json::from_str(&result(&json!(1), &json!({"a": 1}))).unwrap();
        assert_eq!(ok, json!({"jsonrpc": "2.0", "id": 1, "result": {"a": 1}}));
        let err: Value =
            serde_json::from_str(&error(&Value::Null, &RpcError::new(Code::ParseError, "bad"))).unwrap();
        assert_eq!(err["error"], json!({"code": -32700, "message": "bad", "data": {"code": "parse_error"}}));
    }
}

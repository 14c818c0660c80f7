//! JSON-RPC 2.0 framing on the management socket: one request (or batch) per
//! line of UTF-8 JSON, one response (or batch of responses) per line back.
//! Requests without an `id` are notifications: run, never answered.
//!
//! Invariant: every line a client sends gets exactly one line back unless
//! it held only notifications; a line that is not a request gets an error
//! response with id null, never a dropped connection.

use super::error::{RpcError, INVALID_REQUEST, PARSE_ERROR};
use serde_json::{json, Value};

/// Longest request line accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Most requests in one batch.
pub const MAX_BATCH: usize = 256;

/// One well-formed request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// `None` for a notification.
    pub id: Option<Value>,
    pub method: String,
    /// `{}` when the request had no params.
    pub params: Value,
}

/// What one line held.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// A request, or the error response for an unusable one.
    Single(Result<Request, Value>),
    Batch(Vec<Result<Request, Value>>),
    /// Unusable as a whole: answer this response.
    Invalid(Value),
}

/// A success response.
pub fn success(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response.
pub fn failure(id: &Value, error: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

fn request(v: Value) -> Result<Request, Value> {
    let invalid = |id: &Value, why: &str| failure(id, &RpcError::new(INVALID_REQUEST, why));
    let Value::Object(mut o) = v else {
        return Err(invalid(&Value::Null, "a request is a JSON object"));
    };
    let id = o.remove("id");
    let shown_id = id.clone().unwrap_or(Value::Null);
    if !matches!(
        id,
        None | Some(Value::Null | Value::Number(_) | Value::String(_))
    ) {
        return Err(invalid(
            &Value::Null,
            "id must be a number, a string or null",
        ));
    }
    if o.remove("jsonrpc") != Some(Value::String("2.0".into())) {
        return Err(invalid(&shown_id, "jsonrpc must be \"2.0\""));
    }
    let method = match o.remove("method") {
        Some(Value::String(m)) => m,
        _ => return Err(invalid(&shown_id, "method must be a string")),
    };
    let params = match o.remove("params") {
        None | Some(Value::Null) => json!({}),
        Some(p @ Value::Object(_)) => p,
        Some(_) => return Err(invalid(&shown_id, "params must be an object (by name)")),
    };
    if let Some(extra) = o.keys().next() {
        return Err(invalid(&shown_id, &format!("unknown member {extra:?}")));
    }
    Ok(Request { id, method, params })
}

/// Parses one line.
pub fn parse(line: &str) -> Incoming {
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return Incoming::Invalid(failure(
                &Value::Null,
                &RpcError::new(PARSE_ERROR, format!("not JSON: {e}")),
            ))
        }
    };
    match value {
        Value::Array(items) if items.is_empty() => Incoming::Invalid(failure(
            &Value::Null,
            &RpcError::new(INVALID_REQUEST, "an empty batch"),
        )),
        Value::Array(items) if items.len() > MAX_BATCH => Incoming::Invalid(failure(
            &Value::Null,
            &RpcError::new(
                INVALID_REQUEST,
                format!("a batch of {} requests; at most {MAX_BATCH}", items.len()),
            ),
        )),
        Value::Array(items) => Incoming::Batch(items.into_iter().map(request).collect()),
        other => Incoming::Single(request(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_notifications_batches_and_garbage() {
        let Incoming::Single(Ok(r)) = parse(r#"{"jsonrpc":"2.0","id":1,"method":"volume_list"}"#)
        else {
            panic!()
        };
        assert_eq!(
            (r.id, r.method.as_str(), r.params),
            (Some(json!(1)), "volume_list", json!({}))
        );
        let Incoming::Single(Ok(n)) = parse(r#"{"jsonrpc":"2.0","method":"x","params":{"a":1}}"#)
        else {
            panic!()
        };
        assert_eq!(n.id, None);
        match parse("{nope") {
            Incoming::Invalid(v) => assert_eq!(v["error"]["code"], PARSE_ERROR),
            other => panic!("{other:?}"),
        }
        for bad in [
            r#"{"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":3}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#,
            r#"{"jsonrpc":"2.0","id":[1],"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","extra":true}"#,
            r#"7"#,
        ] {
            match parse(bad) {
                Incoming::Single(Err(v)) => {
                    assert_eq!(v["error"]["code"], INVALID_REQUEST, "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        match parse(r#"[{"jsonrpc":"2.0","id":1,"method":"a"}, 5]"#) {
            Incoming::Batch(b) => assert!(b[0].is_ok() && b[1].is_err()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("[]"), Incoming::Invalid(_)));
    }
}

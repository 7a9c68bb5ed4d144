//! The body of a request: read under the size limit, then checked for its
//! content type and parsed as the JSON object every POST takes.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value};
use warp::http::HeaderMap;

use crate::error::{AppError, FieldError};

/// Reads the whole body, refusing it once it passes `limit` bytes.
///
/// A refused body is still read and discarded up to [`DRAIN_FACTOR`] times the
/// limit: a server that answers 413 and closes while the client is still
/// sending makes the client fail with a broken pipe before it can read the
/// answer. Beyond that the connection is dropped, so a refusal never costs
/// more than a bounded read.
pub async fn read_body<S, B>(headers: &HeaderMap, stream: S, limit: u64) -> Result<Bytes, AppError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let declared = headers
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let drain_cap = limit.saturating_mul(DRAIN_FACTOR);
    if declared.is_some_and(|n| n > drain_cap) {
        return Err(AppError::PayloadTooLarge { limit });
    }
    let mut body = BytesMut::new();
    let mut seen: u64 = 0;
    futures_util::pin_mut!(stream);
    while let Some(chunk) = stream.next().await {
        let mut chunk =
            chunk.map_err(|_| AppError::bad_request("the request body could not be read"))?;
        seen = seen.saturating_add(chunk.remaining() as u64);
        if seen > drain_cap {
            break;
        }
        if seen > limit {
            chunk.advance(chunk.remaining());
            continue;
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            body.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    if seen > limit || declared.is_some_and(|n| n > limit) {
        return Err(AppError::PayloadTooLarge { limit });
    }
    Ok(body.freeze())
}

/// How far past the limit a refused body is still read (see [`read_body`]).
const DRAIN_FACTOR: u64 = 16;

fn is_json_content_type(headers: &HeaderMap) -> Option<bool> {
    let value = headers.get(warp::http::header::CONTENT_TYPE)?;
    let mime = value
        .to_str()
        .ok()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    let mime = mime.to_ascii_lowercase();
    Some(
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")),
    )
}

/// The JSON object of a POST. `required`: whether an absent body is an error
/// (create, payment-status) or means "no input" (cancel, retry, backups).
pub fn json_object(
    headers: &HeaderMap,
    body: &[u8],
    required: bool,
) -> Result<Option<Map<String, Value>>, AppError> {
    let content_type = is_json_content_type(headers);
    let empty = body.iter().all(u8::is_ascii_whitespace);
    if empty {
        if content_type == Some(false) && required {
            return Err(AppError::UnsupportedMediaType);
        }
        if required {
            return Err(AppError::invalid_fields(vec![FieldError::new(
                "body",
                "a JSON object is required",
            )]));
        }
        return Ok(None);
    }
    if content_type != Some(true) {
        return Err(AppError::UnsupportedMediaType);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        AppError::invalid_fields(vec![FieldError::new(
            "body",
            format!("malformed JSON at line {} column {}", e.line(), e.column()),
        )])
    })?;
    match value {
        Value::Object(map) => Ok(Some(map)),
        _ => Err(AppError::invalid_fields(vec![FieldError::new(
            "body",
            "must be a JSON object",
        )])),
    }
}

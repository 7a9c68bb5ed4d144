//! Turning raw HTTP input into validated values: body reading under the size
//! limit, content-type rules, JSON shape checks that report every bad field,
//! query strings, and the few headers vpsd reads.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use warp::http::HeaderMap;

use crate::domain::lifecycle::Renewing;
use crate::domain::time::Millis;
use crate::domain::webhook::{DeliveryQuery, DeliveryStatus};
use crate::domain::{OrderStatus, PlanDuration, RenewalType, TerminationReason};
use crate::error::{AppError, FieldError};
use crate::service::{IdempotencyKey, NewOrder};

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

/// Collects field errors so one response names every problem.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    fn new(map: &'a Map<String, Value>, allowed: &[&str]) -> Fields<'a> {
        let mut errors = Vec::new();
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                errors.push(FieldError::new(clip(key), "is not a known field"));
            }
        }
        Fields { map, errors }
    }

    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// A string field; `null` counts as absent.
    fn text(&mut self, field: &str, required: bool, max_len: usize) -> Option<String> {
        match self.map.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.fail(field, "is required");
                }
                None
            }
            Some(Value::String(s)) => {
                if s.is_empty() {
                    self.fail(field, "must not be empty");
                    None
                } else if s.chars().count() > max_len {
                    self.fail(field, format!("must be at most {max_len} characters"));
                    None
                } else if s.chars().any(char::is_control) {
                    self.fail(field, "must not contain control characters");
                    None
                } else {
                    Some(s.clone())
                }
            }
            Some(_) => {
                self.fail(field, "must be a string");
                None
            }
        }
    }

    /// Free text (`notes`, `reason`): like [`Fields::text`], but newlines and
    /// tabs are allowed, as v1 allowed them (SPEC §12). A carriage return only
    /// as part of CRLF: alone it can overwrite a line on an operator's terminal.
    fn free_text(&mut self, field: &str, max_len: usize) -> Option<String> {
        let Some(Value::String(s)) = self.map.get(field) else {
            return self.text(field, false, max_len);
        };
        let mut chars = s.chars().peekable();
        let mut refused = false;
        while let Some(c) = chars.next() {
            let allowed = match c {
                '\n' | '\t' => true,
                '\r' => chars.peek() == Some(&'\n'),
                c => !c.is_control(),
            };
            if !allowed {
                refused = true;
                break;
            }
        }
        if refused {
            self.fail(
                field,
                "must not contain control characters other than newlines and tabs",
            );
            return None;
        }
        // Same length and emptiness rules as other strings; the control
        // characters allowed above are masked out of that check.
        let masked: String = s
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut probe = Map::new();
        probe.insert(field.to_string(), Value::String(masked));
        let mut check = Fields {
            map: &probe,
            errors: Vec::new(),
        };
        let fine = check.text(field, false, max_len).is_some();
        self.errors.extend(check.errors);
        fine.then(|| s.clone())
    }

    /// A catalog id (SPEC §12): 1-64 characters of `A-Za-z0-9._:-`, and not
    /// `.` or `..`, which a path would read as a directory step.
    fn catalog_id(&mut self, field: &str) -> Option<String> {
        let id = self.text(field, true, MAX_ID_LEN)?;
        if let Err(why) = check_catalog_id(&id) {
            self.fail(field, why);
            return None;
        }
        Some(id)
    }

    /// A whole-number field within `min..=max`; `null` counts as absent.
    fn integer(&mut self, field: &str, required: bool, min: u64, max: u64) -> Option<u64> {
        match self.map.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.fail(field, "is required");
                }
                None
            }
            Some(v) => match v.as_u64().filter(|n| (min..=max).contains(n)) {
                Some(n) => Some(n),
                None => {
                    self.fail(field, format!("must be a whole number from {min} to {max}"));
                    None
                }
            },
        }
    }

    /// A text field that must be one of `allowed`.
    fn one_of(&mut self, field: &str, required: bool, allowed: &[&str]) -> Option<String> {
        let text = self.text(field, required, 64)?;
        if allowed.contains(&text.as_str()) {
            Some(text)
        } else {
            self.fail(field, format!("must be one of {}", allowed.join(", ")));
            None
        }
    }

    fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, AppError> {
        if !self.errors.is_empty() {
            return Err(AppError::invalid_fields(self.errors));
        }
        value().ok_or_else(|| AppError::bad_request("invalid request body"))
    }
}

/// Field names echoed back are clipped, so a hostile 60 KiB key is not mirrored.
fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

const MAX_ID_LEN: usize = 64;
/// Stored free text (`notes`, `reason`) is bounded so repeated changes
/// cannot grow the history without limit (SPEC §12).
const MAX_NOTE_LEN: usize = crate::domain::MAX_FREE_TEXT;
pub const MAX_SSH_KEYS: usize = 10;

pub fn new_order(map: &Map<String, Value>) -> Result<NewOrder, AppError> {
    let mut f = Fields::new(
        map,
        &[
            "planId",
            "imageId",
            "duration",
            "couponCode",
            "region",
            "hostname",
            "sshPublicKeys",
        ],
    );
    let plan_id = f.catalog_id("planId");
    let image_id = f.catalog_id("imageId");
    let duration = match f.text("duration", true, 32) {
        Some(d) => match PlanDuration::parse(&d) {
            Some(d) => Some(d),
            None => {
                f.fail(
                    "duration",
                    "must be one of MONTHLY, QUARTERLY, SEMI_ANNUAL, ANNUAL",
                );
                None
            }
        },
        None => None,
    };
    // An empty coupon field is how form clients say "no coupon".
    let coupon_code = match map.get("couponCode") {
        Some(Value::String(s)) if s.trim().is_empty() => None,
        _ => f
            .text("couponCode", false, 64)
            .map(|c| c.trim().to_string()),
    };
    let region = f.text("region", false, 64);
    let hostname = f.text("hostname", false, 63);
    if let Some(h) = &hostname {
        if let Err(why) = check_hostname(h) {
            f.fail("hostname", why);
        }
    }
    let ssh_public_keys = match map.get("sshPublicKeys") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(keys)) if keys.len() > MAX_SSH_KEYS => {
            f.fail("sshPublicKeys", format!("at most {MAX_SSH_KEYS} keys"));
            Vec::new()
        }
        Some(Value::Array(keys)) => {
            let mut out = Vec::new();
            for (i, key) in keys.iter().enumerate() {
                match key.as_str().map(check_ssh_key) {
                    Some(Ok(k)) => out.push(k),
                    Some(Err(why)) => f.fail(&format!("sshPublicKeys[{i}]"), why),
                    None => f.fail(&format!("sshPublicKeys[{i}]"), "must be a string"),
                }
            }
            out
        }
        Some(_) => {
            f.fail("sshPublicKeys", "must be an array of OpenSSH public keys");
            Vec::new()
        }
    };
    f.finish(|| {
        Some(NewOrder {
            plan_id: plan_id?,
            image_id: image_id?,
            duration: duration?,
            coupon_code,
            region,
            hostname,
            ssh_public_keys,
        })
    })
}

/// The characters of a plan or image id (length is checked by the caller).
pub fn check_catalog_id(id: &str) -> Result<(), &'static str> {
    if id == "." || id == ".." {
        return Err("must not be \".\" or \"..\"");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
    if !id.chars().all(allowed) {
        return Err("may contain only letters, digits and . _ : -");
    }
    Ok(())
}

/// 1-63 characters of `a-z 0-9 . -`, starting with a letter and ending with a
/// letter or digit (DigitalOcean's droplet name rules, lower-cased).
pub fn check_hostname(h: &str) -> Result<(), &'static str> {
    let ok_chars = h
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let first_ok = h.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    let last_ok = h
        .bytes()
        .last()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if h.is_empty() || h.len() > 63 || !ok_chars || !first_ok || !last_ok {
        return Err("must be 1-63 characters of a-z, 0-9, '.' and '-', start with a letter and end with a letter or digit");
    }
    Ok(())
}

const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// An OpenSSH public key line: `type base64 [comment]`, whose decoded blob names
/// the same type. Returned normalised to single spaces; nothing in it can break
/// out of the cloud-init document it is written into.
pub fn check_ssh_key(line: &str) -> Result<String, &'static str> {
    use base64::Engine;
    const WHY: &str = "must be an OpenSSH public key such as \"ssh-ed25519 AAAA... user@host\"";
    if line.len() > 16 * 1024 || line.chars().any(char::is_control) {
        return Err(WHY);
    }
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err(WHY);
    };
    let comment: Vec<&str> = parts.collect();
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(WHY);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| WHY)?;
    let named = decoded
        .get(..4)
        .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
        .and_then(|len| decoded.get(4..4 + len))
        .ok_or(WHY)?;
    if named != kind.as_bytes() {
        return Err(WHY);
    }
    let comment_ok = comment
        .iter()
        .all(|w| w.chars().all(|c| !c.is_control() && c != '"' && c != '\\'));
    if !comment_ok {
        return Err(WHY);
    }
    let mut normalised = format!("{kind} {blob}");
    if !comment.is_empty() {
        normalised.push(' ');
        normalised.push_str(&comment.join(" "));
    }
    Ok(normalised)
}

/// payment-status body: `{"status": "PAID" | "PAYMENT_FAILED", "notes"?}`.
pub fn payment_status(map: &Map<String, Value>) -> Result<(bool, Option<String>), AppError> {
    let mut f = Fields::new(map, &["status", "notes"]);
    let paid = match f.text("status", true, 32).as_deref() {
        Some("PAID") => Some(true),
        Some("PAYMENT_FAILED") => Some(false),
        Some(_) => {
            f.fail("status", "must be PAID or PAYMENT_FAILED");
            None
        }
        None => None,
    };
    let notes = f.free_text("notes", MAX_NOTE_LEN);
    f.finish(|| Some((paid?, notes)))
}

/// A body for a route that takes no input (retry, backups, replay): absent or
/// an empty JSON object. Any field is refused by name, as everywhere else: a
/// client that believes it passes an option must learn that it does not.
pub fn no_input(headers: &HeaderMap, body: &[u8]) -> Result<(), AppError> {
    let Some(map) = json_object(headers, body, false)? else {
        return Ok(());
    };
    Fields::new(&map, &[]).finish(|| Some(()))
}

/// cancel, suspend, unsuspend and the owner's terminate: `{"reason"?}`;
/// absent body means no reason.
pub fn cancel_reason(map: Option<&Map<String, Value>>) -> Result<Option<String>, AppError> {
    let Some(map) = map else {
        return Ok(None);
    };
    let mut f = Fields::new(map, &["reason"]);
    let reason = f.free_text("reason", MAX_NOTE_LEN);
    f.finish(|| Some(reason))
}

/// Admin terminate body: `{"reason"?, "terminationReason"?: ADMIN_TERMINATED |
/// POLICY_VIOLATION}`; absent body means ADMIN_TERMINATED without a reason.
pub fn admin_termination(
    map: Option<&Map<String, Value>>,
) -> Result<(TerminationReason, Option<String>), AppError> {
    let Some(map) = map else {
        return Ok((TerminationReason::AdminTerminated, None));
    };
    let mut f = Fields::new(map, &["reason", "terminationReason"]);
    let reason = f.free_text("reason", MAX_NOTE_LEN);
    let allowed = ["ADMIN_TERMINATED", "POLICY_VIOLATION"];
    let why = f
        .one_of("terminationReason", false, &allowed)
        .and_then(|t| TerminationReason::parse(&t))
        .unwrap_or(TerminationReason::AdminTerminated);
    f.finish(|| Some((why, reason)))
}

/// renewals body: `{"periods"?: 1-12, "amount": >= 0, "renewalType"?, "notes"?}`.
pub fn renewal(map: &Map<String, Value>) -> Result<Renewing, AppError> {
    let mut f = Fields::new(map, &["periods", "amount", "renewalType", "notes"]);
    let periods = f.integer("periods", false, 1, 12).unwrap_or(1);
    let amount = f.integer("amount", true, 0, i64::MAX as u64);
    let renewal_type = f
        .one_of("renewalType", false, &["MANUAL_RENEWAL", "AUTO_RENEWAL"])
        .and_then(|t| RenewalType::parse(&t))
        .unwrap_or(RenewalType::ManualRenewal);
    let notes = f.free_text("notes", MAX_NOTE_LEN);
    f.finish(|| {
        Some(Renewing {
            periods: u32::try_from(periods).ok()?,
            amount: amount?,
            renewal_type,
            notes,
        })
    })
}

/// expiry body: `{"expiresAt": RFC 3339, "reason"?}`. An instant after
/// 9999-12-31T23:59:59.999Z (reachable with a negative offset) has no
/// four-digit year to render, so it is refused rather than stored.
pub fn expiry_change(map: &Map<String, Value>) -> Result<(Millis, Option<String>), AppError> {
    let mut f = Fields::new(map, &["expiresAt", "reason"]);
    let at = f.text("expiresAt", true, 64);
    let parsed = at.as_deref().and_then(crate::domain::time::parse_rfc3339);
    match parsed {
        None if at.is_some() => f.fail("expiresAt", "must be an RFC 3339 timestamp"),
        Some(ms) if !crate::domain::time::in_range(ms) => f.fail(
            "expiresAt",
            format!("must not be after {}", crate::domain::time::LATEST_TEXT),
        ),
        _ => {}
    }
    let reason = f.free_text("reason", MAX_NOTE_LEN);
    f.finish(|| Some((parsed?, reason)))
}

/// A path id must be a UUID; anything else is 400 (never a lookup).
pub fn order_id(text: &str) -> Result<Uuid, AppError> {
    Uuid::try_parse(text)
        .map_err(|_| AppError::invalid_fields(vec![FieldError::new("id", "must be a UUID")]))
}

/// `page`, `limit`, `status` and (admin) `userId` from the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams {
    pub page: u32,
    pub limit: u32,
    pub status: Option<OrderStatus>,
    pub user_id: Option<String>,
    pub expires_before: Option<Millis>,
}

pub fn list_params(query: &str, allow_user_filter: bool) -> Result<ListParams, AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| AppError::bad_request("the query string is malformed"))?;
    let mut params = ListParams {
        page: 1,
        limit: 10,
        status: None,
        user_id: None,
        expires_before: None,
    };
    let mut errors = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "page" => match value.parse::<u32>() {
                Ok(p) if p >= 1 => params.page = p,
                _ => errors.push(FieldError::new("page", "must be an integer of at least 1")),
            },
            "limit" => match value.parse::<u32>() {
                Ok(l) if (1..=100).contains(&l) => params.limit = l,
                _ => errors.push(FieldError::new("limit", "must be an integer from 1 to 100")),
            },
            "status" => match OrderStatus::parse(&value) {
                Some(s) => params.status = Some(s),
                None => errors.push(FieldError::new(
                    "status",
                    "must be one of PENDING_PAYMENT, PAID, PROVISIONING, ACTIVE, FAILED, CANCELED, SUSPENDED, TERMINATED",
                )),
            },
            "userId" if allow_user_filter => {
                if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) {
                    errors.push(FieldError::new(
                        "userId",
                        "must be 1-255 printable characters",
                    ));
                } else {
                    params.user_id = Some(value);
                }
            }
            "expiresBefore" if allow_user_filter => {
                match crate::domain::time::parse_rfc3339(&value) {
                    Some(at) => params.expires_before = Some(at),
                    None => errors.push(FieldError::new(
                        "expiresBefore",
                        "must be an RFC 3339 timestamp",
                    )),
                }
            }
            // Unknown parameters are ignored, as v1 clients send cache-busters.
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(params)
    } else {
        Err(AppError::invalid_fields(errors))
    }
}

/// `status`, `orderId`, `page`, `limit` of the delivery list (API and
/// console); unknown parameters are ignored as on the order lists.
pub fn delivery_query(query: &str) -> Result<DeliveryQuery, AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| AppError::bad_request("the query string is malformed"))?;
    delivery_filters(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// The same filters from already-decoded pairs.
pub fn delivery_filters<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<DeliveryQuery, AppError> {
    let mut q = DeliveryQuery {
        status: None,
        order_id: None,
        page: 1,
        limit: 10,
    };
    let mut errors = Vec::new();
    for (key, value) in pairs {
        match key {
            "status" => match DeliveryStatus::parse(value) {
                Some(s) => q.status = Some(s),
                None => errors.push(FieldError::new(
                    "status",
                    "must be one of pending, delivered, failed",
                )),
            },
            "orderId" => match Uuid::try_parse(value) {
                Ok(id) => q.order_id = Some(id),
                Err(_) => errors.push(FieldError::new("orderId", "must be a UUID")),
            },
            "page" => match value.parse::<u32>() {
                Ok(p) if p >= 1 => q.page = p,
                _ => errors.push(FieldError::new("page", "must be an integer of at least 1")),
            },
            "limit" => match value.parse::<u32>() {
                Ok(l) if (1..=100).contains(&l) => q.limit = l,
                _ => errors.push(FieldError::new("limit", "must be an integer from 1 to 100")),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(AppError::invalid_fields(errors))
    }
}

/// `Idempotency-Key`: 1-255 printable ASCII characters, if sent.
pub fn idempotency_key(
    headers: &HeaderMap,
    scope: String,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Option<IdempotencyKey>, AppError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(AppError::invalid_fields(vec![FieldError::new(
            "Idempotency-Key",
            "must be 1-255 printable ASCII characters",
        )]));
    }
    let key = String::from_utf8_lossy(bytes).into_owned();
    Ok(Some(IdempotencyKey {
        scope,
        key,
        fingerprint: fingerprint(method, path, body),
    }))
}

/// SHA-256 over method, path and the body in canonical form (parsed and
/// re-serialised with sorted keys), so whitespace or key order do not make the
/// same request look different.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let canonical = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| serde_json::to_vec(&v).ok())
        .unwrap_or_else(|| body.to_vec());
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update([0]);
    hash.update(path.as_bytes());
    hash.update([0]);
    hash.update(&canonical);
    hash.finalize().into()
}

/// `X-Admin-Id`: 1-64 characters of `A-Za-z0-9._@-`, if sent.
pub fn admin_id(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(value) = headers.get("x-admin-id") else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(b));
    if !ok {
        return Err(AppError::invalid_fields(vec![FieldError::new(
            "X-Admin-Id",
            "must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', '@' and '-'",
        )]));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICrc/SKQ2lxYjKAY5aGy0IyKZvZJJarimIXYH8ti5R7p alice@laptop";

    #[test]
    fn accepts_a_real_ed25519_key() {
        assert!(check_ssh_key(ED25519).is_ok());
        assert!(check_ssh_key("ssh-ed25519 AAAA").is_err());
        assert!(check_ssh_key(
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIMm2x4YFQ8l9Jp5q3d6Yv0Zs0iU0j0JtO8nN4lq1c2Xh"
        )
        .is_err());
        assert!(check_ssh_key("hello").is_err());
    }

    #[test]
    fn catalog_ids() {
        for ok in ["vps-basic", "a", "plan:v2", "x.y_z", "...", "9a1f-uuid"] {
            assert!(check_catalog_id(ok).is_ok(), "{ok}");
        }
        for bad in [".", "..", "a/b", "a b", "a?b", "a%2F", "é"] {
            assert!(check_catalog_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames() {
        assert!(check_hostname("web-1.example").is_ok());
        assert!(check_hostname("1web").is_err());
        assert!(check_hostname("web-").is_err());
        assert!(check_hostname("Web").is_err());
        assert!(check_hostname(&"a".repeat(64)).is_err());
    }

    #[test]
    fn list_params_bounds() {
        assert_eq!(list_params("", false).unwrap().limit, 10);
        assert!(list_params("page=0", false).is_err());
        assert!(list_params("limit=101", false).is_err());
        assert!(list_params("limit=-1", false).is_err());
        assert!(list_params("status=NOPE", false).is_err());
        assert_eq!(
            list_params("status=PAID&page=2&limit=5", false)
                .unwrap()
                .page,
            2
        );
        assert_eq!(list_params("userId=u1", false).unwrap().user_id, None);
        assert_eq!(
            list_params("userId=u1", true).unwrap().user_id.as_deref(),
            Some("u1")
        );
    }

    #[test]
    fn fingerprint_ignores_whitespace_and_key_order() {
        let a = fingerprint("POST", "/x", br#"{"a":1,"b":2}"#);
        let b = fingerprint("POST", "/x", b"{ \"b\": 2, \"a\": 1 }");
        let c = fingerprint("POST", "/x", br#"{"a":1,"b":3}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    proptest! {
        #[test]
        fn any_json_object_is_accepted_or_refused_never_panics(body in "\\PC*") {
            let mut headers = HeaderMap::new();
            headers.insert("content-type", "application/json".parse().unwrap());
            if let Ok(Some(map)) = json_object(&headers, body.as_bytes(), true) {
                let _ = new_order(&map);
            }
        }
    }
}

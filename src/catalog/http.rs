//! The Webrana catalog-service (SPEC §3), over blocking ureq calls.
//!
//! Only a clear answer counts: 404/400/422 on a plan or image means "unknown", a
//! `valid:false` body or a 4xx from coupon validate means "rejected". Anything else
//! (no answer, timeout, 5xx, a redirect, a body that is not the documented shape)
//! is `CatalogUnavailable`, so an order is refused with 503 rather than built on a
//! guess.
//!
//! The real (v1 era) service differs from its documentation in ways this module
//! absorbs (SPEC §3): plans without `providerSizeSlug`/`isActive`, float prices,
//! 400 for a validate body it dislikes (non-UUID ids), the plan's image list at
//! `images?planId=`, and the later plan shape with `availablePeriods`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{
    CatalogUnavailable, CouponGrant, CouponRequest, CouponVerdict, ImageInfo, PlanInfo, PlanPrice,
};
use crate::domain::PlanDuration;

/// Bodies are small JSON documents; anything bigger is not the catalog talking.
const MAX_BODY: u64 = 1 << 20;
/// How much of an unexpected body is quoted in an error, for the logs.
const QUOTE_CHARS: usize = 120;
/// Plans and coupons remembered as "already warned about rounding"; beyond
/// this the warning simply repeats, and memory stays bounded.
const MAX_WARNED: usize = 1024;
/// The coupon refusal reason for a validate request the service refused
/// outright (a 4xx without a `valid:false` answer).
pub const CATALOG_REJECTED: &str = "CATALOG_REJECTED";

pub struct HttpCatalog {
    /// Built once: keeps connections alive between calls and carries the timeout.
    agent: ureq::Agent,
    /// Without a trailing slash.
    base_url: String,
    /// `catalog.sizes`: plan id -> DO size slug, when the service names none.
    sizes: BTreeMap<String, String>,
    /// Plans and coupons whose fractional prices were already logged.
    warned: Mutex<HashSet<String>>,
}

impl HttpCatalog {
    /// `timeout` bounds each whole call (connect, send, receive).
    pub fn new(base_url: &str, timeout: Duration, sizes: &BTreeMap<String, String>) -> HttpCatalog {
        // A redirect is not the catalog answering: it reads as an
        // unexpected status.
        let agent = crate::http_client::agent(crate::http_client::config(timeout).build());
        HttpCatalog {
            agent,
            base_url: base_url.trim_end_matches('/').to_string(),
            sizes: sizes.clone(),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// Logs, once per plan or coupon, that its price had a fraction and was
    /// rounded (v1 did the same; the service stores floats).
    fn warn_rounded(&self, what: &str, id: &str) {
        let key = format!("{what}:{id}");
        let first = {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            if warned.len() >= MAX_WARNED {
                warned.clear();
            }
            warned.insert(key)
        };
        if first {
            tracing::warn!(
                what,
                id,
                "catalog-service amount has a fraction; rounded half away from zero to a whole minor unit"
            );
        }
    }

    /// Image ids the plan offers (`GET images?planId=`); empty offers all.
    fn plan_image_ids(&self, plan_id: &str) -> Result<Vec<String>, CatalogUnavailable> {
        let answer = self.get(&format!(
            "/api/v1/catalog/images?planId={}",
            encode_segment(plan_id)
        ))?;
        let listed: Vec<ListedImage> = answer.data()?;
        Ok(listed.into_iter().map(|image| image.id).collect())
    }

    fn get(&self, path: &str) -> Result<Answer, CatalogUnavailable> {
        let url = format!("{}{path}", self.base_url);
        let result = self.agent.get(&url).call();
        Answer::read(&format!("GET {path}"), result)
    }

    fn post(&self, path: &str, body: &Value) -> Result<Answer, CatalogUnavailable> {
        let url = format!("{}{path}", self.base_url);
        let result = self.agent.post(&url).send_json(body);
        Answer::read(&format!("POST {path}"), result)
    }
}

impl super::Catalog for HttpCatalog {
    fn plan(&self, id: &str) -> Result<Option<PlanInfo>, CatalogUnavailable> {
        let answer = self.get(&format!("/api/v1/catalog/plans/{}", encode_segment(id)))?;
        if answer.is_unknown() {
            return Ok(None);
        }
        let data: PlanData = answer.data()?;
        let (mut plan, rounded) = data
            .into_info(id, &self.sizes)
            .map_err(|e| answer.garbage(&e))?;
        if rounded {
            self.warn_rounded("plan", &plan.id);
        }
        // Only an orderable plan needs its image list: the others are refused.
        if plan.active && plan.size_slug.is_some() {
            plan.allowed_image_ids = self.plan_image_ids(&plan.id)?;
        }
        Ok(Some(plan))
    }

    fn image(&self, id: &str) -> Result<Option<ImageInfo>, CatalogUnavailable> {
        let answer = self.get(&format!("/api/v1/catalog/images/{}", encode_segment(id)))?;
        if answer.is_unknown() {
            return Ok(None);
        }
        let data: ImageData = answer.data()?;
        data.into_info(id).map(Some).map_err(|e| answer.garbage(&e))
    }

    fn validate_coupon(&self, req: &CouponRequest) -> Result<CouponVerdict, CatalogUnavailable> {
        let body = serde_json::json!({
            "code": req.code,
            "planId": req.plan_id,
            "userId": req.user_id,
            "amount": req.amount,
        });
        let answer = self.post("/api/v1/catalog/coupons/validate", &body)?;
        // A 4xx is the service refusing this coupon request for good (the real
        // one answers 400 to a planId or userId that is not a UUID v4); only a
        // timeout or "too many requests" may pass by themselves.
        if answer.is_client_error() && !matches!(answer.status, 408 | 429) {
            let refusal = serde_json::from_str::<Envelope<CouponData>>(&answer.body)
                .ok()
                .and_then(|envelope| envelope.data)
                .filter(|data| !data.valid);
            return Ok(match refusal {
                Some(data) => invalid(data.reason),
                None => {
                    tracing::warn!(
                        status = answer.status,
                        answer = %quote(&answer.body),
                        "catalog-service refused a coupon validation request"
                    );
                    invalid(Some(CATALOG_REJECTED.to_string()))
                }
            });
        }
        let data: CouponData = answer.data()?;
        if !data.valid {
            return Ok(invalid(data.reason));
        }
        let (discount, rounded) = data
            .discount_amount
            .as_ref()
            .ok_or_else(|| "no discountAmount".to_string())
            .and_then(|v| money("discountAmount", v))
            .map_err(|e| answer.garbage(&e))?;
        let code = data
            .coupon
            .and_then(|c| c.code)
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| req.code.clone())
            .to_uppercase();
        if rounded {
            self.warn_rounded("coupon", &code);
        }
        Ok(CouponVerdict::Valid(CouponGrant {
            code,
            discount: discount.min(req.amount),
            // The v1 service has no redeem route: usage limits are not
            // counted in http mode (README, "Catalog-service").
            limits: None,
        }))
    }

    fn source_name(&self) -> &'static str {
        "http"
    }
}

fn invalid(reason: Option<String>) -> CouponVerdict {
    CouponVerdict::Invalid {
        // A refusal without a reason is still a refusal; say so rather than guess one.
        reason: reason
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "INVALID".to_string()),
    }
}

/// A response read to the end, with what is needed to describe it in an error.
struct Answer {
    what: String,
    status: u16,
    body: String,
}

impl Answer {
    fn read(
        what: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, CatalogUnavailable> {
        let fail = |e: ureq::Error| CatalogUnavailable(format!("catalog-service {what}: {e}"));
        let mut response = result.map_err(fail)?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(fail)?;
        let answer = Answer {
            what: what.to_string(),
            status,
            body,
        };
        if (200..300).contains(&status) || (400..500).contains(&status) {
            Ok(answer)
        } else {
            Err(answer.unexpected_status())
        }
    }

    /// The "no such plan/image" answers: 404, and the 400/422 a service
    /// gives an id it cannot even look up.
    fn is_unknown(&self) -> bool {
        matches!(self.status, 400 | 404 | 422)
    }

    fn is_client_error(&self) -> bool {
        (400..500).contains(&self.status)
    }

    /// The `data` object of a 2xx answer.
    fn data<T: serde::de::DeserializeOwned>(&self) -> Result<T, CatalogUnavailable> {
        if !(200..300).contains(&self.status) {
            return Err(self.unexpected_status());
        }
        match serde_json::from_str::<Envelope<T>>(&self.body) {
            Ok(Envelope { data: Some(data) }) => Ok(data),
            Ok(Envelope { data: None }) => Err(self.garbage("no data")),
            Err(e) => Err(self.garbage(&e.to_string())),
        }
    }

    fn unexpected_status(&self) -> CatalogUnavailable {
        CatalogUnavailable(format!(
            "catalog-service {}: HTTP {} ({})",
            self.what,
            self.status,
            quote(&self.body)
        ))
    }

    fn garbage(&self, problem: &str) -> CatalogUnavailable {
        CatalogUnavailable(format!(
            "catalog-service {}: unusable answer: {problem} ({})",
            self.what,
            quote(&self.body)
        ))
    }
}

/// The start of a body, on one line, for a log message.
fn quote(body: &str) -> String {
    let mut out: String = body
        .chars()
        .take(QUOTE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.chars().nth(QUOTE_CHARS).is_some() {
        out.push('…');
    }
    format!("body: {out:?}")
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: Option<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlanData {
    id: Option<String>,
    name: Option<String>,
    display_name: Option<String>,
    cpu: Value,
    memory_mb: Value,
    disk_gb: Value,
    provider_size_slug: Option<String>,
    is_active: Option<bool>,
    #[serde(default)]
    pricings: Vec<PricingData>,
    /// The later service's shape: the raw plan row plus its billing periods.
    #[serde(default)]
    available_periods: Vec<PeriodData>,
}

#[derive(Deserialize)]
struct PeriodData {
    period: String,
    price: Value,
}

#[derive(Deserialize)]
struct ListedImage {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PricingData {
    duration: String,
    price: Value,
    price_after_promo: Option<Value>,
}

/// Durations priced over HTTP: the service knows MONTHLY and YEARLY (ANNUAL
/// here); QUARTERLY, SEMI_ANNUAL and DAILY stay unpriced.
fn http_duration(name: &str) -> Option<PlanDuration> {
    match name {
        "MONTHLY" => Some(PlanDuration::Monthly),
        "YEARLY" => Some(PlanDuration::Annual),
        _ => None,
    }
}

impl PlanData {
    /// The plan, and whether any price had a fraction that was rounded.
    fn into_info(
        self,
        asked: &str,
        sizes: &BTreeMap<String, String>,
    ) -> Result<(PlanInfo, bool), String> {
        let id = self
            .id
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| asked.to_string());
        let mut prices: Vec<PlanPrice> = Vec::new();
        let mut rounded = false;
        let mut add = |price: PlanPrice| {
            if prices.iter().all(|q| q.duration != price.duration) {
                prices.push(price);
            }
        };
        for p in &self.pricings {
            let Some(duration) = http_duration(&p.duration) else {
                continue;
            };
            let (base, r1) = money("price", &p.price)?;
            let (after_promo, r2) = match &p.price_after_promo {
                None | Some(Value::Null) => (base, false),
                Some(v) => money("priceAfterPromo", v)?,
            };
            rounded |= r1 || r2;
            if after_promo > base {
                return Err(format!("{} priceAfterPromo above price", p.duration));
            }
            add(PlanPrice {
                duration,
                base,
                after_promo,
            });
        }
        // The later shape has no promo: the price after promo is the price.
        for p in &self.available_periods {
            let Some(duration) = http_duration(&p.period) else {
                continue;
            };
            let (base, r) = money("price", &p.price)?;
            rounded |= r;
            add(PlanPrice {
                duration,
                base,
                after_promo: base,
            });
        }
        let size_slug = self
            .provider_size_slug
            .filter(|s| !s.is_empty())
            .or_else(|| sizes.get(&id).cloned());
        let info = PlanInfo {
            display_name: self
                .display_name
                .or(self.name)
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| id.clone()),
            cpu: small("cpu", &self.cpu)?,
            memory_mb: small("memoryMb", &self.memory_mb)?,
            disk_gb: small("diskGb", &self.disk_gb)?,
            size_slug,
            // The v1 service sends no `isActive` (it serves active plans only).
            active: self.is_active.unwrap_or(true),
            prices,
            // Filled from `images?planId=` by the caller.
            allowed_image_ids: Vec::new(),
            id,
        };
        Ok((info, rounded))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageData {
    id: Option<String>,
    name: Option<String>,
    display_name: Option<String>,
    provider_slug: Option<String>,
    is_active: Option<bool>,
}

impl ImageData {
    fn into_info(self, asked: &str) -> Result<ImageInfo, String> {
        let id = self
            .id
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| asked.to_string());
        // An image without a slug cannot be provisioned: that is a catalog fault,
        // not an unknown image.
        let slug = self
            .provider_slug
            .filter(|s| !s.is_empty())
            .ok_or("no providerSlug")?;
        Ok(ImageInfo {
            display_name: self
                .display_name
                .or(self.name)
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| id.clone()),
            slug,
            active: self.is_active.unwrap_or(true),
            id,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CouponData {
    valid: bool,
    reason: Option<String>,
    discount_amount: Option<Value>,
    coupon: Option<CouponDetails>,
}

#[derive(Deserialize)]
struct CouponDetails {
    code: Option<String>,
}

/// Sizes arrive as JSON integers, numeric strings or floats with a zero
/// fraction (Prisma decimals); only whole, non-negative values count.
fn amount(field: &str, value: &Value) -> Result<u64, String> {
    match money(field, value)? {
        (n, false) => Ok(n),
        (_, true) => Err(format!("{field} is not a whole number: {value}")),
    }
}

/// Money as the service sends it: integers, numeric strings or floats (its
/// columns are floats). A fraction is rounded half away from zero to the whole
/// minor unit, as v1 did; the flag says it happened. Negative, non-finite or
/// inexact (beyond 2^53) values are not money.
fn money(field: &str, value: &Value) -> Result<(u64, bool), String> {
    let bad = || format!("{field} is not a non-negative amount: {value}");
    let float = match value {
        Value::Number(n) => match n.as_u64() {
            Some(u) => return Ok((u, false)),
            None => n.as_f64(),
        },
        Value::String(s) => match s.trim().parse::<u64>() {
            Ok(u) => return Ok((u, false)),
            Err(_) => s.trim().parse::<f64>().ok(),
        },
        _ => None,
    };
    float.and_then(round_money).ok_or_else(bad)
}

fn round_money(f: f64) -> Option<(u64, bool)> {
    // 2^53: beyond it an f64 no longer holds every integer, so it is not exact money.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    // `round` is half away from zero.
    let whole = f.round();
    if f.is_finite() && f >= 0.0 && whole <= EXACT {
        // The checks above make this cast exact.
        Some((whole as u64, f.fract() != 0.0))
    } else {
        None
    }
}

fn small(field: &str, value: &Value) -> Result<u32, String> {
    let n = amount(field, value)?;
    u32::try_from(n).map_err(|_| format!("{field} out of range: {n}"))
}

/// Percent-encodes one path segment: everything but RFC 3986 unreserved characters,
/// so an id can never add a path segment, a query or a fragment. A segment of
/// dots only is encoded too: `.` and `..` would otherwise be dot-segments that
/// move up the path.
fn encode_segment(segment: &str) -> String {
    let dots_only = segment.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~');
        if unreserved || (byte == b'.' && !dots_only) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// What the canned server saw: request line and body, in order.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// Answers every connection with `status` and `body`, one request per
    /// connection. Stops when the test process ends.
    fn serve(status: u16, body: &'static str, delay: Duration) -> (String, Seen) {
        let listener = match TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut length = 0usize;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                        break;
                    }
                    let lower = header.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut request_body = vec![0; length];
                let _ = reader.read_exact(&mut request_body);
                if let Ok(mut log) = log.lock() {
                    log.push((
                        line.trim().to_string(),
                        String::from_utf8_lossy(&request_body).into_owned(),
                    ));
                }
                std::thread::sleep(delay);
                // A plan's image list: none, so every image is offered.
                let (status, body) = if line.contains("/images?planId=") {
                    (200, r#"{"data":[]}"#)
                } else {
                    (status, body)
                };
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (format!("http://127.0.0.1:{port}/"), seen)
    }

    fn catalog(url: &str) -> HttpCatalog {
        let sizes = BTreeMap::from([("p-map".to_string(), "s-from-map".to_string())]);
        HttpCatalog::new(url, Duration::from_millis(500), &sizes)
    }

    fn coupon_req() -> CouponRequest {
        CouponRequest {
            code: "hemat20".into(),
            plan_id: "p1".into(),
            user_id: "u1".into(),
            amount: 135_000,
        }
    }

    #[test]
    fn encodes_everything_but_unreserved() {
        assert_eq!(encode_segment("vps-basic_1.0~x"), "vps-basic_1.0~x");
        assert_eq!(encode_segment("a/b c?d#é"), "a%2Fb%20c%3Fd%23%C3%A9");
        assert_eq!(encode_segment(".."), "%2E%2E");
        assert_eq!(encode_segment("."), "%2E");
        assert_eq!(encode_segment("a..b"), "a..b");
    }

    #[test]
    fn amounts_must_be_whole_and_non_negative() {
        let ok = |v: Value| amount("x", &v).ok();
        assert_eq!(ok(serde_json::json!(150000)), Some(150_000));
        assert_eq!(ok(serde_json::json!(150000.0)), Some(150_000));
        assert_eq!(ok(serde_json::json!("150000")), Some(150_000));
        assert_eq!(ok(serde_json::json!("150000.00")), Some(150_000));
        assert_eq!(ok(serde_json::json!(150000.5)), None);
        assert_eq!(ok(serde_json::json!(-1)), None);
        assert_eq!(ok(serde_json::json!("-1")), None);
        assert_eq!(ok(serde_json::json!("12abc")), None);
        assert_eq!(ok(serde_json::json!("NaN")), None);
        assert_eq!(ok(serde_json::json!(null)), None);
        assert_eq!(ok(serde_json::json!(1e300)), None);
    }

    #[test]
    fn fractional_money_is_rounded_half_away_from_zero() {
        let m = |v: Value| money("x", &v).ok();
        assert_eq!(m(serde_json::json!(150000)), Some((150_000, false)));
        assert_eq!(m(serde_json::json!(150000.0)), Some((150_000, false)));
        assert_eq!(m(serde_json::json!(150000.5)), Some((150_001, true)));
        assert_eq!(m(serde_json::json!(150000.49)), Some((150_000, true)));
        assert_eq!(m(serde_json::json!("99.5")), Some((100, true)));
        assert_eq!(m(serde_json::json!(0.5)), Some((1, true)));
        assert_eq!(m(serde_json::json!(-0.5)), None);
        assert_eq!(m(serde_json::json!(1e300)), None);
        assert_eq!(m(serde_json::json!("NaN")), None);
    }

    #[test]
    fn reads_the_later_available_periods_shape() {
        let (url, _) = serve(
            200,
            r#"{"data":{"id":"p-map","name":"basic","displayName":"Basic","cpu":1,"memoryMb":1024,"diskGb":25,
                "providerSizeSlug":"s-1vcpu-1gb","isActive":true,"priceMonthly":150000.4,"priceYearly":1500000,
                "availablePeriods":[{"period":"DAILY","price":5000,"pricePerMonth":150000},
                                    {"period":"MONTHLY","price":150000.4,"pricePerMonth":150000.4},
                                    {"period":"YEARLY","price":1500000,"pricePerMonth":125000}]}}"#,
            Duration::ZERO,
        );
        let plan = match catalog(&url).plan("p-map") {
            Ok(Some(p)) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(plan.size_slug.as_deref(), Some("s-1vcpu-1gb"));
        assert_eq!(
            plan.prices,
            vec![
                PlanPrice {
                    duration: PlanDuration::Monthly,
                    base: 150_000,
                    after_promo: 150_000
                },
                PlanPrice {
                    duration: PlanDuration::Annual,
                    base: 1_500_000,
                    after_promo: 1_500_000
                },
            ]
        );
    }

    #[test]
    fn reads_a_plan_and_maps_durations() {
        let (url, seen) = serve(
            200,
            r#"{"data":{"id":"p-map","name":"basic","displayName":"VPS Basic","cpu":1,"memoryMb":"1024","diskGb":25.0,
                "pricings":[{"duration":"MONTHLY","price":"150000","priceAfterPromo":135000.0,"activePromo":{"name":"x"}},
                            {"duration":"YEARLY","price":1500000,"priceAfterPromo":null},
                            {"duration":"QUARTERLY","price":400000}]}}"#,
            Duration::ZERO,
        );
        let plan = match catalog(&url).plan("p-map") {
            Ok(Some(p)) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(plan.display_name, "VPS Basic");
        assert_eq!((plan.cpu, plan.memory_mb, plan.disk_gb), (1, 1024, 25));
        assert_eq!(plan.size_slug.as_deref(), Some("s-from-map"));
        assert!(plan.active);
        assert_eq!(
            plan.prices,
            vec![
                PlanPrice {
                    duration: PlanDuration::Monthly,
                    base: 150_000,
                    after_promo: 135_000
                },
                PlanPrice {
                    duration: PlanDuration::Annual,
                    base: 1_500_000,
                    after_promo: 1_500_000
                },
            ]
        );
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen[0].0, "GET /api/v1/catalog/plans/p-map HTTP/1.1");
    }

    #[test]
    fn inactive_plan_and_provider_slug() {
        let (url, _) = serve(
            200,
            r#"{"data":{"id":"p1","name":"n","cpu":1,"memoryMb":1,"diskGb":1,"providerSizeSlug":"s-own","isActive":false,"pricings":[]}}"#,
            Duration::ZERO,
        );
        let plan = catalog(&url).plan("p1");
        let Ok(Some(plan)) = plan else {
            panic!("{plan:?}")
        };
        assert!(!plan.active);
        assert_eq!(plan.size_slug.as_deref(), Some("s-own"));
        assert_eq!(plan.display_name, "n");
    }

    #[test]
    fn not_found_and_bad_request_mean_unknown() {
        for status in [404, 400, 422] {
            let (url, _) = serve(status, r#"{"message":"nope"}"#, Duration::ZERO);
            assert_eq!(catalog(&url).plan("x"), Ok(None));
            assert_eq!(catalog(&url).image("x"), Ok(None));
        }
    }

    #[test]
    fn garbage_and_failures_are_unavailable() {
        let cases: [(u16, &'static str); 8] = [
            (500, r#"{"data":null}"#),
            (503, ""),
            (401, r#"{"error":"who"}"#),
            (200, "<html>proxy</html>"),
            (200, r#"{"data":null}"#),
            (
                200,
                r#"{"data":{"id":"p","cpu":1,"memoryMb":1,"diskGb":1,"pricings":[{"duration":"MONTHLY","price":"ten"}]}}"#,
            ),
            (302, ""),
            (
                200,
                r#"{"data":{"id":"p","cpu":1,"memoryMb":1,"diskGb":1,"pricings":[{"duration":"MONTHLY","price":-10}]}}"#,
            ),
        ];
        for (status, body) in cases {
            let (url, _) = serve(status, body, Duration::ZERO);
            let got = catalog(&url).plan("p");
            assert!(got.is_err(), "{status} {body} gave {got:?}");
        }
        // Nothing listening at all.
        let closed = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(a) => format!("http://{a}"),
            Err(e) => panic!("{e}"),
        };
        assert!(catalog(&closed).image("i").is_err());
    }

    #[test]
    fn a_slow_catalog_times_out() {
        let (url, _) = serve(200, r#"{"data":{"valid":false}}"#, Duration::from_secs(2));
        let started = std::time::Instant::now();
        assert!(catalog(&url).validate_coupon(&coupon_req()).is_err());
        assert!(started.elapsed() < Duration::from_millis(1500));
    }

    #[test]
    fn error_messages_quote_at_most_a_little_of_the_body() {
        let body: &'static str = Box::leak("x".repeat(5000).into_boxed_str());
        let (url, _) = serve(502, body, Duration::ZERO);
        let Err(CatalogUnavailable(msg)) = catalog(&url).plan("p") else {
            panic!("expected an error")
        };
        assert!(msg.contains("HTTP 502"), "{msg}");
        assert!(msg.len() < 300, "{msg}");
    }

    #[test]
    fn reads_an_image() {
        let (url, seen) = serve(
            200,
            r#"{"data":{"id":"img/1","providerSlug":"ubuntu-22-04-x64","displayName":"Ubuntu 22.04","isActive":false}}"#,
            Duration::ZERO,
        );
        let got = catalog(&url).image("img/1");
        assert_eq!(
            got,
            Ok(Some(ImageInfo {
                id: "img/1".into(),
                display_name: "Ubuntu 22.04".into(),
                slug: "ubuntu-22-04-x64".into(),
                active: false
            }))
        );
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen[0].0, "GET /api/v1/catalog/images/img%2F1 HTTP/1.1");
    }

    #[test]
    fn coupon_valid_sends_the_request_and_reads_the_grant() {
        let (url, seen) = serve(
            200,
            r#"{"data":{"valid":true,"discountAmount":"27000","finalPrice":108000,"coupon":{"code":"HEMAT20"}}}"#,
            Duration::ZERO,
        );
        let got = catalog(&url).validate_coupon(&coupon_req());
        assert_eq!(
            got,
            Ok(CouponVerdict::Valid(CouponGrant {
                code: "HEMAT20".into(),
                discount: 27_000,
                limits: None
            }))
        );
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen[0].0, "POST /api/v1/catalog/coupons/validate HTTP/1.1");
        let sent: Value = serde_json::from_str(&seen[0].1).unwrap_or_default();
        assert_eq!(
            sent,
            serde_json::json!({"code":"hemat20","planId":"p1","userId":"u1","amount":135000})
        );
    }

    #[test]
    fn coupon_refusals_on_200_and_4xx() {
        for status in [200, 400, 404, 422] {
            let (url, _) = serve(
                status,
                r#"{"data":{"valid":false,"reason":"EXPIRED"}}"#,
                Duration::ZERO,
            );
            let got = catalog(&url).validate_coupon(&coupon_req());
            assert_eq!(
                got,
                Ok(CouponVerdict::Invalid {
                    reason: "EXPIRED".into()
                }),
                "status {status}"
            );
        }
        // A 4xx without a verdict is the service refusing the request itself
        // (the real one: 400 for a non-UUID planId/userId): a refusal too.
        for status in [400, 404, 422] {
            let (url, _) = serve(
                status,
                r#"{"error":{"code":"BAD_REQUEST","message":["planId harus berupa UUID valid"]}}"#,
                Duration::ZERO,
            );
            assert_eq!(
                catalog(&url).validate_coupon(&coupon_req()),
                Ok(CouponVerdict::Invalid {
                    reason: CATALOG_REJECTED.into()
                }),
                "status {status}"
            );
        }
        // Busy or timed out is not a verdict.
        for status in [408, 429] {
            let (url, _) = serve(status, "", Duration::ZERO);
            assert!(catalog(&url).validate_coupon(&coupon_req()).is_err());
        }
        // Valid without an amount is garbage.
        let (url, _) = serve(200, r#"{"data":{"valid":true}}"#, Duration::ZERO);
        assert!(catalog(&url).validate_coupon(&coupon_req()).is_err());
    }

    #[test]
    fn discount_is_capped_at_the_amount() {
        let (url, _) = serve(
            200,
            r#"{"data":{"valid":true,"discountAmount":999999}}"#,
            Duration::ZERO,
        );
        let got = catalog(&url).validate_coupon(&coupon_req());
        let Ok(CouponVerdict::Valid(grant)) = got else {
            panic!("{got:?}")
        };
        assert_eq!(grant.discount, 135_000);
        assert_eq!(grant.code, "HEMAT20");
        assert_eq!(catalog(&url).source_name(), "http");
    }
}

//! A stand-in for the Webrana catalog-service (SPEC §3), for tests that run vpsd
//! with `catalog.source = "http"`.
//!
//! It serves on `127.0.0.1:0` from its own thread and tokio runtime, so both
//! synchronous and async tests can use it, and stops when dropped. It answers:
//!
//! - `GET /api/v1/catalog/plans/{id}`: `{"data": <plan>}` for a plan added with
//!   [`FakeCatalog::add_plan`], else 404.
//! - `GET /api/v1/catalog/images/{id}`: likewise with [`FakeCatalog::add_image`].
//! - `GET /api/v1/catalog/images?planId={id}`: `{"data": [<image>..]}`, the active
//!   images given to [`FakeCatalog::set_plan_images`] for that plan, else `[]`
//!   (like the real service: a plan without mapped images lists none).
//! - `POST /api/v1/catalog/coupons/validate` (body `{code, planId, userId, amount}`):
//!   `{"data": <answer>}` as set with [`FakeCatalog::set_coupon`] for that code
//!   (any case), else `{"data":{"valid":false,"reason":"NOT_FOUND"}}`. The answer is
//!   canned: it does not depend on the amount or the plan.
//! - anything else: 404.
//!
//! Ids in paths are percent-decoded before the look-up, as a real server would.
//! [`FakeCatalog::set_mode`] and [`FakeCatalog::set_delay`] simulate an outage, a
//! broken proxy or a slow service.
//!
//! [`FakeCatalog::like_v1_service`] behaves like the real (v1 era) catalog-service
//! on PostgreSQL (SPEC §3, "How the real catalog-service behaves"): UUID ids,
//! plans without `providerSizeSlug`/`isActive`, float prices, 400 from validate
//! for a `planId`/`userId` that is not a UUID v4
//! ([`FakeCatalog::set_require_uuids`]), plan image lists, and one plan in the
//! later `availablePeriods` shape.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::oneshot;
use warp::http::StatusCode;
use warp::Filter;

/// How the fake answers, whatever the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Per the contract above.
    Normal,
    /// 500 with a JSON error body to every request.
    ServerError,
    /// 200 with a non-JSON (HTML) body to every request.
    Garbage,
}

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path as sent, still percent-encoded, without the query.
    pub path: String,
    /// The body as text (empty for a GET).
    pub body: String,
}

#[derive(Debug)]
struct State {
    plans: HashMap<String, Value>,
    images: HashMap<String, Value>,
    /// Keyed by upper-case code.
    coupons: HashMap<String, Value>,
    /// Plan id -> image ids listed by `images?planId=`.
    plan_images: HashMap<String, Vec<String>>,
    /// Validate answers 400 to a `planId`/`userId` that is not a UUID v4.
    require_uuids: bool,
    delay: Duration,
    mode: Mode,
    requests: Vec<Recorded>,
}

type Shared = Arc<Mutex<State>>;

/// Ids of [`FakeCatalog::like_v1_service`] (UUID v4, as its database makes them).
pub const V1_PLAN: &str = "5f0c7f2e-8a3b-4c1d-9e2f-1a2b3c4d5e6f";
pub const V1_LATER_PLAN: &str = "6a1d8e3f-9b4c-4d2e-8f3a-2b3c4d5e6f70";
pub const V1_IMAGE: &str = "7b2e9f4a-0c5d-4e3f-9a4b-3c4d5e6f7081";
pub const V1_OTHER_IMAGE: &str = "8c3f0a5b-1d6e-4f4a-8b5c-4d5e6f708192";

/// A running fake catalog-service. Dropping it stops the server.
pub struct FakeCatalog {
    state: Shared,
    port: u16,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeCatalog {
    /// Starts an empty fake: every plan, image and coupon is unknown.
    pub fn start() -> FakeCatalog {
        let state: Shared = Arc::new(Mutex::new(State {
            plans: HashMap::new(),
            images: HashMap::new(),
            coupons: HashMap::new(),
            plan_images: HashMap::new(),
            require_uuids: false,
            delay: Duration::ZERO,
            mode: Mode::Normal,
            requests: Vec::new(),
        }));
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("fake catalog: bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("fake catalog: local address")
            .port();
        listener
            .set_nonblocking(true)
            .expect("fake catalog: non-blocking listener");
        let (shutdown, stop) = oneshot::channel::<()>();
        let served = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name(format!("fake-catalog-{port}"))
            .spawn(move || serve(listener, served, stop))
            .expect("fake catalog: spawn thread");
        FakeCatalog {
            state,
            port,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// A fake preloaded with the SPEC's example data:
    /// - plan `plan-basic` ("VPS Basic", 1 vCPU, 1024 MB, 25 GB, `s-1vcpu-1gb`),
    ///   MONTHLY 150000 -> 135000 and YEARLY 1500000 -> 1350000 after a 10% promo;
    /// - image `img-ubuntu` (`ubuntu-22-04-x64`, "Ubuntu 22.04", active);
    /// - image `img-old` (`centos-7-x64`, "CentOS 7", inactive);
    /// - coupon `HEMAT20`: valid, discountAmount 27000, finalPrice 108000.
    pub fn with_sample() -> FakeCatalog {
        let fake = FakeCatalog::start();
        let promo = json!({"name": "Promo 10%", "discountType": "PERCENT", "discountValue": 10});
        fake.add_plan(json!({
            "id": "plan-basic",
            "name": "basic",
            "displayName": "VPS Basic",
            "cpu": 1,
            "memoryMb": 1024,
            "diskGb": 25,
            "providerSizeSlug": "s-1vcpu-1gb",
            "isActive": true,
            "pricings": [
                {"duration": "MONTHLY", "price": 150000, "priceAfterPromo": 135000, "activePromo": promo},
                {"duration": "YEARLY", "price": 1500000, "priceAfterPromo": 1350000, "activePromo": promo},
            ],
        }));
        fake.add_image(json!({
            "id": "img-ubuntu",
            "providerSlug": "ubuntu-22-04-x64",
            "displayName": "Ubuntu 22.04",
            "isActive": true,
        }));
        fake.add_image(json!({
            "id": "img-old",
            "providerSlug": "centos-7-x64",
            "displayName": "CentOS 7",
            "isActive": false,
        }));
        fake.set_coupon(
            "HEMAT20",
            json!({
                "valid": true,
                "discountAmount": 27000,
                "finalPrice": 108000,
                "coupon": {"code": "HEMAT20", "name": "Hemat 20%", "discountType": "PERCENT", "discountValue": 20},
            }),
        );
        fake
    }

    /// A fake shaped like the real v1-era service (see the module docs):
    /// - plan [`V1_PLAN`] ("VPS Basic", 1 vCPU, 1024 MB, 25 GB), no
    ///   `providerSizeSlug` or `isActive` (map its size in `catalog.sizes`),
    ///   float prices MONTHLY 150000.0 -> 135000.4 after a 10% promo, YEARLY
    ///   1500000.5 with no promo; it offers [`V1_IMAGE`] only;
    /// - plan [`V1_LATER_PLAN`] in the later shape (raw row with
    ///   `providerSizeSlug` `s-2vcpu-2gb` and `availablePeriods` DAILY 9000,
    ///   MONTHLY 250000, YEARLY 2500000), offering every image;
    /// - images [`V1_IMAGE`] (ubuntu) and [`V1_OTHER_IMAGE`] (debian), active;
    /// - coupon `HEMAT20`: valid, discountAmount 27000.5; validate refuses
    ///   non-UUID ids with 400, as the service's DTO does.
    pub fn like_v1_service() -> FakeCatalog {
        let fake = FakeCatalog::start();
        let promo = json!({"name": "Promo 10%", "discountType": "PERCENT", "discountValue": 10});
        fake.add_plan(json!({
            "id": V1_PLAN, "name": "basic", "displayName": "VPS Basic", "description": null,
            "cpu": 1, "memoryMb": 1024, "diskGb": 25, "bandwidthTb": 1.0,
            "provider": "digitalocean", "tags": [], "sortOrder": 1,
            "pricings": [
                {"duration": "MONTHLY", "price": 150000.0, "priceAfterPromo": 135000.4, "activePromo": promo},
                {"duration": "YEARLY", "price": 1500000.5, "priceAfterPromo": null, "activePromo": null},
            ],
        }));
        fake.add_plan(json!({
            "id": V1_LATER_PLAN, "name": "standard", "displayName": "VPS Standard",
            "cpu": 2, "memoryMb": 2048, "diskGb": 50, "provider": "digitalocean",
            "providerSizeSlug": "s-2vcpu-2gb", "isActive": true,
            "priceMonthly": 250000.0, "priceYearly": 2500000.0, "priceDaily": 9000.0,
            "allowDaily": true, "allowMonthly": true, "allowYearly": true,
            "availablePeriods": [
                {"period": "DAILY", "price": 9000.0, "pricePerMonth": 270000.0},
                {"period": "MONTHLY", "price": 250000.0, "pricePerMonth": 250000.0},
                {"period": "YEARLY", "price": 2500000.0, "pricePerMonth": 208333.0},
            ],
        }));
        for (id, slug, name) in [
            (V1_IMAGE, "ubuntu-22-04-x64", "Ubuntu 22.04"),
            (V1_OTHER_IMAGE, "debian-12-x64", "Debian 12"),
        ] {
            fake.add_image(json!({
                "id": id, "provider": "digitalocean", "providerSlug": slug, "displayName": name,
                "description": null, "category": "OS", "version": null, "isActive": true, "sortOrder": 0,
            }));
        }
        fake.set_plan_images(V1_PLAN, &[V1_IMAGE]);
        fake.set_coupon(
            "HEMAT20",
            json!({
                "valid": true, "discountAmount": 27000.5, "finalPrice": 108000.0,
                "coupon": {"code": "HEMAT20", "name": "Hemat 20%", "discountType": "PERCENT", "discountValue": 20.0},
            }),
        );
        fake.set_require_uuids(true);
        fake
    }

    /// The images `GET images?planId={plan}` lists (the active ones among `images`).
    pub fn set_plan_images(&self, plan: &str, images: &[&str]) {
        let ids = images.iter().map(|i| i.to_string()).collect();
        self.lock().plan_images.insert(plan.to_string(), ids);
    }

    /// Whether validate answers 400 to a `planId` or `userId` that is not a
    /// UUID v4, as the real service's request validation does.
    pub fn set_require_uuids(&self, on: bool) {
        self.lock().require_uuids = on;
    }

    /// The base URL to configure as `catalog.url`, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Serves `data` at `GET /api/v1/catalog/plans/{data.id}` (replacing any plan
    /// with that id). `data` is sent as is, so it may be deliberately malformed.
    pub fn add_plan(&self, data: Value) {
        let id = id_of(&data);
        self.lock().plans.insert(id, data);
    }

    /// Serves `data` at `GET /api/v1/catalog/images/{data.id}`.
    pub fn add_image(&self, data: Value) {
        let id = id_of(&data);
        self.lock().images.insert(id, data);
    }

    /// Makes validate answer `{"data": data}` for `code`, matched ignoring case.
    pub fn set_coupon(&self, code: &str, data: Value) {
        self.lock().coupons.insert(code.to_uppercase(), data);
    }

    /// Delays every answer by `delay` (the request is recorded at once).
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    pub fn set_mode(&self, mode: Mode) {
        self.lock().mode = mode;
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for FakeCatalog {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A panicking test thread must not take every later assertion down with it.
fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn id_of(data: &Value) -> String {
    match data.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Runs the server until `stop` fires, then gives open requests (a delayed
/// answer, say) one second before the runtime is dropped with them.
fn serve(listener: std::net::TcpListener, state: Shared, stop: oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("fake catalog: tokio runtime");
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("fake catalog: tokio listener");
        let query = warp::query::raw().or(warp::any().map(String::new)).unify();
        let routes = warp::method()
            .and(warp::path::full())
            .and(query)
            .and(warp::body::bytes())
            .and(warp::any().map(move || Arc::clone(&state)))
            .then(
                |method: warp::http::Method,
                 path: warp::path::FullPath,
                 query: String,
                 body: bytes::Bytes,
                 state: Shared| async move {
                    answer(&state, method.as_str(), path.as_str(), &query, &body).await
                },
            );
        let (stopping, stopped) = oneshot::channel::<()>();
        let server = warp::serve(routes)
            .incoming(listener)
            .graceful(async move {
                let _ = stop.await;
                let _ = stopping.send(());
            })
            .run();
        tokio::select! {
            () = server => {}
            () = async {
                if stopped.await.is_ok() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {}
        }
    });
}

async fn answer(
    state: &Shared,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> warp::reply::Response {
    let (delay, mode) = {
        let mut s = lock(state);
        s.requests.push(Recorded {
            method: method.to_string(),
            path: path.to_string(),
            body: String::from_utf8_lossy(body).into_owned(),
        });
        (s.delay, s.mode)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match mode {
        Mode::ServerError => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"statusCode": 500, "message": "Internal server error"}),
        ),
        Mode::Garbage => {
            let html = "<html><body><h1>502 Bad Gateway</h1></body></html>";
            warp::http::Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/html")
                .body(html.into())
                .unwrap_or_default()
        }
        Mode::Normal => normal(state, method, path, query, body),
    }
}

fn normal(
    state: &Shared,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> warp::reply::Response {
    let not_found = || {
        reply(
            StatusCode::NOT_FOUND,
            json!({"statusCode": 404, "message": "Not Found"}),
        )
    };
    let found = |data: Option<&Value>| match data {
        Some(data) => reply(StatusCode::OK, json!({ "data": data })),
        None => not_found(),
    };
    let one_segment = |prefix: &str| {
        path.strip_prefix(prefix)
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(percent_decode)
    };
    let s = lock(state);
    match method {
        "GET" => {
            if let Some(id) = one_segment("/api/v1/catalog/plans/") {
                found(s.plans.get(&id))
            } else if let Some(id) = one_segment("/api/v1/catalog/images/") {
                found(s.images.get(&id))
            } else if path == "/api/v1/catalog/images" {
                let plan = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("planId="))
                    .map(percent_decode)
                    .unwrap_or_default();
                let listed: Vec<&Value> = s
                    .plan_images
                    .get(&plan)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| s.images.get(id))
                    .filter(|image| image["isActive"] != json!(false))
                    .collect();
                reply(StatusCode::OK, json!({ "data": listed }))
            } else {
                not_found()
            }
        }
        "POST" if path == "/api/v1/catalog/coupons/validate" => {
            let code = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_uppercase));
            let Some(code) = code else {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({"statusCode": 400, "message": "code is required"}),
                );
            };
            if s.require_uuids {
                let sent = serde_json::from_slice::<Value>(body).unwrap_or_default();
                for field in ["planId", "userId"] {
                    if let Some(id) = sent.get(field).and_then(Value::as_str) {
                        if !is_uuid_v4(id) {
                            // The service's exception filter around class-validator's message.
                            return reply(
                                StatusCode::BAD_REQUEST,
                                json!({"error": {"code": "BAD_REQUEST",
                                       "message": [format!("{field} harus berupa UUID valid")]}}),
                            );
                        }
                    }
                }
            }
            let unknown = json!({"valid": false, "reason": "NOT_FOUND"});
            let data = s.coupons.get(&code).unwrap_or(&unknown);
            reply(StatusCode::OK, json!({ "data": data }))
        }
        _ => not_found(),
    }
}

fn reply(status: StatusCode, body: Value) -> warp::reply::Response {
    warp::http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string().into())
        .unwrap_or_default()
}

/// `8-4-4-4-12` hex digits with version 4 and the RFC 4122 variant, as
/// class-validator's `IsUUID('4')` checks.
fn is_uuid_v4(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    groups.len() == 5
        && groups
            .iter()
            .zip(lengths)
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
        && groups[2].starts_with('4')
        && groups[3].starts_with(['8', '9', 'a', 'b', 'A', 'B'])
}

/// `%XX` to bytes; a malformed escape is kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

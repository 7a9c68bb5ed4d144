//! Test harness: the real daemon (`vpsd::App`) on 127.0.0.1:0 with a fresh data
//! file in a temp dir (or, under `VPSD_TEST_BACKEND=postgres`, a fresh
//! PostgreSQL database: see `backend`), plus local fakes of the
//! catalog-service and DigitalOcean. Tests are synchronous; each app runs on
//! its own tokio runtime thread.
#![allow(dead_code)]

pub mod backend;
pub mod fake_catalog;
pub mod fake_do;
pub mod pg;
pub mod process;
pub mod receiver;
pub mod v1;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use vpsd::config::{CloudProvider, Config, JwtAlgorithm};

// Not every test binary that includes this harness uses them.
#[allow(unused_imports)]
pub use backend::{on_postgres, skip_on_postgres, stored_bytes, verify_stopped};

/// Long enough for start-up's checks: 32+ bytes (HS256) and 16+ characters.
pub const SECRET: &str = "test-secret-of-at-least-32-bytes!";
pub const API_KEY: &str = "test-api-key-0123456789";

/// The config every test starts from: HS256, the shipped embedded catalog, the
/// sandbox cloud, a data file in `dir` (or a fresh PostgreSQL database, see
/// `backend::choose`). Background sweeps are slow so tests drive provisioning
/// explicitly unless they opt in.
pub fn base_config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.bind = "127.0.0.1:0".into();
    c.storage.path = dir.join("vpsd.redb");
    c.auth.jwt_algorithm = JwtAlgorithm::HS256;
    c.auth.jwt_secret = Some(SECRET.into());
    c.auth.internal_api_key = Some(API_KEY.into());
    c.catalog.file = repo_path("config/catalog.toml");
    c.cloud.provider = CloudProvider::Sandbox;
    c.cloud.sandbox.boot_delay_ms = 0;
    c.cloud.digitalocean.regions = vec!["sgp1".into(), "nyc3".into()];
    c.backup.dir = dir.join("backups");
    c.server.shutdown_grace_ms = 5000;
    backend::choose(&mut c);
    c
}

/// The Standard Webhooks specification's example secret.
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Adds `url` as a webhook endpoint taking `events` (`["*"]`: all), signed
/// with [`WEBHOOK_SECRET`].
pub fn add_webhook(config: &mut Config, url: &str, events: &[&str]) {
    config
        .webhooks
        .endpoints
        .push(vpsd::webhooks::config::EndpointConfig {
            url: url.to_string(),
            secret: WEBHOOK_SECRET.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
        });
}

/// Points `config` at a fake DigitalOcean (its default token), with the
/// shortest poll interval the scheduler allows.
pub fn use_fake_do(config: &mut Config, fake: &fake_do::FakeDo) {
    config.cloud.provider = CloudProvider::Digitalocean;
    config.cloud.digitalocean.api_url = fake.url();
    config.cloud.digitalocean.token = Some(fake_do::DEFAULT_TOKEN.into());
    config.cloud.digitalocean.timeout_ms = 2000;
    config.provisioning.poll_interval_ms = 1000;
}

/// The daemon on `fake` with `accounts` in place of the v1 token (SPEC §13).
pub fn use_fake_do_accounts(
    config: &mut Config,
    fake: &fake_do::FakeDo,
    accounts: Vec<vpsd::config::accounts::AccountConfig>,
) {
    use_fake_do(config, fake);
    config.cloud.digitalocean.token = None;
    config.cloud.digitalocean.accounts = accounts;
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A running daemon. Dropping it shuts it down gracefully.
pub struct TestApp {
    pub addr: SocketAddr,
    pub config: Config,
    /// Keeps the temp dir (data file, backups) alive for the app's lifetime.
    pub dir: Option<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The store behind the contract, whichever backend this run tests.
    pub store: vpsd::store::StoreHandle,
    redb: Option<vpsd::store::Store>,
    pub provisioner: std::sync::Arc<vpsd::provision::Provisioner>,
    agent: ureq::Agent,
}

pub fn spawn_app() -> TestApp {
    spawn_app_with(|_| {})
}

pub fn spawn_app_with(edit: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = base_config(dir.path());
    edit(&mut config);
    start(config, Some(dir))
}

/// Starts an app on an explicit config (the caller owns the data dir).
pub fn start(config: Config, dir: Option<tempfile::TempDir>) -> TestApp {
    try_start(config, dir).expect("app starts")
}

pub fn try_start(config: Config, dir: Option<tempfile::TempDir>) -> Result<TestApp, String> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run_config = config.clone();
    let wanted = config.storage.backend.name();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let app = match vpsd::App::build_with_listener(run_config, listener).await {
                Ok(app) => app,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.0));
                    return;
                }
            };
            let addr = app.local_addr().expect("addr");
            let handle = app.store_handle();
            // The backend switch must really switch: a run meant for
            // PostgreSQL that quietly opened a redb file would prove nothing.
            if handle.backend() != wanted {
                let _ = ready_tx.send(Err(format!(
                    "the app runs on {}, the config asks for {wanted}",
                    handle.backend()
                )));
                return;
            }
            let redb = app.store().cloned();
            let _ = ready_tx.send(Ok((addr, handle, redb, app.provisioner().clone())));
            let _ = app
                .run(async move {
                    let _ = stop_rx.await;
                })
                .await;
        });
    });
    let (addr, store, redb, provisioner) = ready_rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|e| format!("app did not start: {e}"))??;
    Ok(TestApp {
        addr,
        config,
        dir,
        stop: Some(stop),
        thread: Some(thread),
        store,
        redb,
        provisioner,
        agent: agent(),
    })
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A response as the tests look at it.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The error code of an error envelope.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn id(&self) -> String {
        self.body["data"]["id"]
            .as_str()
            .expect("data.id")
            .to_string()
    }
}

/// How a request authenticates.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    User(&'a str),
    Bearer(&'a str),
    Key(&'a str),
    Admin,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The redb store itself, for tests about the file (none on PostgreSQL).
    pub fn redb(&self) -> Option<vpsd::store::Store> {
        self.redb.clone()
    }

    /// The name of this app's PostgreSQL database (none on redb), for psql.
    pub fn database(&self) -> Option<String> {
        let url = self.config.storage.postgres.url.as_deref()?;
        (self.config.storage.backend == vpsd::config::StorageBackend::Postgres)
            .then(|| url.rsplit('/').next().unwrap_or_default().to_string())
    }

    pub fn token(&self, sub: &str) -> String {
        hs256_token(
            SECRET,
            serde_json::json!({ "sub": sub, "exp": now_secs() + 3600 }),
        )
    }

    /// Any request; `body` is sent as is with `content_type` when given.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Resp {
        let uri = self.url(path);
        let mut builder = ureq::http::Request::builder().method(method).uri(&uri);
        let token;
        match auth {
            Auth::None => {}
            Auth::User(sub) => {
                token = self.token(sub);
                builder = builder.header("Authorization", format!("Bearer {token}"));
            }
            Auth::Bearer(t) => builder = builder.header("Authorization", format!("Bearer {t}")),
            Auth::Key(k) => builder = builder.header("X-API-Key", k),
            Auth::Admin => builder = builder.header("X-API-Key", API_KEY),
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let result = match body {
            Some((content_type, bytes)) => {
                if !content_type.is_empty() {
                    builder = builder.header("Content-Type", content_type);
                }
                let request = builder.body(bytes.to_vec()).expect("request");
                self.agent.run(request)
            }
            None => {
                let request = builder.body(()).expect("request");
                self.agent.run(request)
            }
        };
        let mut response = result.expect("HTTP round trip");
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            body,
            text,
            headers,
        }
    }

    pub fn get(&self, path: &str, auth: Auth<'_>) -> Resp {
        self.request("GET", path, auth, &[], None)
    }

    pub fn post_json(&self, path: &str, auth: Auth<'_>, body: &Value) -> Resp {
        let bytes = serde_json::to_vec(body).expect("json");
        self.request("POST", path, auth, &[], Some(("application/json", &bytes)))
    }

    pub fn post_empty(&self, path: &str, auth: Auth<'_>) -> Resp {
        self.request("POST", path, auth, &[], None)
    }

    /// Creates an order for `user` on the shipped catalog and returns it.
    pub fn create_order(&self, user: &str) -> Resp {
        let r = self.post_json(
            "/api/v1/orders",
            Auth::User(user),
            &serde_json::json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"}),
        );
        assert_eq!(r.status, 201, "create failed: {}", r.text);
        r
    }

    pub fn pay(&self, id: &str) -> Resp {
        self.post_json(
            &format!("/api/v1/internal/orders/{id}/payment-status"),
            Auth::Admin,
            &serde_json::json!({"status": "PAID"}),
        )
    }

    /// An order of `user`'s, paid and waited for until ACTIVE.
    pub fn active_order(&self, user: &str) -> String {
        let id = self.create_order(user).id();
        assert_eq!(self.pay(&id).status, 200);
        self.wait_for_status(&id, &["ACTIVE"], Duration::from_secs(20));
        id
    }

    /// `POST /internal/orders/{id}/{action}` with `body`.
    pub fn admin_post(&self, id: &str, action: &str, body: serde_json::Value) -> Resp {
        self.post_json(
            &format!("/api/v1/internal/orders/{id}/{action}"),
            Auth::Admin,
            &body,
        )
    }

    pub fn admin_order(&self, id: &str) -> Resp {
        self.get(&format!("/api/v1/internal/orders/{id}"), Auth::Admin)
    }

    /// Stops this app and starts a new one on the same data file and config.
    pub fn restart(mut self) -> TestApp {
        let dir = self.dir.take();
        let config = self.config.clone();
        // The data file stays locked until every handle to it is gone.
        drop(self);
        start(config, dir)
    }

    /// Runs exactly one reconciler sweep now (after any running one).
    pub fn sweep(&self) -> vpsd::provision::SweepReport {
        // Only the instance that leads the background work sweeps (SPEC §15).
        // A redb app always does; on PostgreSQL a restarted app takes the
        // lead once the stopped one's session has let it go.
        let leads = wait_for(Duration::from_secs(30), || self.store.leads().then_some(()));
        assert!(leads.is_some(), "this app never took the lead");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let p = self.provisioner.clone();
        runtime
            .block_on(async move { p.sweep_once().await })
            .expect("the sweep ran")
    }

    /// Waits until the order's status is one of `statuses`, running a sweep
    /// each round (the scheduler's own ticks are whole seconds); returns the
    /// admin view.
    pub fn wait_for_status(&self, id: &str, statuses: &[&str], timeout: Duration) -> Resp {
        let found = wait_for(timeout, || {
            self.sweep();
            let r = self.admin_order(id);
            statuses
                .contains(&r.data()["status"].as_str().unwrap_or(""))
                .then_some(r)
        });
        found.unwrap_or_else(|| {
            panic!(
                "order {id} never reached {statuses:?}: {}",
                self.admin_order(id).text
            )
        })
    }

    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

pub fn hs256_token(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

pub fn signed_token(alg: jsonwebtoken::Algorithm, private_pem: &str, claims: Value) -> String {
    let key = match alg {
        jsonwebtoken::Algorithm::RS256 => {
            jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes())
        }
        jsonwebtoken::Algorithm::ES256 => {
            jsonwebtoken::EncodingKey::from_ec_pem(private_pem.as_bytes())
        }
        other => panic!("unsupported test algorithm {other:?}"),
    }
    .expect("key");
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key).expect("sign")
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo_path(&format!("tests/fixtures/{name}"))).expect("fixture")
}

/// Polls `check` every 20 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The shipped embedded catalog.
pub fn shipped_catalog() -> vpsd::catalog::embedded::EmbeddedCatalog {
    vpsd::catalog::embedded::EmbeddedCatalog::load(
        &repo_path("config/catalog.toml"),
        &Default::default(),
    )
    .expect("catalog")
}

/// A realistic order (plans in turn, every fourth with a coupon), priced by
/// the catalog exactly as the API prices it; for generators of large files.
pub fn sample_order(
    catalog: &vpsd::catalog::embedded::EmbeddedCatalog,
    user: &str,
    i: usize,
) -> vpsd::service::pricing::Priced {
    let plans = ["vps-basic", "vps-standard", "vps-pro"];
    let request = vpsd::service::orders::NewOrder {
        plan_id: vpsd::domain::values::CatalogId::parse(plans[i % plans.len()]).expect("plan id"),
        image_id: vpsd::domain::values::CatalogId::parse("ubuntu-22-04").expect("image id"),
        duration: vpsd::domain::PlanDuration::Monthly,
        coupon_code: i.is_multiple_of(4).then(|| "HEMAT20".to_string()),
        region: None,
        hostname: None,
        ssh_public_keys: Default::default(),
    };
    let placement = vpsd::service::pricing::Placement {
        currency: "IDR".into(),
        region: "sgp1".into(),
    };
    vpsd::service::pricing::price_order(catalog, user, &request, placement).expect("priced")
}

/// The write that stores a priced order.
pub fn create_op(priced: vpsd::service::pricing::Priced) -> vpsd::store::WriteOp {
    let (order, _) = priced;
    let actor = vpsd::domain::Actor::User(order.user_id.clone());
    let change = vpsd::domain::lifecycle::create(order, &actor, vpsd::domain::time::now_millis());
    vpsd::store::WriteOp::Create {
        change: Box::new(change),
        coupon: None,
        idempotency: None,
    }
}

/// A blocking connection to `server` whose source address is `source` (any
/// 127/8 address reaches a server on 127.0.0.1 under Linux): for the limits
/// that are kept per client address.
pub fn connect_from(source: &str, server: SocketAddr) -> std::net::TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        let local: SocketAddr = format!("{source}:0").parse().expect("source address");
        socket.bind(local).expect("bind the source address");
        socket.connect(server).await.expect("connect")
    });
    let stream = stream.into_std().expect("std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

//! `vpsd store copy --from FILE --to URL` and `vpsd verify URL` (SPEC §15,
//! issue 24): a data file with orders in every status, copied by the real
//! binary, reads back byte for byte the same over the API from an instance
//! on PostgreSQL; that instance then finishes what the file left open (one
//! droplet per order, the pending deliveries sent); `verify URL` is clean
//! and finds what psql breaks. Refusals write nothing and never show the
//! URL's password.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::fake_do::{DropletScript, FakeDo};
use support::process::count;
use support::receiver::{Answer, Receiver};
use support::{add_webhook, base_config, use_fake_do, wait_for, TestApp};
use vpsd::config::{Config, StorageBackend};

const BIN: &str = env!("CARGO_BIN_EXE_vpsd");
const WAIT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "s3cret-Pw-91";

/// The real binary with a clean environment.
fn vpsd(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd.output().expect("run vpsd")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pg() -> &'static support::pg::PgCluster {
    support::pg::cluster()
}

/// Who a request is from.
#[derive(Clone, Copy)]
enum Who<'a> {
    Admin,
    User(&'a str),
}

/// One request to the daemon at `addr`: (status, body text). The same for
/// the redb app and the PostgreSQL one, so their answers compare as sent.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    who: Who<'_>,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, String) {
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    request = match who {
        Who::Admin => request.header("X-API-Key", support::API_KEY),
        Who::User(sub) => {
            let claims = json!({"sub": sub, "exp": support::now_secs() + 3600});
            let token = support::hs256_token(support::SECRET, claims);
            request.header("Authorization", format!("Bearer {token}"))
        }
    };
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
    if bytes.is_some() {
        request = request.header("Content-Type", "application/json");
    }
    let request = request.body(bytes.unwrap_or_default()).expect("request");
    let mut response = support::agent().run(request).expect("HTTP round trip");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, text)
}

fn get_json(addr: SocketAddr, path: &str, who: Who<'_>) -> Value {
    let (status, text) = call(addr, "GET", path, who, &[], None);
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).expect("JSON")
}

/// An in-process vpsd on the database `config` names.
fn start_pg(config: Config) -> TestApp {
    support::start(config, None)
}

/// Stops the reconciler (sweeps, expiry, droplet and customer actions) of
/// a running app: what it answers stays put while it is read.
fn freeze(provisioner: &Arc<vpsd::provision::Provisioner>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(provisioner.stop(Duration::from_secs(10)));
}

/// The shop the file comes from: DigitalOcean's fake, a webhook endpoint
/// that takes everything, one that answers 500 (its deliveries stay
/// pending, retried in an hour).
struct Shop {
    fake: FakeDo,
    ok: Receiver,
    down: Receiver,
}

impl Shop {
    fn start() -> Shop {
        let fake = FakeDo::start();
        fake.set_default_script(DropletScript::new().active_after(1).ip_after(1));
        fake.set_action_delay(Duration::from_millis(100));
        let down = Receiver::start();
        down.set_default(Answer::Status(500));
        Shop {
            fake,
            ok: Receiver::start(),
            down,
        }
    }

    /// A redb app's config; `dir` holds its data file.
    fn config(&self, dir: &std::path::Path) -> Config {
        let mut c = base_config(dir);
        c.storage.backend = StorageBackend::Redb;
        use_fake_do(&mut c, &self.fake);
        c.actions.cooldown_seconds = 0;
        add_webhook(&mut c, &self.ok.url(), &["*"]);
        add_webhook(&mut c, &self.down.url(), &["*"]);
        c.webhooks.retry_schedule_seconds = vec![3600];
        c
    }
}

/// The same shop on the database at `url`.
fn on_postgres(config: &Config, url: &str) -> Config {
    let mut c = config.clone();
    c.storage.backend = StorageBackend::Postgres;
    c.storage.postgres.url = Some(url.to_string());
    c.storage.postgres.pool_size = 4;
    c
}

/// One order of every status, and what the file holds besides.
struct Orders {
    pending: String,
    payment_failed: String,
    canceled: String,
    active: String,
    suspended: String,
    terminated: String,
    failed: String,
    provisioning: String,
    paid: String,
    /// The first answer to alice's order under an Idempotency-Key.
    keyed: (u16, String),
}

impl Orders {
    fn all(&self) -> Vec<(&str, &str)> {
        vec![
            (self.pending.as_str(), "alice"),
            (self.payment_failed.as_str(), "bob"),
            (self.canceled.as_str(), "carol"),
            (self.active.as_str(), "alice"),
            (self.suspended.as_str(), "bob"),
            (self.terminated.as_str(), "carol"),
            (self.failed.as_str(), "alice"),
            (self.provisioning.as_str(), "bob"),
            (self.paid.as_str(), "carol"),
        ]
    }
}

const KEY: &str = "copy-test-key-1";

fn order_body(coupon: Option<&str>) -> Value {
    let mut body = json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY"});
    if let Some(code) = coupon {
        body["couponCode"] = json!(code);
    }
    body
}

fn create(app: &TestApp, user: &str, coupon: Option<&str>) -> String {
    let (status, text) = call(
        app.addr,
        "POST",
        "/api/v1/orders",
        Who::User(user),
        &[],
        Some(&order_body(coupon)),
    );
    assert_eq!(status, 201, "{text}");
    let body: Value = serde_json::from_str(&text).expect("JSON");
    body["data"]["id"].as_str().expect("id").to_string()
}

fn pay_and_wait(app: &TestApp, id: &str, status: &str) {
    assert_eq!(app.pay(id).status, 200);
    app.wait_for_status(id, &[status], WAIT);
}

/// Sweeps until the order's droplet owes nothing more.
fn settle(app: &TestApp, id: &str) {
    let done = wait_for(WAIT, || {
        app.sweep();
        let task = app.admin_order(id).data()["provisioningTask"].clone();
        task["pendingAction"].is_null().then_some(())
    });
    assert!(
        done.is_some(),
        "never settled: {}",
        app.admin_order(id).text
    );
}

/// alice's order under an Idempotency-Key, with FLASH3; left unpaid.
fn keyed_order(app: &TestApp) -> (String, (u16, String)) {
    let keyed = call(
        app.addr,
        "POST",
        "/api/v1/orders",
        Who::User("alice"),
        &[("Idempotency-Key", KEY)],
        Some(&order_body(Some("FLASH3"))),
    );
    assert_eq!(keyed.0, 201, "{}", keyed.1);
    let body: Value = serde_json::from_str(&keyed.1).expect("JSON");
    let id = body["data"]["id"].as_str().expect("id").to_string();
    (id, keyed)
}

/// ACTIVE with FLASH3, a renewal and a customer's reboot done.
fn active_order(app: &TestApp) -> String {
    let id = create(app, "alice", Some("FLASH3"));
    pay_and_wait(app, &id, "ACTIVE");
    let r = app.admin_post(&id, "renewals", json!({"amount": 150000}));
    assert_eq!(r.status, 200, "{}", r.text);
    let path = format!("/api/v1/orders/{id}/actions");
    let reboot = json!({"type": "reboot"});
    let (status, text) = call(
        app.addr,
        "POST",
        &path,
        Who::User("alice"),
        &[],
        Some(&reboot),
    );
    assert_eq!(status, 202, "{text}");
    let done = wait_for(WAIT, || {
        app.sweep();
        let actions = get_json(app.addr, &path, Who::User("alice"));
        (actions["data"][0]["status"] == "completed").then_some(())
    });
    assert!(done.is_some(), "the reboot never completed");
    id
}

/// Every status, the last two left open: a droplet that never boots, and
/// an order paid once the reconciler is stopped (so it stays PAID).
fn build(app: &TestApp, shop: &Shop) -> Orders {
    let (pending, keyed) = keyed_order(app);
    let payment_failed = create(app, "bob", None);
    let r = app.admin_post(
        &payment_failed,
        "payment-status",
        json!({"status": "PAYMENT_FAILED", "notes": "card declined"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let canceled = create(app, "carol", Some("PERTAMA"));
    let path = format!("/api/v1/orders/{canceled}/cancel");
    let (status, text) = call(app.addr, "POST", &path, Who::User("carol"), &[], None);
    assert_eq!(status, 200, "{text}");
    let active = active_order(app);
    let suspended = app.active_order("bob");
    assert_eq!(app.admin_post(&suspended, "suspend", json!({})).status, 200);
    settle(app, &suspended);
    let terminated = app.active_order("carol");
    assert_eq!(
        app.admin_post(&terminated, "terminate", json!({})).status,
        200
    );
    settle(app, &terminated);
    let failed = create(app, "alice", None);
    shop.fake
        .reject_next_create(422, "unprocessable_entity", "the region cannot take it");
    pay_and_wait(app, &failed, "FAILED");
    let provisioning = create(app, "bob", None);
    // `new` for eight observations: still booting when the reconciler
    // stops below, up within seconds once an instance on PostgreSQL looks.
    shop.fake.push_script(DropletScript::new().active_after(8));
    pay_and_wait(app, &provisioning, "PROVISIONING");
    freeze(&app.provisioner);
    let paid = create(app, "carol", None);
    assert_eq!(app.pay(&paid).status, 200);
    Orders {
        pending,
        payment_failed,
        canceled,
        active,
        suspended,
        terminated,
        failed,
        provisioning,
        paid,
        keyed,
    }
}

/// Every delivery, every page.
fn all_deliveries(addr: SocketAddr) -> Vec<Value> {
    let mut rows = Vec::new();
    for page in 1.. {
        let path = format!("/api/v1/internal/webhooks/deliveries?limit=100&page={page}");
        let list = get_json(addr, &path, Who::Admin);
        let items = list["data"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        rows.extend(items);
    }
    rows
}

/// Waits until the outbox stays as it is: everything delivered to the
/// endpoint that answers; to the one that does not, each order's first
/// delivery tried once (retried in an hour; its later ones wait behind it,
/// in commit order). Returns every delivery.
fn quiet_outbox(addr: SocketAddr, shop: &Shop) -> Vec<Value> {
    let quiet = wait_for(WAIT, || {
        let rows = all_deliveries(addr);
        let to = |r: &&Value, url: &str| r["url"] == url;
        let ok: Vec<&Value> = rows.iter().filter(|r| to(r, &shop.ok.url())).collect();
        let down: Vec<&Value> = rows.iter().filter(|r| to(r, &shop.down.url())).collect();
        let orders = |rows: &[&Value], tried: bool| -> std::collections::BTreeSet<String> {
            rows.iter()
                .filter(|r| !tried || r["attempts"] == 1)
                .filter_map(|r| r["orderId"].as_str().map(str::to_string))
                .collect()
        };
        let settled = !ok.is_empty()
            && ok.len() == down.len()
            && ok.iter().all(|r| r["status"] == "delivered")
            && orders(&down, true) == orders(&down, false);
        settled.then_some(rows)
    });
    quiet.unwrap_or_else(|| panic!("the outbox never settled: {:#?}", all_deliveries(addr)))
}

type Capture = Vec<(String, u16, String)>;

/// Everything read back after the copy: each order as admin and owner
/// (history, task, actions, deliveries), list pages, filters, counts.
fn read_everything(addr: SocketAddr, orders: &Orders) -> Capture {
    let mut paths: Vec<(String, Who<'_>)> = Vec::new();
    for (id, user) in orders.all() {
        paths.push((format!("/api/v1/internal/orders/{id}"), Who::Admin));
        paths.push((format!("/api/v1/orders/{id}"), Who::User(user)));
        paths.push((format!("/api/v1/orders/{id}/actions"), Who::User(user)));
        paths.push((format!("/api/v1/internal/orders/{id}/actions"), Who::Admin));
        let deliveries = format!("/api/v1/internal/webhooks/deliveries?orderId={id}");
        paths.push((deliveries, Who::Admin));
    }
    for page in 1..=3 {
        paths.push((
            format!("/api/v1/internal/orders?limit=4&page={page}"),
            Who::Admin,
        ));
        let deliveries = format!("/api/v1/internal/webhooks/deliveries?limit=20&page={page}");
        paths.push((deliveries, Who::Admin));
    }
    for status in [
        "PENDING_PAYMENT",
        "PAID",
        "PROVISIONING",
        "ACTIVE",
        "FAILED",
        "CANCELED",
        "SUSPENDED",
        "TERMINATED",
    ] {
        paths.push((
            format!("/api/v1/internal/orders?status={status}"),
            Who::Admin,
        ));
    }
    for status in ["pending", "delivered"] {
        let path = format!("/api/v1/internal/webhooks/deliveries?status={status}&limit=7&page=2");
        paths.push((path, Who::Admin));
    }
    for user in ["alice", "bob", "carol"] {
        for page in 1..=2 {
            paths.push((
                format!("/api/v1/orders?limit=2&page={page}"),
                Who::User(user),
            ));
        }
        paths.push(("/api/v1/orders/stats".to_string(), Who::User(user)));
    }
    paths
        .into_iter()
        .map(|(path, who)| {
            let (status, text) = call(addr, "GET", &path, who, &[], None);
            (path, status, text)
        })
        .collect()
}

/// What `store copy` must print, as the redb app tells it.
struct Expected {
    history: u64,
    tasks: u64,
    actions: u64,
    deliveries: u64,
    pending: u64,
}

fn expected_counts(addr: SocketAddr, orders: &Orders, deliveries: &[Value]) -> Expected {
    let mut e = Expected {
        history: 0,
        tasks: 0,
        actions: 0,
        deliveries: deliveries.len() as u64,
        pending: deliveries
            .iter()
            .filter(|d| d["status"] == "pending")
            .count() as u64,
    };
    for (id, _) in orders.all() {
        let order = get_json(addr, &format!("/api/v1/internal/orders/{id}"), Who::Admin);
        let history = order["data"]["statusHistory"]
            .as_array()
            .map_or(0, Vec::len);
        e.history += history as u64;
        e.tasks += u64::from(!order["data"]["provisioningTask"].is_null());
        let path = format!("/api/v1/internal/orders/{id}/actions");
        let actions = get_json(addr, &path, Who::Admin);
        e.actions += actions["meta"]["total"].as_u64().unwrap_or(0);
    }
    e
}

fn check_copy_report(stdout: &str, e: &Expected) {
    assert_eq!(count(stdout, "orders"), 9, "{stdout}");
    assert_eq!(count(stdout, "history rows"), e.history, "{stdout}");
    assert_eq!(count(stdout, "tasks"), e.tasks, "{stdout}");
    assert_eq!(count(stdout, "customer actions"), e.actions, "{stdout}");
    assert_eq!(
        count(stdout, "idempotency keys"),
        1,
        "alice's key: {stdout}"
    );
    // FLASH3, which two orders count; PERTAMA's one use was released by
    // carol's cancel.
    assert_eq!(count(stdout, "coupons"), 1, "{stdout}");
    // Both endpoints take every event: one delivery each.
    assert_eq!(count(stdout, "events"), e.deliveries / 2, "{stdout}");
    assert_eq!(count(stdout, "deliveries"), e.deliveries, "{stdout}");
    let pending = format!("deliveries: {} (pending: {})", e.deliveries, e.pending);
    assert!(stdout.contains(&pending), "{pending}: {stdout}");
    assert!(e.pending > 0 && e.tasks >= 6 && e.actions >= 1 && e.history > 20);
}

/// Holds the leadership lock of the database at `url` (SPEC §15; the key
/// is `LEADER_LOCK` in src/store/pg/leader.rs) while it lives: an instance
/// started meanwhile serves requests but runs no background work, so what
/// it answers is exactly what was copied.
fn hold_leadership(url: &str) -> postgres::Client {
    const LEADER_LOCK: i64 = 0x7670_7364_0000_0002;
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LEADER_LOCK])
        .expect("take the leadership");
    client
}

fn compare(redb: &Capture, addr: SocketAddr, orders: &Orders) {
    let on_pg = read_everything(addr, orders);
    assert_eq!(on_pg.len(), redb.len());
    for ((path, status, text), (_, pg_status, pg_text)) in redb.iter().zip(&on_pg) {
        assert_eq!(*status, 200, "GET {path} on redb: {text}");
        assert_eq!(
            (pg_status, pg_text),
            (status, text),
            "GET {path}: PostgreSQL (left) and the redb file (right) differ"
        );
    }
}

/// Why a coupon was refused (`INVALID_COUPON`'s reason).
fn coupon_refusal(text: &str) -> String {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    assert_eq!(body["error"]["code"], "INVALID_COUPON", "{text}");
    body["error"]["details"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// What was copied keeps working: alice's key replays her first answer
/// byte for byte; carol's PERTAMA, released by her cancel, is hers once
/// more; FLASH3 has one use left of three; a new order sorts first (the
/// sequence is past the copied ones).
fn writes_continue(addr: SocketAddr, orders: &Orders) {
    let key = [("Idempotency-Key", KEY)];
    let body = order_body(Some("FLASH3"));
    let replay = call(
        addr,
        "POST",
        "/api/v1/orders",
        Who::User("alice"),
        &key,
        Some(&body),
    );
    assert_eq!(
        replay, orders.keyed,
        "the copied key replays the first answer"
    );
    let order = |user: &str, code: &str| {
        let body = order_body(Some(code));
        call(
            addr,
            "POST",
            "/api/v1/orders",
            Who::User(user),
            &[],
            Some(&body),
        )
    };
    let (status, text) = order("carol", "PERTAMA");
    assert_eq!(status, 201, "{text}");
    let (status, text) = order("carol", "PERTAMA");
    assert_eq!(
        (status, coupon_refusal(&text)),
        (400, "LIMIT_PER_USER_REACHED".into()),
        "{text}"
    );
    let (status, text) = order("bob", "FLASH3");
    assert_eq!(status, 201, "{text}");
    let newest: Value = serde_json::from_str(&text).expect("JSON");
    let (status, text) = order("carol", "FLASH3");
    assert_eq!(
        (status, coupon_refusal(&text)),
        (400, "LIMIT_GLOBAL_REACHED".into()),
        "{text}"
    );
    let first = get_json(addr, "/api/v1/internal/orders?limit=1", Who::Admin);
    assert_eq!(first["data"][0]["id"], newest["data"]["id"], "newest first");
}

fn admin_order(addr: SocketAddr, id: &str) -> Value {
    get_json(addr, &format!("/api/v1/internal/orders/{id}"), Who::Admin)["data"].clone()
}

/// An instance that runs the background work finishes what the file left
/// open: the PAID order and the booting droplet end ACTIVE with one droplet
/// each; the deliveries the failing endpoint still owed (replayed now that
/// it answers) and the new ones all arrive, and nothing delivered before
/// the copy is sent again.
fn resume(config: &Config, shop: &Shop, orders: &Orders) {
    shop.down.set_default(Answer::Status(204));
    let app = start_pg(config.clone());
    for d in all_deliveries(app.addr) {
        if d["status"] == "pending" && d["attempts"] == 1 {
            let id = d["id"].as_str().expect("id");
            let path = format!("/api/v1/internal/webhooks/deliveries/{id}/replay");
            let (status, text) = call(app.addr, "POST", &path, Who::Admin, &[], None);
            assert!(status == 200 || status == 202, "replay: {text}");
        }
    }
    for id in [&orders.paid, &orders.provisioning] {
        let active = wait_for(WAIT, || {
            let order = admin_order(app.addr, id);
            (order["status"] == "ACTIVE").then_some(())
        });
        assert!(active.is_some(), "{id}: {}", admin_order(app.addr, id));
        let tag = format!("vpsd-order-{id}");
        assert_eq!(shop.fake.droplet_ids_with_tag(&tag).len(), 1, "{id}");
    }
    let delivered = wait_for(WAIT, || {
        let rows = all_deliveries(app.addr);
        rows.iter()
            .all(|d| d["status"] == "delivered")
            .then_some(rows)
    });
    let rows = delivered.unwrap_or_else(|| panic!("{:#?}", all_deliveries(app.addr)));
    let to_ok = rows.iter().filter(|d| d["url"] == shop.ok.url()).count();
    assert_eq!(
        shop.ok.received().len(),
        to_ok,
        "each event once to the endpoint"
    );
}

/// `vpsd verify URL` is clean; then, with an order's status changed and
/// another's last history row deleted behind vpsd's back, it fails and
/// names both.
fn verify_then_break(url: &str, orders: &Orders) {
    let out = vpsd(&["verify", url]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
    assert_eq!(count(&stdout, "orders"), 11, "nine copied, two made since");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));
    let (active, terminated) = (&orders.active, &orders.terminated);
    pg().psql(
        url,
        &format!("UPDATE orders SET status = 'PAID' WHERE id = '{active}'"),
    );
    pg().psql(
        url,
        &format!(
            "DELETE FROM order_history WHERE order_id = '{terminated}' AND no = \
             (SELECT max(no) FROM order_history WHERE order_id = '{terminated}')"
        ),
    );
    let out = vpsd(&["verify", url]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(!stdout.contains("\nok"), "{stdout}");
    let problems: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("problem: "))
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&format!("order {active}: orders.status"))),
        "{stdout}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&format!("order {terminated}: history rows"))),
        "{stdout}"
    );
    assert_eq!(problems.len(), 2, "only what was planted: {stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("vpsd: verify ") && stderr.contains("2 problem"),
        "{stderr}"
    );
}

/// Every table's rows and both sequences, for "nothing was written".
fn fingerprint(url: &str) -> String {
    let tables = pg().psql(
        url,
        "SELECT string_agg(table_name::text, ',' ORDER BY table_name) \
         FROM information_schema.tables WHERE table_schema = 'public'",
    );
    let mut out = format!("tables: {tables}\n");
    for table in tables.split(',').filter(|t| !t.is_empty()) {
        let rows = pg().psql(
            url,
            &format!("SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"),
        );
        out.push_str(&format!("{table}: {rows}\n"));
    }
    if tables.contains("orders") {
        for seq in ["vpsd_order_seq", "vpsd_event_seq"] {
            let value = pg().psql(
                url,
                &format!("SELECT last_value || '/' || is_called FROM {seq}"),
            );
            out.push_str(&format!("{seq}: {value}\n"));
        }
    }
    out
}

/// One failing line on stderr, nothing on stdout, never the password.
fn refused(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, "", "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("vpsd: "), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    stderr
}

#[test]
fn a_copied_file_reads_back_identically_resumes_and_verifies() {
    let shop = Shop::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = shop.config(dir.path());
    let app = support::start(config.clone(), None);
    let orders = build(&app, &shop);
    for ((id, _), status) in orders.all().into_iter().zip([
        "PENDING_PAYMENT",
        "PENDING_PAYMENT",
        "CANCELED",
        "ACTIVE",
        "SUSPENDED",
        "TERMINATED",
        "FAILED",
        "PROVISIONING",
        "PAID",
    ]) {
        assert_eq!(admin_order(app.addr, id)["status"], status, "{id}");
    }
    let deliveries = quiet_outbox(app.addr, &shop);
    let expected = expected_counts(app.addr, &orders, &deliveries);
    let before = read_everything(app.addr, &orders);
    drop(app);

    let url = pg().fresh_database();
    let file = config.storage.path.to_str().expect("a UTF-8 path");
    let out = vpsd(&["store", "copy", "--from", file, "--to", &url]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    check_copy_report(&stdout, &expected);

    let pg_config = on_postgres(&config, &url);
    {
        // Dropped in reverse: the instance stops, then the lock goes.
        let _leader = hold_leadership(&url);
        let reader = start_pg(pg_config.clone());
        compare(&before, reader.addr, &orders);
        writes_continue(reader.addr, &orders);
    }
    resume(&pg_config, &shop, &orders);
    verify_then_break(&url, &orders);

    // A second copy into the now busy database: refused, nothing written.
    let before = fingerprint(&url);
    let stderr = refused(&vpsd(&["store", "copy", "--from", file, "--to", &url]));
    assert!(stderr.contains("already holds vpsd data"), "{stderr}");
    assert_eq!(fingerprint(&url), before);
}

/// A URL with a password for a port nothing listens on.
fn unreachable_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("postgres://vpsd:{PASSWORD}@127.0.0.1:{port}/shop")
}

#[test]
fn copy_refuses_what_it_cannot_copy_whole_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = base_config(dir.path());
    config.storage.backend = StorageBackend::Redb;
    let app = support::start(config.clone(), None);
    app.create_order("alice");
    let file = config
        .storage
        .path
        .to_str()
        .expect("a UTF-8 path")
        .to_string();
    let copy = |to: &str| vpsd(&["store", "copy", "--from", &file, "--to", to]);

    // The file of a running daemon: refused before the database is touched.
    let url = pg().fresh_database();
    let stderr = refused(&copy(&url));
    assert!(stderr.contains("running vpsd"), "{stderr}");
    assert_eq!(fingerprint(&url), "tables: \n", "no table was created");
    drop(app);

    let stderr = refused(&copy(&unreachable_url()));
    assert!(
        stderr.contains("cannot connect to PostgreSQL vpsd@127.0.0.1:"),
        "{stderr}"
    );
    let bad = format!("postgres://vpsd:{PASSWORD}@127.0.0.1:notaport/shop");
    let stderr = refused(&copy(&bad));
    assert!(stderr.contains("not a valid PostgreSQL URL"), "{stderr}");
    let missing = vpsd(&[
        "store",
        "copy",
        "--from",
        "/nonexistent/vpsd.redb",
        "--to",
        &url,
    ]);
    assert!(refused(&missing).contains("no data file"));

    // Another application's database: left as it was.
    let foreign = pg().fresh_database();
    pg().psql(
        &foreign,
        "CREATE TABLE invoices (id int); INSERT INTO invoices VALUES (1)",
    );
    let before = fingerprint(&foreign);
    let stderr = refused(&copy(&foreign));
    assert!(stderr.contains("another application"), "{stderr}");
    assert_eq!(fingerprint(&foreign), before);

    // vpsd's tables made by an instance, still empty: that is a copy's
    // target as much as an empty database.
    drop(start_pg(on_postgres(&config, &url)));
    let out = copy(&url);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(count(&stdout, "orders"), 1, "{stdout}");
    assert!(!stdout.contains(PASSWORD));
    let verified = vpsd(&["verify", &url]);
    assert!(verified.status.success(), "{:?}", text(&verified));
}

#[test]
fn verify_url_says_in_one_line_what_it_cannot_check() {
    let empty = pg().fresh_database();
    let stderr = refused(&vpsd(&["verify", &empty]));
    assert!(stderr.contains("holds no vpsd tables"), "{stderr}");
    assert_eq!(fingerprint(&empty), "tables: \n", "verify creates nothing");
    let stderr = refused(&vpsd(&["verify", &unreachable_url()]));
    assert!(stderr.contains("cannot connect"), "{stderr}");
    let newer = pg().fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    drop(start_pg(on_postgres(&base_config(dir.path()), &newer)));
    pg().psql(
        &newer,
        "UPDATE vpsd_meta SET value = 999 WHERE key = 'schema_version'",
    );
    let stderr = refused(&vpsd(&["verify", &newer]));
    assert!(stderr.contains("newer than this vpsd supports"), "{stderr}");
}

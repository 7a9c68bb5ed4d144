//! The operator console over HTTP (SPEC §11): sessions, cookies, CSRF, the
//! CSP, and every action form changing an order exactly as the same API call
//! does. The browser-driven flow is in `tests/browser.rs`.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::{spawn_app, spawn_app_with, Auth, TestApp, API_KEY};

const CSP: &str = "default-src 'self'; frame-ancestors 'none'";

/// A console response.
#[derive(Debug)]
struct Page {
    status: u16,
    headers: Vec<(String, String)>,
    text: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of the first `name="csrf"` (or other hidden) field.
    fn field(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.text.find(&marker)? + marker.len();
        let end = self.text[start..].find('"')? + start;
        Some(self.text[start..end].to_string())
    }
}

/// A cookie-keeping client that does not follow redirects.
struct Browser {
    /// `http://host:port` of the daemon, in-process or a child process.
    base: String,
    agent: ureq::Agent,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser::at(app.url(""))
    }

    fn at(base: String) -> Browser {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Browser {
            base,
            agent,
            cookies: BTreeMap::new(),
        }
    }

    fn send(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            builder = builder.header("Cookie", jar.join("; "));
        }
        let result = match form {
            Some(fields) => {
                let body = serde_urlencoded::to_string(fields).expect("form");
                let request = builder
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body.into_bytes())
                    .expect("request");
                self.agent.run(request)
            }
            None => self.agent.run(builder.body(()).expect("request")),
        };
        let mut response = result.expect("HTTP round trip");
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let page = Page {
            status: response.status().as_u16(),
            text: response.body_mut().read_to_string().unwrap_or_default(),
            headers,
        };
        for cookie in page.set_cookies() {
            let pair = cookie.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || cookie.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        page
    }

    fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, None)
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send("POST", path, Some(form))
    }

    /// Opens the login form and submits it.
    fn try_login(&mut self, key: &str, operator: &str) -> Page {
        let form = self.get("/admin/login");
        assert_eq!(form.status, 200, "{}", form.text);
        let csrf = form.field("csrf").expect("login form carries a CSRF token");
        self.post(
            "/admin/login",
            &[("csrf", &csrf), ("key", key), ("operator", operator)],
        )
    }

    fn login(&mut self, operator: &str) {
        let r = self.try_login(API_KEY, operator);
        assert_eq!(r.status, 303, "login failed: {}", r.text);
        assert_eq!(r.header("location"), Some("/admin/"));
    }

    /// The CSRF token of the session, read from any logged-in page.
    fn csrf(&mut self) -> String {
        self.get("/admin/orders")
            .field("csrf")
            .expect("logged-in pages carry the CSRF token")
    }
}

fn history(app: &TestApp, id: &str) -> Vec<Value> {
    app.admin_order(id).data()["statusHistory"]
        .as_array()
        .expect("statusHistory")
        .clone()
}

fn status(app: &TestApp, id: &str) -> String {
    app.admin_order(id).data()["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// A history row without what differs between two orders (ids, times,
/// droplet details): what the row says happened and who did it.
fn gist(row: &Value) -> Value {
    let meta: Value = row["metadata"]
        .as_str()
        .and_then(|m| serde_json::from_str(m).ok())
        .or_else(|| Some(row["metadata"].clone()))
        .unwrap_or(Value::Null);
    let kept: BTreeMap<String, Value> = meta
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let stable = [
                        "suspendReason",
                        "terminationReason",
                        "renewalType",
                        "periods",
                        "amount",
                        "paymentMethod",
                    ];
                    let v = if stable.contains(&k.as_str()) {
                        v.clone()
                    } else {
                        Value::String("*".into())
                    };
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "previousStatus": row["previousStatus"],
        "newStatus": row["newStatus"],
        "actor": row["actor"],
        "reason": row["reason"],
        "metadata": kept,
    })
}

#[test]
fn pages_need_a_session_and_show_no_data_without_one() {
    let app = spawn_app();
    let id = app.create_order("secret-user-1").id();
    let mut b = Browser::new(&app);
    for path in [
        "/admin",
        "/admin/",
        "/admin/orders",
        "/admin/orders?userId=secret-user-1",
        &format!("/admin/orders/{id}"),
        &format!("/admin/orders/{id}/terminate"),
        "/admin/attention",
        "/admin/backups",
        "/admin/webhooks",
        "/admin/webhooks?status=failed",
        "/admin/accounts",
    ] {
        let r = b.get(path);
        assert_eq!(r.status, 303, "{path}: {}", r.text);
        assert_eq!(r.header("location"), Some("/admin/login"), "{path}");
        assert!(!r.text.contains("secret-user-1"), "{path} leaked data");
    }
    // A POST without a session is refused outright and changes nothing.
    let r = b.post(&format!("/admin/orders/{id}/pay"), &[("csrf", "x")]);
    assert_eq!(r.status, 403);
    assert!(r.text.contains("session has ended"), "{}", r.text);
    assert_eq!(status(&app, &id), "PENDING_PAYMENT");
    // The login page and its stylesheet are open.
    assert_eq!(b.get("/admin/login").status, 200);
    let css = b.get("/admin/style.css");
    assert_eq!(css.status, 200);
    assert!(css
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/css"));
}

#[test]
fn a_wrong_key_sets_no_cookie_and_a_right_one_sets_a_strict_session_cookie() {
    let app = spawn_app();
    let mut b = Browser::new(&app);
    let r = b.try_login("not-the-key", "alice");
    assert_eq!(r.status, 401);
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    assert!(r.text.contains("That key is not right."));
    assert!(!r.text.contains("not-the-key"), "the typed key is echoed");
    assert_eq!(b.get("/admin/").status, 303);

    let r = b.try_login(API_KEY, "alice");
    assert_eq!(r.status, 303, "{}", r.text);
    let session = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("vpsd_session="))
        .expect("a session cookie")
        .to_string();
    let value = session
        .split(';')
        .next()
        .and_then(|p| p.split_once('='))
        .map(|(_, v)| v.to_string())
        .unwrap();
    assert!(value.len() >= 32, "session id has 128+ bits: {value}");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/admin",
        "Max-Age=28800",
    ] {
        assert!(
            session.contains(attribute),
            "{attribute} missing: {session}"
        );
    }
    assert!(!session.contains("Secure"), "plain http: no Secure");
    let overview = b.get("/admin/");
    assert_eq!(overview.status, 200);
    assert!(overview.text.contains("admin:alice"));

    // A second login gets a different session id.
    let mut other = Browser::new(&app);
    other.login("bob");
    assert_ne!(
        other.cookies.get("vpsd_session"),
        b.cookies.get("vpsd_session")
    );
}

#[test]
fn an_https_public_url_makes_the_cookie_secure_and_the_ttl_is_configurable() {
    let app = spawn_app_with(|c| {
        c.server.public_url = Some("https://vps.example.com".into());
        c.admin.session_ttl_seconds = 600;
    });
    let mut b = Browser::new(&app);
    let r = b.try_login(API_KEY, "");
    assert_eq!(r.status, 303);
    let session = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("vpsd_session="))
        .expect("session cookie")
        .to_string();
    assert!(session.contains("; Secure"), "{session}");
    assert!(session.contains("Max-Age=600"), "{session}");
}

#[test]
fn every_console_response_carries_the_csp_and_no_page_has_script_or_inline_style() {
    let app = spawn_app();
    let id = app.create_order("u-csp").id();
    let mut b = Browser::new(&app);
    let mut pages = vec![
        b.get("/admin/"),
        b.get("/admin/login"),
        b.get("/admin/nope"),
    ];
    b.login("csp");
    for path in [
        "/admin/".to_string(),
        "/admin/orders".into(),
        format!("/admin/orders/{id}"),
        format!("/admin/orders/{id}/cancel"),
        format!("/admin/orders/{id}/renew"),
        "/admin/attention".into(),
        "/admin/backups".into(),
        "/admin/webhooks".into(),
        "/admin/webhooks?status=nope".into(),
        "/admin/accounts".into(),
        "/admin/style.css".into(),
        "/admin/favicon.svg".into(),
        "/admin/orders/not-a-uuid".into(),
        "/admin/no-such-page".into(),
    ] {
        pages.push(b.get(&path));
    }
    pages.push(b.post("/admin/orders", &[]));
    for page in &pages {
        assert_eq!(
            page.header("content-security-policy"),
            Some(CSP),
            "{page:?}"
        );
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
        let html = page.text.to_ascii_lowercase();
        assert!(!html.contains("<script"), "script in {}", page.text);
        assert!(!html.contains(" style="), "inline style in {}", page.text);
        assert!(!html.contains("<style"), "style element in {}", page.text);
    }
    // Unknown pages are HTML pages, not the API's JSON.
    let missing = b.get("/admin/no-such-page");
    assert_eq!(missing.status, 404);
    assert!(missing.text.contains("<title>Not found"));
}

#[test]
fn a_post_without_a_valid_csrf_token_is_403_and_changes_nothing() {
    let app = spawn_app();
    let id = app.create_order("u-csrf").id();
    let mut b = Browser::new(&app);
    b.login("alice");
    let before = history(&app, &id);
    for form in [vec![], vec![("csrf", "0000")], vec![("csrf", "")]] {
        let r = b.post(&format!("/admin/orders/{id}/pay"), &form);
        assert_eq!(r.status, 403, "{}", r.text);
        assert!(r.text.contains("nothing was changed"));
        let r = b.post(
            &format!("/admin/orders/{id}/cancel"),
            &[form.as_slice(), &[("confirm", "yes")]].concat(),
        );
        assert_eq!(r.status, 403);
        let r = b.post("/admin/backups", &form);
        assert_eq!(r.status, 403);
        let r = b.post("/admin/logout", &form);
        assert_eq!(r.status, 403);
    }
    assert_eq!(history(&app, &id), before);
    assert_eq!(status(&app, &id), "PENDING_PAYMENT");
    assert!(
        !app.config.backup.dir.exists()
            || std::fs::read_dir(&app.config.backup.dir).unwrap().count() == 0,
        "no snapshot was taken"
    );
    // Another session's token is not this session's.
    let mut other = Browser::new(&app);
    other.login("bob");
    let foreign = other.csrf();
    let r = b.post(&format!("/admin/orders/{id}/pay"), &[("csrf", &foreign)]);
    assert_eq!(r.status, 403);
    // The login form's own token is checked too.
    let mut fresh = Browser::new(&app);
    fresh.get("/admin/login");
    let r = fresh.post("/admin/login", &[("csrf", "wrong"), ("key", API_KEY)]);
    assert_eq!(r.status, 403);
    assert!(r
        .set_cookies()
        .iter()
        .all(|c| !c.starts_with("vpsd_session=")));
}

#[test]
fn each_action_form_changes_the_order_exactly_like_the_api() {
    let app = spawn_app();
    let console_id = app.create_order("u-twin").id();
    let api_id = app.create_order("u-twin").id();
    let mut b = Browser::new(&app);
    b.login("alice");
    let csrf = b.csrf();
    let admin = [("X-Admin-Id", "alice")];
    let api = |path: &str, body: Value| {
        let bytes = serde_json::to_vec(&body).unwrap();
        app.request(
            "POST",
            &format!("/api/v1/internal/orders/{api_id}/{path}"),
            Auth::Admin,
            &admin,
            Some(("application/json", &bytes)),
        )
    };
    let mut console = |action: &str, fields: &[(&str, &str)]| {
        let form = [&[("csrf", csrf.as_str()), ("confirm", "yes")], fields].concat();
        let r = b.post(&format!("/admin/orders/{console_id}/{action}"), &form);
        assert_eq!(r.status, 303, "{action}: {}", r.text);
        assert_eq!(
            r.header("location"),
            Some(format!("/admin/orders/{console_id}?done={action}").as_str())
        );
    };

    console("payment-failed", &[("notes", "card declined")]);
    assert_eq!(
        api(
            "payment-status",
            json!({"status": "PAYMENT_FAILED", "notes": "card declined"})
        )
        .status,
        200
    );
    console("pay", &[("notes", "transfer 42")]);
    assert_eq!(
        api(
            "payment-status",
            json!({"status": "PAID", "notes": "transfer 42"})
        )
        .status,
        200
    );
    app.wait_for_status(&console_id, &["ACTIVE"], Duration::from_secs(30));
    app.wait_for_status(&api_id, &["ACTIVE"], Duration::from_secs(30));
    console("suspend", &[("reason", "abuse report")]);
    assert_eq!(
        api("suspend", json!({"reason": "abuse report"})).status,
        200
    );
    console("unsuspend", &[("reason", "resolved")]);
    assert_eq!(api("unsuspend", json!({"reason": "resolved"})).status, 200);
    console(
        "renew",
        &[
            ("periods", "2"),
            ("amount", "300000"),
            ("renewalType", "AUTO_RENEWAL"),
            ("notes", "yearly"),
        ],
    );
    assert_eq!(
        api("renewals", json!({"periods": 2, "amount": 300000, "renewalType": "AUTO_RENEWAL", "notes": "yearly"})).status,
        200
    );
    console(
        "expiry",
        &[
            ("expiresAt", "2031-01-15T10:00"),
            ("reason", "compensation"),
        ],
    );
    assert_eq!(
        api(
            "expiry",
            json!({"expiresAt": "2031-01-15T10:00:00Z", "reason": "compensation"})
        )
        .status,
        200
    );
    console(
        "terminate",
        &[
            ("terminationReason", "POLICY_VIOLATION"),
            ("reason", "spam"),
        ],
    );
    assert_eq!(
        api(
            "terminate",
            json!({"terminationReason": "POLICY_VIOLATION", "reason": "spam"})
        )
        .status,
        200
    );

    let ours: Vec<Value> = history(&app, &console_id).iter().map(gist).collect();
    let theirs: Vec<Value> = history(&app, &api_id).iter().map(gist).collect();
    assert_eq!(ours, theirs);
    assert!(ours
        .iter()
        .any(|r| r["actor"] == "admin:alice" && r["newStatus"] == "TERMINATED"));
    let (a, c) = (app.admin_order(&api_id), app.admin_order(&console_id));
    for field in ["status", "terminationReason", "expiresAt"] {
        assert_eq!(a.data()[field], c.data()[field], "{field}");
    }
    assert_eq!(
        a.data()["renewals"].as_array().map(Vec::len),
        c.data()["renewals"].as_array().map(Vec::len)
    );
}

#[test]
fn a_conflict_is_a_sentence_on_the_page_and_changes_nothing() {
    let app = spawn_app();
    let id = app.create_order("u-conflict").id();
    let mut b = Browser::new(&app);
    b.login("alice");
    let csrf = b.csrf();
    // Suspend is not allowed from PENDING_PAYMENT: the API says 409.
    let api = app.post_empty(
        &format!("/api/v1/internal/orders/{id}/suspend"),
        Auth::Admin,
    );
    assert_eq!(api.status, 409);
    assert_eq!(api.code(), "ORDER_STATUS_CONFLICT");
    let before = history(&app, &id);
    let r = b.post(
        &format!("/admin/orders/{id}/suspend"),
        &[("csrf", &csrf), ("confirm", "yes")],
    );
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(
        r.text
            .contains("Cannot suspend the order: the order is PENDING_PAYMENT now"),
        "{}",
        r.text
    );
    assert!(
        !r.text.contains("ORDER_STATUS_CONFLICT"),
        "no JSON codes on pages"
    );
    // Paying twice: the second is the API's PAYMENT_STATUS_CONFLICT, as a sentence.
    let r = b.post(&format!("/admin/orders/{id}/pay"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    let r = b.post(&format!("/admin/orders/{id}/pay"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("Cannot mark the order paid"), "{}", r.text);
    let paid_rows = history(&app, &id)
        .iter()
        .filter(|r| r["newStatus"] == "PAID")
        .count();
    assert_eq!(paid_rows, 1, "only the first payment counted");
    assert_eq!(before.len(), 1);
    // Bad input is named in words: a renewal without an amount.
    let active = app.wait_for_status(&id, &["ACTIVE"], Duration::from_secs(30));
    assert_eq!(active.data()["status"], "ACTIVE");
    let r = b.post(
        &format!("/admin/orders/{id}/renew"),
        &[("csrf", &csrf), ("periods", "13")],
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("Please check the form: Periods must be a whole number from 1 to 12; Amount is required"), "{}", r.text);
    // The actions offered are exactly those the status allows.
    let page = b.get(&format!("/admin/orders/{id}"));
    for shown in ["/suspend\"", "/renew\"", "/expiry\"", "/terminate\""] {
        assert!(page.text.contains(shown), "{shown} missing");
    }
    for hidden in [
        "/pay\"",
        "/cancel\"",
        "/unsuspend\"",
        "/retry\"",
        "/payment-failed\"",
    ] {
        assert!(
            !page.text.contains(hidden),
            "{hidden} offered on an ACTIVE order"
        );
    }
}

#[test]
fn a_destructive_action_without_confirmation_only_shows_the_confirmation() {
    let app = spawn_app();
    let id = app.create_order("u-confirm").id();
    let mut b = Browser::new(&app);
    b.login("alice");
    let csrf = b.csrf();
    let r = b.post(&format!("/admin/orders/{id}/cancel"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 200);
    assert!(r.text.contains("Yes, cancel order"), "{}", r.text);
    assert_eq!(status(&app, &id), "PENDING_PAYMENT");
    let page = b.get(&format!("/admin/orders/{id}/cancel"));
    assert!(page.text.contains("name=\"confirm\" value=\"yes\""));
    let r = b.post(
        &format!("/admin/orders/{id}/cancel"),
        &[
            ("csrf", &csrf),
            ("confirm", "yes"),
            ("reason", "customer asked"),
        ],
    );
    assert_eq!(r.status, 303);
    assert_eq!(status(&app, &id), "CANCELED");
    let last = history(&app, &id).last().cloned().unwrap();
    assert_eq!(last["reason"], "customer asked");
    assert_eq!(last["actor"], "admin:alice");
}

#[test]
fn a_resubmitted_renewal_form_renews_once() {
    let app = spawn_app();
    let id = app.create_order("u-renew").id();
    assert_eq!(app.pay(&id).status, 200);
    app.wait_for_status(&id, &["ACTIVE"], Duration::from_secs(30));
    let mut b = Browser::new(&app);
    b.login("");
    let form = b.get(&format!("/admin/orders/{id}/renew"));
    let csrf = form.field("csrf").unwrap();
    let idem = form
        .field("idem")
        .expect("the renewal form carries an idempotency key");
    let fields = [
        ("csrf", csrf.as_str()),
        ("idem", idem.as_str()),
        ("amount", "150000"),
    ];
    assert_eq!(
        b.post(&format!("/admin/orders/{id}/renew"), &fields).status,
        303
    );
    assert_eq!(
        b.post(&format!("/admin/orders/{id}/renew"), &fields).status,
        303
    );
    let renewals = app.admin_order(&id).data()["renewals"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(renewals, 1, "the second submit replayed the first");
    let last = history(&app, &id).last().cloned().unwrap();
    assert_eq!(
        last["actor"], "admin",
        "no operator name: the actor is admin"
    );
}

#[test]
fn five_failed_logins_lock_the_address_for_the_rest_of_the_minute() {
    let app = spawn_app();
    let mut b = Browser::new(&app);
    for _ in 0..5 {
        assert_eq!(b.try_login("wrong-key-attempt", "").status, 401);
    }
    let r = b.try_login(API_KEY, "");
    assert_eq!(r.status, 429, "even the right key waits: {}", r.text);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    assert!(r
        .set_cookies()
        .iter()
        .all(|c| !c.starts_with("vpsd_session=")));
}

#[test]
fn logout_ends_the_session_on_the_server() {
    let app = spawn_app();
    let mut b = Browser::new(&app);
    b.login("alice");
    let old = b.cookies.get("vpsd_session").cloned().unwrap();
    let csrf = b.csrf();
    let r = b.post("/admin/logout", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/admin/login"));
    assert!(r
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("vpsd_session=;") && c.contains("Max-Age=0")));
    // Replaying the old cookie does not bring the session back.
    b.cookies.insert("vpsd_session".into(), old);
    assert_eq!(b.get("/admin/").status, 303);
}

#[test]
fn the_console_is_off_without_an_api_key_or_when_disabled() {
    let app = spawn_app_with(|c| c.admin.enabled = Some(false));
    let r = app.get("/admin/", Auth::None);
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "NOT_FOUND");
    let app = spawn_app_with(|c| c.auth.internal_api_key = None);
    assert_eq!(app.get("/admin/login", Auth::None).code(), "NOT_FOUND");
    // The API keeps working beside the console.
    let app = spawn_app();
    assert_eq!(app.get("/api/v1/health", Auth::None).status, 200);
    assert_eq!(
        app.get("/admin", Auth::None).status,
        200,
        "redirect followed to the login page"
    );
}

#[test]
fn backups_page_lists_snapshots_and_takes_one() {
    let app = spawn_app();
    let mut b = Browser::new(&app);
    b.login("alice");
    let page = b.get("/admin/backups");
    assert!(page.text.contains("No snapshots yet."));
    let csrf = b.csrf();
    let r = b.post("/admin/backups", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    let page = b.get("/admin/backups?done=snapshot");
    assert!(page.text.contains("Snapshot written."));
    assert!(page.text.contains("vpsd-"), "{}", page.text);
    assert_eq!(
        std::fs::read_dir(&app.config.backup.dir).unwrap().count(),
        1
    );
}

/// The Overview says what `/health` says of this instance (SPEC §15): on
/// the embedded file, redb and background work done here.
#[test]
fn the_overview_names_the_backend_and_whether_this_instance_works_in_the_background() {
    let app = spawn_app();
    let mut b = Browser::new(&app);
    b.login("alice");
    let page = b.get("/admin/");
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("This instance"), "{}", page.text);
    assert!(
        page.text.contains(r#"data-backend="redb""#),
        "{}",
        page.text
    );
    assert!(page.text.contains("redb (the embedded data file)"));
    assert!(
        page.text.contains(r#"data-background-work="true">yes<"#),
        "{}",
        page.text
    );
    // The Backups page on redb still offers the snapshot.
    let backups = b.get("/admin/backups");
    assert!(backups.text.contains("Take a snapshot now"));
    assert!(!backups.text.contains("pg_dump"));
}

/// SPEC §15: on PostgreSQL the Backups page says backups are PostgreSQL's
/// and offers no button; a form posted anyway is refused, nothing written.
/// The real binary on a fresh database of the test cluster.
#[test]
fn on_postgres_the_backups_page_sends_the_operator_to_pg_dump() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = support::base_config(dir.path());
    config.storage.backend = vpsd::config::StorageBackend::Postgres;
    config.storage.postgres.url = Some(support::pg::cluster().fresh_database());
    let daemon = support::process::Daemon::start(&config, dir.path());
    let mut b = Browser::at(daemon.url(""));
    b.login("alice");
    let page = b.get("/admin/backups");
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text.contains("This shop keeps its data in PostgreSQL"),
        "{}",
        page.text
    );
    assert!(page.text.contains("pg_dump -Fc") && page.text.contains("pg_restore"));
    assert!(!page.text.contains("Take a snapshot now"), "{}", page.text);
    assert!(!page.text.contains(r#"action="/admin/backups""#));
    let csrf = b.csrf();
    let refused = b.post("/admin/backups", &[("csrf", &csrf)]);
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(
        refused.text.contains("Nothing was written."),
        "{}",
        refused.text
    );
    let written = std::fs::read_dir(&config.backup.dir).map_or(0, |d| d.count());
    assert_eq!(written, 0, "no snapshot on PostgreSQL");
    // One instance alone takes the background work, once it holds leadership.
    let overview = support::wait_for(Duration::from_secs(20), || {
        let page = b.get("/admin/");
        page.text
            .contains(r#"data-background-work="true">yes<"#)
            .then_some(page)
    })
    .expect("the only instance runs the background work");
    assert!(overview.text.contains(r#"data-backend="postgres""#));
    assert!(overview
        .text
        .contains("PostgreSQL (shared by every instance of this shop)"));
}

#[test]
fn orders_filters_and_pages_read_like_the_api() {
    let app = spawn_app();
    for _ in 0..3 {
        app.create_order("filter-a");
    }
    let b_id = app.create_order("filter-b").id();
    let mut b = Browser::new(&app);
    b.login("alice");
    let page = b.get("/admin/orders?status=&userId=filter-a&id=&limit=2");
    assert_eq!(page.status, 200);
    assert_eq!(page.text.matches("<td data-label=\"Order\">").count(), 2);
    assert!(
        page.text.contains("Page 1 of 2 · 3 orders"),
        "{}",
        page.text
    );
    assert!(!page.text.contains(&b_id[b_id.len() - 8..]));
    let page = b.get(&format!("/admin/orders?id={b_id}"));
    assert!(page.text.contains(&format!("/admin/orders/{b_id}")));
    let page = b.get("/admin/orders?status=ACTIVE");
    assert!(page.text.contains("No orders match these filters."));
    let page = b.get("/admin/orders?limit=1000");
    assert_eq!(page.status, 400);
    assert!(
        page.text.contains("limit must be an integer from 1 to 100"),
        "{}",
        page.text
    );
}

#[test]
fn attention_lists_failed_orders_and_failing_droplet_actions_and_retry_works_from_the_console() {
    let fake = support::fake_do::FakeDo::start();
    let app = spawn_app_with(|c| support::use_fake_do(c, &fake));
    // One order fails provisioning: DigitalOcean refuses the create.
    fake.reject_next_create(422, "unprocessable_entity", "Image is not available.");
    let failed = app.create_order("u-attn").id();
    assert_eq!(app.pay(&failed).status, 200);
    app.wait_for_status(&failed, &["FAILED"], Duration::from_secs(30));
    // Another is ACTIVE, then suspended while its droplet stays locked.
    let locked = app.create_order("u-attn").id();
    assert_eq!(app.pay(&locked).status, 200);
    app.wait_for_status(&locked, &["ACTIVE"], Duration::from_secs(30));
    fake.lock_next_droplet_actions(1000);
    let r = app.post_empty(
        &format!("/api/v1/internal/orders/{locked}/suspend"),
        Auth::Admin,
    );
    assert_eq!(r.status, 200);
    let retried = support::wait_for(Duration::from_secs(30), || {
        app.sweep();
        let r = app.admin_order(&locked);
        (r.data()["provisioningTask"]["errorCode"] == "DROPLET_ACTION_FAILED").then_some(())
    });
    assert!(retried.is_some(), "the power-off never failed");

    let mut b = Browser::new(&app);
    b.login("alice");
    let page = b.get("/admin/attention");
    assert_eq!(page.status, 200);
    let failed_section = page.text.split("id=\"failed-h\"").nth(1).unwrap_or("");
    let failed_section = failed_section.split("id=\"stuck-h\"").next().unwrap_or("");
    assert!(
        failed_section.contains(&failed[failed.len() - 8..]),
        "{}",
        page.text
    );
    let actions_section = page.text.split("id=\"actions-h\"").nth(1).unwrap_or("");
    assert!(
        actions_section.contains(&locked[locked.len() - 8..]),
        "{}",
        page.text
    );
    assert!(!page.text.contains("Nothing needs attention"));

    // A FAILED order offers retry and terminate; retry does what the API's does.
    let order = b.get(&format!("/admin/orders/{failed}"));
    assert!(order
        .text
        .contains(&format!("/admin/orders/{failed}/retry\"")));
    assert!(order
        .text
        .contains(&format!("/admin/orders/{failed}/terminate\"")));
    assert!(order.text.contains("DROPLET_CREATION_FAILED"));
    let csrf = b.csrf();
    let r = b.post(&format!("/admin/orders/{failed}/retry"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{}", r.text);
    let rows = history(&app, &failed);
    let retry = rows
        .iter()
        .rev()
        .find(|r| r["previousStatus"] == "FAILED")
        .expect("a retry row");
    assert_eq!(retry["newStatus"], "PROVISIONING");
    assert_eq!(retry["actor"], "admin:alice");
    let r = b.post(&format!("/admin/orders/{failed}/retry"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 409, "a second retry conflicts like the API's");
    assert!(r.text.contains("Cannot retry provisioning"), "{}", r.text);
}

#[test]
fn admin_settings_are_checked_at_start_up() {
    let mut config = vpsd::Config::default();
    assert!(!config.console_enabled(), "no API key: no console");
    config.auth.internal_api_key = Some("a-long-enough-key".into());
    assert!(config.console_enabled(), "on by default with a key");
    config.admin.enabled = Some(false);
    assert!(!config.console_enabled());

    let mut config = vpsd::Config::default();
    config.admin.enabled = Some(true);
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("admin.enabled"), "{e}");
    let mut config = vpsd::Config::default();
    config.admin.session_ttl_seconds = 5;
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("admin.session_ttl_seconds"), "{e}");
    let mut config = vpsd::Config::default();
    config.server.public_url = Some("ftp://example.com".into());
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("server.public_url"), "{e}");
    assert_eq!(vpsd::Config::default().admin.session_ttl_seconds, 28_800);
}

/// The admin API's deliveries for `query`.
fn api_deliveries(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app.get(
        &format!("/api/v1/internal/webhooks/deliveries{query}"),
        Auth::Admin,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"].as_array().cloned().unwrap_or_default()
}

/// Polls the admin API until `query` lists `n` deliveries; returns them.
fn wait_for_deliveries(app: &TestApp, query: &str, n: usize) -> Vec<Value> {
    support::wait_for(Duration::from_secs(20), || {
        let rows = api_deliveries(app, query);
        (rows.len() == n).then_some(rows)
    })
    .unwrap_or_else(|| {
        panic!(
            "never {n} deliveries for {query}: {:?}",
            api_deliveries(app, query)
        )
    })
}

#[test]
fn webhooks_page_lists_failed_deliveries_and_replay_needs_csrf_then_delivers() {
    use support::receiver::{Answer, Receiver};
    let hook = Receiver::start();
    hook.set_default(Answer::Status(500));
    // A second endpoint with credentials in its URL: they are never shown.
    let with_password =
        hook.url().replace("http://", "http://hookuser:s3cret-pw@") + "?token=t0k3n";
    let app = spawn_app_with(|c| {
        support::add_webhook(c, &hook.url(), &["order.created"]);
        support::add_webhook(c, &with_password, &["order.created"]);
        c.webhooks.retry_schedule_seconds = vec![];
    });
    let id = app.create_order("u-hook").id();
    let failed = wait_for_deliveries(&app, "?status=failed", 2);
    let plain = failed
        .iter()
        .find(|d| d["url"] == hook.url().as_str())
        .expect("the plain endpoint's delivery")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let masked = failed
        .iter()
        .find(|d| d["url"] != hook.url().as_str())
        .expect("the masked endpoint's delivery")["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(hook.received().len(), 2);

    let mut b = Browser::new(&app);
    // Without a session: no page, and a replay is refused.
    let r = b.post(&format!("/admin/webhooks/{plain}/replay"), &[("csrf", "x")]);
    assert_eq!(r.status, 403);
    b.login("alice");

    let page = b.get("/admin/webhooks?status=failed");
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("order.created"), "{}", page.text);
    assert!(page.text.contains(&format!("href=\"/admin/orders/{id}\"")));
    // The URL may wrap after its slashes (`<wbr>`), never inside the host.
    let shown = hook.url().replace("/hook", "/<wbr>hook");
    assert!(page.text.contains(&shown), "{}", page.text);
    assert!(page.text.contains("http://***@127.0.0.1"), "{}", page.text);
    assert!(!page.text.contains("s3cret-pw"), "a URL password leaked");
    assert!(!page.text.contains("hookuser"));
    assert!(!page.text.contains("t0k3n"), "a URL's query leaked");
    assert!(page.text.contains("?***"), "{}", page.text);
    assert!(page.text.contains("HTTP 500"));
    assert!(page.text.contains("class=\"badge s-failed\""));
    assert!(
        page.text.contains("Page 1 of 1 · 2 deliveries"),
        "{}",
        page.text
    );
    assert!(page
        .text
        .contains(&format!("action=\"/admin/webhooks/{plain}/replay\"")));

    // The order page lists its deliveries with the same button.
    let order = b.get(&format!("/admin/orders/{id}"));
    let section = order.text.split("id=\"webhooks-h\"").nth(1).unwrap_or("");
    assert!(
        section.contains(&format!("/admin/webhooks/{plain}/replay"))
            && section.contains(&format!("/admin/webhooks/{masked}/replay")),
        "{}",
        order.text
    );
    assert!(!order.text.contains("s3cret-pw"));

    // Attention lists both, and points at the filtered Webhooks page.
    let attention = b.get("/admin/attention");
    let section = attention
        .text
        .split("id=\"webhooks-h\"")
        .nth(1)
        .unwrap_or("");
    assert!(
        section.contains("Failed webhook deliveries (2)"),
        "{}",
        attention.text
    );
    assert!(section.contains("href=\"/admin/webhooks?status=failed\""));
    assert!(section.contains(&format!("/admin/webhooks/{plain}/replay")));
    assert!(!attention.text.contains("Nothing needs attention"));

    // A replay without a valid CSRF token is 403 and changes nothing.
    for form in [vec![], vec![("csrf", "0000")], vec![("csrf", "")]] {
        let r = b.post(&format!("/admin/webhooks/{plain}/replay"), &form);
        assert_eq!(r.status, 403, "{}", r.text);
        assert!(r.text.contains("nothing was changed"));
    }
    assert_eq!(api_deliveries(&app, "?status=failed").len(), 2);
    assert_eq!(api_deliveries(&app, "?status=pending").len(), 0);
    assert_eq!(hook.received().len(), 2, "nothing was sent again");
    // Replay is a POST only; an unknown delivery is a sentence, not JSON.
    assert_eq!(
        b.get(&format!("/admin/webhooks/{plain}/replay")).status,
        405
    );
    let csrf = b.csrf();
    let r = b.post(
        &format!("/admin/webhooks/{}/replay", uuid::Uuid::now_v7()),
        &[("csrf", &csrf), ("back", "status=failed")],
    );
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(r.text.contains("There is no webhook delivery with this id"));

    // With the token it is queued again and, the receiver now answering
    // 204, delivered: from the Webhooks page back to its filters...
    hook.set_default(Answer::Status(204));
    let r = b.post(
        &format!("/admin/webhooks/{plain}/replay"),
        &[("csrf", &csrf), ("back", "status=failed&page=1")],
    );
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(
        r.header("location"),
        Some("/admin/webhooks?status=failed&page=1&done=replay")
    );
    let after = b.get("/admin/webhooks?status=failed&page=1&done=replay");
    assert!(
        after.text.contains("Delivery queued again"),
        "{}",
        after.text
    );
    let delivered = wait_for_deliveries(&app, "?status=delivered", 1);
    assert_eq!(delivered[0]["id"], plain.as_str());
    assert_eq!(delivered[0]["attempts"], 2);
    assert_eq!(delivered[0]["lastResponseStatus"], 204);
    let page = b.get("/admin/webhooks?status=delivered");
    assert!(
        page.text.contains("class=\"badge s-delivered\""),
        "{}",
        page.text
    );
    assert!(page.text.contains("HTTP 204"));
    assert!(
        page.text.contains("Page 1 of 1 · 1 delivery<"),
        "{}",
        page.text
    );

    // ... and from the order page back to the order.
    let r = b.post(
        &format!("/admin/webhooks/{masked}/replay"),
        &[("csrf", &csrf), ("back", "order")],
    );
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(
        r.header("location"),
        Some(format!("/admin/orders/{id}?done=replay#webhooks-h").as_str())
    );
    let order = b.get(&format!("/admin/orders/{id}?done=replay"));
    assert!(order.text.contains("Delivery queued again"));
    wait_for_deliveries(&app, "?status=delivered", 2);
    let attention = b.get("/admin/attention");
    assert!(
        attention.text.contains("No failed webhook deliveries."),
        "{}",
        attention.text
    );
}

#[test]
fn webhooks_page_tells_no_endpoint_from_no_match_and_reads_filters_like_the_api() {
    let app = spawn_app();
    let mut b = Browser::new(&app);
    b.login("alice");
    let page = b.get("/admin/webhooks");
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("No webhook endpoint is configured"),
        "{}",
        page.text
    );
    assert!(b
        .get("/admin/attention")
        .text
        .contains("no failed webhook deliveries"));

    let hook = support::receiver::Receiver::start();
    let app = spawn_app_with(|c| support::add_webhook(c, &hook.url(), &["*"]));
    let id = app.create_order("u-empty").id();
    wait_for_deliveries(&app, "?status=delivered", 1);
    let mut b = Browser::new(&app);
    b.login("alice");
    let page = b.get("/admin/webhooks?status=failed&orderId=");
    assert!(
        page.text.contains("No deliveries match these filters."),
        "{}",
        page.text
    );
    assert!(!page.text.contains("No webhook endpoint is configured"));
    let page = b.get(&format!("/admin/webhooks?orderId={id}"));
    assert!(
        page.text.contains("class=\"badge s-delivered\""),
        "{}",
        page.text
    );
    let page = b.get("/admin/webhooks?status=lost&limit=1000");
    assert_eq!(page.status, 400);
    assert!(
        page.text
            .contains("Status must be one of pending, delivered, failed")
            && page.text.contains("limit must be an integer from 1 to 100"),
        "{}",
        page.text
    );
    let page = b.get("/admin/webhooks?page=9");
    assert!(page.text.contains("This page is past the last one."));
}

/// SPEC §12 "Nothing grows with repetition": the Order page lists the 50
/// newest renewals, as the admin API does, and says how many there are.
#[test]
fn the_order_page_lists_the_newest_fifty_renewals_and_the_total() {
    let app = spawn_app();
    let id = app.create_order("u-many-renewals").id();
    assert_eq!(app.pay(&id).status, 200);
    app.wait_for_status(&id, &["ACTIVE"], Duration::from_secs(30));
    for day in 1..=55 {
        let r = app.post_json(
            &format!("/api/v1/internal/orders/{id}/expiry"),
            Auth::Admin,
            &serde_json::json!({"expiresAt": format!("2031-01-{:02}T00:00:00Z", day % 28 + 1)}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let mut b = Browser::new(&app);
    b.login("alice");
    let page = b.get(&format!("/admin/orders/{id}"));
    assert_eq!(page.status, 200);
    let section = page
        .text
        .split("id=\"renewals-h\"")
        .nth(1)
        .and_then(|rest| rest.split("</section>").next())
        .expect("a Renewals section");
    assert_eq!(
        section.matches("<tr>").count(),
        50 + 1,
        "50 rows and the header"
    );
    assert!(section.contains("The 50 newest of 55"), "{section}");
}

// ----- SPEC §13: several DigitalOcean accounts ----------------------------

fn account(name: &str, token: Option<&str>) -> vpsd::config::accounts::AccountConfig {
    vpsd::config::accounts::AccountConfig::named(name, token.map(str::to_string))
}

/// The API's view of one account.
fn api_account(app: &TestApp, name: &str) -> Value {
    let list = app.get("/api/v1/internal/cloud/accounts", Auth::Admin);
    list.data()
        .as_array()
        .and_then(|l| l.iter().find(|a| a["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn accounts_page_shows_each_account_and_refresh_checks_it() {
    use vpsd::config::accounts::AccountConfig;
    let app = spawn_app_with(|c| {
        c.cloud.sandbox.accounts = vec![
            AccountConfig {
                priority: 10,
                regions: vec!["sgp1".into()],
                droplet_limit: Some(3),
                max_droplets: Some(2),
                ..account("east", None)
            },
            AccountConfig {
                drain: true,
                droplet_limit: Some(4),
                ..account("west", None)
            },
        ];
    });
    let mut b = Browser::new(&app);
    b.login("alice");
    let page = b.get("/admin/accounts");
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("aria-current=\"page\">Accounts</a>"));
    for text in [
        "east",
        "west",
        "sgp1",
        "any region",
        "<strong>draining</strong>",
        "capped at 2",
    ] {
        assert!(page.text.contains(text), "{text}: {}", page.text);
    }
    assert!(page
        .text
        .contains("action=\"/admin/accounts/east/refresh\""));
    assert!(page
        .text
        .contains("action=\"/admin/accounts/west/refresh\""));

    // Refresh takes the session's CSRF token, like every console form.
    let r = b.post("/admin/accounts/east/refresh", &[("csrf", "forged")]);
    assert_eq!(r.status, 403, "{}", r.text);
    let csrf = b.csrf();
    let r = b.post("/admin/accounts/east/refresh", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{}", r.text);
    let back = r.header("location").unwrap_or("").to_string();
    assert_eq!(back, "/admin/accounts?refreshed=east");
    let page = b.get(&back);
    assert!(page.text.contains("Checking east now"), "{}", page.text);
    let checked = support::wait_for(Duration::from_secs(20), || {
        let east = api_account(&app, "east");
        (!east["checkedAt"].is_null()).then_some(east)
    })
    .expect("east was checked");
    assert_eq!(checked["health"], "ok");
    let page = b.get("/admin/accounts");
    assert!(page.text.contains("0 / 3"), "{}", page.text);
    assert!(page.text.contains("badge s-ok"), "{}", page.text);

    // An unknown account, and a name no account can have: a sentence, not JSON.
    let r = b.post("/admin/accounts/north/refresh", &[("csrf", &csrf)]);
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(
        r.text.contains("There is no account with this name"),
        "{}",
        r.text
    );
    let r = b.post("/admin/accounts/No_Such/refresh", &[("csrf", &csrf)]);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("<h1>Accounts</h1>"), "{}", r.text);

    // The Order page names the account the server was placed on.
    let id = app.create_order("u-acc").id();
    assert_eq!(app.pay(&id).status, 200);
    app.wait_for_status(&id, &["ACTIVE"], Duration::from_secs(30));
    assert_eq!(
        app.admin_order(&id).data()["provisioningTask"]["doAccount"],
        "east"
    );
    let order = b.get(&format!("/admin/orders/{id}"));
    let facts = order
        .text
        .split("DigitalOcean account")
        .nth(1)
        .unwrap_or("");
    assert!(
        facts.trim_start_matches("</dt><dd>").contains(">east</a>"),
        "{}",
        order.text
    );
}

#[test]
fn attention_lists_an_unhealthy_account_and_an_order_waiting_for_capacity() {
    use vpsd::config::accounts::AccountConfig;
    let fake = support::fake_do::FakeDo::start_accounts(&[("tok-full-account", 0)]);
    let app = spawn_app_with(|c| {
        let accounts = vec![
            account("full", Some("tok-full-account")),
            AccountConfig {
                priority: 5,
                ..account("revoked", Some("tok-the-fake-does-not-know"))
            },
        ];
        support::use_fake_do_accounts(c, &fake, accounts);
    });
    let id = app.create_order("u-capacity").id();
    assert_eq!(app.pay(&id).status, 200);
    let waiting = support::wait_for(Duration::from_secs(30), || {
        app.sweep();
        let task = app.admin_order(&id).data()["provisioningTask"].clone();
        (task["errorCode"] == "NO_CAPACITY").then_some(task)
    })
    .expect("the order waits for capacity");
    assert!(waiting["doAccount"].is_null(), "{waiting}");
    assert_eq!(app.admin_order(&id).data()["status"], "PROVISIONING");

    let mut b = Browser::new(&app);
    b.login("alice");
    let page = b.get("/admin/attention");
    assert_eq!(page.status, 200);
    assert!(!page.text.contains("Nothing needs attention"));
    let section = |from: &str, to: &str| -> String {
        let rest = page.text.split(from).nth(1).unwrap_or("");
        rest.split(to).next().unwrap_or("").to_string()
    };
    let capacity = section("id=\"capacity-h\"", "</section>");
    assert!(
        capacity.contains("Waiting for capacity (1)"),
        "{}",
        page.text
    );
    assert!(capacity.contains(&id[id.len() - 8..]), "{}", page.text);
    assert!(capacity.contains("NO_CAPACITY"), "{}", page.text);
    let stuck = section("id=\"stuck-h\"", "</section>");
    assert!(
        !stuck.contains(&id[id.len() - 8..]),
        "listed once: {}",
        page.text
    );
    let accounts = section("id=\"accounts-h\"", "</section>");
    assert!(accounts.contains("(1)"), "{}", page.text);
    assert!(accounts.contains("revoked"), "{}", page.text);
    assert!(accounts.contains("badge s-unauthorized"), "{}", page.text);
    assert!(
        !accounts.contains(">full<"),
        "a full account is healthy: {}",
        page.text
    );
    assert!(!page.text.contains("tok-"), "no token on the page");
    let order = b.get(&format!("/admin/orders/{id}"));
    assert!(order.text.contains("not placed yet"), "{}", order.text);
    let accounts_page = b.get("/admin/accounts");
    assert!(accounts_page.text.contains("badge s-unauthorized"));
    assert!(!accounts_page.text.contains("tok-"), "no token on the page");
}

#[test]
fn the_order_page_lists_server_actions_and_asks_for_one_like_the_api() {
    let app = spawn_app_with(|_| {});
    let id = app.active_order("u-server");
    let mut b = Browser::new(&app);
    b.login("alice");
    let page = b.get(&format!("/admin/orders/{id}"));
    assert_eq!(page.status, 200);
    assert!(page.text.contains("Server actions"), "{}", page.text);
    assert!(page.text.contains("No server actions yet."));
    assert!(page.text.contains("Auto-renew"));
    let form = format!("/admin/orders/{id}/server-action");
    assert!(page.text.contains(&format!("action=\"{form}\"")));

    let csrf = b.csrf();
    let r = b.post(&form, &[("csrf", &csrf), ("type", "reboot")]);
    assert_eq!(r.status, 303, "{}", r.text);
    let list = app.get(
        &format!("/api/v1/internal/orders/{id}/actions"),
        Auth::Admin,
    );
    assert_eq!(list.data()[0]["type"], "reboot");
    assert_eq!(list.data()[0]["requestedBy"], "admin:alice");
    let page = b.get(&format!("/admin/orders/{id}?done=server-action"));
    assert!(page.text.contains("The server action is queued"));
    assert!(page.text.contains("Reboot"));

    // Refused like the API: the reboot is still open.
    let r = b.post(&form, &[("csrf", &csrf), ("type", "power_off")]);
    let open = app.get(
        &format!("/api/v1/internal/orders/{id}/actions"),
        Auth::Admin,
    );
    if open.data()[0]["status"] == "completed" {
        // The sandbox finished it already: a rebuild without an image is
        // refused instead, naming the field.
        let r = b.post(&form, &[("csrf", &csrf), ("type", "rebuild")]);
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.text.contains("imageId"), "{}", r.text);
    } else {
        assert_eq!(r.status, 409, "{}", r.text);
    }
    // Without the session's CSRF token nothing is asked.
    let before = app.get(
        &format!("/api/v1/internal/orders/{id}/actions"),
        Auth::Admin,
    );
    let r = b.post(&form, &[("csrf", "0000"), ("type", "reboot")]);
    assert_eq!(r.status, 403);
    let after = app.get(
        &format!("/api/v1/internal/orders/{id}/actions"),
        Auth::Admin,
    );
    assert_eq!(before.body["meta"]["total"], after.body["meta"]["total"]);
}

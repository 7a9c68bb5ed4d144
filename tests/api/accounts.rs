//! SPEC §13 seen from outside: `GET /internal/cloud/accounts`, `POST
//! /internal/cloud/accounts/{name}/refresh` and the per-account metrics,
//! against the DigitalOcean fake (several tokens, one unknown) and sandbox
//! accounts.

use std::time::Duration;

use serde_json::{json, Value};
use vpsd::config::accounts::AccountConfig;
use vpsd::config::Config;

use crate::operations::parse_prometheus;
use crate::support::fake_do::FakeDo;
use crate::support::{spawn_app_with, wait_for, Auth, TestApp};

const ACCOUNTS: &str = "/api/v1/internal/cloud/accounts";
/// Distinctive, so a leak anywhere in a body or the metrics is found.
const TOKENS: [&str; 3] = [
    "tok-alpha-5ecret-xyz",
    "tok-beta-5ecret-xyz",
    "tok-unknown-5ecret-xyz",
];

fn account(name: &str, token: Option<&str>) -> AccountConfig {
    AccountConfig::named(name, token.map(str::to_string))
}

/// alpha (limit 5, sgp1 only, preferred) and beta (limit 3, draining) on the
/// fake, and gamma, whose token the fake does not know (401).
fn three_accounts(config: &mut Config, fake: &FakeDo) {
    let accounts = vec![
        AccountConfig {
            priority: 10,
            regions: vec!["sgp1".into()],
            ..account("alpha", Some(TOKENS[0]))
        },
        AccountConfig {
            drain: true,
            max_droplets: Some(2),
            ..account("beta", Some(TOKENS[1]))
        },
        account("gamma", Some(TOKENS[2])),
    ];
    crate::support::use_fake_do_accounts(config, fake, accounts);
}

/// The list once every account has been checked since `after` (ISO text
/// compares in time order).
fn checked_list(app: &TestApp, after: &str) -> Vec<Value> {
    wait_for(Duration::from_secs(20), || {
        let r = app.get(ACCOUNTS, Auth::Admin);
        let list = r.data().as_array()?.clone();
        list.iter()
            .all(|a| a["checkedAt"].as_str().is_some_and(|at| at > after))
            .then_some(list)
    })
    .expect("every account checked")
}

fn refresh_all(app: &TestApp, names: &[&str]) -> String {
    let start = now_iso();
    for name in names {
        let r = app.post_empty(&format!("{ACCOUNTS}/{name}/refresh"), Auth::Admin);
        assert_eq!(r.status, 202, "{}", r.text);
        assert_eq!(r.body, json!({"data": {"name": name, "refreshing": true}}));
    }
    start
}

fn now_iso() -> String {
    // A second back: checkedAt has milliseconds, the comparison is textual.
    let ms = i64::try_from(crate::support::now_secs() * 1000).unwrap() - 1000;
    vpsd::domain::time::format_millis(ms)
}

#[test]
fn the_list_shows_every_account_as_last_checked_and_never_a_token() {
    let fake = FakeDo::start_accounts(&[(TOKENS[0], 5), (TOKENS[1], 3)]);
    fake.seed_foreign(TOKENS[1], 1);
    let app = spawn_app_with(|c| three_accounts(c, &fake));
    let first = app.get(ACCOUNTS, Auth::Admin);
    assert_eq!(first.status, 200, "{}", first.text);
    for a in first.data().as_array().unwrap() {
        // Before its first check an account knows no limit.
        if a["checkedAt"].is_null() {
            assert!(a["dropletLimit"].is_null(), "{a}");
            assert_eq!(a["freeSlots"], 0);
        }
    }
    let start = refresh_all(&app, &["alpha", "beta", "gamma"]);
    let list = checked_list(&app, &start);
    let names: Vec<&str> = list.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta", "gamma"]);
    let keys: Vec<&String> = list[0].as_object().unwrap().keys().collect();
    let mut expected = [
        "name",
        "priority",
        "regions",
        "drain",
        "health",
        "dropletLimit",
        "droplets",
        "placing",
        "freeSlots",
        "rateLimitRemaining",
        "checkedAt",
        "lastError",
    ];
    expected.sort_unstable();
    let mut keys: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, expected);
    let (alpha, beta, gamma) = (&list[0], &list[1], &list[2]);
    assert_eq!(alpha["health"], "ok");
    assert_eq!(alpha["priority"], 10);
    assert_eq!(alpha["regions"], json!(["sgp1"]));
    assert_eq!(alpha["drain"], false);
    assert_eq!(alpha["dropletLimit"], 5);
    assert_eq!(
        (alpha["droplets"].as_u64(), alpha["placing"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(alpha["freeSlots"], 5);
    assert!(alpha["lastError"].is_null());
    // beta: DigitalOcean's limit is shown as is; max_droplets caps the slots.
    assert_eq!(
        (beta["drain"].as_bool(), beta["dropletLimit"].as_u64()),
        (Some(true), Some(3))
    );
    assert_eq!(
        (beta["droplets"].as_u64(), beta["freeSlots"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(beta["priority"], 100);
    assert_eq!(beta["regions"], json!([]));
    assert_eq!(gamma["health"], "unauthorized");
    assert!(gamma["dropletLimit"].is_null());
    assert_eq!(gamma["freeSlots"], 0);
    assert!(
        gamma["lastError"].as_str().is_some_and(|e| !e.is_empty()),
        "{gamma}"
    );
    let text = app.get(ACCOUNTS, Auth::Admin).text;
    let metrics = app.get("/metrics", Auth::Admin).text;
    for token in TOKENS {
        assert!(!text.contains(token), "a token in the list: {text}");
        assert!(!text.contains(&token[4..]), "part of a token in the list");
        assert!(!metrics.contains(token), "a token in the metrics");
    }
}

#[test]
fn metrics_show_each_account() {
    let fake = FakeDo::start_accounts(&[(TOKENS[0], 5), (TOKENS[1], 3)]);
    fake.seed_foreign(TOKENS[1], 1);
    let app = spawn_app_with(|c| three_accounts(c, &fake));
    let start = refresh_all(&app, &["alpha", "beta", "gamma"]);
    checked_list(&app, &start);
    let m = parse_prometheus(&app.get("/metrics", Auth::Admin).text);
    let at = |metric: &str, name: &str| {
        m.get(&format!(
            r#"vpsd_cloud_account_{metric}{{account="{name}"}}"#
        ))
        .copied()
    };
    assert_eq!(at("droplet_limit", "alpha"), Some(5.0));
    assert_eq!(at("droplets", "alpha"), Some(0.0));
    assert_eq!(at("free_slots", "alpha"), Some(5.0));
    assert_eq!(at("healthy", "alpha"), Some(1.0));
    assert_eq!(at("droplet_limit", "beta"), Some(3.0));
    assert_eq!(at("droplets", "beta"), Some(1.0));
    assert_eq!(at("free_slots", "beta"), Some(1.0));
    assert_eq!(at("healthy", "gamma"), Some(0.0));
    // Unknown until DigitalOcean tells it: absent, not 0.
    assert_eq!(at("droplet_limit", "gamma"), None);
    assert_eq!(at("free_slots", "gamma"), Some(0.0));
}

#[test]
fn refresh_is_202_for_a_known_account_404_for_an_unknown_and_400_for_a_bad_name() {
    let app = spawn_app_with(|c| {
        c.cloud.sandbox.accounts = vec![AccountConfig {
            droplet_limit: Some(2),
            ..account("east-1", None)
        }];
    });
    let start = refresh_all(&app, &["east-1"]);
    let list = checked_list(&app, &start);
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0]["health"].as_str(), list[0]["dropletLimit"].as_u64()),
        (Some("ok"), Some(2))
    );
    let r = app.post_empty(&format!("{ACCOUNTS}/default/refresh"), Auth::Admin);
    assert_eq!(
        (r.status, r.code()),
        (404, "ACCOUNT_NOT_FOUND"),
        "{}",
        r.text
    );
    for bad in ["East-1", "a_b", &"a".repeat(33), "%C3%A9"] {
        let r = app.post_empty(&format!("{ACCOUNTS}/{bad}/refresh"), Auth::Admin);
        assert_eq!(
            (r.status, r.code()),
            (400, "BAD_REQUEST"),
            "{bad}: {}",
            r.text
        );
        assert_eq!(r.body["error"]["details"]["fields"][0]["field"], "name");
    }
    let r = app.post_json(
        &format!("{ACCOUNTS}/east-1/refresh"),
        Auth::Admin,
        &json!({"force": true}),
    );
    assert_eq!((r.status, r.code()), (400, "BAD_REQUEST"), "{}", r.text);
    let r = app.get(&format!("{ACCOUNTS}/east-1/refresh"), Auth::Admin);
    assert_eq!(r.status, 405);
    let r = app.post_empty(ACCOUNTS, Auth::Admin);
    assert_eq!(r.status, 405);
}

#[test]
fn both_routes_need_the_api_key() {
    let app = crate::support::spawn_app();
    let refresh = format!("{ACCOUNTS}/default/refresh");
    assert_eq!(app.get(ACCOUNTS, Auth::None).code(), "API_KEY_MISSING");
    assert_eq!(
        app.post_empty(&refresh, Auth::None).code(),
        "API_KEY_MISSING"
    );
    assert_eq!(
        app.get(ACCOUNTS, Auth::Key("wrong-key-0123456789")).code(),
        "API_KEY_INVALID"
    );
    assert_eq!(app.get(ACCOUNTS, Auth::User("alice")).status, 401);
    assert_eq!(app.post_empty(&refresh, Auth::User("alice")).status, 401);
    // The v1 deployment: one account, `default`.
    let list = app.get(ACCOUNTS, Auth::Admin);
    assert_eq!(list.status, 200);
    assert_eq!(list.data().as_array().map(Vec::len), Some(1));
    assert_eq!(list.data()[0]["name"], "default");
}

//! SPEC §13, several DigitalOcean accounts. First the DigitalOcean fake's own
//! account model, which the fleet tests stand on: each token is an account
//! with its own droplet limit, sees only its own droplets, and is refused
//! with 422 past its limit, foreign droplets counted.

use serde_json::{json, Value};

use crate::support::fake_do::{FakeDo, DROPLET_LIMIT_MESSAGE};

fn call(fake: &FakeDo, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let agent = crate::support::agent();
    let url = format!("{}{path}", fake.url());
    let auth = format!("Bearer {token}");
    let response = match (method, body) {
        ("POST", Some(body)) => agent
            .post(&url)
            .header("Authorization", &auth)
            .send_json(body),
        _ => agent.get(&url).header("Authorization", &auth).call(),
    };
    let mut response = response.expect("the fake answers");
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_json::<Value>()
        .unwrap_or(Value::Null);
    (status, body)
}

fn create(fake: &FakeDo, token: &str, name: &str) -> (u16, Value) {
    let body = json!({"name": name, "region": "sgp1", "size": "s", "image": "i", "tags": ["vpsd"]});
    call(fake, token, "POST", "/v2/droplets", Some(body))
}

#[test]
fn the_fake_keeps_each_token_to_its_own_account_and_limit() {
    let fake = FakeDo::start_accounts(&[("tok-a", 2), ("tok-b", 1)]);
    fake.seed_foreign("tok-b", 1);
    let (_, account) = call(&fake, "tok-a", "GET", "/v2/account", None);
    assert_eq!(account["account"]["droplet_limit"], 2);
    let (status, made) = create(&fake, "tok-a", "a1");
    assert_eq!(status, 202);
    let id = made["droplet"]["id"].as_u64().expect("droplet id");
    assert_eq!(create(&fake, "tok-a", "a2").0, 202);
    let (status, refused) = create(&fake, "tok-a", "a3");
    assert_eq!(
        (status, refused["message"].as_str()),
        (422, Some(DROPLET_LIMIT_MESSAGE))
    );
    // tok-b's only slot is taken by a droplet vpsd did not make.
    assert_eq!(create(&fake, "tok-b", "b1").0, 422);
    let (_, listed) = call(&fake, "tok-b", "GET", "/v2/droplets?per_page=1", None);
    assert_eq!(listed["meta"]["total"], 1);
    assert_eq!(
        call(&fake, "tok-b", "GET", &format!("/v2/droplets/{id}"), None).0,
        404
    );
    assert_eq!(
        call(&fake, "tok-a", "GET", &format!("/v2/droplets/{id}"), None).0,
        200
    );
    assert_eq!(call(&fake, "tok-c", "GET", "/v2/account", None).0, 401);
    assert_eq!(
        (fake.droplets_of("tok-a"), fake.droplets_of("tok-b")),
        (2, 1)
    );
}

/// The two reads placement needs, per account: the limit from
/// `GET /v2/account`, the count from `meta.total` of a one-droplet page.
#[test]
fn each_account_reports_its_own_limit_and_droplet_count() {
    use std::time::Duration;
    use vpsd::cloud::digitalocean::DigitalOcean;
    use vpsd::cloud::Cloud;
    let fake = FakeDo::start_accounts(&[("tok-a", 5), ("tok-b", 3)]);
    fake.seed_foreign("tok-b", 2);
    assert_eq!(create(&fake, "tok-a", "a1").0, 202);
    let a = DigitalOcean::new(&fake.url(), "tok-a", Duration::from_secs(5));
    let b = DigitalOcean::new(&fake.url(), "tok-b", Duration::from_secs(5));
    let (info_a, info_b) = (a.account().expect("a"), b.account().expect("b"));
    assert_eq!((info_a.droplet_limit, info_a.active), (5, true));
    assert_eq!(info_b.droplet_limit, 3);
    assert_eq!(a.droplet_count().expect("a count"), 1);
    assert_eq!(b.droplet_count().expect("b count"), 2);
    let stranger = DigitalOcean::new(&fake.url(), "tok-x", Duration::from_secs(5));
    assert!(matches!(
        stranger.account(),
        Err(vpsd::cloud::CloudError::Unauthorized(_))
    ));
}

// ----- the daemon over several accounts ------------------------------------

use std::time::Duration;

use vpsd::config::accounts::AccountConfig;

use crate::support::{spawn_app_with, use_fake_do_accounts, wait_for, Auth, TestApp};

const WAIT: Duration = Duration::from_secs(30);

fn account(name: &str, token: &str, priority: i64) -> AccountConfig {
    AccountConfig {
        priority,
        ..AccountConfig::named(name, Some(token.into()))
    }
}

/// The daemon on `fake` with `accounts` and no v1 token. Sweeps run when a
/// test asks (and once on PAID), so each step is the test's.
fn fleet_app(fake: &FakeDo, accounts: Vec<AccountConfig>) -> TestApp {
    spawn_app_with(|c| fleet_config(c, fake, accounts))
}

/// [`fleet_app`], and its config for a reload to edit.
fn fleet_app_and_config(fake: &FakeDo, accounts: Vec<AccountConfig>) -> (TestApp, vpsd::Config) {
    let mut config = None;
    let app = spawn_app_with(|c| {
        fleet_config(c, fake, accounts);
        config = Some(c.clone());
    });
    (app, config.expect("config"))
}

fn fleet_config(c: &mut vpsd::Config, fake: &FakeDo, accounts: Vec<AccountConfig>) {
    use_fake_do_accounts(c, fake, accounts);
    c.provisioning.poll_interval_ms = 3_600_000;
}

/// Waits until every account was checked once (the start-up sweep).
fn checked(app: &TestApp) {
    let fleet = app.provisioner.fleet().clone();
    let done = wait_for(WAIT, || {
        fleet
            .views()
            .iter()
            .all(|v| v.checked_at.is_some())
            .then_some(())
    });
    assert!(done.is_some(), "accounts never checked");
}

fn paid(app: &TestApp) -> String {
    let id = app.create_order("fleet-user").id();
    assert_eq!(app.pay(&id).status, 200);
    id
}

fn task_of(app: &TestApp, id: &str) -> Value {
    app.admin_order(id).data()["provisioningTask"].clone()
}

/// Sweeps until `done` holds for the order's task.
fn sweep_until(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_for(WAIT, || {
        app.sweep();
        let task = task_of(app, id);
        done(&task).then_some(task)
    })
    .unwrap_or_else(|| panic!("never reached: {}", app.admin_order(id).text))
}

fn has_droplet(task: &Value) -> bool {
    !task["dropletId"].is_null()
}

fn waits_for_capacity(task: &Value) -> bool {
    task["errorCode"] == "NO_CAPACITY" && task["status"] == "IN_PROGRESS"
}

fn creates_by(fake: &FakeDo, token: &str) -> Vec<u16> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/droplets" && r.token == token)
        .map(|r| r.status)
        .collect()
}

#[test]
fn priority_first_then_spill_over_and_every_request_uses_the_orders_token() {
    let fake = FakeDo::start_accounts(&[("tok-a", 2), ("tok-b", 3)]);
    let app = fleet_app(
        &fake,
        vec![account("a", "tok-a", 1), account("b", "tok-b", 2)],
    );
    checked(&app);
    let ids: Vec<String> = (0..4).map(|_| paid(&app)).collect();
    let mut on = Vec::new();
    for id in &ids {
        let task = sweep_until(&app, id, has_droplet);
        on.push(task["doAccount"].as_str().unwrap_or_default().to_string());
    }
    on.sort();
    assert_eq!(on, ["a", "a", "b", "b"]);
    assert_eq!(
        (fake.droplets_of("tok-a"), fake.droplets_of("tok-b")),
        (2, 2)
    );
    for id in &ids {
        let task = sweep_until(&app, id, |t| t["status"] == "SUCCESS");
        let token = if task["doAccount"] == "a" {
            "tok-a"
        } else {
            "tok-b"
        };
        let droplet = task["dropletId"].as_str().unwrap_or_default().to_string();
        let about_it: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| {
                r.path.contains(id.as_str())
                    || r.path.contains(&droplet)
                    || r.body.contains(id.as_str())
            })
            .collect();
        // At least the look-up by tag and the create.
        assert!(about_it.len() >= 2, "{about_it:?}");
        assert!(
            about_it.iter().all(|r| r.token == token),
            "order {id} on {token}: {about_it:?}"
        );
    }
    assert!(
        !app.admin_order(&ids[0]).text.contains("tok-a"),
        "no token in responses"
    );
}

#[test]
fn a_full_account_moves_the_order_on_in_the_same_sweep_with_one_droplet() {
    let fake = FakeDo::start_accounts(&[("tok-a", 3), ("tok-b", 3)]);
    let app = fleet_app(
        &fake,
        vec![account("a", "tok-a", 1), account("b", "tok-b", 2)],
    );
    checked(&app);
    // Someone fills account a behind vpsd's back: its last count says 3 free.
    fake.seed_foreign("tok-a", 3);
    let id = paid(&app);
    let task = sweep_until(&app, &id, has_droplet);
    assert_eq!(task["doAccount"], "b", "{task}");
    assert_eq!(creates_by(&fake, "tok-a"), [422]);
    assert_eq!(creates_by(&fake, "tok-b"), [202]);
    assert_eq!(
        fake.droplet_ids_with_tag(&format!("vpsd-order-{id}")).len(),
        1
    );
}

#[test]
fn no_capacity_waits_without_spending_attempts_then_places_after_a_limit_rise_or_a_reload() {
    let fake = FakeDo::start_accounts(&[("tok-a", 1)]);
    fake.seed_foreign("tok-a", 1);
    let (app, mut config) = fleet_app_and_config(&fake, vec![account("a", "tok-a", 1)]);
    checked(&app);
    let first = paid(&app);
    let waiting = sweep_until(&app, &first, waits_for_capacity);
    for _ in 0..3 {
        app.sweep();
    }
    let waiting_still = task_of(&app, &first);
    assert!(waits_for_capacity(&waiting_still), "{waiting_still}");
    assert_eq!(waiting_still["attempts"], 0, "waiting spends no attempts");
    assert_eq!(app.admin_order(&first).data()["status"], "PROVISIONING");
    assert_eq!(waiting["doAccount"], Value::Null);

    // DigitalOcean raises the limit: the next check opens a slot.
    fake.set_droplet_limit("tok-a", 2);
    app.provisioner.fleet().refresh("a");
    let placed = sweep_until(&app, &first, has_droplet);
    assert_eq!(
        (placed["doAccount"].as_str(), &placed["errorCode"]),
        (Some("a"), &Value::Null)
    );

    // Full again; a reload adds account b.
    let second = paid(&app);
    sweep_until(&app, &second, waits_for_capacity);
    fake.set_droplet_limit("tok-b", 1);
    config
        .cloud
        .digitalocean
        .accounts
        .push(account("b", "tok-b", 5));
    let names = vpsd::app::reload_accounts(&app.provisioner, &config).expect("reloaded");
    assert_eq!(names, ["a", "b"]);
    let placed = sweep_until(&app, &second, has_droplet);
    assert_eq!(placed["doAccount"], "b");
    assert!(creates_by(&fake, "tok-a").iter().all(|s| *s == 202));
}

#[test]
fn waiting_for_capacity_ends_in_failed_no_capacity_after_capacity_wait_seconds() {
    let fake = FakeDo::start_accounts(&[("tok-a", 0)]);
    let app = spawn_app_with(|c| {
        fleet_config(c, &fake, vec![account("a", "tok-a", 1)]);
        c.cloud.digitalocean.capacity_wait_seconds = 1;
    });
    checked(&app);
    let id = paid(&app);
    let failed = sweep_until(&app, &id, |t| t["status"] == "FAILED");
    assert_eq!(failed["errorCode"], "NO_CAPACITY", "{failed}");
    assert_eq!(app.admin_order(&id).data()["status"], "FAILED");
    assert!(creates_by(&fake, "tok-a").is_empty());
}

#[test]
fn twenty_orders_paid_at_once_over_three_accounts_take_exactly_the_five_free_slots() {
    let fake = FakeDo::start_accounts(&[("tok-a", 2), ("tok-b", 2), ("tok-c", 3)]);
    fake.seed_foreign("tok-c", 2);
    let app = fleet_app(
        &fake,
        vec![
            account("a", "tok-a", 1),
            account("b", "tok-b", 1),
            account("c", "tok-c", 1),
        ],
    );
    checked(&app);
    let ids: Vec<String> = (0..20)
        .map(|_| app.create_order("fleet-user").id())
        .collect();
    std::thread::scope(|s| {
        for id in &ids {
            let app = &app;
            s.spawn(move || assert_eq!(app.pay(id).status, 200));
        }
    });
    let settled = wait_for(WAIT, || {
        app.sweep();
        let tasks: Vec<Value> = ids.iter().map(|id| task_of(&app, id)).collect();
        let placed = tasks.iter().filter(|t| has_droplet(t)).count();
        let waiting = tasks.iter().filter(|t| waits_for_capacity(t)).count();
        (placed + waiting == 20).then_some((placed, waiting))
    });
    assert_eq!(settled, Some((5, 15)));
    let held = [("tok-a", 2), ("tok-b", 2), ("tok-c", 3)];
    for (token, limit) in held {
        assert!(fake.droplets_of(token) <= limit, "{token} past its limit");
        assert!(
            creates_by(&fake, token).iter().all(|s| *s == 202),
            "no 422: placement was exact"
        );
    }
    assert_eq!(fake.count("POST", "/v2/droplets"), 5);
}

#[test]
fn a_draining_account_takes_nothing_new_and_its_servers_keep_working() {
    let fake = FakeDo::start_accounts(&[("tok-a", 5), ("tok-b", 5)]);
    let (app, mut config) = fleet_app_and_config(
        &fake,
        vec![account("a", "tok-a", 1), account("b", "tok-b", 2)],
    );
    checked(&app);
    let old = paid(&app);
    assert_eq!(
        sweep_until(&app, &old, |t| t["status"] == "SUCCESS")["doAccount"],
        "a"
    );
    config.cloud.digitalocean.accounts[0].drain = true;
    vpsd::app::reload_accounts(&app.provisioner, &config).expect("reloaded");
    let new = paid(&app);
    assert_eq!(sweep_until(&app, &new, has_droplet)["doAccount"], "b");
    // The drained account's server is still managed there: terminate it.
    let r = app.post_json(
        &format!("/api/v1/internal/orders/{old}/terminate"),
        Auth::Admin,
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    sweep_until(&app, &old, |t| t["pendingAction"].is_null());
    assert_eq!(fake.droplets_of("tok-a"), 0);
    let deletes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert!(
        !deletes.is_empty() && deletes.iter().all(|r| r.token == "tok-a"),
        "{deletes:?}"
    );
}

#[test]
fn an_account_that_refuses_its_token_is_skipped_while_the_others_place() {
    let fake = FakeDo::start_accounts(&[("tok-b", 5)]);
    let app = fleet_app(
        &fake,
        vec![account("a", "tok-revoked", 1), account("b", "tok-b", 2)],
    );
    checked(&app);
    let id = paid(&app);
    assert_eq!(sweep_until(&app, &id, has_droplet)["doAccount"], "b");
    let views = app.provisioner.fleet().views();
    assert_eq!(views[0].account.health.as_str(), "unauthorized");
    assert!(creates_by(&fake, "tok-revoked").is_empty());
}

/// SPEC §13: each account has its own rate budget. A 429 on one account
/// backs off only that account; the other's order goes on to ACTIVE.
#[test]
fn a_rate_limited_account_never_slows_another() {
    use crate::support::fake_do::Fault;
    let fake = FakeDo::start_accounts(&[("tok-a", 5), ("tok-b", 5)]);
    let script = crate::support::fake_do::DropletScript::new;
    // a's droplet stays `new` (so it is observed every sweep); b's boots.
    fake.push_script(script().active_after(100_000));
    fake.set_default_script(script().active_after(1));
    let app = fleet_app(
        &fake,
        vec![account("a", "tok-a", 1), account("b", "tok-b", 1)],
    );
    checked(&app);
    let on_a = paid(&app);
    let first = sweep_until(&app, &on_a, has_droplet);
    assert_eq!(first["doAccount"], "a");
    let on_b = paid(&app);
    let second = sweep_until(&app, &on_b, has_droplet);
    assert_eq!(
        second["doAccount"], "b",
        "a has as many free slots as b but more placing"
    );
    // Every call about a's droplet answers 429 with a long Retry-After.
    let a_droplet = first["dropletId"].as_str().unwrap_or_default().to_string();
    let slow = Fault::TooManyRequests {
        retry_after_secs: 3600,
    };
    fake.inject_matching(slow, 1000, None, &format!("/v2/droplets/{a_droplet}"));
    let active = sweep_until(&app, &on_b, |t| t["status"] == "SUCCESS");
    assert_eq!(active["doAccount"], "b");
    let waiting = task_of(&app, &on_a);
    assert_eq!(waiting["status"], "IN_PROGRESS", "{waiting}");
    assert_eq!(
        waiting["errorCode"], "DIGITALOCEAN_UNAVAILABLE",
        "{waiting}"
    );
    let asked_a = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with(&format!("/v2/droplets/{a_droplet}")) && r.status == 429)
        .count();
    assert_eq!(
        asked_a, 1,
        "a waits out its Retry-After instead of asking again"
    );
}

#[test]
fn a_locked_account_takes_no_new_server_until_it_is_active_again() {
    let fake = FakeDo::start_accounts(&[("tok-a", 5), ("tok-b", 5)]);
    fake.set_account_locked("tok-a", true);
    let app = fleet_app(
        &fake,
        vec![account("a", "tok-a", 1), account("b", "tok-b", 2)],
    );
    checked(&app);
    let fleet = app.provisioner.fleet().clone();
    assert_eq!(fleet.views()[0].account.health.as_str(), "locked");
    let id = paid(&app);
    assert_eq!(sweep_until(&app, &id, has_droplet)["doAccount"], "b");
    fake.set_account_locked("tok-a", false);
    fleet.refresh("a");
    let next = paid(&app);
    assert_eq!(sweep_until(&app, &next, has_droplet)["doAccount"], "a");
}

#[test]
fn removing_an_account_live_orders_use_is_refused_on_reload_and_at_start_up() {
    let fake = FakeDo::start_accounts(&[("tok-a", 5), ("tok-b", 5)]);
    let (app, mut config) = fleet_app_and_config(
        &fake,
        vec![account("a", "tok-a", 1), account("b", "tok-b", 2)],
    );
    checked(&app);
    let id = paid(&app);
    sweep_until(&app, &id, |t| t["status"] == "SUCCESS");
    config.cloud.digitalocean.accounts.remove(0);
    let refused = vpsd::app::reload_accounts(&app.provisioner, &config).expect_err("refused");
    assert!(refused.contains("\"a\" (1 live orders)"), "{refused}");
    assert_eq!(
        app.provisioner.fleet().names(),
        ["a", "b"],
        "the old list stays"
    );

    let mut app = app;
    let dir = app.dir.take();
    drop(app);
    let refused = crate::support::try_start(config, dir)
        .err()
        .expect("start-up refused");
    assert!(refused.contains("\"a\" (1 live orders)"), "{refused}");
    assert!(!refused.contains('\n'), "one line: {refused}");
}

#[test]
fn a_terminated_server_opens_its_slot_for_an_order_waiting_for_capacity() {
    let fake = FakeDo::start_accounts(&[("tok-a", 1)]);
    let app = fleet_app(&fake, vec![account("a", "tok-a", 1)]);
    checked(&app);
    let first = paid(&app);
    sweep_until(&app, &first, |t| t["status"] == "SUCCESS");
    let second = paid(&app);
    sweep_until(&app, &second, waits_for_capacity);
    let r = app.post_json(
        &format!("/api/v1/internal/orders/{first}/terminate"),
        Auth::Admin,
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // The confirmed delete has the account counted again before the next
    // placement: no refresh call from the test.
    let placed = sweep_until(&app, &second, has_droplet);
    assert_eq!(placed["doAccount"], "a");
    assert_eq!(fake.droplets_of("tok-a"), 1);
    assert_eq!(creates_by(&fake, "tok-a"), [202, 202]);
}

//! Provisioning against a local fake of DigitalOcean: every outcome of SPEC §4.

use std::time::Duration;

use serde_json::json;

use crate::support::fake_do::{DropletScript, FakeDo, Fault};
use crate::support::{spawn_app_with, wait_for, Auth, TestApp};

const WAIT: Duration = Duration::from_secs(20);

fn app_on(fake: &FakeDo, edit: impl FnOnce(&mut vpsd::Config)) -> TestApp {
    spawn_app_with(move |c| {
        crate::support::use_fake_do(c, fake);
        edit(c);
    })
}

fn paid_order(app: &TestApp) -> String {
    let id = app.create_order("alice").id();
    assert_eq!(app.pay(&id).status, 200);
    id
}

fn task(r: &crate::support::Resp) -> serde_json::Value {
    r.data()["provisioningTask"].clone()
}

fn history(r: &crate::support::Resp) -> Vec<(String, String, String)> {
    r.data()["statusHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["previousStatus"].as_str().unwrap().to_string(),
                h["newStatus"].as_str().unwrap().to_string(),
                h["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn paid_order_becomes_active_with_the_exact_droplet_request() {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().active_after(2).ip_after(1));
    let app = app_on(&fake, |_| {});
    let id = paid_order(&app);
    let done = app.wait_for_status(&id, &["ACTIVE", "FAILED"], WAIT);
    assert_eq!(done.data()["status"], "ACTIVE", "{}", done.text);

    let creates: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(creates.len(), 1);
    assert_eq!(
        creates[0].json().unwrap(),
        json!({"name": format!("vps-{}", &id[..8]), "region": "sgp1", "size": "s-1vcpu-1gb",
               "image": "ubuntu-22-04-x64", "tags": ["vpsd", format!("vpsd-order-{id}")],
               "monitoring": true, "ipv6": false})
    );
    // The tag was looked up before the create (after the account's check).
    let about_the_order: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path != "/v2/account" && r.path != "/v2/droplets?per_page=1")
        .collect();
    assert_eq!(
        about_the_order[0].path,
        format!("/v2/droplets?tag_name=vpsd-order-{id}&per_page=200&page=1")
    );

    let t = task(&done);
    assert_eq!(t["status"], "SUCCESS");
    assert_eq!(t["errorCode"], json!(null));
    assert_eq!(t["errorMessage"], json!(null));
    assert_eq!(t["dropletStatus"], "active");
    assert_eq!(t["dropletName"], format!("vps-{}", &id[..8]));
    assert_eq!(
        t["dropletTags"],
        json!(["vpsd", format!("vpsd-order-{id}")])
    );
    assert!(t["dropletId"].as_str().unwrap().parse::<u64>().is_ok());
    assert!(t["ipv4Public"].is_string() && t["ipv4Private"].is_string());
    assert!(t["completedAt"].is_string() && t["startedAt"].is_string());
    assert_eq!(t["dropletCreatedAt"].as_str().unwrap().len(), 24);
    assert!(
        t["attempts"].as_u64().unwrap() >= 4,
        "create + 2 new + 1 without IP + active: {t}"
    );
    assert_eq!(
        history(&done)[1..],
        [
            ("PENDING_PAYMENT".into(), "PAID".into(), "admin".into()),
            ("PAID".into(), "PROVISIONING".into(), "system".into()),
            ("PROVISIONING".into(), "ACTIVE".into(), "system".into()),
        ]
    );
    // The user sees the same task (no history).
    let mine = app.get(&format!("/api/v1/orders/{id}"), Auth::User("alice"));
    assert_eq!(
        mine.data()["provisioningTask"]["ipv4Public"],
        t["ipv4Public"]
    );
    assert_eq!(
        fake.droplet_ids_with_tag(&format!("vpsd-order-{id}")).len(),
        1
    );
}

#[test]
fn hostname_region_and_ssh_keys_reach_the_droplet() {
    let fake = FakeDo::start();
    let app = app_on(&fake, |_| {});
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICrc/SKQ2lxYjKAY5aGy0IyKZvZJJarimIXYH8ti5R7p alice@laptop";
    let r = app.post_json(
        "/api/v1/orders",
        Auth::User("alice"),
        &json!({"planId": "vps-basic", "imageId": "debian-12", "duration": "MONTHLY",
                "region": "nyc3", "hostname": "web-1.shop", "sshPublicKeys": [key]}),
    );
    let id = r.id();
    app.pay(&id);
    app.wait_for_status(&id, &["ACTIVE"], WAIT);
    let create = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(create["name"], "web-1.shop");
    assert_eq!(create["region"], "nyc3");
    assert_eq!(create["image"], "debian-12-x64");
    let user_data = create["user_data"].as_str().unwrap();
    assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
    assert!(user_data.contains(key), "{user_data}");
}

fn failure(
    fake: &FakeDo,
    edit: impl FnOnce(&mut vpsd::Config),
) -> (TestApp, String, crate::support::Resp) {
    let app = app_on(fake, edit);
    let id = paid_order(&app);
    let r = app.wait_for_status(&id, &["FAILED", "ACTIVE"], WAIT);
    assert_eq!(r.data()["status"], "FAILED", "{}", r.text);
    (app, id, r)
}

#[test]
fn errored_create_action_fails_as_droplet_errored() {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().active_after(50).action_errored());
    let (_app, _id, r) = failure(&fake, |_| {});
    let t = task(&r);
    assert_eq!(t["status"], "FAILED");
    assert_eq!(t["errorCode"], "DROPLET_ERRORED");
    let rows = r.data()["statusHistory"].as_array().unwrap().clone();
    let last = rows.last().unwrap();
    assert_eq!(
        (last["previousStatus"].as_str(), last["newStatus"].as_str()),
        (Some("PROVISIONING"), Some("FAILED"))
    );
    assert_eq!(last["actor"], "system");
    assert!(last["reason"].as_str().unwrap().contains("errored"));
    assert_eq!(last["metadata"]["errorCode"], "DROPLET_ERRORED");
}

#[test]
fn a_droplet_that_goes_off_fails_as_droplet_errored() {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().goes_off());
    let (_app, _id, r) = failure(&fake, |_| {});
    assert_eq!(task(&r)["errorCode"], "DROPLET_ERRORED");
    assert_eq!(task(&r)["dropletStatus"], "off");
}

/// A 422 for the droplet itself (not the account's droplet limit, which
/// moves the order to another account: tests/api/fleet.rs).
#[test]
fn rejected_create_fails_with_digitaloceans_message() {
    let fake = FakeDo::start();
    fake.reject_next_create(
        422,
        "unprocessable_entity",
        "Size is not available in this region.",
    );
    let (_app, _id, r) = failure(&fake, |_| {});
    let t = task(&r);
    assert_eq!(t["errorCode"], "DROPLET_CREATION_FAILED");
    assert!(
        t["errorMessage"]
            .as_str()
            .unwrap()
            .contains("Size is not available"),
        "{t}"
    );
    assert_eq!(t["dropletId"], json!(null));
}

/// SPEC §13: a refused token stops placements on its account; the order
/// waits (it is not failed) and shows why until a reload fixes the token.
#[test]
fn a_refused_token_shows_as_unauthorized_and_never_leaks() {
    let fake = FakeDo::start_with_token("the-real-token");
    let app = app_on(&fake, |c| {
        c.cloud.digitalocean.token = Some("dop_v1_wrong_token".into())
    });
    let id = paid_order(&app);
    let shown = wait_for(WAIT, || {
        app.sweep();
        let r = app.admin_order(&id);
        (task(&r)["errorCode"] == "DIGITALOCEAN_UNAUTHORIZED").then_some(r)
    });
    let r = shown.expect("the task shows the refused token");
    assert_eq!(r.data()["status"], "PROVISIONING", "{}", r.text);
    assert_eq!(fake.count("POST", "/v2/droplets"), 0, "nothing is created");
    assert!(!r.text.contains("dop_v1_wrong_token"));
    let list = app.get("/api/v1/internal/orders", Auth::Admin);
    assert!(!list.text.contains("dop_v1_wrong_token"));
}

#[test]
fn early_404s_are_tolerated_then_not_found_fails() {
    let fake = FakeDo::start();
    fake.push_script(DropletScript::new().not_found_for(2));
    let app = app_on(&fake, |_| {});
    let id = paid_order(&app);
    let r = app.wait_for_status(&id, &["ACTIVE", "FAILED"], WAIT);
    assert_eq!(r.data()["status"], "ACTIVE", "{}", r.text);

    fake.push_script(DropletScript::new().not_found_for(100));
    let id = paid_order(&app);
    let r = app.wait_for_status(&id, &["ACTIVE", "FAILED"], WAIT);
    assert_eq!(task(&r)["errorCode"], "DROPLET_NOT_FOUND", "{}", r.text);
}

#[test]
fn the_attempt_budget_ends_in_a_timeout() {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().active_after(1000));
    let (_app, _id, r) = failure(&fake, |c| c.provisioning.max_attempts = 4);
    let t = task(&r);
    assert_eq!(t["errorCode"], "PROVISIONING_TIMEOUT");
    assert_eq!(t["attempts"], 4);
}

#[test]
fn rate_limits_and_outages_are_waited_out_without_a_second_droplet() {
    let fake = FakeDo::start();
    fake.inject_matching(
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
        1,
        Some("POST"),
        "/v2/droplets",
    );
    fake.inject_matching(Fault::ServerError, 3, Some("GET"), "/v2/droplets/");
    let app = app_on(&fake, |_| {});
    let id = paid_order(&app);
    let r = app.wait_for_status(&id, &["ACTIVE", "FAILED"], WAIT);
    assert_eq!(r.data()["status"], "ACTIVE", "{}", r.text);
    assert_eq!(
        fake.droplet_ids_with_tag(&format!("vpsd-order-{id}")).len(),
        1
    );
    // After the 429, nothing was sent to DigitalOcean for the Retry-After second:
    // with a 100 ms poll interval that would otherwise be ~10 sweeps of calls.
    let requests = fake.requests();
    let after_429 = requests.iter().position(|r| r.status == 429).unwrap();
    assert!(
        requests.len() - after_429 < 20,
        "{} requests after the 429",
        requests.len() - after_429
    );
}

#[test]
fn a_timed_out_create_is_adopted_not_repeated() {
    let fake = FakeDo::start();
    // DigitalOcean creates the droplet but vpsd never hears back.
    fake.inject_matching(Fault::DropConnection, 1, Some("POST"), "/v2/droplets");
    let app = app_on(&fake, |_| {});
    let id = paid_order(&app);
    let r = app.wait_for_status(&id, &["ACTIVE", "FAILED"], WAIT);
    assert_eq!(r.data()["status"], "ACTIVE", "{}", r.text);
    assert_eq!(fake.count("POST", "/v2/droplets"), 1);
    assert_eq!(
        fake.droplet_ids_with_tag(&format!("vpsd-order-{id}")).len(),
        1
    );
}

#[test]
fn destroy_failed_droplets_deletes_and_records_it() {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().goes_off());
    let (_app, id, r) = failure(&fake, |c| c.provisioning.destroy_failed_droplets = true);
    let rows = r.data()["statusHistory"].as_array().unwrap().clone();
    assert_eq!(rows.last().unwrap()["metadata"]["dropletDestroyed"], true);
    assert_eq!(rows.len(), 4, "no extra history row for the deletion");
    assert_eq!(fake.count("DELETE", "/v2/droplets/"), 1);
    assert!(fake
        .droplet_ids_with_tag(&format!("vpsd-order-{id}"))
        .is_empty());
}

#[test]
fn failed_droplets_are_left_alone_by_default() {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().goes_off());
    let (_app, id, _r) = failure(&fake, |_| {});
    assert_eq!(fake.count("DELETE", "/v2/droplets/"), 0);
    assert_eq!(
        fake.droplet_ids_with_tag(&format!("vpsd-order-{id}")).len(),
        1
    );
}

#[test]
fn retry_replaces_a_broken_droplet_and_resets_the_task() {
    let fake = FakeDo::start();
    fake.push_script(DropletScript::new().goes_off());
    let (app, id, _r) = failure(&fake, |_| {});
    let tag = format!("vpsd-order-{id}");
    let broken = fake.droplet_ids_with_tag(&tag);
    assert_eq!(broken.len(), 1);

    let retry = app.request(
        "POST",
        &format!("/api/v1/internal/orders/{id}/retry-provisioning"),
        Auth::Admin,
        &[("X-Admin-Id", "ops")],
        None,
    );
    assert_eq!(retry.status, 202, "{}", retry.text);
    assert_eq!(retry.data()["status"], "PROVISIONING");
    let t = task(&retry);
    assert_eq!(t["attempts"], 0);
    assert_eq!(t["errorCode"], json!(null));
    assert_eq!(t["errorMessage"], json!(null));

    let r = app.wait_for_status(&id, &["ACTIVE"], WAIT);
    let now = fake.droplet_ids_with_tag(&tag);
    assert_eq!(now.len(), 1, "exactly one droplet after retry");
    assert_ne!(now, broken, "the off droplet was replaced");
    assert_eq!(task(&r)["errorCode"], json!(null));
    let chain: Vec<String> = history(&r).into_iter().map(|h| h.1).collect();
    assert_eq!(
        chain,
        [
            "PENDING_PAYMENT",
            "PAID",
            "PROVISIONING",
            "FAILED",
            "PROVISIONING",
            "ACTIVE"
        ]
    );
    assert_eq!(history(&r)[4].2, "admin:ops");

    let again = app.post_empty(
        &format!("/api/v1/internal/orders/{id}/retry-provisioning"),
        Auth::Admin,
    );
    assert_eq!(again.status, 409);
    assert_eq!(again.body["error"]["details"]["currentStatus"], "ACTIVE");
}

#[test]
fn retry_adopts_a_surviving_droplet() {
    let fake = FakeDo::start();
    // New for three observations: the first round times out at 3 attempts,
    // then the droplet comes up while the order waits for a retry.
    fake.set_default_script(DropletScript::new().active_after(3));
    let (app, id, _r) = failure(&fake, |c| c.provisioning.max_attempts = 3);
    let tag = format!("vpsd-order-{id}");
    let survivor = fake.droplet_ids_with_tag(&tag);
    assert_eq!(survivor.len(), 1);
    let retry = app.post_empty(
        &format!("/api/v1/internal/orders/{id}/retry-provisioning"),
        Auth::Admin,
    );
    assert_eq!(retry.status, 202);
    app.wait_for_status(&id, &["ACTIVE"], WAIT);
    assert_eq!(fake.droplet_ids_with_tag(&tag), survivor);
    assert_eq!(fake.count("POST", "/v2/droplets"), 1);
}

#[test]
fn a_large_sweep_lists_the_common_tag_instead_of_one_get_per_droplet() {
    let fake = FakeDo::start();
    // Active at DigitalOcean but no public IPv4 yet: in progress for as long
    // as the test needs.
    fake.set_default_script(DropletScript::new().active_after(0).ip_after(1_000_000));
    let app = app_on(&fake, |c| {
        c.provisioning.poll_interval_ms = 600_000;
        c.provisioning.max_attempts = 100_000;
    });
    let ids: Vec<String> = (0..500)
        .map(|i| app.create_order(&format!("u{}", i % 7)).id())
        .collect();
    for id in &ids {
        assert_eq!(app.pay(id).status, 200);
    }
    // Wake-ups create the droplets; wait until every task knows its droplet.
    let all_created = crate::support::wait_for(Duration::from_secs(60), || {
        app.sweep();
        (fake.count("POST", "/v2/droplets") >= 500).then_some(())
    });
    assert!(
        all_created.is_some(),
        "{} creates",
        fake.count("POST", "/v2/droplets")
    );
    crate::support::wait_for(Duration::from_secs(30), || {
        app.sweep();
        let open = app.get(
            "/api/v1/internal/orders?status=PROVISIONING&limit=1",
            Auth::Admin,
        );
        (open.body["meta"]["total"] == 500).then_some(())
    })
    .expect("all provisioning");
    app.sweep();
    fake.clear_requests();
    let report = app.sweep();
    assert_eq!(report.open, 500);
    assert_eq!(report.saved, 500);
    let lists = fake.count("GET", "/v2/droplets?tag_name=vpsd&");
    let gets = fake.count("GET", "/v2/droplets/");
    assert_eq!(lists, 3, "500 droplets at 200 a page");
    assert_eq!(gets, 0);
    assert_eq!(fake.requests().len(), 3);
    let sample = app.admin_order(&ids[0]);
    assert!(task(&sample)["attempts"].as_u64().unwrap() >= 2);
}

#[test]
fn the_sandbox_takes_an_order_to_active_without_a_token() {
    let app = spawn_app_with(|c| {
        c.cloud.sandbox.boot_delay_ms = 300;
        c.provisioning.poll_interval_ms = 1000;
        c.cloud.digitalocean.token = None;
    });
    let id = paid_order(&app);
    let r = app.wait_for_status(&id, &["ACTIVE", "FAILED"], WAIT);
    assert_eq!(r.data()["status"], "ACTIVE", "{}", r.text);
    let ip = task(&r)["ipv4Public"].as_str().unwrap().to_string();
    assert!(ip.starts_with("203.0.113."), "{ip}");
    let health = app.get("/api/v1/health", Auth::None);
    assert_eq!(health.data()["cloud"], "sandbox");
}

#[test]
fn sandbox_droplets_survive_a_restart() {
    let app = spawn_app_with(|c| {
        c.cloud.sandbox.boot_delay_ms = 1500;
        c.provisioning.poll_interval_ms = 1000;
        // The test sweeps every 20 ms; keep the budget longer than the boot.
        c.provisioning.max_attempts = 10_000;
    });
    let id = paid_order(&app);
    let created = crate::support::wait_for(WAIT, || {
        app.sweep();
        let t = task(&app.admin_order(&id));
        t["dropletId"].as_str().map(str::to_string)
    })
    .expect("droplet created");
    let app = app.restart();
    let r = app.wait_for_status(&id, &["ACTIVE", "FAILED"], WAIT);
    assert_eq!(r.data()["status"], "ACTIVE", "{}", r.text);
    assert_eq!(
        task(&r)["dropletId"].as_str(),
        Some(created.as_str()),
        "the same droplet, adopted after the restart"
    );
}

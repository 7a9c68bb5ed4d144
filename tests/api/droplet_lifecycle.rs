//! Droplet actions after ACTIVE against the fake DigitalOcean (SPEC §9):
//! exactly one power_off / power_on / delete per decision, whatever faults the
//! provider answers with, and DROPLET_ACTION_FAILED shown while retrying.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_do::{DropletScript, FakeDo, Fault, RequestCount};
use crate::support::{spawn_app_with, wait_for, Auth, Resp, TestApp};

const WAIT: Duration = Duration::from_secs(30);

fn app_on(fake: &FakeDo) -> TestApp {
    spawn_app_with(|c| crate::support::use_fake_do(c, fake))
}

fn active_order(app: &TestApp) -> (String, u64) {
    let id = app.create_order("alice").id();
    assert_eq!(app.pay(&id).status, 200);
    let r = app.wait_for_status(&id, &["ACTIVE"], WAIT);
    let droplet = r.data()["provisioningTask"]["dropletId"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("droplet id");
    (id, droplet)
}

fn task(r: &Resp) -> Value {
    r.data()["provisioningTask"].clone()
}

/// Sweeps until the owed action is confirmed, recording every error code seen.
fn settle(app: &TestApp, id: &str) -> (Resp, Vec<String>) {
    let mut seen = Vec::new();
    let done = wait_for(WAIT, || {
        app.sweep();
        let r = app.admin_order(id);
        if let Some(code) = task(&r)["errorCode"].as_str() {
            seen.push(code.to_string());
        }
        task(&r)["pendingAction"].is_null().then_some(r)
    });
    let done = done.unwrap_or_else(|| panic!("never confirmed: {}", app.admin_order(id).text));
    (done, seen)
}

fn act(app: &TestApp, id: &str, action: &str) -> Resp {
    let r = app.post_json(
        &format!("/api/v1/internal/orders/{id}/{action}"),
        Auth::Admin,
        &json!({}),
    );
    assert_eq!(r.status, 200, "{action}: {}", r.text);
    r
}

fn ready() -> FakeDo {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().active_after(1).ip_after(1));
    fake.set_action_delay(Duration::from_millis(200));
    fake
}

#[test]
fn locked_droplets_are_retried_and_powered_off_exactly_once() {
    let fake = ready();
    let app = app_on(&fake);
    let (id, droplet) = active_order(&app);
    fake.lock_next_droplet_actions(2);
    act(&app, &id, "suspend");
    let (r, seen) = settle(&app, &id);
    assert!(
        seen.iter().any(|c| c == "DROPLET_ACTION_FAILED"),
        "{seen:?}"
    );
    assert_eq!(task(&r)["dropletStatus"], "off");
    assert!(
        task(&r)["errorCode"].is_null(),
        "cleared once done: {}",
        r.text
    );
    assert_eq!(fake.power_requests(droplet, "power_off").accepted, 1);

    fake.fail_next_droplet_actions(Fault::ServerError, 1);
    act(&app, &id, "unsuspend");
    let (r, _) = settle(&app, &id);
    assert_eq!(task(&r)["dropletStatus"], "active");
    assert_eq!(fake.power_requests(droplet, "power_on").accepted, 1);
    assert_eq!(fake.power_requests(droplet, "power_off").accepted, 1);
}

#[test]
fn a_power_request_whose_answer_was_lost_is_not_sent_again() {
    let fake = ready();
    let app = app_on(&fake);
    let (id, droplet) = active_order(&app);
    fake.fail_next_droplet_actions(Fault::DropConnection, 1);
    act(&app, &id, "suspend");
    let (r, _) = settle(&app, &id);
    assert_eq!(task(&r)["dropletStatus"], "off");
    assert_eq!(fake.power_requests(droplet, "power_off").accepted, 1);
}

#[test]
fn terminate_deletes_by_tag_once_through_outages() {
    let fake = ready();
    let app = app_on(&fake);
    let (id, _) = active_order(&app);
    fake.fail_next_deletes_by_tag(Fault::ServerError, 2);
    act(&app, &id, "terminate");
    let (r, _) = settle(&app, &id);
    assert_eq!(r.data()["status"], "TERMINATED");
    assert_eq!(task(&r)["dropletStatus"], "deleted");
    let tag = format!("vpsd-order-{id}");
    assert_eq!(fake.delete_by_tag_requests(&tag).accepted, 1);
    assert_eq!(app.sweep().actions, 0, "nothing is owed any more");
}

/// Power actions slow enough that the next status change (and sweep) lands
/// while the previous action still runs, even on a busy machine.
const SLOW_ACTION: Duration = Duration::from_millis(1500);

fn slow() -> FakeDo {
    let fake = FakeDo::start();
    fake.set_default_script(DropletScript::new().active_after(1).ip_after(1));
    fake.set_action_delay(SLOW_ACTION);
    fake
}

/// Waits until no action runs on the droplet any more, then returns its status
/// at DigitalOcean: what the customer actually has.
fn final_status(fake: &FakeDo, droplet: u64) -> String {
    wait_for(WAIT, || {
        let idle = fake
            .droplet_actions(droplet)
            .iter()
            .all(|a| a["status"] != "in-progress");
        idle.then(|| fake.droplet(droplet).expect("droplet")["status"].clone())
    })
    .and_then(|s| s.as_str().map(str::to_string))
    .expect("the droplet's actions finish")
}

fn once() -> RequestCount {
    RequestCount {
        received: 1,
        accepted: 1,
    }
}

#[test]
fn unsuspend_while_the_power_off_runs_ends_with_the_droplet_on() {
    let fake = slow();
    let app = app_on(&fake);
    let (id, droplet) = active_order(&app);
    act(&app, &id, "suspend");
    app.sweep();
    assert_eq!(fake.power_requests(droplet, "power_off"), once());
    // The power_off is still running when the order goes back to ACTIVE.
    act(&app, &id, "unsuspend");
    app.sweep();
    let (r, seen) = settle(&app, &id);
    assert_eq!(r.data()["status"], "ACTIVE");
    assert_eq!(task(&r)["dropletStatus"], "active");
    assert_eq!(final_status(&fake, droplet), "active", "{}", r.text);
    assert_eq!(fake.power_requests(droplet, "power_off"), once());
    assert_eq!(
        fake.power_requests(droplet, "power_on"),
        once(),
        "one power_on, sent only once the power_off had finished"
    );
    assert!(seen.is_empty(), "nothing was refused: {seen:?}");
}

#[test]
fn suspend_unsuspend_suspend_ends_off_with_a_single_power_off() {
    let fake = slow();
    let app = app_on(&fake);
    let (id, droplet) = active_order(&app);
    act(&app, &id, "suspend");
    app.sweep();
    assert_eq!(fake.power_requests(droplet, "power_off"), once());
    act(&app, &id, "unsuspend");
    app.sweep();
    act(&app, &id, "suspend");
    let (r, seen) = settle(&app, &id);
    assert_eq!(r.data()["status"], "SUSPENDED");
    assert_eq!(task(&r)["dropletStatus"], "off");
    assert_eq!(final_status(&fake, droplet), "off", "{}", r.text);
    assert_eq!(
        fake.power_requests(droplet, "power_off"),
        once(),
        "the running power_off is waited for, not sent again"
    );
    assert_eq!(fake.power_requests(droplet, "power_on").received, 0);
    assert!(seen.is_empty(), "nothing was refused: {seen:?}");
}

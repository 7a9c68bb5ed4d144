//! The cloud layer for SPEC §9's droplet actions: the `DigitalOcean` client
//! against the local fake (requests per DigitalOcean's OpenAPI description,
//! errors classified, counters the reconciler tests rely on), and the sandbox
//! through the same sequence.

use std::time::{Duration, Instant};

use serde_json::json;
use vpsd::cloud::digitalocean::DigitalOcean;
use vpsd::cloud::sandbox::Sandbox;
use vpsd::cloud::{ActionStatus, Cloud, CloudError, PowerAction};
use vpsd::domain::droplet::DropletStatus;

use crate::support::fake_do::{
    DropletScript, FakeDo, Fault, RequestCount, DEFAULT_TOKEN, DROPLET_LOCKED_MESSAGE,
};

/// Long enough that "still in progress" holds between two statements on a busy
/// machine; short enough to keep the tests quick.
const DELAY: Duration = Duration::from_millis(300);

fn client(fake: &FakeDo) -> DigitalOcean {
    DigitalOcean::new(&fake.url(), DEFAULT_TOKEN, Duration::from_secs(5))
}

/// A droplet that is already active with an address.
fn active_droplet(fake: &FakeDo, tags: &[&str]) -> u64 {
    fake.seed_droplet("web-1", tags, DropletScript::new().active_after(0))
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count(received: usize, accepted: usize) -> RequestCount {
    RequestCount { received, accepted }
}

#[test]
fn power_off_is_one_request_in_progress_then_off() {
    let fake = FakeDo::start();
    fake.set_action_delay(DELAY);
    let cloud = client(&fake);
    let id = active_droplet(&fake, &["vpsd", "vpsd-order-a"]);
    assert_eq!(cloud.get_droplet(id).unwrap().status, DropletStatus::Active);

    let action = cloud.power(id, PowerAction::Off).unwrap();
    let post = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(post.path, format!("/v2/droplets/{id}/actions"));
    assert_eq!(post.json().unwrap(), json!({"type": "power_off"}));
    assert_eq!(post.status, 201);

    assert_eq!(cloud.get_action(action), Ok(ActionStatus::InProgress));
    assert_eq!(cloud.get_droplet(id).unwrap().status, DropletStatus::Active);
    wait_until("the droplet to read off", || {
        cloud.get_droplet(id).unwrap().status == DropletStatus::Off
    });
    assert_eq!(cloud.get_action(action), Ok(ActionStatus::Completed));
    assert_eq!(fake.power_requests(id, "power_off"), count(1, 1));
    assert_eq!(fake.power_requests(id, "power_on"), count(0, 0));

    // Already in effect: DigitalOcean refuses, nothing is started.
    let again = cloud.power(id, PowerAction::Off);
    assert!(
        matches!(&again, Err(CloudError::Rejected { status: 422, message }) if message.contains("already powered off")),
        "{again:?}"
    );
    assert_eq!(fake.power_requests(id, "power_off"), count(2, 1));

    let on = cloud.power(id, PowerAction::On).unwrap();
    assert!(on > action);
    wait_until("the droplet to read active", || {
        cloud.get_droplet(id).unwrap().status == DropletStatus::Active
    });
    assert_eq!(fake.power_requests_total("power_on"), count(1, 1));
}

#[test]
fn droplet_actions_lists_what_was_sent_newest_first() {
    let fake = FakeDo::start();
    fake.set_action_delay(DELAY);
    let cloud = client(&fake);
    let id = active_droplet(&fake, &["vpsd"]);
    // The fake's create completes on the first observation.
    cloud.get_droplet(id).unwrap();
    let only_create = cloud.droplet_actions(id).unwrap();
    assert_eq!(only_create.len(), 1);
    assert_eq!(only_create[0].kind, "create");

    let action = cloud.power(id, PowerAction::Off).unwrap();
    let listed = cloud.droplet_actions(id).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, action);
    assert_eq!(listed[0].kind, PowerAction::Off.as_str());
    assert_eq!(listed[0].status, ActionStatus::InProgress);
    assert!(listed[0].started_at.is_some());
    assert_eq!(listed[1].kind, "create");
    assert_eq!(listed[1].status, ActionStatus::Completed);
    let get = fake
        .requests()
        .into_iter()
        .rfind(|r| r.method == "GET")
        .unwrap();
    assert!(
        get.path.starts_with(&format!("/v2/droplets/{id}/actions?"))
            && get.path.contains("per_page=20"),
        "{}",
        get.path
    );

    wait_until("the action to complete", || {
        cloud.droplet_actions(id).unwrap()[0].status == ActionStatus::Completed
    });
    assert_eq!(cloud.droplet_actions(404), Err(CloudError::NotFound));
}

#[test]
fn locked_droplet_is_rejected_and_changes_nothing() {
    let fake = FakeDo::start();
    let cloud = client(&fake);
    let id = active_droplet(&fake, &["vpsd"]);
    cloud.get_droplet(id).unwrap();
    fake.lock_next_droplet_actions(1);

    let refused = cloud.power(id, PowerAction::Off);
    assert_eq!(
        refused,
        Err(CloudError::Rejected {
            status: 422,
            message: DROPLET_LOCKED_MESSAGE.into()
        })
    );
    assert_eq!(cloud.droplet_actions(id).unwrap().len(), 1);
    assert_eq!(cloud.get_droplet(id).unwrap().status, DropletStatus::Active);
    assert_eq!(fake.power_requests(id, "power_off"), count(1, 0));

    // The lock was for one request: the retry goes through.
    cloud.power(id, PowerAction::Off).unwrap();
    assert_eq!(fake.power_requests(id, "power_off"), count(2, 1));
}

#[test]
fn a_second_action_while_one_runs_is_rejected() {
    let fake = FakeDo::start();
    fake.set_action_delay(Duration::from_secs(30));
    let cloud = client(&fake);
    let id = active_droplet(&fake, &["vpsd"]);
    cloud.get_droplet(id).unwrap();
    cloud.power(id, PowerAction::Off).unwrap();
    let busy = cloud.power(id, PowerAction::On);
    assert!(
        matches!(&busy, Err(CloudError::Rejected { status: 422, message }) if message.contains("pending event")),
        "{busy:?}"
    );
    assert_eq!(cloud.droplet_actions(id).unwrap().len(), 2);
}

#[test]
fn server_errors_and_rate_limits_are_classified_and_change_nothing() {
    let fake = FakeDo::start();
    let cloud = client(&fake);
    let id = active_droplet(&fake, &["vpsd", "vpsd-order-a"]);
    cloud.get_droplet(id).unwrap();

    fake.fail_next_droplet_actions(Fault::ServerError, 1);
    assert!(matches!(
        cloud.power(id, PowerAction::Off),
        Err(CloudError::Unavailable(_))
    ));
    fake.fail_next_deletes_by_tag(
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
        1,
    );
    assert_eq!(
        cloud.delete_by_tag("vpsd-order-a"),
        Err(CloudError::RateLimited {
            retry_after: Duration::from_secs(1)
        })
    );
    assert_eq!(fake.power_requests(id, "power_off"), count(1, 0));
    assert_eq!(fake.delete_by_tag_requests("vpsd-order-a"), count(1, 0));
    assert_eq!(fake.droplet_ids_with_tag("vpsd-order-a"), [id]);
    assert_eq!(cloud.rate_limited_count(), 1);
    // The client holds back for the Retry-After before asking again.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        cloud.get_droplet(id).map(|d| d.status),
        Ok(DropletStatus::Active)
    );
    // The token appears in no error.
    fake.lock_next_deletes_by_tag(1);
    let locked = cloud.delete_by_tag("vpsd-order-a").unwrap_err();
    assert!(!format!("{locked} {locked:?}").contains(DEFAULT_TOKEN));
}

#[test]
fn delete_by_tag_removes_the_droplets_after_the_delay() {
    let fake = FakeDo::start();
    fake.set_action_delay(DELAY);
    let cloud = client(&fake);
    let a1 = active_droplet(&fake, &["vpsd", "vpsd-order-a"]);
    let a2 = active_droplet(&fake, &["vpsd", "vpsd-order-a"]);
    let b = active_droplet(&fake, &["vpsd", "vpsd-order-b"]);

    cloud.delete_by_tag("vpsd-order-a").unwrap();
    let delete = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .unwrap();
    assert_eq!(delete.path, "/v2/droplets?tag_name=vpsd-order-a");
    assert_eq!(delete.status, 204);
    // Deleting takes a while: still listed (and locked) meanwhile.
    assert_eq!(cloud.list_by_tag("vpsd-order-a").unwrap().len(), 2);
    assert!(fake.is_deleting(a1));
    assert!(matches!(
        cloud.power(a1, PowerAction::Off),
        Err(CloudError::Rejected { status: 422, .. })
    ));

    wait_until("the tagged droplets to go", || {
        cloud.list_by_tag("vpsd-order-a").unwrap().is_empty()
    });
    assert_eq!(cloud.get_droplet(a2), Err(CloudError::NotFound));
    assert_eq!(cloud.list_by_tag("vpsd").unwrap().len(), 1);
    assert!(cloud.get_droplet(b).is_ok());

    // Nothing carries the tag any more: still a success, and counted.
    cloud.delete_by_tag("vpsd-order-a").unwrap();
    assert_eq!(fake.delete_by_tag_requests("vpsd-order-a"), count(2, 2));
    assert_eq!(fake.delete_by_tag_requests("vpsd-order-b"), count(0, 0));
    // An empty tag never reaches DigitalOcean.
    let sent = fake.requests().len();
    assert!(matches!(
        cloud.delete_by_tag(""),
        Err(CloudError::Rejected { status: 400, .. })
    ));
    assert_eq!(fake.requests().len(), sent);
}

#[test]
fn an_action_whose_answer_was_lost_is_found_in_the_list() {
    // DigitalOcean took the action but the client never heard back: the
    // reconciler must find it rather than send a second one.
    let fake = FakeDo::start();
    let cloud = client(&fake);
    let id = active_droplet(&fake, &["vpsd"]);
    cloud.get_droplet(id).unwrap();
    fake.fail_next_droplet_actions(Fault::DropConnection, 1);
    assert!(matches!(
        cloud.power(id, PowerAction::Off),
        Err(CloudError::Unavailable(_))
    ));
    assert_eq!(fake.power_requests(id, "power_off"), count(1, 1));
    let listed = cloud.droplet_actions(id).unwrap();
    assert_eq!(listed[0].kind, "power_off");
    assert_eq!(fake.droplet_actions(id)[0]["type"], "power_off");
}

#[test]
fn sandbox_runs_the_same_sequence() {
    let cloud = Sandbox::new(DELAY);
    let spec = |order: &str| vpsd::cloud::DropletSpec {
        name: "web-1".into(),
        region: "sgp1".into(),
        size: "s-1vcpu-1gb".into(),
        image: "ubuntu-24-04-x64".into(),
        tags: vec!["vpsd".into(), format!("vpsd-order-{order}")],
        monitoring: true,
        ipv6: false,
        user_data: None,
    };
    let id = cloud.create_droplet(&spec("a")).unwrap().droplet.id;
    let other = cloud.create_droplet(&spec("b")).unwrap().droplet.id;
    wait_until("boot", || {
        cloud.get_droplet(id).unwrap().status == DropletStatus::Active
    });

    let action = cloud.power(id, PowerAction::Off).unwrap();
    assert_eq!(cloud.get_action(action), Ok(ActionStatus::InProgress));
    let busy = cloud.power(id, PowerAction::On);
    assert!(matches!(
        busy,
        Err(CloudError::Rejected { status: 422, .. })
    ));
    wait_until("off", || {
        cloud.get_droplet(id).unwrap().status == DropletStatus::Off
    });
    let listed = cloud.droplet_actions(id).unwrap();
    assert_eq!(
        (listed[0].id, listed[0].status),
        (action, ActionStatus::Completed)
    );
    assert_eq!(listed[1].kind, "create");

    cloud.delete_by_tag("vpsd-order-a").unwrap();
    assert_eq!(cloud.list_by_tag("vpsd-order-a").unwrap().len(), 1);
    wait_until("the delete", || {
        cloud.list_by_tag("vpsd-order-a").unwrap().is_empty()
    });
    assert_eq!(cloud.get_droplet(id), Err(CloudError::NotFound));
    assert!(cloud.get_droplet(other).is_ok());
    cloud.delete_by_tag("vpsd-order-a").unwrap();
}

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

//! The catalog-service source, against a local fake of it.

use std::time::Duration;

use serde_json::json;
use vpsd::config::CatalogSource;

use crate::support::fake_catalog::{FakeCatalog, Mode};
use crate::support::{spawn_app_with, Auth, TestApp};

fn app_on(catalog: &FakeCatalog, timeout_ms: u64) -> TestApp {
    let url = catalog.url();
    spawn_app_with(move |c| {
        c.catalog.source = CatalogSource::Http;
        c.catalog.url = Some(url);
        c.catalog.timeout_ms = timeout_ms;
        c.catalog
            .sizes
            .insert("plan-nosize-mapped".into(), "s-2vcpu-4gb".into());
    })
}

fn order(
    app: &TestApp,
    plan: &str,
    image: &str,
    duration: &str,
    coupon: Option<&str>,
) -> crate::support::Resp {
    let mut body = json!({"planId": plan, "imageId": image, "duration": duration});
    if let Some(c) = coupon {
        body["couponCode"] = json!(c);
    }
    app.post_json("/api/v1/orders", Auth::User("alice"), &body)
}

fn total(app: &TestApp) -> u64 {
    app.get("/api/v1/internal/orders", Auth::Admin).body["meta"]["total"]
        .as_u64()
        .unwrap()
}

#[test]
fn prices_from_the_catalog_service_and_validates_the_coupon_on_the_promo_price() {
    let catalog = FakeCatalog::with_sample();
    let app = app_on(&catalog, 2000);
    let r = order(&app, "plan-basic", "img-ubuntu", "MONTHLY", Some("HEMAT20"));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.data()["pricing"],
        json!({"basePrice": 150000, "promoDiscount": 15000, "couponCode": "HEMAT20",
               "couponDiscount": 27000, "finalPrice": 108000, "currency": "IDR"})
    );
    let validate = catalog
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/coupons/validate"))
        .expect("coupon validated");
    let sent: serde_json::Value = serde_json::from_str(&validate.body).unwrap();
    assert_eq!(
        sent,
        json!({"code": "HEMAT20", "planId": "plan-basic", "userId": "alice", "amount": 135000})
    );

    let annual = order(&app, "plan-basic", "img-ubuntu", "ANNUAL", None);
    assert_eq!(annual.status, 201);
    assert_eq!(annual.data()["pricing"]["basePrice"], 1500000);
    assert_eq!(annual.data()["pricing"]["couponCode"], json!(null));
}

#[test]
fn catalog_refusals_map_to_their_codes() {
    let catalog = FakeCatalog::with_sample();
    catalog.set_coupon("OLD", json!({"valid": false, "reason": "EXPIRED"}));
    catalog.add_plan(json!({"id": "plan-nosize", "name": "x", "displayName": "No Size", "cpu": 1, "memoryMb": 512,
        "diskGb": 10, "pricings": [{"duration": "MONTHLY", "price": 1000, "priceAfterPromo": 1000}]}));
    catalog.add_plan(json!({"id": "plan-nosize-mapped", "name": "y", "displayName": "Mapped", "cpu": 2, "memoryMb": 4096,
        "diskGb": 80, "pricings": [{"duration": "MONTHLY", "price": 2000}]}));
    let app = app_on(&catalog, 2000);

    let r = order(&app, "no-such-plan", "img-ubuntu", "MONTHLY", None);
    assert_eq!((r.status, r.code()), (400, "INVALID_PLAN"));
    let r = order(&app, "plan-basic", "img-old", "MONTHLY", None);
    assert_eq!(r.code(), "INVALID_IMAGE");
    let r = order(&app, "plan-basic", "no-such-image", "MONTHLY", None);
    assert_eq!(r.code(), "INVALID_IMAGE");
    for d in ["QUARTERLY", "SEMI_ANNUAL"] {
        let r = order(&app, "plan-basic", "img-ubuntu", d, None);
        assert_eq!(
            r.code(),
            "INVALID_DURATION",
            "{d}: never a silent fallback to MONTHLY"
        );
    }
    let r = order(&app, "plan-basic", "img-ubuntu", "MONTHLY", Some("OLD"));
    assert_eq!(r.code(), "INVALID_COUPON");
    assert_eq!(r.body["error"]["details"]["reason"], "EXPIRED");
    let r = order(&app, "plan-basic", "img-ubuntu", "MONTHLY", Some("NOPE"));
    assert_eq!(r.body["error"]["details"]["reason"], "NOT_FOUND");
    let r = order(&app, "plan-nosize", "img-ubuntu", "MONTHLY", None);
    assert_eq!(
        r.code(),
        "INVALID_PLAN",
        "no droplet size: refused, never a hard-coded size"
    );
    let r = order(&app, "plan-nosize-mapped", "img-ubuntu", "MONTHLY", None);
    assert_eq!(r.status, 201, "{}", r.text);
    let paid = app.pay(&r.id());
    assert_eq!(paid.data()["provisioningTask"]["doSize"], "s-2vcpu-4gb");
    assert_eq!(total(&app), 1);
}

#[test]
fn ids_are_url_encoded_into_catalog_paths() {
    let catalog = FakeCatalog::with_sample();
    let app = app_on(&catalog, 2000);
    // `/`, spaces and `?` are refused by the id pattern (SPEC §12); `:` is
    // allowed in ids but reserved in URLs.
    let r = order(&app, "plan:basic", "img-ubuntu", "MONTHLY", None);
    assert_eq!(r.code(), "INVALID_PLAN");
    let paths: Vec<String> = catalog.requests().into_iter().map(|r| r.path).collect();
    assert!(
        paths.iter().any(|p| p.ends_with("/plans/plan%3Abasic")),
        "{paths:?}"
    );
}

#[test]
fn catalog_down_slow_or_garbled_is_503_and_writes_nothing() {
    let catalog = FakeCatalog::with_sample();
    let app = app_on(&catalog, 300);

    catalog.set_mode(Mode::ServerError);
    let r = order(&app, "plan-basic", "img-ubuntu", "MONTHLY", None);
    assert_eq!((r.status, r.code()), (503, "CATALOG_SERVICE_UNAVAILABLE"));

    catalog.set_mode(Mode::Garbage);
    let r = order(&app, "plan-basic", "img-ubuntu", "MONTHLY", None);
    assert_eq!(r.code(), "CATALOG_SERVICE_UNAVAILABLE");

    catalog.set_mode(Mode::Normal);
    catalog.set_delay(Duration::from_millis(1500));
    let r = order(&app, "plan-basic", "img-ubuntu", "MONTHLY", None);
    assert_eq!(
        r.code(),
        "CATALOG_SERVICE_UNAVAILABLE",
        "slower than catalog.timeout_ms"
    );
    assert!(
        !r.text.contains("127.0.0.1"),
        "no internal detail leaks: {}",
        r.text
    );
    assert_eq!(total(&app), 0);

    catalog.set_delay(Duration::ZERO);
    assert_eq!(
        order(&app, "plan-basic", "img-ubuntu", "MONTHLY", None).status,
        201
    );
}

#[test]
fn unreachable_catalog_is_503() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = spawn_app_with(move |c| {
        c.catalog.source = CatalogSource::Http;
        c.catalog.url = Some(url);
        c.catalog.timeout_ms = 500;
    });
    let r = order(&app, "plan-basic", "img-ubuntu", "MONTHLY", None);
    assert_eq!((r.status, r.code()), (503, "CATALOG_SERVICE_UNAVAILABLE"));
    assert_eq!(total(&app), 0);
}

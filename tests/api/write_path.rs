//! Group commit seen from outside: a storage failure fails its whole batch
//! with 503 and leaves nothing half-written; the next batch commits.

use serde_json::json;

use crate::support::{skip_on_postgres, spawn_app, verify_stopped, Auth};

#[test]
fn an_injected_storage_failure_is_503_for_its_batch_and_writes_nothing() {
    if skip_on_postgres("the failure is injected into the redb writer's group commit") {
        return;
    }
    let app = spawn_app();
    app.create_order("seed");
    app.redb()
        .expect("a redb store")
        .writer()
        .inject_commit_failures(1);
    let results: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let app = &app;
                s.spawn(move || {
                    let r = app.post_json(
                        "/api/v1/orders",
                        Auth::User(&format!("u{i}")),
                        &json!({"planId": "vps-basic", "imageId": "ubuntu-22-04", "duration": "MONTHLY", "couponCode": "FLASH3"}),
                    );
                    (r.status, r.code().to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failed = results.iter().filter(|r| r.0 == 503).count();
    assert!(failed >= 1, "{results:?}");
    assert!(results
        .iter()
        .filter(|r| r.0 == 503)
        .all(|r| r.1 == "STORAGE_UNAVAILABLE"));
    let created = results.iter().filter(|r| r.0 == 201).count() as u64;
    let total = app.get("/api/v1/internal/orders", Auth::Admin).body["meta"]["total"]
        .as_u64()
        .unwrap();
    assert_eq!(
        total,
        created + 1,
        "exactly the answered orders exist: {results:?}"
    );
    // Coupon redemptions of the failed batch were rolled back with it.
    assert!(created <= 3);
    assert_eq!(verify_stopped(app), total, "no partial rows");
}

//! Random bodies at POST /orders: whatever arrives, the answer is never a 5xx
//! and always the envelope.

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::{spawn_app, Auth};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("vps-basic"),
            Just("ubuntu-22-04"),
            Just("MONTHLY"),
            Just("ANNUAL"),
            Just("HEMAT20"),
            Just("sgp1"),
            Just("web-1"),
            Just("")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("planId".to_string()),
        Just("imageId".to_string()),
        Just("duration".to_string()),
        Just("couponCode".to_string()),
        Just("region".to_string()),
        Just("hostname".to_string()),
        Just("sshPublicKeys".to_string()),
        "\\PC{0,12}",
    ]
}

#[test]
fn random_bodies_never_get_a_5xx() {
    let app = spawn_app();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let raw = prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        prop::collection::vec(any::<u8>(), 0..200),
    ];
    runner
        .run(&raw, |body| {
            let r = app.request(
                "POST",
                "/api/v1/orders",
                Auth::User("fuzzer"),
                &[],
                Some(("application/json", &body)),
            );
            prop_assert!(
                r.status < 500,
                "{} for {:?}: {}",
                r.status,
                String::from_utf8_lossy(&body),
                r.text
            );
            if r.status >= 400 {
                prop_assert!(
                    r.body["error"]["code"].is_string(),
                    "no envelope: {}",
                    r.text
                );
            }
            Ok(())
        })
        .unwrap();
}

//! Every authentication failure code, and each supported JWT algorithm.

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::{
    fixture, hs256_token, now_secs, signed_token, spawn_app, spawn_app_with, Auth, SECRET,
};
use vpsd::config::JwtAlgorithm;

#[test]
fn user_routes_need_a_valid_token() {
    let app = spawn_app();
    let exp = now_secs() + 600;
    let cases = [
        ("missing", None),
        ("garbage", Some("not.a.jwt".to_string())),
        (
            "wrong secret",
            Some(hs256_token("other", json!({"sub": "a", "exp": exp}))),
        ),
        (
            "expired",
            Some(hs256_token(
                SECRET,
                json!({"sub": "a", "exp": now_secs() - 10}),
            )),
        ),
        ("no exp", Some(hs256_token(SECRET, json!({"sub": "a"})))),
        ("no sub", Some(hs256_token(SECRET, json!({"exp": exp})))),
        (
            "future nbf",
            Some(hs256_token(
                SECRET,
                json!({"sub": "a", "exp": exp, "nbf": now_secs() + 300}),
            )),
        ),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&format!(r#"{{"sub":"a","exp":{exp}}}"#))
            )),
        ),
    ];
    for (name, token) in cases {
        let r = match &token {
            Some(t) => app.get("/api/v1/orders", Auth::Bearer(t)),
            None => app.get("/api/v1/orders", Auth::None),
        };
        assert_eq!(r.status, 401, "{name}");
        assert_eq!(r.code(), "UNAUTHORIZED", "{name}");
        if let Some(t) = &token {
            assert!(!r.text.contains(t.as_str()), "{name}: token echoed");
        }
    }
    assert_eq!(app.get("/api/v1/orders", Auth::User("a")).status, 200);
}

/// Verified tokens are remembered; a remembered token must still be refused
/// the second it expires.
#[test]
fn a_token_used_before_is_refused_once_it_expires() {
    let app = spawn_app();
    let exp = now_secs() + 2;
    let token = hs256_token(SECRET, json!({"sub": "a", "exp": exp}));
    assert_eq!(app.get("/api/v1/orders", Auth::Bearer(&token)).status, 200);
    assert_eq!(app.get("/api/v1/orders", Auth::Bearer(&token)).status, 200);
    // jsonwebtoken accepts exp == now; wait for the first second after it.
    while now_secs() <= exp {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = app.get("/api/v1/orders", Auth::Bearer(&token));
    assert_eq!((r.status, r.code()), (401, "UNAUTHORIZED"));
    assert!(r.text.contains("expired"), "{}", r.text);
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[test]
fn internal_routes_need_the_api_key() {
    let app = spawn_app();
    let missing = app.get("/api/v1/internal/orders", Auth::None);
    assert_eq!((missing.status, missing.code()), (401, "API_KEY_MISSING"));
    let wrong = app.get("/api/v1/internal/orders", Auth::Key("nope"));
    assert_eq!((wrong.status, wrong.code()), (401, "API_KEY_INVALID"));
    let token = app.token("alice");
    let jwt_instead = app.get("/api/v1/internal/orders", Auth::Bearer(&token));
    assert_eq!(jwt_instead.code(), "API_KEY_MISSING");
    assert_eq!(app.get("/api/v1/internal/orders", Auth::Admin).status, 200);

    let unconfigured = spawn_app_with(|c| c.auth.internal_api_key = None);
    for auth in [Auth::None, Auth::Key("anything"), Auth::Admin] {
        let r = unconfigured.get("/api/v1/internal/orders", auth);
        assert_eq!((r.status, r.code()), (401, "API_KEY_NOT_CONFIGURED"));
    }
}

#[test]
fn rs256_accepts_only_rs256() {
    let app = spawn_app_with(|c| {
        c.auth.jwt_algorithm = JwtAlgorithm::RS256;
        c.auth.jwt_public_key = Some(fixture("rs256-public.pem"));
        // A secret that is also configured must not make HS256 tokens valid.
        c.auth.jwt_secret = Some(SECRET.into());
    });
    let claims = json!({"sub": "rsa-user", "exp": now_secs() + 600});
    let good = signed_token(
        Algorithm::RS256,
        &fixture("rs256-private.pem"),
        claims.clone(),
    );
    let r = app.get("/api/v1/orders", Auth::Bearer(&good));
    assert_eq!(r.status, 200, "{}", r.text);

    let hs = hs256_token(SECRET, claims.clone());
    assert_eq!(
        app.get("/api/v1/orders", Auth::Bearer(&hs)).code(),
        "UNAUTHORIZED"
    );
    // Key confusion: HS256 signed with the public key's PEM text.
    let confused = hs256_token(&fixture("rs256-public.pem"), claims.clone());
    assert_eq!(
        app.get("/api/v1/orders", Auth::Bearer(&confused)).code(),
        "UNAUTHORIZED"
    );
    let es = signed_token(Algorithm::ES256, &fixture("es256-private.pem"), claims);
    assert_eq!(
        app.get("/api/v1/orders", Auth::Bearer(&es)).code(),
        "UNAUTHORIZED"
    );
}

#[test]
fn es256_with_issuer_and_audience() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("es256.pem");
    std::fs::write(&key_file, fixture("es256-public.pem")).unwrap();
    let app = spawn_app_with(|c| {
        c.auth.jwt_algorithm = JwtAlgorithm::ES256;
        c.auth.jwt_public_key_file = Some(key_file.clone());
        c.auth.jwt_issuer = Some("https://auth.webrana.id".into());
        c.auth.jwt_audience = Some("order-service".into());
    });
    let private = fixture("es256-private.pem");
    let exp = now_secs() + 600;
    let good = signed_token(
        Algorithm::ES256,
        &private,
        json!({"sub": "es-user", "exp": exp, "iss": "https://auth.webrana.id", "aud": "order-service"}),
    );
    assert_eq!(app.get("/api/v1/orders", Auth::Bearer(&good)).status, 200);
    for claims in [
        json!({"sub": "u", "exp": exp, "iss": "https://evil", "aud": "order-service"}),
        json!({"sub": "u", "exp": exp, "iss": "https://auth.webrana.id", "aud": "other"}),
        json!({"sub": "u", "exp": exp}),
    ] {
        let t = signed_token(Algorithm::ES256, &private, claims.clone());
        assert_eq!(
            app.get("/api/v1/orders", Auth::Bearer(&t)).code(),
            "UNAUTHORIZED",
            "{claims}"
        );
    }
}

#[test]
fn start_up_refuses_missing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::support::base_config(dir.path());
    config.auth.jwt_algorithm = JwtAlgorithm::RS256;
    config.auth.jwt_public_key_file = Some(dir.path().join("missing.pem"));
    let err = crate::support::try_start(config, None)
        .err()
        .expect("must refuse");
    assert!(err.contains("auth.jwt_public_key_file"), "{err}");
}

//! ES256 tokens of an external identity provider, verified against its JWKS URL.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{Auth, Backend, spawn_app, spawn_app_with};
use crate::on_every_backend;

on_every_backend!(
    es256_tokens_from_the_jwks_identify_the_caller,
    es256_tokens_are_refused_without_a_jwks,
);

/// A test-only P-256 key (PKCS#8 DER, made with openssl), and its public half as a JWK.
const DER: &[u8] = include_bytes!("../fixtures/es256-test-key.der");
const KID: &str = "test-es256";
const ISSUER: &str = "https://idp.test";

fn jwk() -> Value {
    json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": KID,
           "x": "oMl895gr7rcR5X8PtKbH_EUFb7C9H5rHYzSgZcBp1BM",
           "y": "7ejQ4EQfJJA1p-d6g_RecCXV28nbWE2Mm-lKvlnwg48"})
}

fn token(kid: &str, claims: Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(DER)).unwrap()
}

fn claims(company: &str, role: &str, extra: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut c = json!({"sub": "auth0|user-42", "iss": ISSUER, "aud": "cortex", "iat": now,
                       "exp": now + 600, "company_id": company, "role": role});
    if let (Value::Object(c), Value::Object(e)) = (&mut c, extra) {
        c.extend(e);
    }
    c
}

/// Serves the JWKS and counts the fetches.
async fn idp() -> (String, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { axum::Json(json!({"keys": [jwk()]})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, fetches)
}

async fn es256_tokens_from_the_jwks_identify_the_caller(b: Backend) {
    let (url, fetches) = idp().await;
    let app = spawn_app_with(b, |c| {
        c.auth.jwks_url = Some(url);
        c.auth.jwks_issuer = Some(ISSUER.into());
        c.auth.jwks_audience = Some("cortex".into());
    })
    .await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;

    let admin = Auth::Bearer(token(KID, claims(&company, "admin", json!({}))));
    let me = app.get("/v1/me", &admin).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["company_id"], company);
    assert_eq!(me.body["auth"], "jwt");
    let user_id = me.body["user_id"].as_str().unwrap().to_string();
    // The same external subject is always the same user.
    let again = app
        .get(
            "/v1/me",
            &Auth::Bearer(token(KID, claims(&company, "admin", json!({})))),
        )
        .await;
    assert_eq!(again.body["user_id"], user_id.as_str());
    // The role claim decides: an admin may create agents, a member may not.
    assert_eq!(
        app.post("/v1/agents", &admin, json!({"name": "ext"}))
            .await
            .status,
        201
    );
    let member = Auth::Bearer(token(KID, claims(&company, "member", json!({}))));
    assert_eq!(app.get("/v1/me", &member).await.status, 200);
    app.post("/v1/agents", &member, json!({"name": "no"}))
        .await
        .assert_error(403, "FORBIDDEN");
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "keys are cached");

    // Refused: wrong audience or issuer, expired, unknown company, unknown key, tampered.
    let now = chrono::Utc::now().timestamp();
    for bad in [
        token(
            KID,
            claims(&company, "admin", json!({"aud": "someone-else"})),
        ),
        token(
            KID,
            claims(&company, "admin", json!({"iss": "https://evil.test"})),
        ),
        token(KID, claims(&company, "admin", json!({"exp": now - 60}))),
        token(
            KID,
            claims(&uuid::Uuid::now_v7().to_string(), "admin", json!({})),
        ),
        token(KID, claims("not-a-uuid", "admin", json!({}))),
        token("rotated-away", claims(&company, "admin", json!({}))),
    ] {
        let r = app.get("/v1/me", &Auth::Bearer(bad)).await;
        r.assert_error(401, "UNAUTHORIZED");
    }
    let good = token(KID, claims(&company, "admin", json!({})));
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_claims = claims(&company, "admin", json!({"sub": "someone-else"}));
    let forged = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        forged_claims.to_string(),
    );
    parts[1] = &forged;
    app.get("/v1/me", &Auth::Bearer(parts.join(".")))
        .await
        .assert_error(401, "UNAUTHORIZED");
    // An unknown kid refetches the keys at most every 30 s, not once per request.
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // Portal tokens keep working beside the external ones.
    assert_eq!(app.get("/v1/me", &s).await.status, 200);
}

async fn es256_tokens_are_refused_without_a_jwks(b: Backend) {
    let app = spawn_app(b).await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    let r = app
        .get(
            "/v1/me",
            &Auth::Bearer(token(KID, claims(&company, "admin", json!({})))),
        )
        .await;
    r.assert_error(401, "UNAUTHORIZED");
}

//! API key management and tenancy.

use serde_json::json;

use crate::helpers::{Auth, Backend, spawn_app};
use crate::on_every_backend;

on_every_backend!(
    key_create_list_revoke,
    key_requests_are_validated,
    keys_need_a_portal_admin_session,
    other_companies_keys_are_invisible,
    pagination_bounds,
);

async fn key_create_list_revoke(b: Backend) {
    let app = spawn_app(b).await;
    let session = app.admin().await;
    let k = app
        .create_key(&session, json!({"name": "Production Key"}))
        .await;
    let raw = k["key"].as_str().unwrap();
    assert!(raw.starts_with("ctx_") && raw.len() >= 4 + 32, "{raw}");
    assert!(raw.starts_with(k["key_prefix"].as_str().unwrap()));
    assert_eq!(k["scopes"], json!(["*"]));
    assert!(k["expires_at"].is_null());
    assert_eq!(k["name"], "Production Key");
    let k2 = app
        .create_key(
            &session,
            json!({"name": "Second", "scopes": ["chat"], "expires_in_days": 365}),
        )
        .await;

    let list = app.get("/portal/api/keys", &session).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["success"], true);
    assert_eq!(
        list.body["pagination"],
        json!({"total": 2, "limit": 50, "offset": 0})
    );
    let keys = list.body["keys"].as_array().unwrap();
    assert_eq!(keys[0]["id"], k2["id"], "newest first");
    assert_eq!(keys[1]["id"], k["id"]);
    for key in keys {
        assert!(key.get("key").is_none(), "raw key must never be listed");
        assert!(key.get("key_hash").is_none());
        assert!(key.as_object().unwrap().contains_key("last_used_at"));
    }
    // The stored key's timestamps are what creation returned.
    assert_eq!(keys[0]["created_at"], k2["created_at"]);
    assert_eq!(keys[0]["expires_at"], k2["expires_at"]);

    let del = app
        .delete(
            &format!("/portal/api/keys/{}", k["id"].as_str().unwrap()),
            &session,
        )
        .await;
    assert_eq!(del.status, 200);
    let list = app.get("/portal/api/keys", &session).await;
    assert_eq!(list.body["pagination"]["total"], 1);
    app.delete("/portal/api/keys/not-a-uuid", &session)
        .await
        .assert_error(404, "NOT_FOUND");
}

async fn key_requests_are_validated(b: Backend) {
    let app = spawn_app(b).await;
    let session = app.admin().await;
    let cases = [
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (
            json!({"name": "ok", "expires_in_days": 0}),
            "expires_in_days",
        ),
        (
            json!({"name": "ok", "expires_in_days": 366}),
            "expires_in_days",
        ),
        (json!({"name": "ok", "scopes": []}), "scopes"),
        (json!({"name": "ok", "scopes": ["Bad Scope"]}), "scopes"),
        (
            json!({"name": "ok", "expires_in_days": "ten"}),
            "expires_in_days",
        ),
        (json!({"scopes": ["*"]}), "name"),
    ];
    for (body, field) in cases {
        let r = app.post("/portal/api/keys", &session, body.clone()).await;
        r.assert_error(422, "VALIDATION_ERROR");
        let detail = r.body["detail"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}: {}", r.body));
        assert!(
            detail.iter().any(|d| d["loc"] == json!(["body", field])
                && d["msg"].is_string()
                && d["type"].is_string()),
            "{body} → {}",
            r.body
        );
    }
    assert_eq!(
        app.get("/portal/api/keys", &session).await.body["pagination"]["total"],
        0,
        "nothing was written"
    );
}

async fn keys_need_a_portal_admin_session(b: Backend) {
    let app = spawn_app(b).await;
    let session = app.admin().await;
    let k = app.create_key(&session, json!({"name": "svc"})).await;
    let key = Auth::ApiKeyHeader(k["key"].as_str().unwrap().into());
    app.post("/portal/api/keys", &key, json!({"name": "escalate"}))
        .await
        .assert_error(403, "FORBIDDEN");
    app.get("/portal/api/keys", &Auth::None)
        .await
        .assert_error(401, "UNAUTHORIZED");

    // A member of the company may not manage keys.
    let me = app.get("/v1/me", &session).await;
    let company: uuid::Uuid = me.body["company_id"].as_str().unwrap().parse().unwrap();
    let hash = cortex::auth::password::hash("member-password").unwrap();
    use cortex::store::UserStore;
    app.state
        .store
        .create_user(
            company,
            "member@test.local",
            &hash,
            cortex::store::Role::Member,
        )
        .await
        .unwrap();
    let member = app.login_as("member@test.local", "member-password").await;
    app.post("/portal/api/keys", &member, json!({"name": "nope"}))
        .await
        .assert_error(403, "FORBIDDEN");
    assert_eq!(app.get("/v1/me", &member).await.body["role"], "member");
}

async fn other_companies_keys_are_invisible(b: Backend) {
    let app = spawn_app(b).await;
    let session = app.admin().await;
    let mine = app.create_key(&session, json!({"name": "mine"})).await;
    let (other_company, other) = app.other_company().await;
    let theirs = app.create_key(&other, json!({"name": "theirs"})).await;

    let list = app.get("/portal/api/keys", &other).await;
    assert_eq!(list.body["pagination"]["total"], 1);
    assert_eq!(list.body["keys"][0]["id"], theirs["id"]);

    // Revoking another company's key answers exactly like a missing key, and changes nothing.
    let cross = app
        .delete(
            &format!("/portal/api/keys/{}", mine["id"].as_str().unwrap()),
            &other,
        )
        .await;
    let missing = app
        .delete(
            &format!("/portal/api/keys/{}", uuid::Uuid::new_v4()),
            &other,
        )
        .await;
    assert_eq!(
        cross.assert_error(404, "NOT_FOUND"),
        missing.assert_error(404, "NOT_FOUND")
    );
    assert_eq!(cross.body, missing.body);
    let still = app
        .get(
            "/v1/me",
            &Auth::ApiKeyHeader(mine["key"].as_str().unwrap().into()),
        )
        .await;
    assert_eq!(still.status, 200);
    assert_ne!(still.body["company_id"], other_company.to_string());
    let theirs_me = app
        .get(
            "/v1/me",
            &Auth::ApiKeyHeader(theirs["key"].as_str().unwrap().into()),
        )
        .await;
    assert_eq!(theirs_me.body["company_id"], other_company.to_string());
}

async fn pagination_bounds(b: Backend) {
    let app = spawn_app(b).await;
    let session = app.admin().await;
    for i in 0..5 {
        app.create_key(&session, json!({"name": format!("k{i}")}))
            .await;
    }
    let page = app.get("/portal/api/keys?limit=2&offset=1", &session).await;
    assert_eq!(
        page.body["pagination"],
        json!({"total": 5, "limit": 2, "offset": 1})
    );
    let names: Vec<_> = page.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("k3"), json!("k2")]);
    let past = app.get("/portal/api/keys?offset=10", &session).await;
    assert_eq!(past.body["keys"], json!([]));
    assert_eq!(past.body["pagination"]["total"], 5);
    assert_eq!(
        app.get("/portal/api/keys?limit=200", &session).await.status,
        200
    );
    for bad in [
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=abc",
        "offset=-1",
        "offset=x",
    ] {
        let r = app.get(&format!("/portal/api/keys?{bad}"), &session).await;
        r.assert_error(422, "VALIDATION_ERROR");
        let field = bad.split('=').next().unwrap();
        assert_eq!(r.body["detail"][0]["loc"], json!(["query", field]), "{bad}");
    }
}

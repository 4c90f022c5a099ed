//! Two nodes on one PostgreSQL database and one Redis: what one node changes, the other sees.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, eventually, spawn_app_with};

fn redis_url() -> String {
    std::env::var("CORTEX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Two nodes on one fresh PostgreSQL database and one Redis prefix, each configured by `tweak`.
async fn two_nodes(
    tweak: impl Fn(&mut cortex::config::Config) + Copy,
) -> (crate::helpers::TestApp, crate::helpers::TestApp) {
    let prefix = format!("cortex-test-{}", uuid::Uuid::new_v4().simple());
    let (url, p) = (redis_url(), prefix.clone());
    let a = spawn_app_with(Backend::Postgres, move |c| {
        c.redis_url = Some(url);
        c.redis_prefix = p;
        tweak(c);
    })
    .await;
    let (url, db) = (redis_url(), a.database_url.clone());
    let b = spawn_app_with(Backend::Postgres, move |c| {
        c.redis_url = Some(url);
        c.redis_prefix = prefix;
        c.database_url = Some(db);
        tweak(c);
    })
    .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_update_invalidates_the_config_cache_on_every_node() {
    let (a, b) = two_nodes(|_| {}).await;
    let health = b.get("/health/detailed", &crate::helpers::Auth::None).await;
    assert_eq!(health.body["checks"]["redis"], "ok", "{}", health.body);

    // One session works on both nodes: they share the signing secret through the database.
    let s = a.admin().await;
    let id = a.create_agent(&s, json!({"name": "v1"})).await;
    assert_eq!(
        b.get(&format!("/v1/agents/{id}/config"), &s).await.body["name"],
        "v1"
    );
    assert!(
        b.state.agent_cache.get(id.parse().unwrap()).is_some(),
        "node B cached the config"
    );

    let r = a
        .request(
            Method::PATCH,
            &format!("/v1/agents/{id}"),
            &s,
            Some(json!({"name": "v2"})),
        )
        .await;
    assert_eq!(r.status, 200);
    // Node B drops its cached copy (well before the 5-minute TTL) and loads the new one.
    let agent_id: uuid::Uuid = id.parse().unwrap();
    eventually(|| async { b.state.agent_cache.get(agent_id).is_none().then_some(()) }).await;
    assert_eq!(
        b.get(&format!("/v1/agents/{id}/config"), &s).await.body["name"],
        "v2"
    );

    a.delete(&format!("/v1/agents/{id}"), &s).await;
    eventually(|| async { b.state.agent_cache.get(agent_id).is_none().then_some(()) }).await;
    b.get(&format!("/v1/agents/{id}/config"), &s)
        .await
        .assert_error(404, "NOT_FOUND");
}

/// Keys are verified from each node's memory; a revocation on one node reaches every other
/// before the revoking request answers, so the very next request fails wherever it lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_fails_on_its_next_request_on_every_node() {
    let (a, b) = two_nodes(|_| {}).await;
    let s = a.admin().await;
    for round in 0..5 {
        let created = a.create_key(&s, json!({"name": format!("k{round}")})).await;
        let key = crate::helpers::Auth::ApiKeyHeader(created["key"].as_str().unwrap().into());
        // Verified, and so remembered, on both nodes.
        assert_eq!(a.get("/v1/me", &key).await.status, 200);
        assert_eq!(b.get("/v1/me", &key).await.status, 200);
        assert_eq!(b.get("/v1/me", &key).await.status, 200);
        let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
        let hash = cortex::auth::api_key::hash(created["key"].as_str().unwrap());
        assert_eq!(
            b.state.keys.get(&hash).map(|k| k.id),
            Some(id),
            "node B cached the key"
        );
        let del = a.delete(&format!("/portal/api/keys/{id}"), &s).await;
        assert_eq!(del.status, 200, "{}", del.body);
        // No waiting: the revocation answered only once node B had forgotten the key.
        b.get("/v1/me", &key)
            .await
            .assert_error(401, "UNAUTHORIZED");
        a.get("/v1/me", &key)
            .await
            .assert_error(401, "UNAUTHORIZED");
    }
}

#[tokio::test]
async fn a_wrong_redis_url_fails_the_start() {
    let mut config = cortex::config::Config::default();
    let dir = tempfile::tempdir().unwrap();
    config.data_dir = dir.path().to_path_buf();
    config.redis_url = Some("redis://127.0.0.1:1".into());
    let err = cortex::server::init(config)
        .await
        .err()
        .expect("start must fail");
    assert!(format!("{err:#}").contains("Redis"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_companys_rate_window_is_shared_by_every_node() {
    let (a, b) = two_nodes(|c| {
        c.limits.company_requests = 4;
        c.limits.company_window_seconds = 3600;
    })
    .await;
    let s = a.admin().await;
    let remaining = |r: &crate::helpers::Resp| {
        r.headers["x-ratelimit-remaining"]
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(remaining(&a.get("/v1/me", &s).await), "3");
    assert_eq!(remaining(&b.get("/v1/me", &s).await), "2");
    assert_eq!(remaining(&a.get("/v1/me", &s).await), "1");
    assert_eq!(remaining(&b.get("/v1/me", &s).await), "0");
    // The fifth request is refused on either node.
    b.get("/v1/me", &s)
        .await
        .assert_error(429, "RATE_LIMIT_EXCEEDED");
    a.get("/v1/me", &s)
        .await
        .assert_error(429, "RATE_LIMIT_EXCEEDED");
}

/// A small source is searched from each node's memory; a document added through one node is
/// searched by the other at once (the source row it reads with every search has moved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_source_changed_on_one_node_is_searched_fresh_on_the_other() {
    let (a, b) = two_nodes(|_| {}).await;
    let s = a.admin().await;
    let r = a
        .post(
            "/v1/knowledge/sources",
            &s,
            json!({"name": "Handbook", "kind": "file"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let source = r.body["id"].as_str().unwrap().to_owned();
    let source_id: uuid::Uuid = source.parse().unwrap();
    let search = |query: &'static str| {
        let (b, s, source) = (&b, &s, &source);
        async move {
            let r = b
                .post(
                    "/v1/knowledge/search",
                    s,
                    json!({"source_ids": [source], "query": query, "top_k": 5}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["content"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let upload = |name: &'static str, text: &'static str| {
        let (a, s, source) = (&a, &s, &source);
        async move {
            let r = crate::knowledge::upload_as(a, s, source, name, text.as_bytes(), None).await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.body["status"], "completed", "{}", r.body);
        }
    };
    upload(
        "policy.md",
        "# Refunds\n\nRefunds take five business days.\n",
    )
    .await;
    assert!(search("refunds").await[0].contains("five business days"));
    assert_eq!(
        b.state.knowledge.resident_len(source_id),
        Some(1),
        "node B holds it"
    );
    upload(
        "customs.md",
        "# Customs\n\nOrder ORD-9911 is held at customs.\n",
    )
    .await;
    let hits = search("where is ORD-9911").await;
    assert!(hits[0].contains("ORD-9911"), "{hits:?}");
    assert_eq!(b.state.knowledge.resident_len(source_id), Some(2));
    upload(
        "customs.md",
        "# Customs\n\nOrder ORD-5150 cleared customs.\n",
    )
    .await;
    let hits = search("where is ORD-9911").await;
    assert!(hits.iter().all(|h| !h.contains("ORD-9911")), "{hits:?}");
    assert!(search("ORD-5150").await[0].contains("ORD-5150"));
}

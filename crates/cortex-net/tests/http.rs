//! Integration tests against an in-process recording receiver on 127.0.0.1.
//!
//! Only loopback is ever contacted: every non-loopback URL below is refused by the guard before
//! any connection, which the tests assert (quick `Blocked`, nothing recorded).

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cortex_net::{
    ActionAuth, ActionError, ActionSpec, FetchedResponse, GuardedClient, HttpMethod, NetError,
    NetPolicy, OutboundRequest, OversizePolicy, build_request, execute_action,
};
use http::Method;
use serde_json::json;

/// Webhook policy that lets loopback through by IP exception, with fast retries.
fn loopback_policy() -> NetPolicy {
    NetPolicy {
        retry_base_delay: Duration::from_millis(20),
        ..NetPolicy::webhook().with_allowed_host("127.0.0.1")
    }
}

fn client(policy: NetPolicy) -> GuardedClient {
    GuardedClient::new(policy).unwrap()
}

fn spec(method: HttpMethod, url: String) -> ActionSpec {
    ActionSpec::new("test_action", method, url)
}

// ---------------------------------------------------------------- actions

#[tokio::test]
async fn get_substitutes_path_and_puts_arguments_in_query() {
    let rx = support::start().await;
    let mut s = spec(HttpMethod::Get, rx.url("/api"));
    s.path_template = Some("/orders/{order_id}".into());
    s.parameters_schema = json!({
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "verbose": {"type": "boolean"}},
        "required": ["order_id"]
    });
    let args =
        json!({"order_id": "ORD 12/34?x", "verbose": true, "tags": ["a", "b"], "skip": null});
    let out = execute_action(&client(loopback_policy()), &s, &args).await;
    assert!(out.ok, "{out:?}");
    assert_eq!(out.status, Some(200));
    assert_eq!(out.attempts, 1);
    assert!(out.error.is_none());
    assert!(out.body.starts_with(support::ECHO_PREFIX), "{}", out.body);

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, Method::GET);
    assert_eq!(r.path, "/api/orders/ORD%2012%2F34%3Fx");
    let mut q = r.query_pairs();
    q.sort();
    assert_eq!(
        q,
        vec![
            ("tags".into(), "a".into()),
            ("tags".into(), "b".into()),
            ("verbose".into(), "true".into())
        ]
    );
    assert!(r.body.is_empty());
    assert!(r.header("content-type").is_none());
}

#[tokio::test]
async fn placeholders_in_webhook_url_and_delete_query() {
    let rx = support::start().await;
    let s = spec(HttpMethod::Delete, rx.url("/v{version}/items/{id}"));
    let out = execute_action(
        &client(loopback_policy()),
        &s,
        &json!({"version": 2, "id": "é", "reason": "dup"}),
    )
    .await;
    assert!(out.ok, "{out:?}");
    let r = &rx.requests()[0];
    assert_eq!(r.method, Method::DELETE);
    assert_eq!(r.path, "/v2/items/%C3%A9");
    assert_eq!(r.query_pairs(), vec![("reason".into(), "dup".into())]);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn post_splits_query_and_json_body() {
    let rx = support::start().await;
    let mut s = spec(HttpMethod::Post, format!("{}?static=1", rx.url("/base/")));
    s.path_template = Some("customers/{customer_id}/notes".into());
    s.query_schema =
        Some(json!({"type": "object", "properties": {"dry_run": {"type": "boolean"}}}));
    s.body_schema = Some(json!({"type": "object", "properties": {"text": {"type": "string"}}}));
    let args = json!({"customer_id": 42, "dry_run": false, "text": "hello", "priority": 3});
    let out = execute_action(&client(loopback_policy()), &s, &args).await;
    assert!(out.ok, "{out:?}");
    let r = &rx.requests()[0];
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path, "/base/customers/42/notes");
    assert_eq!(
        r.query_pairs(),
        vec![
            ("static".into(), "1".into()),
            ("dry_run".into(), "false".into())
        ]
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.json(), json!({"text": "hello", "priority": 3}));
}

#[tokio::test]
async fn put_patch_and_non_object_body() {
    let rx = support::start().await;
    let c = client(loopback_policy());
    let s = spec(HttpMethod::Put, rx.url("/things/{id}"));
    assert!(
        execute_action(&c, &s, &json!({"id": "t1", "name": "x"}))
            .await
            .ok
    );
    let mut s = spec(HttpMethod::Patch, rx.url("/lists/{id}"));
    s.body_schema = Some(json!({"type": "array", "items": {"type": "integer"}}));
    assert!(
        execute_action(&c, &s, &json!({"id": 7, "body": [1, 2, 3]}))
            .await
            .ok
    );
    // POST without arguments still sends a JSON object.
    let s = spec(HttpMethod::Post, rx.url("/empty"));
    assert!(execute_action(&c, &s, &serde_json::Value::Null).await.ok);

    let reqs = rx.requests();
    assert_eq!(reqs[0].method, Method::PUT);
    assert_eq!(reqs[0].path, "/things/t1");
    assert_eq!(reqs[0].json(), json!({"name": "x"}));
    assert_eq!(reqs[1].method, Method::PATCH);
    assert_eq!(reqs[1].path, "/lists/7");
    assert_eq!(reqs[1].json(), json!([1, 2, 3]));
    assert_eq!(reqs[2].json(), json!({}));
}

#[tokio::test]
async fn every_auth_kind_sends_its_header() {
    let rx = support::start().await;
    let c = client(loopback_policy());
    let cases = [
        (
            ActionAuth::ApiKey {
                header: "X-API-Key".into(),
                value: "k-123".into(),
            },
            "x-api-key",
            "k-123",
        ),
        (
            ActionAuth::Bearer {
                token: "tok".into(),
            },
            "authorization",
            "Bearer tok",
        ),
        (
            ActionAuth::Basic {
                user: "user".into(),
                password: "pass".into(),
            },
            "authorization",
            "Basic dXNlcjpwYXNz",
        ),
        (
            ActionAuth::OAuth2 {
                access_token: "oa".into(),
            },
            "authorization",
            "Bearer oa",
        ),
    ];
    for (auth, _, _) in &cases {
        let mut s = spec(HttpMethod::Get, rx.url("/auth"));
        s.auth = auth.clone();
        assert!(execute_action(&c, &s, &json!({})).await.ok);
    }
    let mut s = spec(HttpMethod::Get, rx.url("/auth"));
    s.auth = ActionAuth::None;
    assert!(execute_action(&c, &s, &json!({})).await.ok);

    let reqs = rx.requests();
    for (i, (_, header, value)) in cases.iter().enumerate() {
        assert_eq!(reqs[i].header(header).as_deref(), Some(*value), "case {i}");
    }
    assert!(reqs[4].header("authorization").is_none());
    assert!(reqs[4].header("x-api-key").is_none());
}

#[tokio::test]
async fn credentials_cannot_be_overridden_by_headers_or_arguments() {
    let rx = support::start().await;
    let mut s = spec(HttpMethod::Get, rx.url("/secure"));
    s.headers
        .insert("Authorization".into(), "Bearer static".into());
    s.headers.insert("X-Static".into(), "yes".into());
    s.auth = ActionAuth::Bearer {
        token: "real".into(),
    };
    let args = json!({"Authorization": "Bearer evil", "headers": {"Authorization": "Bearer evil"}});
    let out = execute_action(&client(loopback_policy()), &s, &args).await;
    assert!(out.ok, "{out:?}");
    let r = &rx.requests()[0];
    let auths: Vec<_> = r.headers.get_all("authorization").iter().collect();
    assert_eq!(auths, vec!["Bearer real"]);
    assert_eq!(r.header("x-static").as_deref(), Some("yes"));
    // The arguments went where arguments go: the query string.
    assert!(r.query.as_deref().unwrap().contains("evil"));
}

#[tokio::test]
async fn schema_violations_send_nothing() {
    let rx = support::start().await;
    let mut s = spec(HttpMethod::Post, rx.url("/orders/{order_id}"));
    s.parameters_schema = json!({
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "pattern": "^ORD-[0-9]+$"},
            "qty": {"type": "integer", "minimum": 1}
        },
        "required": ["order_id", "qty"],
        "additionalProperties": false
    });
    let bad = json!({"order_id": "nope", "qty": 0, "extra": true});
    match build_request(&s, &bad) {
        Err(ActionError::InvalidArguments { action, errors }) => {
            assert_eq!(action, "test_action");
            assert_eq!(errors.len(), 3, "{errors:?}");
            let all = errors.join("\n");
            assert!(all.contains("/order_id"), "{all}");
            assert!(all.contains("/qty"), "{all}");
            assert!(all.contains("extra"), "{all}");
        }
        other => panic!("expected InvalidArguments, got {other:?}"),
    }
    let out = execute_action(&client(loopback_policy()), &s, &bad).await;
    assert!(!out.ok);
    assert_eq!(out.attempts, 0);
    assert_eq!(out.status, None);
    assert!(out.error.as_deref().unwrap().contains("invalid arguments"));
    let missing = execute_action(&client(loopback_policy()), &s, &json!({"qty": 2})).await;
    assert!(!missing.ok);
    assert!(missing.error.as_deref().unwrap().contains("order_id"));
    let not_object = execute_action(&client(loopback_policy()), &s, &json!([1])).await;
    assert!(!not_object.ok);
    assert_eq!(rx.count(), 0, "no request may be sent");

    // The valid call goes through.
    let ok = execute_action(
        &client(loopback_policy()),
        &s,
        &json!({"order_id": "ORD-1", "qty": 1}),
    )
    .await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!(rx.count(), 1);
}

#[tokio::test]
async fn bad_path_parameters_send_nothing() {
    let rx = support::start().await;
    let c = client(loopback_policy());
    let s = spec(HttpMethod::Get, rx.url("/files/{name}"));
    for (args, expect) in [
        (json!({}), "missing path parameter"),
        (json!({"name": null}), "missing path parameter"),
        (json!({"name": ".."}), "not a usable path segment"),
        (json!({"name": ""}), "not a usable path segment"),
        (json!({"name": {"a": 1}}), "must be a string"),
    ] {
        let out = execute_action(&c, &s, &args).await;
        assert!(!out.ok);
        assert!(
            out.error.as_deref().unwrap().contains(expect),
            "{args}: {:?}",
            out.error
        );
    }
    assert!(matches!(
        build_request(&s, &json!({})),
        Err(ActionError::MissingPathParameter(n)) if n == "name"
    ));
    // A value with slashes stays one segment.
    let out = execute_action(&c, &s, &json!({"name": "../../etc/passwd"})).await;
    assert!(out.ok);
    assert_eq!(rx.requests()[0].path, "/files/..%2F..%2Fetc%2Fpasswd");
    assert_eq!(rx.count(), 1);
}

#[tokio::test]
async fn http_errors_are_outcomes_with_body() {
    let rx = support::start().await;
    let c = client(loopback_policy());
    let out = execute_action(
        &c,
        &spec(HttpMethod::Get, rx.url("/status/404")),
        &json!({}),
    )
    .await;
    assert!(!out.ok);
    assert_eq!(out.status, Some(404));
    assert_eq!(out.body, "status 404");
    assert_eq!(out.error.as_deref(), Some("HTTP 404 Not Found"));
    assert_eq!(out.attempts, 1);
    assert!(
        out.to_tool_result()
            .starts_with("Error: HTTP 404 Not Found\nstatus 404")
    );
}

// ---------------------------------------------------------------- retries and timeouts

#[tokio::test]
async fn retries_5xx_then_succeeds() {
    let rx = support::start().await;
    let c = client(loopback_policy());
    let out = execute_action(
        &c,
        &spec(HttpMethod::Post, rx.url("/flaky/2")),
        &json!({"a": 1}),
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(out.attempts, 3);
    assert_eq!(out.body, "recovered");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.json() == json!({"a": 1})));
}

#[tokio::test]
async fn retries_are_bounded_and_back_off() {
    let rx = support::start().await;
    let policy = NetPolicy {
        retry_base_delay: Duration::from_millis(100),
        ..loopback_policy()
    };
    let c = client(policy);
    let started = Instant::now();
    let err = c.get(&rx.url("/flaky/10")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(
        err,
        NetError::Status {
            status: 500,
            body: "temporary failure".into()
        }
    );
    assert_eq!(rx.count(), 3, "one attempt and two retries");
    assert!(
        elapsed >= Duration::from_millis(300),
        "100 + 200 ms of backoff, got {elapsed:?}"
    );

    let report = c
        .fetch(OutboundRequest::get(&rx.url("/flaky/10")).unwrap())
        .await;
    assert_eq!(report.attempts, 3);
    assert_eq!(report.result.unwrap().status, 500);
}

#[tokio::test]
async fn retries_429() {
    let rx = support::start().await;
    let out = execute_action(
        &client(loopback_policy()),
        &spec(HttpMethod::Get, rx.url("/throttled/1")),
        &json!({}),
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(out.attempts, 2);
}

#[tokio::test]
async fn never_retries_4xx() {
    let rx = support::start().await;
    let c = client(loopback_policy());
    for code in [400, 401, 404, 422] {
        let out = execute_action(
            &c,
            &spec(HttpMethod::Post, rx.url(&format!("/status/{code}"))),
            &json!({}),
        )
        .await;
        assert_eq!(out.status, Some(code));
        assert_eq!(out.attempts, 1);
    }
    assert_eq!(rx.count(), 4);
    let err = c.get(&rx.url("/status/400")).await.unwrap_err();
    assert!(matches!(err, NetError::Status { status: 400, .. }));
    assert_eq!(rx.count(), 5);
}

#[tokio::test]
async fn retries_dropped_connection_then_succeeds() {
    let (addr, accepted) = support::start_dropping(1).await;
    let c = client(loopback_policy());
    let out = execute_action(
        &c,
        &spec(HttpMethod::Post, format!("http://{addr}/hook")),
        &json!({"x": 1}),
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(out.body, "ok");
    assert_eq!(out.attempts, 2);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connection_errors_exhaust_retries() {
    let (addr, accepted) = support::start_dropping(usize::MAX).await;
    let c = client(loopback_policy());
    let report = c
        .fetch(OutboundRequest::get(&format!("http://{addr}/")).unwrap())
        .await;
    assert_eq!(report.attempts, 3);
    assert!(
        matches!(report.result, Err(NetError::Connect(_))),
        "{:?}",
        report.result
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 3);

    // Connection refused: a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = execute_action(
        &c,
        &spec(HttpMethod::Get, format!("http://127.0.0.1:{port}/")),
        &json!({}),
    )
    .await;
    assert!(!out.ok);
    assert_eq!(out.status, None);
    assert_eq!(out.attempts, 3);
    assert!(
        out.error
            .as_deref()
            .unwrap()
            .starts_with("connection failed"),
        "{out:?}"
    );
}

#[tokio::test]
async fn timeout_is_enforced_and_not_retried() {
    let rx = support::start().await;
    let policy = NetPolicy {
        timeout: Duration::from_millis(300),
        ..loopback_policy()
    };
    let c = client(policy);
    let started = Instant::now();
    let out = execute_action(&c, &spec(HttpMethod::Get, rx.url("/slow/3000")), &json!({})).await;
    assert!(started.elapsed() < Duration::from_millis(2000));
    assert!(!out.ok);
    assert_eq!(out.status, None);
    assert_eq!(out.attempts, 1);
    assert_eq!(out.error.as_deref(), Some("request timed out after 300 ms"));
    assert!(out.latency_ms >= 300);
    // A quick answer within the timeout is fine.
    assert!(
        execute_action(&c, &spec(HttpMethod::Get, rx.url("/slow/10")), &json!({}))
            .await
            .ok
    );
}

#[test]
fn default_policy_is_the_webhook_contract() {
    let p = NetPolicy::default();
    assert_eq!(p.timeout, Duration::from_secs(15));
    assert_eq!(p.max_response_bytes, 50 * 1024);
    assert_eq!(p.max_retries, 2);
    assert!(!p.allow_private);
    assert!(p.allowed_hosts.is_empty());
    assert_eq!(p.oversize, OversizePolicy::Truncate);
    let u = NetPolicy::url_fetch();
    assert!(u.max_response_bytes >= 1024 * 1024);
    assert_eq!(u.oversize, OversizePolicy::Error);
}

// ---------------------------------------------------------------- response cap

#[tokio::test]
async fn response_is_capped() {
    let rx = support::start().await;
    let c = client(loopback_policy());
    for path in ["/big/200000", "/stream/200000"] {
        let out = execute_action(&c, &spec(HttpMethod::Get, rx.url(path)), &json!({})).await;
        assert!(out.ok, "{path}");
        assert!(out.truncated, "{path}");
        assert_eq!(out.body.len(), 50 * 1024, "{path}");
    }
    // Exactly at the cap is not truncated.
    let resp = c.get(&rx.url("/big/51200")).await.unwrap();
    assert_eq!(resp.body.len(), 51200);
    assert!(!resp.truncated);
    // A body that never ends is cut at the cap, quickly.
    let started = Instant::now();
    let resp: FetchedResponse = c.get(&rx.url("/endless")).await.unwrap();
    assert!(resp.truncated);
    assert_eq!(resp.body.len(), 50 * 1024);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn oversize_can_be_an_error() {
    let rx = support::start().await;
    let policy = NetPolicy {
        max_response_bytes: 10_000,
        oversize: OversizePolicy::Error,
        ..loopback_policy()
    };
    let c = client(policy);
    for path in ["/big/20000", "/stream/20000", "/endless"] {
        let err = c.get(&rx.url(path)).await.unwrap_err();
        assert_eq!(err, NetError::TooLarge { limit: 10_000 }, "{path}");
    }
    assert_eq!(
        c.get(&rx.url("/big/10000")).await.unwrap().body.len(),
        10_000
    );
}

// ---------------------------------------------------------------- redirects

#[tokio::test]
async fn redirects_are_followed_within_the_limit() {
    let rx = support::start().await;
    let c = client(loopback_policy());
    let resp = c.get(&rx.url("/hops/3")).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.final_url.path(), "/hops/0");
    assert_eq!(rx.count(), 4);
    let err = c.get(&rx.url("/hops/4")).await.unwrap_err();
    assert_eq!(err, NetError::TooManyRedirects { limit: 3 });
    assert_eq!(rx.count(), 8, "stops after the third hop");

    let no_redirects = client(NetPolicy {
        max_redirects: 0,
        ..loopback_policy()
    });
    let err = no_redirects.get(&rx.url("/hops/1")).await.unwrap_err();
    assert_eq!(err, NetError::TooManyRedirects { limit: 0 });
    // Policies asking for more hops are capped at 3.
    let greedy = client(NetPolicy {
        max_redirects: 10,
        ..loopback_policy()
    });
    assert!(matches!(
        greedy.get(&rx.url("/hops/4")).await,
        Err(NetError::TooManyRedirects { limit: 3 })
    ));
}

#[tokio::test]
async fn redirect_method_semantics() {
    let rx = support::start().await;
    let c = client(loopback_policy());
    let to = "/echo/after";
    let s307 = spec(HttpMethod::Post, rx.url(&format!("/redirect/307?to={to}")));
    let out = execute_action(&c, &s307, &json!({"k": "v"})).await;
    assert!(out.ok, "{out:?}");
    let s303 = spec(HttpMethod::Post, rx.url(&format!("/redirect/303?to={to}")));
    let out = execute_action(&c, &s303, &json!({"k": "v"})).await;
    assert!(out.ok, "{out:?}");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(reqs[1].method, Method::POST);
    assert_eq!(reqs[1].path, "/echo/after");
    assert_eq!(reqs[1].json(), json!({"k": "v"}));
    assert_eq!(reqs[3].method, Method::GET);
    assert!(reqs[3].body.is_empty());
    assert!(reqs[3].header("content-type").is_none());
}

#[tokio::test]
async fn redirect_to_a_blocked_address_is_refused() {
    let rx = support::start().await;
    let c = client(loopback_policy());
    for target in [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://[::1]:9/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "file:///etc/passwd",
    ] {
        let url = format!(
            "{}?to={}",
            rx.url("/redirect/302"),
            url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
        );
        let started = Instant::now();
        let err = c.get(&url).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "{target}");
        match (&err, target.starts_with("file:")) {
            (NetError::InvalidUrl(_), true) | (NetError::Blocked { .. }, false) => {}
            _ => panic!("{target}: unexpected {err:?}"),
        }
    }
    assert_eq!(rx.count(), 5, "only the first hops reached the receiver");
}

#[tokio::test]
async fn credentials_are_dropped_when_a_redirect_changes_origin() {
    let rx = support::start().await;
    let policy = loopback_policy().with_allowed_host("localhost");
    let c = client(policy);
    let mut s = spec(
        HttpMethod::Get,
        rx.url(&format!(
            "/redirect/302?to=http://localhost:{}/other",
            rx.port()
        )),
    );
    s.auth = ActionAuth::Bearer { token: "t".into() };
    s.headers.insert("X-Plain".into(), "p".into());
    let out = execute_action(&c, &s, &json!({})).await;
    assert!(out.ok, "{out:?}");

    let mut same = spec(HttpMethod::Get, rx.url("/redirect/302?to=/same"));
    same.auth = ActionAuth::ApiKey {
        header: "X-Key".into(),
        value: "secret".into(),
    };
    assert!(execute_action(&c, &same, &json!({})).await.ok);

    let mut cross_key = spec(
        HttpMethod::Get,
        rx.url(&format!(
            "/redirect/302?to=http://localhost:{}/k",
            rx.port()
        )),
    );
    cross_key.auth = same.auth.clone();
    assert!(execute_action(&c, &cross_key, &json!({})).await.ok);

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 6);
    assert_eq!(reqs[0].header("authorization").as_deref(), Some("Bearer t"));
    assert_eq!(reqs[1].path, "/other");
    assert!(reqs[1].header("authorization").is_none());
    assert_eq!(reqs[1].header("x-plain").as_deref(), Some("p"));
    assert_eq!(reqs[3].path, "/same");
    assert_eq!(reqs[3].header("x-key").as_deref(), Some("secret"));
    assert_eq!(reqs[5].path, "/k");
    assert!(reqs[5].header("x-key").is_none());
}

// ---------------------------------------------------------------- guard (no allowance)

/// Every URL is refused with `Blocked`, quickly, and the receiver sees nothing.
#[tokio::test]
async fn guard_refuses_non_public_destinations_before_connecting() {
    let rx = support::start().await;
    let port = rx.port();
    let strict = client(NetPolicy::webhook());
    let urls = [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://127.1:{port}/x"),
        format!("http://localhost:{port}/x"),
        format!("http://[::1]:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        format!("http://[::ffff:7f00:1]:{port}/x"),
        format!("http://0x7f000001:{port}/x"),
        format!("http://2130706433:{port}/x"),
        format!("http://0177.0.0.1:{port}/x"),
        format!("http://0.0.0.0:{port}/x"),
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://[fe80::1]/".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://172.16.5.4/".to_string(),
        "http://192.168.1.1/".to_string(),
        "http://100.64.0.1/".to_string(),
        "http://[fd00::1]/".to_string(),
        "http://224.0.0.1/".to_string(),
        "http://255.255.255.255/".to_string(),
        "http://192.0.2.1/".to_string(),
        "http://metadata.google.internal/computeMetadata/v1/".to_string(),
    ];
    for url in &urls {
        let started = Instant::now();
        let err = strict.get(url).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, NetError::Blocked { .. }),
            "{url}: expected Blocked, got {err:?}"
        );
        assert!(took < Duration::from_secs(1), "{url} took {took:?}");
        assert!(err.to_string().contains("blocked by the network guard"));
    }
    // Through the action path too, with no retry of a refusal.
    for url in &urls {
        let out = execute_action(&strict, &spec(HttpMethod::Post, url.clone()), &json!({})).await;
        assert!(!out.ok);
        assert_eq!(out.attempts, 1, "{url}");
        assert!(
            out.error.as_deref().unwrap().contains("blocked"),
            "{url}: {out:?}"
        );
    }
    assert_eq!(rx.count(), 0, "the receiver must record nothing");
}

#[tokio::test]
async fn hostname_resolving_to_loopback_is_refused_by_the_resolver() {
    let rx = support::start().await;
    let strict = client(NetPolicy::webhook());
    match strict
        .get(&format!("http://localhost:{}/", rx.port()))
        .await
    {
        Err(NetError::Blocked { host, reason }) => {
            assert_eq!(host, "localhost");
            assert!(reason.contains("loopback"), "{reason}");
        }
        other => panic!("expected Blocked, got {other:?}"),
    }
    assert_eq!(rx.count(), 0);
}

#[tokio::test]
async fn exceptions_let_development_targets_through() {
    let rx = support::start().await;
    // By host name: resolution through the guarded resolver reaches the receiver.
    let by_name = client(NetPolicy::webhook().with_allowed_host("localhost"));
    assert_eq!(
        by_name
            .get(&format!("http://localhost:{}/n", rx.port()))
            .await
            .unwrap()
            .status,
        200
    );
    // The name exception does not open the address to other names.
    assert!(matches!(
        by_name.get(&rx.url("/ip")).await,
        Err(NetError::Blocked { .. })
    ));
    // By address: any name resolving to it passes.
    let by_ip = client(NetPolicy::webhook().with_allowed_host("127.0.0.0/8"));
    assert!(
        by_ip
            .get(&format!("http://localhost:{}/a", rx.port()))
            .await
            .is_ok()
    );
    assert!(by_ip.get(&rx.url("/b")).await.is_ok());
    // Everything, for development.
    let open = client(NetPolicy::webhook().with_allow_private(true));
    assert!(
        open.get(&format!("http://localhost:{}/c", rx.port()))
            .await
            .is_ok()
    );
    assert_eq!(rx.count(), 4);
}

#[tokio::test]
async fn only_http_and_https() {
    let c = client(NetPolicy::webhook().with_allow_private(true));
    for url in ["ftp://example.com/x", "file:///etc/passwd", "gopher://x/"] {
        assert!(
            matches!(c.get(url).await, Err(NetError::InvalidUrl(_))),
            "{url}"
        );
    }
    assert!(matches!(
        c.get("not a url").await,
        Err(NetError::InvalidUrl(_))
    ));
    let s = spec(HttpMethod::Get, "ftp://example.com/{x}".into());
    assert!(matches!(
        build_request(&s, &json!({"x": "1"})),
        Err(ActionError::InvalidUrl(_))
    ));
    let s = spec(HttpMethod::Get, "http://{host}.example.com/".into());
    assert!(matches!(
        build_request(&s, &json!({"host": "evil"})),
        Err(ActionError::InvalidUrl(_))
    ));
    assert!(matches!(
        GuardedClient::new(NetPolicy::webhook().with_allowed_host("10.0.0.0/33")),
        Err(NetError::InvalidPolicy(_))
    ));
}

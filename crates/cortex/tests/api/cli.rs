//! The binary itself: zero-configuration start, SIGTERM, invalid configuration, admin commands.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_cortex");

fn cortex(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("CORTEX_") || k == "DATABASE_URL" || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

#[tokio::test]
async fn zero_configuration_start_prints_credentials_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = cortex(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (otx, orx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = otx.send(line);
        }
    });
    let (ptx, prx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["message"] == "cortex listening" {
                let _ = ptx.send(v["addr"].as_str().unwrap_or_default().to_string());
            }
        }
    });
    let addr = prx
        .recv_timeout(Duration::from_secs(30))
        .expect("server did not report its address");
    let password = loop {
        let line = orx
            .recv_timeout(Duration::from_secs(10))
            .expect("a generated password is printed on the first start");
        if let Some(p) = line.trim().strip_prefix("password:") {
            break p.trim().to_string();
        }
    };
    assert!(
        dir.path().join("data/cortex.db").exists(),
        "SQLite file is created under ./data"
    );
    let client = reqwest::Client::new();
    let health: Value = client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let login = client
        .post(format!("http://{addr}/portal/api/login"))
        .json(&json!({"email": "admin@cortex.local", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200, "the printed credentials log in");

    // Stop with SIGTERM: exit status 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut waited = 0;
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(waited < 150, "server did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    };
    assert!(code.success(), "{code:?}");
}

#[test]
fn bootstrap_password_is_generated_and_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    // `migrate` does not bootstrap; the first `serve` does. Run serve briefly twice.
    let run = || {
        let child = cortex(dir.path())
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("CORTEX_BOOTSTRAP_EMAIL", "owner@example.org")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let first = run();
    assert!(first.contains("owner@example.org"), "{first}");
    let pw_line = first
        .lines()
        .find(|l| l.trim().starts_with("password:"))
        .expect("password printed");
    assert!(pw_line.trim().len() > "password: ".len() + 15);
    let second = run();
    assert!(!second.contains("password:"), "printed again: {second}");
}

#[test]
fn invalid_configuration_exits_non_zero_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("CORTEX_BIND", "not-an-address", "bind"),
        ("CORTEX_AUTH__JWT_SECRET", "short", "jwt_secret"),
        (
            "CORTEX_CORS__ALLOWED_ORIGINS",
            "[\"ftp://x\"]",
            "cors origin",
        ),
        ("DATABASE_URL", "mysql://x", "database_url"),
        ("CORTEX_NO_SUCH_SETTING", "1", "no_such_setting"),
    ];
    for (key, value, mention) in cases {
        let out = cortex(dir.path())
            .arg("migrate")
            .env(key, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{key}={value}");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            err.contains("invalid configuration") && err.contains(mention),
            "{key}={value}: {err}"
        );
    }
    let out = cortex(dir.path())
        .args(["--config", "/nonexistent.toml", "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_file_then_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cortex.toml");
    std::fs::write(&file, "data_dir = \"from-file\"\n[log]\nlevel = \"warn\"\n").unwrap();
    let out = cortex(dir.path())
        .args(["--config", file.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("from-file/cortex.db").exists());
    let out = cortex(dir.path())
        .args(["--config", file.to_str().unwrap(), "migrate"])
        .env("CORTEX_DATA_DIR", "from-env")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(dir.path().join("from-env/cortex.db").exists());
}

#[tokio::test]
async fn admin_commands_create_company_user_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = cortex(dir.path())
            .args(args)
            .env("CORTEX_NEW_USER_PASSWORD", "a-long-password")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let company = run(&["admin", "create-company", "--name", "Acme", "--plan", "pro"]);
    assert!(uuid::Uuid::parse_str(&company).is_ok());
    let user = run(&[
        "admin",
        "create-user",
        "--company-id",
        &company,
        "--email",
        "ops@acme.test",
        "--role",
        "admin",
    ]);
    assert!(uuid::Uuid::parse_str(&user).is_ok());
    let key = run(&[
        "admin",
        "create-key",
        "--company-id",
        &company,
        "--name",
        "cli",
        "--scopes",
        "chat,agents:*",
    ]);
    assert!(key.starts_with("ctx_"));
    let out = cortex(dir.path())
        .args([
            "admin",
            "create-key",
            "--company-id",
            &uuid::Uuid::new_v4().to_string(),
            "--name",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a key for a missing company");

    // The key and the user work against a server on the same data directory.
    let mut config = cortex::config::Config::default();
    config.data_dir = dir.path().join("data");
    config.auth.bootstrap_password = Some("unused-because-not-empty".to_string().into());
    let state = cortex::server::init(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(cortex::server::serve(state, listener, async move {
        s.cancelled().await
    }));
    let client = reqwest::Client::new();
    let me: Value = client
        .get(format!("http://{addr}/v1/me"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["company_id"], company);
    assert_eq!(me["scopes"], json!(["chat", "agents:*"]));
    let login = client
        .post(format!("http://{addr}/portal/api/login"))
        .json(&json!({"email": "ops@acme.test", "password": "a-long-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    // No bootstrap admin was added to a database that already had a company.
    let boot = client
        .post(format!("http://{addr}/portal/api/login"))
        .json(&json!({"email": "admin@cortex.local", "password": "unused-because-not-empty"}))
        .send()
        .await
        .unwrap();
    assert_eq!(boot.status(), 401);
    stop.cancel();
}

/// With `log.otlp_endpoint`, the real binary exports a trace per request to an OTLP/HTTP
/// collector (protobuf): the request's span carries its request id, and under it a span per
/// pipeline stage, per model call and per tool call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_with_a_tool_call_exports_its_spans_over_otlp() {
    use std::sync::{Arc, Mutex};

    use cortex_fakellm::{FakeLlm, Step, ToolCall};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;

    // The collector: records every export it is sent.
    let exports: Arc<Mutex<Vec<bytes::Bytes>>> = Arc::default();
    let collector = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(
                |axum::extract::State(seen): axum::extract::State<
                    Arc<Mutex<Vec<bytes::Bytes>>>,
                >,
                 body: bytes::Bytes| async move {
                    seen.lock().unwrap().push(body);
                    axum::http::StatusCode::OK
                },
            ),
        )
        .with_state(exports.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await.unwrap() });

    let webhook = crate::helpers::Receiver::start().await;
    let fake = FakeLlm::start().await;
    fake.push(Step::tool_calls(vec![ToolCall::new(
        "get_order_status",
        json!({"order_id": "A-17"}),
    )]));
    fake.push(Step::text("Order A-17 has shipped."));

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = crate::runs::write_node_config(dir.path(), port, None, &fake, "");
    let mut child = cortex(dir.path())
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env("CORTEX_LOG__OTLP_ENDPOINT", &collector_url)
        .env("CORTEX_LOG__SERVICE_NAME", "cortex-under-test")
        .env("CORTEX_LOG__LEVEL", "info")
        .env("CORTEX_NETWORK__ALLOW_PRIVATE", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    crate::runs::wait_healthy(&client, &base).await;
    let node = crate::helpers::NodeClient::sign_in(client.clone(), base.clone()).await;
    let action = node
        .post(
            "/v1/actions",
            json!({"name": "get_order_status", "description": "Look up an order", "method": "GET",
                   "webhook_url": format!("{}/api", webhook.base), "path_template": "/orders/{order_id}",
                   "parameters_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}),
        )
        .await;
    let agent = node
        .post(
            "/v1/agents",
            json!({"name": "Orders", "action_ids": [action["id"]], "settings": {"cache_enabled": false}}),
        )
        .await;
    let me = node.get("/v1/me").await;
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&node.token)
            .header("x-request-id", "trace-me-0001")
            .json(&body)
    };
    let chat = post(
        "/v1/chat",
        json!({"company_id": me["company_id"], "agent_id": agent["id"], "conversation_id": uuid::Uuid::new_v4(),
               "customer_id": "c-1", "message": "Where is order A-17?"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(chat.status(), 200);
    let reply: Value = chat.json().await.unwrap();
    assert_eq!(
        reply["actions_executed"],
        json!(["get_order_status"]),
        "{reply}"
    );

    // SIGTERM: the exporter sends what it holds before the process exits.
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    for _ in 0..150 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(child.try_wait().unwrap().is_some(), "the server stopped");

    struct Seen {
        name: String,
        trace: Vec<u8>,
        attrs: std::collections::HashMap<String, String>,
    }
    let mut spans = Vec::new();
    let mut services = std::collections::BTreeSet::new();
    for body in exports.lock().unwrap().iter() {
        let export = ExportTraceServiceRequest::decode(body.as_ref()).unwrap();
        for rs in export.resource_spans {
            for kv in rs.resource.iter().flat_map(|r| r.attributes.iter()) {
                if kv.key == "service.name"
                    && let Some(Any::StringValue(s)) =
                        kv.value.as_ref().and_then(|v| v.value.clone())
                {
                    services.insert(s);
                }
            }
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                let attrs = span
                    .attributes
                    .iter()
                    .map(|kv| {
                        let v = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                            Some(Any::StringValue(s)) => s,
                            Some(Any::BoolValue(b)) => b.to_string(),
                            Some(Any::IntValue(i)) => i.to_string(),
                            other => format!("{other:?}"),
                        };
                        (kv.key.clone(), v)
                    })
                    .collect();
                spans.push(Seen {
                    name: span.name,
                    trace: span.trace_id,
                    attrs,
                });
            }
        }
    }
    assert_eq!(services, ["cortex-under-test".to_string()].into());
    let chat_request = spans
        .iter()
        .find(|s| {
            s.name == "request" && s.attrs.get("path").map(String::as_str) == Some("/v1/chat")
        })
        .expect("a span for the chat request");
    assert_eq!(chat_request.attrs["request_id"], "trace-me-0001");
    let in_chat = |name: &str| {
        spans
            .iter()
            .filter(|s| s.name == name && s.trace == chat_request.trace)
            .collect::<Vec<_>>()
    };
    for stage in [
        "stage.01_config_load",
        "stage.02_memory_recall",
        "stage.03_context_engine",
        "stage.04_token_optimizer",
        "stage.06_model_router",
        "stage.07_agent_compiler",
        "stage.08_post_actions",
    ] {
        assert_eq!(in_chat(stage).len(), 1, "{stage}");
    }
    let calls = in_chat("llm.call");
    assert_eq!(calls.len(), 2, "one model call per round");
    assert!(calls.iter().all(|c| c.attrs["model"].starts_with("m-")));
    let tools = in_chat("tool.call");
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].attrs["tool"], "get_order_status");
    assert_eq!(tools[0].attrs["ok"], "true");
}

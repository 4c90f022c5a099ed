//! Agent runs end to end: start, streams (late viewers, resume, many viewers), stop, timeout,
//! step limit, long threads, limits and credits, threads and projects, tenant isolation — on
//! SQLite and on PostgreSQL; and across two nodes on PostgreSQL + Redis.

use std::time::{Duration, Instant};

use cortex::store::RunStore;
use cortex_fakellm::{FakeLlm, Step};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Auth, Backend, TestApp, fake_llm, spawn_app_with};
use crate::on_every_backend;

on_every_backend!(
    start_streams_to_completion,
    a_late_viewer_gets_everything_and_resume_gives_the_rest,
    fifty_viewers_receive_identical_sequences,
    stop_during_a_streaming_call,
    stop_during_a_slow_tool_call,
    a_run_past_its_time_fails_with_timeout,
    the_step_limit_forces_a_final_answer,
    a_two_thousand_message_thread_runs,
    start_errors_follow_the_contract,
    twenty_simultaneous_starts_against_a_limit_of_three_admit_three,
    credits_are_debited_and_exhausted_credits_refuse_work,
    billing_reports_plan_limits_and_usage,
    threads_and_projects_can_be_read_renamed_and_deleted,
    another_company_sees_nothing,
    the_zero_configuration_responder_completes_a_run,
    shutdown_refuses_new_starts_and_stops_running_runs,
    node_health_and_system_metrics_report_runs,
    events_of_runs_past_the_retention_are_pruned,
    a_finished_run_feeds_the_users_memory,
);

pub struct Env {
    pub app: TestApp,
    pub fake: FakeLlm,
    pub s: Auth,
    pub company: Uuid,
}

pub async fn env_with(b: Backend, tweak: impl FnOnce(&mut cortex::config::Config)) -> Env {
    let fake = FakeLlm::start().await;
    let url = fake.base_url().to_string();
    let app = spawn_app_with(b, |c| {
        c.llm = fake_llm(&url, 0, 10.0);
        c.network.allow_private = true;
        c.limits.sse_heartbeat_seconds = 0.5;
        c.limits.company_requests = 0;
        tweak(c);
    })
    .await;
    let s = app.admin().await;
    let company = app.company_id(&s).await.parse().unwrap();
    Env {
        app,
        fake,
        s,
        company,
    }
}

async fn env(b: Backend) -> Env {
    env_with(b, |_| {}).await
}

/// A multipart body of text fields and files.
pub fn multipart(fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = format!("b{}", Uuid::new_v4().simple());
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    for (name, bytes) in files {
        body.extend_from_slice(
            format!("--{boundary}\r\ncontent-disposition: form-data; name=\"files\"; filename=\"{name}\"\r\ncontent-type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub fn bearer(auth: &Auth) -> String {
    match auth {
        Auth::Bearer(t) | Auth::ApiKeyHeader(t) => t.clone(),
        Auth::None => String::new(),
    }
}

impl Env {
    pub async fn start(&self, fields: &[(&str, &str)]) -> crate::helpers::Resp {
        start_on(&self.app, &self.s, fields).await
    }

    /// Start and expect 200; returns (run id, thread id).
    pub async fn start_ok(&self, fields: &[(&str, &str)]) -> (String, String) {
        let r = self.start(fields).await;
        assert_eq!(r.status, 200, "start: {}", r.body);
        (
            r.body["agent_run_id"].as_str().unwrap().to_string(),
            r.body["thread_id"].as_str().unwrap().to_string(),
        )
    }

    pub async fn run(&self, id: &str) -> Value {
        let r = self.app.get(&format!("/v1/agent-run/{id}"), &self.s).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// Wait until the run is no longer running; returns it.
    pub async fn finished(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let run = self.run(id).await;
            if run["status"] != "running" {
                return run;
            }
            assert!(Instant::now() < deadline, "run still running: {run}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub async fn start_on(app: &TestApp, s: &Auth, fields: &[(&str, &str)]) -> crate::helpers::Resp {
    start_files_on(app, s, fields, &[]).await
}

/// `POST /v1/agent/start` with fields and files.
pub async fn start_files_on(
    app: &TestApp,
    s: &Auth,
    fields: &[(&str, &str)],
    files: &[(&str, &[u8])],
) -> crate::helpers::Resp {
    let (ct, body) = multipart(fields, files);
    let resp = app
        .client
        .post(format!("{}/v1/agent/start", app.base))
        .bearer_auth(bearer(s))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    crate::helpers::Resp {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// The `type` of each message of a thread, oldest first, and the whole answer.
pub async fn message_kinds(e: &Env, thread: &str) -> (Vec<String>, Value) {
    let r = e
        .app
        .get(&format!("/v1/threads/{thread}/messages"), &e.s)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let kinds = r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_str().unwrap().to_string())
        .collect();
    (kinds, r.body)
}

/// One SSE event: (id, name, data).
pub type Sse = (u64, String, Value);

pub fn parse_events(text: &str) -> Vec<Sse> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut name, mut data) = (None, None, None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.trim().parse::<u64>().ok();
            } else if let Some(v) = line.strip_prefix("event: ") {
                name = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = serde_json::from_str(v).ok();
            }
        }
        if let (Some(id), Some(name), Some(data)) = (id, name, data) {
            out.push((id, name, data));
        }
    }
    out
}

/// Read a run's stream to its end; `last` is sent as `Last-Event-ID`.
pub async fn read_stream(app: &TestApp, s: &Auth, run: &str, last: Option<u64>) -> Vec<Sse> {
    let mut rb = app
        .client
        .get(format!("{}/v1/agent-run/{run}/stream", app.base))
        .bearer_auth(bearer(s))
        .timeout(Duration::from_secs(60));
    if let Some(l) = last {
        rb = rb.header("last-event-id", l.to_string());
    }
    let resp = rb.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    parse_events(&resp.text().await.unwrap())
}

/// Ids are 1..n (or after..n) without a gap and the stream ends with a final status.
pub fn assert_complete(events: &[Sse], after: u64, status: &str) {
    for (i, (id, _, _)) in events.iter().enumerate() {
        assert_eq!(
            *id,
            after + 1 + i as u64,
            "gap or repeat at {i}: {events:?}"
        );
    }
    let (_, name, data) = events.last().expect("no events");
    assert_eq!(name, "status");
    assert_eq!(data["status"], status, "{events:?}");
}

fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn start_streams_to_completion(b: Backend) {
    let e = env(b).await;
    e.fake.push(Step::text("The answer is forty-two."));
    let t0 = Instant::now();
    let r = e.start(&[("prompt", "What is the answer?")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "running");
    // Every project has a workspace: its sandbox id comes with the start.
    for k in ["thread_id", "agent_run_id", "project_id", "sandbox_id"] {
        Uuid::parse_str(r.body[k].as_str().unwrap()).unwrap();
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    let run = r.body["agent_run_id"].as_str().unwrap();
    let events = read_stream(&e.app, &e.s, run, None).await;
    assert_complete(&events, 0, "completed");
    let names: Vec<&str> = events.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"status"));
    assert_eq!(events[0].2["status"], "running");
    let text: String = events
        .iter()
        .filter(|(_, n, _)| n == "text_delta")
        .map(|(_, _, d)| d["delta"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, "The answer is forty-two.");
    let assistant = events.iter().find(|(_, n, _)| n == "assistant").unwrap();
    assert_eq!(assistant.2["content"], "The answer is forty-two.");
    assert!(
        events
            .iter()
            .any(|(_, n, d)| n == "usage" && d["inputTokens"].as_u64().unwrap() > 0)
    );

    let got = e.finished(run).await;
    assert_eq!(got["status"], "completed");
    assert!(got["completed_at"].is_string());
    assert_eq!(got["error"], Value::Null);
    assert_eq!(got["thread_id"], r.body["thread_id"]);
    assert_eq!(got["project_id"], r.body["project_id"]);
    let thread = r.body["thread_id"].as_str().unwrap();
    let (kinds, msgs) = message_kinds(&e, thread).await;
    assert_eq!(kinds, ["user", "assistant"], "{msgs}");
    assert_eq!(msgs["messages"][0]["content"], "What is the answer?");
    assert_eq!(msgs["messages"][1]["content"], "The answer is forty-two.");
    assert_eq!(msgs["pagination"]["total"], 2);
    // The project is named from the prompt's first words.
    let project = r.body["project_id"].as_str().unwrap();
    let p = e.app.get(&format!("/v1/projects/{project}"), &e.s).await;
    assert_eq!(p.body["name"], "What is the answer?");

    // The prompt of a second start is appended to the same thread, which the model sees.
    e.fake.push(Step::text("Still forty-two."));
    let (run2, thread2) = e
        .start_ok(&[("prompt", "And now?"), ("thread_id", thread)])
        .await;
    assert_eq!(thread2, thread);
    assert_eq!(e.finished(&run2).await["status"], "completed");
    let last = e.fake.last_request().unwrap();
    let contents: Vec<String> = last
        .messages()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        contents.iter().any(|c| c == "What is the answer?"),
        "{contents:?}"
    );
    assert_eq!(contents.last().unwrap(), "And now?");
    let runs = e
        .app
        .get(&format!("/v1/thread/{thread}/agent-runs"), &e.s)
        .await;
    assert_eq!(
        runs.body["agent_runs"][0]["id"],
        run2.as_str(),
        "newest first"
    );
    assert_eq!(runs.body["pagination"]["total"], 2);
}

async fn a_late_viewer_gets_everything_and_resume_gives_the_rest(b: Backend) {
    let e = env(b).await;
    e.fake
        .push(Step::text(words(30)).with_chunk_delay(Duration::from_millis(10)));
    let (run, _) = e.start_ok(&[("prompt", "Tell me thirty words")]).await;
    let live = read_stream(&e.app, &e.s, &run, None).await;
    assert_complete(&live, 0, "completed");
    // After the end: the whole history from storage, identical.
    let late = read_stream(&e.app, &e.s, &run, None).await;
    assert_eq!(late, live);
    for k in [1u64, 5, 17, live.len() as u64 - 1] {
        let rest = read_stream(&e.app, &e.s, &run, Some(k)).await;
        assert_eq!(rest, live[k as usize..].to_vec(), "resume after {k}");
    }
    // `?last_id=` and `?token=` (EventSource cannot send headers).
    let url = format!(
        "{}/v1/agent-run/{run}/stream?last_id=3&token={}",
        e.app.base,
        bearer(&e.s)
    );
    let text = e
        .app
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(parse_events(&text), live[3..].to_vec());
    // A resume in the middle of a live run: exactly the events after it.
    e.fake
        .push(Step::text(words(40)).with_chunk_delay(Duration::from_millis(20)));
    let (run, _) = e.start_ok(&[("prompt", "Forty words")]).await;
    let mut first = Vec::new();
    let resp = e
        .app
        .client
        .get(format!("{}/v1/agent-run/{run}/stream", e.app.base))
        .bearer_auth(bearer(&e.s))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    while first.len() < 6 {
        buf.push_str(&String::from_utf8_lossy(
            &body.next().await.unwrap().unwrap(),
        ));
        first = parse_events(&buf);
    }
    drop(body);
    let k = first[5].0;
    let rest = read_stream(&e.app, &e.s, &run, Some(k)).await;
    assert_complete(&rest, k, "completed");
    let all = read_stream(&e.app, &e.s, &run, None).await;
    assert_eq!(all[..6].to_vec(), first[..6].to_vec());
    assert_eq!(all[k as usize..].to_vec(), rest);
}

async fn fifty_viewers_receive_identical_sequences(b: Backend) {
    let e = env(b).await;
    e.fake
        .push(Step::text(words(40)).with_chunk_delay(Duration::from_millis(15)));
    let (run, _) = e.start_ok(&[("prompt", "Stream to many")]).await;
    let viewers = (0..50).map(|_| read_stream(&e.app, &e.s, &run, None));
    let all = futures_util::future::join_all(viewers).await;
    assert_complete(&all[0], 0, "completed");
    for v in &all {
        assert_eq!(v, &all[0]);
    }
    assert_eq!(read_stream(&e.app, &e.s, &run, None).await, all[0]);
}

async fn stop_during_a_streaming_call(b: Backend) {
    let e = env(b).await;
    e.fake
        .push(Step::text(words(400)).with_chunk_delay(Duration::from_millis(25)));
    let (run, thread) = e.start_ok(&[("prompt", "Talk for a long time")]).await;
    let viewer = {
        let (app, s, run) = (&e.app, &e.s, run.clone());
        async move { read_stream(app, s, &run, None).await }
    };
    let stopper = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let t = Instant::now();
        let r = e
            .app
            .post(&format!("/v1/agent-run/{run}/stop"), &e.s, json!({}))
            .await;
        (r, t.elapsed())
    };
    let (events, (r, took)) = tokio::join!(viewer, stopper);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "stopped");
    assert!(took < Duration::from_secs(1), "stop took {took:?}");
    assert_complete(&events, 0, "stopped");
    assert!(events.iter().any(|(_, n, _)| n == "text_delta"));
    // The model call was cancelled: the fake saw the client go away.
    assert!(e.fake.wait_for_disconnects(1, Duration::from_secs(3)).await);
    // Stopping again answers the final status; the thread takes a new run.
    let again = e
        .app
        .post(&format!("/v1/agent-run/{run}/stop"), &e.s, json!({}))
        .await;
    assert_eq!(again.body["status"], "stopped");
    e.fake.push(Step::text("ok"));
    let (run2, _) = e
        .start_ok(&[("prompt", "again"), ("thread_id", &thread)])
        .await;
    assert_eq!(e.finished(&run2).await["status"], "completed");
}

/// An agent whose one tool `name` is a GET of `url` without parameters.
async fn agent_with_tool(e: &Env, name: &str, url: &str) -> String {
    let action = e
        .app
        .post(
            "/v1/actions",
            &e.s,
            json!({"name": name, "description": "Looks something up", "method": "GET",
                   "webhook_url": url, "parameters_schema": {"type": "object", "properties": {}}}),
        )
        .await;
    assert_eq!(action.status, 201, "{}", action.body);
    e.app
        .create_agent(
            &e.s,
            json!({"name": name, "action_ids": [action.body["id"]]}),
        )
        .await
}

/// A webhook that answers after `delay`.
async fn slow_receiver(delay: Duration) -> String {
    let app = axum::Router::new().fallback(move || async move {
        tokio::time::sleep(delay).await;
        axum::Json(json!({"ok": true}))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

async fn stop_during_a_slow_tool_call(b: Backend) {
    let e = env(b).await;
    let base = slow_receiver(Duration::from_secs(10)).await;
    let agent = agent_with_tool(&e, "slow_lookup", &format!("{base}/lookup")).await;
    e.fake.push(Step::tool_call("slow_lookup", json!({})));
    let (run, _) = e
        .start_ok(&[("prompt", "look it up"), ("agent_id", &agent)])
        .await;
    // Wait for the tool call to begin.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = e
            .app
            .state
            .store
            .run_events_after(e.company, run.parse().unwrap(), 0, 100)
            .await
            .unwrap();
        if events.iter().any(|f| f.name == "tool_call") {
            break;
        }
        assert!(Instant::now() < deadline, "no tool call: {events:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = Instant::now();
    let r = e
        .app
        .post(&format!("/v1/agent-run/{run}/stop"), &e.s, json!({}))
        .await;
    assert_eq!(r.body["status"], "stopped", "{}", r.body);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let events = read_stream(&e.app, &e.s, &run, None).await;
    assert_complete(&events, 0, "stopped");
    let assistant = events.iter().find(|(_, n, _)| n == "assistant").unwrap();
    assert_eq!(assistant.2["tool_calls"][0]["name"], "slow_lookup");
}

async fn a_run_past_its_time_fails_with_timeout(b: Backend) {
    let e = env_with(b, |c| c.runs.max_seconds = 1).await;
    e.fake
        .push(Step::text(words(200)).with_chunk_delay(Duration::from_millis(20)));
    let (run, _) = e.start_ok(&[("prompt", "Too long")]).await;
    let events = read_stream(&e.app, &e.s, &run, None).await;
    assert_complete(&events, 0, "failed");
    assert_eq!(events.last().unwrap().2["error"], "timeout");
    let got = e.finished(&run).await;
    assert_eq!(got["status"], "failed");
    assert_eq!(got["error"], "timeout");
    // The slot is free again.
    let active = e.app.get("/v1/agent-runs/active", &e.s).await;
    assert_eq!(active.body["pagination"]["total"], 0);
}

async fn the_step_limit_forces_a_final_answer(b: Backend) {
    let e = env_with(b, |c| c.runs.max_steps = 3).await;
    let recv = crate::helpers::Receiver::start().await;
    let agent = agent_with_tool(&e, "check_order", &format!("{}/orders", recv.base)).await;
    e.fake
        .push(Step::tool_call("check_order", json!({})).forever());
    let (run, thread) = e
        .start_ok(&[("prompt", "check forever"), ("agent_id", &agent)])
        .await;
    let got = e.finished(&run).await;
    assert_eq!(got["status"], "completed", "{got}");
    let chats = e.fake.chat_requests();
    assert_eq!(chats.len(), 3, "max_steps model calls");
    assert_eq!(recv.calls().len(), 2, "tools ran between the calls");
    assert_eq!(
        chats[2].body["tool_choice"], "none",
        "the last call is asked for text"
    );
    let msgs = e
        .app
        .get(&format!("/v1/threads/{thread}/messages"), &e.s)
        .await;
    let kinds: Vec<&str> = msgs.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "user",
            "assistant",
            "tool",
            "assistant",
            "tool",
            "assistant"
        ]
    );
}

async fn a_two_thousand_message_thread_runs(b: Backend) {
    let e = env(b).await;
    e.fake.push(Step::text("first"));
    let (run, thread) = e.start_ok(&[("prompt", "start")]).await;
    e.finished(&run).await;
    let messages: Vec<cortex::store::NewMessage> = (0..2000)
        .map(|i| cortex::store::NewMessage {
            id: cortex::store::new_id(),
            kind: if i % 2 == 0 { "user" } else { "assistant" },
            content: format!("message number {i} {}", words(20)),
        })
        .collect();
    e.app
        .state
        .store
        .append_run_events(
            e.company,
            thread.parse().unwrap(),
            run.parse().unwrap(),
            &[],
            &messages,
        )
        .await
        .unwrap();
    e.fake.push(Step::text("still fine"));
    let (run2, _) = e
        .start_ok(&[("prompt", "and now?"), ("thread_id", &thread)])
        .await;
    let got = e.finished(&run2).await;
    assert_eq!(got["status"], "completed", "{got}");
    let req = e.fake.last_request().unwrap();
    let n = req.messages().len();
    assert!(
        n > 3 && n < 2002,
        "the optimizer kept part of the history: {n}"
    );
    assert_eq!(
        req.messages().last().unwrap()["content"],
        "and now?",
        "the new prompt is last"
    );
}

async fn start_errors_follow_the_contract(b: Backend) {
    let e = env(b).await;
    let r = e.start(&[]).await;
    assert_eq!(
        r.assert_error(400, "BAD_REQUEST"),
        "prompt required when creating new thread"
    );
    assert_eq!(r.body["detail"], "prompt required when creating new thread");
    for fields in [
        vec![("prompt", "x"), ("optimistic", "true")],
        vec![
            ("prompt", "x"),
            ("optimistic", "true"),
            ("thread_id", "not-a-uuid"),
            ("project_id", "also-not"),
        ],
        vec![
            ("prompt", "x"),
            ("optimistic", "true"),
            ("thread_id", "3f0c5f6e-0b1c-4c59-9f39-5b8f2b0b2d10"),
        ],
    ] {
        let r = e.start(&fields).await;
        assert_eq!(
            r.assert_error(400, "BAD_REQUEST"),
            "thread_id and project_id required for optimistic mode"
        );
    }
    let missing = Uuid::new_v4().to_string();
    let r = e.start(&[("prompt", "x"), ("thread_id", &missing)]).await;
    assert_eq!(r.assert_error(404, "NOT_FOUND"), "Thread not found");
    let r = e
        .start(&[("prompt", "x"), ("model_name", "nonsense/model")])
        .await;
    r.assert_error(400, "BAD_REQUEST");
    let r = e.start(&[("prompt", "x"), ("agent_id", &missing)]).await;
    r.assert_error(404, "NOT_FOUND");

    // Optimistic mode creates the thread and project with the client's ids.
    let (t, p) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    e.fake
        .push(Step::text(words(100)).with_chunk_delay(Duration::from_millis(20)));
    let r = e
        .start(&[
            ("prompt", "optimistic"),
            ("optimistic", "true"),
            ("thread_id", &t),
            ("project_id", &p),
        ])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["thread_id"], t.as_str());
    assert_eq!(r.body["project_id"], p.as_str());
    // One running run per thread.
    let r2 = e.start(&[("prompt", "again"), ("thread_id", &t)]).await;
    r2.assert_error(409, "CONFLICT");
    let run = r.body["agent_run_id"].as_str().unwrap();
    e.app
        .post(&format!("/v1/agent-run/{run}/stop"), &e.s, json!({}))
        .await;

    // Plans: free allows one run, ten threads and the speed tier.
    set_plan(&e, "free").await;
    let r = e.start(&[("prompt", "x"), ("model_name", "sonnet")]).await;
    r.assert_error(402, "MODEL_ACCESS_DENIED");
    assert_eq!(r.body["detail"]["error_code"], "MODEL_ACCESS_DENIED");
    assert_eq!(r.body["detail"]["tier_name"], "free");
    let r = e
        .start(&[("prompt", "x"), ("model_name", "fake/m-sonnet")])
        .await;
    r.assert_error(402, "MODEL_ACCESS_DENIED");
    e.fake
        .push(Step::text(words(200)).with_chunk_delay(Duration::from_millis(20)));
    let (busy, busy_thread) = e
        .start_ok(&[("prompt", "one"), ("model_name", "speed")])
        .await;
    let r = e.start(&[("prompt", "two")]).await;
    r.assert_error(402, "AGENT_RUN_LIMIT_EXCEEDED");
    assert_eq!(r.body["detail"]["running_count"], 1);
    assert_eq!(r.body["detail"]["limit"], 1);
    assert_eq!(r.body["detail"]["running_thread_ids"], json!([busy_thread]));
    assert_eq!(r.body["detail"]["error_code"], "AGENT_RUN_LIMIT_EXCEEDED");
    e.app
        .post(&format!("/v1/agent-run/{busy}/stop"), &e.s, json!({}))
        .await;
    // Threads so far: 2 (optimistic + busy) + 1 (first stream test is not in this env) → fill to 10.
    let count = e.app.get("/v1/threads", &e.s).await.body["pagination"]["total"]
        .as_i64()
        .unwrap();
    for i in count..10 {
        e.fake.push(Step::text("ok"));
        let (run, _) = e.start_ok(&[("prompt", &format!("thread {i}"))]).await;
        e.finished(&run).await;
    }
    let threads_before = e.app.get("/v1/threads", &e.s).await.body["pagination"]["total"].clone();
    let projects_before = e.app.get("/v1/projects", &e.s).await.body["pagination"]["total"].clone();
    let r = e.start(&[("prompt", "eleventh")]).await;
    r.assert_error(402, "THREAD_LIMIT_EXCEEDED");
    assert_eq!(r.body["detail"]["current_count"], 10);
    assert_eq!(r.body["detail"]["limit"], 10);
    // A refused start wrote nothing.
    assert_eq!(
        e.app.get("/v1/threads", &e.s).await.body["pagination"]["total"],
        threads_before
    );
    assert_eq!(
        e.app.get("/v1/projects", &e.s).await.body["pagination"]["total"],
        projects_before
    );
    // An existing thread still takes runs.
    e.fake.push(Step::text("ok"));
    let (run, _) = e.start_ok(&[("prompt", "more"), ("thread_id", &t)]).await;
    e.finished(&run).await;
}

/// `cortex admin set-plan` for the test's company.
async fn set_plan(e: &Env, plan: &str) {
    let company = e.company.to_string();
    cortex_admin(e, &["set-plan", "--company-id", &company, "--plan", plan]).await;
}

/// Run `cortex admin …` against the test's database.
pub async fn cortex_admin(e: &Env, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cortex"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CORTEX_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .env("DATABASE_URL", &e.app.database_url)
        .arg("admin")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cortex admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn twenty_simultaneous_starts_against_a_limit_of_three_admit_three(b: Backend) {
    let e = env(b).await;
    set_plan(&e, "pro").await;
    e.fake.push(
        Step::text(words(200))
            .with_chunk_delay(Duration::from_millis(20))
            .forever(),
    );
    let prompts: Vec<String> = (0..20).map(|i| format!("race {i}")).collect();
    let env = &e;
    let starts = prompts
        .iter()
        .map(|p| async move { env.start(&[("prompt", p.as_str())]).await });
    let results = futures_util::future::join_all(starts).await;
    let ok: Vec<&crate::helpers::Resp> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(ok.len(), 3, "exactly the limit is admitted");
    for r in results.iter().filter(|r| r.status != 200) {
        r.assert_error(402, "AGENT_RUN_LIMIT_EXCEEDED");
    }
    let active = e.app.get("/v1/agent-runs/active", &e.s).await;
    assert_eq!(active.body["pagination"]["total"], 3);
    // Refused starts wrote nothing: three threads exist.
    assert_eq!(
        e.app.get("/v1/threads", &e.s).await.body["pagination"]["total"],
        3
    );
    for r in ok {
        let id = r.body["agent_run_id"].as_str().unwrap();
        e.app
            .post(&format!("/v1/agent-run/{id}/stop"), &e.s, json!({}))
            .await;
    }
    // Released: a new start is admitted.
    e.fake.clear_script();
    e.fake.push(Step::text("ok"));
    let (run, _) = e.start_ok(&[("prompt", "after")]).await;
    e.finished(&run).await;
}

async fn credits_are_debited_and_exhausted_credits_refuse_work(b: Backend) {
    let e = env(b).await;
    let company = e.company.to_string();
    let out = cortex_admin(&e, &["credits", "--company-id", &company, "--set", "1.5"]).await;
    assert!(out.contains("1.500000"), "{out}");
    let billing = e.app.get("/v1/billing", &e.s).await;
    assert_eq!(billing.body["credits_usd"], 1.5);
    let recv = crate::helpers::Receiver::start().await;
    let agent = agent_with_tool(&e, "check_order", &format!("{}/orders", recv.base)).await;
    // m-nano costs $1 per million input tokens: each call costs $1.
    e.fake.push(
        Step::tool_call("check_order", json!({}))
            .with_usage(1_000_000, 0)
            .times(5),
    );
    let (run, _) = e
        .start_ok(&[
            ("prompt", "spend"),
            ("agent_id", &agent),
            ("model_name", "nano"),
        ])
        .await;
    let got = e.finished(&run).await;
    assert_eq!(got["status"], "failed", "{got}");
    assert_eq!(got["error_code"], "INSUFFICIENT_CREDITS");
    assert_eq!(
        e.fake.chat_requests().len(),
        2,
        "stopped after the call that ran out"
    );
    assert_eq!(
        recv.calls().len(),
        1,
        "no tool ran after the balance ran out"
    );
    assert_eq!(got["usage"]["cost_usd"], 2.0);
    let billing = e.app.get("/v1/billing", &e.s).await;
    assert_eq!(billing.body["credits_usd"], -0.5);
    assert_eq!(billing.body["usage"]["cost_usd"], 2.0);
    assert_eq!(billing.body["usage"]["input_tokens"], 2_000_000);

    // At or below zero: chat, chat stream and start answer 402 before any work.
    let before = e.fake.request_count();
    let r = e.start(&[("prompt", "more")]).await;
    r.assert_error(402, "INSUFFICIENT_CREDITS");
    assert_eq!(r.body["detail"]["error_code"], "INSUFFICIENT_CREDITS");
    let chat_agent = e
        .app
        .create_agent(
            &e.s,
            json!({"name": "Chat", "settings": {"tier": "nano", "cache_enabled": false}}),
        )
        .await;
    let body = TestApp::chat_body(&company, &chat_agent, &Uuid::new_v4().to_string(), "hi");
    e.app
        .post("/v1/chat", &e.s, body.clone())
        .await
        .assert_error(402, "INSUFFICIENT_CREDITS");
    e.app
        .post("/v1/chat/stream", &e.s, body.clone())
        .await
        .assert_error(402, "INSUFFICIENT_CREDITS");
    assert_eq!(e.fake.request_count(), before, "no model call");

    // Topped up, chat pays per turn; unmetered again, nothing is refused.
    e.fake.clear_script();
    cortex_admin(&e, &["credits", "--company-id", &company, "--add", "10"]).await;
    e.fake.push(Step::text("paid").with_usage(500_000, 0));
    let r = e.app.post("/v1/chat", &e.s, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let billing = e.app.get("/v1/billing", &e.s).await;
    assert_eq!(billing.body["credits_usd"], 9.0);
    cortex_admin(&e, &["credits", "--company-id", &company, "--unmetered"]).await;
    assert_eq!(
        e.app.get("/v1/billing", &e.s).await.body["credits_usd"],
        Value::Null
    );
}

async fn billing_reports_plan_limits_and_usage(b: Backend) {
    let e = env(b).await;
    let r = e.app.get("/v1/billing", &e.s).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The first company of a zero-configuration start is on enterprise, unmetered.
    assert_eq!(r.body["plan"], "enterprise");
    assert_eq!(r.body["credits_usd"], Value::Null);
    assert_eq!(r.body["limits"]["concurrent_runs"], 10);
    assert_eq!(r.body["limits"]["threads"], Value::Null);
    assert_eq!(r.body["limits"]["tiers"], json!(["all"]));
    assert_eq!(r.body["running_runs"], 0);
    assert_eq!(r.body["thread_count"], 0);
    assert!(
        r.body["usage"]["period_start"]
            .as_str()
            .unwrap()
            .ends_with("01T00:00:00Z")
    );
    e.fake
        .push(Step::text("priced").with_usage(2_000_000, 1_000_000));
    let (run, _) = e.start_ok(&[("prompt", "x"), ("model_name", "nano")]).await;
    e.finished(&run).await;
    let r = e.app.get("/v1/billing", &e.s).await;
    assert_eq!(r.body["thread_count"], 1);
    assert_eq!(r.body["usage"]["input_tokens"], 2_000_000);
    assert_eq!(r.body["usage"]["output_tokens"], 1_000_000);
    assert_eq!(r.body["usage"]["cost_usd"], 4.0);
    set_plan(&e, "pro").await;
    let r = e.app.get("/v1/billing", &e.s).await;
    assert_eq!(r.body["plan"], "pro");
    assert_eq!(r.body["limits"]["concurrent_runs"], 3);
    assert_eq!(r.body["limits"]["threads"], 100);
    assert_eq!(
        r.body["limits"]["tiers"],
        json!(["speed", "nano", "sonnet"])
    );
}

async fn threads_and_projects_can_be_read_renamed_and_deleted(b: Backend) {
    let e = env(b).await;
    e.fake.push(Step::text("one"));
    let r = e.start(&[("prompt", "first thread here")]).await;
    let (thread, project) = (
        r.body["thread_id"].as_str().unwrap().to_string(),
        r.body["project_id"].as_str().unwrap().to_string(),
    );
    e.finished(r.body["agent_run_id"].as_str().unwrap()).await;
    // A second thread in the same project.
    e.fake
        .push(Step::text(words(300)).with_chunk_delay(Duration::from_millis(20)));
    let (running, thread2) = e
        .start_ok(&[("prompt", "second"), ("project_id", &project)])
        .await;
    let list = e.app.get("/v1/threads?limit=1", &e.s).await;
    assert_eq!(
        list.body["pagination"],
        json!({"total": 2, "limit": 1, "offset": 0})
    );
    assert_eq!(list.body["threads"].as_array().unwrap().len(), 1);
    let t = e.app.get(&format!("/v1/threads/{thread}"), &e.s).await;
    assert_eq!(t.body["name"], "first thread here");
    assert_eq!(t.body["project_id"], project.as_str());
    let r = e
        .app
        .request(
            Method::PATCH,
            &format!("/v1/threads/{thread}"),
            &e.s,
            Some(json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "Renamed");
    e.app
        .request(
            Method::PATCH,
            &format!("/v1/threads/{thread}"),
            &e.s,
            Some(json!({"name": ""})),
        )
        .await
        .assert_error(422, "VALIDATION_ERROR");
    let projects = e.app.get("/v1/projects", &e.s).await;
    assert_eq!(projects.body["projects"][0]["project_id"], project.as_str());
    assert_eq!(projects.body["pagination"]["total"], 1);

    // Deleting a thread with a running run stops it first, then removes everything of it.
    let d = e.app.delete(&format!("/v1/threads/{thread2}"), &e.s).await;
    assert_eq!(d.status, 200, "{}", d.body);
    e.app
        .get(&format!("/v1/threads/{thread2}"), &e.s)
        .await
        .assert_error(404, "NOT_FOUND");
    e.app
        .get(&format!("/v1/agent-run/{running}"), &e.s)
        .await
        .assert_error(404, "NOT_FOUND");
    let events = e
        .app
        .state
        .store
        .run_events_after(e.company, running.parse().unwrap(), 0, 10)
        .await
        .unwrap();
    assert!(events.is_empty());
    assert_eq!(
        e.app.get("/v1/agent-runs/active", &e.s).await.body["pagination"]["total"],
        0
    );
    // Deleting the project removes its threads.
    let d = e.app.delete(&format!("/v1/projects/{project}"), &e.s).await;
    assert_eq!(d.status, 200);
    e.app
        .get(&format!("/v1/threads/{thread}"), &e.s)
        .await
        .assert_error(404, "NOT_FOUND");
    assert_eq!(
        e.app.get("/v1/threads", &e.s).await.body["pagination"]["total"],
        0
    );
}

async fn another_company_sees_nothing(b: Backend) {
    let e = env(b).await;
    e.fake.push(Step::text("mine"));
    let r = e.start(&[("prompt", "private")]).await;
    let run = r.body["agent_run_id"].as_str().unwrap().to_string();
    let thread = r.body["thread_id"].as_str().unwrap().to_string();
    let project = r.body["project_id"].as_str().unwrap().to_string();
    e.finished(&run).await;
    let (_, other) = e.app.other_company().await;
    let missing = Uuid::new_v4();
    for (path, what) in [
        (format!("/v1/agent-run/{run}"), "Agent run"),
        (format!("/v1/agent-run/{run}/stream"), "Agent run"),
        (format!("/v1/thread/{thread}/agent-runs"), "Thread"),
        (format!("/v1/threads/{thread}"), "Thread"),
        (format!("/v1/threads/{thread}/messages"), "Thread"),
        (format!("/v1/projects/{project}"), "Project"),
    ] {
        let theirs = e.app.get(&path, &other).await;
        let none = e
            .app
            .get(
                &path
                    .replace(&run, &missing.to_string())
                    .replace(&thread, &missing.to_string())
                    .replace(&project, &missing.to_string()),
                &other,
            )
            .await;
        assert_eq!(theirs.status, 404, "{path}");
        assert_eq!(
            theirs.body, none.body,
            "{path}: byte-identical to a missing one"
        );
        assert_eq!(theirs.body["detail"], format!("{what} not found"));
    }
    e.app
        .post(&format!("/v1/agent-run/{run}/stop"), &other, json!({}))
        .await
        .assert_error(404, "NOT_FOUND");
    e.app
        .delete(&format!("/v1/threads/{thread}"), &other)
        .await
        .assert_error(404, "NOT_FOUND");
    e.app
        .delete(&format!("/v1/projects/{project}"), &other)
        .await
        .assert_error(404, "NOT_FOUND");
    for path in ["/v1/threads", "/v1/projects", "/v1/agent-runs/active"] {
        let r = e.app.get(path, &other).await;
        assert_eq!(r.body["pagination"]["total"], 0, "{path}");
    }
    // Their start cannot attach to our thread, even optimistically.
    let r = start_on(&e.app, &other, &[("prompt", "x"), ("thread_id", &thread)]).await;
    r.assert_error(404, "NOT_FOUND");
    let r = start_on(
        &e.app,
        &other,
        &[
            ("prompt", "x"),
            ("optimistic", "true"),
            ("thread_id", &thread),
            ("project_id", &project),
        ],
    )
    .await;
    r.assert_error(404, "NOT_FOUND");
    let r = start_on(
        &e.app,
        &other,
        &[
            ("prompt", "x"),
            ("optimistic", "true"),
            ("thread_id", &Uuid::new_v4().to_string()),
            ("project_id", &project),
        ],
    )
    .await;
    r.assert_error(404, "NOT_FOUND");
    // Our thread is untouched.
    let msgs = e
        .app
        .get(&format!("/v1/threads/{thread}/messages"), &e.s)
        .await;
    assert_eq!(msgs.body["pagination"]["total"], 2);
    // Without credentials, every run route is 401 (the OpenAPI walk checks the rest).
    e.app
        .get(&format!("/v1/agent-run/{run}/stream"), &Auth::None)
        .await
        .assert_error(401, "UNAUTHORIZED");
    e.app
        .get(
            &format!("/v1/agent-run/{run}/stream?token=ctx_wrong"),
            &Auth::None,
        )
        .await
        .assert_error(401, "UNAUTHORIZED");
}

async fn the_zero_configuration_responder_completes_a_run(b: Backend) {
    let app = spawn_app_with(b, |c| c.limits.company_requests = 0).await;
    let s = app.admin().await;
    let agent = app
        .create_agent(
            &s,
            json!({"name": "FAQ", "workflow_faqs": [{"question": "What are your opening hours?", "answer": "We open 9 to 6."}]}),
        )
        .await;
    let r = start_on(&app, &s, &[("prompt", "What are your opening hours?")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let run = r.body["agent_run_id"].as_str().unwrap();
    let events = read_stream(&app, &s, run, None).await;
    assert_complete(&events, 0, "completed");
    let assistant = events.iter().find(|(_, n, _)| n == "assistant").unwrap();
    assert_eq!(assistant.2["content"], "We open 9 to 6.");
    // The default agent is the only agent; PATCH is_default picks another.
    let got = app.get(&format!("/v1/agent-run/{run}"), &s).await;
    assert_eq!(got.body["agent_id"], agent.as_str());
    let other = app.create_agent(&s, json!({"name": "Other"})).await;
    let r = app
        .request(
            Method::PATCH,
            &format!("/v1/agents/{other}"),
            &s,
            Some(json!({"is_default": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = start_on(&app, &s, &[("prompt", "hello")]).await;
    let run = r.body["agent_run_id"].as_str().unwrap();
    let got = app.get(&format!("/v1/agent-run/{run}"), &s).await;
    assert_eq!(got.body["agent_id"], other.as_str());
}

async fn shutdown_refuses_new_starts_and_stops_running_runs(b: Backend) {
    let e = env_with(b, |c| {
        c.shutdown.drain_seconds = 1.0;
        c.shutdown.announce_seconds = 1.0;
    })
    .await;
    e.fake
        .push(Step::text(words(500)).with_chunk_delay(Duration::from_millis(20)));
    let (run, _) = e.start_ok(&[("prompt", "long")]).await;
    let viewer = {
        let (app, s, run) = (&e.app, &e.s, run.clone());
        async move { read_stream(app, s, &run, None).await }
    };
    let stopper = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        e.app.begin_shutdown();
        tokio::time::sleep(Duration::from_millis(50)).await;
        e.start(&[("prompt", "too late")]).await
    };
    let (events, refused) = tokio::join!(viewer, stopper);
    refused.assert_error(503, "SERVICE_UNAVAILABLE");
    assert_complete(&events, 0, "stopped");
    assert_eq!(events.last().unwrap().2["error"], "server shutting down");
    // The final status is stored before the node exits.
    let store = &e.app.state.store;
    let stored = crate::helpers::eventually(|| async {
        let r = store
            .get_run(e.company, run.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        (r.status != "running").then_some(r)
    })
    .await;
    assert_eq!(stored.status, "stopped");
    let last = e
        .app
        .state
        .store
        .run_last_seq(e.company, run.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(last, events.last().unwrap().0, "every event was flushed");
}

pub async fn prometheus_text(e: &Env) -> String {
    e.app
        .client
        .get(format!("{}/v1/metrics", e.app.base))
        .bearer_auth(bearer(&e.s))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn node_health_and_system_metrics_report_runs(b: Backend) {
    let e = env(b).await;
    let debug = e.app.get("/v1/health/debug", &e.s).await;
    assert_eq!(debug.status, 200, "{}", debug.body);
    assert_eq!(debug.body["active_runs_on_instance"], 0);
    assert_eq!(debug.body["is_shutting_down"], false);
    assert_eq!(debug.body["instance_id"], e.app.state.instance_id.as_str());
    let redis = e.app.get("/v1/health/redis", &e.s).await;
    assert_eq!(redis.body["status"], "not_configured", "{}", redis.body);
    e.fake
        .push(Step::text(words(200)).with_chunk_delay(Duration::from_millis(20)));
    let (run, _) = e.start_ok(&[("prompt", "long")]).await;
    let debug = e.app.get("/v1/health/debug", &e.s).await;
    assert_eq!(debug.body["active_runs_on_instance"], 1);
    let sys = e.app.get("/v1/metrics/system", &e.s).await;
    assert_eq!(sys.body["active_agent_runs"], 1, "{}", sys.body);
    assert_eq!(sys.body["orphaned_streams"], 0);
    let prom = prometheus_text(&e).await;
    assert!(prom.contains("cortex_active_runs"), "{prom}");
    // Stopped milliseconds after the start, while the model call is still connecting: a stop,
    // not a model failure.
    let stopped = e
        .app
        .post(&format!("/v1/agent-run/{run}/stop"), &e.s, json!({}))
        .await;
    assert_eq!(stopped.body["status"], "stopped", "{}", stopped.body);
    assert_eq!(stopped.body["error"], Value::Null);
    // Counted right after the final status is stored.
    let prom = crate::helpers::eventually(|| async {
        let text = prometheus_text(&e).await;
        text.contains("cortex_runs_total{status=\"stopped\"}")
            .then_some(text)
    })
    .await;
    assert!(prom.contains("cortex_run_duration_seconds"));
}

async fn events_of_runs_past_the_retention_are_pruned(b: Backend) {
    let e = env(b).await;
    e.fake.push(Step::text("old"));
    let (old, _) = e.start_ok(&[("prompt", "long ago")]).await;
    e.finished(&old).await;
    e.fake.push(Step::text("new"));
    let (new, _) = e.start_ok(&[("prompt", "today")]).await;
    e.finished(&new).await;
    // Age the first run by 40 days.
    let db = e.app.raw_db().await;
    let long_ago = "2020-01-01T00:00:00.000000Z";
    sqlx::query("UPDATE agent_runs SET completed_at = $1 WHERE id = $2")
        .bind(long_ago)
        .bind(&old)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE run_events SET created_at = $1 WHERE run_id = $2")
        .bind(long_ago)
        .bind(&old)
        .execute(&db)
        .await
        .unwrap();
    let before = cortex::store::now() - chrono::Duration::days(30);
    let pruned = e.app.state.store.prune_run_events(before).await.unwrap();
    assert!(pruned >= 3, "{pruned}");
    let store = &e.app.state.store;
    assert!(
        store
            .run_events_after(e.company, old.parse().unwrap(), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .run_events_after(e.company, new.parse().unwrap(), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The run itself and its messages stay.
    assert_eq!(e.run(&old).await["status"], "completed");
}

async fn a_finished_run_feeds_the_users_memory(b: Backend) {
    let e = env_with(b, |c| c.memory.extract_facts = true).await;
    let user = e.app.get("/v1/me", &e.s).await.body["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    e.fake
        .push(Step::text("Noted: answers in Arabic from now on."));
    e.fake.push(Step::tool_call(
        "record_customer_facts",
        json!({"facts": [{"fact": "Prefers Arabic", "category": "preference", "confidence": 0.9}]}),
    ));
    let (run, _) = e
        .start_ok(&[
            ("prompt", "Always answer me in Arabic"),
            ("memory_enabled", "true"),
        ])
        .await;
    assert_eq!(e.finished(&run).await["status"], "completed");
    // Stage 08 ran after the run's final answer: the user's facts, used by their next runs.
    let store = &e.app.state.store;
    let customer = format!("user:{user}");
    let facts = crate::helpers::eventually(|| async {
        use cortex::store::MemoryStore;
        let f = store.facts(e.company, &customer, None, 10).await.unwrap();
        (!f.is_empty()).then_some(f)
    })
    .await;
    assert_eq!(facts[0].fact, "Prefers Arabic");
    // With memory off for a run, nothing is extracted.
    e.fake.push(Step::text("ok"));
    let before = e.fake.request_count();
    let (run, _) = e
        .start_ok(&[("prompt", "I live in Giza"), ("memory_enabled", "false")])
        .await;
    e.finished(&run).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        e.fake.request_count(),
        before + 1,
        "only the run's own call"
    );
}

/// A node that died with runs running finalises them when it starts again (SQLite: the only
/// node), and frees their slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_finalises_its_leftover_runs() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = write_node_config(dir.path(), port, None, &fake, "");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = spawn_node(&config);
    wait_healthy(&client, &base).await;
    let token: Value = client
        .post(format!("{base}/portal/api/login"))
        .json(&json!({"email": crate::helpers::ADMIN_EMAIL, "password": crate::helpers::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    fake.push(Step::text(words(2000)).with_chunk_delay(Duration::from_millis(20)));
    let (ct, body) = multipart(&[("prompt", "work until killed")], &[]);
    let r: Value = client
        .post(format!("{base}/v1/agent/start"))
        .bearer_auth(&token)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run = r["agent_run_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(700)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = spawn_node(&config);
    wait_healthy(&client, &base).await;
    let got: Value = client
        .get(format!("{base}/v1/agent-run/{run}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"], "failed", "{got}");
    assert_eq!(got["error"], "node lost");
    let text = client
        .get(format!("{base}/v1/agent-run/{run}/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = parse_events(&text);
    assert_complete(&events, 0, "failed");
    assert!(
        events.iter().any(|(_, n, _)| n == "text_delta"),
        "what was flushed before the kill survives"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A TOML configuration for a `cortex` process on `port` with the fake model; `db` is a
/// database URL (default: SQLite in `dir`), `extra` more TOML at the top level.
pub fn write_node_config(
    dir: &std::path::Path,
    port: u16,
    db: Option<&str>,
    fake: &FakeLlm,
    extra: &str,
) -> std::path::PathBuf {
    let tiers: String = ["speed", "nano", "sonnet", "complex", "search"]
        .iter()
        .map(|t| format!("{t} = [{{ provider = \"fake\", model = \"m-{t}\" }}]\n"))
        .collect();
    let db = db
        .map(|d| format!("database_url = {d:?}\n"))
        .unwrap_or_default();
    let toml = format!(
        "bind = \"127.0.0.1:{port}\"\ndata_dir = {dir:?}\n{db}{extra}\n\
         [auth]\nbootstrap_email = {email:?}\nbootstrap_password = {password:?}\njwt_secret = {jwt:?}\n\
         [log]\nlevel = \"warn\"\n[limits]\ncompany_requests = 0\n[runs]\nlease_seconds = 3\n\
         [llm.providers.fake]\nkind = \"openai\"\nbase_url = {fake:?}\napi_key = \"sk-test\"\ntimeout_secs = 10.0\nretries = 0\n\
         [llm.tiers]\n{tiers}",
        dir = dir.display().to_string(),
        email = crate::helpers::ADMIN_EMAIL,
        password = crate::helpers::ADMIN_PASSWORD,
        jwt = crate::helpers::TEST_JWT_SECRET,
        fake = fake.base_url(),
    );
    let config = dir.join("node.toml");
    std::fs::write(&config, toml).unwrap();
    config
}

/// The real binary serving with `config`, its environment cleared of Cortex variables.
pub fn spawn_node(config: &std::path::Path) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cortex"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CORTEX_") || k == "DATABASE_URL" || k == "REDIS_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.args(["--config", config.to_str().unwrap(), "serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

pub async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/health")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "node at {base} did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two nodes on one PostgreSQL database and one Redis.
mod scaled {
    use super::*;

    fn redis_url() -> String {
        std::env::var("CORTEX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    async fn node(fake: &FakeLlm, prefix: &str, db: Option<String>) -> TestApp {
        let (url, p, fake_url) = (redis_url(), prefix.to_owned(), fake.base_url().to_string());
        spawn_app_with(Backend::Postgres, move |c| {
            c.redis_url = Some(url);
            c.redis_prefix = p;
            c.llm = fake_llm(&fake_url, 0, 10.0);
            c.limits.company_requests = 0;
            c.runs.lease_seconds = 3;
            if let Some(db) = db {
                c.database_url = Some(db);
            }
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_on_one_node_streams_live_and_stops_from_another() {
        let fake = FakeLlm::start().await;
        let prefix = format!("cortex-test-{}", Uuid::new_v4().simple());
        let a = node(&fake, &prefix, None).await;
        let b = node(&fake, &prefix, Some(a.database_url.clone())).await;
        let s = a.admin().await;
        fake.push(Step::text(words(400)).with_chunk_delay(Duration::from_millis(20)));
        let r = start_on(&a, &s, &[("prompt", "long")]).await;
        let run = r.body["agent_run_id"].as_str().unwrap().to_string();
        let on_a = read_stream(&a, &s, &run, None);
        let on_b = read_stream(&b, &s, &run, None);
        let stop = async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            let t = Instant::now();
            let r = b
                .post(&format!("/v1/agent-run/{run}/stop"), &s, json!({}))
                .await;
            (r, t.elapsed())
        };
        let (ea, eb, (stopped, took)) = tokio::join!(on_a, on_b, stop);
        assert_eq!(stopped.body["status"], "stopped", "{}", stopped.body);
        assert!(
            took < Duration::from_secs(1),
            "stop from another node took {took:?}"
        );
        assert_complete(&ea, 0, "stopped");
        assert_eq!(ea, eb, "both nodes' viewers saw the same events");
        assert!(ea.iter().filter(|(_, n, _)| n == "text_delta").count() > 5);
        // A late viewer on B, after the end, gets the same from storage.
        assert_eq!(read_stream(&b, &s, &run, None).await, ea);
        let redis = b.get("/v1/health/redis", &s).await;
        assert_eq!(redis.body["status"], "ok", "{}", redis.body);
        assert!(redis.body["latency_ms"].as_f64().unwrap() >= 0.0);
        let sys = b.get("/v1/metrics/system", &s).await;
        assert_eq!(sys.body["active_agent_runs"], 0, "{}", sys.body);
        assert_eq!(sys.body["orphaned_streams"], 0, "{}", sys.body);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn starts_on_two_nodes_share_one_limit() {
        let fake = FakeLlm::start().await;
        let prefix = format!("cortex-test-{}", Uuid::new_v4().simple());
        let a = node(&fake, &prefix, None).await;
        let b = node(&fake, &prefix, Some(a.database_url.clone())).await;
        let s = a.admin().await;
        let company = a.company_id(&s).await.parse().unwrap();
        a.state.store.set_plan(company, "pro").await.unwrap();
        fake.push(
            Step::text(words(200))
                .with_chunk_delay(Duration::from_millis(20))
                .forever(),
        );
        let prompts: Vec<String> = (0..20).map(|i| format!("race {i}")).collect();
        let starts = prompts.iter().enumerate().map(|(i, p)| {
            let node = if i % 2 == 0 { &a } else { &b };
            let s = &s;
            async move { start_on(node, s, &[("prompt", p.as_str())]).await }
        });
        let results = futures_util::future::join_all(starts).await;
        let ok: Vec<_> = results.iter().filter(|r| r.status == 200).collect();
        assert_eq!(ok.len(), 3, "exactly the limit across both nodes");
        for r in results.iter().filter(|r| r.status != 200) {
            r.assert_error(402, "AGENT_RUN_LIMIT_EXCEEDED");
        }
        for r in ok {
            let id = r.body["agent_run_id"].as_str().unwrap();
            b.post(&format!("/v1/agent-run/{id}/stop"), &s, json!({}))
                .await;
        }
        assert_eq!(
            a.get("/v1/agent-runs/active", &s).await.body["pagination"]["total"],
            0
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_node_is_finalised_by_another_and_its_viewers_get_the_end() {
        let fake = FakeLlm::start().await;
        let prefix = format!("cortex-test-{}", Uuid::new_v4().simple());
        let b = node(&fake, &prefix, None).await;
        let s = b.admin().await;
        // Node A: the real binary, on the same database and Redis.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().unwrap();
        let redis = format!("redis_url = {:?}\nredis_prefix = {prefix:?}", redis_url());
        let config = write_node_config(dir.path(), port, Some(&b.database_url), &fake, &redis);
        let mut child = spawn_node(&config);
        let base_a = format!("http://127.0.0.1:{port}");
        wait_healthy(&b.client, &base_a).await;
        fake.push(Step::text(words(2000)).with_chunk_delay(Duration::from_millis(20)));
        let (ct, body) = multipart(&[("prompt", "work until killed")], &[]);
        let r: Value = b
            .client
            .post(format!("{base_a}/v1/agent/start"))
            .bearer_auth(bearer(&s))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let run = r["agent_run_id"]
            .as_str()
            .expect("started on A")
            .to_string();
        let viewer = read_stream(&b, &s, &run, None);
        let killer = async {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            child.kill().unwrap();
            child.wait().unwrap();
            Instant::now()
        };
        let (events, killed_at) = tokio::join!(viewer, killer);
        assert_complete(&events, 0, "failed");
        assert_eq!(events.last().unwrap().2["error"], "node lost");
        assert!(events.iter().filter(|(_, n, _)| n == "text_delta").count() > 5);
        assert!(killed_at.elapsed() < Duration::from_secs(15));
        let got = b.get(&format!("/v1/agent-run/{run}"), &s).await;
        assert_eq!(got.body["status"], "failed");
        assert_eq!(got.body["error"], "node lost");
        // Stored without a gap (what A published to Redis but never stored was copied).
        assert_eq!(read_stream(&b, &s, &run, None).await, events);
        // The slot is free.
        assert_eq!(
            b.get("/v1/agent-runs/active", &s).await.body["pagination"]["total"],
            0
        );
    }
}

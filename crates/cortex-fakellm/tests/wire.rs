//! End-to-end tests: a plain reqwest client against the in-process fake.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::time::{Duration, Instant};

use cortex_fakellm::{Config, Endpoint, FakeLlm, Step, ToolCall, embed_text};
use futures_util::StreamExt;
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn chat_body(model: &str, text: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "stream_options": {"include_usage": true},
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": text},
        ],
    })
}

async fn post(llm: &FakeLlm, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", llm.base_url()))
        .bearer_auth("sk-test")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Parses an SSE body into its `data:` payloads (and `event:` names).
fn sse(body: &str) -> Vec<(Option<String>, String)> {
    assert!(
        body.ends_with("\n\n"),
        "body must end with a blank line: {body:?}"
    );
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = None;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(d.to_owned());
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (name, data.unwrap())
        })
        .collect()
}

/// Streams a chat completion and returns the parsed chunks (without `[DONE]`).
async fn stream_chunks(llm: &FakeLlm, body: &Value) -> Vec<Value> {
    let resp = post(llm, "/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let events = sse(&text);
    assert_eq!(events.last().unwrap().1, "[DONE]");
    events[..events.len() - 1]
        .iter()
        .map(|(name, d)| {
            assert!(name.is_none());
            serde_json::from_str(d).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn default_blocking_reply_echoes_with_usage() {
    let llm = FakeLlm::start().await;
    assert!(llm.base_url().starts_with("http://127.0.0.1:"));
    assert!(llm.base_url().ends_with("/v1"));
    let resp = post(
        &llm,
        "/chat/completions",
        &chat_body("gpt-test", "hello big world", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-test");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Echo: hello big world");
    assert!(choice["message"].get("tool_calls").is_none());
    // 2 messages * 3 + "You are terse." (3) + "hello big world" (3)
    assert_eq!(v["usage"]["prompt_tokens"], 12);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 16);
}

#[tokio::test]
async fn default_stream_wire_format() {
    let llm = FakeLlm::start().await;
    let chunks = stream_chunks(&llm, &chat_body("m1", "one two three", true)).await;
    let id = chunks[0]["id"].as_str().unwrap().to_owned();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id.as_str());
        assert_eq!(c["model"], "m1");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .collect();
    assert!(content.len() >= 4, "several content deltas: {content:?}");
    assert_eq!(content.concat(), "Echo: one two three");
    // Finish chunk then the usage chunk with empty choices.
    let n = chunks.len();
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[n - 2]["choices"][0]["delta"], json!({}));
    assert!(chunks[n - 2]["usage"].is_null());
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert_eq!(chunks[n - 1]["usage"]["completion_tokens"], 4);
    assert_eq!(chunks[n - 1]["usage"]["prompt_tokens"], 12);
    for c in &chunks[..n - 2] {
        assert!(c["choices"][0]["finish_reason"].is_null());
    }

    // Without include_usage there is no usage chunk and no usage field.
    let mut body = chat_body("m1", "x", true);
    body.as_object_mut().unwrap().remove("stream_options");
    let chunks = stream_chunks(&llm, &body).await;
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

#[tokio::test]
async fn tool_calls_blocking_and_chunked_stream() {
    let llm = FakeLlm::start().await;
    let calls = vec![
        ToolCall::new("get_weather", json!({"city": "Paris", "unit": "celsius"})),
        ToolCall::new("lookup_order", json!({"order_id": "A-1001"})).with_id("call_fixed"),
    ];
    llm.push(Step::tool_calls(calls.clone()));
    llm.push(Step::tool_calls(calls));

    let v: Value = post(
        &llm,
        "/chat/completions",
        &chat_body("m", "weather?", false),
    )
    .await
    .json()
    .await
    .unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let tc = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(tc.len(), 2);
    assert_eq!(tc[0]["type"], "function");
    assert_eq!(tc[0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(tc[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris", "unit": "celsius"}));
    assert!(tc[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(tc[1]["id"], "call_fixed");

    let chunks = stream_chunks(&llm, &chat_body("m", "weather?", true)).await;
    // Merge tool-call deltas by index, as a client does.
    let mut merged: Vec<(String, String, String)> = Vec::new();
    let mut fragments_per_call = [0usize; 2];
    for c in &chunks {
        let Some(choice) = c["choices"].get(0) else {
            continue;
        };
        for d in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = d["index"].as_u64().unwrap() as usize;
            if let Some(id) = d["id"].as_str() {
                assert_eq!(d["type"], "function");
                assert_eq!(merged.len(), i);
                merged.push((
                    id.to_owned(),
                    d["function"]["name"].as_str().unwrap().to_owned(),
                    String::new(),
                ));
            }
            let frag = d["function"]["arguments"].as_str().unwrap();
            if !frag.is_empty() {
                fragments_per_call[i] += 1;
            }
            merged[i].2.push_str(frag);
        }
    }
    assert_eq!(merged.len(), 2);
    assert_eq!(merged[0].1, "get_weather");
    assert_eq!(merged[1].0, "call_fixed");
    assert_eq!(
        serde_json::from_str::<Value>(&merged[0].2).unwrap()["city"],
        "Paris"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&merged[1].2).unwrap()["order_id"],
        "A-1001"
    );
    assert!(
        fragments_per_call.iter().all(|&n| n >= 2),
        "arguments split: {fragments_per_call:?}"
    );
    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    assert!(first["content"].is_null());
    let finish = chunks
        .iter()
        .rev()
        .find_map(|c| c["choices"].get(0)?["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));
    assert_eq!(llm.pending_steps(), 0);
}

#[tokio::test]
async fn text_then_tool_calls_and_raw_arguments() {
    let llm = FakeLlm::start().await;
    llm.push(Step::tool_call("f", json!("{not json")).with_text("Let me check."));
    let chunks = stream_chunks(&llm, &chat_body("m", "q", true)).await;
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Let me check.");
    let args: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"].get(0)?["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        })
        .collect();
    assert_eq!(args, "{not json");
}

#[tokio::test]
async fn script_order_then_default() {
    let llm = FakeLlm::start().await;
    llm.push(Step::text("first"));
    llm.push(Step::text("second").times(2));
    let mut got = Vec::new();
    for _ in 0..4 {
        let v: Value = post(&llm, "/chat/completions", &chat_body("m", "hi", false))
            .await
            .json()
            .await
            .unwrap();
        got.push(
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(got, ["first", "second", "second", "Echo: hi"]);
}

#[tokio::test]
async fn scripted_errors() {
    let llm = FakeLlm::start().await;
    llm.push(Step::error(500, "boom"));
    llm.push(Step::rate_limited(7));
    llm.push(Step::error(400, "context too long").with_error_type(
        "invalid_request_error",
        Some("context_length_exceeded".into()),
    ));

    let r = post(&llm, "/chat/completions", &chat_body("m", "x", false)).await;
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "boom");
    assert_eq!(v["error"]["type"], "server_error");
    assert!(v["error"]["param"].is_null());

    // Errors come back as plain JSON even for streaming requests.
    let r = post(&llm, "/chat/completions", &chat_body("m", "x", true)).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");

    let r = post(&llm, "/chat/completions", &chat_body("m", "x", false)).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded");

    let r = post(&llm, "/chat/completions", &chat_body("m", "x", false)).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn invalid_requests_are_rejected_without_consuming_steps() {
    let llm = FakeLlm::start().await;
    llm.push(Step::text("kept"));
    let r = client()
        .post(format!("{}/chat/completions", llm.base_url()))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let r = post(&llm, "/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(llm.pending_steps(), 1);
    assert_eq!(llm.requests().len(), 2);
    assert_eq!(llm.requests()[0].body, json!("{oops"));
}

#[tokio::test]
async fn per_model_scripting_for_fallback() {
    let llm = FakeLlm::start().await;
    llm.push_for_model("bad", Step::error(503, "overloaded").forever());
    llm.push_for_model("good", Step::text("from good"));
    for _ in 0..3 {
        let r = post(&llm, "/chat/completions", &chat_body("bad", "x", false)).await;
        assert_eq!(r.status(), 503);
    }
    // Unrelated model: default behaviour.
    let v: Value = post(&llm, "/chat/completions", &chat_body("other", "yo", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: yo");
    let v: Value = post(&llm, "/chat/completions", &chat_body("good", "x", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "from good");
    assert_eq!(llm.pending_steps(), 1, "the forever step stays");
    let models: Vec<String> = llm
        .requests()
        .iter()
        .map(|r| r.model().unwrap().to_owned())
        .collect();
    assert_eq!(models, ["bad", "bad", "bad", "other", "good"]);
}

#[tokio::test]
async fn recording_captures_path_headers_and_body() {
    let llm = FakeLlm::start().await;
    llm.push(Step::tool_call("lookup", json!({"q": "x"})));
    let first = json!({
        "model": "m",
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        "messages": [{"role": "user", "content": "find x"}],
    });
    post(&llm, "/chat/completions", &first).await;
    let second = json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "find x"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"x\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"found\":true}"},
        ],
    });
    post(&llm, "/chat/completions", &second).await;
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].header("Authorization"), Some("Bearer sk-test"));
    assert_eq!(reqs[0].tools().len(), 1);
    assert_eq!(reqs[1].messages()[2]["role"], "tool");
    assert_eq!(reqs[1].messages()[2]["content"], "{\"found\":true}");
    assert_eq!(llm.last_request().unwrap(), reqs[1]);
    assert_eq!(llm.chat_requests().len(), 2);
    assert_eq!(llm.request_count(), 2);

    // Same log over HTTP.
    let over_http: Vec<cortex_fakellm::RecordedRequest> = client()
        .get(llm.url("/_admin/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http, reqs);

    llm.reset();
    assert!(llm.requests().is_empty());
    assert_eq!(llm.request_count(), 0);
}

#[tokio::test]
async fn record_log_is_bounded() {
    let llm = FakeLlm::start_with(Config {
        max_recorded: 2,
        ..Config::default()
    })
    .await
    .unwrap();
    for t in ["a", "b", "c"] {
        post(&llm, "/chat/completions", &chat_body("m", t, false)).await;
    }
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].messages()[1]["content"], "b");
    assert_eq!(llm.request_count(), 3);
}

#[tokio::test]
async fn embeddings_shape_and_determinism() {
    let llm = FakeLlm::start().await;
    llm.set_embedding_dimensions(64);
    let r = post(&llm, "/embeddings", &json!({"model": "text-embedding-3-small", "input": ["opening hours", "refund policy now"]})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["object"], "embedding");
    let e0: Vec<f32> = serde_json::from_value(data[0]["embedding"].clone()).unwrap();
    assert_eq!(e0.len(), 64);
    assert_eq!(e0, embed_text("opening hours", 64));
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["total_tokens"], 5);

    // `dimensions` and base64 encoding.
    let v: Value = post(&llm, "/embeddings", &json!({"model": "e", "input": "opening hours", "dimensions": 8, "encoding_format": "base64"}))
        .await
        .json()
        .await
        .unwrap();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(floats, embed_text("opening hours", 8));

    // Scripted embedding error; chat steps are not consumed by embeddings.
    llm.push(Step::text("chat only"));
    llm.push(Step::error(503, "embedder down").on(Endpoint::Embeddings));
    let r = post(&llm, "/embeddings", &json!({"model": "e", "input": "x"})).await;
    assert_eq!(r.status(), 503);
    assert_eq!(llm.pending_steps(), 1);
    let r = post(&llm, "/embeddings", &json!({"model": "e", "input": []})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(llm.embedding_requests().len(), 4);
}

#[tokio::test]
async fn delays_and_default_latency() {
    let llm = FakeLlm::start().await;
    llm.push(Step::text("slow").with_delay(Duration::from_millis(150)));
    let t = Instant::now();
    post(&llm, "/chat/completions", &chat_body("m", "x", false)).await;
    assert!(t.elapsed() >= Duration::from_millis(150));

    llm.set_default_latency(Duration::from_millis(100));
    let t = Instant::now();
    post(&llm, "/embeddings", &json!({"model": "e", "input": "x"})).await;
    assert!(t.elapsed() >= Duration::from_millis(100));
    llm.reset();
    assert_eq!(llm.default_latency(), Duration::ZERO);

    // Chunk delay: 4 content-bearing chunks of "Echo: a b c" + finish spaced by 40 ms.
    llm.push(Step::default_reply().with_chunk_delay(Duration::from_millis(40)));
    let t = Instant::now();
    let chunks = stream_chunks(&llm, &chat_body("m", "a b c", true)).await;
    assert!(chunks.len() >= 6);
    assert!(t.elapsed() >= Duration::from_millis(40 * (chunks.len() as u64 - 1)));
}

#[tokio::test]
async fn dropped_connection_before_response() {
    let llm = FakeLlm::start().await;
    llm.push(Step::drop_connection());
    let err = client()
        .post(format!("{}/chat/completions", llm.base_url()))
        .json(&chat_body("m", "x", false))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status(), "no HTTP response: {err}");
    assert_eq!(
        llm.disconnects(),
        0,
        "scripted drops are not client disconnects"
    );
    // The server keeps serving.
    let r = post(&llm, "/chat/completions", &chat_body("m", "x", false)).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn dropped_connection_mid_stream() {
    let llm = FakeLlm::start().await;
    llm.push(Step::drop_mid_stream(2).with_chunk_delay(Duration::from_millis(10)));
    assert_eq!(read_until_abort(&llm).await, 2);
    llm.push(Step::drop_mid_stream(3));
    assert_eq!(read_until_abort(&llm).await, 3);
    assert_eq!(llm.disconnects(), 0);
}

/// Streams a request whose step aborts mid-stream; returns the number of events received.
async fn read_until_abort(llm: &FakeLlm) -> usize {
    let resp = post(llm, "/chat/completions", &chat_body("m", "a b c d", true)).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut received = Vec::new();
    let mut failed = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(b) => received.extend_from_slice(&b),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the body must end with an error");
    let text = String::from_utf8(received).unwrap();
    assert!(!text.contains("[DONE]"));
    sse(&text).len()
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_counted() {
    let llm = FakeLlm::start().await;
    llm.push(Step::default_reply().with_chunk_delay(Duration::from_millis(50)));
    let resp = post(
        &llm,
        "/chat/completions",
        &chat_body("m", "many words in this message to stream slowly", true),
    )
    .await;
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(stream);
    assert!(llm.wait_for_disconnects(1, Duration::from_secs(5)).await);
    assert_eq!(llm.disconnects(), 1);
}

#[tokio::test]
async fn client_disconnect_during_delay_is_counted() {
    let llm = FakeLlm::start().await;
    llm.push(Step::text("late").with_delay(Duration::from_secs(30)));
    let url = format!("{}/chat/completions", llm.base_url());
    let task = tokio::spawn(async move {
        client()
            .post(url)
            .json(&chat_body("m", "x", false))
            .send()
            .await
    });
    assert!(llm.wait_for_requests(1, Duration::from_secs(5)).await);
    task.abort();
    assert!(llm.wait_for_disconnects(1, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn completed_streams_are_not_disconnects() {
    let llm = FakeLlm::start().await;
    for _ in 0..3 {
        stream_chunks(&llm, &chat_body("m", "a b", true)).await;
    }
    post(&llm, "/chat/completions", &chat_body("m", "a b", false)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(llm.disconnects(), 0);
}

#[tokio::test]
async fn anthropic_messages_blocking_and_stream() {
    let llm = FakeLlm::start().await;
    let body = json!({
        "model": "claude-test", "max_tokens": 100, "system": "be brief",
        "messages": [{"role": "user", "content": "hi there"}],
    });
    let r = client()
        .post(llm.url("/v1/messages"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Echo: hi there"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], 2 + 3 + 2);
    assert_eq!(v["usage"]["output_tokens"], 3);
    assert_eq!(llm.last_request().unwrap().header("x-api-key"), Some("k"));

    llm.push(Step::tool_call("get_weather", json!({"city": "Oslo"})).with_text("Checking."));
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let text = client()
        .post(llm.url("/v1/messages"))
        .json(&sbody)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(names[0], "message_start");
    assert_eq!(names[names.len() - 2], "message_delta");
    assert_eq!(names[names.len() - 1], "message_stop");
    let mut text_out = String::new();
    let mut json_out = String::new();
    let mut tool_name = None;
    for (name, data) in &events {
        let d: Value = serde_json::from_str(data).unwrap();
        assert_eq!(d["type"], name.as_deref().unwrap());
        match name.as_deref().unwrap() {
            "content_block_start" if d["content_block"]["type"] == "tool_use" => {
                assert_eq!(d["index"], 1);
                tool_name = d["content_block"]["name"].as_str().map(str::to_owned);
            }
            "content_block_delta" => match d["delta"]["type"].as_str().unwrap() {
                "text_delta" => text_out.push_str(d["delta"]["text"].as_str().unwrap()),
                "input_json_delta" => {
                    json_out.push_str(d["delta"]["partial_json"].as_str().unwrap())
                }
                other => panic!("unexpected delta {other}"),
            },
            "message_delta" => assert_eq!(d["delta"]["stop_reason"], "tool_use"),
            _ => {}
        }
    }
    assert_eq!(text_out, "Checking.");
    assert_eq!(tool_name.as_deref(), Some("get_weather"));
    assert_eq!(
        serde_json::from_str::<Value>(&json_out).unwrap(),
        json!({"city": "Oslo"})
    );

    // Anthropic-style errors and validation.
    llm.push(Step::error(529, "busy"));
    let r = client()
        .post(llm.url("/v1/messages"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 529);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    );
    let r = client()
        .post(llm.url("/v1/messages"))
        .json(&json!({"model": "c", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn admin_http_api_scripts_a_separate_process_style_client() {
    let llm = FakeLlm::start().await;
    let c = client();
    let r = c
        .post(llm.url("/_admin/script"))
        .json(&json!([
            {"type": "error", "status": 503, "model": "bad", "forever": true},
            {"type": "text", "text": "scripted", "model": "good"},
            {"type": "tool_calls", "tool_calls": [{"name": "f", "arguments": {"a": 1}}]},
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"queued": 3, "pending_steps": 3})
    );

    let r = c
        .post(llm.url("/_admin/script"))
        .json(&json!({"type": "txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    assert_eq!(
        post(&llm, "/chat/completions", &chat_body("bad", "x", false))
            .await
            .status(),
        503
    );
    let v: Value = post(&llm, "/chat/completions", &chat_body("good", "x", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "scripted");
    let v: Value = post(&llm, "/chat/completions", &chat_body("good", "x", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    let stats: Value = c
        .get(llm.url("/_admin/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"], 3);
    assert_eq!(stats["pending_steps"], 1);
    assert_eq!(stats["disconnects"], 0);

    let stats: Value = c
        .post(llm.url("/_admin/config"))
        .json(&json!({"default_latency_ms": 5, "embedding_dimensions": 16}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["default_latency_ms"], 5);
    assert_eq!(stats["embedding_dimensions"], 16);

    let r = c.post(llm.url("/_admin/reset")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"ok": true}));
    let stats: Value = c
        .get(llm.url("/_admin/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"], 0);
    assert_eq!(stats["pending_steps"], 0);
    assert_eq!(stats["default_latency_ms"], 0);
    assert_eq!(stats["embedding_dimensions"], 1536);

    let h: Value = c
        .get(llm.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h, json!({"status": "ok"}));
    assert!(
        llm.requests().is_empty(),
        "admin and health are not recorded"
    );
}

#[tokio::test]
async fn shutdown_on_drop() {
    let llm = FakeLlm::start().await;
    let url = llm.url("/health");
    assert_eq!(client().get(&url).send().await.unwrap().status(), 200);
    drop(llm);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    assert!(fresh.get(&url).send().await.is_err());
}

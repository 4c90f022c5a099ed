//! HTTP-boundary tests of the providers, retries, timeouts, fallback and cancellation against a
//! scripted fake server on 127.0.0.1.

// Test helpers outside #[test] functions panic on a failed setup step, as tests should.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cortex_llm::{
    AnthropicProvider, ChatRequest, FinishReason, HttpSettings, LlmConfig, LlmError, Message,
    ModelChain, OpenAiProvider, Provider, RetryPolicy, StreamEvent, Tier, ToolCall, ToolDef, Usage,
};
use fake::{Fake, Reply, anthropic_event, openai_chunk};
use futures::StreamExt;
use serde_json::{Value, json};

fn fast_retry(n: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries: n,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(2),
    }
}

fn openai(fake: &Fake, retries: u32) -> OpenAiProvider {
    let settings = HttpSettings::new(fake.url("/v1"))
        .with_api_key("sk-test")
        .with_timeout(Duration::from_secs(5))
        .with_retry(fast_retry(retries));
    OpenAiProvider::new("fake-openai", settings).unwrap()
}

fn anthropic(fake: &Fake, retries: u32) -> AnthropicProvider {
    let settings = HttpSettings::new(fake.url(""))
        .with_api_key("ak-test")
        .with_timeout(Duration::from_secs(5))
        .with_retry(fast_retry(retries));
    AnthropicProvider::new("fake-anthropic", settings, None).unwrap()
}

fn request() -> ChatRequest {
    ChatRequest::new(
        "gpt-4o-mini",
        vec![
            Message::system("You are a helpful agent."),
            Message::user("Where is my order 1234?"),
        ],
    )
    .with_tools(vec![ToolDef {
        name: "get_order_status".into(),
        description: "Look up an order".into(),
        parameters: json!({"type":"object","properties":{"order_id":{"type":"string"}}}),
    }])
}

fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}
    })
}

fn ok(content: &str) -> Reply {
    Reply::Json(200, completion(content), vec![])
}

fn status(code: u16) -> Reply {
    Reply::Json(
        code,
        json!({"error": {"message": format!("status {code}")}}),
        vec![],
    )
}

async fn collect(mut stream: cortex_llm::ChatStream) -> Vec<Result<StreamEvent, LlmError>> {
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(item);
    }
    out
}

#[tokio::test]
async fn openai_blocking_chat() {
    let fake = Fake::start(vec![ok("It ships tomorrow.")]).await;
    let provider = openai(&fake, 0);
    assert!(
        !format!("{provider:?}").contains("sk-test"),
        "API key in Debug output"
    );
    let resp = provider.chat(&request()).await.unwrap();
    assert_eq!(resp.content, "It ships tomorrow.");
    assert_eq!(resp.model, "gpt-4o-mini-2024-07-18");
    assert_eq!(resp.finish_reason, FinishReason::Stop);
    assert_eq!(
        resp.usage,
        Usage {
            input_tokens: 42,
            output_tokens: 7
        }
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].headers["authorization"], "Bearer sk-test");
    assert_eq!(seen[0].body["model"], "gpt-4o-mini");
    assert_eq!(seen[0].body["messages"][0]["role"], "system");
    assert_eq!(
        seen[0].body["tools"][0]["function"]["name"],
        "get_order_status"
    );
    assert_eq!(seen[0].body["tool_choice"], "auto");
    assert!(seen[0].body.get("stream").is_none());
}

#[tokio::test]
async fn openai_blocking_tool_calls_and_unknown_fields() {
    let body = json!({
        "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_order_status", "arguments": "{\"order_id\":\"1234\"}"}}
        ], "new_field": 1}, "finish_reason": "tool_calls"}],
        "service_tier": "default"
    });
    let fake = Fake::start(vec![Reply::Json(200, body, vec![])]).await;
    let resp = openai(&fake, 0).chat(&request()).await.unwrap();
    assert_eq!(resp.content, "");
    assert_eq!(resp.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        resp.tool_calls,
        vec![ToolCall {
            id: "call_1".into(),
            name: "get_order_status".into(),
            arguments: "{\"order_id\":\"1234\"}".into()
        }]
    );
    // No usage in the response: filled from local counts.
    assert!(resp.usage.input_tokens > 20, "{:?}", resp.usage);
    assert!(resp.usage.output_tokens > 5, "{:?}", resp.usage);
    assert_eq!(resp.model, "gpt-4o-mini");
}

#[tokio::test]
async fn openai_streaming_merges_tool_call_deltas_and_reports_usage() {
    let frames = vec![
        openai_chunk(&json!({"role": "assistant", "content": ""}), None),
        openai_chunk(&json!({"content": "Let me "}), None),
        openai_chunk(&json!({"content": "check."}), None),
        openai_chunk(
            &json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                "function": {"name": "get_order_status", "arguments": ""}}]}),
            None,
        ),
        openai_chunk(
            &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"order_"}}]}),
            None,
        ),
        openai_chunk(
            &json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                "function": {"name": "track", "arguments": "{}"}}]}),
            None,
        ),
        openai_chunk(
            &json!({"tool_calls": [{"index": 0, "function": {"arguments": "id\":\"1234\"}"}}]}),
            None,
        ),
        openai_chunk(&json!({}), Some("tool_calls")),
        format!(
            "data: {}\n\n",
            json!({"choices": [], "model": "gpt-fake-0001",
                   "usage": {"prompt_tokens": 30, "completion_tokens": 12}})
        ),
        "data: [DONE]\n\n".to_owned(),
    ];
    let fake = Fake::start(vec![Reply::Sse(frames)]).await;
    let stream = openai(&fake, 0).chat_stream(&request()).await.unwrap();
    let events: Vec<StreamEvent> = collect(stream)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let usage = Usage {
        input_tokens: 30,
        output_tokens: 12,
    };
    let call_a = ToolCall {
        id: "call_a".into(),
        name: "get_order_status".into(),
        arguments: "{\"order_id\":\"1234\"}".into(),
    };
    let call_b = ToolCall {
        id: "call_b".into(),
        name: "track".into(),
        arguments: "{}".into(),
    };
    assert_eq!(
        events[..5],
        [
            StreamEvent::TextDelta("Let me ".into()),
            StreamEvent::TextDelta("check.".into()),
            StreamEvent::ToolCall(call_a.clone()),
            StreamEvent::ToolCall(call_b.clone()),
            StreamEvent::Usage(usage),
        ]
    );
    let StreamEvent::Done(done) = &events[5] else {
        panic!("{events:?}")
    };
    assert_eq!(events.len(), 6);
    assert_eq!(done.content, "Let me check.");
    assert_eq!(done.tool_calls, vec![call_a, call_b]);
    assert_eq!(done.usage, usage);
    assert_eq!(done.model, "gpt-fake-0001");
    assert_eq!(done.finish_reason, FinishReason::ToolCalls);
    let seen = fake.seen();
    assert_eq!(seen[0].body["stream"], true);
    assert_eq!(seen[0].body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn openai_stream_without_usage_or_done_counts_tokens_locally() {
    // Like an old Ollama: no usage chunk, connection closed after the finish reason.
    let frames = vec![
        openai_chunk(&json!({"content": "Hello there"}), None),
        openai_chunk(&json!({}), Some("stop")),
    ];
    let fake = Fake::start(vec![Reply::Sse(frames)]).await;
    let req = request();
    let events: Vec<StreamEvent> = collect(openai(&fake, 0).chat_stream(&req).await.unwrap())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let expected = cortex_llm::tokens::estimate_usage(&req, "Hello there", &[]);
    assert_eq!(events[1], StreamEvent::Usage(expected));
    assert!(matches!(&events[2], StreamEvent::Done(d) if d.content == "Hello there"));
}

#[tokio::test]
async fn anthropic_blocking_chat() {
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_order_status",
                     "input": {"order_id": "1234"}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 50, "output_tokens": 20}
    });
    let fake = Fake::start(vec![Reply::Json(200, body, vec![])]).await;
    let resp = anthropic(&fake, 0).chat(&request()).await.unwrap();
    assert_eq!(resp.content, "Checking.");
    assert_eq!(resp.tool_calls[0].id, "toolu_1");
    assert_eq!(resp.tool_calls[0].arguments, "{\"order_id\":\"1234\"}");
    assert_eq!(resp.finish_reason, FinishReason::ToolCalls);
    assert_eq!(resp.usage.input_tokens, 50);
    assert_eq!(resp.usage.output_tokens, 20);
    let seen = fake.seen();
    assert_eq!(seen[0].path, "/v1/messages");
    assert_eq!(seen[0].headers["x-api-key"], "ak-test");
    assert_eq!(seen[0].headers["anthropic-version"], "2023-06-01");
    assert!(seen[0].headers.get("authorization").is_none());
    assert_eq!(seen[0].body["system"], "You are a helpful agent.");
    assert_eq!(seen[0].body["messages"][0]["role"], "user");
    assert_eq!(seen[0].body["tools"][0]["input_schema"]["type"], "object");
    assert!(seen[0].body["max_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn anthropic_streaming_text_tool_use_and_usage() {
    let frames = vec![
        anthropic_event(&json!({"type": "message_start", "message": {"id": "msg_1",
            "model": "claude-3-5-haiku-20241022", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 25, "output_tokens": 1}}})),
        anthropic_event(&json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}})),
        anthropic_event(&json!({"type": "ping"})),
        anthropic_event(&json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "One "}})),
        anthropic_event(&json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "moment."}})),
        anthropic_event(&json!({"type": "content_block_stop", "index": 0})),
        anthropic_event(&json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_9", "name": "get_order_status",
                              "input": {}}})),
        anthropic_event(&json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "{\"order_id\": "}})),
        anthropic_event(&json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "\"1234\"}"}})),
        anthropic_event(&json!({"type": "content_block_stop", "index": 1})),
        anthropic_event(&json!({"type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": null},
            "usage": {"output_tokens": 31}})),
        anthropic_event(&json!({"type": "message_stop"})),
    ];
    let fake = Fake::start(vec![Reply::Sse(frames)]).await;
    let events: Vec<StreamEvent> =
        collect(anthropic(&fake, 0).chat_stream(&request()).await.unwrap())
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let call = ToolCall {
        id: "toolu_9".into(),
        name: "get_order_status".into(),
        arguments: "{\"order_id\": \"1234\"}".into(),
    };
    let usage = Usage {
        input_tokens: 25,
        output_tokens: 31,
    };
    assert_eq!(
        events[..4],
        [
            StreamEvent::TextDelta("One ".into()),
            StreamEvent::TextDelta("moment.".into()),
            StreamEvent::ToolCall(call.clone()),
            StreamEvent::Usage(usage),
        ]
    );
    let StreamEvent::Done(done) = &events[4] else {
        panic!("{events:?}")
    };
    assert_eq!(done.content, "One moment.");
    assert_eq!(done.tool_calls, vec![call]);
    assert_eq!(done.finish_reason, FinishReason::ToolCalls);
    assert_eq!(done.model, "claude-3-5-haiku-20241022");
    assert_eq!(fake.seen()[0].body["stream"], true);
}

#[tokio::test]
async fn retries_500_then_succeeds() {
    let fake = Fake::start(vec![status(500), status(502), ok("finally")]).await;
    let resp = openai(&fake, 2).chat(&request()).await.unwrap();
    assert_eq!(resp.content, "finally");
    assert_eq!(fake.hits(), 3);
}

#[tokio::test]
async fn retries_are_bounded() {
    let fake = Fake::start(vec![status(503)]).await;
    let err = openai(&fake, 2).chat(&request()).await.unwrap_err();
    assert!(
        matches!(err, LlmError::Status { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(fake.hits(), 3);
    assert_eq!(err.http_status(), 503);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let fake = Fake::start(vec![status(400), ok("never")]).await;
    let err = openai(&fake, 2).chat(&request()).await.unwrap_err();
    match &err {
        LlmError::Status { status, body, .. } => {
            assert_eq!(*status, 400);
            assert!(body.contains("status 400"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(fake.hits(), 1);
}

#[tokio::test]
async fn retry_after_429_is_honoured() {
    let limited = Reply::Json(
        429,
        json!({"error": {"message": "slow down"}}),
        vec![("retry-after", "1".into())],
    );
    let fake = Fake::start(vec![limited, ok("after the wait")]).await;
    let started = Instant::now();
    let resp = openai(&fake, 2).chat(&request()).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(resp.content, "after the wait");
    assert_eq!(fake.hits(), 2);
    // The backoff alone would be ≤ 40 ms: the 1 s wait comes from Retry-After.
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
}

#[tokio::test]
async fn long_retry_after_gives_up_at_once() {
    let limited = Reply::Json(429, json!({}), vec![("retry-after", "120".into())]);
    let fake = Fake::start(vec![limited, ok("never")]).await;
    let started = Instant::now();
    let err = openai(&fake, 2).chat(&request()).await.unwrap_err();
    assert!(
        matches!(err, LlmError::Status { status: 429, retry_after: Some(d), .. } if d == Duration::from_secs(120)),
        "{err:?}"
    );
    assert_eq!(fake.hits(), 1);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn connection_refused_is_unreachable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let settings = HttpSettings::new(format!("http://{addr}/v1")).with_retry(fast_retry(1));
    let provider = OpenAiProvider::new("down", settings).unwrap();
    let err = provider.chat(&request()).await.unwrap_err();
    assert!(matches!(err, LlmError::Unreachable(_)), "{err:?}");
    assert_eq!(err.http_status(), 503);
    assert_eq!(err.public_code(), "SERVICE_UNAVAILABLE");
    let Err(err) = provider.chat_stream(&request()).await else {
        panic!("stream call succeeded")
    };
    assert!(matches!(err, LlmError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn slow_server_times_out() {
    let fake = Fake::start(vec![Reply::Delay(
        Duration::from_secs(3),
        Box::new(ok("too late")),
    )])
    .await;
    let settings = HttpSettings::new(fake.url("/v1"))
        .with_timeout(Duration::from_millis(200))
        .with_retry(RetryPolicy::none());
    let provider = OpenAiProvider::new("slow", settings).unwrap();
    let started = Instant::now();
    let err = provider.chat(&request()).await.unwrap_err();
    assert!(matches!(err, LlmError::Timeout(_)), "{err:?}");
    assert_eq!(err.http_status(), 504);
    assert_eq!(err.public_code(), "GATEWAY_TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(2));
    let Err(err) = provider.chat_stream(&request()).await else {
        panic!("stream call succeeded")
    };
    assert!(matches!(err, LlmError::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn stalled_stream_times_out_between_chunks() {
    let fake = Fake::start(vec![Reply::SseThenStall(vec![openai_chunk(
        &json!({"content": "partial"}),
        None,
    )])])
    .await;
    let settings = HttpSettings::new(fake.url("/v1"))
        .with_timeout(Duration::from_millis(300))
        .with_retry(RetryPolicy::none());
    let provider = OpenAiProvider::new("stall", settings).unwrap();
    let events = collect(provider.chat_stream(&request()).await.unwrap()).await;
    assert!(matches!(&events[0], Ok(StreamEvent::TextDelta(t)) if t == "partial"));
    assert!(
        matches!(&events[1], Err(LlmError::Timeout(_))),
        "{events:?}"
    );
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_upstream_request() {
    let fake = Fake::start(vec![Reply::Endless]).await;
    let mut stream = openai(&fake, 0).chat_stream(&request()).await.unwrap();
    for _ in 0..3 {
        assert!(matches!(
            stream.next().await,
            Some(Ok(StreamEvent::TextDelta(_)))
        ));
    }
    assert!(!fake.disconnected());
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fake.disconnected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        fake.disconnected(),
        "the server did not see the client go away"
    );
}

#[tokio::test]
async fn cancelling_a_call_closes_the_connection() {
    let fake = Fake::start(vec![Reply::SseThenStall(vec![])]).await;
    let token = tokio_util::sync::CancellationToken::new();
    let provider = openai(&fake, 0);
    let req = request();
    let call = cortex_llm::with_cancel(&token, async {
        let stream = provider.chat_stream(&req).await?;
        let events = collect(stream).await;
        Ok(events.len())
    });
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        token.cancel();
    };
    let (out, ()) = tokio::join!(call, canceller);
    assert!(matches!(out, Err(LlmError::Cancelled)), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fake.disconnected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fake.disconnected());
}

#[tokio::test]
async fn chain_falls_back_to_the_next_model() {
    let broken = Fake::start(vec![status(503)]).await;
    let healthy = Fake::start(vec![ok("from the fallback")]).await;
    let chain = ModelChain::new(vec![
        (
            Arc::new(openai(&broken, 1)) as Arc<dyn Provider>,
            "primary-model".into(),
        ),
        (
            Arc::new(openai(&healthy, 1)) as Arc<dyn Provider>,
            "backup-model".into(),
        ),
    ]);
    let out = chain.chat(&request()).await.unwrap();
    assert_eq!(out.response.content, "from the fallback");
    assert_eq!(out.answered_by.position, 1);
    assert_eq!(out.answered_by.model, "backup-model");
    assert_eq!(out.answered_by.provider, "fake-openai");
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].model, "primary-model");
    assert!(matches!(
        out.failures[0].error,
        LlmError::Status { status: 503, .. }
    ));
    // The primary was retried once before the chain moved on.
    assert_eq!(broken.hits(), 2);
    assert_eq!(broken.seen()[0].body["model"], "primary-model");
    assert_eq!(healthy.seen()[0].body["model"], "backup-model");
}

#[tokio::test]
async fn chain_reports_the_last_error_when_all_fail() {
    let a = Fake::start(vec![status(500)]).await;
    let b = Fake::start(vec![status(401)]).await;
    let chain = ModelChain::new(vec![
        (Arc::new(openai(&a, 0)) as Arc<dyn Provider>, "a".into()),
        (Arc::new(openai(&b, 0)) as Arc<dyn Provider>, "b".into()),
    ]);
    let err = chain.chat(&request()).await.unwrap_err();
    assert!(
        matches!(err, LlmError::Status { status: 401, .. }),
        "{err:?}"
    );
    let empty = ModelChain::default();
    assert!(matches!(
        empty.chat(&request()).await,
        Err(LlmError::Config(_))
    ));
}

#[tokio::test]
async fn stream_falls_back_only_before_the_first_event() {
    let ok_frames = vec![
        openai_chunk(&json!({"content": "backup answer"}), Some("stop")),
        "data: [DONE]\n\n".to_owned(),
    ];
    // The primary fails before any event: the backup answers.
    let broken = Fake::start(vec![status(500)]).await;
    let healthy = Fake::start(vec![Reply::Sse(ok_frames.clone())]).await;
    let chain = ModelChain::new(vec![
        (
            Arc::new(openai(&broken, 0)) as Arc<dyn Provider>,
            "primary".into(),
        ),
        (
            Arc::new(openai(&healthy, 0)) as Arc<dyn Provider>,
            "backup".into(),
        ),
    ]);
    let out = chain.chat_stream(&request()).await.unwrap();
    assert_eq!(out.answered_by.position, 1);
    let events = collect(out.stream).await;
    assert!(matches!(&events[0], Ok(StreamEvent::TextDelta(t)) if t == "backup answer"));
    assert!(matches!(events.last(), Some(Ok(StreamEvent::Done(_)))));

    // The primary yields an event and then breaks: no fallback, the error reaches the caller.
    let flaky = Fake::start(vec![Reply::SseThenClose(vec![openai_chunk(
        &json!({"content": "half"}),
        None,
    )])])
    .await;
    let healthy = Fake::start(vec![Reply::Sse(ok_frames)]).await;
    let chain = ModelChain::new(vec![
        (
            Arc::new(openai(&flaky, 0)) as Arc<dyn Provider>,
            "primary".into(),
        ),
        (
            Arc::new(openai(&healthy, 0)) as Arc<dyn Provider>,
            "backup".into(),
        ),
    ]);
    let out = chain.chat_stream(&request()).await.unwrap();
    assert_eq!(out.answered_by.position, 0);
    let events = collect(out.stream).await;
    assert!(matches!(&events[0], Ok(StreamEvent::TextDelta(t)) if t == "half"));
    assert!(
        matches!(events.last(), Some(Err(e)) if e.is_retryable()),
        "{events:?}"
    );
    assert_eq!(healthy.hits(), 0);
}

#[tokio::test]
async fn tiered_client_from_config_uses_tier_chains_and_prices() {
    let openai_fake = Fake::start(vec![status(500)]).await;
    let claude_fake = Fake::start(vec![Reply::Json(
        200,
        json!({"model": "claude-3-5-haiku-20241022",
               "content": [{"type": "text", "text": "hello from claude"}],
               "stop_reason": "end_turn",
               "usage": {"input_tokens": 1000, "output_tokens": 100}}),
        vec![],
    )])
    .await;
    let config: LlmConfig = serde_json::from_value(json!({
        "providers": {
            "oa": {"kind": "openai", "base_url": openai_fake.url("/v1"), "api_key": "sk",
                   "retries": 0, "timeout_secs": 5},
            "claude": {"kind": "anthropic", "base_url": claude_fake.url(""), "api_key": "ak",
                       "retries": 0}
        },
        "tiers": {
            "nano": [{"provider": "oa", "model": "gpt-4o-mini"},
                     {"provider": "claude", "model": "claude-3-5-haiku-latest"}]
        }
    }))
    .unwrap();
    let client = config.build().unwrap();
    let out = client.chat(Tier::Speed, &request()).await.unwrap();
    assert_eq!(out.response.content, "hello from claude");
    assert_eq!(out.answered_by.tier, Some(Tier::Nano));
    assert_eq!(out.answered_by.provider, "claude");
    assert_eq!(out.answered_by.model, "claude-3-5-haiku-latest");
    let cost = client.cost_usd(&out.answered_by.model, &out.response.usage);
    assert!(
        (cost - (1000.0 * 0.80 + 100.0 * 4.00) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    assert_eq!(openai_fake.hits(), 1);
    assert_eq!(claude_fake.seen()[0].headers["x-api-key"], "ak");
}

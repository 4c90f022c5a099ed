//! `/v1/chat` and `/v1/chat/stream` end to end, against a scripted OpenAI-compatible server and a
//! recording webhook receiver.

use std::time::Duration;

use cortex_fakellm::{FakeLlm, Step};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Auth, Backend, Receiver, TestApp, eventually, fake_llm, spawn_app, spawn_app_with,
};
use crate::on_every_backend;

on_every_backend!(
    reply_has_the_contract_shape,
    zero_configuration_answers_from_faqs,
    stream_events_arrive_in_order,
    tool_loop_runs_one_round,
    tool_loop_is_capped_at_five_rounds,
    retries_then_fallback_to_the_next_model,
    unreachable_model_is_503_and_slow_model_is_504,
    template_variables_reach_the_model,
    router_picks_the_tier_and_a_pin_overrides_it,
    optimizer_fits_the_budget_and_keeps_identity,
    conversation_history_is_used,
    repeated_questions_are_served_from_the_cache,
    requests_are_validated,
    client_disconnect_cancels_the_model_call,
    heartbeats_keep_the_stream_alive,
);

struct Env {
    app: TestApp,
    fake: FakeLlm,
    s: Auth,
    company: String,
}

async fn env(b: Backend) -> Env {
    env_with(b, 0, 5.0).await
}

async fn env_with(b: Backend, retries: u32, timeout: f64) -> Env {
    let fake = FakeLlm::start().await;
    let url = fake.base_url().to_string();
    let app = spawn_app_with(b, |c| {
        c.llm = fake_llm(&url, retries, timeout);
        c.network.allow_private = true;
        c.limits.sse_heartbeat_seconds = 0.2;
    })
    .await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    Env {
        app,
        fake,
        s,
        company,
    }
}

impl Env {
    async fn agent(&self, body: Value) -> String {
        self.app.create_agent(&self.s, body).await
    }

    async fn chat(&self, agent: &str, conversation: &str, message: &str) -> crate::helpers::Resp {
        self.app
            .post(
                "/v1/chat",
                &self.s,
                TestApp::chat_body(&self.company, agent, conversation, message),
            )
            .await
    }

    /// The raw SSE body of `/v1/chat/stream`, parsed into (event, data) pairs.
    async fn stream(&self, agent: &str, message: &str) -> Vec<(String, Value)> {
        let body = TestApp::chat_body(
            &self.company,
            agent,
            &uuid::Uuid::new_v4().to_string(),
            message,
        );
        let Auth::Bearer(token) = &self.s else {
            unreachable!()
        };
        let resp = self
            .app
            .client
            .post(format!("{}/v1/chat/stream", self.app.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        parse_sse(&resp.text().await.unwrap())
    }
}

fn conv() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn parse_sse(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut name = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                name = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).unwrap());
            }
        }
        if let (Some(n), Some(d)) = (name, data) {
            out.push((n, d));
        }
    }
    out
}

fn order_action(receiver: &Receiver) -> Value {
    json!({
        "name": "get_order_status",
        "description": "Look up an order by id",
        "method": "GET",
        "webhook_url": format!("{}/api", receiver.base),
        "path_template": "/orders/{order_id}",
        "parameters_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
    })
}

async fn agent_with_order_tool(e: &Env, receiver: &Receiver) -> String {
    let action = e
        .app
        .post("/v1/actions", &e.s, order_action(receiver))
        .await;
    assert_eq!(action.status, 201, "{}", action.body);
    e.agent(json!({"name": "Orders", "action_ids": [action.body["id"]], "settings": {"tier": "sonnet", "cache_enabled": false}})).await
}

async fn reply_has_the_contract_shape(b: Backend) {
    let e = env(b).await;
    let agent = e
        .agent(json!({"name": "Support", "system_prompt": "You are {{ agent.name }}.", "settings": {"tier": "nano", "cache_enabled": false}}))
        .await;
    e.fake.push(
        Step::text("Our business hours are Sunday to Thursday, 9 AM to 6 PM.").with_usage(1250, 28),
    );
    let r = e
        .chat(&agent, &conv(), "What are your business hours?")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let timings = r.body["step_timings"].as_object().unwrap();
    for key in [
        "config_load",
        "memory_recall",
        "context_engine",
        "token_optimizer",
        "cache_check",
        "model_router",
        "agent_compiler",
        "tool_call_rounds",
        "tool_execution",
    ] {
        assert!(timings[key].is_u64(), "{key}");
    }
    let total: u64 = [
        "config_load",
        "memory_recall",
        "context_engine",
        "token_optimizer",
        "cache_check",
        "model_router",
        "agent_compiler",
    ]
    .iter()
    .map(|k| timings[*k].as_u64().unwrap())
    .sum();
    assert!(
        r.body["latency_ms"].as_u64().unwrap() + 7 >= total,
        "stages cannot exceed the whole"
    );
    insta::assert_json_snapshot!("chat_reply", r.body, {
        ".latency_ms" => "[ms]",
        ".step_timings.config_load" => "[ms]",
        ".step_timings.memory_recall" => "[ms]",
        ".step_timings.context_engine" => "[ms]",
        ".step_timings.token_optimizer" => "[ms]",
        ".step_timings.cache_check" => "[ms]",
        ".step_timings.model_router" => "[ms]",
        ".step_timings.agent_compiler" => "[ms]",
        ".step_timings.tool_execution" => "[ms]",
    });
    let req = e.fake.chat_requests().pop().unwrap();
    assert_eq!(req.model(), Some("m-nano"));
    let messages = req.messages();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[0]["content"], "You are Support.");
    assert_eq!(
        messages.last().unwrap()["content"],
        "What are your business hours?"
    );
}

async fn zero_configuration_answers_from_faqs(b: Backend) {
    let app = spawn_app(b).await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    let agent = app
        .create_agent(&s, json!({"name": "FAQ bot",
            "workflow_faqs": [{"question": "What are your business hours?", "answer": "Sunday to Thursday, 9 AM to 6 PM."}],
            "knowledge_documents": [{"title": "Returns", "content": "Returns are free within 30 days. Refunds take 5 business days."}]}))
        .await;
    let ask = |m: &'static str| {
        app.post(
            "/v1/chat",
            &s,
            TestApp::chat_body(&company, &agent, &conv(), m),
        )
    };
    let r = ask("what are your business hours").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["reply"], "Sunday to Thursday, 9 AM to 6 PM.");
    assert_eq!(r.body["model_used"], "extractive");
    assert_eq!(r.body["tokens"]["cost_usd"], 0.0);
    assert_eq!(
        ask("How long do refunds take?").await.body["reply"],
        "Refunds take 5 business days."
    );
    let unknown = ask("Do you sell used cars?").await;
    assert!(
        unknown.body["reply"]
            .as_str()
            .unwrap()
            .contains("don't have information"),
        "{}",
        unknown.body
    );
}

async fn stream_events_arrive_in_order(b: Backend) {
    let e = env(b).await;
    let agent = e
        .agent(json!({"name": "S", "settings": {"cache_enabled": false}}))
        .await;
    e.fake
        .push(Step::text("Hello there, how can I help you today?").with_usage(40, 9));
    let events = e.stream(&agent, "hello").await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let deltas = names.iter().take_while(|n| **n == "text_delta").count();
    assert!(deltas >= 3, "streamed in pieces: {names:?}");
    assert_eq!(&names[deltas..], &["usage", "complete"], "{names:?}");
    let text: String = events[..deltas]
        .iter()
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello there, how can I help you today?");
    assert_eq!(
        events[deltas].1,
        json!({"inputTokens": 40, "outputTokens": 9, "cost_usd": 0.0})
    );
    let complete = &events[deltas + 1].1;
    assert_eq!(complete["totalTokens"], 49);
    assert_eq!(complete["reply"], text);
    assert!(
        complete["latencyMs"].is_u64()
            && complete["step_timings"].is_object()
            && complete["context_tokens"].is_object()
    );
    assert!(
        e.fake.chat_requests()[0].is_stream(),
        "the model was streamed"
    );
}

async fn tool_loop_runs_one_round(b: Backend) {
    let e = env(b).await;
    let receiver = Receiver::start().await;
    let agent = agent_with_order_tool(&e, &receiver).await;
    e.fake.push(Step::tool_call(
        "get_order_status",
        json!({"order_id": "ORD-1234"}),
    ));
    e.fake.push(Step::text(
        "Your order ORD-1234 has shipped and arrives May 14.",
    ));
    let r = e
        .chat(&agent, &conv(), "Where is my order #ORD-1234?")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["reply"],
        "Your order ORD-1234 has shipped and arrives May 14."
    );
    assert_eq!(r.body["actions_executed"], json!(["get_order_status"]));
    assert_eq!(r.body["step_timings"]["tool_call_rounds"], 1);
    assert_eq!(r.body["model_used"], "sonnet");
    let calls = receiver.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].0.as_str(), calls[0].1.as_str()),
        ("GET", "/api/orders/ORD-1234")
    );
    let reqs = e.fake.chat_requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].tools()[0]["function"]["name"], "get_order_status");
    // One usage row per model call, the turn's figures on the last.
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT input_tokens, tool_rounds FROM usage_events ORDER BY tool_rounds")
            .fetch_all(&e.app.raw_db().await)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1].1, 1);
    let total: i64 = rows.iter().map(|r| r.0).sum();
    assert_eq!(total, r.body["tokens"]["input"].as_i64().unwrap());
    let tool_msg = reqs[1]
        .messages()
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("tool result sent back");
    assert!(
        tool_msg["content"].as_str().unwrap().contains("shipped"),
        "{tool_msg}"
    );

    // Streamed, the tool call and its result are events.
    e.fake.push(Step::tool_call(
        "get_order_status",
        json!({"order_id": "ORD-9"}),
    ));
    e.fake.push(Step::text("Shipped."));
    let events = e.stream(&agent, "status of ORD-9?").await;
    let call = events
        .iter()
        .find(|(n, _)| n == "tool_call")
        .expect("tool_call event");
    assert_eq!(call.1["name"], "get_order_status");
    assert_eq!(call.1["arguments"], json!({"order_id": "ORD-9"}));
    let call_id = call.1["call_id"].as_str().expect("call_id");
    let result = events
        .iter()
        .find(|(n, _)| n == "tool_result")
        .expect("tool_result event");
    assert_eq!(result.1["name"], "get_order_status");
    assert_eq!(result.1["call_id"], call_id, "a result names its call");
    assert!(result.1["output"].as_str().unwrap().contains("shipped"));
    assert_eq!(result.1["ok"], true);
    assert!(result.1["latency_ms"].is_u64());
    assert_eq!(events.last().unwrap().0, "complete");
}

async fn tool_loop_is_capped_at_five_rounds(b: Backend) {
    let e = env(b).await;
    let receiver = Receiver::start().await;
    let agent = agent_with_order_tool(&e, &receiver).await;
    e.app
        .request(
            Method::PATCH,
            &format!("/v1/agents/{agent}"),
            &e.s,
            Some(json!({"settings": {"max_tool_rounds": 5}})),
        )
        .await;
    // The model asks for a tool six times in a row.
    e.fake
        .push(Step::tool_call("get_order_status", json!({"order_id": "ORD-1"})).times(6));
    let r = e
        .chat(&agent, &conv(), "Track ORD-1 until it arrives")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["step_timings"]["tool_call_rounds"], 5);
    assert_eq!(receiver.calls().len(), 5, "five rounds executed, not six");
    let reqs = e.fake.chat_requests();
    assert_eq!(reqs.len(), 6);
    assert_eq!(
        reqs[5].body["tool_choice"], "none",
        "the last call forces a text answer"
    );
    assert!(!r.body["reply"].as_str().unwrap().is_empty());

    // A tool the agent does not have is reported to the model as an error, not run.
    e.fake.push(Step::tool_call("delete_everything", json!({})));
    e.fake.push(Step::text("I can't do that."));
    let r = e.chat(&agent, &conv(), "delete everything").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["actions_executed"], json!([]));
    let last = e.fake.chat_requests().pop().unwrap();
    let tool_msg = last
        .messages()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap();
    assert!(
        tool_msg["content"]
            .as_str()
            .unwrap()
            .contains("unknown tool"),
        "{tool_msg}"
    );
    assert_eq!(receiver.calls().len(), 5);
}

async fn retries_then_fallback_to_the_next_model(b: Backend) {
    let e = env_with(b, 2, 5.0).await;
    let agent = e
        .agent(json!({"name": "R", "settings": {"tier": "nano", "cache_enabled": false}}))
        .await;
    e.fake.push(Step::error(500, "upstream hiccup"));
    e.fake.push(Step::text("recovered"));
    let r = e.chat(&agent, &conv(), "hello?").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["reply"], "recovered");
    assert_eq!(e.fake.chat_requests().len(), 2);

    // A tier whose first model is down falls back to the next.
    let fake2 = FakeLlm::start().await;
    fake2.push(Step::error(503, "overloaded").for_model("m-bad").forever());
    fake2.push(Step::text("from the fallback").for_model("m-good"));
    let url = fake2.base_url().to_string();
    let app = spawn_app_with(b, |c| {
        let mut llm = fake_llm(&url, 0, 5.0);
        llm.tiers.insert(
            cortex_llm::Tier::Nano,
            vec![
                cortex_llm::ModelRef {
                    provider: "fake".into(),
                    model: "m-bad".into(),
                },
                cortex_llm::ModelRef {
                    provider: "fake".into(),
                    model: "m-good".into(),
                },
            ],
        );
        c.llm = llm;
    })
    .await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    let agent = app
        .create_agent(
            &s,
            json!({"name": "F", "settings": {"tier": "nano", "cache_enabled": false}}),
        )
        .await;
    let r = app
        .post(
            "/v1/chat",
            &s,
            TestApp::chat_body(&company, &agent, &conv(), "hi"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["reply"], "from the fallback");
    assert_eq!(r.body["model_used"], "nano");
    let models: Vec<_> = fake2
        .chat_requests()
        .iter()
        .map(|r| r.model().unwrap().to_string())
        .collect();
    assert_eq!(models, vec!["m-bad", "m-good"]);
}

async fn unreachable_model_is_503_and_slow_model_is_504(b: Backend) {
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let app = spawn_app_with(b, |c| c.llm = fake_llm(&url, 1, 2.0)).await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    let agent = app
        .create_agent(
            &s,
            json!({"name": "U", "settings": {"cache_enabled": false}}),
        )
        .await;
    let r = app
        .post(
            "/v1/chat",
            &s,
            TestApp::chat_body(&company, &agent, &conv(), "hello"),
        )
        .await;
    assert_eq!(
        r.assert_error(503, "SERVICE_UNAVAILABLE"),
        "LLM gateway unreachable"
    );

    let e = env_with(b, 0, 0.5).await;
    let agent = e
        .agent(json!({"name": "T", "settings": {"cache_enabled": false}}))
        .await;
    e.fake.set_default_latency(Duration::from_secs(3));
    let r = e.chat(&agent, &conv(), "hello").await;
    r.assert_error(504, "GATEWAY_TIMEOUT");
    // In a stream the failure is an `error` event.
    let events = e.stream(&agent, "hello").await;
    assert_eq!(events.last().unwrap().0, "error");
    assert_eq!(events.last().unwrap().1["code"], "GATEWAY_TIMEOUT");
}

async fn template_variables_reach_the_model(b: Backend) {
    let e = env(b).await;
    let agent = e
        .agent(json!({"name": "Nour",
            "system_prompt": "Agent {{ agent.name }} for {{ customer.id }} via {{ channel }} lang={{ metadata.lang }} dialect={{ dialect.name }}{% for f in faqs %} [{{ f.question }}]{% endfor %}",
            "dialect": {"name": "Egyptian Arabic", "primary_language": "ar"},
            "workflow_faqs": [{"question": "Do you deliver?", "answer": "Yes, in Cairo."}],
            "settings": {"cache_enabled": false}}))
        .await;
    e.fake.push(Step::text("ok"));
    let mut body = TestApp::chat_body(&e.company, &agent, &conv(), "Do you deliver to Giza?");
    body["channel"] = json!("web");
    body["metadata"] = json!({"lang": "ar"});
    let r = e.app.post("/v1/chat", &e.s, body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let system = e.fake.chat_requests()[0].messages()[0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        system,
        "Agent Nour for cust_1 via web lang=ar dialect=Egyptian Arabic [Do you deliver?]"
    );
}

async fn router_picks_the_tier_and_a_pin_overrides_it(b: Backend) {
    let e = env(b).await;
    let agent = e
        .agent(json!({"name": "R", "settings": {"cache_enabled": false}}))
        .await;
    let table = [
        "hi",
        "Thanks!",
        "What is the latest news about the iPhone price today?",
        "Explain step by step why our cloud costs doubled, compare the three options, and analyze the trade-offs of each in detail.",
        "```python\ndef f(x):\n    return x * 2\n```\nWhy does this function fail on strings?",
    ];
    let mut seen = std::collections::BTreeSet::new();
    for message in table {
        let expected = cortex_llm::router::classify(message, false).tier;
        seen.insert(expected);
        e.fake.push(Step::text("ok"));
        let r = e.chat(&agent, &conv(), message).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["model_used"], expected.as_str(), "{message}");
        assert_eq!(
            e.fake.chat_requests().pop().unwrap().model().unwrap(),
            format!("m-{expected}")
        );
    }
    assert!(seen.len() >= 3, "the table spans several tiers: {seen:?}");
    assert_eq!(
        cortex_llm::router::classify("hi", false).tier,
        cortex_llm::Tier::Speed
    );

    let pinned = e
        .agent(json!({"name": "P", "settings": {"tier": "complex", "cache_enabled": false}}))
        .await;
    e.fake.push(Step::text("ok"));
    let r = e.chat(&pinned, &conv(), "hi").await;
    assert_eq!(r.body["model_used"], "complex");
    assert_eq!(
        e.fake.chat_requests().pop().unwrap().model().unwrap(),
        "m-complex"
    );
}

async fn optimizer_fits_the_budget_and_keeps_identity(b: Backend) {
    let e = env(b).await;
    let identity = "You are Atlas, the shipping assistant of ACME. Never promise delivery dates.";
    let paragraphs: Vec<String> = (0..40)
        .map(|i| format!("Shipping rule {i}: parcels to zone {i} ship with carrier {i} and take {i} days; shipping fees depend on weight."))
        .collect();
    let agent = e
        .agent(json!({"name": "Atlas", "system_prompt": identity,
            "knowledge_documents": [{"title": "Shipping", "content": paragraphs.join("\n\n")}],
            "settings": {"token_budget": 400, "rag_top_k": 40, "cache_enabled": false}}))
        .await;
    e.fake.push(Step::text("ok"));
    let r = e
        .chat(
            &agent,
            &conv(),
            "How long does shipping take and what are the shipping fees?",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ct = &r.body["context_tokens"];
    let (before, after) = (
        ct["before_compression"].as_u64().unwrap(),
        ct["after_compression"].as_u64().unwrap(),
    );
    assert!(before > after && after <= 400, "{ct}");
    assert!(ct["savings_pct"].as_f64().unwrap() > 0.0);
    let system = e.fake.chat_requests()[0].messages()[0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        system.starts_with(identity),
        "identity is never cut: {system}"
    );
    assert!(system.contains("Shipping rule"), "some knowledge was kept");
    assert!(
        system.matches("Shipping rule").count() < 40,
        "not all knowledge fits"
    );

    // A generous budget keeps everything.
    let big = e.agent(json!({"name": "Big", "system_prompt": identity, "knowledge_documents": [{"title": "Shipping", "content": paragraphs.join("\n\n")}],
        "settings": {"token_budget": 100000, "rag_top_k": 40, "cache_enabled": false}})).await;
    e.fake.push(Step::text("ok"));
    let r = e
        .chat(
            &big,
            &conv(),
            "How long does shipping take and what are the shipping fees?",
        )
        .await;
    assert_eq!(r.body["context_tokens"]["savings_pct"], 0.0);
}

async fn conversation_history_is_used(b: Backend) {
    let e = env(b).await;
    let agent = e
        .agent(json!({"name": "H", "settings": {"cache_enabled": false}}))
        .await;
    let c = conv();
    e.fake.push(Step::text("Nice to meet you, Sara."));
    e.chat(&agent, &c, "My name is Sara.").await;
    e.fake.push(Step::text("Your name is Sara."));
    let r = e.chat(&agent, &c, "What is my name?").await;
    assert_eq!(r.status, 200);
    let msgs = e.fake.chat_requests()[1].messages().to_vec();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, vec!["system", "user", "assistant", "user"]);
    assert_eq!(msgs[1]["content"], "My name is Sara.");
    assert_eq!(msgs[2]["content"], "Nice to meet you, Sara.");
    // Another conversation starts fresh.
    e.fake.push(Step::text("hello"));
    e.chat(&agent, &conv(), "hi").await;
    assert_eq!(e.fake.chat_requests()[2].messages().len(), 2);
}

async fn repeated_questions_are_served_from_the_cache(b: Backend) {
    let e = env(b).await;
    let agent = e.agent(json!({"name": "C", "settings": {"cache_enabled": true, "cache_threshold": 0.9, "memory_enabled": true}})).await;
    e.fake
        .push(Step::text("We open at 9 AM.").with_usage(100, 6));
    let first = e.chat(&agent, &conv(), "What time do you open?").await;
    assert_eq!(first.body["cached"], false);
    let db = e.app.raw_db().await;
    eventually(|| async {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cache_entries")
            .fetch_one(&db)
            .await
            .unwrap();
        (n == 1).then_some(())
    })
    .await;
    let hit = e.chat(&agent, &conv(), "what time do you open").await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.body["cached"], true);
    assert_eq!(hit.body["model_used"], "cache");
    assert_eq!(hit.body["reply"], "We open at 9 AM.");
    assert_eq!(
        hit.body["tokens"],
        json!({"input": 0, "output": 0, "cost_usd": 0.0})
    );
    assert_eq!(e.fake.chat_requests().len(), 1, "the model was not called");
    // The hit's turn is recorded too (off the response path).
    eventually(|| async {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM conversation_messages WHERE role = 'assistant' AND content = 'We open at 9 AM.'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        (n == 2).then_some(())
    })
    .await;
    // … and its usage: a cached, free row beside the model's.
    let usage: Vec<(i64, i64)> =
        sqlx::query_as("SELECT cached, cost_microusd FROM usage_events ORDER BY created_at")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(usage.len(), 2, "{usage:?}");
    assert_eq!(usage[1], (1, 0), "{usage:?}");
    // The node's dashboard counts the hit as a chat, not as a routed model call.
    let d = e.app.get("/v1/metrics/dashboard", &e.s).await.body;
    assert_eq!(d["config_loading"]["total_loads"], 2, "{d}");
    assert_eq!(d["model_routing"]["total_routed"], 1, "{d}");

    // An answer that used the customer's memory is never cached.
    use cortex::store::MemoryStore;
    let company: uuid::Uuid = e.company.parse().unwrap();
    e.app
        .state
        .store
        .save_fact(
            company,
            &cortex::store::NewFact {
                embedding: None,
                customer_id: "cust_1".into(),
                agent_id: None,
                fact: "Lives in Alexandria".into(),
                category: "context".into(),
                confidence: 1.0,
                source: "manual".into(),
            },
        )
        .await
        .unwrap();
    e.fake
        .push(Step::text("Our Alexandria branch opens at 10.").times(2));
    let personal = e
        .chat(&agent, &conv(), "When does the branch near me open?")
        .await;
    assert_eq!(personal.body["cached"], false);
    let system = e.fake.chat_requests().pop().unwrap().messages()[0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        system.contains("Lives in Alexandria"),
        "memory reached the prompt: {system}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = e
        .chat(&agent, &conv(), "When does the branch near me open?")
        .await;
    assert_eq!(again.body["cached"], false);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cache_entries")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

async fn requests_are_validated(b: Backend) {
    let e = env(b).await;
    let agent = e.agent(json!({"name": "V"})).await;
    let base = TestApp::chat_body(&e.company, &agent, &conv(), "hello");
    let with = |k: &str, v: Value| {
        let mut body = base.clone();
        body[k] = v;
        body
    };
    let metadata: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("k{i}"), json!(i))).collect();
    for (body, field) in [
        (with("message", json!("")), "message"),
        (with("message", json!("x".repeat(16_001))), "message"),
        (with("metadata", Value::Object(metadata)), "metadata"),
        (with("agent_id", json!("not-a-uuid")), "agent_id"),
        (with("conversation_id", json!(42)), "conversation_id"),
        (with("channel", json!("web chat!")), "channel"),
    ] {
        let r = e.app.post("/v1/chat", &e.s, body).await;
        r.assert_error(422, "VALIDATION_ERROR");
        assert_eq!(
            r.body["detail"][0]["loc"],
            json!(["body", field]),
            "{}",
            r.body
        );
    }
    let mut missing = base.clone();
    missing.as_object_mut().unwrap().remove("customer_id");
    e.app
        .post("/v1/chat", &e.s, missing)
        .await
        .assert_error(422, "VALIDATION_ERROR");
    assert_eq!(
        e.app
            .post("/v1/chat", &e.s, with("message", json!("x".repeat(16_000))))
            .await
            .status,
        200
    );

    // Another company's id, or an unknown agent: 404 for the agent, the same body.
    let (other_company, _) = e.app.other_company().await;
    let cross = e
        .app
        .post("/v1/chat", &e.s, with("company_id", json!(other_company)))
        .await;
    let unknown = e
        .app
        .post(
            "/v1/chat",
            &e.s,
            with("agent_id", json!(uuid::Uuid::new_v4())),
        )
        .await;
    assert_eq!(
        cross.assert_error(404, "NOT_FOUND"),
        unknown.assert_error(404, "NOT_FOUND")
    );
    assert_eq!(cross.body, unknown.body);
    let (_, other) = e.app.other_company().await;
    let foreign = e.app.post("/v1/chat", &other, base.clone()).await;
    foreign.assert_error(404, "NOT_FOUND");
    // A key without the chat scope.
    let k = e
        .app
        .create_key(&e.s, json!({"name": "ro", "scopes": ["agents:read"]}))
        .await;
    e.app
        .post(
            "/v1/chat",
            &Auth::ApiKeyHeader(k["key"].as_str().unwrap().into()),
            base,
        )
        .await
        .assert_error(403, "FORBIDDEN");
}

async fn client_disconnect_cancels_the_model_call(b: Backend) {
    let e = env(b).await;
    let agent = e
        .agent(json!({"name": "D", "settings": {"cache_enabled": false}}))
        .await;
    e.fake.push(
        Step::text("one two three four five six seven eight nine ten")
            .with_chunk_delay(Duration::from_millis(300)),
    );
    let body = TestApp::chat_body(&e.company, &agent, &conv(), "count slowly");
    let Auth::Bearer(token) = &e.s else {
        unreachable!()
    };
    let mut resp = e
        .app
        .client
        .post(format!("{}/v1/chat/stream", e.app.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    // Read until the first delta (heartbeats may come first), then go away.
    loop {
        let chunk = resp
            .chunk()
            .await
            .unwrap()
            .expect("stream ended before any delta");
        if String::from_utf8_lossy(&chunk).contains("text_delta") {
            break;
        }
    }
    drop(resp);
    assert!(
        e.fake.wait_for_disconnects(1, Duration::from_secs(5)).await,
        "the upstream call was not cancelled"
    );
}

async fn heartbeats_keep_the_stream_alive(b: Backend) {
    let e = env(b).await;
    let agent = e
        .agent(json!({"name": "B", "settings": {"cache_enabled": false}}))
        .await;
    e.fake
        .push(Step::text("finally").with_delay(Duration::from_millis(900)));
    let body = TestApp::chat_body(&e.company, &agent, &conv(), "take your time");
    let Auth::Bearer(token) = &e.s else {
        unreachable!()
    };
    let text = e
        .app
        .client
        .post(format!("{}/v1/chat/stream", e.app.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(": heartbeat"), "{text}");
    assert!(text.contains("event: complete"));
    let ids: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1) && ids[0] == 1,
        "{ids:?}"
    );
}

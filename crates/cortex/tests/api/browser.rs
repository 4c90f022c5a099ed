//! The developer portal and the widget in a real browser: Debian's Chromium, driven over
//! WebDriver (chromedriver + fantoccini) against the real server. Screenshots of every page go to
//! `$CARGO_TARGET_TMPDIR/portal-screenshots/` (test artifacts, not committed).
//!
//! The portal is backend-agnostic (it talks only to the public API, which the rest of the suite
//! runs on both backends), so these run on SQLite.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cortex_fakellm::FakeLlm;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Auth, Backend, TestApp, fake_llm, spawn_app_with,
};

/// chromedriver and Chromium from Debian (`scripts/test.sh` installs `chromium chromium-driver`).
fn driver_binary() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("CORTEX_TEST_CHROMEDRIVER")
            .unwrap_or_else(|_| "/usr/bin/chromedriver".into()),
    );
    assert!(
        path.exists(),
        "{} is missing: install Debian's chromium and chromium-driver (scripts/test.sh does)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A headless Chromium session with its own chromedriver and profile, closed on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Drop for Browser {
    /// chromedriver runs in a process group of its own with the Chromium processes it starts:
    /// the whole group goes, or every test would leave a browser behind (killing chromedriver
    /// alone orphans them).
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// SIGKILL to the process group `child` leads, then reap it.
pub fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

impl Browser {
    /// `test` names the screenshot folder.
    pub async fn start(test: &str) -> Browser {
        let port = free_port();
        let driver = Command::new(driver_binary())
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let status = format!("http://127.0.0.1:{port}/status");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(&status).await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let binary =
            std::env::var("CORTEX_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("portal-screenshots")
            .join(test);
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            client,
            driver,
            _profile: profile,
            shots,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Run `body` (a JavaScript function body) with `arguments`, return its value.
    pub async fn js(&self, body: &str, args: Vec<Value>) -> Value {
        self.client.execute(body, args).await.unwrap()
    }

    /// Poll a JavaScript expression until it is truthy (20 s), return its value.
    pub async fn until(&self, what: &str, expr: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        let script = format!("try {{ return ({expr}) || null; }} catch (e) {{ return null; }}");
        loop {
            let v = self.js(&script, vec![]).await;
            if !v.is_null() && v != json!(false) && v != json!("") {
                return v;
            }
            if Instant::now() > deadline {
                self.shot(&format!("timeout-{}", what.replace(' ', "-")))
                    .await;
                let body = self.js("return document.body.innerText", vec![]).await;
                panic!("waited 20 s for {what} ({expr}); the page says:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.until(selector, &format!("document.querySelector({selector:?})"))
            .await;
        self.client.find(Locator::Css(selector)).await.unwrap()
    }

    pub async fn click(&self, selector: &str) {
        self.css(selector).await.click().await.unwrap();
    }

    pub async fn type_into(&self, selector: &str, text: &str) {
        let e = self.css(selector).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    pub async fn text(&self, selector: &str) -> String {
        self.css(selector).await.text().await.unwrap()
    }

    /// Save a screenshot as `<name>.png`.
    pub async fn shot(&self, name: &str) {
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(self.shots.join(format!("{name}.png")), png);
        }
    }

    /// Sign in through the form.
    pub async fn sign_in(&self, base: &str) {
        self.goto(&format!("{base}/")).await;
        self.type_into("#email", ADMIN_EMAIL).await;
        self.type_into("#password", ADMIN_PASSWORD).await;
        self.shot("sign-in").await;
        self.click("button[type=submit]").await;
        self.css(".sidebar").await;
    }
}

/// A server with the scripted model behind it, the playground and the widget need one.
async fn app_with_model() -> (TestApp, FakeLlm) {
    let fake = FakeLlm::start().await;
    let url = fake.base_url().to_string();
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.llm = fake_llm(&url, 0, 5.0);
        c.network.allow_private = true;
    })
    .await;
    (app, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_is_served_with_a_strict_policy_and_revalidates() {
    let (app, _fake) = app_with_model().await;
    let client = reqwest::Client::new();
    let r = client.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("/ui/app.js"), "{html}");

    let r = client
        .get(format!("{}/ui/app.js", app.base))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let again = client
        .get(format!("{}/ui/app.js", app.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let vendor = client
        .get(format!("{}/ui/vendor/htm-preact-3.1.1.mjs", app.base))
        .send()
        .await
        .unwrap();
    assert!(
        vendor.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert!(
        vendor.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let missing = client
        .get(format!("{}/ui/nope.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // The API keeps its paths and its authentication.
    let me = client
        .get(format!("{}/v1/me", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_assets_are_the_vendored_ones() {
    // vendor/README.md pins the vendored library by checksum.
    use sha2::Digest;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/portal/vendor");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let lib = std::fs::read(dir.join("htm-preact-3.1.1.mjs")).unwrap();
    let sum = hex::encode(sha2::Sha256::digest(&lib));
    assert!(readme.contains(&sum), "vendor/README.md does not pin {sum}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_create_a_key_use_it_revoke_it_sign_out() {
    let (app, _fake) = app_with_model().await;
    let b = Browser::start("keys").await;
    b.sign_in(&app.base).await;
    b.shot("overview").await;

    b.goto(&format!("{}/#/keys", app.base)).await;
    b.click("#key-create").await;
    b.type_into("#key-name", "from the browser").await;
    b.shot("keys-create").await;
    b.click("#key-submit").await;
    let key = b
        .until("the raw key", "document.querySelector('#key-secret') && document.querySelector('#key-secret').textContent.trim()")
        .await;
    let key = key.as_str().unwrap().to_owned();
    assert!(key.starts_with("ctx_"), "{key}");
    b.shot("keys-created").await;
    let me = app.get("/v1/me", &Auth::Bearer(key.clone())).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["auth"], "api_key");

    // Close the dialog, then revoke the key from its row, with confirmation.
    b.js(
        "document.querySelector('dialog[open] header button').click()",
        vec![],
    )
    .await;
    let prefix = key[..12].to_owned();
    b.until(
        "the key's row",
        &format!(
            "[...document.querySelectorAll('tr')].find(r => r.textContent.includes({prefix:?}))"
        ),
    )
    .await;
    b.js(
        "const row = [...document.querySelectorAll('tr')].find(r => r.textContent.includes(arguments[0])); row.querySelector('button.danger').click();",
        vec![json!(prefix)],
    )
    .await;
    b.shot("keys-revoke-confirm").await;
    b.click("dialog[open] button.danger").await;
    b.until(
        "the row to go",
        &format!(
            "![...document.querySelectorAll('tr')].some(r => r.textContent.includes({prefix:?}))"
        ),
    )
    .await;
    let me = app.get("/v1/me", &Auth::Bearer(key)).await;
    assert_eq!(me.status, 401, "a revoked key still works: {}", me.body);

    // Sign out, and an expired session returns to the sign-in page with a message.
    b.click(".signout").await;
    b.css("#email").await;
    b.js(
        "sessionStorage.setItem('cortex_token', 'eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.x'); location.hash = '#/keys'; location.reload();",
        vec![],
    )
    .await;
    let notice = b
        .until("the expiry notice", "document.querySelector('.signin .notice') && document.querySelector('.signin .notice').textContent")
        .await;
    assert!(notice.as_str().unwrap().contains("expired"), "{notice}");
    b.shot("session-expired").await;
}

/// A shop's page on another origin (`http://127.0.0.1:PORT`) that embeds the widget.
struct ShopPage {
    origin: String,
    listener: tokio::net::TcpListener,
}

impl ShopPage {
    async fn bind() -> ShopPage {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        ShopPage { origin, listener }
    }

    /// Serve the page with the widget's script tag; returns its URL.
    fn serve(self, api: &str, public_key: &str, agent: &str) -> String {
        let html = format!(
            "<!doctype html><html><head><title>Shop</title></head><body><h1>A shop</h1>\
             <script src=\"{api}/widget.js\" data-public-key=\"{public_key}\" \
             data-agent-id=\"{agent}\" data-title=\"Help\" defer></script></body></html>"
        );
        let router = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let html = html.clone();
                async move { axum::response::Html(html) }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(self.listener, router).await;
        });
        format!("{}/", self.origin)
    }
}

/// Open the widget on the current page and ask `arguments[0]`.
const ASK_THE_WIDGET: &str = r#"
const host = [...document.querySelectorAll('body > div')].find(d => d.shadowRoot);
const root = host.shadowRoot;
if (!root.querySelector('.p').classList.contains('o')) root.querySelector('.b').click();
root.querySelector('input').value = arguments[0];
root.querySelector('form').requestSubmit();
"#;

/// The widget's last answer (`answer: …`) or error (`error: …`), once there is one.
const WIDGET_REPLY: &str = "(() => { const host = [...document.querySelectorAll('body > div')].find(d => d.shadowRoot); \
    if (!host) return null; const r = host.shadowRoot; const e = r.querySelector('.e'); \
    if (e) return 'error: ' + e.textContent; const a = [...r.querySelectorAll('.a')].pop(); \
    return a && a.textContent && a.textContent !== '…' ? 'answer: ' + a.textContent : null; })()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_answers_on_an_allowed_origin_and_is_refused_elsewhere() {
    let (app, fake) = app_with_model().await;
    let s = app.admin().await;
    let agent = app
        .create_agent(
            &s,
            json!({"name": "Shop helper", "system_prompt": "You help shoppers."}),
        )
        .await;
    let shop = ShopPage::bind().await;
    let pk = app
        .post(
            "/v1/public-keys",
            &s,
            json!({"name": "shop", "agent_id": agent, "allowed_origins": [shop.origin]}),
        )
        .await;
    assert_eq!(pk.status, 201, "{}", pk.body);
    let key = pk.body["key"].as_str().unwrap().to_owned();
    let allowed = shop.serve(&app.base, &key, &agent);
    let elsewhere = ShopPage::bind().await.serve(&app.base, &key, &agent);

    fake.push(cortex_fakellm::Step::text("We open at nine."));
    let b = Browser::start("widget").await;
    b.goto(&allowed).await;
    // The open button is drawn, not an emoji that needs a font.
    let svg = b
        .until(
            "the widget's button",
            "(() => { const h = [...document.querySelectorAll('body > div')].find(d => d.shadowRoot); return h && h.shadowRoot.querySelector('.b svg') ? 'svg' : null; })()",
        )
        .await;
    assert_eq!(svg, "svg");
    b.js(ASK_THE_WIDGET, vec![json!("When do you open?")]).await;
    let reply = b.until("the widget's answer", WIDGET_REPLY).await;
    b.shot("allowed-origin").await;
    assert_eq!(reply, "answer: We open at nine.");

    b.goto(&elsewhere).await;
    b.until(
        "the widget",
        "[...document.querySelectorAll('body > div')].find(d => d.shadowRoot)",
    )
    .await;
    b.js(ASK_THE_WIDGET, vec![json!("When do you open?")]).await;
    let reply = b.until("the widget's refusal", WIDGET_REPLY).await;
    b.shot("other-origin").await;
    let reply = reply.as_str().unwrap();
    assert!(reply.starts_with("error: "), "{reply}");
    assert!(
        reply.contains("403") || reply.contains("unavailable"),
        "{reply}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_a_broken_template_shows_the_error_at_its_line_then_saves() {
    let (app, _fake) = app_with_model().await;
    let b = Browser::start("agents").await;
    b.sign_in(&app.base).await;
    b.goto(&format!("{}/#/agents/new", app.base)).await;
    b.type_into("#agent-name", "Front desk").await;
    // The error is on the second line: an `if` with nothing to test.
    b.type_into(
        "#agent-template",
        "You help guests of the hotel.\n{% if %}yes{% endif %}",
    )
    .await;
    b.click("#agent-save").await;
    let error = b
        .until("the template error", "document.querySelector('#template-error') && document.querySelector('#template-error').textContent")
        .await;
    b.shot("agent-template-error").await;
    assert!(error.as_str().unwrap().contains("line 2"), "{error}");
    let line = b
        .until("the marked line", "document.querySelector('#template-error-line') && document.querySelector('#template-error-line').dataset.line")
        .await;
    assert_eq!(line, "2");
    let s = app.admin().await;
    let none = app.get("/v1/agents", &s).await;
    assert_eq!(
        none.body["agents"].as_array().unwrap().len(),
        0,
        "{}",
        none.body
    );

    b.type_into("#agent-template", "You help guests of {{ agent.name }}.")
        .await;
    b.click("#agent-save").await;
    let id = b
        .until(
            "the saved agent's page",
            "(location.hash.match(/^#\\/agents\\/([0-9a-f-]{36})$/) || [])[1]",
        )
        .await;
    let id = id.as_str().unwrap().to_owned();
    b.until("the editor of the saved agent", "document.querySelector('#agent-name') && document.querySelector('#agent-name').value === 'Front desk'")
        .await;
    assert!(
        b.js("return document.querySelector('#template-error')", vec![])
            .await
            .is_null(),
        "the error stayed after a good save"
    );
    b.shot("agent-saved").await;
    let agent = app.get(&format!("/v1/agents/{id}"), &s).await;
    assert_eq!(agent.status, 200, "{}", agent.body);
    assert_eq!(agent.body["name"], "Front desk");
    assert_eq!(
        agent.body["system_prompt"],
        "You help guests of {{ agent.name }}."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_a_document_see_it_completed_and_find_it() {
    let (app, _fake) = app_with_model().await;
    let b = Browser::start("knowledge").await;
    b.sign_in(&app.base).await;
    b.goto(&format!("{}/#/knowledge", app.base)).await;
    b.click("#source-create").await;
    b.type_into("#source-name", "Handbook").await;
    b.click("#source-submit").await;
    let id = b
        .until(
            "the new source's page",
            "(location.hash.match(/^#\\/knowledge\\/([0-9a-f-]{36})$/) || [])[1]",
        )
        .await;
    let id = id.as_str().unwrap().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("returns.md");
    std::fs::write(
        &file,
        "# Returns\n\nOrders can be returned within 30 days with the receipt. \
         Refunds go back to the card used, within five working days.\n",
    )
    .unwrap();
    let input = b.css("#upload-input").await;
    input.send_keys(&file.display().to_string()).await.unwrap();
    b.until(
        "the document to complete",
        "document.querySelector('tr[data-doc-name=\"returns.md\"] [data-doc-status=\"completed\"]')",
    )
    .await;
    b.shot("source-document-completed").await;
    let s = app.admin().await;
    let docs = app
        .get(&format!("/v1/knowledge/sources/{id}/documents"), &s)
        .await;
    assert_eq!(docs.status, 200, "{}", docs.body);
    let docs = docs.body["documents"].as_array().unwrap().clone();
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["name"], "returns.md");
    assert_eq!(docs[0]["status"], "completed");

    b.type_into("#search-input", "how long do I have to return an order")
        .await;
    b.js(
        "document.querySelector('#search-form').requestSubmit()",
        vec![],
    )
    .await;
    let first = b
        .until("a search result", "document.querySelector('.search-result') && document.querySelector('.search-result').textContent")
        .await;
    b.shot("source-search").await;
    assert!(first.as_str().unwrap().contains("30 days"), "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_streams_an_answer_with_its_timings() {
    let (app, fake) = app_with_model().await;
    let s = app.admin().await;
    let agent = app
        .create_agent(
            &s,
            json!({"name": "Concierge", "system_prompt": "You help guests."}),
        )
        .await;
    fake.push(cortex_fakellm::Step::text(
        "Breakfast is served from seven to ten.",
    ));
    let b = Browser::start("playground").await;
    b.sign_in(&app.base).await;
    b.goto(&format!("{}/#/playground/{agent}", app.base)).await;
    b.type_into("#playground-input", "When is breakfast?").await;
    b.until(
        "the send button",
        "!document.querySelector('#playground-send').disabled",
    )
    .await;
    b.click("#playground-send").await;
    b.css(".message.assistant .answer-meta").await;
    b.shot("playground-answer").await;
    let text = b.text(".message.assistant .text").await;
    assert_eq!(text, "Breakfast is served from seven to ten.");
    let meta = b.text(".message.assistant .answer-meta").await;
    assert!(meta.contains("cached no"), "{meta}");
    let stages = b
        .js("return [...document.querySelectorAll('.message.assistant .waterfall .stage')].map(g => g.getAttribute('class').split('stage-')[1])", vec![])
        .await;
    assert_eq!(
        stages,
        json!([
            "config_load",
            "memory_recall",
            "context_engine",
            "token_optimizer",
            "cache_check",
            "model_router",
            "agent_compiler",
            "tool_execution"
        ])
    );
    // The request went over the streaming endpoint.
    let chats = fake.chat_requests();
    assert_eq!(chats.len(), 1);
    assert_eq!(chats[0].body["stream"], true, "{}", chats[0].body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_streams_live_survives_a_reload_without_duplicates_and_shows_its_files() {
    let (app, fake) = app_with_model().await;
    let s = app.admin().await;
    app.create_agent(
        &s,
        json!({"name": "Builder", "system_prompt": "You build."}),
    )
    .await;
    let answer =
        "The notes are in the workspace and I read them all carefully before answering you.";
    fake.push(cortex_fakellm::Step::text(answer).with_chunk_delay(Duration::from_millis(250)));
    let b = Browser::start("runs").await;
    b.sign_in(&app.base).await;
    b.goto(&format!("{}/#/runs", app.base)).await;
    b.type_into("#run-prompt", "Read my notes").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "buy milk\n").unwrap();
    b.css("#run-files")
        .await
        .send_keys(&file.display().to_string())
        .await
        .unwrap();
    b.click("#run-start").await;
    b.until(
        "the run's thread",
        "/^#\\/runs\\/[0-9a-f-]{36}/.test(location.hash)",
    )
    .await;
    // Reload while the answer is still streaming: the viewer resumes after its last event.
    b.until(
        "the first words",
        "document.querySelector('#run-events .run-event.text')",
    )
    .await;
    b.shot("run-streaming").await;
    b.client.refresh().await.unwrap();
    b.until(
        "the run to complete",
        "[...document.querySelectorAll('#run-events .run-event.status')].some(e => e.textContent.includes('completed'))",
    )
    .await;
    b.shot("run-completed").await;
    let text = b
        .js("return [...document.querySelectorAll('#run-events .run-event.text')].map(e => e.textContent).join('')", vec![])
        .await;
    assert_eq!(text, answer, "the reload lost or repeated text");
    let seqs = b
        .js("return [...document.querySelectorAll('#run-events [data-seq]')].map(e => e.dataset.seq)", vec![])
        .await;
    let seqs: Vec<&str> = seqs
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let unique: std::collections::HashSet<&&str> = seqs.iter().collect();
    assert_eq!(
        unique.len(),
        seqs.len(),
        "duplicate events after the reload: {seqs:?}"
    );
    // The uploaded file is in the project's workspace, listed with a download.
    b.until(
        "the workspace file",
        "document.querySelector('[data-path$=\"notes.txt\"]')",
    )
    .await;
}

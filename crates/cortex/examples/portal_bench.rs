//! Benchmark of the developer portal in Debian's Chromium (see `scripts/bench-portal.sh`):
//! time to interactive of the first page (the sign-in form) and of the playground, on a cold
//! browser cache every time (a new Chromium profile per load), and the bytes transferred.
//!
//! "Interactive" is the moment the page marks itself usable with `performance.mark`: the sign-in
//! form rendered (`cortex-signin-ready`), the playground with its agents and the caller loaded and
//! the composer enabled (`cortex-playground-ready`). Times are Chromium's performance timeline,
//! from navigation start. Bytes are `transferSize` of the document and every resource (headers
//! included, compressed as sent).
//!
//! `cargo run --release -p cortex --example portal_bench -- --base http://127.0.0.1:8080
//!   --email admin@cortex.local --password … [--loads 20]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a developer tool, not library code

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

const MEASURE: &str = r#"
const [mark] = arguments;
const m = performance.getEntriesByName(mark)[0];
if (!m) return null;
const nav = performance.getEntriesByType('navigation')[0];
const res = performance.getEntriesByType('resource');
return {
  tti: m.startTime,
  dcl: nav.domContentLoadedEventEnd,
  transferred: nav.transferSize + res.reduce((a, r) => a + r.transferSize, 0),
  decoded: nav.decodedBodySize + res.reduce((a, r) => a + r.decodedBodySize, 0),
  requests: 1 + res.length,
};
"#;

struct Load {
    tti: f64,
    dcl: f64,
    transferred: f64,
    decoded: f64,
    requests: f64,
}

fn arg(name: &str, default: Option<&str>) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .or(default.map(str::to_owned))
        .unwrap_or_else(|| panic!("{name} is required"))
}

async fn session(driver: &str) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": std::env::var("CORTEX_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-background-networking", "--window-size=1280,900"]
        }
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a Chromium session")
}

async fn wait_for(c: &Client, mark: &str) -> Load {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = c.execute(MEASURE, vec![json!(mark)]).await.unwrap();
        if !v.is_null() {
            let f = |k: &str| v[k].as_f64().unwrap();
            return Load {
                tti: f("tti"),
                dcl: f("dcl"),
                transferred: f("transferred"),
                decoded: f("decoded"),
                requests: f("requests"),
            };
        }
        let body = c.execute("return document.body.innerText", vec![]).await;
        assert!(Instant::now() < deadline, "no {mark} after 30 s: {body:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn report(what: &str, loads: &[Load]) {
    let pct = |f: &dyn Fn(&Load) -> f64, p: f64| {
        let mut v: Vec<f64> = loads.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    println!(
        "{what}: time to interactive p50 {:.0} ms, p95 {:.0} ms (DOMContentLoaded p50 {:.0} ms); \
         transferred {:.1} KB in {:.0} requests ({:.1} KB uncompressed); n={}",
        pct(&|l| l.tti, 0.5),
        pct(&|l| l.tti, 0.95),
        pct(&|l| l.dcl, 0.5),
        pct(&|l| l.transferred, 0.5) / 1024.0,
        pct(&|l| l.requests, 0.5),
        pct(&|l| l.decoded, 0.5) / 1024.0,
        loads.len()
    );
}

#[tokio::main]
async fn main() {
    let base = arg("--base", Some("http://127.0.0.1:8080"));
    let email = arg("--email", Some("admin@cortex.local"));
    let password = arg("--password", None);
    let loads: usize = arg("--loads", Some("20")).parse().unwrap();

    // A session token and an agent for the playground, through the public API.
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/portal/api/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("signed in").to_owned();
    let agent: Value = http
        .post(format!("{base}/v1/agents"))
        .bearer_auth(&token)
        .json(&json!({"name": "Portal bench", "system_prompt": "You help."}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(agent["id"].is_string(), "{agent}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut driver = Command::new(
        std::env::var("CORTEX_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()),
    )
    .arg(format!("--port={port}"))
    // Its own process group, with the Chromium processes it starts: all go at the end.
    .process_group(0)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("chromedriver (apt-get install chromium chromium-driver)");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{url}/status")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (mut signin, mut playground) = (Vec::new(), Vec::new());
    for i in 0..loads + 1 {
        // A new session is a new profile: nothing cached.
        let c = session(&url).await;
        c.goto(&format!("{base}/")).await.unwrap();
        let first = wait_for(&c, "cortex-signin-ready").await;
        c.close().await.unwrap();

        let c = session(&url).await;
        c.goto(&format!("{base}/health")).await.unwrap();
        c.execute(
            "sessionStorage.setItem('cortex_token', arguments[0]); sessionStorage.setItem('cortex_token_user', JSON.stringify(arguments[1]));",
            vec![json!(token), login["user"].clone()],
        )
        .await
        .unwrap();
        c.goto(&format!("{base}/#/playground")).await.unwrap();
        let play = wait_for(&c, "cortex-playground-ready").await;
        c.close().await.unwrap();
        if i > 0 {
            // The first round warms the server and Chromium's own files.
            signin.push(first);
            playground.push(play);
        }
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", driver.id())])
        .status();
    let _ = driver.kill();
    let _ = driver.wait();
    report("first page (sign-in), cold cache", &signin);
    report("playground (signed in), cold cache", &playground);
}

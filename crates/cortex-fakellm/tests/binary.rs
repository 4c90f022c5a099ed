//! The `cortex-fakellm` binary: announces its URL and serves a scripted process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_prints_url_and_serves() {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_cortex-fakellm"))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--latency-ms",
                "0",
                "--embedding-dim",
                "32",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let base = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(
        base.starts_with("http://127.0.0.1:") && base.ends_with("/v1"),
        "{base}"
    );
    let root = base.trim_end_matches("/v1");
    let c = reqwest::Client::builder().no_proxy().build().unwrap();

    let r = c
        .post(format!("{root}/_admin/script"))
        .json(&json!({"steps": [{"type": "text", "text": "from the script"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let v: Value = c
        .post(format!("{base}/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "from the script");
    let v: Value = c
        .post(format!("{base}/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: hi");
    let v: Value = c
        .post(format!("{base}/embeddings"))
        .json(&json!({"model": "e", "input": "x"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 32);
    let reqs: Vec<Value> = c
        .get(format!("{root}/_admin/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0]["path"], "/v1/chat/completions");
    assert_eq!(reqs[0]["body"], body);
}

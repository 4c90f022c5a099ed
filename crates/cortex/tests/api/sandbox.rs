//! The sandbox end to end: uploads into the project's workspace, the file endpoints, the
//! built-in tools driven by the scripted model, hostile commands checked from outside, two
//! projects apart, a node without a working sandbox — on SQLite and on PostgreSQL; and two
//! server processes sharing one workspace root.

use std::time::{Duration, Instant};

use cortex_fakellm::{Step, ToolCall};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Auth, Backend, TestApp, fake_llm, spawn_app_with};
use crate::on_every_backend;
use crate::runs::{
    Env, Sse, assert_complete, bearer, env_with, message_kinds, prometheus_text, read_stream,
    start_files_on,
};

on_every_backend!(
    uploads_land_in_the_workspace_and_are_served,
    uploads_over_the_limits_are_refused_and_leave_nothing,
    the_agent_writes_reads_lists_and_runs_commands,
    hostile_commands_fail_safely,
    links_out_of_the_workspace_are_refused,
    two_projects_cannot_see_each_other,
    a_run_without_a_working_sandbox_completes_with_tool_errors,
    files_uploaded_before_workspaces_are_moved_into_them,
    stopping_a_run_kills_its_command,
);

async fn env(b: Backend) -> Env {
    env_with(b, |_| {}).await
}

/// `POST /v1/agent/start` with fields and files: (status, body).
async fn start_with_files(
    app: &TestApp,
    s: &Auth,
    fields: &[(&str, &str)],
    files: &[(&str, &[u8])],
) -> (u16, Value) {
    let r = start_files_on(app, s, fields, files).await;
    (r.status.as_u16(), r.body)
}

/// The paths and sizes `GET /v1/projects/{id}/files` lists.
async fn listed(app: &TestApp, e: &Env, project: &str) -> Vec<(String, u64)> {
    let r = app
        .get(&format!("/v1/projects/{project}/files"), &e.s)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["success"], true);
    r.body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(f["modified_at"].is_string(), "{f}");
            (
                f["path"].as_str().unwrap().to_string(),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `GET /v1/projects/{id}/files/content?path=`: (status, content type, bytes).
async fn content(app: &TestApp, e: &Env, project: &str, path: &str) -> (u16, String, Vec<u8>) {
    let r = app
        .client
        .get(format!("{}/v1/projects/{project}/files/content", app.base))
        .query(&[("path", path)])
        .bearer_auth(bearer(&e.s))
        .send()
        .await
        .unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), ct, r.bytes().await.unwrap().to_vec())
}

/// The tool results of a run's stream, by call id.
fn results(events: &[Sse]) -> std::collections::HashMap<String, (bool, String)> {
    events
        .iter()
        .filter(|(_, n, _)| n == "tool_result")
        .map(|(_, _, d)| {
            (
                d["call_id"].as_str().unwrap().to_string(),
                (
                    d["ok"].as_bool().unwrap(),
                    d["output"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

fn call(id: &str, name: &str, args: Value) -> ToolCall {
    ToolCall::new(name, args).with_id(id)
}

/// Script one round of tool calls then a final text, start a run, read it to its end.
async fn run_tools(e: &Env, fields: &[(&str, &str)], calls: Vec<ToolCall>) -> (Value, Vec<Sse>) {
    e.fake.push(Step::tool_calls(calls));
    e.fake.push(Step::text("done"));
    let r = e.start(fields).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let run = r.body["agent_run_id"].as_str().unwrap().to_string();
    let events = read_stream(&e.app, &e.s, &run, None).await;
    assert_complete(&events, 0, "completed");
    (r.body, events)
}

async fn uploads_land_in_the_workspace_and_are_served(b: Backend) {
    let e = env(b).await;
    e.fake.push(Step::text("ok"));
    let (status, body) = start_with_files(
        &e.app,
        &e.s,
        &[("prompt", "read these")],
        &[
            ("data.csv", b"a,b\n1,2\n"),
            ("../../etc/notes.txt", b"notes"),
            ("data.csv", b"second"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        Uuid::parse_str(body["sandbox_id"].as_str().unwrap()).is_ok(),
        "{body}"
    );
    let project = body["project_id"].as_str().unwrap().to_string();
    assert_eq!(
        listed(&e.app, &e, &project).await,
        vec![
            ("data (1).csv".to_string(), 6),
            ("data.csv".to_string(), 8),
            ("notes.txt".to_string(), 5),
        ],
        "all three kept: the clash suffixed, the directories dropped"
    );
    let (status, ct, bytes) = content(&e.app, &e, &project, "data.csv").await;
    assert_eq!((status, bytes.as_slice()), (200, b"a,b\n1,2\n".as_slice()));
    assert_eq!(ct, "text/csv");
    let (status, _, bytes) = content(&e.app, &e, &project, "/workspace/data (1).csv").await;
    assert_eq!((status, bytes.as_slice()), (200, b"second".as_slice()));
    // The agent is told where its files are.
    let thread = body["thread_id"].as_str().unwrap();
    let messages = e
        .app
        .get(&format!("/v1/threads/{thread}/messages"), &e.s)
        .await;
    let first = messages.body["messages"][0]["content"].as_str().unwrap();
    assert!(
        first.contains("[Uploaded File: /workspace/data.csv]")
            && first.contains("[Uploaded File: /workspace/data (1).csv]"),
        "{first}"
    );
    // The project reports its sandbox.
    let p = e.app.get(&format!("/v1/projects/{project}"), &e.s).await;
    assert_eq!(p.body["sandbox_id"], body["sandbox_id"]);
    // Paths out of the workspace, and missing files.
    for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
        let (status, _, bytes) = content(&e.app, &e, &project, bad).await;
        assert_eq!(status, 400, "{bad}: {}", String::from_utf8_lossy(&bytes));
    }
    assert_eq!(content(&e.app, &e, &project, "missing.txt").await.0, 404);
    // Pagination over the listing.
    let r = e
        .app
        .get(
            &format!("/v1/projects/{project}/files?limit=1&offset=1"),
            &e.s,
        )
        .await;
    assert_eq!(r.body["files"][0]["path"], "data.csv");
    assert_eq!(r.body["pagination"]["total"], 3);
    // Another company sees none of it: 404 as for a missing project.
    let (_, other) = e.app.other_company().await;
    for path in [
        format!("/v1/projects/{project}/files"),
        format!("/v1/projects/{project}/files/content?path=data.csv"),
    ] {
        let r = e.app.get(&path, &other).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        let missing = e
            .app
            .get(&path.replace(&project, &Uuid::new_v4().to_string()), &other)
            .await;
        assert_eq!(r.body, missing.body);
    }
    // Deleting the project removes its workspace.
    let ws = e
        .app
        .state
        .sandbox
        .workspace(e.company, project.parse().unwrap());
    assert!(ws.dir.join("data.csv").exists());
    let r = e.app.delete(&format!("/v1/projects/{project}"), &e.s).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!ws.dir.exists());
}

async fn uploads_over_the_limits_are_refused_and_leave_nothing(b: Backend) {
    let e = env_with(b, |c| {
        c.runs.max_file_bytes = 1000;
        c.runs.max_upload_bytes = 1500;
        c.sandbox.max_workspace_bytes = 1200;
    })
    .await;
    let threads = e.app.get("/v1/threads", &e.s).await.body["pagination"]["total"].clone();
    // One file over the per-file limit, or all of them over the total: 413, nothing written.
    for files in [
        vec![("big.bin", vec![0u8; 1001])],
        vec![("a.bin", vec![0u8; 800]), ("b.bin", vec![0u8; 800])],
    ] {
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        let (status, body) = start_with_files(&e.app, &e.s, &[("prompt", "x")], &refs).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
    }
    // Within the request limits but over the workspace's: the second upload to one project.
    e.fake.push(Step::text("ok"));
    let (status, body) =
        start_with_files(&e.app, &e.s, &[("prompt", "x")], &[("a.bin", &[1u8; 700])]).await;
    assert_eq!(status, 200, "{body}");
    let project = body["project_id"].as_str().unwrap().to_string();
    e.finished(body["agent_run_id"].as_str().unwrap()).await;
    let (status, body) = start_with_files(
        &e.app,
        &e.s,
        &[("prompt", "more"), ("project_id", &project)],
        &[("b.bin", &[2u8; 600])],
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        listed(&e.app, &e, &project).await,
        vec![("a.bin".to_string(), 700)]
    );
    // A refused start (here: a thread of another company) leaves no file behind either.
    let (_, other) = e.app.other_company().await;
    let (status, _) = start_with_files(
        &e.app,
        &other,
        &[("prompt", "x"), ("project_id", &project)],
        &[("c.bin", &[3u8; 10])],
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        listed(&e.app, &e, &project).await,
        vec![("a.bin".to_string(), 700)]
    );
    assert_eq!(
        e.app.get("/v1/threads", &e.s).await.body["pagination"]["total"],
        threads.as_i64().unwrap() + 1
    );
}

async fn the_agent_writes_reads_lists_and_runs_commands(b: Backend) {
    let e = env(b).await;
    let (body, events) = run_tools(
        &e,
        &[("prompt", "make a note")],
        vec![
            call(
                "w",
                "write_file",
                json!({"path": "notes/hello.txt", "content": "hi there"}),
            ),
            call(
                "r",
                "read_file",
                json!({"path": "/workspace/notes/hello.txt"}),
            ),
            call(
                "c",
                "run_command",
                json!({"command": "cat notes/hello.txt; echo; pwd; echo made > made.txt"}),
            ),
            call("l", "list_files", json!({})),
            call("f", "run_command", json!({"command": "exit 3"})),
            call("m", "read_file", json!({"path": "nope.txt"})),
            call("x", "run_command", json!({"cmd": "wrong argument"})),
        ],
    )
    .await;
    let r = results(&events);
    assert!(r["w"].0, "{:?}", r["w"]);
    assert_eq!(r["r"], (true, "hi there".to_string()));
    assert!(r["c"].0, "{:?}", r["c"]);
    assert_eq!(r["c"].1, "exit code: 0\nhi there\n/workspace\n");
    assert!(r["l"].1.contains("made.txt (5 bytes)"), "{:?}", r["l"]);
    assert!(
        r["l"].1.contains("notes/hello.txt (8 bytes)"),
        "{:?}",
        r["l"]
    );
    // Failures are results for the model; the run went on.
    assert_eq!(r["f"], (false, "Error: exit code: 3\n".to_string()));
    assert!(
        !r["m"].0 && r["m"].1.contains("does not exist"),
        "{:?}",
        r["m"]
    );
    assert!(
        !r["x"].0 && r["x"].1.contains("invalid arguments"),
        "{:?}",
        r["x"]
    );
    // The files are the project's: listed and served.
    let project = body["project_id"].as_str().unwrap();
    assert_eq!(
        listed(&e.app, &e, project).await,
        vec![
            ("made.txt".to_string(), 5),
            ("notes/hello.txt".to_string(), 8)
        ]
    );
    assert_eq!(
        content(&e.app, &e, project, "made.txt").await.2,
        b"made\n".to_vec()
    );
    // The model was offered the four tools, and the calls are in the thread.
    let offered: Vec<String> = e.fake.chat_requests()[0]
        .tools()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        offered,
        ["list_files", "read_file", "write_file", "run_command"]
    );
    let (kinds, _) = message_kinds(&e, body["thread_id"].as_str().unwrap()).await;
    assert!(kinds.contains(&"tool".to_string()), "{kinds:?}");
    // Commands are counted by outcome.
    let metrics = prometheus_text(&e).await;
    for outcome in ["ok", "error"] {
        assert!(
            metrics.contains(&format!(
                "cortex_sandbox_commands_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome}"
        );
    }
}

/// A listener on the host's loopback: anything that connected waits in its accept queue.
async fn watcher() -> (u16, tokio::net::TcpListener) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    (listener.local_addr().unwrap().port(), listener)
}

fn processes_matching(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
        .filter(|c| {
            String::from_utf8_lossy(c)
                .replace('\0', " ")
                .contains(needle)
        })
        .count()
}

async fn hostile_commands_fail_safely(b: Backend) {
    let e = env_with(b, |c| {
        c.sandbox.memory_bytes = 512 * 1024 * 1024;
        c.sandbox.max_output_bytes = 1024 * 1024;
        c.sandbox.max_processes = 64;
        c.sandbox.tool_result_chars = 4000;
    })
    .await;
    let (port, listener) = watcher().await;
    let server_port = e.app.base.rsplit(':').next().unwrap().to_string();
    let data = e.app.state.config.data_dir.canonicalize().unwrap();
    let marker = Uuid::new_v4().simple().to_string();
    let sleeper = format!("sleep 31{}", rand_digits());
    // Unique per test: the other backend's copy of this test runs at the same time.
    let bomb = format!("bomb{}", rand_digits());
    let long_sleep = format!("sleep 60{}", rand_digits());
    let cmd = |id: &str, command: String, timeout: u64| {
        call(
            id,
            "run_command",
            json!({"command": command, "timeout_seconds": timeout}),
        )
    };
    let (_, events) = run_tools(
        &e,
        &[("prompt", "be bad")],
        vec![
            cmd(
                "own-port",
                format!("exec 3<>/dev/tcp/127.0.0.1/{server_port} && echo CONNECTED"),
                5,
            ),
            cmd(
                "watcher",
                format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo CONNECTED"),
                5,
            ),
            cmd(
                "metadata",
                "exec 3<>/dev/tcp/169.254.169.254/80 && echo CONNECTED".into(),
                5,
            ),
            cmd(
                "data-dir",
                format!(
                    "ls -la {d}; head -c 16 {d}/cortex.db; cat {d}/secrets.key",
                    d = data.display()
                ),
                5,
            ),
            cmd(
                "etc",
                format!("echo x > /etc/cortex-{marker} && echo WROTE"),
                5,
            ),
            cmd(
                "tmp",
                format!("echo x > /tmp/cortex-{marker} && echo WROTE; ls /tmp"),
                5,
            ),
            cmd(
                "fork-bomb",
                format!("{bomb}() {{ {bomb} | {bomb} & }}; {bomb}; sleep 2; echo SURVIVED"),
                4,
            ),
            cmd(
                "memory",
                "perl -e '$x = \"a\" x (2 * 1024 * 1024 * 1024); print \"ALLOCATED\"'".into(),
                10,
            ),
            cmd(
                "output",
                "head -c 50000000 /dev/zero | tr '\\0' a".into(),
                20,
            ),
            cmd("sleep", format!("{long_sleep} & {long_sleep}"), 2),
            cmd(
                "background",
                format!("({sleeper} &) ; nohup {sleeper} > /dev/null 2>&1 & echo started"),
                5,
            ),
            cmd("whoami", "id -u; id -G".into(), 5),
        ],
    )
    .await;
    let r = results(&events);
    for id in ["own-port", "watcher", "metadata"] {
        assert!(!r[id].0, "{id}: {:?}", r[id]);
        assert!(!r[id].1.contains("CONNECTED"), "{id}: {:?}", r[id]);
    }
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "a command reached the host's loopback");
    // The data directory is not there: neither the database nor the secrets key.
    assert!(
        !r["data-dir"].1.contains("SQLite format"),
        "{:?}",
        r["data-dir"]
    );
    if let Ok(key) = std::fs::read_to_string(data.join("secrets.key")) {
        assert!(
            !r["data-dir"].1.contains(key.trim()),
            "the secrets key leaked"
        );
    }
    assert!(
        r["data-dir"].1.contains("No such file"),
        "{:?}",
        r["data-dir"]
    );
    // Writes outside the workspace: refused (/etc) or private (/tmp); the host is untouched.
    assert!(
        !r["etc"].0 && !r["etc"].1.contains("WROTE"),
        "{:?}",
        r["etc"]
    );
    assert!(!std::path::Path::new(&format!("/etc/cortex-{marker}")).exists());
    assert!(!std::path::Path::new(&format!("/tmp/cortex-{marker}")).exists());
    // The fork bomb, the memory hog, the flood and the sleeper end; the node lives on.
    // The bomb hits the process limit, the command ends, and none of its processes are left.
    assert!(
        r["fork-bomb"]
            .1
            .contains("Resource temporarily unavailable"),
        "{:?}",
        r["fork-bomb"]
    );
    assert_eq!(
        processes_matching(&format!("{bomb} | {bomb}")),
        0,
        "the fork bomb outlived its command"
    );
    assert!(!r["memory"].1.contains("ALLOCATED"), "{:?}", r["memory"]);
    assert!(!r["output"].0, "{:?}", r["output"]);
    assert!(
        r["output"]
            .1
            .starts_with("Error: stopped: the command wrote more than 1048576 bytes"),
        "{}",
        &r["output"].1[..200]
    );
    assert!(
        r["output"].1.contains("characters cut …]") && r["output"].1.chars().count() < 4200,
        "the model gets a capped result"
    );
    assert!(
        r["sleep"].1.starts_with(
            "Error: timed out after 2 s: the command and everything it started were killed"
        ),
        "{:?}",
        r["sleep"]
    );
    // The timed-out command is gone with everything it started.
    assert_eq!(
        processes_matching(&long_sleep),
        0,
        "a timed-out command outlived its timeout"
    );
    // Nothing the commands left in the background survives them.
    assert_eq!(
        r["background"],
        (true, "exit code: 0\nstarted\n".to_string())
    );
    assert_eq!(
        processes_matching(&sleeper),
        0,
        "a background process outlived its command"
    );
    // Commands never run as root.
    let uid: u32 = r["whoami"]
        .1
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(uid, 0, "{:?}", r["whoami"]);
    let health = e.app.get("/health/detailed", &Auth::None).await;
    assert_eq!(health.body["checks"]["sandbox"], "ok", "{}", health.body);
}

fn rand_digits() -> u32 {
    (Uuid::new_v4().as_u128() % 90_000 + 10_000) as u32
}

async fn links_out_of_the_workspace_are_refused(b: Backend) {
    let e = env(b).await;
    let data = e.app.state.config.data_dir.canonicalize().unwrap();
    let (body, events) = run_tools(
        &e,
        &[("prompt", "link")],
        vec![
            call(
                "ln",
                "run_command",
                json!({"command": format!("ln -s /etc/passwd passwd; ln -s {}/cortex.db db; ln -s .. up; ln -s ../.. upup; ln -s ok.txt inside; echo ok > ok.txt", data.display())}),
            ),
            call("passwd", "read_file", json!({"path": "passwd"})),
            call("db", "read_file", json!({"path": "db"})),
            call("up", "read_file", json!({"path": "up/../secrets.key"})),
            call("upup", "list_files", json!({"path": "upup"})),
            call("inside", "read_file", json!({"path": "inside"})),
            call("write-through", "write_file", json!({"path": "passwd", "content": "owned"})),
        ],
    )
    .await;
    let r = results(&events);
    assert!(r["ln"].0, "{:?}", r["ln"]);
    for id in ["passwd", "db", "up", "upup", "write-through"] {
        assert!(!r[id].0, "{id}: {:?}", r[id]);
        assert!(!r[id].1.contains("root:"), "{id}: {:?}", r[id]);
    }
    assert!(
        r["passwd"].1.contains("leads outside /workspace"),
        "{:?}",
        r["passwd"]
    );
    assert_eq!(r["inside"], (true, "ok\n".to_string()));
    assert!(
        !std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .contains("owned")
    );
    let project = body["project_id"].as_str().unwrap();
    for path in ["passwd", "db", "upup/etc/passwd", "up"] {
        let (status, _, bytes) = content(&e.app, &e, project, path).await;
        assert_eq!(status, 400, "{path}: {}", String::from_utf8_lossy(&bytes));
    }
    // Links are not listed.
    assert_eq!(
        listed(&e.app, &e, project).await,
        vec![("ok.txt".to_string(), 3)]
    );
}

async fn two_projects_cannot_see_each_other(b: Backend) {
    let e = env(b).await;
    let secret = format!("TOPSECRET-{}", Uuid::new_v4().simple());
    let (a, _) = run_tools(
        &e,
        &[("prompt", "keep a secret")],
        vec![call(
            "w",
            "write_file",
            json!({"path": "secret.txt", "content": secret}),
        )],
    )
    .await;
    let (b_body, events) = run_tools(
        &e,
        &[("prompt", "look around")],
        vec![
            call(
                "look",
                "run_command",
                json!({"command": "ls -la /workspace/ /workspace/.. ; cat /workspace/../*/secret.txt /workspace/../../*/*/secret.txt; grep -rs TOPSECRET / --exclude-dir=proc --exclude-dir=sys | head -3; echo END"}),
            ),
            call("read", "read_file", json!({"path": "../secret.txt"})),
        ],
    )
    .await;
    let r = results(&events);
    assert!(r["look"].1.contains("END"), "{:?}", r["look"]);
    assert!(!r["look"].1.contains(&secret), "{:?}", r["look"]);
    assert!(!r["read"].1.contains(&secret), "{:?}", r["read"]);
    assert_ne!(a["project_id"], b_body["project_id"]);
    assert!(
        listed(&e.app, &e, b_body["project_id"].as_str().unwrap())
            .await
            .is_empty()
    );
    assert_eq!(
        listed(&e.app, &e, a["project_id"].as_str().unwrap()).await,
        vec![("secret.txt".to_string(), secret.len() as u64)]
    );
}

async fn a_run_without_a_working_sandbox_completes_with_tool_errors(b: Backend) {
    let e = env_with(b, |c| c.sandbox.bwrap = "/nonexistent/bwrap".into()).await;
    let health = e.app.get("/health/detailed", &Auth::None).await;
    let sandbox = health.body["checks"]["sandbox"].as_str().unwrap();
    assert!(sandbox.starts_with("unavailable: bubblewrap"), "{sandbox}");
    assert_eq!(health.body["status"], "degraded");
    let (_, events) = run_tools(
        &e,
        &[("prompt", "try")],
        vec![
            call("c", "run_command", json!({"command": "echo hi"})),
            call(
                "w",
                "write_file",
                json!({"path": "a.txt", "content": "still works"}),
            ),
        ],
    )
    .await;
    let r = results(&events);
    assert!(!r["c"].0, "{:?}", r["c"]);
    assert!(
        r["c"]
            .1
            .starts_with("Error: the sandbox is unavailable on this server: bubblewrap"),
        "{:?}",
        r["c"]
    );
    assert!(
        r["w"].0,
        "the file tools do not need bubblewrap: {:?}",
        r["w"]
    );
}

async fn files_uploaded_before_workspaces_are_moved_into_them(b: Backend) {
    let e = env(b).await;
    e.fake.push(Step::text("ok"));
    let (_, body) = start_with_files(&e.app, &e.s, &[("prompt", "x")], &[("a.txt", b"new")]).await;
    let project = body["project_id"].as_str().unwrap().to_string();
    e.finished(body["agent_run_id"].as_str().unwrap()).await;
    // A row as the previous version stored an upload (the table is kept for this move).
    let db = e.app.raw_db().await;
    sqlx::query(
        "INSERT INTO project_files (id, company_id, project_id, run_id, name, size, content, created_at) \
         VALUES ($1, $2, $3, NULL, 'a.txt', 3, $4, '2026-11-01T00:00:00.000000Z')",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(e.company.to_string())
    .bind(&project)
    .bind(b"old".to_vec())
    .execute(&db)
    .await
    .unwrap();
    let moved = cortex::runs::move_legacy_files(&e.app.state).await.unwrap();
    assert_eq!(moved, 1);
    assert_eq!(
        listed(&e.app, &e, &project).await,
        vec![("a (1).txt".to_string(), 3), ("a.txt".to_string(), 3)]
    );
    assert_eq!(content(&e.app, &e, &project, "a (1).txt").await.2, b"old");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM project_files")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(
        cortex::runs::move_legacy_files(&e.app.state).await.unwrap(),
        0
    );
}

async fn stopping_a_run_kills_its_command(b: Backend) {
    let e = env(b).await;
    let sleeper = format!("sleep 32{}", rand_digits());
    e.fake.push(Step::tool_call(
        "run_command",
        json!({"command": format!("{sleeper} & {sleeper}")}),
    ));
    let (run, _) = e.start_ok(&[("prompt", "wait")]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_matching(&sleeper) == 0 {
        assert!(Instant::now() < deadline, "the command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = Instant::now();
    let r = e
        .app
        .post(&format!("/v1/agent-run/{run}/stop"), &e.s, json!({}))
        .await;
    assert_eq!(r.body["status"], "stopped", "{}", r.body);
    let events = read_stream(&e.app, &e.s, &run, None).await;
    assert_complete(&events, 0, "stopped");
    // The command and what it started in the background are gone with the run.
    while processes_matching(&sleeper) > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the command outlived its run's stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Without bubblewrap, commands run only when the operator said so; even then with an empty
/// environment, the limits and the wall clock, and never as root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsandboxed_commands_are_an_explicit_choice_and_still_limited() {
    let e = env_with(Backend::Sqlite, |c| {
        c.sandbox.bwrap = "/nonexistent/bwrap".into();
        c.sandbox.allow_unsandboxed = true;
    })
    .await;
    let health = e.app.get("/health/detailed", &Auth::None).await;
    assert_eq!(health.body["checks"]["sandbox"], "unsandboxed");
    assert_eq!(health.body["status"], "ok");
    let (_, events) = run_tools(
        &e,
        &[("prompt", "run")],
        vec![
            call(
                "env",
                "run_command",
                json!({"command": "env; echo made > made.txt; id -u"}),
            ),
            call(
                "sleep",
                "run_command",
                json!({"command": "sleep 600", "timeout_seconds": 1}),
            ),
        ],
    )
    .await;
    let r = results(&events);
    assert!(r["env"].0, "{:?}", r["env"]);
    for leaked in ["CORTEX_", "DATABASE_URL", "OPENAI", "CARGO"] {
        assert!(!r["env"].1.contains(leaked), "{leaked}: {:?}", r["env"]);
    }
    if rustix::process::geteuid().is_root() {
        assert!(r["env"].1.ends_with("65534\n"), "{:?}", r["env"]);
    }
    assert!(
        r["sleep"].1.starts_with("Error: timed out after 1 s"),
        "{:?}",
        r["sleep"]
    );
}

/// Two server processes (nodes) on one database and one workspace root: an upload through one
/// is listed, served and used by a run on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_workspace_root() {
    let root = tempfile::tempdir().unwrap();
    let fake = cortex_fakellm::FakeLlm::start().await;
    let node = |db: Option<String>| {
        let (root, url) = (root.path().to_path_buf(), fake.base_url().to_string());
        spawn_app_with(Backend::Postgres, move |c| {
            c.sandbox.workspace_root = Some(root);
            c.llm = fake_llm(&url, 0, 10.0);
            c.limits.company_requests = 0;
            c.network.allow_private = true;
            if let Some(db) = db {
                c.database_url = Some(db);
            }
        })
    };
    let a = node(None).await;
    let b = node(Some(a.database_url.clone())).await;
    let s = a.admin().await;
    let company: Uuid = a.company_id(&s).await.parse().unwrap();
    let e = Env {
        app: a,
        fake,
        s,
        company,
    };
    e.fake.push(Step::text("ok"));
    let (status, body) = start_with_files(
        &e.app,
        &e.s,
        &[("prompt", "upload")],
        &[("shared.txt", b"from a")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let project = body["project_id"].as_str().unwrap().to_string();
    e.finished(body["agent_run_id"].as_str().unwrap()).await;
    assert_eq!(
        listed(&b, &e, &project).await,
        vec![("shared.txt".to_string(), 6)]
    );
    assert_eq!(content(&b, &e, &project, "shared.txt").await.2, b"from a");
    // A run on node B, in the same project, reads it with a command.
    e.fake.push(Step::tool_call(
        "run_command",
        json!({"command": "cat shared.txt"}),
    ));
    e.fake.push(Step::text("done"));
    let (status, run) = start_with_files(
        &b,
        &e.s,
        &[("prompt", "read it"), ("project_id", &project)],
        &[],
    )
    .await;
    assert_eq!(status, 200, "{run}");
    let events = read_stream(&b, &e.s, run["agent_run_id"].as_str().unwrap(), None).await;
    assert_complete(&events, 0, "completed");
    let out: Vec<&Value> = events
        .iter()
        .filter(|(_, n, _)| n == "tool_result")
        .map(|(_, _, d)| d)
        .collect();
    assert_eq!(out[0]["output"], "exit code: 0\nfrom a");
}

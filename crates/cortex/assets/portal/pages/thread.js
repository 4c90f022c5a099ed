// One thread: its messages, its runs, a live viewer of a run's event stream and the project's
// workspace files. The viewer reads GET /v1/agent-run/{id}/stream with EventSource (`?token=`,
// since EventSource cannot send headers) and keeps what it showed, with the last event id, in
// sessionStorage: a reload shows the same events and resumes after that id (`?last_id=`), and an
// event whose id it has already seen is never shown again.
import {
  html, useState, useEffect, useRef, Page, Async, ErrorBox, Loading, Empty, Table, Status, Badge, Link,
  useAsync, useAction, fmtDate, fmtNumber, fmtBytes, fmtMoney,
} from "../lib/ui.js";
import { api, session, ApiError } from "../lib/api.js";
import { StartRun, RunUsage, short } from "./runs.js";

const FINAL = ["completed", "failed", "stopped"];
const STORE = "cortex_run_view_";

/** ?run= of the hash route (#/runs/THREAD?run=RUN). */
function queryRun() {
  const q = location.hash.split("?")[1] || "";
  return new URLSearchParams(q).get("run") || "";
}

function emptyModel() {
  return { last: 0, items: [], usage: { input: 0, output: 0, cost: 0 }, final: null };
}

function loadModel(runId) {
  try {
    const m = JSON.parse(sessionStorage.getItem(STORE + runId) || "null");
    if (m && typeof m.last === "number" && Array.isArray(m.items)) return m;
  } catch { /* unreadable: start over */ }
  return emptyModel();
}

const KEPT = 20; // runs whose events this tab remembers

function saveModel(runId, m) {
  try {
    // The most recently viewed runs only: older ones are dropped (and replay in full if reopened).
    const index = JSON.parse(sessionStorage.getItem(STORE + "index") || "[]").filter((r) => r !== runId);
    index.push(runId);
    while (index.length > KEPT) sessionStorage.removeItem(STORE + index.shift());
    sessionStorage.setItem(STORE + "index", JSON.stringify(index));
    sessionStorage.setItem(STORE + runId, JSON.stringify(m));
  } catch {
    // Full storage: keep nothing rather than a stale pair (a reload then replays from the start).
    try { sessionStorage.removeItem(STORE + runId); } catch { /* ignore */ }
  }
}

/** Fold one event into the viewer's model (new objects for what changed). */
function apply(m, name, data, seq) {
  const items = m.items;
  const last = items[items.length - 1];
  switch (name) {
    case "status":
      items.push({ k: "status", seq, status: data.status, error: data.error || null, error_code: data.error_code || null });
      if (FINAL.includes(data.status)) m.final = data.status;
      break;
    case "text_delta":
      if (last && last.k === "text" && !last.done) items[items.length - 1] = Object.assign({}, last, { text: last.text + (data.delta || "") });
      else items.push({ k: "text", seq, text: data.delta || "", done: false });
      break;
    case "assistant":
      if (last && last.k === "text" && !last.done) items[items.length - 1] = Object.assign({}, last, { text: data.content || last.text, done: true });
      else if (data.content) items.push({ k: "text", seq, text: data.content, done: true });
      break;
    case "tool_call":
      items.push({ k: "tool", seq, call_id: data.call_id, name: data.name, arguments: data.arguments, result: null });
      break;
    case "tool_result": {
      for (let i = items.length - 1; i >= 0; i--) {
        const it = items[i];
        if (it.k === "tool" && !it.result && (data.call_id ? it.call_id === data.call_id : it.name === data.name)) {
          items[i] = Object.assign({}, it, { result: data });
          return;
        }
      }
      items.push({ k: "tool", seq, call_id: data.call_id, name: data.name, arguments: null, result: data });
      break;
    }
    case "usage":
      m.usage = {
        input: m.usage.input + (Number(data.inputTokens) || 0),
        output: m.usage.output + (Number(data.outputTokens) || 0),
        cost: m.usage.cost + (Number(data.cost_usd) || 0),
      };
      break;
    default:
      items.push({ k: "other", seq, name, data });
  }
}

function EventItem({ it }) {
  if (it.k === "status") {
    return html`<div class="run-event status" data-seq=${it.seq}>
      <span class="muted">status</span> <${Status} value=${it.status} />
      ${it.error ? html` <span class="run-error">${it.error}</span>` : ""}${it.error_code ? html` <code>${it.error_code}</code>` : ""}
    </div>`;
  }
  if (it.k === "text") {
    return html`<div class=${"run-event text" + (it.done ? "" : " streaming")} data-seq=${it.seq}>${it.text}</div>`;
  }
  if (it.k === "tool") {
    const r = it.result;
    return html`<div class="run-event tool-call" data-seq=${it.seq} data-name=${it.name}>
      <div class="tool-head"><span class="muted">Tool</span> <code>${it.name}</code>
        ${!r ? html`<${Badge} kind="busy">running…<//>` : r.ok ? html`<${Badge} kind="ok">ok<//>` : html`<${Badge} kind="bad">failed<//>`}
        ${r && r.latency_ms != null ? html`<span class="muted">${fmtNumber(r.latency_ms, 0)} ms</span>` : ""}</div>
      <details><summary>Arguments${r ? " and result" : ""}</summary>
        ${it.arguments != null ? html`<pre>${JSON.stringify(it.arguments, null, 2)}</pre>` : ""}
        ${r && r.output != null ? html`<pre class="tool-output">${r.output}</pre>` : ""}
      </details>
    </div>`;
  }
  return html`<div class="run-event other" data-seq=${it.seq}><span class="muted">${it.name}</span> <code>${JSON.stringify(it.data)}</code></div>`;
}

const EVENTS = ["status", "text_delta", "assistant", "tool_call", "tool_result", "usage"];

/** The live stream of one run. */
function RunViewer({ run, onFinal, onStop }) {
  const runId = run.id;
  const model = useRef(null);
  if (!model.current) model.current = loadModel(runId);
  const [, setTick] = useState(0);
  const [conn, setConn] = useState("connecting");
  const [error, setError] = useState(null);
  const [epoch, setEpoch] = useState(0); // bumped by "Replay from the start"
  const stopAct = useAction();
  const box = useRef(null);
  const finalRef = useRef(onFinal);
  finalRef.current = onFinal;

  useEffect(() => {
    const m = model.current;
    if (m.final) { setConn("ended"); return undefined; }
    let saveTimer = null;
    const save = () => { clearTimeout(saveTimer); saveTimer = null; saveModel(runId, model.current); };
    const later = () => { if (!saveTimer) saveTimer = setTimeout(save, 300); };
    const url = "/v1/agent-run/" + encodeURIComponent(runId) + "/stream?token=" + encodeURIComponent(session.token || "") +
      (m.last ? "&last_id=" + m.last : "");
    setConn("connecting");
    setError(null);
    const es = new EventSource(url);
    const on = (name) => (e) => {
      const seq = Number(e.lastEventId);
      const cur = model.current;
      // Each event once: anything at or before the last id shown is a repeat.
      if (Number.isFinite(seq) && seq > 0) {
        if (seq <= cur.last) return;
        cur.last = seq;
      }
      let data = null;
      try { data = JSON.parse(e.data); } catch { data = { raw: e.data }; }
      apply(cur, name, data || {}, seq);
      setTick((t) => t + 1);
      if (cur.final) {
        es.close();
        save();
        setConn("ended");
        finalRef.current && finalRef.current(cur.final);
      } else later();
    };
    for (const name of EVENTS) es.addEventListener(name, on(name));
    es.onopen = () => setConn("live");
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        setConn("closed");
        // EventSource hides the response; ask the API what is wrong (404, 401, …).
        api("GET", "/v1/agent-run/" + encodeURIComponent(runId)).then(
          (r) => setError(new ApiError(0, "STREAM_CLOSED", "The event stream closed", "The run is " + r.status + ".")),
          (err) => setError(err),
        );
      } else setConn("reconnecting");
    };
    addEventListener("pagehide", save);
    return () => {
      es.close();
      removeEventListener("pagehide", save);
      save();
    };
  }, [runId, epoch]);

  // Follow the newest event unless the reader scrolled up.
  useEffect(() => {
    const el = box.current;
    if (el && el.scrollHeight - el.scrollTop - el.clientHeight < 120) el.scrollTop = el.scrollHeight;
  });

  const replay = () => {
    model.current = emptyModel();
    try { sessionStorage.removeItem(STORE + runId); } catch { /* ignore */ }
    setTick((t) => t + 1);
    setEpoch((n) => n + 1);
  };
  const stop = () => stopAct.run(async () => { await api("POST", "/v1/agent-run/" + encodeURIComponent(runId) + "/stop"); onStop && onStop(); });

  const m = model.current;
  const running = !m.final && run.status === "running";
  const connLabel = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", ended: "ended", closed: "closed" }[conn];
  return html`<section class="card run-viewer" aria-labelledby="run-viewer-title">
    <div class="viewer-head">
      <h2 id="run-viewer-title">Run <code title=${runId}>${short(runId)}</code></h2>
      <${Status} value=${m.final || run.status} />
      <span class=${"conn conn-" + conn} role="status">${connLabel}</span>
      <span class="spacer"></span>
      ${running ? html`<button type="button" id="run-stop" class="danger" disabled=${stopAct.busy} onClick=${stop}>${stopAct.busy ? "Stopping…" : "Stop"}</button>` : ""}
      ${m.final ? html`<button type="button" id="run-replay" onClick=${replay}>Replay from the start</button>` : ""}
    </div>
    <p class="hint">Streamed tokens ${fmtNumber(m.usage.input, 0)} in / ${fmtNumber(m.usage.output, 0)} out, ${fmtMoney(m.usage.cost)} · last event ${m.last || "—"}</p>
    <${ErrorBox} error=${stopAct.error} />
    <${ErrorBox} error=${error} />
    <div id="run-events" class="run-events" ref=${box} role="log" aria-label="Run events" aria-busy=${conn === "live" || conn === "connecting" ? "true" : "false"}>
      ${m.items.length ? m.items.map((it, i) => html`<${EventItem} it=${it} key=${i} />`) : html`<p class="muted">${conn === "connecting" ? "Waiting for events…" : "No events."}</p>`}
    </div>
  </section>`;
}

async function download(projectId, path) {
  const resp = await fetch("/v1/projects/" + encodeURIComponent(projectId) + "/files/content?path=" + encodeURIComponent(path), {
    headers: session.token ? { Authorization: "Bearer " + session.token } : {},
  });
  if (!resp.ok) {
    let body = null;
    try { body = await resp.json(); } catch { /* not JSON */ }
    const err = (body && body.error) || {};
    if (resp.status === 401) session.clear("Your session expired. Sign in again.");
    throw new ApiError(resp.status, err.code || "HTTP_" + resp.status, err.message || resp.statusText || "Download failed", body ? body.detail : null);
  }
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = path.split("/").pop() || "download";
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30000);
}

function Files({ projectId, state, reload }) {
  const act = useAction();
  const [which, setWhich] = useState(null);
  const get = (path) => { setWhich(path); act.run(() => download(projectId, path)); };
  return html`<section aria-labelledby="files-title">
    <div class="section-head"><h2 id="files-title">Workspace files</h2>
      <button type="button" id="files-refresh" onClick=${reload}>Refresh</button></div>
    <${ErrorBox} error=${act.error} />
    <${Async} state=${state} reload=${reload}>${(d) => (!d ? html`<${Loading} what="files" />` : !d.files.length
      ? html`<${Empty}>The workspace is empty.<//>`
      : html`<div class="table-wrap"><table>
        <thead><tr><th scope="col">Path</th><th scope="col" class="num">Size</th><th scope="col" class="hide-narrow">Modified</th><th scope="col"><span class="sr-only">Download</span></th></tr></thead>
        <tbody>${d.files.map((f) => html`<tr class="workspace-file" key=${f.path} data-path=${f.path}>
          <td><code class="path" title=${"/workspace/" + f.path}>${f.path}</code></td>
          <td class="num nowrap">${fmtBytes(f.size)}</td>
          <td class="hide-narrow">${fmtDate(f.modified_at)}</td>
          <td class="actions"><button type="button" class="download" aria-label=${"Download " + f.path} disabled=${act.busy && which === f.path}
            onClick=${() => get(f.path)}>${act.busy && which === f.path ? "Downloading…" : "Download"}</button></td>
        </tr>`)}</tbody></table></div>
        ${d.pagination && d.pagination.total > d.files.length ? html`<p class="hint">Showing ${d.files.length} of ${d.pagination.total} files.</p>` : ""}`)}<//>
  </section>`;
}

function Messages({ state, reload }) {
  return html`<section aria-labelledby="messages-title">
    <div class="section-head"><h2 id="messages-title">Messages</h2></div>
    <${Async} state=${state} reload=${reload}>${(d) => (!d.messages.length ? html`<${Empty}>No messages yet.<//>` : html`<div class="thread-messages">
      ${d.messages.map((msg) => html`<article class=${"thread-message " + msg.type} key=${msg.message_id}>
        <header><strong>${msg.type}</strong> <span class="muted">${fmtDate(msg.created_at)}</span></header>
        ${msg.type === "tool" || msg.content.length > 4000
          ? html`<details><summary>${msg.content.slice(0, 120)}${msg.content.length > 120 ? "…" : ""}</summary><pre>${msg.content}</pre></details>`
          : html`<div class="content">${msg.content}</div>`}
      </article>`)}
      ${d.pagination && d.pagination.total > d.messages.length ? html`<p class="hint">Showing the latest ${d.messages.length} of ${d.pagination.total} messages.</p>` : ""}
    </div>`)}<//>
  </section>`;
}

async function latestMessages(id) {
  const path = "/v1/threads/" + encodeURIComponent(id) + "/messages?limit=200";
  const first = await api("GET", path);
  const total = first.pagination ? first.pagination.total : 0;
  if (total <= first.messages.length) return first;
  return api("GET", path + "&offset=" + Math.max(0, total - 200));
}

export default function Thread({ params }) {
  const id = params.thread;
  const enc = encodeURIComponent(id);
  const [thread, reloadThread] = useAsync(() => api("GET", "/v1/threads/" + enc), [id]);
  const [runs, reloadRuns] = useAsync(() => api("GET", "/v1/thread/" + enc + "/agent-runs?limit=200"), [id]);
  const [messages, reloadMessages] = useAsync(() => latestMessages(id), [id]);
  const projectId = thread.data && thread.data.project_id;
  const [files, reloadFiles] = useAsync(() => (projectId ? api("GET", "/v1/projects/" + encodeURIComponent(projectId) + "/files?limit=200") : null), [projectId]);
  const [agents] = useAsync(() => api("GET", "/v1/agents?limit=200").catch(() => null), []);
  const [selected, setSelected] = useState(queryRun());

  const list = runs.data ? runs.data.agent_runs : null;
  // Open the run named in the address, else the running one, else the newest.
  useEffect(() => {
    if (!list || !list.length) return;
    if (selected && list.some((r) => r.id === selected)) return;
    const running = list.find((r) => r.status === "running");
    const newest = list.slice().sort((a, b) => String(b.started_at).localeCompare(String(a.started_at)))[0];
    setSelected((running || newest).id);
  }, [list]);

  const select = (runId) => {
    setSelected(runId);
    history.replaceState(null, "", "#/runs/" + enc + "?run=" + encodeURIComponent(runId));
  };
  const refreshAll = () => { reloadRuns(); reloadMessages(); reloadFiles(); };
  const run = list && list.find((r) => r.id === selected);

  return html`<${Page} title=${thread.data ? thread.data.name : "Thread"} actions=${html`
      <${Link} to="/runs" class="button">All runs<//>
      <button type="button" id="thread-refresh" onClick=${() => { reloadThread(); refreshAll(); }}>Refresh</button>`}>
    <${ErrorBox} error=${thread.error} onRetry=${reloadThread} />
    ${thread.data ? html`<p class="hint">Thread <code>${thread.data.thread_id}</code> · project <code>${thread.data.project_id}</code> · created ${fmtDate(thread.data.created_at)}</p>` : ""}

    ${run ? html`<${RunViewer} key=${run.id} run=${run} onFinal=${refreshAll} onStop=${reloadRuns} />`
      : selected && runs.loading ? html`<${Loading} what="the run" />` : ""}

    <h2>Runs</h2>
    <${Async} state=${runs} reload=${reloadRuns}>${(d) => html`<${Table} rowKey=${(r) => r.id} empty="No runs in this thread."
      rows=${d.agent_runs}
      columns=${[
        { title: "Run", render: (r) => html`<code title=${r.id}>${short(r.id)}</code>${r.id === selected ? html` <${Badge}>viewing<//>` : ""}` },
        { title: "Status", render: (r) => html`<${Status} value=${r.status} />${r.error ? html`<div class="run-error">${r.error}${r.error_code ? html` <code>${r.error_code}</code>` : ""}</div>` : ""}` },
        { title: "Model", render: (r) => r.model_name || html`<span class="muted">default</span>` },
        { title: "Started", render: (r) => fmtDate(r.started_at) },
        { title: "Finished", render: (r) => fmtDate(r.completed_at) },
        { title: "Tokens in/out", class: "num", render: (r) => html`<${RunUsage} run=${r} />` },
        { title: "Cost", class: "num", render: (r) => fmtMoney(r.usage && r.usage.cost_usd) },
        { title: "", class: "actions", render: (r) => (r.id === selected ? "" : html`<button type="button" class="view-run" onClick=${() => select(r.id)}>View</button>`) },
      ]} />`}<//>

    <${StartRun} threadId=${id} agents=${agents.data} onStarted=${(r) => { select(r.agent_run_id); reloadRuns(); }} />

    <div class="thread-columns">
      <${Messages} state=${messages} reload=${reloadMessages} />
      ${projectId ? html`<${Files} projectId=${projectId} state=${files} reload=${reloadFiles} />` : ""}
    </div>
  <//>`;
}

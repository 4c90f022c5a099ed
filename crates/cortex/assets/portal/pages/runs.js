// Agent runs (contract §10): start a run (multipart POST /v1/agent/start with a prompt and
// files), the runs running now, and the threads; a thread opens its own page (pages/thread.js).
import {
  html, useState, useRef, Page, Async, ErrorBox, Table, Status, Link, Field,
  useAsync, useAction, fmtDate, fmtNumber, fmtBytes, go,
} from "../lib/ui.js";
import { api, upload } from "../lib/api.js";

export const short = (id) => (id ? String(id).slice(0, 8) : "—");

/** The start form: a new thread (here) or a follow-up on `threadId` (the thread page). */
export function StartRun({ threadId, onStarted, agents }) {
  const [prompt, setPrompt] = useState("");
  const [files, setFiles] = useState([]);
  const [agentId, setAgentId] = useState("");
  const [model, setModel] = useState("");
  const [progress, setProgress] = useState(null);
  const act = useAction();
  const fileInput = useRef(null);

  const submit = (e) => {
    e.preventDefault();
    act.run(async () => {
      const form = new FormData();
      if (prompt.trim()) form.append("prompt", prompt);
      if (threadId) form.append("thread_id", threadId);
      if (agentId) form.append("agent_id", agentId);
      if (model.trim()) form.append("model_name", model.trim());
      for (const f of files) form.append("files", f, f.name);
      setProgress(files.length ? [0, 0] : null);
      try {
        const r = await upload("/v1/agent/start", form, (sent, total) => setProgress([sent, total]));
        setPrompt("");
        setFiles([]);
        if (fileInput.current) fileInput.current.value = "";
        onStarted(r);
      } finally {
        setProgress(null);
      }
    });
  };

  const list = agents && agents.agents;
  return html`<form class="card start-run" onSubmit=${submit} aria-label=${threadId ? "Continue the thread" : "Start a run"}>
    <h2>${threadId ? "Continue this thread" : "Start a run"}</h2>
    <${Field} label="Prompt" id="run-prompt" hint=${threadId ? "The agent continues the thread with this message." : "Starts a new thread in a new project; uploaded files land in its workspace."}>
      <textarea id="run-prompt" rows="4" maxlength="100000" required=${!threadId} value=${prompt} onInput=${(e) => setPrompt(e.target.value)}
        placeholder="What should the agent do?"></textarea>
    <//>
    <div class="row">
      <div class="field"><label for="run-files">Files</label>
        <input id="run-files" type="file" multiple ref=${fileInput} onChange=${(e) => setFiles([...e.target.files])} />
        ${files.length ? html`<small class="hint">${files.length} file${files.length > 1 ? "s" : ""}, ${fmtBytes(files.reduce((n, f) => n + f.size, 0))}</small>` : ""}</div>
      ${list ? html`<div class="field"><label for="run-agent">Agent</label>
        <select id="run-agent" value=${agentId} onChange=${(e) => setAgentId(e.target.value)}>
          <option value="">Default agent</option>
          ${list.map((a) => html`<option value=${a.id} key=${a.id}>${a.name}</option>`)}
        </select></div>` : ""}
      <div class="field"><label for="run-model">Model</label>
        <input id="run-model" list="run-model-tiers" value=${model} onInput=${(e) => setModel(e.target.value)} placeholder="plan default" />
        <datalist id="run-model-tiers"><option value="speed" /><option value="nano" /><option value="sonnet" /><option value="complex" /><option value="search" /></datalist>
        <small class="hint">A tier or provider/model.</small></div>
    </div>
    ${progress ? html`<div role="status"><progress value=${progress[0]} max=${progress[1] || 1}></progress>
      <small class="hint">Uploading ${fmtBytes(progress[0])}${progress[1] ? " of " + fmtBytes(progress[1]) : ""}</small></div>` : ""}
    <${ErrorBox} error=${act.error} />
    <button type="submit" id="run-start" class="primary" disabled=${act.busy}>${act.busy ? "Starting…" : threadId ? "Send" : "Start run"}</button>
  </form>`;
}

export function RunUsage({ run }) {
  const u = run.usage || {};
  return html`<span class="nowrap">${fmtNumber(u.input_tokens, 0)} / ${fmtNumber(u.output_tokens, 0)}</span>`;
}

export default function Runs() {
  const [threads, reloadThreads] = useAsync(() => api("GET", "/v1/threads?limit=200"), []);
  const [active, reloadActive] = useAsync(() => api("GET", "/v1/agent-runs/active?limit=200"), []);
  const [agents] = useAsync(() => api("GET", "/v1/agents?limit=200").catch(() => null), []);
  const reload = () => { reloadThreads(); reloadActive(); };

  return html`<${Page} title="Runs" actions=${html`<button type="button" id="runs-refresh" onClick=${reload}>Refresh</button>`}>
    <${StartRun} agents=${agents.data} onStarted=${(r) => go("/runs/" + r.thread_id + "?run=" + r.agent_run_id)} />

    <h2>Running now</h2>
    <${Async} state=${active} reload=${reloadActive}>${(d) => html`<${Table} rowKey=${(r) => r.id} empty="No run is running."
      rows=${d.agent_runs}
      columns=${[
        { title: "Run", render: (r) => html`<code title=${r.id}>${short(r.id)}</code>` },
        { title: "Thread", render: (r) => html`<${Link} to=${"/runs/" + r.thread_id + "?run=" + r.id}>${short(r.thread_id)}<//>` },
        { title: "Status", render: (r) => html`<${Status} value=${r.status} />` },
        { title: "Model", render: (r) => r.model_name || html`<span class="muted">default</span>` },
        { title: "Started", render: (r) => fmtDate(r.started_at) },
        { title: "Tokens in/out", class: "num", render: (r) => html`<${RunUsage} run=${r} />` },
      ]} />`}<//>

    <h2>Threads</h2>
    <${Async} state=${threads} reload=${reloadThreads}>${(d) => html`<${Table} rowKey=${(t) => t.thread_id} empty="No threads yet. Start a run above."
      rows=${d.threads}
      columns=${[
        { title: "Thread", render: (t) => html`<${Link} to=${"/runs/" + t.thread_id} class="thread-link">${t.name}<//>` },
        { title: "Project", render: (t) => html`<code title=${t.project_id}>${short(t.project_id)}</code>` },
        { title: "Created", render: (t) => fmtDate(t.created_at) },
        { title: "Updated", render: (t) => fmtDate(t.updated_at) },
      ]} />
      ${d.pagination && d.pagination.total > d.threads.length ? html`<p class="hint">Showing the first ${d.threads.length} of ${d.pagination.total} threads.</p>` : ""}`}<//>
  <//>`;
}


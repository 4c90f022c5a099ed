// Overview: what this company has (agents, knowledge sources, API keys), this node's pipeline
// figures (GET /v1/metrics/dashboard, admins only) and the first steps.
import { html, Page, ErrorBox, CopyButton, useAsync, fmtNumber } from "../lib/ui.js";
import { api, whoami } from "../lib/api.js";

/** `total` of a paginated list, or the error. */
const total = (path, key) => api("GET", path + "?limit=1").then((r) => ({ total: r.pagination ? r.pagination.total : (r[key] || []).length }));

function Stat({ id, label, state, value, href }) {
  let v;
  if (state.error) v = html`<span class="muted" title=${state.error.text || state.error.message}>—</span>`;
  else if (state.loading && !state.data) v = html`<span class="spinner" aria-label="Loading"></span>`;
  else v = value(state.data);
  return html`<div class="stat" id=${id}>
    <div class="value">${href ? html`<a href=${href}>${v}</a>` : v}</div>
    <div class="label">${label}</div>
  </div>`;
}

export default function Overview() {
  const [agents] = useAsync(() => total("/v1/agents", "agents"), []);
  const [sources] = useAsync(() => total("/v1/knowledge/sources", "sources"), []);
  const [keys] = useAsync(() => total("/portal/api/keys", "keys"), []);
  const [dash, reloadDash] = useAsync(() => api("GET", "/v1/metrics/dashboard"), []);
  const [me] = useAsync(() => whoami(), []);

  const count = (s) => (s.data ? s.data.total : null);
  const steps = [
    { id: "agent", done: count(agents) > 0, href: "#/agents/new", title: "Create an agent",
      text: "Give it a system prompt template, FAQs and settings." },
    { id: "knowledge", done: count(sources) > 0, href: "#/knowledge", title: "Add knowledge",
      text: "Create a source, upload files or a web page, then link it to the agent." },
    { id: "playground", done: false, href: "#/playground", title: "Try it in the playground",
      text: "Chat with the agent and see each pipeline stage's timing, tokens and cost." },
    { id: "keys", done: count(keys) > 0, href: "#/keys", title: "Create an API key",
      text: "Call /v1/chat from your backend with Authorization: Bearer ctx_…" },
    { id: "widget", done: false, href: "#/widget", title: "Embed the chat widget",
      text: "A public key bound to one agent and your site's origins, and one script tag." },
  ];

  const d = dash.data;
  return html`<${Page} title="Overview">
    <h2 style=${{ marginTop: 0 }}>Your workspace</h2>
    <div class="grid" id="overview-counts">
      <${Stat} id="count-agents" label="Agents" state=${agents} value=${(x) => fmtNumber(x.total, 0)} href="#/agents" />
      <${Stat} id="count-sources" label="Knowledge sources" state=${sources} value=${(x) => fmtNumber(x.total, 0)} href="#/knowledge" />
      <${Stat} id="count-keys" label="API keys" state=${keys} value=${(x) => fmtNumber(x.total, 0)} href="#/keys" />
    </div>
    ${me.data ? html`<p class="hint" id="company-id">Company id (the <code>company_id</code> of <code>/v1/chat</code>): <code>${me.data.company_id}</code> <${CopyButton} text=${me.data.company_id} /></p>` : ""}

    <section class="card" aria-labelledby="steps-title" style=${{ marginTop: "16px" }}>
      <h2 id="steps-title" style=${{ marginTop: 0 }}>Getting started</h2>
      <ol class="checklist" id="getting-started">
        ${steps.map((s) => html`<li class=${s.done ? "done" : ""} data-step=${s.id}>
          <span class="mark" aria-hidden="true">${s.done ? "✓" : "○"}</span>
          <span><a href=${s.href}><strong>${s.title}</strong></a>${s.done ? html` <span class="visually-hidden">(done)</span>` : ""}<br />
            <span class="muted">${s.text}</span></span>
        </li>`)}
      </ol>
    </section>

    <h2>This node's pipeline</h2>
    ${dash.error
      ? (dash.error.status === 403
        ? html`<p class="muted" id="metrics-unavailable">Pipeline metrics are for company admins.</p>`
        : html`<${ErrorBox} error=${dash.error} onRetry=${reloadDash} />`)
      : html`<div class="grid" id="overview-metrics">
        <${Stat} id="metric-config-hit-rate" label="Config cache hit rate" state=${dash} value=${(x) => fmtNumber(x.config_loading.cache_hit_rate, 1) + " %"} />
        <${Stat} id="metric-config-loads" label="Agent config loads (requests)" state=${dash} value=${(x) => fmtNumber(x.config_loading.total_loads, 0)} />
        <${Stat} id="metric-routed" label="Messages routed to a model" state=${dash} value=${(x) => fmtNumber(x.model_routing.total_routed, 0)} />
        <${Stat} id="metric-llm-latency" label="Average model latency" state=${dash} value=${(x) => fmtNumber(x.agent_compilation.avg_llm_latency_ms, 0) + " ms"} />
        <${Stat} id="metric-tool-rate" label="Answers with tool calls" state=${dash} value=${(x) => fmtNumber(x.agent_compilation.tool_call_rate, 1) + " %"} />
      </div>
      ${d && d.model_routing && d.model_routing.by_tier && Object.keys(d.model_routing.by_tier).length
        ? html`<p class="hint" id="metric-by-tier">By tier: ${Object.entries(d.model_routing.by_tier).map(([t, n]) => html`<code>${t}</code> ${fmtNumber(n, 0)} `)}</p>` : ""}
      <p class="hint">Figures of the node that answered, since it started. Per-company usage and cost: <a href="#/usage">Usage</a>.</p>`}
  <//>`;
}

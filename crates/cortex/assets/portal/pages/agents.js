// Agents: the company's agents, with links to edit and chat, and the default agent.
// Server: crates/cortex/src/api/agents.rs; the default rule is in api/runs.rs `default_agent`
// (the most recently updated agent with `is_default`, else the oldest agent).
import { html, useState, Page, Async, ErrorBox, Table, Pager, Badge, Link, useAsync, useAction, fmtDate } from "../lib/ui.js";
import { api } from "../lib/api.js";

const PAGE = 50;

/** The id of the company's default agent among `agents`, as the server picks it. `complete`:
 *  the list holds every agent (the "oldest" fallback needs them all). */
export function defaultAgentId(agents, complete) {
  let chosen = null;
  for (const a of agents) {
    if (a.is_default && (!chosen || new Date(a.updated_at) > new Date(chosen.updated_at))) chosen = a;
  }
  if (chosen) return chosen.id;
  if (!complete || !agents.length) return null;
  return agents.reduce((o, a) => (new Date(a.created_at) < new Date(o.created_at) ? a : o)).id;
}

export default function Agents() {
  const [offset, setOffset] = useState(0);
  const [state, reload] = useAsync(() => api("GET", `/v1/agents?limit=${PAGE}&offset=${offset}`), [offset]);
  const act = useAction();

  const makeDefault = (agent, agents) => act.run(async () => {
    await api("PATCH", `/v1/agents/${encodeURIComponent(agent.id)}`, { is_default: true });
    // The newest marked agent wins anyway; unmark the others so the list says one thing.
    for (const other of agents) {
      if (other.id !== agent.id && other.is_default) {
        try { await api("PATCH", `/v1/agents/${encodeURIComponent(other.id)}`, { is_default: false }); } catch { /* harmless */ }
      }
    }
    reload();
  });

  return html`<${Page} title="Agents" actions=${html`<a class="button primary" id="agent-new" href="#/agents/new">New agent</a>`}>
    <p class="muted">An agent is a system prompt template, FAQs, scenarios, knowledge sources, actions and settings. Runs started without an <code>agent_id</code> use the default agent.</p>
    <${ErrorBox} error=${act.error} />
    <${Async} state=${state} reload=${reload}>${(data) => {
      const complete = data.pagination.offset === 0 && data.pagination.total <= data.agents.length;
      const def = defaultAgentId(data.agents, complete);
      const columns = [
        {
          title: "Name",
          render: (a) => html`<${Link} to=${"/agents/" + a.id}><strong>${a.name}</strong><//>
            ${a.id === def ? html` <${Badge} kind="ok">default<//>` : ""}
            <div class="muted"><code title=${a.id}>${a.id.slice(0, 8)}…</code></div>`,
        },
        { title: "Tier", render: (a) => (a.settings && a.settings.tier) || html`<span class="muted">routed</span>` },
        { title: "Knowledge", class: "num", render: (a) => (a.knowledge_source_ids || []).length },
        { title: "Actions", class: "num", render: (a) => (a.action_ids || []).length },
        { title: "FAQs", class: "num", render: (a) => (a.workflow_faqs || []).length },
        { title: "Updated", render: (a) => fmtDate(a.updated_at) },
        {
          title: html`<span class="visually-hidden">Actions</span>`,
          class: "actions",
          render: (a) => html`
            <a class="button" href=${"#/playground/" + encodeURIComponent(a.id)} data-chat=${a.id}>Chat</a>
            <a class="button" href=${"#/agents/" + encodeURIComponent(a.id)}>Edit</a>
            ${a.id === def ? "" : html`<button type="button" data-make-default=${a.id} disabled=${act.busy} onClick=${() => makeDefault(a, data.agents)}>Set as default</button>`}`,
        },
      ];
      return html`<div id="agent-list">
        <${Table} columns=${columns} rows=${data.agents} empty=${html`No agents yet. <a href="#/agents/new">Create your first agent</a>.`} />
        <${Pager} page=${data.pagination} onOffset=${setOffset} />
      </div>`;
    }}<//>
  <//>`;
}

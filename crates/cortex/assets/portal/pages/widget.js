// Widget: public keys (pk_…, one agent, allowed origins) for the embeddable chat widget, the
// snippet to paste into a site, and a live preview that loads the real /widget.js into this page.
import {
  html, useState, useEffect, Page, Async, ErrorBox, Table, Confirm, CopyButton, Field, Badge, Empty, Link,
  useAsync, useAction, fmtDate,
} from "../lib/ui.js";
import { api } from "../lib/api.js";

/** Whether `origin` matches one of the key's patterns (exact, or `https://*.example.com`). */
function allows(patterns, origin) {
  return (patterns || []).some((p) => {
    if (p === origin) return true;
    const m = /^([a-z]+:\/\/)\*\.(.+)$/i.exec(p);
    return !!m && origin.startsWith(m[1]) && origin.slice(m[1].length).endsWith("." + m[2]);
  });
}

function snippet(key, title) {
  return `<script src="${location.origin}/widget.js" data-public-key="${key.key}" data-agent-id="${key.agent_id}"` +
    (title ? ` data-title="${title.replace(/[&"<>]/g, (c) => ({ "&": "&amp;", '"': "&quot;", "<": "&lt;", ">": "&gt;" })[c])}"` : "") +
    " defer></script>";
}

/** Remove a preview loaded earlier: its script element and the widget it drew. */
function removePreview() {
  document.querySelectorAll("script[data-cortex-preview]").forEach((s) => s.remove());
  for (const el of [...document.body.children]) {
    if (el.hasAttribute("data-cortex-preview-host") || (el.tagName === "DIV" && el.shadowRoot && el.id !== "app")) el.remove();
  }
}

/** Load the real widget script into this page (it reads document.currentScript's data attributes). */
function loadPreview(key, title) {
  removePreview();
  const before = new Set(document.body.children);
  const s = document.createElement("script");
  s.src = "/widget.js";
  s.setAttribute("data-public-key", key.key);
  s.setAttribute("data-agent-id", key.agent_id);
  if (title) s.setAttribute("data-title", title);
  s.setAttribute("data-cortex-preview", "");
  return new Promise((resolve, reject) => {
    s.onload = () => {
      for (const el of document.body.children) if (!before.has(el) && el !== s) el.setAttribute("data-cortex-preview-host", "");
      resolve();
    };
    s.onerror = () => reject(new Error("/widget.js could not be loaded"));
    document.body.appendChild(s);
  });
}

function CreateKey({ agents, onCreated }) {
  const [name, setName] = useState("widget");
  const [agentId, setAgentId] = useState("");
  const [origins, setOrigins] = useState(location.origin);
  const act = useAction();
  const list = agents || [];
  useEffect(() => { if (!agentId && list.length) setAgentId(list[0].id); }, [agents]);
  const submit = (e) => {
    e.preventDefault();
    const allowed = origins.split(/[\s,]+/).map((o) => o.trim()).filter(Boolean);
    act.run(async () => {
      const k = await api("POST", "/v1/public-keys", { name: name.trim() || "widget", agent_id: agentId, allowed_origins: allowed });
      onCreated(k);
    });
  };
  if (!list.length) return html`<${Empty}>A widget talks to one agent: <${Link} to="/agents/new">create an agent<//> first.<//>`;
  return html`<form class="card" onSubmit=${submit} aria-labelledby="widget-create-title">
    <h2 id="widget-create-title">New public key</h2>
    <div class="row">
      <${Field} label="Name" id="widget-name"><input id="widget-name" maxlength="100" value=${name} onInput=${(e) => setName(e.target.value)} /><//>
      <${Field} label="Agent" id="widget-agent">
        <select id="widget-agent" required value=${agentId} onChange=${(e) => setAgentId(e.target.value)}>
          ${list.map((a) => html`<option value=${a.id} key=${a.id}>${a.name}</option>`)}
        </select><//>
    </div>
    <${Field} label="Allowed origins" id="widget-origins" hint=${html`One per line (1–20), e.g. <code>https://shop.example.com</code> or <code>https://*.example.com</code>. This portal's origin is filled in so the preview works here.`}>
      <textarea id="widget-origins" rows="3" spellcheck="false" value=${origins} onInput=${(e) => setOrigins(e.target.value)}></textarea><//>
    <${ErrorBox} error=${act.error} />
    <button type="submit" id="widget-create" class="primary" disabled=${act.busy || !agentId}>${act.busy ? "Creating…" : "Create key"}</button>
  </form>`;
}

function Embed({ keys, agentName, selected, setSelected }) {
  const [title, setTitle] = useState("");
  const [shown, setShown] = useState(false);
  const act = useAction();
  const live = keys.filter((k) => !k.revoked_at);
  const key = live.find((k) => k.id === selected) || live[0];
  useEffect(() => () => removePreview(), []);
  if (!key) return html`<${Empty}>Create a public key to get the embed snippet.<//>`;
  const code = snippet(key, title.trim());
  const here = allows(key.allowed_origins, location.origin);
  const preview = () => act.run(async () => { await loadPreview(key, title.trim() || "Preview: " + agentName(key.agent_id)); setShown(true); });
  const remove = () => { removePreview(); setShown(false); };
  return html`<section class="card" aria-labelledby="widget-embed-title">
    <h2 id="widget-embed-title">Embed</h2>
    <div class="row">
      <${Field} label="Public key" id="widget-key">
        <select id="widget-key" value=${key.id} onChange=${(e) => setSelected(e.target.value)}>
          ${live.map((k) => html`<option value=${k.id} key=${k.id}>${k.name} · ${agentName(k.agent_id)} · ${k.key.slice(0, 10)}…</option>`)}
        </select><//>
      <${Field} label="Title (optional)" id="widget-title">
        <input id="widget-title" maxlength="60" value=${title} placeholder="Chat" onInput=${(e) => setTitle(e.target.value)} /><//>
    </div>
    <p>Paste this before <code>${"</body>"}</code> on a page whose origin the key allows:</p>
    <div class="snippet"><pre id="widget-snippet">${code}</pre><${CopyButton} text=${code} label="Copy snippet" /></div>
    ${here ? "" : html`<p class="notice" role="status">This key does not allow this portal's origin (<code>${location.origin}</code>): the preview will be refused.</p>`}
    <div class="form-actions start">
      <button type="button" id="widget-preview" class="primary" disabled=${act.busy} onClick=${preview}>${act.busy ? "Loading…" : shown ? "Reload preview" : "Live preview"}</button>
      ${shown ? html`<button type="button" id="widget-preview-remove" onClick=${remove}>Remove preview</button>` : ""}
    </div>
    ${shown ? html`<p class="hint" role="status">The widget is loaded in this page: its button is at the bottom right.</p>` : ""}
    <${ErrorBox} error=${act.error} />
  </section>`;
}

export default function Widget() {
  const [keys, reloadKeys] = useAsync(() => api("GET", "/v1/public-keys?limit=200"), []);
  const [agents, reloadAgents] = useAsync(() => api("GET", "/v1/agents?limit=200"), []);
  const [selected, setSelected] = useState("");
  const [revoking, setRevoking] = useState(null);
  const agentList = agents.data ? agents.data.agents : [];
  const agentName = (id) => { const a = agentList.find((x) => x.id === id); return a ? a.name : String(id).slice(0, 8); };

  return html`<${Page} title="Widget">
    <p class="hint">The chat widget is one script tag. It exchanges a public key for a short-lived session, and only on the origins the key allows.</p>
    <${Async} state=${agents} reload=${reloadAgents}>${(d) => html`<${CreateKey} agents=${d.agents} onCreated=${(k) => { setSelected(k.id); reloadKeys(); }} />`}<//>

    <${Async} state=${keys} reload=${reloadKeys}>${(d) => html`
      <${Embed} keys=${d.public_keys} agentName=${agentName} selected=${selected} setSelected=${setSelected} />
      <h2>Public keys</h2>
      <${Table} rowKey=${(k) => k.id} empty="No public keys yet." rows=${d.public_keys} columns=${[
        { title: "Name", render: (k) => html`<strong>${k.name}</strong>` },
        { title: "Key", render: (k) => html`<span class="secret"><code class="public-key">${k.key}</code><${CopyButton} text=${k.key} /></span>` },
        { title: "Agent", render: (k) => agentName(k.agent_id) },
        { title: "Allowed origins", render: (k) => k.allowed_origins.map((o) => html`<div key=${o}><code>${o}</code></div>`) },
        { title: "Status", render: (k) => (k.revoked_at ? html`<${Badge} kind="muted">revoked<//>` : html`<${Badge} kind="ok">active<//>`) },
        { title: "Created", render: (k) => fmtDate(k.created_at) },
        { title: "", class: "actions", render: (k) => (k.revoked_at ? "" : html`
          <button type="button" onClick=${() => setSelected(k.id)}>Embed</button>
          <button type="button" class="danger" aria-label=${"Revoke " + k.name} onClick=${() => setRevoking(k)}>Revoke</button>`) },
      ]} />`}<//>

    ${revoking ? html`<${Confirm} title="Revoke public key" confirmLabel="Revoke"
      message=${html`Revoke <code>${revoking.key.slice(0, 12)}…</code> (${revoking.name})? Sites embedding it stop working at once, and its open chat sessions end.`}
      onConfirm=${async () => { await api("DELETE", "/v1/public-keys/" + encodeURIComponent(revoking.id)); if (selected === revoking.id) setSelected(""); removePreview(); reloadKeys(); }}
      onClose=${() => setRevoking(null)} />` : ""}
  <//>`;
}

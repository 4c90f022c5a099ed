// API keys: list, create (the raw key is shown once), revoke.
// Server: crates/cortex/src/api/portal.rs (GET/POST /portal/api/keys, DELETE /portal/api/keys/{id}).
import {
  html, useState, Page, Async, ErrorBox, Modal, Confirm, CopyButton, Field, Badge, Table, Pager,
  useAsync, useAction, fmtDate,
} from "../lib/ui.js";
import { api } from "../lib/api.js";

// The scopes of the server's route families (api/auth.rs `ROUTE_SCOPES`); `*` grants all of them.
const SCOPES = [
  ["*", "Everything (default)"],
  ["chat", "/v1/chat and /v1/chat/stream"],
  ["memory", "Customer memory"],
  ["runs", "Agent runs, threads and projects"],
  ["agents", "Read agents"],
  ["actions", "Read actions and connections"],
  ["knowledge", "Read and search knowledge"],
  ["cache", "Answer cache statistics"],
  ["metrics", "Metrics (/v1/metrics…)"],
  ["admin", "Change agents, actions, knowledge, the cache and public keys (and read them)"],
];

const PAGE = 50;

export default function Keys() {
  const [offset, setOffset] = useState(0);
  const [state, reload] = useAsync(() => api("GET", `/portal/api/keys?limit=${PAGE}&offset=${offset}`), [offset]);
  const [creating, setCreating] = useState(false);
  const [revoking, setRevoking] = useState(null);

  const columns = [
    { title: "Name", render: (k) => html`<strong>${k.name}</strong>` },
    { title: "Key", render: (k) => html`<code>${k.key_prefix}…</code>` },
    { title: "Scopes", render: (k) => k.scopes.map((s) => html`<${Badge}>${s}<//> `) },
    { title: "Last used", render: (k) => (k.last_used_at ? fmtDate(k.last_used_at) : html`<span class="muted">never</span>`) },
    {
      title: "Expires",
      render: (k) => {
        if (!k.expires_at) return html`<span class="muted">never</span>`;
        const past = new Date(k.expires_at) < new Date();
        return html`${fmtDate(k.expires_at)} ${past ? html`<${Badge} kind="bad">expired<//>` : ""}`;
      },
    },
    { title: "Created", render: (k) => fmtDate(k.created_at) },
    {
      title: html`<span class="visually-hidden">Actions</span>`,
      class: "actions",
      render: (k) => html`<button type="button" class="danger" data-key-id=${k.id} aria-label=${"Revoke " + k.name} onClick=${() => setRevoking(k)}>Revoke</button>`,
    },
  ];

  return html`<${Page} title="API keys" actions=${html`<button type="button" class="primary" id="key-create" onClick=${() => setCreating(true)}>New API key</button>`}>
    <p class="muted">Server-side keys (<code>ctx_…</code>) for the API: send them as <code>Authorization: Bearer ctx_…</code> or <code>X-API-Key</code>. The raw key is shown once, when it is created.</p>
    <${Async} state=${state} reload=${reload}>${(data) => html`
      <div id="key-list">
        <${Table} columns=${columns} rows=${data.keys} empty="No API keys yet. Create one to call the API from your code." />
        <${Pager} page=${data.pagination} onOffset=${setOffset} />
      </div>`}<//>
    ${creating ? html`<${CreateKey} onCreated=${reload} onClose=${() => { setCreating(false); reload(); }} />` : ""}
    ${revoking ? html`<${Confirm}
        title="Revoke API key"
        message=${html`Revoke <strong>${revoking.name}</strong> (<code>${revoking.key_prefix}…</code>)? It stops working immediately, everywhere. This cannot be undone.`}
        confirmLabel="Revoke"
        onConfirm=${async () => {
          await api("DELETE", `/portal/api/keys/${encodeURIComponent(revoking.id)}`);
          if (state.data && state.data.keys.length === 1 && offset > 0) setOffset(Math.max(0, offset - PAGE));
          else reload();
        }}
        onClose=${() => setRevoking(null)} />` : ""}
  <//>`;
}

function CreateKey({ onCreated, onClose }) {
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState(["*"]);
  const [days, setDays] = useState("");
  const [created, setCreated] = useState(null);
  const act = useAction();

  const toggle = (s) => setScopes((cur) => (cur.includes(s) ? cur.filter((x) => x !== s) : [...cur, s]));
  const all = scopes.includes("*");

  const submit = (e) => {
    e.preventDefault();
    const chosen = all ? ["*"] : scopes;
    if (!chosen.length) { act.setError(new Error("Choose at least one scope.")); return; }
    const body = { name: name.trim(), scopes: chosen };
    if (days !== "") body.expires_in_days = Number(days);
    act.run(async () => {
      const k = await api("POST", "/portal/api/keys", body);
      setCreated(k);
      onCreated && onCreated();
    });
  };

  if (created) {
    return html`<${Modal} title="API key created" onClose=${onClose}
        footer=${html`<button type="button" class="primary" id="key-done" onClick=${onClose}>Done</button>`}>
      <p class="notice" role="status"><strong>Copy this key now.</strong> It will not be shown again: the server keeps only its hash.</p>
      <div class="secret"><code id="key-secret">${created.key}</code><${CopyButton} text=${created.key} /></div>
      <dl class="facts" style=${{ marginTop: "12px" }}>
        <dt>Name</dt><dd>${created.name}</dd>
        <dt>Scopes</dt><dd>${created.scopes.join(", ")}</dd>
        <dt>Expires</dt><dd>${created.expires_at ? fmtDate(created.expires_at) : "never"}</dd>
      </dl>
    <//>`;
  }

  return html`<${Modal} title="New API key" onClose=${onClose}
      footer=${html`
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" form="key-form" class="primary" id="key-submit" disabled=${act.busy}>${act.busy ? "Creating…" : "Create key"}</button>`}>
    <form id="key-form" onSubmit=${submit}>
      <${Field} label="Name" id="key-name" hint="What uses this key, e.g. “production backend”. 1–100 characters.">
        <input id="key-name" autofocus required maxlength="100" autocomplete="off" value=${name} onInput=${(e) => setName(e.target.value)} />
      <//>
      <fieldset class="field" id="key-scopes">
        <legend><strong>Scopes</strong></legend>
        <div class="checks">
          ${SCOPES.map(([s, label]) => html`<label title=${label}>
            <input type="checkbox" id=${"key-scope-" + (s === "*" ? "all" : s)} value=${s}
              checked=${s === "*" ? all : all || scopes.includes(s)} disabled=${s !== "*" && all}
              onChange=${() => toggle(s)} />
            <code>${s}</code> <span class="muted">${label}</span></label>`)}
        </div>
        <small class="hint"><code>*</code> grants every scope; untick it to choose.</small>
      </fieldset>
      <${Field} label="Expires after (days)" id="key-expiry" hint="1–365. Leave empty for a key that does not expire.">
        <input id="key-expiry" type="number" min="1" max="365" step="1" inputmode="numeric" value=${days} onInput=${(e) => setDays(e.target.value)} />
      <//>
      <${ErrorBox} error=${act.error} />
    </form>
  <//>`;
}

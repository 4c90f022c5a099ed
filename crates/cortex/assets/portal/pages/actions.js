// Actions (webhooks agents call as tools) and connections (their credentials), contract §9.
// Credentials are write-only: the forms send them, nothing here ever shows them.
import {
  html, useState, Page, Async, ErrorBox, Table, Modal, Confirm, Field, Badge,
  useAsync, useAction, fmtDate, fmtNumber, parseJson,
} from "../lib/ui.js";
import { api } from "../lib/api.js";

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const AUTH_TYPES = ["none", "api_key", "bearer", "basic", "oauth2"];
const AUTH_LABEL = { none: "None", api_key: "API key", bearer: "Bearer token", basic: "Basic (user and password)", oauth2: "OAuth 2" };
const EMPTY_SCHEMA = '{\n  "type": "object",\n  "properties": {},\n  "required": []\n}';

/** A JSON value shaped like a schema's properties, to start the test arguments from. */
function skeleton(schema) {
  const out = {};
  const props = (schema && schema.properties) || {};
  for (const [k, p] of Object.entries(props)) {
    const t = Array.isArray(p.type) ? p.type[0] : p.type;
    out[k] = p.default !== undefined ? p.default : p.enum ? p.enum[0]
      : t === "integer" || t === "number" ? 0 : t === "boolean" ? false : t === "array" ? [] : t === "object" ? {} : "";
  }
  return out;
}

function ConnectionSelect({ id, authType, connections, value, onChange }) {
  if (authType === "none") return null;
  const usable = (connections || []).filter((c) => c.auth_type === authType);
  return html`<${Field} label="Connection" id=${id} hint=${usable.length ? "The credentials the request is sent with." : "No connection of this type yet: create one under Connections below."}>
    <select id=${id} value=${value} required onChange=${(e) => onChange(e.target.value)}>
      <option value="">Choose a connection…</option>
      ${usable.map((c) => html`<option value=${c.id} key=${c.id}>${c.name}</option>`)}
    </select>
  <//>`;
}

function NewAction({ connections, onClose, onSaved }) {
  const [f, setF] = useState({
    name: "", description: "", source_type: "action", method: "POST", webhook_url: "", path_template: "",
    parameters_schema: EMPTY_SCHEMA, query_schema: "", body_schema: "", headers: "", auth_type: "none",
    connection_id: "", trigger: "tool", max_calls: "", window_seconds: "",
  });
  const [errors, setErrors] = useState({});
  const act = useAction();
  const set = (k) => (e) => setF(Object.assign({}, f, { [k]: e.target.value }));

  const submit = (e) => {
    e.preventDefault();
    const errs = {};
    const params = parseJson(f.parameters_schema, { type: "object", properties: {} });
    const query = parseJson(f.query_schema, null);
    const bodySchema = parseJson(f.body_schema, null);
    const headers = parseJson(f.headers, {});
    if (params.error) errs.parameters_schema = params.error;
    if (query.error) errs.query_schema = query.error;
    if (bodySchema.error) errs.body_schema = bodySchema.error;
    if (headers.error) errs.headers = headers.error;
    else if (headers.value === null || typeof headers.value !== "object" || Array.isArray(headers.value)) errs.headers = "Headers are a JSON object of names to values.";
    if ((f.max_calls === "") !== (f.window_seconds === "")) errs.rate_limit = "Give both the number of calls and the window, or neither.";
    setErrors(errs);
    if (Object.keys(errs).length) return;
    const body = {
      name: f.name.trim(), description: f.description, source_type: f.source_type, webhook_url: f.webhook_url.trim(),
      method: f.method, headers: headers.value, auth_type: f.auth_type, parameters_schema: params.value, trigger: f.trigger,
    };
    if (f.auth_type !== "none" && f.connection_id) body.connection_id = f.connection_id;
    if (f.path_template.trim()) body.path_template = f.path_template.trim();
    if (query.value != null) body.query_schema = query.value;
    if (bodySchema.value != null) body.body_schema = bodySchema.value;
    if (f.max_calls !== "") body.rate_limit = { max_calls: Number(f.max_calls), window_seconds: Number(f.window_seconds) };
    act.run(async () => { await api("POST", "/v1/actions", body); onSaved(); });
  };

  return html`<${Modal} title="New action" onClose=${onClose}>
    <form id="action-form" onSubmit=${submit}>
      <div class="row">
        <${Field} label="Name" id="action-name" hint="The tool name the model sees: letters, digits, _ and -.">
          <input id="action-name" required maxlength="64" value=${f.name} onInput=${set("name")} /><//>
        <${Field} label="Trigger" id="action-trigger">
          <select id="action-trigger" value=${f.trigger} onChange=${set("trigger")}>
            <option value="tool">Tool (the model calls it)</option>
            <option value="post_response">After the answer</option>
          </select><//>
      </div>
      <${Field} label="Description" id="action-description" hint="Tells the model when to call it.">
        <textarea id="action-description" rows="2" maxlength="2000" value=${f.description} onInput=${set("description")}></textarea><//>
      <div class="row">
        <${Field} label="Method" id="action-method">
          <select id="action-method" value=${f.method} onChange=${set("method")}>${METHODS.map((m) => html`<option key=${m}>${m}</option>`)}</select><//>
        <${Field} label="Webhook URL" id="action-url">
          <input id="action-url" type="url" required placeholder="https://api.example.com/orders" value=${f.webhook_url} onInput=${set("webhook_url")} /><//>
      </div>
      <${Field} label="Parameters (JSON Schema)" id="action-parameters" error=${errors.parameters_schema} hint="The arguments the model passes, validated before any request.">
        <textarea id="action-parameters" class="code" rows="7" spellcheck="false" value=${f.parameters_schema} onInput=${set("parameters_schema")}></textarea><//>
      <div class="row">
        <${Field} label="Authentication" id="action-auth">
          <select id="action-auth" value=${f.auth_type} onChange=${set("auth_type")}>${AUTH_TYPES.map((a) => html`<option value=${a} key=${a}>${AUTH_LABEL[a]}</option>`)}</select><//>
        <${ConnectionSelect} id="action-connection" authType=${f.auth_type} connections=${connections} value=${f.connection_id}
          onChange=${(v) => setF(Object.assign({}, f, { connection_id: v }))} />
      </div>
      <details class="advanced">
        <summary>Advanced: path, query, body, headers, rate limit, kind</summary>
        <${Field} label="Path template" id="action-path" hint="Appended to the URL, e.g. /orders/{order_id}; {names} come from the arguments.">
          <input id="action-path" value=${f.path_template} placeholder="/orders/{order_id}" onInput=${set("path_template")} /><//>
        <${Field} label="Query schema (JSON, optional)" id="action-query" error=${errors.query_schema}>
          <textarea id="action-query" class="code" rows="3" spellcheck="false" value=${f.query_schema} onInput=${set("query_schema")}></textarea><//>
        <${Field} label="Body schema (JSON, optional)" id="action-body" error=${errors.body_schema}>
          <textarea id="action-body" class="code" rows="3" spellcheck="false" value=${f.body_schema} onInput=${set("body_schema")}></textarea><//>
        <${Field} label="Headers (JSON object, optional)" id="action-headers" error=${errors.headers} hint="Not for secrets: credentials belong in a connection.">
          <textarea id="action-headers" class="code" rows="2" spellcheck="false" placeholder='{"Accept": "application/json"}' value=${f.headers} onInput=${set("headers")}></textarea><//>
        <div class="row">
          <${Field} label="Rate limit: calls" id="action-max-calls" error=${errors.rate_limit}>
            <input id="action-max-calls" type="number" min="1" value=${f.max_calls} onInput=${set("max_calls")} /><//>
          <${Field} label="per seconds" id="action-window">
            <input id="action-window" type="number" min="1" max="86400" value=${f.window_seconds} onInput=${set("window_seconds")} /><//>
        </div>
        <${Field} label="Kind" id="action-source">
          <select id="action-source" value=${f.source_type} onChange=${set("source_type")}>
            <option value="action">action</option><option value="custom_function">custom_function</option>
          </select><//>
      </details>
      <${ErrorBox} error=${act.error} />
      <div class="form-actions">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" id="action-submit" class="primary" disabled=${act.busy}>${act.busy ? "Saving…" : "Create action"}</button>
      </div>
    </form>
  <//>`;
}

function ImportActions({ connections, onClose, onSaved }) {
  const [doc, setDoc] = useState("");
  const [base, setBase] = useState("");
  const [auth, setAuth] = useState("none");
  const [conn, setConn] = useState("");
  const [done, setDone] = useState(null);
  const act = useAction();
  const readFile = (e) => {
    const file = e.target.files[0];
    if (file) file.text().then(setDoc);
  };
  const submit = (e) => {
    e.preventDefault();
    const body = { document: doc };
    if (base.trim()) body.base_url = base.trim();
    if (auth !== "none") { body.auth_type = auth; if (conn) body.connection_id = conn; }
    act.run(async () => { const r = await api("POST", "/v1/actions/import", body); setDone(r); onSaved(); });
  };
  if (done) {
    return html`<${Modal} title="OpenAPI import" onClose=${onClose} footer=${html`<button type="button" class="primary" onClick=${onClose}>Done</button>`}>
      <p class="notice" role="status" id="import-result">Imported ${done.count} action${done.count === 1 ? "" : "s"}.</p>
      <ul class="import-list">${done.actions.map((a) => html`<li key=${a.id}><code>${a.name}</code> <span class="muted">${a.method} ${a.webhook_url}${a.path_template || ""}</span></li>`)}</ul>
    <//>`;
  }
  return html`<${Modal} title="Import an OpenAPI document" onClose=${onClose}>
    <form onSubmit=${submit}>
      <p class="hint">One action per operation of an OpenAPI 3 document, created together (all or none).</p>
      <${Field} label="Document (JSON or YAML)" id="import-document">
        <textarea id="import-document" class="code" rows="10" required spellcheck="false" value=${doc} onInput=${(e) => setDoc(e.target.value)}
          placeholder=${"openapi: 3.0.0\ninfo: …\npaths: …"}></textarea><//>
      <${Field} label="…or load a file" id="import-file">
        <input id="import-file" type="file" accept=".json,.yaml,.yml,application/json,text/yaml" onChange=${readFile} /><//>
      <${Field} label="Base URL" id="import-base" hint="Where the API lives; empty: the document's servers[0].url.">
        <input id="import-base" type="url" value=${base} placeholder="https://api.example.com" onInput=${(e) => setBase(e.target.value)} /><//>
      <div class="row">
        <${Field} label="Authentication" id="import-auth">
          <select id="import-auth" value=${auth} onChange=${(e) => setAuth(e.target.value)}>${AUTH_TYPES.map((a) => html`<option value=${a} key=${a}>${AUTH_LABEL[a]}</option>`)}</select><//>
        <${ConnectionSelect} id="import-connection" authType=${auth} connections=${connections} value=${conn} onChange=${setConn} />
      </div>
      <${ErrorBox} error=${act.error} />
      <div class="form-actions">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" id="import-submit" class="primary" disabled=${act.busy || !doc.trim()}>${act.busy ? "Importing…" : "Import"}</button>
      </div>
    </form>
  <//>`;
}

function TestAction({ action, onClose }) {
  const [args, setArgs] = useState(() => JSON.stringify(skeleton(action.parameters_schema), null, 2));
  const [argError, setArgError] = useState(null);
  const [result, setResult] = useState(null);
  const act = useAction();
  const run = (e) => {
    e.preventDefault();
    const parsed = parseJson(args, {});
    if (parsed.error || typeof parsed.value !== "object" || Array.isArray(parsed.value) || parsed.value === null) {
      setArgError(parsed.error || "The arguments are a JSON object.");
      return;
    }
    setArgError(null);
    act.run(async () => setResult(await api("POST", "/v1/actions/" + encodeURIComponent(action.id) + "/test", { arguments: parsed.value })));
  };
  const req = result && result.request;
  return html`<${Modal} title=${"Test " + action.name} onClose=${onClose}>
    <form onSubmit=${run}>
      <p class="hint">Runs the webhook once, as a tool call would, with these arguments.</p>
      <${Field} label="Arguments (JSON object)" id="test-arguments" error=${argError}>
        <textarea id="test-arguments" class="code" rows="6" spellcheck="false" value=${args} onInput=${(e) => setArgs(e.target.value)}></textarea><//>
      <${ErrorBox} error=${act.error} />
      <div class="form-actions"><button type="submit" id="test-run" class="primary" disabled=${act.busy}>${act.busy ? "Running…" : "Run test"}</button></div>
    </form>
    ${result ? html`<div class="test-output" role="status">
      <h3>Request</h3>
      ${req && req.error ? html`<p class="error test-request">${req.error}</p>` : req ? html`<div class="test-request">
        <p><code>${req.method} ${req.url}</code></p>
        ${req.headers && Object.keys(req.headers).length ? html`<div class="table-wrap"><table><tbody>
          ${Object.entries(req.headers).map(([k, v]) => html`<tr key=${k}><th scope="row">${k}</th><td><code>${v}</code></td></tr>`)}</tbody></table></div>` : ""}
        ${req.body != null ? html`<pre>${typeof req.body === "string" ? req.body : JSON.stringify(req.body, null, 2)}</pre>` : ""}
      </div>` : ""}
      <h3>Result ${result.ok ? html`<${Badge} kind="ok">ok<//>` : html`<${Badge} kind="bad">failed<//>`} <span class="muted">${fmtNumber(result.latency_ms, 0)} ms</span></h3>
      <pre class="test-result">${result.result}</pre>
    </div>` : ""}
  <//>`;
}

const SECRET_FIELDS = {
  api_key: [["api_key", "API key", true], ["header_name", "Header name (default X-API-Key)", false]],
  bearer: [["token", "Token", true]],
  basic: [["username", "Username", false], ["password", "Password", true]],
  oauth2: [["access_token", "Access token", true], ["token_url", "Token URL (client credentials)", false], ["client_id", "Client id", false],
    ["client_secret", "Client secret", true], ["scope", "Scope", false]],
};

function NewConnection({ onClose, onSaved }) {
  const [name, setName] = useState("");
  const [auth, setAuth] = useState("api_key");
  const [creds, setCreds] = useState({});
  const act = useAction();
  const submit = (e) => {
    e.preventDefault();
    const credentials = {};
    for (const [k] of SECRET_FIELDS[auth]) if (creds[k] && creds[k].trim()) credentials[k] = creds[k];
    act.run(async () => {
      await api("POST", "/v1/connections", { name: name.trim(), auth_type: auth, credentials });
      setCreds({});
      onSaved();
    });
  };
  return html`<${Modal} title="New connection" onClose=${onClose}>
    <form onSubmit=${submit} autocomplete="off">
      <p class="hint">Secrets are encrypted at rest and never shown again, here or by the API.</p>
      <div class="row">
        <${Field} label="Name" id="connection-name"><input id="connection-name" required maxlength="100" value=${name} onInput=${(e) => setName(e.target.value)} /><//>
        <${Field} label="Type" id="connection-auth">
          <select id="connection-auth" value=${auth} onChange=${(e) => { setAuth(e.target.value); setCreds({}); }}>
            ${AUTH_TYPES.filter((a) => a !== "none").map((a) => html`<option value=${a} key=${a}>${AUTH_LABEL[a]}</option>`)}
          </select><//>
      </div>
      ${auth === "oauth2" ? html`<p class="hint">Give an access token, or a token URL with client id and secret for the client-credentials grant.</p>` : ""}
      ${SECRET_FIELDS[auth].map(([k, label, secret]) => html`<${Field} label=${label} id=${"connection-" + k} key=${auth + k}>
        <input id=${"connection-" + k} type=${secret ? "password" : "text"} autocomplete=${secret ? "new-password" : "off"} spellcheck="false"
          value=${creds[k] || ""} onInput=${(e) => setCreds(Object.assign({}, creds, { [k]: e.target.value }))} /><//>`)}
      <${ErrorBox} error=${act.error} />
      <div class="form-actions">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" id="connection-submit" class="primary" disabled=${act.busy}>${act.busy ? "Saving…" : "Save connection"}</button>
      </div>
    </form>
  <//>`;
}

export default function Actions() {
  const [actions, reloadActions] = useAsync(() => api("GET", "/v1/actions?limit=200"), []);
  const [connections, reloadConnections] = useAsync(() => api("GET", "/v1/connections?limit=200"), []);
  const [dialog, setDialog] = useState(null);
  const close = () => setDialog(null);
  const conns = connections.data ? connections.data.connections : [];
  const connName = (id) => { const c = conns.find((x) => x.id === id); return c ? c.name : id ? String(id).slice(0, 8) : ""; };

  return html`<${Page} title="Actions" actions=${html`
      <button type="button" id="action-import" onClick=${() => setDialog({ kind: "import" })}>Import OpenAPI</button>
      <button type="button" id="action-create" class="primary" onClick=${() => setDialog({ kind: "new" })}>New action</button>`}>
    <p class="hint">Webhooks your agents can call as tools. Link an action to an agent on the agent's page.</p>
    <${Async} state=${actions} reload=${reloadActions}>${(d) => html`<${Table} rowKey=${(a) => a.id}
      empty="No actions yet. Create one, or import an OpenAPI document."
      rows=${d.actions}
      columns=${[
        { title: "Name", render: (a) => html`<code class="action-name">${a.name}</code>${a.description ? html`<div class="muted clamp">${a.description}</div>` : ""}` },
        { title: "Request", render: (a) => html`<span class="nowrap"><${Badge}>${a.method}<//></span> <code class="url">${a.webhook_url}${a.path_template || ""}</code>` },
        { title: "Trigger", render: (a) => (a.trigger === "post_response" ? "after answer" : "tool") },
        { title: "Auth", render: (a) => (a.auth_type === "none" ? html`<span class="muted">none</span>` : html`${a.auth_type}<div class="muted">${connName(a.connection_id)}</div>`) },
        { title: "", class: "actions", render: (a) => html`
          <button type="button" class="action-test" onClick=${() => setDialog({ kind: "test", action: a })}>Test</button>
          <button type="button" class="danger" aria-label=${"Delete " + a.name} onClick=${() => setDialog({ kind: "delete", action: a })}>Delete</button>` },
      ]} />`}<//>

    <div class="section-head"><h2>Connections</h2>
      <button type="button" id="connection-create" onClick=${() => setDialog({ kind: "connection" })}>New connection</button></div>
    <p class="hint">Named credentials for actions. Secrets are write-only: stored encrypted, never displayed.</p>
    <${Async} state=${connections} reload=${reloadConnections}>${(d) => html`<${Table} rowKey=${(c) => c.id}
      empty="No connections yet."
      rows=${d.connections}
      columns=${[
        { title: "Name", render: (c) => html`<strong>${c.name}</strong>` },
        { title: "Type", render: (c) => AUTH_LABEL[c.auth_type] || c.auth_type },
        { title: "Details", render: (c) => {
          const pub = Object.entries(c.public || {}).filter(([, v]) => v != null && v !== "");
          return html`${pub.map(([k, v]) => html`<div key=${k}><span class="muted">${k}</span> <code>${String(v)}</code></div>`)}
            ${c.has_credentials ? html`<${Badge} kind="ok">secret stored<//>` : ""}`;
        } },
        { title: "Created", render: (c) => fmtDate(c.created_at) },
        { title: "", class: "actions", render: (c) => html`<button type="button" class="danger" aria-label=${"Delete " + c.name}
          onClick=${() => setDialog({ kind: "delete-connection", connection: c })}>Delete</button>` },
      ]} />`}<//>

    ${dialog && dialog.kind === "new" ? html`<${NewAction} connections=${conns} onClose=${close} onSaved=${() => { close(); reloadActions(); }} />` : ""}
    ${dialog && dialog.kind === "import" ? html`<${ImportActions} connections=${conns} onClose=${close} onSaved=${reloadActions} />` : ""}
    ${dialog && dialog.kind === "test" ? html`<${TestAction} action=${dialog.action} onClose=${close} />` : ""}
    ${dialog && dialog.kind === "connection" ? html`<${NewConnection} onClose=${close} onSaved=${() => { close(); reloadConnections(); }} />` : ""}
    ${dialog && dialog.kind === "delete" ? html`<${Confirm} title="Delete action"
      message=${html`Delete the action <code>${dialog.action.name}</code>? Agents that link it can no longer call it.`}
      onConfirm=${async () => { await api("DELETE", "/v1/actions/" + encodeURIComponent(dialog.action.id)); reloadActions(); }}
      onClose=${close} />` : ""}
    ${dialog && dialog.kind === "delete-connection" ? html`<${Confirm} title="Delete connection"
      message=${html`Delete the connection <strong>${dialog.connection.name}</strong> and its stored secrets? Actions still using it must be changed first.`}
      onConfirm=${async () => { await api("DELETE", "/v1/connections/" + encodeURIComponent(dialog.connection.id)); reloadConnections(); }}
      onClose=${close} />` : ""}
  <//>`;
}


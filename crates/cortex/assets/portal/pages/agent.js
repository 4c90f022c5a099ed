// One agent: create (#/agents/new) or edit (#/agents/ID) every field of the contract §5, delete,
// and the configuration as stage 01 of the pipeline loads it.
// Server: crates/cortex/src/api/agents.rs and crates/cortex/src/agents/mod.rs (AgentSpec).
// PATCH is a JSON object whose top-level fields replace the agent's, except `settings`, which
// merges field by field (api/extract.rs JsonPatch::apply); we send only the fields that changed.
import {
  html, useState, useEffect, useRef, useMemo, Page, Async, ErrorBox, Loading, Confirm, Field, Badge,
  CopyButton, useAsync, useAction, fmtDate, go,
} from "../lib/ui.js";
import { api, ApiError, whoami } from "../lib/api.js";

const TIERS = ["speed", "nano", "sonnet", "complex", "search"];

// crates/cortex/src/agents/template.rs DEFAULT_TEMPLATE, used when the prompt is empty.
const DEFAULT_TEMPLATE = `You are {{ agent.name }}{% if personality.name %}, {{ personality.name }}{% endif %}.{% if personality.description %}
{{ personality.description }}{% endif %}{% if dialect.name %}
Answer in {{ dialect.name }}{% if dialect.primary_language %} ({{ dialect.primary_language }}){% endif %}.{% endif %}
Answer the customer's question helpfully and concisely. If you do not know, say so.`;

const VARIABLES = ["agent", "personality", "dialect", "customer", "memory", "knowledge", "faqs", "scenarios", "channel", "metadata", "now", "mode"];

const DEFAULT_SETTINGS = {
  tier: null, temperature: null, max_tokens: null, token_budget: 8000, rag_top_k: 5,
  memory_enabled: true, cache_enabled: true, cache_threshold: 0.75, max_tool_rounds: 5,
};

const str = (v) => (v == null ? "" : String(v));

/** An agent (API shape) → the form's state (strings for the number inputs). */
function toForm(a) {
  const s = Object.assign({}, DEFAULT_SETTINGS, (a && a.settings) || {});
  const p = (a && a.personality) || {};
  const d = (a && a.dialect) || {};
  return {
    name: (a && a.name) || "",
    is_default: !!(a && a.is_default),
    system_prompt: (a && a.system_prompt) || "",
    personality: { id: str(p.id), name: p.name || "", description: p.description || "" },
    dialect: { name: d.name || "", primary_language: d.primary_language || "" },
    workflow_faqs: ((a && a.workflow_faqs) || []).map((f) => ({ question: f.question || "", answer: f.answer || "" })),
    scenarios: ((a && a.scenarios) || []).map((x) => ({ name: x.name || "", trigger: x.trigger || "", instructions: x.instructions || "" })),
    knowledge_documents: ((a && a.knowledge_documents) || []).map((k) => ({ title: k.title || "", content: k.content || "" })),
    knowledge_source_ids: [...((a && a.knowledge_source_ids) || [])],
    action_ids: [...((a && a.action_ids) || [])],
    settings: {
      tier: s.tier || "",
      temperature: str(s.temperature),
      max_tokens: str(s.max_tokens),
      token_budget: str(s.token_budget),
      rag_top_k: str(s.rag_top_k),
      memory_enabled: !!s.memory_enabled,
      cache_enabled: !!s.cache_enabled,
      cache_threshold: str(s.cache_threshold),
      max_tool_rounds: str(s.max_tool_rounds),
    },
  };
}

const num = (v) => (v === "" || v == null ? null : Number(v));

/** The form's state → the AgentSpec JSON the server takes. */
function toSpec(f) {
  const s = f.settings;
  return {
    name: f.name.trim(),
    is_default: f.is_default,
    system_prompt: f.system_prompt,
    personality: { id: f.personality.id.trim() || null, name: f.personality.name, description: f.personality.description },
    dialect: { name: f.dialect.name, primary_language: f.dialect.primary_language },
    workflow_faqs: f.workflow_faqs.map((x) => ({ question: x.question, answer: x.answer })),
    scenarios: f.scenarios.map((x) => ({ name: x.name, trigger: x.trigger, instructions: x.instructions })),
    knowledge_documents: f.knowledge_documents.map((x) => ({ title: x.title, content: x.content })),
    knowledge_source_ids: f.knowledge_source_ids,
    action_ids: f.action_ids,
    settings: {
      tier: s.tier || null,
      temperature: num(s.temperature),
      max_tokens: num(s.max_tokens),
      token_budget: num(s.token_budget),
      rag_top_k: num(s.rag_top_k),
      memory_enabled: s.memory_enabled,
      cache_enabled: s.cache_enabled,
      cache_threshold: num(s.cache_threshold),
      max_tool_rounds: num(s.max_tool_rounds),
    },
  };
}

/** What changed between two specs, as the PATCH body (settings field by field). */
function diff(before, after) {
  const out = {};
  for (const k of Object.keys(after)) {
    if (k === "settings") {
      const ch = {};
      for (const sk of Object.keys(after.settings)) {
        if (JSON.stringify(after.settings[sk]) !== JSON.stringify(before.settings[sk])) ch[sk] = after.settings[sk];
      }
      if (Object.keys(ch).length) out.settings = ch;
    } else if (JSON.stringify(after[k]) !== JSON.stringify(before[k])) {
      out[k] = after[k];
    }
  }
  return out;
}

/** 422 details → {"system_prompt": msg, "settings.temperature": msg, …}. */
function fieldErrors(error) {
  const out = {};
  if (error instanceof ApiError && Array.isArray(error.detail)) {
    for (const e of error.detail) {
      const key = (e.loc || []).filter((p) => p !== "body").join(".");
      out[key] = out[key] ? out[key] + "; " + e.msg : e.msg;
    }
  }
  return out;
}

/** The line a template error names: "… (line N)". */
function errorLine(msg) {
  const m = msg && /\(line (\d+)\)/.exec(msg);
  return m ? Number(m[1]) : null;
}

export default function AgentPage({ params }) {
  const id = params.id;
  const [state, reload] = useAsync(() => (id ? api("GET", `/v1/agents/${encodeURIComponent(id)}`) : Promise.resolve(null)), [id]);
  if (!id) return html`<${Editor} agent=${null} />`;
  return html`<${Async} state=${state} reload=${reload}>${(agent) => html`<${Editor} agent=${agent} key=${agent.id} />`}<//>`;
}

function Editor({ agent }) {
  const isNew = !agent;
  const [saved, setSaved] = useState(agent);
  const [form, setForm] = useState(() => toForm(agent));
  const [savedAt, setSavedAt] = useState(null);
  const [deleting, setDeleting] = useState(false);
  const [configKey, setConfigKey] = useState(0);
  const save = useAction();
  const errs = useMemo(() => fieldErrors(save.error), [save.error]);
  const templateError = errs.system_prompt || null;

  const sources = useAsync(() => api("GET", "/v1/knowledge/sources?limit=200"), []);
  const actions = useAsync(() => api("GET", "/v1/actions?limit=200"), []);

  const set = (path, value) => setForm((f) => {
    const next = Object.assign({}, f);
    const parts = path.split(".");
    let o = next;
    for (let i = 0; i < parts.length - 1; i++) { o[parts[i]] = Object.assign({}, o[parts[i]]); o = o[parts[i]]; }
    o[parts[parts.length - 1]] = value;
    return next;
  });
  const bind = (path) => ({
    value: path.split(".").reduce((o, k) => o[k], form),
    onInput: (e) => set(path, e.target.value),
  });
  const toggleId = (field, value) => setForm((f) => ({
    ...f, [field]: f[field].includes(value) ? f[field].filter((x) => x !== value) : [...f[field], value],
  }));

  const submit = (e) => {
    e.preventDefault();
    setSavedAt(null);
    save.run(async () => {
      const spec = toSpec(form);
      if (isNew) {
        const created = await api("POST", "/v1/agents", spec);
        go("/agents/" + created.id);
        return;
      }
      const body = diff(toSpec(toForm(saved)), spec);
      const updated = await api("PATCH", `/v1/agents/${encodeURIComponent(saved.id)}`, body);
      setSaved(updated);
      setForm(toForm(updated));
      setSavedAt(new Date());
      setConfigKey((k) => k + 1);
    });
  };

  const title = isNew ? "New agent" : saved.name || "Agent";
  const headActions = isNew ? "" : html`
    <a class="button" id="agent-chat" href=${"#/playground/" + encodeURIComponent(saved.id)}>Chat</a>
    <button type="button" class="danger" id="agent-delete" onClick=${() => setDeleting(true)}>Delete</button>`;

  return html`<${Page} title=${title} actions=${headActions}>
    <p><a href="#/agents">← All agents</a>${isNew ? "" : html` · <code>${saved.id}</code> <${CopyButton} text=${saved.id} label="Copy id" /> · updated ${fmtDate(saved.updated_at)}`}</p>
    <form id="agent-form" onSubmit=${submit}>
      <section class="card" aria-labelledby="sec-identity">
        <h2 id="sec-identity">Identity</h2>
        <${Field} label="Name" id="agent-name" error=${errs.name}>
          <input id="agent-name" required maxlength="200" autocomplete="off" ...${bind("name")} />
        <//>
        <div class="checks field">
          <label><input type="checkbox" id="agent-default" checked=${form.is_default} onChange=${(e) => set("is_default", e.target.checked)} />
            Default agent (used by runs started without <code>agent_id</code>)</label>
        </div>
        <h3>Personality</h3>
        <div class="row">
          <${Field} label="Name" id="agent-personality-name" error=${errs["personality.name"]}>
            <input id="agent-personality-name" ...${bind("personality.name")} placeholder="Friendly" />
          <//>
          <${Field} label="Id (optional)" id="agent-personality-id" error=${errs["personality.id"]}>
            <input id="agent-personality-id" ...${bind("personality.id")} />
          <//>
        </div>
        <${Field} label="Description" id="agent-personality-description" error=${errs["personality.description"]}>
          <textarea id="agent-personality-description" rows="3" ...${bind("personality.description")}></textarea>
        <//>
        <h3>Dialect</h3>
        <div class="row">
          <${Field} label="Dialect" id="agent-dialect-name" error=${errs["dialect.name"]}>
            <input id="agent-dialect-name" ...${bind("dialect.name")} placeholder="Egyptian Arabic" />
          <//>
          <${Field} label="Primary language" id="agent-dialect-language" error=${errs["dialect.primary_language"]}>
            <input id="agent-dialect-language" ...${bind("dialect.primary_language")} placeholder="ar" />
          <//>
        </div>
      </section>

      <section class="card" aria-labelledby="sec-prompt">
        <h2 id="sec-prompt">System prompt</h2>
        <div class=${"field" + (templateError ? " invalid" : "")}>
          <label for="agent-template">Jinja2 template</label>
          <${TemplateEditor} id="agent-template" value=${form.system_prompt} onInput=${(v) => set("system_prompt", v)}
            errorLine=${errorLine(templateError)} />
          ${templateError ? html`<p class="error" id="template-error" role="alert">${templateError}</p>` : ""}
          <small class="hint">Variables: ${VARIABLES.map((v) => html`<code>${v}</code> `)}. Empty: the built-in template (shown greyed) is used. Context the template does not place (memory, knowledge, FAQs…) is appended as sections.</small>
        </div>
      </section>

      <section class="card" aria-labelledby="sec-faqs">
        <h2 id="sec-faqs">FAQs</h2>
        ${errs.workflow_faqs ? html`<p class="field-error" role="alert">${errs.workflow_faqs}</p>` : ""}
        <${ListEditor} idPrefix="faq" noun="FAQ" items=${form.workflow_faqs} onChange=${(v) => set("workflow_faqs", v)}
          blank=${{ question: "", answer: "" }} errs=${errs} errKey="workflow_faqs"
          fields=${[{ key: "question", label: "Question", required: true }, { key: "answer", label: "Answer", multiline: true, required: true }]} />
      </section>

      <section class="card" aria-labelledby="sec-scenarios">
        <h2 id="sec-scenarios">Scenarios</h2>
        ${errs.scenarios ? html`<p class="field-error" role="alert">${errs.scenarios}</p>` : ""}
        <${ListEditor} idPrefix="scenario" noun="scenario" items=${form.scenarios} onChange=${(v) => set("scenarios", v)}
          blank=${{ name: "", trigger: "", instructions: "" }} errs=${errs} errKey="scenarios"
          fields=${[{ key: "name", label: "Name", required: true }, { key: "trigger", label: "Trigger", hint: "When it applies, e.g. “the customer asks for a refund”" }, { key: "instructions", label: "Instructions", multiline: true }]} />
      </section>

      <section class="card" aria-labelledby="sec-knowledge">
        <h2 id="sec-knowledge">Knowledge</h2>
        <fieldset class="field" id="agent-sources-field">
          <legend><strong>Knowledge sources</strong> <span class="muted">searched in stage 03</span></legend>
          <${Checklist} state=${sources[0]} reload=${sources[1]} listKey="sources" selected=${form.knowledge_source_ids}
            onToggle=${(v) => toggleId("knowledge_source_ids", v)} idPrefix="agent-source"
            label=${(s) => html`${s.name} <${Badge} kind=${s.status === "completed" ? "ok" : s.status === "failed" ? "bad" : s.status === "processing" ? "busy" : ""}>${s.status}<//> <span class="muted">${s.chunk_count} chunks</span>`}
            empty=${html`No knowledge sources yet. <a href="#/knowledge">Add one</a>.`} unknown="deleted source" />
          ${errs.knowledge_source_ids ? html`<small class="field-error" role="alert">${errs.knowledge_source_ids}</small>` : ""}
        </fieldset>
        <h3>Inline documents</h3>
        <p class="hint">Short texts kept with the agent. “Ingest documents” embeds them and the FAQs into a source linked to this agent.</p>
        ${errs.knowledge_documents ? html`<p class="field-error" role="alert">${errs.knowledge_documents}</p>` : ""}
        <${ListEditor} idPrefix="doc" noun="document" items=${form.knowledge_documents} onChange=${(v) => set("knowledge_documents", v)}
          blank=${{ title: "", content: "" }} errs=${errs} errKey="knowledge_documents"
          fields=${[{ key: "title", label: "Title", required: true }, { key: "content", label: "Content", multiline: true, required: true }]} />
        ${isNew ? "" : html`<${IngestDocuments} agent=${saved} onDone=${() => { sources[1](); }} />`}
      </section>

      <section class="card" aria-labelledby="sec-actions">
        <h2 id="sec-actions">Actions</h2>
        <fieldset class="field" id="agent-actions-field">
          <legend><strong>Linked actions</strong> <span class="muted">the tools this agent may call</span></legend>
          <${Checklist} state=${actions[0]} reload=${actions[1]} listKey="actions" selected=${form.action_ids}
            onToggle=${(v) => toggleId("action_ids", v)} idPrefix="agent-action"
            label=${(a) => html`<code>${a.name}</code> <${Badge}>${a.trigger || "tool"}<//> <span class="muted">${a.description || ""}</span>`}
            empty=${html`No actions yet. <a href="#/actions">Create one</a>.`} unknown="deleted action" />
          ${errs.action_ids ? html`<small class="field-error" role="alert">${errs.action_ids}</small>` : ""}
        </fieldset>
      </section>

      <section class="card" aria-labelledby="sec-settings">
        <h2 id="sec-settings">Settings</h2>
        <div class="row">
          <${Field} label="Model tier" id="agent-tier" error=${errs["settings.tier"]} hint="Routed picks a tier per message by complexity.">
            <select id="agent-tier" value=${form.settings.tier} onChange=${(e) => set("settings.tier", e.target.value)}>
              <option value="">Routed (automatic)</option>
              ${TIERS.map((t) => html`<option value=${t}>${t}</option>`)}
            </select>
          <//>
          <${Field} label="Temperature" id="agent-temperature" error=${errs["settings.temperature"]} hint="0–2; empty: the model's default.">
            <input id="agent-temperature" type="number" min="0" max="2" step="0.05" ...${bind("settings.temperature")} />
          <//>
          <${Field} label="Max tokens" id="agent-max-tokens" error=${errs["settings.max_tokens"]} hint="1–32768; empty: the tier's default.">
            <input id="agent-max-tokens" type="number" min="1" max="32768" step="1" ...${bind("settings.max_tokens")} />
          <//>
        </div>
        <div class="row">
          <${Field} label="Token budget" id="agent-token-budget" error=${errs["settings.token_budget"]} hint="Context budget, 256–1000000.">
            <input id="agent-token-budget" type="number" required min="256" max="1000000" step="1" ...${bind("settings.token_budget")} />
          <//>
          <${Field} label="Knowledge chunks (top k)" id="agent-rag-top-k" error=${errs["settings.rag_top_k"]} hint="0–50.">
            <input id="agent-rag-top-k" type="number" required min="0" max="50" step="1" ...${bind("settings.rag_top_k")} />
          <//>
          <${Field} label="Tool rounds" id="agent-max-tool-rounds" error=${errs["settings.max_tool_rounds"]} hint="0–5 per message.">
            <input id="agent-max-tool-rounds" type="number" required min="0" max="5" step="1" ...${bind("settings.max_tool_rounds")} />
          <//>
        </div>
        <div class="row">
          <div class="field">
            <div class="checks">
              <label><input type="checkbox" id="agent-memory-enabled" checked=${form.settings.memory_enabled} onChange=${(e) => set("settings.memory_enabled", e.target.checked)} /> Customer memory</label>
              <label><input type="checkbox" id="agent-cache-enabled" checked=${form.settings.cache_enabled} onChange=${(e) => set("settings.cache_enabled", e.target.checked)} /> Semantic cache</label>
            </div>
            ${errs["settings.memory_enabled"] || errs["settings.cache_enabled"] ? html`<small class="field-error">${errs["settings.memory_enabled"] || errs["settings.cache_enabled"]}</small>` : ""}
          </div>
          <${Field} label="Cache threshold" id="agent-cache-threshold" error=${errs["settings.cache_threshold"]} hint="Similarity 0–1 at which a cached answer is served.">
            <input id="agent-cache-threshold" type="number" required min="0" max="1" step="0.01" disabled=${!form.settings.cache_enabled} ...${bind("settings.cache_threshold")} />
          <//>
        </div>
        ${errs.settings ? html`<p class="field-error" role="alert">${errs.settings}</p>` : ""}
      </section>

      <div class="form-bar">
        <button type="submit" class="primary" id="agent-save" disabled=${save.busy}>${save.busy ? "Saving…" : isNew ? "Create agent" : "Save changes"}</button>
        ${savedAt ? html`<span id="agent-saved" role="status" class="badge ok">Saved ${savedAt.toLocaleTimeString()}</span>` : ""}
        ${save.busy ? html`<span class="spinner" aria-hidden="true"></span>` : ""}
        ${save.error ? html`<div id="agent-error" style=${{ flexBasis: "100%" }}><${ErrorBox} error=${save.error} /></div>` : ""}
      </div>
    </form>

    ${isNew ? "" : html`<${ConfigPanel} id=${saved.id} version=${configKey} />`}

    ${deleting ? html`<${Confirm} title="Delete agent"
        message=${html`Delete <strong>${saved.name}</strong>? Its configuration is removed; conversations that use it will get 404.`}
        onConfirm=${async () => { await api("DELETE", `/v1/agents/${encodeURIComponent(saved.id)}`); go("/agents"); }}
        onClose=${() => setDeleting(false)} />` : ""}
  <//>`;
}

/** A monospace textarea with a line-number gutter; `errorLine` is marked in red. */
function TemplateEditor({ id, value, onInput, errorLine }) {
  const ta = useRef(null);
  const gutter = useRef(null);
  const count = Math.max(value ? value.split("\n").length : DEFAULT_TEMPLATE.split("\n").length, errorLine || 0);
  const sync = () => { if (gutter.current && ta.current) gutter.current.scrollTop = ta.current.scrollTop; };
  useEffect(() => {
    const t = ta.current;
    if (!errorLine || !t) return;
    const lh = parseFloat(getComputedStyle(t).lineHeight) || 19;
    t.scrollTop = Math.max(0, (errorLine - 3) * lh);
    sync();
  }, [errorLine]);
  return html`<div class="code-editor">
    <div class="gutter" ref=${gutter} aria-hidden="true">
      ${Array.from({ length: count }, (_, i) => (i + 1 === errorLine
        ? html`<div id="template-error-line" class="bad" data-line=${i + 1} title="The template error is on this line">${i + 1}</div>`
        : html`<div data-line=${i + 1}>${i + 1}</div>`))}
    </div>
    <textarea id=${id} ref=${ta} class="code" spellcheck="false" wrap="off" rows="14" autocapitalize="off"
      aria-invalid=${errorLine ? "true" : undefined} aria-describedby=${errorLine ? "template-error" : undefined}
      placeholder=${DEFAULT_TEMPLATE} value=${value}
      onInput=${(e) => { onInput(e.target.value); sync(); }} onScroll=${sync}></textarea>
  </div>`;
}

/** Add/remove editor of a list of small objects. */
function ListEditor({ idPrefix, noun, items, onChange, fields, blank, errs, errKey }) {
  const update = (i, key, value) => onChange(items.map((it, j) => (j === i ? { ...it, [key]: value } : it)));
  const remove = (i) => onChange(items.filter((_, j) => j !== i));
  const add = () => {
    onChange([...items, { ...blank }]);
    const n = items.length;
    setTimeout(() => { const el = document.getElementById(`${idPrefix}-${n}-${fields[0].key}`); if (el) el.focus(); }, 0);
  };
  return html`<div id=${idPrefix + "-list"}>
    ${items.length === 0 ? html`<p class="muted">No ${noun}s.</p>` : ""}
    ${items.map((it, i) => html`<div class="item" data-index=${i} key=${i}>
      <header><span>${noun[0].toUpperCase() + noun.slice(1)} ${i + 1}</span>
        <button type="button" class="link" id=${`${idPrefix}-${i}-remove`} aria-label=${`Remove ${noun} ${i + 1}`} onClick=${() => remove(i)}>Remove</button></header>
      ${fields.map((f) => {
        const fid = `${idPrefix}-${i}-${f.key}`;
        const err = errs[`${errKey}.${i}.${f.key}`] || errs[`${errKey}.${i}`];
        return html`<${Field} label=${f.label} id=${fid} hint=${f.hint} error=${err}>
          ${f.multiline
            ? html`<textarea id=${fid} rows="3" required=${f.required} value=${it[f.key]} onInput=${(e) => update(i, f.key, e.target.value)}></textarea>`
            : html`<input id=${fid} required=${f.required} value=${it[f.key]} onInput=${(e) => update(i, f.key, e.target.value)} />`}
        <//>`;
      })}
    </div>`)}
    <button type="button" id=${idPrefix + "-add"} onClick=${add}>+ Add ${noun}</button>
  </div>`;
}

/** Checkboxes over a list endpoint's items; selected ids the list does not have stay visible. */
function Checklist({ state, reload, listKey, selected, onToggle, idPrefix, label, empty, unknown }) {
  if (state.error) return html`<${ErrorBox} error=${state.error} onRetry=${reload} />`;
  if (state.loading && !state.data) return html`<${Loading} />`;
  const items = state.data[listKey] || [];
  const known = new Set(items.map((x) => x.id));
  const missing = selected.filter((x) => !known.has(x));
  if (!items.length && !missing.length) return html`<p class="muted">${empty}</p>`;
  return html`<div class="checks" style=${{ flexDirection: "column" }}>
    ${items.map((x) => html`<label><input type="checkbox" id=${idPrefix + "-" + x.id} value=${x.id}
      checked=${selected.includes(x.id)} onChange=${() => onToggle(x.id)} /> ${label(x)}</label>`)}
    ${missing.map((x) => html`<label><input type="checkbox" id=${idPrefix + "-" + x} value=${x} checked onChange=${() => onToggle(x)} />
      <code>${x}</code> <${Badge} kind="bad">${unknown}<//></label>`)}
  </div>`;
}

/** POST /v1/knowledge/ingest/documents: embed the saved inline documents and FAQs. */
function IngestDocuments({ agent, onDone }) {
  const act = useAction();
  const [result, setResult] = useState(null);
  const run = () => act.run(async () => {
    setResult(null);
    const me = await whoami();
    const r = await api("POST", "/v1/knowledge/ingest/documents", {
      agent_id: agent.id, company_id: me.company_id || agent.company_id, user_id: me.user_id || me.api_key_id || "portal",
    });
    setResult(r);
    onDone && onDone();
  });
  return html`<div class="row" style=${{ alignItems: "center", marginTop: "8px" }}>
    <button type="button" id="agent-ingest-documents" disabled=${act.busy} onClick=${run}>${act.busy ? "Ingesting…" : "Ingest documents and FAQs"}</button>
    <span class="hint">Uses the saved agent: save your changes first.</span>
    ${result ? html`<span role="status" id="agent-ingest-result">${result.documents_processed} documents, ${result.chunks_created} chunks → <a href=${"#/knowledge/" + result.source_id}>source</a></span>` : ""}
    <div style=${{ flexBasis: "100%" }}><${ErrorBox} error=${act.error} /></div>
  </div>`;
}

/** GET /v1/agents/{id}/config, formatted. */
function ConfigPanel({ id, version }) {
  const [state, reload] = useAsync(() => api("GET", `/v1/agents/${encodeURIComponent(id)}/config`), [id, version]);
  return html`<section class="card" aria-labelledby="agent-config-title">
    <div class="page-head" style=${{ marginBottom: "8px" }}>
      <h2 id="agent-config-title" style=${{ margin: 0 }}>Configuration as loaded</h2>
      <div class="actions">
        ${state.data ? html`<${CopyButton} text=${JSON.stringify(state.data, null, 2)} label="Copy JSON" />` : ""}
        <button type="button" id="agent-config-reload" onClick=${reload} disabled=${state.loading}>${state.loading ? "Loading…" : "Reload"}</button>
      </div>
    </div>
    <p class="hint">What stage 01 of the chat pipeline loads (through the same 5-minute cache, invalidated by every save), with the linked actions as tool definitions.</p>
    <${Async} state=${state} reload=${reload}>${(cfg) => html`<pre id="agent-config" class="config-json">${JSON.stringify(cfg, null, 2)}</pre>`}<//>
  </section>`;
}

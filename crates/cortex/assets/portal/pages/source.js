// One knowledge source (#/knowledge/ID): its documents, uploads with progress, URL ingestion,
// re-embedding and search restricted to it.
// Server: crates/cortex/src/api/knowledge.rs. The upload answers once the document is ingested
// (converted, chunked, embedded); meanwhile the page polls the documents for their status.
import {
  html, useState, useEffect, useRef, Page, Async, ErrorBox, Confirm, Field, Badge, Status, Pager, Loading,
  useAsync, useAction, fmtDate, fmtNumber, fmtBytes, go,
} from "../lib/ui.js";
import { api, upload, whoami } from "../lib/api.js";
import { SearchBox } from "./knowledge.js";

const PAGE = 50;
const MODELS = ["bge-m3", "openai", "cohere", "local", "hash"];
const FORMATS = "PDF, DOCX, PPTX, XLSX, CSV, HTML, Markdown, plain text";

async function userId() {
  const me = await whoami();
  return me.user_id || me.api_key_id || "portal";
}

export default function SourcePage({ params }) {
  const id = params.id;
  // (params can be briefly another route's while the router swaps pages: no id, no request.)
  const [src, reloadSrc] = useAsync(() => (id ? api("GET", `/v1/knowledge/sources/${encodeURIComponent(id)}`) : new Promise(() => {})), [id]);
  const [offset, setOffset] = useState(0);
  const [docs, reloadDocs] = useAsync(
    () => (id ? api("GET", `/v1/knowledge/sources/${encodeURIComponent(id)}/documents?limit=${PAGE}&offset=${offset}`) : new Promise(() => {})), [id, offset]);
  const [active, setActive] = useState(0);
  const [deleting, setDeleting] = useState(null);
  const [deletingSource, setDeletingSource] = useState(false);

  const refresh = () => { reloadSrc(); reloadDocs(); };
  const latest = useRef(refresh);
  latest.current = refresh;

  /** Run an ingestion, polling the source and its documents until it is over. */
  const track = async (fn) => {
    setActive((n) => n + 1);
    try { return await fn(); } finally { setActive((n) => n - 1); latest.current(); }
  };

  const processing = !!((docs.data && docs.data.documents.some((d) => d.status === "processing"))
    || (src.data && src.data.status === "processing"));
  const polling = active > 0 || processing;
  useEffect(() => {
    if (!polling) return undefined;
    const t = setInterval(() => latest.current(), active > 0 ? 1000 : 2000);
    return () => clearInterval(t);
  }, [polling, active > 0]);

  if (src.error) return html`<${Page} title="Knowledge source"><p><a href="#/knowledge">← All sources</a></p><${ErrorBox} error=${src.error} onRetry=${reloadSrc} /><//>`;
  if (!src.data) return html`<${Page} title="Knowledge source"><${Loading} /><//>`;
  const s = src.data;

  return html`<${Page} title=${s.name} actions=${html`<button type="button" class="danger" id="source-delete" onClick=${() => setDeletingSource(true)}>Delete source</button>`}>
    <p><a href="#/knowledge">← All sources</a> · <code>${s.id}</code></p>
    <datalist id="embedding-models">${MODELS.map((m) => html`<option value=${m} />`)}</datalist>

    <section class="card" aria-label="Source">
      <dl class="facts" id="source-facts">
        <dt>Status</dt><dd id="source-status" data-source-status=${s.status}><${Status} value=${s.status} />${polling ? html` <span class="spinner" aria-hidden="true"></span>` : ""}</dd>
        <dt>Kind</dt><dd>${s.kind}</dd>
        <dt>Documents</dt><dd id="source-document-count">${fmtNumber(s.document_count, 0)}</dd>
        <dt>Chunks</dt><dd id="source-chunk-count">${fmtNumber(s.chunk_count, 0)}</dd>
        <dt>Embedding model</dt><dd>${s.embedding_model || "—"}${s.model_id ? html` <span class="muted">(${s.model_id}${s.dimension ? ", " + s.dimension + " dimensions" : ""})</span>` : ""}</dd>
        <dt>Last ingested</dt><dd>${s.origin || "—"}</dd>
        <dt>Created</dt><dd>${fmtDate(s.created_at)}</dd>
        <dt>Updated</dt><dd>${fmtDate(s.updated_at)}</dd>
      </dl>
      ${s.error ? html`<p class="error" id="source-error"><strong>Last failure:</strong> ${s.error}</p>` : ""}
    </section>

    <section class="card" aria-labelledby="upload-title">
      <h2 id="upload-title" style=${{ marginTop: 0 }}>Add documents</h2>
      <${Uploader} sourceId=${s.id} track=${track} />
      <${UrlIngest} sourceId=${s.id} track=${track} />
    </section>

    <section aria-labelledby="docs-title">
      <h2 id="docs-title">Documents</h2>
      <${Async} state=${docs} reload=${reloadDocs}>${(data) => html`<div id="document-list">
        ${data.documents.length === 0
          ? html`<p class="empty">No documents yet. Upload a file or ingest a URL above.</p>`
          : html`<div class="table-wrap"><table>
            <thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Status</th><th scope="col" class="num">Chunks</th>
              <th scope="col" class="num">Size</th><th scope="col">Added</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
            <tbody>${data.documents.map((d) => html`<tr key=${d.id} data-doc-id=${d.id} data-doc-name=${d.name}>
              <td><span class="doc-name">${d.name}</span></td>
              <td>${d.kind}</td>
              <td data-doc-status=${d.status}><${Status} value=${d.status} />
                ${d.error ? html`<div class="field-error doc-error">${d.error}</div>` : ""}</td>
              <td class="num">${fmtNumber(d.chunk_count, 0)}</td>
              <td class="num">${fmtBytes(d.bytes)}</td>
              <td>${fmtDate(d.created_at)}${d.updated_at && d.updated_at !== d.created_at ? html`<div class="muted">updated ${fmtDate(d.updated_at)}</div>` : ""}</td>
              <td class="actions"><button type="button" class="danger" aria-label=${"Delete " + d.name} onClick=${() => setDeleting(d)}>Delete</button></td>
            </tr>`)}</tbody>
          </table></div>`}
        <${Pager} page=${data.pagination} onOffset=${setOffset} />
      </div>`}<//>
    </section>

    <section class="card" style=${{ marginTop: "16px" }} aria-labelledby="reembed-title">
      <h2 id="reembed-title" style=${{ marginTop: 0 }}>Re-embed</h2>
      <${Reembed} source=${s} track=${track} />
    </section>

    <section class="card" aria-labelledby="source-search-title">
      <h2 id="source-search-title" style=${{ marginTop: 0 }}>Search this source</h2>
      <${SearchBox} sourceId=${s.id} />
    </section>

    ${deleting ? html`<${Confirm} title="Delete document"
        message=${html`Delete <strong>${deleting.name}</strong> and its ${fmtNumber(deleting.chunk_count, 0)} chunks? The source's other documents stay searchable.`}
        onConfirm=${async () => {
          await api("DELETE", `/v1/knowledge/sources/${encodeURIComponent(s.id)}/documents/${encodeURIComponent(deleting.id)}`);
          if (docs.data && docs.data.documents.length === 1 && offset > 0) setOffset(Math.max(0, offset - PAGE));
          refresh();
        }}
        onClose=${() => setDeleting(null)} />` : ""}
    ${deletingSource ? html`<${Confirm} title="Delete knowledge source"
        message=${html`Delete <strong>${s.name}</strong> with all its documents, chunks and vectors?`}
        onConfirm=${async () => { await api("DELETE", `/v1/knowledge/sources/${encodeURIComponent(s.id)}`); go("/knowledge"); }}
        onClose=${() => setDeletingSource(false)} />` : ""}
  <//>`;
}

/** Multipart uploads (`file`, `source_id`, `embedding_model?`), one file after the other. */
function Uploader({ sourceId, track }) {
  const [model, setModel] = useState("");
  const [items, setItems] = useState([]);
  const [current, setCurrent] = useState(null);
  const [over, setOver] = useState(false);
  const queue = useRef(Promise.resolve());
  const seq = useRef(0);

  const patch = (key, change) => setItems((list) => list.map((it) => (it.key === key ? { ...it, ...change } : it)));

  const one = async (item, embedding) => {
    setCurrent(item.key);
    patch(item.key, { phase: "uploading" });
    const form = new FormData();
    form.append("source_id", sourceId);
    if (embedding) form.append("embedding_model", embedding);
    form.append("file", item.file, item.name);
    try {
      const r = await track(() => upload("/v1/knowledge/upload", form, (sent, total) => {
        const t = total || item.size;
        patch(item.key, { sent, total: t, phase: t && sent >= t ? "ingesting" : "uploading" });
      }));
      patch(item.key, {
        phase: r && r.status === "failed" ? "failed" : "completed",
        result: r,
        error: r && r.error ? new Error(r.error) : null,
        file: null,
      });
    } catch (e) {
      patch(item.key, { phase: "failed", error: e, file: null });
    }
  };

  const start = (files) => {
    const list = [...(files || [])];
    if (!list.length) return;
    const embedding = model.trim();
    const added = list.map((f) => ({ key: "u" + ++seq.current, file: f, name: f.name, size: f.size, sent: 0, total: f.size, phase: "queued" }));
    setItems((cur) => [...cur, ...added]);
    for (const item of added) queue.current = queue.current.then(() => one(item, embedding));
  };

  const label = (it) => {
    switch (it.phase) {
      case "queued": return "Waiting…";
      case "uploading": return `Uploading… ${fmtBytes(it.sent)} of ${fmtBytes(it.total)} (${it.total ? Math.floor((100 * it.sent) / it.total) : 0}%)`;
      case "ingesting": return html`<span class="spinner" aria-hidden="true"></span> Ingesting… converting, chunking, embedding`;
      case "completed": return html`<${Badge} kind="ok">completed<//> ${it.result ? `${it.result.chunks_created} chunks, ${it.result.chunks_embedded} embedded` : ""}`;
      default: return html`<${Badge} kind="bad">failed<//>`;
    }
  };

  const busy = items.some((it) => it.phase === "queued" || it.phase === "uploading" || it.phase === "ingesting");
  return html`<div>
    <div class="row">
      <${Field} label="Embedding model (optional)" id="upload-model" hint="Empty: the server's default. A name that is not configured is refused with the configured ones.">
        <input id="upload-model" list="embedding-models" autocomplete="off" value=${model} onInput=${(e) => setModel(e.target.value)} placeholder="default" />
      <//>
    </div>
    <div class=${"dropzone" + (over ? " over" : "")}
      onDragOver=${(e) => { e.preventDefault(); setOver(true); }} onDragLeave=${() => setOver(false)}
      onDrop=${(e) => { e.preventDefault(); setOver(false); start(e.dataTransfer && e.dataTransfer.files); }}>
      <div class="field" style=${{ margin: 0 }}>
        <label for="upload-input">Upload files</label>
        <input id="upload-input" type="file" multiple onChange=${(e) => { start(e.target.files); e.target.value = ""; }} />
        <small class="hint">Or drop files here. ${FORMATS}. Uploading starts when you choose files; a file with the name of an existing document replaces it.</small>
      </div>
    </div>
    ${items.length ? html`<div id="upload-list" aria-live="polite">
      ${items.map((it) => html`<div class="upload" key=${it.key} data-upload-phase=${it.phase} data-upload-name=${it.name}>
        <div class="line"><span><strong>${it.name}</strong> <span class="muted">${fmtBytes(it.size)}</span></span>
          <span id=${it.key === current ? "upload-state" : undefined} class="upload-state" data-phase=${it.phase}>${label(it)}</span></div>
        <progress id=${it.key === current ? "upload-progress" : undefined} class="upload-progress" max=${it.total || 1}
          value=${it.phase === "completed" || it.phase === "ingesting" ? it.total || 1 : it.sent} aria-label=${"Upload of " + it.name}></progress>
        ${it.phase === "failed" ? html`<div id=${it.key === current ? "upload-error" : undefined}><${ErrorBox} error=${it.error} /></div>` : ""}
      </div>`)}
      ${busy ? "" : html`<button type="button" class="link" id="upload-clear" onClick=${() => { setItems([]); setCurrent(null); }}>Clear</button>`}
    </div>` : ""}
  </div>`;
}

/** POST /v1/knowledge/ingest/url `{source_id, url, user_id, embedding_model?}`. */
function UrlIngest({ sourceId, track }) {
  const [url, setUrl] = useState("");
  const [model, setModel] = useState("");
  const [result, setResult] = useState(null);
  const act = useAction();
  const submit = (e) => {
    e.preventDefault();
    setResult(null);
    act.run(() => track(async () => {
      const body = { source_id: sourceId, url: url.trim(), user_id: await userId() };
      if (model.trim()) body.embedding_model = model.trim();
      const r = await api("POST", "/v1/knowledge/ingest/url", body);
      setResult(r);
      setUrl("");
    }));
  };
  return html`<form id="url-form" onSubmit=${submit} style=${{ marginTop: "16px" }}>
    <p class="hint">One page: fetched (through the same network guard as webhooks), its main text extracted, chunked and embedded.</p>
    <div class="row">
      <${Field} label="Ingest a web page" id="url-input">
        <input id="url-input" type="url" required maxlength="2048" placeholder="https://example.com/help/returns" value=${url} onInput=${(e) => setUrl(e.target.value)} />
      <//>
      <${Field} label="Embedding model (optional)" id="url-model">
        <input id="url-model" list="embedding-models" autocomplete="off" value=${model} onInput=${(e) => setModel(e.target.value)} placeholder="default" />
      <//>
      <div class="field" style=${{ flex: "0 0 auto" }}>
        <button type="submit" class="primary" id="url-submit" disabled=${act.busy}>${act.busy ? "Ingesting…" : "Ingest URL"}</button>
      </div>
    </div>
    ${act.busy ? html`<p class="loading" role="status" id="url-state"><span class="spinner" aria-hidden="true"></span>Fetching and ingesting…</p>` : ""}
    ${result ? html`<p role="status" id="url-result"><${Badge} kind=${result.status === "completed" ? "ok" : "bad"}>${result.status}<//> ${result.chunks_created} chunks, ${result.chunks_embedded} embedded${result.error ? " — " + result.error : ""}</p>` : ""}
    <${ErrorBox} error=${act.error} />
  </form>`;
}

/** POST /v1/knowledge/reembed `{source_id, embedding_model?}`. */
function Reembed({ source, track }) {
  const [model, setModel] = useState("");
  const [result, setResult] = useState(null);
  const act = useAction();
  const submit = (e) => {
    e.preventDefault();
    setResult(null);
    act.run(() => track(async () => {
      const body = { source_id: source.id };
      if (model.trim()) body.embedding_model = model.trim();
      setResult(await api("POST", "/v1/knowledge/reembed", body));
    }));
  };
  return html`<form id="reembed-form" onSubmit=${submit}>
    <p class="hint">Recompute every vector of this source with another model (or the same one after its configuration changed). Currently: <strong>${source.embedding_model || "—"}</strong>.</p>
    <div class="row">
      <${Field} label="Embedding model" id="reembed-model" hint="Empty: the server's default.">
        <input id="reembed-model" list="embedding-models" autocomplete="off" value=${model} onInput=${(e) => setModel(e.target.value)} placeholder="default" />
      <//>
      <div class="field" style=${{ flex: "0 0 auto" }}>
        <button type="submit" id="reembed-submit" disabled=${act.busy || !source.chunk_count}>${act.busy ? "Re-embedding…" : "Re-embed"}</button>
      </div>
    </div>
    ${act.busy ? html`<p class="loading" role="status"><span class="spinner" aria-hidden="true"></span>Re-embedding ${fmtNumber(source.chunk_count, 0)} chunks…</p>` : ""}
    ${result ? html`<p role="status" id="reembed-result"><${Badge} kind=${result.status === "completed" ? "ok" : "bad"}>${result.status}<//> ${result.chunks_embedded} chunks with <code>${result.embedding_model}</code> (${result.model_id})${result.error ? " — " + result.error : ""}</p>` : ""}
    <${ErrorBox} error=${act.error} />
  </form>`;
}

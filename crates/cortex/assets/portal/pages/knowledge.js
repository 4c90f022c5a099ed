// Knowledge: sources (list, create, delete) and the retrieval stage on its own (search).
// Server: crates/cortex/src/api/knowledge.rs.
import {
  html, useState, Page, Async, ErrorBox, Modal, Confirm, Field, Badge, Status, Pager, Link, Loading,
  useAsync, useAction, fmtDate, fmtNumber, go,
} from "../lib/ui.js";
import { api } from "../lib/api.js";

const PAGE = 50;
const KINDS = [["file", "Files (uploads)"], ["url", "Web pages (URLs)"], ["documents", "Documents"]];

export default function Knowledge() {
  const [offset, setOffset] = useState(0);
  const [state, reload] = useAsync(() => api("GET", `/v1/knowledge/sources?limit=${PAGE}&offset=${offset}`), [offset]);
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState(null);

  return html`<${Page} title="Knowledge" actions=${html`<button type="button" class="primary" id="source-create" onClick=${() => setCreating(true)}>New source</button>`}>
    <p class="muted">A source holds documents (uploaded files, web pages, an agent's inline documents), converted to Markdown, chunked and embedded. Link sources to an agent to use them in its answers.</p>
    <${Async} state=${state} reload=${reload}>${(data) => html`<div id="source-list">
      ${data.sources.length === 0
        ? html`<p class="empty">No knowledge sources yet. <button type="button" class="link" onClick=${() => setCreating(true)}>Create one</button>, then upload files into it.</p>`
        : html`<div class="table-wrap"><table>
          <thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Status</th>
            <th scope="col" class="num">Documents</th><th scope="col" class="num">Chunks</th><th scope="col">Embedding model</th>
            <th scope="col">Updated</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
          <tbody>${data.sources.map((s) => html`<tr key=${s.id} data-source-id=${s.id}>
            <td><${Link} to=${"/knowledge/" + s.id}><strong>${s.name}</strong><//>
              ${s.error ? html`<div class="field-error" title=${s.error}>${s.error}</div>` : ""}</td>
            <td>${s.kind}</td>
            <td data-source-status=${s.status}><${Status} value=${s.status} /></td>
            <td class="num">${fmtNumber(s.document_count, 0)}</td>
            <td class="num">${fmtNumber(s.chunk_count, 0)}</td>
            <td>${s.embedding_model || html`<span class="muted">—</span>`}</td>
            <td>${fmtDate(s.updated_at)}</td>
            <td class="actions">
              <a class="button" href=${"#/knowledge/" + encodeURIComponent(s.id)}>Open</a>
              <button type="button" class="danger" aria-label=${"Delete " + s.name} onClick=${() => setDeleting(s)}>Delete</button>
            </td>
          </tr>`)}</tbody>
        </table></div>`}
      <${Pager} page=${data.pagination} onOffset=${setOffset} />
    </div>`}<//>

    <section class="card" style=${{ marginTop: "16px" }} aria-labelledby="search-title">
      <h2 id="search-title" style=${{ marginTop: 0 }}>Search</h2>
      <${SearchBox} />
    </section>

    ${creating ? html`<${CreateSource} onClose=${() => setCreating(false)} />` : ""}
    ${deleting ? html`<${Confirm} title="Delete knowledge source"
        message=${html`Delete <strong>${deleting.name}</strong> with its ${fmtNumber(deleting.document_count, 0)} documents and ${fmtNumber(deleting.chunk_count, 0)} chunks? Agents linked to it stop finding them.`}
        onConfirm=${async () => {
          await api("DELETE", `/v1/knowledge/sources/${encodeURIComponent(deleting.id)}`);
          if (state.data && state.data.sources.length === 1 && offset > 0) setOffset(Math.max(0, offset - PAGE));
          else reload();
        }}
        onClose=${() => setDeleting(null)} />` : ""}
  <//>`;
}

function CreateSource({ onClose }) {
  const [name, setName] = useState("");
  const [kind, setKind] = useState("file");
  const act = useAction();
  const submit = (e) => {
    e.preventDefault();
    act.run(async () => {
      const s = await api("POST", "/v1/knowledge/sources", { name: name.trim(), kind });
      onClose();
      go("/knowledge/" + s.id);
    });
  };
  return html`<${Modal} title="New knowledge source" onClose=${onClose}
      footer=${html`<button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" form="source-form" class="primary" id="source-submit" disabled=${act.busy}>${act.busy ? "Creating…" : "Create source"}</button>`}>
    <form id="source-form" onSubmit=${submit}>
      <${Field} label="Name" id="source-name" hint="1–200 characters, e.g. “Help center”.">
        <input id="source-name" autofocus required maxlength="200" autocomplete="off" value=${name} onInput=${(e) => setName(e.target.value)} />
      <//>
      <${Field} label="Kind" id="source-kind" hint="What it will mostly hold; any source accepts uploads and URLs.">
        <select id="source-kind" value=${kind} onChange=${(e) => setKind(e.target.value)}>
          ${KINDS.map(([v, l]) => html`<option value=${v}>${l}</option>`)}
        </select>
      <//>
      <${ErrorBox} error=${act.error} />
    </form>
  <//>`;
}

/** POST /v1/knowledge/search `{agent_id | source_ids, query, top_k}`. With `sourceId` the search
 *  is restricted to that source; else the user picks all sources (up to 100) or one agent's. */
export function SearchBox({ sourceId }) {
  const [query, setQuery] = useState("");
  const [topK, setTopK] = useState("5");
  const [scope, setScope] = useState("all");
  const [agents] = useAsync(() => (sourceId ? Promise.resolve(null) : api("GET", "/v1/agents?limit=200")), [sourceId]);
  const [result, setResult] = useState(null);
  const [docNames, setDocNames] = useState({});
  const act = useAction();

  const submit = (e) => {
    e.preventDefault();
    act.run(async () => {
      setResult(null);
      const body = { query, top_k: Number(topK) || 5 };
      if (sourceId) body.source_ids = [sourceId];
      else if (scope === "all") {
        const list = await api("GET", "/v1/knowledge/sources?limit=100");
        body.source_ids = list.sources.map((s) => s.id);
        if (!body.source_ids.length) throw new Error("There is no knowledge source to search yet.");
      } else body.agent_id = scope;
      const r = await api("POST", "/v1/knowledge/search", body);
      setResult(r);
      // Hits name their document by id; fetch the names of the sources that answered.
      const sources = [...new Set(r.results.map((h) => h.source_id))].slice(0, 10);
      const names = {};
      await Promise.all(sources.map((sid) => api("GET", `/v1/knowledge/sources/${encodeURIComponent(sid)}/documents?limit=200`)
        .then((d) => d.documents.forEach((doc) => { names[doc.id] = doc.name; }), () => {})));
      setDocNames(names);
    });
  };

  return html`<div class="search">
    <form id="search-form" onSubmit=${submit} role="search">
      <div class="row">
        <${Field} label="Query" id="search-input">
          <input id="search-input" type="search" required maxlength="4000" placeholder="What would a customer ask?" value=${query} onInput=${(e) => setQuery(e.target.value)} />
        <//>
        ${sourceId ? "" : html`<${Field} label="In" id="search-scope">
          <select id="search-scope" value=${scope} onChange=${(e) => setScope(e.target.value)}>
            <option value="all">All sources</option>
            ${agents.data ? agents.data.agents.map((a) => html`<option value=${a.id}>Agent: ${a.name}</option>`) : ""}
          </select>
        <//>`}
        <div class="field" style=${{ flex: "0 0 90px" }}>
          <label for="search-top-k">Top k</label>
          <input id="search-top-k" type="number" min="1" max="50" step="1" required value=${topK} onInput=${(e) => setTopK(e.target.value)} />
        </div>
        <div class="field" style=${{ flex: "0 0 auto" }}>
          <button type="submit" class="primary" id="search-submit" disabled=${act.busy}>${act.busy ? "Searching…" : "Search"}</button>
        </div>
      </div>
    </form>
    ${agents.error ? html`<${ErrorBox} error=${agents.error} />` : ""}
    <${ErrorBox} error=${act.error} />
    ${act.busy ? html`<${Loading} what="results" />` : ""}
    ${result ? html`<div id="search-results" aria-live="polite">
      ${result.results.length === 0
        ? html`<p class="empty">No chunk is relevant enough to “${result.query}”.</p>`
        : html`<p class="muted">${result.results.length} chunk${result.results.length === 1 ? "" : "s"} for “${result.query}”, best first.</p>
          <ol class="search-results">${result.results.map((h, i) => html`<${Hit} hit=${h} rank=${i + 1} docName=${h.document_id ? docNames[h.document_id] : null} />`)}</ol>`}
    </div>` : ""}
  </div>`;
}

function Hit({ hit, rank, docName }) {
  const where = [hit.heading_path && hit.heading_path.length ? hit.heading_path.join(" › ") : null,
    hit.locator || (hit.page ? "page " + hit.page : null)].filter(Boolean);
  return html`<li class="search-result" data-chunk-id=${hit.chunk_id} data-score=${hit.score}>
    <div class="meta">
      <strong>#${rank}</strong>
      <${Badge} kind="ok"><span title="Combined score">score ${fmtNumber(hit.score, 3)}</span><//>
      <${Badge}><span title="Vector similarity">vector ${fmtNumber(hit.vector_score, 3)}</span><//>
      <${Badge}><span title="Keyword (full-text) score">keyword ${fmtNumber(hit.keyword_score, 3)}</span><//>
      <span class="result-source"><${Link} to=${"/knowledge/" + hit.source_id}>${hit.source_name}<//></span>
      ${hit.document_id ? html`<span class="result-document">· ${docName || html`<code>${hit.document_id.slice(0, 8)}</code>`}</span>` : ""}
      ${where.length ? html`<span>· ${where.join(" · ")}</span>` : ""}
      <span title="Embedding model">· ${hit.model_id}</span>
    </div>
    <pre class="chunk">${hit.content}</pre>
  </li>`;
}

// Shared components and hooks. Pages build only from these and plain elements, so the portal
// looks and behaves the same everywhere: a page header, visible loading and error states,
// tables that scroll on a phone, dialogs that trap nothing and close on Escape.
import { html, useState, useEffect, useCallback, useRef } from "../vendor/htm-preact-3.1.1.mjs";
export { html, useState, useEffect, useCallback, useRef };
export { render, useMemo, useReducer } from "../vendor/htm-preact-3.1.1.mjs";
import { ApiError } from "./api.js";

/** Load data for a page: `const [state, reload] = useAsync(() => api("GET", "/v1/agents"), [])`.
 *  state = {loading, error, data}. */
export function useAsync(fn, deps) {
  const [state, set] = useState({ loading: true, error: null, data: null });
  const seq = useRef(0);
  const run = useCallback(() => {
    const mine = ++seq.current;
    set((s) => ({ loading: true, error: null, data: s.data }));
    Promise.resolve()
      .then(fn)
      .then((data) => mine === seq.current && set({ loading: false, error: null, data }))
      .catch((error) => mine === seq.current && set({ loading: false, error, data: null }));
  }, deps);
  useEffect(run, [run]);
  return [state, run];
}

/** Run an action (a button's work) with its own busy and error state. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const run = useCallback(async (fn) => {
    setBusy(true);
    setError(null);
    try { return await fn(); } catch (e) { setError(e); return undefined; } finally { setBusy(false); }
  }, []);
  return { busy, error, run, setError };
}

export function Page({ title, actions, children, wide }) {
  useEffect(() => { document.title = title + " · Cortex"; }, [title]);
  return html`<section class=${"page" + (wide ? " wide" : "")}>
    <header class="page-head"><h1>${title}</h1><div class="actions">${actions}</div></header>
    ${children}
  </section>`;
}

export function Loading({ what }) {
  return html`<p class="loading" role="status" aria-live="polite"><span class="spinner" aria-hidden="true"></span>Loading${what ? " " + what : ""}…</p>`;
}

/** An API error with its `detail`, as the server said it. */
export function ErrorBox({ error, onRetry }) {
  if (!error) return null;
  const text = error instanceof ApiError ? error.text : String(error.message || error);
  const code = error instanceof ApiError ? error.code : null;
  return html`<div class="error" role="alert">
    <strong>${error.message || "Something went wrong"}</strong>${code ? html` <code>${code}</code>` : ""}
    ${text && text !== error.message ? html`<pre class="detail">${text}</pre>` : ""}
    ${onRetry ? html`<button type="button" class="link" onClick=${onRetry}>Try again</button>` : ""}
  </div>`;
}

/** Loading, error or the content of a useAsync state. */
export function Async({ state, reload, children }) {
  if (state.error) return html`<${ErrorBox} error=${state.error} onRetry=${reload} />`;
  if (state.loading && state.data == null) return html`<${Loading} />`;
  return children(state.data);
}

export function Empty({ children }) {
  return html`<p class="empty">${children}</p>`;
}

/** A table: `columns` = [{title, render(row)}]. Scrolls sideways on narrow screens. */
export function Table({ columns, rows, empty, rowKey }) {
  if (!rows || rows.length === 0) return html`<${Empty}>${empty || "Nothing here yet."}<//>`;
  return html`<div class="table-wrap"><table>
    <thead><tr>${columns.map((c) => html`<th scope="col" class=${c.class || ""}>${c.title}</th>`)}</tr></thead>
    <tbody>${rows.map((r, i) => html`<tr key=${rowKey ? rowKey(r) : r.id || i}>${columns.map((c) => html`<td class=${c.class || ""}>${c.render(r)}</td>`)}</tr>`)}</tbody>
  </table></div>`;
}

/** A modal dialog (native <dialog>): Escape and the close button call onClose. */
export function Modal({ title, onClose, children, footer }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => d && d.open && d.close();
  }, []);
  return html`<dialog ref=${ref} class="modal" onCancel=${(e) => { e.preventDefault(); onClose(); }}>
    <header><h2>${title}</h2><button type="button" class="icon" aria-label="Close" onClick=${onClose}>×</button></header>
    <div class="body">${children}</div>
    ${footer ? html`<footer>${footer}</footer>` : ""}
  </dialog>`;
}

/** Ask before a destructive action. */
export function Confirm({ title, message, confirmLabel, onConfirm, onClose }) {
  const act = useAction();
  return html`<${Modal} title=${title} onClose=${onClose} footer=${html`
      <button type="button" onClick=${onClose}>Cancel</button>
      <button type="button" class="danger" disabled=${act.busy} onClick=${() => act.run(async () => { await onConfirm(); onClose(); })}>${act.busy ? "Working…" : confirmLabel || "Delete"}</button>`}>
    <p>${message}</p>
    <${ErrorBox} error=${act.error} />
  <//>`;
}

export function CopyButton({ text, label }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try { await navigator.clipboard.writeText(text); } catch {
      const t = document.createElement("textarea");
      t.value = text; document.body.appendChild(t); t.select(); document.execCommand("copy"); t.remove();
    }
    setDone(true);
    setTimeout(() => setDone(false), 1500);
  };
  return html`<button type="button" class="copy" onClick=${copy}>${done ? "Copied" : label || "Copy"}</button>`;
}

/** A labelled form field; `hint` under it, `error` (text) in red. */
export function Field({ label, hint, error, children, id }) {
  return html`<div class=${"field" + (error ? " invalid" : "")}>
    <label for=${id}>${label}</label>
    ${children}
    ${hint ? html`<small class="hint">${hint}</small>` : ""}
    ${error ? html`<small class="field-error" role="alert">${error}</small>` : ""}
  </div>`;
}

export function Badge({ kind, children }) {
  return html`<span class=${"badge " + (kind || "")}>${children}</span>`;
}

/** A status word as a coloured badge (completed, failed, processing, running, …). */
export function Status({ value }) {
  const kind = { completed: "ok", active: "ok", ok: "ok", failed: "bad", error: "bad", cancelled: "muted", stopped: "muted",
    processing: "busy", pending: "busy", queued: "busy", running: "busy" }[value] || "";
  return html`<${Badge} kind=${kind}>${value}<//>`;
}

export function fmtDate(s) {
  if (!s) return "—";
  const d = new Date(s);
  return isNaN(d) ? s : d.toLocaleString();
}
export function fmtNumber(n, digits) {
  if (n == null) return "—";
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits == null ? 2 : digits });
}
export function fmtBytes(n) {
  if (n == null) return "—";
  const u = ["B", "KB", "MB", "GB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

/** Navigate inside the portal (hash routes: #/agents/ID). */
/** Marks the moment a page is on screen and usable, once per load (read by the portal benchmark). */
export function markReady(name) {
  try { if (!performance.getEntriesByName(name).length) performance.mark(name); } catch { /* no User Timing */ }
}

export function go(path) { location.hash = "#" + path; }
export function Link({ to, children, class: cls }) {
  return html`<a href=${"#" + to} class=${cls || ""}>${children}</a>`;
}

// ---- Added for the playground, runs, actions, usage and widget pages ----

/** A random UUID v4 (crypto.randomUUID exists only in secure contexts; getRandomValues everywhere). */
export function uuid() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
}

/** `[ref, width]`: an element's width in CSS pixels, kept current (charts drawn to fit a phone). */
export function useWidth(initial) {
  const ref = useRef(null);
  const [width, setWidth] = useState(initial || 600);
  useEffect(() => {
    const el = ref.current;
    if (!el) return undefined;
    const measure = () => { const w = Math.floor(el.getBoundingClientRect().width); if (w > 0) setWidth(w); };
    measure();
    if (typeof ResizeObserver === "undefined") {
      addEventListener("resize", measure);
      return () => removeEventListener("resize", measure);
    }
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  return [ref, width];
}

/** JSON typed into a form field: `{value}` or `{error}` (a message for the field). Empty → `empty`. */
export function parseJson(text, empty) {
  if (!text || !text.trim()) return { value: empty };
  try { return { value: JSON.parse(text) }; } catch (e) { return { error: "Not valid JSON: " + e.message }; }
}

export function fmtMoney(n) {
  if (n == null) return "—";
  const v = Number(n);
  return "$" + v.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: v !== 0 && Math.abs(v) < 1 ? 6 : 2 });
}

/** Previous/next for a list answer's `pagination` ({total, limit, offset}); nothing when it all fits. */
export function Pager({ page, onOffset }) {
  if (!page || (page.offset === 0 && page.total <= page.limit)) return null;
  const from = page.total ? Math.min(page.offset + 1, page.total) : 0;
  const to = Math.min(page.offset + page.limit, page.total);
  return html`<nav class="pager" aria-label="Pages">
    <button type="button" disabled=${page.offset === 0} onClick=${() => onOffset(Math.max(0, page.offset - page.limit))}>← Previous</button>
    <span class="muted">${from}–${to} of ${page.total}</span>
    <button type="button" disabled=${to >= page.total} onClick=${() => onOffset(page.offset + page.limit)}>Next →</button>
  </nav>`;
}

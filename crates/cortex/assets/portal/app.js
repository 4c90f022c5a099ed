// The portal: sign-in, the layout and the hash router. Each page is its own module under
// pages/, loaded when first opened, exporting `default function Page({params})`.
import { html, render, useState, useEffect, Loading, ErrorBox, markReady as ready } from "./lib/ui.js";
import { api, session, ApiError } from "./lib/api.js";

const NAV = [
  ["/", "Overview", "overview"],
  ["/playground", "Playground", "playground"],
  ["/agents", "Agents", "agents"],
  ["/knowledge", "Knowledge", "knowledge"],
  ["/actions", "Actions", "actions"],
  ["/runs", "Runs", "runs"],
  ["/usage", "Usage", "usage"],
  ["/keys", "API keys", "keys"],
  ["/widget", "Widget", "widget"],
];

// Route patterns → page module. `:name` segments become params.
const ROUTES = [
  ["/", "overview"],
  ["/playground", "playground"],
  ["/playground/:agent", "playground"],
  ["/agents", "agents"],
  ["/agents/new", "agent"],
  ["/agents/:id", "agent"],
  ["/knowledge", "knowledge"],
  ["/knowledge/:id", "source"],
  ["/actions", "actions"],
  ["/runs", "runs"],
  ["/runs/:thread", "thread"],
  ["/usage", "usage"],
  ["/keys", "keys"],
  ["/widget", "widget"],
];

function match(path) {
  const parts = path.split("/").filter(Boolean);
  for (const [pattern, page] of ROUTES) {
    const want = pattern.split("/").filter(Boolean);
    if (want.length !== parts.length) continue;
    const params = {};
    if (want.every((w, i) => (w.startsWith(":") ? ((params[w.slice(1)] = decodeURIComponent(parts[i])), true) : w === parts[i]))) {
      return { page, params };
    }
  }
  return null;
}

function currentPath() {
  const h = location.hash.replace(/^#/, "");
  return (h.split("?")[0] || "/");
}

function useHashPath() {
  const [path, setPath] = useState(currentPath());
  useEffect(() => {
    const on = () => setPath(currentPath());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return path;
}

const modules = {};
function PageHost({ page, params }) {
  const [mod, setMod] = useState(modules[page] || null);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (modules[page]) { setMod(modules[page]); return; }
    setMod(null);
    import("./pages/" + page + ".js").then((m) => { modules[page] = m; setMod(m); }, setError);
  }, [page]);
  useEffect(() => { if (mod) ready("cortex-page-ready"); }, [mod]);
  if (error) return html`<${ErrorBox} error=${error} />`;
  // On a route change the state still holds the previous page's module for one render.
  if (!mod || mod !== modules[page]) return html`<${Loading} />`;
  const P = mod.default;
  return html`<${P} params=${params} key=${page + JSON.stringify(params)} />`;
}

function SignIn({ reason }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  useEffect(() => { document.title = "Sign in · Cortex"; ready("cortex-signin-ready"); }, []);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const r = await api("POST", "/portal/api/login", { email, password });
      session.set(r.token, r.user);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="signin">
    <form class="card" onSubmit=${submit} aria-labelledby="signin-title">
      <div class="brand"><img src="/ui/favicon.svg" alt="" width="28" height="28" /> Cortex</div>
      <h1 id="signin-title">Sign in</h1>
      ${reason ? html`<p class="notice" role="status">${reason}</p>` : ""}
      <div class="field"><label for="email">Email</label>
        <input id="email" name="email" type="email" autocomplete="username" required value=${email} onInput=${(e) => setEmail(e.target.value)} /></div>
      <div class="field"><label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required value=${password} onInput=${(e) => setPassword(e.target.value)} /></div>
      <${ErrorBox} error=${error} />
      <button type="submit" class="primary" disabled=${busy}>${busy ? "Signing in…" : "Sign in"}</button>
      <p class="hint">First run? The server printed the first admin's email and password when it started.</p>
    </form>
  </main>`;
}

function Shell() {
  const path = useHashPath();
  const [menu, setMenu] = useState(false);
  const user = session.user();
  const route = match(path);
  useEffect(() => setMenu(false), [path]);
  const active = (to) => (to === "/" ? path === "/" : path === to || path.startsWith(to + "/"));
  return html`<div class=${"shell" + (menu ? " menu-open" : "")}>
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById("main").focus(); }}>Skip to content</a>
    <header class="topbar">
      <button type="button" class="icon menu-toggle" aria-label="Menu" aria-expanded=${menu} onClick=${() => setMenu(!menu)}>☰</button>
      <a class="brand" href="#/"><img src="/ui/favicon.svg" alt="" width="24" height="24" /> Cortex</a>
      <span class="spacer"></span>
      <span class="who" title=${user ? user.company_id : ""}>${user ? user.email : ""}</span>
      <button type="button" class="signout" onClick=${() => session.clear("You signed out.")}>Sign out</button>
    </header>
    <nav class="sidebar" aria-label="Portal">
      ${NAV.map(([to, label, id]) => html`<a href=${"#" + to} id=${"nav-" + id} class=${active(to) ? "active" : ""} aria-current=${active(to) ? "page" : undefined}>${label}</a>`)}
      <a href="/openapi.json" target="_blank" rel="noopener" class="ext">API reference ↗</a>
    </nav>
    <main id="main" tabindex="-1">
      ${route ? html`<${PageHost} page=${route.page} params=${route.params} />` : html`<section class="page"><h1>Not found</h1><p>No page at <code>${path}</code>. <a href="#/">Overview</a></p></section>`}
    </main>
  </div>`;
}

function App() {
  const [authed, setAuthed] = useState(!!session.token);
  const [reason, setReason] = useState(null);
  useEffect(() => session.onChange((why) => { setAuthed(!!session.token); setReason(why); }), []);
  return authed ? html`<${Shell} />` : html`<${SignIn} reason=${reason} />`;
}

addEventListener("unhandledrejection", (e) => {
  if (e.reason instanceof ApiError && e.reason.status === 401) e.preventDefault();
});
const root = document.getElementById("app");
root.textContent = ""; // the boot message shown before the modules load
render(html`<${App} />`, root);

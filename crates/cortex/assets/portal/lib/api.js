// The portal's only door to the server: the public API, with the session token from sessionStorage.
// Every failure becomes an ApiError whose `detail` is what the server said.

const TOKEN = "cortex_token";
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, code, message, detail) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
  /** The server's `detail`, as text a person can read (validation errors one per line). */
  get text() {
    const d = this.detail;
    if (d == null) return this.message;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) return d.map((e) => (e.loc ? e.loc.filter((p) => p !== "body").join(".") + ": " : "") + (e.msg || JSON.stringify(e))).join("\n");
    return JSON.stringify(d);
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN); },
  user() { try { return JSON.parse(sessionStorage.getItem(TOKEN + "_user") || "null"); } catch { return null; } },
  set(token, user) {
    sessionStorage.setItem(TOKEN, token);
    sessionStorage.setItem(TOKEN + "_user", JSON.stringify(user || null));
    listeners.forEach((f) => f(null));
  },
  /** Forget the token; `reason` is shown on the sign-in page ("Your session expired…"). */
  clear(reason) {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(TOKEN + "_user");
    listeners.forEach((f) => f(reason || null));
  },
  onChange(f) { listeners.add(f); return () => listeners.delete(f); },
};

function headers(extra) {
  const h = Object.assign({}, extra);
  if (session.token) h.Authorization = "Bearer " + session.token;
  return h;
}

async function failure(resp) {
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  const err = body && body.error ? body.error : {};
  const e = new ApiError(resp.status, err.code || "HTTP_" + resp.status, err.message || resp.statusText || "Request failed", body ? body.detail : null);
  if (resp.status === 401 && session.token) session.clear("Your session expired. Sign in again.");
  return e;
}

/** `api("GET", "/v1/agents")`, `api("POST", "/v1/agents", body)`. Resolves to the JSON body (or null). */
export async function api(method, path, body, opts = {}) {
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: headers(body !== undefined ? { "Content-Type": "application/json" } : {}),
      body: body !== undefined ? JSON.stringify(body) : undefined,
      signal: opts.signal,
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "NETWORK", "The server could not be reached", String(e.message || e));
  }
  if (!resp.ok) throw await failure(resp);
  if (resp.status === 204) return null;
  const type = resp.headers.get("content-type") || "";
  return type.includes("json") ? resp.json() : resp.text();
}

/** Multipart upload with progress: `onProgress(sent, total)` while the bytes go up. */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    if (session.token) xhr.setRequestHeader("Authorization", "Bearer " + session.token);
    xhr.upload.onprogress = (e) => onProgress && onProgress(e.loaded, e.lengthComputable ? e.total : 0);
    xhr.onerror = () => reject(new ApiError(0, "NETWORK", "The server could not be reached", null));
    xhr.onload = async () => {
      const resp = new Response(xhr.responseText, { status: xhr.status, headers: { "content-type": xhr.getResponseHeader("content-type") || "" } });
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.responseText ? JSON.parse(xhr.responseText) : null);
      else reject(await failure(resp));
    };
    xhr.send(form);
  });
}

/** POST a JSON body to an SSE endpoint and call `onEvent(name, data, id)` per event. */
export async function streamPost(path, body, onEvent, signal) {
  const resp = await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify(body),
    signal,
  });
  if (!resp.ok) throw await failure(resp);
  await readSse(resp.body, onEvent);
}

/** Parse a text/event-stream body. */
export async function readSse(stream, onEvent) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let cut;
    while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
      let event = "message", data = [], id = null;
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(":")) continue;
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (field === "event") event = val;
        else if (field === "data") data.push(val);
        else if (field === "id") id = val;
      }
      if (!data.length) continue;
      let parsed = data.join("\n");
      try { parsed = JSON.parse(parsed); } catch { /* plain text */ }
      onEvent(event, parsed, id);
    }
  }
}

/** The caller (`/v1/me`), fetched once per session. */
let me = null;
export async function whoami() {
  if (!me) me = await api("GET", "/v1/me");
  return me;
}
session.onChange(() => { me = null; });

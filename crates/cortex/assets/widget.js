/* Cortex chat widget. Embed with:
 *   <script src="https://YOUR-CORTEX/widget.js" data-public-key="pk_..." data-agent-id="..."
 *           data-title="Chat with us" defer></script>
 * The public key must allow the page's origin. The widget exchanges it for a short-lived
 * session token (POST /v1/sdk/init) and streams answers from POST /v1/chat/stream. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var api = new URL(script.src).origin;
  var publicKey = script.getAttribute("data-public-key");
  var agentId = script.getAttribute("data-agent-id");
  var title = script.getAttribute("data-title") || "Chat";
  if (!publicKey || !agentId) {
    console.error("cortex widget: data-public-key and data-agent-id are required");
    return;
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "10000000-1000-4000-8000-100000000000".replace(/[018]/g, function (c) {
      return (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16);
    });
  }
  function stored(storage, key, make) {
    try {
      var v = storage.getItem(key);
      if (!v) { v = make(); storage.setItem(key, v); }
      return v;
    } catch (e) { return make(); }
  }
  var customerId = stored(localStorage, "cortex_customer_" + agentId, function () { return "web_" + uuid(); });
  var conversationId = stored(sessionStorage, "cortex_conversation_" + agentId, uuid);
  var session = null;

  function ensureSession() {
    if (session && Date.parse(session.expires_at) - Date.now() > 30000) return Promise.resolve(session);
    return fetch(api + "/v1/sdk/init", {
      method: "POST",
      headers: { "X-Public-Key": publicKey, "Content-Type": "application/json" },
      body: JSON.stringify({ agent_id: agentId })
    }).then(function (r) {
      if (!r.ok) throw new Error("the chat is unavailable (" + r.status + ")");
      return r.json();
    }).then(function (s) { session = s; return s; });
  }

  // UI, isolated in a shadow root so the page's styles do not leak in.
  var css =
    ".b{width:56px;height:56px;border-radius:28px;border:0;padding:0;background:#1f6feb;color:#fff;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center;margin-left:auto}" +
    ".b svg{width:28px;height:28px;display:block;fill:currentColor}.b:focus-visible{outline:3px solid #1f6feb;outline-offset:3px}" +
    ".p{display:none;flex-direction:column;width:340px;max-width:calc(100vw - 40px);height:460px;max-height:calc(100vh - 110px);background:#fff;color:#1f2328;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.3);overflow:hidden;font:14px/1.4 sans-serif;margin-bottom:10px}" +
    ".p.o{display:flex}.h{background:#1f6feb;color:#fff;padding:10px 12px;font-weight:600}" +
    ".m{flex:1;overflow-y:auto;padding:10px;display:flex;flex-direction:column;gap:8px;background:#f6f8fa}" +
    ".u,.a{max-width:80%;padding:8px 10px;border-radius:10px;white-space:pre-wrap;word-wrap:break-word}" +
    ".u{align-self:flex-end;background:#1f6feb;color:#fff}.a{align-self:flex-start;background:#fff;border:1px solid #d0d7de}" +
    ".e{color:#cf222e;font-size:12px}form{display:flex;border-top:1px solid #d0d7de}" +
    "input{flex:1;border:0;padding:10px;font:inherit;color:inherit;background:#fff;outline:none}button.s{border:0;background:none;color:#1f6feb;font-weight:600;padding:0 12px;cursor:pointer}";
  var host = document.createElement("div");
  host.style.cssText = "position:fixed;right:20px;bottom:20px;z-index:2147483000";
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  // A strict Content-Security-Policy (style-src without 'unsafe-inline') blocks a <style>
  // element, but not a constructed stylesheet adopted by the shadow root.
  var adopted = false;
  if (root !== host && "adoptedStyleSheets" in root && typeof CSSStyleSheet === "function") {
    try {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
      root.adoptedStyleSheets = [sheet];
      adopted = true;
    } catch (e) { adopted = false; }
  }
  // The open button is drawn (a speech bubble), not an emoji that needs an emoji font.
  var icon =
    "<svg viewBox='0 0 24 24' aria-hidden='true' focusable='false'>" +
    "<path d='M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2h-9.2L6 21.6V18H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z'/>" +
    "<circle cx='8' cy='10.5' r='1.3' fill='#1f6feb'/><circle cx='12' cy='10.5' r='1.3' fill='#1f6feb'/><circle cx='16' cy='10.5' r='1.3' fill='#1f6feb'/>" +
    "</svg>";
  root.innerHTML =
    (adopted ? "" : "<style>" + css + "</style>") +
    "<div class='p' role='region' aria-label='Chat'><div class='h'></div><div class='m' role='log'></div>" +
    "<form><input placeholder='Type a message…' aria-label='Message' maxlength='16000' autocomplete='off'><button class='s'>Send</button></form></div>" +
    "<button class='b' type='button' aria-label='Open chat' aria-expanded='false'>" + icon + "</button>";
  var panel = root.querySelector(".p");
  var messages = root.querySelector(".m");
  var form = root.querySelector("form");
  var input = root.querySelector("input");
  root.querySelector(".h").textContent = title;
  var opener = root.querySelector(".b");
  opener.addEventListener("click", function () {
    panel.classList.toggle("o");
    var open = panel.classList.contains("o");
    opener.setAttribute("aria-expanded", open ? "true" : "false");
    opener.setAttribute("aria-label", open ? "Close chat" : "Open chat");
    if (open) input.focus();
  });

  function bubble(cls, text) {
    var d = document.createElement("div");
    d.className = cls;
    d.textContent = text;
    messages.appendChild(d);
    messages.scrollTop = messages.scrollHeight;
    return d;
  }

  function send(text) {
    bubble("u", text);
    var answer = bubble("a", "…");
    var got = "";
    return ensureSession().then(function (s) {
      return fetch(api + "/v1/chat/stream", {
        method: "POST",
        headers: { "X-SDK-Token": s.token, "Content-Type": "application/json" },
        body: JSON.stringify({
          company_id: s.company_id, agent_id: s.agent_id, conversation_id: conversationId,
          customer_id: customerId, message: text, channel: "web"
        })
      });
    }).then(function (r) {
      if (r.status === 429) {
        return r.json().then(function (b) {
          throw new Error("Too many messages; try again in " + Math.ceil((b.retryAfterMs || 1000) / 1000) + " s");
        });
      }
      if (!r.ok || !r.body) throw new Error("the chat is unavailable (" + r.status + ")");
      var reader = r.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function read() {
        return reader.read().then(function (chunk) {
          if (chunk.done) return;
          buffer += decoder.decode(chunk.value, { stream: true });
          var events = buffer.split("\n\n");
          buffer = events.pop();
          events.forEach(function (raw) {
            var name = "message", data = "";
            raw.split("\n").forEach(function (line) {
              if (line.indexOf("event:") === 0) name = line.slice(6).trim();
              else if (line.indexOf("data:") === 0) data += line.slice(5).trim();
            });
            if (!data) return;
            var payload = JSON.parse(data);
            if (name === "text_delta") { got += payload.delta; answer.textContent = got; }
            else if (name === "complete" && !got) { answer.textContent = payload.reply; }
            else if (name === "error") { throw new Error(payload.message); }
            messages.scrollTop = messages.scrollHeight;
          });
          return read();
        });
      }
      return read();
    }).catch(function (e) {
      answer.remove();
      bubble("e", e.message);
    });
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    input.disabled = true;
    send(text).then(function () { input.disabled = false; input.focus(); });
  });

  if (document.body) document.body.appendChild(host);
  else document.addEventListener("DOMContentLoaded", function () { document.body.appendChild(host); });
})();

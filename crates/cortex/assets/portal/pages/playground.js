// Playground: chat with an agent over POST /v1/chat/stream (contract §4). Text arrives as it is
// generated, tool calls and results show inline where they happen, and under each answer its
// model, cache, tokens, cost and the stage timings as a waterfall.
import {
  html, useState, useEffect, useRef, Page, ErrorBox, Loading, Empty, Badge, Link,
  fmtNumber, fmtMoney, uuid, useWidth, useAsync, markReady,
} from "../lib/ui.js";
import { api, streamPost, whoami, session, ApiError } from "../lib/api.js";

/** The eight measured stages of `step_timings`, in pipeline order (`tool_call_rounds` is a count). */
export const STAGES = [
  ["config_load", "01 config"],
  ["memory_recall", "02 memory"],
  ["context_engine", "03 knowledge"],
  ["token_optimizer", "04 token optimizer"],
  ["cache_check", "05 cache"],
  ["model_router", "06 router"],
  ["agent_compiler", "07 compiler"],
  ["tool_execution", "07 tool execution"],
];

const CHAR_W = 6.4; // average width of an 11px system-ui character, for placing labels

/** step_timings as a waterfall: each stage a bar starting where the previous ones end. */
export function Waterfall({ timings }) {
  const [ref, width] = useWidth(480);
  const rows = [];
  let at = 0;
  for (const [key, title] of STAGES) {
    const ms = Math.max(0, Number(timings && timings[key]) || 0);
    rows.push({ key, title, ms, start: at });
    at += ms;
  }
  const total = at;
  const scale = Math.max(total, 1);
  const W = Math.max(width, 240);
  const rowH = 22, barH = 14, top = 2, axisH = 20;
  const H = top + rows.length * rowH + axisH;
  const x = (ms) => 1 + (ms / scale) * (W - 2);
  const summary = "Stage timings, " + total + " ms in all: " + rows.map((r) => r.key + " " + r.ms + " ms").join(", ");
  return html`<div class="waterfall-wrap" ref=${ref}>
    <svg class="waterfall" width=${W} height=${H} viewBox=${`0 0 ${W} ${H}`} role="img" aria-label=${summary}>
      <title>${summary}</title>
      ${rows.map((r, i) => {
        const y = top + i * rowH;
        const x0 = x(r.start);
        const x1 = Math.max(x(r.start + r.ms), x0 + 2);
        const label = r.key + " " + r.ms + " ms";
        const tw = label.length * CHAR_W;
        let tx, anchor = "start", cls = "label";
        if (x1 + 4 + tw <= W) tx = x1 + 4;
        else if (x0 - 4 - tw >= 0) { tx = x0 - 4; anchor = "end"; }
        else { tx = x0 + 4; cls = "label inside"; }
        return html`<g class=${"stage stage-" + r.key} key=${r.key}>
          <title>${r.title}: ${r.ms} ms</title>
          <rect class="track" x="0" y=${y} width=${W} height=${barH} rx="2" />
          <rect class="bar" x=${x0} y=${y} width=${x1 - x0} height=${barH} rx="2" />
          <text class=${cls} x=${tx} y=${y + barH - 3} text-anchor=${anchor}>${label}</text>
        </g>`;
      })}
      <line class="axis" x1="0" x2=${W} y1=${top + rows.length * rowH} y2=${top + rows.length * rowH} />
      <text class="tick" x="0" y=${H - 4}>0 ms</text>
      <text class="tick" x=${W} y=${H - 4} text-anchor="end">${total} ms, stages summed</text>
    </svg>
  </div>`;
}

function ToolCall({ part }) {
  const r = part.result;
  const state = !r ? html`<${Badge} kind="busy">running…<//>` : r.ok ? html`<${Badge} kind="ok">ok<//>` : html`<${Badge} kind="bad">failed<//>`;
  return html`<div class="tool-call" data-name=${part.name}>
    <div class="tool-head"><span class="muted">Tool</span> <code>${part.name}</code> ${state}
      ${r && r.latency_ms != null ? html`<span class="muted">${fmtNumber(r.latency_ms, 0)} ms</span>` : ""}</div>
    <details>
      <summary>Arguments${r && r.output != null ? " and result" : ""}</summary>
      <pre>${JSON.stringify(part.arguments, null, 2)}</pre>
      ${r && r.output != null ? html`<pre class="tool-output">${r.output}</pre>` : ""}
    </details>
  </div>`;
}

function AnswerMeta({ c }) {
  const t = c.tokens || {};
  return html`<div class="answer-meta">
    <span><span class="muted">model</span> ${c.model_used}</span>
    <span><span class="muted">cached</span> ${c.cached ? "yes" : "no"}</span>
    <span><span class="muted">tokens in/out</span> ${fmtNumber(t.input, 0)} / ${fmtNumber(t.output, 0)}</span>
    <span><span class="muted">cost</span> ${fmtMoney(t.cost_usd)}</span>
    <span><span class="muted">latency</span> ${fmtNumber(c.latency_ms, 0)} ms</span>
    ${c.step_timings && c.step_timings.tool_call_rounds ? html`<span><span class="muted">tool rounds</span> ${c.step_timings.tool_call_rounds}</span>` : ""}
    ${c.context_tokens && c.context_tokens.before_compression ? html`<span><span class="muted">context</span> ${fmtNumber(c.context_tokens.before_compression, 0)} → ${fmtNumber(c.context_tokens.after_compression, 0)} tokens</span>` : ""}
  </div>`;
}

function Message({ m }) {
  if (m.role === "user") {
    return html`<div class="message user"><div class="who">You</div><div class="bubble">${m.text}</div></div>`;
  }
  const empty = !m.parts.length && !m.done && !m.error;
  return html`<div class="message assistant" aria-busy=${m.done ? "false" : "true"}>
    <div class="who">Agent</div>
    <div class="bubble">
      ${empty ? html`<span class="typing muted">Thinking…</span>` : ""}
      ${m.parts.map((p, i) => (p.kind === "text" ? html`<div class="text" key=${i}>${i ? p.text.replace(/^\s+/, "") : p.text}</div>` : html`<${ToolCall} part=${p} key=${i} />`))}
      ${m.stopped ? html`<p class="muted stopped">Stopped.</p>` : ""}
      <${ErrorBox} error=${m.error} />
    </div>
    ${m.complete ? html`<${AnswerMeta} c=${m.complete} /><${Waterfall} timings=${m.complete.step_timings} />` : ""}
  </div>`;
}

export default function Playground({ params }) {
  const [agents, reloadAgents] = useAsync(() => api("GET", "/v1/agents?limit=200"), []);
  const [me, setMe] = useState(null);
  const [meError, setMeError] = useState(null);
  const [agentId, setAgentId] = useState(params.agent || "");
  const [conversationId, setConversationId] = useState(uuid);
  const [customerId, setCustomerId] = useState(() => {
    const u = session.user();
    return "portal-" + (u && u.id ? u.id : "playground");
  });
  const [messages, setMessages] = useState([]);
  const [text, setText] = useState("");
  const [streaming, setStreaming] = useState(false);
  const abort = useRef(null);
  const log = useRef(null);
  const input = useRef(null);

  useEffect(() => { whoami().then(setMe, setMeError); }, []);
  // Preselect the agent of the route, else the first one.
  useEffect(() => {
    const list = agents.data && agents.data.agents;
    if (!list || !list.length) return;
    if (!agentId || !list.some((a) => a.id === agentId)) setAgentId(params.agent && list.some((a) => a.id === params.agent) ? params.agent : list[0].id);
  }, [agents.data]);
  useEffect(() => () => abort.current && abort.current.abort(), []);
  // Keep the newest text in view unless the reader scrolled up.
  useEffect(() => {
    const el = log.current;
    if (el && el.scrollHeight - el.scrollTop - el.clientHeight < 120) el.scrollTop = el.scrollHeight;
  }, [messages]);

  // Update the answer of one turn (nothing, if the conversation was cleared meanwhile).
  const patchTurn = (turn, fn) => setMessages((ms) => {
    if (!ms.length || ms[ms.length - 1].turn !== turn) return ms;
    const copy = ms.slice();
    const last = Object.assign({}, copy[copy.length - 1]);
    last.parts = last.parts.slice();
    fn(last);
    copy[copy.length - 1] = last;
    return copy;
  });

  const handler = (turn) => (name, data) => {
    const patchLast = (fn) => patchTurn(turn, fn);
    if (name === "text_delta") {
      patchLast((m) => {
        const p = m.parts[m.parts.length - 1];
        if (p && p.kind === "text") m.parts[m.parts.length - 1] = { kind: "text", text: p.text + (data.delta || "") };
        else m.parts.push({ kind: "text", text: data.delta || "" });
      });
    } else if (name === "tool_call") {
      patchLast((m) => m.parts.push({ kind: "tool", call_id: data.call_id, name: data.name, arguments: data.arguments }));
    } else if (name === "tool_result") {
      patchLast((m) => {
        for (let i = m.parts.length - 1; i >= 0; i--) {
          const p = m.parts[i];
          if (p.kind === "tool" && !p.result && (data.call_id ? p.call_id === data.call_id : p.name === data.name)) {
            m.parts[i] = Object.assign({}, p, { result: data });
            return;
          }
        }
        m.parts.push({ kind: "tool", name: data.name, arguments: null, result: data });
      });
    } else if (name === "usage") {
      patchLast((m) => { m.usage = data; });
    } else if (name === "complete") {
      patchLast((m) => {
        m.complete = data;
        m.done = true;
        if (!m.parts.some((p) => p.kind === "text") && data.reply) m.parts.push({ kind: "text", text: data.reply });
      });
    } else if (name === "error") {
      patchLast((m) => { m.error = new ApiError(0, data.code || "ERROR", data.message || "The answer failed", null); m.done = true; });
    }
  };

  const send = async (e) => {
    if (e) e.preventDefault();
    const message = text.trim();
    if (!message || streaming || !agentId || !me) return;
    setText("");
    const turn = uuid();
    const patchLast = (fn) => patchTurn(turn, fn);
    setMessages((ms) => ms.concat([{ role: "user", text: message }, { role: "assistant", turn, parts: [], done: false }]));
    const ctrl = new AbortController();
    abort.current = ctrl;
    setStreaming(true);
    try {
      await streamPost("/v1/chat/stream", {
        company_id: me.company_id, agent_id: agentId, conversation_id: conversationId,
        customer_id: customerId.trim() || "portal-playground", message, channel: "web",
      }, handler(turn), ctrl.signal);
      patchLast((m) => {
        if (!m.done) { m.done = true; m.error = new ApiError(0, "STREAM_ENDED", "The stream ended before the answer was complete", null); }
      });
    } catch (err) {
      if (err && err.name === "AbortError") patchLast((m) => { m.done = true; m.stopped = true; });
      else patchLast((m) => { m.done = true; m.error = err; });
    } finally {
      abort.current = null;
      setStreaming(false);
      if (input.current) input.current.focus();
    }
  };

  const stop = () => abort.current && abort.current.abort();
  const newConversation = () => {
    stop();
    setMessages([]);
    setConversationId(uuid());
    if (input.current) input.current.focus();
  };
  const chooseAgent = (id) => {
    if (id === agentId) return;
    stop();
    setAgentId(id);
    setMessages([]);
    setConversationId(uuid());
    // Keep the choice in the address (a reload reopens it) without reloading the page.
    history.replaceState(null, "", "#/playground/" + encodeURIComponent(id));
  };
  const onKey = (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(e);
  };

  const list = agents.data && agents.data.agents;
  const usable = !!(list && list.length && me && agentId);
  useEffect(() => { if (usable) markReady("cortex-playground-ready"); }, [usable]);
  return html`<${Page} title="Playground" actions=${html`
      <button type="button" id="playground-new" onClick=${newConversation}>New conversation</button>`}>
    ${agents.error ? html`<${ErrorBox} error=${agents.error} onRetry=${reloadAgents} />` : ""}
    <${ErrorBox} error=${meError} />
    ${agents.loading && !list ? html`<${Loading} what="agents" />` : ""}
    ${list && !list.length ? html`<${Empty}>No agents yet. <${Link} to="/agents/new">Create an agent<//> to chat with it here.<//>` : ""}
    ${list && list.length ? html`
      <div class="card playground">
        <div class="row">
          <div class="field"><label for="playground-agent">Agent</label>
            <select id="playground-agent" value=${agentId} onChange=${(e) => chooseAgent(e.target.value)}>
              ${list.map((a) => html`<option value=${a.id} key=${a.id}>${a.name}</option>`)}
            </select></div>
          <div class="field"><label for="playground-customer">Customer id</label>
            <input id="playground-customer" value=${customerId} maxlength="256" onInput=${(e) => setCustomerId(e.target.value)} /></div>
        </div>
        <p class="hint">Conversation <code>${conversationId}</code>. Memory is kept per customer id; a new conversation starts an empty history.</p>
        <div class="chat-log" ref=${log} role="log" aria-label="Conversation" aria-busy=${streaming ? "true" : "false"}>
          ${messages.length ? messages.map((m, i) => html`<${Message} m=${m} key=${i} />`) : html`<p class="muted chat-empty">Send a message to start.</p>`}
        </div>
        <form class="composer" onSubmit=${send}>
          <label for="playground-input" class="sr-only">Message</label>
          <textarea id="playground-input" ref=${input} rows="2" maxlength="16000" placeholder="Message the agent (Enter sends, Shift+Enter for a new line)"
            value=${text} onInput=${(e) => setText(e.target.value)} onKeyDown=${onKey}></textarea>
          <div class="composer-actions">
            ${streaming ? html`<button type="button" id="playground-stop" class="danger" onClick=${stop}>Stop</button>` : ""}
            <button type="submit" id="playground-send" class="primary" disabled=${streaming || !text.trim() || !me || !agentId}>${streaming ? "Answering…" : "Send"}</button>
          </div>
        </form>
      </div>` : ""}
  <//>`;
}

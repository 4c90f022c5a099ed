// Usage: the plan, credits and this month's totals (GET /v1/billing), usage per day as a chart,
// and the node's routing and cache figures (GET /v1/metrics/dashboard, admins only).
//
// The API has no per-day usage endpoint: the daily chart adds up the agent runs of the recent
// threads (each run reports its tokens and cost), a bounded number of requests. Chat usage is
// in the month's totals but cannot be split by day.
import {
  html, Page, Async, ErrorBox, Loading, Table, Empty, Badge,
  useAsync, useWidth, fmtNumber, fmtMoney,
} from "../lib/ui.js";
import { api } from "../lib/api.js";

const DAYS = 30;
const MAX_THREADS = 40;

function dayKey(d) {
  const x = new Date(d);
  return x.getFullYear() + "-" + String(x.getMonth() + 1).padStart(2, "0") + "-" + String(x.getDate()).padStart(2, "0");
}

/** The last DAYS days (local dates), oldest first, each {date, input, output, cost, runs}. */
async function dailyFromRuns() {
  const since = new Date();
  since.setHours(0, 0, 0, 0);
  since.setDate(since.getDate() - (DAYS - 1));
  const days = [];
  const index = {};
  for (let i = 0; i < DAYS; i++) {
    const d = new Date(since);
    d.setDate(since.getDate() + i);
    const row = { date: dayKey(d), input: 0, output: 0, cost: 0, runs: 0 };
    index[row.date] = row;
    days.push(row);
  }
  const threads = await api("GET", "/v1/threads?limit=200");
  const recent = threads.threads.filter((t) => new Date(t.updated_at) >= since).slice(0, MAX_THREADS);
  const queue = recent.slice();
  const worker = async () => {
    while (queue.length) {
      const t = queue.shift();
      const r = await api("GET", "/v1/thread/" + encodeURIComponent(t.thread_id) + "/agent-runs?limit=200");
      for (const run of r.agent_runs) {
        const row = index[dayKey(run.started_at)];
        if (!row) continue;
        row.input += run.usage.input_tokens || 0;
        row.output += run.usage.output_tokens || 0;
        row.cost += run.usage.cost_usd || 0;
        row.runs += 1;
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  const more = threads.threads.filter((t) => new Date(t.updated_at) >= since).length > recent.length;
  return { days, threads: recent.length, partial: more };
}

/** A round axis maximum: 1, 2 or 5 times a power of ten, at least v. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function compact(n) {
  if (n >= 1e6) return fmtNumber(n / 1e6, 1) + "M";
  if (n >= 1e3) return fmtNumber(n / 1e3, 1) + "k";
  return fmtNumber(n, 0);
}

function money(n) {
  if (n === 0) return "$0";
  return "$" + (n >= 1 ? fmtNumber(n, 2) : fmtNumber(n, n >= 0.01 ? 3 : 5));
}

/** Tokens (stacked bars: in, out) and cost (a line) per day, with both axes labelled. */
export function UsageChart({ days }) {
  const [ref, width] = useWidth(640);
  const W = Math.max(width, 280);
  const H = 240;
  const m = { left: 44, right: 50, top: 26, bottom: 30 };
  const iw = W - m.left - m.right, ih = H - m.top - m.bottom;
  const maxTokens = niceMax(Math.max(0, ...days.map((d) => d.input + d.output)));
  const maxCost = niceMax(Math.max(0, ...days.map((d) => d.cost)));
  const step = iw / days.length;
  const bw = Math.max(2, step * 0.7);
  const y = (t) => m.top + ih - (t / maxTokens) * ih;
  const yc = (c) => m.top + ih - (c / maxCost) * ih;
  const labelEvery = Math.max(1, Math.ceil(44 / step));
  const totalT = days.reduce((n, d) => n + d.input + d.output, 0);
  const totalC = days.reduce((n, d) => n + d.cost, 0);
  const title = `Tokens and cost per day, ${days[0].date} to ${days[days.length - 1].date}: ${fmtNumber(totalT, 0)} tokens, ${money(totalC)}`;
  const ticks = [0, 0.5, 1];
  const line = days.map((d, i) => `${(m.left + step * i + step / 2).toFixed(1)},${yc(d.cost).toFixed(1)}`).join(" ");
  return html`<div class="chart-wrap" ref=${ref}>
    <svg id="usage-chart" class="chart" width=${W} height=${H} viewBox=${`0 0 ${W} ${H}`} role="img" aria-label=${title}>
      <title>${title}</title>
      <g class="legend">
        <rect class="in" x=${m.left} y="6" width="10" height="10" /><text x=${m.left + 14} y="15">input tokens</text>
        <rect class="out" x=${m.left + 100} y="6" width="10" height="10" /><text x=${m.left + 114} y="15">output tokens</text>
        <line class="cost" x1=${m.left + 212} x2=${m.left + 226} y1="11" y2="11" /><text x=${m.left + 230} y="15">cost</text>
      </g>
      ${ticks.map((f) => html`<g class="grid" key=${f}>
        <line x1=${m.left} x2=${W - m.right} y1=${y(f * maxTokens)} y2=${y(f * maxTokens)} />
        <text class="axis-label" x=${m.left - 4} y=${y(f * maxTokens) + 4} text-anchor="end">${compact(f * maxTokens)}</text>
        <text class="axis-label" x=${W - m.right + 4} y=${y(f * maxTokens) + 4}>${money(f * maxCost)}</text>
      </g>`)}
      ${days.map((d, i) => {
        const x = m.left + step * i + (step - bw) / 2;
        return html`<g class="day" key=${d.date}>
          <title>${d.date}: ${fmtNumber(d.input, 0)} in, ${fmtNumber(d.output, 0)} out, ${money(d.cost)}</title>
          ${d.input ? html`<rect class="in" x=${x} y=${y(d.input)} width=${bw} height=${m.top + ih - y(d.input)} />` : ""}
          ${d.output ? html`<rect class="out" x=${x} y=${y(d.input + d.output)} width=${bw} height=${y(d.input) - y(d.input + d.output)} />` : ""}
          ${i % labelEvery === 0 ? html`<text class="axis-label" x=${m.left + step * i + step / 2} y=${H - m.bottom + 16} text-anchor="middle">${d.date.slice(5)}</text>` : ""}
        </g>`;
      })}
      <polyline class="cost" points=${line} />
      <line class="axis" x1=${m.left} x2=${W - m.right} y1=${m.top + ih} y2=${m.top + ih} />
      <text class="axis-title" x="2" y=${m.top - 8}>tokens</text>
      <text class="axis-title" x=${W - 2} y=${m.top - 8} text-anchor="end">USD</text>
    </svg>
  </div>`;
}

/** Requests per routing tier as horizontal bars. */
function TierChart({ byTier }) {
  const [ref, width] = useWidth(480);
  const rows = Object.entries(byTier || {}).sort((a, b) => b[1] - a[1]);
  const total = rows.reduce((n, [, c]) => n + c, 0);
  const W = Math.max(width, 240), rowH = 24, labelW = 72, H = rows.length * rowH + 4;
  const max = Math.max(1, ...rows.map(([, c]) => c));
  const summary = "Requests by routing tier: " + rows.map(([t, c]) => `${t} ${c}`).join(", ");
  return html`<div class="chart-wrap" ref=${ref}>
    <svg id="routing-chart" class="chart" width=${W} height=${H} viewBox=${`0 0 ${W} ${H}`} role="img" aria-label=${summary}>
      <title>${summary}</title>
      ${rows.map(([tier, count], i) => {
        const bw = Math.max(2, ((W - labelW - 90) * count) / max);
        return html`<g key=${tier}>
          <text class="axis-label" x=${labelW - 6} y=${i * rowH + 16} text-anchor="end">${tier}</text>
          <rect class="tier" x=${labelW} y=${i * rowH + 4} width=${bw} height="16" rx="2" />
          <text class="axis-label" x=${labelW + bw + 6} y=${i * rowH + 16}>${fmtNumber(count, 0)} (${fmtNumber(total ? (100 * count) / total : 0, 1)}%)</text>
        </g>`;
      })}
    </svg>
  </div>`;
}

function Stat({ label, value, id }) {
  return html`<div class="stat" id=${id}><div class="value">${value}</div><div class="label">${label}</div></div>`;
}

function Billing({ b }) {
  const l = b.limits || {};
  return html`<div class="grid">
    <${Stat} id="usage-plan" label="Plan" value=${html`<span class="plan">${b.plan}</span>`} />
    <${Stat} id="usage-credits" label="Credits" value=${b.credits_usd == null ? "Unmetered" : fmtMoney(b.credits_usd)} />
    <${Stat} label=${"Cost since " + new Date(b.usage.period_start).toLocaleDateString()} value=${fmtMoney(b.usage.cost_usd)} />
    <${Stat} label="Tokens in / out this month" value=${compact(b.usage.input_tokens) + " / " + compact(b.usage.output_tokens)} />
    <${Stat} label="Runs running / allowed at once" value=${`${b.running_runs} / ${l.concurrent_runs}`} />
    <${Stat} label="Threads / limit" value=${`${b.thread_count} / ${l.threads == null ? "unlimited" : l.threads}`} />
  </div>
  <p class="hint">Model tiers on this plan: ${(l.tiers || []).map((t) => html`<${Badge} key=${t}>${t}<//> `)}</p>`;
}

function Dashboard({ d }) {
  const c = d.config_loading || {}, r = d.model_routing || {}, a = d.agent_compilation || {};
  const tiers = Object.entries(r.by_tier || {});
  return html`
    <div class="grid">
      <${Stat} id="usage-cache-hit" label=${`Config cache hit rate (${fmtNumber(c.cache_hits, 0)} of ${fmtNumber(c.total_loads, 0)} loads)`} value=${fmtNumber(c.cache_hit_rate, 1) + "%"} />
      <${Stat} label="Average config load" value=${fmtNumber(c.avg_duration_ms, 1) + " ms"} />
      <${Stat} label="Average model latency" value=${fmtNumber(a.avg_llm_latency_ms, 1) + " ms"} />
      <${Stat} label="Answers with tool calls" value=${fmtNumber(a.tool_call_rate, 1) + "%"} />
      <${Stat} label="Average tool rounds" value=${fmtNumber(a.avg_tool_rounds, 1)} />
      <${Stat} label="Requests routed" value=${fmtNumber(r.total_routed, 0)} />
    </div>
    <h3>Routing by tier</h3>
    ${tiers.length ? html`<${TierChart} byTier=${r.by_tier} />
      <${Table} rowKey=${(row) => row[0]} rows=${tiers.sort((x, y) => y[1] - x[1])} columns=${[
        { title: "Tier", render: (row) => row[0] },
        { title: "Requests", class: "num", render: (row) => fmtNumber(row[1], 0) },
        { title: "Share", class: "num", render: (row) => fmtNumber(r.total_routed ? (100 * row[1]) / r.total_routed : 0, 1) + "%" },
      ]} />` : html`<${Empty}>No request has been routed to a model since this server started.<//>`}`;
}

export default function Usage() {
  const [billing, reloadBilling] = useAsync(() => api("GET", "/v1/billing"), []);
  const [daily, reloadDaily] = useAsync(dailyFromRuns, []);
  const [dash, reloadDash] = useAsync(() => api("GET", "/v1/metrics/dashboard"), []);
  const refresh = () => { reloadBilling(); reloadDaily(); reloadDash(); };

  return html`<${Page} title="Usage" actions=${html`<button type="button" id="usage-refresh" onClick=${refresh}>Refresh</button>`}>
    <section aria-labelledby="usage-billing"><h2 id="usage-billing">Plan and credits</h2>
      <${Async} state=${billing} reload=${reloadBilling}>${(b) => html`<${Billing} b=${b} />`}<//>
    </section>

    <section aria-labelledby="usage-daily"><h2 id="usage-daily">Usage per day</h2>
      <p class="hint">Tokens and cost of agent runs over the last ${DAYS} days. Chat usage counts in the month's totals above; the API does not break it down by day.</p>
      <${Async} state=${daily} reload=${reloadDaily}>${(d) => html`
        <div class="card"><${UsageChart} days=${d.days} /></div>
        ${d.partial ? html`<p class="hint">From the ${d.threads} most recently active threads.</p>` : ""}
        <${Table} rowKey=${(row) => row.date} empty=${`No agent runs in the last ${DAYS} days.`}
          rows=${d.days.filter((row) => row.runs)}
          columns=${[
            { title: "Date", render: (row) => row.date },
            { title: "Runs", class: "num", render: (row) => fmtNumber(row.runs, 0) },
            { title: "Input tokens", class: "num", render: (row) => fmtNumber(row.input, 0) },
            { title: "Output tokens", class: "num", render: (row) => fmtNumber(row.output, 0) },
            { title: "Cost", class: "num", render: (row) => fmtMoney(row.cost) },
          ]} />`}<//>
    </section>

    <section aria-labelledby="usage-node"><h2 id="usage-node">Cache and routing</h2>
      <p class="hint">This server node's figures since it started (every company's traffic): company admins only.</p>
      ${dash.error ? html`<${ErrorBox} error=${dash.error} onRetry=${reloadDash} />`
        : dash.loading && !dash.data ? html`<${Loading} what="metrics" />`
        : dash.data ? html`<${Dashboard} d=${dash.data} />` : ""}
    </section>
  <//>`;
}


"use strict";
// The dashboard: one EventSource of table snapshots; everything shown comes from the tables,
// so any replica serves the same picture. No framework, no build step, no CDN.

const $ = (id) => document.getElementById(id);
const RECENT_SHOWN = 5;
const PAGE = Number(new URLSearchParams(location.search).get("page")) || 20;  // ?page=N: rows per page
const TAG_CHARS = 12;  // the same tail of the call id the logs show in their [tags]
let snapshot = null;
let source = null;
let pages = [""];  // page tokens walked so far (for "Newest")
let pageShown = 0;  // the "All calls" page on screen
let listedAt = "";  // calls started / ended when that list was loaded
let pageCalls = [];  // the "All calls" page as loaded (live calls are shown as the feed has them now)

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function maskPhone(phone) {
  if (!phone) return "unknown";
  if (phone.includes("•")) return phone;  // the API masks numbers unless SHOW_CALLER_NUMBERS is set
  const digits = phone.replace(/\D/g, "");
  if (!digits) return phone;
  if (digits.length < 7) return "•".repeat(digits.length);
  return "•".repeat(Math.min(digits.length - 4, 7)) + digits.slice(-4);
}

function fmtDuration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

function fmtMs(v) { return v === null || v === undefined || v === 0 ? "–" : `${Math.round(v)} ms`; }
function fmtTime(ms) {
  return new Date(ms).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
function fmtUsd(v, digits = 2) {
  if (v === null || v === undefined) return "–";
  if (v > 0 && v < 0.01) return "<$0.01";
  return `$${v.toFixed(digits)}`;
}
function plural(n, noun) { return `${n} ${noun}${n === 1 ? "" : "s"}`; }
function shortId(callId) { return callId.slice(-TAG_CHARS); }

function callIdButton(callId) {
  // Copyable: the full id goes to the clipboard; the short form is what the logs' tags show.
  const b = el("button", { type: "button", class: "callid", title: `${callId} (click to copy)`, text: shortId(callId) });
  b.addEventListener("click", () => navigator.clipboard?.writeText(callId));
  return b;
}

function setConn(state, text) {
  $("conn-dot").className = "dot " + state;
  $("conn-text").textContent = text;
}

function renderStats(s, replica) {
  $("s-active").textContent = s.activeCalls;
  $("pulse").classList.toggle("on", s.activeCalls > 0);
  $("s-total").textContent = s.totalCalls;
  $("s-completed").textContent = s.completedCalls;
  $("s-failed").textContent = s.failedCalls;
  $("s-transferred").textContent = s.transferredCalls;
  $("s-tools").textContent = s.totalToolCalls;
  $("s-duration").textContent = fmtDuration(s.averageCallDuration);
  $("s-latency").textContent = fmtMs(s.averageLatencyMs);
  $("s-p95").textContent = s.p95LatencyMs ? `≤ ${Math.round(s.p95LatencyMs)} ms` : "–";
  $("s-cost-today").textContent = fmtUsd(s.costToday);
  $("s-cost-minute").textContent = fmtUsd(s.costPerCallMinute, 3);
  $("s-uptime").dataset.start = replica.startTime;
}

function renderActive(calls) {
  const list = $("active");
  list.replaceChildren(...calls.map((c) => el("li", { "data-call": c.callId },
    el("span", { class: "who", text: maskPhone(c.callerPhone) }),
    el("span", { class: "dur", "data-start": c.startTime, text: fmtDuration(Date.now() - c.startTime) }),
    el("span", { class: "sub", text:
      `${c.status} · ${c.messageCount} messages · tools: ${c.toolCalls.map((t) => t.name).join(", ") || "none"}` }),
  )));
  $("active-empty").hidden = calls.length > 0;
}

function renderTools(byType) {
  const entries = Object.entries(byType).sort((a, b) => b[1] - a[1]);
  const total = entries.reduce((n, [, v]) => n + v, 0);
  $("tools").replaceChildren(...entries.map(([name, count]) => {
    const pct = total ? Math.round((100 * count) / total) : 0;
    const fill = el("div", { class: "fill" });
    fill.style.width = `${pct}%`;
    return el("li", { "data-tool": name },
      el("span", { text: name }), el("div", { class: "track" }, fill), el("span", { class: "pct", text: `${count} · ${pct}%` }));
  }));
  $("tools-empty").hidden = entries.length > 0;
}

function callRow(c) {
  const button = el("button", { type: "button", "data-transcript": c.callId, text: "View Transcript" });
  button.addEventListener("click", () => openTranscript(c.callId, button));
  const duration = c.status === "active" ? Date.now() - c.startTime : c.duration ?? Date.now() - c.startTime;
  return el("tr", { class: `row-${c.status}`, "data-call": c.callId },
    el("td", {}, callIdButton(c.callId)),
    el("td", { text: maskPhone(c.callerPhone) }),
    el("td", {}, el("span", { class: `badge s-${c.status}`, text: c.status })),
    el("td", { text: fmtTime(c.startTime) }),
    el("td", { text: fmtDuration(duration) }),
    el("td", { class: "num", text: String(c.toolCalls.length) }),
    el("td", { class: "num", "data-cost": "", text: fmtUsd(c.cost ?? 0, 3) }),
    el("td", { class: `sent-${c.sentiment}`, text: c.sentiment }),
    el("td", { class: "summary", text: c.summary || (c.status === "active" ? "In progress…" : "") }),
    el("td", {}, button));
}

function renderRecent(calls) {
  const rows = calls.slice(0, RECENT_SHOWN).map(callRow);
  $("recent").replaceChildren(...rows);
  $("recent-empty").hidden = rows.length > 0;
}

let pageRequest = 0;  // only the newest request's answer is shown (a live refresh may race a click)

async function loadPage(index) {
  const mine = ++pageRequest;
  pageShown = index;
  const status = $("status-filter").value;
  const token = pages[index] || "";
  const params = new URLSearchParams({ limit: String(PAGE) });
  if (status) params.set("status", status);
  if (token) params.set("next", token);
  const resp = await fetch(`/api/calls?${params}`);
  if (mine !== pageRequest) return;
  if (!resp.ok) { $("page-info").textContent = "could not load calls"; return; }
  const doc = await resp.json();
  if (mine !== pageRequest) return;
  pages = pages.slice(0, index + 1);
  if (doc.next) pages.push(doc.next);
  pageCalls = doc.calls;
  renderPage();
  $("all-empty").hidden = doc.calls.length > 0;
  $("page-next").disabled = !doc.next;
  $("page-next").dataset.index = String(index + 1);
  $("page-info").textContent = `page ${index + 1}${doc.next ? "" : " (last)"}`;
}

function renderPage() {
  // A live call's row in the list is as it started; the feed carries its state now.
  const live = new Map((snapshot ? [...snapshot.active, ...snapshot.recent] : [])
    .filter((c) => c.status === "active").map((c) => [c.callId, c]));
  $("all-calls").replaceChildren(...pageCalls.map((c) => (c.status === "active" && live.get(c.callId)) || c).map(callRow));
}

function renderLatency(points) {
  const svg = $("latency");
  const ns = "http://www.w3.org/2000/svg";
  // Draw in the element's own pixel width so points stay round and labels unstretched.
  const W = Math.max(300, Math.round(svg.getBoundingClientRect().width)), H = 160, pad = 28;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const nodes = [];
  const maxV = Math.max(500, ...points.map((p) => p.p50));
  for (const frac of [0, 0.25, 0.5, 0.75, 1]) {
    const y = H - pad - frac * (H - 2 * pad);
    const line = document.createElementNS(ns, "line");
    Object.entries({ x1: pad, x2: W - 4, y1: y, y2: y, class: "grid" }).forEach(([k, v]) => line.setAttribute(k, v));
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 2); label.setAttribute("y", y + 3);
    label.textContent = `${Math.round(frac * maxV)}${frac === 1 ? " ms" : ""}`;
    nodes.push(line, label);
  }
  if (points.length) {  // the time axis: first and last call start
    // One call: one label under its point (two labels of the same time would overlap).
    const ends = points.length === 1 ? [[0, "middle"]] : [[0, "start"], [points.length - 1, "end"]];
    for (const [i, anchor] of ends) {
      const label = document.createElementNS(ns, "text");
      const x = anchor === "middle" ? pad + 0.5 * (W - pad - 8) : i === 0 ? pad : W - 4;
      label.setAttribute("x", x); label.setAttribute("y", H - 6);
      label.setAttribute("text-anchor", anchor); label.setAttribute("class", "axis");
      label.textContent = new Date(points[i].t).toLocaleTimeString();
      nodes.push(label);
    }
  }
  if (points.length) {
    const xs = points.map((_, i) => pad + (points.length === 1 ? 0.5 : i / (points.length - 1)) * (W - pad - 8));
    const ys = points.map((p) => H - pad - (p.p50 / maxV) * (H - 2 * pad));
    const poly = document.createElementNS(ns, "polyline");
    poly.setAttribute("class", "line");
    poly.setAttribute("points", xs.map((x, i) => `${x},${ys[i]}`).join(" "));
    nodes.push(poly);
    xs.forEach((x, i) => {
      const c = document.createElementNS(ns, "circle");
      c.setAttribute("cx", x); c.setAttribute("cy", ys[i]); c.setAttribute("r", 3); c.setAttribute("class", "pt");
      const title = document.createElementNS(ns, "title");
      title.textContent = `${Math.round(points[i].p50)} ms (${fmtTime(points[i].t)})`;
      c.append(title);
      nodes.push(c);
    });
  }
  svg.replaceChildren(...nodes);
}

function render(snap) {
  if (snapshot === null) setConn("on", "live");  // live once there is something to show
  snapshot = snap;
  renderStats(snap.stats, snap.replica);
  renderActive(snap.active);
  renderTools(snap.stats.toolCallsByType);
  renderRecent(snap.recent);
  renderLatency(snap.latencySeries);
  // The newest page follows the calls as they start and end; an older page stays put.
  const counts = `${snap.stats.totalCalls}/${snap.stats.activeCalls}`;
  if (pageShown === 0 && counts !== listedAt) { listedAt = counts; loadPage(0); }
  else if (pageCalls.some((c) => c.status === "active")) renderPage();
  tick();
}

function tick() {
  for (const node of document.querySelectorAll("[data-start]")) {
    const start = Number(node.dataset.start);
    if (node.id === "s-uptime") node.textContent = fmtDuration(Date.now() - start);
    else node.textContent = fmtDuration(Date.now() - start);
  }
}

async function openTranscript(callId, opener) {
  const dialog = $("transcript");
  const [callResp, turnsResp] = await Promise.all([
    fetch(`/api/calls/${encodeURIComponent(callId)}`), fetch(`/api/calls/${encodeURIComponent(callId)}/transcript`)]);
  if (!callResp.ok || !turnsResp.ok) return;
  const call = await callResp.json();
  const { transcript } = await turnsResp.json();
  const items = [
    ...transcript.map((t) => ({ t: t.timestamp, kind: t.speaker, turn: t })),
    ...call.toolCalls.map((tc) => ({ t: tc.timestamp, kind: "tool", tool: tc })),
  ].sort((a, b) => a.t - b.t);
  $("t-title").textContent = `Transcript · ${maskPhone(call.callerPhone)} · ${shortId(call.callId)}`;
  $("t-meta").textContent = `${fmtTime(call.startTime)} · ${call.status}${call.endReason ? " (" + call.endReason + ")" : ""} · ` +
    `${fmtDuration(call.duration ?? Date.now() - call.startTime)} · ${plural(call.bargeInEvents, "barge-in")} · ` +
    `sentiment ${call.sentiment} · ${fmtUsd(call.cost ?? 0, 3)} (${(call.usage?.totalTokens ?? 0).toLocaleString()} tokens)` +
    (call.profile ? ` · profile ${call.profile} v${call.profileVersion}` : "");
  $("t-turns").replaceChildren(...items.map((item) => {
    if (item.kind === "tool") {
      const tc = item.tool;
      return el("li", { class: "tool" }, el("span", { class: "who", text: "tool" }),
        `${tc.name} · ${tc.success ? "ok" : "failed: " + (tc.error || "error")} · ${tc.duration.toFixed(1)} ms`);
    }
    const t = item.turn;
    const li = el("li", { class: t.speaker }, el("span", { class: "who", text: t.speaker }), t.text);
    if (t.interrupted) li.append(el("span", { class: "cut", text: "⤫ interrupted (barge-in)" }));
    return li;
  }));
  dialog.returnFocusTo = opener;
  dialog.showModal();
  $("t-turns").focus();
}

function connect() {
  if (source) source.close();
  source = new EventSource("/api/events");
  source.addEventListener("open", () => { if (snapshot === null) setConn("", "connecting…"); else setConn("on", "live"); });
  source.addEventListener("snapshot", (e) => render(JSON.parse(e.data)));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      // A non-stream answer (e.g. 401 after the cookie expired) ends the stream for good:
      // find out why, then start over.
      setConn("off", "disconnected");
      setTimeout(start, 2000);
    } else {
      setConn("", "reconnecting…");
    }
  });
}

async function start() {
  let resp;
  try {
    resp = await fetch("/api/stats");
  } catch {
    setConn("off", "server unreachable, retrying");
    setTimeout(start, 3000);
    return;
  }
  if (resp.status === 401) {
    setConn("off", "signed out");
    $("main").hidden = true;
    $("signin").hidden = false;
    $("token").focus();
    return;
  }
  $("signin").hidden = true;
  $("main").hidden = false;
  connect();
  loadPage(0);
  loadProfiles();
}

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const resp = await fetch("/api/session", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: $("token").value }),
  });
  if (resp.ok) { $("token").value = ""; $("signin-error").textContent = ""; start(); }
  else $("signin-error").textContent = "That token was not accepted.";
});
// --- agent profiles -------------------------------------------------------------------------
const PROFILE_META = ["name", "version", "updatedBy", "updatedAt", "builtIn"];
let editing = null;

async function loadProfiles() {
  const [pResp, rResp] = await Promise.all([fetch("/api/profiles"), fetch("/api/routes")]);
  if (!pResp.ok || !rResp.ok) return;
  const { profiles } = await pResp.json();
  const { routes } = await rResp.json();
  $("profile-list").replaceChildren(...profiles.map((p) => {
    const numbers = routes.filter((r) => r.profile === p.name).map((r) => r.number).join(", ") || "–";
    const open = el("button", { type: "button", "data-profile": p.name, text: "Edit" });
    open.addEventListener("click", () => openProfile(p.name));
    return el("tr", { "data-profile": p.name },
      el("td", { text: p.name + (p.builtIn ? " (built in)" : "") }), el("td", { class: "num", text: String(p.version) }),
      el("td", { text: p.voice }), el("td", { class: "num", text: String(p.tools.length) }),
      el("td", { text: numbers }), el("td", {}, open));
  }));
}

async function openProfile(name) {
  const resp = await fetch(`/api/profiles/${encodeURIComponent(name)}`);
  if (!resp.ok) return;
  const doc = await resp.json();
  editing = name;
  const body = Object.fromEntries(Object.entries(doc).filter(([k]) => !PROFILE_META.includes(k)));
  $("editor").hidden = false;
  $("editor-title").textContent = `Profile ${name}` + (doc.version ? ` · version ${doc.version}` : " · built in");
  $("profile-json").value = JSON.stringify(body, null, 2);
  $("profile-error").textContent = "";
  $("profile-status").textContent = "";
  const hist = await fetch(`/api/profiles/${encodeURIComponent(name)}/versions`);
  const versions = hist.ok ? (await hist.json()).versions : [];
  $("profile-history").replaceChildren(...versions.map((v) =>
    el("li", { text: `version ${v.version} · ${fmtTime(v.updatedAt)} · ${v.updatedBy}` })));
}

async function saveProfile() {
  let body;
  try { body = JSON.parse($("profile-json").value); } catch {
    $("profile-error").textContent = "body: not valid JSON"; return;
  }
  const resp = await fetch(`/api/profiles/${encodeURIComponent(editing)}`, {
    method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const doc = await resp.json();
  if (!resp.ok) { $("profile-error").textContent = doc.error; $("profile-error").dataset.field = doc.field || ""; return; }
  $("profile-error").textContent = "";
  await openProfile(editing);
  $("profile-status").textContent = `saved as version ${doc.version}`;
  loadProfiles();
}

$("profile-save").addEventListener("click", saveProfile);
$("new-profile").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("new-name").value;
  const base = await (await fetch("/api/profiles/default")).json();
  editing = name;
  $("editor").hidden = false;
  $("editor-title").textContent = `Profile ${name} · new`;
  $("profile-json").value = JSON.stringify(Object.fromEntries(
    Object.entries(base).filter(([k]) => !PROFILE_META.includes(k))), null, 2);
  $("profile-history").replaceChildren();
});

$("status-filter").addEventListener("change", () => { pages = [""]; loadPage(0); });
$("page-first").addEventListener("click", () => loadPage(0));
$("page-next").addEventListener("click", () => loadPage(Number($("page-next").dataset.index || "1")));
$("transcript").addEventListener("close", () => { $("transcript").returnFocusTo?.focus(); });
setInterval(tick, 1000);
start();

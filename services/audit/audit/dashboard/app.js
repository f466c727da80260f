// The operations dashboard: hash-routed pages over the public APIs of audit, custody and registry.
//   #/                      overview: unresolved flags by severity and rule, the flag queue, the live feed
//   #/flags?status=&...     flags with filters;  #/flags/<id>  one flag
//   #/lots?mineral=&...     lots;                #/lots/<id>   a lot: details, risk, trace graph, flags, history
//   #/participants?kind=&.. participants;        #/participants/<id>  kind, country, certifications, flags, lots

import {
  ApiError, all, audit, clearToken, config, custody, getToken, loadConfig, participant, registry, setToken,
} from "./api.js";
import {
  EVENT_TYPES, KINDS, RULES, SEVERITIES, clear, countryName, debounce, emptyRow, fields, fmtClock, fmtDate, fmtMass,
  fmtTime, fmtTimeShort, h, ratingBadge, ruleLabel, severityBadge, shortId, statusBadge, timeEl, title,
} from "./dom.js";
import { buildModel, graphTable, renderGraph } from "./graph.js";
import { LiveStream } from "./stream.js";

const RANK = { critical: 5, high: 4, medium: 3, low: 2, info: 1, none: 0 };
const FEED_MAX = 200;
const GRAPH_MAX_RISK_LOOKUPS = 80;

const view = document.getElementById("view");
const state = {
  me: null,
  stream: null,
  streamState: "stopped",
  everLive: false,
  feed: [],
  seed: [], // the latest flags when the stream (re)connected, shown under the live items
  seq: 0,
  listeners: new Set(), // (item) => void for each live item; item.event "flag" | "custody" | "resync"
  route: { gen: 0, cleanups: [] },
};

// --- small shared pieces ----------------------------------------------------------------------------------------

function announce(text, kind = "info") {
  const box = document.getElementById("toasts");
  const el = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  box.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 9000 : 5000);
}

function errorText(err) {
  if (err instanceof ApiError) {
    if (err.status === 404) return err.problem?.detail || "Not found, or not visible with this token.";
    return err.message;
  }
  return String(err?.message || err);
}

function errorPanel(err, what) {
  return h("div", { class: "panel error-panel", role: "alert" },
    h("h2", {}, `Could not load ${what}`), h("p", {}, errorText(err)));
}

function who(id, { link = true } = {}) {
  // A participant's name from the registry, filled in when it arrives; the id until then.
  if (!id) return "—";
  if (id === "operator") return h("span", { class: "who" }, "Operator");
  const el = link
    ? h("a", { class: "who", href: `#/participants/${encodeURIComponent(id)}`, title: id, dataset: { participantId: id } }, shortId(id))
    : h("span", { class: "who", title: id, dataset: { participantId: id } }, shortId(id));
  participant(id).then((p) => { if (p) el.textContent = p.name; });
  return el;
}

function withheldMark(what = "this participant") {
  // A participant the reader may not know (its disclosure policy, and how they stand to each other): the API sent
  // null and named the field in the object's `withheld` list.
  return h("span", { class: "who withheld muted", title: `Withheld: ${what}'s identity is not disclosed to you`, dataset: { withheld: "true" } }, "withheld");
}

function lotLink(id) {
  return id ? h("a", { class: "mono nowrap", href: `#/lots/${encodeURIComponent(id)}` }, id) : "—";
}

function section(titleText, { id, actions, cls = "" } = {}, ...body) {
  const headingId = id ? `${id}-title` : undefined;
  return h("section", { class: `panel ${cls}`, id, "aria-labelledby": headingId },
    h("header", { class: "panel-head" }, h("h2", { id: headingId }, titleText), actions ? h("div", { class: "panel-actions" }, actions) : null),
    h("div", { class: "panel-body" }, ...body));
}

function pageHeader(text, sub, ...extra) {
  return h("div", { class: "page-head" },
    h("div", {}, h("h1", { tabindex: "-1" }, text, ...extra), sub ? h("p", { class: "sub" }, sub) : null));
}

function table(columns, rows, { caption, cls = "" } = {}) {
  return h("div", { class: "table-wrap" }, h("table", { class: `data ${cls}` },
    caption ? h("caption", { class: "visually-hidden" }, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows : emptyRow(columns.length, "Nothing here."))));
}

function onLive(ctx, fn) {
  state.listeners.add(fn);
  ctx.cleanups.push(() => state.listeners.delete(fn));
}

// --- flag actions -----------------------------------------------------------------------------------------------

const dialog = document.getElementById("resolve-dialog");

function askResolveNote(flag) {
  const form = dialog.querySelector("form");
  const note = dialog.querySelector("#resolve-note");
  dialog.querySelector("#resolve-flag-summary").textContent = `${ruleLabel(flag.rule)} — ${flag.summary || ""}`;
  note.value = "";
  return new Promise((resolve) => {
    const onClose = () => {
      dialog.removeEventListener("close", onClose);
      resolve(dialog.returnValue === "resolve" ? note.value.trim() : null);
    };
    dialog.addEventListener("close", onClose);
    form.onsubmit = (ev) => {
      if (ev.submitter?.value === "resolve" && !note.value.trim()) {
        ev.preventDefault();
        note.focus();
      }
    };
    dialog.showModal();
    note.focus();
  });
}

/** The decisions this token may take on a flag (separation of duties, docs/api.md): a participant acknowledges
 * for itself (it must hold a lot the flag affects: the API says so otherwise), a compliance officer resolves; the
 * shared operator token decides nothing. `onChange(flag)` gets the updated flag from the API. */
function flagActions(flag, onChange) {
  const box = h("div", { class: "actions" });
  const run = async (btn, action) => {
    let body = {};
    if (action === "resolve") {
      const note = await askResolveNote(flag);
      if (!note) return;
      body = { note };
    }
    btn.disabled = true;
    btn.setAttribute("aria-busy", "true");
    try {
      const updated = await audit.post(`/flags/${encodeURIComponent(flag.id)}/${action}`, body);
      announce(`${ruleLabel(updated.rule)} flag ${action === "acknowledge" ? "acknowledged" : updated.status}.`, "ok");
      onChange(updated);
    } catch (err) {
      announce(`Could not ${action} the flag: ${errorText(err)}`, "error");
      btn.disabled = false;
      if (err instanceof ApiError && err.status === 409) {
        try { onChange(await audit.get(`/flags/${encodeURIComponent(flag.id)}`)); } catch { /* keep the row */ }
      }
    } finally {
      btn.removeAttribute("aria-busy");
    }
  };
  const kind = state.me?.kind;
  const isOfficer = kind === "officer";
  const mine = (flag.acknowledgements || []).some((a) => a.participant_id === state.me?.subject);
  if (flag.status === "open" && kind && kind !== "operator" && !isOfficer && !mine) {
    const ack = h("button", { type: "button", class: "btn btn-small", dataset: { action: "acknowledge" }, "aria-label": `Acknowledge ${ruleLabel(flag.rule)} flag on ${flag.lot_id}` }, "Acknowledge");
    ack.addEventListener("click", () => run(ack, "acknowledge"));
    box.append(ack);
  }
  if (mine) box.append(h("span", { class: "muted small" }, "Acknowledged by you"));
  if (flag.status !== "resolved" && isOfficer) {
    const res = h("button", { type: "button", class: "btn btn-small btn-primary", dataset: { action: "resolve" }, "aria-label": `Resolve ${ruleLabel(flag.rule)} flag on ${flag.lot_id}` }, "Resolve…");
    res.addEventListener("click", () => run(res, "resolve"));
    box.append(res);
  }
  if (flag.status === "withdrawn") box.append(h("span", { class: "muted small", title: "Reference data received since shows the rule does not hold (evidence: cleared_by)" }, "Withdrawn: the rule no longer holds"));
  if (flag.status === "resolved") box.append(h("span", { class: "muted small" }, "Closed"));
  else if (kind === "operator") box.append(h("span", { class: "muted small" }, "Resolved by compliance officers"));
  return box;
}

/** A table row for a flag, which redraws itself when it changes. */
function flagRow(flag, { showLot = true, extra = null, onChange = null, compact = false } = {}) {
  // compact: the lot and the time go under the summary (the overview's narrower queue).
  const render = (f) => {
    const tr = h("tr", { dataset: { flagId: f.id, status: f.status, rule: f.rule, severity: f.severity } },
      h("td", {}, severityBadge(f.severity)),
      h("td", {}, h("a", { href: `#/flags/${encodeURIComponent(f.id)}`, class: "strong" }, ruleLabel(f.rule)),
        h("div", { class: "summary" }, f.summary || ""),
        compact ? h("div", { class: "meta" }, lotLink(f.lot_id), " · ", timeEl(f.raised_at)) : null),
      showLot && !compact ? h("td", {}, lotLink(f.lot_id)) : null,
      extra ? h("td", {}, extra(f)) : null,
      compact ? null : h("td", { class: "nowrap" }, timeEl(f.raised_at, { short: true })),
      h("td", { class: "status-cell" }, statusBadge(f.status)),
      h("td", {}, flagActions(f, (updated) => {
        const merged = { ...f, ...updated };
        const next = render(merged);
        tr.replaceWith(next);
        if (onChange) onChange(merged, next);
      })));
    return tr;
  };
  return render(flag);
}

function flagHeaders({ showLot = true, extra = null, compact = false } = {}) {
  if (compact) return ["Severity", "Flag", "Status", "Actions"];
  return ["Severity", "Rule and summary", showLot ? "Lot" : null, extra, "Raised (UTC)", "Status", "Actions"].filter(Boolean);
}

// --- the live stream --------------------------------------------------------------------------------------------

const connEl = document.getElementById("conn-state");

function setStreamState(st, info = {}) {
  state.streamState = st;
  const text = {
    stopped: "Live feed off",
    connecting: "Connecting…",
    live: "Live",
    reconnecting: `Reconnecting in ${Math.ceil((info.delayMs || 0) / 1000)} s`,
    unauthorized: "Token refused",
  }[st] || st;
  connEl.dataset.state = st;
  connEl.querySelector(".conn-text").textContent = text;
  connEl.title = st === "reconnecting" ? `Stream lost (${info.reason}); retrying` : text;
  for (const el of document.querySelectorAll("[data-conn-mirror]")) {
    el.dataset.state = st;
    el.textContent = text;
  }
  if (st === "unauthorized") signOut("The audit service refused this token for the live stream.");
}

async function loadSeed() {
  try {
    state.seed = (await audit.get("/flags", { limit: 15 })).items;
  } catch {
    state.seed = [];
  }
}

function onStreamEvent({ event, data }) {
  if (event === "hello") {
    // After a reconnection, what was missed is not replayed: reload the recent flags and tell the pages.
    if (state.everLive) loadSeed().then(() => emit({ event: "resync" }));
    state.everLive = true;
    return;
  }
  if (event !== "flag" && event !== "custody") return;
  const item = { event, data, at: new Date(), seq: ++state.seq };
  state.feed.unshift(item);
  if (state.feed.length > FEED_MAX) state.feed.length = FEED_MAX;
  emit(item);
}

function emit(item) {
  for (const fn of [...state.listeners]) {
    try { fn(item); } catch (err) { console.error(err); }
  }
}

function startStream() {
  stopStream();
  state.everLive = false;
  state.stream = new LiveStream(`${config.audit_url}/stream`, { token: getToken(), onEvent: onStreamEvent, onState: setStreamState });
  state.stream.start();
}

function stopStream() {
  if (state.stream) state.stream.stop();
  state.stream = null;
}

window.addEventListener("online", () => state.stream?.retryNow());

// --- sign in / out ------------------------------------------------------------------------------------------------

const authBox = document.getElementById("auth");

function renderAuth(message = "") {
  clear(authBox);
  if (state.me) {
    const name = state.me.kind === "operator" ? "Operator" : h("span", {}, who(state.me.subject, { link: false }), ` (${KINDS[state.me.kind] || state.me.kind})`);
    const out = h("button", { type: "button", class: "btn btn-ghost", id: "sign-out" }, "Sign out");
    out.addEventListener("click", () => signOut());
    authBox.append(h("span", { class: "identity", id: "identity", dataset: { kind: state.me.kind } }, "Signed in as ", h("strong", {}, name)), out);
    return;
  }
  const input = h("input", { id: "token-input", name: "token", type: "password", autocomplete: "off", spellcheck: "false", placeholder: "Operator, officer or participant token", required: true, "aria-describedby": message ? "auth-msg" : null });
  const form = h("form", { id: "token-form", class: "token-form" },
    h("label", { for: "token-input", class: "visually-hidden" }, "Access token"), input,
    h("button", { type: "submit", class: "btn btn-primary" }, "Sign in"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn(input.value.trim());
  });
  authBox.append(form);
  if (message) authBox.append(h("span", { id: "auth-msg", class: "auth-msg", role: "alert" }, message));
}

async function signIn(token) {
  if (!token) return;
  setToken(token);
  try {
    state.me = await audit.get("/whoami");
  } catch (err) {
    clearToken();
    state.me = null;
    renderAuth(err instanceof ApiError && err.status === 401 ? "That token was refused." : errorText(err));
    return;
  }
  renderAuth();
  await loadSeed();
  startStream();
  route();
}

function signOut(message = "") {
  stopStream();
  clearToken();
  state.me = null;
  state.feed = [];
  state.seed = [];
  renderAuth(message);
  route();
}

window.addEventListener("mcoc:unauthorized", () => { if (state.me) signOut("The token was refused (401); sign in again."); });

// --- router -------------------------------------------------------------------------------------------------------

const ROUTES = [
  [/^\/?$/, overviewPage, "overview"],
  [/^\/flags\/?$/, flagsPage, "flags"],
  [/^\/flags\/(.+)$/, flagPage, "flags"],
  [/^\/lots\/?$/, lotsPage, "lots"],
  [/^\/lots\/(.+)$/, lotPage, "lots"],
  [/^\/participants\/?$/, participantsPage, "participants"],
  [/^\/participants\/(.+)$/, participantPage, "participants"],
];

async function route() {
  for (const fn of state.route.cleanups) fn();
  document.getElementById("toasts").replaceChildren();
  const gen = ++state.route.gen;
  const ctx = { gen, cleanups: [], alive: () => state.route.gen === gen };
  state.route.cleanups = ctx.cleanups;
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, qs] = raw.split("?");
  const params = new URLSearchParams(qs || "");
  const found = ROUTES.map(([re, page, nav]) => ({ m: path.match(re), page, nav })).find((r) => r.m);
  for (const a of document.querySelectorAll("nav.main a")) {
    if (found && a.dataset.nav === found.nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!getToken() || !state.me) {
    document.title = "Sign in · Custody operations";
    view.replaceChildren(welcome());
    return;
  }
  if (!found) {
    view.replaceChildren(errorPanel(new Error(`No page at ${path}`), "this page"));
    return;
  }
  view.replaceChildren(h("p", { class: "loading", role: "status" }, "Loading…"));
  view.setAttribute("aria-busy", "true");
  try {
    const node = await found.page(ctx, found.m.slice(1).map((x) => decodeURIComponent(x)), params);
    if (!ctx.alive()) return;
    view.replaceChildren(node);
    const h1 = view.querySelector("h1");
    if (h1) {
      document.title = `${h1.textContent} · Custody operations`;
      // Move focus to the new page's heading (screen readers announce it), unless the user is typing up top.
      if (!document.querySelector("header.top").contains(document.activeElement)) h1.focus({ preventScroll: true });
    }
  } catch (err) {
    if (ctx.alive()) view.replaceChildren(errorPanel(err, "this page"));
  } finally {
    if (ctx.alive()) view.removeAttribute("aria-busy");
  }
}

function welcome() {
  return h("div", { class: "welcome panel" },
    h("h1", { tabindex: "-1" }, "Chain-of-custody operations"),
    h("p", {}, "Live custody events and audit flags, lot traces from mine to product, and participants' certifications."),
    h("p", {}, "Enter an operator token or a participant token above. It is kept in this browser tab only (sessionStorage) and sent as ",
      h("code", {}, "Authorization: Bearer"), " to the audit, custody and registry APIs."),
    h("p", { class: "muted" }, "A participant token shows that participant's flags only: those about events it took part in, and those on the lots it holds now or on their upstream (a lot it let go of: flags on events up to its hand-off), each with the identities its disclosure rules allow (others read \"withheld\"). Flags are resolved with a compliance officer's token (the registry issues them)."));
}

// --- overview -----------------------------------------------------------------------------------------------------

async function overviewPage(ctx) {
  const QUEUE_MAX = 15;
  const SPARE = QUEUE_MAX * 2; // flags asked for beyond the queue, so a resolved row is replaced at once
  // The counts come from the database (GET /flags/counts): exact however many flags there are. The stream only says
  // when to ask again.
  let counts = null;
  const cards = h("div", { class: "sev-cards", id: "by-severity" });
  const byRule = h("div", { id: "by-rule-body" });
  const total = h("span", { class: "count-pill", id: "unresolved-total" }, "…");
  // The queue: the most severe unresolved flags, newest first within a severity, from the API. Rows stay where they
  // are when a flag is acknowledged (nothing jumps under the pointer); a new flag is slotted in; a resolved one leaves.
  const flags = new Map(); // the queue's candidates: the most severe open flags from the API, and the stream's
  const gone = new Set(); // flags the stream resolved or withdrew: a reload begun before must not bring them back
  const tbody = h("tbody", {});
  const rows = new Map(); // flag id -> its <tr> in the queue
  const queueMore = h("p", { class: "more" });
  const queue = h("div", { id: "flag-queue-body" },
    h("div", { class: "table-wrap" }, h("table", { class: "data" }, h("caption", { class: "visually-hidden" }, "Flag queue"),
      h("thead", {}, h("tr", {}, flagHeaders({ compact: true }).map((c) => h("th", { scope: "col" }, c)))), tbody)),
    queueMore);
  const before = (a, b) => RANK[b.severity] - RANK[a.severity] || String(b.raised_at).localeCompare(String(a.raised_at));
  const openOf = (sev) => counts?.by_severity.find((c) => c.severity === sev)?.open ?? 1;
  let alive = true;
  ctx.cleanups.push(() => { alive = false; });

  function queueRow(f) {
    const tr = flagRow(f, { compact: true, onChange: (u, next) => { rows.set(u.id, next); upsert(u); } });
    rows.set(f.id, tr);
    return tr;
  }

  function fillQueue() {
    rows.clear();
    tbody.replaceChildren(...[...flags.values()].sort(before).slice(0, QUEUE_MAX).map(queueRow));
    queueTail();
  }

  let topping = false; // asking the API for more candidates
  let dry = false; // the last ask brought none new: wait for the counts to change before asking again

  function queueTail() {
    tbody.querySelector("tr.empty")?.remove();
    // Top the queue up from flags not shown yet (after a resolve), or trim it (after a new flag).
    while (rows.size < QUEUE_MAX) {
      const next = [...flags.values()].filter((f) => !rows.has(f.id)).sort(before)[0];
      if (!next) break;
      tbody.append(queueRow(next));
    }
    while (rows.size > QUEUE_MAX) {
      const last = tbody.lastElementChild;
      rows.delete(last.dataset.flagId);
      last.remove();
    }
    if (rows.size < QUEUE_MAX && counts && counts.open > rows.size && !topping && !dry) topUp();
    if (!rows.size) tbody.append(emptyRow(4, "No unresolved flags."));
    const n = counts ? counts.open : flags.size;
    queueMore.replaceChildren(n > rows.size ? h("a", { href: "#/flags?status=open" }, `All ${n} unresolved flags →`) : "");
    // Candidates far down the list are dropped (the stream may bring many): the API has them if they are needed.
    if (flags.size > SPARE * 4) {
      for (const f of [...flags.values()].filter((x) => !rows.has(x.id)).sort(before).slice(SPARE)) flags.delete(f.id);
    }
  }

  async function candidates() {
    // The most severe open flags, newest first within a severity: one page per severity, as many as are wanted.
    const found = [];
    for (const sev of SEVERITIES) {
      const want = QUEUE_MAX + SPARE - found.length;
      if (want <= 0) break;
      if (!openOf(sev)) continue;
      found.push(...(await audit.get("/flags", { status: "open", severity: sev, limit: want })).items);
    }
    return found.filter((f) => !gone.has(f.id));
  }

  async function topUp() {
    topping = true;
    try {
      const found = (await candidates()).filter((f) => !flags.has(f.id));
      if (!alive) return;
      dry = !found.length;
      for (const f of found) flags.set(f.id, f);
    } catch {
      dry = true;
    } finally {
      topping = false;
    }
    if (alive) queueTail();
  }

  function queueChange(f) {
    const row = rows.get(f.id);
    if (row) {
      if (f.status === "resolved" || f.status === "withdrawn") { rows.delete(f.id); row.remove(); }
      else if (row.dataset.status !== f.status) row.replaceWith(queueRow(flags.get(f.id)));
    } else if (f.status !== "resolved" && f.status !== "withdrawn") {
      const full = flags.get(f.id);
      const after = [...tbody.children].find((tr) => tr.dataset.flagId && before(full, flags.get(tr.dataset.flagId) || full) < 0);
      tbody.insertBefore(queueRow(full), after || null);
    }
    queueTail();
  }

  async function loadCounts() {
    const next = await audit.get("/flags/counts", { status: "open" });
    if (!alive) return;
    counts = next;
    dry = false;
    drawCounts();
    queueTail();
  }

  async function load() {
    gone.clear();
    counts = await audit.get("/flags/counts", { status: "open" });
    const found = await candidates();
    flags.clear();
    for (const f of found) flags.set(f.id, f);
    dry = false;
    drawCounts();
    fillQueue();
  }

  function drawCounts() {
    total.textContent = `${counts.open} unresolved`;
    total.dataset.open = counts.open;
    clear(cards);
    for (const { severity: sev, open } of counts.by_severity) {
      cards.append(h("a", { class: `sev-card sev-card-${sev}`, href: `#/flags?status=open&severity=${sev}`, dataset: { severity: sev, open } },
        h("span", { class: "sev-name" }, title(sev)),
        h("span", { class: "sev-count" }, String(open)),
        h("span", { class: "sev-sub" }, "open")));
    }
    const ruleRows = counts.by_rule.filter((r) => r.open > 0)
      .sort((a, b) => RANK[b.severity] - RANK[a.severity] || b.open - a.open || a.rule.localeCompare(b.rule))
      .map((r) => h("tr", { dataset: { rule: r.rule, open: r.open } },
        h("td", {}, h("a", { href: `#/flags?status=open&rule=${r.rule}` }, ruleLabel(r.rule))),
        h("td", {}, severityBadge(r.severity)),
        h("td", { class: "num" }, String(r.open))));
    byRule.replaceChildren(table(["Rule", "Severity", "Open"], ruleRows, { caption: "Unresolved flags by rule", cls: "compact" }));
  }

  const refreshCounts = debounce(() => { if (alive) loadCounts().catch(() => {}); }, 250);

  function upsert(f) {
    if (f.status === "resolved" || f.status === "withdrawn") { flags.delete(f.id); gone.add(f.id); }
    else { flags.set(f.id, { ...flags.get(f.id), ...f }); gone.delete(f.id); }
    queueChange(f);
    refreshCounts();
  }

  onLive(ctx, (item) => {
    if (item.event === "flag") upsert(item.data);
    if (item.event === "resync") load().catch(() => {});
  });
  await load();

  const feed = feedPanel(ctx);
  return h("div", { class: "page overview" },
    pageHeader("Operations overview", "Unresolved audit flags and the live stream of custody events and flags."),
    h("div", { class: "overview-grid" },
      h("div", { class: "col-main" },
        section("Unresolved flags by severity", { id: "severity-panel", actions: total }, cards),
        section("Flag queue", { id: "flag-queue", actions: h("a", { href: "#/flags?status=open", class: "btn btn-ghost btn-small" }, "All flags") }, queue),
        section("Unresolved flags by rule", { id: "rule-panel" }, byRule)),
      h("div", { class: "col-side" }, feed)));
}

function feedItem(item) {
  const d = item.data || {};
  if (item.event === "flag") {
    const decided = { acknowledge: "acknowledged", respond: "responded", resolve: "resolved", reopen: "reopened" }[d.decision?.kind];
    const verb = item.seed ? d.status : decided || { open: "raised", resolved: "resolved" }[d.status] || d.status;
    const when = item.seed
      ? h("time", { datetime: d.raised_at, title: d.raised_at }, fmtTimeShort(d.raised_at))
      : h("time", { datetime: item.at.toISOString() }, fmtClock(item.at));
    return h("li", { class: `feed-item feed-flag feed-${verb}${item.seed ? " feed-seed" : ""}`, dataset: { event: "flag", flagId: d.id, rule: d.rule, lotId: d.lot_id, status: d.status, severity: d.severity, seed: item.seed ? "true" : null } },
      h("div", { class: "feed-meta" }, when, severityBadge(d.severity),
        h("span", { class: "feed-kind" }, item.seed ? title(d.status) : `Flag ${verb}`)),
      h("div", { class: "feed-title" }, h("a", { href: `#/flags/${encodeURIComponent(d.id)}` }, ruleLabel(d.rule)), " on ", lotLink(d.lot_id)),
      d.summary ? h("div", { class: "feed-text" }, d.summary) : null);
  }
  return h("li", { class: "feed-item feed-custody", dataset: { event: "custody", type: d.type, lotId: d.lot_id, eventId: d.id } },
    h("div", { class: "feed-meta" }, h("time", { datetime: item.at.toISOString() }, fmtClock(item.at)),
      h("span", { class: "badge tag" }, "Custody"), h("span", { class: "feed-kind" }, EVENT_TYPES[d.type] || d.type)),
    h("div", { class: "feed-title" }, lotLink(d.lot_id), d.actor ? [" by ", who(d.actor)] : null),
    d.time ? h("div", { class: "feed-text muted" }, `Occurred ${fmtTime(d.time)}`) : null);
}

function feedPanel(ctx) {
  const show = { flag: true, custody: true };
  const list = h("ol", { id: "live-feed", class: "feed", role: "log", "aria-label": "Live feed of flags and custody events", "aria-live": "polite" });
  const empty = h("p", { class: "feed-empty muted", id: "feed-empty" }, "Waiting for events: new flags and custody events appear at the top as they happen.");
  const visible = (item) => show[item.event];
  const seedHead = () => h("li", { class: "feed-sep", "aria-hidden": "true" }, "Latest flags before you connected");
  const refill = () => {
    const seeds = show.flag ? state.seed.map((f) => feedItem({ event: "flag", data: f, seed: true })) : [];
    list.replaceChildren(...state.feed.filter(visible).map(feedItem), ...(seeds.length ? [seedHead(), ...seeds] : []));
    empty.hidden = state.feed.some(visible);
  };
  const box = (key, label) => {
    const input = h("input", { type: "checkbox", checked: true, id: `feed-${key}` });
    input.addEventListener("change", () => { show[key] = input.checked; refill(); });
    return h("label", { class: "check" }, input, label);
  };
  const pending = [];
  const flush = () => {
    const items = pending.splice(0).filter(visible);
    if (!items.length) return;
    list.prepend(...items.reverse().map(feedItem));
    const live = list.querySelectorAll("li:not(.feed-seed):not(.feed-sep)");
    for (let i = FEED_MAX; i < live.length; i++) live[i].remove();
    empty.hidden = true;
  };
  let frame = null;
  onLive(ctx, (item) => {
    if (item.event === "resync") {
      refill();
      list.prepend(h("li", { class: "feed-item feed-note" }, h("div", { class: "feed-meta" }, h("time", {}, fmtClock(new Date())), h("span", { class: "feed-kind" }, "Reconnected")),
        h("div", { class: "feed-text muted" }, "Events sent while disconnected are not replayed here; counts and latest flags were reloaded.")));
      return;
    }
    pending.push(item);
    if (frame === null) frame = requestAnimationFrame(() => { frame = null; flush(); });
  });
  ctx.cleanups.push(() => { if (frame !== null) cancelAnimationFrame(frame); });
  refill();
  const conn = h("span", { class: "conn-pill", dataset: { connMirror: "", state: state.streamState } }, connEl.querySelector(".conn-text").textContent);
  return section("Live feed", { id: "live-feed-panel", cls: "feed-panel", actions: conn },
    h("div", { class: "feed-filters", role: "group", "aria-label": "Show in the feed" }, box("flag", "Flags"), box("custody", "Custody events")),
    empty, list);
}

// --- flags --------------------------------------------------------------------------------------------------------

function select(name, label, options, value) {
  const el = h("select", { name, id: `f-${name}` }, options.map(([v, t]) => h("option", { value: v, selected: v === value }, t)));
  return h("div", { class: "field" }, h("label", { for: `f-${name}` }, label), el);
}

function input(name, label, value, placeholder = "") {
  return h("div", { class: "field" }, h("label", { for: `f-${name}` }, label),
    h("input", { name, id: `f-${name}`, value: value || "", placeholder, autocomplete: "off" }));
}

function filterForm(base, fieldsEls) {
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filters" }, fieldsEls,
    h("div", { class: "field field-buttons" }, h("button", { type: "submit", class: "btn btn-primary" }, "Apply"),
      h("a", { class: "btn btn-ghost", href: `#${base}` }, "Clear")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (String(v).trim()) q.set(k, String(v).trim());
    const next = `#${base}${q.toString() ? `?${q}` : ""}`;
    if (location.hash === next) route(); else location.hash = next;
  });
  return form;
}

async function flagsPage(ctx, _args, params) {
  const filters = Object.fromEntries(["status", "severity", "rule", "lot_id", "participant"].map((k) => [k, params.get(k) || ""]));
  const form = filterForm("/flags", [
    select("status", "Status", [["", "Open or resolved"], ["open", "Open"], ["resolved", "Resolved"], ["withdrawn", "Withdrawn"]], filters.status),
    select("severity", "Severity", [["", "Any"], ...SEVERITIES.map((s) => [s, title(s)])], filters.severity),
    select("rule", "Rule", [["", "Any"], ...Object.entries(RULES)], filters.rule),
    input("lot_id", "Lot", filters.lot_id, "lot id"),
    input("participant", "Participant", filters.participant, "participant id"),
  ]);
  const tbody = h("tbody", {});
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  const count = h("span", { class: "count-pill" }, "");
  const fresh = h("button", { type: "button", class: "btn btn-small notice", hidden: true }, "");
  let cursor = null;
  let shown = 0;
  let news = 0;

  async function page() {
    const res = await audit.get("/flags", { ...filters, limit: 50, cursor });
    for (const f of res.items) tbody.append(flagRow(f));
    shown += res.items.length;
    cursor = res.next_cursor;
    more.hidden = !cursor;
    count.textContent = `${shown}${cursor ? "+" : ""} shown`;
    if (!tbody.childElementCount) tbody.append(emptyRow(7, "No flags match these filters."));
  }
  more.addEventListener("click", async () => {
    more.disabled = true;
    try { await page(); } catch (err) { announce(errorText(err), "error"); } finally { more.disabled = false; }
  });
  fresh.addEventListener("click", () => route());
  onLive(ctx, (item) => {
    if (item.event !== "flag") return;
    const row = tbody.querySelector(`tr[data-flag-id="${CSS.escape(item.data.id)}"]`);
    if (row) {
      if (row.dataset.status !== item.data.status) row.replaceWith(flagRow(item.data));
    } else if (item.data.status === "open") {
      news += 1;
      fresh.hidden = false;
      fresh.textContent = `${news} new flag${news > 1 ? "s" : ""} — show`;
    }
  });
  await page();
  return h("div", { class: "page" },
    pageHeader("Flags", "Every flag names its rule, severity, lots, participants and the evidence that triggered it."),
    section("Filters", { id: "flag-filters" }, form),
    section("Results", { id: "flag-results", actions: [fresh, count] },
      h("div", { class: "table-wrap" }, h("table", { class: "data", id: "flags-table" },
        h("caption", { class: "visually-hidden" }, "Flags"),
        h("thead", {}, h("tr", {}, flagHeaders().map((c) => h("th", { scope: "col" }, c)))), tbody)),
      h("p", { class: "more" }, more)));
}

const DECIDED = { acknowledge: "acknowledged", respond: "responded", resolve: "resolved", reopen: "re-opened" };

async function flagPage(ctx, [id]) {
  let flag = await audit.get(`/flags/${encodeURIComponent(id)}`);
  const body = h("div", {});
  const draw = () => {
    body.replaceChildren(
      h("div", { class: "grid-2" },
        section("Flag", { id: "flag-details" }, fields([
          ["Rule", h("span", {}, ruleLabel(flag.rule), " ", h("code", {}, flag.rule))],
          ["Severity", severityBadge(flag.severity)],
          ["Status", statusBadge(flag.status)],
          ["Summary", flag.summary],
          ["Cause", h("code", {}, flag.cause)],
          ["Lot", lotLink(flag.lot_id)],
          ["All lots concerned", h("span", { class: "list" }, flag.lot_ids.map((l) => lotLink(l)))],
          ["Participants", h("span", { class: "list" }, flag.participants.map((p) => (p ? who(p) : withheldMark("a party"))))],
          flag.withheld?.length ? ["Withheld from you", h("span", { class: "list mono small", id: "flag-withheld" }, flag.withheld.join(", "))] : null,
        ]), h("div", { class: "panel-foot" }, flagActions(flag, (u) => { flag = u; draw(); }))),
        section("Timeline", { id: "flag-timeline" }, h("ol", { class: "timeline" },
          h("li", {}, h("strong", {}, "Raised "), timeEl(flag.raised_at)),
          ...(flag.history || []).map((d) => h("li", { dataset: { decision: d.kind } },
            h("strong", {}, `${title(DECIDED[d.kind] || d.kind)} `), timeEl(d.decided_at), " by ", who(d.decided_by),
            d.note ? h("span", {}, ": ", h("q", {}, d.note)) : null)),
          !flag.history && flag.resolved_at ? h("li", {}, h("strong", {}, "Resolved "), timeEl(flag.resolved_at), " by ", who(flag.resolved_by)) : null))),
      section("Evidence", { id: "flag-evidence" }, h("pre", { class: "evidence" }, JSON.stringify(flag.evidence, null, 2))));
  };
  onLive(ctx, (item) => {
    if (item.event === "flag" && item.data.id === flag.id) {
      const seen = (flag.history || []).some((d) => d.id === item.data.decision?.id);
      const history = item.data.decision && !seen ? [...(flag.history || []), item.data.decision] : flag.history;
      flag = { ...flag, ...item.data, history };
      draw();
    }
  });
  draw();
  return h("div", { class: "page" }, pageHeader(`Flag: ${ruleLabel(flag.rule)}`, flag.summary), body);
}

// --- lots ---------------------------------------------------------------------------------------------------------

const MINERALS = ["tin", "tantalum", "tungsten", "gold", "cobalt", "lithium", "nickel", "graphite", "copper", "mica",
  "manganese", "silver", "platinum", "palladium", "rare_earths", "zinc", "aluminium"];

function lotRow(l) {
  return h("tr", { dataset: { lotId: l.lot_id } },
    h("td", {}, lotLink(l.lot_id)), h("td", {}, title(l.mineral)), h("td", {}, l.form),
    h("td", { class: "num" }, fmtMass(l.mass_kg)), h("td", { class: "num" }, fmtMass(l.remaining_kg)),
    h("td", {}, statusBadge(l.status)), h("td", {}, who(l.custodian)),
    h("td", {}, l.origin.kind === "mine" ? ["Mine ", who(l.origin.participant_id)] : title(l.origin.kind)),
    h("td", { class: "nowrap" }, timeEl(l.created_at, { short: true })));
}

async function lotsPage(ctx, _args, params) {
  const filters = Object.fromEntries(["mineral", "status", "custodian"].map((k) => [k, params.get(k) || ""]));
  const form = filterForm("/lots", [
    select("mineral", "Mineral", [["", "Any"], ...MINERALS.map((m) => [m, title(m)])], filters.mineral),
    select("status", "Status", [["", "Any"], ...["active", "in_transit", "consumed", "depleted"].map((s) => [s, title(s)])], filters.status),
    input("custodian", "Custodian", filters.custodian, "participant id"),
  ]);
  const tbody = h("tbody", {});
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  let cursor = null;
  async function page() {
    const res = await custody.get("/lots", { ...filters, limit: 50, cursor });
    for (const l of res.items) tbody.append(lotRow(l));
    cursor = res.next_cursor;
    more.hidden = !cursor;
    if (!tbody.childElementCount) tbody.append(emptyRow(9, "No lots match these filters."));
  }
  more.addEventListener("click", () => page().catch((err) => announce(errorText(err), "error")));
  await page();
  return h("div", { class: "page" },
    pageHeader("Lots", "Lots you hold or held (the operator sees all), oldest first."),
    section("Filters", {}, form),
    section("Lots", { id: "lots" }, h("div", { class: "table-wrap" }, h("table", { class: "data" },
      h("thead", {}, h("tr", {}, ["Lot", "Mineral", "Form", "Mass", "Remaining", "Status", "Custodian", "Origin", "Created (UTC)"].map((c) => h("th", { scope: "col" }, c)))),
      tbody)), h("p", { class: "more" }, more)));
}

async function pool(items, n, fn) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  }));
  return out;
}

async function lotPage(ctx, [lotId]) {
  const enc = encodeURIComponent(lotId);
  const [lot, risk, history, up, down] = await Promise.allSettled([
    custody.get(`/lots/${enc}`), audit.get(`/lots/${enc}/risk`), custody.get(`/lots/${enc}/history`),
    custody.get(`/lots/${enc}/trace`, { direction: "upstream" }), custody.get(`/lots/${enc}/trace`, { direction: "downstream" }),
  ]);
  if (lot.status === "rejected") throw lot.reason;
  const L = lot.value;
  const R = risk.status === "fulfilled" ? risk.value : null;
  const upstream = up.status === "fulfilled" ? up.value : null;
  const downstream = down.status === "fulfilled" ? down.value : null;

  // Risk of every lot in the graph (audit), and the names of everyone in it (registry).
  const ids = [...new Set([...(upstream?.nodes || []), ...(downstream?.nodes || [])].map((n) => n.lot_id))];
  const risks = new Map([[lotId, R]]);
  const lookups = ids.filter((id) => id !== lotId).slice(0, GRAPH_MAX_RISK_LOOKUPS);
  const got = await pool(lookups, 6, (id) => audit.get(`/lots/${encodeURIComponent(id)}/risk`).catch(() => null));
  lookups.forEach((id, i) => risks.set(id, got[i]));
  const people = new Set([L.custodian, L.origin.participant_id]);
  for (const n of [...(upstream?.nodes || []), ...(downstream?.nodes || [])]) { people.add(n.custodian); people.add(n.origin?.participant_id); }
  for (const e of [...(upstream?.edges || []), ...(downstream?.edges || [])]) people.add(e.actor);
  for (const p of downstream?.products || []) people.add(p.by);
  people.delete(undefined); people.delete(null);
  const names = new Map();
  await Promise.all([...people].map(async (id) => names.set(id, await participant(id))));
  if (!ctx.alive()) return h("div");

  const details = section("Lot", { id: "lot-details" }, fields([
    ["Lot id", h("code", {}, L.lot_id)],
    ["Mineral and form", `${title(L.mineral)} · ${L.form}`],
    ["Mass", `${fmtMass(L.mass_kg)} (remaining ${fmtMass(L.remaining_kg)})`],
    ["Status", statusBadge(L.status)],
    ["Custodian", who(L.custodian)],
    ["Origin", L.origin.kind === "mine"
      ? h("span", {}, "Mine ", who(L.origin.participant_id), ` · ${countryName(L.origin.country)}${L.origin.region ? ` · ${L.origin.region}` : ""}${L.origin.mining_type ? ` · ${L.origin.mining_type.toUpperCase()}` : ""}`)
      : L.origin.kind === "external" ? `External declaration · ${countryName(L.origin.country)}${L.origin.mine_name ? ` · ${L.origin.mine_name}` : ""}`
        : "Made by a transformation (see the trace)"],
    L.produced_at ? ["Produced", timeEl(L.produced_at)] : null,
    L.tag ? ["Tag", h("code", {}, L.tag)] : null,
    L.seal ? ["Seal", h("code", {}, L.seal)] : null,
    ["Custody events", `${L.events}`],
  ]));

  const riskPanel = R
    ? section("Risk", { id: "lot-risk", actions: ratingBadge(R.rating) }, fields([
      ["Rating", h("span", { id: "lot-rating", dataset: { rating: R.rating } }, title(R.rating))],
      ["Own flags", `${R.own_flags.filter((f) => f.status !== "resolved").length} unresolved of ${R.own_flags.length}`],
      ["Inherited", `${R.inherited.filter((e) => e.flag.status !== "resolved").length} unresolved of ${R.inherited.length} from ${R.upstream_lots} upstream lots`],
      ["Origin countries", R.origin_countries.length ? h("span", { class: "list" }, R.origin_countries.map(countryName)) : "—"],
      ["Origins", R.origins.length ? h("ul", { class: "plain" }, R.origins.map((o) => h("li", {}, lotLink(o.lot_id), " · ",
        o.participant_id ? who(o.participant_id) : o.withheld?.includes("participant_id") ? withheldMark("the origin") : title(o.kind), ` · ${o.region || o.country || "?"}${o.mining_type ? ` · ${o.mining_type.toUpperCase()}` : ""}`))) : "—"],
      ["Smelters and refiners", R.smelters.length ? h("ul", { class: "plain" }, R.smelters.map((s) => h("li", { dataset: { smelterId: s.participant_id } }, s.participant_id ? who(s.participant_id) : withheldMark("the smelter"),
        ` · ${fmtDate(s.occurred_at)} · RMAP then: `, h("span", { class: s.rmap_status_then === "conformant" ? "ok" : "warn" }, s.rmap_status_then ? title(s.rmap_status_then) : "none")))) : "—"],
    ]))
    : section("Risk", { id: "lot-risk" }, h("p", { class: "muted" }, risk.status === "rejected" ? errorText(risk.reason) : "No risk summary."));

  const graphBox = h("div", { class: "graph-scroll", id: "trace-graph", tabindex: "0", "aria-label": "Trace graph (scrollable)" });
  let model = null;
  if (upstream) {
    const availableWidth = Math.max(600, view.clientWidth - 90); // the panel's inner width
    model = buildModel({ lotId, upstream, downstream, risks, names, availableWidth });
    renderGraph(graphBox, model, availableWidth);
  } else {
    graphBox.append(h("p", { class: "muted" }, `Trace unavailable: ${errorText(up.reason)}`));
  }
  const legend = h("ul", { class: "legend", "aria-label": "Legend" },
    ["critical", "high", "medium", "low", "info", "none"].map((r) => h("li", {}, h("span", { class: `swatch risk-${r}` }), r === "none" ? "No open flags" : title(r))),
    h("li", {}, h("span", { class: "swatch swatch-own" }), "Own flags"),
    h("li", {}, h("span", { class: "swatch swatch-inherited" }), "Inherited only"),
    h("li", {}, h("span", { class: "swatch swatch-tx" }), "Transformation (smelter, refiner…)"));
  const trace = section("Trace: mines → smelters → products", { id: "lot-trace", cls: "trace-panel" },
    legend, graphBox,
    model ? h("details", { class: "graph-table" }, h("summary", {}, "Show the trace as a table"), graphTable(model)) : null,
    ids.length - 1 > GRAPH_MAX_RISK_LOOKUPS ? h("p", { class: "muted small" }, `Risk shown for the first ${GRAPH_MAX_RISK_LOOKUPS} lots only.`) : null);

  const flagRows = [];
  if (R) {
    for (const f of R.own_flags) flagRows.push(flagRow(f, { showLot: false, extra: () => "This lot" }));
    for (const e of R.inherited) {
      const where = () => h("span", {}, lotLink(e.lot_id), h("div", { class: "meta" }, `${e.depth} step${e.depth > 1 ? "s" : ""} upstream`));
      flagRows.push(flagRow(e.flag, { showLot: false, extra: where }));
    }
  }
  const flagsPanel = section("Flags on this lot and upstream", { id: "lot-flags" },
    table(flagHeaders({ showLot: false, extra: "Where" }), flagRows, { caption: "Flags on this lot and upstream" }));

  let historyPanel;
  if (history.status === "fulfilled") {
    const H = history.value;
    historyPanel = section("Custody history", {
      id: "lot-history",
      actions: h("span", { class: `badge ${H.chain_valid ? "chain-ok" : "chain-bad"}`, title: H.how_to_verify }, H.chain_valid ? "Hash chain valid" : "Hash chain BROKEN"),
    }, table(["#", "Event", "Occurred (UTC)", "By", "Details", "Hash"], H.events.map((e) => h("tr", { dataset: { type: e.type } },
      h("td", { class: "num" }, String(e.seq)), h("td", { class: "nowrap" }, EVENT_TYPES[e.type] || e.type),
      h("td", { class: "nowrap" }, timeEl(e.occurred_at, { short: true })),
      h("td", {}, who(e.actor)), h("td", { class: "small" }, eventDetails(e)), h("td", { class: "mono small", title: e.hash }, shortId(e.hash, 10)))), { caption: "Custody history" }));
  } else {
    historyPanel = section("Custody history", { id: "lot-history" }, h("p", { class: "muted" }, errorText(history.reason)));
  }

  onLive(ctx, (item) => {
    if ((item.event === "flag" && (item.data.lot_ids || [item.data.lot_id]).some((l) => risks.has(l)))
      || (item.event === "custody" && risks.has(item.data.lot_id))) {
      showStale();
    }
  });
  const stale = h("button", { type: "button", class: "btn btn-small notice", hidden: true, id: "lot-stale" }, "New events on this trace — refresh");
  stale.addEventListener("click", () => route());
  const showStale = () => { stale.hidden = false; };

  return h("div", { class: "page lot-page", dataset: { lotId } },
    pageHeader(`Lot ${lotId}`, `${title(L.mineral)} ${L.form}, ${fmtMass(L.mass_kg)}`, " ", R ? ratingBadge(R.rating) : null, " ", statusBadge(L.status)),
    stale,
    h("div", { class: "grid-2" }, details, riskPanel),
    trace, flagsPanel, historyPanel);
}

function eventDetails(e) {
  const d = e.data || {};
  switch (e.type) {
    case "custody.lot.registered": return `${fmtMass(d.mass_kg)}${d.seal ? `, seal ${d.seal}` : ""}`;
    case "custody.lot.shipped": return h("span", {}, "to ", who(d.to), `, ${fmtMass(d.mass_kg)}${d.seal ? `, seal ${d.seal}` : ""}${d.tag ? `, tag ${d.tag}` : ""}${d.transit_countries?.length ? `, via ${[...d.transit_countries, ...(d.transit_regions || [])].join(", ")}` : ""}`);
    case "custody.lot.received": return `${fmtMass(d.mass_kg)}${d.seal ? `, seal ${d.seal}` : ""}${d.tag ? `, tag ${d.tag}` : ""}${d.shipped ? ` (shipped ${fmtMass(d.shipped.mass_kg)}${d.shipped.seal ? `, seal ${d.shipped.seal}` : ""}${d.shipped.tag ? `, tag ${d.shipped.tag}` : ""})` : ""}`;
    case "custody.lot.origin_confirmed": return d.confirmed ? "confirmed by the named mine" : `disputed by the named mine${d.note ? `: ${d.note}` : ""}`;
    case "custody.lot.transformed": return `${title(d.kind)} (${d.role}): ${(d.inputs || []).length} in, ${(d.outputs || []).length} out`;
    case "custody.lot.consumed": return `${fmtMass(d.mass_kg)} into ${d.product}`;
    case "custody.lot.external_declared": return `from ${d.supplier?.name || "?"}, origin ${d.origin?.country || "?"}`;
    default: return "";
  }
}

// --- participants ---------------------------------------------------------------------------------------------------

async function participantsPage(ctx, _args, params) {
  const filters = { kind: params.get("kind") || "", country: params.get("country") || "" };
  const form = filterForm("/participants", [
    select("kind", "Kind", [["", "Any"], ...Object.entries(KINDS).filter(([k]) => k !== "operator")], filters.kind),
    input("country", "Country", filters.country, "ISO code, e.g. CD"),
  ]);
  const tbody = h("tbody", {});
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  let cursor = null;
  async function page() {
    const res = await registry.get("/participants", { ...filters, limit: 50, cursor });
    for (const p of res.items) {
      tbody.append(h("tr", { dataset: { participantId: p.id } },
        h("td", {}, h("a", { href: `#/participants/${encodeURIComponent(p.id)}`, class: "strong" }, p.name)),
        h("td", {}, KINDS[p.kind] || p.kind), h("td", {}, countryName(p.country)), h("td", {}, p.region || "—"),
        h("td", {}, p.mining_type ? p.mining_type.toUpperCase() : "—"), h("td", { class: "mono small" }, p.identifiers?.rmi_smelter_id || p.rmi_smelter_id || "—"),
        h("td", { class: "nowrap" }, timeEl(p.created_at, { short: true }))));
    }
    cursor = res.next_cursor;
    more.hidden = !cursor;
    if (!tbody.childElementCount) tbody.append(emptyRow(7, "No participants match these filters."));
  }
  more.addEventListener("click", () => page().catch((err) => announce(errorText(err), "error")));
  await page();
  return h("div", { class: "page" },
    pageHeader("Participants", "Mines, traders, smelters, refiners and manufacturers registered in the registry."),
    section("Filters", {}, form),
    section("Participants", { id: "participants" }, h("div", { class: "table-wrap" }, h("table", { class: "data" },
      h("thead", {}, h("tr", {}, ["Name", "Kind", "Country", "Region", "Mining", "RMI id", "Registered (UTC)"].map((c) => h("th", { scope: "col" }, c)))),
      tbody)), h("p", { class: "more" }, more)));
}

function certCurrent(c, today) {
  return c.valid_from <= today && (!c.valid_until || today <= c.valid_until);
}

async function participantPage(ctx, [id]) {
  const enc = encodeURIComponent(id);
  const [p, certs, flags, lots] = await Promise.allSettled([
    registry.get(`/participants/${enc}`), registry.get(`/participants/${enc}/certifications`),
    all(audit, "/flags", { participant: id }, 500), custody.get("/lots", { custodian: id, limit: 100 }),
  ]);
  if (p.status === "rejected") throw p.reason;
  const P = p.value;
  const today = new Date().toISOString().slice(0, 10);
  const ids = P.identifiers || { rmi_smelter_id: P.rmi_smelter_id };  // a directory card: only the public RMI id
  const details = section("Participant", { id: "participant-details" }, fields([
    ["Name", P.name],
    ["Kind", h("span", { id: "participant-kind", dataset: { kind: P.kind } }, KINDS[P.kind] || P.kind)],
    ["Country", h("span", { id: "participant-country", dataset: { country: P.country } }, countryName(P.country))],
    P.region ? ["Region", P.region] : null,
    P.mining_type ? ["Mining type", P.mining_type === "asm" ? "Artisanal and small-scale (ASM)" : "Large-scale / industrial (LSM)"] : null,
    Object.keys(P.annual_capacity_kg || {}).length ? ["Declared capacity", Object.entries(P.annual_capacity_kg).map(([m, v]) => `${title(m)} ${fmtMass(v)}/year`).join(", ")] : null,
    ids.rmi_smelter_id ? ["RMI smelter id", h("code", {}, ids.rmi_smelter_id)] : null,
    ids.gln ? ["GLN", h("code", {}, ids.gln)] : null,
    ids.lei ? ["LEI", h("code", {}, ids.lei)] : null,
    ids.national_id ? ["National id", h("code", {}, ids.national_id)] : null,
    ["Participant id", h("code", {}, P.id)],
    P.created_at ? ["Registered", timeEl(P.created_at)] : null,
    P.version ? ["Version", `${P.version} (updated ${fmtTime(P.updated_at)})`] : null,  // not on a directory card
  ]));
  let certPanel;
  if (certs.status === "fulfilled") {
    const items = certs.value.items;
    const held = items.filter((c) => certCurrent(c, today));
    certPanel = section("Certifications and assessments", {
      id: "participant-certs",
      actions: h("span", { class: "count-pill" }, `${held.length} valid today`),
    }, table(["Scheme", "Status / level", "Validity", "Reference", "Today"], items.map((c) => h("tr", { dataset: { scheme: c.scheme, current: certCurrent(c, today) ? "true" : "false" } },
      h("td", {}, h("strong", {}, c.scheme.toUpperCase())), h("td", {}, title(c.status || c.level || "—")),
      h("td", { class: "nowrap", title: `Recorded ${fmtTime(c.recorded_at)}` }, `${fmtDate(c.valid_from)} – ${c.valid_until ? fmtDate(c.valid_until) : "open-ended"}`),
      h("td", { class: "small" }, c.reference || "—"),
      h("td", {}, certCurrent(c, today) ? h("span", { class: "badge chain-ok" }, "Valid") : h("span", { class: "badge status-resolved" }, "Not valid")))), { caption: "Certifications" }),
    items.length ? null : h("p", { class: "muted small" }, P.kind === "smelter" || P.kind === "refiner"
      ? "No RMAP status recorded: transformations by this participant are flagged as not RMAP conformant."
      : "Nothing recorded."));
  } else {
    certPanel = section("Certifications and assessments", { id: "participant-certs" }, h("p", { class: "muted" }, errorText(certs.reason)));
  }
  let flagsPanel;
  if (flags.status === "fulfilled") {
    const list = flags.value.items;
    const unresolved = list.filter((f) => f.status !== "resolved").length;
    flagsPanel = section("Flags naming this participant", { id: "participant-flags", actions: h("span", { class: "count-pill" }, `${unresolved} unresolved of ${list.length}`) },
      table(flagHeaders(), list.map((f) => flagRow(f)), { caption: "Flags naming this participant" }));
  } else {
    flagsPanel = section("Flags naming this participant", { id: "participant-flags" }, h("p", { class: "muted" }, errorText(flags.reason)));
  }
  const lotsPanel = lots.status === "fulfilled"
    ? section("Lots in its custody", { id: "participant-lots" }, table(["Lot", "Mineral", "Form", "Mass", "Remaining", "Status", "Custodian", "Origin", "Created (UTC)"], lots.value.items.map(lotRow), { caption: "Lots in its custody" }))
    : null;
  return h("div", { class: "page participant-page", dataset: { participantId: id } },
    pageHeader(P.name, `${KINDS[P.kind] || P.kind} · ${countryName(P.country)}${P.region ? ` · ${P.region}` : ""}`),
    h("div", { class: "grid-2" }, details, certPanel), flagsPanel, lotsPanel);
}

// --- start --------------------------------------------------------------------------------------------------------

function lotSearch() {
  const form = document.getElementById("lot-search");
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = form.querySelector("input").value.trim();
    if (v) location.hash = `#/lots/${encodeURIComponent(v)}`;
  });
}

async function main() {
  lotSearch();
  window.addEventListener("hashchange", route);
  try {
    await loadConfig();
  } catch (err) {
    view.replaceChildren(errorPanel(err, "the dashboard configuration"));
    return;
  }
  const token = getToken();
  if (token) await signIn(token);
  else { renderAuth(); route(); }
}

main();

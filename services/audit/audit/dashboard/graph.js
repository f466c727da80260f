// The trace graph of a lot: its upstream and downstream genealogy from custody, drawn as SVG in columns.
// Nodes are lots, transformations (a smelter's smelting, a refiner's refining...) and products (consumptions);
// columns follow the longest path from the origins, so mines sit on the left, smelters in the middle and products
// on the right. Lots are coloured by their risk rating from audit (solid border: own flags; dashed: inherited only).
//
// In the DOM: lots are `[data-node="lot"][data-lot-id][data-origin-kind][data-risk]`, transformations
// `[data-node="transformation"][data-kind][data-actor]` with `[data-smelter]` when a smelter or refiner did it,
// products `[data-node="product"][data-consumed-lot]`; edges and their labels carry `data-kind`.

import { fmtMass, h, s, title } from "./dom.js";

const WIDTH = { lot: 224, tx: 208, product: 208 };
const LINE = 17; // px between text baselines
const MIN_GAP = 88; // room for an edge label between two columns
const MAX_GAP = 200;
const ROW_GAP = 24;
const MARGIN = { left: 10, top: 42, right: 10, bottom: 14 };
const RANK = { critical: 5, high: 4, medium: 3, low: 2, info: 1, none: 0 };

const unresolved = (f) => f && f.status !== "resolved";

function worst(flags) {
  let best = "none";
  for (const f of flags) if (RANK[f.severity] > RANK[best]) best = f.severity;
  return best;
}

/** Per-lot risk as the graph shows it: rating, and the count and worst of own / inherited unresolved flags. */
export function lotRisk(summary) {
  if (!summary) return { rating: "unknown", own: 0, ownWorst: "none", inherited: 0, inheritedWorst: "none" };
  const own = summary.own_flags.filter(unresolved);
  const inherited = summary.inherited.map((e) => e.flag).filter(unresolved);
  return { rating: summary.rating, own: own.length, ownWorst: worst(own), inherited: inherited.length, inheritedWorst: worst(inherited) };
}

function riskLines(r) {
  if (r.rating === "unknown") return ["Risk not visible to you"];
  const out = [];
  if (r.own) out.push(`Own flags: ${r.own} · ${r.ownWorst}`);
  if (r.inherited) out.push(`Inherited: ${r.inherited} · ${r.inheritedWorst}`);
  return out.length ? out : ["No open flags"];
}

// Text is measured with the page's own font (canvas measureText), so wrapping and clipping fit the boxes.
const FONTS = { t1: "650 12.5px", t2: "400 11.5px", "t2 strong": "600 11.5px", t3: "600 11.5px", kind: "700 10.5px" };
const SPACING = { kind: 0.84 }; // letter-spacing in px per character (CSS .08em), which measureText ignores
let measurer = null;

function textWidth(text, cls) {
  try {
    if (!measurer) {
      measurer = document.createElement("canvas").getContext("2d");
      measurer.family = getComputedStyle(document.documentElement).fontFamily || "sans-serif";
    }
    measurer.font = `${FONTS[cls] || FONTS.t2} ${measurer.family}`;
    return measurer.measureText(text).width + (SPACING[cls] || 0) * text.length;
  } catch {
    return text.length * 7;
  }
}

function clip(text, width, cls) {
  const t = String(text ?? "");
  if (textWidth(t, cls) <= width) return t;
  let lo = 0;
  let hi = t.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (textWidth(`${t.slice(0, mid)}…`, cls) <= width) lo = mid;
    else hi = mid - 1;
  }
  return `${t.slice(0, lo).trimEnd()}…`;
}

/** Up to `lines` lines no wider than `width`, broken at spaces; the last one clipped. */
function wrap(text, width, lines, cls) {
  const words = String(text ?? "").split(/\s+/).filter(Boolean);
  const out = [];
  let line = "";
  while (words.length && out.length < lines - 1) {
    if (!line) line = words.shift();
    else if (textWidth(`${line} ${words[0]}`, cls) > width) { out.push(line); line = ""; }
    else line += ` ${words.shift()}`;
  }
  const rest = [line, ...words].filter(Boolean).join(" ");
  if (rest) out.push(clip(rest, width, cls));
  return out;
}

// The text of each kind of node, as [css class, text] lines (the node's height follows from their number).

function lotText(n) {
  const { lot } = n;
  const room = WIDTH.lot - 25;
  const line = (cls, text) => [cls, clip(text, room, cls)];
  const lines = [line("t1", lot.lot_id), line("t2", `${title(lot.mineral)} · ${lot.form} · ${fmtMass(lot.mass_kg)}`)];
  if (lot.origin?.kind === "mine") {
    const type = lot.origin.mining_type ? `${lot.origin.mining_type.toUpperCase()} mine` : "Mine";
    for (const t of wrap(n.originName || lot.origin.participant_id || "?", room, 2, "t2 strong")) lines.push(["t2 strong", t]);
    lines.push(line("t2", `${type} · ${lot.origin.region || lot.origin.country || "?"}`));
  } else if (lot.origin?.kind === "external") {
    lines.push(line("t2 strong", "Declared from outside"), line("t2", `Origin · ${lot.origin.region || lot.origin.country || "?"}`));
  } else {
    for (const t of wrap(`Held by ${n.custodianName || lot.custodian}`, room, 2, "t2 strong")) lines.push(["t2 strong", t]);
    lines.push(line("t2", title(lot.status)));
  }
  for (const t of riskLines(n.risk)) lines.push(line("t3", t));
  return lines;
}

function txText(n) {
  const room = WIDTH.tx - 20;
  const lines = [["kind", clip(`${n.kind.toUpperCase()}${n.actorKind ? ` · ${title(n.actorKind).toUpperCase()}` : ""}`, room, "kind")]];
  for (const t of wrap(n.actorName || n.actor, room, 2, "t1")) lines.push(["t1", t]);
  lines.push(["t2", clip(n.smelter ? `RMAP then: ${n.rmap ? title(n.rmap) : "none"}` : title(n.actorKind || "participant"), room, "t2")]);
  return lines;
}

function productText(n) {
  const room = WIDTH.product - 25;
  const lines = [["kind", "PRODUCT"]];
  for (const t of wrap(n.product.product, room, 2, "t1")) lines.push(["t1", t]);
  lines.push(["t2", clip(`${fmtMass(n.product.mass_kg)} · ${n.byName || n.product.by}`, room, "t2")]);
  for (const t of riskLines(n.risk)) lines.push(["t3", clip(t, room, "t3")]);
  return lines;
}

function sized(n, lines) {
  n.lines = lines;
  n.w = WIDTH[n.type];
  n.h = 20 + (lines.length - 1) * LINE + 12;
  return n;
}

/**
 * Merge the upstream and downstream traces of `lotId` into one graph and lay it out for `availableWidth` pixels.
 * `risks`: Map lot_id -> RiskSummary (or null); `names`: Map participant id -> participant (or null).
 */
export function buildModel({ lotId, upstream, downstream, risks, names, availableWidth = 1200 }) {
  const nodes = new Map();
  const edges = [];
  const lots = new Map();
  for (const n of [...(upstream?.nodes || []), ...(downstream?.nodes || [])]) lots.set(n.lot_id, n);
  const rmapThen = new Map();
  for (const summary of risks.values()) {
    for (const sm of summary?.smelters || []) rmapThen.set(sm.transformation_id, sm.rmap_status_then);
  }
  const upIds = new Set((upstream?.nodes || []).map((n) => n.lot_id));
  for (const [id, lot] of lots) {
    nodes.set(`lot:${id}`, {
      key: `lot:${id}`, type: "lot", lot, focus: id === lotId, side: id === lotId ? "self" : upIds.has(id) ? "upstream" : "downstream",
      risk: lotRisk(risks.get(id)), originName: names.get(lot.origin?.participant_id)?.name, custodianName: names.get(lot.custodian)?.name,
    });
  }
  const seen = new Set();
  for (const e of [...(upstream?.edges || []), ...(downstream?.edges || [])]) {
    const k = `${e.parent}>${e.child}>${e.transformation_id}`;
    if (seen.has(k) || !lots.has(e.parent) || !lots.has(e.child)) continue;
    seen.add(k);
    const txKey = `tx:${e.transformation_id}`;
    if (!nodes.has(txKey)) {
      nodes.set(txKey, {
        key: txKey, type: "tx", id: e.transformation_id, kind: e.kind, actor: e.actor, actorKind: e.actor_kind,
        actorName: names.get(e.actor)?.name, rmap: rmapThen.get(e.transformation_id) ?? null,
        smelter: e.actor_kind === "smelter" || e.actor_kind === "refiner", inputs: new Map(), outputs: new Set(),
      });
    }
    const tx = nodes.get(txKey);
    if (!tx.inputs.has(e.parent)) {
      tx.inputs.set(e.parent, e.mass_kg);
      edges.push({ from: `lot:${e.parent}`, to: txKey, kind: e.kind, mass: e.mass_kg });
    }
    if (!tx.outputs.has(e.child)) {
      tx.outputs.add(e.child);
      edges.push({ from: txKey, to: `lot:${e.child}`, kind: e.kind, mass: lots.get(e.child).mass_kg });
    }
  }
  for (const p of downstream?.products || []) {
    if (!lots.has(p.lot_id)) continue;
    const key = `product:${p.consumption_id}`;
    // A product carries the risk of the lot it was made from, as inherited exposure.
    const r = lotRisk(risks.get(p.lot_id));
    const inheritedWorst = RANK[r.ownWorst] > RANK[r.inheritedWorst] ? r.ownWorst : r.inheritedWorst;
    nodes.set(key, {
      key, type: "product", product: p, byName: names.get(p.by)?.name,
      risk: { ...r, own: 0, ownWorst: "none", inherited: r.own + r.inherited, inheritedWorst },
    });
    edges.push({ from: `lot:${p.lot_id}`, to: key, kind: "consumed", mass: p.mass_kg });
  }
  for (const n of nodes.values()) sized(n, n.type === "lot" ? lotText(n) : n.type === "tx" ? txText(n) : productText(n));
  return { lotId, nodes, edges, ...layout(nodes, edges, availableWidth) };
}

function layout(nodes, edges, availableWidth) {
  const preds = new Map([...nodes.keys()].map((k) => [k, []]));
  const succs = new Map([...nodes.keys()].map((k) => [k, []]));
  for (const e of edges) {
    succs.get(e.from).push(e.to);
    preds.get(e.to).push(e.from);
  }
  // Columns by the longest path from the sources (Kahn's order; custody's genealogy has no cycles).
  const indeg = new Map([...nodes.keys()].map((k) => [k, preds.get(k).length]));
  const queue = [...nodes.keys()].filter((k) => indeg.get(k) === 0);
  const col = new Map(queue.map((k) => [k, 0]));
  while (queue.length) {
    const k = queue.shift();
    for (const t of succs.get(k)) {
      col.set(t, Math.max(col.get(t) ?? 0, col.get(k) + 1));
      indeg.set(t, indeg.get(t) - 1);
      if (indeg.get(t) === 0) queue.push(t);
    }
  }
  for (const k of nodes.keys()) if (!col.has(k)) col.set(k, 0);
  const products = [...nodes.values()].filter((n) => n.type === "product");
  if (products.length) { // products all in the last column, on the right
    const last = Math.max(0, ...[...nodes.values()].filter((n) => n.type !== "product").map((n) => col.get(n.key))) + 1;
    for (const p of products) col.set(p.key, last);
  }
  const ncols = Math.max(0, ...col.values()) + 1;
  const columns = Array.from({ length: ncols }, () => []);
  const initial = [...nodes.values()].sort((a, b) => (a.lot?.depth ?? 0) - (b.lot?.depth ?? 0) || a.key.localeCompare(b.key));
  for (const n of initial) columns[col.get(n.key)].push(n.key);
  // A few barycentre sweeps, left to right then back, to keep edges short and crossings few.
  const pos = new Map();
  const index = () => columns.forEach((c) => c.forEach((k, i) => pos.set(k, i)));
  index();
  const bary = (k, around) => {
    const ns = around.get(k);
    return ns.length ? ns.reduce((a, n) => a + pos.get(n), 0) / ns.length : pos.get(k);
  };
  for (let iter = 0; iter < 4; iter++) {
    for (let c = 1; c < ncols; c++) { columns[c].sort((a, b) => bary(a, preds) - bary(b, preds)); index(); }
    for (let c = ncols - 2; c >= 0; c--) { columns[c].sort((a, b) => bary(a, succs) - bary(b, succs)); index(); }
  }
  // Columns spread over the available width, within limits (a graph too wide for it scrolls).
  const cell = Math.max(...Object.values(WIDTH));
  const spread = ncols > 1 ? (availableWidth - MARGIN.left - MARGIN.right - cell) / (ncols - 1) - cell : MAX_GAP;
  const colStep = cell + Math.max(MIN_GAP, Math.min(MAX_GAP, spread));
  const heights = columns.map((c) => c.reduce((a, k) => a + nodes.get(k).h, 0) + Math.max(0, c.length - 1) * ROW_GAP);
  const tallest = Math.max(0, ...heights);
  columns.forEach((c, ci) => {
    let y = MARGIN.top + (tallest - heights[ci]) / 2;
    for (const k of c) {
      const n = nodes.get(k);
      n.col = ci;
      n.x = MARGIN.left + ci * colStep + (cell - n.w) / 2;
      n.y = y;
      y += n.h + ROW_GAP;
    }
  });
  return {
    columns,
    colStep,
    cell,
    width: MARGIN.left + Math.max(0, ncols - 1) * colStep + cell + MARGIN.right,
    height: MARGIN.top + tallest + MARGIN.bottom,
  };
}

function columnTitle(keys, nodes) {
  const ns = keys.map((k) => nodes.get(k));
  if (ns.every((n) => n.type === "product")) return "Products";
  if (ns.every((n) => n.type === "tx")) return [...new Set(ns.map((n) => title(n.kind)))].join(" · ");
  if (ns.every((n) => n.type === "lot" && (n.lot.origin?.kind === "mine" || n.lot.origin?.kind === "external"))) {
    return ns.some((n) => n.lot.origin?.kind === "mine") ? "Mines · origin lots" : "Origin lots";
  }
  const forms = [...new Set(ns.filter((n) => n.type === "lot").map((n) => title(n.lot.form)))];
  return forms.length ? `Lots · ${forms.join(", ")}` : "";
}

function riskClass(r) {
  const rating = r.rating === "unknown" ? "unknown" : RANK[r.ownWorst] >= RANK[r.inheritedWorst] ? r.ownWorst : r.inheritedWorst;
  return { rating, mode: r.own ? "own" : r.inherited ? "inherited" : "clean" };
}

function texts(n, { x, anchor = "start" }) {
  return n.lines.map(([cls, t], i) => s("text", { class: cls, x, y: n.y + 20 + i * LINE, "text-anchor": anchor }, t));
}

function lotNode(n) {
  const { lot } = n;
  const { rating, mode } = riskClass(n.risk);
  const label = `Lot ${lot.lot_id}: ${n.lines.slice(1).map(([, t]) => t).join("; ")}`;
  return s("a", {
    href: `#/lots/${encodeURIComponent(lot.lot_id)}`, class: `node node-lot risk-${rating} mode-${mode}${n.focus ? " focus" : ""}`,
    "aria-label": label,
    dataset: {
      node: "lot", lotId: lot.lot_id, originKind: lot.origin?.kind, originParticipant: lot.origin?.participant_id,
      risk: n.risk.rating, focus: n.focus ? "true" : null, side: n.side,
    },
  },
  s("title", {}, label),
  s("rect", { class: "box", x: n.x, y: n.y, width: n.w, height: n.h, rx: 6 }),
  s("rect", { class: "bar", x: n.x, y: n.y, width: 6, height: n.h, rx: 3 }),
  texts(n, { x: n.x + 15 }));
}

function txNode(n) {
  const state = !n.smelter ? "neutral" : n.rmap === "conformant" ? "ok" : "warn";
  const label = `${title(n.kind)} by ${n.actorName || n.actor} (${n.actorKind || "participant"}); ${n.lines.at(-1)[1]}`;
  return s("a", {
    href: `#/participants/${encodeURIComponent(n.actor)}`, class: `node node-tx tx-${state}`, "aria-label": label,
    dataset: {
      node: "transformation", transformationId: n.id, kind: n.kind, actor: n.actor, actorKind: n.actorKind,
      smelter: n.smelter ? n.actor : null, rmap: n.smelter ? n.rmap || "none" : null,
    },
  },
  s("title", {}, label),
  s("rect", { class: "box", x: n.x, y: n.y, width: n.w, height: n.h, rx: 16 }),
  texts(n, { x: n.x + n.w / 2, anchor: "middle" }));
}

function productNode(n) {
  const p = n.product;
  const { rating, mode } = riskClass(n.risk);
  const label = `Product ${p.product}, made by ${n.byName || p.by} from ${fmtMass(p.mass_kg)} of lot ${p.lot_id}; ${riskLines(n.risk).join("; ")}`;
  return s("a", {
    href: `#/participants/${encodeURIComponent(p.by)}`, class: `node node-product risk-${rating} mode-${mode}`, "aria-label": label,
    dataset: { node: "product", consumptionId: p.consumption_id, consumedLot: p.lot_id, risk: rating },
  },
  s("title", {}, label),
  s("rect", { class: "box", x: n.x, y: n.y, width: n.w, height: n.h, rx: 2 }),
  s("rect", { class: "bar", x: n.x, y: n.y, width: 6, height: n.h, rx: 2 }),
  texts(n, { x: n.x + 15 }));
}

function edgeGeometry(a, b, { colStep, cell, nearTarget }) {
  const x1 = a.x + a.w;
  const y1 = a.y + a.h / 2;
  const x2 = b.x;
  const y2 = b.y + b.h / 2;
  const dx = Math.max(30, Math.min((x2 - x1) / 2, colStep / 2));
  const px = [x1, x1 + dx, x2 - dx, x2];
  const py = [y1, y1, y2, y2];
  const at = (p, t) => (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t ** 2 * p[2] + t ** 3 * p[3];
  // The label sits mid-gap at the end that is this edge's own: after the source for a transformation's inputs,
  // before the target for its outputs and for products (long edges pass behind the columns between).
  const gapMid = (colStep - cell) / 2 + (cell - (nearTarget ? b.w : a.w)) / 2;
  const want = nearTarget ? x2 - gapMid : x1 + gapMid;
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 30; i++) {
    const mid = (lo + hi) / 2;
    if (at(px, mid) < want) lo = mid;
    else hi = mid;
  }
  return { d: `M${x1},${y1} C${px[1]},${y1} ${px[2]},${y2} ${x2 - 6},${y2}`, lx: at(px, lo), ly: at(py, lo) };
}

/** Draw `model` into `container`, replacing what was there. Fits the width when it nearly does, else scrolls. */
export function renderGraph(container, model, availableWidth = 1200) {
  const { nodes, edges, width, height } = model;
  const svg = s("svg", {
    class: `trace-graph${width <= availableWidth * 1.1 ? " fit" : ""}`, width, height, viewBox: `0 0 ${width} ${height}`,
    role: "group", "aria-label": `Trace of lot ${model.lotId}: ${nodes.size} nodes, origins on the left, products on the right`,
    dataset: { lotId: model.lotId },
  });
  svg.append(s("defs", {}, s("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
  model.columns.forEach((keys, ci) => {
    svg.append(s("text", { class: "col-title", x: MARGIN.left + ci * model.colStep, y: 22 }, columnTitle(keys, nodes)));
  });
  const edgeLayer = s("g", { class: "edges" });
  const labelLayer = s("g", { class: "edge-labels" });
  for (const e of edges) {
    const a = nodes.get(e.from);
    const b = nodes.get(e.to);
    const g = edgeGeometry(a, b, { colStep: model.colStep, cell: model.cell, nearTarget: a.type === "tx" || b.type === "product" });
    edgeLayer.append(s("path", { class: `edge edge-${e.kind}`, d: g.d, "marker-end": "url(#arrow)", dataset: { from: e.from, to: e.to, kind: e.kind } }));
    labelLayer.append(s("text", { class: "edge-label", x: g.lx, y: g.ly - 19, "text-anchor": "middle", dataset: { kind: e.kind } },
      s("tspan", { x: g.lx, class: "edge-kind" }, e.kind), s("tspan", { x: g.lx, dy: 13 }, fmtMass(e.mass))));
  }
  const nodeLayer = s("g", { class: "nodes" });
  for (const n of nodes.values()) nodeLayer.append(n.type === "lot" ? lotNode(n) : n.type === "tx" ? txNode(n) : productNode(n));
  svg.append(edgeLayer, nodeLayer, labelLayer);
  container.replaceChildren(svg);
  return svg;
}

/** The graph's nodes as a table: the accessible alternative to the drawing, and handy for copying. */
export function graphTable(model) {
  const cell = (...c) => h("td", {}, ...c);
  const rows = [...model.nodes.values()].sort((a, b) => a.col - b.col || a.y - b.y).map((n) => {
    if (n.type === "lot") {
      return h("tr", {}, cell(String(n.col + 1)), cell(n.lot.origin?.kind === "mine" ? "Mine lot" : "Lot"),
        cell(h("a", { href: `#/lots/${encodeURIComponent(n.lot.lot_id)}` }, n.lot.lot_id)),
        cell(n.lines.slice(1, -1).map(([, t]) => t).join(" · ")), cell(riskLines(n.risk).join("; ")));
    }
    if (n.type === "tx") {
      return h("tr", {}, cell(String(n.col + 1)), cell(title(n.kind)),
        cell(h("a", { href: `#/participants/${encodeURIComponent(n.actor)}` }, n.actorName || n.actor)),
        cell(`${n.inputs.size} in, ${n.outputs.size} out`), cell(n.smelter ? `RMAP then: ${n.rmap || "none"}` : "—"));
    }
    return h("tr", {}, cell(String(n.col + 1)), cell("Product"), cell(n.product.product),
      cell(`${fmtMass(n.product.mass_kg)} of ${n.product.lot_id}`), cell(riskLines(n.risk).join("; ")));
  });
  return h("div", { class: "table-wrap" }, h("table", { class: "data compact" },
    h("caption", { class: "visually-hidden" }, "Trace nodes by column"),
    h("thead", {}, h("tr", {}, ["Column", "Node", "Id / who", "What", "Risk"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows)));
}

// Small DOM and formatting helpers. Everything that reaches the page goes through text nodes or attributes:
// no innerHTML with data from the APIs.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === "dataset") for (const [dk, dv] of Object.entries(v)) { if (dv !== null && dv !== undefined) el.dataset[dk] = String(dv); }
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
}

/** h("a", {href: "#/x", class: "link"}, "text", child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export const SEVERITIES = ["critical", "high", "medium", "low", "info"];
export const RATINGS = ["critical", "high", "medium", "low", "info", "none"];

export const RULES = {
  undocumented_custody: "Undocumented custody",
  mass_mismatch: "Mass mismatch",
  seal_mismatch: "Seal mismatch",
  transit_overdue: "Transit overdue",
  time_contradiction: "Time contradiction",
  yield_exceeded: "Yield exceeded",
  beyond_remaining: "Beyond remaining mass",
  capacity_exceeded: "Mine capacity exceeded",
  backdated_origin: "Backdated origin",
  transit_through_cahra: "Transit through CAHRA",
  origin_in_cahra: "Origin in CAHRA",
  uncertified_asm_in_cahra: "Uncertified ASM in CAHRA",
  certified_asm_in_cahra: "Certified ASM in CAHRA",
  smelter_not_rmap_conformant: "Smelter not RMAP conformant",
  lsm_without_irma: "Industrial mine without IRMA",
  transit_region_unknown: "Transit region unknown",
  tag_mismatch: "Tag mismatch",
  origin_region_unknown: "Origin region unknown",
  unconfirmed_declared_origin: "Declared origin not confirmed",
  smelter_rmap_active: "Smelter RMAP Active (not yet conformant)",
  committed_asm_in_cahra: "CRAFT-committed ASM in CAHRA",
  lsm_irma_transparency: "Industrial mine at IRMA Transparency",
  origin_risk_factors: "Origin risk factors",
  coexistence_without_agreement: "ASM on title, no coexistence agreement",
  substantiated_grievance: "Substantiated grievance",
  unjudgeable_event: "Event audit could not judge",
};

export const KINDS = {
  mine: "Mine",
  trader: "Trader",
  smelter: "Smelter",
  refiner: "Refiner",
  component_manufacturer: "Component maker",
  manufacturer: "Manufacturer",
  recycler: "Recycler",
  operator: "Operator",
};

export const EVENT_TYPES = {
  "custody.lot.registered": "Registered at origin",
  "custody.lot.external_declared": "Declared from outside",
  "custody.lot.origin_confirmed": "Origin answered by the named mine",
  "custody.lot.shipped": "Shipped",
  "custody.lot.received": "Received",
  "custody.lot.transformed": "Transformed",
  "custody.lot.consumed": "Consumed",
  "custody.attempt.rejected": "Attempt refused",
};

export function ruleLabel(rule) {
  return RULES[rule] || String(rule || "").replaceAll("_", " ");
}

export function title(text) {
  const t = String(text ?? "").replaceAll("_", " ");
  return t.charAt(0).toUpperCase() + t.slice(1);
}

export function severityBadge(sev) {
  return h("span", { class: `badge sev sev-${sev}`, dataset: { severity: sev } }, title(sev));
}

export function ratingBadge(rating) {
  const label = rating === "none" ? "No risk flagged" : `${title(rating)} risk`;
  return h("span", { class: `badge sev sev-${rating}`, dataset: { rating } }, label);
}

export function statusBadge(status) {
  return h("span", { class: `badge status status-${status}`, dataset: { status } }, title(status));
}

const dateTime = new Intl.DateTimeFormat("en-GB", {
  year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", timeZone: "UTC",
});
const dateOnly = new Intl.DateTimeFormat("en-GB", { year: "numeric", month: "short", day: "2-digit", timeZone: "UTC" });
const timeOnly = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const kg = new Intl.NumberFormat("en-GB", { maximumFractionDigits: 3 });
let regions = null;
try { regions = new Intl.DisplayNames(["en"], { type: "region" }); } catch { regions = null; }

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : `${dateTime.format(d)} UTC`;
}

/** Compact, for table cells whose header says "(UTC)". */
export function fmtTimeShort(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dateTime.format(d).replace(",", "");
}

export function fmtDate(iso) {
  if (!iso) return "—";
  const d = new Date(iso.length === 10 ? `${iso}T00:00:00Z` : iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dateOnly.format(d);
}

export function fmtClock(date) {
  return timeOnly.format(date);
}

export function fmtMass(v) {
  return v === null || v === undefined ? "—" : `${kg.format(Number(v))} kg`;
}

export function countryName(code) {
  if (!code) return "—";
  try { return regions ? `${regions.of(code.toUpperCase())} (${code.toUpperCase()})` : code; } catch { return code; }
}

/** `<time>` with the full timestamp for assistive technology and as a tooltip. */
export function timeEl(iso, { short = false } = {}) {
  return h("time", { datetime: iso || "", title: iso || "" }, short ? fmtTimeShort(iso) : fmtTime(iso));
}

export function shortId(id, n = 8) {
  const t = String(id ?? "");
  return t.length > n + 1 ? `${t.slice(0, n)}…` : t;
}

/** A definition list from [label, value] pairs (values: strings or nodes). */
export function fields(pairs) {
  return h("dl", { class: "fields" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

export function emptyRow(cols, text) {
  return h("tr", { class: "empty" }, h("td", { colspan: cols }, text));
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

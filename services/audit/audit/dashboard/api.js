// The public APIs the dashboard reads: audit (this origin), custody and registry (URLs from config.json).
// Every call carries `Authorization: Bearer <token>`; the token lives in sessionStorage only (gone with the tab).

const TOKEN_KEY = "mcoc.dashboard.token";

export const config = { audit_url: "", custody_url: "", registry_url: "" };

export async function loadConfig() {
  const resp = await fetch("config.json", { cache: "no-store", headers: { Accept: "application/json" } });
  if (!resp.ok) throw new Error(`config.json: HTTP ${resp.status}`);
  Object.assign(config, await resp.json());
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  names.clear();
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  names.clear();
}

/** A 4xx/5xx answer, with its RFC 9457 problem body when there is one. */
export class ApiError extends Error {
  constructor(status, problem, url) {
    const detail = problem && (problem.detail || problem.title);
    super(detail ? `${detail} (HTTP ${status})` : `HTTP ${status} from ${url}`);
    this.status = status;
    this.problem = problem;
    this.url = url;
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

async function call(base, path, { method = "GET", params, body, signal } = {}) {
  const url = `${base}${path}${query(params)}`;
  const headers = { Accept: "application/json, application/problem+json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(url, {
      method, headers, signal, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { title: "Service unreachable", detail: `Could not reach ${base || "the audit service"}` }, url);
  }
  if (!resp.ok) {
    let problem = null;
    try { problem = await resp.json(); } catch { problem = null; }
    if (resp.status === 401) window.dispatchEvent(new CustomEvent("mcoc:unauthorized", { detail: problem }));
    throw new ApiError(resp.status, problem, url);
  }
  return resp.status === 204 ? null : resp.json();
}

function client(baseKey) {
  return {
    get: (path, params, opts = {}) => call(config[baseKey], path, { ...opts, params }),
    post: (path, body, opts = {}) => call(config[baseKey], path, { ...opts, method: "POST", body }),
  };
}

export const audit = client("audit_url");
export const custody = client("custody_url");
export const registry = client("registry_url");

/** Every page of a cursor-paginated list, up to `maxItems`. */
export async function all(api, path, params, maxItems = 2000) {
  const items = [];
  let cursor = null;
  do {
    const page = await api.get(path, { ...params, limit: 500, cursor });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < maxItems);
  return { items, truncated: Boolean(cursor) };
}

// Participant names, fetched once per token and shared by every page.
const names = new Map();

export function participant(id) {
  if (!id) return Promise.resolve(null);
  if (!names.has(id)) {
    names.set(id, registry.get(`/participants/${encodeURIComponent(id)}`).catch(() => null));
  }
  return names.get(id);
}

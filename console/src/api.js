// Every call to the API: the operator's token as `Authorization: Bearer`, the contract's envelope
// ({msg, code, data|info}) unwrapped, and its error (TY code + message) raised as an ApiError.

const TOKEN_KEY = "tingyu.token";

// The console lives at <root>/console/; the API's routes at <root>/...
export const ROOT = location.pathname.replace(/\/console(\/.*)?$/, "");

export class ApiError extends Error {
  constructor(code, msg, status) {
    super(`${code}: ${msg}`);
    this.code = code;
    this.msg = msg;
    this.status = status;
  }
}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || "",
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${token.get()}`, ...extra };
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// The body as the contract's envelope; anything else (a proxy's page) as an error a person reads.
function unwrap(status, text) {
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ApiError(`HTTP ${status}`, text.slice(0, 200) || "no answer", status);
  }
  // 401: no valid token, sign in again; 403 (a role or an area refused) is an error for the page to show.
  if (status === 401) onUnauthorized(body);
  if (body && body.code !== undefined && body.code !== 200) {
    const detail = body.detail && body.detail !== body.msg ? ` (${body.detail})` : "";
    throw new ApiError(body.tycode || body.code, `${body.msg || "error"}${detail}`, status);
  }
  if (status >= 400) throw new ApiError(`HTTP ${status}`, body.msg || text.slice(0, 200), status);
  return body;
}

export async function call(method, path, { params, json } = {}) {
  const init = { method, headers: headers() };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(`${ROOT}${path}${query(params)}`, init);
  } catch (exc) {
    throw new ApiError("NETWORK", `the API did not answer (${exc.message})`, 0);
  }
  return unwrap(response.status, await response.text());
}

export const get = (path, params) => call("GET", path, { params });

// An upload with progress events (fetch has none): onProgress(loaded, total).
export function upload(path, params, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${ROOT}${path}${query(params)}`);
    for (const [key, value] of Object.entries(headers())) xhr.setRequestHeader(key, value);
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.total || file.size);
    xhr.onerror = () => reject(new ApiError("NETWORK", "the upload was interrupted", 0));
    xhr.onload = () => {
      try {
        resolve(unwrap(xhr.status, xhr.responseText));
      } catch (exc) {
        reject(exc);
      }
    };
    const form = new FormData();
    form.append("file", file);
    xhr.send(form);
  });
}

// Job states of /task/status.
export const JOB_FINAL = new Set([3, 4]);

export async function jobs(ids) {
  if (!ids.length) return [];
  const body = await get("/task/status", { jobid: ids.join(",") });
  return body.info || [];
}

// A job's log lines (extension `/task/log`): [{time, service, level, message}], oldest first.
export async function jobLog(jobid) {
  const body = await get("/task/log", { jobid });
  return (body.data && body.data.lines) || [];
}

// The HTTP API and the WebSocket streams (docs/gateway.md), with the account's key from this
// tab's sessionStorage: sent as `Authorization: Bearer` on HTTP and as a WebSocket subprotocol
// on /ws/orders, never in a URL.

const KEY = "marketlog.key";

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
};

// An answer other than 2xx: the status and the API's `error` text exactly as it came.
export class ApiError extends Error {
  constructor(status, message, commandId) {
    super(message);
    this.status = status;
    this.commandId = commandId ?? null;
  }
}

async function send(method, path, body) {
  const headers = {};
  if (session.key) headers.Authorization = `Bearer ${session.key}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `the gateway did not answer: ${err.message}`);
  }
  if (response.ok) return response;
  const text = await response.text();
  let error = text;
  let commandId = null;
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed.error === "string") {
      error = parsed.error;
      commandId = parsed.command_id;
    }
  } catch {
    // not JSON (a proxy's page, say): shown as it came
  }
  throw new ApiError(response.status, error, commandId);
}

export async function call(method, path, body) {
  const response = await send(method, path, body);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

export async function fetchBlob(path) {
  return (await send("GET", path)).blob();
}

function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

// A stream that reconnects (after a second) until closed by us; `onOpen` runs on every
// (re)connection, so the caller can re-read what it may have missed.
export function stream(path, { onMessage, onOpen, onRefused, withKey = false }) {
  let socket = null;
  let stopped = false;
  let timer = null;
  const open = () => {
    const protocols = withKey ? ["marketlog", `marketlog.key.${session.key}`] : [];
    socket = new WebSocket(wsUrl(path), protocols);
    socket.onopen = () => onOpen && onOpen();
    socket.onmessage = (event) => onMessage(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (stopped) return;
      if (event.code >= 4400 && event.code < 4500) {
        // refused (unknown symbol, bad key): retrying will not help
        if (onRefused) onRefused(event.code - 4000, event.reason);
        return;
      }
      timer = setTimeout(open, 1000);
    };
  };
  open();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (socket) socket.close();
  };
}

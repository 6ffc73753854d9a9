// livepilot.js - the browser client of protocol v1 (JSON subprotocol), shared by
// /console and /creator. Message shapes and the error table come from protocol.js,
// which `livepilot schema` generates from the JSON Schema (never edited by hand).
//
// What it does for a page:
// - hello with the token, then join rooms (snapshot) and, after a reconnect,
//   resume each one from the last seq it saw (H3), so no event is missed;
// - reconnects by itself on a retryable close (4000-4499, or a dropped socket)
//   with exponential backoff and jitter; never on a terminal one (4500-4999);
// - commands get a fresh command_id; one not answered when the socket drops is
//   sent again with the same id after the reconnect (H1: applied at most once);
// - acks (and bag listings) resolve the command's promise, refusals reject it
//   with a RefusedError carrying the code and its meaning.
import { CLIENT_MESSAGES, CODES, RANGES, SUBPROTOCOL } from "./protocol.js";

export { CLIENT_MESSAGES, CODES, RANGES };

/** The documented range a code falls in ({low, high, kind, title, retryable}), or null. */
export function rangeOf(code) {
  return RANGES.find((r) => code >= r.low && code <= r.high) ?? null;
}

/** Whether a close code means "reconnect and resume" (anything but a terminal close
 * or a normal close this client asked for). */
export function shouldReconnect(closeCode) {
  const range = rangeOf(closeCode);
  if (range !== null) return range.retryable;
  return closeCode !== 1000; // 1001, 1006, 1011, 1012: the server or the network went away
}

/** A code's meaning in words, from the error table ("unknown error" otherwise). */
export function describe(code) {
  const known = CODES[String(code)];
  if (known) return known.message;
  const range = rangeOf(code);
  return range ? range.title : "unknown error";
}

/** A sentence a person can read: the table's meaning, and the server's detail if it adds one. */
export function humanReason(code, detail = "") {
  const meaning = describe(code);
  const sentence = meaning.charAt(0).toUpperCase() + meaning.slice(1);
  const extra = detail && detail !== meaning ? ` (${detail})` : "";
  return `${sentence}${extra}.`;
}

/** A command or join the server did not apply. */
export class RefusedError extends Error {
  constructor(code, detail = "") {
    super(humanReason(code, detail));
    this.code = code;
    this.codeName = CODES[String(code)]?.name ?? "UNKNOWN";
    this.detail = detail;
  }
}

/** A fresh id (Ids are [A-Za-z0-9_.:@-]{1,128}); works outside secure contexts too. */
export function newId(prefix = "c") {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** A client message of `type` with `fields`, checked against the generated shapes. */
export function message(type, fields = {}) {
  const shape = CLIENT_MESSAGES[type];
  if (!shape) throw new TypeError(`unknown client message type ${type}`);
  for (const key of Object.keys(fields)) {
    if (!shape.fields.includes(key)) throw new TypeError(`${type} has no field ${key}`);
  }
  for (const key of shape.required) {
    if (fields[key] === undefined || fields[key] === null) {
      throw new TypeError(`${type} needs ${key}`);
    }
  }
  return { type, ...fields };
}

/** The default /ws URL of the page's own origin. */
export function defaultUrl(loc = window.location) {
  return `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}/ws`;
}

/**
 * A protocol v1 session that survives reconnects.
 *
 * Dispatches CustomEvents (detail = the server message unless said otherwise):
 * "state" ({state, attempt, delay}), "welcome", "snapshot", "event", "resumed",
 * "presence", "notification", "access_changed", "room_error" ({room, code, message}),
 * "error", "closed" ({code, reason, terminal}).
 */
export class Client extends EventTarget {
  constructor({ token, url = defaultUrl(), client = "livepilot-web",
                baseDelayMs = 200, maxDelayMs = 5000 } = {}) {
    super();
    this.token = token;
    this.url = url;
    this.clientName = client;
    this.baseDelayMs = baseDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.state = "idle";
    this.actor = null;
    this.rooms = new Map(); // room -> {lastSeq: number|null, waiting: {resolve, reject}|null}
    this.pending = new Map(); // command_id -> {frame, room, resolve, reject}
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.heartbeat = null;
    this.lastHeard = 0;
    this._welcomed = null;
  }

  /** Connect; resolves with the first welcome, rejects if the first try is refused. */
  start() {
    this._welcomed = {};
    const promise = new Promise((resolve, reject) => {
      this._welcomed.resolve = resolve;
      this._welcomed.reject = reject;
    });
    this._open();
    return promise;
  }

  /** Close for good (no reconnect). */
  stop() {
    this._setState("closed");
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    if (this.ws) this.ws.close(1000, "bye");
  }

  /** Join a room; resolves with its snapshot, rejects with RefusedError. */
  join(room) {
    return new Promise((resolve, reject) => {
      this.rooms.set(room, { lastSeq: null, waiting: { resolve, reject } });
      if (this.state === "open") this._send(message("join", { room }));
    });
  }

  /** Leave a room (no more events of it). */
  leave(room) {
    this.rooms.delete(room);
    if (this.state === "open") this._send(message("leave", { room }));
  }

  /** The last seq seen in a room (null before its snapshot). */
  lastSeq(room) {
    return this.rooms.get(room)?.lastSeq ?? null;
  }

  /** Send a room command; resolves with its ack (or bag listing), rejects with RefusedError. */
  command(type, fields) {
    const frame = message(type, { command_id: newId(), ...fields });
    return new Promise((resolve, reject) => {
      this.pending.set(frame.command_id, { frame, room: frame.room, resolve, reject });
      if (this.state === "open") this._send(frame);
    });
  }

  /** Send any frame as is (a page's tests use it to forge one). */
  sendRaw(frame) {
    this._send(frame);
  }

  // --- the socket ---------------------------------------------------------------

  _setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, attempt: this.attempt, ...extra } }));
  }

  _open() {
    this._setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(this.url, [SUBPROTOCOL]);
    } catch (err) {
      this._closed(1006, String(err));
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.lastHeard = Date.now();
      this._send(message("hello", { token: this.token, client: this.clientName }));
    };
    ws.onmessage = (ev) => {
      this.lastHeard = Date.now();
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return; // not JSON: nothing this client can act on
      }
      this._receive(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws === ws) this._closed(ev.code, ev.reason);
    };
  }

  _send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  _closed(code, reason) {
    clearInterval(this.heartbeat);
    this.ws = null;
    if (this.state === "closed") return;
    // A token that expired stays expired: reconnecting with it cannot succeed.
    const terminal = !shouldReconnect(code) || code === 4003;
    if (terminal) {
      this._setState("closed");
      for (const p of this.pending.values()) p.reject(new RefusedError(code, reason));
      this.pending.clear();
      this.dispatchEvent(new CustomEvent("closed", { detail: { code, reason, terminal: true } }));
      if (this._welcomed) this._welcomed.reject(new RefusedError(code, reason));
      return;
    }
    this.dispatchEvent(new CustomEvent("closed", { detail: { code, reason, terminal: false } }));
    const ceiling = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** this.attempt);
    const delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2); // jitter: no herd
    this.attempt += 1;
    this._setState("reconnecting", { delay, code });
    this.timer = setTimeout(() => this._open(), delay);
  }

  _welcome(msg) {
    this.actor = msg.actor;
    this.attempt = 0;
    this._setState("open");
    const beat = Math.max(1, msg.limits?.heartbeat_s ?? 20) * 1000;
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastHeard > 3 * beat) {
        this.ws?.close(4000, "no answer"); // dead socket: reconnect and resume
      } else {
        this._send(message("ping", { nonce: 0 }));
      }
    }, beat);
    for (const [room, entry] of this.rooms) {
      if (entry.lastSeq === null) this._send(message("join", { room }));
      else this._send(message("resume", { room, last_seq: entry.lastSeq }));
    }
    for (const p of this.pending.values()) this._send(p.frame); // same command_id (H1)
    this.dispatchEvent(new CustomEvent("welcome", { detail: msg }));
    if (this._welcomed) {
      this._welcomed.resolve(msg);
      this._welcomed = null;
    }
  }

  _receive(msg) {
    switch (msg.type) {
      case "welcome":
        this._welcome(msg);
        return;
      case "snapshot": {
        const entry = this.rooms.get(msg.room);
        if (!entry) return;
        entry.lastSeq = msg.seq;
        if (entry.waiting) {
          entry.waiting.resolve(msg);
          entry.waiting = null;
        }
        break;
      }
      case "event": {
        const entry = this.rooms.get(msg.room);
        if (!entry) return;
        if (entry.lastSeq !== null && msg.seq <= entry.lastSeq) return; // seen already
        entry.lastSeq = msg.seq;
        break;
      }
      case "ack":
      case "bag_listing":
      case "refused": {
        const p = this.pending.get(msg.command_id);
        if (!p) return;
        this.pending.delete(msg.command_id);
        if (msg.type === "refused") p.reject(new RefusedError(msg.code, msg.message));
        else p.resolve(msg);
        break;
      }
      case "error":
        if (msg.room) {
          const entry = this.rooms.get(msg.room);
          if (entry && !msg.retryable) {
            this.rooms.delete(msg.room);
            entry.waiting?.reject(new RefusedError(msg.code, msg.message));
          }
          this.dispatchEvent(new CustomEvent("room_error", { detail: msg }));
          return;
        }
        break;
      case "access_changed":
        if (msg.status !== "granted") this._accessEnded(msg);
        break;
      default:
        break;
    }
    this.dispatchEvent(new CustomEvent(msg.type, { detail: msg }));
  }

  /** Access to a creator ended: that creator's room is gone for this session. */
  _accessEnded(msg) {
    const room = msg.room ?? msg.creator;
    this.rooms.delete(room);
    for (const [id, p] of this.pending) {
      if (p.room === room) {
        this.pending.delete(id);
        p.reject(new RefusedError(203, `access ${msg.status}`));
      }
    }
  }
}

/** JSON over HTTP with the bearer token: resolves with the body, rejects with RefusedError
 * (whose `status` is the HTTP status, e.g. 404 for an endpoint this hub does not have). */
export async function api(token, method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${token}` } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const err = new RefusedError(data?.code ?? 502, data?.message ?? response.statusText);
    err.status = response.status;
    throw err;
  }
  return data;
}

// A small rosbridge v2 client for ws_agent: reconnects by itself (capped, jittered backoff), restores
// every subscription after a reconnect, decodes binary msgpack frames (publish and camera "frame"),
// and turns call_service into a Promise. Only what the touch panel and the console need; roslibjs
// works against the same agent, this file just avoids shipping third-party code to an offline site.
import { decode } from "./msgpack.js";

const BACKOFF_FIRST_MS = 300;
const BACKOFF_MAX_MS = 4000;
const SERVICE_TIMEOUT_MS = 8000;

export class RosClient extends EventTarget {
  constructor({ url, token = "" }) {
    super();
    this.url = token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url;
    this.state = "connecting";
    this.attempt = 0;
    this.connectedAt = 0;
    this.reconnects = 0;
    this.received = 0;
    this._subs = new Map(); // topic -> {opts, callbacks:Set}
    this._calls = new Map(); // id -> {resolve, timer, service}
    this._ids = 0;
    this._ws = null;
    this._timer = null;
    this._closed = false;
    addEventListener("online", () => this._retryNow());
    this._open();
  }

  get connected() { return this.state === "open"; }

  /** Subscribe ``topic``; ``cb(msg, robot, raw)``. Returns a function that unsubscribes this callback. */
  subscribe(topic, opts, cb) {
    let sub = this._subs.get(topic);
    if (!sub) {
      sub = { opts: { compression: "msgpack", ...opts }, callbacks: new Set(), id: `s${++this._ids}` };
      this._subs.set(topic, sub);
      sub.callbacks.add(cb);
      this._sendSubscribe(topic, sub);
    } else {
      sub.callbacks.add(cb);
    }
    return () => {
      sub.callbacks.delete(cb);
      if (sub.callbacks.size === 0 && this._subs.get(topic) === sub) {
        this._subs.delete(topic);
        this._send({ op: "unsubscribe", topic, id: sub.id });
      }
    };
  }

  /** Change the options (throttle_rate, queue_length...) of a subscribed topic; the agent applies the
   * latest subscribe of a topic to all its callbacks. */
  setOptions(topic, opts) {
    const sub = this._subs.get(topic);
    if (!sub) return;
    sub.opts = { ...sub.opts, ...opts };
    this._sendSubscribe(topic, sub);
  }

  /** Publish without advertising first (ws_agent accepts ``type`` on publish). False if not connected. */
  publish(topic, type, msg) {
    return this._send({ op: "publish", topic, type, msg });
  }

  /** Resolves {ok, values, error}; never rejects (a dropped link or a timeout is ok:false). */
  callService(service, type, args = {}, timeoutMs = SERVICE_TIMEOUT_MS) {
    const id = `call${++this._ids}`;
    return new Promise((resolve) => {
      if (!this.connected) { resolve({ ok: false, error: "not connected" }); return; }
      const timer = setTimeout(() => this._finish(id, { ok: false, error: `no answer within ${timeoutMs / 1000}s` }),
        timeoutMs);
      this._calls.set(id, { resolve, timer, service });
      this._send({ op: "call_service", id, service, type, args });
    });
  }

  close() {
    this._closed = true;
    clearTimeout(this._timer);
    if (this._ws) this._ws.close();
  }

  // ------------------------------------------------------------------ internals
  _open() {
    this._setState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this._scheduleReconnect();
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    ws.onopen = () => {
      if (this.connectedAt) this.reconnects += 1;
      this.attempt = 0;
      this.connectedAt = Date.now();
      this._setState("open");
      for (const [topic, sub] of this._subs) this._sendSubscribe(topic, sub);
    };
    ws.onmessage = (ev) => this._onMessage(ev.data);
    ws.onclose = () => {
      if (this._ws !== ws) return;
      this._ws = null;
      for (const id of [...this._calls.keys()]) this._finish(id, { ok: false, error: "connection lost" });
      if (!this._closed) this._scheduleReconnect();
    };
    ws.onerror = () => {}; // onclose follows
  }

  _scheduleReconnect() {
    this._setState("closed");
    this.attempt += 1;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.min(this.attempt - 1, 6));
    const delay = base * (0.7 + 0.6 * Math.random());
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._open(), delay);
  }

  _retryNow() {
    if (this.state === "closed" && !this._closed) {
      clearTimeout(this._timer);
      this._open();
    }
  }

  _setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, attempt: this.attempt } }));
  }

  _send(obj) {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN) return false;
    this._ws.send(JSON.stringify(obj));
    return true;
  }

  _sendSubscribe(topic, sub) {
    const o = sub.opts;
    const msg = { op: "subscribe", id: sub.id, topic, compression: o.compression };
    if (o.type) msg.type = o.type;
    if (o.throttle_rate !== undefined) msg.throttle_rate = o.throttle_rate;
    if (o.queue_length) msg.queue_length = o.queue_length;
    this._send(msg);
  }

  _finish(id, result) {
    const call = this._calls.get(id);
    if (!call) return;
    this._calls.delete(id);
    clearTimeout(call.timer);
    call.resolve(result);
  }

  _onMessage(data) {
    let m;
    try {
      m = typeof data === "string" ? JSON.parse(data) : decode(data);
    } catch (e) {
      this.dispatchEvent(new CustomEvent("status", { detail: { level: "error", msg: "undecodable frame: " + e } }));
      return;
    }
    this.received += 1;
    if (m.op === "publish" || m.op === "frame") {
      const sub = this._subs.get(m.topic);
      if (!sub) return;
      const payload = m.op === "frame" ? m : m.msg;
      for (const cb of sub.callbacks) {
        try { cb(payload, m.robot, m); } catch (e) { console.error(`handler of ${m.topic}:`, e); }
      }
    } else if (m.op === "service_response") {
      this._finish(m.id, m.result ? { ok: true, values: m.values } : { ok: false, error: String(m.values) });
    } else if (m.op === "status") {
      // A status answering one of our calls ends it; `answered` lets pages skip a second report of it.
      const answered = !!m.id && this._calls.has(m.id);
      if (answered) this._finish(m.id, { ok: false, error: m.msg });
      this.dispatchEvent(new CustomEvent("status", { detail: { ...m, answered } }));
    }
  }
}

/** The agent's WebSocket URL for this page (same host; token from the page URL or the login form). */
export function agentUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

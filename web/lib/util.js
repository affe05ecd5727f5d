// Small DOM and formatting helpers shared by the panel and the console.
export const SEVERITY = ["info", "warn", "error", "critical"];
export const STALE_MS = 3000; // data older than this is drawn as stale
export const OFFLINE_MS = 6000; // a robot silent this long is offline

export function $(sel, root = document) { return root.querySelector(sel); }

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== false && v != null) e.setAttribute(k, v === true ? "" : v);
  }
  e.append(...children);
  return e;
}

export function fmtAge(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "never";
  if (ms < 1500) return "now";
  const s = ms / 1000;
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

export function fmtNum(v, digits = 2, unit = "") {
  return Number.isFinite(v) ? `${v.toFixed(digits)}${unit}` : "–";
}

/** Seconds since the epoch of a ROS time dict ({sec, nanosec}). */
export function rosTime(t) { return t ? t.sec + t.nanosec * 1e-9 : NaN; }

/** Runs ``fn`` at most once per animation frame however often it is asked for. */
export function frameBatcher(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; fn(); });
  };
}

/** Sets text only when it changed (no layout work for unchanged cells). */
export function setText(node, text) { if (node.textContent !== text) node.textContent = text; }
export function setClass(node, cls, on) { if (node.classList.contains(cls) !== on) node.classList.toggle(cls, on); }

export function speedOf(odom) {
  const l = odom?.twist?.twist?.linear;
  return l ? Math.hypot(l.x, l.y) * Math.sign(l.x || 1) : NaN;
}

export function yawOf(q) { return Math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z)); }

export function newId(prefix) {
  const r = crypto.getRandomValues(new Uint32Array(2));
  return `${prefix}-${Date.now().toString(36)}-${r[0].toString(36)}${r[1].toString(36)}`;
}

let toastTimer = null;
/** A short message in the corner (service results, refusals). */
export function toast(text, kind = "") {
  let t = document.getElementById("toast");
  if (!t) { t = el("div", { id: "toast", class: "toast", role: "status" }); document.body.append(t); }
  t.textContent = text;
  t.className = `toast show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove("show"), 4000);
}

/** The "agent link lost, reconnecting" banner, driven by a RosClient's state events. */
export function connectionBanner(client, onChange = () => {}) {
  const b = el("div", { class: "banner", id: "conn-banner", role: "alert" });
  document.body.append(b);
  const update = () => {
    const down = client.state !== "open";
    b.classList.toggle("show", down);
    b.textContent = client.state === "connecting" && client.attempt === 0
      ? "Connecting to the agent..."
      : `Link to the agent lost - reconnecting (attempt ${client.attempt})... data shown is stale`;
    document.body.classList.toggle("disconnected", down);
    onChange(!down);
  };
  client.addEventListener("state", update);
  update();
}

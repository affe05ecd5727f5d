// Console clients for bench/fleet_scale.py: N WebSocket clients on one Node event loop, each subscribing
// what the operator console's fleet overview subscribes (web/console/console.js): every robot's odom
// (throttled to 2 Hz, queue 1), the fleet wildcards (battery, health, alerts, robot state, deploy
// status), registry and jobs events, all msgpack-compressed as the console asks. Prints READY once every
// client is subscribed, then measures the alert latency now - msg.stamp (the robot's wall clock when it
// raised the alert) until stdin closes; then prints one JSON line of results (before that, one line
// {alerts: n} for every line read from stdin, so the caller can wait for the last alerts to arrive). Uses `ws` and
// `@msgpack/msgpack` from test/browser/node_modules (npm ci --prefix test/browser).
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "..", "test", "browser", "package.json"));
const WebSocket = require("ws");
const { decode } = require("@msgpack/msgpack");

const [url, robotsFile, nClients] = process.argv.slice(2);
const robots = JSON.parse(readFileSync(robotsFile, "utf8"));
const WILD = ["battery_state", "health", "alerts", "robot_state", "deploy/status", "deploy/installed"];
const clients = [];
const lat = [];
let settled = 0; // clients open, or failed before opening (READY must come either way)
const settle = () => { settled += 1; if (settled === clients.length) console.log("READY"); };

function onMessage(c, data, isBinary) {
  const now = Date.now() / 1000;
  let msg;
  try {
    msg = isBinary ? decode(data) : JSON.parse(data.toString());
  } catch (e) {
    c.bad += 1;
    return;
  }
  if (msg.op !== "publish") { c.other += 1; return; }
  c.count += 1;
  const kind = msg.topic.endsWith("/alerts") ? "alerts" : msg.topic.split("/").pop();
  c.byKind[kind] = (c.byKind[kind] || 0) + 1;
  if (kind === "alerts" && msg.msg && msg.msg.stamp) {
    lat.push((now - (msg.msg.stamp.sec + msg.msg.stamp.nanosec / 1e9)) * 1000);
  }
}

for (let i = 0; i < Number(nClients); i++) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const c = { ws, count: 0, other: 0, bad: 0, byKind: {}, closed: false, opened: false, failed: false };
  clients.push(c);
  ws.on("open", () => {
    const sub = (topic, extra = {}) =>
      ws.send(JSON.stringify({ op: "subscribe", topic, compression: "msgpack", ...extra }));
    for (const id of robots) sub(`/robots/${id}/odom`, { throttle_rate: 500, queue_length: 1 });
    for (const w of WILD) sub(`/robots/*/${w}`, { queue_length: 200 });
    sub("/fleet/registry/events", { queue_length: 500 });
    sub("/fleet/jobs/events", { queue_length: 1000 });
    c.opened = true;
    settle();
  });
  ws.on("message", (data, isBinary) => onMessage(c, data, isBinary));
  ws.on("close", () => { c.closed = true; });
  ws.on("error", (e) => {
    console.error("client error", String(e));
    if (!c.opened && !c.failed) { c.failed = true; settle(); }
  });
}

process.stdin.resume();
process.stdin.setEncoding("utf8");
process.stdin.on("data", () => console.log(JSON.stringify({ alerts: lat.length }))); // any line: progress
process.stdin.on("end", () => {
  for (const c of clients) c.ws.close();
  lat.sort((a, b) => a - b);
  const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null);
  console.log(JSON.stringify({
    counts: clients.map((c) => c.count), by_kind: clients.map((c) => c.byKind),
    closed: clients.filter((c) => c.closed).length, failed: clients.filter((c) => c.failed).length, bad: clients.reduce((s, c) => s + c.bad, 0),
    alerts: lat.length, p50: q(0.5), p99: q(0.99), max: lat.length ? lat[lat.length - 1] : null,
  }));
  process.exit(0);
});

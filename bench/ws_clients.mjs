// Benchmark clients for bench/ws_fanout.py: N WebSocket clients on one Node event loop (cheap enough
// that the clients are not the bottleneck). Each subscribes to the given topics with the given
// compression, prints READY, then counts messages and the latency now - msg.header.stamp until stdin
// closes; then prints one JSON line of results. Uses `ws` and `@msgpack/msgpack` from
// test/browser/node_modules (npm ci --prefix test/browser).
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "..", "test", "browser", "package.json"));
const WebSocket = require("ws");
const { decode } = require("@msgpack/msgpack");
const { decode: cborDecode } = await import(require.resolve("cbor2").replace(/lib\/.*$/, "lib/index.js"));

const [url, topicsFile, compression, nClients, queueLength = "10"] = process.argv.slice(2);
const topics = JSON.parse(readFileSync(topicsFile, "utf8"));
const clients = [];
const lat = [];
let ready = 0;

const SAMPLE_BINARY = 10; // binary frames are all publishes: count each, decode every 10th for latency

function onMessage(c, data, isBinary) {
  const now = (performance.timeOrigin + performance.now()) * 1e6;
  let msg;
  if (isBinary) {
    c.count += 1;
    if (c.count % SAMPLE_BINARY !== 0) return;
    msg = compression === "cbor" ? cborDecode(new Uint8Array(data)) : decode(data);
  } else {
    msg = JSON.parse(data.toString());
    if (msg.op !== "publish") { c.other += 1; return; }
    c.count += 1;
  }
  const st = (msg.msg.header || msg.msg).stamp; // Odometry, or the small Header-shaped message
  lat.push((now - (st.sec * 1e9 + st.nanosec)) / 1e6);
}

for (let i = 0; i < Number(nClients); i++) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const c = { ws, count: 0, other: 0 };
  clients.push(c);
  ws.on("open", () => {
    for (const t of topics) ws.send(JSON.stringify({ op: "subscribe", topic: t, compression, queue_length: Number(queueLength) }));
    ready += 1;
    if (ready === clients.length) console.log("READY");
  });
  ws.on("message", (data, isBinary) => onMessage(c, data, isBinary));
  ws.on("error", (e) => console.error("client error", String(e)));
}

process.stdin.resume();
process.stdin.on("end", () => {
  for (const c of clients) c.ws.close();
  lat.sort((a, b) => a - b);
  const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null);
  console.log(JSON.stringify({
    counts: clients.map((c) => c.count), other: clients.map((c) => c.other),
    p50: q(0.5), p99: q(0.99), max: lat.length ? lat[lat.length - 1] : null, n: lat.length,
  }));
  process.exit(0);
});

// One rosbridge-protocol WebSocket client for bench/ws_vs_rosbridge.py, the same for every server it
// compares (rosbridge_websocket, ws_agent, the naive baseline), so the client is never the difference.
// Subscribes to one std_msgs/String topic whose data starts with "<sec> <nanosec> <seq> " (or "warm "
// during the warm-up), prints READY, then answers stdin commands:
//   count  -> {"warm": n, "count": n}   (how far delivery has got; the bench waits on this)
//   end    -> one JSON line of results, then exits
// Latency = receive time - the publisher's stamp, for every message (JSON text or CBOR binary frames).
// Uses `ws` and `cbor2` from test/browser/node_modules (npm ci --prefix test/browser).
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "..", "test", "browser", "package.json"));
const WebSocket = require("ws");
const { decode: cborDecode } = await import(require.resolve("cbor2").replace(/lib\/.*$/, "lib/index.js"));

const [url, topic, type, compression, queueLength = "100"] = process.argv.slice(2);
const lat = [];
let warm = 0;
let count = 0;
let other = 0;
let lastSeq = -1;
let outOfOrder = 0;
let firstRx = null;
let lastRx = null;

function onMessage(data, isBinary) {
  const nowMs = performance.timeOrigin + performance.now();
  const msg = isBinary ? cborDecode(new Uint8Array(data)) : JSON.parse(data.toString());
  if (msg.op !== "publish" || msg.topic !== topic) { other += 1; return; }
  const text = msg.msg.data;
  if (text.startsWith("warm")) { warm += 1; return; }
  const [sec, nsec, seq] = text.split(" ", 3).map(Number);
  count += 1;
  if (seq <= lastSeq) outOfOrder += 1;
  lastSeq = seq;
  if (firstRx === null) firstRx = nowMs;
  lastRx = nowMs;
  lat.push(nowMs - (sec * 1e3 + nsec / 1e6));
}

const ws = new WebSocket(url, { perMessageDeflate: false });
ws.on("open", () => {
  ws.send(JSON.stringify({ op: "subscribe", id: "bench", topic, type, compression,
                           queue_length: Number(queueLength) }));
  console.log("READY");
});
ws.on("message", (data, isBinary) => onMessage(data, isBinary));
ws.on("error", (e) => { console.error("client error", String(e)); process.exit(2); });
ws.on("close", () => console.error("client: server closed the connection"));

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (line.trim() === "count") {
    console.log(JSON.stringify({ warm, count }));
    return;
  }
  lat.sort((a, b) => a - b);
  const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null);
  console.log(JSON.stringify({
    count, warm, other, out_of_order: outOfOrder, first_rx_ms: firstRx, last_rx_ms: lastRx,
    p50: q(0.5), p99: q(0.99), max: lat.length ? lat[lat.length - 1] : null,
  }));
  ws.terminate();
  process.exit(0);
});
rl.on("close", () => { ws.terminate(); process.exit(0); }); // the bench went away: never linger

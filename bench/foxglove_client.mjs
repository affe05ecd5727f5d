// Clients for bench/foxglove_vs_rosbridge.py: <n> connections to ws_agent of one kind, all subscribed to
// the odometry topic, every message decoded (a viewer has to decode it to draw it):
//   foxglove   @foxglove/ws-protocol client; CDR decoded with @foxglove/rosmsg2-serialization
//   json       rosbridge v2 subscribe (compression none); JSON.parse of each text frame
//   cbor       rosbridge v2 subscribe (compression cbor); cbor2 decode of each binary frame
// Prints READY once every connection has subscribed, then answers stdin lines:
//   count -> {"count": n}       end -> {"count": n, "first": ms, "last": ms, "errors": n} and exits
// Uses test/browser/node_modules (npm ci --prefix test/browser).
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "..", "test", "browser", "package.json"));
const WebSocket = require("ws");
const { FoxgloveClient } = require("@foxglove/ws-protocol");
const { parse } = require("@foxglove/rosmsg");
const { MessageReader } = require("@foxglove/rosmsg2-serialization");
const { decode: cborDecode } = await import(require.resolve("cbor2").replace(/lib\/.*$/, "lib/index.js"));

const [url, kind, topic, n = "1"] = process.argv.slice(2);
let count = 0, errors = 0, ready = 0, first = null, last = null;
const sockets = [];

function got(x) {
  const now = performance.timeOrigin + performance.now();
  if (x === undefined || x === null) { errors += 1; return; }
  count += 1;
  if (first === null) first = now;
  last = now;
}

function subscribed() {
  ready += 1;
  if (ready === Number(n)) console.log("READY");
}

for (let i = 0; i < Number(n); i++) {
  if (kind === "foxglove") {
    const ws = new WebSocket(url, [FoxgloveClient.SUPPORTED_SUBPROTOCOL], { perMessageDeflate: false });
    const client = new FoxgloveClient({ ws });
    const readers = new Map();
    client.on("advertise", (channels) => {
      for (const ch of channels) {
        if (ch.topic !== topic) continue;
        const sub = client.subscribe(ch.id);
        readers.set(sub, new MessageReader(parse(ch.schema, { ros2: true })));
        subscribed();
      }
    });
    client.on("message", ({ subscriptionId, data }) => {
      const reader = readers.get(subscriptionId);
      got(reader && reader.readMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)).pose);
    });
    sockets.push(client);
  } else {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.on("open", () => {
      ws.send(JSON.stringify({ op: "subscribe", id: "bench", topic, compression: kind === "cbor" ? "cbor" : "none" }));
      subscribed();
    });
    ws.on("message", (data, isBinary) => {
      const msg = isBinary ? cborDecode(new Uint8Array(data)) : JSON.parse(data.toString());
      got(msg.op === "publish" ? msg.msg.pose : null);
    });
    sockets.push(ws);
  }
}

createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "count") {
    console.log(JSON.stringify({ count }));
  } else if (line.trim() === "end") {
    console.log(JSON.stringify({ count, first, last, errors }));
    for (const s of sockets) s.close();
    process.exit(0);
  }
});

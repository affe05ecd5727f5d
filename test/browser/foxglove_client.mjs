// Usage: node foxglove_client.mjs <viewer ws url> <operator ws url> <topic prefix, "" or /robots/<id>>
// The real npm client @foxglove/ws-protocol against ws_agent: serverInfo and advertise received, every
// schema parsed with @foxglove/rosmsg (ros2), Odometry and LaserScan decoded from CDR with
// @foxglove/rosmsg2-serialization, cmd_vel refused for the viewer and moving the robot for the operator,
// an e-stop service call answered. Prints one JSON line with what it saw (the pytest side asserts).
import wsProtocol from "@foxglove/ws-protocol"; // CommonJS packages: default import, then destructure
import rosmsg from "@foxglove/rosmsg";
import serialization from "@foxglove/rosmsg2-serialization";
import WebSocket from "ws";

const { FoxgloveClient } = wsProtocol;
const { parse } = rosmsg;
const { MessageReader, MessageWriter } = serialization;

const [viewerUrl, operatorUrl, prefix = ""] = process.argv.slice(2);
const TIMEOUT_MS = 30000;

function open(url) {
  const ws = new WebSocket(url, [FoxgloveClient.SUPPORTED_SUBPROTOCOL]);
  const client = new FoxgloveClient({ ws });
  const state = { client, ws, channels: new Map(), services: new Map(), statuses: [], serverInfo: null,
                  readers: new Map(), parseErrors: [], handlers: new Map(), responses: new Map() };
  client.on("serverInfo", (info) => { state.serverInfo = info; });
  client.on("status", (s) => state.statuses.push(s));
  client.on("error", (e) => state.statuses.push({ level: 2, message: `client error: ${e}` }));
  client.on("advertise", (channels) => {
    for (const ch of channels) {
      state.channels.set(ch.topic, ch);
      try {
        state.readers.set(ch.id, new MessageReader(parse(ch.schema, { ros2: true })));
      } catch (e) {
        state.parseErrors.push(`${ch.topic}: ${e}`);
      }
    }
  });
  client.on("advertiseServices", (services) => { for (const s of services) state.services.set(s.name, s); });
  client.on("message", ({ subscriptionId, data }) => {
    const handler = state.handlers.get(subscriptionId);
    if (handler) handler(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  });
  client.on("serviceCallResponse", (r) => state.responses.set(r.callId, r));
  return state;
}

async function until(pred, what, ms = TIMEOUT_MS) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timeout waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function subscribe(state, topic, onMsg) {
  const ch = state.channels.get(topic);
  if (!ch) throw new Error(`no channel ${topic}; have ${[...state.channels.keys()]}`);
  const reader = state.readers.get(ch.id);
  const id = state.client.subscribe(ch.id);
  state.handlers.set(id, (bytes) => onMsg(reader.readMessage(bytes)));
  return id;
}

const twistDef = parse(
  "geometry_msgs/msg/Vector3 linear\ngeometry_msgs/msg/Vector3 angular\n" +
  "================================================================================\n" +
  "MSG: geometry_msgs/msg/Vector3\nfloat64 x\nfloat64 y\nfloat64 z\n", { ros2: true });
const twist = (x) => new MessageWriter(twistDef).writeMessage({ linear: { x, y: 0, z: 0 }, angular: { x: 0, y: 0, z: 0.2 } });
const result = {};

try {
  // ---- viewer: channels, schemas, decoded telemetry, publish refused
  const viewer = open(viewerUrl);
  await until(() => viewer.serverInfo && viewer.channels.has(`${prefix}/odom`), "serverInfo and advertise");
  result.serverInfo = { name: viewer.serverInfo.name, capabilities: viewer.serverInfo.capabilities,
                        supportedEncodings: viewer.serverInfo.supportedEncodings };
  result.channels = [...viewer.channels.values()].map((c) => ({ topic: c.topic, schemaName: c.schemaName,
                                                               encoding: c.encoding, schemaEncoding: c.schemaEncoding }));
  result.parseErrors = viewer.parseErrors;
  result.viewerServices = [...viewer.services.keys()];
  let odom = null, scan = null;
  subscribe(viewer, `${prefix}/odom`, (m) => { odom = m; });
  subscribe(viewer, `${prefix}/scan`, (m) => { scan = m; });
  await until(() => odom && scan, "odom and scan messages");
  result.odom = { frame_id: odom.header.frame_id, child_frame_id: odom.child_frame_id,
                  x: odom.pose.pose.position.x, qw: odom.pose.pose.orientation.w };
  result.scan = { frame_id: scan.header.frame_id, ranges: scan.ranges.length, angle_min: scan.angle_min,
                  angle_max: scan.angle_max, range_max: scan.range_max };
  const before = viewer.statuses.length;
  const vch = viewer.client.advertise({ topic: `${prefix}/cmd_vel`, encoding: "cdr", schemaName: "geometry_msgs/msg/Twist" });
  await until(() => viewer.statuses.length > before, "the viewer's refusal");
  viewer.client.sendMessage(vch, twist(0.5));
  await until(() => viewer.statuses.length > before + 1, "the viewer's refused publish");
  result.viewerStatuses = viewer.statuses.slice(before).map((s) => ({ level: s.level, message: s.message }));
  viewer.client.close();

  // ---- operator: cmd_vel moves the simulated robot, e-stop answered
  const op = open(operatorUrl);
  await until(() => op.channels.has(`${prefix}/odom`), "operator advertise");
  let last = null;
  subscribe(op, `${prefix}/odom`, (m) => { last = m; });
  await until(() => last, "operator odom");
  const start = { ...last.pose.pose.position };
  const och = op.client.advertise({ topic: `${prefix}/cmd_vel`, encoding: "cdr", schemaName: "geometry_msgs/msg/Twist" });
  const moved = () => last && Math.hypot(last.pose.pose.position.x - start.x, last.pose.pose.position.y - start.y) > 0.05;
  const timer = setInterval(() => op.client.sendMessage(och, twist(0.5)), 100);
  try {
    await until(moved, "the robot moving under the operator's cmd_vel");
  } finally {
    clearInterval(timer);
  }
  result.moved = true;
  result.operatorErrors = op.statuses.filter((s) => s.level === 2).map((s) => s.message);
  const estop = op.services.get(`${prefix}/robot_sim/estop`);
  if (estop) {  // e-stop, then release it (the next scenario drives the same robot)
    const writer = new MessageWriter(parse(estop.request.schema, { ros2: true }));
    const reader = new MessageReader(parse(estop.response.schema, { ros2: true }));
    for (const [callId, data] of [[7, true], [8, false]]) {
      const req = writer.writeMessage({ data });
      op.client.sendServiceCallRequest({ serviceId: estop.id, callId, encoding: "cdr", data: new DataView(req.buffer) });
      await until(() => op.responses.has(callId), "the e-stop response");
      const r = op.responses.get(callId);
      result[data ? "estop" : "release"] = reader.readMessage(new Uint8Array(r.data.buffer, r.data.byteOffset, r.data.byteLength));
    }
  }
  op.client.close();
  console.log(JSON.stringify(result));
  process.exit(0);
} catch (e) {
  console.error(String((e && e.stack) || e), JSON.stringify(result));
  process.exit(1);
}

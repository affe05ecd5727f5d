// What a page knows about one robot, folded from the streams ws_agent relays. Plain data, no DOM.
// Every value keeps the time it arrived (performance.now() ms) so views can show its age and grey out
// stale values. Sources (names relative to /robots/<id>/):
//   battery_state (sensor_msgs/BatteryState)  odom (nav_msgs/Odometry)  alerts (Alert)
//   health (tree snapshot map)  robot_state (RobotState, when a node publishes it)
//   deploy/status (DeploymentStatus dict from deploy_service)
//   deploy/installed ({robot_id, stamp, packages: [{name, kind, version, versions, running,
//     activated_at}]} from deploy_service: on connect, after each job and every few seconds)
// and, on the console, the fleet registry's record (/fleet/registry/list and /fleet/registry/events,
// as console/registry.js normRecord shapes it: status online|offline, first_seen and last_seen in the
// control server's epoch seconds, and the robot's last announcement: site, host, software, packages,
// uptime_s, capabilities).
import { rosTime, speedOf, yawOf } from "./util.js";

export const MODES = ["unknown", "idle", "moving", "paused", "estop", "fault"];
export const DEPLOY_STATES = ["QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED"];
const MOVING_MPS = 0.02;
const HISTORY_LIMIT = 200;
// After this page changes e-stop/pause itself (and the robot's service confirmed it), robot_state messages
// already in flight still carry the old mode: ignore their mode for this long (robot_state comes at 1 Hz and
// at once on every change, so the robot's own word takes over right after).
const LOCAL_MODE_HOLD_MS = 1500;

export class RobotModel {
  constructor(id) {
    this.id = id;
    this.lastSeen = -Infinity; // performance.now() of the newest message of any kind
    this.battery = null; // {pct, voltage, t}
    this.odom = null; // {speed, yawRate, x, y, theta, t}
    this.commanded = null; // {v, t}
    this.health = null; // {snap, t}
    this.robotState = null; // {msg, t}
    this.deploy = null; // {status, t}
    this.installed = null; // {packages, t}: deploy_service's installed summary (active versions)
    this.registry = null; // the registry's record (see above), null if the registry does not know the robot
    this.alerts = new Map(); // alert_id -> alert dict (active ones)
    this.history = []; // every alert event, newest last (bounded)
    this._estopped = null; // true/false once known (service answer or robot_state)
    this._paused = null;
    this._localModeAt = -Infinity; // performance.now() of this page's last own e-stop/pause change
    this.version = 0; // bumps on every change (views redraw when it moved)
  }

  _touch(t) { this.lastSeen = t; this.version += 1; }

  // Set by the page itself (button pressed, service answered): newer than any robot_state in flight.
  get estopped() { return this._estopped; }
  set estopped(v) { this._estopped = v; this._localModeAt = performance.now(); }
  get paused() { return this._paused; }
  set paused(v) { this._paused = v; this._localModeAt = performance.now(); }

  onBattery(msg, t = performance.now()) {
    this.battery = { pct: msg.percentage, voltage: msg.voltage, t };
    this._touch(t);
  }

  onOdom(msg, t = performance.now()) {
    const p = msg.pose.pose;
    this.odom = {
      speed: speedOf(msg), yawRate: msg.twist.twist.angular.z, x: p.position.x, y: p.position.y,
      theta: yawOf(p.orientation), t,
    };
    this._touch(t);
  }

  onCommand(v, t = performance.now()) { this.commanded = { v, t }; this.version += 1; }

  onRobotState(msg, t = performance.now()) {
    this.robotState = { msg, t };
    if (t - this._localModeAt > LOCAL_MODE_HOLD_MS) {
      this._estopped = msg.mode === 4;
      this._paused = msg.mode === 3;
    }
    if (Number.isFinite(msg.commanded_linear_speed)) this.commanded = { v: msg.commanded_linear_speed, t };
    this._touch(t);
  }

  onDeploy(status, t = performance.now()) {
    this.deploy = { status, t };
    this._touch(t);
  }

  onInstalled(msg, t = performance.now()) {
    const packages = Array.isArray(msg?.packages) ? msg.packages.filter((p) => p && typeof p.name === "string") : [];
    packages.sort((a, b) => a.name.localeCompare(b.name));
    this.installed = { packages, t };
    this._touch(t);
  }

  /** A registry record: changes what the fleet view says about presence, not telemetry's lastSeen. */
  onRegistry(record) {
    this.registry = record;
    this.version += 1;
  }

  /** An Alert message. ``raisedAt`` (epoch s) is the robot's stamp of the raise, kept across the
   * acknowledge message that follows (it carries its own, later stamp). */
  onAlert(alert, t = performance.now()) {
    this.history.push({ ...alert, t, received: Date.now() });
    if (this.history.length > HISTORY_LIMIT) this.history.splice(0, this.history.length - HISTORY_LIMIT);
    const known = this.alerts.get(alert.alert_id);
    const raisedAt = known?.raisedAt || stampSeconds(alert.stamp);
    if (alert.active) this.alerts.set(alert.alert_id, { ...alert, t, raisedAt });
    else this.alerts.delete(alert.alert_id);
    this._touch(t);
  }

  /** Health tree snapshot: also the source of active faults raised before this page subscribed. */
  onHealth(snap, t = performance.now()) {
    this.health = { snap, t };
    const faulted = new Map();
    for (const c of checksOf(snap.root)) {
      if (c.name === "speed_drop" && c.values && c.values.commanded !== undefined) {
        const v = parseFloat(c.values.commanded);
        if (Number.isFinite(v) && (!this.commanded || t - this.commanded.t > 1500)) this.commanded = { v, t };
      }
      if ((c.state === "ACTIVE" || c.state === "CLEARING") && c.alert_id) faulted.set(c.alert_id, c);
    }
    for (const [id, c] of faulted) {
      const known = this.alerts.get(id);
      if (!known) {
        this.alerts.set(id, {
          alert_id: id, robot_id: this.id, code: c.code, severity: c.severity, message: c.message,
          source: `health_monitor_tree/${c.name}`, active: true, acknowledged: !!c.acknowledged_by,
          acknowledged_by: c.acknowledged_by || "", t, raisedAt: c.raised_stamp > 0 ? c.raised_stamp : NaN,
        });
      } else if (c.acknowledged_by && !known.acknowledged) {
        this.alerts.set(id, { ...known, acknowledged: true, acknowledged_by: c.acknowledged_by });
      }
    }
    for (const [id, a] of this.alerts) {  // cleared while the clear message was missed
      if (a.source?.startsWith("health_monitor_tree") && !faulted.has(id) && t - a.t > 3000) this.alerts.delete(id);
    }
    this._touch(t);
  }

  markAcknowledged(alertId, user) {
    const a = this.alerts.get(alertId);
    if (a) this.alerts.set(alertId, { ...a, acknowledged: true, acknowledged_by: user });
    this.version += 1;
  }

  get maxSeverity() {
    let m = -1;
    for (const a of this.alerts.values()) m = Math.max(m, a.severity);
    return m;
  }

  get unacknowledged() {
    let n = 0;
    for (const a of this.alerts.values()) if (!a.acknowledged) n += 1;
    return n;
  }

  /** Link to the control server: the health tree's nats_link check (it measures the link), else
   * RobotState.control_link_up (robot_sim leaves it false: it knows no link). */
  get linkUp() {
    const c = this.health && checksOf(this.health.snap.root).find((x) => x.kind === "nats_link");
    if (c) return c.state === "OK" || c.state === "PENDING";
    return this.robotState ? !!this.robotState.msg.control_link_up : null;
  }

  get mode() {
    if (this.robotState && this.robotState.msg.mode) return MODES[this.robotState.msg.mode] || "unknown";
    if (this.estopped) return "estop";
    if (this.paused) return "paused";
    if (this.maxSeverity >= 2) return "fault";
    if (!this.odom) return "unknown";
    return Math.abs(this.odom.speed) > MOVING_MPS || Math.abs(this.odom.yawRate) > MOVING_MPS ? "moving" : "idle";
  }

  /** Installed packages as "name version" (active versions), "" while unknown or none. */
  get installedText() {
    return (this.installed?.packages || []).map((p) => `${p.name} ${p.version}`).join(" · ");
  }

  /** What is deployed: deploy_service's installed summary first (it survives page loads), else the
   * robot's own RobotState summary, else what the last status seen by this page implies. */
  get deployedVersion() {
    if (this.installed?.packages.length) return this.installedText;
    if (this.robotState && this.robotState.msg.deployed_version) return this.robotState.msg.deployed_version;
    const s = this.deploy?.status;
    if (!s) return "";
    if (s.state === 2) return `${s.package_name}@${s.version}`;
    return s.previous_version ? `${s.package_name}@${s.previous_version}` : "";
  }
}

/** Epoch seconds of a stamp as it arrives: a ROS time dict ({sec, nanosec}) or a number. */
export function stampSeconds(stamp) {
  const s = typeof stamp === "number" ? stamp : rosTime(stamp);
  return Number.isFinite(s) && s > 0 ? s : NaN;
}

/** Milliseconds since an alert was raised: the robot's raise stamp when known (a page opened later
 * still shows the real age), else when this page first saw it. Never negative (clocks differ). */
export function alertAgeMs(alert, now = performance.now()) {
  if (Number.isFinite(alert.raisedAt)) return Math.max(0, Date.now() - alert.raisedAt * 1000);
  return now - alert.t;
}

export function checksOf(node, out = []) {
  if (!node) return out;
  if (node.code !== undefined) out.push(node);
  for (const child of node.children || []) checksOf(child, out);
  return out;
}

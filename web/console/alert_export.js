// "Export ±N min" of an alert: one MCAP file of what the control server keeps around it (the alert's
// messages and the robot's other alerts, its log lines, and its capture buffer when the robot is up and
// the alert recent), built by fleet_registry (ops/alert_export.py) and fetched from ws_agent in two steps
// (GET /fleet/alerts/export?alert_id&minutes starts it, GET <poll> returns the file once it is ready,
// see ws/alert_export_http.py). Offered to roles that may call fleet.alerts.export (operator, admin).
export const EXPORT_PATH = "/fleet/alerts/export";
export const MIN_MINUTES = 1;
export const MAX_MINUTES = 60;
const GIVE_UP_MS = 60000;

/** Whether the logged-in role may export (the agent checks again). */
export function canExport(session) {
  return Boolean(session?.fleet?.call?.[EXPORT_PATH]);
}

/** Minutes clamped to 1..60 (default 5 for anything that is not a number). */
export function clampMinutes(value) {
  const n = Math.round(Number(value));
  return Number.isFinite(n) && n > 0 ? Math.min(MAX_MINUTES, Math.max(MIN_MINUTES, n)) : 5;
}

async function errorText(resp) {
  const body = await resp.json().catch(() => ({}));
  const field = body.field ? ` (${body.field})` : "";
  return `${resp.status}: ${body.error || resp.statusText || "failed"}${field}`;
}

/** Starts the export, waits for it, and saves the file; resolves {name, bytes, notes} or throws an Error
 *  whose message is what the user should read. */
export async function exportAlert(session, alertId, minutes, onProgress = () => {}) {
  const headers = session.token ? { Authorization: `Bearer ${session.token}` } : {};
  const query = new URLSearchParams({ alert_id: alertId, minutes: String(clampMinutes(minutes)) });
  let resp = await fetch(`${EXPORT_PATH}?${query}`, { headers, cache: "no-store" });
  if (resp.status !== 202) throw new Error(await errorText(resp));
  const { poll, retry_ms: retryMs = 1000 } = await resp.json();
  const deadline = Date.now() + GIVE_UP_MS;
  for (;;) {
    onProgress("building the file...");
    await new Promise((res) => setTimeout(res, retryMs));
    resp = await fetch(poll, { headers, cache: "no-store" });
    if (resp.status !== 202) break;
    if (Date.now() > deadline) throw new Error("the export did not finish in time");
  }
  if (!resp.ok) throw new Error(await errorText(resp));
  const match = /filename="([A-Za-z0-9_.-]+)"/.exec(resp.headers.get("Content-Disposition") || "");
  const name = match ? match[1] : `alert-${alertId}.mcap`;
  let summary = {};
  try { summary = JSON.parse(resp.headers.get("X-Alert-Export") || "{}"); } catch { /* optional */ }
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  const a = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  return { name, bytes: blob.size, notes: summary.notes || [], included: summary.included || {} };
}

// The control server's fleet services as the console reaches them through ws_agent (fleet mode):
// registry, centralised logs and the jobs service. One place for the names, so a renamed service is
// one edit. Each call resolves {ok, values} or {ok: false, error} (RosClient.callService never rejects);
// jobs replies may carry the jobs service's own envelope ({ok, result} / {ok: false, code, error, field},
// see src/robot_platform/robot_platform/jobs/nats_api.py), which `jobsCall` unwraps.

export const FLEET = {
  registryList: ["/fleet/registry/list", "robot_platform/fleet/RegistryList"],
  registryEvents: "/fleet/registry/events",
  logsQuery: ["/fleet/logs/query", "robot_platform/fleet/LogsQuery"],
  logsLive: "/robots/*/logs",
  jobsCreate: ["/fleet/jobs/create", "robot_platform/fleet/JobsCreate"],
  jobsGet: ["/fleet/jobs/get", "robot_platform/fleet/JobsGet"],
  jobsList: ["/fleet/jobs/list", "robot_platform/fleet/JobsList"],
  jobsCancel: ["/fleet/jobs/cancel", "robot_platform/fleet/JobsCancel"],
  jobsCatalogue: ["/fleet/jobs/catalogue", "robot_platform/fleet/JobsCatalogue"],
  jobsEvents: "/fleet/jobs/events",
};

export const LOG_LEVELS = ["debug", "info", "warn", "error", "fatal"];
const LEVEL_ALIASES = { warning: "warn", critical: "fatal" };
const RCL_LEVELS = [[50, "fatal"], [40, "error"], [30, "warn"], [20, "info"], [10, "debug"]];

/** A log level name from a name ("WARN", "warning") or an rcl number (30); "info" if unknown. */
export function levelName(level) {
  if (typeof level === "number") return (RCL_LEVELS.find(([n]) => level >= n) || [0, "debug"])[1];
  const key = String(level || "").toLowerCase();
  const name = LEVEL_ALIASES[key] || key;
  return LOG_LEVELS.includes(name) ? name : "info";
}

/** Call one fleet service; a refusal or an error reply becomes {ok: false, error, code, field}. */
export async function fleetCall(client, [service, type], args = {}, timeoutMs = 10000) {
  const r = await client.callService(service, type, args, timeoutMs);
  if (!r.ok) return r;
  const v = r.values;
  if (v && typeof v === "object" && v.ok === false) {
    const field = v.field ? ` (field ${v.field})` : "";
    return { ok: false, error: `${v.code ? `${v.code}: ` : ""}${v.error || "failed"}${field}`, code: v.code, field: v.field };
  }
  return { ok: true, values: v && typeof v === "object" && "result" in v && v.ok === true ? v.result : v };
}

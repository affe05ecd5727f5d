// Who is using this page: GET /whoami on the agent (ws_agent, see README "ws_agent") gives the user,
// role, the role's subject rules, the agent's mode and robot. Pages hide or disable each control the
// role may not use; the agent refuses it anyway (this is convenience, not the security boundary).
const TOKEN_KEY = "rp.token";
const RETRY_MS = 2000;

export function pageToken() {
  const fromUrl = new URLSearchParams(location.search).get("token");
  if (fromUrl) return fromUrl;
  try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch { return ""; }
}

async function whoami(token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const resp = await fetch("/whoami", { headers, cache: "no-store" });
  const body = await resp.json().catch(() => ({}));
  return { status: resp.status, body };
}

/** Resolves once the agent answered with a principal; asks for a login when it has to. */
export async function loadSession(onWaiting = () => {}) {
  let token = pageToken();
  for (;;) {
    let r;
    try {
      r = await whoami(token);
    } catch {
      onWaiting("waiting for the agent...");
      await new Promise((res) => setTimeout(res, RETRY_MS));
      continue;
    }
    if (r.status === 200) return { ...r.body, token };
    if (r.status === 401) {
      token = await askLogin(r.body.login_required ? "Log in" : "Wrong user or secret");
      try { sessionStorage.setItem(TOKEN_KEY, token); } catch { /* private mode */ }
      continue;
    }
    onWaiting(`agent answered ${r.status}; retrying`);
    await new Promise((res) => setTimeout(res, RETRY_MS));
  }
}

function askLogin(title) {
  return new Promise((resolve) => {
    const box = document.createElement("form");
    box.className = "login";
    box.innerHTML = `<h2></h2><label>User <input name="user" autocomplete="username" required></label>
      <label>Secret <input name="secret" type="password" autocomplete="current-password" required></label>
      <button type="submit" class="btn">Log in</button>`;
    box.querySelector("h2").textContent = title;
    box.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const f = new FormData(box);
      box.remove();
      resolve(`${f.get("user")}:${f.get("secret")}`);
    });
    document.body.append(box);
    box.querySelector("input").focus();
  });
}

/** NATS wildcard match, as ws_agent's access.subject_matches. */
export function subjectMatches(pattern, subject) {
  const pt = pattern.split("."), st = subject.split(".");
  for (let i = 0; i < pt.length; i++) {
    if (pt[i] === ">") return i === pt.length - 1 && st.length > i;
    if (i >= st.length || (pt[i] !== "*" && pt[i] !== st[i])) return false;
  }
  return pt.length === st.length;
}

/** May this session publish (``action`` "publish") or call ("call") ``rosName`` on ``robot``? */
export function may(session, action, robot, rosName) {
  const kind = action === "call" ? "srv" : "cmd";
  const subject = `robots.${robot}.${kind}.${rosName.replace(/^\//, "").replaceAll("/", ".")}`;
  return (session.rules?.[action] || []).some((p) => subjectMatches(p, subject));
}

/** May this session call a control-server service (``/fleet/jobs/create``)? The agent's /whoami says so
 * per fleet name in fleet mode (``fleet.call``); otherwise the call rules are asked for the service's
 * subject (``/fleet/jobs/<op>`` is ``jobs.<op>``, other ``/fleet/a/b`` names ``fleet.a.b``). Pages
 * disable what this says no to; the agent refuses it anyway. */
export function mayFleet(session, service) {
  const verdict = session.fleet?.call?.[service];
  if (typeof verdict === "boolean") return verdict;
  const subject = service.startsWith("/fleet/jobs/") ? `jobs.${service.slice("/fleet/jobs/".length)}`
    : service.replace(/^\//, "").replaceAll("/", ".");
  return (session.rules?.call || []).some((p) => subjectMatches(p, subject));
}

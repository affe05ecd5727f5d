// Light or dark theme, chosen per user and kept in this browser (localStorage): bright shop floors want
// the light one, control rooms the dark one. <html data-theme="light"> switches common.css's colours.
const LAST_KEY = "rp.theme"; // last theme used in this browser: applied before the user is known
const userKey = (user) => `rp.theme.${user}`;
export const THEMES = ["dark", "light"];

function read(key) { try { return localStorage.getItem(key); } catch { return null; } }
function write(key, value) { try { localStorage.setItem(key, value); } catch { /* private mode */ } }

export function applyTheme(theme) {
  const t = THEMES.includes(theme) ? theme : "dark";
  if (t === "dark") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
  return t;
}

/** Without ``user``: the last theme used in this browser (before the login is known: no flash). With
 * ``user``: that user's own choice (dark if none) and ``button`` switches it (its label names the other). */
export function initTheme(user = "", button = null) {
  let theme = applyTheme(user ? read(userKey(user)) : read(LAST_KEY));
  if (!button) return theme;
  const label = () => { button.textContent = theme === "dark" ? "Light" : "Dark"; };
  label();
  button.addEventListener("click", () => {
    theme = applyTheme(theme === "dark" ? "light" : "dark");
    if (user) write(userKey(user), theme);
    write(LAST_KEY, theme);
    label();
    window.dispatchEvent(new Event("themechange"));
  });
  return theme;
}

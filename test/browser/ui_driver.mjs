// Usage: node ui_driver.mjs   (driven by test/test_web_ui.py over stdin/stdout, one JSON object a line)
// Drives Debian's headless Chromium (never a downloaded browser) with playwright-core. Commands:
//   {cmd:"open", page, url, width, height}     new page (own context: own sessionStorage)
//   {cmd:"goto", page, url}
//   {cmd:"close", page}                        closes the page and its context
//   {cmd:"eval", page, js}                     value of the JS expression
//   {cmd:"wait", page, js, ms}                 waits until the expression is truthy, returns its value
//   {cmd:"click", page, selector}              real mouse click at the element
//   {cmd:"mouse", page, x, y}                  real mouse click at page coordinates (canvas content)
//   {cmd:"pointer", page, selector, action}    "down": press the mouse on the element (and keep it
//                                              pressed), "up": release it where it is
//   {cmd:"fill", page, selector, text}         types into an input/textarea (clears it first; fires input)
//   {cmd:"check", page, selector, on}          ticks (on=true) or unticks a checkbox
//   {cmd:"select", page, selector, value}      picks an option of a <select>
//   {cmd:"dialogs", page, accept}              answer confirm()/alert() dialogs from now on (default:
//                                              dismissed, Playwright's default)
//   {cmd:"grant", page, permissions}           grants browser permissions (e.g. ["notifications"]) to the page's origin
//   {cmd:"viewport", page, width, height}
//   {cmd:"screenshot", page, path, fullPage}
//   {cmd:"report"}                             requests that left 127.0.0.1, page errors, console errors,
//                                              local responses with status 404 ("notFound": their URLs)
//   {cmd:"quit"}
// Every answer: {ok:true, value} or {ok:false, error}.
import { chromium } from "playwright-core";
import readline from "node:readline";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"],
});
const pages = new Map();
const acceptDialogs = new Set(); // page names whose dialogs are accepted
const external = [];
const errors = [];
const requests = { local: 0 };
const notFound = [];

async function open({ page: name, url, width = 1280, height = 800 }) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  page.on("request", (req) => {
    const u = new URL(req.url());
    if (u.protocol === "data:" || u.protocol === "blob:") return;
    if (u.hostname !== "127.0.0.1" && u.hostname !== "localhost") external.push(req.url());
    else requests.local += 1;
  });
  page.on("websocket", (ws) => {
    const host = new URL(ws.url()).hostname;
    if (host !== "127.0.0.1" && host !== "localhost") external.push(ws.url());
  });
  page.on("response", (resp) => { if (resp.status() === 404) notFound.push(resp.url()); });
  page.on("pageerror", (e) => errors.push(`${name}: pageerror: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`${name}: console: ${m.text()}`); });
  page.on("dialog", (d) => (acceptDialogs.has(name) ? d.accept() : d.dismiss()).catch(() => {}));
  pages.set(name, page);
  await page.goto(url);
  return true;
}

async function center(page, selector) {
  const box = await page.locator(selector).first().boundingBox();
  if (!box) throw new Error(`${selector}: not visible`);
  return [box.x + box.width / 2, box.y + box.height / 2];
}

const handlers = {
  open,
  goto: ({ page, url }) => pages.get(page).goto(url).then(() => true),
  close: async ({ page }) => {
    const p = pages.get(page);
    pages.delete(page);
    await p.context().close();
    return true;
  },
  eval: ({ page, js }) => pages.get(page).evaluate(js),
  wait: async ({ page, js, ms = 10000 }) => {
    const handle = await pages.get(page).waitForFunction(js, null, { timeout: ms, polling: 100 });
    return handle.jsonValue();
  },
  // Playwright's own timeout stays below the test's answer timeout, so a failed click answers with its
  // reason instead of arriving late as the answer to the next command.
  click: async ({ page, selector, ms = 10000 }) => {
    await pages.get(page).locator(selector).first().click({ timeout: ms });
    return true;
  },
  mouse: ({ page, x, y }) => pages.get(page).mouse.click(x, y).then(() => true),
  pointer: async ({ page, selector, action }) => {
    const p = pages.get(page);
    if (action === "down") {
      const [x, y] = await center(p, selector);
      await p.mouse.move(x, y);
      await p.mouse.down();
    } else {
      await p.mouse.up();
    }
    return true;
  },
  fill: async ({ page, selector, text, ms = 10000 }) => {
    await pages.get(page).locator(selector).first().fill(text, { timeout: ms });
    return true;
  },
  check: async ({ page, selector, on = true, ms = 10000 }) => {
    await pages.get(page).locator(selector).first().setChecked(on, { timeout: ms });
    return true;
  },
  select: async ({ page, selector, value, ms = 10000 }) => {
    await pages.get(page).locator(selector).first().selectOption(value, { timeout: ms });
    return true;
  },
  dialogs: ({ page, accept }) => {
    if (accept) acceptDialogs.add(page); else acceptDialogs.delete(page);
    return true;
  },
  grant: ({ page, permissions }) => {
    const p = pages.get(page);
    return p.context().grantPermissions(permissions, { origin: new URL(p.url()).origin }).then(() => true);
  },
  viewport: ({ page, width, height }) => pages.get(page).setViewportSize({ width, height }).then(() => true),
  screenshot: ({ page, path, fullPage = false }) => pages.get(page).screenshot({ path, fullPage }).then(() => path),
  report: () => ({ external, errors, localRequests: requests.local, notFound }),
};

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const msg = JSON.parse(line);
  if (msg.cmd === "quit") break;
  let answer;
  try {
    const handler = handlers[msg.cmd];
    if (!handler) throw new Error(`unknown command ${msg.cmd}`);
    answer = { ok: true, value: (await handler(msg)) ?? null };
  } catch (e) {
    answer = { ok: false, error: String((e && e.message) || e).slice(0, 2000) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
await browser.close();
process.exit(0);

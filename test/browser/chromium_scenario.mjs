// Usage: node chromium_scenario.mjs <page url> <screenshot path>
// Runs roslib_page.html in Debian's headless Chromium (never a downloaded browser build); prints the
// scenario result as JSON, plus every request that tried to leave 127.0.0.1.
import { chromium } from "playwright-core";

const [pageUrl, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"],
});
let code = 1;
const consoleLines = [];
try {
  const page = await browser.newPage();
  const external = [];
  page.on("request", (req) => {
    const host = new URL(req.url()).hostname;
    if (host !== "127.0.0.1" && host !== "localhost") external.push(req.url());
  });
  page.on("console", (m) => consoleLines.push(m.text()));
  page.on("pageerror", (e) => consoleLines.push("pageerror: " + e.message));
  await page.goto(pageUrl);
  await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 45000 });
  const result = await page.evaluate(() => window.__result);
  if (screenshot) await page.screenshot({ path: screenshot });
  console.log(JSON.stringify({ ...result, external, console: consoleLines.slice(-20) }));
  code = 0;
} catch (e) {
  console.error(String(e && e.stack || e));
  console.error("page console:\n" + consoleLines.join("\n"));
} finally {
  await browser.close();
}
process.exit(code);

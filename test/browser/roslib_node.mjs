// Usage: node roslib_node.mjs <ws url with token> [compression]; prints the scenario result as JSON.
import * as ROSLIB from "roslib";
import { runScenario } from "./scenario.mjs";

const [url, compression = "none"] = process.argv.slice(2);
try {
  const result = await runScenario(ROSLIB, { url, compression });
  console.log(JSON.stringify(result));
  process.exit(0);
} catch (e) {
  console.error(String(e && e.stack || e));
  process.exit(1);
}

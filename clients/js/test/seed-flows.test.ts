// The original product's README shows the JavaScript SDK in one command, run
// in the SDK's folder (section "7. JavaScript SDK quick start"):
//
//   node -e "import('./src/index.js').then(async ({ AionBDClient }) => { ... console.log(await c.live()); })"
//
// It is copied below (JS_QUICK_START) so this runs on a fresh clone; when the
// original README is at hand (../shared/seed-README.md next to the
// repository, as in the workspace this was written in) a test checks the copy
// is still exact. The snippet runs in a fresh node process in this package's
// folder against a real server with two substitutions: the address (the
// server listens on a free port) and the import path: the original SDK's
// './src/index.js' (plain JS source) becomes './dist/index.js', the entry
// of this package as built by `npm run build` (its source is TypeScript).
// That is the only JS SDK snippet of that README; it uses `AionBDClient`
// and `live()`, both ours. (The Python one: clients/python/tests/test_seed_flows.py.)
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, before, it } from "node:test";

import { PACKAGE_DIR, startServer, type Server } from "./helpers.js";

const SEED_README = resolve(PACKAGE_DIR, "../../../shared/seed-README.md");

// Verbatim from seed-README.md, "### 7. JavaScript SDK quick start" (run in sdk/js there).
const JS_QUICK_START = `node -e "import('./src/index.js').then(async ({ AionBDClient }) => { const c = new AionBDClient('http://127.0.0.1:8080'); console.log(await c.live()); })"`;

const ORIGINAL_ENTRY = "./src/index.js";
const OUR_ENTRY = "./dist/index.js"; // package.json "exports" / "main"
const ORIGINAL_URL = "http://127.0.0.1:8080";

/** The code of a `node -e "..."` command (double quotes, nothing the shell would expand inside). */
function nodeEvalCode(command: string): string {
  const m = /^node -e "([^"$`\\]*)"$/.exec(command);
  assert.ok(m, `not a plain node -e "..." command: ${command}`);
  return m[1]!;
}

let server: Server;
before(async () => {
  server = await startServer();
});
after(() => server.stop());

it("has the seed README's JS snippet verbatim", (t) => {
  if (!existsSync(SEED_README)) {
    t.skip(`${SEED_README} is absent (only the original workspace has it): the copy above is used`);
    return;
  }
  const text = readFileSync(SEED_README, "utf8");
  const commands = text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => /\bnode -e\b/.test(line));
  assert.deepEqual(commands, [JS_QUICK_START]);
});

it("points the import at this package's built entry", () => {
  const pkg = JSON.parse(readFileSync(join(PACKAGE_DIR, "package.json"), "utf8"));
  assert.equal(pkg.exports["."].import, OUR_ENTRY);
  assert.ok(existsSync(join(PACKAGE_DIR, OUR_ENTRY)), "build first (npm run build)");
  // "TypeScript typings are bundled with the JS SDK package."
  assert.ok(existsSync(join(PACKAGE_DIR, pkg.types)), pkg.types);
  assert.match(readFileSync(join(PACKAGE_DIR, "dist/client.d.ts"), "utf8"), /\blive\(\): Promise<LiveResponse>/);
});

it("runs the seed README's JS quick start", () => {
  const original = nodeEvalCode(JS_QUICK_START);
  assert.equal(original.split(ORIGINAL_ENTRY).length, 2);
  assert.equal(original.split(ORIGINAL_URL).length, 2);
  const code = original.replace(ORIGINAL_ENTRY, OUR_ENTRY).replace(ORIGINAL_URL, server.url);
  const r = spawnSync(process.execPath, ["-e", code], { cwd: PACKAGE_DIR, encoding: "utf8", timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\{ status: 'live', uptime_ms: \d+ \}\n$/);
});

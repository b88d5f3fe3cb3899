// The README's quick start, run verbatim (only the address changes) in a
// fresh node process against a fresh server.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, it } from "node:test";

import { PACKAGE_DIR, startServer, type Server } from "./helpers.js";

let server: Server;
before(async () => {
  server = await startServer();
});
after(() => server.stop());

it("runs the README quick start", () => {
  const readme = readFileSync(join(PACKAGE_DIR, "README.md"), "utf8");
  const section = readme.split("## Quick start")[1]!.split("\n## ")[0]!;
  const blocks = [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.equal(blocks.length, 1);
  assert.ok(blocks[0]!.includes("http://127.0.0.1:8080"));
  // Inside the package folder, so `import ... from "aionbd"` resolves to this package.
  const file = join(PACKAGE_DIR, "build-test", "readme-quickstart.mjs");
  writeFileSync(file, blocks[0]!.replace("http://127.0.0.1:8080", server.url));
  try {
    const r = spawnSync(process.execPath, [file], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /status: 'live'/);
    assert.match(r.stdout, /exact 1 \[ 1, 2 \]/);
    assert.match(r.stdout, /beta: 1/);
  } finally {
    rmSync(file);
  }
});

// The README's quick start and its backup example, run verbatim (only the
// address changes) in a fresh node process against a fresh server.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";

import { PACKAGE_DIR, startServer, type Server } from "./helpers.js";

let server: Server;
before(async () => {
  server = await startServer();
});
after(() => server.stop());

/** Run the one js block of a README section (in `cwd`); its output. */
function runSection(title: string, cwd?: string): string {
  const readme = readFileSync(join(PACKAGE_DIR, "README.md"), "utf8");
  const section = readme.split(`\n## ${title}\n`)[1]!.split("\n## ")[0]!;
  const blocks = [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.equal(blocks.length, 1);
  assert.ok(blocks[0]!.includes("http://127.0.0.1:8080"));
  // Inside the package folder, so `import ... from "aionbd"` resolves to this package.
  const file = join(PACKAGE_DIR, "build-test", "readme-example.mjs");
  writeFileSync(file, blocks[0]!.replace("http://127.0.0.1:8080", server.url));
  try {
    const r = spawnSync(process.execPath, [file], { encoding: "utf8", cwd });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  } finally {
    rmSync(file);
  }
}

it("runs the README quick start", () => {
  const out = runSection("Quick start");
  assert.match(out, /status: 'live'/);
  assert.match(out, /exact 1 \[ 1, 2 \]/);
  assert.match(out, /beta: 1/);
});

it("runs the README backup example", () => {
  const dir = mkdtempSync(join(tmpdir(), "aionbd-js-readme-"));
  try {
    const out = runSection("Backup and export", dir); // it writes its files in the current directory
    assert.match(out, /^docs 2\n1 \[ 0\.5, 0\.25 \] \{ lang: 'en' \}\n2 \[ 1, 0 \] \{\}\nbackup: \d+ bytes\n/);
    assert.deepEqual(readdirSync(dir).sort(), ["all.aionbd", "docs.ndjson", "kept.aionbd"]);
    assert.equal(readFileSync(join(dir, "all.aionbd"), "latin1").slice(0, 8), "AIONBAK\0");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * The layering rule of lib/ (README "Layout"), checked on every import: a folder imports only
 * itself and folders below it, so no two folders import each other.
 *
 * ```
 *   driver/  device/        (roles: never each other)
 *      └──┬───┘
 *   vhost_user/  vhost_net/ (protocols: never each other)
 *      └──┬───┘
 *   virtio/                 (the spec)        packet/ (frames; imports nothing in lib/)
 *      └──► ffi/            (libc)
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;

/** What each folder may import besides itself. */
const ALLOWED: Record<string, readonly string[]> = {
  "ffi": [],
  "lib/packet": [],
  "lib/virtio": ["ffi"],
  "lib/vhost_user": ["ffi", "lib/virtio"],
  "lib/vhost_net": ["ffi", "lib/virtio"],
  "lib/driver": ["ffi", "lib/virtio", "lib/vhost_user", "lib/vhost_net", "lib/packet"],
  "lib/device": ["ffi", "lib/virtio", "lib/vhost_user", "lib/packet"],
};

function folderOf(path: string): string {
  const rel = path.slice(ROOT.length);
  return rel.startsWith("ffi/") ? "ffi" : rel.split("/").slice(0, 2).join("/");
}

function* sources(dir: string): Generator<string> {
  for (const e of Deno.readDirSync(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) yield* sources(p);
    else if (e.name.endsWith(".ts")) yield p;
  }
}

Deno.test("layout: each lib/ folder imports only the folders below it", () => {
  const violations: string[] = [];
  let imports = 0;
  for (const top of ["ffi", "lib"]) {
    for (const file of sources(`${ROOT}${top}`)) {
      const from = folderOf(file);
      const allowed = ALLOWED[from];
      if (allowed === undefined) {
        violations.push(`${file.slice(ROOT.length)}: folder ${from} has no place in the layout`);
        continue;
      }
      // Code imports only: module docs and JSDoc examples import from their own folder.
      const code = Deno.readTextFileSync(file).replace(/\/\*[\s\S]*?\*\//g, "");
      for (const m of code.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
        imports++;
        const target = folderOf(new URL(m[1], `file://${file}`).pathname);
        if (target !== from && !allowed.includes(target)) {
          violations.push(`${file.slice(ROOT.length)} imports ${m[1]} (${from} -> ${target})`);
        }
      }
    }
  }
  assert.ok(imports > 50, `found only ${imports} imports: the scan is broken`);
  assert.deepEqual(violations, []);
});

/**
 * The exit codes and one-line errors of `examples/ping.ts`, `examples/tap.ts` and
 * `examples/device.ts` for expected conditions (no peer needed): usage errors exit 2, a backend
 * that is not there exits 1 with one line and no stack trace.
 *
 * ```
 *   ping.ts (no --ip) ──► exit 2     ping.ts --path missing.sock ──► exit 1, "ping: connect(...)"
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { runBounded } from "./helpers.ts";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);

async function example(name: string, ...args: string[]) {
  return await runBounded(Deno.execPath(), ["run", "-A", `examples/${name}.ts`, ...args], {
    cwd: ROOT,
    timeoutMs: 60_000,
  });
}

Deno.test("ping.ts / tap.ts: --help exits 0, usage errors exit 2", async () => {
  for (const name of ["ping", "tap"]) {
    const help = await example(name, "--help");
    assert.equal(help.code, 0);
    assert.match(help.stdout, new RegExp(`^usage: ${name}\\.ts`));
  }
  const noIp = await example("ping", "--path", "/tmp/x.sock");
  assert.equal(noIp.code, 2);
  assert.match(noIp.stderr, /^ping: --ip is required/);
  const badIp = await example("ping", "--path", "/tmp/x.sock", "--ip", "10.0.0.256");
  assert.equal(badIp.code, 2);
  assert.equal(
    badIp.stderr.trim(),
    `ping: bad IPv4 address "10.0.0.256": expected four numbers 0..255 like 10.0.0.2`,
  );
});

Deno.test("ping.ts / tap.ts: a missing backend is one line on stderr and exit 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ping = await example("ping", "--path", `${dir}/none.sock`, "--ip", "10.0.0.2");
    assert.equal(ping.code, 1);
    const lines = ping.stderr.trim().split("\n");
    assert.equal(lines.length, 1, ping.stderr);
    assert.match(lines[0], /^ping: connect\(.*none\.sock\) failed: ENOENT/);
    const tap = await example("tap", "--path", `${dir}/none.sock`);
    assert.equal(tap.code, 1);
    assert.match(tap.stderr.trim(), /^tap: connect\(.*none\.sock\) failed: ENOENT[^\n]*$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("device.ts: --mac, --mtu and --link-flap misuse exits 2, naming the option", async () => {
  const cases: [string[], RegExp][] = [
    [["--path", "/tmp/x.sock", "--mac", "02:00:zz:00:00:01"], /^--mac: bad MAC address/],
    [["--path", "/tmp/x.sock", "--mtu", "20"], /^--mtu: 68 to 65535, got 20/],
    [
      [
        "--path",
        "/tmp/x.sock",
        "--mode",
        "forward",
        "--peer-path",
        "/tmp/y.sock",
        "--link-flap",
        "100",
      ],
      /^--mode forward takes no --mac, --mtu or --link-flap/,
    ],
  ];
  for (const [args, first] of cases) {
    const r = await example("device", ...args);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, first);
  }
});

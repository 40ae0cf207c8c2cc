/**
 * `examples/tap.ts` shows what the kernel sends out of a tap (inside the test VM): the kernel
 * pings an address nobody has, so it sends ARP who-has requests, and tap.ts prints them.
 *
 * ```
 *   busybox ping 10.0.8.2 ──► tap vnx0 (10.0.8.1/24): ARP who-has ══vhost-net══► tap.ts ──► stdout
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { persistentTap, removeTap, report } from "./guest.ts";
import { runBounded, startExample } from "../helpers.ts";

const TAP = "vnx0";

Deno.test("examples/tap.ts prints the kernel's ARP who-has from the tap, one line per frame", async () => {
  await persistentTap(TAP, "10.0.8.1/24");
  try {
    // Notices (the hugepage fallback) may come first; the ready line says it is attached.
    await using tap = await startExample(
      "tap",
      ["--tap", TAP, "--count", "1"],
      "stderr",
      /tap: showing frames[^\n]*\n/,
    );
    assert.match(tap.ready, /^tap: showing frames from vhost-net \/dev\/vhost-net, tap vnx0$/m);
    // Nobody answers: ping fails, but the kernel has asked for the address with ARP.
    const ping = await runBounded("ping", ["-c", "1", "-W", "5", "10.0.8.2"], {
      timeoutMs: 60_000,
    });
    assert.notEqual(ping.code, 0);
    const { code, stdout } = await tap.finish();
    assert.equal(code, 0, stdout);
    const lines = stdout.trim().split("\n");
    assert.equal(lines.length, 1, stdout);
    assert.match(
      lines[0],
      /^[0-9a-f:]{17} > ff:ff:ff:ff:ff:ff ARP who-has 10\.0\.8\.2 tell 10\.0\.8\.1, \d+ bytes$/,
    );
    report(`tap.ts: ${lines[0]}`);
  } finally {
    removeTap(TAP);
  }
});

/**
 * `examples/sink.ts --event`: the receive loop waits in `port.readable()` when a burst finds
 * nothing. Against the TS device: a source's exact count arrives, and an idle port sleeps.
 *
 * ```
 *   TS device source (5000 frames) ──► sink.ts --event --count 5000: every frame, exit 0
 *   TS device sink (sends nothing) ──► sink.ts --event --duration 4: 0 frames, the process idles
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceThread } from "../lib/device/device_thread.ts";
import { runBounded } from "./helpers.ts";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);

async function sink(...args: string[]) {
  const r = await runBounded(
    Deno.execPath(),
    ["run", "-A", "--unstable-ffi", "examples/sink.ts", "--json", "--quiet", ...args],
    { cwd: ROOT, timeoutMs: 60_000 },
  );
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

Deno.test("sink.ts --event: a TS device source's 5000 frames, exactly", async () => {
  await using device = await DeviceThread.start({ mode: "source", count: 5000 });
  const report = await sink("--path", device.path, "--event", "--count", "5000");
  assert.equal(report.ended_by, "count");
  assert.equal(report.rx_packets, 5000);
  assert.equal(report.rx_bytes, 5000 * 64);
  const { stats } = await device.done();
  assert.equal(stats.toDriverPackets, 5000);
});

Deno.test("sink.ts --event: an idle port for 4 s sleeps in readable() (CPU time printed)", async () => {
  await using device = await DeviceThread.start({ mode: "sink" });
  const report = await sink("--path", device.path, "--event", "--duration", "4");
  console.log(`  idle 4 s: sink process CPU ${report.cpu_ms} ms, ${report.wakeups} wake-ups`);
  assert.equal(report.ended_by, "duration");
  assert.equal(report.rx_packets, 0);
  assert.equal(report.wakeups, 0, "no frame, no call, no wake-up");
  // A polling loop would take a core for the 4 s (at least ~2.7 s of CPU even with both cores
  // shared three ways); sleeping leaves start-up and the 100 ms timeouts.
  assert.ok(report.cpu_ms < 1500, `cpu ${report.cpu_ms} ms: the loop did not sleep`);
});

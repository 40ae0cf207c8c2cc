/**
 * Frames per second through vhost-net next to the same traffic through the TypeScript
 * vhost-user device, in the same VM (runs inside the test VM). Under software emulation only the
 * ratio means something, so the test prints both rates and asserts only exact counts.
 *
 * ```
 *   txBurst 60-byte frames ──► vhost-net ──► tap (the kernel counts rx_packets, drops them)
 *   txBurst 60-byte frames ──► vhost-user ──► DeviceThread sink (counts fromDriverPackets)
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { VirtioNet } from "../../lib/driver/virtio_net.ts";
import { DeviceThread } from "../../lib/device/device_thread.ts";
import {
  persistentTap,
  pollUntil,
  removeTap,
  report,
  tapCounter,
  writeTestFrame,
} from "./guest.ts";

const TAP = "vnt0";
const FRAMES = 100_000;
const ROUNDS = 2;
const SIZE = 60;
const PEER = Uint8Array.of(0x02, 0, 0, 0, 0, 0x55);

/** Sends FRAMES frames of SIZE bytes and waits until the device used them; returns seconds. */
async function blast(port: VirtioNet): Promise<number> {
  const { pool } = port;
  const bufs = new Uint32Array(32), lens = new Uint32Array(32).fill(SIZE);
  const start = performance.now();
  let sent = 0;
  await pollUntil(() => {
    const n = pool.alloc(bufs, 0, Math.min(32, FRAMES - sent));
    for (let i = 0; i < n; i++) {
      writeTestFrame(pool.bytes, pool.dataOffset(bufs[i]), sent + i, SIZE, PEER, port.mac);
    }
    const k = port.txBurst(bufs, lens, n);
    pool.free(bufs, k, n - k);
    sent += k;
    return sent === FRAMES;
  }, 300_000);
  assert.equal(sent, FRAMES);
  assert.equal(port.txDrain(30_000), 0);
  return (performance.now() - start) / 1000;
}

Deno.test(`throughput: ${FRAMES} × ${SIZE}-byte frames, vhost-net vs the vhost-user TS device`, async () => {
  await persistentTap(TAP);
  const rates = { "vhost-net": [] as number[], "vhost-user": [] as number[] };
  try {
    for (let r = 0; r < ROUNDS; r++) {
      {
        const before = tapCounter(TAP, "rx_packets");
        using port = VirtioNet.open({ path: "/dev/vhost-net", tap: TAP, notice: () => {} });
        const s = await blast(port);
        await pollUntil(() => tapCounter(TAP, "rx_packets") - before === FRAMES, 30_000);
        assert.equal(tapCounter(TAP, "rx_packets") - before, FRAMES, "the tap counted every frame");
        rates["vhost-net"].push(FRAMES / s);
      }
      {
        await using device = await DeviceThread.start({ mode: "sink" });
        const port = VirtioNet.open({ path: device.path, packed: false, eventIdx: true });
        const s = await blast(port);
        port.close();
        const { stats, errors } = await device.stop();
        assert.deepEqual(errors, []);
        assert.equal(stats.fromDriverPackets, FRAMES, "the device counted every frame");
        rates["vhost-user"].push(FRAMES / s);
      }
    }
  } finally {
    removeTap(TAP);
  }
  const best = (xs: number[]) => Math.max(...xs);
  for (const [name, xs] of Object.entries(rates)) {
    report(
      `VM-BENCH ${name}: ${best(xs).toFixed(0)} frames/s (split ring 256, ${SIZE}-byte frames, ` +
        `best of ${xs.map((x) => x.toFixed(0)).join(", ")})`,
    );
  }
  report(
    `VM-BENCH ratio vhost-net / vhost-user: ${
      (best(rates["vhost-net"]) / best(rates["vhost-user"])).toFixed(2)
    }`,
  );
});

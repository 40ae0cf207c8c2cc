/**
 * Client mode with `reconnect`: {@linkcode VirtioNet} connects to the TypeScript device; the
 * device goes away and a new one listens on the same path; the port reconnects (backoff) and
 * rebuilds its rings, and each device incarnation counts exactly what the driver saw used.
 *
 * ```
 *   VirtioNet (reconnect) ──► DeviceThread k (sink) ── stop ──► link down ──► DeviceThread k+1
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceThread } from "../lib/device/device_thread.ts";
import { VirtioNet } from "../lib/driver/virtio_net.ts";
import { PortDriver } from "./port_driver.ts";

const ROUNDS = 5;
const FRAMES = 10_000;
const WAIT_MS = 30_000;

Deno.test(`client reconnect: the TS device replaced ${ROUNDS} times; exact counts each time`, async () => {
  const dir = await Deno.makeTempDir({ prefix: "reconnect-device-" });
  const path = `${dir}/device.sock`;
  let device = await DeviceThread.start({ path, mode: "sink" });
  const port = VirtioNet.open({
    path,
    hugepages: false,
    reconnect: { retryMs: 5, maxRetryMs: 100 },
  });
  try {
    const { pool, stats } = port;
    const drive = new PortDriver(port);
    for (let round = 0; round < ROUNDS; round++) {
      const up = await drive.untilLink("up", WAIT_MS);
      assert.ok(up, `round ${round}: reconnected (${port.downReason})`);
      assert.equal(port.reconnects, round);
      const before = stats.txCompleted;
      assert.equal(await drive.sendExactly(FRAMES, WAIT_MS), 0, "every frame went out");
      const inFlight = await drive.drain(WAIT_MS);
      assert.equal(inFlight, 0, "the device took every frame");
      assert.equal(stats.txCompleted - before, FRAMES);
      const { stats: dev, errors } = await device.stop();
      assert.deepEqual(errors, []);
      assert.equal(dev.fromDriverPackets, FRAMES, `round ${round}: the device counted every frame`);
      await drive.untilLink("down", WAIT_MS);
      assert.equal(port.link, "down");
      assert.equal(pool.available, pool.count, "every buffer back while down");
      // Nobody listens for a while: the port retries with backoff and stays down.
      for (let i = 0; i < 20; i++) await drive.untilLink("up", 0);
      assert.match(port.downReason, /hung up|closed|reconnecting/);
      device = await DeviceThread.start({ path, mode: "sink" });
    }
  } finally {
    port.close();
    await device.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

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

const ROUNDS = 5;
const FRAMES = 10_000;
const WAIT_MS = 30_000;
const turn = () => new Promise<void>((r) => setTimeout(r, 0));

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
    const bufs = new Uint32Array(32), lens = new Uint32Array(32).fill(60);
    const send = (limit: number) => {
      const n = pool.alloc(bufs, 0, Math.min(32, limit));
      const sent = port.txBurst(bufs, lens, n);
      pool.free(bufs, sent, n - sent);
      return sent;
    };
    for (let round = 0; round < ROUNDS; round++) {
      const upBy = Date.now() + WAIT_MS;
      while (port.link === "down" && Date.now() < upBy) {
        for (let i = 0; i < 1000; i++) send(0);
        await turn();
      }
      assert.equal(port.link, "up", `round ${round}: reconnected (${port.downReason})`);
      assert.equal(port.reconnects, round);
      const before = stats.txCompleted;
      let left = FRAMES;
      const sendBy = Date.now() + WAIT_MS;
      while (left > 0 && Date.now() < sendBy) {
        for (let i = 0; i < 100 && left > 0; i++) left -= send(left);
        await turn();
      }
      let inFlight = port.txDrain(0);
      const drainBy = Date.now() + WAIT_MS;
      while (inFlight > 0 && Date.now() < drainBy) {
        inFlight = port.txDrain(10);
        await turn();
      }
      assert.equal(inFlight, 0, "the device took every frame");
      assert.equal(stats.txCompleted - before, FRAMES);
      const { stats: dev, errors } = await device.stop();
      assert.deepEqual(errors, []);
      assert.equal(dev.rxPackets, FRAMES, `round ${round}: the device counted every frame`);
      const downBy = Date.now() + WAIT_MS;
      while (port.link === "up" && Date.now() < downBy) {
        for (let i = 0; i < 1000; i++) send(0);
        await turn();
      }
      assert.equal(port.link, "down");
      assert.equal(pool.available, pool.count, "every buffer back while down");
      // Nobody listens for a while: the port retries with backoff and stays down.
      for (let i = 0; i < 20; i++) {
        for (let j = 0; j < 1000; j++) send(0);
        await turn();
      }
      assert.match(port.downReason, /hung up|closed|reconnecting/);
      device = await DeviceThread.start({ path, mode: "sink" });
    }
  } finally {
    port.close();
    await device.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

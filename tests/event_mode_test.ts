/**
 * Event-driven receive (`port.readable()`): used-buffer notifications armed only when a poll
 * finds nothing, a wait on the call eventfd that leaves the event loop running, disarmed once
 * frames flow. Against the TS device (echo) and DPDK's vhost PMD (testpmd io):
 *
 * ```
 *   txBurst(1 frame) ──► peer echoes ──► call eventfd ──► readable() resolves ──► rxBurst
 *   busy phase: rxBurst keeps finding frames ──► no arming, the device sends no call
 * ```
 *
 * Latency figures are printed, never asserted.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceThread } from "../lib/device/device_thread.ts";
import { VirtioNet } from "../lib/driver/virtio_net.ts";
import { writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { DEFAULT_DEVICE_FEATURES } from "../lib/vhost_user/backend.ts";
import { featureMask } from "../lib/virtio/features.ts";
import { requireTestpmd } from "./peers.ts";
import { withTestpmdPort } from "./vhost_port.ts";

const ROUNDS = 300;
const BUSY = 20_000;
const FRAME = 64;
const STALL_MS = 5000;

/** CPU time of the calling thread so far, ms (utime + stime of /proc/thread-self/stat). */
function threadCpuMs(): number {
  const stat = Deno.readTextFileSync("/proc/thread-self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10; // clock ticks of 10 ms (USER_HZ 100)
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/**
 * Sends one frame at a time and waits for it to come back with rxBurst + readable(); returns
 * the wake-up latencies (send to resolve) of the rounds that slept, in µs.
 */
async function pingPong(port: VirtioNet, rounds: number): Promise<number[]> {
  const { pool } = port;
  const tx = new Uint32Array(1), txLen = new Uint32Array(1).fill(FRAME);
  const bufs = new Uint32Array(32), lens = new Uint32Array(32);
  const slept: number[] = [];
  for (let r = 0; r < rounds; r++) {
    tx[0] = pool.allocOne();
    writeUdpFrame(pool.bytes, pool.dataOffset(tx[0]), FRAME, { srcMac: port.mac });
    const t0 = performance.now();
    assert.equal(port.txBurst(tx, txLen, 1), 1);
    let got = 0, waited = false;
    while (got === 0) {
      got = port.rxBurst(bufs, lens, 32);
      if (got > 0) break;
      const wakeups = port.stats.wakeups;
      if (!(await port.readable(STALL_MS))) throw new Error(`round ${r}: nothing came back`);
      if (port.stats.wakeups > wakeups && !waited) {
        waited = true;
        slept.push((performance.now() - t0) * 1000);
      }
    }
    assert.equal(got, 1, `round ${r}: one frame back`);
    assert.equal(lens[0], FRAME);
    pool.free(bufs, 0, got);
  }
  return slept;
}

function report(what: string, slept: number[], port: VirtioNet): void {
  slept.sort((a, b) => a - b);
  console.log(
    `  ${what}: ${slept.length}/${ROUNDS} rounds slept, wake-up (send→resolve) p50 ` +
      `${percentile(slept, 0.5)?.toFixed(0)} µs p99 ${percentile(slept, 0.99)?.toFixed(0)} µs, ` +
      `wakeups ${port.stats.wakeups}`,
  );
}

for (const eventIdx of [false, true]) {
  for (const packed of [true, false]) {
    const name = `${packed ? "packed" : "split"}${eventIdx ? " EVENT_IDX" : ""}`;
    Deno.test(`event mode ${name} vs TS device echo: wakes per frame, busy costs no call`, async () => {
      const device = await DeviceThread.start({
        mode: "echo",
        features: DEFAULT_DEVICE_FEATURES | (eventIdx ? featureMask("RING_F_EVENT_IDX") : 0n),
      });
      try {
        const port = VirtioNet.open({ path: device.path, packed, eventIdx });
        try {
          assert.equal((port.features >> 29n & 1n) === 1n, eventIdx, "EVENT_IDX as asked");
          const slept = await pingPong(port, ROUNDS);
          report(name, slept, port);
          assert.equal(port.stats.rxPackets, ROUNDS);

          // Busy: frames keep coming back, readable() is never reached, nothing is armed.
          // The device publishes its counters every ~1 ms, all in one snapshot: once it shows
          // the last echoed frame, its call count for the rounds above is final.
          const until = Date.now() + 10_000;
          while (device.stats.toDriverPackets < ROUNDS && Date.now() < until) {
            await new Promise((r) => setTimeout(r, 5));
          }
          assert.equal(device.stats.toDriverPackets, ROUNDS);
          const callsBefore = device.stats.calls, wakeupsBefore = port.stats.wakeups;
          assert.ok(callsBefore >= wakeupsBefore, "every wake-up was a call from the device");
          const { pool } = port;
          for (let b = 0; b < pool.count; b++) {
            writeUdpFrame(pool.bytes, pool.dataOffset(b), FRAME);
          }
          const bufs = new Uint32Array(32), lens = new Uint32Array(32).fill(FRAME);
          let sent = 0, got = 0, progress = performance.now();
          while (got < BUSY) {
            if (sent < BUSY && sent - got < 128) {
              const k = pool.alloc(bufs, 0, Math.min(32, BUSY - sent, 128 - (sent - got)));
              const s = port.txBurst(bufs, lens, k);
              pool.free(bufs, s, k - s);
              sent += s;
            }
            const n = port.rxBurst(bufs, lens, 32);
            pool.free(bufs, 0, n);
            got += n;
            if (n > 0) progress = performance.now();
            else if (performance.now() - progress > STALL_MS) throw new Error(`busy: ${got}`);
          }
          // Idle: one wait that times out; the thread's CPU time over it is printed.
          const cpu0 = threadCpuMs(), t0 = performance.now();
          assert.equal(await port.readable(500), false, "nothing arrives while idle");
          console.log(
            `  ${name}: idle 500 ms in readable(): this thread used ` +
              `${threadCpuMs() - cpu0} ms CPU (ticks of 10 ms) in ${
                (performance.now() - t0).toFixed(0)
              } ms`,
          );
          assert.equal(port.stats.wakeups, wakeupsBefore, "busy phase: no sleep, no wake-up");
          port.close();
          const { stats } = await device.stop();
          assert.equal(stats.fromDriverPackets, ROUNDS + BUSY);
          assert.equal(stats.toDriverPackets, ROUNDS + BUSY);
          // The idle wait armed notifications but nothing was used, so no call either.
          assert.equal(stats.calls, callsBefore, "busy phase: the device sent no call");
        } finally {
          port.close();
        }
      } finally {
        await device.stop();
      }
    });
  }
}

Deno.test({
  name: "event mode vs testpmd io: DPDK's vhost PMD calls the eventfd, every frame back",
  ignore: requireTestpmd(1),
  async fn() {
    await withTestpmdPort({ forwardMode: "io" }, {}, async (tp, port) => {
      await tp.startForwarding();
      const slept = await pingPong(port, ROUNDS);
      report("testpmd io", slept, port);
      const fwd = await tp.stopForwarding();
      assert.equal(fwd.rxPackets, ROUNDS);
      assert.equal(fwd.txPackets, ROUNDS);
      assert.equal(port.stats.rxPackets, ROUNDS);
    });
  },
});

Deno.test("event mode: close() ends a pending readable()", async () => {
  const device = await DeviceThread.start({ mode: "sink" });
  try {
    const port = VirtioNet.open({ path: device.path });
    const waiting = port.readable();
    await new Promise((r) => setTimeout(r, 50));
    port.close();
    await assert.rejects(waiting, /closed while waiting/);
  } finally {
    await device.stop();
  }
});

Deno.test("event mode: a peer that hangs up during readable() is noticed; it resolves, link down", async () => {
  const device = await DeviceThread.start({ mode: "sink" });
  let stopped = false;
  try {
    const port = VirtioNet.open({ path: device.path });
    try {
      const waiting = port.readable();
      await new Promise((r) => setTimeout(r, 50));
      await device.stop();
      stopped = true;
      // Bounded: the wait wakes every READABLE_LINK_CHECK_MS to check the link.
      const result = await Promise.race([
        waiting,
        new Promise<string>((r) => setTimeout(() => r("still waiting"), 10_000)),
      ]);
      assert.equal(result, true);
      assert.equal(port.link, "down");
      const bufs = new Uint32Array(8), lens = new Uint32Array(8);
      assert.equal(port.rxBurst(bufs, lens, 8), 0, "bursts on a down port return 0");
      assert.equal(await port.readable(), true, "down: resolves (after a short wait), never hangs");
    } finally {
      port.close();
    }
  } finally {
    if (!stopped) await device.stop();
  }
});

/** Asks the event-driven device worker something and waits for the answer of `type`. */
function ask<T>(w: Worker, msg: unknown, type: string): Promise<T> {
  return new Promise((resolve) => {
    const prev = w.onmessage;
    w.onmessage = (e: MessageEvent) => {
      if (e.data.type !== type) return;
      w.onmessage = prev;
      resolve(e.data as T);
    };
    w.postMessage(msg);
  });
}

for (const packed of [true, false]) {
  const name = packed ? "packed" : "split";
  Deno.test(`event mode ${name}, both sides: event-driven TS device echo, driver readable()`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "event-device-" });
    const path = `${dir}/device.sock`;
    const stop = new SharedArrayBuffer(4);
    const w = new Worker(new URL("./fixtures/event_device_worker.ts", import.meta.url), {
      type: "module",
    });
    try {
      await ask(w, { cmd: "start", path, mode: "echo", stop }, "ready");
      const port = VirtioNet.open({ path, packed });
      let idleCpu = -1;
      let rounds = ROUNDS;
      try {
        const slept = await pingPong(port, ROUNDS);
        report(`${name}, device event-driven`, slept, port);
        // A fast ping-pong may never leave the device idle for idlePolls polls: then let it fall
        // asleep (it sleeps within tens of µs of idling, waking every 100 ms to look again) and
        // send one frame more, which the armed ring must kick. Bounded; not a timing guess.
        for (let tries = 0; port.stats.kicks === 0 && tries < 20; tries++) {
          await new Promise((r) => setTimeout(r, 150));
          await pingPong(port, 1);
          rounds++;
        }
        assert.equal(port.stats.rxPackets, rounds);
        assert.ok(port.stats.kicks > 0, "the sleeping device asked for kicks and got them");
        // Both sides idle: the device thread sleeps in poll(2) (and still answers us).
        const c0 = (await ask<{ ms: number }>(w, { cmd: "cpu" }, "cpu")).ms;
        await new Promise((r) => setTimeout(r, 1000));
        idleCpu = (await ask<{ ms: number }>(w, { cmd: "cpu" }, "cpu")).ms - c0;
      } finally {
        port.close();
      }
      Atomics.store(new Int32Array(stop), 0, 1);
      const done = await ask<{
        stats: { fromDriverPackets: number; toDriverPackets: number };
        sleeps: number;
        kicks: number;
        errors: string[];
      }>(w, { cmd: "none" }, "done");
      console.log(
        `  ${name}: device slept ${done.sleeps} times (${done.kicks} ended by a kick); ` +
          `device thread CPU over 1 s idle: ${idleCpu} ms (10 ms ticks)`,
      );
      assert.deepEqual(done.errors, []);
      assert.equal(done.stats.fromDriverPackets, rounds);
      assert.equal(done.stats.toDriverPackets, rounds);
    } finally {
      Atomics.store(new Int32Array(stop), 0, 1);
      await Deno.remove(dir, { recursive: true });
    }
  });
}

/**
 * The TypeScript device with a Worker per queue pair (`DeviceThread.start({ workers: true })`,
 * `PairWorkers`) against real frontends, exact counts per queue:
 *
 * ```
 *   TS driver, a Worker per pair (detachQueues) ──pair i──► TS device, Worker i: sink / echo
 *   testpmd net_virtio_user0,queues=2 txonly ──queue i──► TS device sink, Worker i
 *   testpmd net_virtio_user0,queues=2 rxonly ◄──queue i── TS device source, Worker i
 *   a frontend killed (-9) mid-traffic: Workers detach, every fd back, the next frontend works
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceThread, type NetDeviceStats } from "../lib/device/device_thread.ts";
import { VirtioNet } from "../lib/driver/virtio_net.ts";
import { type QueueResult, QueueWorkers } from "../examples/multi_queue.ts";
import { openFds } from "./helpers.ts";
import { requireTestpmd } from "./peers.ts";
import { Testpmd } from "./testpmd.ts";

const ignoreTestpmd = requireTestpmd(1);
/** Frames per pair; different, so a frame counted on the wrong queue shows. */
const COUNTS = [30_000, 20_000];
const FRAME = 64;
const BURST = 32;
/** How long testpmd sends or receives. */
const RUN_MS = 300;

const job = (port: VirtioNet, mode: "tx" | "echo", count: number) => ({
  mode,
  count,
  size: FRAME,
  burst: BURST,
  srcMac: [...port.mac],
});

/** testpmd's per-queue counters (`show port xstats`), e.g. `tx_q1_good_packets`. */
async function xstats(tp: Testpmd): Promise<Map<string, number>> {
  const out = await tp.command("show port xstats 0");
  const m = new Map<string, number>();
  for (const [, name, value] of out.matchAll(/^\s*(\w+):\s+(\d+)\s*$/gm)) m.set(name, +value);
  return m;
}

function counter(x: Map<string, number>, name: string): number {
  const v = x.get(name);
  if (v === undefined) throw new Error(`testpmd xstats lack ${name}: ${[...x.keys()].join(" ")}`);
  return v;
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Drives both pairs of a fresh 2-pair port from Workers against `path`. */
async function driveBoth(
  path: string,
  packed: boolean,
  mode: "tx" | "echo",
): Promise<QueueResult[]> {
  const port = VirtioNet.open({ path, packed, queuePairs: 2, detachQueues: true });
  try {
    const workers = await QueueWorkers.start(port, (i) => job(port, mode, COUNTS[i]));
    return await workers.done();
  } finally {
    port.close();
  }
}

for (const packed of [true, false]) {
  const rings = packed ? "packed" : "split";
  for (const mode of ["sink", "echo"] as const) {
    Deno.test(`device Workers ${rings}: TS driver 2 Workers -> TS device ${mode}, 2 Workers: exact per queue`, async () => {
      const device = await DeviceThread.start({ mode, queuePairs: 2, workers: true });
      try {
        const results = await driveBoth(device.path, packed, mode === "sink" ? "tx" : "echo");
        const { stats, errors, queues } = await device.stop();
        assert.deepEqual(errors, []);
        assert.equal(queues?.length, 2, "per-queue counters");
        for (let i = 0; i < 2; i++) {
          const r = results[i];
          const q: NetDeviceStats = queues![i];
          assert.equal(r.sent, COUNTS[i], `pair ${i} sent`);
          assert.equal(
            q.fromDriverPackets,
            COUNTS[i],
            `device Worker ${i} took pair ${i}'s frames`,
          );
          assert.equal(q.fromDriverBytes, COUNTS[i] * FRAME);
          if (mode === "echo") {
            assert.equal(r.received, COUNTS[i], `pair ${i} got every frame back`);
            assert.equal(r.rxBytes, COUNTS[i] * FRAME);
            assert.equal(r.badFrames, 0, `pair ${i}: ${r.firstBad}`);
            assert.equal(q.toDriverPackets, COUNTS[i], `device Worker ${i} echoed on its pair`);
            assert.equal(q.toDriverBytes, COUNTS[i] * FRAME);
          } else {
            assert.equal(q.toDriverPackets, 0);
          }
        }
        assert.equal(stats.fromDriverPackets, COUNTS[0] + COUNTS[1], "aggregate counters");
        assert.equal(stats.toDriverDropped, 0);
      } finally {
        await device.stop();
      }
    });
  }
}

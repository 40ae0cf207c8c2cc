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
import { VhostUserFrontend } from "../lib/vhost_user/frontend.ts";
import { writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { type QueueResult, QueueWorkers } from "../examples/multi_queue.ts";
import { fdsAfterWorkers, openFds } from "./helpers.ts";
import { requireTestpmd } from "./peers.ts";
import { counter, Testpmd, xstats } from "./testpmd.ts";

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

function virtioUser(sock: string, packed: boolean): string {
  return `net_virtio_user0,path=${sock},queues=2,packed_vq=${packed ? 1 : 0},queue_size=256`;
}

for (const packed of [true, false]) {
  const rings = packed ? "packed" : "split";

  Deno.test({
    name:
      `device Workers ${rings}: DPDK virtio-user queues=2 txonly -> TS device sink, 2 Workers: exact per queue`,
    ignore: ignoreTestpmd,
    async fn() {
      const device = await DeviceThread.start({ mode: "sink", queuePairs: 2, workers: true });
      try {
        await using tp = await Testpmd.start({
          vdev: virtioUser(device.path, packed),
          forwardMode: "txonly",
          rxq: 2,
          txq: 2,
        });
        await tp.startForwarding();
        await new Promise((r) => setTimeout(r, RUN_MS));
        const sent = await tp.stopForwarding();
        const x = await xstats(tp);
        const perQueue = [0, 1].map((i) => counter(x, `tx_q${i}_good_packets`));
        assert.ok(perQueue[0] > 0 && perQueue[1] > 0, "testpmd sent on both queues");
        assert.equal(perQueue[0] + perQueue[1], sent.txPackets);
        // Every frame testpmd's PMD accepted is in a ring; the Workers take them all.
        await waitFor(
          "the device to take every frame",
          () => device.stats.fromDriverPackets >= sent.txPackets,
        );
        await tp.stop();
        const { stats, errors, queues } = await device.stop();
        console.log(`  ${rings}: per queue ${perQueue.join(" + ")} frames`);
        assert.deepEqual(errors, []);
        for (let i = 0; i < 2; i++) {
          assert.equal(
            queues![i].fromDriverPackets,
            perQueue[i],
            `device Worker ${i} == testpmd tx queue ${i}`,
          );
          assert.equal(queues![i].fromDriverBytes, FRAME * perQueue[i]);
        }
        assert.equal(stats.fromDriverPackets, sent.txPackets, "aggregate == TX-packets");
      } finally {
        await device.stop();
      }
    },
  });

  Deno.test({
    name:
      `device Workers ${rings}: TS device source, 2 Workers -> DPDK virtio-user queues=2 rxonly: exact per queue`,
    ignore: ignoreTestpmd,
    async fn() {
      const device = await DeviceThread.start({
        mode: "source",
        queuePairs: 2,
        workers: true,
        paused: true,
      });
      try {
        await using tp = await Testpmd.start({
          vdev: virtioUser(device.path, packed),
          forwardMode: "rxonly",
          rxq: 2,
          txq: 2,
          extraArgs: ["--no-flush-rx"],
        });
        device.resume(); // DPDK's port start discards (uncounted) what its rx rings already hold: send after it.
        await tp.startForwarding();
        await new Promise((r) => setTimeout(r, RUN_MS));
        const sent = (await device.pause()).toDriverPackets; // no more frames from here on
        await waitFor(
          "testpmd to receive every frame",
          async () => (await tp.stats()).rxPackets >= sent,
        );
        const got = await tp.stopForwarding();
        const x = await xstats(tp);
        await tp.stop();
        const { errors, queues } = await device.stop();
        assert.deepEqual(errors, []);
        assert.equal(got.rxPackets, sent, "testpmd RX-packets == device's frames");
        for (let i = 0; i < 2; i++) {
          const q = counter(x, `rx_q${i}_good_packets`);
          console.log(`  ${rings} queue ${i}: ${q} frames`);
          assert.ok(q > 0, `the device sent on queue ${i}`);
          assert.equal(
            queues![i].toDriverPackets,
            q,
            `device Worker ${i} == testpmd rx queue ${i}`,
          );
          assert.equal(counter(x, `rx_q${i}_good_bytes`), FRAME * q);
        }
      } finally {
        await device.stop();
      }
    },
  });
}

Deno.test({
  name:
    "device Workers: a frontend killed (-9) mid-traffic: Workers detach, fds back, the next frontend works",
  ignore: ignoreTestpmd,
  async fn() {
    await warmUp();
    const fdsBefore = openFds();
    const device = await DeviceThread.start({ mode: "sink", queuePairs: 2, workers: true });
    try {
      const tp = await Testpmd.start({
        vdev: virtioUser(device.path, true),
        forwardMode: "txonly",
        rxq: 2,
        txq: 2,
      });
      try {
        await tp.startForwarding();
        await waitFor("frames on both queues", () => device.stats.fromDriverPackets > 10_000);
        await tp.killHard(); // mid-traffic: no GET_VRING_BASE, the socket just hangs up
      } finally {
        await tp.stop();
      }
      const killedAt = device.stats.fromDriverPackets;
      await using next = await Testpmd.start({
        vdev: virtioUser(device.path, false),
        forwardMode: "txonly",
        rxq: 2,
        txq: 2,
      });
      await next.startForwarding();
      await new Promise((r) => setTimeout(r, RUN_MS));
      const sent = await next.stopForwarding();
      assert.ok(sent.txPackets > 0);
      await waitFor(
        "the device to take every frame",
        () => device.stats.fromDriverPackets >= killedAt + sent.txPackets,
      );
      await next.stop();
      const { stats, errors } = await device.stop();
      assert.deepEqual(errors, [], "a frontend that hangs up broke no rule");
      assert.equal(
        stats.fromDriverPackets - killedAt,
        sent.txPackets,
        "the next session: every frame",
      );
    } finally {
      await device.stop();
    }
    assert.equal(
      await fdsAfterWorkers(fdsBefore),
      fdsBefore,
      "device and its Workers closed every fd",
    );
  },
});

let warmedUp = false;

/** One device with Workers started and stopped, so fds a first Worker leaves (the runtime's module cache) are in the baseline. */
async function warmUp(): Promise<void> {
  if (warmedUp) return;
  warmedUp = true;
  const device = await DeviceThread.start({ mode: "sink", queuePairs: 2, workers: true });
  await device.stop();
  for (let last = -1, n = openFds(), i = 0; n !== last && i < 40; i++) {
    await new Promise((r) => setTimeout(r, 50)); // until the Workers' threads are gone
    [last, n] = [n, openFds()];
  }
}

/** GET_VRING_BASE value of a ring that took `n` one-descriptor chains (and used them all). */
function positionAfter(n: number, packed: boolean, size: number): number {
  if (!packed) return n & 0xffff;
  const half = (n % size) | ((1 ^ (Math.floor(n / size) & 1)) << 15); // index, wrap counter
  return (half | half << 16) >>> 0; // avail and used halves (vhost-user.rst)
}

for (const packed of [true, false]) {
  Deno.test(`device Workers ${packed ? "packed" : "split"}: GET_VRING_BASE reports where each Worker stopped its rings`, async () => {
    const SIZE = 256, SENT = [1000, 777]; // not multiples of the ring size
    const device = await DeviceThread.start({ mode: "sink", queuePairs: 2, workers: true });
    const stops = new Map<number, number>();
    try {
      const fe = VhostUserFrontend.connect(device.path, { queuePairs: 2 });
      const stopQueue = fe.stopQueue.bind(fe);
      fe.stopQueue = (index: number) => {
        const at = stopQueue(index);
        stops.set(index, at);
        return at;
      };
      const port = VirtioNet.open({ transport: fe, packed, queuePairs: 2, queueSize: SIZE });
      try {
        const { pool } = port;
        const bufs = new Uint32Array(BURST), lens = new Uint32Array(BURST).fill(FRAME);
        for (let q = 0; q < 2; q++) {
          for (let sent = 0; sent < SENT[q];) {
            const k = pool.alloc(bufs, 0, Math.min(BURST, SENT[q] - sent));
            for (let i = 0; i < k; i++) writeUdpFrame(pool.bytes, pool.dataOffset(bufs[i]), FRAME);
            const n = port.txBurst(bufs, lens, k, q);
            pool.free(bufs, n, k - n);
            sent += n;
          }
          assert.equal(port.txDrain(5000, q), 0, `pair ${q}: the device took every frame`);
        }
      } finally {
        assert.deepEqual(port.close(), []);
      }
      const { errors, queues } = await device.stop();
      assert.deepEqual(errors, []);
      for (let q = 0; q < 2; q++) {
        assert.equal(queues![q].fromDriverPackets, SENT[q]);
        assert.equal(stops.get(2 * q + 1), positionAfter(SENT[q], packed, SIZE), `tx${q} position`);
        assert.equal(stops.get(2 * q), positionAfter(0, packed, SIZE), `rx${q}: untouched`);
      }
    } finally {
      await device.stop();
    }
  });
}

Deno.test("device.ts --queue-pairs 2 --workers --json: per-queue counters in the report, exact", async () => {
  const dir = await Deno.makeTempDir({ prefix: "device-workers-" });
  const sock = `${dir}/device.sock`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...["run", "-A", "--no-check", new URL("../examples/device.ts", import.meta.url).pathname],
      ...["--path", sock, "--queue-pairs", "2", "--workers", "--json"],
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    await waitFor("the socket", () => Deno.stat(sock).then(() => true, () => false), 30_000);
    const port = VirtioNet.open({ path: sock, queuePairs: 2 });
    try {
      const { pool } = port;
      const bufs = new Uint32Array(BURST), lens = new Uint32Array(BURST).fill(FRAME);
      for (let q = 0; q < 2; q++) {
        for (let sent = 0; sent < COUNTS[q];) {
          const k = pool.alloc(bufs, 0, Math.min(BURST, COUNTS[q] - sent));
          for (let i = 0; i < k; i++) writeUdpFrame(pool.bytes, pool.dataOffset(bufs[i]), FRAME);
          const n = port.txBurst(bufs, lens, k, q);
          pool.free(bufs, n, k - n);
          sent += n;
        }
        assert.equal(port.txDrain(5000, q), 0);
      }
    } finally {
      port.close();
    }
  } finally {
    child.kill("SIGINT");
  }
  const out = await child.output();
  await Deno.remove(dir, { recursive: true });
  assert.equal(out.code, 130, new TextDecoder().decode(out.stderr));
  const report = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  assert.deepEqual(report.errors, []);
  assert.equal(report.from_driver_packets, COUNTS[0] + COUNTS[1]);
  assert.equal(report.queues.length, 2);
  for (let q = 0; q < 2; q++) {
    assert.equal(report.queues[q].from_driver_packets, COUNTS[q], `queue ${q}`);
    assert.equal(report.queues[q].from_driver_bytes, COUNTS[q] * FRAME);
  }
});

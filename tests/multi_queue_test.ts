/**
 * Multi-queue (VIRTIO_NET_F_MQ, virtio 1.2 §5.1.6.5.5): two queue pairs, each driven from its
 * own Worker (QueuePair.attach), exact per-queue counts against both real peers:
 *
 * ```
 *   Worker 0 ─pair 0─┐                        ┌─ rx/tx queue 0 (xstats rx_q0_packets ...)
 *   Worker 1 ─pair 1─┴─► testpmd net_vhost0,queues=2 --rxq=2 --txq=2 ─ rx/tx queue 1
 *   Worker i ─pair i─► TS device (echo, 2 pairs) ─► pair i: every frame back on its own pair
 *   testpmd net_virtio_user0,queues=2 --txq=2 txonly ─► TS device (sink, 2 pairs): every frame
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceThread } from "../lib/device/device_thread.ts";
import { VirtioNet } from "../lib/driver/virtio_net.ts";
import { UDP_HEADERS, writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { type QueueResult, QueueWorkers } from "../examples/multi_queue.ts";
import { fdsAfterWorkers, openFds, runBounded } from "./helpers.ts";
import { requireTestpmd } from "./peers.ts";
import { counter, type ForwardMode, Testpmd, xstats } from "./testpmd.ts";
import { withTestpmdPort } from "./vhost_port.ts";

const ignoreTestpmd = requireTestpmd(1);
/** Frames per pair; different, so a frame counted on the wrong queue shows. */
const COUNTS = [30_000, 20_000];
const FRAME = 64;
const BURST = 32;
/** How long testpmd txonly sends to the receiving Workers. */
const RX_MS = 300;

let warmedUp = false;

/**
 * Loads the queue Worker module once in a throwaway Worker (it fails to attach a bogus handle
 * and ends), so fds the runtime keeps open after the first Worker of a process (its module
 * cache) are already in the baseline of the fd checks.
 */
async function warmUpWorkers(): Promise<void> {
  if (warmedUp) return;
  warmedUp = true;
  const w = new Worker(new URL("../examples/queue_worker.ts", import.meta.url), { type: "module" });
  await new Promise((resolve) => {
    w.onmessage = resolve;
    w.postMessage({ handle: {}, job: {}, control: new SharedArrayBuffer(4) });
  });
  w.terminate();
  // Until the count settles (the Worker's thread has gone).
  for (let last = -1, n = openFds(), i = 0; n !== last && i < 40; i++) {
    await new Promise((r) => setTimeout(r, 50));
    [last, n] = [n, openFds()];
  }
}

async function withVhost2(
  packed: boolean,
  mode: ForwardMode,
  body: (tp: Testpmd, port: VirtioNet) => Promise<void>,
): Promise<void> {
  await warmUpWorkers();
  const fdsBefore = openFds();
  await withTestpmdPort(
    { queues: 2, forwardMode: mode, rxq: 2, txq: 2 },
    { packed, queuePairs: 2, detachQueues: true },
    async (tp, port) => {
      assert.equal(port.queuePairs, 2);
      assert.ok((port.features >> 22n & 1n) === 1n, "VIRTIO_NET_F_MQ negotiated");
      await body(tp, port);
    },
  );
  assert.equal(
    await fdsAfterWorkers(fdsBefore),
    fdsBefore,
    "port and Workers closed every fd they opened",
  );
}

const job = (port: VirtioNet, mode: "tx" | "rx" | "echo", count: number) => ({
  mode,
  count,
  size: FRAME,
  burst: BURST,
  srcMac: [...port.mac],
});

for (const packed of [true, false]) {
  const rings = packed ? "packed" : "split";

  Deno.test({
    name: `MQ ${rings}: 2 Workers -> testpmd rxonly --rxq=2: exact frames and bytes per queue`,
    ignore: ignoreTestpmd,
    async fn() {
      await withVhost2(packed, "rxonly", async (tp, port) => {
        await tp.startForwarding();
        const workers = await QueueWorkers.start(port, (i) => job(port, "tx", COUNTS[i]));
        const results = await workers.done();
        const fwd = await tp.stopForwarding();
        const x = await xstats(tp);
        for (const r of results) {
          console.log(
            `  ${rings} pair ${r.index} TX: ${(r.sent / r.ms / 1e3).toFixed(2)} Mpps, ` +
              `kicks ${r.stats.kicks}`,
          );
        }
        for (let i = 0; i < 2; i++) {
          assert.equal(results[i].sent, COUNTS[i], `pair ${i} sent`);
          assert.equal(results[i].inFlight, 0, `pair ${i}: every frame taken`);
          assert.equal(counter(x, `rx_q${i}_packets`), COUNTS[i], `testpmd rx queue ${i}`);
          assert.equal(counter(x, `rx_q${i}_bytes`), COUNTS[i] * FRAME, `rx queue ${i} bytes`);
          assert.equal(port.queueStats(i).txPackets, COUNTS[i], `port counters of pair ${i}`);
          assert.equal(port.queueStats(i).txBytes, COUNTS[i] * FRAME);
        }
        assert.equal(fwd.rxPackets, COUNTS[0] + COUNTS[1], "testpmd RX-packets, all queues");
        assert.equal(port.stats.txPackets, COUNTS[0] + COUNTS[1], "aggregate counters");
      });
    },
  });

  Deno.test({
    name: `MQ ${rings}: testpmd txonly --txq=2 -> 2 Workers: received == TX-packets per queue`,
    ignore: ignoreTestpmd,
    async fn() {
      await withVhost2(packed, "txonly", async (tp, port) => {
        const workers = await QueueWorkers.start(port, () => job(port, "rx", 0));
        await tp.startForwarding();
        await new Promise((r) => setTimeout(r, RX_MS));
        const fwd = await tp.stopForwarding();
        workers.stop(); // testpmd has stopped: what it sent is in the rings; Workers drain them
        const results = await workers.done();
        const x = await xstats(tp);
        let total = 0;
        for (let i = 0; i < 2; i++) {
          const sent = counter(x, `tx_q${i}_packets`);
          console.log(`  ${rings} pair ${i} RX: ${results[i].received} frames`);
          assert.ok(sent > 0, `testpmd sent on queue ${i}`);
          assert.equal(results[i].received, sent, `pair ${i} received what queue ${i} sent`);
          assert.equal(results[i].rxBytes, counter(x, `tx_q${i}_bytes`), `pair ${i} bytes`);
          assert.equal(port.queueStats(i).rxPackets, sent);
          total += sent;
        }
        assert.equal(fwd.txPackets, total, "testpmd TX-packets, all queues");
        assert.equal(port.stats.rxPackets, total);
      });
    },
  });

  Deno.test(`MQ ${rings}: 2 Workers -> TS device echo, 2 pairs: each frame back on its pair`, async () => {
    await warmUpWorkers();
    const fdsBefore = openFds();
    const device = await DeviceThread.start({ mode: "echo", queuePairs: 2 });
    try {
      const port = VirtioNet.open({
        path: device.path,
        packed,
        queuePairs: 2,
        detachQueues: true,
      });
      let results: QueueResult[];
      try {
        const workers = await QueueWorkers.start(port, (i) => job(port, "echo", COUNTS[i]));
        results = await workers.done();
      } finally {
        port.close();
      }
      const { stats, errors } = await device.stop();
      assert.deepEqual(errors, []);
      for (let i = 0; i < 2; i++) {
        const r = results[i];
        assert.equal(r.sent, COUNTS[i], `pair ${i} sent`);
        assert.equal(r.received, COUNTS[i], `pair ${i} got every frame back`);
        assert.equal(r.rxBytes, COUNTS[i] * FRAME);
        assert.equal(r.badFrames, 0, `pair ${i}: ${r.firstBad}`);
      }
      assert.equal(stats.fromDriverPackets, COUNTS[0] + COUNTS[1]);
      assert.equal(stats.toDriverPackets, COUNTS[0] + COUNTS[1]);
      assert.equal(stats.toDriverDropped, 0);
    } finally {
      await device.stop();
    }
    assert.equal(await fdsAfterWorkers(fdsBefore), fdsBefore);
  });
}

Deno.test("MQ: 2 pairs from one thread (no Workers) against the TS device sink", async () => {
  const device = await DeviceThread.start({ mode: "sink", queuePairs: 2 });
  try {
    const port = VirtioNet.open({ path: device.path, queuePairs: 2 });
    try {
      const { pool } = port;
      for (let b = 0; b < pool.count; b++) {
        writeUdpFrame(pool.bytes, pool.dataOffset(b), FRAME);
        pool.bytes[pool.dataOffset(b) + UDP_HEADERS] = 0;
      }
      const bufs = new Uint32Array(BURST), lens = new Uint32Array(BURST).fill(FRAME);
      for (let q = 0; q < 2; q++) {
        let sent = 0;
        while (sent < COUNTS[q]) {
          const k = pool.alloc(bufs, 0, Math.min(BURST, COUNTS[q] - sent));
          const s = port.txBurst(bufs, lens, k, q);
          pool.free(bufs, s, k - s);
          sent += s;
        }
        assert.equal(port.txDrain(5000, q), 0);
        assert.equal(port.queueStats(q).txPackets, COUNTS[q]);
      }
      assert.throws(() => port.txBurst(bufs, lens, 0, 2), /queue pair 2 does not exist/);
      assert.throws(() => port.queueHandle(0), /detachQueues/);
    } finally {
      port.close();
    }
    const { stats, errors } = await device.stop();
    assert.deepEqual(errors, []);
    assert.equal(stats.fromDriverPackets, COUNTS[0] + COUNTS[1]);
    assert.equal(port.stats.txPackets, COUNTS[0] + COUNTS[1], "counters readable after close");
  } finally {
    await device.stop();
  }
});

Deno.test("MQ: detachQueues with server mode or reconnect is refused before connecting", () => {
  for (const mode of [{ server: true }, { reconnect: true }]) {
    assert.throws(
      () =>
        VirtioNet.open({
          path: "/nonexistent/virtio-user.sock",
          queuePairs: 2,
          detachQueues: true,
          ...mode,
        }),
      (e: unknown) =>
        e instanceof TypeError && /detachQueues cannot be combined with server or reconnect/
          .test(e.message),
    );
  }
});

Deno.test("MQ: more pairs than the backend offers fails at GET_QUEUE_NUM, naming the fix", async () => {
  const device = await DeviceThread.start({ mode: "sink" });
  try {
    assert.throws(
      () => VirtioNet.open({ path: device.path, queuePairs: 2 }),
      /supports 1 queue pair\(s\), 2 requested.*queues=N/,
    );
  } finally {
    await device.stop();
  }
});

Deno.test({
  name:
    "MQ: DPDK's virtio-user with queues=2 --txq=2 txonly -> TS device sink, 2 pairs, every frame",
  ignore: ignoreTestpmd,
  async fn() {
    const device = await DeviceThread.start({ mode: "sink", queuePairs: 2 });
    try {
      await using tp = await Testpmd.start({
        vdev: `net_virtio_user0,path=${device.path},queues=2,packed_vq=1,queue_size=256`,
        forwardMode: "txonly",
        rxq: 2,
        txq: 2,
      });
      await tp.startForwarding();
      await new Promise((r) => setTimeout(r, RX_MS));
      const sent = await tp.stopForwarding();
      const x = await xstats(tp);
      const perQueue = [0, 1].map((i) => counter(x, `tx_q${i}_good_packets`)); // virtio PMD names
      console.log(`  virtio-user -> device: per queue ${perQueue.join(" + ")}`);
      assert.ok(perQueue[0] > 0 && perQueue[1] > 0, "testpmd sent on both queues");
      assert.equal(perQueue[0] + perQueue[1], sent.txPackets);
      // Every frame testpmd's PMD accepted is in a ring; the device takes them all.
      const until = Date.now() + 10_000;
      while (device.stats.fromDriverPackets < sent.txPackets && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 5));
      }
      await tp.stop();
      const { stats, errors } = await device.stop();
      assert.deepEqual(errors, []);
      assert.equal(
        stats.fromDriverPackets,
        sent.txPackets,
        "device took every frame of both queues",
      );
      assert.equal(stats.fromDriverBytes, 64 * sent.txPackets);
    } finally {
      await device.stop();
    }
  },
});

Deno.test("MQ: pktgen.ts --queues 2 --count N: the built-in device counts exactly N", async () => {
  const N = 100_000;
  const root = new URL("..", import.meta.url).pathname;
  const run = await runBounded(
    Deno.execPath(),
    ["run", "-A", "examples/pktgen.ts", "--queues", "2", "--count", String(N), "--json"],
    { timeoutMs: 60_000, cwd: root },
  );
  assert.equal(run.code, 0, run.stderr);
  const report = JSON.parse(run.stdout.trim().split("\n").at(-1)!);
  assert.equal(report.tx_packets, N);
  assert.equal(report.queues.length, 2);
  assert.equal(report.queues[0].tx_packets + report.queues[1].tx_packets, N);
  assert.equal(report.in_flight_at_exit, 0);
  assert.equal(report.device_from_driver_packets, N, "the device took every frame");
});

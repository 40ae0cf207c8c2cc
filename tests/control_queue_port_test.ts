/**
 * The port's control commands against real vhost-user backends: VQ_PAIRS_SET becomes
 * SET_VRING_ENABLE per ring (as in DPDK's virtio-user), MAC_ADDR_SET, PROMISC and ALLMULTI are
 * acked and recorded. Exact per-queue counts while pair 1 is disabled and after it is back:
 *
 * ```
 *   VirtioNet (2 pairs) ─ q0: A0 · B0 · C0 ──► testpmd net_vhost0,queues=2 rxonly (xstats per queue)
 *                       ─ q1: A1 ·  ✗  · C1 ──┘  logs "vring2/3 is disabled", "... is enabled"
 *              setQueuePairs(1) ┘     └ setQueuePairs(2)
 *   VirtioNet (2 pairs) ──► TS device sink, 2 pairs: the same phases, frames counted by the device
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceThread } from "../lib/device/device_thread.ts";
import { ControlCommandError } from "../lib/driver/control_queue.ts";
import { VirtioNet } from "../lib/driver/virtio_net.ts";
import { UDP_HEADERS, writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { requireTestpmd } from "./peers.ts";
import { PortDriver } from "./port_driver.ts";
import type { Testpmd } from "./testpmd.ts";
import { withTestpmdPort } from "./vhost_port.ts";

const ignoreTestpmd = requireTestpmd(1);
const FRAME = 64;
const BURST = 32;
/**
 * Frames per phase and queue; all different, so a frame counted on the wrong queue shows.
 * After A[0] = 2600 frames pair 0's 256-entry tx ring has wrapped 10 times: its used wrap
 * counter is 1 (bit 31 of a packed position) when VQ_PAIRS_SET moves it.
 */
const A = [2600, 2000], B0 = 1500, C = [500, 1000];
const NEW_MAC = "02:00:00:00:00:42";

/** Sends exactly `count` frames on pair `q` and waits until the device took them all. */
function send(port: VirtioNet, q: number, count: number): void {
  const { pool } = port;
  const bufs = new Uint32Array(BURST), lens = new Uint32Array(BURST).fill(FRAME);
  let sent = 0;
  const deadline = performance.now() + 10_000;
  while (sent < count) {
    if (performance.now() > deadline) {
      throw new Error(`queue ${q}: the device took ${sent} of ${count} frames in 10 s`);
    }
    const k = pool.alloc(bufs, 0, Math.min(BURST, count - sent));
    for (let i = 0; i < k; i++) {
      const at = pool.dataOffset(bufs[i]);
      writeUdpFrame(pool.bytes, at, FRAME, { srcMac: port.mac });
      pool.bytes[at + UDP_HEADERS] = q;
    }
    const s = port.txBurst(bufs, lens, k, q);
    pool.free(bufs, s, k - s);
    sent += s;
  }
  assert.equal(port.txDrain(5000, q), 0, `the device took every frame on queue ${q}`);
}

/** Bursts on a disabled pair are refused, naming the pair and the fix. */
function assertRefused(port: VirtioNet, q: number): void {
  const bufs = new Uint32Array(1), lens = new Uint32Array(1);
  const disabled = new RegExp(
    `queue pair ${q} is disabled \\(setQueuePairs\\(${q}\\) is in force\\); enable it with ` +
      `setQueuePairs\\(${q + 1}\\)`,
  );
  assert.throws(() => port.txBurst(bufs, lens, 0, q), disabled);
  assert.throws(() => port.rxBurst(bufs, lens, 1, q), disabled);
}

/** MAC, promiscuous and all-multicast: acked and recorded; too many pairs: ERR, named. */
function setAndCheckModes(port: VirtioNet): void {
  assert.equal(port.promiscuous, true, "promiscuous from the start");
  assert.equal(port.allMulticast, false);
  port.setPromiscuous(false);
  port.setAllMulticast(true);
  assert.equal(port.promiscuous, false);
  assert.equal(port.allMulticast, true);
  port.setMac(NEW_MAC);
  assert.deepEqual([...port.mac], [2, 0, 0, 0, 0, 0x42]);
  assert.throws(
    () => port.setQueuePairs(3),
    (e: unknown) =>
      e instanceof ControlCommandError && e.ack === 1 &&
      e.message === "VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: the device answered VIRTIO_NET_ERR: 3 " +
          "queue pairs asked, the port set up 2 (open it with queuePairs: 3)",
  );
  assert.throws(() => port.setQueuePairs(0), /0 queue pairs asked, the port set up 2$/);
  assert.equal(port.activeQueuePairs, 2, "a refused VQ_PAIRS_SET changes nothing");
}

/** testpmd's per-queue counters (`show port xstats`). */
async function xstats(tp: Testpmd): Promise<Map<string, number>> {
  const out = await tp.command("show port xstats 0");
  const m = new Map<string, number>();
  for (const [, name, value] of out.matchAll(/^\s*(\w+):\s+(\d+)\s*$/gm)) m.set(name, +value);
  return m;
}

/** Waits for the vhost PMD's log of vrings 2 and 3 changing to `state`, from offset `from`. */
async function waitVrings(tp: Testpmd, state: string, from: number): Promise<number> {
  let end = from;
  for (const vring of [2, 3]) {
    end = (await tp.waitForOutput(new RegExp(`vring${vring} is ${state}`), 10_000, end)).end;
    end = (await tp.waitForOutput(/Port 0: queue state event/, 10_000, end)).end;
  }
  return end;
}

for (const packed of [true, false]) {
  const rings = packed ? "packed" : "split";

  Deno.test({
    name: `control queue ${rings}: VQ_PAIRS_SET 1 and 2 against testpmd queues=2, exact counts`,
    ignore: ignoreTestpmd,
    async fn() {
      await withTestpmdPort(
        {
          queues: 2,
          forwardMode: "rxonly",
          rxq: 2,
          txq: 2,
          extraEalArgs: ["--log-level=pmd.net.vhost:info"],
          extraArgs: ["--print-event", "queue_state"],
        },
        { packed, queuePairs: 2 },
        async (tp, port) => {
          assert.equal(port.controlQueue, true);
          assert.equal(port.activeQueuePairs, 2);
          await tp.startForwarding();
          send(port, 0, A[0]);
          send(port, 1, A[1]);

          let at = tp.output.length;
          port.setQueuePairs(1);
          assert.equal(port.activeQueuePairs, 1);
          at = await waitVrings(tp, "disabled", at);
          assertRefused(port, 1);
          send(port, 0, B0);

          port.setQueuePairs(2);
          await waitVrings(tp, "enabled", at);
          send(port, 1, C[1]);
          send(port, 0, C[0]);
          setAndCheckModes(port);

          const fwd = await tp.stopForwarding();
          const x = await xstats(tp);
          const q0 = A[0] + B0 + C[0], q1 = A[1] + C[1];
          assert.equal(x.get("rx_q0_packets"), q0, "testpmd rx queue 0");
          assert.equal(x.get("rx_q0_bytes"), q0 * FRAME);
          assert.equal(x.get("rx_q1_packets"), q1, "testpmd rx queue 1: nothing while disabled");
          assert.equal(x.get("rx_q1_bytes"), q1 * FRAME);
          assert.equal(fwd.rxPackets, q0 + q1, "testpmd RX-packets, both queues");
          assert.equal(port.queueStats(0).txPackets, q0);
          assert.equal(port.queueStats(1).txPackets, q1);
        },
      );
    },
  });

  for (const workers of [false, true]) {
    // With pair Workers each VQ_PAIRS_SET moves pair 0 off its Worker and back at the position it
    // stopped at (a packed ring's has bit 31 set while its used wrap counter is 1).
    Deno.test(`control queue ${rings}: VQ_PAIRS_SET against the TS device${workers ? " with pair Workers" : ""}, 2 pairs, exact counts`, async () => {
      const device = await DeviceThread.start({ mode: "sink", queuePairs: 2, workers });
      try {
        const port = VirtioNet.open({ path: device.path, packed, queuePairs: 2 });
        try {
          send(port, 0, A[0]);
          send(port, 1, A[1]);
          port.setQueuePairs(1);
          assertRefused(port, 1);
          send(port, 0, B0);
          port.setQueuePairs(2);
          send(port, 1, C[1]);
          send(port, 0, C[0]);
          setAndCheckModes(port);
        } finally {
          port.close();
        }
        const { stats, errors } = await device.stop();
        assert.deepEqual(errors, []);
        const total = A[0] + A[1] + B0 + C[0] + C[1];
        assert.equal(stats.fromDriverPackets, total, "the device took every frame");
        assert.equal(stats.fromDriverBytes, total * FRAME);
      } finally {
        await device.stop();
      }
    });
  }
}

Deno.test("control queue: controlQueue false leaves the port without one, and says so", async () => {
  const device = await DeviceThread.start({ mode: "sink" });
  try {
    using port = VirtioNet.open({ path: device.path, controlQueue: false });
    assert.equal(port.controlQueue, false);
    assert.throws(
      () => port.setPromiscuous(false),
      /this port has no control queue: open it with controlQueue: true/,
    );
  } finally {
    await device.stop();
  }
});

Deno.test("control queue: VQ_PAIRS_SET 1 holds across a reconnect; 2 then works with the new device", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cvq-reconnect-" });
  const path = `${dir}/device.sock`;
  let device = await DeviceThread.start({ path, mode: "sink", queuePairs: 2 });
  const port = VirtioNet.open({
    path,
    queuePairs: 2,
    hugepages: false,
    reconnect: { retryMs: 5, maxRetryMs: 50 },
  });
  try {
    const drive = new PortDriver(port);
    port.setQueuePairs(1);
    send(port, 0, A[0]);
    const first = await device.stop();
    assert.deepEqual(first.errors, []);
    assert.equal(first.stats.fromDriverPackets, A[0]);
    assert.ok(await drive.untilLink("down", 30_000), "the port saw the device go");
    device = await DeviceThread.start({ path, mode: "sink", queuePairs: 2 });
    assert.ok(await drive.untilLink("up", 30_000), `reconnected (${port.downReason})`);
    assert.equal(port.activeQueuePairs, 1, "the pairs set before are kept");
    assertRefused(port, 1);
    send(port, 0, B0);
    port.setQueuePairs(2);
    send(port, 1, C[1]);
    const second = await device.stop();
    assert.deepEqual(second.errors, []);
    assert.equal(
      second.stats.fromDriverPackets,
      B0 + C[1],
      "the new device got both pairs' frames",
    );
  } finally {
    port.close();
    await device.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

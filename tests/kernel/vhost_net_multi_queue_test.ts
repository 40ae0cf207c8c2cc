/**
 * Two queue pairs over vhost-net (runs inside the test VM; see kernel_vm_test.ts): a vhost-net
 * fd per pair on a multi-queue tap, VIRTIO_NET_F_MQ provided by the frontend, and
 * VQ_PAIRS_SET through the control queue: pair 1's rings stop and its tap queue leaves the
 * tap's steering, so every frame the kernel sends lands on pair 0; then pair 1 comes back.
 *
 * ```
 *   txBurst q0, q1 ══vhost fd 0, 1══► tap queues 0, 1 ──► AF_PACKET: every frame, exact
 *   AF_PACKET ──► tap ──steering──► queue 0 / 1 ══► rxBurst q0 + q1: every frame, exact
 *   setQueuePairs(1): SET_BACKEND -1 + TUNSETQUEUE detach ──► all frames on q0 · (2): back
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { VirtioNet } from "../../lib/driver/virtio_net.ts";
import { hasFeature } from "../../lib/virtio/features.ts";
import { pollUntil, report, sh, TapSocket, testFrameSeq, writeTestFrame } from "./guest.ts";

const TAP = "vnm0";
const PEER_MAC = Uint8Array.of(0x02, 0, 0, 0, 0, 0x99);
const LEN = 100;
const BURST = 32;

/**
 * Sends `count` test frames from `first` on pair `q`, a window of BURST at a time (the packet
 * socket's buffer holds a few hundred), each window seen on the tap before the next.
 */
async function transmit(
  port: VirtioNet,
  socket: TapSocket,
  q: number,
  first: number,
  count: number,
): Promise<void> {
  const { pool } = port;
  const bufs = new Uint32Array(BURST), lens = new Uint32Array(BURST).fill(LEN);
  const got = new Uint8Array(2048);
  let sent = 0, seen = 0;
  while (sent < count) {
    const n = Math.min(BURST, count - sent);
    let queued = 0;
    await pollUntil(() => {
      const k = pool.alloc(bufs, 0, n - queued);
      for (let i = 0; i < k; i++) {
        const seq = first + sent + queued + i;
        writeTestFrame(pool.bytes, pool.dataOffset(bufs[i]), seq, LEN, PEER_MAC, port.mac);
      }
      const s = port.txBurst(bufs, lens, k, q);
      pool.free(bufs, s, k - s);
      queued += s;
      return queued === n;
    });
    assert.equal(queued, n, `pair ${q} queued every frame`);
    sent += n;
    await pollUntil(() => {
      for (let len; (len = socket.recv(got)) >= 0;) {
        const seq = testFrameSeq(got, 0, len);
        if (seq >= first && seq < first + count) seen++;
      }
      return seen === sent;
    });
    assert.equal(seen, sent, `the tap showed every frame of pair ${q}`);
  }
  assert.equal(port.txDrain(10_000, q), 0);
}

/**
 * Sends `count` frames into the tap, a window of BURST at a time, each window received before
 * the next; resolves with how many each active pair received.
 */
async function receive(port: VirtioNet, socket: TapSocket, count: number): Promise<number[]> {
  const frame = new Uint8Array(LEN);
  const { pool } = port;
  const bufs = new Uint32Array(BURST), lens = new Uint32Array(BURST);
  const per = new Array(port.activeQueuePairs).fill(0);
  for (let sent = 0; sent < count;) {
    const n = Math.min(BURST, count - sent);
    for (let i = 0; i < n; i++) {
      writeTestFrame(frame, 0, sent + i, LEN, port.mac, PEER_MAC);
      socket.send(frame, LEN);
    }
    sent += n;
    await pollUntil(() => {
      for (let q = 0; q < per.length; q++) {
        const k = port.rxBurst(bufs, lens, BURST, q);
        for (let i = 0; i < k; i++) {
          const seq = testFrameSeq(pool.bytes, pool.dataOffset(bufs[i]), lens[i]);
          if (seq >= 0 && seq < count) per[q]++;
        }
        pool.free(bufs, 0, k);
      }
      return per.reduce((a, b) => a + b) === sent;
    });
    assert.equal(per.reduce((a, b) => a + b), sent, `pairs received ${per.join(" + ")}`);
  }
  return per;
}

Deno.test("vhost-net 2 queue pairs: exact frames per pair; VQ_PAIRS_SET 1 steers all to pair 0", async () => {
  const notices: string[] = [];
  const port = VirtioNet.open({
    path: "/dev/vhost-net",
    tap: TAP,
    queuePairs: 2,
    packed: false,
    notice: (m) => notices.push(m),
  });
  try {
    assert.equal(port.queuePairs, 2);
    assert.ok(hasFeature(port.features, "NET_F_MQ"), "MQ negotiated (the frontend's)");
    await sh("ip", "link", "set", TAP, "up");
    using socket = new TapSocket(TAP);

    await transmit(port, socket, 0, 0, 300);
    await transmit(port, socket, 1, 300, 200);
    assert.equal(port.queueStats(0).txPackets, 300);
    assert.equal(port.queueStats(1).txPackets, 200);
    const both = await receive(port, socket, 400);
    assert.equal(both[0] + both[1], 400, `2 pairs received ${both.join(" + ")}`);

    port.setQueuePairs(1);
    assert.throws(
      () => port.txBurst(new Uint32Array(1), new Uint32Array(1), 0, 1),
      /queue pair 1 is disabled/,
    );
    const rx0Before = port.queueStats(0).rxPackets, rx1Before = port.queueStats(1).rxPackets;
    assert.deepEqual(await receive(port, socket, 400), [400], "pair 1 detached: all on pair 0");
    assert.equal(port.queueStats(0).rxPackets - rx0Before, 400);
    assert.equal(port.queueStats(1).rxPackets, rx1Before, "nothing reached pair 1");
    await transmit(port, socket, 0, 1000, 100);

    port.setQueuePairs(2);
    await transmit(port, socket, 1, 2000, 150);
    assert.equal(port.queueStats(1).txPackets, 350);
    const again = await receive(port, socket, 400);
    assert.equal(again[0] + again[1], 400);
    report(
      `vhost-net 2 pairs: rx split ${both.join("+")}, with 1 pair 400+0, again ${again.join("+")}`,
    );
  } finally {
    assert.deepEqual(port.close(), []);
  }
});

/**
 * The control queue over vhost-net (runs inside the test VM; see kernel_vm_test.ts): the kernel
 * has no control queue either, so the port answers the commands itself. One queue pair per
 * vhost-net fd: VQ_PAIRS_SET 2 is an honest VIRTIO_NET_ERR, 1 is OK; MAC_ADDR_SET, PROMISC and
 * ALLMULTI are acked and become the tap's filter (TUNSETTXFILTER): exact counts of frames
 * passed and dropped per destination, and transmitted frames carry the new MAC:
 *
 * ```
 *   setQueuePairs(2) ✗  setQueuePairs(1) ✓  setMac / setPromiscuous / setAllMulticast ✓
 *   txBurst (src = new MAC) ══vhost-net══► tap ──► AF_PACKET: N frames, src = new MAC
 *   rxBurst ◄══vhost-net══ tap ◄── AF_PACKET: N frames each to another MAC, multicast, the new MAC
 *           promiscuous off + all-multicast: 0, N, N · all-multicast off: 0, N · promiscuous: N, N, N
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { ControlCommandError } from "../../lib/driver/control_queue.ts";
import type { VirtioNet } from "../../lib/driver/virtio_net.ts";
import {
  onVhostNetTap,
  pollUntil,
  report,
  tapCounter,
  type TapSocket,
  testFrameSeq,
  writeTestFrame,
} from "./guest.ts";

const TAP = "vnc0";
const PEER_MAC = Uint8Array.of(0x02, 0, 0, 0, 0, 0x99);
const NEW_MAC = Uint8Array.of(0x02, 0, 0, 0, 0, 0x42);
const OTHER_MAC = Uint8Array.of(0x02, 0, 0, 0, 0, 0x77);
const MULTICAST = Uint8Array.of(0x01, 0, 0x5e, 0, 0, 0x01);
const FRAMES = 64;

/**
 * Sends FRAMES test frames to each of `dsts` in turn out of the tap, then receives until every
 * frame to the last one arrived; returns how many arrived for each destination.
 */
function receiveRound(
  port: VirtioNet,
  socket: TapSocket,
  dsts: Uint8Array[],
  bufs: Uint32Array,
  lens: Uint32Array,
): Promise<number[]> {
  const frame = new Uint8Array(LEN);
  dsts.forEach((dst, d) => {
    for (let i = 0; i < FRAMES; i++) {
      writeTestFrame(frame, 0, d * FRAMES + i, LEN, dst, PEER_MAC);
      socket.send(frame, LEN);
    }
  });
  const counts = dsts.map(() => 0);
  const last = dsts.length - 1;
  const { pool } = port;
  return pollUntil(() => {
    const k = port.rxBurst(bufs, lens, bufs.length);
    for (let i = 0; i < k; i++) {
      const seq = testFrameSeq(pool.bytes, pool.dataOffset(bufs[i]), lens[i]);
      if (seq >= 0 && seq < dsts.length * FRAMES) counts[Math.floor(seq / FRAMES)]++;
    }
    pool.free(bufs, 0, k);
    return counts[last] === FRAMES;
  }).then(() => counts);
}
const LEN = 128;

Deno.test("vhost-net control queue: pairs set honest, MAC and rx modes filter the tap, exact counts", async () => {
  await onVhostNetTap(TAP, { packed: false }, async (port, socket) => {
    assert.equal(port.controlQueue, true);
    assert.equal(port.activeQueuePairs, 1);
    assert.throws(
      () => port.setQueuePairs(2),
      (e: unknown) =>
        e instanceof ControlCommandError && e.ack === 1 &&
        e.message === "VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: the device answered VIRTIO_NET_ERR: 2 " +
            "queue pairs asked, the port set up 1 (open it with queuePairs: 2)",
    );
    port.setQueuePairs(1);
    assert.equal(port.activeQueuePairs, 1);
    port.setPromiscuous(false);
    port.setAllMulticast(true);
    assert.equal(port.promiscuous, false);
    assert.equal(port.allMulticast, true);
    port.setMac(NEW_MAC);
    assert.deepEqual([...port.mac], [...NEW_MAC]);

    // Transmit: every frame on the tap, with the new source MAC.
    const { pool } = port;
    const bufs = new Uint32Array(FRAMES), lens = new Uint32Array(FRAMES).fill(LEN);
    const tapRx = tapCounter(TAP, "rx_packets");
    assert.equal(pool.alloc(bufs, 0, FRAMES), FRAMES);
    for (let i = 0; i < FRAMES; i++) {
      writeTestFrame(pool.bytes, pool.dataOffset(bufs[i]), i, LEN, PEER_MAC, port.mac);
    }
    let queued = 0;
    await pollUntil(() => {
      queued += port.txBurst(bufs.subarray(queued), lens.subarray(queued), FRAMES - queued);
      return queued === FRAMES;
    });
    assert.equal(queued, FRAMES);
    const got = new Uint8Array(2048);
    let seen = 0, newSrc = 0;
    await pollUntil(() => {
      for (let len; (len = socket.recv(got)) >= 0;) {
        if (testFrameSeq(got, 0, len) !== seen) continue;
        seen++;
        if (got.subarray(6, 12).every((b, i) => b === NEW_MAC[i])) newSrc++;
      }
      return seen === FRAMES;
    });
    assert.equal(seen, FRAMES, "the tap showed every frame, in order");
    assert.equal(newSrc, FRAMES, "every frame carried the MAC set through the control queue");
    assert.equal(tapCounter(TAP, "rx_packets") - tapRx, FRAMES, "tap rx counter");
    assert.equal(port.txDrain(10_000), 0);

    // Receive through the tap's filter (TUNSETTXFILTER): promiscuous off, all-multicast on,
    // then all-multicast off, then promiscuous on again. Frames to the port's MAC go last in each
    // round: the tap's queue is FIFO, so once they are in, so is anything sent before them.
    const rx = (dsts: Uint8Array[]) => receiveRound(port, socket, dsts, bufs, lens);
    let dropped = tapCounter(TAP, "tx_dropped");
    const droppedNow = () => {
      const [before, now] = [dropped, dropped = tapCounter(TAP, "tx_dropped")];
      return now - before;
    };
    assert.deepEqual(await rx([OTHER_MAC, MULTICAST, NEW_MAC]), [0, FRAMES, FRAMES]);
    assert.equal(droppedNow(), FRAMES, "the tap dropped the frames to another MAC");
    port.setAllMulticast(false);
    assert.deepEqual(await rx([MULTICAST, NEW_MAC]), [0, FRAMES]);
    assert.equal(droppedNow(), FRAMES, "and then the multicast ones");
    port.setPromiscuous(true);
    assert.deepEqual(await rx([OTHER_MAC, MULTICAST, NEW_MAC]), [FRAMES, FRAMES, FRAMES]);
    assert.equal(droppedNow(), 0, "promiscuous: nothing dropped");
    report(`vhost-net control: ${FRAMES} frames per destination and mode, filter counts exact`);
  });
});

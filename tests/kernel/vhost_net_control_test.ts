/**
 * The control queue over vhost-net (runs inside the test VM; see kernel_vm_test.ts): the kernel
 * has no control queue either, so the port answers the commands itself. One queue pair per
 * vhost-net fd: VQ_PAIRS_SET 2 is an honest VIRTIO_NET_ERR, 1 is OK; MAC_ADDR_SET, PROMISC and
 * ALLMULTI are acked and recorded, and frames still flow exactly, with the new MAC:
 *
 * ```
 *   setQueuePairs(2) ✗  setQueuePairs(1) ✓  setMac / setPromiscuous / setAllMulticast ✓
 *   txBurst (src = new MAC) ══vhost-net══► tap ──► AF_PACKET: N frames, src = new MAC
 *   rxBurst ◄══vhost-net══ tap ◄── AF_PACKET: N frames to the new MAC
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { ControlCommandError } from "../../lib/driver/control_queue.ts";
import {
  onVhostNetTap,
  pollUntil,
  report,
  tapCounter,
  testFrameSeq,
  writeTestFrame,
} from "./guest.ts";

const TAP = "vnc0";
const PEER_MAC = Uint8Array.of(0x02, 0, 0, 0, 0, 0x99);
const NEW_MAC = Uint8Array.of(0x02, 0, 0, 0, 0, 0x42);
const FRAMES = 64;
const LEN = 128;

Deno.test("vhost-net control queue: pairs set honest, MAC and rx modes acked, frames exact", async () => {
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

    // Receive: frames to the new MAC arrive, all of them.
    const frame = new Uint8Array(LEN);
    for (let i = 0; i < FRAMES; i++) {
      writeTestFrame(frame, 0, i, LEN, NEW_MAC, PEER_MAC);
      socket.send(frame, LEN);
    }
    let received = 0;
    await pollUntil(() => {
      const k = port.rxBurst(bufs, lens, FRAMES);
      for (let i = 0; i < k; i++) {
        if (testFrameSeq(pool.bytes, pool.dataOffset(bufs[i]), lens[i]) === received) received++;
      }
      pool.free(bufs, 0, k);
      return received === FRAMES;
    });
    assert.equal(received, FRAMES, "rxBurst got every frame sent to the new MAC, in order");
    report(`vhost-net control: ${FRAMES} frames each way with MAC ${[...NEW_MAC].join(",")}`);
  });
});

/**
 * vhost-net in a real kernel, frame by frame (runs inside the test VM; see kernel_vm_test.ts):
 * split rings with and without EVENT_IDX, queue sizes 256 and 1024, frames of 60..1514 bytes.
 *
 * ```
 *   txBurst ──► transmitq ══vhost-net══► tap ──► AF_PACKET socket: every frame, byte-identical
 *   rxBurst ◄── receiveq  ◄═vhost-net══ tap ◄── AF_PACKET send:   every frame, byte-identical
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { hasFeature } from "../../lib/virtio/features.ts";
import {
  firstDifference,
  frameSize,
  MAX_FRAME,
  MIN_FRAME,
  onVhostNetTap,
  pollUntil,
  report,
  tapCounter,
  testFrameSeq,
  writeTestFrame,
} from "./guest.ts";

const TAP = "vnf0";
const PEER_MAC = Uint8Array.of(0x02, 0, 0, 0, 0, 0x99);
const WINDOW = 32;

function expected(seq: number, dst: Uint8Array, src: Uint8Array): Uint8Array {
  const f = new Uint8Array(frameSize(seq));
  writeTestFrame(f, 0, seq, f.length, dst, src);
  return f;
}

function totalBytes(frames: number): number {
  let total = 0;
  for (let i = 0; i < frames; i++) total += frameSize(i);
  return total;
}

for (const queueSize of [256, 1024]) {
  for (const eventIdx of [true, false]) {
    const config = `split q${queueSize} ${eventIdx ? "EVENT_IDX" : "no EVENT_IDX"}`;
    // More than two laps of the ring; every size 60..1514 appears (97 is coprime with 1455).
    const frames = Math.max(2 * queueSize + 100, MAX_FRAME - MIN_FRAME + 1);

    Deno.test(`vhost-net ${config}: ${frames} transmitted frames reach the tap byte-identical`, async () => {
      // packed is left at its default (true): vhost-net uses split rings with one notice.
      await onVhostNetTap(TAP, { queueSize, eventIdx }, async (port, socket, notices) => {
        assert.equal(port.packed, false);
        // One line says split rings are used; another may be the hugepage fallback.
        const ring = notices.filter((m) => /packed/.test(m));
        assert.equal(ring.length, 1, `notices: ${notices.join(" | ")}`);
        assert.match(ring[0], /split rings/);
        assert.equal(hasFeature(port.features, "RING_F_EVENT_IDX"), eventIdx);
        assert.equal(hasFeature(port.features, "VHOST_NET_F_VIRTIO_NET_HDR"), false);
        assert.equal(hasFeature(port.features, "F_ACCESS_PLATFORM"), false);
        const rxBefore = tapCounter(TAP, "rx_packets");
        const { pool } = port;
        const bufs = new Uint32Array(WINDOW), lens = new Uint32Array(WINDOW);
        const got = new Uint8Array(2048);
        let sent = 0, seen = 0, bytes = 0, other = 0;
        const mismatches: string[] = [];
        while (sent < frames) {
          const n = pool.alloc(bufs, 0, Math.min(WINDOW, frames - sent));
          for (let i = 0; i < n; i++) {
            lens[i] = frameSize(sent + i);
            writeTestFrame(
              pool.bytes,
              pool.dataOffset(bufs[i]),
              sent + i,
              lens[i],
              PEER_MAC,
              port.mac,
            );
          }
          let queued = 0;
          await pollUntil(() => {
            queued += port.txBurst(bufs.subarray(queued), lens.subarray(queued), n - queued);
            return queued === n;
          });
          assert.equal(queued, n, `transmitq took ${queued} of ${n} frames`);
          sent += n;
          await pollUntil(() => {
            for (let len; (len = socket.recv(got)) >= 0;) {
              const seq = testFrameSeq(got, 0, len);
              if (seq < 0) {
                other++;
                continue;
              }
              const at = seq === seen
                ? firstDifference(got, 0, len, expected(seen, PEER_MAC, port.mac))
                : 0;
              if (at >= 0) mismatches.push(`frame ${seen}: seq ${seq}, ${len} B, differs at ${at}`);
              seen++;
              bytes += len;
            }
            return seen === sent;
          });
          assert.equal(seen, sent, `the tap showed ${seen} of ${sent} frames`);
        }
        assert.deepEqual(mismatches, []);
        assert.equal(port.txDrain(10_000), 0, "vhost-net used every transmitted buffer");
        assert.equal(port.stats.txPackets, frames);
        assert.equal(bytes, totalBytes(frames));
        assert.equal(port.stats.txBytes, totalBytes(frames));
        assert.equal(tapCounter(TAP, "rx_packets") - rxBefore, frames, "tap rx counter");
        report(`${config} tx: ${frames} frames, ${bytes} bytes on the tap, ${other} other frames`);
      });
    });

    Deno.test(`vhost-net ${config}: ${frames} frames written into the tap arrive at rxBurst byte-identical`, async () => {
      await onVhostNetTap(
        TAP,
        { packed: false, queueSize, eventIdx },
        async (port, socket, notices) => {
          assert.deepEqual(
            notices.filter((m) => /packed/.test(m)),
            [],
            "split asked: no ring notice",
          );
          const { pool } = port;
          const bufs = new Uint32Array(WINDOW), lens = new Uint32Array(WINDOW);
          let sent = 0, seen = 0, bytes = 0, other = 0;
          const mismatches: string[] = [];
          while (sent < frames) {
            const n = Math.min(WINDOW, frames - sent);
            for (let i = 0; i < n; i++) {
              const f = expected(sent + i, port.mac, PEER_MAC);
              socket.send(f, f.length);
            }
            sent += n;
            await pollUntil(() => {
              const k = port.rxBurst(bufs, lens, WINDOW);
              for (let i = 0; i < k; i++) {
                const at = pool.dataOffset(bufs[i]);
                const seq = testFrameSeq(pool.bytes, at, lens[i]);
                if (seq < 0) {
                  other++;
                  continue;
                }
                const d = seq === seen
                  ? firstDifference(pool.bytes, at, lens[i], expected(seen, port.mac, PEER_MAC))
                  : 0;
                if (d >= 0) {
                  mismatches.push(`frame ${seen}: seq ${seq}, ${lens[i]} B, differs at ${d}`);
                }
                seen++;
                bytes += lens[i];
              }
              pool.free(bufs, 0, k);
              return seen === sent;
            });
            assert.equal(seen, sent, `rxBurst returned ${seen} of ${sent} frames`);
          }
          assert.deepEqual(mismatches, []);
          assert.equal(bytes, totalBytes(frames));
          assert.equal(port.stats.rxPackets, frames + other);
          assert.equal(port.stats.rxNoBuffers, 0);
          assert.equal(tapCounter(TAP, "tx_dropped"), 0, "the tap dropped nothing");
          report(
            `${config} rx: ${frames} frames, ${bytes} bytes at rxBurst, ${other} other frames`,
          );
        },
      );
    });
  }
}

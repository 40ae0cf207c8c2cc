/**
 * A peer that dies: `dpdk-testpmd` (DPDK's vhost PMD) killed with SIGKILL under a running
 * {@linkcode VirtioNet}, with frames flowing and with an idle port:
 *
 * ```
 *   VirtioNet.txBurst / rxBurst ──vhost-user──► testpmd rxonly   ── kill -9 ──► POLLHUP
 *   port.link "down", linkchange event, bursts return 0, pool full, close() reports, no throw
 * ```
 *
 * The detection latency (SIGKILL sent → `linkchange`) is printed, not asserted (the machine may
 * be loaded); the waits are bounded and generous.
 *
 * @module
 */

import assert from "node:assert/strict";
import { openFds } from "./helpers.ts";
import { type LinkChange, VirtioNet } from "../lib/driver/virtio_net.ts";
import { writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { requireTestpmd } from "./peers.ts";
import { Testpmd } from "./testpmd.ts";

const ignore = requireTestpmd(1);

/** Longest wait for the driver to notice the hang-up before the test fails. */
const NOTICE_MS = 20_000;
const BURST = 32;

/** One event-loop turn, so the harness (async I/O) and timers run between slices of bursts. */
const turn = () => new Promise<void>((r) => setTimeout(r, 0));

for (const packed of [true, false]) {
  for (const traffic of [true, false]) {
    const ring = packed ? "packed" : "split";
    Deno.test({
      name: `testpmd killed -9 under VirtioNet (${ring}, ${
        traffic ? "frames flowing" : "idle"
      }): link down, every buffer back, close() quiet`,
      ignore,
      async fn() {
        const fdsBefore = openFds();
        const dir = await Deno.makeTempDir({ prefix: "link-testpmd-" });
        const sock = `${dir}/vhost.sock`;
        try {
          const tp = await Testpmd.start({
            vdev: `net_vhost0,iface=${sock},queues=1`,
            forwardMode: "rxonly",
          });
          try {
            await tp.waitForSocket(sock);
            const port = VirtioNet.open({ path: sock, packed, hugepages: "auto" });
            const { pool } = port;
            let change: LinkChange | null = null;
            let noticedAt = 0;
            port.addEventListener("linkchange", (e) => {
              change = (e as CustomEvent<LinkChange>).detail;
              noticedAt = performance.now();
            });
            await tp.waitForLinkUp();
            await tp.startForwarding();
            for (let n = 0; n < pool.count; n++) writeUdpFrame(pool.bytes, pool.dataOffset(n), 64);
            const bufs = new Uint32Array(BURST), lens = new Uint32Array(BURST).fill(64);
            const burst = () => {
              if (traffic) {
                const n = pool.alloc(bufs, 0, BURST);
                const sent = port.txBurst(bufs, lens, n);
                pool.free(bufs, sent, n - sent);
              } else {
                pool.free(bufs, 0, port.rxBurst(bufs, lens, BURST));
              }
            };
            // Traffic (or idle polling) for a while before the kill.
            for (let i = 0; i < 200; i++) {
              for (let j = 0; j < 1000; j++) burst();
              await turn();
            }
            if (traffic) assert.ok(port.stats.txPackets > 0, "frames were sent before the kill");
            const killedAt = performance.now();
            const killed = tp.killHard(); // SIGKILL goes out synchronously
            while (port.link === "up" && performance.now() - killedAt < NOTICE_MS) {
              for (let j = 0; j < 1000; j++) burst();
              await turn();
            }
            await killed;
            assert.equal(port.link, "down", `hang-up noticed within ${NOTICE_MS} ms`);
            assert.ok(change !== null, "a linkchange event was dispatched");
            assert.equal((change as LinkChange).link, "down");
            assert.match(port.downReason, /hung up|closed the connection/);
            console.log(
              `  ${ring} ${traffic ? "traffic" : "idle"}: hang-up noticed ${
                (noticedAt - killedAt).toFixed(2)
              } ms after SIGKILL; tx ${port.stats.txPackets}`,
            );
            assert.equal(pool.available, pool.count, "every buffer is back in the pool");
            // Bursts on a dead port: 0, buffers stay the caller's.
            const n = pool.alloc(bufs, 0, BURST);
            assert.equal(port.txBurst(bufs, lens, n), 0, "txBurst on a dead port sends nothing");
            pool.free(bufs, 0, n);
            assert.equal(port.rxBurst(bufs, lens, BURST), 0, "rxBurst on a dead port gets 0");
            const untold = port.close();
            assert.equal(untold.length, 1, `close() reports what it could not tell: ${untold}`);
            assert.match(untold[0], /rings not stopped/);
            assert.deepEqual(port.close(), [], "close() is idempotent");
            assert.throws(() => port.pool.bytes, /closed/, "pool.bytes after close throws");
            assert.throws(() => port.rxBurst(bufs, lens, BURST), /closed/);
          } finally {
            await tp.killHard();
          }
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
        assert.equal(openFds(), fdsBefore, "every fd closed");
      },
    });
  }
}

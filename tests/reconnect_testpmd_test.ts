/**
 * Server mode and reconnect: {@linkcode VirtioNet} listens (`server: true`), `dpdk-testpmd`
 * connects as a vhost-user client (`net_vhost0,iface=SOCK,client=1`, rxonly) and is killed with
 * SIGKILL mid-traffic, again and again; a new testpmd connects each time:
 *
 * ```
 *   incarnation k: testpmd client=1 ──connects──► VirtioNet (listening) ──txBurst──► RX-packets
 *                  drain: testpmd RX-packets == frames the driver saw used in incarnation k
 *                  more traffic, kill -9 ──► link down, pool full ──► next testpmd connects
 * ```
 *
 * `VIRTIO_SOAK_ROUNDS` sets the number of incarnations (default 20; `deno task soak`: 100).
 *
 * @module
 */

import assert from "node:assert/strict";
import { openFds } from "./helpers.ts";
import { type LinkChange, VirtioNet } from "../lib/driver/virtio_net.ts";
import { writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { env, requireTestpmd } from "./peers.ts";
import { Testpmd } from "./testpmd.ts";
import { PortDriver } from "./port_driver.ts";

const ignore = requireTestpmd(1);
const ROUNDS = Number(env("VIRTIO_SOAK_ROUNDS") ?? 20);
/** Frames per incarnation counted exactly (then more flow until the kill). */
const FRAMES = 20_000;
/** Bounded waits (generous: the machine may be loaded). */
const WAIT_MS = 30_000;
const BURST = 32;

const turn = () => new Promise<void>((r) => setTimeout(r, 0));

Deno.test({
  name: `server mode: testpmd (client=1) killed -9 mid-traffic ${ROUNDS} times; traffic resumes`,
  ignore,
  async fn() {
    const fdsBefore = openFds();
    const dir = await Deno.makeTempDir({ prefix: "reconnect-testpmd-" });
    const sock = `${dir}/virtio-user.sock`;
    const vdev = `net_vhost0,iface=${sock},queues=1,client=1`;
    let tp = await Testpmd.start({ vdev, forwardMode: "rxonly" });
    let port: VirtioNet | null = null;
    try {
      await tp.startForwarding();
      // testpmd's vhost client retries its connect about once a second until we listen.
      port = VirtioNet.open({ path: sock, server: true, hugepages: "auto" });
      assert.equal(Deno.lstatSync(sock).mode! & 0o777, 0o600, "the socket is mode 0600");
      const p = port;
      const { pool, stats } = p;
      const ups: string[] = [];
      p.addEventListener("linkchange", (e) => ups.push((e as CustomEvent<LinkChange>).detail.link));
      for (let n = 0; n < pool.count; n++) writeUdpFrame(pool.bytes, pool.dataOffset(n), 64);
      const drive = new PortDriver(p, 64);
      const counts: string[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        // Up: the new backend negotiated, the rings were rebuilt (bursts drive the accept).
        const up = await drive.untilLink("up", WAIT_MS);
        assert.ok(up, `round ${round}: a new backend connected (${p.downReason})`);
        assert.equal(p.reconnects, round, "one reconnect per restart");
        // Exact part: FRAMES frames, drained, counted by testpmd.
        const completedBefore = stats.txCompleted;
        const left = await drive.sendExactly(FRAMES, WAIT_MS);
        assert.equal(left, 0, `round ${round}: all ${FRAMES} frames went out`);
        const inFlight = await drive.drain(WAIT_MS);
        assert.equal(inFlight, 0, `round ${round}: testpmd took every frame`);
        const delivered = stats.txCompleted - completedBefore;
        assert.equal(delivered, FRAMES, "the driver saw every frame used");
        let rx = (await tp.stats()).rxPackets;
        const countBy = Date.now() + WAIT_MS;
        while (rx < delivered && Date.now() < countBy) {
          await new Promise((r) => setTimeout(r, 10));
          rx = (await tp.stats()).rxPackets;
        }
        assert.equal(rx, delivered, `round ${round}: testpmd RX-packets == frames delivered`);
        counts.push(`${rx}`);
        // Mid-traffic kill.
        for (let i = 0; i < 2000; i++) drive.send(BURST);
        const killed = tp.killHard();
        const downBy = Date.now() + WAIT_MS;
        while (p.link === "up" && Date.now() < downBy) {
          for (let i = 0; i < 1000; i++) drive.send(BURST);
          await turn();
        }
        await killed;
        assert.equal(p.link, "down", `round ${round}: the hang-up was noticed`);
        assert.equal(pool.available, pool.count, `round ${round}: every buffer back`);
        tp = await Testpmd.start({ vdev, forwardMode: "rxonly" });
        await tp.startForwarding();
      }
      // The last testpmd connects too, then the port closes cleanly with it.
      await drive.untilLink("up", WAIT_MS);
      assert.equal(p.link, "up");
      console.log(`  ${ROUNDS} incarnations, testpmd RX-packets each: ${counts.join(" ")}`);
      assert.equal(ups.filter((l) => l === "up").length, ROUNDS + 0, "a linkchange up per restart");
      assert.deepEqual(p.close(), [], "close() told the last backend everything");
      assert.equal(pool.available, pool.count, "the pool is full after close");
      assert.throws(() => Deno.lstatSync(sock), "the socket file is removed");
    } finally {
      port?.close();
      await tp.killHard();
      await Deno.remove(dir, { recursive: true });
    }
    assert.equal(openFds(), fdsBefore, "every fd closed");
  },
});

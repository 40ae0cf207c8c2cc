/**
 * `examples/ping.ts` over vhost-user: DPDK's testpmd joins two vhost ports in io forwarding, this
 * test's own port sends ARP and ICMP echo requests through it, ping.ts answers on the other.
 *
 * ```
 *   VirtioNet (test) ──► net_vhost0 ─io─► net_vhost1 ──► ping.ts --ip 10.0.9.2
 *   replies checked  ◄── net_vhost0 ◄─io── net_vhost1 ◄──┘ (ARP is-at, echo replies)
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { VirtioNet } from "../lib/driver/virtio_net.ts";
import { parseMac } from "../lib/driver/virtio_net.ts";
import { parseIpv4 } from "../lib/packet/ipv4.ts";
import { arpRequest, assertEchoReply, echoRequest } from "./arp_icmp_frames.ts";
import { startExample } from "./helpers.ts";
import { requireTestpmd } from "./peers.ts";
import { Testpmd } from "./testpmd.ts";

const ignore = requireTestpmd(1, 512);
const REQUESTS = 50;
const OUR_IP = parseIpv4("10.0.9.1"), PING_IP = parseIpv4("10.0.9.2");

/** Sends `frame` and returns the next frame received (copied), or null after `timeoutMs`. */
function exchange(port: VirtioNet, frame: Uint8Array, timeoutMs = 10_000): Uint8Array | null {
  const { pool } = port;
  const bufs = new Uint32Array(32), lens = new Uint32Array(32);
  assert.equal(pool.alloc(bufs, 0, 1), 1);
  pool.bytes.set(frame, pool.dataOffset(bufs[0]));
  lens[0] = frame.length;
  assert.equal(port.txBurst(bufs, lens, 1), 1);
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const n = port.rxBurst(bufs, lens, 32);
    if (n === 0) continue;
    const at = pool.dataOffset(bufs[0]);
    const got = pool.bytes.slice(at, at + lens[0]);
    pool.free(bufs, 0, n);
    assert.equal(n, 1, "one reply per request");
    return got;
  }
  return null;
}

Deno.test({
  name:
    `examples/ping.ts over vhost-user (testpmd io): ARP, then ${REQUESTS} echo requests, ${REQUESTS} replies`,
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "virtio-ping-" });
    const sockA = `${dir}/test.sock`, sockB = `${dir}/ping.sock`;
    try {
      await using tp = await Testpmd.start({
        vdev: `net_vhost0,iface=${sockA},queues=1`,
        extraEalArgs: ["--vdev", `net_vhost1,iface=${sockB},queues=1`],
        removeFiles: [sockB],
        forwardMode: "io",
        memMb: 512,
      });
      await tp.waitForSocket(sockA);
      await tp.waitForSocket(sockB);
      await using ping = await startExample(
        "ping",
        ["--path", sockB, "--ip", "10.0.9.2", "--count", `${REQUESTS}`, "--quiet"],
        "stdout",
        /\n/,
      );
      const ready =
        /^ping: answering ARP and ICMP echo for 10\.0\.9\.2 at ([0-9a-f:]{17}) on vhost-user/
          .exec(ping.ready);
      assert.ok(ready, ping.ready);
      const pingMac = parseMac(ready[1]);
      using port = VirtioNet.open({ path: sockA, queueSize: 256 });
      await tp.waitForLinkUp(10_000, 0);
      await tp.waitForLinkUp(10_000, 1);
      await tp.startForwarding();

      const arp = exchange(port, arpRequest(port.mac, OUR_IP, PING_IP));
      assert.ok(arp, "no ARP reply");
      const want = new Uint8Array(42);
      want.set(port.mac, 0);
      want.set(pingMac, 6);
      want.set([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2], 12);
      want.set(pingMac, 22);
      new DataView(want.buffer).setUint32(28, PING_IP);
      want.set(port.mac, 32);
      new DataView(want.buffer).setUint32(38, OUR_IP);
      assert.deepEqual(arp, want, "ARP is-at, byte for byte");

      for (let seq = 0; seq < REQUESTS; seq++) {
        const size = [0, 56, 1000, 1472][seq % 4];
        const request = echoRequest(pingMac, port.mac, OUR_IP, PING_IP, 0x4242, seq, size);
        const reply = exchange(port, request);
        assert.ok(reply, `no reply to echo request ${seq}`);
        assertEchoReply(reply, request);
      }
      const { code, stdout, stderr } = await ping.finish();
      assert.equal(code, 0, stdout + stderr);
      assert.match(
        stdout,
        new RegExp(`answered ${REQUESTS} echo request\\(s\\) and 1 ARP request\\(s\\); ignored 0`),
      );
      const fwd = await tp.stopForwarding();
      assert.equal(fwd.rxPackets, 2 * (1 + REQUESTS), "testpmd forwarded each request and reply");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * Checks the testpmd harness with DPDK on both sides, no project code involved: testpmd A is a
 * vhost-user backend in rxonly, testpmd B a virtio-user driver in txonly; after B stops first and
 * A drains, A's received count equals B's sent count exactly. Prints the 64 B rate as the C
 * baseline the TypeScript stack is compared with.
 *
 * ```
 *   B: net_virtio_user0 (txonly, CPU 1) ──vhost-user──► A: net_vhost0 (rxonly, CPU 0)
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { requireTestpmd } from "./peers.ts";
import { Testpmd } from "./testpmd.ts";

const ignore = requireTestpmd(2);
const MEASURE_MS = 4000;

async function pair(packed: boolean): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "testpmd-harness-" });
  const sock = `${dir}/vhost.sock`;
  try {
    await using a = await Testpmd.start({
      vdev: `net_vhost0,iface=${sock},queues=1`,
      forwardMode: "rxonly",
      cpu: 0,
    });
    await a.waitForSocket(sock);
    await a.startForwarding();
    await using b = await Testpmd.start({
      vdev: `net_virtio_user0,path=${sock},queues=1,packed_vq=${packed ? 1 : 0},queue_size=256`,
      forwardMode: "txonly",
      cpu: 1,
    });
    await a.waitForLinkUp();
    await b.startForwarding();

    // Rate over a fixed window, from A's port counters, after a short warm-up.
    await sleep(500);
    const t0 = performance.now();
    const s0 = await a.stats();
    await sleep(MEASURE_MS);
    const s1 = await a.stats();
    const seconds = (performance.now() - t0) / 1000;
    const mpps = (s1.rxPackets - s0.rxPackets) / seconds / 1e6;

    const sent = await b.stopForwarding();
    // Every frame B's PMD accepted is in the ring; A drains it. Wait (bounded) until A's port has
    // counted them, however slowly A runs on a loaded machine, then stop A.
    const deadline = Date.now() + 10_000;
    while ((await a.stats()).rxPackets < sent.txPackets && Date.now() < deadline) await sleep(10);
    const received = await a.stopForwarding();
    console.log(
      `testpmd virtio-user(${packed ? "packed" : "split"}) txonly -> vhost rxonly, 64 B: ` +
        `${mpps.toFixed(2)} Mpps; sent ${sent.txPackets}, received ${received.rxPackets}`,
    );
    assert.ok(sent.txPackets > 0, "virtio-user testpmd sent nothing");
    assert.equal(received.rxPackets, sent.txPackets, "vhost RX count != virtio-user TX count");
    assert.equal(received.rxDropped, 0);

    await b.stop();
    await a.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "testpmd harness: virtio-user packed txonly -> vhost rxonly, exact counts",
  ignore,
  fn: () => pair(true),
});

Deno.test({
  name: "testpmd harness: virtio-user split txonly -> vhost rxonly, exact counts",
  ignore,
  fn: () => pair(false),
});

Deno.test({
  name: "testpmd harness: start failure reports testpmd's output",
  ignore,
  async fn() {
    await assert.rejects(
      Testpmd.start({ vdev: "net_no_such_driver0", startTimeoutMs: 20000 }),
      (e: Error) => /exited/.test(e.message) && /last output lines/.test(e.message),
    );
  },
});

Deno.test("testpmd harness: replies are found when log lines split every prompt", async () => {
  // The stand-in writes `t` + a vhost log line + `estpmd> ` for each prompt, the interleaving
  // that once hid testpmd's prompt from a harness that waited for it.
  const binary = new URL("./fixtures/split_prompt_testpmd.sh", import.meta.url).pathname;
  await using tp = await Testpmd.start({ vdev: "net_null0", binary, startTimeoutMs: 5000 });
  for (let i = 0; i < 20; i++) {
    const s = await tp.stats(0);
    assert.equal(s.rxPackets, 42);
    assert.equal(s.txBytes, 448);
  }
  await tp.stop();
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The kernel pings `examples/ping.ts` through a tap and vhost-net (inside the test VM): busybox
 * `ping` sends N echo requests to an address only the example answers (after ARP), and gets N
 * replies.
 *
 * ```
 *   busybox ping 10.0.7.2 ──► tap vnp0 (10.0.7.1/24) ══vhost-net══► ping.ts --ip 10.0.7.2
 *                  replies ◄──────────────────────── ◄═════════════┘ (ARP is-at, echo reply)
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { persistentTap, removeTap, report } from "./guest.ts";
import { runBounded, startExample } from "../helpers.ts";

const TAP = "vnp0";
const REQUESTS = 20;

Deno.test(`kernel ping → examples/ping.ts over vhost-net: ${REQUESTS} requests, ${REQUESTS} replies`, async () => {
  await persistentTap(TAP, "10.0.7.1/24");
  // Up to 60 ARP probes, 1 s apart (default 3): a responder slowed down by the emulation still
  // answers before the kernel gives up and drops the queued first request (ip-sysctl.rst).
  Deno.writeTextFileSync(`/proc/sys/net/ipv4/neigh/${TAP}/mcast_solicit`, "60");
  try {
    await using ping = await startExample(
      "ping",
      [
        "--path",
        "/dev/vhost-net",
        "--tap",
        TAP,
        "--ip",
        "10.0.7.2",
        "--count",
        `${REQUESTS}`,
        "--quiet",
      ],
      "stdout",
      /\n/,
    );
    // The ready line comes before pinging.
    assert.match(ping.ready, /^ping: answering ARP and ICMP echo for 10\.0\.7\.2 .* vhost-net/);
    const kernel = await runBounded(
      "ping",
      ["-c", `${REQUESTS}`, "-i", "0.2", "-W", "60", "10.0.7.2"],
      { timeoutMs: 120_000 },
    );
    const summary = /(\d+) packets transmitted, (\d+) packets received/.exec(kernel.stdout);
    assert.ok(summary, `busybox ping said: ${kernel.stdout}${kernel.stderr}`);
    assert.equal(Number(summary[1]), REQUESTS);
    assert.equal(Number(summary[2]), REQUESTS, `replies; ping said: ${kernel.stdout}`);
    assert.equal(kernel.code, 0);
    const { code, stdout, stderr } = await ping.finish();
    assert.equal(code, 0, `ping.ts: ${stdout}${stderr}`);
    const answered = /answered (\d+) echo request\(s\) and (\d+) ARP request\(s\)/.exec(stdout);
    assert.ok(answered, stdout);
    assert.equal(Number(answered[1]), REQUESTS);
    assert.ok(Number(answered[2]) >= 1, "the kernel resolved the address with ARP first");
    report(`ping: ${summary[0]}; ping.ts ${answered[0]}`);
  } finally {
    removeTap(TAP);
  }
});

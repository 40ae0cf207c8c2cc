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
import { runBounded } from "../helpers.ts";

const TAP = "vnp0";
const REQUESTS = 20;

Deno.test(`kernel ping → examples/ping.ts over vhost-net: ${REQUESTS} requests, ${REQUESTS} replies`, async () => {
  await persistentTap(TAP, "10.0.7.1/24");
  const example = new URL("../../examples/ping.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--no-check",
      example,
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
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), 240_000);
  try {
    // Wait for the ready line before pinging.
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    assert.match(out, /^ping: answering ARP and ICMP echo for 10\.0\.7\.2 .* vhost-net/);
    const ping = await runBounded(
      "ping",
      ["-c", `${REQUESTS}`, "-i", "0.2", "-W", "60", "10.0.7.2"],
      { timeoutMs: 120_000 },
    );
    const summary = /(\d+) packets transmitted, (\d+) packets received/.exec(ping.stdout);
    assert.ok(summary, `busybox ping said: ${ping.stdout}${ping.stderr}`);
    assert.equal(Number(summary[1]), REQUESTS);
    assert.equal(Number(summary[2]), REQUESTS, `replies; ping said: ${ping.stdout}`);
    assert.equal(ping.code, 0);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    const status = await child.status;
    const stderr = await new Response(child.stderr).text();
    assert.equal(status.code, 0, `ping.ts: ${out}${stderr}`);
    const answered = /answered (\d+) echo request\(s\) and (\d+) ARP request\(s\)/.exec(out);
    assert.ok(answered, out);
    assert.equal(Number(answered[1]), REQUESTS);
    assert.ok(Number(answered[2]) >= 1, "the kernel resolved the address with ARP first");
    report(`ping: ${summary[0]}; ping.ts ${answered[0]}`);
  } finally {
    clearTimeout(killer);
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    removeTap(TAP);
  }
});

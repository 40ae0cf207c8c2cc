/**
 * pktgen: sends UDP/IPv4 frames as fast as the device takes them.
 *
 * ```
 *   pktgen ──txBurst──► transmitq ──► vhost-user port (DPDK testpmd, the built-in device)
 * ```
 *
 * Every pool buffer is filled with the frame once; the loop then only cycles buffer numbers.
 *
 * @module
 */

import { VirtioNet } from "../mod.ts";
import { writeUdpFrame } from "../lib/packet.ts";
import { parseArgs } from "node:util";
import { commonOptions, hugepagesOption, intOption, parseCli, RunMeter } from "./cli.ts";

const USAGE =
  `usage: pktgen.ts --path SOCK [--split] [--count N | --duration S] [--size BYTES] [--json]

Sends UDP/IPv4 frames to a vhost-user port (e.g. dpdk-testpmd --vdev net_vhost0,iface=SOCK).

  --path SOCK        vhost-user socket of the device
  --split            split rings instead of packed rings
  --count N          send exactly N frames, then wait until the device took them all
  --duration S       send for S seconds (default 10 when no --count)
  --size BYTES       frame size without FCS, 60..2036 (default 64)
  --burst N          frames per txBurst (default 32)
  --queue-size N     descriptors per ring (default 256)
  --hugepages MODE   auto | yes | no (default auto: hugepages when reserved)
  --json             print one final JSON line
  --quiet            no per-second lines on stderr`;

const opts = parseCli(
  USAGE,
  () =>
    parseArgs({
      options: { ...commonOptions, size: { type: "string", default: "64" } },
      strict: true,
    }).values,
);
if (opts.path === undefined) {
  console.error(`--path is required\n\n${USAGE}`);
  Deno.exit(2);
}
const count = intOption("count", opts.count, 0);
const duration = intOption("duration", opts.duration, count > 0 ? 0 : 10);
const size = intOption("size", opts.size, 64);
const burst = intOption("burst", opts.burst, 32);

const port = VirtioNet.open({
  path: opts.path,
  packed: !opts.split,
  queueSize: intOption("queue-size", opts["queue-size"], 256),
  hugepages: hugepagesOption(opts.hugepages),
});
const { pool, stats } = port;
for (let n = 0; n < pool.count; n++) {
  writeUdpFrame(pool.bytes, pool.dataOffset(n), size, { srcMac: port.mac });
}

const bufs = new Uint32Array(burst);
const lens = new Uint32Array(burst).fill(size);
const meter = new RunMeter(stats, count, duration, !opts.quiet && !opts.json);
while (!meter.done(stats.txPackets)) {
  const want = Math.min(burst, meter.remaining(stats.txPackets));
  const n = pool.alloc(bufs, 0, want);
  const sent = port.txBurst(bufs, lens, n);
  if (sent < n) pool.free(bufs, sent, n - sent);
}
const unsent = port.txDrain(2000);
meter.report(opts.json, { in_flight_at_exit: unsent });
port.close();

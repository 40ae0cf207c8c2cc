/**
 * sink: receives frames and counts them.
 *
 * ```
 *   vhost-user port ──► receiveq ──rxBurst──► sink (count, free)
 * ```
 *
 * @module
 */

import { VirtioNet } from "../mod.ts";
import { parseArgs } from "node:util";
import { commonOptions, hugepagesOption, intOption, parseCli, RunMeter } from "./cli.ts";

const USAGE = `usage: sink.ts --path SOCK [--split] [--count N | --duration S] [--json]

Receives frames from a vhost-user port (e.g. dpdk-testpmd --vdev net_vhost0,iface=SOCK in txonly).

  --path SOCK        vhost-user socket of the device
  --split            split rings instead of packed rings
  --count N          stop after exactly N frames
  --duration S       stop after S seconds (default 10 when no --count)
  --burst N          frames per rxBurst (default 32)
  --queue-size N     descriptors per ring (default 256)
  --hugepages MODE   auto | yes | no (default auto)
  --json             print one final JSON line
  --quiet            no per-second lines on stderr`;

const opts = parseCli(
  USAGE,
  () => parseArgs({ options: { ...commonOptions }, strict: true }).values,
);
if (opts.path === undefined) {
  console.error(`--path is required\n\n${USAGE}`);
  Deno.exit(2);
}
const count = intOption("count", opts.count, 0);
const duration = intOption("duration", opts.duration, count > 0 ? 0 : 10);
const burst = intOption("burst", opts.burst, 32);

const port = VirtioNet.open({
  path: opts.path,
  packed: !opts.split,
  queueSize: intOption("queue-size", opts["queue-size"], 256),
  hugepages: hugepagesOption(opts.hugepages),
});
const { pool, stats } = port;
const bufs = new Uint32Array(burst);
const lens = new Uint32Array(burst);
const meter = new RunMeter(stats, count, duration, !opts.quiet && !opts.json);
while (!meter.done(stats.rxPackets)) {
  const want = Math.min(burst, meter.remaining(stats.rxPackets));
  const n = port.rxBurst(bufs, lens, want);
  pool.free(bufs, 0, n);
}
meter.report(opts.json);
port.close();

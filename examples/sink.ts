/**
 * sink: receives frames and counts them.
 *
 * ```
 *   vhost-user port ──► receiveq ──rxBurst──► sink (count, free)
 * ```
 *
 * Without `--path` the peer is the built-in device: a source on a worker thread sending 64-byte
 * UDP frames, whose own counters are reported next to the driver's and must agree.
 *
 * @module
 */

import { DeviceThread } from "../lib/device/device_thread.ts";
import { parseArgs } from "node:util";
import { commonOptions, intOption, openPort, parseCli, RunMeter } from "./cli.ts";

const USAGE = `usage: sink.ts [--path SOCK] [--split] [--count N | --duration S] [--json]

Receives frames from a vhost-user port (e.g. dpdk-testpmd --vdev net_vhost0,iface=SOCK in txonly).

  --path SOCK        vhost-user socket of the device (default: start the built-in device, a
                     source on a worker thread, and report its counters too), or
                     /dev/vhost-net for the Linux kernel's vhost-net (with --tap)
  --tap NAME         with /dev/vhost-net: the tap interface to attach (created when missing)
  --server           listen on --path; the backend connects (testpmd: net_vhost0,iface=SOCK,
                     client=1) and may reconnect after a restart
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
const count = intOption("count", opts.count, 0);
const duration = intOption("duration", opts.duration, count > 0 ? 0 : 10);
const burst = intOption("burst", opts.burst, 32);

const live = !opts.quiet && !opts.json;
let device: DeviceThread | null = null;
if (opts.path === undefined) {
  // With --count the device sends exactly that many frames.
  device = await DeviceThread.start({ mode: "source", count: count > 0 ? count : undefined });
  if (live) console.error(`no --path: receiving from the built-in device (source, worker thread)`);
}
const port = await openPort(opts, device, "sink");
const { pool, stats } = port;
const bufs = new Uint32Array(burst);
const lens = new Uint32Array(burst);
// In server mode a departed backend is waited for (the port reconnects), not the end of the run.
const meter = new RunMeter(stats, count, duration, live, opts.server ? null : port);
try {
  while (!meter.done(stats.rxPackets)) {
    const want = Math.min(burst, meter.remaining(stats.rxPackets));
    const n = port.rxBurst(bufs, lens, want);
    pool.free(bufs, 0, n);
    if (meter.turnDue) await meter.turn(); // lets SIGINT/SIGTERM in
  }
} catch (e) {
  meter.stop("error", (e as Error).message); // e.g. DeviceFailedError: the device broke a rule
}
if (device === null) {
  const untold = port.close();
  meter.report(opts.json, { ended_by: meter.ended });
  Deno.exit(meter.finish("sink", untold));
} else {
  // Stop the device's data path (it still answers the port), then receive what it already sent.
  const sent = await device.pause();
  const deadline = performance.now() + 2000;
  while (
    stats.rxPackets < sent.toDriverPackets && performance.now() < deadline && port.link === "up"
  ) {
    pool.free(bufs, 0, port.rxBurst(bufs, lens, burst));
  }
  const untold = port.close();
  const { stats: dev, errors } = await device.stop();
  meter.report(opts.json, {
    ended_by: meter.ended,
    device_to_driver_packets: dev.toDriverPackets,
    device_to_driver_bytes: dev.toDriverBytes,
    device_errors: errors,
  });
  if (!opts.json) {
    console.log(`device: tx ${dev.toDriverPackets} packets (${dev.toDriverBytes} bytes)`);
    for (const e of errors) console.log(`device error: ${e}`);
  }
  if (dev.toDriverPackets !== stats.rxPackets || dev.toDriverBytes !== stats.rxBytes) {
    console.error(
      `WARNING: the device sent ${dev.toDriverPackets} packets (${dev.toDriverBytes} bytes) but the driver ` +
        `received ${stats.rxPackets} (${stats.rxBytes} bytes)`,
    );
  }
  Deno.exit(meter.finish("sink", untold));
}

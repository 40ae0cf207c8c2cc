/**
 * pktgen: sends UDP/IPv4 frames as fast as the device takes them.
 *
 * ```
 *   pktgen ──txBurst──► transmitq ──► vhost-user port (DPDK testpmd, the built-in device)
 * ```
 *
 * Without `--path` the peer is the built-in device: a sink on a worker thread (one core each,
 * both busy-polling), whose own counters are reported next to the driver's and must agree.
 *
 * Every pool buffer is filled with the frame once; the loop then only cycles buffer numbers.
 *
 * @module
 */

import { DeviceThread } from "../lib/device/device_thread.ts";
import { writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { parseArgs } from "node:util";
import { commonOptions, intOption, openPort, parseCli, RunMeter, sizeOption } from "./cli.ts";

const USAGE =
  `usage: pktgen.ts [--path SOCK] [--split] [--count N | --duration S] [--size BYTES] [--json]

Sends UDP/IPv4 frames to a vhost-user port (e.g. dpdk-testpmd --vdev net_vhost0,iface=SOCK).

  --path SOCK        vhost-user socket of the device (default: start the built-in device, a
                     sink on a worker thread, and report its counters too), or
                     /dev/vhost-net for the Linux kernel's vhost-net (with --tap)
  --tap NAME         with /dev/vhost-net: the tap interface to attach (created when missing)
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
const count = intOption("count", opts.count, 0);
const duration = intOption("duration", opts.duration, count > 0 ? 0 : 10);
const size = sizeOption(opts.size);
const burst = intOption("burst", opts.burst, 32);

const live = !opts.quiet && !opts.json;
let device: DeviceThread | null = null;
if (opts.path === undefined) {
  device = await DeviceThread.start({ mode: "sink" });
  if (live) console.error(`no --path: sending to the built-in device (sink, worker thread)`);
}
const port = await openPort(opts, device);
const { pool, stats } = port;
for (let n = 0; n < pool.count; n++) {
  writeUdpFrame(pool.bytes, pool.dataOffset(n), size, { srcMac: port.mac });
}

const bufs = new Uint32Array(burst);
const lens = new Uint32Array(burst).fill(size);
const meter = new RunMeter(stats, count, duration, live);
while (!meter.done(stats.txPackets)) {
  const want = Math.min(burst, meter.remaining(stats.txPackets));
  const n = pool.alloc(bufs, 0, want);
  const sent = port.txBurst(bufs, lens, n);
  if (sent < n) pool.free(bufs, sent, n - sent);
}
const unsent = port.txDrain(2000);
if (device === null) {
  meter.report(opts.json, { in_flight_at_exit: unsent });
  port.close();
} else {
  // Drained: the device took every frame. Close the port, then read the device's final count.
  port.close();
  const { stats: dev, errors } = await device.stop();
  meter.report(opts.json, {
    in_flight_at_exit: unsent,
    device_rx_packets: dev.rxPackets,
    device_rx_bytes: dev.rxBytes,
    device_errors: errors,
  });
  if (!opts.json) {
    console.log(`device: rx ${dev.rxPackets} packets (${dev.rxBytes} bytes)`);
    for (const e of errors) console.log(`device error: ${e}`);
  }
  if (dev.rxPackets !== stats.txPackets || dev.rxBytes !== stats.txBytes) {
    console.error(
      `WARNING: driver sent ${stats.txPackets} packets (${stats.txBytes} bytes) but the device ` +
        `took ${dev.rxPackets} (${dev.rxBytes} bytes); ${unsent} were still in flight`,
    );
  }
}

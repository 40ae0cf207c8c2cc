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
import { sendFromWorkers } from "./multi_queue.ts";

const USAGE =
  `usage: pktgen.ts [--path SOCK] [--split] [--count N | --duration S] [--size BYTES] [--json]

Sends UDP/IPv4 frames to a vhost-user port (e.g. dpdk-testpmd --vdev net_vhost0,iface=SOCK).

  --path SOCK        vhost-user socket of the device (default: start the built-in device, a
                     sink on a worker thread, and report its counters too), or
                     /dev/vhost-net for the Linux kernel's vhost-net (with --tap)
  --tap NAME         with /dev/vhost-net: the tap interface to attach (created when missing)
  --server           listen on --path; the backend connects (testpmd: net_vhost0,iface=SOCK,
                     client=1) and may reconnect after a restart
  --split            split rings instead of packed rings
  --count N          send exactly N frames, then wait until the device took them all
  --duration S       send for S seconds (default 10 when no --count)
  --size BYTES       frame size without FCS, 60..9000 (default 64; above 2036: 10240-byte
                     buffers)
  --burst N          frames per txBurst (default 32)
  --queue-size N     descriptors per ring (default 256)
  --queues N         queue pairs (VIRTIO_NET_F_MQ), one sending Worker each (default 1)
  --hugepages MODE   auto | yes | no (default auto: hugepages when reserved)
  --json             print one final JSON line
  --quiet            no per-second lines on stderr`;

const opts = parseCli(
  USAGE,
  () =>
    parseArgs({
      options: {
        ...commonOptions,
        size: { type: "string", default: "64" },
        queues: { type: "string", default: "1" },
      },
      strict: true,
    }).values,
);
const count = intOption("count", opts.count, 0);
const duration = intOption("duration", opts.duration, count > 0 ? 0 : 10);
const size = sizeOption(opts.size, 9000);
const burst = intOption("burst", opts.burst, 32);
const queues = intOption("queues", opts.queues, 1);

const live = !opts.quiet && !opts.json;
let device: DeviceThread | null = null;
if (opts.path === undefined) {
  device = await DeviceThread.start({ mode: "sink", queuePairs: queues });
  if (live) console.error(`no --path: sending to the built-in device (sink, worker thread)`);
}
// A jumbo frame goes in one larger buffer (one descriptor a frame).
const port = await openPort(opts, device, "pktgen", queues, size > 2036 ? 10240 : undefined);
const { pool, stats } = port;
// In server mode a departed backend is waited for (the port reconnects), not the end of the run.
const meter = new RunMeter(stats, count, duration, live, opts.server ? null : port);
let unsent = 0;
if (queues > 1) {
  // Each Worker fills its own share of the buffers, sends, drains; rates per queue.
  const results = await sendFromWorkers(port, { count, durationS: duration, size, burst, live });
  for (const r of results) {
    unsent += r.inFlight;
    if (!opts.json) {
      console.log(
        `queue ${r.index}: tx ${r.sent} packets in ${(r.ms / 1000).toFixed(3)} s: ` +
          `${(r.sent / r.ms / 1e3).toFixed(3)} Mpps`,
      );
    }
  }
} else {
  for (let n = 0; n < pool.count; n++) {
    writeUdpFrame(pool.bytes, pool.dataOffset(n), size, { srcMac: port.mac });
  }
  const bufs = new Uint32Array(burst);
  const lens = new Uint32Array(burst).fill(size);
  try {
    while (!meter.done(stats.txPackets)) {
      const want = Math.min(burst, meter.remaining(stats.txPackets));
      const n = pool.alloc(bufs, 0, want);
      const sent = port.txBurst(bufs, lens, n);
      if (sent < n) pool.free(bufs, sent, n - sent);
      if (meter.turnDue) await meter.turn(); // lets SIGINT/SIGTERM in
    }
  } catch (e) {
    meter.stop("error", (e as Error).message); // e.g. DeviceFailedError: the device broke a rule
  }
  unsent = port.txDrain(2000); // 0 at once when the link is down
}
if (device === null) {
  const untold = port.close();
  meter.report(opts.json, { in_flight_at_exit: unsent, ended_by: meter.ended });
  Deno.exit(meter.finish("pktgen", untold));
} else {
  // Drained: the device took every frame. Close the port, then read the device's final count.
  const untold = port.close();
  const { stats: dev, errors } = await device.stop();
  meter.report(opts.json, {
    in_flight_at_exit: unsent,
    ended_by: meter.ended,
    device_from_driver_packets: dev.fromDriverPackets,
    device_from_driver_bytes: dev.fromDriverBytes,
    device_errors: errors,
  });
  if (!opts.json) {
    console.log(`device: rx ${dev.fromDriverPackets} packets (${dev.fromDriverBytes} bytes)`);
    for (const e of errors) console.log(`device error: ${e}`);
  }
  if (dev.fromDriverPackets !== stats.txPackets || dev.fromDriverBytes !== stats.txBytes) {
    console.error(
      `WARNING: driver sent ${stats.txPackets} packets (${stats.txBytes} bytes) but the device ` +
        `took ${dev.fromDriverPackets} (${dev.fromDriverBytes} bytes); ${unsent} were still in flight`,
    );
  }
  Deno.exit(meter.finish("pktgen", untold));
}

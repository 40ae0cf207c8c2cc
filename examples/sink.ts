/**
 * sink: receives frames, counts them, checks their checksums and sequence numbers, and can
 * capture them to a pcap file.
 *
 * ```
 *   vhost-user port ──► receiveq ──rxBurst──► sink (count, [--check], [--capture FILE], free)
 *                                 ──rxFrames─► (--mergeable: a frame spans several buffers)
 * ```
 *
 * Without `--path` the peer is the built-in device: a source on a worker thread sending 64-byte
 * UDP frames, whose own counters are reported next to the driver's and must agree.
 *
 * `--check` parses every frame (IPv4 header, UDP/TCP/ICMP checksums verified) and follows the
 * sequence numbers of pktgen's numbered UDP frames (`--seq`, `--latency` probes): lost,
 * reordered, duplicated.
 *
 * @module
 */

import { DeviceThread } from "../lib/device/device_thread.ts";
import { read32 } from "../lib/packet/checksum.ts";
import {
  FrameFlag,
  parseFrame,
  VIEW_L4_LENGTH,
  VIEW_PAYLOAD,
  VIEW_SIZE,
} from "../lib/packet/frame_view.ts";
import { PcapWriter } from "../lib/packet/pcap.ts";
import { cpuUsage } from "node:process";
import { parseArgs } from "node:util";
import { closePort, commonOptions, intOption, openPort, parseCli, RunMeter } from "./cli.ts";
import { EventLoop, exitForRun, receiveUntilDone } from "./event_loop.ts";
import { isProbe, PROBE_BYTES, SequenceTracker } from "./latency.ts";

const USAGE =
  `usage: sink.ts [--path SOCK] [--count N | --duration S] [--check] [--capture FILE] [--event]

Receives frames from a vhost-user port (e.g. dpdk-testpmd --vdev net_vhost0,iface=SOCK in txonly).

  --path SOCK        vhost-user socket of the device (default: start the built-in device, a
                     source on a worker thread, and report its counters too)
  --split            split rings instead of packed rings
  --count N          stop after exactly N frames
  --duration S       stop after S seconds (default 10 when no --count)
  --check            verify IPv4/UDP/TCP/ICMP checksums of every frame and the sequence numbers
                     of pktgen's numbered UDP frames (--seq, --latency probes): lost,
                     reordered, duplicated
  --capture FILE     write every received frame to FILE (pcap, nanosecond timestamps)
  --mergeable        negotiate VIRTIO_NET_F_MRG_RXBUF: frames up to 9000 B, each over
                     several 2048-byte buffers (counted only: no --check or --capture;
                     --count is exact for frames above 8180 B, may overshoot for smaller)
  --event            when a burst finds nothing, wait with port.readable() (used-buffer
                     notifications, the call eventfd) instead of polling: an idle port costs
                     no CPU; the summary adds the process's CPU time and the wake-ups
  --burst N          frames per rxBurst (default 32)
  --queue-size N     descriptors per ring (default 256)
  --hugepages MODE   auto | yes | no (default auto)
  --json             print one final JSON line
  --quiet            no per-second lines on stderr

Exit status: 0 done, 1 peer failure, 2 bad option, 3 --check found bad frames,
130 SIGINT, 143 SIGTERM (the summary is printed in every case).`;

const opts = parseCli(
  USAGE,
  () =>
    parseArgs({
      options: {
        ...commonOptions,
        check: { type: "boolean", default: false },
        capture: { type: "string" },
        mergeable: { type: "boolean", default: false },
        event: { type: "boolean", default: false },
      },
      strict: true,
    }).values,
);
const count = intOption("count", opts.count, 0);
const duration = intOption("duration", opts.duration, count > 0 ? 0 : 10);
const burst = intOption("burst", opts.burst, 32);
if (opts.mergeable && (opts.check || opts.capture !== undefined)) {
  console.error("sink: --mergeable counts frames only; leave out --check and --capture");
  Deno.exit(2);
}

const live = !opts.quiet && !opts.json;
let device: DeviceThread | null = null;
try {
  if (opts.path === undefined) {
    // With --count the device sends exactly that many frames.
    device = await DeviceThread.start({ mode: "source", count: count > 0 ? count : undefined });
    if (live) {
      console.error(`no --path: receiving from the built-in device (source, worker thread)`);
    }
  }
} catch (e) {
  console.error(`sink: ${(e as Error).message}`);
  Deno.exit(1);
}
const port = await openPort(opts, device, "sink", 1, undefined, opts.mergeable);
let capture: PcapWriter | null = null;
try {
  if (opts.capture !== undefined) capture = PcapWriter.create(opts.capture, { nanoseconds: true });
} catch (e) {
  console.error(`sink: --capture ${opts.capture}: ${(e as Error).message}`);
  port.close();
  await device?.stop();
  Deno.exit(2);
}
const { pool, stats } = port;
const bytes = pool.bytes;
// With --mergeable a 9000-byte frame takes 5 buffers (2036 bytes of frame in the first).
const SEGMENTS = opts.mergeable ? 5 : 1;
const bufs = new Uint32Array(burst * SEGMENTS);
const lens = new Uint32Array(burst * SEGMENTS);
const segs = new Uint32Array(burst * SEGMENTS);
const view = new Int32Array(VIEW_SIZE);
const sequence = new SequenceTracker(1 << 22);
const checked = { frames: 0, notIp: 0, badIpChecksum: 0, badL4Checksum: 0, truncated: 0 };
// Capture timestamps: the wall clock at start plus the monotonic clock since.
const epochMs = Date.now(), perf0 = performance.now();

/** Checks and captures a received burst, then frees it. */
function consume(n: number): void {
  if (opts.check || capture !== null) {
    const nowMs = epochMs + (performance.now() - perf0);
    const seconds = Math.floor(nowMs / 1000);
    const nanos = Math.round((nowMs - seconds * 1000) * 1e6);
    for (let i = 0; i < n; i++) {
      const at = pool.dataOffset(bufs[i]), len = lens[i];
      if (capture !== null) capture.write(bytes, at, len, seconds, nanos);
      if (opts.check) check(at, len);
    }
  }
  pool.free(bufs, 0, n);
}

/** Receives at most `max` frames: one buffer each, or (--mergeable) several, counted and freed. */
function receive(max: number): void {
  if (!opts.mergeable) return consume(port.rxBurst(bufs, lens, max));
  // rxFrames bounds buffers, not frames: room for `max` frames of SEGMENTS buffers each, so a
  // --count is exact for jumbo frames (smaller ones may overshoot it within the last call).
  const room = Math.min(bufs.length, max * SEGMENTS);
  const frames = port.rxFrames(bufs, lens, segs, room);
  let used = 0;
  for (let f = 0; f < frames; f++) used += segs[f];
  pool.free(bufs, 0, used);
}

function check(at: number, len: number): void {
  checked.frames++;
  const flags = parseFrame(bytes, at, len, view);
  if ((flags & FrameFlag.TRUNCATED) !== 0) checked.truncated++;
  if ((flags & (FrameFlag.IPV4 | FrameFlag.IPV6)) === 0) {
    checked.notIp++;
    return;
  }
  if ((flags & FrameFlag.IPV4) !== 0 && (flags & FrameFlag.IP_CHECKSUM_OK) === 0) {
    checked.badIpChecksum++;
  }
  const l4 = flags & (FrameFlag.UDP | FrameFlag.TCP | FrameFlag.ICMP);
  if (l4 !== 0 && (flags & FrameFlag.L4_CHECKSUM_OK) === 0) checked.badL4Checksum++;
  const p = view[VIEW_PAYLOAD];
  if ((flags & FrameFlag.UDP) !== 0 && view[VIEW_L4_LENGTH] >= 8 + PROBE_BYTES) {
    if (isProbe(bytes, p)) sequence.record(read32(bytes, p + 4));
  }
}

// In server mode a departed backend is waited for (the port reconnects), not the end of the run.
const meter = new RunMeter(stats, count, duration, live, opts.server ? null : port);
const loop = new EventLoop();
let endedBy = "count";
let failure: string | null = null;
let untold: string[] = [];
try {
  const wait = opts.event ? () => port.readable(100) : undefined;
  endedBy = await receiveUntilDone(loop, meter, stats, count, burst, receive, wait);
} catch (e) {
  failure = (e as Error).message;
  endedBy = "error";
}
loop.close();
if (meter.ended === "link down") failure ??= meter.reason;

const report: Record<string, unknown> = { ended_by: endedBy };
if (opts.event) {
  const cpu = cpuUsage(); // the whole process: every thread, including a built-in device's
  report.cpu_ms = Math.round((cpu.user + cpu.system) / 1000);
  report.wakeups = stats.wakeups;
  if (!opts.json) console.log(`event mode: ${stats.wakeups} wake-ups, ${report.cpu_ms} ms CPU`);
}
if (opts.check) {
  Object.assign(report, {
    checked_frames: checked.frames,
    not_ip: checked.notIp,
    bad_ip_checksum: checked.badIpChecksum,
    bad_l4_checksum: checked.badL4Checksum,
    truncated: checked.truncated,
    probes_received: sequence.received,
    probes_highest: sequence.highest,
    probes_lost: sequence.highest + 1 - sequence.received,
    reordered: sequence.reordered,
    duplicated: sequence.duplicated,
  });
}
if (device === null) {
  capture?.close();
  if (capture !== null) report.captured = capture.frames;
  meter.report(opts.json, report);
  untold = closePort(port);
} else {
  // Stop the device's data path (it still answers the port), then receive what it already sent.
  const sent = await device.pause();
  const deadline = performance.now() + 2000;
  while (
    failure === null && stats.rxPackets < sent.toDriverPackets &&
    performance.now() < deadline && port.connected
  ) {
    receive(burst);
  }
  capture?.close();
  if (capture !== null) report.captured = capture.frames;
  untold = closePort(port);
  const { stats: dev, errors } = await device.stop();
  meter.report(opts.json, {
    ...report,
    device_to_driver_packets: dev.toDriverPackets,
    device_to_driver_bytes: dev.toDriverBytes,
    device_errors: errors,
  });
  if (!opts.json) {
    console.log(`device: to driver ${dev.toDriverPackets} packets (${dev.toDriverBytes} bytes)`);
    for (const e of errors) console.log(`device error: ${e}`);
  }
  if (dev.toDriverPackets !== stats.rxPackets || dev.toDriverBytes !== stats.rxBytes) {
    console.error(
      `WARNING: the device sent ${dev.toDriverPackets} packets (${dev.toDriverBytes} bytes) but the driver ` +
        `received ${stats.rxPackets} (${stats.rxBytes} bytes)`,
    );
  }
}
if (!opts.json && opts.check) {
  console.log(
    `checked ${checked.frames} frames: ${checked.badIpChecksum} bad IPv4 checksums, ` +
      `${checked.badL4Checksum} bad L4 checksums, ${checked.truncated} truncated, ` +
      `${checked.notIp} not IP; probes ${sequence.received} received, ` +
      `${report.probes_lost} lost, ${sequence.reordered} reordered, ` +
      `${sequence.duplicated} duplicated`,
  );
}
exitForRun("sink", failure, loop.signal, untold);
if (opts.check && checked.badIpChecksum + checked.badL4Checksum + checked.truncated > 0) {
  Deno.exit(3);
}

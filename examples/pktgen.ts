/**
 * pktgen: sends UDP (or TCP) frames over IPv4 or IPv6 at a paced rate, with flows, sizes, IMIX,
 * VLAN tags, a latency stream, or a pcap file replayed.
 *
 * ```
 *   pktgen ──txBurst──► transmitq ──► vhost-user port (DPDK testpmd, the built-in device)
 *          ◄─rxBurst─── receiveq  ◄── (--latency: the peer reflects the frames: io, macswap, echo)
 * ```
 *
 * Without `--path` the peer is the built-in device on a worker thread: a sink, or with
 * `--latency` an echo that swaps MACs; its own counters are reported next to the driver's.
 *
 * Every pool buffer holds the template frame from the start. With a fixed size and no per-packet
 * field the loop only cycles buffer numbers; otherwise it writes the changing fields (flow
 * fields, sizes, probe stamps) into every frame, checksums updated incrementally (RFC 1624).
 *
 * @module
 */

import { DeviceThread } from "../lib/device/device_thread.ts";
import { parseMac } from "../lib/packet/ethernet.ts";
import { parseIpv4 } from "../lib/packet/ipv4.ts";
import { parseIpv6 } from "../lib/packet/ipv6.ts";
import { type PcapCapture, readPcap } from "../lib/packet/pcap.ts";
import {
  FieldSweep,
  PacketTemplate,
  type SweepField,
  type SweepMode,
} from "../lib/packet/template.ts";
import { parseArgs } from "node:util";
import { closePort, commonOptions, intOption, openPort, parseCli } from "./cli.ts";
import { EventLoop, exitForRun } from "./event_loop.ts";
import { type SizeTable, sizeTable } from "./frame_sizes.ts";
import { histogramCsv, LatencyProbes, plotSvg, PROBE_BYTES } from "./latency.ts";
import { LiveLine } from "./live_line.ts";
import { L1_OVERHEAD, LoopClock, Pacer, parseBitRate, parseRate, type Spacing } from "./rate.ts";
import { sendFromWorkers } from "./multi_queue.ts";

/** Largest frame `--size` takes: a jumbo frame (in a 10240-byte buffer). */
const MAX_FRAME = 9000;

const USAGE = `usage: pktgen.ts [--path SOCK] [--rate R] [--count N | --duration S] [options]

Sends frames to a vhost-user port (e.g. dpdk-testpmd --vdev net_vhost0,iface=SOCK).

Peer and run:
  --path SOCK        vhost-user socket of the device (default: the built-in device on a worker
                     thread: a sink, or an echo with --latency), or /dev/vhost-net (with --tap)
  --tap NAME         with /dev/vhost-net: the tap interface to attach (created when missing)
  --server           listen on --path; the backend connects (testpmd: net_vhost0,iface=SOCK,
                     client=1) and may reconnect after a restart
  --count N          send exactly N frames, then wait until the device took them all
  --duration S       send for S seconds (default 10 when no --count and no --pcap)
  --split            split rings instead of packed rings
  --queues N         queue pairs (VIRTIO_NET_F_MQ), one sending Worker each, fixed-size frames
                     (default 1)
  --burst N          frames per txBurst (default 32)
  --queue-size N     descriptors per ring (default 256)
  --hugepages MODE   auto | yes | no (default auto: hugepages when reserved)
  --json             print one final JSON line
  --quiet            no per-second lines on stderr
Rate (paced by the clock, checked once per burst):
  --rate R           max (default) | packets/s: 2000000, 2M, 100k | bits/s: 5Gbps, 800Mbps |
                     percent of --link: 40%. Bits are layer 1: each frame counts its bytes
                     + 24 (FCS 4, preamble 8, inter-frame gap 12); reported Gbps are layer 2
                     (frame bytes without FCS), l1_gbps in --json is layer 1
  --link SPEED       link speed for percentages (default 10G)
  --spacing MODE     cbr (default: evenly spaced) | poisson (exponential gaps)
Frames:
  --size N|MIN-MAX   frame size without FCS, 60..9000 (default 64; above 2036: 10240-byte
                     buffers); a range is swept, see --size-mode
  --size-mode MODE   inc (default) | random: for a --size range
  --imix SPEC        sizes by weight, SIZE:WEIGHT,... e.g. 60:28,590:20,1514:4;
                     'default' is the simple IMIX 60:7,590:4,1514:1
  --ipv6             IPv6 instead of IPv4
  --tcp              TCP (ACK segments) instead of UDP
  --vlan ID          802.1Q tag with VLAN ID (0..4094)
  --src-mac MAC      source MAC (default: the port's)      --dst-mac MAC  (default broadcast)
  --src-ip IP        source IPv4/IPv6 address (default 198.18.0.1 / 2001:db8::1)
  --dst-ip IP        destination address (default 198.18.0.2 / 2001:db8::2)
  --src-port N       source port (default 9)               --dst-port N   (default 9)
Flows (written into every frame, checksums updated):
  --flows N          N flows: N values of each --flow-field from its base value
  --flow-field F,..  src-ip (default), dst-ip, src-port, dst-port, src-mac, dst-mac
  --flow-mode MODE   counter (default: base, base+1, ... wrapping) | random
Latency (the peer must send frames back: testpmd io/macswap, the built-in echo):
  --latency          interleave probe frames (sequence number + send time in the payload)
  --latency-rate N   probes per second (default 10000; at most one per burst)
  --latency-warmup MS
                     probes sent in the first MS ms are counted, not measured (JIT tier-up
                     and first page faults are start-up, not the path; default 0)
  --seq              number every frame (a probe each: sink --check counts lost, reordered
                     and duplicated frames; with --latency every frame is measured)
  --histogram FILE   write the latency histogram as CSV (latency_us,count,cumulative,percentile)
  --plot FILE        write an SVG of the latency distribution and the per-second rates
Replay:
  --pcap FILE        send the frames of a pcap file, in order, looping
  --loops N          times through the file (default 1 unless --count or --duration)
  --pcap-timing      keep the file's own gaps between frames (default: --rate, else max)

Exit status: 0 done, 1 peer or run failure, 2 bad option, 130 SIGINT, 143 SIGTERM
(the summary is printed in every case).`;

const opts = parseCli(
  USAGE,
  () =>
    parseArgs({
      options: {
        ...commonOptions,
        size: { type: "string", default: "64" },
        "size-mode": { type: "string", default: "inc" },
        imix: { type: "string" },
        rate: { type: "string", default: "max" },
        link: { type: "string", default: "10G" },
        spacing: { type: "string", default: "cbr" },
        ipv6: { type: "boolean", default: false },
        tcp: { type: "boolean", default: false },
        vlan: { type: "string" },
        "src-mac": { type: "string" },
        "dst-mac": { type: "string" },
        "src-ip": { type: "string" },
        "dst-ip": { type: "string" },
        "src-port": { type: "string", default: "9" },
        "dst-port": { type: "string", default: "9" },
        flows: { type: "string", default: "0" },
        "flow-field": { type: "string", default: "src-ip" },
        "flow-mode": { type: "string", default: "counter" },
        latency: { type: "boolean", default: false },
        seq: { type: "boolean", default: false },
        "latency-rate": { type: "string", default: "10000" },
        "latency-warmup": { type: "string", default: "0" },
        histogram: { type: "string" },
        plot: { type: "string" },
        pcap: { type: "string" },
        loops: { type: "string" },
        "pcap-timing": { type: "boolean", default: false },
        queues: { type: "string", default: "1" },
      },
      strict: true,
    }).values,
);

/** Prints one line for a bad option and exits 2. */
function usageError(message: string): never {
  console.error(`pktgen: ${message}`);
  Deno.exit(2);
}

const count = intOption("count", opts.count, 0);
const burst = Math.max(1, intOption("burst", opts.burst, 32));
const queues = Math.max(1, intOption("queues", opts.queues, 1));
const flows = intOption("flows", opts.flows, 0);
const latency = opts.latency;
const numberAll = opts.seq;
const probeRate = intOption("latency-rate", opts["latency-rate"], 10000);
const warmupMs = intOption("latency-warmup", opts["latency-warmup"], 0);
if (opts.spacing !== "cbr" && opts.spacing !== "poisson") {
  usageError(`--spacing: expected cbr or poisson, got "${opts.spacing}"`);
}
const spacing: Spacing = opts.spacing;
if (opts["flow-mode"] !== "counter" && opts["flow-mode"] !== "random") {
  usageError(`--flow-mode: expected counter or random, got "${opts["flow-mode"]}"`);
}
const flowMode: SweepMode = opts["flow-mode"];
const FIELDS: SweepField[] = ["src-ip", "dst-ip", "src-port", "dst-port", "src-mac", "dst-mac"];
const flowFields = opts["flow-field"].split(",").map((f) => {
  if (!(FIELDS as string[]).includes(f)) {
    usageError(`--flow-field: expected one of ${FIELDS.join(", ")}, got "${f}"`);
  }
  return f as SweepField;
});
if (opts.pcap !== undefined && (latency || numberAll || flows > 0 || opts.imix !== undefined)) {
  usageError("--pcap replays the file's frames as they are: no --latency, --seq, --flows, --imix");
}
if (opts.histogram !== undefined && !latency) usageError("--histogram needs --latency");
if (flows > 65536 && flowFields.some((f) => f.endsWith("port"))) {
  usageError(`--flows ${flows}: a port has 65536 values`);
}

// --- Frames: a template (generated) or the file's frames (replay) ---
let template: PacketTemplate | null = null;
let capture: PcapCapture | null = null;
let captureViews: Uint8Array[] = [];
let sizes: SizeTable;
let linkBps: number;
let device: DeviceThread | null = null;
try {
  linkBps = parseBitRate(opts.link);
  if (opts.pcap !== undefined) {
    capture = readPcap(Deno.readFileSync(opts.pcap));
    if (capture.count === 0) usageError(`--pcap ${opts.pcap}: the file holds no frames`);
    if (capture.linkType !== 1) {
      usageError(`--pcap ${opts.pcap}: link type ${capture.linkType}, not Ethernet (1)`);
    }
    const c = capture;
    // One view per file frame, made once, so the send loop copies without allocating.
    captureViews = Array.from(
      { length: c.count },
      (_, i) => c.data.subarray(c.offsets[i], c.offsets[i] + c.lengths[i]),
    );
    let total = 0;
    for (let i = 0; i < c.count; i++) total += c.lengths[i];
    const mean = total / c.count;
    sizes = { sizes: new Uint16Array(1), mask: 0, mean, min: 0, max: 0, text: `pcap ${opts.pcap}` };
  } else {
    const vlan = opts.vlan === undefined ? undefined : intOption("vlan", opts.vlan, 0);
    const ip4 = (s: string | undefined) => (s === undefined ? undefined : parseIpv4(s));
    const ip6 = (s: string | undefined) => (s === undefined ? undefined : parseIpv6(s));
    template = new PacketTemplate({
      ipv6: opts.ipv6,
      transport: opts.tcp ? "tcp" : "udp",
      vlan,
      srcMac: opts["src-mac"] === undefined ? undefined : parseMac(opts["src-mac"]),
      dstMac: opts["dst-mac"] === undefined ? undefined : parseMac(opts["dst-mac"]),
      srcIp: opts.ipv6 ? undefined : ip4(opts["src-ip"]),
      dstIp: opts.ipv6 ? undefined : ip4(opts["dst-ip"]),
      srcIp6: opts.ipv6 ? ip6(opts["src-ip"]) : undefined,
      dstIp6: opts.ipv6 ? ip6(opts["dst-ip"]) : undefined,
      srcPort: intOption("src-port", opts["src-port"], 9),
      dstPort: intOption("dst-port", opts["dst-port"], 9),
      payloadReserve: latency || numberAll ? PROBE_BYTES : 0,
      maxSize: MAX_FRAME,
    });
    sizes = sizeTable(opts.size, opts["size-mode"], opts.imix, template.minSize, MAX_FRAME);
  }
} catch (e) {
  usageError((e as Error).message);
}
let pps: number;
try {
  pps = parseRate(opts.rate, linkBps, sizes.mean);
} catch (e) {
  usageError((e as Error).message);
}
const loops = intOption(
  "loops",
  opts.loops,
  capture !== null && !opts.count && !opts.duration ? 1 : 0,
);
const duration = intOption(
  "duration",
  opts.duration,
  count > 0 || (capture !== null && loops > 0) ? 0 : 10,
);
const limit = capture !== null && loops > 0
  ? (count > 0 ? Math.min(count, loops * capture.count) : loops * capture.count)
  : (count > 0 ? count : Infinity);

// --- Peer and port ---
const live = !opts.quiet && !opts.json;
try {
  if (opts.path === undefined) {
    device = await DeviceThread.start(
      latency ? { mode: "echo", macSwap: true } : { mode: "sink", queuePairs: queues },
    );
    if (live) {
      console.error(
        `no --path: sending to the built-in device (${latency ? "echo" : "sink"}, worker thread)`,
      );
    }
  }
} catch (e) {
  console.error(`pktgen: ${(e as Error).message}`);
  Deno.exit(1);
}
// A jumbo frame goes in one larger buffer (one descriptor a frame).
const jumbo = template !== null && sizes.max > 2036 ? 10240 : undefined;
const port = await openPort(opts, device, "pktgen", queues, jumbo);
if (queues > 1) await sendOnQueues(); // exits
const { pool, stats } = port;
const bytes = pool.bytes;
if (template !== null) {
  if (opts["src-mac"] === undefined) template.frame.set(port.mac, 6);
  for (let n = 0; n < pool.count; n++) template.write(bytes, pool.dataOffset(n), sizes.max);
}
if (capture !== null) {
  for (let i = 0; i < capture.count; i++) {
    if (capture.lengths[i] > pool.frameCapacity) {
      console.error(
        `pktgen: --pcap frame ${i} is ${capture.lengths[i]} bytes, more than a buffer holds ` +
          `(${pool.frameCapacity})`,
      );
      port.close();
      await device?.stop();
      Deno.exit(2);
    }
  }
}

// --- Per-packet work ---
const sizeTab = sizes.sizes;
const sizeMask = sizes.mask;
const fixedSize = template !== null && sizes.min === sizes.max;
const sweeps = template === null || flows === 0
  ? []
  : flowFields.map((f, i) =>
    new FieldSweep(template!, f, FieldSweep.baseOf(template!, f), flows, flowMode, 0x9e3779b9 + i)
  );
const perPacket = capture !== null || !fixedSize || sweeps.length > 0 || latency || numberAll;
const t0 = performance.now();
/** The time of the current burst: the pacer, the probes and fill() read it (see LoopClock). */
const clock = new LoopClock();
const now = clock.ms;
const probes = (latency || numberAll) && template !== null
  ? new LatencyProbes(template, 1 << 22, t0, clock, warmupMs)
  : null;
const probeGapMs = probeRate > 0 ? 1000 / probeRate : Infinity;
/**
 * Times the send loop updates every burst, in a Float64Array: a double stored into a
 * module-level `let` is boxed on the heap each time (context slots hold no raw doubles), which
 * would be an allocation per burst.
 */
const times = new Float64Array(4);
const LAST_SEND = 0, NEXT_PROBE_AT = 1, PROBE_DUE = 2, START = 3;
let sizeAt = 0;
let fileAt = 0;
let fileLoop = 0;
let fileStart = 0;
let fileSpanMs = 0;
if (capture !== null) {
  const c = capture;
  const t = (i: number) => c.seconds[i] * 1000 + c.nanos[i] / 1e6;
  fileStart = t(0);
  const span = t(c.count - 1) - fileStart;
  fileSpanMs = span + (c.count > 1 ? span / (c.count - 1) : 1); // one mean gap between loops
}

const bufs = new Uint32Array(burst);
/** Buffers at the start of `bufs` that hold an unsent frame (fixed frames only). */
let held = 0;
const lens = new Uint32Array(burst).fill(fixedSize ? sizes.min : 0);
const rxBufs = new Uint32Array(burst);
const rxLens = new Uint32Array(burst);
times[PROBE_DUE] = -1; // when the probe of the burst being filled was due, or -1
let rxOther = 0; // received frames that were not probes (latency mode)

/** Writes the per-packet fields of `n` frames in `bufs` (probes sent at `now[0]`); sets `lens`. */
function fill(n: number): void {
  const t = template;
  if (t === null) {
    const c = capture!;
    for (let i = 0; i < n; i++) {
      const k = fileAt;
      bytes.set(captureViews[k], pool.dataOffset(bufs[i]));
      lens[i] = c.lengths[k];
      fileAt = k + 1 === c.count ? 0 : k + 1;
      if (fileAt === 0) fileLoop++;
    }
    return;
  }
  for (let i = 0; i < n; i++) {
    const off = pool.dataOffset(bufs[i]);
    if (!fixedSize) {
      const size = sizeTab[sizeAt];
      sizeAt = (sizeAt + 1) & sizeMask;
      t.setSize(bytes, off, size);
      lens[i] = size;
    }
    for (let s = 0; s < sweeps.length; s++) sweeps[s].apply(bytes, off);
    if (probes !== null) {
      if (numberAll) probes.stamp(bytes, off);
      else if (i === 0 && now[0] >= times[NEXT_PROBE_AT]) {
        probes.stamp(bytes, off);
        times[PROBE_DUE] = times[NEXT_PROBE_AT];
        times[NEXT_PROBE_AT] = times[NEXT_PROBE_AT] + probeGapMs > now[0]
          ? times[NEXT_PROBE_AT] + probeGapMs
          : now[0];
      } else probes.unmark(bytes, off);
    }
  }
}

/**
 * Receives what has arrived, a burst at a time (each stamped with one clock read after it came):
 * probes measured, every buffer rewritten with the template and freed. Taking everything, not
 * one burst per send, keeps a backlog from lingering in the ring and inflating the latency.
 */
function receive(): void {
  for (let round = 0; round < 16; round++) {
    const got = port.rxBurst(rxBufs, rxLens, burst);
    if (got === 0) return;
    clock.read();
    for (let i = 0; i < got; i++) {
      const off = pool.dataOffset(rxBufs[i]);
      if (probes !== null && !probes.receive(bytes, off, rxLens[i])) rxOther++;
      // The buffer goes back to the pool for sending: make it a template frame again (every
      // pool buffer is zero past the headers, up to the largest frame ever in it).
      if (template !== null) template.write(bytes, off, sizes.min, rxLens[i]);
    }
    pool.free(rxBufs, 0, got);
    if (got < burst) return;
  }
}

/** Frames due at `now[0]` with the file's own timing (sending began at `times[START]`). */
function dueByFile(max: number): number {
  const c = capture!;
  let n = 0, k = fileAt, loop = fileLoop;
  while (n < max) {
    const at = times[START] + loop * fileSpanMs +
      (c.seconds[k] * 1000 + c.nanos[k] / 1e6 - fileStart);
    if (at > now[0]) break;
    n++;
    if (++k === c.count) {
      k = 0;
      loop++;
    }
  }
  return n;
}

// --- The run: slices of busy polling, one event-loop turn between them ---
const pacer = new Pacer(pps, spacing, 0, clock);
const byFile = capture !== null && opts["pcap-timing"] && opts.rate === "max";
const receiving = latency;
const CATCH_UP_MS = 100;
const meter = new LiveLine(stats, live, limit === Infinity ? 0 : limit, duration);
const loop = new EventLoop();
// Unpaced fixed frames need the time only for the deadline: the loop's reading (about a
// millisecond old at most) serves, sparing a clock read per burst.
const coarseClock = pps === Infinity && !byFile && !perPacket;
let endedBy = "count";
let failure: string | null = null;
const start = performance.now();
times[START] = start;
const deadline = duration > 0 ? start + duration * 1000 : Infinity;
pacer.restart(start);
meter.start(start);
times[NEXT_PROBE_AT] = start;
times[LAST_SEND] = start;
try {
  const signal = await loop.run(() => {
    if (coarseClock) now[0] = loop.clock[0];
    else clock.read();
    if (stats.txPackets >= limit) return true;
    // In server mode a departed backend is waited for (the port reconnects), not the end.
    if (!opts.server && !port.connected) {
      failure = `the peer is gone: ${port.downReason}`;
      endedBy = "link down";
      return true;
    }
    if (now[0] >= deadline) {
      // Paced: what fell due before the deadline still goes (a sender descheduled just before
      // it would otherwise miss the rate), for at most CATCH_UP_MS.
      if ((pps === Infinity && !byFile) || now[0] >= deadline + CATCH_UP_MS) {
        endedBy = "duration";
        return true;
      }
      now[0] = deadline;
    }
    // A small integer, never Infinity (a double crossing a call is boxed: see LoopClock).
    let want = burst;
    if (limit - stats.txPackets < want) want = (limit - stats.txPackets) | 0;
    want = byFile ? dueByFile(want) : pacer.due(want);
    if (now[0] === deadline && want === 0) {
      endedBy = "duration";
      return true;
    }
    if (want > 0) {
      const n = held >= want ? want : held + pool.alloc(bufs, held, want - held);
      times[PROBE_DUE] = -1;
      if (perPacket) fill(n);
      const sent = port.txBurst(bufs, lens, n);
      if (!perPacket) {
        // Identical frames: what the ring did not take waits in `bufs` for the next burst
        // instead of a free and an alloc per burst while the ring is full.
        const owned = held > n ? held : n;
        if (sent > 0 && sent < owned) bufs.copyWithin(0, sent, owned);
        held = owned - sent;
      } else if (sent < n) {
        pool.free(bufs, sent, n - sent);
        rewind(n - sent);
        if (numberAll) probes!.cancel(n - sent); // their numbers go with the next frames
        else if (sent === 0 && times[PROBE_DUE] >= 0) {
          probes!.cancel(1); // the probe was not sent: the next burst carries it
          times[NEXT_PROBE_AT] = times[PROBE_DUE];
        }
      }
      pacer.sent(sent);
      if (sent > 0) times[LAST_SEND] = now[0];
    }
    if (receiving) receive();
    return false;
  }, () => {
    const drops = receiving ? stats.txPackets - stats.rxPackets : 0;
    meter.tick(performance.now(), drops, errors());
  });
  if (signal !== "") endedBy = signal;
} catch (e) {
  failure = (e as Error).message;
  endedBy = "error";
}
const sendEnd = times[LAST_SEND];
pool.free(bufs, 0, held);

/** Frames not taken were filled for nothing: the next ones repeat their file position. */
function rewind(unsent: number): void {
  if (capture === null) return; // generated fields just move on (flows/sizes are cyclic)
  const c = capture;
  for (let i = 0; i < unsent; i++) {
    if (fileAt === 0) {
      fileAt = c.count;
      fileLoop--;
    }
    fileAt--;
  }
}

function errors(): number {
  return probes === null ? 0 : probes.bogus;
}

// --- Drain: the ring empties; reflected frames and probes still on their way are received ---
let unsent = 0;
if (failure === null) {
  try {
    if (receiving) {
      const until = performance.now() + 1000;
      while (performance.now() < until && loop.signal === "") {
        receive();
        if (stats.rxPackets >= stats.txPackets) break;
      }
    }
    unsent = port.txDrain(2000);
  } catch (e) {
    failure = (e as Error).message;
  }
}
meter.finish();
loop.close();

// The paced schedule ends at the deadline even when its last frames left just after it.
const sendSpan = Math.min(sendEnd, deadline) - start;
const seconds = sendSpan / 1000 || (performance.now() - start) / 1000;
const result: Record<string, unknown> = {
  tx_packets: stats.txPackets,
  rx_packets: stats.rxPackets,
  tx_bytes: stats.txBytes,
  rx_bytes: stats.rxBytes,
  seconds: Number(seconds.toFixed(6)),
  mpps: Number((stats.txPackets / seconds / 1e6).toFixed(4)),
  gbps: Number(((stats.txBytes * 8) / seconds / 1e9).toFixed(4)),
  l1_gbps: Number(
    (((stats.txBytes + stats.txPackets * L1_OVERHEAD) * 8) / seconds / 1e9).toFixed(4),
  ),
  rx_mpps: Number((stats.rxPackets / seconds / 1e6).toFixed(4)),
  target_pps: pps === Infinity ? null : Math.round(pps),
  frames: sizes.text,
  flows,
  in_flight_at_exit: unsent,
  ended_by: endedBy,
};
if (probes !== null) {
  const s = probes.summary();
  Object.assign(result, {
    latency_us: s.latency_us,
    probes_sent: s.sent,
    probes_received: s.received,
    probes_warmup: s.warmup,
    lost: s.lost,
    reordered: s.reordered,
    duplicated: s.duplicated,
    rx_not_probes: rxOther,
    errors: probes.bogus,
  });
}
if (opts.histogram !== undefined && probes !== null) {
  Deno.writeTextFileSync(opts.histogram, histogramCsv(probes.histogram));
}
if (opts.plot !== undefined) {
  Deno.writeTextFileSync(
    opts.plot,
    plotSvg(
      `pktgen ${sizes.text}, ${result.mpps} Mpps` +
        (probes !== null ? `, latency p50 ${probes.summary().latency_us.p50} µs` : ""),
      probes?.histogram ?? null,
      meter.seconds,
    ),
  );
}
if (opts.json) result.per_second = meter.seconds;

const untold = closePort(port);
if (device !== null) {
  const { stats: dev, errors: devErrors } = await device.stop();
  Object.assign(result, {
    device_from_driver_packets: dev.fromDriverPackets,
    device_from_driver_bytes: dev.fromDriverBytes,
    device_to_driver_packets: dev.toDriverPackets,
    device_errors: devErrors,
  });
  if (failure === null && dev.fromDriverPackets !== stats.txPackets) {
    console.error(
      `WARNING: driver sent ${stats.txPackets} packets (${stats.txBytes} bytes) but the device ` +
        `took ${dev.fromDriverPackets} (${dev.fromDriverBytes} bytes); ${unsent} were still in ` +
        "flight",
    );
  }
}
if (opts.json) console.log(JSON.stringify(result));
else {
  console.log(
    `total: tx ${stats.txPackets} packets (${stats.txBytes} bytes), rx ${stats.rxPackets} ` +
      `packets in ${seconds.toFixed(3)} s: ${result.mpps} Mpps, ${result.gbps} Gbps` +
      (pps === Infinity ? "" : ` (target ${Math.round(pps)} pps)`) + `; ended by ${endedBy}`,
  );
  if (probes !== null) {
    const s = probes.summary(), l = s.latency_us;
    console.log(
      `latency µs: min ${l.min} p50 ${l.p50} p90 ${l.p90} p99 ${l.p99} p99.9 ${l["p99.9"]} ` +
        `max ${l.max}; probes ${s.sent} sent, ${s.received} received, lost ${s.lost}, ` +
        `reordered ${s.reordered}, duplicated ${s.duplicated}` +
        (s.warmup > 0 ? `, ${s.warmup} in the warm-up (not measured)` : ""),
    );
  }
}
exitForRun("pktgen", failure, loop.signal, untold);

/**
 * `--queues N`: one Worker per queue pair sends fixed-size frames (examples/multi_queue.ts); the
 * summary has per-queue and total counts. Per-packet features stay single-queue.
 */
async function sendOnQueues(): Promise<never> {
  if (template === null || sizes.min !== sizes.max || flows > 0 || latency || numberAll) {
    console.error("pktgen: --queues sends fixed-size frames: no --pcap, sizes, --flows, --latency");
    closePort(port);
    await device?.stop();
    Deno.exit(2);
  }
  const results = await sendFromWorkers(port, {
    count: limit === Infinity ? 0 : limit,
    durationS: duration,
    size: sizes.min,
    burst,
    live,
  });
  const report = {
    tx_packets: port.stats.txPackets,
    tx_bytes: port.stats.txBytes,
    queues: results.map((r) => ({
      queue: r.index,
      tx_packets: r.sent,
      seconds: r.ms / 1000,
      mpps: Number((r.sent / r.ms / 1e3).toFixed(4)),
    })),
    in_flight_at_exit: results.reduce((a, r) => a + r.inFlight, 0),
  };
  const untold = closePort(port);
  const dev = device === null ? null : (await device.stop()).stats;
  if (dev !== null) Object.assign(report, { device_from_driver_packets: dev.fromDriverPackets });
  if (opts.json) console.log(JSON.stringify(report));
  else {
    for (const q of report.queues) {
      console.log(`queue ${q.queue}: tx ${q.tx_packets} packets in ${q.seconds} s: ${q.mpps} Mpps`);
    }
  }
  exitForRun("pktgen", null, "", untold);
  Deno.exit(0);
}

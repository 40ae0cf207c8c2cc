/**
 * device: the TypeScript vhost-user net device as a program, a peer for any virtio-user driver.
 *
 * ```
 *   driver (pktgen.ts, DPDK virtio-user) ──vhost-user──► device: sink (count) | echo | source
 *   driver on SOCK ──► device --mode forward ──► driver on --peer-path (and back)
 *   --workers: queue pair i's data path on Worker i, the protocol on this thread
 *   --mac / --mtu / --link-flap MS: virtio_net_config served (GET_CONFIG); the link toggled every
 *   MS ms and each change told to the driver (BACKEND_CONFIG_CHANGE_MSG)
 * ```
 *
 * The device busy-polls in this thread (with `--workers` this thread only answers the protocol
 * and sleeps in poll(2)). Signals are only delivered when the event loop gets a turn, so it runs
 * in 100 ms slices with one event-loop turn (a zero-delay timer) between them.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { writeUdpFrame } from "../lib/packet/udp_frame.ts";
import type { DeviceMode } from "../lib/device/net_device.ts";
import { type DeviceRunEnd, VhostUserDevice } from "../lib/device/vhost_user_device.ts";
import { ForwardDevice } from "../lib/device/forward_device.ts";
import { PairWorkers } from "../lib/device/pair_workers.ts";
import { DEFAULT_DEVICE_FEATURES, DEFAULT_PROTOCOL_FEATURES } from "../lib/vhost_user/backend.ts";
import { protocolFeatureMask } from "../lib/vhost_user/message.ts";
import { parseMac } from "../lib/packet/ethernet.ts";
import { featureMask } from "../lib/virtio/features.ts";
import { EXIT_CODES, intOption, parseCli, sizeOption, TURN_MS } from "./cli.ts";

const USAGE = `usage: device.ts --path SOCK [--mode sink|echo|source] [--count N | --duration S]
                 [--size BYTES] [--mac-swap] [--connect] [--queue-pairs N] [--workers] [--mrg-rxbuf]
                 [--mac ADDR] [--mtu N] [--link-flap MS] [--json]
       device.ts --mode forward --path A --peer-path B [--duration S] [--queue-pairs N] [--json]

Serves a vhost-user net device at SOCK until SIGINT/SIGTERM, --count or --duration.

  --path SOCK        vhost-user socket: listened on (a frontend connects), or with --connect
                     connected to (a frontend in server mode)
  --mode MODE        sink: count and drop what the driver sends (default)
                     echo: send each frame back; source: send UDP frames to the driver
                     forward: copy every frame the driver on SOCK sends to the driver on
                     --peer-path and back (a two-port L2 forwarder; drops counted)
  --peer-path B      forward: the second vhost-user socket (listened on)
  --count N          stop after exactly N frames (sink/echo: taken, source: sent)
  --duration S       stop S seconds after the first frontend started its queues
  --size BYTES       source: frame size without FCS, 60..2036, ..9000 with --mrg-rxbuf (64)
  --mac-swap         echo: swap source and destination MAC addresses
  --connect          connect to SOCK instead of listening
  --queue-pairs N    queue pairs offered (default 1)
  --mrg-rxbuf        offer VIRTIO_NET_F_MRG_RXBUF: source and echo spread a frame over several
                     receive buffers when one is too small (forward always offers it)
  --workers          serve each queue pair on its own Worker (per-queue counters in the
                     report; not with --count, forward or --connect)
  --mac ADDR         offer VIRTIO_NET_F_MAC with this address in the device config
  --mtu N            offer VIRTIO_NET_F_MTU with this MTU in the device config
  --link-flap MS     take the link down and up again every MS ms (VIRTIO_NET_S_LINK_UP): no
                     frame moves while it is down, and the driver is told of each change
                     (BACKEND_CONFIG_CHANGE_MSG); a test of how it copes with a flapping link
  With any of these three the device offers VIRTIO_NET_F_STATUS and the CONFIG and BACKEND_REQ
  protocol features (not with forward).
  --json             print one final JSON line
  --quiet            no per-second lines on stderr`;

const opts = parseCli(
  USAGE,
  () =>
    parseArgs({
      options: {
        path: { type: "string" },
        mode: { type: "string", default: "sink" },
        count: { type: "string" },
        duration: { type: "string" },
        size: { type: "string", default: "64" },
        "mac-swap": { type: "boolean", default: false },
        connect: { type: "boolean", default: false },
        "queue-pairs": { type: "string", default: "1" },
        "peer-path": { type: "string" },
        workers: { type: "boolean", default: false },
        "mrg-rxbuf": { type: "boolean", default: false },
        mac: { type: "string" },
        mtu: { type: "string" },
        "link-flap": { type: "string" },
        json: { type: "boolean", default: false },
        quiet: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }).values,
);
if (opts.path === undefined) {
  console.error(`--path is required\n\n${USAGE}`);
  Deno.exit(2);
}
const forward = opts.mode === "forward";
if (opts.mode !== "sink" && opts.mode !== "echo" && opts.mode !== "source" && !forward) {
  console.error(`--mode: expected sink, echo, source or forward, got "${opts.mode}"\n\n${USAGE}`);
  Deno.exit(2);
}
const count = intOption("count", opts.count, 0);
/** A usage error: one line and exit code 2. */
function misuse(why: string): never {
  console.error(`${why}\n\n${USAGE}`);
  Deno.exit(2);
}
if (forward !== (opts["peer-path"] !== undefined)) {
  misuse(forward ? "--mode forward needs --peer-path" : "--peer-path is for --mode forward");
}
if (forward && (count > 0 || opts.connect || opts.workers)) {
  misuse("--mode forward takes no --count, --connect or --workers");
}
const flapMs = intOption("link-flap", opts["link-flap"], 0);
const config = opts.mac !== undefined || opts.mtu !== undefined || flapMs > 0;
if (forward && config) misuse("--mode forward takes no --mac, --mtu or --link-flap");
let mac: Uint8Array | undefined;
try {
  mac = opts.mac === undefined ? undefined : parseMac(opts.mac);
} catch (e) {
  misuse(`--mac: ${(e as Error).message}`);
}
const mtu = opts.mtu === undefined ? undefined : intOption("mtu", opts.mtu, 0);
if (mtu !== undefined && (mtu < 68 || mtu > 65535)) misuse(`--mtu: 68 to 65535, got ${mtu}`);
if (opts.workers && (count > 0 || opts.connect)) {
  misuse("--workers takes no --count (each Worker takes frames on its own) or --connect");
}
const mode = opts.mode as DeviceMode | "forward";
const duration = intOption("duration", opts.duration, 0);
const size = sizeOption(opts.size, opts["mrg-rxbuf"] ? 9000 : 2036);
const live = !opts.quiet && !opts.json;

let frame: Uint8Array | undefined;
if (mode === "source") {
  frame = new Uint8Array(size);
  writeUdpFrame(frame, 0, size);
}
const queuePairs = intOption("queue-pairs", opts["queue-pairs"], 1);
const dataOptions = {
  mode: mode === "forward" ? undefined : mode,
  macSwap: opts["mac-swap"],
  frame,
};
const workers = opts.workers ? await PairWorkers.start(queuePairs, dataOptions) : undefined;
let features = DEFAULT_DEVICE_FEATURES;
if (opts["mrg-rxbuf"]) features |= featureMask("NET_F_MRG_RXBUF");
if (config) features |= featureMask("NET_F_STATUS");
if (mac !== undefined) features |= featureMask("NET_F_MAC");
if (mtu !== undefined) features |= featureMask("NET_F_MTU");
const protocolFeatures = config
  ? DEFAULT_PROTOCOL_FEATURES | protocolFeatureMask("CONFIG", "BACKEND_REQ")
  : undefined;
const options = { ...dataOptions, queuePairs, workers, features, protocolFeatures, mac, mtu };
const fwd = forward ? ForwardDevice.listen(opts.path, opts["peer-path"]!, { queuePairs }) : null;
const device = fwd?.a ??
  (opts.connect
    ? VhostUserDevice.connect(opts.path, options)
    : VhostUserDevice.listen(opts.path, options));
/** What the loop runs: the forwarder, or the one device. */
const server: { run(limits: object): DeviceRunEnd; readonly startedAt: number } = fwd ?? device;
if (live) {
  console.error(
    `${mode} device ${opts.connect ? "connected to" : "listening on"} ${opts.path}` +
      (fwd !== null ? ` and ${opts["peer-path"]}` : "") +
      (count > 0 ? `, until ${count} frames` : "") +
      (duration > 0 ? `, for ${duration} s` : "") + "; Ctrl-C stops",
  );
}

// Signals set a flag the loop reads between slices.
let signalled = "";
const onSigint = () => signalled = "SIGINT";
const onSigterm = () => signalled = "SIGTERM";
Deno.addSignalListener("SIGINT", onSigint);
Deno.addSignalListener("SIGTERM", onSigterm);

// One event-loop turn between slices (signal listeners and the live line run then). A timer turn,
// not a message to ourselves: a message turn alone can leave a signal undelivered for seconds.
const turn = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

const limits = {
  count: count > 0 ? count : undefined,
  durationMs: duration > 0 ? duration * 1000 : undefined,
  sliceMs: flapMs > 0 ? Math.min(TURN_MS, flapMs) : TURN_MS,
};
/** --link-flap: when the link changes next (from the first session on), and how often it did. */
let nextFlap = -1, linkChanges = 0;
// Forward mode: A's driver's frames count as "from driver", those forwarded to A as "to driver".
const stats = fwd === null ? device.stats : {
  get fromDriverPackets() {
    return fwd.aToB.taken;
  },
  get toDriverPackets() {
    return fwd.bToA.packets;
  },
  get fromDriverBytes() {
    return fwd.aToB.bytes;
  },
  get toDriverBytes() {
    return fwd.bToA.bytes;
  },
  get toDriverDropped() {
    return fwd.aToB.dropped + fwd.bToA.dropped;
  },
};
let lastPrint = performance.now(), lastRx = 0, lastTx = 0, lastBytes = 0;
let end: string;
for (;;) {
  // 100 ms slices: Ctrl-C waits at most that long, and the turn's promise and timer (a few
  // hundred bytes) are the only allocation, ten times a second, so steady state collects nothing
  // for minutes. While no ring runs the device sleeps in poll(2) inside the slice.
  end = server.run(limits);
  if (end !== "slice") break;
  await turn();
  if (signalled !== "") {
    end = signalled;
    break;
  }
  const now = performance.now();
  if (flapMs > 0 && server.startedAt >= 0) {
    if (nextFlap < 0) nextFlap = server.startedAt + flapMs;
    if (now >= nextFlap) {
      device.linkUp = !device.linkUp;
      linkChanges++;
      nextFlap = now + flapMs;
      if (live) console.error(`link ${device.linkUp ? "up" : "down"}`);
    }
  }
  if (live && server.startedAt >= 0 && now - lastPrint >= 1000) {
    const s = (now - lastPrint) / 1000;
    const bytes = stats.fromDriverBytes + stats.toDriverBytes;
    console.error(
      `${((now - server.startedAt) / 1000).toFixed(0).padStart(4)} s  ` +
        `rx ${((stats.fromDriverPackets - lastRx) / s / 1e6).toFixed(2)} Mpps  ` +
        `tx ${((stats.toDriverPackets - lastTx) / s / 1e6).toFixed(2)} Mpps  ` +
        `${(((bytes - lastBytes) * 8) / s / 1e9).toFixed(2)} Gbps  ` +
        `rx ${stats.fromDriverPackets}  tx ${stats.toDriverPackets}` +
        (stats.toDriverDropped > 0 ? `  dropped ${stats.toDriverDropped}` : ""),
    );
    lastPrint = now;
    lastRx = stats.fromDriverPackets;
    lastTx = stats.toDriverPackets;
    lastBytes = bytes;
  }
}
const endedAt = performance.now();
if ((end === "count" || end === "duration") && device.backend.connected) {
  // No more frames move; let the frontend stop its rings and disconnect cleanly (at most 2 s).
  if (fwd === null) device.paused = true;
  const deadline = endedAt + 2000;
  while (device.backend.connected && performance.now() < deadline && signalled === "") {
    device.run({ sliceMs: 10 });
    await turn();
  }
}
(fwd ?? device).close();
Deno.removeSignalListener("SIGINT", onSigint);
Deno.removeSignalListener("SIGTERM", onSigterm);

const seconds = server.startedAt >= 0 ? (endedAt - server.startedAt) / 1000 : 0;
const packets = fwd !== null
  ? fwd.aToB.packets + fwd.bToA.packets // forwarded, both ways
  : stats.fromDriverPackets + stats.toDriverPackets;
const errors = [...device.errors, ...(fwd?.b.errors ?? [])].map((e) => `${e.name}: ${e.message}`);
/** Per-queue counters (--workers), as the report names them. */
const queues = workers === undefined ? undefined : Array.from({ length: queuePairs }, (_, i) => {
  const q = device.queueStats(i)!;
  return {
    from_driver_packets: q.fromDriverPackets,
    from_driver_bytes: q.fromDriverBytes,
    to_driver_packets: q.toDriverPackets,
    to_driver_bytes: q.toDriverBytes,
    to_driver_dropped: q.toDriverDropped,
  };
});
const forwarded = fwd === null ? undefined : {
  a_to_b_packets: fwd.aToB.packets,
  a_to_b_bytes: fwd.aToB.bytes,
  a_to_b_dropped: fwd.aToB.dropped,
  b_to_a_packets: fwd.bToA.packets,
  b_to_a_bytes: fwd.bToA.bytes,
  b_to_a_dropped: fwd.bToA.dropped,
  shared_arena: fwd.sharedArena, // both ports' memory in one range: each copy is a memmove
};
const result = {
  mode,
  from_driver_packets: stats.fromDriverPackets,
  to_driver_packets: stats.toDriverPackets,
  from_driver_bytes: stats.fromDriverBytes,
  to_driver_bytes: stats.toDriverBytes,
  seconds: Number(seconds.toFixed(6)),
  mpps: seconds > 0 ? Number((packets / seconds / 1e6).toFixed(3)) : 0,
  to_driver_dropped: stats.toDriverDropped,
  sessions: device.sessionsEnded + (fwd?.b.sessionsEnded ?? 0),
  ...(flapMs > 0 ? { link_changes: linkChanges } : {}),
  ended_by: end,
  errors,
  ...(queues === undefined ? {} : { queues }),
  ...forwarded,
};
if (opts.json) console.log(JSON.stringify(result));
else {
  console.log(
    `device (${mode}): from driver ${stats.fromDriverPackets} packets (${stats.fromDriverBytes} bytes), to ` +
      `driver ${stats.toDriverPackets} packets (${stats.toDriverBytes} bytes) in ${
        seconds.toFixed(3)
      } s: ` +
      `${result.mpps} Mpps; dropped ${stats.toDriverDropped}; ended by ${end}`,
  );
  if (forwarded !== undefined) {
    console.log(
      `forwarded A->B ${forwarded.a_to_b_packets} (dropped ${forwarded.a_to_b_dropped}), ` +
        `B->A ${forwarded.b_to_a_packets} (dropped ${forwarded.b_to_a_dropped})`,
    );
  }
  queues?.forEach((q, i) =>
    console.log(
      `queue ${i}: from driver ${q.from_driver_packets}, to driver ${q.to_driver_packets}`,
    )
  );
  for (const e of errors) console.log(`error: ${e}`);
}
// How the run ended, as the other examples report it: a signal (130 / 143), the frontend gone
// from a --connect session (1, one line on stderr), or a limit (0).
if (end === "closed" && opts.connect) {
  const why = device.errors.at(-1)?.message ?? "it closed the connection";
  console.error(`device: the frontend is gone: ${why}`);
}
Deno.exit(
  end === "SIGINT" || end === "SIGTERM"
    ? EXIT_CODES[end]
    : end === "closed" && opts.connect
    ? 1
    : 0,
);

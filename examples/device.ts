/**
 * device: the TypeScript vhost-user net device as a program, a peer for any virtio-user driver.
 *
 * ```
 *   driver (pktgen.ts, DPDK virtio-user) ──vhost-user──► device: sink (count) | echo | source
 * ```
 *
 * The device busy-polls in this thread. Signals are only delivered when the event loop gets a
 * turn, so it runs in 10 ms slices with one event-loop turn between them (a MessageChannel
 * round trip, ~50 µs; a zero timeout would be clamped to 4 ms once timers nest).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { writeUdpFrame } from "../lib/packet/udp_frame.ts";
import type { DeviceMode } from "../lib/device/net_device.ts";
import { VhostUserDevice } from "../lib/device/vhost_user_device.ts";
import { EXIT_CODES, intOption, parseCli, sizeOption } from "./cli.ts";

const USAGE = `usage: device.ts --path SOCK [--mode sink|echo|source] [--count N | --duration S]
                 [--size BYTES] [--mac-swap] [--connect] [--queue-pairs N] [--json]

Serves a vhost-user net device at SOCK until SIGINT/SIGTERM, --count or --duration.

  --path SOCK        vhost-user socket: listened on (a frontend connects), or with --connect
                     connected to (a frontend in server mode)
  --mode MODE        sink: count and drop what the driver sends (default)
                     echo: send each frame back; source: send UDP frames to the driver
  --count N          stop after exactly N frames (sink/echo: taken, source: sent)
  --duration S       stop S seconds after the first frontend started its queues
  --size BYTES       source: frame size without FCS, 60..2036 (default 64)
  --mac-swap         echo: swap source and destination MAC addresses
  --connect          connect to SOCK instead of listening
  --queue-pairs N    queue pairs offered (default 1)
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
if (opts.mode !== "sink" && opts.mode !== "echo" && opts.mode !== "source") {
  console.error(`--mode: expected sink, echo or source, got "${opts.mode}"\n\n${USAGE}`);
  Deno.exit(2);
}
const mode: DeviceMode = opts.mode;
const count = intOption("count", opts.count, 0);
const duration = intOption("duration", opts.duration, 0);
const size = sizeOption(opts.size);
const live = !opts.quiet && !opts.json;

let frame: Uint8Array | undefined;
if (mode === "source") {
  frame = new Uint8Array(size);
  writeUdpFrame(frame, 0, size);
}
const options = {
  mode,
  macSwap: opts["mac-swap"],
  frame,
  queuePairs: intOption("queue-pairs", opts["queue-pairs"], 1),
};
const device = opts.connect
  ? VhostUserDevice.connect(opts.path, options)
  : VhostUserDevice.listen(opts.path, options);
if (live) {
  console.error(
    `${mode} device ${opts.connect ? "connected to" : "listening on"} ${opts.path}` +
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
  sliceMs: 100,
};
const stats = device.stats;
let lastPrint = performance.now(), lastRx = 0, lastTx = 0, lastBytes = 0;
let end: string;
for (;;) {
  // 100 ms slices: Ctrl-C waits at most that long, and the turn's promise and timer (a few
  // hundred bytes) are the only allocation, ten times a second, so steady state collects nothing
  // for minutes. While no ring runs the device sleeps in poll(2) inside the slice.
  end = device.run(limits);
  if (end !== "slice") break;
  await turn();
  if (signalled !== "") {
    end = signalled;
    break;
  }
  const now = performance.now();
  if (live && device.startedAt >= 0 && now - lastPrint >= 1000) {
    const s = (now - lastPrint) / 1000;
    const bytes = stats.fromDriverBytes + stats.toDriverBytes;
    console.error(
      `${((now - device.startedAt) / 1000).toFixed(0).padStart(4)} s  ` +
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
  device.paused = true;
  const deadline = endedAt + 2000;
  while (device.backend.connected && performance.now() < deadline && signalled === "") {
    device.run({ sliceMs: 10 });
    await turn();
  }
}
device.close();
Deno.removeSignalListener("SIGINT", onSigint);
Deno.removeSignalListener("SIGTERM", onSigterm);

const seconds = device.startedAt >= 0 ? (endedAt - device.startedAt) / 1000 : 0;
const packets = stats.fromDriverPackets + stats.toDriverPackets;
const errors = device.errors.map((e) => `${e.name}: ${e.message}`);
const result = {
  mode,
  from_driver_packets: stats.fromDriverPackets,
  to_driver_packets: stats.toDriverPackets,
  from_driver_bytes: stats.fromDriverBytes,
  to_driver_bytes: stats.toDriverBytes,
  seconds: Number(seconds.toFixed(6)),
  mpps: seconds > 0 ? Number((packets / seconds / 1e6).toFixed(3)) : 0,
  to_driver_dropped: stats.toDriverDropped,
  sessions: device.sessionsEnded,
  ended_by: end,
  errors,
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

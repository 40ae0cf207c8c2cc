/**
 * tap: attaches to a tap interface through the Linux kernel's vhost-net and shows what the
 * kernel sends out of it: one line per frame (Ethernet, ARP, IPv4 summary), or with `--quiet`
 * the frame and byte counts once a second.
 *
 * ```
 *   kernel stack ──► tap NAME ══vhost-net══► receiveq ──rxBurst──► describeFrame ──► stdout
 * ```
 *
 * Exit codes: 0 done (count, duration, SIGINT/SIGTERM), 1 runtime error (one line), 2 usage.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { describeFrame } from "../lib/packet/describe.ts";
import { commonOptions, intOption, openPort, parseCli } from "./cli.ts";

const USAGE = `usage: tap.ts [--tap NAME] [--quiet] [--count N | --duration S]

Shows the frames the kernel sends out of a tap interface, received through /dev/vhost-net.

  --tap NAME         the tap to attach (created when missing; default a new tap<N>); bring it
                     up for traffic: ip addr add 10.0.0.1/24 dev NAME; ip link set NAME up
  --path PATH        the vhost-net device (default /dev/vhost-net)
  --quiet            frames and bytes per second instead of a line per frame
  --count N          exit after N frames
  --duration S       exit after S seconds (default: until SIGINT/SIGTERM)
  --queue-size N     descriptors per ring, a power of two (default 256)
  --hugepages MODE   auto | yes | no (default auto)`;

const opts = parseCli(USAGE, () => parseArgs({ options: commonOptions }).values);
const count = intOption("count", opts.count, 0);
const duration = intOption("duration", opts.duration, 0);

const port = await openPort(
  { ...opts, path: opts.path ?? "/dev/vhost-net", split: true },
  null,
  "tap",
);
const { pool, stats } = port;
let stop = false;
const onSignal = () => (stop = true);
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);
console.error(`tap: showing frames from ${port.transport.name}`);

const BURST = 32;
const bufs = new Uint32Array(BURST), lens = new Uint32Array(BURST);
const deadline = duration > 0 ? performance.now() + duration * 1000 : Infinity;
let lastPrint = performance.now(), lastPackets = 0, lastBytes = 0, idle = 0;
while (!stop && (count === 0 || stats.rxPackets < count)) {
  const n = port.rxBurst(
    bufs,
    lens,
    Math.min(BURST, count === 0 ? BURST : count - stats.rxPackets),
  );
  if (!opts.quiet) {
    for (let i = 0; i < n; i++) {
      console.log(describeFrame(pool.bytes, pool.dataOffset(bufs[i]), lens[i]));
    }
  }
  pool.free(bufs, 0, n);
  if (n > 0) idle = 0;
  else if (++idle >= 1024) {
    idle = 0;
    await new Promise((r) => setTimeout(r, 1));
    const now = performance.now();
    if (opts.quiet && now - lastPrint >= 1000) {
      const s = (now - lastPrint) / 1000;
      console.log(
        `${((stats.rxPackets - lastPackets) / s).toFixed(0)} frames/s, ${
          ((stats.rxBytes - lastBytes) / s).toFixed(0)
        } bytes/s (total ${stats.rxPackets} frames)`,
      );
      lastPrint = now;
      lastPackets = stats.rxPackets;
      lastBytes = stats.rxBytes;
    }
    if (now > deadline) break;
  }
}
port.close();
console.error(`tap: ${stats.rxPackets} frames, ${stats.rxBytes} bytes`);

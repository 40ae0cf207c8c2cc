/**
 * echo: sends every received frame back where it came from, optionally swapping the MAC
 * addresses (a reflector for pktgen's `--latency`, or for testpmd txonly).
 *
 * ```
 *   vhost-user port ──rxBurst──► [swap dst/src MAC] ──txBurst (same buffers)──► same port
 * ```
 *
 * @module
 */

import { swapMacs } from "../lib/packet/ethernet.ts";
import { parseArgs } from "node:util";
import {
  closePort,
  commonOptions,
  intOption,
  openPort,
  parseCli,
  PORT_OPTIONS_HELP,
  RunMeter,
} from "./cli.ts";
import { EventLoop, exitForRun, receiveUntilDone } from "./event_loop.ts";

const USAGE = `usage: echo.ts --path SOCK [--mac-swap] [--count N | --duration S] [--json]

Reflects every frame received on a vhost-user port back to it (the buffers are sent as they
came, no copy).

  --path SOCK        vhost-user socket of the device (required)
  --mac-swap         swap destination and source MAC addresses
  --count N          stop after receiving exactly N frames
  --duration S       stop after S seconds (default: until SIGINT/SIGTERM)
${PORT_OPTIONS_HELP}`;

const opts = parseCli(
  USAGE,
  () =>
    parseArgs({
      options: { ...commonOptions, "mac-swap": { type: "boolean", default: false } },
      strict: true,
    }).values,
);
if (opts.path === undefined) {
  console.error("echo: --path is required (the port to reflect frames on)");
  Deno.exit(2);
}
const count = intOption("count", opts.count, 0);
const duration = intOption("duration", opts.duration, 0);
const burst = intOption("burst", opts.burst, 32);
const macSwap = opts["mac-swap"];
const port = await openPort(opts, null, "echo");
const { pool, stats } = port;
const bufs = new Uint32Array(burst);
const lens = new Uint32Array(burst);
let dropped = 0; // received frames the transmit ring had no room for
const meter = new RunMeter(
  stats,
  count,
  duration > 0 ? duration : count > 0 ? 0 : 1e9,
  !opts.quiet && !opts.json,
  opts.server ? null : port,
);
const loop = new EventLoop();
let endedBy = "count";
let failure: string | null = null;
try {
  endedBy = await receiveUntilDone(loop, meter, stats, count, burst, (max) => {
    const n = port.rxBurst(bufs, lens, max);
    if (n === 0) return;
    if (macSwap) { for (let i = 0; i < n; i++) swapMacs(pool.bytes, pool.dataOffset(bufs[i])); }
    const sent = port.txBurst(bufs, lens, n);
    if (sent < n) {
      pool.free(bufs, sent, n - sent);
      dropped += n - sent;
    }
  });
  port.txDrain(1000);
} catch (e) {
  failure = (e as Error).message;
  endedBy = "error";
}
loop.close();
if (meter.ended === "link down") failure ??= meter.reason;
meter.report(opts.json, { tx_dropped: dropped, ended_by: endedBy });
exitForRun("echo", failure, loop.signal, closePort(port));

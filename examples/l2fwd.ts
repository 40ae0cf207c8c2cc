/**
 * l2fwd: forwards frames between two vhost-user ports, both ways, like DPDK's l2fwd with two
 * ports (e.g. two VMs' or two testpmd instances' vhost-user sockets).
 *
 * ```
 *   port 0 ──rxBurst──► copy into port 1's buffers [--mac-swap] ──txBurst──► port 1
 *   port 0 ◄──txBurst── copy into port 0's buffers [--mac-swap] ◄──rxBurst── port 1
 * ```
 *
 * Each port has its own shared memory (its device maps only that), so a frame is copied, 4
 * bytes at a time, from one pool into the other. A full ring pushes back (the frames wait, the
 * other side is not read meanwhile); a frame is dropped only when the pool has no buffer.
 *
 * @module
 */

import type { VirtioNet } from "../lib/driver/virtio_net.ts";
import { swapMacs } from "../lib/packet/ethernet.ts";
import { parseArgs } from "node:util";
import {
  closePort,
  commonOptions,
  intOption,
  openPort,
  parseCli,
  PORT_OPTIONS_HELP,
} from "./cli.ts";
import { EventLoop, exitForRun } from "./event_loop.ts";

const USAGE = `usage: l2fwd.ts --port0 SOCK --port1 SOCK [--count N | --duration S] [--json]

Forwards every frame received on one vhost-user port to the other, both ways.

  --port0 SOCK       first vhost-user socket
  --port1 SOCK       second vhost-user socket
  --mac-swap         swap destination and source MAC addresses of forwarded frames
  --count N          stop after forwarding exactly N frames (both directions together)
  --duration S       stop after S seconds (default: until SIGINT/SIGTERM)
${PORT_OPTIONS_HELP}`;

const { path: _path, ...portOptions } = commonOptions; // two ports instead of one --path
const opts = parseCli(
  USAGE,
  () =>
    parseArgs({
      options: {
        ...portOptions,
        port0: { type: "string" },
        port1: { type: "string" },
        "mac-swap": { type: "boolean", default: false },
      },
      strict: true,
    }).values,
);
if (opts.port0 === undefined || opts.port1 === undefined) {
  console.error("l2fwd: --port0 and --port1 are both required");
  Deno.exit(2);
}
const count = intOption("count", opts.count, 0);
const duration = intOption("duration", opts.duration, 0);
const burst = intOption("burst", opts.burst, 32);
const macSwap = opts["mac-swap"];
const ports: VirtioNet[] = [];
for (const path of [opts.port0, opts.port1]) {
  ports.push(await openPort({ ...opts, path }, null, "l2fwd")); // exits with one line on failure
}
const words = ports.map((p) => new Uint32Array(p.pool.bytes.buffer));
const rxBufs = new Uint32Array(burst), rxLens = new Uint32Array(burst);
// Per direction: frames copied into the other port's buffers that its ring has not taken yet.
const pendBufs = [new Uint32Array(burst), new Uint32Array(burst)];
const pendLens = [new Uint32Array(burst), new Uint32Array(burst)];
const pending = [0, 0], forwarded = [0, 0], dropped = [0, 0];

/**
 * Moves one burst from port `from` to the other; returns the frames received. Frames the other
 * ring has no room for wait (back-pressure: nothing more is received that way until they went);
 * only a frame the other pool has no buffer for is dropped.
 */
function forward(from: number): number {
  const a = ports[from], b = ports[1 - from];
  const bufs = pendBufs[from], lens = pendLens[from];
  if (pending[from] > 0) {
    const sent = b.txBurst(bufs, lens, pending[from]);
    forwarded[from] += sent;
    bufs.copyWithin(0, sent, pending[from]);
    lens.copyWithin(0, sent, pending[from]);
    pending[from] -= sent;
    if (pending[from] > 0) return 0;
  }
  const n = a.rxBurst(rxBufs, rxLens, burst);
  if (n === 0) return 0;
  const m = b.pool.alloc(bufs, 0, n);
  const src = words[from], dst = words[1 - from];
  const srcBytes = a.pool.bytes, dstBytes = b.pool.bytes;
  for (let i = 0; i < m; i++) {
    // Frames start 4-byte aligned (buffer base + 12-byte header): copy words, then the tail.
    const s = a.pool.dataOffset(rxBufs[i]), d = b.pool.dataOffset(bufs[i]), len = rxLens[i];
    const w = len >>> 2, sw = s >>> 2, dw = d >>> 2;
    for (let k = 0; k < w; k++) dst[dw + k] = src[sw + k];
    for (let k = w << 2; k < len; k++) dstBytes[d + k] = srcBytes[s + k];
    if (macSwap) swapMacs(dstBytes, d);
    lens[i] = len;
  }
  a.pool.free(rxBufs, 0, n);
  dropped[from] += n - m;
  const sent = b.txBurst(bufs, lens, m);
  forwarded[from] += sent;
  bufs.copyWithin(0, sent, m);
  lens.copyWithin(0, sent, m);
  pending[from] = m - sent;
  return n;
}

const loop = new EventLoop();
const start = performance.now();
const deadline = duration > 0 ? start + duration * 1000 : Infinity;
const live = !opts.quiet && !opts.json;
let lastPrint = start, endedBy = "count";
let failure: string | null = null;
try {
  const signal = await loop.run(() => {
    const now = performance.now();
    if (count > 0 && forwarded[0] + forwarded[1] + dropped[0] + dropped[1] >= count) return true;
    for (let p = 0; p < 2; p++) {
      if (!opts.server && !ports[p].connected) {
        failure = `port${p}: the peer is gone: ${ports[p].downReason}`;
        endedBy = "link down";
        return true;
      }
    }
    if (now >= deadline) {
      endedBy = "duration";
      return true;
    }
    forward(0);
    forward(1);
    return false;
  }, () => {
    const now = performance.now();
    if (!live || now - lastPrint < 1000) return;
    console.error(
      `${((now - start) / 1000).toFixed(0).padStart(5)} s  0->1 ${forwarded[0]}  ` +
        `1->0 ${forwarded[1]}  dropped ${dropped[0] + dropped[1]}`,
    );
    lastPrint = now;
  });
  if (signal !== "") endedBy = signal;
  const until = performance.now() + 1000;
  while (pending[0] + pending[1] > 0 && performance.now() < until) {
    for (const from of [0, 1]) if (pending[from] > 0) forward(from);
  }
  for (const p of ports) p.txDrain(1000);
} catch (e) {
  failure = (e as Error).message;
  endedBy = "error";
}
loop.close();
const seconds = (performance.now() - start) / 1000;
const result = {
  forwarded_0_to_1: forwarded[0],
  forwarded_1_to_0: forwarded[1],
  dropped_0_to_1: dropped[0],
  dropped_1_to_0: dropped[1],
  bytes_0_to_1: ports[1].stats.txBytes,
  bytes_1_to_0: ports[0].stats.txBytes,
  seconds: Number(seconds.toFixed(6)),
  mpps: Number(((forwarded[0] + forwarded[1]) / seconds / 1e6).toFixed(4)),
  ended_by: endedBy,
};
const untold = ports.flatMap((p) => closePort(p));
if (opts.json) console.log(JSON.stringify(result));
else {
  console.log(
    `forwarded 0->1 ${forwarded[0]} (dropped ${dropped[0]}), 1->0 ${forwarded[1]} ` +
      `(dropped ${dropped[1]}) in ${
        seconds.toFixed(3)
      } s: ${result.mpps} Mpps; ended by ${endedBy}`,
  );
}
exitForRun("l2fwd", failure, loop.signal, untold);

/**
 * What the example programs share: option parsing, the run limit (`--count` / `--duration`),
 * live per-second rates on stderr, the final report (one JSON line with `--json`), and how a run
 * ends: its count or duration (exit 0), the peer hanging up (exit 1), SIGINT (130) or SIGTERM
 * (143) — each with a one-line reason on stderr and the summary, never a stack trace.
 *
 * @module
 */

import { VirtioNet } from "../mod.ts";
import type { DeviceThread } from "../lib/device/device_thread.ts";

/** Options every example takes, on top of its own. */
export const commonOptions = {
  path: { type: "string" },
  server: { type: "boolean", default: false },
  tap: { type: "string" },
  split: { type: "boolean", default: false },
  count: { type: "string" },
  duration: { type: "string" },
  "queue-size": { type: "string", default: "256" },
  burst: { type: "string", default: "32" },
  hugepages: { type: "string", default: "auto" },
  json: { type: "boolean", default: false },
  quiet: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/**
 * Runs `parse` (a `parseArgs` call over {@linkcode commonOptions} and the example's own), printing
 * `usage` and exiting on a parse error or `--help`.
 */
export function parseCli<T extends { help?: boolean }>(usage: string, parse: () => T): T {
  let values: T;
  try {
    values = parse();
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${usage}`);
    Deno.exit(2);
  }
  if (values.help) {
    console.log(usage);
    Deno.exit(0);
  }
  return values;
}

/** Reads an integer option, exiting with a message when it is not one. */
export function intOption(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`--${name}: expected a number, got "${value}"`);
    Deno.exit(2);
  }
  return n;
}

/** Parses `--hugepages auto|yes|no`. */
export function hugepagesOption(value: string): boolean | "auto" {
  if (value === "auto") return "auto";
  if (value === "yes" || value === "true") return true;
  if (value === "no" || value === "false") return false;
  console.error(`--hugepages: expected auto, yes or no, got "${value}"`);
  Deno.exit(2);
}

/**
 * Reads `--size` (frame bytes without FCS, 60..`max`: 2036 fits a 2048-byte buffer, 9000 is a
 * jumbo frame), exiting with a message when out of range.
 */
export function sizeOption(value: string | undefined, max = 2036): number {
  const size = intOption("size", value, 64);
  if (size < 60 || size > max) {
    console.error(`--size: expected 60..${max}, got ${size}`);
    Deno.exit(2);
  }
  return size;
}

/**
 * Opens a {@linkcode VirtioNet} port on `--path` (a vhost-user socket, or /dev/vhost-net with
 * `--tap`), else on the built-in `device`, with the ring options (`--split`, `--queue-size`,
 * `--hugepages`; `mergeable`: negotiate VIRTIO_NET_F_MRG_RXBUF). With `--server` the port
 * listens on `--path` and a vhost-user backend connects (and may reconnect). When the open
 * fails it stops `device`, prints one line `<program>: <why>` and exits 1: an expected
 * condition, no stack trace.
 */
export async function openPort(
  opts: {
    path?: string;
    server?: boolean;
    tap?: string;
    split: boolean;
    "queue-size": string;
    hugepages: string;
  },
  device: DeviceThread | null,
  program: string,
  queuePairs = 1,
  bufferSize?: number,
  mergeable = false,
): Promise<VirtioNet> {
  try {
    return VirtioNet.open({
      path: opts.path ?? device!.path,
      server: opts.server === true && opts.path !== undefined,
      tap: opts.tap,
      packed: !opts.split,
      queueSize: intOption("queue-size", opts["queue-size"], 256),
      hugepages: hugepagesOption(opts.hugepages),
      // More than one pair: one Worker per pair (multi_queue.ts).
      queuePairs,
      detachQueues: queuePairs > 1,
      bufferSize,
      mergeable,
    });
  } catch (e) {
    await device?.stop(); // the worker would keep the process alive; stop() removes its temp dir
    console.error(`${program}: ${(e as Error).message}`);
    Deno.exit(1);
  }
}

/** Why a run ended. */
export type RunEnd = "count" | "duration" | "link down" | "error" | "SIGINT" | "SIGTERM";

/** Exit status for each way a run ends (128 + signal number for signals, as shells report). */
export const EXIT_CODES: Readonly<Record<RunEnd, number>> = {
  count: 0,
  duration: 0,
  "link down": 1,
  error: 1,
  SIGINT: 130,
  SIGTERM: 143,
};

/** What the meter watches besides the counters: the port's link (a {@linkcode VirtioNet}). */
export interface LinkWatch {
  /** False once the peer is gone (a device reporting its link down is still there). */
  readonly connected: boolean;
  readonly downReason: string;
}

/** Counters a run reports. */
export interface RunCounters {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
}

/**
 * Milliseconds between event-loop turns of a busy loop. Each turn allocates a promise and an
 * event (a few hundred bytes): ten a second keep a steady run free of collections for minutes,
 * and Ctrl-C still answers within this long.
 */
export const TURN_MS = 100;

/**
 * Decides when a run ends (count, duration, or the port's link going down) and prints live
 * rates once a second. `done()` is called once per burst and only compares counts; the clock is
 * read by `tick()`, once per loop slice. A clock read per so many bursts would scale with the
 * poll rate (millions of empty polls a second), and `performance.now()` returns a double,
 * boxed (an allocation) whenever V8 did not inline the call. Signals and event-loop turns are
 * {@linkcode EventLoop}'s (event_loop.ts).
 */
export class RunMeter {
  readonly start = performance.now();
  readonly #limitPackets: number;
  readonly #deadline: number;
  readonly #live: boolean;
  readonly #counters: RunCounters;
  readonly #link: LinkWatch | null;
  #lastPrint: number;
  #lastPackets = 0;
  #lastBytes = 0;
  #done = false;
  /** How the run ended (valid once {@linkcode done} returned true). */
  ended: RunEnd = "count";
  /** One line saying why a run ended early ("" for count/duration). */
  reason = "";

  constructor(
    counters: RunCounters,
    count: number,
    durationS: number,
    live: boolean,
    link: LinkWatch | null = null,
  ) {
    this.#counters = counters;
    this.#link = link;
    this.#limitPackets = count > 0 ? count : Infinity;
    this.#deadline = count > 0 && durationS === 0 ? Infinity : this.start + durationS * 1000;
    this.#live = live;
    this.#lastPrint = this.start;
  }

  /**
   * The next burst's size: `max`, or fewer when the count limit leaves fewer after `packets`.
   * Always a small integer: a double returned by a call V8 did not inline (`Infinity - packets`
   * without a count) is boxed, an allocation per burst.
   */
  burstSize(packets: number, max: number): number {
    const left = this.#limitPackets - packets;
    return left < max ? left | 0 : max;
  }

  /**
   * True when the run should end: `packets` (the count the limit applies to) reached the limit,
   * or {@linkcode tick} or {@linkcode stop} ended it. Per burst; reads no clock.
   */
  done(packets: number): boolean {
    if (this.#done) return true;
    if (packets >= this.#limitPackets) {
      this.ended = "count";
      return (this.#done = true);
    }
    return false;
  }

  /**
   * Once per loop slice: prints the per-second line when a second has passed, and ends the run
   * at its duration or when the link went down.
   */
  tick(): void {
    if (this.#done) return;
    const now = performance.now();
    if (now - this.#lastPrint >= 1000) this.#print(now);
    if (this.#link !== null && !this.#link.connected) {
      this.stop("link down", `the peer is gone: ${this.#link.downReason}`);
    } else if (now >= this.#deadline) {
      this.ended = "duration";
      this.#done = true;
    }
  }

  /** Ends the run for `why` (a signal, the link, an error), with a one-line `reason`. */
  stop(why: RunEnd, reason: string): void {
    if (this.#done) return;
    this.#done = true;
    this.ended = why;
    this.reason = reason;
  }

  #print(now: number): void {
    const c = this.#counters;
    const packets = c.txPackets + c.rxPackets;
    const bytes = c.txBytes + c.rxBytes;
    const s = (now - this.#lastPrint) / 1000;
    if (this.#live) {
      const mpps = (packets - this.#lastPackets) / s / 1e6;
      const gbps = ((bytes - this.#lastBytes) * 8) / s / 1e9;
      console.error(
        `${((now - this.start) / 1000).toFixed(0).padStart(4)} s  ${mpps.toFixed(2)} Mpps  ` +
          `${gbps.toFixed(2)} Gbps  tx ${c.txPackets}  rx ${c.rxPackets}`,
      );
    }
    this.#lastPrint = now;
    this.#lastPackets = packets;
    this.#lastBytes = bytes;
  }

  /** Prints the final report: one JSON line with `json`, else a summary line. */
  report(json: boolean, extra: Record<string, unknown> = {}): Record<string, unknown> {
    const c = this.#counters;
    const seconds = (performance.now() - this.start) / 1000;
    const packets = c.txPackets + c.rxPackets;
    const result = {
      tx_packets: c.txPackets,
      rx_packets: c.rxPackets,
      tx_bytes: c.txBytes,
      rx_bytes: c.rxBytes,
      seconds: Number(seconds.toFixed(6)),
      mpps: Number((packets / seconds / 1e6).toFixed(3)),
      gbps: Number((((c.txBytes + c.rxBytes) * 8) / seconds / 1e9).toFixed(3)),
      ...extra,
    };
    if (json) console.log(JSON.stringify(result));
    else {
      console.log(
        `total: tx ${c.txPackets} packets (${c.txBytes} bytes), rx ${c.rxPackets} packets ` +
          `(${c.rxBytes} bytes) in ${
            seconds.toFixed(3)
          } s: ${result.mpps} Mpps, ${result.gbps} Gbps`,
      );
    }
    return result;
  }
}

/**
 * Closes `port` (which never throws because of the peer) and returns what the close could not
 * tell the peer, one line each (empty when it all went through).
 */
export function closePort(port: VirtioNet): string[] {
  return port.close();
}

/** Help lines of the ring and report options of {@linkcode commonOptions}. */
export const PORT_OPTIONS_HELP = `  --split            split rings instead of packed rings
  --burst N          frames per burst (default 32)
  --queue-size N     descriptors per ring (default 256)
  --hugepages MODE   auto | yes | no (default auto)
  --json             print one final JSON line
  --quiet            no per-second lines on stderr
  --server           listen on --path; the backend connects (testpmd: net_vhost0,iface=SOCK,
                     client=1) and may reconnect after a restart
  --tap NAME         with --path /dev/vhost-net: the tap interface to attach

Exit status: 0 done, 1 peer failure, 2 bad option, 130 SIGINT, 143 SIGTERM.`;

/**
 * What the example programs share: option parsing, the run limit (`--count` / `--duration`),
 * live per-second rates on stderr and the final report (one JSON line with `--json`).
 *
 * @module
 */

import { VirtioNet } from "../mod.ts";
import type { DeviceThread } from "../lib/device/device_thread.ts";

/** Options every example takes, on top of its own. */
export const commonOptions = {
  path: { type: "string" },
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
 * Opens a {@linkcode VirtioNet} port on `--path`, else on the built-in `device`, with the ring
 * options (`--split`, `--queue-size`, `--hugepages`); stops `device` when the open fails.
 */
export async function openPort(
  opts: { path?: string; split: boolean; "queue-size": string; hugepages: string },
  device: DeviceThread | null,
  queuePairs = 1,
  bufferSize?: number,
): Promise<VirtioNet> {
  try {
    return VirtioNet.open({
      path: opts.path ?? device!.path,
      packed: !opts.split,
      queueSize: intOption("queue-size", opts["queue-size"], 256),
      hugepages: hugepagesOption(opts.hugepages),
      // More than one pair: one Worker per pair (multi_queue.ts).
      queuePairs,
      detachQueues: queuePairs > 1,
      bufferSize,
    });
  } catch (e) {
    await device?.stop(); // the worker would keep the process alive; stop() removes its temp dir
    throw e;
  }
}

/** Counters a run reports. */
export interface RunCounters {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
}

/**
 * Decides when a run ends and prints live rates once a second. `tick()` is cheap enough to call
 * once per burst: it reads the clock only every 256 calls.
 */
export class RunMeter {
  readonly start = performance.now();
  readonly #limitPackets: number;
  readonly #deadline: number;
  readonly #live: boolean;
  readonly #counters: RunCounters;
  #calls = 0;
  #lastPrint: number;
  #lastPackets = 0;
  #lastBytes = 0;
  #done = false;

  constructor(counters: RunCounters, count: number, durationS: number, live: boolean) {
    this.#counters = counters;
    this.#limitPackets = count > 0 ? count : Infinity;
    this.#deadline = count > 0 && durationS === 0 ? Infinity : this.start + durationS * 1000;
    this.#live = live;
    this.#lastPrint = this.start;
  }

  /** Packets still allowed before the count limit. */
  remaining(packets: number): number {
    return this.#limitPackets - packets;
  }

  /** True when the run should end; `packets` is the count the limit applies to. */
  done(packets: number): boolean {
    if (this.#done || packets >= this.#limitPackets) return (this.#done = true);
    if ((++this.#calls & 255) !== 0) return false;
    const now = performance.now();
    if (now - this.#lastPrint >= 1000) this.#print(now);
    if (now >= this.#deadline) this.#done = true;
    return this.#done;
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

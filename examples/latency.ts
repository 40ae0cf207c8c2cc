/**
 * pktgen's latency stream: probe frames interleaved with the load carry a marker, a sequence
 * number and their send time in the payload; when they come back (testpmd `io`/`macswap`, the
 * built-in device's echo) the receive time minus the send time goes into an HDR histogram, and
 * the sequence numbers count what was lost, reordered or duplicated.
 *
 * ```
 *   payload: | PROBE_MAGIC (4) | sequence (4) | send time ns, high (4) | low (4) | 0 ...
 *   send loop ──stamp()──► frame ──peer reflects──► rxBurst ──receive()──► histogram, seen[]
 * ```
 *
 * Times are `performance.now()` read once per burst on each side, as nanoseconds since the run
 * started; load frames carry marker 0.
 *
 * @module
 */

import * as hdr from "hdr-histogram-js";
import { read16, read32 } from "../lib/packet/checksum.ts";
import type { PacketTemplate } from "../lib/packet/template.ts";
import type { LoopClock } from "./rate.ts";

/** Marks a probe frame ("vdlt"). */
export const PROBE_MAGIC = 0x76646c74;
/**
 * Whether the payload at `bytes[at]` starts with {@linkcode PROBE_MAGIC}. Compared as 16-bit
 * words: `read32` returns 2^30 or more here, a boxed heap number when the call is not inlined.
 */
export function isProbe(bytes: Uint8Array, at: number): boolean {
  return read16(bytes, at) === PROBE_MAGIC >>> 16 &&
    read16(bytes, at + 2) === (PROBE_MAGIC & 0xffff);
}

/** Payload bytes a probe needs. */
export const PROBE_BYTES = 16;
/** Largest latency recorded: a minute, in ns. */
const MAX_NS = 60e9;

/** Latency figures, microseconds. */
export interface LatencySummary {
  /** Probes sent. */
  sent: number;
  /** Probes received (duplicates not counted). */
  received: number;
  /** Probes never received. */
  lost: number;
  /** Probes that arrived after a later one. */
  reordered: number;
  /** Probes received more than once. */
  duplicated: number;
  /** Probes received that were sent during the warm-up (counted, not measured). */
  warmup: number;
  /** Percentiles in µs: min, p50, p90, p99, p99.9, max, mean. */
  latency_us: Record<string, number>;
}

/**
 * Counts distinct, reordered and duplicated sequence numbers, tracked modulo `window` (a power
 * of two): the receive side of any numbered stream. Allocates nothing per number.
 *
 * @example
 * ```ts
 * import { SequenceTracker } from "./latency.ts";
 * const t = new SequenceTracker(1024);
 * for (const seq of [0, 2, 1, 2]) t.record(seq);
 * console.assert(t.received === 3 && t.reordered === 1 && t.duplicated === 1);
 * ```
 */
export class SequenceTracker {
  /** Distinct numbers seen. */
  received = 0;
  /** Numbers that arrived after a higher one. */
  reordered = 0;
  /** Numbers seen again. */
  duplicated = 0;
  /** Highest number seen, -1 before the first. */
  highest = -1;
  readonly #seen: Uint8Array;
  readonly #mask: number;

  /** Tracks the last `window` numbers (a power of two). */
  constructor(window: number) {
    this.#seen = new Uint8Array(window);
    this.#mask = window - 1;
  }

  /** Forgets `seq` (its slot is reused by a new number). */
  clear(seq: number): void {
    this.#seen[seq & this.#mask] = 0;
  }

  /** Records `seq`; returns false for a duplicate. */
  record(seq: number): boolean {
    const slot = seq & this.#mask;
    if (this.#seen[slot] !== 0) {
      this.duplicated++;
      return false;
    }
    this.#seen[slot] = 1;
    this.received++;
    if (seq < this.highest) this.reordered++;
    else this.highest = seq;
    return true;
  }
}

/**
 * Stamps probes into outgoing frames and measures those that come back.
 *
 * @example
 * ```ts ignore
 * const clock = new LoopClock(); // the loop sets clock.ms[0] once per burst
 * const probes = new LatencyProbes(template, 1 << 20, performance.now(), clock);
 * probes.stamp(bytes, offset);          // a probe sent at the clock's time, in the send loop
 * probes.unmark(bytes, offset);         // a load frame
 * probes.receive(bytes, offset, length); // in the receive loop, received at the clock's time
 * ```
 */
export class LatencyProbes {
  /** Probes stamped so far (the next sequence number). */
  sent = 0;
  /** Received sequence numbers. */
  readonly sequence: SequenceTracker;
  /** Probe frames received whose sequence number was never sent. */
  bogus = 0;
  /** Probes received that were sent during the warm-up (not in the histogram). */
  warmup = 0;
  /** The histogram, in nanoseconds. */
  readonly histogram: hdr.Histogram;
  readonly #template: PacketTemplate;
  readonly #t0: number;
  readonly #clock: Float64Array;
  readonly #warmupNs: number;

  /**
   * Probes of `template`'s frames; sequence numbers are tracked modulo `window` (2^k). Send and
   * receive times are `clock`'s (a typed array, not an argument: see {@linkcode LoopClock}).
   * Probes sent in the first `warmupMs` after `t0Ms` are tracked (lost, reordered) but not
   * measured: JIT tier-up and first-touch page faults are start-up, not the path's latency.
   */
  constructor(
    template: PacketTemplate,
    window: number,
    t0Ms: number,
    clock: LoopClock,
    warmupMs = 0,
  ) {
    this.#template = template;
    this.#clock = clock.ms;
    this.sequence = new SequenceTracker(window);
    this.#t0 = t0Ms;
    this.#warmupNs = warmupMs * 1e6;
    this.histogram = hdr.build({
      lowestDiscernibleValue: 1,
      highestTrackableValue: MAX_NS,
      numberOfSignificantValueDigits: 3,
    });
  }

  /** Makes the frame at `bytes[offset]` the next probe, sent at the clock's time. */
  stamp(bytes: Uint8Array, offset: number): void {
    const t = this.#template, at = t.payload;
    const ns = Math.round((this.#clock[0] - this.#t0) * 1e6);
    const seq = this.sent++;
    this.sequence.clear(seq);
    // 16-bit words, not 32-bit values, to the calls (see PacketTemplate.patch32Words).
    const low = ns % 4294967296;
    t.patch32Words(bytes, offset, at, PROBE_MAGIC >>> 16, PROBE_MAGIC & 0xffff);
    t.patch32Words(bytes, offset, at + 4, seq >>> 16, seq & 0xffff);
    const high = Math.floor(ns / 4294967296);
    t.patch32Words(bytes, offset, at + 8, high >>> 16, high & 0xffff);
    t.patch32Words(bytes, offset, at + 12, Math.floor(low / 65536), low & 0xffff);
  }

  /** Takes back the last `n` {@linkcode stamp}s: those frames were not sent after all. */
  cancel(n: number): void {
    this.sent -= n;
  }

  /** Makes the frame at `bytes[offset]` a load frame (marker 0). */
  unmark(bytes: Uint8Array, offset: number): void {
    this.#template.patch32(bytes, offset, this.#template.payload, 0);
  }

  /**
   * Measures the frame at `bytes[offset]`, received at the clock's time, if it is a probe;
   * returns true when it was.
   */
  receive(bytes: Uint8Array, offset: number, length: number): boolean {
    const at = offset + this.#template.payload;
    if (length < this.#template.payload + PROBE_BYTES || !isProbe(bytes, at)) {
      return false;
    }
    const seq = read32(bytes, at + 4);
    if (seq >= this.sent) {
      this.bogus++;
      return true;
    }
    if (!this.sequence.record(seq)) return true;
    const sentNs = read32(bytes, at + 8) * 4294967296 + read16(bytes, at + 12) * 65536 +
      read16(bytes, at + 14);
    if (sentNs < this.#warmupNs) {
      this.warmup++;
      return true;
    }
    const latency = Math.round((this.#clock[0] - this.#t0) * 1e6) - sentNs;
    // Clamped to the histogram's range (a minute): a stamp that old is a broken peer's.
    this.histogram.recordValue(latency > 0 ? (latency < MAX_NS ? latency : MAX_NS) : 0);
    return true;
  }

  /** The figures for the report. */
  summary(): LatencySummary {
    const h = this.histogram;
    const us = (ns: number) => Number((ns / 1000).toFixed(3));
    const has = h.totalCount > 0;
    const pct = (p: number) => (has ? us(h.getValueAtPercentile(p)) : 0);
    const q = this.sequence;
    return {
      sent: this.sent,
      received: q.received,
      lost: this.sent - q.received,
      reordered: q.reordered,
      duplicated: q.duplicated,
      warmup: this.warmup,
      latency_us: {
        min: has ? us(h.minNonZeroValue === Number.MAX_SAFE_INTEGER ? 0 : h.minNonZeroValue) : 0,
        p50: pct(50),
        p90: pct(90),
        p99: pct(99),
        "p99.9": pct(99.9),
        max: has ? us(h.maxValue) : 0,
        mean: has ? us(h.mean) : 0,
        count: h.totalCount,
      },
    };
  }
}

/**
 * The histogram as CSV: one row per recorded bucket (`latency_us,count,cumulative,percentile`),
 * so the counts add up to the samples recorded.
 */
export function histogramCsv(h: hdr.Histogram): string {
  const rows = ["latency_us,count,cumulative,percentile"];
  let cumulative = 0;
  for (const [ns, count] of buckets(h)) {
    cumulative += count;
    rows.push(
      `${(ns / 1000).toFixed(3)},${count},${cumulative},` +
        `${(100 * cumulative / h.totalCount).toFixed(4)}`,
    );
  }
  return rows.join("\n") + "\n";
}

/** The counting buckets of the JS histogram that `hdr.build()` returns. */
interface Buckets {
  countsArrayLength: number;
  getCountAtIndex(index: number): number;
  valueFromIndex(index: number): number;
}

/** [value ns, count] of each non-empty bucket: the counts add up to `totalCount`. */
function buckets(h: hdr.Histogram): [number, number][] {
  const b = h as unknown as Buckets;
  const out: [number, number][] = [];
  for (let i = 0; i < b.countsArrayLength; i++) {
    const count = b.getCountAtIndex(i);
    if (count > 0) out.push([b.valueFromIndex(i), count]);
  }
  return out;
}

/**
 * An SVG picture (any browser shows it) of a run: the latency distribution (percentile curve, µs
 * against 1/(1-p) on a log scale) and the per-second tx/rx rates.
 */
export function plotSvg(
  title: string,
  h: hdr.Histogram | null,
  perSecond: { tx_mpps: number; rx_mpps: number }[],
): string {
  const W = 900, H = 300, pad = 50;
  const esc = (s: string) => s.replace(/[<>&]/g, (c) => `&#${c.charCodeAt(0)};`);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${2 * H + 40}" ` +
    `font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${pad}" y="20" font-size="14">${esc(title)}</text>`,
  ];
  const axes = (y0: number, xLabel: string, yLabel: string) => {
    parts.push(
      `<line x1="${pad}" y1="${y0 + H - pad}" x2="${W - 10}" y2="${y0 + H - pad}" stroke="black"/>`,
      `<line x1="${pad}" y1="${y0 + 20}" x2="${pad}" y2="${y0 + H - pad}" stroke="black"/>`,
      `<text x="${W / 2}" y="${y0 + H - 15}">${esc(xLabel)}</text>`,
      `<text x="5" y="${y0 + 35}">${esc(yLabel)}</text>`,
    );
  };
  const line = (pts: [number, number][], color: string) => {
    if (pts.length === 0) return;
    parts.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2" points="${
        pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ")
      }"/>`,
    );
  };
  // Latency: percentile (x, log of 1/(1-p) up to 99.999) vs µs.
  const y0 = 30;
  axes(y0, "percentile", "latency µs");
  if (h !== null && h.totalCount > 0) {
    const ps = [0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100];
    const xs = ps.map((p) => Math.log10(1 / (1 - Math.min(p, 99.999) / 100)));
    const vals = ps.map((p) => h.getValueAtPercentile(p) / 1000);
    const maxV = Math.max(...vals) || 1, maxX = xs[xs.length - 1];
    const px = (x: number) => pad + (x / maxX) * (W - pad - 20);
    const py = (v: number) => y0 + H - pad - (v / maxV) * (H - pad - 30);
    line(xs.map((x, i) => [px(x), py(vals[i])]), "#c0392b");
    ps.forEach((p, i) => {
      if (p === 0 || p === 50 || p === 90 || p === 99 || p === 99.9 || p === 100) {
        parts.push(
          `<text x="${px(xs[i]) - 10}" y="${y0 + H - pad + 14}">${p === 100 ? "max" : p}</text>`,
          `<text x="${px(xs[i]) + 3}" y="${py(vals[i]) - 4}">${vals[i].toFixed(1)}</text>`,
        );
      }
    });
  } else {
    parts.push(`<text x="${W / 2}" y="${y0 + H / 2}">no latency samples</text>`);
  }
  // Rates: Mpps per second.
  const y1 = y0 + H + 10;
  axes(y1, "seconds", "Mpps (tx red, rx blue)");
  if (perSecond.length > 0) {
    const maxR = Math.max(...perSecond.map((s) => Math.max(s.tx_mpps, s.rx_mpps))) || 1;
    const px = (i: number) => pad + ((i + 1) / perSecond.length) * (W - pad - 20);
    const py = (r: number) => y1 + H - pad - (r / maxR) * (H - pad - 30);
    line(perSecond.map((s, i) => [px(i), py(s.tx_mpps)]), "#c0392b");
    line(perSecond.map((s, i) => [px(i), py(s.rx_mpps)]), "#2980b9");
    parts.push(`<text x="${pad + 5}" y="${py(maxR) + 12}">${maxR.toFixed(3)}</text>`);
  }
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

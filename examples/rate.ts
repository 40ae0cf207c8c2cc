/**
 * Transmit rates and their pacing: `--rate` as packets per second (`2000000`, `2M`), bits per
 * second on the wire (`5Gbps`: layer 1, each frame counted as its bytes + 4 FCS + 8 preamble/SFD
 * + 12 inter-frame gap, IEEE 802.3 §4.4.2) or a percentage of `--link`; and a pacer that tells the
 * send loop, from one clock read per burst, how many frames are due.
 *
 * ```
 *   "5Gbps" | "2M" | "50%" ──parseRate──► packets/s ──Pacer.due(now)──► frames to send now
 * ```
 *
 * Pacing follows a clock (`performance.now()`, read once per loop turn, like a TSC): the k-th
 * frame is due at start + k/rate (CBR) or at the sum of k exponential gaps (Poisson). No sleep
 * per packet, and a sender that fell behind catches up in bursts, so the average holds.
 *
 * The pacer reads that time from a {@linkcode LoopClock}, not from an argument: a double passed
 * to a call V8 did not inline is boxed (a 16-byte heap number per burst), and whether TurboFan
 * inlines a call depends on its inlining budget and the order it meets the call sites, which vary
 * from run to run.
 *
 * @module
 */

/** Bytes a frame occupies on the wire beyond its own: FCS 4 + preamble/SFD 8 + IFG 12. */
export const L1_OVERHEAD = 24;

const SUFFIX: Record<string, number> = { "": 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6, g: 1e9, G: 1e9 };

/**
 * Parses a link speed such as `10G`, `10Gbps`, `25000Mbps` into bits per second.
 *
 * @example
 * ```ts
 * import { parseBitRate } from "./rate.ts";
 * console.assert(parseBitRate("10G") === 10e9 && parseBitRate("500Mbps") === 500e6);
 * ```
 */
export function parseBitRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:bps|bit\/s|b\/s)?$/.exec(text.trim());
  if (m === null) throw new TypeError(`bad bit rate "${text}" (expected e.g. 10G or 5Gbps)`);
  return Number(m[1]) * SUFFIX[m[2]];
}

/**
 * Parses `--rate` into frames per second: `2000000` / `2M` / `100k` (packets/s, optional
 * `pps`), `5Gbps` / `800Mbps` (L1 bits/s) or `40%` of `linkBps`; `meanFrame` is the mean frame
 * size without FCS. Returns `Infinity` for `max`.
 *
 * @example
 * ```ts
 * import { parseRate } from "./rate.ts";
 * console.assert(parseRate("2M", 10e9, 64) === 2e6);
 * console.assert(Math.round(parseRate("100%", 10e9, 60)) === 14880952); // 10G line rate, 64 B
 * ```
 */
export function parseRate(text: string, linkBps: number, meanFrame: number): number {
  const t = text.trim();
  if (t === "max") return Infinity;
  const bitsPerFrame = (meanFrame + L1_OVERHEAD) * 8;
  let m = /^(\d+(?:\.\d+)?)%$/.exec(t);
  if (m !== null) return (Number(m[1]) / 100) * linkBps / bitsPerFrame;
  m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:pps)?$/.exec(t);
  if (m !== null) return Number(m[1]) * SUFFIX[m[2]];
  m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:bps|bit\/s)$/.exec(t);
  if (m !== null) return Number(m[1]) * SUFFIX[m[2]] / bitsPerFrame;
  throw new TypeError(
    `bad rate "${text}" (expected packets/s like 2000000 or 2M, bits/s like 5Gbps, or 40%)`,
  );
}

/**
 * The time of a busy loop's current burst, in ms (`performance.now()`), in a `Float64Array`
 * that the loop sets once per burst and what it calls reads: a double that crosses a call V8
 * did not inline (an argument, a return value) is boxed, an allocation per call; one held in a
 * typed array never is.
 *
 * @example
 * ```ts
 * import { LoopClock } from "./rate.ts";
 * const clock = new LoopClock();
 * clock.read();
 * console.assert(clock.ms[0] > 0);
 * ```
 */
export class LoopClock {
  /** `ms[0]`: the time of the current burst, in ms. */
  readonly ms: Float64Array = new Float64Array(1);

  /** Sets the time to `performance.now()`. */
  read(): void {
    this.ms[0] = performance.now();
  }
}

/** Inter-departure rule of a {@linkcode Pacer}. */
export type Spacing = "cbr" | "poisson";

/**
 * Decides how many frames are due from the clock alone. `due(max)` returns how many of at most
 * `max` may go at the clock's time; `sent(n)` records what the ring took. Allocates nothing.
 *
 * @example
 * ```ts
 * import { LoopClock, Pacer } from "./rate.ts";
 * const clock = new LoopClock();
 * const p = new Pacer(1000, "cbr", 0, clock); // 1000 frames/s from t = 0 ms
 * clock.ms[0] = 10;
 * console.assert(p.due(32) === 10);
 * ```
 */
export class Pacer {
  readonly #perMs: number;
  readonly #poisson: boolean;
  readonly #clock: Float64Array;
  #start: number;
  #sent = 0;
  #nextAt: number;
  #queued = 0;
  #state = 0x2545f491;

  /** Paces `pps` frames/s (Infinity: no pacing) starting at `startMs`, by `clock`'s time. */
  constructor(pps: number, spacing: Spacing, startMs: number, clock: LoopClock) {
    this.#perMs = pps / 1000;
    this.#clock = clock.ms;
    this.#poisson = spacing === "poisson";
    this.#start = startMs;
    this.#nextAt = startMs;
  }

  /** Restarts the schedule at `startMs` (after setup, when sending begins). */
  restart(startMs: number): void {
    this.#start = startMs;
    this.#nextAt = startMs;
    this.#sent = 0;
    this.#queued = 0;
  }

  /** Frames due at the clock's time, at most `max`. */
  due(max: number): number {
    if (this.#perMs === Infinity) return max;
    const nowMs = this.#clock[0];
    if (!this.#poisson) {
      const due = Math.floor((nowMs - this.#start) * this.#perMs) - this.#sent;
      return due < max ? (due > 0 ? due : 0) : max;
    }
    // Poisson: exponential gaps with mean 1/rate (inverse transform of a uniform draw).
    let n = this.#queued;
    while (n < max && this.#nextAt <= nowMs) {
      let x = this.#state;
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      this.#state = x;
      const u = ((x >>> 0) + 1) / 4294967297; // in (0, 1)
      this.#nextAt += -Math.log(u) / this.#perMs;
      n++;
    }
    this.#queued = n;
    return n;
  }

  /** Records that `n` of the due frames were sent. */
  sent(n: number): void {
    this.#sent += n;
    this.#queued = this.#queued > n ? this.#queued - n : 0;
  }
}

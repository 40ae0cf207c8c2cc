/**
 * The once-a-second status of a run on stderr: on a terminal one line rewritten in place with a
 * progress bar when the run's length is known; when piped, one plain line per second.
 *
 * ```
 *     3 s  tx 1.000 Mpps 0.51 Gbps  rx 1.000 Mpps  drops 0  errors 0  [######--------]  30%
 * ```
 *
 * @module
 */

/** Counters the line reads. */
export interface LiveCounters {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
}

/** One second of a run, as the report and the plot keep it. */
export interface SecondSample {
  /** Seconds since the start, at the end of this interval. */
  t: number;
  /** Transmit rate over the interval. */
  tx_mpps: number;
  /** Receive rate over the interval. */
  rx_mpps: number;
  /** Transmitted Gbit/s (frame bytes, no FCS). */
  tx_gbps: number;
}

/**
 * Prints the live line and keeps the per-second samples.
 *
 * @example
 * ```ts ignore
 * const live = new LiveLine(port.stats, true, 0, 10);
 * live.tick(performance.now(), drops, errors); // once per loop slice
 * live.finish();
 * ```
 */
export class LiveLine {
  /** Per-second samples so far. */
  readonly seconds: SecondSample[] = [];
  readonly #c: LiveCounters;
  readonly #print: boolean;
  readonly #terminal: boolean;
  readonly #count: number;
  readonly #durationS: number;
  #start = 0;
  #last = 0;
  #lastTx = 0;
  #lastRx = 0;
  #lastBytes = 0;
  #drawn = false;

  /** `count` / `durationS` (0: unknown) size the progress bar. */
  constructor(counters: LiveCounters, print: boolean, count: number, durationS: number) {
    this.#c = counters;
    this.#print = print;
    this.#terminal = Deno.stderr.isTerminal();
    this.#count = count;
    this.#durationS = durationS;
  }

  /** Starts the clock. */
  start(nowMs: number): void {
    this.#start = this.#last = nowMs;
  }

  /** Prints (and samples) when a second has passed since the last line. */
  tick(nowMs: number, drops: number, errors: number): void {
    if (nowMs - this.#last < 1000) return;
    const c = this.#c, s = (nowMs - this.#last) / 1000;
    const sample: SecondSample = {
      t: Number(((nowMs - this.#start) / 1000).toFixed(3)),
      tx_mpps: Number(((c.txPackets - this.#lastTx) / s / 1e6).toFixed(4)),
      rx_mpps: Number(((c.rxPackets - this.#lastRx) / s / 1e6).toFixed(4)),
      tx_gbps: Number((((c.txBytes - this.#lastBytes) * 8) / s / 1e9).toFixed(4)),
    };
    this.seconds.push(sample);
    this.#last = nowMs;
    this.#lastTx = c.txPackets;
    this.#lastRx = c.rxPackets;
    this.#lastBytes = c.txBytes;
    if (!this.#print) return;
    let line = `${sample.t.toFixed(0).padStart(5)} s  tx ${sample.tx_mpps.toFixed(3)} Mpps ` +
      `${sample.tx_gbps.toFixed(2)} Gbps  rx ${sample.rx_mpps.toFixed(3)} Mpps  ` +
      `drops ${drops}  errors ${errors}`;
    const done = this.#count > 0
      ? c.txPackets / this.#count
      : this.#durationS > 0
      ? (nowMs - this.#start) / 1000 / this.#durationS
      : -1;
    if (this.#terminal && done >= 0) {
      const width = 20, fill = Math.min(width, Math.round(done * width));
      line += `  [${"#".repeat(fill)}${"-".repeat(width - fill)}] ${
        Math.min(100, done * 100).toFixed(0).padStart(3)
      }%`;
    }
    if (this.#terminal) {
      Deno.stderr.writeSync(new TextEncoder().encode(`\r\x1b[K${line}`));
      this.#drawn = true;
    } else console.error(line);
  }

  /** Ends the in-place line on a terminal. */
  finish(): void {
    if (this.#drawn) Deno.stderr.writeSync(new TextEncoder().encode("\n"));
    this.#drawn = false;
  }
}

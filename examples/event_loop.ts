/**
 * What lets a busy-polling example notice Ctrl-C: signal listeners run only when the event loop
 * gets a turn, so the loop works in slices of {@linkcode TURN_MS} and yields one turn between
 * them: a message to itself (~50 µs), and every 500 ms a timer instead, since a loop that only
 * ever sees messages never waits on I/O, which is where a signal is picked up.
 *
 * ```
 *   busy slice (100 ms) ──await turn()──► SIGINT / SIGTERM listeners set `signal` ──► next slice
 * ```
 *
 * Each turn allocates a promise and an event (a few hundred bytes): ten a second keep a steady
 * run free of collections for minutes.
 *
 * @module
 */

import { type RunMeter, TURN_MS } from "./cli.ts";

/** Exit status of a run stopped by a signal: 128 + its number (SIGINT 2, SIGTERM 15). */
export const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

/**
 * Ends an example after its summary: exit 1 with one line `program: failure` when the run
 * failed, 128 + the signal's number when one stopped it; otherwise returns. `untold` (what
 * closing the port could not tell the peer) becomes the failure when the run itself went well;
 * after a failure it only restates it (the peer is gone), so it is not printed.
 */
export function exitForRun(
  program: string,
  failure: string | null,
  signal: string,
  untold: readonly string[] = [],
): void {
  if (failure === null && untold.length > 0) failure = `close: ${untold.join("; ")}`;
  if (failure !== null) {
    console.error(`${program}: ${failure}`);
    Deno.exit(1);
  }
  if (signal !== "") {
    console.error(`${program}: ${signal === "SIGINT" ? "interrupted" : "terminated"} (${signal})`);
    Deno.exit(SIGNAL_EXIT[signal]);
  }
}

/**
 * Yields event-loop turns and records SIGINT / SIGTERM. `close()` removes the listeners.
 *
 * @example
 * ```ts ignore
 * const loop = new EventLoop();
 * while (loop.signal === "") { work(10); await loop.turn(); }
 * loop.close();
 * Deno.exit(SIGNAL_EXIT[loop.signal]);
 * ```
 */
export class EventLoop {
  /** The signal received (`SIGINT`, `SIGTERM`), or "". */
  signal = "";
  /**
   * `[0]`: the clock (`performance.now()`, ms) as {@linkcode run} last read it, about once a
   * millisecond: a burst that needs only a coarse time reads it here instead of the clock (a
   * clock read costs about as much as a 32-frame burst).
   */
  readonly clock = new Float64Array(1);
  readonly #channel = new MessageChannel();
  #wake: () => void = () => {};
  #lastTimerTurn = 0;
  readonly #onInt = () => this.signal = "SIGINT";
  readonly #onTerm = () => this.signal = "SIGTERM";

  constructor() {
    this.#channel.port2.onmessage = () => this.#wake();
    Deno.addSignalListener("SIGINT", this.#onInt);
    Deno.addSignalListener("SIGTERM", this.#onTerm);
  }

  /** One event-loop turn: a message to itself, or a timer every 500 ms (see the module doc). */
  turn(): Promise<void> {
    const now = performance.now();
    if (now - this.#lastTimerTurn >= 500) {
      this.#lastTimerTurn = now;
      return new Promise<void>((resolve) => setTimeout(resolve, 0));
    }
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
      this.#channel.port1.postMessage(null);
    });
  }

  /**
   * Calls `burst()` (one burst of work; true when the run is over) until it ends the run or a
   * signal arrives, in slices of `sliceMs` with one event-loop turn and `everySlice()` between
   * them. Returns "" when `burst` ended the run, else the signal's name; errors propagate.
   *
   * The clock is read about once a millisecond, not once per so many bursts: the number of
   * bursts between reads is learned from the last slice. `performance.now()` returns a double,
   * boxed (an allocation) whenever V8 did not inline the call, so the reads must not scale
   * with the poll rate (millions of empty polls a second).
   */
  async run(
    burst: () => boolean,
    everySlice?: () => void,
    sliceMs = TURN_MS,
  ): Promise<string> {
    let stride = 16; // bursts between clock reads
    for (;;) {
      const clock = this.clock;
      const end = (clock[0] = performance.now()) + sliceMs;
      let bursts = 0;
      do {
        for (let k = 0; k < stride; k++) if (burst()) return "";
        bursts += stride;
      } while ((clock[0] = performance.now()) < end);
      // About a millisecond's worth of bursts, at least one.
      stride = Math.max(1, Math.min(bursts / sliceMs, 1 << 20) | 0);
      everySlice?.();
      await this.turn();
      if (this.signal !== "") return this.signal;
    }
  }

  /** Removes the signal listeners and closes the channel. */
  close(): void {
    Deno.removeSignalListener("SIGINT", this.#onInt);
    Deno.removeSignalListener("SIGTERM", this.#onTerm);
    this.#channel.port1.close();
    this.#channel.port2.close();
  }
}

/**
 * The receive loop of sink and echo: `receive(max)` handles one burst of at most `max` frames
 * until `meter` ends the run (`--count` frames received, or `--duration`) or a signal arrives.
 * With `wait` (`--event`), a burst that finds nothing awaits `wait()` (e.g. `port.readable(100)`)
 * instead of polling again. Returns why it ended: `count`, `duration` or the signal's name;
 * errors propagate.
 */
export async function receiveUntilDone(
  loop: EventLoop,
  meter: RunMeter,
  stats: { rxPackets: number },
  count: number,
  burst: number,
  receive: (max: number) => void,
  wait?: () => Promise<unknown>,
): Promise<string> {
  let ended = "", empty = false;
  for (;;) {
    const signal = await loop.run(() => {
      empty = false;
      if (meter.done(stats.rxPackets)) {
        ended = count > 0 && stats.rxPackets >= count ? "count" : meter.ended;
        return true;
      }
      const before = stats.rxPackets;
      receive(meter.burstSize(stats.rxPackets, burst));
      empty = wait !== undefined && stats.rxPackets === before;
      return empty;
    }, () => meter.tick());
    if (signal !== "") return signal;
    if (!empty) return ended;
    await wait!(); // nothing came: sleep until frames (or its timeout), the event loop runs
    meter.tick();
    if (loop.signal !== "") return loop.signal;
  }
}

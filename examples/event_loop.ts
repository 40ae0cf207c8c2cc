/**
 * What lets a busy-polling example notice Ctrl-C: signal listeners run only when the event loop
 * gets a turn, so the loop works in short slices and yields one turn between them (a message to
 * itself, ~50 µs; a zero timeout would be clamped to 4 ms once timers nest).
 *
 * ```
 *   busy slice (10 ms) ──await turn()──► SIGINT / SIGTERM listeners set `signal` ──► next slice
 * ```
 *
 * @module
 */

/** Exit status of a run stopped by a signal: 128 + its number (SIGINT 2, SIGTERM 15). */
export const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

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
  readonly #channel = new MessageChannel();
  #wake: () => void = () => {};
  readonly #onInt = () => this.signal = "SIGINT";
  readonly #onTerm = () => this.signal = "SIGTERM";

  constructor() {
    this.#channel.port2.onmessage = () => this.#wake();
    Deno.addSignalListener("SIGINT", this.#onInt);
    Deno.addSignalListener("SIGTERM", this.#onTerm);
  }

  /** One event-loop turn. */
  turn(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
      this.#channel.port1.postMessage(null);
    });
  }

  /** Removes the signal listeners and closes the channel. */
  close(): void {
    Deno.removeSignalListener("SIGINT", this.#onInt);
    Deno.removeSignalListener("SIGTERM", this.#onTerm);
    this.#channel.port1.close();
    this.#channel.port2.close();
  }
}

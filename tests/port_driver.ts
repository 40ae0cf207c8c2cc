/**
 * Drives a {@linkcode VirtioNet} port from a test: bursts in slices with an event-loop turn
 * between them (so the harness's async I/O and timers run), every wait bounded.
 *
 * ```
 *   test ──► PortDriver.untilLink("up") / sendExactly(n) / drain() ──► txBurst / txDrain
 * ```
 *
 * @module
 */

import type { VirtioNet } from "../lib/driver/virtio_net.ts";

const turn = () => new Promise<void>((r) => setTimeout(r, 0));

/**
 * Sends pool buffers as frames of `frameLen` bytes (their contents as they are).
 *
 * @example
 * ```ts ignore
 * const d = new PortDriver(port);
 * if (await d.untilLink("up", 30_000)) await d.sendExactly(1000, 30_000);
 * ```
 */
export class PortDriver {
  readonly #port: VirtioNet;
  readonly #bufs = new Uint32Array(32);
  readonly #lens: Uint32Array;

  constructor(port: VirtioNet, frameLen = 60) {
    this.#port = port;
    this.#lens = new Uint32Array(32).fill(frameLen);
  }

  /** One txBurst of up to `limit` (≤ 32) frames; returns how many went out. 0 sends nothing. */
  send(limit: number): number {
    const { pool } = this.#port;
    const n = pool.alloc(this.#bufs, 0, Math.min(32, limit));
    const sent = this.#port.txBurst(this.#bufs, this.#lens, n);
    pool.free(this.#bufs, sent, n - sent);
    return sent;
  }

  /**
   * Bursts of nothing (they drive the link check, and a reconnect while down) until the link is
   * `state` or `ms` pass; true when it is.
   */
  async untilLink(state: "up" | "down", ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (this.#port.link !== state && Date.now() < deadline) {
      for (let i = 0; i < 1000; i++) this.send(0);
      await turn();
    }
    return this.#port.link === state;
  }

  /** Sends exactly `n` frames unless `ms` pass first; returns how many are left unsent. */
  async sendExactly(n: number, ms: number): Promise<number> {
    let left = n;
    const deadline = Date.now() + ms;
    while (left > 0 && Date.now() < deadline) {
      for (let i = 0; i < 100 && left > 0; i++) left -= this.send(left);
      await turn();
    }
    return left;
  }

  /** Waits until the device used every frame sent, or `ms` pass; returns the number in flight. */
  async drain(ms: number): Promise<number> {
    let inFlight = this.#port.txDrain(0);
    const deadline = Date.now() + ms;
    while (inFlight > 0 && Date.now() < deadline) {
      inFlight = this.#port.txDrain(10);
      await turn();
    }
    return inFlight;
  }
}

/**
 * Worker module of {@linkcode QueueWorkers}: drives one queue pair of a port opened in the main
 * thread, busy-polling its own core.
 *
 * ```
 *   {handle, job, control} ──► QueuePair.attach ──► {type:"attached"}
 *   tx:   txBurst ──► transmitq 2i+1        (count frames, or until STOP)
 *   rx:   rxBurst ◄── receiveq 2i           (until STOP, then until the ring is empty)
 *   echo: txBurst ──► device ──► rxBurst    (count frames back, each checked)
 *   ──► {type:"done", result}
 * ```
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { type QueueHandle, QueuePair } from "../lib/driver/queue_pair.ts";
import { UDP_HEADERS, writeUdpFrame } from "../lib/packet/udp_frame.ts";
import type { QueueJob, QueueResult, QueueWorkerReply, QueueWorkerStart } from "./multi_queue.ts";

/** No progress for this long ends a run (the peer stopped taking or giving). */
const STALL_MS = 5000;

function post(reply: QueueWorkerReply): void {
  self.postMessage(reply);
}

/** Receives bursts and counts them; checks length and tag when `size` ≥ 0 (echo). */
class Receiver {
  received = 0;
  rxBytes = 0;
  badFrames = 0;
  firstBad = "";
  readonly #pair: QueuePair;
  readonly #bufs: Uint32Array;
  readonly #lens: Uint32Array;
  readonly #size: number;
  readonly #tag: number;

  constructor(pair: QueuePair, burst: number, size: number, tag: number) {
    this.#pair = pair;
    this.#bufs = new Uint32Array(burst);
    this.#lens = new Uint32Array(burst);
    this.#size = size;
    this.#tag = tag;
  }

  /** One rxBurst; returns the frames received. */
  burst(): number {
    const pool = this.#pair.pool, bufs = this.#bufs, lens = this.#lens;
    const n = this.#pair.rxBurst(bufs, lens, bufs.length);
    for (let i = 0; i < n; i++) {
      const len = lens[i];
      this.rxBytes += len;
      if (this.#size < 0) continue;
      const got = pool.bytes[pool.dataOffset(bufs[i]) + UDP_HEADERS];
      if ((len !== this.#size || got !== this.#tag) && this.badFrames++ === 0) {
        this.firstBad = `frame ${this.received + i}: ${len} B, tag ${got}`;
      }
    }
    pool.free(bufs, 0, n);
    this.received += n;
    return n;
  }
}

function run(pair: QueuePair, h: QueueHandle, job: QueueJob, control: Int32Array): QueueResult {
  const { pool } = pair;
  const tag = pair.index & 0xff;
  const srcMac = Uint8Array.from(job.srcMac);
  const size = job.size;
  // Each frame carries the pair number in its first payload byte, so the receiver can tell
  // which queue it came from. Only this pair's share: the other buffers are other Workers'.
  for (let b = h.firstBuffer; b < h.firstBuffer + h.buffers; b++) {
    writeUdpFrame(pool.bytes, pool.dataOffset(b), size, { srcMac });
    pool.bytes[pool.dataOffset(b) + UDP_HEADERS] = tag;
  }
  const burst = job.burst;
  const bufs = new Uint32Array(burst), lens = new Uint32Array(burst).fill(size);
  const limit = job.count > 0 ? job.count : Infinity;
  const window = pair.queueSize - 2 * burst; // echo: never more in flight than receive buffers
  const rx = new Receiver(pair, burst, job.mode === "echo" ? size : -1, tag);
  let sent = 0, loops = 0, progress = performance.now();
  const t0 = progress;
  for (;;) {
    let moved = 0;
    if (job.mode !== "rx" && sent < limit) {
      let want = Math.min(burst, limit - sent);
      if (job.mode === "echo") want = Math.min(want, window - (sent - rx.received));
      if (want > 0) {
        const k = pool.alloc(bufs, 0, want);
        const s = pair.txBurst(bufs, lens, k);
        if (s < k) pool.free(bufs, s, k - s);
        sent += s;
        moved += s;
      }
    }
    if (job.mode !== "tx") moved += rx.burst();
    const now = (++loops & 63) === 0 || moved === 0 ? performance.now() : 0;
    if (moved > 0) progress = now || progress;
    if (job.mode === "tx" && sent >= limit) break;
    if (job.mode === "echo" && rx.received >= limit) break;
    if ((loops & 63) === 0 && Atomics.load(control, 0) !== 0) break;
    if (moved === 0 && now - progress > STALL_MS && job.mode !== "rx") break;
  }
  const ms = performance.now() - t0;
  if (job.mode === "rx") { while (rx.burst() > 0) { /* what arrived before the sender stopped */ } }
  const inFlight = job.mode === "rx" ? 0 : pair.txDrain(STALL_MS);
  return {
    index: pair.index,
    sent,
    received: rx.received,
    rxBytes: rx.rxBytes,
    badFrames: rx.badFrames,
    firstBad: rx.firstBad,
    inFlight,
    ms,
    stats: pair.stats.toJSON(),
  };
}

self.onmessage = (e: MessageEvent<QueueWorkerStart>) => {
  const { handle, job } = e.data;
  let pair: QueuePair | null = null;
  try {
    pair = QueuePair.attach(handle);
    post({ type: "attached", index: handle.index });
    const result = run(pair, handle, job, new Int32Array(e.data.control));
    pair.close();
    post({ type: "done", result });
  } catch (err) {
    pair?.close();
    post({ type: "error", index: handle.index, message: String((err as Error)?.stack ?? err) });
  }
  self.close();
};

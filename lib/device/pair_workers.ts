/**
 * A Worker per queue pair for a vhost-user device: the session (socket, memory table, vring
 * messages) stays on the device's thread; pair i's data path runs on Worker i, handed over
 * through a shared-memory mailbox ({@linkcode PairHandle}) with its own copies of the fds.
 *
 * ```
 *   device thread (VhostUserBackend)          Worker i (pair_worker.ts)
 *     rings 2i, 2i+1 running ── attach(i) ──► map memory, serve rx/tx i ── counters (SAB) ─┐
 *     GET_VRING_BASE / disable / end ─ detach(i) ─► stop, positions ──► ack (bounded wait) │
 *     queueStats(i) ◄─────────────────────────────────────────────────────────────────────┘
 * ```
 *
 * @module
 */

import { closeQuietly, dupFd } from "../../ffi/fd.ts";
import type { VhostUserBackend } from "../vhost_user/backend.ts";
import { featureMask } from "../virtio/features.ts";
import { CONTROL_SLOTS, COUNTER_FIELDS, readCounters } from "./device_thread.ts";
import type { NetDeviceOptions, NetDeviceStats } from "./net_device.ts";
import {
  PAIR_ERROR_BYTES,
  PAIR_SLOTS,
  PAIR_WORDS,
  PairCommand,
  type PairHandle,
  type PairRing,
  PairState,
  PairWord,
  type PairWorkerStart,
  stoppedAt,
  writeHandle,
} from "./pair_handle.ts";

/** Longest wait for a Worker to answer a request, ms (it looks every 64 polls). */
const ANSWER_MS = 5000;

/** One Worker and its shared words. */
interface Slot {
  worker: Worker;
  words: Int32Array;
  errorText: Uint8Array;
  handle: Float64Array;
  control: Int32Array;
  counters: Float64Array;
}

/**
 * N Workers, one per queue pair, idle until {@linkcode attach}. Give them to a device with
 * `VhostUserDevice.listen(path, { queuePairs: n, workers })`, which attaches and detaches them
 * as the frontend starts and stops rings, and closes them with itself.
 *
 * @example
 * ```ts ignore
 * import { PairWorkers } from "./pair_workers.ts";
 * import { VhostUserDevice } from "./vhost_user_device.ts";
 * const workers = await PairWorkers.start(2, { mode: "echo" });
 * using device = VhostUserDevice.listen("/run/vhost.sock", { queuePairs: 2, workers });
 * device.run({ durationMs: 10_000 });
 * console.log(device.queueStats(1));
 * ```
 */
export class PairWorkers {
  /** Number of Workers (queue pairs). */
  readonly count: number;
  readonly #slots: Slot[];
  #closed = false;

  private constructor(slots: Slot[]) {
    this.#slots = slots;
    this.count = slots.length;
  }

  /**
   * Starts `count` Workers with the data path `options` (no `hook`: a function cannot cross
   * to a Worker); resolves once each is waiting for a pair.
   */
  static async start(count: number, options: NetDeviceOptions = {}): Promise<PairWorkers> {
    if (!Number.isInteger(count) || count < 1 || count > 128) {
      throw new RangeError(`PairWorkers: count must be 1 to 128, got ${count}`);
    }
    if (options.hook !== undefined) {
      throw new TypeError("PairWorkers: a frame hook cannot run on the pair Workers");
    }
    const slots: Slot[] = [];
    const ready: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const mailbox = new SharedArrayBuffer(4 * PAIR_WORDS + PAIR_ERROR_BYTES);
      const handle = new SharedArrayBuffer(8 * PAIR_SLOTS);
      const counters = new SharedArrayBuffer(8 + 8 * COUNTER_FIELDS.length);
      const worker = new Worker(new URL("./pair_worker.ts", import.meta.url), { type: "module" });
      ready.push(
        new Promise((resolve, reject) => {
          worker.onmessage = (e) => {
            if (e.data?.type === "ready") resolve();
            else reject(new Error(`device pair Worker ${i}: ${e.data?.error}`));
          };
          worker.onerror = (e) => {
            e.preventDefault();
            reject(new Error(`device pair Worker ${i}: ${e.message}`));
          };
        }),
      );
      const start: PairWorkerStart = {
        type: "start",
        index: i,
        mailbox,
        handle,
        counters,
        options,
      };
      worker.postMessage(start);
      slots.push({
        worker,
        words: new Int32Array(mailbox, 0, PAIR_WORDS),
        errorText: new Uint8Array(mailbox, 4 * PAIR_WORDS),
        handle: new Float64Array(handle),
        control: new Int32Array(counters, 0, CONTROL_SLOTS),
        counters: new Float64Array(counters, 8, COUNTER_FIELDS.length),
      });
    }
    const workers = new PairWorkers(slots);
    try {
      await Promise.all(ready);
    } catch (e) {
      for (const s of slots) s.worker.terminate();
      throw e;
    }
    return workers;
  }

  /**
   * Hands pair `i` of `backend`'s running session to Worker i, its vrings starting at
   * `positions` (GET_VRING_BASE values; -1: the backend's queue's). Returns once the Worker
   * serves it; throws the Worker's error when it could not (the pair is not served then).
   */
  attach(i: number, backend: VhostUserBackend, rxAt = -1, txAt = -1): void {
    const s = this.#slot(i);
    const memory = backend.memory;
    const rxv = backend.vrings[2 * i], txv = backend.vrings[2 * i + 1];
    if (memory === null || rxv.queue === null || txv.queue === null) {
      throw new Error(`pair ${i}: its vrings are not both started`);
    }
    const fds: number[] = [];
    try {
      const dup = (fd: number) => {
        if (fd < 0) return -1;
        const copy = dupFd(fd);
        fds.push(copy);
        return copy;
      };
      const ring = (v: typeof rxv, at: number): PairRing => ({
        size: v.size,
        desc: v.addresses!.desc,
        driver: v.addresses!.driver,
        device: v.addresses!.device,
        base: at >= 0 ? at : v.queue!.vringBase,
        callFd: dup(v.callFd),
      });
      const handle: PairHandle = {
        regions: memory.regions.map((r, k) => ({
          guestPhysAddr: r.guestPhysAddr,
          size: r.size,
          userspaceAddr: r.userspaceAddr,
          mmapOffset: r.mmapOffset,
          fd: dup(memory.fd(k)),
        })),
        packed: (backend.features & featureMask("F_RING_PACKED")) !== 0n,
        eventIdx: (backend.features & featureMask("RING_F_EVENT_IDX")) !== 0n,
        mergeable: (backend.features & featureMask("NET_F_MRG_RXBUF")) !== 0n,
        inOrder: (backend.features & featureMask("F_IN_ORDER")) !== 0n,
        rx: ring(rxv, rxAt),
        tx: ring(txv, txAt),
      };
      writeHandle(s.handle, handle);
    } catch (e) {
      for (const fd of fds) closeQuietly(fd);
      throw e;
    }
    // The ring names' prefix travels in the error area (free until a fault).
    const name = new TextEncoder().encode(backend.name).subarray(0, PAIR_ERROR_BYTES);
    s.errorText.set(name);
    Atomics.store(s.words, PairWord.ERROR_LENGTH, name.length);
    // From the request on the Worker owns the copies (it closes them, also when attach fails).
    this.#request(i, PairCommand.ATTACH);
    if (Atomics.load(s.words, PairWord.STATE) !== PairState.RUNNING) {
      throw this.fault(i) ?? new Error(`pair ${i}: the Worker did not start serving it`);
    }
  }

  /**
   * Stops Worker i serving its pair; returns the rx and tx positions it stopped at (the
   * GET_VRING_BASE values), or null when it was not serving.
   */
  detach(i: number): [number, number] | null {
    const s = this.#slot(i);
    const running = Atomics.load(s.words, PairWord.STATE) === PairState.RUNNING;
    this.#request(i, PairCommand.DETACH);
    if (!running) return null;
    const rx = stoppedAt(s.handle, 0), tx = stoppedAt(s.handle, 1);
    return rx >= 0 && tx >= 0 ? [rx, tx] : null;
  }

  /** True while Worker i serves a pair. */
  running(i: number): boolean {
    return Atomics.load(this.#slot(i).words, PairWord.STATE) === PairState.RUNNING;
  }

  /**
   * The error that stopped Worker i (a rule the frontend broke, or an attach that failed), as
   * the ring threw it, or null; reading it clears it.
   */
  fault(i: number): Error | null {
    const s = this.#slot(i);
    if (Atomics.load(s.words, PairWord.STATE) !== PairState.FAULTED) return null;
    const n = Atomics.load(s.words, PairWord.ERROR_LENGTH);
    const text = new TextDecoder().decode(s.errorText.slice(0, n));
    Atomics.store(s.words, PairWord.STATE, PairState.DETACHED);
    const cut = text.indexOf("\n");
    const error = new Error(text.slice(cut + 1));
    error.name = text.slice(0, cut);
    return error;
  }

  /** Worker i's counters (since it started; at most 64 polls old while it runs). */
  queueStats(i: number): NetDeviceStats {
    const s = this.#slot(i);
    return readCounters(s.control, s.counters);
  }

  /** Sets `into` to the sum of every Worker's counters. */
  sum(into: NetDeviceStats): void {
    for (const f of COUNTER_FIELDS) into[f] = 0;
    for (let i = 0; i < this.count; i++) {
      const q = this.queueStats(i);
      for (const f of COUNTER_FIELDS) into[f] += q[f];
    }
  }

  /** Detaches every pair, ends the Workers. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (let i = 0; i < this.count; i++) {
      try {
        this.#request(i, PairCommand.EXIT);
      } catch { /* terminated below */ }
      this.#slots[i].worker.terminate();
    }
  }

  #slot(i: number): Slot {
    const s = this.#slots[i];
    if (s === undefined) throw new RangeError(`pair ${i}: there are ${this.count} pair Workers`);
    if (this.#closed) throw new Error(`pair ${i}: the pair Workers are closed`);
    return s;
  }

  /** Posts a command and waits (bounded) until the Worker acknowledged it. */
  #request(i: number, command: number): void {
    const w = this.#slots[i].words;
    Atomics.store(w, PairWord.COMMAND, command); // before the request number that announces it
    const request = Atomics.add(w, PairWord.REQUEST, 1) + 1;
    Atomics.notify(w, PairWord.REQUEST);
    const deadline = performance.now() + ANSWER_MS;
    for (;;) {
      const ack = Atomics.load(w, PairWord.ACK);
      if (ack === request) return;
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Error(
          `device pair Worker ${i} did not answer command ${command} within ${ANSWER_MS} ms`,
        );
      }
      Atomics.wait(w, PairWord.ACK, ack, left);
    }
  }
}

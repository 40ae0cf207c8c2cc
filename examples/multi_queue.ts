/**
 * One Worker per queue pair (VIRTIO_NET_F_MQ): the main thread opens the port with
 * `detachQueues`, posts `port.queueHandle(i)` to Worker i ({@link ./queue_worker.ts}) and reads
 * each pair's counters live from the shared memory while the Workers busy-poll.
 *
 * ```
 *   main: VirtioNet.open({queuePairs: N, detachQueues: true})
 *     ├─ queueHandle(0) ──► Worker 0: QueuePair ──► pair 0 ──► device
 *     └─ queueHandle(1) ──► Worker 1: QueuePair ──► pair 1 ──► device
 *   stop() ──► control word ──► Workers end, drain, report ──► done()
 * ```
 *
 * @module
 */

import type { QueueHandle } from "../lib/driver/queue_pair.ts";
import type { VirtioNet } from "../lib/driver/virtio_net.ts";

/** What each Worker does. */
export interface QueueJob {
  /** `tx`: send; `rx`: receive; `echo`: send `count` and receive each back, checked. */
  mode: "tx" | "rx" | "echo";
  /** Frames to send (tx, echo); 0: until {@linkcode QueueWorkers.stop}. */
  count: number;
  /** Frame size without FCS. */
  size: number;
  /** Frames per burst. */
  burst: number;
  /** Source MAC of the frames sent. */
  srcMac: number[];
}

/** What a Worker reports for its pair. */
export interface QueueResult {
  /** Queue pair number. */
  index: number;
  /** Frames sent. */
  sent: number;
  /** Frames received. */
  received: number;
  /** Their bytes. */
  rxBytes: number;
  /** Echo: frames back with the wrong length or another pair's tag. */
  badFrames: number;
  /** The first of them, described. */
  firstBad: string;
  /** Frames the device had not taken when the Worker ended. */
  inFlight: number;
  /** Duration of the run (until the count, or stop), ms. */
  ms: number;
  /** The pair's counters at the end. */
  stats: Record<string, number>;
}

/** Message to a queue Worker. */
export interface QueueWorkerStart {
  /** From `port.queueHandle(i)`. */
  handle: QueueHandle;
  /** What to do. */
  job: QueueJob;
  /** Int32 control word: non-zero = stop. */
  control: SharedArrayBuffer;
}

/** Messages from a queue Worker. */
export type QueueWorkerReply =
  | { type: "attached"; index: number }
  | { type: "done"; result: QueueResult }
  | { type: "error"; index: number; message: string };

/** The Workers of a port, one per queue pair. */
export class QueueWorkers {
  readonly #control: SharedArrayBuffer;
  readonly #done: Promise<QueueResult>[];

  private constructor(done: Promise<QueueResult>[], control: SharedArrayBuffer) {
    this.#done = done;
    this.#control = control;
  }

  /**
   * Starts one Worker per pair of `port` (opened with `detachQueues: true`) running `job(i)`;
   * resolves once every Worker has attached its pair (receive rings filled).
   */
  static async start(port: VirtioNet, job: (i: number) => QueueJob): Promise<QueueWorkers> {
    const control = new SharedArrayBuffer(4);
    const attached: Promise<void>[] = [];
    const done: Promise<QueueResult>[] = [];
    for (let i = 0; i < port.queuePairs; i++) {
      const worker = new Worker(new URL("./queue_worker.ts", import.meta.url), { type: "module" });
      let onAttached!: () => void, onFail!: (e: Error) => void;
      attached.push(new Promise((res, rej) => (onAttached = res, onFail = rej)));
      done.push(
        new Promise<QueueResult>((resolve, reject) => {
          worker.onmessage = (e: MessageEvent<QueueWorkerReply>) => {
            const m = e.data;
            if (m.type === "attached") onAttached();
            else if (m.type === "done") resolve(m.result);
            else {
              const err = new Error(`queue worker ${m.index}: ${m.message}`);
              onFail(err);
              reject(err);
            }
          };
          worker.onerror = (e) => {
            e.preventDefault();
            const err = new Error(`queue worker ${i}: ${e.message}`);
            onFail(err);
            reject(err);
          };
        }),
      );
      const start: QueueWorkerStart = { handle: port.queueHandle(i), job: job(i), control };
      worker.postMessage(start);
    }
    done.forEach((p) => p.catch(() => {})); // surfaced by done()
    await Promise.all(attached);
    return new QueueWorkers(done, control);
  }

  /** Asks every Worker to end its run. */
  stop(): void {
    Atomics.store(new Int32Array(this.#control), 0, 1);
  }

  /** Each pair's result, by pair number, once every Worker has ended. */
  done(): Promise<QueueResult[]> {
    return Promise.all(this.#done);
  }
}

/**
 * pktgen over several pairs: one sending Worker per pair, `count` frames split between them (or
 * until `durationS`), per-queue rates printed every second from the shared counters while the
 * Workers run. Returns each pair's result.
 */
export async function sendFromWorkers(
  port: VirtioNet,
  run: { count: number; durationS: number; size: number; burst: number; live: boolean },
): Promise<QueueResult[]> {
  const n = port.queuePairs;
  const share = (i: number) =>
    run.count > 0 ? Math.floor(run.count / n) + (i < run.count % n ? 1 : 0) : 0;
  const workers = await QueueWorkers.start(port, (i) => ({
    mode: "tx",
    count: share(i),
    size: run.size,
    burst: run.burst,
    srcMac: [...port.mac],
  }));
  let finished = false;
  const results = workers.done().finally(() => (finished = true));
  const t0 = performance.now();
  const last = Array.from({ length: n }, () => 0);
  let lastT = t0;
  while (!finished) {
    await new Promise((r) => setTimeout(r, 100));
    const now = performance.now();
    if (run.count === 0 && now - t0 >= run.durationS * 1000) workers.stop();
    if (now - lastT < 1000) continue;
    const rates = last.map((prev, i) => {
      const p = port.queueStats(i).txPackets;
      last[i] = p;
      return `q${i} ${((p - prev) / (now - lastT) / 1e3).toFixed(2)}`;
    });
    lastT = now;
    if (run.live) {
      console.error(`${((now - t0) / 1000).toFixed(0).padStart(4)} s  Mpps ${rates.join("  ")}`);
    }
  }
  return await results;
}

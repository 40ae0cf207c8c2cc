/**
 * A vhost-user backend for tests that breaks ring rules on purpose: it answers the protocol
 * (a {@linkcode VhostUserBackend} on a worker thread, since the driver blocks its own thread while
 * it waits for replies) and writes used entries into the driver's rings by hand.
 *
 * ```
 *   test: VirtioNet ──vhost-user──► worker: VhostUserBackend (protocol only, no data path)
 *   test ──postMessage(packedUsed / splitUsed)──► worker writes used entries in shared memory
 * ```
 *
 * @module
 */

import type { VhostUserBackendOptions } from "../lib/vhost_user/backend.ts";

/** A used entry to write: packed rings give `slot` and `flags`, split rings only `id`, `len`. */
export interface UsedEntry {
  /** Packed: descriptor slot to overwrite. */
  slot?: number;
  /** Buffer id. */
  id: number;
  /** Bytes written. */
  len: number;
  /** Packed: descriptor flags (AVAIL 1<<7, USED 1<<15). */
  flags?: number;
}

/** What the backend saw, as plain data. */
export interface HostileState {
  status: number;
  /** The status byte when the last session ended, -1 if none has. */
  lastSessionStatus: number;
  connected: boolean;
  running: number[];
  error: string | null;
}

/**
 * The backend on its worker.
 *
 * @example
 * ```ts ignore
 * await using dev = await HostileBackend.listen(sock);
 * await dev.packedUsed(0, [{ slot: 0, id: 999, len: 64, flags: 0x8080 }]);
 * ```
 */
export class HostileBackend {
  readonly #worker: Worker;
  #pending: ((data: Record<string, unknown>) => void) | null = null;

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.onmessage = (e) => {
      const p = this.#pending;
      this.#pending = null;
      p?.(e.data);
    };
  }

  /** Starts the worker listening at `path`. */
  static async listen(
    path: string,
    options: VhostUserBackendOptions = {},
  ): Promise<HostileBackend> {
    const w = new Worker(new URL("./hostile_backend_worker.ts", import.meta.url), {
      type: "module",
    });
    const b = new HostileBackend(w);
    await b.#call({ cmd: "listen", path, options });
    return b;
  }

  /** Writes packed used descriptors into vring `vring`. */
  async packedUsed(vring: number, entries: UsedEntry[]): Promise<void> {
    await this.#call({ cmd: "packedUsed", vring, entries });
  }

  /** Writes split used entries into vring `vring`, then used.idx (`idx`, or past the entries). */
  async splitUsed(vring: number, entries: UsedEntry[], idx?: number): Promise<void> {
    await this.#call({ cmd: "splitUsed", vring, entries, idx });
  }

  /**
   * Writes `bytes` as they are onto the back-end request channel (SET_BACKEND_REQ_FD); when
   * `replyBytes` > 0, reads that many bytes of the frontend's answer (within 2 s) and returns
   * them.
   */
  async backendRequest(bytes: Uint8Array, replyBytes = 0): Promise<Uint8Array> {
    return (await this.#call({ cmd: "backendRequest", bytes, replyBytes })).reply as Uint8Array;
  }

  /** Tries to ftruncate the frontend's memfd to `size` bytes; returns each attempt's outcome. */
  async shrink(size = 0): Promise<string[]> {
    return (await this.#call({ cmd: "shrink", size })).results as string[];
  }

  /** The backend's view: status byte, connection, running vrings, last error. */
  async state(): Promise<HostileState> {
    return (await this.#call({ cmd: "state" })) as unknown as HostileState;
  }

  /**
   * Closes the backend (the frontend sees its socket hang up) and ends the worker. Returns when
   * the socket was closed, as `performance.timeOrigin + performance.now()` (ms), or NaN.
   */
  async close(): Promise<number> {
    const r = await this.#call({ cmd: "close" }).catch(() => ({ closedAt: NaN }));
    this.#worker.terminate();
    return Number(r.closedAt);
  }

  /** Same as {@linkcode close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #call(msg: Record<string, unknown>): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      this.#pending = (data) => {
        if (data.event === "error") reject(new Error(String(data.message)));
        else resolve(data);
      };
      this.#worker.postMessage(msg);
    });
  }
}

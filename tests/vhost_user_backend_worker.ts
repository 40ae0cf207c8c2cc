/**
 * Worker for tests/vhost_user_test.ts: runs a {@linkcode VhostUserBackend} on its own thread,
 * polling it from a timer, because the frontend blocks its thread while it waits for replies.
 *
 * ```
 *   test thread: VhostUserFrontend ──socket──► worker: VhostUserBackend.poll() every 1 ms
 *   test thread ◄── postMessage: state snapshots, bytes read through GuestMemory ──┘
 * ```
 *
 * Commands (postMessage): `{ cmd: "listen", path, options }`, `{ cmd: "state" }`,
 * `{ cmd: "peek", addr }` (reads one byte at a guest physical address), `{ cmd: "close" }`.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { VhostUserBackend, type VhostUserBackendOptions } from "../lib/vhost_user/backend.ts";

let backend: VhostUserBackend | null = null;
let timer: ReturnType<typeof setInterval> | undefined;
let changes = 0;

/** Everything a test asserts on, as plain data. */
export interface BackendState {
  connected: boolean;
  closed: boolean;
  started: boolean;
  running: number[];
  features: string;
  protocolFeatures: string;
  status: number;
  error: string | null;
  mapped: number;
  changes: number;
  vrings: {
    size: number;
    base: number;
    enabled: boolean;
    ready: boolean;
    callSet: boolean;
    hasKickFd: boolean;
    hasCallFd: boolean;
    queueBase: number | null;
  }[];
}

function drain(b: VhostUserBackend): void {
  // Messages sent without NEED_REPLY may still be waiting: handle them before answering.
  for (let i = 0; i < 100 && b.poll(); i++) { /* keep going */ }
}

function snapshot(b: VhostUserBackend): BackendState {
  return {
    connected: b.connected,
    closed: b.closed,
    started: b.started,
    running: [...b.running],
    features: b.features.toString(16),
    protocolFeatures: b.protocolFeatures.toString(16),
    status: b.status,
    error: b.error?.message ?? null,
    mapped: b.memory?.count ?? 0,
    changes,
    vrings: b.vrings.map((v) => ({
      size: v.size,
      base: v.base,
      enabled: v.enabled,
      ready: v.ready,
      callSet: v.callSet,
      hasKickFd: v.kickFd >= 0,
      hasCallFd: v.callFd >= 0,
      queueBase: v.queue?.base ?? null,
    })),
  };
}

self.onmessage = (e: MessageEvent) => {
  const msg = e.data as {
    cmd: string;
    path?: string;
    options?: VhostUserBackendOptions;
    addr?: number;
  };
  try {
    switch (msg.cmd) {
      case "listen":
        backend = VhostUserBackend.listen(msg.path!, msg.options ?? {});
        backend.onQueuesChanged = () => changes++;
        timer = setInterval(() => backend!.poll(), 1);
        self.postMessage({ event: "listening" });
        break;
      case "state":
        drain(backend!);
        self.postMessage({ event: "state", state: snapshot(backend!) });
        break;
      case "peek": {
        drain(backend!);
        const mem = backend!.memory!;
        const addr = msg.addr!;
        const r = mem.translate(addr % 0x1_0000_0000, Math.floor(addr / 0x1_0000_0000), 1);
        self.postMessage({ event: "peek", value: r < 0 ? -1 : mem.bytes(r)[mem.offset] });
        break;
      }
      case "close":
        clearInterval(timer);
        backend?.close();
        self.postMessage({ event: "closed" });
        self.close();
        break;
    }
  } catch (err) {
    self.postMessage({ event: "error", message: (err as Error).message });
  }
};

/**
 * A deterministic, seeded fuzzer: every case is built from one 32-bit seed, so a failing case is
 * replayed with its seed alone. Three kinds of case, each must end in a clean error (one of the
 * project's named errors) or in normal service, never anything else:
 *
 * ```
 *   message: [a valid bring-up, maybe corrupted] + random vhost-user messages
 *            ──socket──► VhostUserBackend.poll()   (never throws; any error a named one)
 *   device:  random descriptors ──► PackedDeviceQueue / SplitDeviceQueue.pop  (VirtqueueError)
 *   driver:  random used entries ──► PackedDriverQueue / SplitDriverQueue.dequeue
 *            (VirtqueueError, and every buffer accounted for: taken + returned + in flight)
 * ```
 *
 * `deno task fuzz [--cases N] [--seed S] [--kind message|device|driver]` runs it standalone.
 *
 * @module
 */

import { eventfd } from "../ffi/eventfd.ts";
import { closeQuietly } from "../ffi/fd.ts";
import { ftruncate, memfdCreate, MFD_CLOEXEC } from "../ffi/memory.ts";
import { sendMsg, unixConnect } from "../ffi/unix_socket.ts";
import { VhostUserBackend } from "../lib/vhost_user/backend.ts";
import {
  PROTOCOL_FEATURES_BIT,
  VHOST_USER_HDR_SIZE,
  VhostUserMessage,
  VhostUserRequest as REQ,
} from "../lib/vhost_user/message.ts";
import { featureMask } from "../lib/virtio/features.ts";
import {
  PackedDeviceQueue,
  PackedDriverQueue,
  packedRingLayout,
} from "../lib/virtio/packed_ring.ts";
import { SplitDeviceQueue, SplitDriverQueue, splitRingLayout } from "../lib/virtio/split_ring.ts";
import { type DeviceQueue, type DriverQueue, VirtqueueError } from "../lib/virtio/virtqueue.ts";
import { makeRing, type RingKind } from "./ring_helpers.ts";

/** The kinds of case. */
export type FuzzKind = "message" | "device" | "driver";

/** A case that ended in something other than a clean error or normal service. */
export class FuzzFailure extends Error {
  constructor(readonly kind: FuzzKind, readonly seed: number, cause: unknown) {
    super(
      `fuzz ${kind} case seed ${seed} failed: ${(cause as Error)?.stack ?? cause}\n` +
        `  replay: deno task fuzz --kind ${kind} --seed ${seed} --cases 1`,
    );
    this.name = "FuzzFailure";
  }
}

/** mulberry32: a small deterministic PRNG. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PACKED: AnyKind = {
  layout: packedRingLayout,
  Driver: PackedDriverQueue,
  Device: PackedDeviceQueue,
};
type AnyKind = RingKind<DriverQueue, DeviceQueue>;
const SPLIT: RingKind<SplitDriverQueue, SplitDeviceQueue> = {
  layout: splitRingLayout,
  Driver: SplitDriverQueue,
  Device: SplitDeviceQueue,
};

/** Errors a peer's garbage may lead to: the project's named errors. */
function clean(e: unknown): boolean {
  return e instanceof Error &&
    ["VirtqueueError", "VhostUserError", "GuestMemoryError"].includes(e.name);
}

// --- device side: random descriptors --------------------------------------------------------

function deviceCase(seed: number): void {
  const r = rng(seed);
  const packed = r() < 0.5;
  const size = packed ? 1 + Math.floor(r() * 16) : 1 << Math.floor(r() * 5);
  const ring = makeRing(packed ? PACKED : SPLIT as AnyKind, size, "fuzz", {
    nbufs: 4,
    eventIdx: r() < 0.3,
  });
  // Random bytes over the rings (descriptors, avail ring / event areas); addresses near the
  // buffers half of the time so chains are followed, not only rejected.
  const words = new Uint32Array(ring.mem.buffer, 0, ring.layout.byteLength >>> 2);
  for (let i = 0; i < words.length; i++) words[i] = (r() * 0x1_0000_0000) >>> 0;
  for (let i = 0; i < size; i++) {
    if (r() < 0.5) {
      ring.d32[4 * i] = ring.base + ring.bufStart + Math.floor(r() * 4 * 2048);
      ring.d32[4 * i + 1] = 0;
      ring.d32[4 * i + 2] = Math.floor(r() * 3000);
    }
  }
  try {
    for (let i = 0; i < 2 * size + 2; i++) {
      if (!ring.device.pop(ring.chain)) break;
      ring.device.pushUsed(ring.chain.id, 0);
    }
    ring.device.publishUsed();
  } catch (e) {
    if (!(e instanceof VirtqueueError)) throw e;
  }
}

// --- driver side: random used entries -------------------------------------------------------

function driverCase(seed: number): void {
  const r = rng(seed);
  const packed = r() < 0.5;
  const size = packed ? 1 + Math.floor(r() * 16) : 1 << Math.floor(r() * 5);
  const inOrder = packed && r() < 0.5;
  const ring = makeRing(packed ? PACKED : SPLIT as AnyKind, size, "fuzz", { nbufs: size, inOrder });
  const driver = ring.driver;
  const n = 1 + Math.floor(r() * size);
  const bufs = new Uint32Array(size), lens = new Uint32Array(size).fill(100);
  for (let i = 0; i < size; i++) bufs[i] = i;
  const writable = r() < 0.5;
  if (driver.enqueue(bufs, lens, 0, n, writable) !== n) throw new Error("enqueue lost buffers");
  // The device writes garbage, or something close to right (the real slots and ids).
  if (packed) {
    for (let i = 0; i < size; i++) {
      if (r() < 0.5) continue;
      ring.d16[8 * i + 6] = r() < 0.7 ? Math.floor(r() * size) : (r() * 0x10000) >>> 0;
      ring.d32[4 * i + 2] = r() < 0.7 ? Math.floor(r() * 120) : (r() * 0x1_0000_0000) >>> 0;
      ring.d16[8 * i + 7] = r() < 0.6 ? 0x8080 : (r() * 0x10000) >>> 0;
    }
  } else {
    const used16 = new Uint16Array(ring.mem.buffer, ring.layout.deviceOffset, 2);
    const used32 = new Uint32Array(ring.mem.buffer, ring.layout.deviceOffset + 4, 2 * size);
    for (let i = 0; i < 2 * size; i++) {
      used32[i] = r() < 0.7 ? Math.floor(r() * (i % 2 ? 120 : size)) : (r() * 0x1_0000_0000) >>> 0;
    }
    used16[1] = r() < 0.7 ? Math.floor(r() * (n + 1)) : (r() * 0x10000) >>> 0;
  }
  // Every buffer enqueued comes back exactly once: returned, taken before a fault, or in flight.
  const seen = new Uint8Array(size);
  const out = new Uint32Array(size), outLens = new Uint32Array(size);
  const note = (k: number) => {
    for (let i = 0; i < k; i++) {
      const b = out[i];
      if (b >= n || seen[b]) throw new Error(`buffer ${b} came back twice or was never sent`);
      seen[b] = 1;
    }
  };
  try {
    for (let round = 0; round < 3; round++) {
      const got = driver.dequeue(out, outLens, 1 + Math.floor(r() * size));
      note(got);
      for (let i = 0; i < got; i++) {
        if (writable && outLens[i] > 100) throw new Error(`len ${outLens[i]} beyond the buffer`);
      }
    }
  } catch (e) {
    if (!(e instanceof VirtqueueError)) throw e;
    note(e.dequeued);
  }
  note(driver.takeInFlight(out));
  for (let b = 0; b < n; b++) if (!seen[b]) throw new Error(`buffer ${b} was lost`);
}

// --- vhost-user messages to the device ------------------------------------------------------

/** Requests weighted towards the ones with state (1-40), plus some unknown ones. */
function pickRequest(r: () => number): number {
  return r() < 0.9 ? 1 + Math.floor(r() * 40) : Math.floor(r() * 0x10000);
}

/** The payload size a request expects, mostly; sometimes any size. */
function pickSize(r: () => number, request: number): number {
  if (r() < 0.15) return Math.floor(r() * 300);
  if (request === 5) return 8 + 32 * Math.floor(r() * 9); // SET_MEM_TABLE
  if (request === 9) return 40; // SET_VRING_ADDR
  if ([8, 10, 11, 18].includes(request)) return 8; // vring state
  if ([1, 3, 4, 15, 17, 40].includes(request)) return 0;
  return 8;
}

class MessageFuzzer {
  readonly path: string;
  readonly dir: string;
  readonly backend: VhostUserBackend;
  readonly msg = new VhostUserMessage();

  constructor() {
    this.dir = Deno.makeTempDirSync({ prefix: "fuzz-" });
    this.path = `${this.dir}/vhost.sock`;
    this.backend = VhostUserBackend.listen(this.path, { queuePairs: 2 });
    this.backend.onQueuesChanged = (b) => {
      if (b.started) this.#startedNow = true;
    };
  }

  /** Cases in which the backend got as far as running rings. */
  started = 0;
  #startedNow = false;

  /**
   * A valid bring-up (as DPDK's frontend sends it) of `rings` vrings over a 64 KiB memfd at guest
   * address 0x100000, each message possibly cut short by `r`: so the random tail meets a backend
   * with mapped memory and started rings, not only a fresh session.
   */
  #prefix(r: () => number, raw: number, fds: number[]): void {
    const m = this.msg, packed = r() < 0.5, size = 8, gpa = 0x100000n;
    const mem = memfdCreate("fuzz-guest", MFD_CLOEXEC);
    fds.push(mem);
    ftruncate(mem, 65536);
    const features = featureMask("F_VERSION_1", ...(packed ? ["F_RING_PACKED" as const] : [])) |
      PROTOCOL_FEATURES_BIT;
    const steps: [() => void, number[]][] = [
      [() => m.begin(REQ.SET_OWNER), []],
      [() => m.begin(REQ.SET_FEATURES).setU64(features), []],
      [() =>
        m.begin(REQ.SET_MEM_TABLE).setMemoryTable([{
          guestPhysAddr: gpa,
          memorySize: 65536n,
          userspaceAddr: gpa,
          mmapOffset: 0n,
        }]), [mem]],
    ];
    for (let v = 0; v < 2; v++) {
      const at = gpa + BigInt(v * 8192);
      steps.push(
        [() => m.begin(REQ.SET_VRING_NUM).setVringState(v, size), []],
        [() => m.begin(REQ.SET_VRING_BASE).setVringState(v, packed ? 1 << 15 : 0), []],
        [() =>
          m.begin(REQ.SET_VRING_ADDR).setVringAddress({
            index: v,
            flags: 0,
            desc: at,
            used: at + 4096n,
            avail: at + 2048n,
            log: 0n,
          }), []],
        [() => m.begin(REQ.SET_VRING_CALL).setVringFile(v, false), []],
        [() => m.begin(REQ.SET_VRING_KICK).setVringFile(v, false), []],
        [() => m.begin(REQ.SET_VRING_ENABLE).setVringState(v, 1), []],
      );
    }
    for (const [build, send] of steps) {
      if (!this.backend.connected) return;
      build();
      // Now and then a field is corrupted on the way.
      if (r() < 0.05) m.bytes[Math.floor(r() * m.length)] = (r() * 256) | 0;
      try {
        sendMsg(raw, m.bytes, m.length, send);
      } catch {
        return;
      }
      this.#poll();
    }
  }

  run(seed: number): void {
    const r = rng(seed);
    const raw = unixConnect(this.path);
    const fds: number[] = [];
    this.#startedNow = false;
    try {
      this.#poll();
      if (r() < 0.4) this.#prefix(r, raw, fds);
      const count = 1 + Math.floor(r() * 10);
      const m = this.msg, view = new DataView(m.bytes.buffer);
      for (let k = 0; k < count && this.backend.connected; k++) {
        const request = pickRequest(r);
        const size = pickSize(r, request);
        m.begin(request);
        const bytes = m.bytes;
        for (let i = 0; i < size && VHOST_USER_HDR_SIZE + i < bytes.length; i++) {
          bytes[VHOST_USER_HDR_SIZE + i] = (r() * 256) | 0;
        }
        // Small vring indexes and sizes most of the time, so state builds up.
        if (size >= 8 && r() < 0.7) {
          view.setUint32(VHOST_USER_HDR_SIZE, Math.floor(r() * 5), true);
          if (r() < 0.5) view.setUint32(VHOST_USER_HDR_SIZE + 4, 1 << Math.floor(r() * 10), true);
        }
        const len = Math.min(VHOST_USER_HDR_SIZE + size, bytes.length);
        view.setUint32(8, r() < 0.9 ? size : (r() * 0x1_0000_0000) >>> 0, true); // size field
        view.setUint32(4, r() < 0.85 ? 1 | (r() < 0.3 ? 8 : 0) : (r() * 16) | 0, true); // flags
        const send: number[] = [];
        if (r() < 0.15) {
          const memfd = r() < 0.5;
          const fd = memfd ? memfdCreate("fuzz", MFD_CLOEXEC) : eventfd();
          if (memfd && r() < 0.7) ftruncate(fd, 4096 * (1 + Math.floor(r() * 4)));
          send.push(fd);
          fds.push(fd);
        }
        try {
          sendMsg(raw, bytes, len, send);
        } catch {
          break; // the backend ended the session (it may close before reading everything)
        }
        this.#poll();
      }
    } finally {
      closeQuietly(raw);
      for (const fd of fds) closeQuietly(fd);
      this.#poll(); // sees the hang-up: the session ends, its memory is unmapped
      if (this.backend.connected) this.backend.endSession(new Error("fuzz case over"));
    }
    if (this.#startedNow) this.started++;
    const e = this.backend.error;
    if (e !== null && !clean(e) && e.message !== "fuzz case over") throw e;
  }

  #poll(): void {
    for (let i = 0; i < 32 && this.backend.poll(); i++) { /* drain */ }
  }

  close(): void {
    this.backend.close();
    Deno.removeSync(this.dir, { recursive: true });
  }
}

/** Counts of one fuzz run. */
export interface FuzzResult {
  cases: number;
  ms: number;
  /** Message cases in which the backend started its rings (-1 for other kinds). */
  started: number;
}

/**
 * Runs `cases` cases of `kind` with seeds `seed, seed + 1, ...`; throws a {@linkcode FuzzFailure}
 * naming the seed of the first case that ends badly.
 *
 * @example
 * ```ts ignore
 * const { cases, ms } = runFuzz("driver", 1, 10_000);
 * ```
 */
export function runFuzz(kind: FuzzKind, seed: number, cases: number): FuzzResult {
  const start = performance.now();
  const messages = kind === "message" ? new MessageFuzzer() : null;
  let started = -1;
  try {
    for (let i = 0; i < cases; i++) {
      const s = (seed + i) >>> 0;
      try {
        if (kind === "device") deviceCase(s);
        else if (kind === "driver") driverCase(s);
        else messages!.run(s);
      } catch (e) {
        throw new FuzzFailure(kind, s, e);
      }
    }
    started = messages?.started ?? -1;
  } finally {
    messages?.close();
  }
  return { cases, ms: performance.now() - start, started };
}

if (import.meta.main) {
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({
    options: {
      cases: { type: "string", default: "100000" },
      seed: { type: "string", default: "1" },
      kind: { type: "string" },
    },
  });
  const kinds: FuzzKind[] = values.kind === undefined
    ? ["message", "device", "driver"]
    : [values.kind as FuzzKind];
  for (const kind of kinds) {
    try {
      const { cases, ms, started } = runFuzz(kind, Number(values.seed), Number(values.cases));
      if (started >= 0) console.log(`${kind}: the backend started its rings in ${started} cases`);
      console.log(
        `${kind}: ${cases} cases in ${(ms / 1000).toFixed(1)} s (${
          (cases / ms * 1000).toFixed(0)
        }/s), all clean`,
      );
    } catch (e) {
      console.error((e as Error).message);
      Deno.exit(1);
    }
  }
}

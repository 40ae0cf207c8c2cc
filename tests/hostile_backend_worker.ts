/**
 * Worker behind tests/hostile_backend.ts: a {@linkcode VhostUserBackend} that answers the
 * protocol like any device (polled every 1 ms from a timer), but never runs a data path: the
 * test writes used entries into the driver's rings by hand, as a broken device would.
 *
 * Commands (postMessage): `{ cmd: "listen", path, options }`, `{ cmd: "packedUsed", vring,
 * entries: [{ slot, id, len, flags }] }`, `{ cmd: "splitUsed", vring, entries: [{ id, len }],
 * idx? }`, `{ cmd: "state" }`, `{ cmd: "shrink", size }` (ftruncate the memory fd), `{ cmd:
 * "close" }`, `{ cmd: "backendRequest", bytes, replyBytes }` (raw bytes on the back-end channel). Each answers `{ event: cmd, ... }` or `{ event: "error", message }`.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { ftruncate } from "../ffi/memory.ts";
import { closeQuietly } from "../ffi/fd.ts";
import { recvExact, sendMsg } from "../ffi/unix_socket.ts";
import { VhostUserBackend, type VhostUserBackendOptions } from "../lib/vhost_user/backend.ts";

let backend: VhostUserBackend | null = null;
let timer: ReturnType<typeof setInterval> | undefined;
/** The status byte when the last session ended (-1: none ended yet). */
let lastSessionStatus = -1;
/** Used index the split-ring injector writes next, per vring. */
const splitIdx = new Map<number, number>();

function drain(b: VhostUserBackend): void {
  for (let i = 0; i < 100 && b.poll(); i++) { /* handle what is pending */ }
}

function vringAreas(index: number): { desc: Uint8Array; device: Uint8Array } {
  const b = backend!;
  drain(b);
  const v = b.vrings[index];
  if (v.desc === null || v.deviceArea === null) throw new Error(`vring ${index} is not set up`);
  return { desc: v.desc, device: v.deviceArea };
}

interface Entry {
  slot?: number;
  id: number;
  len: number;
  flags?: number;
}

self.onmessage = (e: MessageEvent) => {
  const msg = e.data as {
    cmd: string;
    path?: string;
    options?: VhostUserBackendOptions;
    vring?: number;
    entries?: Entry[];
    idx?: number;
    size?: number;
    bytes?: Uint8Array;
    replyBytes?: number;
  };
  try {
    switch (msg.cmd) {
      case "listen":
        backend = VhostUserBackend.listen(msg.path!, msg.options ?? {});
        // The status is reset when a session ends; keep what the frontend last set in it.
        backend.onSessionEnd = (b) => lastSessionStatus = b.status;
        timer = setInterval(() => backend!.poll(), 1);
        self.postMessage({ event: "listen" });
        break;
      case "packedUsed": {
        // §2.8.13 descriptor: addr u64 @0, len u32 @8, id u16 @12, flags u16 @14.
        const { desc } = vringAreas(msg.vring!);
        const view = new DataView(desc.buffer, desc.byteOffset, desc.byteLength);
        const flags16 = new Uint16Array(desc.buffer, desc.byteOffset, desc.byteLength >> 1);
        for (const en of msg.entries!) {
          const at = en.slot! * 16;
          view.setUint32(at + 8, en.len, true);
          view.setUint16(at + 12, en.id, true);
          // Flags last, with a release store: what a device publishing a used descriptor does.
          Atomics.store(flags16, (at + 14) >> 1, en.flags!);
        }
        self.postMessage({ event: "packedUsed" });
        break;
      }
      case "splitUsed": {
        // §2.7.8 used ring: flags u16 @0, idx u16 @2, ring[i] {id u32, len u32} @4 + 8i.
        const { device } = vringAreas(msg.vring!);
        const view = new DataView(device.buffer, device.byteOffset, device.byteLength);
        const size = backend!.vrings[msg.vring!].size;
        let idx = splitIdx.get(msg.vring!) ?? view.getUint16(2, true);
        for (const en of msg.entries!) {
          const at = 4 + 8 * (idx % size);
          view.setUint32(at, en.id, true);
          view.setUint32(at + 4, en.len, true);
          idx = (idx + 1) & 0xffff;
        }
        splitIdx.set(msg.vring!, idx);
        const idx16 = new Uint16Array(device.buffer, device.byteOffset, 2);
        Atomics.store(idx16, 1, msg.idx ?? idx); // publish: used.idx after the entries
        self.postMessage({ event: "splitUsed" });
        break;
      }
      case "backendRequest": {
        const b = backend!;
        drain(b);
        const fd = b.backendChannelFd;
        if (fd < 0) throw new Error("the frontend gave no back-end channel (SET_BACKEND_REQ_FD)");
        sendMsg(fd, msg.bytes!, msg.bytes!.length, []);
        const reply = new Uint8Array(msg.replyBytes ?? 0);
        if (reply.length > 0) {
          const fds: number[] = [];
          recvExact(fd, reply, reply.length, fds, 2000);
          for (const f of fds) closeQuietly(f);
        }
        self.postMessage({ event: "backendRequest", reply });
        break;
      }
      case "shrink": {
        // What a hostile backend could do with the memory fd it was given: cut the file down,
        // so the frontend's next access to the lost pages is SIGBUS. Every memfd of the
        // frontend's memory ("memfd:virtio-user") in this process's fd table is tried.
        const results: string[] = [];
        for (const entry of Deno.readDirSync("/proc/self/fd")) {
          let target: string;
          try {
            target = Deno.readLinkSync(`/proc/self/fd/${entry.name}`);
          } catch {
            continue;
          }
          if (!target.startsWith("/memfd:virtio-user")) continue;
          try {
            ftruncate(Number(entry.name), msg.size ?? 0);
            results.push("shrunk");
          } catch (err) {
            results.push((err as Error).message);
          }
        }
        self.postMessage({ event: "shrink", results });
        break;
      }
      case "state": {
        const b = backend!;
        drain(b);
        self.postMessage({
          event: "state",
          status: b.status,
          lastSessionStatus,
          connected: b.connected,
          running: [...b.running],
          error: b.error?.message ?? null,
        });
        break;
      }
      case "close": {
        clearInterval(timer);
        const closedAt = performance.timeOrigin + performance.now(); // for latency figures
        backend?.close();
        self.postMessage({ event: "close", closedAt });
        self.close();
        break;
      }
      default:
        throw new Error(`unknown command ${msg.cmd}`);
    }
  } catch (err) {
    self.postMessage({ event: "error", message: (err as Error).message });
  }
};

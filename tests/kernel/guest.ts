/**
 * What the tests that run inside the kernel VM share: busybox commands, persistent taps with an
 * address, the test frames (sequence-numbered, experimental EtherType 0x88B5 so the kernel's
 * stack ignores them) and bounded polling waits.
 *
 * ```
 *   test ──Tap.open(persist)──► tap NAME ──ip addr / ip link set up──► kernel stack
 *        ──VirtioNet.open({ path: "/dev/vhost-net", tap: NAME })──► vhost-net ⇄ tap
 *        ──packetSocket(NAME)──► frames as the kernel sees them on the tap
 * ```
 *
 * @module
 */

import { Tap } from "../../lib/vhost_net/tap.ts";
import { VirtioNet, type VirtioNetOptions } from "../../lib/driver/virtio_net.ts";
import { closeQuietly } from "../../ffi/fd.ts";
import {
  interfaceIndex,
  PACKET_OUTGOING,
  packetRecv,
  packetSend,
  packetSocket,
  packetType,
} from "../../ffi/packet_socket.ts";
import { runBounded } from "../helpers.ts";

/** EtherType of every test frame (IEEE 802 local experimental 1). */
export const TEST_ETHERTYPE = 0x88b5;
/** Smallest and largest frames (without FCS) the tests send. */
export const MIN_FRAME = 60, MAX_FRAME = 1514;

/** Runs a busybox applet, throwing with its output when it fails. */
export async function sh(...args: string[]): Promise<string> {
  const run = await runBounded(args[0], args.slice(1), { timeoutMs: 60_000 });
  if (run.code !== 0 || run.timedOut) {
    throw new Error(`${args.join(" ")} failed (exit ${run.code}): ${run.stdout}${run.stderr}`);
  }
  return run.stdout;
}

/** Creates persistent tap `name` (the test process then attaches and detaches at will). */
export async function persistentTap(name: string, cidr?: string): Promise<void> {
  Tap.open(name, { persist: true }).close();
  if (cidr) await sh("ip", "addr", "add", cidr, "dev", name);
  await sh("ip", "link", "set", name, "up");
}

/** An AF_PACKET socket bound to a tap: the frames on it as the kernel sees them. */
export class TapSocket {
  readonly #fd: number;

  constructor(name: string) {
    this.#fd = packetSocket(interfaceIndex(name));
  }

  /** The next frame that came in (from vhost-net) into `buf`: its length, or -1 for none yet. */
  recv(buf: Uint8Array): number {
    for (;;) {
      const n = packetRecv(this.#fd, buf);
      if (n < 0 || packetType() !== PACKET_OUTGOING) return n;
    }
  }

  /** Sends a frame out of the tap (to vhost-net). */
  send(frame: Uint8Array, len: number): void {
    packetSend(this.#fd, frame, len);
  }

  [Symbol.dispose](): void {
    closeQuietly(this.#fd);
  }
}

/**
 * Runs `body` with persistent tap `name` up, a {@linkcode TapSocket} on it and a vhost-net port
 * attached to it (`options` on top; notices collected), then closes both and removes the tap.
 */
export async function onVhostNetTap(
  name: string,
  options: VirtioNetOptions,
  body: (port: VirtioNet, socket: TapSocket, notices: string[]) => Promise<void>,
): Promise<void> {
  await persistentTap(name);
  const notices: string[] = [];
  try {
    using socket = new TapSocket(name);
    using port = VirtioNet.open({
      path: "/dev/vhost-net",
      tap: name,
      notice: (m) => notices.push(m),
      ...options,
    });
    await body(port, socket, notices);
  } finally {
    removeTap(name);
  }
}

/** Removes persistent tap `name`. */
export function removeTap(name: string): void {
  Tap.open(name, { persist: false }).close();
}

/** One counter of `/sys/class/net/<name>/statistics`. */
export function tapCounter(name: string, counter: string): number {
  return Number(Deno.readTextFileSync(`/sys/class/net/${name}/statistics/${counter}`));
}

/** Frame size number `i` of a run: cycles through 60..1514, both ends included. */
export function frameSize(i: number): number {
  return MIN_FRAME + ((i * 97) % (MAX_FRAME - MIN_FRAME + 1));
}

/**
 * Writes test frame `seq` of `len` bytes at `b[at]`: dst, src, EtherType 0x88B5, seq (u32 BE),
 * then a pattern derived from seq and position.
 */
export function writeTestFrame(
  b: Uint8Array,
  at: number,
  seq: number,
  len: number,
  dst: Uint8Array,
  src: Uint8Array,
): void {
  b.set(dst, at);
  b.set(src, at + 6);
  b[at + 12] = TEST_ETHERTYPE >> 8;
  b[at + 13] = TEST_ETHERTYPE & 255;
  new DataView(b.buffer, b.byteOffset).setUint32(at + 14, seq);
  for (let i = 18; i < len; i++) b[at + i] = (seq * 31 + i * 7) & 255;
}

/** The sequence number of a test frame, or -1 for any other frame. */
export function testFrameSeq(b: Uint8Array, at: number, len: number): number {
  if (len < 18 || b[at + 12] !== TEST_ETHERTYPE >> 8 || b[at + 13] !== (TEST_ETHERTYPE & 255)) {
    return -1;
  }
  return new DataView(b.buffer, b.byteOffset).getUint32(at + 14);
}

/** Index of the first byte where `len` bytes at `b[at]` differ from `expected`, or -1. */
export function firstDifference(b: Uint8Array, at: number, len: number, expected: Uint8Array) {
  if (len !== expected.length) return Math.min(len, expected.length);
  for (let i = 0; i < len; i++) if (b[at + i] !== expected[i]) return i;
  return -1;
}

/**
 * Polls `step` until it returns true or `timeoutMs` passes (generous bounds: the VM runs under
 * software emulation on a shared host); yields to the event loop between rounds. Returns whether
 * `step` succeeded; callers assert on what they counted, never on the time.
 */
export async function pollUntil(step: () => boolean, timeoutMs = 30_000): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (let round = 0;; round++) {
    if (step()) return true;
    if (performance.now() > deadline) return false;
    if ((round & 63) === 63) await new Promise((r) => setTimeout(r, 1));
  }
}

/** Number of memfd mappings in this process (`/proc/self/maps`): each open port has one. */
export function memfdMappings(): number {
  return Deno.readTextFileSync("/proc/self/maps").split("\n").filter((l) => l.includes("/memfd:"))
    .length;
}

/**
 * Prints `line` and appends it to the file named by env `VM_REPORT` (the guest prints that file
 * on the serial console after the run: the TAP reporter does not show test output).
 */
export function report(line: string): void {
  console.log(line);
  const path = Deno.env.get("VM_REPORT");
  if (path) Deno.writeTextFileSync(path, `${line}\n`, { append: true });
}

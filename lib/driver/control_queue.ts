/**
 * The driver side of the virtio-net control virtqueue (virtio 1.2 §5.1.6.5): one command at a
 * time, posted as one indirect table (§2.7.5.3 / §2.8.7) in a ring of the data queues' layout,
 * then a bounded wait for the device to return it with the ack byte written.
 *
 * ```
 *   send(class, command, data)
 *     slot: [table: readable {class, command, data} · writable {ack}] [command bytes] [ack 0xff]
 *     enqueue(table, INDIRECT) ─► notify ─► device: ack, used ─► dequeue ─► ack OK / ERR / garbage
 * ```
 *
 * The ack starts as 0xff, neither VIRTIO_NET_OK nor VIRTIO_NET_ERR, so a device that returns
 * the command without answering it is seen. A command the device never returns leaves the
 * queue unusable (its slot is the device's): later commands fail at once, naming the first.
 *
 * @module
 */

import type { SharedMemory } from "./shared_memory.ts";
import { driverQueueAt, RING_ALIGN, ringBytes } from "./driver_queue.ts";
import { writeIndirectEntry } from "../virtio/descriptor.ts";
import { PACKED_INDIRECT_TABLE } from "../virtio/packed_ring.ts";
import { SPLIT_INDIRECT_TABLE } from "../virtio/split_ring.ts";
import {
  CTRL_DATA_MAX,
  CTRL_HEADER,
  ctrlName,
  NET_ERR,
  NET_OK,
  writeCtrlCommand,
} from "../virtio/net_ctrl.ts";
import { type DriverQueue, VirtqueueError } from "../virtio/virtqueue.ts";

/** Descriptors in a control queue: one command is in flight at a time. */
export const CONTROL_QUEUE_SIZE = 8;
/** Bytes of the command slot: indirect table (2 entries), command, ack. */
const SLOT_BYTES = 64;
const TABLE_BYTES = 32;
const COMMAND_AT = 32;
const ACK_AT = COMMAND_AT + CTRL_HEADER + CTRL_DATA_MAX;
/** The ack byte before the device answers: neither VIRTIO_NET_OK nor VIRTIO_NET_ERR. */
const ACK_UNSET = 0xff;

/**
 * A control command that failed: the device answered VIRTIO_NET_ERR (`ack` 1), wrote some other
 * ack byte, or never returned it (`ack` -1).
 *
 * @example
 * ```ts
 * import { ControlCommandError } from "./control_queue.ts";
 * const e = new ControlCommandError("VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET", 1, "VIRTIO_NET_ERR");
 * console.assert(e.ack === 1 && e.message.startsWith("VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET"));
 * ```
 */
export class ControlCommandError extends Error {
  /** The command's spec name. */
  readonly command: string;
  /** The ack byte the device wrote, or -1 when it returned none. */
  readonly ack: number;
  /** Creates the error; the message reads `<command>: <what>`. */
  constructor(command: string, ack: number, what: string) {
    super(`${command}: ${what}`);
    this.name = "ControlCommandError";
    this.command = command;
    this.ack = ack;
  }
}

/** How a {@linkcode ControlQueue} is placed and served. */
export interface ControlQueueOptions {
  /** The driver's shared memory: the ring and the command slot are allocated in it. */
  memory: SharedMemory;
  /** Packed (§2.8) or split (§2.7) ring: the layout of the data queues. */
  packed: boolean;
  /** Called when the device wants a notification (§2.7.13.4 / §2.8.21.3). */
  notify: () => void;
  /** Longest wait for the device to return a command, ms (default 5000). */
  timeoutMs?: number;
  /** Why the device answered VIRTIO_NET_ERR, when it can say (appended to the error). */
  reason?: () => string;
}

/**
 * The driver side of a control virtqueue: {@linkcode send} posts a command and waits (bounded)
 * for the ack.
 *
 * @example
 * ```ts ignore
 * import { ControlQueue } from "./control_queue.ts";
 * import { NetCtrl } from "../virtio/net_ctrl.ts";
 * const cvq = new ControlQueue({ memory, packed: true, notify: () => device.serve() });
 * cvq.send(NetCtrl.RX, NetCtrl.RX_PROMISC, new Uint8Array([1]));
 * ```
 */
export class ControlQueue {
  /** The ring, for the device side (its `addresses`). */
  readonly queue: DriverQueue;
  /** Byte offset of the ring block in the memory. */
  readonly ringAt: number;
  readonly #bytes: Uint8Array;
  readonly #slot: number;
  readonly #slotAddr: number;
  readonly #packed: boolean;
  readonly #notify: () => void;
  readonly #timeoutMs: number;
  readonly #reason: () => string;
  readonly #bufs = new Uint32Array(1);
  readonly #lens = new Uint32Array(1);
  /** Why the queue is unusable (a command never came back), or null. */
  #broken: string | null = null;

  /**
   * Allocates the ring and the command slot in `options.memory` and resets the ring.
   *
   * @example
   * ```ts ignore
   * const cvq = new ControlQueue({ memory, packed: false, notify: () => {} });
   * ```
   */
  constructor(options: ControlQueueOptions) {
    const { memory, packed } = options;
    this.#packed = packed;
    this.#notify = options.notify;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#reason = options.reason ?? (() => "");
    this.ringAt = memory.alloc(ringBytes(packed, CONTROL_QUEUE_SIZE), RING_ALIGN);
    this.#slot = memory.alloc(SLOT_BYTES, 64);
    this.#slotAddr = memory.addr + this.#slot;
    this.#bytes = new Uint8Array(memory.buffer);
    // Buffer 0 is the slot's indirect table.
    const buffers = {
      addrLo: new Uint32Array([this.#slotAddr % 0x1_0000_0000]),
      addrHi: new Uint32Array([Math.floor(this.#slotAddr / 0x1_0000_0000)]),
    };
    this.queue = driverQueueAt(memory, this.ringAt, {
      packed,
      size: CONTROL_QUEUE_SIZE,
      name: "ctrl",
      buffers,
      eventIdx: false,
      inOrder: false,
      indirect: true,
    });
  }

  /**
   * Posts `class`/`command` with `data`, notifies the device and waits for it to return the
   * command. Returns on VIRTIO_NET_OK; throws a {@linkcode ControlCommandError} on
   * VIRTIO_NET_ERR, on any other ack byte, or when the device returns nothing within the
   * timeout (the queue is unusable from then on), and a `VirtqueueError` when the device broke
   * a ring rule.
   *
   * @example
   * ```ts ignore
   * cvq.send(NetCtrl.MQ, NetCtrl.MQ_VQ_PAIRS_SET, new Uint8Array([2, 0]));
   * ```
   */
  send(cls: number, command: number, data: Uint8Array): void {
    const name = ctrlName(cls, command);
    if (this.#broken !== null) {
      throw new ControlCommandError(name, -1, `not sent: ${this.#broken}; reopen the port`);
    }
    const b = this.#bytes, slot = this.#slot;
    const length = writeCtrlCommand(b, slot + COMMAND_AT, cls, command, data);
    b[slot + ACK_AT] = ACK_UNSET;
    const table = b.subarray(slot, slot + TABLE_BYTES);
    const format = this.#packed ? PACKED_INDIRECT_TABLE : SPLIT_INDIRECT_TABLE;
    writeIndirectEntry(table, format, 0, this.#slotAddr + COMMAND_AT, length, false, false);
    writeIndirectEntry(table, format, 1, this.#slotAddr + ACK_AT, 1, true, true);
    const bufs = this.#bufs, lens = this.#lens;
    bufs[0] = 0;
    lens[0] = TABLE_BYTES;
    // enqueue publishes with a release store after the table and command bytes are written.
    if (this.queue.enqueue(bufs, lens, 0, 1, true) !== 1) {
      throw new ControlCommandError(name, -1, "not sent: the control queue is full");
    }
    try {
      if (this.queue.needsNotify()) this.#notify();
    } catch (e) {
      this.#broken = `the device failed on ${name}`;
      throw e;
    }
    const deadline = performance.now() + this.#timeoutMs;
    let got = 0;
    try {
      while ((got = this.queue.dequeue(bufs, lens, 1)) === 0 && performance.now() < deadline);
    } catch (e) {
      if (e instanceof VirtqueueError) this.#broken = `the device broke a ring rule on ${name}`;
      throw e;
    }
    if (got === 0) {
      this.#broken = `${name} was never returned by the device`;
      throw new ControlCommandError(
        name,
        -1,
        `the device returned no answer within ${this.#timeoutMs} ms; the control queue is ` +
          "unusable until the port is reopened",
      );
    }
    // dequeue's acquire load of the used entry orders this read after the device's ack store.
    const ack = b[slot + ACK_AT];
    if (lens[0] === 0 || ack === ACK_UNSET) {
      throw new ControlCommandError(name, -1, "the device returned the command without an ack");
    }
    if (ack === NET_OK) return;
    if (ack === NET_ERR) {
      const why = this.#reason();
      throw new ControlCommandError(
        name,
        ack,
        `the device answered VIRTIO_NET_ERR${why === "" ? "" : `: ${why}`}`,
      );
    }
    throw new ControlCommandError(
      name,
      ack,
      `ack byte 0x${ack.toString(16)} is neither VIRTIO_NET_OK (0) nor VIRTIO_NET_ERR (1)`,
    );
  }
}

/**
 * The virtqueue descriptor both layouts share (virtio 1.2 §2.7.5 split, §2.8.13 packed), its
 * flags, and what a device side does with one: store it as a {@linkcode DescriptorChain}
 * segment, and walk the indirect descriptor table it may name (§2.7.5.3 split, §2.8.7 packed).
 *
 * ```
 *   descriptor: addr u64 @0 | len u32 @8 | split: flags u16 @12, next u16 @14
 *                                        | packed: id u16 @12, flags u16 @14
 *   INDIRECT ──► table of 16-byte descriptors in driver memory ──► chain segments
 *                split: a chain of its own from entry 0, linked by next
 *                packed: every entry, in order
 * ```
 *
 * @module
 */

import { type AddressTranslator, type DescriptorChain, VirtqueueError } from "./virtqueue.ts";

/** VIRTQ_DESC_F_NEXT: the chain goes on (split: at `next`; packed: in the next slot). */
export const DESC_F_NEXT = 1;
/** VIRTQ_DESC_F_WRITE: the buffer is device-writable (device-readable otherwise). */
export const DESC_F_WRITE = 2;
/** VIRTQ_DESC_F_INDIRECT: the buffer is a table of descriptors (§2.7.5.3, §2.8.7). */
export const DESC_F_INDIRECT = 4;
/** Bytes of one descriptor, in a ring, a table or an indirect table. */
export const DESC_BYTES = 16;

/**
 * Reads a little-endian u32 at any byte offset (indirect tables need not be 4-byte aligned in
 * the region's view).
 *
 * @example
 * ```ts
 * import { readLe32 } from "./descriptor.ts";
 * console.assert(readLe32(new Uint8Array([0, 0x78, 0x56, 0x34, 0x12]), 1) === 0x12345678);
 * ```
 */
export function readLe32(bytes: Uint8Array, offset: number): number {
  return (bytes[offset] | bytes[offset + 1] << 8 | bytes[offset + 2] << 16 |
    bytes[offset + 3] << 24) >>> 0;
}

/**
 * The rule broken by a descriptor whose buffer is not inside the memory table.
 *
 * @example
 * ```ts
 * import { outsideMemoryRule } from "./descriptor.ts";
 * console.assert(
 *   outsideMemoryRule("descriptor 3", 0x1000, 1, 64) ===
 *     "descriptor 3: address 0x100001000 len 64 is outside the memory table",
 * );
 * ```
 */
export function outsideMemoryRule(what: string, lo: number, hi: number, len: number): string {
  const addr = hi === 0 ? lo.toString(16) : hi.toString(16) + lo.toString(16).padStart(8, "0");
  return `${what}: address 0x${addr} len ${len} is outside the memory table`;
}

/**
 * Stores segment `seg` of `chain`: `len` bytes at `offset` in memory region `region` (as
 * {@linkcode AddressTranslator.translate} found them), writable when `flags` has WRITE.
 *
 * @example
 * ```ts
 * import { DESC_F_WRITE, setSegment } from "./descriptor.ts";
 * import { DescriptorChain } from "./virtqueue.ts";
 * const chain = new DescriptorChain(4);
 * setSegment(chain, 0, 0, 0x100, 64, DESC_F_WRITE);
 * console.assert(chain.offset[0] === 0x100 && chain.writable[0] === 1);
 * ```
 */
export function setSegment(
  chain: DescriptorChain,
  seg: number,
  region: number,
  offset: number,
  len: number,
  flags: number,
): void {
  chain.region[seg] = region;
  chain.offset[seg] = offset;
  chain.len[seg] = len;
  chain.writable[seg] = (flags & DESC_F_WRITE) !== 0 ? 1 : 0;
}

/**
 * The error for a `chain` without room for the longest chain a queue of `size` accepts (the
 * queue size bounds it: §2.7.5.3.1, §2.8.6): a caller's mistake, not the peer's. Device sides
 * test `chain.len.length < size` on every pop and throw this.
 *
 * @example
 * ```ts
 * import { chainRoomError } from "./descriptor.ts";
 * import { DescriptorChain } from "./virtqueue.ts";
 * const e = chainRoomError(new DescriptorChain(8), 256, "rx0");
 * console.assert(e.message === "virtqueue rx0: DescriptorChain holds 8 segments, the queue needs 256");
 * ```
 */
export function chainRoomError(chain: DescriptorChain, size: number, queue: string): RangeError {
  return new RangeError(
    `virtqueue ${queue}: DescriptorChain holds ${chain.len.length} segments, the queue needs ${size}`,
  );
}

/** Where the layouts' indirect tables differ (§2.7.5.3 split, §2.8.7 packed). */
export interface IndirectFormat {
  /** Byte offset of the flags in a table descriptor: 12 split, 14 packed. */
  readonly flagsAt: number;
  /**
   * Split: the table is a chain of its own from entry 0, linked by NEXT and `next`. Packed:
   * every entry is used, in order (NEXT and id are ignored).
   */
  readonly linked: boolean;
  /** Section the table length rule cites. */
  readonly lengthSection: string;
  /** Section the rule against an indirect descriptor inside a table cites. */
  readonly nestedSection: string;
}

/**
 * Writes entry `k` of an indirect table in `format` (the driver side of §2.7.5.3 / §2.8.7):
 * address, length, WRITE when `writable`; split tables link entry `k` to `k + 1` with NEXT
 * unless it is the `last`.
 *
 * @example
 * ```ts
 * import { DESC_F_NEXT, writeIndirectEntry } from "./descriptor.ts";
 * const split = { flagsAt: 12, linked: true, lengthSection: "", nestedSection: "" };
 * const table = new Uint8Array(32);
 * writeIndirectEntry(table, split, 0, 0x1000, 4, false, false);
 * console.assert(table[12] === DESC_F_NEXT && table[14] === 1 && table[8] === 4);
 * ```
 */
export function writeIndirectEntry(
  table: Uint8Array,
  format: IndirectFormat,
  k: number,
  addr: number,
  len: number,
  writable: boolean,
  last: boolean,
): void {
  const view = new DataView(table.buffer, table.byteOffset + k * DESC_BYTES, DESC_BYTES);
  view.setUint32(0, addr % 0x1_0000_0000, true);
  view.setUint32(4, Math.floor(addr / 0x1_0000_0000), true);
  view.setUint32(8, len, true);
  const next = format.linked && !last;
  view.setUint16(format.flagsAt, (writable ? DESC_F_WRITE : 0) | (next ? DESC_F_NEXT : 0), true);
  // Split: `next` at 14 (flags at 12); packed: the entry's id at 12, ignored in a table.
  view.setUint16(format.linked ? 14 : 12, next ? k + 1 : 0, true);
}

/**
 * Walks the indirect table that descriptor `desc` names (`[hi:lo, +len)`) into `chain` from
 * segment `segs` on, and returns the new segment count. Checks every rule on the table (length
 * a non-zero multiple of 16, inside memory, no nested table, every entry inside memory, the
 * chain no longer than the queue `size`; split: `next` inside the table, no loop) and throws
 * {@linkcode VirtqueueError} naming the one broken.
 *
 * @param format the layout's table format.
 * @param chain where the segments go (room for `size`).
 * @param segs segments already in `chain` (direct descriptors before the table, split only).
 * @param memory translates the table's and its entries' addresses.
 * @param queue queue name for the error.
 * @param size queue size.
 * @param desc the descriptor naming the table (split: its index; packed: its ring slot).
 * @example
 * ```ts
 * import { DESC_F_WRITE, readIndirect } from "./descriptor.ts";
 * import { DescriptorChain, LocalMemory } from "./virtqueue.ts";
 * const mem = new Uint8Array(4096);
 * const table = new DataView(mem.buffer, 0x100, 32); // two packed-format entries
 * table.setUint32(0, 0x1400, true), table.setUint32(8, 60, true);
 * table.setUint32(16, 0x1800, true), table.setUint32(24, 1500, true);
 * table.setUint16(30, DESC_F_WRITE, true);
 * const packed = { flagsAt: 14, linked: false, lengthSection: "§2.8.7", nestedSection: "§2.8.19" };
 * const chain = new DescriptorChain(8);
 * const segs = readIndirect(packed, chain, 0, new LocalMemory(mem, 0x1000), "tx0", 8, 0, 0x1100, 0, 32);
 * console.assert(segs === 2 && chain.len[1] === 1500 && chain.writable[1] === 1);
 * ```
 */
export function readIndirect(
  format: IndirectFormat,
  chain: DescriptorChain,
  segs: number,
  memory: AddressTranslator,
  queue: string,
  size: number,
  desc: number,
  lo: number,
  hi: number,
  len: number,
): number {
  if (len === 0 || len % DESC_BYTES !== 0) {
    throw new VirtqueueError(
      queue,
      `descriptor ${desc}: indirect table length ${len} is not a non-zero multiple of 16 ` +
        `(${format.lengthSection})`,
    );
  }
  const entries = len / DESC_BYTES;
  const linked = format.linked;
  if (!linked && segs + entries > size) {
    throw new VirtqueueError(
      queue,
      `descriptor ${desc}: chain with an indirect table of ${entries} descriptors is longer ` +
        `than the queue size ${size}`,
    );
  }
  const r = memory.translate(lo | 0, hi, len | 0);
  if (r < 0) {
    throw new VirtqueueError(
      queue,
      outsideMemoryRule(`indirect table of descriptor ${desc}`, lo, hi, len),
    );
  }
  const table = memory.bytes(r);
  const start = memory.offset;
  const flagsAt = format.flagsAt;
  // §2.7.5.3.2: the WRITE flag of the descriptor naming the table is ignored. §2.8.7: WRITE is
  // the only valid flag of a packed table's descriptors.
  let k = 0;
  for (let walked = 1;; walked++) {
    // Reached only by a linked table: sequential entries stop at `entries`, checked above.
    if (walked > entries || segs === size) {
      throw new VirtqueueError(
        queue,
        `indirect table of descriptor ${desc}: chain is longer than the table (${entries}) or ` +
          `the queue size (${size}) (a loop?)`,
      );
    }
    const o = start + k * DESC_BYTES;
    const elo = readLe32(table, o), ehi = readLe32(table, o + 4), elen = readLe32(table, o + 8);
    const eflags = table[o + flagsAt] | table[o + flagsAt + 1] << 8;
    if ((eflags & DESC_F_INDIRECT) !== 0) {
      throw new VirtqueueError(
        queue,
        `indirect descriptor ${k} of descriptor ${desc}: nested indirect table ` +
          `(${format.nestedSection})`,
      );
    }
    const er = memory.translate(elo | 0, ehi, elen | 0);
    if (er < 0) {
      throw new VirtqueueError(
        queue,
        outsideMemoryRule(`indirect descriptor ${k} of descriptor ${desc}`, elo, ehi, elen),
      );
    }
    setSegment(chain, segs, er, memory.offset, elen, eflags);
    segs++;
    if (!linked) {
      if (++k === entries) break;
      continue;
    }
    if ((eflags & DESC_F_NEXT) === 0) break;
    const next = table[o + 14] | table[o + 15] << 8;
    if (next >= entries) {
      throw new VirtqueueError(
        queue,
        `indirect descriptor ${k} of descriptor ${desc}: next ${next} is outside the table ` +
          `of ${entries}`,
      );
    }
    k = next;
  }
  return segs;
}

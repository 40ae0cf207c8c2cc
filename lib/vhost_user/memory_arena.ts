/**
 * One address range for the memory of several frontends (a forwarder's two ports): every region
 * a frontend sends with SET_MEM_TABLE is mapped at its own place inside it, and one ArrayBuffer
 * spans them all. A frame then goes from one frontend's memory into another's with one
 * `copyWithin` (a memmove: ~50 ns for 1518 bytes) instead of a JavaScript loop over words (~250
 * ns), since V8 has no copy between two ArrayBuffers that does not allocate a view.
 *
 * ```
 *   reserved range (MAP_NORESERVE, touched pages only)               one ArrayBuffer
 *   [ A region 0 | A region 1 | B region 0 | (ended) zeros | ... never used yet ... ]
 *     place() ──► mmap MAP_FIXED of the region's fd        release() ──► zero pages back
 * ```
 *
 * Places are never reused: a view kept from a session that ended reads zeros, never the memory
 * of a later frontend. When the range is used up, {@linkcode MemoryArena.place} says so and the
 * region is mapped on its own (copies into it take the loop again).
 *
 * @module
 */

import {
  type Mapping,
  mmapSharedAt,
  munmap,
  releaseRange,
  reserveAddressRange,
} from "../../ffi/memory.ts";

/** Address space reserved by default: 1 TiB (no memory: only touched pages cost any). */
export const DEFAULT_ARENA_BYTES = 2 ** 40;

/**
 * An address range frontends' regions are mapped into.
 *
 * @example
 * ```ts
 * import { MemoryArena } from "./memory_arena.ts";
 * using arena = MemoryArena.reserve(1 << 30);
 * console.assert(arena.bytes.length === 1 << 30 && arena.used === 0);
 * ```
 */
export class MemoryArena {
  /** Every byte of the range (regions are views into its buffer). */
  readonly bytes: Uint8Array;
  readonly #range: Mapping;
  #next = 0;
  #closed = false;

  private constructor(range: Mapping) {
    this.#range = range;
    this.bytes = new Uint8Array(range.buffer);
  }

  /**
   * Reserves `size` bytes of address space (default {@linkcode DEFAULT_ARENA_BYTES}). Throws a
   * `SyscallError` for "mmap" when the kernel refuses (e.g. strict overcommit).
   */
  static reserve(size: number = DEFAULT_ARENA_BYTES): MemoryArena {
    return new MemoryArena(reserveAddressRange(size));
  }

  /** The ArrayBuffer over the whole range. */
  get buffer(): ArrayBuffer {
    return this.#range.buffer;
  }

  /** Bytes of the range handed out so far (places are not reused). */
  get used(): number {
    return this.#next;
  }

  /**
   * Maps `length` bytes of `fd` (a multiple of `page`, its page size) at the next free place
   * aligned to `page`; returns that place's offset in {@linkcode bytes}, or -1 when the range
   * has no room left. Throws the `SyscallError` of mmap (e.g. EINVAL for a wrong page size);
   * nothing is used up then.
   */
  place(fd: number, length: number, page: number, hint?: string): number {
    if (this.#closed) throw new RangeError("MemoryArena.place: the arena is closed");
    const at = Math.ceil(this.#next / page) * page;
    if (at + length > this.#range.size) return -1;
    mmapSharedAt(this.#range, at, fd, length, hint);
    this.#next = at + length;
    return at;
  }

  /** Unmaps what {@linkcode place} mapped at `offset`; zero pages take its place. */
  release(offset: number, length: number): void {
    if (!this.#closed) releaseRange(this.#range, offset, length);
  }

  /** Unmaps the whole range (views over it read nothing from then on). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    munmap(this.#range);
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * The device side of VHOST_USER_SET_MEM_TABLE: maps the frontend's memory regions (one fd each)
 * and translates the frontend's addresses into byte offsets of those mappings.
 *
 * ```
 *   frontend memory table               this process
 *   region r: guest_phys_addr ──┐
 *             userspace_addr  ──┼──► mmap(fd_r, mmap_offset + memory_size) ─► bytes(r)
 *             memory_size     ──┘         (view starts at mmap_offset)
 *   descriptor addr (GPA) ── translate()   ──► (r, offset)
 *   ring addr (user VA)   ── translateVA() ──► (r, offset)
 * ```
 *
 * Given a {@linkcode MemoryArena}, the regions are mapped inside its one address range (a
 * forwarder's ports share one, and copies between them are `copyWithin`); else each on its own.
 *
 * vhost-user.rst "Memory access": without VIRTIO_F_IOMMU_PLATFORM, guest addresses (what
 * descriptors carry) map through `guest_phys_addr`, user addresses (what SET_VRING_ADDR
 * carries) through `userspace_addr`. virtio-user frontends (DPDK, this project) use the same
 * value for both; QEMU does not.
 *
 * @module
 */

import { closeQuietly } from "../../ffi/fd.ts";
import { SyscallError } from "../../ffi/libc.ts";
import { type Mapping, mmapShared, munmap } from "../../ffi/memory.ts";
import type { AddressTranslator } from "../virtio/virtqueue.ts";
import type { MemoryArena } from "./memory_arena.ts";
import { type MemoryTableRegion, VHOST_MEMORY_MAX_NREGIONS } from "./message.ts";

/** Addresses at or above this are not supported (numbers stay exact below 2^53). */
const ADDR_LIMIT = 2 ** 53;
const TWO_POW_32 = 0x1_0000_0000;
/** `addrHi` values at or above this put the address at or beyond 2^53. */
const HI_LIMIT = 0x20_0000;
/** Page sizes tried, smallest first, when a mapping length must be page-aligned (hugetlbfs). */
const PAGE_SIZES = [4096, 2 * 1024 * 1024, 1024 * 1024 * 1024];
const EINVAL = 22;

/** Error in a memory table sent by the frontend; the message names the region and the rule. */
export class GuestMemoryError extends Error {
  /**
   * Builds `memory table: <rule>`.
   *
   * @example
   * ```ts
   * import { GuestMemoryError } from "./guest_memory.ts";
   * const e = new GuestMemoryError("region 1 has size 0");
   * console.assert(e.message === "memory table: region 1 has size 0");
   * ```
   */
  constructor(rule: string) {
    super(`memory table: ${rule}`);
    this.name = "GuestMemoryError";
  }
}

/** One mapped region, with its addresses as numbers (below 2^53). */
export interface GuestRegion {
  /** First guest physical address. */
  readonly guestPhysAddr: number;
  /** First frontend virtual address. */
  readonly userspaceAddr: number;
  /** Bytes in the region. */
  readonly size: number;
  /** Offset of the region in its fd. */
  readonly mmapOffset: number;
}

/**
 * The frontend's memory as the device sees it. {@linkcode translate} runs once per descriptor:
 * it checks the region of the last hit first, allocates nothing and uses no `BigInt`.
 *
 * @example
 * ```ts ignore
 * import { GuestMemory } from "./guest_memory.ts";
 * const mem = GuestMemory.map(regions, fds); // owns fds from here on
 * const r = mem.translate(addrLo, addrHi, 64);
 * if (r >= 0) console.log(mem.bytes(r)[mem.offset]);
 * mem.close();
 * ```
 */
export class GuestMemory implements AddressTranslator {
  /** Byte offset set by the last successful {@linkcode translate} or {@linkcode translateVA}. */
  offset = 0;
  /** The regions, in memory-table order. */
  readonly regions: readonly GuestRegion[];
  readonly #gpaStart: Float64Array;
  readonly #gpaEnd: Float64Array;
  readonly #vaStart: Float64Array;
  readonly #vaEnd: Float64Array;
  readonly #views: Uint8Array[];
  readonly #mappings: RegionMapping[];
  readonly #fds: number[];
  #last = 0;
  #closed = false;

  private constructor(
    regions: GuestRegion[],
    mappings: RegionMapping[],
    views: Uint8Array[],
    fds: number[],
  ) {
    const n = regions.length;
    this.regions = regions;
    this.#mappings = mappings;
    this.#views = views;
    this.#fds = fds;
    this.#gpaStart = new Float64Array(n);
    this.#gpaEnd = new Float64Array(n);
    this.#vaStart = new Float64Array(n);
    this.#vaEnd = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const r = regions[i];
      this.#gpaStart[i] = r.guestPhysAddr;
      this.#gpaEnd[i] = r.guestPhysAddr + r.size;
      this.#vaStart[i] = r.userspaceAddr;
      this.#vaEnd[i] = r.userspaceAddr + r.size;
    }
  }

  /**
   * Checks a memory table and maps every region. Takes ownership of `fds` (one per region, in
   * order): they are kept open until {@linkcode close}, and closed at once when this throws.
   * Throws {@linkcode GuestMemoryError} for: no regions or more than 8, fd count different from
   * the region count, a region of size 0, `mmap_offset + memory_size` overflowing, addresses at
   * or beyond 2^53, overlapping regions (guest physical or user ranges); `SyscallError` when
   * mmap fails. With `arena`, the regions are mapped inside it while it has room.
   *
   * @example
   * ```ts ignore
   * import { GuestMemory } from "./guest_memory.ts";
   * const mem = GuestMemory.map([{ guestPhysAddr: 0x1000n, memorySize: 4096n,
   *   userspaceAddr: 0x1000n, mmapOffset: 0n }], [memfd]);
   * ```
   */
  static map(
    table: readonly MemoryTableRegion[],
    fds: readonly number[],
    arena?: MemoryArena,
  ): GuestMemory {
    const owned = [...fds];
    const mappings: RegionMapping[] = [];
    try {
      const regions = checkTable(table, owned.length);
      const views: Uint8Array[] = [];
      for (let i = 0; i < regions.length; i++) {
        const r = regions[i];
        const m = mapRegion(owned[i], r.mmapOffset + r.size, i, arena);
        mappings.push(m);
        views.push(new Uint8Array(m.buffer, m.offset + r.mmapOffset, r.size));
      }
      return new GuestMemory(regions, mappings, views, owned);
    } catch (e) {
      for (const m of mappings) unmapQuietly(m);
      for (const fd of owned) closeQuietly(fd);
      throw e;
    }
  }

  /** Number of regions. */
  get count(): number {
    return this.regions.length;
  }

  /**
   * Finds the region holding all of the guest physical range `[addr, addr + len)`, where
   * `addr = addrHi * 2**32 + addrLo`; returns its number and sets {@linkcode offset}, or -1.
   * Addresses at or beyond 2^53 (`addrHi >= 2**21`) are never found.
   */
  translate(addrLo: number, addrHi: number, len: number): number {
    if (addrHi >= HI_LIMIT) return -1;
    len >>>= 0; // callers pass 32-bit values signed (AddressTranslator.translate)
    const addr = addrHi * TWO_POW_32 + (addrLo >>> 0);
    const start = this.#gpaStart, end = this.#gpaEnd;
    // Last hit first: consecutive descriptors almost always share a region.
    let r = this.#last;
    // `len <= end - addr` rather than `addr + len <= end`: the difference is exact.
    if (addr >= start[r] && len <= end[r] - addr) {
      this.offset = addr - start[r];
      return r;
    }
    const n = start.length;
    for (r = 0; r < n; r++) {
      if (addr >= start[r] && len <= end[r] - addr) {
        this.#last = r;
        this.offset = addr - start[r];
        return r;
      }
    }
    return -1;
  }

  /**
   * Like {@linkcode translate} for a frontend virtual address (`userspace_addr` ranges), as
   * SET_VRING_ADDR carries; `addr` is a number below 2^53.
   *
   * @example
   * ```ts ignore
   * const r = mem.translateVA(descAddr, 16 * 256);
   * if (r < 0) throw new Error("descriptor table outside guest memory");
   * const desc = mem.bytes(r).subarray(mem.offset, mem.offset + 16 * 256);
   * ```
   */
  translateVA(addr: number, len: number): number {
    if (!(addr >= 0 && addr < ADDR_LIMIT)) return -1;
    const start = this.#vaStart, end = this.#vaEnd;
    for (let r = 0; r < start.length; r++) {
      if (addr >= start[r] && len <= end[r] - addr) {
        this.offset = addr - start[r];
        return r;
      }
    }
    return -1;
  }

  /**
   * A view of `len` bytes at frontend virtual address `addr`, or null when no single region
   * holds them.
   */
  viewVA(addr: number, len: number): Uint8Array | null {
    const r = this.translateVA(addr, len);
    return r < 0 ? null : this.#views[r].subarray(this.offset, this.offset + len);
  }

  /** Bytes of region `r`, starting at its first byte (`mmap_offset` into its fd). */
  bytes(r: number): Uint8Array {
    return this.#views[r];
  }

  /**
   * The fd backing region `r` (still owned by this memory), e.g. to dup it for another thread
   * that maps the same table.
   */
  fd(r: number): number {
    return this.#fds[r];
  }

  /** True after {@linkcode close}. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Unmaps every region and closes its fd. Idempotent. Views must not be used afterwards. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const m of this.#mappings) unmapQuietly(m);
    for (const fd of this.#fds) closeQuietly(fd);
    this.#mappings.length = 0;
    this.#fds.length = 0;
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function checkTable(table: readonly MemoryTableRegion[], fdCount: number): GuestRegion[] {
  const n = table.length;
  if (n === 0 || n > VHOST_MEMORY_MAX_NREGIONS) {
    throw new GuestMemoryError(
      `${n} regions; between 1 and ${VHOST_MEMORY_MAX_NREGIONS} are allowed`,
    );
  }
  if (fdCount !== n) {
    throw new GuestMemoryError(`${n} regions but ${fdCount} file descriptors (one per region)`);
  }
  const regions: GuestRegion[] = [];
  for (let i = 0; i < n; i++) {
    const t = table[i];
    const hex = (v: bigint) => "0x" + v.toString(16);
    if (t.memorySize === 0n) throw new GuestMemoryError(`region ${i} has size 0`);
    const limit = BigInt(ADDR_LIMIT);
    if (t.mmapOffset + t.memorySize >= 1n << 64n) {
      throw new GuestMemoryError(
        `region ${i}: mmap_offset ${hex(t.mmapOffset)} + memory_size ${
          hex(t.memorySize)
        } overflows 64 bits`,
      );
    }
    if (t.mmapOffset + t.memorySize > limit) {
      throw new GuestMemoryError(
        `region ${i}: mmap_offset + memory_size = ${
          hex(t.mmapOffset + t.memorySize)
        } is beyond 2^53`,
      );
    }
    for (
      const [what, start] of [["guest_phys_addr", t.guestPhysAddr], [
        "userspace_addr",
        t.userspaceAddr,
      ]] as const
    ) {
      if (start + t.memorySize > limit) {
        throw new GuestMemoryError(
          `region ${i}: ${what} ${hex(start)} + size ${hex(t.memorySize)} ends beyond 2^53`,
        );
      }
    }
    regions.push({
      guestPhysAddr: Number(t.guestPhysAddr),
      userspaceAddr: Number(t.userspaceAddr),
      size: Number(t.memorySize),
      mmapOffset: Number(t.mmapOffset),
    });
  }
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const a = regions[i], b = regions[j];
      if (overlaps(a.guestPhysAddr, b.guestPhysAddr, a.size, b.size)) {
        throw new GuestMemoryError(
          `regions ${i} and ${j} overlap in guest physical addresses ` +
            `(0x${a.guestPhysAddr.toString(16)}+0x${a.size.toString(16)}, ` +
            `0x${b.guestPhysAddr.toString(16)}+0x${b.size.toString(16)})`,
        );
      }
      if (overlaps(a.userspaceAddr, b.userspaceAddr, a.size, b.size)) {
        throw new GuestMemoryError(
          `regions ${i} and ${j} overlap in user addresses ` +
            `(0x${a.userspaceAddr.toString(16)}+0x${a.size.toString(16)}, ` +
            `0x${b.userspaceAddr.toString(16)}+0x${b.size.toString(16)})`,
        );
      }
    }
  }
  return regions;
}

function overlaps(a: number, b: number, aSize: number, bSize: number): boolean {
  return a < b + bSize && b < a + aSize;
}

/**
 * Where a region is mapped: its own mapping (offset 0 of its buffer), or a place in an arena's
 * buffer. Own mappings are detached at unmap (stale views then read nothing); an arena's place
 * gets zero pages back (stale views read zeros).
 */
interface RegionMapping {
  buffer: ArrayBuffer;
  offset: number;
  own: Mapping | null;
  arena: MemoryArena | null;
  length: number;
}

/**
 * Maps `[0, length)` of `fd`, inside `arena` while it has room. hugetlbfs files only map whole
 * huge pages, so the length is rounded up to the file's block size (st_blksize, as DPDK does).
 * The fd is stat'ed through `/proc/self/fd` (needs read permission there); that also checks the
 * region lies inside the file, since touching a mapping beyond end of file raises SIGBUS.
 * Without the permission, page sizes are tried in turn until mmap stops answering EINVAL.
 */
function mapRegion(
  fd: number,
  length: number,
  index: number,
  arena: MemoryArena | undefined,
): RegionMapping {
  const hint = `mapping memory region ${index} (fd ${fd}, ${length} bytes) sent by the frontend`;
  const info = fileInfo(fd);
  if (info !== null && info.isFile && length > info.size) {
    throw new GuestMemoryError(
      `region ${index}: mmap_offset + memory_size = ${length} bytes, but its file has only ` +
        `${info.size}`,
    );
  }
  // A hugetlbfs file's mappings must be whole hugepages: its st_blksize, else try each size.
  const pages = info !== null ? [info.blksize > 0 ? info.blksize : 4096] : PAGE_SIZES;
  let lastError: unknown = null;
  for (const page of pages) {
    const rounded = Math.ceil(length / page) * page;
    try {
      const at = arena === undefined ? -1 : arena.place(fd, rounded, page, hint);
      if (at >= 0) {
        return { buffer: arena!.buffer, offset: at, own: null, arena: arena!, length: rounded };
      }
      const own = mmapShared(fd, rounded, 0, hint); // no arena, or it is full
      return { buffer: own.buffer, offset: 0, own, arena: null, length: rounded };
    } catch (e) {
      if (!(e instanceof SyscallError) || e.errno !== EINVAL || pages.length === 1) throw e;
      lastError = e;
    }
  }
  throw lastError;
}

function fileInfo(fd: number): { isFile: boolean; size: number; blksize: number } | null {
  const path = `/proc/self/fd/${fd}`;
  try {
    // Ask first: a missing permission would otherwise prompt on a terminal.
    if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return null;
    const st = Deno.statSync(path);
    return { isFile: st.isFile, size: st.size, blksize: st.blksize ?? 0 };
  } catch {
    return null; // no --allow-read for /proc/self/fd, or no procfs
  }
}

function unmapQuietly(m: RegionMapping): void {
  try {
    if (m.own !== null) munmap(m.own);
    else m.arena!.release(m.offset, m.length);
  } catch { /* cleanup path */ }
}

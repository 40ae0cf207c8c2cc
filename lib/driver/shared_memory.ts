/**
 * Shared memory for rings and packet buffers: one file-backed mapping the backend can map too
 * (vhost-user passes its fd; vhost-net reads this process's memory directly).
 *
 * Backing, in order of preference: 2 MB hugepages from `memfd_create(MFD_HUGETLB)` or a file in a
 * hugetlbfs mount, else ordinary pages from `memfd_create` with a one-line notice.
 *
 * ```
 *   SharedMemory [ rx ring | tx ring | ... | buffer 0 | buffer 1 | ... ]
 *                ^ addr (process VA = what descriptors and the memory table carry)
 * ```
 *
 * @module
 */

import { closeQuietly, O_CLOEXEC, O_CREAT, O_RDWR, openFile, unlink } from "../../ffi/fd.ts";
import {
  addSeals,
  F_SEAL_SHRINK,
  freeHugePages,
  ftruncate,
  hugePageSize,
  type Mapping,
  memfdCreate,
  MFD_ALLOW_SEALING,
  MFD_CLOEXEC,
  MFD_HUGETLB,
  mmapShared,
  munmap,
} from "../../ffi/memory.ts";
import { SyscallError } from "../../ffi/libc.ts";
import type { MemoryRegion } from "../virtio/transport.ts";

/** How to back a {@linkcode SharedMemory}. */
export interface SharedMemoryOptions {
  /**
   * `true`: hugepages or fail; `false`: ordinary pages; `"auto"` (default): hugepages when some
   * are free, else ordinary pages with a notice on stderr.
   */
  hugepages?: boolean | "auto";
  /** Put the memory in a file inside this hugetlbfs mount instead of a hugetlb memfd. */
  hugetlbfs?: string;
  /** Name shown in /proc/PID/maps and fd listings. */
  name?: string;
  /** Receives the fallback notice (default: `console.error`). */
  notice?: (message: string) => void;
}

/** Hint appended to hugepage failures. */
const HUGEPAGE_HINT =
  "reserve hugepages (echo 512 > /proc/sys/vm/nr_hugepages, as root) or pass hugepages:false";

/**
 * A file-backed shared mapping with a bump allocator for rings and buffers.
 *
 * @example
 * ```ts ignore
 * import { SharedMemory } from "./shared_memory.ts";
 * using mem = SharedMemory.create(4 << 20, { hugepages: "auto" });
 * const ring = mem.alloc(4096, 4096);
 * mem.bytes[ring] = 1;
 * ```
 */
export class SharedMemory implements MemoryRegion {
  /** Backing file descriptor (passed to vhost-user backends). */
  readonly fd: number;
  /**
   * Address of byte 0 in descriptors and the memory table: this process's virtual address of
   * the creator's mapping (an {@linkcode SharedMemory.attach}ed view keeps the creator's).
   */
  readonly addr: number;
  /** Size in bytes (a multiple of the page size). */
  readonly size: number;
  /** Offset of the region in `fd` (always 0). */
  readonly offset = 0;
  /** True when backed by hugepages. */
  readonly hugepages: boolean;
  /** The whole mapping as bytes. */
  readonly bytes: Uint8Array;
  /** The mapping's ArrayBuffer, for typed views of rings. */
  readonly buffer: ArrayBuffer;
  #mapping: Mapping | null;
  #next = 0;
  readonly #ownsFd: boolean;

  private constructor(
    fd: number,
    mapping: Mapping,
    hugepages: boolean,
    addr = mapping.addr,
    ownsFd = true,
  ) {
    this.fd = fd;
    this.#mapping = mapping;
    this.#ownsFd = ownsFd;
    this.addr = addr;
    this.size = mapping.size;
    this.buffer = mapping.buffer;
    this.bytes = new Uint8Array(mapping.buffer);
    this.hugepages = hugepages;
  }

  /**
   * Maps `size` bytes (rounded up to whole pages) of shared memory.
   *
   * @example
   * ```ts ignore
   * import { SharedMemory } from "./shared_memory.ts";
   * const mem = SharedMemory.create(1 << 20, { hugepages: false });
   * console.log(mem.addr.toString(16));
   * mem.close();
   * ```
   */
  static create(size: number, options: SharedMemoryOptions = {}): SharedMemory {
    const want = options.hugepages ?? "auto";
    const name = options.name ?? "virtio-user";
    if (want !== false) {
      const huge = hugePageSize();
      const hugeSize = roundUp(size, huge);
      if (want === true || freeHugePages() >= hugeSize / huge) {
        try {
          return SharedMemory.#map(
            openHuge(name, options.hugetlbfs),
            hugeSize,
            true,
            options.hugetlbfs === undefined,
          );
        } catch (e) {
          if (want === true || !(e instanceof SyscallError)) throw e;
          (options.notice ?? console.error)(
            `notice: hugepages unavailable (${e.message}); using ordinary pages`,
          );
        }
      } else {
        (options.notice ?? console.error)(
          `notice: no free hugepages for ${
            hugeSize >> 20
          } MB (HugePages_Free=${freeHugePages()}); ` +
            `using ordinary 4 KB pages. For hugepages: ${HUGEPAGE_HINT.split(" or ")[0]}`,
        );
      }
    }
    return SharedMemory.#map(
      memfdCreate(name, MFD_CLOEXEC | MFD_ALLOW_SEALING),
      roundUp(size, 4096),
      false,
    );
  }

  /**
   * Maps memory another thread of this process created (`fd`, `size` and `addr` of that
   * {@linkcode SharedMemory}) a second time, e.g. in a Worker: the pages are the same, `addr`
   * stays the creator's (descriptors carry it), and {@linkcode close} unmaps this view only,
   * leaving `fd` to its creator. The view stays valid even after the creator closes.
   *
   * @example
   * ```ts ignore
   * import { SharedMemory } from "./shared_memory.ts";
   * const view = SharedMemory.attach(handle.memFd, handle.memSize, handle.memAddr, true);
   * view.close();
   * ```
   */
  static attach(fd: number, size: number, addr: number, hugepages: boolean): SharedMemory {
    const mapping = mmapShared(fd, size, 0, hugepages ? HUGEPAGE_HINT : undefined);
    return new SharedMemory(fd, mapping, hugepages, addr, false);
  }

  static #map(fd: number, size: number, hugepages: boolean, sealable = true): SharedMemory {
    try {
      ftruncate(fd, size);
      // A backend holds this fd: without the seal it could ftruncate the file and every access
      // of ours to the cut-off pages would be SIGBUS (memfd_create(2), "File sealing"). Memfds
      // only; a file in a hugetlbfs mount cannot be sealed.
      if (sealable) addSeals(fd, F_SEAL_SHRINK);
      const mapping = mmapShared(fd, size, 0, hugepages ? HUGEPAGE_HINT : undefined);
      return new SharedMemory(fd, mapping, hugepages);
    } catch (e) {
      closeQuietly(fd);
      throw e;
    }
  }

  /**
   * Reserves `size` bytes aligned to `align` (a power of two) and returns their byte offset.
   * Throws when the region is full.
   */
  alloc(size: number, align = 64): number {
    const start = roundUp(this.#next, align);
    if (start + size > this.size) {
      throw new RangeError(
        `shared memory full: ${size} bytes wanted at offset ${start} of ${this.size}`,
      );
    }
    this.#next = start + size;
    return start;
  }

  /** True after {@linkcode close}. */
  get closed(): boolean {
    return this.#mapping === null;
  }

  /**
   * Unmaps the memory and closes its fd. Idempotent. The mapping's ArrayBuffer is detached
   * first, so views kept past this point have length 0: misuse reads `undefined` or throws a
   * TypeError, never touches unmapped memory.
   */
  close(): void {
    if (this.#mapping === null) return;
    munmap(this.#mapping);
    this.#mapping = null;
    if (this.#ownsFd) closeQuietly(this.fd);
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Rounds `n` up to a multiple of `align` (a power of two, or any positive integer). */
export function roundUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

function openHuge(name: string, dir: string | undefined): number {
  if (dir === undefined) return memfdCreate(name, MFD_CLOEXEC | MFD_HUGETLB | MFD_ALLOW_SEALING);
  const path = `${dir}/${name}-${Deno.pid}-${crypto.randomUUID()}`;
  const fd = openFile(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600);
  unlink(path); // the fd keeps the pages; nothing is left behind in the mount
  return fd;
}

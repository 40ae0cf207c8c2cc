/**
 * Shared memory for the rings and packet buffers: memfd_create(2), ftruncate(2), mmap(2). A memfd
 * can be handed to a vhost-user backend (SET_MEM_TABLE), which maps the same pages.
 *
 * @module
 */

import { EINTR } from "./errno.ts";
import { cString, errno, fail, libc } from "./libc.ts";

/** memfd_create: close the fd on exec. */
export const MFD_CLOEXEC = 1;
/** memfd_create: allow fcntl(F_ADD_SEALS). */
export const MFD_ALLOW_SEALING = 2;
/** memfd_create: back the file with hugepages (default size; see {@linkcode hugePageSize}). */
export const MFD_HUGETLB = 4;

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MAP_PRIVATE = 2;
const MAP_FIXED = 0x10;
const MAP_ANONYMOUS = 0x20;
const MAP_NORESERVE = 0x4000;
// mmap returns MAP_FAILED, (void *)-1, on error.
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

/** A shared mapping of a file. */
export interface Mapping {
  /** Start of the mapping. */
  ptr: Deno.PointerObject;
  /** Start address in this process (exact: user-space addresses fit in 47 bits). */
  addr: number;
  /** Length in bytes. */
  size: number;
  /** The mapped bytes. Do not touch it after {@linkcode munmap}. */
  buffer: ArrayBuffer;
}

/**
 * Creates an anonymous memory file and returns its fd. With {@linkcode MFD_HUGETLB} this succeeds
 * even when no hugepages are free: that shows up as ENOMEM at {@linkcode mmapShared}.
 *
 * @example
 * ```ts
 * import { closeQuietly } from "./fd.ts";
 * import { MFD_CLOEXEC, memfdCreate } from "./memory.ts";
 * const fd = memfdCreate("rings", MFD_CLOEXEC);
 * closeQuietly(fd);
 * ```
 */
export function memfdCreate(name: string, flags: number): number {
  const fd = libc.symbols.memfd_create(cString(name), flags);
  if (fd < 0) {
    const e = errno();
    const hint = (flags & MFD_HUGETLB) && e === 22 /* EINVAL */
      ? "the kernel has no hugetlbfs support; pass hugepages:false"
      : undefined;
    fail(`memfd_create(${name})`, hint, e);
  }
  return fd;
}

/**
 * Sets the size of the file behind `fd` (for a hugepage memfd: a multiple of the hugepage size).
 *
 * @example
 * ```ts
 * import { closeQuietly } from "./fd.ts";
 * import { ftruncate, MFD_CLOEXEC, memfdCreate } from "./memory.ts";
 * const fd = memfdCreate("rings", MFD_CLOEXEC);
 * ftruncate(fd, 65536);
 * closeQuietly(fd);
 * ```
 */
export function ftruncate(fd: number, size: number): void {
  for (;;) {
    if (libc.symbols.ftruncate(fd, BigInt(size)) === 0) return;
    const e = errno();
    if (e !== EINTR) fail(`ftruncate(fd ${fd}, ${size})`, undefined, e);
  }
}

/**
 * Maps `size` bytes of `fd` from `offset` read/write and shared (writes are visible to every
 * other mapping of the file, in this process or another). On failure throws a SyscallError for
 * "mmap" with `hint` appended, e.g. ENOMEM when a hugepage memfd finds no free hugepages.
 *
 * @example
 * ```ts
 * import { closeQuietly } from "./fd.ts";
 * import { ftruncate, MFD_CLOEXEC, memfdCreate, mmapShared, munmap } from "./memory.ts";
 * const fd = memfdCreate("rings", MFD_CLOEXEC);
 * ftruncate(fd, 4096);
 * const m = mmapShared(fd, 4096);
 * new Uint8Array(m.buffer)[0] = 1;
 * munmap(m);
 * closeQuietly(fd);
 * ```
 */
export function mmapShared(fd: number, size: number, offset = 0, hint?: string): Mapping {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new RangeError(`mmapShared: size must be a positive integer, got ${size}`);
  }
  return mapping(mmapRw(null, size, MAP_SHARED, fd, offset, hint), size);
}

/** mmap(2) read/write; throws a SyscallError for "mmap" with `hint` when it fails. */
function mmapRw(
  at: Deno.PointerValue,
  size: number,
  flags: number,
  fd: number,
  offset: number,
  hint?: string,
): Deno.PointerObject {
  const ptr = libc.symbols.mmap(
    at,
    BigInt(size),
    PROT_READ | PROT_WRITE,
    flags,
    fd,
    BigInt(offset),
  );
  if (ptr === null || Deno.UnsafePointer.value(ptr) === MAP_FAILED) fail("mmap", hint, errno());
  return ptr;
}

function mapping(ptr: Deno.PointerObject, size: number): Mapping {
  return {
    ptr,
    addr: Number(Deno.UnsafePointer.value(ptr)),
    size,
    buffer: Deno.UnsafePointerView.getArrayBuffer(ptr, size),
  };
}

/**
 * Unmaps `m`. First detaches `m.buffer` (`ArrayBuffer.prototype.transfer(0)`: no copy), so every
 * typed array over it has length 0 from then on: a stale view reads `undefined` and its methods
 * throw a TypeError, instead of touching unmapped pages (SIGSEGV).
 *
 * @example
 * ```ts
 * import { closeQuietly } from "./fd.ts";
 * import { ftruncate, MFD_CLOEXEC, memfdCreate, mmapShared, munmap } from "./memory.ts";
 * const fd = memfdCreate("buf", MFD_CLOEXEC);
 * ftruncate(fd, 4096);
 * munmap(mmapShared(fd, 4096));
 * closeQuietly(fd);
 * ```
 */
export function munmap(m: Mapping): void {
  if (!m.buffer.detached) m.buffer.transfer(0);
  if (libc.symbols.munmap(m.ptr, BigInt(m.size)) !== 0) {
    const e = errno(); // before the message string is built
    fail(`munmap(0x${m.addr.toString(16)}, ${m.size})`, undefined, e);
  }
}

/**
 * Reserves `size` bytes of address space: private, anonymous, readable and writable, with no
 * swap reserved (MAP_NORESERVE), so only pages touched cost memory. Files are then mapped into
 * it with {@linkcode mmapSharedAt}, and one ArrayBuffer spans them all (a copy between two of
 * them is one `copyWithin`). Throws a SyscallError for "mmap" (e.g. ENOMEM under strict
 * overcommit); release it with {@linkcode munmap}.
 *
 * @example
 * ```ts
 * import { munmap, reserveAddressRange } from "./memory.ts";
 * const range = reserveAddressRange(1 << 30);
 * console.assert(range.buffer.byteLength === 1 << 30);
 * munmap(range);
 * ```
 */
export function reserveAddressRange(size: number): Mapping {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new RangeError(`reserveAddressRange: size must be a positive integer, got ${size}`);
  }
  const flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  return mapping(
    mmapRw(null, size, flags, -1, 0, `reserving ${size} bytes of address space`),
    size,
  );
}

/**
 * Maps `size` bytes of `fd` (from offset 0) shared and read/write over `[offset, offset + size)`
 * of `range` (MAP_FIXED: it replaces those pages of the range). `offset` and `size` must be
 * multiples of the file's page size (a hugepage file's: else EINVAL). Throws a SyscallError for
 * "mmap" with `hint`.
 *
 * @example
 * ```ts
 * import { closeQuietly } from "./fd.ts";
 * import * as m from "./memory.ts";
 * const range = m.reserveAddressRange(1 << 24);
 * const fd = m.memfdCreate("region", m.MFD_CLOEXEC);
 * m.ftruncate(fd, 4096);
 * m.mmapSharedAt(range, 8192, fd, 4096);
 * m.releaseRange(range, 8192, 4096); // its pages are the range's own again
 * m.munmap(range);
 * closeQuietly(fd);
 * ```
 */
export function mmapSharedAt(
  range: Mapping,
  offset: number,
  fd: number,
  size: number,
  hint?: string,
): void {
  checkInRange(range, offset, size, "mmapSharedAt");
  mmapRw(rangeAt(range, offset), size, MAP_SHARED | MAP_FIXED, fd, 0, hint);
}

/**
 * Gives `[offset, offset + size)` of `range` back to the range: the file mapped there is unmapped
 * and fresh zero pages take its place (MAP_FIXED anonymous), so a view still over it reads zeros
 * and writes nowhere shared, instead of faulting. Throws a SyscallError for "mmap".
 */
export function releaseRange(range: Mapping, offset: number, size: number): void {
  checkInRange(range, offset, size, "releaseRange");
  const flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED;
  const hint = `releasing ${size} bytes at offset ${offset} of a reserved range`;
  mmapRw(rangeAt(range, offset), size, flags, -1, 0, hint);
}

function rangeAt(range: Mapping, offset: number): Deno.PointerValue {
  return Deno.UnsafePointer.create(BigInt(range.addr + offset));
}

function checkInRange(range: Mapping, offset: number, size: number, what: string): void {
  if (
    !Number.isSafeInteger(offset) || !Number.isSafeInteger(size) || offset < 0 || size <= 0 ||
    offset + size > range.size || range.buffer.detached
  ) {
    throw new RangeError(
      `${what}: [${offset}, ${offset} + ${size}) is not inside the ${range.size}-byte range` +
        (range.buffer.detached ? " (unmapped)" : ""),
    );
  }
}

const F_ADD_SEALS = 1033;
const F_GET_SEALS = 1034;
/** Seal: the file may not shrink (fcntl F_ADD_SEALS). */
export const F_SEAL_SHRINK = 2;
/** Seal: no further seals may be added. */
export const F_SEAL_SEAL = 1;

/**
 * Adds `seals` to a memfd created with {@linkcode MFD_ALLOW_SEALING} (fcntl F_ADD_SEALS, see
 * memfd_create(2)). With {@linkcode F_SEAL_SHRINK} nobody holding the fd (a vhost-user backend
 * included) can ftruncate the file below its size, which would turn this process's accesses to
 * the cut-off pages into SIGBUS.
 *
 * @example
 * ```ts
 * import { closeQuietly } from "./fd.ts";
 * import { addSeals, F_SEAL_SHRINK, ftruncate, MFD_ALLOW_SEALING, MFD_CLOEXEC, memfdCreate } from "./memory.ts";
 * const fd = memfdCreate("rings", MFD_CLOEXEC | MFD_ALLOW_SEALING);
 * ftruncate(fd, 4096);
 * addSeals(fd, F_SEAL_SHRINK);
 * closeQuietly(fd);
 * ```
 */
export function addSeals(fd: number, seals: number): void {
  if (libc.symbols.fcntl(fd, F_ADD_SEALS, seals) < 0) {
    const e = errno(); // before the message string is built
    fail(
      `fcntl(fd ${fd}, F_ADD_SEALS, 0x${seals.toString(16)})`,
      "was it created with MFD_ALLOW_SEALING?",
      e,
    );
  }
}

/**
 * The seals of a memfd (fcntl F_GET_SEALS), or -1 when the file cannot be sealed.
 *
 * @example
 * ```ts
 * import { closeQuietly } from "./fd.ts";
 * import { getSeals, MFD_ALLOW_SEALING, MFD_CLOEXEC, memfdCreate } from "./memory.ts";
 * const fd = memfdCreate("rings", MFD_CLOEXEC | MFD_ALLOW_SEALING);
 * console.log(getSeals(fd)); // 0
 * closeQuietly(fd);
 * ```
 */
export function getSeals(fd: number): number {
  const r = libc.symbols.fcntl(fd, F_GET_SEALS, 0);
  return r < 0 ? -1 : r;
}

/** Reads a small procfs file through libc (needs no `--allow-read`); null if it cannot. */
function readProcFile(path: string): string | null {
  const fd = libc.symbols.open(cString(path), 0o2000000, /* O_RDONLY | O_CLOEXEC */ 0);
  if (fd < 0) return null;
  const buf = new Uint8Array(16384);
  let len = 0;
  try {
    while (len < buf.length) {
      const n = libc.symbols.read(fd, buf.subarray(len), BigInt(buf.length - len));
      if (n < 0 && errno() === EINTR) continue;
      if (n <= 0) break;
      len += n;
    }
  } finally {
    libc.symbols.close(fd);
  }
  return new TextDecoder().decode(buf.subarray(0, len));
}

function meminfoField(name: string): number | null {
  const text = readProcFile("/proc/meminfo");
  const m = text?.match(new RegExp(`^${name}:\\s+(\\d+)`, "m"));
  return m ? Number(m[1]) : null;
}

/**
 * The default hugepage size in bytes (`Hugepagesize` in /proc/meminfo; 2 MiB if unknown).
 *
 * @example
 * ```ts
 * import { hugePageSize } from "./memory.ts";
 * console.log(hugePageSize()); // 2097152 on most x86-64 systems
 * ```
 */
export function hugePageSize(): number {
  const kb = meminfoField("Hugepagesize");
  return kb !== null && kb > 0 ? kb * 1024 : 2 * 1024 * 1024;
}

/**
 * Free hugepages of the default size (`HugePages_Free` in /proc/meminfo; 0 if unknown).
 *
 * @example
 * ```ts
 * import { freeHugePages } from "./memory.ts";
 * if (freeHugePages() === 0) console.log("no hugepages: use hugepages:false");
 * ```
 */
export function freeHugePages(): number {
  return meminfoField("HugePages_Free") ?? 0;
}

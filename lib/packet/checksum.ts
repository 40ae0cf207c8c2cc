/**
 * The Internet checksum (RFC 1071): the 16-bit one's complement of the one's complement sum of
 * 16-bit big-endian words, and its incremental update (RFC 1624 §3, eqn. 3:
 * `HC' = ~(~HC + ~m + m')`), so a patched field never forces a full recomputation.
 *
 * ```
 *   onesSum(bytes, at, len) ──► + pseudo-header sum ──► foldChecksum ──► 16-bit checksum
 *   checksum, old word m, new word m' ──► updateChecksum16 ──► checksum'
 * ```
 *
 * @module
 */

/**
 * The one's complement sum (not yet folded) of `length` bytes at `bytes[offset]`, as 16-bit
 * big-endian words, added to `initial`; an odd last byte is padded with zero (RFC 1071 §4.1).
 *
 * @example
 * ```ts
 * import { onesSum } from "./checksum.ts";
 * console.assert(onesSum(new Uint8Array([0x12, 0x34, 0x56]), 0, 3) === 0x1234 + 0x5600);
 * ```
 */
export function onesSum(bytes: Uint8Array, offset: number, length: number, initial = 0): number {
  let sum = initial;
  const end = offset + (length & ~1);
  for (let i = offset; i < end; i += 2) {
    sum += (bytes[i] << 8) | bytes[i + 1];
    if (sum > 0x7fffffff) sum = (sum & 0xffff) + (sum >>> 16);
  }
  if (length & 1) sum += bytes[end] << 8;
  return sum;
}

/**
 * Folds a one's complement sum to 16 bits and complements it: the checksum to store.
 *
 * @example
 * ```ts
 * import { foldChecksum } from "./checksum.ts";
 * console.assert(foldChecksum(0x1fffe) === 0x0000);
 * ```
 */
export function foldChecksum(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * The Internet checksum of `length` bytes at `bytes[offset]` (RFC 1071), starting from the
 * unfolded sum `initial` (a pseudo-header, say). A region holding a correct checksum yields 0.
 *
 * @example
 * ```ts
 * import { internetChecksum } from "./checksum.ts";
 * // RFC 1071 §3's example words 0001 f203 f4f5 f6f7: sum ddf2, checksum 220d.
 * const b = new Uint8Array([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
 * console.assert(internetChecksum(b, 0, 8) === 0x220d);
 * ```
 */
export function internetChecksum(
  bytes: Uint8Array,
  offset: number,
  length: number,
  initial = 0,
): number {
  return foldChecksum(onesSum(bytes, offset, length, initial));
}

/**
 * RFC 1624 eqn. 3: the checksum after one 16-bit word covered by `check` changed from `oldWord`
 * to `newWord`.
 *
 * @example
 * ```ts
 * import { internetChecksum, updateChecksum16 } from "./checksum.ts";
 * const b = new Uint8Array([0x45, 0x00, 0x12, 0x34]);
 * const before = internetChecksum(b, 0, 4);
 * b[2] = 0x56; b[3] = 0x78;
 * console.assert(updateChecksum16(before, 0x1234, 0x5678) === internetChecksum(b, 0, 4));
 * ```
 */
export function updateChecksum16(check: number, oldWord: number, newWord: number): number {
  return applyChecksumDelta(check, (~oldWord & 0xffff) + (newWord & 0xffff));
}

/**
 * {@linkcode updateChecksum16} for a 32-bit field (two words), e.g. an IPv4 address.
 *
 * @example
 * ```ts
 * import { updateChecksum32 } from "./checksum.ts";
 * console.assert(updateChecksum32(0xffff, 0, 0) === 0xffff);
 * ```
 */
export function updateChecksum32(check: number, oldValue: number, newValue: number): number {
  return applyChecksumDelta(check, checksumDelta32(oldValue, newValue));
}

/**
 * The unfolded RFC 1624 difference `~m + m'` of a 32-bit field changing from `oldValue` to
 * `newValue`: the same for every checksum covering the field, so it is computed once and then
 * applied to each with {@linkcode applyChecksumDelta}.
 *
 * @example
 * ```ts
 * import { applyChecksumDelta, checksumDelta32, updateChecksum32 } from "./checksum.ts";
 * const d = checksumDelta32(0x0a000001, 0x0a000002);
 * console.assert(applyChecksumDelta(0x1234, d) === updateChecksum32(0x1234, 0x0a000001, 0x0a000002));
 * ```
 */
export function checksumDelta32(oldValue: number, newValue: number): number {
  return checksumDeltaWords(oldValue >>> 16, oldValue & 0xffff, newValue >>> 16, newValue & 0xffff);
}

/**
 * {@linkcode checksumDelta32} of a field given as 16-bit words (high, low), old and new: what
 * per-packet code calls, since 16-bit arguments are never boxed.
 *
 * @example
 * ```ts
 * import { checksumDelta32, checksumDeltaWords } from "./checksum.ts";
 * console.assert(checksumDeltaWords(0x0a00, 0x0001, 0x0a00, 0x0002) === checksumDelta32(0x0a000001, 0x0a000002));
 * ```
 */
export function checksumDeltaWords(
  oldHigh: number,
  oldLow: number,
  newHigh: number,
  newLow: number,
): number {
  return (~oldHigh & 0xffff) + (~oldLow & 0xffff) + (newHigh & 0xffff) + (newLow & 0xffff);
}

/**
 * RFC 1624 eqn. 3 with a precomputed difference (from {@linkcode checksumDelta32}, or
 * `(~m & 0xffff) + m'` for one word): the new checksum.
 *
 * @example
 * ```ts
 * import { applyChecksumDelta, updateChecksum16 } from "./checksum.ts";
 * console.assert(applyChecksumDelta(0xbaff, (~0x0014 & 0xffff) + 0x0028) === updateChecksum16(0xbaff, 0x14, 0x28));
 * ```
 */
export function applyChecksumDelta(check: number, delta: number): number {
  let sum = (~check & 0xffff) + delta;
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Reads the big-endian 16-bit word at `bytes[offset]`.
 *
 * @example
 * ```ts
 * import { read16 } from "./checksum.ts";
 * console.assert(read16(new Uint8Array([0x08, 0x00]), 0) === 0x0800);
 * ```
 */
export function read16(bytes: Uint8Array, offset: number): number {
  return (bytes[offset] << 8) | bytes[offset + 1];
}

/**
 * Writes `value` as a big-endian 16-bit word at `bytes[offset]`.
 *
 * @example
 * ```ts
 * import { write16 } from "./checksum.ts";
 * const b = new Uint8Array(2);
 * write16(b, 0, 0x86dd);
 * console.assert(b[0] === 0x86 && b[1] === 0xdd);
 * ```
 */
export function write16(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value >>> 8;
  bytes[offset + 1] = value;
}

/**
 * Reads the big-endian 32-bit word at `bytes[offset]` (unsigned).
 *
 * @example
 * ```ts
 * import { read32 } from "./checksum.ts";
 * console.assert(read32(new Uint8Array([0xc6, 0x12, 0, 1]), 0) === 0xc6120001);
 * ```
 */
export function read32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset] << 24) | (bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) |
    bytes[offset + 3]) >>> 0;
}

/**
 * Writes `value` as a big-endian 32-bit word at `bytes[offset]`.
 *
 * @example
 * ```ts
 * import { write32 } from "./checksum.ts";
 * const b = new Uint8Array(4);
 * write32(b, 0, 0xc6120001);
 * console.assert(b[0] === 0xc6 && b[3] === 1);
 * ```
 */
export function write32(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value >>> 24;
  bytes[offset + 1] = value >>> 16;
  bytes[offset + 2] = value >>> 8;
  bytes[offset + 3] = value;
}

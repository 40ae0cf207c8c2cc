/**
 * Copies between descriptor chains and byte arrays, segment by segment (virtio 1.2 §2.7.4,
 * §2.8.6: a buffer may be scattered over several descriptors): shared by the device's echo,
 * source and forwarding paths. No allocation.
 *
 * @module
 */

import {
  type AddressTranslator,
  type DescriptorChain,
  VirtqueueError,
} from "../virtio/virtqueue.ts";

/**
 * Bytes the device may read from a transmitq chain; throws for a device-writable segment
 * (§5.1.6.2).
 *
 * @example
 * ```ts ignore
 * const frameLen = readableLength(txChain) - NET_HDR_SIZE;
 * ```
 */
export function readableLength(chain: DescriptorChain): number {
  let total = 0;
  for (let s = 0; s < chain.count; s++) {
    if (chain.writable[s] === 1) {
      throw new VirtqueueError(
        "transmitq",
        `chain ${chain.id}: segment ${s} is device-writable in a transmit queue (§5.1.6.2)`,
      );
    }
    total += chain.len[s];
  }
  return total;
}

/**
 * Bytes the device may write into a receiveq chain; throws for a device-readable segment
 * (§5.1.6.3).
 *
 * @example
 * ```ts ignore
 * if (writableLength(rxChain) < NET_HDR_SIZE + frameLen) throw new Error("too small");
 * ```
 */
export function writableLength(chain: DescriptorChain): number {
  let total = 0;
  for (let s = 0; s < chain.count; s++) {
    if (chain.writable[s] === 0) {
      throw new VirtqueueError(
        "receiveq",
        `chain ${chain.id}: segment ${s} is device-readable in a receive queue (§5.1.6.3)`,
      );
    }
    total += chain.len[s];
  }
  return total;
}

/**
 * Copies `src[from .. from+len)` into the chain's segments starting `skip` bytes in.
 *
 * @example
 * ```ts ignore
 * scatter(memory, header, 0, NET_HDR_SIZE, rxChain, 0);
 * ```
 */
export function scatter(
  mem: AddressTranslator,
  src: Uint8Array,
  from: number,
  len: number,
  to: DescriptorChain,
  skip: number,
): void {
  let s = 0;
  while (s < to.count && skip >= to.len[s]) skip -= to.len[s++];
  while (len > 0 && s < to.count) {
    const room = to.len[s] - skip;
    const n = room < len ? room : len;
    const dst = mem.bytes(to.region[s]);
    const at = to.offset[s] + skip;
    // Inline, not a call: `at` comes from a Float64Array, and a double passed to a call V8 does
    // not inline is boxed (a heap number per copy).
    let k = 0;
    if (n >= MEMMOVE_MIN && src.buffer === dst.buffer) {
      // One buffer (echo, or a forwarder's two ports in one MemoryArena): one memmove.
      const sa = src.byteOffset + from, da = dst.byteOffset + at;
      bufferOf(dst).copyWithin(da, sa, sa + n);
      k = n;
    } else if (n >= WORD_COPY_MIN) {
      // Byte positions from each view's word view start (the 4-byte boundary at or below the
      // view's start): small indices, however far into its buffer (an arena's) the view lies.
      const sr = (src.byteOffset & 3) + from, dr = (dst.byteOffset & 3) + at;
      if (((sr - dr) & 3) === 0) {
        // Four bytes at a time when both ends share their alignment (frames usually do: buffers
        // are aligned and the header is 12 bytes): a 1518-byte frame is ~380 word moves.
        for (; ((sr + k) & 3) !== 0; k++) dst[at + k] = src[from + k];
        const sw = wordsOf(src), dw = wordsOf(dst);
        const end = k + ((n - k) & ~3);
        for (let i = (sr + k) >>> 2, j = (dr + k) >>> 2; k < end; k += 4) dw[j++] = sw[i++];
      }
    }
    for (; k < n; k++) dst[at + k] = src[from + k];
    from += n;
    len -= n;
    skip = 0;
    s++;
  }
}

/**
 * Copies `len` bytes from chain `from` in `fromMem` (skipping `fromSkip`) to chain `to` in
 * `toMem` (at `toSkip`); the two may be one memory (echo) or two frontends' (forwarding).
 *
 * @example
 * ```ts ignore
 * gatherScatter(memoryA, txChain, NET_HDR_SIZE, memoryB, rxChain, NET_HDR_SIZE, frameLen);
 * ```
 */
export function gatherScatter(
  fromMem: AddressTranslator,
  from: DescriptorChain,
  fromSkip: number,
  toMem: AddressTranslator,
  to: DescriptorChain,
  toSkip: number,
  len: number,
): void {
  let s = 0;
  while (s < from.count && fromSkip >= from.len[s]) fromSkip -= from.len[s++];
  while (len > 0 && s < from.count) {
    const avail = from.len[s] - fromSkip;
    const n = avail < len ? avail : len;
    const bytes = fromMem.bytes(from.region[s]);
    scatter(toMem, bytes, from.offset[s] + fromSkip, n, to, toSkip);
    toSkip += n;
    len -= n;
    fromSkip = 0;
    s++;
  }
}

/** Below this many bytes a copy goes byte by byte. */
const WORD_COPY_MIN = 32;
/**
 * From this many bytes a copy within one buffer is `copyWithin` (a builtin call costs about
 * what 16 word moves do: 128 bytes take ~22 ns either way, 1518 bytes ~50 ns against ~250).
 */
const MEMMOVE_MIN = 128;
// Per region view copied between lately: a word view over it and a byte view over its whole
// buffer. A forwarder copies between the same regions frame after frame, so views are made only
// for one not seen lately. No allocation per copy (a subarray for `TypedArray.set` would be one,
// and V8 has no other bulk copy between two buffers).
const VIEWS = 8;
const viewKeys: (Uint8Array | null)[] = new Array(VIEWS).fill(null);
const viewWords: Uint32Array<ArrayBufferLike>[] = Array.from(
  { length: VIEWS },
  () => new Uint32Array(0),
);
const viewBuffers: Uint8Array<ArrayBufferLike>[] = Array.from(
  { length: VIEWS },
  () => new Uint8Array(0),
);
let nextView = 0;

/** The cache slot of `view` (both directions of a forwarder hit), filled when missing. */
function viewSlot(view: Uint8Array): number {
  for (let i = 0; i < VIEWS; i++) if (viewKeys[i] === view) return i;
  const i = nextView;
  nextView = (i + 1) % VIEWS;
  const lead = view.byteOffset & 3;
  viewKeys[i] = view;
  viewWords[i] = new Uint32Array(
    view.buffer,
    view.byteOffset - lead,
    Math.floor((lead + view.length) / 4),
  );
  viewBuffers[i] = new Uint8Array(view.buffer);
  return i;
}

/**
 * A Uint32Array over `view`'s bytes from the 4-byte boundary at or below its start (whole words
 * only).
 */
function wordsOf(view: Uint8Array): Uint32Array<ArrayBufferLike> {
  return viewWords[viewSlot(view)];
}

/** A Uint8Array over all of `view`'s buffer. */
function bufferOf(view: Uint8Array): Uint8Array<ArrayBufferLike> {
  return viewBuffers[viewSlot(view)];
}

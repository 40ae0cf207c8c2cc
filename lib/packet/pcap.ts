/**
 * Classic libpcap capture files (the "pcap" format of draft-ietf-opsawg-pcap §4-5): a 24-byte
 * file header (magic, version 2.4, snaplen, link type), then per frame a 16-byte record header
 * (seconds, micro- or nanoseconds, captured length, original length) and the bytes.
 * Written with LINKTYPE_ETHERNET (1); read in either byte order and either time resolution.
 *
 * ```
 *   PcapWriter.write(bytes, offset, length, seconds, nanos) ──buffered──► file
 *   readPcap(file bytes) ──► one PcapCapture: offsets / lengths / times arrays, no object per frame
 * ```
 *
 * @module
 */

/** LINKTYPE_ETHERNET: frames start with the Ethernet header. */
export const LINKTYPE_ETHERNET = 1;
/** Magic of a file with microsecond timestamps (as written in the file's byte order). */
export const PCAP_MAGIC_MICROS = 0xa1b2c3d4;
/** Magic of a file with nanosecond timestamps. */
export const PCAP_MAGIC_NANOS = 0xa1b23c4d;

const FILE_HEADER = 24;
const RECORD_HEADER = 16;

/** Options of {@linkcode PcapWriter.create}. */
export interface PcapWriterOptions {
  /** Nanosecond timestamps (default microseconds). */
  nanoseconds?: boolean;
  /** Largest bytes kept per frame (default 65535). */
  snapLength?: number;
  /** Bytes buffered before a write to the file (default 1 MiB). */
  bufferSize?: number;
}

/**
 * Writes a pcap file through a preallocated buffer: a frame costs a copy, a write(2) happens
 * once per buffer-full. Call {@linkcode close} (or `using`) to flush.
 *
 * @example
 * ```ts
 * import { PcapWriter, readPcap } from "./pcap.ts";
 * const path = Deno.makeTempFileSync({ suffix: ".pcap" });
 * {
 *   using w = PcapWriter.create(path);
 *   w.write(new Uint8Array(60), 0, 60, 1_700_000_000, 0);
 * }
 * console.assert(readPcap(Deno.readFileSync(path)).count === 1);
 * Deno.removeSync(path);
 * ```
 */
export class PcapWriter {
  /** Frames written. */
  frames = 0;
  readonly #file: Deno.FsFile;
  readonly #buf: Uint8Array;
  readonly #dv: DataView;
  readonly #nanos: boolean;
  readonly #snap: number;
  #used = 0;
  #closed = false;

  private constructor(file: Deno.FsFile, options: PcapWriterOptions) {
    this.#file = file;
    this.#nanos = options.nanoseconds ?? false;
    this.#snap = options.snapLength ?? 65535;
    this.#buf = new Uint8Array(Math.max(options.bufferSize ?? 1 << 20, this.#snap + 64));
    this.#dv = new DataView(this.#buf.buffer);
    const dv = this.#dv;
    dv.setUint32(0, this.#nanos ? PCAP_MAGIC_NANOS : PCAP_MAGIC_MICROS, true);
    dv.setUint16(4, 2, true); // version 2.4
    dv.setUint16(6, 4, true);
    dv.setUint32(8, 0, true); // reserved (thiszone)
    dv.setUint32(12, 0, true); // reserved (sigfigs)
    dv.setUint32(16, this.#snap, true);
    dv.setUint32(20, LINKTYPE_ETHERNET, true);
    this.#used = FILE_HEADER;
  }

  /** Creates (or truncates) `path` and writes the file header. */
  static create(path: string, options: PcapWriterOptions = {}): PcapWriter {
    const file = Deno.openSync(path, { write: true, create: true, truncate: true });
    return new PcapWriter(file, options);
  }

  /**
   * Appends the frame `bytes[offset .. offset+length)` stamped `seconds` + `nanos` since the
   * Unix epoch (kept to µs unless nanosecond timestamps were chosen).
   */
  write(bytes: Uint8Array, offset: number, length: number, seconds: number, nanos: number): void {
    const kept = length < this.#snap ? length : this.#snap;
    if (this.#used + RECORD_HEADER + kept > this.#buf.length) this.flush();
    const dv = this.#dv, at = this.#used;
    dv.setUint32(at, seconds, true);
    dv.setUint32(at + 4, this.#nanos ? nanos : Math.floor(nanos / 1000), true);
    dv.setUint32(at + 8, kept, true);
    dv.setUint32(at + 12, length, true);
    const buf = this.#buf, to = at + RECORD_HEADER;
    for (let k = 0; k < kept; k++) buf[to + k] = bytes[offset + k]; // no subarray per frame
    this.#used = at + RECORD_HEADER + kept;
    this.frames++;
  }

  /** Writes the buffered bytes to the file. */
  flush(): void {
    let done = 0;
    while (done < this.#used) done += this.#file.writeSync(this.#buf.subarray(done, this.#used));
    this.#used = 0;
  }

  /** Flushes and closes the file. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.flush();
    } finally {
      this.#file.close();
    }
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** A capture read into memory: frame `i` is `data[offsets[i] .. offsets[i] + lengths[i])`. */
export interface PcapCapture {
  /** The file's bytes. */
  data: Uint8Array;
  /** Link type (1 for Ethernet). */
  linkType: number;
  /** True when the file stores nanoseconds. */
  nanoseconds: boolean;
  /** Frames in the file. */
  count: number;
  /** Offset of each frame's bytes in `data`. */
  offsets: Float64Array;
  /** Captured length of each frame. */
  lengths: Uint32Array;
  /** Original (wire) length of each frame. */
  originalLengths: Uint32Array;
  /** Timestamp of each frame: whole seconds since the Unix epoch. */
  seconds: Float64Array;
  /** Timestamp of each frame: nanoseconds past `seconds` (µs files: multiples of 1000). */
  nanos: Uint32Array;
}

/**
 * Reads a classic pcap file from its bytes; throws a `TypeError` naming what is wrong when it is
 * not one (pcapng, truncated records).
 *
 * @example
 * ```ts
 * import { readPcap } from "./pcap.ts";
 * const header = new Uint8Array(24);
 * new DataView(header.buffer).setUint32(0, 0xa1b2c3d4, true);
 * header[20] = 1;
 * console.assert(readPcap(header).count === 0);
 * ```
 */
export function readPcap(data: Uint8Array): PcapCapture {
  if (data.length < FILE_HEADER) {
    throw new TypeError(`not a pcap file: ${data.length} bytes, shorter than its 24-byte header`);
  }
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const magic = dv.getUint32(0, true);
  let little: boolean;
  if (magic === PCAP_MAGIC_MICROS || magic === PCAP_MAGIC_NANOS) little = true;
  else if (dv.getUint32(0, false) === PCAP_MAGIC_MICROS) little = false;
  else if (dv.getUint32(0, false) === PCAP_MAGIC_NANOS) little = false;
  else if (magic === 0x0a0d0d0a) {
    throw new TypeError("pcapng file: convert it with `editcap -F pcap IN OUT` first");
  } else throw new TypeError(`not a pcap file: magic 0x${magic.toString(16)}`);
  const nanoseconds = dv.getUint32(0, little) === PCAP_MAGIC_NANOS;
  const linkType = dv.getUint32(20, little) & 0x0fffffff;
  // First pass: count the records; second: fill the arrays.
  let count = 0;
  for (let at = FILE_HEADER; at < data.length; count++) {
    if (at + RECORD_HEADER > data.length) {
      throw new TypeError(`pcap record ${count} at byte ${at}: truncated header`);
    }
    const kept = dv.getUint32(at + 8, little);
    if (at + RECORD_HEADER + kept > data.length) {
      throw new TypeError(`pcap record ${count} at byte ${at}: ${kept} bytes do not fit the file`);
    }
    at += RECORD_HEADER + kept;
  }
  const offsets = new Float64Array(count);
  const lengths = new Uint32Array(count);
  const originalLengths = new Uint32Array(count);
  const seconds = new Float64Array(count);
  const nanos = new Uint32Array(count);
  const scale = nanoseconds ? 1 : 1000;
  for (let i = 0, at = FILE_HEADER; i < count; i++) {
    seconds[i] = dv.getUint32(at, little);
    nanos[i] = dv.getUint32(at + 4, little) * scale;
    lengths[i] = dv.getUint32(at + 8, little);
    originalLengths[i] = dv.getUint32(at + 12, little);
    offsets[i] = at + RECORD_HEADER;
    at += RECORD_HEADER + lengths[i];
  }
  return {
    data,
    linkType,
    nanoseconds,
    count,
    offsets,
    lengths,
    originalLengths,
    seconds,
    nanos,
  };
}

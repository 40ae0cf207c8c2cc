/**
 * Packet templates: a frame built once (Ethernet, optional 802.1Q tag, IPv4 or IPv6, UDP or TCP,
 * zero payload), copied into each pool buffer once, then patched in place per packet. Every
 * patch updates the IPv4 header checksum and the UDP/TCP checksum incrementally (RFC 1624 §3,
 * eqn. 3) from the old and new value of the field, so nothing is ever recomputed over the frame.
 *
 * ```
 *   PacketTemplate ──write(buf, size) once──► buffer: | Eth | [VLAN] | IP | UDP/TCP | 0 0 0 ... |
 *   per packet: setSize / patch16 / patch32 / FieldSweep.apply ──► fields + checksums in place
 * ```
 *
 * The payload is zero, so a frame's length changes only its length fields (zero words add
 * nothing to a one's complement sum). Fields patched in the payload must lie below
 * {@linkcode PacketTemplate.minSize}, so every size carries them.
 *
 * @module
 */

import {
  applyChecksumDelta,
  checksumDeltaWords,
  read16,
  read32,
  updateChecksum16,
  write16,
} from "./checksum.ts";
import { ETHERNET_HEADER, ETHERNET_MIN_FRAME, EtherType, writeEthernet } from "./ethernet.ts";
import { IpProtocol, IPV4_HEADER, writeIpv4 } from "./ipv4.ts";
import { IPV6_HEADER, writeIpv6 } from "./ipv6.ts";
import { TCP_HEADER, TcpFlag, writeTcp } from "./tcp.ts";
import { UDP_HEADER, writeUdp } from "./udp.ts";
import { VLAN_TAG, writeVlanTag } from "./vlan.ts";

/** What a {@linkcode PacketTemplate} holds. */
export interface TemplateOptions {
  /** Destination MAC (default broadcast). */
  dstMac?: Uint8Array;
  /** Source MAC (default 02:00:00:00:00:01). */
  srcMac?: Uint8Array;
  /** 802.1Q VLAN ID, or undefined for an untagged frame. */
  vlan?: number;
  /** IPv6 instead of IPv4. */
  ipv6?: boolean;
  /** IPv4 source address (default 198.18.0.1, the RFC 2544 benchmarking range). */
  srcIp?: number;
  /** IPv4 destination address (default 198.18.0.2). */
  dstIp?: number;
  /** IPv6 source address, 16 bytes (default 2001:db8::1, RFC 3849). */
  srcIp6?: Uint8Array;
  /** IPv6 destination address (default 2001:db8::2). */
  dstIp6?: Uint8Array;
  /** Transport: `udp` (default) or `tcp` (a bare ACK segment carrying the payload). */
  transport?: "udp" | "tcp";
  /** Source port (default 9). */
  srcPort?: number;
  /** Destination port (default 9, discard). */
  dstPort?: number;
  /** Payload bytes every frame must carry for payload patches (default 0). */
  payloadReserve?: number;
  /** Largest frame written (default 2036, a 2048-byte buffer minus the virtio-net header). */
  maxSize?: number;
}

/** Named fields a {@linkcode FieldSweep} can vary (the low 32 bits of addresses). */
export type SweepField = "src-ip" | "dst-ip" | "src-port" | "dst-port" | "src-mac" | "dst-mac";

/**
 * A frame prototype with the offsets and checksum positions its patches need.
 *
 * @example
 * ```ts
 * import { PacketTemplate } from "./template.ts";
 * import { ipv4HeaderValid } from "./ipv4.ts";
 * import { udpChecksumValid } from "./udp.ts";
 * const t = new PacketTemplate({});
 * const buf = new Uint8Array(2048);
 * t.write(buf, 0, 128);
 * t.patch32(buf, 0, t.fieldOffset("dst-ip"), 0x0a000001);
 * t.setSize(buf, 0, 64);
 * console.assert(ipv4HeaderValid(buf, t.l3) && udpChecksumValid(buf, t.l3, t.l4));
 * ```
 */
export class PacketTemplate {
  /** The prototype frame, {@linkcode maxSize} bytes. */
  readonly frame: Uint8Array;
  /** Offset of the IP header. */
  readonly l3: number;
  /** Offset of the UDP/TCP header. */
  readonly l4: number;
  /** Offset of the payload. */
  readonly payload: number;
  /** Smallest frame: the Ethernet minimum, or the headers plus the reserved payload. */
  readonly minSize: number;
  /** Largest frame. */
  readonly maxSize: number;
  /** True for IPv6. */
  readonly ipv6: boolean;
  /** True for UDP, false for TCP. */
  readonly udp: boolean;
  /** Offset of the UDP/TCP checksum field. */
  readonly l4Checksum: number;
  /** The frame size {@linkcode frame} is built for (sizes change only the length fields). */
  readonly baseSize: number;
  // Ranges of the frame covered by the IP header checksum and by the pseudo-header.
  readonly #ipEnd: number;
  readonly #pseudoStart: number;
  readonly #pseudoEnd: number;
  readonly #head: Uint8Array;

  /** Builds the prototype; throws a `RangeError` for an impossible size or VLAN ID. */
  constructor(options: TemplateOptions) {
    const ipv6 = options.ipv6 ?? false;
    const udp = (options.transport ?? "udp") === "udp";
    const tagged = options.vlan !== undefined;
    this.ipv6 = ipv6;
    this.udp = udp;
    this.l3 = ETHERNET_HEADER + (tagged ? VLAN_TAG : 0);
    this.l4 = this.l3 + (ipv6 ? IPV6_HEADER : IPV4_HEADER);
    this.payload = this.l4 + (udp ? UDP_HEADER : TCP_HEADER);
    this.minSize = Math.max(ETHERNET_MIN_FRAME, this.payload + (options.payloadReserve ?? 0));
    this.maxSize = options.maxSize ?? 2036;
    if (this.maxSize < this.minSize) {
      throw new RangeError(`largest frame ${this.maxSize} is below the smallest ${this.minSize}`);
    }
    this.l4Checksum = this.l4 + (udp ? 6 : 16);
    this.#ipEnd = ipv6 ? this.l3 : this.l3 + IPV4_HEADER; // IPv6 has no header checksum
    this.#pseudoStart = this.l3 + (ipv6 ? 8 : 12);
    this.#pseudoEnd = this.l3 + (ipv6 ? 40 : 20);
    const f = new Uint8Array(this.maxSize);
    this.frame = f;
    const size = this.minSize;
    this.baseSize = size;
    const dst = options.dstMac ?? new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    const src = options.srcMac ?? new Uint8Array([0x02, 0, 0, 0, 0, 0x01]);
    const l3Type = ipv6 ? EtherType.IPV6 : EtherType.IPV4;
    writeEthernet(f, 0, dst, src, l3Type);
    if (tagged) writeVlanTag(f, 0, options.vlan!, l3Type);
    const protocol = udp ? IpProtocol.UDP : IpProtocol.TCP;
    const l4Length = size - this.l4;
    if (ipv6) {
      writeIpv6(
        f,
        this.l3,
        protocol,
        l4Length,
        options.srcIp6 ?? v6(1),
        options.dstIp6 ?? v6(2),
      );
    } else {
      writeIpv4(
        f,
        this.l3,
        protocol,
        size - this.l3,
        options.srcIp ?? 0xc6120001,
        options.dstIp ?? 0xc6120002,
      );
    }
    const sp = options.srcPort ?? 9, dp = options.dstPort ?? 9;
    if (udp) writeUdp(f, this.l3, this.l4, sp, dp, l4Length);
    else writeTcp(f, this.l3, this.l4, sp, dp, 1, 1, TcpFlag.ACK, 65535, l4Length);
    this.#head = f.subarray(0, size);
  }

  /**
   * Copies the prototype into `bytes[offset..]` as a `size`-byte frame (the once-per-buffer
   * step); the length fields and checksums are set for `size`. The payload is zeroed up to
   * `dirty` bytes (default `size`): pass the length of whatever the buffer held when it is
   * reused, so that growing the frame later only ever uncovers zeros.
   */
  write(bytes: Uint8Array, offset: number, size: number, dirty = size): void {
    bytes.set(this.#head, offset);
    const end = size > dirty ? size : dirty;
    if (end > this.baseSize) bytes.fill(0, offset + this.baseSize, offset + end);
    this.setSize(bytes, offset, size);
  }

  /**
   * Changes the frame at `bytes[offset]` (written by {@linkcode write}) to `size` bytes: the IP
   * and UDP length fields and the checksums they feed, incrementally. No allocation.
   */
  setSize(bytes: Uint8Array, offset: number, size: number): void {
    if (size < this.minSize || size > this.maxSize) {
      throw new RangeError(`frame size ${size} is outside ${this.minSize}..${this.maxSize}`);
    }
    const l3 = offset + this.l3, l4 = offset + this.l4, ck = offset + this.l4Checksum;
    const newL4 = size - this.l4;
    let oldL4: number;
    if (this.ipv6) {
      oldL4 = read16(bytes, l3 + 4);
      if (oldL4 === newL4) return;
      write16(bytes, l3 + 4, newL4);
    } else {
      const oldTotal = read16(bytes, l3 + 2);
      const newTotal = size - this.l3;
      if (oldTotal === newTotal) return;
      oldL4 = oldTotal - IPV4_HEADER;
      write16(bytes, l3 + 2, newTotal);
      write16(bytes, l3 + 10, updateChecksum16(read16(bytes, l3 + 10), oldTotal, newTotal));
    }
    // The pseudo-header's upper-layer length, and for UDP also its own length field.
    let check = updateChecksum16(read16(bytes, ck), oldL4, newL4);
    if (this.udp) {
      write16(bytes, l4 + 4, newL4);
      check = updateChecksum16(check, oldL4, newL4);
    }
    this.#storeL4(bytes, ck, check);
  }

  /**
   * Writes the 16-bit `value` at frame offset `field` of the frame at `bytes[offset]`, updating
   * each checksum that covers the field. No allocation.
   */
  patch16(bytes: Uint8Array, offset: number, field: number, value: number): void {
    const at = offset + field;
    const old = read16(bytes, at);
    value &= 0xffff;
    if (old === value) return;
    write16(bytes, at, value);
    if (field >= this.l3 && field < this.#ipEnd) {
      const c = offset + this.l3 + 10;
      write16(bytes, c, updateChecksum16(read16(bytes, c), old, value));
    }
    if (this.#inL4Sum(field)) {
      const ck = offset + this.l4Checksum;
      this.#storeL4(bytes, ck, updateChecksum16(read16(bytes, ck), old, value));
    }
  }

  /**
   * Writes the 32-bit `value` at frame offset `field` (16-bit aligned relative to the IP header)
   * of the frame at `bytes[offset]`, updating each checksum that covers it. No allocation when
   * inlined; per-packet loops call {@linkcode patch32Words}.
   */
  patch32(bytes: Uint8Array, offset: number, field: number, value: number): void {
    this.patch32Words(bytes, offset, field, value >>> 16, value & 0xffff);
  }

  /**
   * {@linkcode patch32} with the value as its two 16-bit words, `high` and `low`. No allocation:
   * a 32-bit value of 2^30 or more (an IPv4 address like 198.18.0.1) passed to or returned from
   * a call V8 did not inline is boxed, a heap number per call; 16-bit words never are.
   */
  patch32Words(bytes: Uint8Array, offset: number, field: number, high: number, low: number): void {
    const at = offset + field;
    const oldHigh = read16(bytes, at), oldLow = read16(bytes, at + 2);
    high &= 0xffff;
    low &= 0xffff;
    if (oldHigh === high && oldLow === low) return;
    write16(bytes, at, high);
    write16(bytes, at + 2, low);
    const delta = checksumDeltaWords(oldHigh, oldLow, high, low); // the same for every checksum
    if (field >= this.l3 && field < this.#ipEnd) {
      const c = offset + this.l3 + 10;
      write16(bytes, c, applyChecksumDelta(read16(bytes, c), delta));
    }
    if (this.#inL4Sum(field)) {
      const ck = offset + this.l4Checksum;
      this.#storeL4(bytes, ck, applyChecksumDelta(read16(bytes, ck), delta));
    }
  }

  /** Frame offset of a named field (the low 32 bits for addresses). */
  fieldOffset(field: SweepField): number {
    switch (field) {
      case "dst-mac":
        return 2;
      case "src-mac":
        return 8;
      case "src-ip":
        return this.l3 + (this.ipv6 ? 8 + 12 : 12);
      case "dst-ip":
        return this.l3 + (this.ipv6 ? 24 + 12 : 16);
      case "src-port":
        return this.l4;
      case "dst-port":
        return this.l4 + 2;
    }
  }

  #inL4Sum(field: number): boolean {
    return field >= this.l4 || (field >= this.#pseudoStart && field < this.#pseudoEnd);
  }

  #storeL4(bytes: Uint8Array, at: number, check: number): void {
    // RFC 768: a UDP checksum computing to 0 is sent as all ones (0 means "no checksum").
    write16(bytes, at, check === 0 && this.udp ? 0xffff : check);
  }
}

/** How a {@linkcode FieldSweep} picks the next value. */
export type SweepMode = "counter" | "random";

/**
 * Varies one field over `count` values from `base`: a counter (base, base+1, ..., wrapping) or a
 * uniform pseudo-random pick (xorshift32, RFC-free but allocation-free). `apply` patches the
 * next value into a frame through its template, checksums included.
 *
 * @example
 * ```ts
 * import { FieldSweep, PacketTemplate } from "./template.ts";
 * const t = new PacketTemplate({});
 * const sweep = new FieldSweep(t, "src-port", 1000, 4, "counter");
 * const buf = new Uint8Array(64);
 * t.write(buf, 0, 64);
 * sweep.apply(buf, 0); sweep.apply(buf, 0);
 * console.assert(((buf[34] << 8) | buf[35]) === 1001);
 * ```
 */
export class FieldSweep {
  readonly #template: PacketTemplate;
  readonly #field: number;
  readonly #wide: boolean;
  readonly #base: number;
  readonly #count: number;
  readonly #random: boolean;
  #next = 0;
  #state: number;

  /** A sweep of `count` values from `base` over `field` of `template`'s frames. */
  constructor(
    template: PacketTemplate,
    field: SweepField,
    base: number,
    count: number,
    mode: SweepMode = "counter",
    seed = 0x9e3779b9,
  ) {
    if (!(count >= 1)) throw new RangeError(`a sweep needs at least 1 value, got ${count}`);
    this.#template = template;
    this.#field = template.fieldOffset(field);
    this.#wide = !field.endsWith("port");
    if (!this.#wide && count > 65536) {
      throw new RangeError(`${field} has 65536 values, asked for ${count}`);
    }
    this.#base = base;
    this.#count = count;
    this.#random = mode === "random";
    this.#state = seed | 1;
  }

  /**
   * The base value of `field` in `template`'s prototype (what a sweep starting there uses).
   */
  static baseOf(template: PacketTemplate, field: SweepField): number {
    const at = template.fieldOffset(field);
    return field.endsWith("port") ? read16(template.frame, at) : read32(template.frame, at);
  }

  /** Patches the next value into the frame at `bytes[offset]`. No allocation. */
  apply(bytes: Uint8Array, offset: number): void {
    let k: number;
    if (this.#random) {
      let x = this.#state;
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      this.#state = x;
      k = (x >>> 0) % this.#count;
    } else {
      k = this.#next;
      this.#next = k + 1 === this.#count ? 0 : k + 1;
    }
    if (this.#wide) {
      const v = this.#base + k; // 16-bit words to the call: see patch32Words
      this.#template.patch32Words(bytes, offset, this.#field, v >>> 16, v & 0xffff);
    } else this.#template.patch16(bytes, offset, this.#field, this.#base + k);
  }
}

function v6(last: number): Uint8Array {
  const a = new Uint8Array(16);
  a[0] = 0x20;
  a[1] = 0x01;
  a[2] = 0x0d;
  a[3] = 0xb8;
  a[15] = last;
  return a;
}

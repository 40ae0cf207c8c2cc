/**
 * vhost-user messages (QEMU docs/interop/vhost-user.rst, "Message Specification"): request ids,
 * header flags, protocol feature bits, and a codec over one preallocated buffer that both the
 * frontend and the backend reuse for every message.
 *
 * ```
 *   ┌──────────── header (12 bytes) ────────────┬──────── payload (size bytes) ────────┐
 *   │ request u32 │ flags u32 │ size u32         │ u64 | vring state | vring address |  │
 *   │             │ ver=1, REPLY 0x4, NEED 0x8   │ memory table | config space          │
 *   └─────────────┴───────────┴──────────────────┴──────────────────────────────────────┘
 *   file descriptors travel beside the bytes as SCM_RIGHTS
 * ```
 *
 * All numbers are in the machine's byte order; this module assumes little endian (x86-64,
 * aarch64). The control path uses `bigint` for u64 fields.
 *
 * @module
 */

/** Request ids of front-end messages (vhost-user.rst, "Front-end message types"). */
export const VhostUserRequest = {
  NONE: 0,
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_BACKEND_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  CREATE_CRYPTO_SESSION: 26,
  CLOSE_CRYPTO_SESSION: 27,
  POSTCOPY_ADVISE: 28,
  POSTCOPY_LISTEN: 29,
  POSTCOPY_END: 30,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
  GPU_SET_SOCKET: 33,
  RESET_DEVICE: 34,
  VRING_KICK: 35,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
} as const;

/**
 * Request ids of back-end messages, sent on the back-end request channel that
 * SET_BACKEND_REQ_FD set up (vhost-user.rst, "Back-end message types").
 */
export const VhostUserBackendRequest = {
  IOTLB_MSG: 1,
  /** The device configuration space changed: the frontend reads it again (GET_CONFIG). */
  CONFIG_CHANGE_MSG: 2,
  VRING_HOST_NOTIFIER_MSG: 3,
  VRING_CALL: 4,
  VRING_ERR: 5,
} as const;

/** A request name, as in {@linkcode VhostUserRequest}. */
export type VhostUserRequestName = keyof typeof VhostUserRequest;

const REQUEST_NAMES: string[] = [];
for (const [name, id] of Object.entries(VhostUserRequest)) REQUEST_NAMES[id] = name;

/**
 * The spec name of request `id` (e.g. `GET_FEATURES`), or `request N` when unknown.
 *
 * @example
 * ```ts
 * import { requestName, VhostUserRequest } from "./message.ts";
 * console.assert(requestName(VhostUserRequest.SET_MEM_TABLE) === "SET_MEM_TABLE");
 * console.assert(requestName(99) === "request 99");
 * ```
 */
export function requestName(id: number): string {
  return REQUEST_NAMES[id] ?? `request ${id}`;
}

const BACKEND_REQUEST_NAMES: string[] = [];
for (const [name, id] of Object.entries(VhostUserBackendRequest)) BACKEND_REQUEST_NAMES[id] = name;

/**
 * The spec name of back-end request `id` (e.g. `CONFIG_CHANGE_MSG`), or `back-end request N`.
 *
 * @example
 * ```ts
 * import { backendRequestName } from "./message.ts";
 * console.assert(backendRequestName(2) === "CONFIG_CHANGE_MSG");
 * ```
 */
export function backendRequestName(id: number): string {
  return BACKEND_REQUEST_NAMES[id] ?? `back-end request ${id}`;
}

/**
 * The rule a request's header flags break (vhost-user.rst "Header": version 1, and of the other
 * bits only NEED_REPLY in a request), or null when they break none. Both request directions use
 * it: the backend for the frontend's requests, the frontend for the back-end channel's.
 *
 * @example
 * ```ts
 * import { requestFlagsRule } from "./message.ts";
 * console.assert(requestFlagsRule(0x9) === null);
 * console.assert(requestFlagsRule(0x2) === "protocol version 2 in flags, expected 1");
 * ```
 */
export function requestFlagsRule(flags: number): string | null {
  if ((flags & VHOST_USER_VERSION_MASK) !== VHOST_USER_VERSION) {
    return `protocol version ${flags & VHOST_USER_VERSION_MASK} in flags, expected 1`;
  }
  if ((flags & ~(VHOST_USER_VERSION_MASK | VHOST_USER_NEED_REPLY)) !== 0) {
    return `flags 0x${flags.toString(16)} (only version and NEED_REPLY 0x8 are valid in requests)`;
  }
  return null;
}

/** Protocol feature bit numbers (vhost-user.rst, "Protocol features"). */
export const VhostUserProtocolFeature = {
  MQ: 0,
  LOG_SHMFD: 1,
  RARP: 2,
  REPLY_ACK: 3,
  MTU: 4,
  BACKEND_REQ: 5,
  CROSS_ENDIAN: 6,
  CRYPTO_SESSION: 7,
  PAGEFAULT: 8,
  CONFIG: 9,
  BACKEND_SEND_FD: 10,
  HOST_NOTIFIER: 11,
  INFLIGHT_SHMFD: 12,
  RESET_DEVICE: 13,
  INBAND_NOTIFICATIONS: 14,
  CONFIGURE_MEM_SLOTS: 15,
  STATUS: 16,
} as const;

/** A protocol feature name, as in {@linkcode VhostUserProtocolFeature}. */
export type VhostUserProtocolFeatureName = keyof typeof VhostUserProtocolFeature;

/**
 * The mask of one or more protocol feature bits.
 *
 * @example
 * ```ts
 * import { protocolFeatureMask } from "./message.ts";
 * console.assert(protocolFeatureMask("MQ", "REPLY_ACK") === 0b1001n);
 * ```
 */
export function protocolFeatureMask(...names: VhostUserProtocolFeatureName[]): bigint {
  let mask = 0n;
  for (const name of names) mask |= 1n << BigInt(VhostUserProtocolFeature[name]);
  return mask;
}

/**
 * Describes a protocol feature mask as `NAME(bit)` items, for messages.
 *
 * @example
 * ```ts
 * import { describeProtocolFeatures } from "./message.ts";
 * console.assert(describeProtocolFeatures(0b1001n) === "MQ(0) REPLY_ACK(3)");
 * ```
 */
export function describeProtocolFeatures(mask: bigint): string {
  const parts: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if ((mask >> BigInt(bit) & 1n) === 0n) continue;
    const name = Object.entries(VhostUserProtocolFeature).find(([, b]) => b === bit)?.[0];
    parts.push(name ? `${name}(${bit})` : `bit ${bit}`);
  }
  return parts.join(" ") || "none";
}

/** Feature bit 30: the backend speaks GET/SET_PROTOCOL_FEATURES (vhost-user.rst). */
export const VHOST_USER_F_PROTOCOL_FEATURES = 30;
/** Mask of {@linkcode VHOST_USER_F_PROTOCOL_FEATURES}. */
export const PROTOCOL_FEATURES_BIT: bigint = 1n << 30n;

/** Header flags: protocol version in bits 0-1 (always 1). */
export const VHOST_USER_VERSION = 0x1;
/** Header flags: mask of the version bits. */
export const VHOST_USER_VERSION_MASK = 0x3;
/** Header flags: this message is a reply. */
export const VHOST_USER_REPLY = 0x4;
/** Header flags: the sender wants a REPLY_ACK (vhost-user.rst, "REPLY_ACK"). */
export const VHOST_USER_NEED_REPLY = 0x8;

/** Header size in bytes: request, flags, size (u32 each). */
export const VHOST_USER_HDR_SIZE = 12;
/** Largest payload this codec carries (the largest spec payload, config space, is 268). */
export const VHOST_USER_MAX_PAYLOAD = 4096;
/** Most memory regions in one SET_MEM_TABLE (DPDK and QEMU: VHOST_MEMORY_BASELINE_NREGIONS). */
export const VHOST_MEMORY_MAX_NREGIONS = 8;
/** Size of one memory table entry. */
export const VHOST_USER_MEMORY_REGION_SIZE = 32;
/** Size of a vring address payload (index, flags, desc, used, avail, log). */
export const VHOST_USER_VRING_ADDR_SIZE = 40;
/** Size of a vring state payload (index, num). */
export const VHOST_USER_VRING_STATE_SIZE = 8;
/** Size of a u64 payload. */
export const VHOST_USER_U64_SIZE = 8;
/** Size of the config space payload header (offset, size, flags). */
export const VHOST_USER_CONFIG_HDR_SIZE = 12;
/** Largest config space access (QEMU VHOST_USER_MAX_CONFIG_SIZE). */
export const VHOST_USER_MAX_CONFIG_SIZE = 256;
/** KICK/CALL/ERR payload: bits 0-7 are the vring index. */
export const VHOST_USER_VRING_IDX_MASK = 0xff;
/** KICK/CALL/ERR payload: bit 8 set means no fd is attached. */
export const VHOST_USER_VRING_NOFD = 0x100;
/** SET_VRING_ADDR flags: VHOST_VRING_F_LOG (log used ring writes). */
export const VHOST_VRING_F_LOG = 0x1;

/**
 * A vhost-user rule broken by either side; the message names the request and the rule, e.g.
 * `vhost-user SET_MEM_TABLE: backend replied failure (1)`.
 *
 * @example
 * ```ts
 * import { VhostUserError } from "./message.ts";
 * const e = new VhostUserError("GET_FEATURES", "no reply within 5000 ms from /run/vhost.sock");
 * console.assert(e.message === "vhost-user GET_FEATURES: no reply within 5000 ms from /run/vhost.sock");
 * ```
 */
export class VhostUserError extends Error {
  /** The request the error is about (spec name), or `connection`. */
  readonly request: string;

  /**
   * Builds `vhost-user <request>: <rule>`.
   *
   * @param request a request name or id.
   * @param rule what went wrong.
   * @param options `cause`: the lower-level error, if any.
   */
  constructor(request: string | number, rule: string, options?: ErrorOptions) {
    const name = typeof request === "number" ? requestName(request) : request;
    super(`vhost-user ${name}: ${rule}`, options);
    this.name = "VhostUserError";
    this.request = name;
  }
}

/** One SET_MEM_TABLE entry (vhost-user.rst, "Memory regions description"). */
export interface MemoryTableRegion {
  /** Guest physical address of the region (what descriptors carry). */
  readonly guestPhysAddr: bigint;
  /** Region size in bytes. */
  readonly memorySize: bigint;
  /** Front-end virtual address of the region (what ring addresses carry). */
  readonly userspaceAddr: bigint;
  /** Offset of the region inside the fd that backs it. */
  readonly mmapOffset: bigint;
}

/** SET_VRING_ADDR payload (vhost-user.rst, "A vring address description"). */
export interface VringAddress {
  /** Vring index. */
  readonly index: number;
  /** VHOST_VRING_F_LOG or 0. */
  readonly flags: number;
  /** Descriptor table (split) or descriptor ring (packed). */
  readonly desc: bigint;
  /** Used ring (split) or device event suppression area (packed). */
  readonly used: bigint;
  /** Available ring (split) or driver event suppression area (packed). */
  readonly avail: bigint;
  /** Guest address for used ring logging. */
  readonly log: bigint;
}

/** GET/SET_CONFIG payload header (vhost-user.rst, "Virtio device config space"). */
export interface ConfigAccess {
  /** Offset in the device configuration space. */
  readonly offset: number;
  /** Bytes accessed. */
  readonly size: number;
  /** 0: writable fields, 1: live migration. */
  readonly flags: number;
}

/**
 * One vhost-user message in a preallocated buffer: header plus up to
 * {@linkcode VHOST_USER_MAX_PAYLOAD} payload bytes. Encoders start a message with
 * {@linkcode begin} and set the payload (which sets `size`); decoders check `size` first with
 * {@linkcode expectSize} (or use a decoder that validates it).
 *
 * @example
 * ```ts
 * import { VhostUserMessage, VhostUserRequest } from "./message.ts";
 * const msg = new VhostUserMessage();
 * msg.begin(VhostUserRequest.SET_VRING_NUM).setVringState(0, 256);
 * console.assert(msg.length === 20 && msg.vringStateNum === 256);
 * ```
 */
export class VhostUserMessage {
  /** Header and payload bytes; send `bytes.subarray(0, length)`. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** The same bytes as a DataView. */
  readonly view: DataView<ArrayBuffer>;

  constructor() {
    this.bytes = new Uint8Array(VHOST_USER_HDR_SIZE + VHOST_USER_MAX_PAYLOAD);
    this.view = new DataView(this.bytes.buffer);
  }

  /** Request id (header word 0). */
  get request(): number {
    return this.view.getUint32(0, true);
  }
  set request(v: number) {
    this.view.setUint32(0, v, true);
  }

  /** Header flags (header word 1). */
  get flags(): number {
    return this.view.getUint32(4, true);
  }
  set flags(v: number) {
    this.view.setUint32(4, v, true);
  }

  /** Payload size in bytes (header word 2). */
  get size(): number {
    return this.view.getUint32(8, true);
  }
  set size(v: number) {
    this.view.setUint32(8, v, true);
  }

  /** Header plus payload bytes. */
  get length(): number {
    return VHOST_USER_HDR_SIZE + this.size;
  }

  /** Spec name of the current request. */
  get name(): string {
    return requestName(this.request);
  }

  /** True when the NEED_REPLY flag is set. */
  get needReply(): boolean {
    return (this.flags & VHOST_USER_NEED_REPLY) !== 0;
  }

  /** Starts a message: sets request and flags (version 1 plus `flags`), payload size 0. */
  begin(request: number, flags = 0): this {
    this.request = request;
    this.flags = VHOST_USER_VERSION | flags;
    this.size = 0;
    return this;
  }

  /** Turns the current request into its reply (flags = version | REPLY), payload size 0. */
  beginReply(): this {
    this.flags = VHOST_USER_VERSION | VHOST_USER_REPLY;
    this.size = 0;
    return this;
  }

  /**
   * Throws a {@linkcode VhostUserError} unless the payload is exactly `expected` bytes.
   *
   * @example
   * ```ts
   * import { VhostUserMessage, VhostUserRequest } from "./message.ts";
   * const msg = new VhostUserMessage().begin(VhostUserRequest.SET_FEATURES);
   * try { msg.expectSize(8); } catch (e) { console.log((e as Error).message); }
   * ```
   */
  expectSize(expected: number): void {
    if (this.size !== expected) {
      throw new VhostUserError(
        this.request,
        `payload is ${this.size} bytes, expected ${expected}`,
      );
    }
  }

  // --- u64 ---------------------------------------------------------------------------------

  /** Sets a u64 payload. */
  setU64(value: bigint): this {
    this.view.setBigUint64(VHOST_USER_HDR_SIZE, BigInt.asUintN(64, value), true);
    this.size = VHOST_USER_U64_SIZE;
    return this;
  }

  /** The u64 payload. */
  get u64(): bigint {
    return this.view.getBigUint64(VHOST_USER_HDR_SIZE, true);
  }

  /** Low 32 bits of the u64 payload, as a number (no BigInt). */
  get u64Lo(): number {
    return this.view.getUint32(VHOST_USER_HDR_SIZE, true);
  }

  /** High 32 bits of the u64 payload, as a number (no BigInt). */
  get u64Hi(): number {
    return this.view.getUint32(VHOST_USER_HDR_SIZE + 4, true);
  }

  // --- vring state -------------------------------------------------------------------------

  /** Sets a vring state payload {index u32, num u32}. */
  setVringState(index: number, num: number): this {
    this.view.setUint32(VHOST_USER_HDR_SIZE, index, true);
    this.view.setUint32(VHOST_USER_HDR_SIZE + 4, num, true);
    this.size = VHOST_USER_VRING_STATE_SIZE;
    return this;
  }

  /** Vring state `index`. */
  get vringStateIndex(): number {
    return this.view.getUint32(VHOST_USER_HDR_SIZE, true);
  }

  /** Vring state `num`. */
  get vringStateNum(): number {
    return this.view.getUint32(VHOST_USER_HDR_SIZE + 4, true);
  }

  // --- vring file (KICK / CALL / ERR) ------------------------------------------------------

  /** Sets a KICK/CALL/ERR payload: vring index in bits 0-7, bit 8 when no fd is attached. */
  setVringFile(index: number, hasFd: boolean): this {
    if (index < 0 || index > VHOST_USER_VRING_IDX_MASK) {
      throw new RangeError(`vring index ${index} does not fit in 8 bits`);
    }
    return this.setU64(BigInt(index | (hasFd ? 0 : VHOST_USER_VRING_NOFD)));
  }

  /** KICK/CALL/ERR payload: vring index (bits 0-7). */
  get vringFileIndex(): number {
    return this.u64Lo & VHOST_USER_VRING_IDX_MASK;
  }

  /** KICK/CALL/ERR payload: true when bit 8 says no fd is attached. */
  get vringFileNoFd(): boolean {
    return (this.u64Lo & VHOST_USER_VRING_NOFD) !== 0;
  }

  /** KICK/CALL/ERR payload: true when bits other than 0-8 are set. */
  get vringFileHasUnknownBits(): boolean {
    return this.u64Hi !== 0 ||
      (this.u64Lo & ~(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD)) !== 0;
  }

  // --- vring address -----------------------------------------------------------------------

  /** Sets a SET_VRING_ADDR payload. */
  setVringAddress(a: VringAddress): this {
    const v = this.view, o = VHOST_USER_HDR_SIZE;
    v.setUint32(o, a.index, true);
    v.setUint32(o + 4, a.flags, true);
    v.setBigUint64(o + 8, a.desc, true);
    v.setBigUint64(o + 16, a.used, true);
    v.setBigUint64(o + 24, a.avail, true);
    v.setBigUint64(o + 32, a.log, true);
    this.size = VHOST_USER_VRING_ADDR_SIZE;
    return this;
  }

  /** Decodes a SET_VRING_ADDR payload; throws unless the payload is 40 bytes. */
  vringAddress(): VringAddress {
    this.expectSize(VHOST_USER_VRING_ADDR_SIZE);
    const v = this.view, o = VHOST_USER_HDR_SIZE;
    return {
      index: v.getUint32(o, true),
      flags: v.getUint32(o + 4, true),
      desc: v.getBigUint64(o + 8, true),
      used: v.getBigUint64(o + 16, true),
      avail: v.getBigUint64(o + 24, true),
      log: v.getBigUint64(o + 32, true),
    };
  }

  // --- memory table ------------------------------------------------------------------------

  /** Sets a SET_MEM_TABLE payload (1 to 8 regions; send one fd per region, in order). */
  setMemoryTable(regions: readonly MemoryTableRegion[]): this {
    const n = regions.length;
    if (n === 0 || n > VHOST_MEMORY_MAX_NREGIONS) {
      throw new VhostUserError(
        "SET_MEM_TABLE",
        `${n} memory regions; between 1 and ${VHOST_MEMORY_MAX_NREGIONS} are allowed`,
      );
    }
    const v = this.view;
    v.setUint32(VHOST_USER_HDR_SIZE, n, true);
    v.setUint32(VHOST_USER_HDR_SIZE + 4, 0, true);
    for (let i = 0; i < n; i++) {
      const r = regions[i], o = VHOST_USER_HDR_SIZE + 8 + i * VHOST_USER_MEMORY_REGION_SIZE;
      v.setBigUint64(o, r.guestPhysAddr, true);
      v.setBigUint64(o + 8, r.memorySize, true);
      v.setBigUint64(o + 16, r.userspaceAddr, true);
      v.setBigUint64(o + 24, r.mmapOffset, true);
    }
    this.size = 8 + n * VHOST_USER_MEMORY_REGION_SIZE;
    return this;
  }

  /**
   * Decodes a SET_MEM_TABLE payload. Throws a {@linkcode VhostUserError} when the region count
   * is 0 or above 8, or when the payload size does not match the count.
   */
  memoryTable(): MemoryTableRegion[] {
    if (this.size < 8) this.expectSize(8);
    const n = this.view.getUint32(VHOST_USER_HDR_SIZE, true);
    if (n === 0 || n > VHOST_MEMORY_MAX_NREGIONS) {
      throw new VhostUserError(
        this.request,
        `${n} memory regions; between 1 and ${VHOST_MEMORY_MAX_NREGIONS} are allowed`,
      );
    }
    this.expectSize(8 + n * VHOST_USER_MEMORY_REGION_SIZE);
    const regions: MemoryTableRegion[] = [];
    const v = this.view;
    for (let i = 0; i < n; i++) {
      const o = VHOST_USER_HDR_SIZE + 8 + i * VHOST_USER_MEMORY_REGION_SIZE;
      regions.push({
        guestPhysAddr: v.getBigUint64(o, true),
        memorySize: v.getBigUint64(o + 8, true),
        userspaceAddr: v.getBigUint64(o + 16, true),
        mmapOffset: v.getBigUint64(o + 24, true),
      });
    }
    return regions;
  }

  // --- config space ------------------------------------------------------------------------

  /** Sets a GET/SET_CONFIG payload: header plus `data` (or `size` zero bytes). */
  setConfig(offset: number, size: number, flags: number, data?: Uint8Array): this {
    if (size > VHOST_USER_MAX_CONFIG_SIZE) {
      throw new RangeError(`config access of ${size} bytes exceeds ${VHOST_USER_MAX_CONFIG_SIZE}`);
    }
    const v = this.view, o = VHOST_USER_HDR_SIZE;
    v.setUint32(o, offset, true);
    v.setUint32(o + 4, size, true);
    v.setUint32(o + 8, flags, true);
    const region = this.bytes.subarray(o + VHOST_USER_CONFIG_HDR_SIZE, o + 12 + size);
    region.fill(0);
    if (data) region.set(data.subarray(0, size));
    this.size = VHOST_USER_CONFIG_HDR_SIZE + size;
    return this;
  }

  /**
   * Decodes a GET/SET_CONFIG header; throws unless the payload is the header plus `size` bytes
   * and `size` is at most {@linkcode VHOST_USER_MAX_CONFIG_SIZE}.
   */
  configAccess(): ConfigAccess {
    if (this.size < VHOST_USER_CONFIG_HDR_SIZE) this.expectSize(VHOST_USER_CONFIG_HDR_SIZE);
    const v = this.view, o = VHOST_USER_HDR_SIZE;
    const access = {
      offset: v.getUint32(o, true),
      size: v.getUint32(o + 4, true),
      flags: v.getUint32(o + 8, true),
    };
    if (access.size > VHOST_USER_MAX_CONFIG_SIZE) {
      throw new VhostUserError(
        this.request,
        `config access of ${access.size} bytes exceeds ${VHOST_USER_MAX_CONFIG_SIZE}`,
      );
    }
    this.expectSize(VHOST_USER_CONFIG_HDR_SIZE + access.size);
    return access;
  }

  /** The config space bytes of a GET/SET_CONFIG payload (a view into the buffer). */
  configData(): Uint8Array {
    const o = VHOST_USER_HDR_SIZE + VHOST_USER_CONFIG_HDR_SIZE;
    return this.bytes.subarray(o, o + this.view.getUint32(VHOST_USER_HDR_SIZE + 4, true));
  }
}

/**
 * The virtio-net control virtqueue's wire format (virtio 1.2 §5.1.6.5), one codec for the driver
 * that writes commands and the device that reads them:
 *
 * ```
 *   struct virtio_net_ctrl {  u8 class;  u8 command;  u8 data[];  u8 ack;  }
 *          └──────── device-readable ───────────────┘  └ device-writable ┘
 *
 *   class RX 0   (VIRTIO_NET_F_CTRL_RX)       PROMISC 0, ALLMULTI 1       data: u8 on/off
 *   class MAC 1  (VIRTIO_NET_F_CTRL_MAC_ADDR) ADDR_SET 1                  data: u8 mac[6]
 *   class MQ 4   (VIRTIO_NET_F_MQ)            VQ_PAIRS_SET 0              data: le16 pairs
 *   ack: VIRTIO_NET_OK 0 / VIRTIO_NET_ERR 1
 * ```
 *
 * The driver side ({@linkcode writeCtrlCommand}) lays the readable part out in one buffer; the
 * device side ({@linkcode readCtrlCommand}) accepts any arrangement of descriptors (§2.6.4
 * message framing) and checks it. Commands of other classes (MAC_TABLE_SET, VLAN, ANNOUNCE,
 * offloads) are not implemented: a device answers VIRTIO_NET_ERR.
 *
 * @module
 */

import type { AddressTranslator, DescriptorChain } from "./virtqueue.ts";

/** Control classes and their commands (§5.1.6.5). */
export const NetCtrl = {
  /** Class VIRTIO_NET_CTRL_RX (§5.1.6.5.1). */
  RX: 0,
  /** VIRTIO_NET_CTRL_RX_PROMISC: receive every frame (data: u8 on). */
  RX_PROMISC: 0,
  /** VIRTIO_NET_CTRL_RX_ALLMULTI: receive every multicast frame (data: u8 on). */
  RX_ALLMULTI: 1,
  /** Class VIRTIO_NET_CTRL_MAC (§5.1.6.5.2). */
  MAC: 1,
  /** VIRTIO_NET_CTRL_MAC_ADDR_SET: the default MAC address (data: u8 mac[6]). */
  MAC_ADDR_SET: 1,
  /** Class VIRTIO_NET_CTRL_MQ (§5.1.6.5.5). */
  MQ: 4,
  /** VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: how many queue pairs the device uses (data: le16). */
  MQ_VQ_PAIRS_SET: 0,
} as const;

/** Ack byte: the command was carried out (§5.1.6.5). */
export const NET_OK = 0;
/** Ack byte: the command failed or is not supported (§5.1.6.5). */
export const NET_ERR = 1;
/** Bytes of class and command before the data. */
export const CTRL_HEADER = 2;
/** The longest data part this codec reads or writes (MAC_ADDR_SET's 6 bytes, with room). */
export const CTRL_DATA_MAX = 14;
/** VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN / _MAX (§5.1.6.5.5). */
export const MQ_VQ_PAIRS_MIN = 1;
/** See {@linkcode MQ_VQ_PAIRS_MIN}. */
export const MQ_VQ_PAIRS_MAX = 0x8000;

/**
 * The spec name of a command, for messages, e.g. `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`.
 *
 * @example
 * ```ts
 * import { ctrlName, NetCtrl } from "./net_ctrl.ts";
 * console.assert(ctrlName(NetCtrl.MQ, NetCtrl.MQ_VQ_PAIRS_SET) === "VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET");
 * console.assert(ctrlName(9, 3) === "control command class 9 command 3");
 * ```
 */
export function ctrlName(cls: number, command: number): string {
  if (cls === NetCtrl.RX && command === NetCtrl.RX_PROMISC) return "VIRTIO_NET_CTRL_RX_PROMISC";
  if (cls === NetCtrl.RX && command === NetCtrl.RX_ALLMULTI) return "VIRTIO_NET_CTRL_RX_ALLMULTI";
  if (cls === NetCtrl.MAC && command === NetCtrl.MAC_ADDR_SET) {
    return "VIRTIO_NET_CTRL_MAC_ADDR_SET";
  }
  if (cls === NetCtrl.MQ && command === NetCtrl.MQ_VQ_PAIRS_SET) {
    return "VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET";
  }
  return `control command class ${cls} command ${command}`;
}

/**
 * Data bytes a known command carries (RX 1, MAC_ADDR_SET 6, VQ_PAIRS_SET 2), or -1 for a
 * command this codec does not know.
 *
 * @example
 * ```ts
 * import { ctrlDataSize, NetCtrl } from "./net_ctrl.ts";
 * console.assert(ctrlDataSize(NetCtrl.MAC, NetCtrl.MAC_ADDR_SET) === 6);
 * console.assert(ctrlDataSize(NetCtrl.MAC, 0) === -1); // MAC_TABLE_SET: not implemented
 * ```
 */
export function ctrlDataSize(cls: number, command: number): number {
  if (cls === NetCtrl.RX && (command === NetCtrl.RX_PROMISC || command === NetCtrl.RX_ALLMULTI)) {
    return 1;
  }
  if (cls === NetCtrl.MAC && command === NetCtrl.MAC_ADDR_SET) return 6;
  if (cls === NetCtrl.MQ && command === NetCtrl.MQ_VQ_PAIRS_SET) return 2;
  return -1;
}

/**
 * Writes the device-readable part of a command (class, command, data) at `bytes[at]`; returns
 * its length. The ack byte goes in a separate, device-writable buffer.
 *
 * @example
 * ```ts
 * import { NetCtrl, writeCtrlCommand } from "./net_ctrl.ts";
 * const b = new Uint8Array(16);
 * const n = writeCtrlCommand(b, 0, NetCtrl.MQ, NetCtrl.MQ_VQ_PAIRS_SET, new Uint8Array([2, 0]));
 * console.assert(n === 4 && b[0] === 4 && b[2] === 2);
 * ```
 */
export function writeCtrlCommand(
  bytes: Uint8Array,
  at: number,
  cls: number,
  command: number,
  data: Uint8Array,
): number {
  if (data.length > CTRL_DATA_MAX) {
    throw new RangeError(`${ctrlName(cls, command)}: ${data.length} data bytes, at most 14`);
  }
  bytes[at] = cls;
  bytes[at + 1] = command;
  bytes.set(data, at + CTRL_HEADER);
  return CTRL_HEADER + data.length;
}

/** A command as {@linkcode readCtrlCommand} found it in a descriptor chain. */
export class CtrlCommand {
  /** Class byte. */
  cls = 0;
  /** Command byte. */
  command = 0;
  /** Data bytes (the first {@linkcode dataLength}; longer data is counted, not kept). */
  readonly data: Uint8Array = new Uint8Array(CTRL_DATA_MAX);
  /** Data bytes the driver sent. */
  dataLength = 0;
  /** Region and offset of the ack byte (see {@linkcode AddressTranslator}); region -1: none. */
  ackRegion = -1;
  /** See {@linkcode ackRegion}. */
  ackOffset = 0;
}

/**
 * Reads a command from `chain` into `out`: the device-readable segments in order are class,
 * command and data (split across segments any way, §2.6.4); the first byte of the first
 * device-writable segment is the ack. Returns null, or the rule the driver broke (no room for
 * the ack, a readable segment after a writable one, fewer than 2 readable bytes); the ack
 * position is set whenever there is one, so the device can still answer VIRTIO_NET_ERR.
 *
 * @example
 * ```ts
 * import { CtrlCommand, readCtrlCommand } from "./net_ctrl.ts";
 * import { DescriptorChain, LocalMemory } from "./virtqueue.ts";
 * const mem = new Uint8Array([4, 0, 2, 0, 0xff]);
 * const chain = new DescriptorChain(4);
 * chain.count = 2;
 * chain.offset.set([0, 4]), chain.len.set([4, 1]), chain.writable.set([0, 1]);
 * const cmd = new CtrlCommand();
 * console.assert(readCtrlCommand(chain, new LocalMemory(mem, 0), cmd) === null);
 * console.assert(cmd.cls === 4 && cmd.dataLength === 2 && cmd.data[0] === 2 && cmd.ackOffset === 4);
 * ```
 */
export function readCtrlCommand(
  chain: DescriptorChain,
  memory: AddressTranslator,
  out: CtrlCommand,
): string | null {
  out.ackRegion = -1;
  out.dataLength = 0;
  let readable = 0;
  let rule: string | null = null;
  for (let s = 0; s < chain.count; s++) {
    const len = chain.len[s];
    const bytes = memory.bytes(chain.region[s]);
    const at = chain.offset[s];
    if (chain.writable[s] === 1) {
      if (out.ackRegion < 0 && len > 0) {
        out.ackRegion = chain.region[s];
        out.ackOffset = at;
      }
      continue;
    }
    if (out.ackRegion >= 0) rule ??= "a device-readable segment follows the ack (§2.7.4.2)";
    for (let i = 0; i < len; i++, readable++) {
      const b = bytes[at + i];
      if (readable === 0) out.cls = b;
      else if (readable === 1) out.command = b;
      else if (readable - CTRL_HEADER < CTRL_DATA_MAX) out.data[readable - CTRL_HEADER] = b;
    }
  }
  out.dataLength = Math.max(0, readable - CTRL_HEADER);
  if (out.ackRegion < 0) return "no device-writable byte for the ack (§5.1.6.5)";
  if (readable < CTRL_HEADER) return `${readable} readable bytes, class and command need 2`;
  return rule;
}

/**
 * vhost-net pieces that need no kernel: request numbers against Linux uapi (`vhost.h`,
 * `if_tun.h`, x86-64), argument layouts, path selection, and the option checks of
 * `VirtioNet.open`. The kernel itself is exercised by kernel_vm_test.ts.
 *
 * ```
 *   ioctl.ts encoders ──► bytes compared with the uapi struct layouts
 *   VirtioNet.open({ tap }) without /dev/vhost-net ──► TypeError
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  ifreq,
  ifreqName,
  TunIoctl,
  VhostIoctl,
  vhostMemory,
  vringAddr,
  vringFile,
  vringState,
} from "../lib/vhost_net/ioctl.ts";
import { isVhostNetPath, VHOST_NET_UNUSED_FEATURES } from "../lib/vhost_net/frontend.ts";
import { VirtioNet } from "../lib/driver/virtio_net.ts";
import { featureMask } from "../lib/virtio/features.ts";
import { assertThrows } from "./helpers.ts";

Deno.test("vhost-net: request numbers are the uapi _IOC encodings (x86-64)", () => {
  assert.deepEqual(VhostIoctl, {
    VHOST_GET_FEATURES: 0x8008af00,
    VHOST_SET_FEATURES: 0x4008af00,
    VHOST_SET_OWNER: 0x0000af01,
    VHOST_RESET_OWNER: 0x0000af02,
    VHOST_SET_MEM_TABLE: 0x4008af03,
    VHOST_SET_VRING_NUM: 0x4008af10,
    VHOST_SET_VRING_ADDR: 0x4028af11,
    VHOST_SET_VRING_BASE: 0x4008af12,
    VHOST_GET_VRING_BASE: 0xc008af12,
    VHOST_SET_VRING_KICK: 0x4008af20,
    VHOST_SET_VRING_CALL: 0x4008af21,
    VHOST_NET_SET_BACKEND: 0x4008af30,
  });
  assert.deepEqual(TunIoctl, {
    TUNSETIFF: 0x400454ca,
    TUNSETPERSIST: 0x400454cb,
    TUNGETFEATURES: 0x800454cf,
    TUNSETOFFLOAD: 0x400454d0,
    TUNSETTXFILTER: 0x400454d1,
    TUNGETIFF: 0x800454d2,
    TUNSETSNDBUF: 0x400454d4,
    TUNSETVNETHDRSZ: 0x400454d8,
    TUNSETQUEUE: 0x400454d9,
  });
});

Deno.test("vhost-net: argument layouts (vring state/file/addr with used before avail, memory, ifreq)", () => {
  const b = new Uint8Array(40);
  const v = new DataView(b.buffer);
  vringState(b, 1, 256);
  assert.deepEqual([v.getUint32(0, true), v.getUint32(4, true)], [1, 256]);
  vringFile(b, 0, -1);
  assert.deepEqual([v.getUint32(0, true), v.getInt32(4, true)], [0, -1]);
  vringAddr(b, { index: 1, desc: 0x1000, used: 0x3000, avail: 0x2000 });
  assert.deepEqual(
    [0, 4].map((o) => v.getUint32(o, true)).concat(
      [8, 16, 24, 32].map((o) => Number(v.getBigUint64(o, true))),
    ),
    [1, 0, 0x1000, 0x3000, 0x2000, 0],
  );
  const m = vhostMemory([
    { guestPhysAddr: 0x7f0000000000, size: 1 << 20, userspaceAddr: 0x7f0000000000 },
  ]);
  const mv = new DataView(m.buffer);
  assert.equal(m.length, 8 + 32);
  assert.deepEqual([mv.getUint32(0, true), mv.getUint32(4, true)], [1, 0]);
  assert.deepEqual(
    [8, 16, 24, 32].map((o) => Number(mv.getBigUint64(o, true))),
    [0x7f0000000000, 1 << 20, 0x7f0000000000, 0],
  );
  ifreq(b, "tap%d", 0x5002);
  assert.equal(ifreqName(b), "tap%d");
  assert.equal(v.getUint16(16, true), 0x5002);
  assertThrows(() => ifreq(b, "sixteen-bytes-xx", 2), RangeError, "IFNAMSIZ");
});

Deno.test("vhost-net: features a frontend never sets are 26, 27 and 33", () => {
  assert.equal(
    VHOST_NET_UNUSED_FEATURES,
    (1n << 26n) | featureMask("VHOST_NET_F_VIRTIO_NET_HDR", "F_ACCESS_PLATFORM"),
  );
});

Deno.test("vhost-net: path selection and option checks", () => {
  assert.equal(isVhostNetPath("/dev/vhost-net"), true);
  assert.equal(isVhostNetPath("/dev/null"), true, "any character device");
  assert.equal(isVhostNetPath("/tmp/vhost.sock"), false);
  assertThrows(
    () => VirtioNet.open({ path: "/tmp/no-such-vhost.sock", tap: "tap0" }),
    TypeError,
    "needs path /dev/vhost-net",
  );
});

/**
 * The vhost-user message codec: byte layouts of every payload this project sends or accepts
 * (vhost-user.rst "Message Specification"), and the checks on malformed payloads.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  describeProtocolFeatures,
  protocolFeatureMask,
  requestName,
  VHOST_USER_NEED_REPLY,
  VHOST_USER_REPLY,
  VhostUserError,
  VhostUserMessage,
  VhostUserRequest,
} from "../lib/vhost_user/message.ts";

function words(msg: VhostUserMessage): number[] {
  const out: number[] = [];
  for (let o = 0; o < msg.length; o += 4) out.push(msg.view.getUint32(o, true));
  return out;
}

Deno.test("request ids and names follow the spec", () => {
  assert.equal(VhostUserRequest.GET_FEATURES, 1);
  assert.equal(VhostUserRequest.SET_MEM_TABLE, 5);
  assert.equal(VhostUserRequest.GET_VRING_BASE, 11);
  assert.equal(VhostUserRequest.SET_VRING_ENABLE, 18);
  assert.equal(VhostUserRequest.GET_CONFIG, 24);
  assert.equal(VhostUserRequest.SET_STATUS, 39);
  assert.equal(VhostUserRequest.GET_STATUS, 40);
  assert.equal(requestName(13), "SET_VRING_CALL");
  assert.equal(requestName(0), "NONE");
  assert.equal(requestName(99), "request 99");
});

Deno.test("protocol feature masks", () => {
  assert.equal(protocolFeatureMask("MQ", "REPLY_ACK", "STATUS"), 0x10009n);
  assert.equal(protocolFeatureMask("CONFIG"), 0x200n);
  assert.equal(describeProtocolFeatures(0x10009n), "MQ(0) REPLY_ACK(3) STATUS(16)");
  assert.equal(describeProtocolFeatures(1n << 40n), "bit 40");
  assert.equal(describeProtocolFeatures(0n), "none");
});

Deno.test("header: request, flags (version 1), size; a request without payload is 12 bytes", () => {
  const m = new VhostUserMessage();
  m.begin(VhostUserRequest.GET_FEATURES);
  assert.deepEqual(words(m), [1, 1, 0]);
  assert.equal(m.length, 12);
  m.begin(VhostUserRequest.SET_STATUS, VHOST_USER_NEED_REPLY).setU64(0xfn);
  assert.deepEqual(words(m), [39, 9, 8, 0xf, 0]);
  assert.ok(m.needReply);
  assert.equal(m.name, "SET_STATUS");
});

Deno.test("reply: flags 0x5 (version | REPLY), same request id", () => {
  const m = new VhostUserMessage();
  m.begin(VhostUserRequest.GET_FEATURES).beginReply().setU64((1n << 32n) | (1n << 30n));
  assert.deepEqual(words(m), [1, VHOST_USER_REPLY | 1, 8, 1 << 30, 1]);
  assert.equal(m.u64, 0x1_4000_0000n);
  assert.equal(m.u64Lo, 0x4000_0000);
  assert.equal(m.u64Hi, 1);
});

Deno.test("u64 payload keeps all 64 bits", () => {
  const m = new VhostUserMessage().begin(VhostUserRequest.SET_FEATURES).setU64(
    0xffff_ffff_ffff_ffffn,
  );
  assert.equal(m.u64, 0xffff_ffff_ffff_ffffn);
  assert.deepEqual(words(m).slice(3), [0xffffffff, 0xffffffff]);
});

Deno.test("vring state: index then num", () => {
  const m = new VhostUserMessage().begin(VhostUserRequest.SET_VRING_BASE).setVringState(3, 0x8000);
  assert.deepEqual(words(m), [10, 1, 8, 3, 0x8000]);
  assert.equal(m.vringStateIndex, 3);
  assert.equal(m.vringStateNum, 0x8000);
});

Deno.test("vring file: index in bits 0-7, bit 8 = no fd", () => {
  const m = new VhostUserMessage();
  m.begin(VhostUserRequest.SET_VRING_KICK).setVringFile(5, true);
  assert.equal(m.u64, 5n);
  assert.equal(m.vringFileIndex, 5);
  assert.ok(!m.vringFileNoFd);
  m.begin(VhostUserRequest.SET_VRING_CALL).setVringFile(1, false);
  assert.equal(m.u64, 0x101n);
  assert.ok(m.vringFileNoFd);
  assert.ok(!m.vringFileHasUnknownBits);
  m.setU64(0x201n);
  assert.ok(m.vringFileHasUnknownBits);
  m.setU64(1n << 40n);
  assert.ok(m.vringFileHasUnknownBits);
  assert.throws(() => m.setVringFile(256, true), RangeError);
});

Deno.test("vring address: 40 bytes index, flags, desc, used, avail, log", () => {
  const m = new VhostUserMessage().begin(VhostUserRequest.SET_VRING_ADDR);
  m.setVringAddress({
    index: 1,
    flags: 0,
    desc: 0x7f00_0000_1000n,
    used: 0x7f00_0000_3000n,
    avail: 0x7f00_0000_2000n,
    log: 0n,
  });
  assert.equal(m.size, 40);
  assert.deepEqual(words(m).slice(3), [
    1,
    0,
    0x1000,
    0x7f00,
    0x3000,
    0x7f00,
    0x2000,
    0x7f00,
    0,
    0,
  ]);
  const a = m.vringAddress();
  assert.equal(a.index, 1);
  assert.equal(a.desc, 0x7f00_0000_1000n);
  assert.equal(a.used, 0x7f00_0000_3000n);
  assert.equal(a.avail, 0x7f00_0000_2000n);
  m.size = 32;
  assert.throws(() => m.vringAddress(), /SET_VRING_ADDR: payload is 32 bytes, expected 40/);
});

Deno.test("memory table: nregions, padding, 32-byte regions; size = 8 + 32 n", () => {
  const m = new VhostUserMessage().begin(VhostUserRequest.SET_MEM_TABLE);
  const regions = [
    {
      guestPhysAddr: 0x1000n,
      memorySize: 0x2000n,
      userspaceAddr: 0x7f00_0000_0000n,
      mmapOffset: 0n,
    },
    {
      guestPhysAddr: 0x10_0000n,
      memorySize: 0x1000n,
      userspaceAddr: 0x7f10_0000_0000n,
      mmapOffset: 0x40n,
    },
  ];
  m.setMemoryTable(regions);
  assert.equal(m.size, 8 + 2 * 32);
  assert.deepEqual(words(m).slice(3, 13), [2, 0, 0x1000, 0, 0x2000, 0, 0, 0x7f00, 0, 0]);
  assert.deepEqual(m.memoryTable(), regions);
});

Deno.test("memory table: 0 or more than 8 regions, or a size that does not match, are refused", () => {
  const m = new VhostUserMessage().begin(VhostUserRequest.SET_MEM_TABLE);
  const r = { guestPhysAddr: 0n, memorySize: 4096n, userspaceAddr: 0n, mmapOffset: 0n };
  assert.throws(() => m.setMemoryTable([]), /0 memory regions; between 1 and 8/);
  assert.throws(() => m.setMemoryTable(Array(9).fill(r)), /9 memory regions/);
  m.setMemoryTable([r, r]);
  m.view.setUint32(12, 9, true); // claims 9 regions
  assert.throws(() => m.memoryTable(), /SET_MEM_TABLE: 9 memory regions; between 1 and 8/);
  m.view.setUint32(12, 3, true); // claims 3, carries 2
  assert.throws(() => m.memoryTable(), /payload is 72 bytes, expected 104/);
  m.size = 4;
  assert.throws(() => m.memoryTable(), /payload is 4 bytes, expected 8/);
});

Deno.test("config space: offset, size, flags, then size bytes", () => {
  const m = new VhostUserMessage().begin(VhostUserRequest.GET_CONFIG);
  m.setConfig(0, 6, 0, new Uint8Array([1, 2, 3, 4, 5, 6]));
  assert.equal(m.size, 18);
  assert.deepEqual(m.configAccess(), { offset: 0, size: 6, flags: 0 });
  assert.deepEqual([...m.configData()], [1, 2, 3, 4, 5, 6]);
  m.size = 17;
  assert.throws(() => m.configAccess(), /payload is 17 bytes, expected 18/);
  assert.throws(() => m.setConfig(0, 257, 0), RangeError);
  m.view.setUint32(16, 1000, true);
  m.size = 12 + 1000;
  assert.throws(() => m.configAccess(), /config access of 1000 bytes exceeds 256/);
});

Deno.test("expectSize and VhostUserError name the request", () => {
  const m = new VhostUserMessage().begin(VhostUserRequest.SET_FEATURES);
  assert.throws(
    () => m.expectSize(8),
    (err: unknown) =>
      err instanceof VhostUserError && err.request === "SET_FEATURES" &&
      err.message === "vhost-user SET_FEATURES: payload is 0 bytes, expected 8",
  );
  assert.equal(new VhostUserError(40, "x").message, "vhost-user GET_STATUS: x");
});

/**
 * Close and reopen a vhost-net port on the same tap 20 times (inside the test VM): traffic both
 * ways each time, and afterwards exactly the fds and memfd mappings there were before.
 *
 * ```
 *   ×20: VirtioNet.open(/dev/vhost-net, tap vnr0) ─ 8 frames each way ─ close
 *   assert /proc/self/fd and /proc/self/maps (memfd) unchanged
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { VirtioNet } from "../../lib/driver/virtio_net.ts";
import { openFds } from "../helpers.ts";
import {
  frameSize,
  memfdMappings,
  persistentTap,
  pollUntil,
  removeTap,
  TapSocket,
  testFrameSeq,
  writeTestFrame,
} from "./guest.ts";

const TAP = "vnr0";
const ROUNDS = 20;
const FRAMES = 8;
const PEER = Uint8Array.of(0x02, 0, 0, 0, 0, 0x77);

/** One open-traffic-close round; returns [frames the tap saw, frames rxBurst returned]. */
async function round(r: number): Promise<[number, number]> {
  using socket = new TapSocket(TAP);
  using port = VirtioNet.open({ path: "/dev/vhost-net", tap: TAP, notice: () => {} });
  const { pool } = port;
  const bufs = new Uint32Array(FRAMES), lens = new Uint32Array(FRAMES);
  assert.equal(pool.alloc(bufs, 0, FRAMES), FRAMES);
  for (let i = 0; i < FRAMES; i++) {
    lens[i] = frameSize(r * FRAMES + i);
    writeTestFrame(pool.bytes, pool.dataOffset(bufs[i]), r * FRAMES + i, lens[i], PEER, port.mac);
  }
  assert.equal(port.txBurst(bufs, lens, FRAMES), FRAMES);
  const got = new Uint8Array(2048);
  let tapSaw = 0;
  await pollUntil(() => {
    for (let len; (len = socket.recv(got)) >= 0;) if (testFrameSeq(got, 0, len) >= 0) tapSaw++;
    return tapSaw === FRAMES;
  });
  const frame = new Uint8Array(1514);
  for (let i = 0; i < FRAMES; i++) {
    const len = frameSize(i);
    writeTestFrame(frame, 0, i, len, port.mac, PEER);
    socket.send(frame, len);
  }
  let received = 0;
  await pollUntil(() => {
    const k = port.rxBurst(bufs, lens, FRAMES);
    for (let i = 0; i < k; i++) {
      if (testFrameSeq(pool.bytes, pool.dataOffset(bufs[i]), lens[i]) >= 0) received++;
    }
    pool.free(bufs, 0, k);
    return received === FRAMES;
  });
  assert.equal(port.txDrain(10_000), 0);
  return [tapSaw, received];
}

Deno.test(`vhost-net: close and reopen on one tap ${ROUNDS} times, traffic each time, nothing left behind`, async () => {
  await persistentTap(TAP);
  try {
    await round(0); // warm-up: lazily created runtime fds are not the port's
    const fds = openFds(), maps = memfdMappings();
    for (let r = 1; r <= ROUNDS; r++) {
      const [tx, rx] = await round(r);
      assert.equal(tx, FRAMES, `round ${r}: the tap saw ${tx} of ${FRAMES} frames`);
      assert.equal(rx, FRAMES, `round ${r}: rxBurst returned ${rx} of ${FRAMES} frames`);
      assert.equal(openFds(), fds, `round ${r}: open fds`);
      assert.equal(memfdMappings(), maps, `round ${r}: memfd mappings`);
    }
  } finally {
    removeTap(TAP);
  }
});

/**
 * Link changes the device starts (virtio 1.2 §5.1.4 VIRTIO_NET_S_LINK_UP, §2.5.2 configuration
 * change notification), carried by vhost-user's back-end channel: the TS device's link goes
 * down and up again while the TS driver sends, exact counts; and a backend that abuses the
 * channel.
 *
 * ```
 *   VirtioNet ──SET_BACKEND_REQ_FD──► TS device (STATUS, CONFIG, BACKEND_REQ offered)
 *   device.setLinkUp(false) ──CONFIG_CHANGE_MSG──► port: GET_CONFIG ─► linkchange "down"
 *     (the device moves nothing; the port stays connected, its ring keeps what was queued)
 *   device.setLinkUp(true) ──CONFIG_CHANGE_MSG──► port: linkchange "up" ─► queued frames go
 *   hostile backend: bad flags / size / payload, a cut header ─► port down, one clear reason
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceThread } from "../lib/device/device_thread.ts";
import { type LinkChange, VirtioNet } from "../lib/driver/virtio_net.ts";
import { writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { DEFAULT_DEVICE_FEATURES, DEFAULT_PROTOCOL_FEATURES } from "../lib/vhost_user/backend.ts";
import { protocolFeatureMask } from "../lib/vhost_user/message.ts";
import { featureMask } from "../lib/virtio/features.ts";
import { HostileBackend } from "./hostile_backend.ts";

const FRAME = 64;
const BURST = 32;
const FEATURES = DEFAULT_DEVICE_FEATURES | featureMask("NET_F_STATUS");
const PROTOCOL = DEFAULT_PROTOCOL_FEATURES | protocolFeatureMask("CONFIG", "BACKEND_REQ");

/** Polls the port's link check until `cond`, or throws after `ms`. */
async function waitLink(port: VirtioNet, what: string, cond: () => boolean, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    port.checkLink();
    if (cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Queues up to `count` frames without waiting for the device; returns how many were queued. */
function queue(port: VirtioNet, count: number): number {
  const { pool } = port;
  const bufs = new Uint32Array(BURST), lens = new Uint32Array(BURST).fill(FRAME);
  let sent = 0;
  while (sent < count) {
    const k = pool.alloc(bufs, 0, Math.min(BURST, count - sent));
    for (let i = 0; i < k; i++) writeUdpFrame(pool.bytes, pool.dataOffset(bufs[i]), FRAME);
    const s = port.txBurst(bufs, lens, k);
    pool.free(bufs, s, k - s);
    sent += s;
    if (s < k) break; // the ring is full
  }
  return sent;
}

/** Sends exactly `count` frames, waiting for the device to take them. */
function send(port: VirtioNet, count: number): void {
  let sent = 0;
  const deadline = performance.now() + 10_000;
  while (sent < count) {
    if (performance.now() > deadline) throw new Error(`the device took ${sent} of ${count}`);
    sent += queue(port, count - sent);
    port.txDrain(0);
  }
  assert.equal(port.txDrain(5000), 0, "the device took every frame");
}

async function waitCount(device: DeviceThread, n: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (device.stats.fromDriverPackets < n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 2));
  }
}

for (const packed of [true, false]) {
  for (const workers of [false, true]) {
    const ring = packed ? "packed" : "split";
    Deno.test(`link change ${ring}${workers ? ", pair Workers" : ""}: the TS device's link goes down and up; linkchange both ways, nothing moves while down, exact counts`, async () => {
      const device = await DeviceThread.start({
        mode: "sink",
        features: FEATURES,
        protocolFeatures: PROTOCOL,
        workers,
      });
      try {
        const port = VirtioNet.open({ path: device.path, packed, queueSize: 256 });
        const changes: LinkChange[] = [];
        port.addEventListener("linkchange", (e) => changes.push((e as CustomEvent).detail));
        try {
          assert.equal(port.link, "up");
          send(port, 1000);
          await waitCount(device, 1000);
          assert.equal(device.stats.fromDriverPackets, 1000);

          device.setLinkUp(false);
          await waitLink(port, "link down", () => port.link === "down");
          assert.equal(changes.length, 1);
          assert.equal(changes[0].link, "down");
          assert.match(
            changes[0].reason,
            /the device reports its link down \(VIRTIO_NET_S_LINK_UP clear/,
          );
          assert.equal(port.connected, true, "a device whose link is down is still connected");
          assert.match(port.downReason, /VIRTIO_NET_S_LINK_UP clear/);
          assert.equal(port.configLinkUp(), false);

          // Frames queued while the link is down wait in the ring; the device takes none.
          const held = queue(port, 100);
          assert.equal(held, 100);
          await new Promise((r) => setTimeout(r, 200));
          assert.equal(
            device.stats.fromDriverPackets,
            1000,
            "nothing moves while the link is down",
          );

          device.setLinkUp(true);
          await waitLink(port, "link up", () => port.link === "up");
          assert.deepEqual(changes.map((c) => c.link), ["down", "up"]);
          assert.match(changes[1].reason, /link up \(VIRTIO_NET_S_LINK_UP set/);
          assert.equal(port.downReason, "");
          assert.equal(port.txDrain(5000), 0, "the held frames went once the link was up");
          send(port, 500);
          assert.equal(port.stats.txPackets, 1600);
        } finally {
          port.close();
        }
        const { stats, errors } = await device.stop();
        assert.deepEqual(errors, []);
        assert.equal(stats.fromDriverPackets, 1600, "the device took every frame, once");
        assert.equal(stats.fromDriverBytes, 1600 * FRAME);
      } finally {
        await device.stop();
      }
    });
  }
}

Deno.test("link change: without BACKEND_REQ the port reads the link only when asked (configLinkUp)", async () => {
  const protocolFeatures = DEFAULT_PROTOCOL_FEATURES | protocolFeatureMask("CONFIG");
  await using device = await DeviceThread.start({
    mode: "sink",
    features: FEATURES,
    protocolFeatures,
  });
  using port = VirtioNet.open({ path: device.path });
  device.setLinkUp(false);
  const deadline = Date.now() + 5000;
  while (port.configLinkUp() && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 2));
  }
  assert.equal(port.configLinkUp(), false, "GET_CONFIG reads the new status");
  assert.equal(port.checkLink(), "up", "no notification channel: the port was not told");
});

Deno.test("link change: a port opened while the device's link is down starts down, connected", async () => {
  const options = { mode: "sink" as const, features: FEATURES, protocolFeatures: PROTOCOL };
  await using device = await DeviceThread.start(options);
  device.setLinkUp(false);
  await new Promise((r) => setTimeout(r, 20)); // the device thread applies it within ~1 ms
  using port = VirtioNet.open({ path: device.path });
  assert.equal(port.link, "down");
  assert.equal(port.connected, true);
  device.setLinkUp(true);
  await waitLink(port, "link up", () => port.link === "up");
});

/** A back-end message: header (request, flags, size) and `payload`. */
function message(request: number, flags: number, size: number, payload = new Uint8Array()) {
  const m = new Uint8Array(12 + payload.length);
  const v = new DataView(m.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, size, true);
  m.set(payload, 12);
  return m;
}

const HOSTILE = [
  {
    name: "flags without version 1",
    bytes: message(2, 0x2, 0),
    rule: /CONFIG_CHANGE_MSG on the back-end channel: protocol version 2 in flags, expected 1$/,
  },
  {
    name: "a payload size beyond 4096",
    bytes: message(2, 0x1, 8192),
    rule: /CONFIG_CHANGE_MSG on the back-end channel: payload of 8192 bytes \(at most 4096\)/,
  },
  {
    name: "CONFIG_CHANGE_MSG with a payload",
    bytes: message(2, 0x1, 8, new Uint8Array(8)),
    rule: /CONFIG_CHANGE_MSG: payload of 8 bytes, it has none/,
  },
  {
    name: "a header cut off",
    bytes: message(2, 0x1, 0).subarray(0, 6),
    rule: /back-end channel: recv\(fd \d+\): no reply within 100 ms \(0 of 6 bytes\)/,
  },
];

/** A hostile backend offering the link change features, and a port on it. */
async function withHostile(body: (dev: HostileBackend, port: VirtioNet) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "link-hostile-" });
  const sock = `${dir}/vhost.sock`;
  const dev = await HostileBackend.listen(sock, { features: FEATURES, protocolFeatures: PROTOCOL });
  try {
    using port = VirtioNet.open({ path: sock, hugepages: false });
    await body(dev, port);
  } finally {
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
}

for (const h of HOSTILE) {
  Deno.test(`link change, hostile backend: ${h.name} on the back-end channel -> port down with the rule, every buffer back`, async () => {
    await withHostile(async (dev, port) => {
      const { pool } = port;
      await dev.backendRequest(h.bytes);
      await waitLink(port, "link down", () => port.link === "down");
      assert.equal(port.connected, false, "a backend breaking the channel's rules is gone");
      assert.match(port.downReason, /broke a rule: /);
      assert.match(port.downReason, h.rule);
      assert.equal(pool.available, pool.count, "every buffer is back in the pool");
    });
  });
}

Deno.test("link change, hostile backend: an unknown back-end request with NEED_REPLY gets failure (1), the port stays up", async () => {
  await withHostile(async (dev, port) => {
    // The port answers from its link check, run here while the backend's worker waits.
    let reply: Uint8Array | null = null;
    dev.backendRequest(message(99, 0x9, 0), 20).then((r) => reply = r);
    await waitLink(port, "the reply", () => reply !== null);
    const v = new DataView(reply!.buffer);
    assert.equal(v.getUint32(0, true), 99, "reply to request 99");
    assert.equal(v.getUint32(4, true), 0x5, "version 1, REPLY");
    assert.equal(v.getUint32(8, true), 8, "u64 payload");
    assert.equal(v.getBigUint64(12, true), 1n, "failure: not implemented");
    assert.equal(port.link, "up");
    assert.equal(port.connected, true);
  });
});

Deno.test("link change: device.ts --link-flap 200 --mac --mtu: the port sees MAC, MTU and the link going down and up", async () => {
  const dir = await Deno.makeTempDir({ prefix: "link-flap-" });
  const sock = `${dir}/device.sock`;
  const args = ["run", "-A", "--unstable-ffi", "examples/device.ts", "--path", sock, "--json"];
  const flags = ["--quiet", "--mac", "02:00:00:00:00:2a", "--mtu", "4000", "--link-flap", "200"];
  const child = new Deno.Command(Deno.execPath(), {
    args: [...args, ...flags, "--duration", "3"],
    cwd: decodeURIComponent(new URL("..", import.meta.url).pathname),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      try {
        if (Deno.statSync(sock).isSocket) break;
      } catch { /* not yet */ }
      await new Promise((r) => setTimeout(r, 20));
    }
    using port = VirtioNet.open({ path: sock, hugepages: false });
    assert.equal(port.mac[5], 0x2a, "MAC from the device config");
    assert.equal(port.mtu, 4000, "MTU from the device config");
    const changes: string[] = [];
    port.addEventListener("linkchange", (e) => changes.push((e as CustomEvent).detail.link));
    await waitLink(port, "down, up, down", () => changes.length >= 3, 10_000);
    assert.deepEqual(changes.slice(0, 3), ["down", "up", "down"]);
    assert.equal(port.connected, true);
  } finally {
    const out = await child.output();
    const report = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
    assert.ok(report.link_changes >= 3, `device.ts changed the link ${report.link_changes} times`);
    assert.deepEqual(report.errors, []);
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * MAC, MTU and link status from the device configuration space (virtio 1.2 §5.1.4) over
 * vhost-user GET_CONFIG (CONFIG protocol feature), against the TS device:
 *
 * ```
 *   VirtioNet.open ──GET_CONFIG(0, 12)──► TS device: mac, status LINK_UP, pairs, mtu
 *   port.mac, port.mtu, port.configLinkUp()
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceThread } from "../lib/device/device_thread.ts";
import { VirtioNet } from "../lib/driver/virtio_net.ts";
import { DEFAULT_DEVICE_FEATURES, DEFAULT_PROTOCOL_FEATURES } from "../lib/vhost_user/backend.ts";
import { protocolFeatureMask } from "../lib/vhost_user/message.ts";
import { featureMask, hasFeature } from "../lib/virtio/features.ts";

const MAC = Uint8Array.from([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);

Deno.test("config: MAC, MTU and link status come from the TS device's virtio_net_config", async () => {
  const device = await DeviceThread.start({
    mode: "sink",
    features: DEFAULT_DEVICE_FEATURES | featureMask("NET_F_MAC", "NET_F_STATUS", "NET_F_MTU"),
    protocolFeatures: DEFAULT_PROTOCOL_FEATURES | protocolFeatureMask("CONFIG"),
    mac: MAC,
    mtu: 9000,
  });
  try {
    const port = VirtioNet.open({ path: device.path });
    try {
      for (const name of ["NET_F_MAC", "NET_F_STATUS", "NET_F_MTU"] as const) {
        assert.ok(hasFeature(port.features, name), `${name} negotiated`);
      }
      assert.deepEqual([...port.mac], [...MAC], "MAC from the device");
      assert.equal(port.mtu, 9000, "MTU from the device");
      assert.equal(port.configLinkUp(), true, "VIRTIO_NET_S_LINK_UP");
    } finally {
      port.close();
    }
    // The `mac` option still wins over the device's.
    const own = VirtioNet.open({ path: device.path, mac: "02:00:00:00:00:07" });
    try {
      assert.equal(own.mac[5], 7);
    } finally {
      own.close();
    }
  } finally {
    await device.stop();
  }
});

Deno.test("config: without the CONFIG protocol feature MAC/STATUS/MTU stay off", async () => {
  const device = await DeviceThread.start({
    mode: "sink",
    features: DEFAULT_DEVICE_FEATURES | featureMask("NET_F_MAC", "NET_F_STATUS", "NET_F_MTU"),
    mac: MAC,
  });
  try {
    const port = VirtioNet.open({ path: device.path });
    try {
      assert.ok(!hasFeature(port.features, "NET_F_MAC"));
      assert.ok(!hasFeature(port.features, "NET_F_STATUS"));
      assert.equal(port.mtu, null);
      assert.notDeepEqual([...port.mac], [...MAC], "a random MAC, not the device's");
      assert.equal(port.mac[0] & 0x03, 0x02, "locally administered unicast");
      assert.equal(port.configLinkUp(), true, "no STATUS: the link is assumed up (§5.1.4.2)");
    } finally {
      port.close();
    }
  } finally {
    await device.stop();
  }
});

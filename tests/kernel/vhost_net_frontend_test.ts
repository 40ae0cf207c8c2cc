/**
 * VhostNetFrontend against the real /dev/vhost-net (inside the test VM): the features it lets
 * through, errors that name the ioctl, the errno and the remedy, RESET_OWNER then SET_OWNER.
 *
 * ```
 *   VhostNetFrontend.open ──GET_FEATURES──► offered minus bits 26, 27, 33
 *   ring attached ──SET_VRING_NUM──► EBUSY "detach it first"
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { VirtioNet } from "../../lib/driver/virtio_net.ts";
import { VhostNetFrontend } from "../../lib/vhost_net/frontend.ts";
import { featureMask, hasFeature } from "../../lib/virtio/features.ts";
import { assertThrows } from "../helpers.ts";

Deno.test("vhost-net: offered features reach the driver without bits 26, 27 and 33", () => {
  using backend = VhostNetFrontend.open("/dev/vhost-net", { tap: "vnq0" });
  assert.match(backend.name, /^vhost-net \/dev\/vhost-net, tap vnq0$/);
  assert.ok(
    hasFeature(backend.offeredFeatures, "VHOST_NET_F_VIRTIO_NET_HDR"),
    "the kernel offers 27",
  );
  const f = backend.getFeatures();
  assert.ok(hasFeature(f, "F_VERSION_1") && hasFeature(f, "RING_F_EVENT_IDX"));
  assert.equal(hasFeature(f, "F_RING_PACKED"), false, "vhost-net has no packed ring");
  assert.equal(
    f & (featureMask("VHOST_NET_F_VIRTIO_NET_HDR", "F_ACCESS_PLATFORM") | (1n << 26n)),
    0n,
  );
  assertThrows(
    () => backend.setFeatures(featureMask("F_VERSION_1", "VHOST_NET_F_VIRTIO_NET_HDR")),
    Error,
    "VHOST_NET_F_VIRTIO_NET_HDR(27) not offered",
  );
  // RESET_OWNER drops the owner; resetOwner() takes it again, so later ioctls work.
  backend.resetOwner();
  backend.setFeatures(featureMask("F_VERSION_1"));
});

Deno.test("vhost-net: SET_VRING_NUM while the tap is attached fails with EBUSY and the remedy", () => {
  using port = VirtioNet.open({ path: "/dev/vhost-net", tap: "vnq1", notice: () => {} });
  const backend = port.transport as VhostNetFrontend;
  let message = "";
  try {
    backend.setupQueue({
      index: 1,
      size: 256,
      base: 0,
      addresses: { desc: 0, driver: 0, device: 0 },
      kickFd: -1,
      callFd: -1,
    });
  } catch (e) {
    message = (e as Error).message;
  }
  assert.match(message, /^ioctl\(VHOST_SET_VRING_NUM\) failed: EBUSY \(.*\); .*detach it first/);
});

Deno.test("vhost-net: a queue size that is not a power of two and a bad tap name are refused", () => {
  assertThrows(
    () => VirtioNet.open({ path: "/dev/vhost-net", tap: "vnq2", queueSize: 300, notice: () => {} }),
    RangeError,
    "power of two",
  );
  assertThrows(
    () => VhostNetFrontend.open("/dev/vhost-net", { tap: "a-name-longer-than-15" }),
    RangeError,
    "IFNAMSIZ",
  );
  // Neither attempt left a tap behind.
  assertThrows(() => Deno.statSync("/sys/class/net/vnq2"), Deno.errors.NotFound, "");
});

/**
 * A virtio-net driver for Deno that runs in an ordinary process (virtio-user): it owns the
 * rings and packet buffers in shared memory and hands the device side to a vhost-user backend
 * (DPDK's vhost PMD, or this package's own device) or to the Linux kernel's vhost-net with a tap
 * (`path: "/dev/vhost-net", tap: "tap0"`).
 *
 * ```ts ignore
 * import { VirtioNet } from "./mod.ts";
 * using port = VirtioNet.open({ path: "/tmp/vhost.sock" });
 * const bufs = new Uint32Array(32), lens = new Uint32Array(32);
 * const n = port.rxBurst(bufs, lens, 32);
 * port.pool.free(bufs, 0, n);
 * ```
 *
 * @module
 */

export {
  DeviceFailedError,
  LINK_CHECK_BURSTS,
  LINK_CHECK_MS,
  type LinkChange,
  type LinkState,
  READABLE_LINK_CHECK_MS,
  VirtioNet,
  type VirtioNetOptions,
  type VirtioNetStats,
} from "./lib/driver/virtio_net.ts";
export { BufferError, BufferPool, type BufferShare } from "./lib/driver/buffer_pool.ts";
export {
  type CounterSource,
  type QueueHandle,
  QueuePair,
  type QueuePairParts,
  QueueStats,
} from "./lib/driver/queue_pair.ts";
export { SharedMemory, type SharedMemoryOptions } from "./lib/driver/shared_memory.ts";
export { DeviceStatus } from "./lib/virtio/status.ts";
export { Feature, type FeatureName } from "./lib/virtio/features.ts";
export type { MemoryRegion, QueueSetup, VirtioTransport } from "./lib/virtio/transport.ts";
export {
  type AddressTranslator,
  type BufferTable,
  DescriptorChain,
  type DeviceQueue,
  type DriverQueue,
  type QueueAddresses,
  VirtqueueError,
} from "./lib/virtio/virtqueue.ts";
export { type UdpFrameOptions, writeUdpFrame } from "./lib/packet/udp_frame.ts";
export {
  type DeviceMode,
  type FrameBurst,
  type FrameHook,
  type NetDeviceOptions,
  type NetDeviceStats,
} from "./lib/device/net_device.ts";
export {
  type DeviceRunEnd,
  type DeviceRunLimits,
  VhostUserDevice,
  type VhostUserDeviceOptions,
} from "./lib/device/vhost_user_device.ts";
export {
  type EventLoopOptions,
  type EventLoopResult,
  runEventDriven,
} from "./lib/device/event_loop.ts";
export {
  DeviceThread,
  type DeviceThreadOptions,
  type DeviceThreadResult,
} from "./lib/device/device_thread.ts";
export { VhostUserFrontend, type VhostUserFrontendOptions } from "./lib/vhost_user/frontend.ts";
export { VhostUserBackend, type VhostUserBackendOptions } from "./lib/vhost_user/backend.ts";
export { Vring, type VringAddresses } from "./lib/vhost_user/vring.ts";
export type { VringAddress } from "./lib/vhost_user/message.ts";
export { GuestMemory, type GuestRegion } from "./lib/vhost_user/guest_memory.ts";
export {
  isVhostNetPath,
  VHOST_NET_DEVICE,
  VHOST_NET_UNUSED_FEATURES,
  VhostNetFrontend,
  type VhostNetFrontendOptions,
} from "./lib/vhost_net/frontend.ts";
export { Tap, type TapOptions, TUN_DEVICE } from "./lib/vhost_net/tap.ts";

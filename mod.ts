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
export { ControlCommandError } from "./lib/driver/control_queue.ts";
export {
  completeChecksum,
  negotiatedOffloads,
  offloadFeatures,
  type Offloads,
  requestTxChecksum,
  requestTxTso,
} from "./lib/driver/offload.ts";
export {
  NET_HDR_CSUM_OFFSET,
  NET_HDR_CSUM_START,
  NET_HDR_F_DATA_VALID,
  NET_HDR_F_NEEDS_CSUM,
  NET_HDR_F_RSC_INFO,
  NET_HDR_FLAGS,
  NET_HDR_GSO_ECN,
  NET_HDR_GSO_NONE,
  NET_HDR_GSO_SIZE,
  NET_HDR_GSO_TCPV4,
  NET_HDR_GSO_TCPV6,
  NET_HDR_GSO_TYPE,
  NET_HDR_GSO_UDP,
  NET_HDR_HDR_LEN,
  NET_HDR_NUM_BUFFERS,
  NET_HDR_SIZE,
  netHdrCsumOffset,
  netHdrCsumStart,
  netHdrFlags,
  netHdrGsoSize,
  netHdrGsoType,
  netHdrHdrLen,
  sanitizeTxNetHdr,
  setNetHdrChecksum,
  setNetHdrGso,
} from "./lib/virtio/net_hdr.ts";
export {
  type CounterSource,
  type QueueHandle,
  QueuePair,
  type QueuePairParts,
  QueueStats,
} from "./lib/driver/queue_pair.ts";
export { SharedMemory, type SharedMemoryOptions } from "./lib/driver/shared_memory.ts";
export { DeviceStatus } from "./lib/virtio/status.ts";
export {
  Feature,
  type FeatureName,
  NET_OFFLOAD_FEATURES,
  NET_TX_OFFLOAD_FEATURES,
} from "./lib/virtio/features.ts";
export type {
  MemoryRegion,
  QueueSetup,
  ReceiveFilter,
  VirtioTransport,
} from "./lib/virtio/transport.ts";
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
  applyChecksumDelta,
  checksumDelta32,
  checksumDeltaWords,
  foldChecksum,
  internetChecksum,
  onesSum,
  read16,
  read32,
  updateChecksum16,
  updateChecksum32,
  write16,
  write32,
} from "./lib/packet/checksum.ts";
export {
  ETHERNET_HEADER,
  ETHERNET_MIN_FRAME,
  EtherType,
  etherType,
  formatMac,
  parseMac,
  swapMacs,
  writeEthernet,
} from "./lib/packet/ethernet.ts";
export { innerTypeOffset, VLAN_TAG, vlanId, writeVlanTag } from "./lib/packet/vlan.ts";
export {
  ARP_PACKET,
  ArpOp,
  arpOperation,
  arpSenderIp,
  arpTargetIp,
  writeArp,
} from "./lib/packet/arp.ts";
export {
  formatIpv4,
  IpProtocol,
  IPV4_HEADER,
  ipv4Dst,
  Ipv4Field,
  ipv4HeaderLength,
  ipv4HeaderValid,
  ipv4PseudoSum,
  ipv4Src,
  ipv4TotalLength,
  parseIpv4,
  writeIpv4,
} from "./lib/packet/ipv4.ts";
export {
  formatIpv6,
  IPV6_HEADER,
  Ipv6Field,
  ipv6PayloadLength,
  ipv6PseudoSum,
  parseIpv6,
  writeIpv6,
} from "./lib/packet/ipv6.ts";
export { upperLayerChecksum } from "./lib/packet/pseudo_header.ts";
export {
  dstPort,
  srcPort,
  UDP_HEADER,
  udpChecksumValid,
  UdpField,
  writeUdp,
} from "./lib/packet/udp.ts";
export {
  TCP_HEADER,
  tcpChecksumValid,
  TcpField,
  TcpFlag,
  tcpFlags,
  tcpHeaderLength,
  writeTcp,
} from "./lib/packet/tcp.ts";
export {
  ICMP_ECHO_HEADER,
  icmpChecksumValid,
  IcmpType,
  toEchoReply,
  writeIcmpEcho,
} from "./lib/packet/icmp.ts";
export {
  FrameFlag,
  parseFrame,
  VIEW_ETHER_TYPE,
  VIEW_L3,
  VIEW_L4,
  VIEW_L4_LENGTH,
  VIEW_PAYLOAD,
  VIEW_PROTOCOL,
  VIEW_SIZE,
  VIEW_VLAN,
} from "./lib/packet/frame_view.ts";
export {
  FieldSweep,
  PacketTemplate,
  type SweepField,
  type SweepMode,
  type TemplateOptions,
} from "./lib/packet/template.ts";
export {
  LINKTYPE_ETHERNET,
  PCAP_MAGIC_MICROS,
  PCAP_MAGIC_NANOS,
  type PcapCapture,
  PcapWriter,
  type PcapWriterOptions,
  readPcap,
} from "./lib/packet/pcap.ts";
export { answerArp, answerIcmpEcho, answerNeighborSolicitation } from "./lib/packet/responder.ts";
export { describeFrame } from "./lib/packet/describe.ts";
export {
  type DeviceMode,
  type DevicePair,
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
export { PairWorkers } from "./lib/device/pair_workers.ts";
export {
  ForwardDevice,
  type ForwardDeviceOptions,
  type ForwardRunLimits,
} from "./lib/device/forward_device.ts";
export { ForwardPath, type ForwardPort } from "./lib/device/forward.ts";
export { Relay, type RelayStats } from "./lib/device/relay.ts";
export { VhostUserFrontend, type VhostUserFrontendOptions } from "./lib/vhost_user/frontend.ts";
export { VhostUserBackend, type VhostUserBackendOptions } from "./lib/vhost_user/backend.ts";
export { Vring, type VringAddresses } from "./lib/vhost_user/vring.ts";
export type { VringAddress } from "./lib/vhost_user/message.ts";
export { GuestMemory, type GuestRegion } from "./lib/vhost_user/guest_memory.ts";
export { DEFAULT_ARENA_BYTES, MemoryArena } from "./lib/vhost_user/memory_arena.ts";
export {
  isVhostNetPath,
  TAP_OFFLOAD_FEATURES,
  tapOffloadFlags,
  VHOST_NET_DEVICE,
  VHOST_NET_UNUSED_FEATURES,
  VhostNetFrontend,
  type VhostNetFrontendOptions,
} from "./lib/vhost_net/frontend.ts";
export { Tap, type TapOptions, TUN_DEVICE } from "./lib/vhost_net/tap.ts";
